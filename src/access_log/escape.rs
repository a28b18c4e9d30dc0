//! JSON string escaping for the access log's values: most values (a path,
//! a host, a user agent) need none, and are found so eight bytes at a
//! time and copied whole; the rest go through a slow path that replaces
//! invalid UTF-8 and escapes byte by byte.

/// Appends `v` JSON-escaped: as it is when every byte is printable ASCII
/// other than `"` and `\`, else through the slow path.
#[inline]
pub(super) fn escape_into(out: &mut Vec<u8>, v: &[u8]) {
    if plain(v) {
        out.extend_from_slice(v);
    } else {
        escape_slow(out, &String::from_utf8_lossy(v));
    }
}

const ONES: u64 = 0x0101_0101_0101_0101;
const HIGH: u64 = 0x8080_8080_8080_8080;

/// Whether every byte of `v` is printable ASCII (0x20..0x80) other than
/// `"` and `\`, eight bytes at a time (a byte-wide count, vectorised,
/// cost more on the short values a log line has).
#[inline]
fn plain(v: &[u8]) -> bool {
    let mut words = v.chunks_exact(8);
    for w in &mut words {
        let mut b = [0u8; 8];
        b.copy_from_slice(w);
        if special(u64::from_le_bytes(b)) {
            return false;
        }
    }
    let rest = words.remainder();
    // The tail padded with a plain byte.
    let mut b = [b'a'; 8];
    b[..rest.len()].copy_from_slice(rest);
    !special(u64::from_le_bytes(b))
}

/// Whether a byte of `x` is below 0x20, at or above 0x80, `"` or `\`.
/// (The classic bit tricks: `x - ONES * n` borrows into a byte's high bit
/// when that byte is below `n`, if no byte is 0x80 or more, which the
/// first test rules out.)
#[inline(always)]
fn special(x: u64) -> bool {
    let has_zero = |y: u64| y.wrapping_sub(ONES) & !y & HIGH != 0;
    x & HIGH != 0
        || x.wrapping_sub(ONES * 0x20) & !x & HIGH != 0
        || has_zero(x ^ (ONES * u64::from(b'"')))
        || has_zero(x ^ (ONES * u64::from(b'\\')))
}

#[cold]
fn escape_slow(out: &mut Vec<u8>, v: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for &b in v.as_bytes() {
        match b {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            b if b < 0x20 => {
                out.extend_from_slice(b"\\u00");
                out.push(HEX[usize::from(b >> 4)]);
                out.push(HEX[usize::from(b & 0xf)]);
            }
            b => out.push(b),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every character (controls, quotes, backslashes, non-ASCII) comes
    /// back from a JSON parser as it went in.
    #[test]
    fn escaped_strings_parse_back_to_themselves() {
        let mut all: String = (0u32..0x300).filter_map(char::from_u32).collect();
        all.push_str("\"quoted\" \\ back\\slash \u{7f} \u{2028} \u{1F600}");
        for s in [all.as_str(), "plain", "", "\"", "\\", "\n\r\t\u{0}"] {
            let mut out = vec![b'"'];
            escape_into(&mut out, s.as_bytes());
            out.push(b'"');
            let back: String = serde_json::from_slice(&out).unwrap();
            assert_eq!(back, s);
        }
    }

    proptest::proptest! {
        /// The word-wise test is the byte-wise one, for any bytes at any
        /// length around the eight-byte steps.
        #[test]
        fn plain_is_every_byte_printable_ascii_but_quote_and_backslash(
            v in proptest::collection::vec(
                proptest::prop_oneof![
                    0x20u8..0x80,
                    proptest::prelude::any::<u8>(),
                    proptest::sample::select(vec![b'"', b'\\', 0x1f, 0x20, 0x7f, 0x80, 0xff, 0]),
                ],
                0..40,
            )
        ) {
            let want = v.iter().all(|&b| (0x20..0x80).contains(&b) && b != b'"' && b != b'\\');
            proptest::prop_assert_eq!(plain(&v), want);
        }
    }

    /// Each byte value, in each lane of a word, is judged alone.
    #[test]
    fn every_byte_in_every_lane() {
        for b in 0..=255u8 {
            for lane in 0..8 {
                let mut w = [b'a'; 8];
                w[lane] = b;
                let want = (0x20..0x80).contains(&b) && b != b'"' && b != b'\\';
                assert_eq!(plain(&w), want, "{b:#x} in lane {lane}");
            }
        }
    }
}
