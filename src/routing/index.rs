//! [`HostIndex`]: an immutable hash index from host names to 32-bit values,
//! built once per snapshot and read by every request.
//!
//! Why not a `HashMap`: with a million hosts a lookup is bound by cache
//! misses (about 200 ns each on our machines). A SwissTable keeps control
//! bytes, entries and (for string keys) the key bytes in three places, so a
//! hit costs three dependent misses (measured: 502 ns). Here a host of up to
//! 24 bytes sits inline in a 32-byte slot next to its value, so a hit costs
//! one miss, sometimes two adjacent lines.
//!
//! Layout: linear probing in which entries are placed in order of their home
//! slot (the order Robin Hood hashing converges to). Each slot records its
//! displacement from home, so a miss stops at the first slot whose entry's
//! home lies past the probed key's home: absent hosts cost about as much as
//! present ones. Building sorts entries by hash, which also puts equal keys
//! next to each other: duplicates are found in the same pass.
//!
//! The hash is seeded per index from a random source (tenants choose their
//! host names; a fixed hash would let one of them build collisions).

use std::hash::{BuildHasher, Hasher};

/// Longest key stored inline in its slot.
const INLINE: usize = 24;
/// Entries per slot at most; lower is faster and larger.
const LOAD_NUM: usize = 875;
const LOAD_DEN: usize = 1000;
/// Longest key accepted (host names are at most 253 bytes).
pub const MAX_KEY_LEN: usize = 255;

#[derive(Clone, Copy, Default, PartialEq, Eq)]
#[repr(C, align(32))]
struct Slot {
    /// Low 16 bits of the key's hash.
    tag: u16,
    /// Key length; 0 marks an empty slot.
    len: u8,
    /// Distance from the key's home slot (at most 255).
    disp: u8,
    value: u32,
    /// The key, zero padded; for longer keys the first 4 bytes are the
    /// key's offset in `long_keys` and the rest its first 20 bytes.
    key: [u8; INLINE],
}

/// An immutable map from host bytes to a `u32`.
pub struct HostIndex {
    slots: Box<[Slot]>,
    /// Home slots are `0..homes`; displaced entries may run past it.
    homes: usize,
    long_keys: Box<[u8]>,
    hasher: foldhash::quality::RandomState,
    len: usize,
}

/// A key pushed twice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Duplicate {
    pub key: Vec<u8>,
    /// Tag (for instance the line) of the first occurrence.
    pub first: u32,
    pub first_value: u32,
    /// Tag of the later occurrence, which is left out of the index.
    pub again: u32,
    pub again_value: u32,
}

/// Collects keys for a [`HostIndex`].
#[derive(Default)]
pub struct HostIndexBuilder {
    keys: Vec<u8>,
    pending: Vec<Pending>,
}

#[derive(Clone, Copy)]
struct Pending {
    hash: u64,
    offset: u32,
    len: u8,
    value: u32,
    tag: u32,
}

impl HostIndexBuilder {
    pub fn with_capacity(entries: usize, key_bytes: usize) -> Self {
        HostIndexBuilder {
            keys: Vec::with_capacity(key_bytes),
            pending: Vec::with_capacity(entries),
        }
    }

