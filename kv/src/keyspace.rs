//! The key space: a hash table of keys to values with a fixed-seed hasher.
//!
//! Owns the store's primary index. A SwissTable (`hashbrown::HashTable`) is
//! one probe and one key comparison per lookup, where an ordered tree chases
//! a pointer and compares keys at every level. Invariants: the hasher's seed
//! is fixed (no per-process randomness: the crate stays pure and every
//! replica builds the same table from the same commands); no output depends
//! on the table's internal order — ordered views ([`KeySpace::sorted`]) sort
//! first, so snapshots keep one encoding per state. A write replaces key and
//! value together, so a key never keeps an older command's buffer alive.
//!
//! The table is split into [`SHARDS`] shards, each behind its own `Arc`, by
//! bits of the hash that neither the bucket index nor the control byte of a
//! shard's table uses. Cloning the key space (what a write pays after a
//! snapshot froze it) copies the shard pointers; a write then copies only
//! its own shard if the snapshot still holds it. So the copy-on-write after
//! a snapshot is spread over the following writes, at most 1/`SHARDS` of
//! the state each, instead of one whole copy on the apply path.

use std::fmt;
use std::hash::BuildHasher;
use std::sync::Arc;

use bytes::Bytes;
use foldhash::fast::FixedState;
use hashbrown::hash_table::Entry;
use hashbrown::HashTable;

/// Number of shards (a power of two).
pub(crate) const SHARDS: usize = 256;

type Shard = HashTable<(Bytes, Bytes)>;

/// The key space. Cloning it bumps one reference count per shard.
#[derive(Clone)]
pub(crate) struct KeySpace {
    shards: Box<[Arc<Shard>]>,
    len: usize,
}

impl Default for KeySpace {
    fn default() -> Self {
        KeySpace::with_capacity(0)
    }
}

impl fmt::Debug for KeySpace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeySpace").field("len", &self.len).finish()
    }
}

/// The shard of a hash: bits 32.. (a shard's table takes its bucket index
/// from the low bits and its control byte from the top seven).
#[inline]
fn shard_of(h: u64) -> usize {
    (h >> 32) as usize & (SHARDS - 1)
}

/// The first 16 bytes of `key`, zero-padded, as a big-endian integer: if
/// `a < b` as bytes then `prefix(a) <= prefix(b)`.
fn prefix(key: &[u8]) -> u128 {
    let mut b = [0u8; 16];
    let n = key.len().min(16);
    b[..n].copy_from_slice(&key[..n]);
    u128::from_be_bytes(b)
}

#[inline]
fn hash(key: &[u8]) -> u64 {
    FixedState::default().hash_one(key)
}

impl KeySpace {
    /// An empty key space with room for about `n` keys.
    pub fn with_capacity(n: usize) -> Self {
        let per = n.div_ceil(SHARDS);
        let shards = (0..SHARDS).map(|_| Arc::new(Shard::with_capacity(per))).collect();
        KeySpace { shards, len: 0 }
    }

    /// The shard for `h`, copied first if a snapshot shares it.
    fn shard_mut(&mut self, h: u64) -> &mut Shard {
        Arc::make_mut(&mut self.shards[shard_of(h)])
    }

    pub fn get(&self, key: &[u8]) -> Option<&Bytes> {
        let h = hash(key);
        self.shards[shard_of(h)].find(h, |(k, _)| k[..] == *key).map(|(_, v)| v)
    }

    pub fn contains(&self, key: &[u8]) -> bool {
        self.get(key).is_some()
    }

    /// Sets `key` to `value`, replacing both the stored key and value.
    pub fn insert(&mut self, key: Bytes, value: Bytes) {
        let h = hash(&key);
        let shard = Arc::make_mut(&mut self.shards[shard_of(h)]);
        match shard.entry(h, |(k, _)| *k == key, |(k, _)| hash(k)) {
            Entry::Occupied(mut e) => *e.get_mut() = (key, value),
            Entry::Vacant(e) => {
                e.insert((key, value));
                self.len += 1;
            }
        }
    }

