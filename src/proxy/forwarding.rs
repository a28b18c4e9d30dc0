//! What an upstream is told about the client: `X-Forwarded-For`,
//! `X-Forwarded-Proto`, `X-Forwarded-Host`, optionally RFC 7239
//! `Forwarded`, and a `Via` hop.
//!
//! Trust is per connection: a client that is not a configured trusted
//! proxy has its own `X-Forwarded-*` and `Forwarded` values replaced (a
//! client could otherwise claim any address); a trusted proxy's are kept,
//! and its address is appended to the chain, as HAProxy's `option
//! forwardfor` and nginx's `$proxy_add_x_forwarded_for` do.

use std::net::IpAddr;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};

use super::fields::Fields;
use super::headers::{Scan, X_FORWARDED_FOR, X_FORWARDED_HOST, X_FORWARDED_PROTO};
pub use crate::model::headers::ViaValues;
use crate::model::headers::eq_lowercase;

/// `Forwarded` and `Via` as statics (the `http` constants cannot be
/// borrowed for `'static`).
static FORWARDED_NAME: HeaderName = header::FORWARDED;
static VIA_NAME: HeaderName = header::VIA;

/// The client side of a connection, formatted once per connection.
#[derive(Debug, Clone)]
pub struct Client {
    /// The peer's address as an `X-Forwarded-For` element.
    pub address: HeaderValue,
    /// The peer's address as a `Forwarded` node (`"[v6]"` quoted).
    node: HeaderValue,
}

impl Client {
    pub fn new(ip: IpAddr) -> Client {
        let address = client_address(ip);
        let node = match ip.to_canonical() {
            IpAddr::V4(_) => address.clone(),
            IpAddr::V6(v6) => HeaderValue::from_str(&format!("\"[{v6}]\""))
                .unwrap_or_else(|_| HeaderValue::from_static("unknown")),
        };
        Client { address, node }
    }
}

/// Adds the forwarding headers of a request passed upstream.
pub struct Forwarding<'a> {
    pub client: &'a Client,
    /// The client is a configured trusted proxy (decided per request, so a
    /// reload applies to open connections too).
    pub trusted: bool,
    pub proto: &'static str,
    /// The authority the request was routed by (`None`: an HTTP/1.0
    /// request without any).
    pub host: Option<&'a HeaderValue>,
    /// This hop, for example `1.1 predictor`.
    pub via: &'a HeaderValue,
    /// Send `Forwarded` too.
    pub forwarded: bool,
}

impl Forwarding<'_> {
    /// The forwarding fields for a request with `headers`: the client's
    /// own replaced (untrusted) or extended (a trusted proxy's chain), and
    /// this hop's `Via` appended.
    pub fn edits(&self, fields: Fields<'_>, scan: &Scan) -> ForwardingEdits {
        let via = self.via.clone();
        if self.trusted {
            let xff = joined(fields, &X_FORWARDED_FOR, &self.client.address);
            let xfp = (!fields.contains(&X_FORWARDED_PROTO))
                .then(|| HeaderValue::from_static(self.proto));
            let xfh = match (self.host, fields.contains(&X_FORWARDED_HOST)) {
                (Some(h), false) => Edit::Set(h.clone()),
                _ => Edit::Keep,
            };
            let forwarded = if self.forwarded {
                Edit::Set(joined(fields, &FORWARDED_NAME, &self.element()))
            } else {
                Edit::Keep
            };
            ForwardingEdits {
                xff,
                xfp,
                replace_xfp: false,
                xfh,
                forwarded,
                via,
            }
        } else {
            let xfh = match self.host {
                Some(h) => Edit::Set(h.clone()),
                None => Edit::Remove,
            };
            let forwarded = if self.forwarded {
                Edit::Set(self.element())
            } else if scan.forwarded {
                Edit::Remove
            } else {
                Edit::Keep
            };
            ForwardingEdits {
                xff: self.client.address.clone(),
                xfp: Some(HeaderValue::from_static(self.proto)),
                replace_xfp: true,
                xfh,
                forwarded,
                via,
            }
        }
    }

    /// The `Forwarded` element of this hop.
    fn element(&self) -> HeaderValue {
        let mut v = Vec::with_capacity(64);
        v.extend_from_slice(b"for=");
        v.extend_from_slice(self.client.node.as_bytes());
        v.extend_from_slice(b";proto=");
        v.extend_from_slice(self.proto.as_bytes());
        if let Some(h) = self.host {
            v.extend_from_slice(b";host=\"");
            v.extend_from_slice(h.as_bytes());
            v.push(b'"');
        }
        HeaderValue::from_bytes(&v).unwrap_or_else(|_| self.client.node.clone())
    }
}

/// What becomes of one of the client's fields.
#[derive(Debug, Clone)]
pub enum Edit {
    /// The client's lines pass.
    Keep,
    /// The client's lines go; this one is sent.
    Set(HeaderValue),
    /// The client's lines go.
    Remove,
}

