//! Request ids: one per request, set on the request sent upstream (so a
//! webserver's or the legacy balancer's log line can be joined with
//! predictor's) and written in the access log.
//!
//! An id is 32 hex digits: a random per-worker prefix (from the OS's
//! randomness, through `RandomState`) and the worker's request counter,
//! so ids never repeat within a process and practically never across
//! instances, without a shared counter or a random draw per request.

use std::cell::Cell;
use std::hash::BuildHasher;

use http::HeaderValue;

/// A worker's id source (not shared between threads).
pub struct RequestIds {
    prefix: u64,
    next: Cell<u64>,
}

impl RequestIds {
    pub fn new() -> RequestIds {
        let random = std::collections::hash_map::RandomState::new();
        RequestIds {
            prefix: random.hash_one(std::thread::current().id()),
            next: Cell::new(random.hash_one(1u8) >> 16),
        }
    }

    /// A new id.
    pub fn next(&self) -> HeaderValue {
        let n = self.next.get();
        self.next.set(n.wrapping_add(1));
        // Hex digits by table: `format!` costs ten times as much, on
        // every request.
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        let mut id = [0u8; 32];
        for (i, word) in [self.prefix, n].into_iter().enumerate() {
            for (j, d) in id[i * 16..(i + 1) * 16].iter_mut().enumerate() {
                *d = DIGITS[((word >> (60 - 4 * j)) & 0xf) as usize];
            }
        }
        HeaderValue::from_bytes(&id).unwrap_or(HeaderValue::from_static("0"))
    }
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
        };
        assert_eq!(ids.next(), "0123456789abcdef00000000000000fe");
        assert_eq!(ids.next(), "0123456789abcdef00000000000000ff");
    }
}