    /// Removes `key`; its stored key and value if it existed.
    pub fn remove(&mut self, key: &[u8]) -> Option<(Bytes, Bytes)> {
        let h = hash(key);
        // Only a shard that holds the key is copied.
        self.shards[shard_of(h)].find(h, |(k, _)| k[..] == *key)?;
        let shard = Arc::make_mut(&mut self.shards[shard_of(h)]);
        match shard.find_entry(h, |(k, _)| k[..] == *key) {
            Ok(e) => {
                self.len -= 1;
                Some(e.remove().0)
            }
            Err(_) => None,
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Every pair in key order: O(keys · log keys), for snapshots and tests.
    pub fn sorted(&self) -> Vec<(&Bytes, &Bytes)> {
        // Most comparisons are settled by an integer compare of the keys'
        // first 16 bytes (zero-padded, big endian: a non-strict order
        // preserving prefix of the byte order); ties compare whole keys.
        let mut v: Vec<_> =
            self.shards.iter().flat_map(|s| s.iter()).map(|(k, v)| (prefix(k), k, v)).collect();
        v.sort_unstable_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.cmp(b.1)));
        v.into_iter().map(|(_, k, v)| (k, v)).collect()
    }

    /// Builds the key space from distinct pairs.
    pub fn from_distinct(pairs: Vec<(Bytes, Bytes)>) -> Self {
        let mut ks = KeySpace::with_capacity(pairs.len());
        ks.len = pairs.len();
        for p in pairs {
            let h = hash(&p.0);
            ks.shard_mut(h).insert_unique(h, p, |(k, _)| hash(k));
        }
        ks
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sorted_is_byte_order() {
        let mut keys: Vec<Vec<u8>> = vec![
            vec![],
            vec![0],
            vec![0, 0],
            b"a".to_vec(),
            b"a\0".to_vec(),
            b"a\x01".to_vec(),
            b"ab".to_vec(),
            vec![0xff; 17],
            vec![0xff; 16],
            [&[0xffu8; 16][..], &[0]].concat(),
            b"key:000000012345".to_vec(),
            b"key:0000000123456".to_vec(),
            b"key:000000012344z".to_vec(),
            b"key:00000001234".to_vec(),
        ];
        let mut x = 7u64;
        for _ in 0..500 {
            x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
            let len = (x >> 59) as usize;
            keys.push((0..len).map(|i| (x >> (i % 8 * 8)) as u8 & 0x83).collect());
        }
        let mut ks = KeySpace::default();
        for k in &keys {
            ks.insert(Bytes::from(k.clone()), Bytes::new());
        }
        keys.sort();
        keys.dedup();
        let got: Vec<Vec<u8>> = ks.sorted().into_iter().map(|(k, _)| k.to_vec()).collect();
        assert_eq!(got, keys);
    }

    #[test]
    fn insert_replaces_key_and_value() {
        let mut ks = KeySpace::default();
        let payload = Bytes::from_static(b"kv1");
        ks.insert(payload.slice(0..1), payload.slice(1..3));
        let newer = Bytes::from(b"k2".to_vec());
        ks.insert(newer.slice(0..1), newer.slice(1..2));
        assert_eq!(ks.len(), 1);
        let (k, v) = ks.sorted()[0];
        assert_eq!((&k[..], &v[..]), (&b"k"[..], &b"2"[..]));
        // The stored key is the newer command's bytes.
        assert_eq!(k.as_ptr(), newer.as_ptr());
        assert_eq!(ks.remove(b"k").map(|p| p.1), Some(Bytes::from_static(b"2")));
        assert!(ks.is_empty() && ks.remove(b"k").is_none());
    }

    /// A clone (a snapshot's frozen state) shares every shard; a write then
    /// copies only its own shard, and neither side sees the other's writes.
    #[test]
    fn a_write_after_a_clone_copies_one_shard() {
        let mut ks = KeySpace::default();
        for i in 0..10_000u32 {
            ks.insert(Bytes::from(format!("k{i}")), Bytes::from_static(b"v"));
        }
        let frozen = ks.clone();
        let shared = |a: &KeySpace, b: &KeySpace| {
            a.shards.iter().zip(b.shards.iter()).filter(|(x, y)| Arc::ptr_eq(x, y)).count()
        };
        assert_eq!(shared(&ks, &frozen), SHARDS);
        ks.insert(Bytes::from_static(b"k1"), Bytes::from_static(b"w"));
        assert_eq!(shared(&ks, &frozen), SHARDS - 1, "one shard copied");
        assert!(ks.remove(b"absent").is_none());
        assert_eq!(shared(&ks, &frozen), SHARDS - 1, "a miss copies nothing");
        ks.remove(b"k2");
        assert_eq!(frozen.get(b"k1").map(|v| &v[..]), Some(&b"v"[..]));
        assert_eq!(frozen.get(b"k2").map(|v| &v[..]), Some(&b"v"[..]));
        assert_eq!(ks.get(b"k1").map(|v| &v[..]), Some(&b"w"[..]));
        assert!(ks.get(b"k2").is_none());
        assert_eq!((ks.len(), frozen.len()), (9_999, 10_000));
        assert_eq!(frozen.sorted().len(), 10_000);
    }
}
