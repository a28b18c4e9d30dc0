//! The headers predictor manages: the hop-by-hop ones (removed at every
//! hop, as bits for a one-pass scan) and the forwarding ones it sets. A
//! config may not name any of them (a tenant or hop header), and the
//! request path rewrites only these.

use http::header::{self, HeaderName, HeaderValue};

pub static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
pub static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
pub static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
pub static KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
pub static PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");
pub static HTTP2_SETTINGS: HeaderName = HeaderName::from_static("http2-settings");

/// Hop-by-hop headers present in a message, as bits.
pub const CONNECTION: u8 = 1;
pub const TE: u8 = 2;
pub const TRANSFER_ENCODING: u8 = 4;
pub const UPGRADE: u8 = 8;
pub const KEEP_ALIVE_BIT: u8 = 16;
pub const PROXY_CONNECTION_BIT: u8 = 32;
pub const HTTP2_SETTINGS_BIT: u8 = 64;

/// Headers predictor sets or removes itself; a config may not reuse them.
pub fn is_managed_header(name: &HeaderName) -> bool {
    hop_bit(name) != 0
        || name == header::HOST
        || name == header::VIA
        || name == header::CONTENT_LENGTH
        || name == X_FORWARDED_FOR
        || name == X_FORWARDED_PROTO
        || name == X_FORWARDED_HOST
        || name == header::FORWARDED
}

/// The bit of a hop-by-hop header, 0 for any other.
pub fn hop_bit(name: &HeaderName) -> u8 {
    if name == header::CONNECTION {
        CONNECTION
    } else if name == header::TE {
        TE
    } else if name == header::TRANSFER_ENCODING {
        TRANSFER_ENCODING
    } else if name == header::UPGRADE {
        UPGRADE
    } else if name == KEEP_ALIVE {
        KEEP_ALIVE_BIT
    } else if name == PROXY_CONNECTION {
        PROXY_CONNECTION_BIT
    } else if name == HTTP2_SETTINGS {
        HTTP2_SETTINGS_BIT
    } else {
        0
    }
}

/// Whether `name` (as written on the wire, any case) is a hop-by-hop
/// header: the names [`hop_bit`] knows, without a `HeaderName`.
pub fn is_hop_by_hop(name: &[u8]) -> bool {
    let is = |n: &str| name.eq_ignore_ascii_case(n.as_bytes());
    match name.len() {
        2 => is("te"),
        7 => is("upgrade"),
        10 => is("connection") || is("keep-alive"),
        14 => is("http2-settings"),
        16 => is("proxy-connection"),
        17 => is("transfer-encoding"),
        _ => false,
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
