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

/// What [`HostIndexBuilder::insert`] did with a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Insert {
    Added,
    /// The key was already there with this value; the index keeps it.
    Duplicate {
        first_value: u32,
    },
    /// Empty, longer than [`MAX_KEY_LEN`], or past 4 GiB of long keys.
    Refused,
}

/// Builds a [`HostIndex`] in place, one key at a time.
///
/// The slots are allocated once, for the number of entries announced (the
/// caller counts lines first), and each key goes straight to its final
/// place: no list of pending entries, no second copy of the keys, so a
/// reload holds little beyond the finished index. Insertion keeps entries
/// in order of their home slot (Robin Hood order): a new key goes after
/// every entry whose home is at or before its own, and the entries behind
/// it in the cluster move up by one. Equal keys share a home, so a
/// duplicate is met on the way. More entries than announced, or a
/// displacement past 255, grow the table and place every key again.
pub struct HostIndexBuilder {
    slots: Vec<Slot>,
    homes: usize,
    long_keys: Vec<u8>,
    hasher: foldhash::quality::RandomState,
    len: usize,
}

impl Default for HostIndexBuilder {
    fn default() -> Self {
        Self::with_capacity(0)
    }
}

/// Slots past the last home (for entries displaced from the last homes).
fn slot_count(homes: usize) -> usize {
    homes + homes.min(usize::from(u8::MAX))
}

impl HostIndexBuilder {
    /// A builder with room for `entries` keys.
    pub fn with_capacity(entries: usize) -> Self {
        Self::with_homes(
            (entries * LOAD_DEN / LOAD_NUM).max(8),
            foldhash::quality::RandomState::default(),
        )
    }

