//! Header rules of an intermediary (RFC 9110 §7.6, RFC 9113 §8.2.2).
//!
//! Hop-by-hop headers (the fixed list and every header named in
//! `Connection`) never cross predictor in either direction; an upgrade keeps
//! only `Upgrade` and `Connection: upgrade`, and `Upgrade: h2c` is never
//! passed on. Requests get `X-Forwarded-For` (the client's address, replacing
//! anything the client sent), `X-Forwarded-Proto`, `X-Forwarded-Host` and a
//! `Via` hop; responses get a `Via` hop. No other header name or value is
//! rewritten.

use http::header::{self, HeaderMap, HeaderName, HeaderValue};

pub static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
pub static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
pub static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
static KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
static PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");
static HTTP2_SETTINGS: HeaderName = HeaderName::from_static("http2-settings");

/// Headers that belong to one connection, never forwarded.
fn is_hop_by_hop(name: &HeaderName) -> bool {
    name == header::CONNECTION
        || name == header::TE
        || name == header::TRANSFER_ENCODING
        || name == header::UPGRADE
        || name == KEEP_ALIVE
        || name == PROXY_CONNECTION
        || name == HTTP2_SETTINGS
}

/// Headers predictor sets or removes itself; a config may not reuse them.
pub fn is_managed_header(name: &HeaderName) -> bool {
    is_hop_by_hop(name)
        || name == header::HOST
        || name == header::VIA
        || name == header::CONTENT_LENGTH
        || name == X_FORWARDED_FOR
        || name == X_FORWARDED_PROTO
        || name == X_FORWARDED_HOST
}

/// Whether a comma-separated header contains `token` (case-insensitive).
pub fn has_token(headers: &HeaderMap, name: &HeaderName, token: &str) -> bool {
    headers.get_all(name).iter().any(|v| {
        v.as_bytes()
            .split(|&b| b == b',')
            .any(|t| t.trim_ascii().eq_ignore_ascii_case(token.as_bytes()))
    })
}

/// The protocol a request asks to switch to, when it is an upgrade we pass
/// through (HTTP/1.1 `Connection: upgrade` + `Upgrade`, not `h2c`).
pub fn upgrade_protocol(headers: &HeaderMap) -> Option<&HeaderValue> {
    let up = headers.get(header::UPGRADE)?;
    let h2c = up
        .as_bytes()
        .split(|&b| b == b',')
        .any(|t| t.trim_ascii().eq_ignore_ascii_case(b"h2c"));
    if h2c || !has_token(headers, &header::CONNECTION, "upgrade") {
        return None;
    }
    Some(up)
}

/// Removes hop-by-hop headers. With `upgrade`, keeps `Upgrade` and sets
/// `Connection: upgrade` (the only connection option passed on).
pub fn strip_hop_by_hop(headers: &mut HeaderMap, upgrade: Option<HeaderValue>) {
    if !headers.keys().any(is_hop_by_hop) {
        if let Some(up) = upgrade {
            set_upgrade(headers, up);
        }
        return;
    }
    // Names listed in Connection go too: collect the (rare) extra names
    // first, then remove them by &str.
    let mut listed: Vec<String> = Vec::new();
    for v in headers.get_all(header::CONNECTION) {
        for t in v.as_bytes().split(|&b| b == b',') {
            let t = t.trim_ascii();
            if !t.is_empty()
                && !t.eq_ignore_ascii_case(b"close")
                && !t.eq_ignore_ascii_case(b"keep-alive")
                && !t.eq_ignore_ascii_case(b"upgrade")
            {
                listed.push(String::from_utf8_lossy(t).to_ascii_lowercase());
            }
        }
    }
    for name in &listed {
        // A client may not use Connection to strip the Host we route by.
        if name != "host" {
            headers.remove(name.as_str());
        }
    }
    headers.remove(header::CONNECTION);
    headers.remove(header::TE);
    headers.remove(header::TRANSFER_ENCODING);
    headers.remove(header::UPGRADE);
    headers.remove(&KEEP_ALIVE);
    headers.remove(&PROXY_CONNECTION);
    headers.remove(&HTTP2_SETTINGS);
    if let Some(up) = upgrade {
        set_upgrade(headers, up);
    }
}

fn set_upgrade(headers: &mut HeaderMap, up: HeaderValue) {
    headers.insert(header::UPGRADE, up);
    headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
}