/// The forwarding fields of one request, decided once and then applied
/// to a header map ([`ForwardingEdits::apply`], for HTTP/2 upstreams) or
/// as the request head is written ([`ForwardingEdits::drops`] and
/// [`ForwardingEdits::added`]): both give the same fields.
#[derive(Debug, Clone)]
pub struct ForwardingEdits {
    /// `X-Forwarded-For`, always replaced (a trusted chain is joined in).
    xff: HeaderValue,
    /// `X-Forwarded-Proto` to send, if any.
    xfp: Option<HeaderValue>,
    /// The client's `X-Forwarded-Proto` goes (an untrusted client).
    replace_xfp: bool,
    xfh: Edit,
    forwarded: Edit,
    /// This hop's `Via`, appended to the client's.
    via: HeaderValue,
}

impl ForwardingEdits {
    /// Applies the edits to `headers`.
    pub fn apply(self, headers: &mut HeaderMap) {
        headers.insert(X_FORWARDED_FOR.clone(), self.xff);
        if let Some(v) = self.xfp {
            headers.insert(X_FORWARDED_PROTO.clone(), v);
        }
        match self.xfh {
            Edit::Keep => {}
            Edit::Set(v) => {
                headers.insert(X_FORWARDED_HOST.clone(), v);
            }
            Edit::Remove => {
                headers.remove(&X_FORWARDED_HOST);
            }
        }
        match self.forwarded {
            Edit::Keep => {}
            Edit::Set(v) => {
                headers.insert(header::FORWARDED, v);
            }
            Edit::Remove => {
                headers.remove(header::FORWARDED);
            }
        }
        headers.append(header::VIA, self.via);
    }

    /// Whether the client's field `name` is left out (it is replaced or
    /// removed).
    /// `name` as written (any case; a `HeaderName`'s is lowercase).
    #[inline]
    pub fn drops(&self, name: &[u8]) -> bool {
        // By length first: one compare rules out the others.
        match name.len() {
            9 => eq_lowercase(name, b"forwarded") && !matches!(self.forwarded, Edit::Keep),
            15 => eq_lowercase(name, b"x-forwarded-for"),
            16 => eq_lowercase(name, b"x-forwarded-host") && !matches!(self.xfh, Edit::Keep),
            17 => {
                eq_lowercase(name, b"x-forwarded-proto") && (self.replace_xfp || self.xfp.is_some())
            }
            _ => false,
        }
    }

    /// The fields this hop sends, in order.
    ///
    /// Called once per field rather than an iterator: a chain of five
    /// optional fields cost ~600 instructions per request in its `Flatten`
    /// state (`benches/callgrind.sh`).
    #[inline]
    pub fn each_added(&self, mut f: impl FnMut(&HeaderName, &HeaderValue)) {
        f(&X_FORWARDED_FOR, &self.xff);
        if let Some(v) = &self.xfp {
            f(&X_FORWARDED_PROTO, v);
        }
        if let Edit::Set(v) = &self.xfh {
            f(&X_FORWARDED_HOST, v);
        }
        if let Edit::Set(v) = &self.forwarded {
            f(&FORWARDED_NAME, v);
        }
        f(&VIA_NAME, &self.via);
    }
}

/// Every field line of `name`, joined by `", "`, then `last`.
fn joined(fields: Fields<'_>, name: &HeaderName, last: &HeaderValue) -> HeaderValue {
    let mut v = Vec::new();
    for line in fields.get_all(name) {
        let line = line.trim_ascii();
        if !line.is_empty() {
            v.extend_from_slice(line);
            v.extend_from_slice(b", ");
        }
    }
    if v.is_empty() {
        return last.clone();
    }
    v.extend_from_slice(last.as_bytes());
    HeaderValue::from_bytes(&v).unwrap_or_else(|_| last.clone())
}