    pub fn len(&self) -> usize {
        self.pending.len()
    }

    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }

    /// Adds `key -> value`; `tag` (a line number) is reported if the key
    /// turns out to be a duplicate. Keys longer than [`MAX_KEY_LEN`] or
    /// beyond 4 GiB of keys in total are refused with `false`.
    pub fn push(&mut self, key: &[u8], value: u32, tag: u32) -> bool {
        let Ok(offset) = u32::try_from(self.keys.len()) else {
            return false;
        };
        if key.is_empty() || key.len() > MAX_KEY_LEN {
            return false;
        }
        self.keys.extend_from_slice(key);
        self.pending.push(Pending {
            hash: 0,
            offset,
            len: key.len() as u8,
            value,
            tag,
        });
        true
    }

    /// Adds a key that `write` appends to the builder's key arena (so a
    /// normaliser can write its output in place). A `write` error is
    /// returned and nothing is added; an empty or oversized key is refused
    /// with `Ok(false)`.
    pub fn push_with<E>(
        &mut self,
        value: u32,
        tag: u32,
        write: impl FnOnce(&mut Vec<u8>) -> Result<(), E>,
    ) -> Result<bool, E> {
        let start = self.keys.len();
        let Ok(offset) = u32::try_from(start) else {
            return Ok(false);
        };
        if let Err(e) = write(&mut self.keys) {
            self.keys.truncate(start);
            return Err(e);
        }
        let len = self.keys.len() - start;
        if len == 0 || len > MAX_KEY_LEN {
            self.keys.truncate(start);
            return Ok(false);
        }
        self.pending.push(Pending {
            hash: 0,
            offset,
            len: len as u8,
            value,
            tag,
        });
        Ok(true)
    }

    /// Rewrites every value pushed so far.
    pub fn map_values(&mut self, f: impl Fn(u32) -> u32) {
        for p in &mut self.pending {
            p.value = f(p.value);
        }
    }

    /// Builds the index. Duplicated keys keep their first value and are
    /// returned, in the order of their later occurrence.
    pub fn build(self) -> (HostIndex, Vec<Duplicate>) {
        let HostIndexBuilder { keys, mut pending } = self;
        let hasher = foldhash::quality::RandomState::default();
        for p in &mut pending {
            p.hash = hash(&hasher, key_of(&keys, p));
        }
        let mut homes = (pending.len() * LOAD_DEN / LOAD_NUM).max(1);
        let mut duplicates = Vec::new();
        let mut slots = loop {
            let Some(slots) = place(&pending, homes, &keys) else {
                // A displacement above 255: only with a pathological hash
                // distribution; spread the homes wider and place again.
                homes = homes * 5 / 4 + 1;
                continue;
            };
            let found = duplicates_in(&slots, &keys);
            if found.is_empty() {
                break slots;
            }
            // A bad table (the config layer refuses it): report, drop the
            // later occurrences, place again.
            duplicates = describe_duplicates(&mut pending, &keys, &found);
        };
        let long_bytes: usize = slots
            .iter()
            .filter(|s| usize::from(s.len) > INLINE)
            .map(|s| usize::from(s.len))
            .sum();
        let mut long_keys = Vec::with_capacity(long_bytes);
        for slot in slots.iter_mut().filter(|s| usize::from(s.len) > INLINE) {
            let offset = u32::from_le_bytes([slot.key[0], slot.key[1], slot.key[2], slot.key[3]]);
            let src = &keys[offset as usize..offset as usize + usize::from(slot.len)];
            slot.key[..4].copy_from_slice(&(long_keys.len() as u32).to_le_bytes());
            slot.key[4..].copy_from_slice(&src[..INLINE - 4]);
            long_keys.extend_from_slice(src);
        }
        let len = slots.iter().filter(|s| s.len != 0).count();
        let index = HostIndex {
            len,
            slots: slots.into_boxed_slice(),
            homes,
            long_keys: long_keys.into_boxed_slice(),
            hasher,
        };
        (index, duplicates)
    }
}

/// Lays entries out by counting sort on their home slot: count per home,
/// then each home's first position is the larger of the home itself and
/// the end of the previous home's entries (linear probing, entries in home
/// order), then scatter in push order. Entries with `len == 0` are left
/// out. Long keys get their offset in `keys` for now.
fn place(pending: &[Pending], homes: usize, keys: &[u8]) -> Option<Vec<Slot>> {
    let mut next = vec![0u32; homes];
    for p in pending.iter().filter(|p| p.len != 0) {
        next[home_of(p.hash, homes)] += 1;
    }
    let mut end = 0usize;
    for (home, slot) in next.iter_mut().enumerate() {
        let count = *slot as usize;
        let start = end.max(home);
        if count > 0 && start + count - 1 - home > usize::from(u8::MAX) {
            return None;
        }
        *slot = u32::try_from(start).ok()?;
        end = start + count;
    }
    let mut slots = vec![Slot::default(); end.max(homes)];
    for p in pending.iter().filter(|p| p.len != 0) {
        let home = home_of(p.hash, homes);
        let pos = next[home] as usize;
        next[home] += 1;
        let mut slot = Slot {
            tag: p.hash as u16,
            len: p.len,
            disp: (pos - home) as u8,
            value: p.value,
            key: [0; INLINE],
        };
        if usize::from(p.len) <= INLINE {
            slot.key[..usize::from(p.len)].copy_from_slice(key_of(keys, p));
        } else {
            slot.key[..4].copy_from_slice(&p.offset.to_le_bytes());
        }
        slots[pos] = slot;
    }
    Some(slots)
}

/// Positions of slots holding a key already held by an earlier slot of the
/// same home (equal keys share a home; within a home, push order).
fn duplicates_in(slots: &[Slot], keys: &[u8]) -> Vec<usize> {
    fn full<'a>(s: &'a Slot, keys: &'a [u8]) -> &'a [u8] {
        if usize::from(s.len) <= INLINE {
            &s.key[..usize::from(s.len)]
        } else {
            let off = u32::from_le_bytes([s.key[0], s.key[1], s.key[2], s.key[3]]) as usize;
            &keys[off..off + usize::from(s.len)]
        }
    }
    let mut found = Vec::new();
    let mut group = 0;
    for i in 1..slots.len() {
        let home = |j: usize| j - usize::from(slots[j].disp);
        if slots[i].len == 0 || slots[i - 1].len == 0 || home(i) != home(i - 1) {
            group = i;
            continue;
        }
        let s = &slots[i];
        if slots[group..i]
            .iter()
            .any(|t| t.tag == s.tag && t.len == s.len && full(t, keys) == full(s, keys))
        {
            found.push(i);
        }
    }
    found
}

