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
        // Hex digits by table: `format!` costs ten times as much, on
        // every request.
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        let mut id = [0u8; ID_LEN];
        for (i, word) in [self.prefix, n].into_iter().enumerate() {
            for (j, d) in id[i * 16..(i + 1) * 16].iter_mut().enumerate() {
                *d = DIGITS[((word >> (60 - 4 * j)) & 0xf) as usize];
            }
        }
        let mut chunk = self.chunk.borrow_mut();
        if chunk.capacity() < ID_LEN {
            *chunk = BytesMut::with_capacity(ID_LEN * IDS_PER_CHUNK);
        }
        chunk.extend_from_slice(&id);
        HeaderValue::from_maybe_shared(chunk.split().freeze())
            .unwrap_or(HeaderValue::from_static("0"))
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
            chunk: RefCell::default(),
        };
        assert_eq!(ids.next(), "0123456789abcdef00000000000000fe");
        assert_eq!(ids.next(), "0123456789abcdef00000000000000ff");
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