/// HTTP/2 may split `Cookie` into several fields; HTTP/1.1 needs one,
/// joined with `"; "` (RFC 9113 §8.2.3).
pub fn merge_cookies(headers: &mut HeaderMap) {
    let mut all = headers.get_all(header::COOKIE).iter();
    let (Some(first), Some(_)) = (all.next(), all.next()) else {
        return;
    };
    let mut joined = first.as_bytes().to_vec();
    for v in headers.get_all(header::COOKIE).iter().skip(1) {
        joined.extend_from_slice(b"; ");
        joined.extend_from_slice(v.as_bytes());
    }
    if let Ok(v) = HeaderValue::from_bytes(&joined) {
        headers.insert(header::COOKIE, v);
    }
}

/// Adds the forwarding headers of a request passed upstream.
pub struct Forwarding<'a> {
    /// The client's address, formatted once per connection.
    pub client: &'a HeaderValue,
    pub proto: &'static str,
    /// The authority the request was routed by.
    pub host: &'a HeaderValue,
    /// This hop, for example `1.1 predictor`.
    pub via: &'a HeaderValue,
}

impl Forwarding<'_> {
    pub fn apply(&self, headers: &mut HeaderMap) {
        headers.insert(X_FORWARDED_FOR.clone(), self.client.clone());
        headers.insert(
            X_FORWARDED_PROTO.clone(),
            HeaderValue::from_static(self.proto),
        );
        headers.insert(X_FORWARDED_HOST.clone(), self.host.clone());
        headers.append(header::VIA, self.via.clone());
    }
}

/// `Via` values for this hop, by the version the message was received in.
#[derive(Debug, Clone)]
pub struct ViaValues {
    http10: HeaderValue,
    http11: HeaderValue,
    http2: HeaderValue,
}

impl ViaValues {
    /// `name` is an RFC 9110 token (validated in config).
    pub fn new(name: &str) -> Self {
        let v = |version: &str| {
            HeaderValue::from_str(&format!("{version} {name}"))
                .unwrap_or_else(|_| HeaderValue::from_static("1.1 predictor"))
        };
        ViaValues {
            http10: v("1.0"),
            http11: v("1.1"),
            http2: v("2.0"),
        }
    }

    pub fn for_version(&self, version: http::Version) -> &HeaderValue {
        match version {
            http::Version::HTTP_10 | http::Version::HTTP_09 => &self.http10,
            http::Version::HTTP_2 | http::Version::HTTP_3 => &self.http2,
            _ => &self.http11,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut m = HeaderMap::new();
        for (k, v) in pairs {
            m.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        m
    }

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
        strip_hop_by_hop(&mut h, None);
        let mut names: Vec<&str> = h.keys().map(|k| k.as_str()).collect();
        names.sort_unstable();
        assert_eq!(names, vec!["cookie", "x-kept"]);
    }

    #[test]
    fn connection_cannot_remove_host() {
        let mut h = map(&[("connection", "host"), ("host", "a.example")]);
        strip_hop_by_hop(&mut h, None);
        assert_eq!(h.get("host").unwrap(), "a.example");
    }

    #[test]
    fn upgrade_keeps_only_upgrade_and_connection_upgrade() {
        let mut h = map(&[
            ("connection", "Upgrade, x-a"),
            ("upgrade", "websocket"),
            ("x-a", "1"),
        ]);
        let up = upgrade_protocol(&h).cloned();
        assert_eq!(up.as_ref().unwrap(), "websocket");
        strip_hop_by_hop(&mut h, up);
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
        assert!(upgrade_protocol(&h).is_none());
        let h = map(&[("upgrade", "websocket")]);
        assert!(upgrade_protocol(&h).is_none(), "no Connection: upgrade");
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
    fn forwarding_replaces_client_supplied_values() {
        let mut h = map(&[
            ("x-forwarded-for", "6.6.6.6"),
            ("x-forwarded-proto", "https"),
            ("x-forwarded-host", "evil.example"),
            ("via", "1.1 cdn"),
        ]);
        let client = HeaderValue::from_static("192.0.2.7");
        let host = HeaderValue::from_static("Site.example:8080");
        let via = ViaValues::new("predictor");
        Forwarding {
            client: &client,
            proto: "http",
            host: &host,
            via: via.for_version(http::Version::HTTP_11),
        }
        .apply(&mut h);
        assert_eq!(
            h.get_all("x-forwarded-for").iter().collect::<Vec<_>>(),
            vec!["192.0.2.7"]
        );
        assert_eq!(h.get("x-forwarded-proto").unwrap(), "http");
        assert_eq!(h.get("x-forwarded-host").unwrap(), "Site.example:8080");
        assert_eq!(
            h.get_all("via").iter().collect::<Vec<_>>(),
            vec!["1.1 cdn", "1.1 predictor"]
        );
        assert_eq!(via.for_version(http::Version::HTTP_2), "2.0 predictor");
        assert_eq!(via.for_version(http::Version::HTTP_10), "1.0 predictor");
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