/// Names the duplicates found at `positions` with their tags and values,
/// and takes the later occurrences out of `pending` (`len = 0`).
fn describe_duplicates(
    pending: &mut [Pending],
    keys: &[u8],
    positions: &[usize],
) -> Vec<Duplicate> {
    let mut by_hash: std::collections::HashMap<u64, Vec<usize>> = Default::default();
    for (i, p) in pending.iter().enumerate().filter(|(_, p)| p.len != 0) {
        by_hash.entry(p.hash).or_default().push(i);
    }
    let mut out = Vec::new();
    for same_hash in by_hash.values().filter(|v| v.len() > 1) {
        // Push order: the first of each key is kept.
        for (n, &a) in same_hash.iter().enumerate() {
            if pending[a].len == 0 {
                continue;
            }
            for &b in &same_hash[n + 1..] {
                if pending[b].len != 0 && key_of(keys, &pending[a]) == key_of(keys, &pending[b]) {
                    out.push(Duplicate {
                        key: key_of(keys, &pending[b]).to_vec(),
                        first: pending[a].tag,
                        first_value: pending[a].value,
                        again: pending[b].tag,
                        again_value: pending[b].value,
                    });
                    pending[b].len = 0;
                }
            }
        }
    }
    debug_assert!(out.len() >= positions.len());
    out.sort_by_key(|d| d.again);
    out
}

fn key_of<'k>(keys: &'k [u8], p: &Pending) -> &'k [u8] {
    &keys[p.offset as usize..p.offset as usize + usize::from(p.len)]
}

fn hash(hasher: &foldhash::quality::RandomState, key: &[u8]) -> u64 {
    let mut h = hasher.build_hasher();
    h.write(key);
    h.finish()
}

/// Maps a hash onto `0..homes` by its high bits (monotonic in the hash).
#[inline]
fn home_of(hash: u64, homes: usize) -> usize {
    ((u128::from(hash) * homes as u128) >> 64) as usize
}

impl HostIndex {
    /// An index with no keys.
    pub fn empty() -> Self {
        HostIndexBuilder::default().build().0
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The value stored for `key`.
    #[inline]
    pub fn get(&self, key: &[u8]) -> Option<u32> {
        if self.len == 0 || key.is_empty() || key.len() > MAX_KEY_LEN {
            return None;
        }
        let h = hash(&self.hasher, key);
        let home = home_of(h, self.homes);
        let tag = h as u16;
        let mut probe = [0u8; INLINE];
        let inline = key.len() <= INLINE;
        if inline {
            probe[..key.len()].copy_from_slice(key);
        } else {
            probe[4..].copy_from_slice(&key[..INLINE - 4]);
        }
        for (d, slot) in self.slots[home..].iter().enumerate() {
            // Empty, or an entry whose home lies past ours: not present.
            if slot.len == 0 || usize::from(slot.disp) < d {
                return None;
            }
            if slot.tag == tag && usize::from(slot.len) == key.len() {
                if inline {
                    if slot.key == probe {
                        return Some(slot.value);
                    }
                } else if slot.key[4..] == probe[4..] && self.long_key(slot) == key {
                    return Some(slot.value);
                }
            }
        }
        None
    }

    fn long_key(&self, slot: &Slot) -> &[u8] {
        let off = u32::from_le_bytes([slot.key[0], slot.key[1], slot.key[2], slot.key[3]]) as usize;
        &self.long_keys[off..off + usize::from(slot.len)]
    }

    /// Rewrites every stored value (used to renumber after a build).
    pub fn map_values(&mut self, f: impl Fn(u32) -> u32) {
        for slot in self.slots.iter_mut().filter(|s| s.len != 0) {
            slot.value = f(slot.value);
        }
    }

    /// Every key and value, in slot order.
    pub fn iter(&self) -> impl Iterator<Item = (&[u8], u32)> + '_ {
        self.slots.iter().filter(|s| s.len != 0).map(move |s| {
            let key = if usize::from(s.len) <= INLINE {
                &s.key[..usize::from(s.len)]
            } else {
                self.long_key(s)
            };
            (key, s.value)
        })
    }