    fn with_homes(homes: usize, hasher: foldhash::quality::RandomState) -> Self {
        HostIndexBuilder {
            slots: crate::mem::huge_vec(slot_count(homes), Slot::default()),
            homes,
            long_keys: Vec::new(),
            hasher,
            len: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Adds `key -> value` unless the key is already there.
    pub fn insert(&mut self, key: &[u8], value: u32) -> Insert {
        let h = self.hash(key);
        self.insert_hashed(key, h, value)
    }

    /// The hash of `key` in this index.
    pub fn hash(&self, key: &[u8]) -> u64 {
        hash(&self.hasher, key)
    }

    /// Brings the home slot of a key of hash `h` into cache (before
    /// [`HostIndexBuilder::insert_hashed`], a few keys ahead).
    #[inline]
    pub fn prefetch(&self, h: u64) {
        crate::mem::prefetch(&self.slots, home_of(h, self.homes));
    }

    /// [`HostIndexBuilder::insert`] with the key's hash already computed.
    pub fn insert_hashed(&mut self, key: &[u8], h: u64, value: u32) -> Insert {
        if key.is_empty() || key.len() > MAX_KEY_LEN {
            return Insert::Refused;
        }
        let pos = match self.find(key, h) {
            Ok(first_value) => return Insert::Duplicate { first_value },
            Err(pos) => pos,
        };
        let mut slot = Slot {
            tag: h as u16,
            len: key.len() as u8,
            disp: 0,
            value,
            key: [0; INLINE],
        };
        if key.len() <= INLINE {
            slot.key[..key.len()].copy_from_slice(key);
        } else {
            let Ok(offset) = u32::try_from(self.long_keys.len()) else {
                return Insert::Refused;
            };
            slot.key[..4].copy_from_slice(&offset.to_le_bytes());
            slot.key[4..].copy_from_slice(&key[..INLINE - 4]);
            self.long_keys.extend_from_slice(key);
        }
        if self.len + 1 > self.homes * LOAD_NUM / LOAD_DEN || !self.place_at(slot, h, pos) {
            self.grow(self.homes * 2);
            self.place(slot, h);
        }
        self.len += 1;
        Insert::Added
    }

    /// `Ok(value)` if `key` is present, else the position it goes to.
    fn find(&self, key: &[u8], h: u64) -> Result<u32, usize> {
        let home = home_of(h, self.homes);
        for (i, s) in self.slots.iter().enumerate().skip(home) {
            let at = i - usize::from(s.disp);
            if s.len == 0 || at > home {
                return Err(i);
            }
            if at == home
                && s.tag == h as u16
                && usize::from(s.len) == key.len()
                && self.key_of(s) == key
            {
                return Ok(s.value);
            }
        }
        Err(self.slots.len())
    }

    fn key_of<'a>(&'a self, s: &'a Slot) -> &'a [u8] {
        if usize::from(s.len) <= INLINE {
            &s.key[..usize::from(s.len)]
        } else {
            let off = u32::from_le_bytes([s.key[0], s.key[1], s.key[2], s.key[3]]) as usize;
            &self.long_keys[off..off + usize::from(s.len)]
        }
    }

    /// Puts a new (absent) entry at `pos`, the entries from there to the
    /// next empty slot moving up by one; `false` if a displacement would
    /// pass 255 or the cluster runs off the end (nothing is changed then).
    fn place_at(&mut self, mut slot: Slot, h: u64, pos: usize) -> bool {
        let Ok(disp) = u8::try_from(pos - home_of(h, self.homes)) else {
            return false;
        };
        let Some(end) = self
            .slots
            .get(pos..)
            .and_then(|rest| rest.iter().position(|s| s.len == 0))
            .map(|n| pos + n)
        else {
            return false;
        };
        if self.slots[pos..end].iter().any(|s| s.disp == u8::MAX) {
            return false;
        }
        self.slots.copy_within(pos..end, pos + 1);
        for s in &mut self.slots[pos + 1..=end] {
            s.disp += 1;
        }
        slot.disp = disp;
        self.slots[pos] = slot;
        true
    }

    /// Places an entry known to be absent, growing until it fits.
    fn place(&mut self, slot: Slot, h: u64) {
        loop {
            let pos = match self.find(self.key_of(&slot), h) {
                Err(pos) => pos,
                Ok(_) => return,
            };
            if self.place_at(slot, h, pos) {
                return;
            }
            // Only with a pathological hash distribution.
            self.grow(self.homes * 5 / 4 + 1);
        }
    }

    /// Places every entry again over at least `homes` homes.
    fn grow(&mut self, mut homes: usize) {
        'again: loop {
            let mut bigger = Self::with_homes(homes, self.hasher.clone());
            bigger.long_keys = std::mem::take(&mut self.long_keys);
            for slot in self.slots.iter().filter(|s| s.len != 0) {
                let h = hash(&bigger.hasher, bigger.key_of(slot));
                let Err(pos) = bigger.find(bigger.key_of(slot), h) else {
                    continue;
                };
                if !bigger.place_at(*slot, h, pos) {
                    self.long_keys = std::mem::take(&mut bigger.long_keys);
                    homes = homes * 5 / 4 + 1;
                    continue 'again;
                }
            }
            bigger.len = self.len;
            *self = bigger;
            return;
        }
    }

    /// The finished index.
    pub fn build(self) -> HostIndex {
        HostIndex {
            len: self.len,
            slots: self.slots.into_boxed_slice(),
            homes: self.homes,
            long_keys: self.long_keys.into_boxed_slice(),
            hasher: self.hasher,
        }
    }
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
        HostIndexBuilder::default().build()
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

    /// The index of `keys` (values 0, 10, 20...), and the duplicates as
    /// (position, the first one's value).
    fn build(keys: &[&str]) -> (HostIndex, Vec<(usize, u32)>) {
        let mut b = HostIndexBuilder::default();
        let mut dups = Vec::new();
        for (i, k) in keys.iter().enumerate() {
            match b.insert(k.as_bytes(), i as u32 * 10) {
                Insert::Added => {}
                Insert::Duplicate { first_value } => dups.push((i, first_value)),
                Insert::Refused => panic!("{k} refused"),
            }
        }
        (b.build(), dups)
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
        assert_eq!(dups, vec![(2, 0), (4, 10)]);
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
        assert_eq!(b.insert(&[b'a'; MAX_KEY_LEN + 1], 0), Insert::Refused);
        assert_eq!(b.insert(b"", 0), Insert::Refused);
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

    /// Every entry sits at its home plus its displacement, entries are in
    /// order of their homes, and there is no gap inside a cluster.
    fn assert_home_order(b: &HostIndexBuilder) {
        let mut last_home = 0;
        for (i, s) in b.slots.iter().enumerate() {
            if s.len == 0 {
                continue;
            }
            let home = i - usize::from(s.disp);
            assert!(home >= last_home, "slot {i} out of home order");
            assert!(home < b.homes);
            assert!(
                b.slots[home..i].iter().all(|t| t.len != 0),
                "gap before slot {i}"
            );
            let h = hash(&b.hasher, b.key_of(s));
            assert_eq!(home_of(h, b.homes), home);
            last_home = home;
        }
    }

    #[test]
    fn grows_past_the_announced_size_and_keeps_home_order() {
        let mut b = HostIndexBuilder::with_capacity(10);
        let keys: Vec<String> = (0..20_000).map(|i| format!("h{i}.example")).collect();
        for (i, k) in keys.iter().enumerate() {
            assert_eq!(b.insert(k.as_bytes(), i as u32), Insert::Added);
        }
        assert!(b.homes >= 20_000);
        assert_home_order(&b);
        assert_eq!(
            b.insert(b"h7.example", 1),
            Insert::Duplicate { first_value: 7 }
        );
        let idx = b.build();
        assert_eq!(idx.len(), 20_000);
        for (i, k) in keys.iter().enumerate() {
            assert_eq!(idx.get(k.as_bytes()), Some(i as u32));
        }
    }

    proptest! {
        #[test]
        fn insertion_keeps_home_order(keys in proptest::collection::vec("[a-z0-9.-]{1,30}", 0..400),
                                      announced in 0usize..500) {
            let mut b = HostIndexBuilder::with_capacity(announced);
            for (i, k) in keys.iter().enumerate() {
                b.insert(k.as_bytes(), i as u32);
            }
            assert_home_order(&b);
        }


        #[test]
        fn behaves_like_a_map(keys in proptest::collection::vec("[a-z0-9.-]{1,40}", 0..200),
                              probes in proptest::collection::vec("[a-z0-9.-]{1,40}", 0..50)) {
            let mut b = HostIndexBuilder::default();
            let mut model = std::collections::HashMap::new();
            for (i, k) in keys.iter().enumerate() {
                let first = model.get(k).copied();
                let got = b.insert(k.as_bytes(), i as u32);
                match first {
                    Some(first_value) => prop_assert_eq!(got, Insert::Duplicate { first_value }),
                    None => prop_assert_eq!(got, Insert::Added),
                }
                model.entry(k.clone()).or_insert(i as u32);
            }
            let idx = b.build();
            prop_assert_eq!(idx.len(), model.len());
            for k in keys.iter().chain(probes.iter()) {
                prop_assert_eq!(idx.get(k.as_bytes()), model.get(k).copied());
            }
        }
    }
}
