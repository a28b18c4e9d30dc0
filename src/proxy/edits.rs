//! [`Edits`]: what the rewrite phase decides about a forwarded request's
//! header fields, applied in one pass as the upstream request head is
//! written (HTTP/1.1: the client's fields that stay, then the ones this
//! hop adds; no header map is changed), or to the request's header map for
//! an HTTP/2 upstream. Both give the same fields (tested side by side).

use http::header::{self, HeaderMap, HeaderName, HeaderValue};

use super::fields::Fields;
use super::forwarding::ForwardingEdits;
use super::headers::{self, Scan};
use crate::model::headers::{eq_lowercase, is_hop_by_hop};

/// The edits of one forwarded request's fields.
#[derive(Debug)]
pub struct Edits {
    /// What one pass over the client's fields found.
    scan: Scan,
    /// Names the client's `Connection` lists (hop-by-hop too; rare).
    listed: Vec<HeaderName>,
    /// An upgrade passed on: `Upgrade: <this>` and `Connection: upgrade`.
    upgrade: Option<HeaderValue>,
    forwarding: ForwardingEdits,
    /// The routed authority (empty when the request had none).
    host: HeaderValue,
    /// The request id field and its value.
    id: (HeaderName, HeaderValue),
    /// The tenant's name, to a pool configured to send it.
    tenant: Option<(HeaderName, HeaderValue)>,
    /// The legacy balancer's hop marker.
    marker: Option<(HeaderName, HeaderValue)>,
}

/// The parts of [`Edits`] (the rewrite phase fills them in).
pub struct Parts {
    pub scan: Scan,
    pub upgrade: Option<HeaderValue>,
    pub forwarding: ForwardingEdits,
    pub host: HeaderValue,
    pub id: (HeaderName, HeaderValue),
    pub tenant: Option<(HeaderName, HeaderValue)>,
    pub marker: Option<(HeaderName, HeaderValue)>,
}

static UPGRADE: HeaderName = header::UPGRADE;
static CONNECTION: HeaderName = header::CONNECTION;
static HOST: HeaderName = header::HOST;
static CONNECTION_UPGRADE: HeaderValue = HeaderValue::from_static("upgrade");

impl Edits {
    /// The edits of a request with `fields` (`parts.scan` is theirs).
    pub fn new(fields: Fields<'_>, parts: Parts) -> Edits {
        Edits {
            listed: headers::connection_listed(fields, &parts.scan),
            scan: parts.scan,
            upgrade: parts.upgrade,
            forwarding: parts.forwarding,
            host: parts.host,
            id: parts.id,
            tenant: parts.tenant,
            marker: parts.marker,
        }
    }

    /// Whether the client's field `name` (as written, any case) is left
    /// out: hop-by-hop, or replaced by this hop.
    #[inline]
    pub fn drops_raw(&self, name: &[u8]) -> bool {
        let is = |n: &HeaderName| eq_lowercase(name, n.as_str().as_bytes());
        eq_lowercase(name, b"host")
            || is_hop_by_hop(name)
            || self.forwarding.drops(name)
            || is(&self.id.0)
            || self.tenant.as_ref().is_some_and(|(n, _)| is(n))
            || self.marker.as_ref().is_some_and(|(n, _)| is(n))
            || (!self.listed.is_empty() && self.listed.iter().any(is))
    }

    /// Calls `f` with each field this hop adds, in order.
    #[inline]
    pub fn each_added(&self, mut f: impl FnMut(&HeaderName, &HeaderValue)) {
        f(&HOST, &self.host);
        if let Some(up) = &self.upgrade {
            f(&UPGRADE, up);
            f(&CONNECTION, &CONNECTION_UPGRADE);
        }
        self.forwarding.each_added(&mut f);
        if let Some((n, v)) = &self.tenant {
            f(n, v);
        }
        if let Some((n, v)) = &self.marker {
            f(n, v);
        }
        f(&self.id.0, &self.id.1);
    }

