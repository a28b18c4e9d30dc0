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

use http::header::{self, HeaderMap, HeaderValue};

use super::headers::{Scan, X_FORWARDED_FOR, X_FORWARDED_HOST, X_FORWARDED_PROTO};
pub use crate::model::headers::ViaValues;

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
    pub fn apply(&self, headers: &mut HeaderMap, scan: &Scan) {
        // One growth of the map for the additions (a new connection's map
        // is sized to exactly the headers hyper parsed).
        headers.reserve(5);
        if self.trusted {
            self.extend(headers);
        } else {
            self.replace(headers, scan);
        }
        headers.append(header::VIA, self.via.clone());
    }

    /// An untrusted client: whatever it said is replaced.
    fn replace(&self, headers: &mut HeaderMap, scan: &Scan) {
        headers.insert(X_FORWARDED_FOR.clone(), self.client.address.clone());
        headers.insert(
            X_FORWARDED_PROTO.clone(),
            HeaderValue::from_static(self.proto),
        );
        match self.host {
            Some(h) => headers.insert(X_FORWARDED_HOST.clone(), h.clone()),
            None => headers.remove(&X_FORWARDED_HOST),
        };
        if self.forwarded {
            headers.insert(header::FORWARDED, self.element());
        } else if scan.forwarded {
            headers.remove(header::FORWARDED);
        }
    }

    /// A trusted proxy: its chain is kept and this hop's client appended.
    fn extend(&self, headers: &mut HeaderMap) {
        let chain = joined(headers, &X_FORWARDED_FOR, &self.client.address);
        headers.insert(X_FORWARDED_FOR.clone(), chain);
        if !headers.contains_key(&X_FORWARDED_PROTO) {
            headers.insert(
                X_FORWARDED_PROTO.clone(),
                HeaderValue::from_static(self.proto),
            );
        }
        if let (Some(h), false) = (self.host, headers.contains_key(&X_FORWARDED_HOST)) {
            headers.insert(X_FORWARDED_HOST.clone(), h.clone());
        }
        if self.forwarded {
            let chain = joined(headers, &header::FORWARDED, &self.element());
            headers.insert(header::FORWARDED, chain);
        }
    }

    /// This hop's `Forwarded` element: `for=...;proto=...;host="..."`.
    fn element(&self) -> HeaderValue {
        let mut v = Vec::with_capacity(64);
        v.extend_from_slice(b"for=");
        v.extend_from_slice(self.client.node.as_bytes());
        v.extend_from_slice(b";proto=");
        v.extend_from_slice(self.proto.as_bytes());
        if let Some(h) = self.host {
            // A host with a port is not a token: always quoted.
            v.extend_from_slice(b";host=\"");
            v.extend_from_slice(h.as_bytes());
            v.push(b'"');
        }
        HeaderValue::from_bytes(&v).unwrap_or_else(|_| self.client.node.clone())
    }
}

/// Every field line of `name`, joined by `", "`, then `last`.
fn joined(headers: &HeaderMap, name: &header::HeaderName, last: &HeaderValue) -> HeaderValue {
    let mut v = Vec::new();
    for line in headers.get_all(name) {
        let line = line.as_bytes().trim_ascii();
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
        let scan = Scan::of(h);
        Forwarding {
            client,
            trusted,
            proto: "http",
            host: Some(&host),
            via: via.for_version(http::Version::HTTP_11),
            forwarded,
        }
        .apply(h, &scan);
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
