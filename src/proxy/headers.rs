//! Header rules of an intermediary (RFC 9110 §7.6, RFC 9113 §8.2.2).
//!
//! Hop-by-hop headers (the fixed list and every header named in
//! `Connection`) never cross predictor in either direction; an upgrade keeps
//! only `Upgrade` and `Connection: upgrade`, and `Upgrade: h2c` is never
//! passed on. The forwarding headers (`X-Forwarded-*`, `Forwarded`, `Via`)
//! are [`super::forwarding`]'s. No other header name or value is rewritten.

use http::header::{self, HeaderMap, HeaderName, HeaderValue};

use super::fields::Fields;
use crate::model::headers::{
    CONNECTION, HTTP2_SETTINGS, HTTP2_SETTINGS_BIT, KEEP_ALIVE, KEEP_ALIVE_BIT, PROXY_CONNECTION,
    PROXY_CONNECTION_BIT, TE, TRANSFER_ENCODING, UPGRADE, eq_lowercase, hop_bit,
};
pub use crate::model::headers::{
    X_FORWARDED_FOR, X_FORWARDED_HOST, X_FORWARDED_PROTO, is_managed_header,
};

/// What one pass over a message's headers found: everything the header
/// rules need, so that they look up and remove only what is there.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Scan {
    /// `Host` field lines.
    pub hosts: u8,
    /// A `Forwarded` header is present.
    pub forwarded: bool,
    /// `Connection` carries the `upgrade` option.
    pub connection_upgrade: bool,
    /// `Connection` names other headers (beyond close, keep-alive, upgrade).
    listed: bool,
    hop: u8,
}

impl Scan {
    /// One pass over `fields` (names by length first: most are ruled out
    /// by one compare).
    pub fn of(fields: Fields<'_>) -> Scan {
        let mut s = Scan::default();
        for (name, value) in fields.iter() {
            match name.len() {
                4 if eq_lowercase(name, b"host") => {
                    s.hosts = s.hosts.saturating_add(1);
                }
                9 if eq_lowercase(name, b"forwarded") => s.forwarded = true,
                _ => {
                    let bit = hop_bit(name);
                    s.hop |= bit;
                    if bit == CONNECTION {
                        s.connection(value);
                    }
                }
            }
        }
        s
    }

    fn connection(&mut self, value: &[u8]) {
        for t in value.split(|&b| b == b',') {
            let t = t.trim_ascii();
            if eq_lowercase(t, b"upgrade") {
                self.connection_upgrade = true;
            } else if !t.is_empty() && !eq_lowercase(t, b"close") && !eq_lowercase(t, b"keep-alive")
            {
                self.listed = true;
            }
        }
    }

    /// Whether the message has a `Transfer-Encoding` header.
    pub fn transfer_encoding(&self) -> bool {
        self.hop & TRANSFER_ENCODING != 0
    }
}

/// The protocol a request asks to switch to, when it is an upgrade we pass
/// through (HTTP/1.1 `Connection: upgrade` + `Upgrade`, not `h2c`).
pub fn upgrade_protocol(fields: Fields<'_>, scan: &Scan) -> Option<HeaderValue> {
    if !scan.connection_upgrade || scan.hop & UPGRADE == 0 {
        return None;
    }
    let up = fields.get(&header::UPGRADE)?;
    let h2c = up
        .split(|&b| b == b',')
        .any(|t| eq_lowercase(t.trim_ascii(), b"h2c"));
    if h2c {
        return None;
    }
    fields.value(&header::UPGRADE)
}

/// Removes hop-by-hop headers (the fixed list and every header named in
/// `Connection`). With `upgrade`, keeps `Upgrade` and sets
/// `Connection: upgrade` (the only connection option passed on).
pub fn strip_hop_by_hop(headers: &mut HeaderMap, scan: &Scan, upgrade: Option<HeaderValue>) {
    for name in connection_listed(Fields::Map(headers), scan) {
        headers.remove(name);
    }
    let hop = scan.hop;
    if hop & CONNECTION != 0 {
        headers.remove(header::CONNECTION);
    }
    if hop & TE != 0 {
        headers.remove(header::TE);
    }
    if hop & TRANSFER_ENCODING != 0 {
        headers.remove(header::TRANSFER_ENCODING);
    }
    if hop & UPGRADE != 0 {
        headers.remove(header::UPGRADE);
    }
    if hop & KEEP_ALIVE_BIT != 0 {
        headers.remove(&KEEP_ALIVE);
    }
    if hop & PROXY_CONNECTION_BIT != 0 {
        headers.remove(&PROXY_CONNECTION);
    }
    if hop & HTTP2_SETTINGS_BIT != 0 {
        headers.remove(&HTTP2_SETTINGS);
    }
    if let Some(up) = upgrade {
        headers.insert(header::UPGRADE, up);
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    }
}

/// The field names `Connection` lists beyond its own options (hop-by-hop
/// too), except `Host`: a client may not use `Connection` to strip the
/// `Host` a request is routed by. Empty (nothing allocated) unless `scan`
/// saw some.
pub fn connection_listed(fields: Fields<'_>, scan: &Scan) -> Vec<HeaderName> {
    let mut listed = Vec::new();
    if !scan.listed {
        return listed;
    }
    for v in fields.get_all(&header::CONNECTION) {
        for t in v.split(|&b| b == b',') {
            let t = t.trim_ascii();
            if t.is_empty()
                || eq_lowercase(t, b"close")
                || eq_lowercase(t, b"keep-alive")
                || eq_lowercase(t, b"upgrade")
            {
                continue;
            }
            if let Ok(name) = HeaderName::from_bytes(t) {
                if name != header::HOST && !listed.contains(&name) {
                    listed.push(name);
                }
            }
        }
    }
    listed
}