    /// Bytes held on the heap.
    pub fn heap_bytes(&self) -> usize {
        std::mem::size_of_val(&*self.slots) + self.long_keys.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn build(keys: &[&str]) -> (HostIndex, Vec<Duplicate>) {
        let mut b = HostIndexBuilder::default();
        for (i, k) in keys.iter().enumerate() {
            assert!(b.push(k.as_bytes(), i as u32 * 10, i as u32 + 1));
        }
        b.build()
    }

    #[test]
    fn a_slot_is_half_a_cache_line() {
        assert_eq!(std::mem::size_of::<Slot>(), 32);
        assert_eq!(std::mem::align_of::<Slot>(), 32);
    }

    #[test]
    fn finds_inline_and_long_keys() {
        let long = "a-rather-long-host-name-beyond-the-inline-part.example.com";
        let (idx, dups) = build(&["a.example", "b.example", long, "x"]);
        assert!(dups.is_empty());
        assert_eq!(idx.len(), 4);
        assert_eq!(idx.get(b"a.example"), Some(0));
        assert_eq!(idx.get(b"b.example"), Some(10));
        assert_eq!(idx.get(long.as_bytes()), Some(20));
        assert_eq!(idx.get(b"x"), Some(30));
        assert_eq!(idx.get(b"c.example"), None);
        assert_eq!(idx.get(b""), None);
        // Same first 20 bytes as the long key, different tail.
        let near = long.replace(".com", ".net");
        assert_eq!(idx.get(near.as_bytes()), None);
        // A 24-byte key (the inline limit) and a prefix of it.
        let (idx, _) = build(&["exactly-24-bytes.example", "exactly-24-bytes.exampl"]);
        assert_eq!(idx.get(b"exactly-24-bytes.example"), Some(0));
        assert_eq!(idx.get(b"exactly-24-bytes.exampl"), Some(10));
    }

    #[test]
    fn duplicates_keep_the_first_and_are_reported() {
        let (idx, dups) = build(&["a", "b", "a", "c", "b"]);
        assert_eq!(idx.len(), 3);
        assert_eq!(idx.get(b"a"), Some(0));
        assert_eq!(idx.get(b"b"), Some(10));
        assert_eq!(
            dups.iter().map(|d| (d.first, d.again)).collect::<Vec<_>>(),
            vec![(1, 3), (2, 5)]
        );
        assert_eq!(dups[0].key, b"a");
        assert_eq!((dups[1].first_value, dups[1].again_value), (10, 40));
    }

    #[test]
    fn empty_index_finds_nothing() {
        let idx = HostIndex::empty();
        assert!(idx.is_empty());
        assert_eq!(idx.get(b"a"), None);
        assert_eq!(idx.iter().count(), 0);
    }

    #[test]
    fn refuses_oversized_keys() {
        let mut b = HostIndexBuilder::default();
        assert!(!b.push(&[b'a'; MAX_KEY_LEN + 1], 0, 0));
        assert!(!b.push(b"", 0, 0));
        assert!(b.is_empty());
    }

    #[test]
    fn many_keys_all_found_and_misses_stop_early() {
        let keys: Vec<String> = (0..50_000).map(|i| format!("site{i}.example")).collect();
        let refs: Vec<&str> = keys.iter().map(|s| s.as_str()).collect();
        let (idx, dups) = build(&refs);
        assert!(dups.is_empty());
        for (i, k) in keys.iter().enumerate() {
            assert_eq!(idx.get(k.as_bytes()), Some(i as u32 * 10), "{k}");
        }
        for i in 0..1000 {
            assert_eq!(idx.get(format!("other{i}.example").as_bytes()), None);
        }
        let mut seen: Vec<u32> = idx.iter().map(|(_, v)| v).collect();
        seen.sort_unstable();
        assert_eq!(seen, (0..50_000).map(|i| i * 10).collect::<Vec<_>>());
    }

    proptest! {
        #[test]
        fn behaves_like_a_map(keys in proptest::collection::vec("[a-z0-9.-]{1,40}", 0..200),
                              probes in proptest::collection::vec("[a-z0-9.-]{1,40}", 0..50)) {
            let mut b = HostIndexBuilder::default();
            let mut model = std::collections::HashMap::new();
            for (i, k) in keys.iter().enumerate() {
                b.push(k.as_bytes(), i as u32, i as u32);
                model.entry(k.clone()).or_insert(i as u32);
            }
            let (idx, dups) = b.build();
            prop_assert_eq!(idx.len(), model.len());
            prop_assert_eq!(dups.len(), keys.len() - model.len());
            for k in keys.iter().chain(probes.iter()) {
                prop_assert_eq!(idx.get(k.as_bytes()), model.get(k).copied());
            }
        }
    }
}
