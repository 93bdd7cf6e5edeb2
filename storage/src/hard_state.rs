//! The durable hard state (term, vote, commit) in two checksummed slots.
//!
//! Owns the `HARDSTATE` file: two 48-byte slots at offsets 0 and 4096, each
//! holding a sequence number, the hard state and a CRC32C. An update writes
//! the slot the newest value is *not* in and syncs it, so the newest durable
//! value is never overwritten; recovery takes the valid slot with the higher
//! sequence number.
//!
//! Invariants: both slots are valid on disk at all times (the file is created
//! whole, atomically, and each slot write is 48 bytes inside one 4 KiB-aligned
//! sector, which disks write atomically). A slot that fails its checksum is
//! therefore damage, not a torn write, and opening fails with
//! `Error::Corrupt` rather than silently going back to the older value: a
//! lost vote could let this node vote twice in one term.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use xraft::{HardState, LogIndex, NodeId, Term};

use crate::codec::{le_u32, le_u64};
use crate::error::{Error, IoContext, Result};
use crate::fsutil::write_atomic;

/// Name of the hard-state file.
pub(crate) const HARD_STATE_FILE: &str = "HARDSTATE";

const MAGIC: u32 = 0x5848_5331; // "XHS1"
const SLOT_LEN: usize = 48;
const SLOT_STRIDE: u64 = 4096;
const FILE_LEN: usize = SLOT_STRIDE as usize + SLOT_LEN;

/// The open hard-state file and the newest durable value.
#[derive(Debug)]
pub(crate) struct HardStateFile {
    path: PathBuf,
    file: File,
    /// Sequence number of the newest durable slot.
    seq: u64,
    /// The newest durable value.
    durable: HardState,
}

impl HardStateFile {
    /// Creates the file holding the default hard state (atomically).
    pub fn create(dir: &Path) -> Result<()> {
        let mut bytes = vec![0u8; FILE_LEN];
        // Sequence number s lives in slot s % 2.
        bytes[..SLOT_LEN].copy_from_slice(&encode_slot(0, &HardState::default()));
        let second = SLOT_STRIDE as usize;
        bytes[second..].copy_from_slice(&encode_slot(1, &HardState::default()));
        write_atomic(dir, HARD_STATE_FILE, &bytes)
    }

    /// Opens the file and recovers the newest value.
    pub fn open(dir: &Path) -> Result<Self> {
        let path = dir.join(HARD_STATE_FILE);
        let bytes = std::fs::read(&path).at(&path)?;
        if bytes.len() != FILE_LEN {
            let reason = "hard-state file has the wrong length";
            return Err(Error::Corrupt { path, offset: 0, reason });
        }
        let a = decode_slot(&bytes[..SLOT_LEN]);
        let b = decode_slot(&bytes[SLOT_STRIDE as usize..]);
        let (seq, durable) = match (a, b) {
            (Some(a), Some(b)) if a.0 != b.0 => {
                if a.0 > b.0 {
                    a
                } else {
                    b
                }
            }
            (Some(_), Some(_)) => {
                let reason = "both hard-state slots have the same sequence number";
                return Err(Error::Corrupt { path, offset: 0, reason });
            }
            (None, _) => {
                let reason = "hard-state slot checksum mismatch";
                return Err(Error::Corrupt { path, offset: 0, reason });
            }
            (_, None) => {
                let reason = "hard-state slot checksum mismatch";
                return Err(Error::Corrupt { path, offset: SLOT_STRIDE, reason });
            }
        };
        let file = OpenOptions::new().read(true).write(true).open(&path).at(&path)?;
        Ok(HardStateFile { path, file, seq, durable })
    }

    /// The newest durable value.
    pub fn durable(&self) -> HardState {
        self.durable
    }