/// HTTP/2 may split `Cookie` into several fields; HTTP/1.1 needs one,
/// joined with `"; "` (RFC 9113 §8.2.3).
pub fn merge_cookies(headers: &mut HeaderMap) {
    let cookies = headers.get_all(header::COOKIE);
    let mut it = cookies.iter();
    if it.next().is_none() || it.next().is_none() {
        return;
    }
    let mut joined = Vec::new();
    for (i, v) in cookies.iter().enumerate() {
        if i > 0 {
            joined.extend_from_slice(b"; ");
        }
        joined.extend_from_slice(v.as_bytes());
    }
    if let Ok(v) = HeaderValue::from_bytes(&joined) {
        headers.insert(header::COOKIE, v);
    }
}

/// A header map from `(name, value)` pairs, for tests.
#[cfg(test)]
pub(crate) fn test_map(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut m = HeaderMap::new();
    for (k, v) in pairs {
        m.append(
            http::header::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            HeaderValue::from_str(v).unwrap(),
        );
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::header::HeaderName;

    use super::test_map as map;

    #[test]
    fn strips_fixed_and_connection_listed_headers() {
        let mut h = map(&[
            ("connection", "keep-alive, X-Secret, close"),
            ("connection", "x-other"),
            ("keep-alive", "timeout=5"),
            ("x-secret", "1"),
            ("x-other", "2"),
            ("te", "trailers"),
            ("transfer-encoding", "chunked"),
            ("proxy-connection", "keep-alive"),
            ("upgrade", "h2c"),
            ("http2-settings", "AAMAAABkAAQAAP__"),
            ("x-kept", "3"),
            ("cookie", "a=1"),
        ]);
        let scan = Scan::of(Fields::Map(&h));
        strip_hop_by_hop(&mut h, &scan, None);
        let mut names: Vec<&str> = h.keys().map(|k| k.as_str()).collect();
        names.sort_unstable();
        assert_eq!(names, vec!["cookie", "x-kept"]);
    }

    #[test]
    fn connection_cannot_remove_host() {
        let mut h = map(&[("connection", "host"), ("host", "a.example")]);
        let scan = Scan::of(Fields::Map(&h));
        strip_hop_by_hop(&mut h, &scan, None);
        assert_eq!(h.get("host").unwrap(), "a.example");
    }

    #[test]
    fn upgrade_keeps_only_upgrade_and_connection_upgrade() {
        let mut h = map(&[
            ("connection", "Upgrade, x-a"),
            ("upgrade", "websocket"),
            ("x-a", "1"),
        ]);
        let scan = Scan::of(Fields::Map(&h));
        let up = upgrade_protocol(Fields::Map(&h), &scan);
        assert_eq!(up.as_ref().unwrap(), "websocket");
        strip_hop_by_hop(&mut h, &scan, up);
        assert_eq!(h.get("upgrade").unwrap(), "websocket");
        assert_eq!(h.get("connection").unwrap(), "upgrade");
        assert!(h.get("x-a").is_none());
    }

    #[test]
    fn h2c_is_never_an_upgrade_we_pass() {
        let h = map(&[
            ("connection", "Upgrade, HTTP2-Settings"),
            ("upgrade", "h2c"),
        ]);
        assert!(upgrade_protocol(Fields::Map(&h), &Scan::of(Fields::Map(&h))).is_none());
        let h = map(&[("upgrade", "websocket")]);
        assert!(
            upgrade_protocol(Fields::Map(&h), &Scan::of(Fields::Map(&h))).is_none(),
            "no Connection: upgrade"
        );
    }

    #[test]
    fn cookies_are_joined_for_http1() {
        let mut h = map(&[("cookie", "a=1"), ("cookie", "b=2"), ("cookie", "c=3")]);
        merge_cookies(&mut h);
        assert_eq!(h.get_all("cookie").iter().count(), 1);
        assert_eq!(h.get("cookie").unwrap(), "a=1; b=2; c=3");
        let mut one = map(&[("cookie", "a=1")]);
        merge_cookies(&mut one);
        assert_eq!(one.get("cookie").unwrap(), "a=1");
    }

    #[test]
    fn one_pass_finds_what_the_rules_need() {
        let h = map(&[
            ("host", "a"),
            ("host", "b"),
            ("cookie", "x=1"),
            ("connection", "keep-alive, Upgrade"),
            ("transfer-encoding", "chunked"),
        ]);
        let s = Scan::of(Fields::Map(&h));
        assert_eq!((s.hosts, s.connection_upgrade), (2, true));
        assert!(s.transfer_encoding());
        assert!(!s.listed);
        assert!(!Scan::of(Fields::Map(&map(&[("host", "a")]))).transfer_encoding());
        assert!(Scan::of(Fields::Map(&map(&[("connection", "close, x-y")]))).listed);
    }

    #[test]
    fn managed_headers_include_forwarding_and_hop_by_hop() {
        for n in [
            "host",
            "via",
            "x-forwarded-for",
            "connection",
            "upgrade",
            "content-length",
        ] {
            assert!(is_managed_header(&HeaderName::from_static(n)), "{n}");
        }
        assert!(!is_managed_header(&HeaderName::from_static("x-tenant")));
    }
}
