//! The model state machine each simulated node runs: a register store.
//!
//! Owns the application side of the driving contract: applying committed
//! entries, taking a snapshot of its state (bytes the node ships in chunks)
//! and restoring one. Commands that encode a register write
//! ([`encode_write`]) set a key; every other command (lab payloads, probes)
//! only advances the state. Besides the registers, the state carries the
//! chained hash ([`crate::check::chain`]) of every entry applied so far, so
//! the oracle can compare a restored or restarted state with the committed
//! history at its index. Snapshot bytes end with a checksum: a torn or
//! mis-assembled snapshot is caught on restore.

use std::collections::BTreeMap;
use std::hash::Hasher;

use bytes::Bytes;
use xraft::{Entry, EntryKind, LogIndex};

use crate::check::{chain, EntryId};
use crate::trace::Fnv;

/// A register key.
pub type Key = u64;
/// A register value.
pub type Value = u64;

const WRITE_TAG: u8 = b'W';
const SNAP_MAGIC: u64 = 0x5852_4146_5453_4e50; // "XRAFTSNP"

/// The command that sets `key` to `value`.
pub fn encode_write(key: Key, value: Value) -> Bytes {
    let mut b = Vec::with_capacity(17);
    b.push(WRITE_TAG);
    b.extend_from_slice(&key.to_le_bytes());
    b.extend_from_slice(&value.to_le_bytes());
    Bytes::from(b)
}

/// The (key, value) of a register write command.
pub fn decode_write(data: &[u8]) -> Option<(Key, Value)> {
    if data.len() != 17 || data[0] != WRITE_TAG {
        return None;
    }
    let k = u64::from_le_bytes(data[1..9].try_into().ok()?);
    let v = u64::from_le_bytes(data[9..17].try_into().ok()?);
    Some((k, v))
}

/// One node's register store.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct App {
    /// The last index applied (or restored).
    pub index: LogIndex,
    /// Chained hash of every entry through `index`.
    pub chain: u64,
    /// The registers.
    pub kv: BTreeMap<Key, Value>,
}

impl App {
    /// Applies `e`, whose id is `id`.
    pub fn apply(&mut self, e: &Entry, id: EntryId) {
        self.index = e.index;
        self.chain = chain(self.chain, id);
        if e.kind == EntryKind::Normal {
            if let Some((k, v)) = decode_write(&e.data) {
                self.kv.insert(k, v);
            }
        }
    }

    /// The snapshot bytes of this state.
    pub fn encode(&self) -> Bytes {
        let mut b = Vec::with_capacity(40 + 16 * self.kv.len());
        for x in [SNAP_MAGIC, self.index.0, self.chain, self.kv.len() as u64] {
            b.extend_from_slice(&x.to_le_bytes());
        }
        for (k, v) in &self.kv {
            b.extend_from_slice(&k.to_le_bytes());
            b.extend_from_slice(&v.to_le_bytes());
        }
        let mut h = Fnv::new();
        h.write(&b);
        b.extend_from_slice(&h.finish().to_le_bytes());
        Bytes::from(b)
    }

    /// The state snapshot bytes stand for, or why they are not a snapshot.
    pub fn decode(b: &[u8]) -> Result<App, &'static str> {
        if b.len() < 40 || !b.len().is_multiple_of(8) {
            return Err("snapshot bytes have a wrong length");
        }
        let (body, sum) = b.split_at(b.len() - 8);
        let mut h = Fnv::new();
        h.write(body);
        let word = |k: usize| u64::from_le_bytes(body[8 * k..8 * k + 8].try_into().expect("8"));
        if h.finish() != u64::from_le_bytes(sum.try_into().expect("8 bytes")) {
            return Err("snapshot checksum mismatch");
        }
        if word(0) != SNAP_MAGIC {
            return Err("snapshot magic mismatch");
        }
        let n = word(3) as usize;
        if body.len() != 32 + 16 * n {
            return Err("snapshot register count mismatch");
        }
        let kv = (0..n).map(|j| (word(4 + 2 * j), word(5 + 2 * j))).collect();
        Ok(App { index: LogIndex(word(1)), chain: word(2), kv })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use xraft::Term;

    #[test]
    fn snapshots_round_trip_and_detect_damage() {
        let mut a = App::default();
        for (i, (k, v)) in [(1, 10), (2, 20), (1, 11)].into_iter().enumerate() {
            let e = Entry {
                index: LogIndex(i as u64 + 1),
                term: Term(1),
                kind: EntryKind::Normal,
                data: encode_write(k, v),
            };
            a.apply(&e, EntryId::of(&e));
        }
        assert_eq!(a.kv.get(&1), Some(&11));
        let b = a.encode();
        assert_eq!(App::decode(&b), Ok(a.clone()));
        let mut bad = b.to_vec();
        bad[20] ^= 1;
        assert!(App::decode(&bad).is_err());
        assert!(App::decode(&b[..b.len() - 8]).is_err());
        assert_eq!(decode_write(&encode_write(7, 9)), Some((7, 9)));
        assert_eq!(decode_write(b"12345678"), None);
    }
}