/// A client's address as an `X-Forwarded-For` value (IPv4-mapped IPv6
/// written as IPv4). Once per connection; IPv4 without `core::fmt`, which
/// cost ~5,000 instructions per connection.
pub fn client_address(ip: IpAddr) -> HeaderValue {
    match ip.to_canonical() {
        IpAddr::V4(v4) => {
            let mut buf = [0u8; 15];
            let mut len = 0;
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    buf[len] = b'.';
                    len += 1;
                }
                if octet >= 100 {
                    buf[len] = b'0' + octet / 100;
                    len += 1;
                }
                if octet >= 10 {
                    buf[len] = b'0' + octet / 10 % 10;
                    len += 1;
                }
                buf[len] = b'0' + octet % 10;
                len += 1;
            }
            HeaderValue::from_bytes(&buf[..len])
                .unwrap_or_else(|_| HeaderValue::from_static("unknown"))
        }
        v6 => HeaderValue::from_str(&v6.to_string())
            .unwrap_or_else(|_| HeaderValue::from_static("unknown")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxy::headers::test_map as map;

    fn all(h: &HeaderMap, name: &str) -> Vec<String> {
        h.get_all(name)
            .iter()
            .map(|v| v.to_str().unwrap().to_string())
            .collect()
    }

    fn apply(h: &mut HeaderMap, client: &Client, trusted: bool, forwarded: bool) {
        let host = HeaderValue::from_static("Site.example:8080");
        let via = ViaValues::new("predictor");
        let scan = Scan::of(Fields::Map(h));
        let edits = Forwarding {
            client,
            trusted,
            proto: "http",
            host: Some(&host),
            via: via.for_version(http::Version::HTTP_11),
            forwarded,
        }
        .edits(Fields::Map(h), &scan);
        // As the head is written: the client's fields not dropped, then the
        // added ones; the same fields as the edited map, line for line.
        let line =
            |n: &HeaderName, v: &HeaderValue| (n.to_string(), v.to_str().unwrap().to_string());
        let mut written: Vec<(String, String)> = h
            .iter()
            .filter(|(n, _)| !edits.drops(n.as_str().as_bytes()))
            .map(|(n, v)| line(n, v))
            .collect();
        edits.each_added(|n, v| written.push(line(n, v)));
        edits.apply(h);
        let mut mapped: Vec<(String, String)> = h
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_str().unwrap().to_string()))
            .collect();
        written.sort();
        mapped.sort();
        assert_eq!(written, mapped);
    }

    fn spoofed() -> HeaderMap {
        map(&[
            ("x-forwarded-for", "6.6.6.6"),
            ("x-forwarded-for", "7.7.7.7"),
            ("x-forwarded-proto", "https"),
            ("x-forwarded-host", "evil.example"),
            ("forwarded", "for=6.6.6.6"),
            ("via", "1.1 cdn"),
        ])
    }

    #[test]
    fn an_untrusted_client_has_its_forwarding_headers_replaced() {
        let mut h = spoofed();
        apply(
            &mut h,
            &Client::new("192.0.2.7".parse().unwrap()),
            false,
            false,
        );
        assert_eq!(all(&h, "x-forwarded-for"), ["192.0.2.7"]);
        assert_eq!(all(&h, "x-forwarded-proto"), ["http"]);
        assert_eq!(all(&h, "x-forwarded-host"), ["Site.example:8080"]);
        assert!(
            h.get("forwarded").is_none(),
            "an unvouched Forwarded is dropped"
        );
        assert_eq!(all(&h, "via"), ["1.1 cdn", "1.1 predictor"]);

        let mut h = spoofed();
        apply(
            &mut h,
            &Client::new("2001:db8::7".parse().unwrap()),
            false,
            true,
        );
        assert_eq!(
            all(&h, "forwarded"),
            ["for=\"[2001:db8::7]\";proto=http;host=\"Site.example:8080\""]
        );
    }

    #[test]
    fn a_trusted_proxy_chain_is_kept_and_extended() {
        let mut h = spoofed();
        apply(
            &mut h,
            &Client::new("10.0.0.5".parse().unwrap()),
            true,
            true,
        );
        assert_eq!(all(&h, "x-forwarded-for"), ["6.6.6.6, 7.7.7.7, 10.0.0.5"]);
        assert_eq!(all(&h, "x-forwarded-proto"), ["https"]);
        assert_eq!(all(&h, "x-forwarded-host"), ["evil.example"]);
        assert_eq!(
            all(&h, "forwarded"),
            ["for=6.6.6.6, for=10.0.0.5;proto=http;host=\"Site.example:8080\""]
        );

        let mut bare = map(&[("host", "a")]);
        apply(
            &mut bare,
            &Client::new("10.0.0.5".parse().unwrap()),
            true,
            false,
        );
        assert_eq!(all(&bare, "x-forwarded-for"), ["10.0.0.5"]);
        assert_eq!(all(&bare, "x-forwarded-proto"), ["http"]);
        assert!(bare.get("forwarded").is_none());
    }

    #[test]
    fn via_names_the_version_received() {
        let via = ViaValues::new("predictor");
        assert_eq!(via.for_version(http::Version::HTTP_2), "2.0 predictor");
        assert_eq!(via.for_version(http::Version::HTTP_10), "1.0 predictor");
    }

    #[test]
    fn client_addresses_are_written_plainly() {
        for ip in [
            "0.0.0.0",
            "127.0.0.1",
            "10.200.9.255",
            "192.0.2.100",
            "255.255.255.255",
        ] {
            assert_eq!(client_address(ip.parse().unwrap()), ip);
        }
        assert_eq!(
            client_address("::ffff:192.0.2.7".parse().unwrap()),
            "192.0.2.7"
        );
        assert_eq!(
            client_address("2001:db8::1".parse().unwrap()),
            "2001:db8::1"
        );
    }
}