    /// Applies the edits to `headers` (an HTTP/2 upstream's request).
    pub fn apply(self, headers: &mut HeaderMap) {
        headers::strip_hop_by_hop(headers, &self.scan, self.upgrade);
        self.forwarding.apply(headers);
        headers.insert(header::HOST, self.host);
        if let Some((n, v)) = self.tenant {
            headers.insert(n, v);
        }
        if let Some((n, v)) = self.marker {
            headers.insert(n, v);
        }
        headers.insert(self.id.0, self.id.1);
    }
}

/// The edits of a request with `headers` from 192.0.2.7 (`trusted` or
/// not), routed to `site.example`, with a request id, a tenant header
/// (`x-tenant`) and a hop marker (`x-hop`): every kind of edit.
#[cfg(test)]
pub(crate) fn test_edits(headers: &HeaderMap, trusted: bool) -> Edits {
    use super::forwarding::{Client, Forwarding, ViaValues};
    let headers = Fields::Map(headers);
    let scan = Scan::of(headers);
    let client = Client::new("192.0.2.7".parse().unwrap());
    let via = ViaValues::new("predictor");
    let host = HeaderValue::from_static("site.example");
    let forwarding = Forwarding {
        client: &client,
        trusted,
        proto: "http",
        host: Some(&host),
        via: via.for_version(http::Version::HTTP_11),
        forwarded: true,
    }
    .edits(headers, &scan);
    Edits::new(
        headers,
        Parts {
            scan,
            upgrade: headers::upgrade_protocol(headers, &scan),
            forwarding,
            host: host.clone(),
            id: (
                HeaderName::from_static("x-request-id"),
                HeaderValue::from_static("0123"),
            ),
            tenant: Some((
                HeaderName::from_static("x-tenant"),
                HeaderValue::from_static("t1"),
            )),
            marker: Some((
                HeaderName::from_static("x-hop"),
                HeaderValue::from_static("dc2"),
            )),
        },
    )
}

#[cfg(test)]
mod tests {
    use super::super::headers::test_map;
    use super::*;

    fn lines<'a>(it: impl Iterator<Item = (&'a HeaderName, &'a HeaderValue)>) -> Vec<String> {
        let mut v: Vec<String> = it
            .map(|(n, v)| format!("{n}: {}", v.to_str().unwrap()))
            .collect();
        v.sort();
        v
    }

    /// The one-pass edits and the map edits give the same fields, for a
    /// request with every kind of field an edit touches.
    #[test]
    fn written_fields_are_the_edited_map() {
        let mut h = test_map(&[
            ("host", "site.example"),
            ("connection", "keep-alive, x-drop-me, upgrade"),
            ("x-drop-me", "1"),
            ("keep-alive", "timeout=5"),
            ("te", "trailers"),
            ("upgrade", "websocket"),
            ("x-forwarded-for", "6.6.6.6"),
            ("x-forwarded-proto", "https"),
            ("x-request-id", "spoof"),
            ("x-tenant", "spoof"),
            ("x-hop", "spoof"),
            ("via", "1.1 cdn"),
            ("accept", "*/*"),
            ("cookie", "a=1"),
        ]);
        let edits = test_edits(&h, false);
        let mut added = Vec::new();
        edits.each_added(|n, v| added.push((n.clone(), v.clone())));
        let written = lines(
            h.iter()
                .filter(|(n, _)| !edits.drops_raw(n.as_str().as_bytes()))
                .chain(added.iter().map(|(n, v)| (n, v))),
        );
        edits.apply(&mut h);
        assert_eq!(written, lines(h.iter()));
        for expected in [
            "accept: */*",
            "connection: upgrade",
            "cookie: a=1",
            "host: site.example",
            "upgrade: websocket",
            "via: 1.1 cdn",
            "via: 1.1 predictor",
            "x-forwarded-for: 192.0.2.7",
            "x-forwarded-host: site.example",
            "x-forwarded-proto: http",
            "x-hop: dc2",
            "x-request-id: 0123",
            "x-tenant: t1",
        ] {
            assert!(
                written.iter().any(|l| l == expected),
                "{expected} in {written:?}"
            );
        }
        assert!(!written.iter().any(|l| l.starts_with("x-drop-me")
            || l.starts_with("keep-alive")
            || l.starts_with("te:")));
    }
}
