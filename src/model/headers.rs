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
    hop_bit(name.as_str().as_bytes()) != 0
        || name == header::HOST
        || name == header::VIA
        || name == header::CONTENT_LENGTH
        || name == X_FORWARDED_FOR
        || name == X_FORWARDED_PROTO
        || name == X_FORWARDED_HOST
        || name == header::FORWARDED
}

/// Whether `written` (a field name as sent, any case) is `lower` (a
/// lowercase name, as a `HeaderName` or our own literals are): ASCII case
/// folded eight bytes at a time. `<[u8]>::eq_ignore_ascii_case` folds both
/// sides byte by byte (~10 instructions a byte); names are compared many
/// times per request (the field view's lookups, the scan, the edits).
#[inline]
pub fn eq_lowercase(written: &[u8], lower: &[u8]) -> bool {
    debug_assert!(!lower.iter().any(u8::is_ascii_uppercase), "{lower:?}");
    if written.len() != lower.len() {
        return false;
    }
    let (mut a, mut b) = (written, lower);
    while a.len() >= 8 {
        let (x, rest_a) = a.split_at(8);
        let (y, rest_b) = b.split_at(8);
        if fold8(word(x)) != word(y) {
            return false;
        }
        (a, b) = (rest_a, rest_b);
    }
    if a.is_empty() {
        return true;
    }
    let (mut x, mut y) = ([0u8; 8], [0u8; 8]);
    x[..a.len()].copy_from_slice(a);
    y[..b.len()].copy_from_slice(b);
    fold8(u64::from_le_bytes(x)) == u64::from_le_bytes(y)
}

#[inline(always)]
fn word(eight: &[u8]) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(eight);
    u64::from_le_bytes(w)
}

/// The eight bytes of `x` with `A`..=`Z` lowered (any other byte kept).
#[inline(always)]
fn fold8(x: u64) -> u64 {
    const LOW7: u64 = 0x7f7f_7f7f_7f7f_7f7f;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let seven = x & LOW7;
    // A byte's high bit: its low seven bits are at least `A` (0x41) ...
    let from_a = seven + 0x3f3f_3f3f_3f3f_3f3f;
    // ... and above `Z` (0x5a).
    let past_z = seven + 0x2525_2525_2525_2525;
    let upper = from_a & !past_z & !x & HIGH;
    x | (upper >> 2)
}

/// The bit of a hop-by-hop header, 0 for any other; `name` as written
/// (any case: a head keeps the client's, a `HeaderName` is lowercase). By
/// length first: most names are ruled out by one compare. Comparing the
/// name with the seven in turn (`==` on `HeaderName`) was ~40
/// instructions a call, twice per request field (the scan and the edits):
/// ~950 per browser request (`CG_BROWSER=1 benches/callgrind.sh`).
#[inline]
pub fn hop_bit(name: &[u8]) -> u8 {
    let is = |n: &str| eq_lowercase(name, n.as_bytes());
    match name.len() {
        2 if is("te") => TE,
        7 if is("upgrade") => UPGRADE,
        10 if is("connection") => CONNECTION,
        10 if is("keep-alive") => KEEP_ALIVE_BIT,
        14 if is("http2-settings") => HTTP2_SETTINGS_BIT,
        16 if is("proxy-connection") => PROXY_CONNECTION_BIT,
        17 if is("transfer-encoding") => TRANSFER_ENCODING,
        _ => 0,
    }
}

/// Whether `name` (as written, any case) is a hop-by-hop header.
#[inline]
pub fn is_hop_by_hop(name: &[u8]) -> bool {
    hop_bit(name) != 0
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

    proptest::proptest! {
        /// The folded comparison is `eq_ignore_ascii_case` against a
        /// lowercase name, for any bytes written (any length around the
        /// eight-byte steps, any case, non-ASCII too).
        #[test]
        fn eq_lowercase_is_eq_ignore_ascii_case(
            lower in "[a-z0-9!#$%&'*+.^_`|~-]{0,40}",
            flips in proptest::collection::vec(proptest::prelude::any::<bool>(), 40),
            noise in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..40),
            at in 0usize..40,
        ) {
            let mut written: Vec<u8> = lower
                .bytes()
                .zip(&flips)
                .map(|(b, &up)| if up { b.to_ascii_uppercase() } else { b })
                .collect();
            proptest::prop_assert!(eq_lowercase(&written, lower.as_bytes()));
            if let Some(&n) = noise.first() {
                if at < written.len() {
                    written[at] = n;
                }
            }
            proptest::prop_assert_eq!(
                eq_lowercase(&written, lower.as_bytes()),
                written.eq_ignore_ascii_case(lower.as_bytes())
            );
            proptest::prop_assert_eq!(
                eq_lowercase(&noise, lower.as_bytes()),
                noise.eq_ignore_ascii_case(lower.as_bytes())
            );
        }
    }

    /// Every byte folds as `to_ascii_lowercase` does, wherever it sits in
    /// a word.
    #[test]
    fn fold8_lowers_ascii_letters_only() {
        for b in 0..=255u8 {
            for lane in 0..8 {
                let mut w = [b'x'; 8];
                w[lane] = b;
                let mut want = w;
                want[lane] = b.to_ascii_lowercase();
                assert_eq!(
                    fold8(u64::from_le_bytes(w)),
                    u64::from_le_bytes(want),
                    "{b}"
                );
            }
        }
    }

    /// Each hop-by-hop name has its own bit, in any case; names around
    /// them (a prefix, a suffix, the same length) have none.
    #[test]
    fn hop_bits_are_the_hop_by_hop_names_only() {
        let hop = [
            "connection",
            "te",
            "transfer-encoding",
            "upgrade",
            "keep-alive",
            "proxy-connection",
            "http2-settings",
        ];
        let mut seen = 0u8;
        for n in hop {
            let bit = hop_bit(n.as_bytes());
            assert_eq!(hop_bit(n.to_ascii_uppercase().as_bytes()), bit, "{n}");
            assert_eq!(bit.count_ones(), 1, "{n}");
            assert_eq!(seen & bit, 0, "{n}");
            seen |= bit;
            assert!(is_hop_by_hop(n.to_ascii_uppercase().as_bytes()), "{n}");
        }
        for n in [
            "t",
            "tf",
            "tes",
            "x-te",
            "upgrades",
            "connections",
            "keep-alivf",
            "content-length",
            "content-location",
            "host",
            "cookie",
            "x-forwarded-for",
            "http2-setting",
            "proxy-connectio",
            "transfer-encodinh",
        ] {
            assert_eq!(hop_bit(n.as_bytes()), 0, "{n}");
            assert!(!is_hop_by_hop(n.as_bytes()), "{n}");
        }
    }
}
