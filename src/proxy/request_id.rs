//! Request ids: one per request, set on the request sent upstream (so a
//! webserver's or the legacy balancer's log line can be joined with
//! predictor's) and written in the access log.
//!
//! An id is 32 hex digits: a random per-worker prefix (from the OS's
//! randomness, through `RandomState`) and the worker's request counter,
//! so ids never repeat within a process and practically never across
//! instances, without a shared counter or a random draw per request.
//!
//! The ids are written one after another into a worker's chunk of memory
//! and each is a shared slice of it: an id is cloned for the request sent
//! upstream, the log and the response, and a `HeaderValue` of its own
//! (copied from a slice) was allocated, then given a shared header at its
//! first clone, and both freed: two allocations per request, now one per
//! [`IDS_PER_CHUNK`] ids. A chunk is freed when its last id is.

use std::cell::{Cell, RefCell};
use std::hash::BuildHasher;

use bytes::BytesMut;
use http::HeaderValue;

/// An id's length: 32 hex digits.
const ID_LEN: usize = 32;
/// Ids per chunk (4 KiB).
const IDS_PER_CHUNK: usize = 128;

/// A worker's id source (not shared between threads).
pub struct RequestIds {
    prefix: u64,
    next: Cell<u64>,
    /// Where the next ids are written.
    chunk: RefCell<BytesMut>,
}

impl RequestIds {
    pub fn new() -> RequestIds {
        let random = std::collections::hash_map::RandomState::new();
        RequestIds {
            prefix: random.hash_one(std::thread::current().id()),
            next: Cell::new(random.hash_one(1u8) >> 16),
            chunk: RefCell::default(),
        }
    }

    /// A new id.
    pub fn next(&self) -> HeaderValue {
        let n = self.next.get();
        self.next.set(n.wrapping_add(1));
        let mut id = [0u8; ID_LEN];
        id[..16].copy_from_slice(&hex16(self.prefix));
        id[16..].copy_from_slice(&hex16(n));
        let mut chunk = self.chunk.borrow_mut();
        if chunk.capacity() < ID_LEN {
            *chunk = BytesMut::with_capacity(ID_LEN * IDS_PER_CHUNK);
        }
        chunk.extend_from_slice(&id);
        HeaderValue::from_maybe_shared(chunk.split().freeze())
            .unwrap_or(HeaderValue::from_static("0"))
    }
}

/// The 16 lowercase hex digits of `x`, most significant first, eight at
/// a time in a word (`format!` costs ten times as much, a lookup table per
/// digit three times).
fn hex16(x: u64) -> [u8; 16] {
    let mut out = [0u8; 16];
    out[..8].copy_from_slice(&hex8(x >> 32).to_be_bytes());
    out[8..].copy_from_slice(&hex8(x & 0xffff_ffff).to_be_bytes());
    out
}

/// The eight hex digits of a 32-bit `x`, one per byte, the most
/// significant in the word's most significant byte.
fn hex8(x: u64) -> u64 {
    // Each nibble to a byte of its own: 0x12345678 -> 0x0102030405060708.
    let mut v = (x | (x << 16)) & 0x0000_ffff_0000_ffff;
    v = (v | (v << 8)) & 0x00ff_00ff_00ff_00ff;
    v = (v | (v << 4)) & 0x0f0f_0f0f_0f0f_0f0f;
    // 1 in the bytes whose nibble is 10 or more (nibble + 6 carries into
    // bit 4; no byte overflows).
    let letters = ((v + 0x0606_0606_0606_0606) >> 4) & 0x0101_0101_0101_0101;
    v + 0x3030_3030_3030_3030 + letters * u64::from(b'a' - b'0' - 10)
}

impl Default for RequestIds {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_hex_and_distinct_within_and_across_workers() {
        let (a, b) = (RequestIds::new(), RequestIds::new());
        let ids: std::collections::HashSet<_> =
            (0..1000).flat_map(|_| [a.next(), b.next()]).collect();
        assert_eq!(ids.len(), 2000);
        for id in ids.iter().take(5) {
            assert_eq!(id.len(), 32);
            assert!(id.as_bytes().iter().all(u8::is_ascii_hexdigit));
        }
        // Prefix, then the counter.
        let ids = RequestIds {
            prefix: 0x0123_4567_89ab_cdef,
            next: Cell::new(0xfe),
            chunk: RefCell::default(),
        };
        assert_eq!(ids.next(), "0123456789abcdef00000000000000fe");
        assert_eq!(ids.next(), "0123456789abcdef00000000000000ff");
    }

    proptest::proptest! {
        #[test]
        fn hex_digits_are_formats(x: u64) {
            let got = hex16(x);
            proptest::prop_assert_eq!(std::str::from_utf8(&got).unwrap(), format!("{x:016x}"));
        }
    }

    #[test]
    fn hex_digits_at_the_edges() {
        for x in [
            0,
            9,
            10,
            15,
            16,
            0x9a,
            u64::MAX,
            0x0123_4567_89ab_cdef,
            1 << 63,
        ] {
            assert_eq!(std::str::from_utf8(&hex16(x)).unwrap(), format!("{x:016x}"));
        }
        // Every nibble value in every position.
        for pos in 0..16 {
            for nibble in 0..16u64 {
                let x = nibble << (4 * pos);
                assert_eq!(std::str::from_utf8(&hex16(x)).unwrap(), format!("{x:016x}"));
            }
        }
    }

    #[test]
    fn ids_outlive_their_chunk_and_the_next_chunk_starts_clean() {
        let ids = RequestIds {
            prefix: 0,
            next: Cell::new(0),
            chunk: RefCell::default(),
        };
        // Three chunks' worth, some kept, some dropped at once: each kept
        // id is its own 32 digits, whatever was written after it.
        let kept: Vec<HeaderValue> = (0..3 * IDS_PER_CHUNK as u64 + 5)
            .filter_map(|n| {
                let id = ids.next();
                (n % 3 == 0).then_some(id)
            })
            .collect();
        for (i, id) in kept.iter().enumerate() {
            assert_eq!(id.len(), ID_LEN);
            assert_eq!(*id, format!("{:016x}{:016x}", 0, i * 3));
        }
    }
}