    /// Writes `hs` into the older slot and syncs it (one `fdatasync`).
    pub fn write(&mut self, hs: HardState) -> Result<()> {
        let seq = self.seq + 1;
        let offset = (seq % 2) * SLOT_STRIDE;
        self.file.write_all_at(&encode_slot(seq, &hs), offset).at(&self.path)?;
        self.file.sync_data().at(&self.path)?;
        self.seq = seq;
        self.durable = hs;
        Ok(())
    }
}

/// Layout: magic u32, vote-present u32 (0 or 1), seq u64, term u64, vote
/// u64, commit u64, CRC32C u32 over the 44 bytes before it.
fn encode_slot(seq: u64, hs: &HardState) -> [u8; SLOT_LEN] {
    let mut b = [0u8; SLOT_LEN];
    b[0..4].copy_from_slice(&MAGIC.to_le_bytes());
    b[4..8].copy_from_slice(&u32::from(hs.vote.is_some()).to_le_bytes());
    b[8..16].copy_from_slice(&seq.to_le_bytes());
    b[16..24].copy_from_slice(&hs.term.0.to_le_bytes());
    b[24..32].copy_from_slice(&hs.vote.map_or(0, |v| v.0).to_le_bytes());
    b[32..40].copy_from_slice(&hs.commit.0.to_le_bytes());
    // 40..44 reserved.
    let crc = crc32c::crc32c(&b[0..44]);
    b[44..48].copy_from_slice(&crc.to_le_bytes());
    b
}

fn decode_slot(b: &[u8]) -> Option<(u64, HardState)> {
    let valid = b.len() >= SLOT_LEN
        && le_u32(&b[0..4]) == MAGIC
        && le_u32(&b[44..48]) == crc32c::crc32c(&b[0..44])
        && le_u32(&b[4..8]) <= 1
        && le_u32(&b[40..44]) == 0;
    if !valid {
        return None;
    }
    let vote = (le_u32(&b[4..8]) == 1).then(|| NodeId(le_u64(&b[24..32])));
    let hs =
        HardState { term: Term(le_u64(&b[16..24])), vote, commit: LogIndex(le_u64(&b[32..40])) };
    Some((le_u64(&b[8..16]), hs))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hs(t: u64, v: Option<u64>, c: u64) -> HardState {
        HardState { term: Term(t), vote: v.map(NodeId), commit: LogIndex(c) }
    }

    #[test]
    fn newest_slot_wins_across_reopen() {
        let dir = tempfile::tempdir().expect("tempdir");
        HardStateFile::create(dir.path()).expect("create");
        let mut f = HardStateFile::open(dir.path()).expect("open");
        assert_eq!(f.durable(), HardState::default());
        for i in 1..6 {
            f.write(hs(i, Some(i % 3), i * 10)).expect("write");
            let g = HardStateFile::open(dir.path()).expect("reopen");
            assert_eq!(g.durable(), hs(i, Some(i % 3), i * 10));
        }
    }

    #[test]
    fn every_bit_flip_in_a_slot_is_reported() {
        let dir = tempfile::tempdir().expect("tempdir");
        HardStateFile::create(dir.path()).expect("create");
        HardStateFile::open(dir.path()).expect("open").write(hs(7, None, 3)).expect("write");
        let path = dir.path().join(HARD_STATE_FILE);
        let good = std::fs::read(&path).expect("read");
        for slot in [0usize, SLOT_STRIDE as usize] {
            for bit in 0..SLOT_LEN * 8 {
                let mut b = good.clone();
                b[slot + bit / 8] ^= 1 << (bit % 8);
                std::fs::write(&path, &b).expect("write");
                assert!(HardStateFile::open(dir.path()).is_err(), "flip {slot}+{bit}");
            }
        }
    }

    #[test]
    fn slot_round_trip() {
        let v = hs(u64::MAX, Some(0), 5);
        assert_eq!(decode_slot(&encode_slot(9, &v)), Some((9, v)));
        assert_eq!(decode_slot(&encode_slot(9, &hs(1, None, 0))), Some((9, hs(1, None, 0))));
    }
}
