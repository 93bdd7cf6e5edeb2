//! The `PEERS` file: the disk id each member of the cluster was last seen
//! with, as a runtime recorded it.
//!
//! Raft assumes a node's storage survives it; a member back under its old
//! id with a wiped directory could vote twice in a term. A runtime that
//! tells peers its disk id (see [`crate::DiskId`]) refuses a member that
//! comes back with another one; this file lets that record outlive a
//! restart of the node that keeps it. The storage only stores the list:
//! what it means is the runtime's business.
//!
//! Layout: magic `XRPEERS\0`, format version (u32), entry count (u32), then
//! per entry the node id (u64) and the disk id (u128), all little-endian,
//! and a CRC32C of everything before it. Invariants: the file is replaced
//! atomically (temporary file, sync, rename, directory sync), so it is
//! either the old list or the new one; a file that fails its checks is
//! `Corrupt`, never read in part (`Storage::open` then reports it in
//! `Recovered::peer_disks_error` and goes on with an empty list); a
//! missing file is an empty list; the file is read only up to
//! [`PEERS_BYTES_MAX`].

use std::path::Path;

use xraft::NodeId;

use crate::codec::{le_u32, le_u64};
use crate::error::{Error, IoContext, Result};
use crate::fsutil::write_atomic;
use crate::identity::DiskId;

/// Name of the file.
pub(crate) const PEERS_FILE: &str = "PEERS";

const MAGIC: [u8; 8] = *b"XRPEERS\0";
const VERSION: u32 = 1;
const HEADER: usize = 16;
const ENTRY: usize = 24;

/// Most members the file holds; longer lists are refused when saved and
/// files longer than this are `Corrupt` when read.
pub const PEERS_MAX: usize = 4096;

/// Largest `PEERS` file read.
const PEERS_BYTES_MAX: u64 = (HEADER + PEERS_MAX * ENTRY + 4) as u64;

/// Writes `peers` (at most [`PEERS_MAX`]) to `dir/PEERS` atomically.
pub(crate) fn write(dir: &Path, peers: &[(NodeId, DiskId)]) -> Result<()> {
    if peers.len() > PEERS_MAX {
        return Err(Error::InvalidOptions("more peer disks than PEERS_MAX"));
    }
    write_atomic(dir, PEERS_FILE, &encode(peers))
}

/// Reads `dir/PEERS`; an empty list if there is none.
pub(crate) fn read(dir: &Path) -> Result<Vec<(NodeId, DiskId)>> {
    use std::io::Read;
    let path = dir.join(PEERS_FILE);
    let file = match std::fs::File::open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => return Err(Error::Io { path, source }),
    };
    let mut bytes = Vec::new();
    // One byte past the bound tells an oversized file apart.
    file.take(PEERS_BYTES_MAX + 1).read_to_end(&mut bytes).at(&path)?;
    decode(&bytes).map_err(|reason| Error::Corrupt { path, offset: 0, reason })
}

fn encode(peers: &[(NodeId, DiskId)]) -> Vec<u8> {
    let mut b = Vec::with_capacity(HEADER + peers.len() * ENTRY + 4);
    b.extend_from_slice(&MAGIC);
    b.extend_from_slice(&VERSION.to_le_bytes());
    b.extend_from_slice(&(peers.len() as u32).to_le_bytes());
    for (node, disk) in peers {
        b.extend_from_slice(&node.0.to_le_bytes());
        b.extend_from_slice(&disk.0.to_le_bytes());
    }
    let crc = crc32c::crc32c(&b);
    b.extend_from_slice(&crc.to_le_bytes());
    b
}

fn decode(b: &[u8]) -> std::result::Result<Vec<(NodeId, DiskId)>, &'static str> {
    if b.len() < HEADER + 4 || b[0..8] != MAGIC {
        return Err("not a peers file");
    }
    let body = b.len() - 4;
    if crc32c::crc32c(&b[..body]) != le_u32(&b[body..]) {
        return Err("peers file checksum mismatch");
    }
    if le_u32(&b[8..12]) != VERSION {
        return Err("unknown peers file version");
    }
    let count = le_u32(&b[12..16]) as usize;
    if count > PEERS_MAX || body != HEADER + count * ENTRY {
        return Err("peers file length does not match its entry count");
    }
    let entries = b[HEADER..body].chunks_exact(ENTRY).map(|e| {
        let disk = u128::from(le_u64(&e[16..24])) << 64 | u128::from(le_u64(&e[8..16]));
        (NodeId(le_u64(&e[0..8])), DiskId(disk))
    });
    Ok(entries.collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<(NodeId, DiskId)> {
        vec![(NodeId(2), DiskId(0x0123_4567_89ab_cdef_fedc_ba98_7654_3210)), (NodeId(9), DiskId(7))]
    }

    #[test]
    fn round_trip_and_every_flip_is_detected() {
        let bytes = encode(&sample());
        assert_eq!(decode(&bytes), Ok(sample()));
        assert_eq!(decode(&encode(&[])), Ok(Vec::new()));
        for i in 0..bytes.len() * 8 {
            let mut b = bytes.clone();
            b[i / 8] ^= 1 << (i % 8);
            assert!(decode(&b).is_err(), "flip {i}");
        }
        for cut in 0..bytes.len() {
            assert!(decode(&bytes[..cut]).is_err(), "cut at {cut}");
        }
    }

    #[test]
    fn files_round_trip_and_damage_is_corrupt() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert_eq!(read(dir.path()).expect("missing"), Vec::new());
        write(dir.path(), &sample()).expect("write");
        assert_eq!(read(dir.path()).expect("read"), sample());
        write(dir.path(), &sample()[..1]).expect("rewrite");
        assert_eq!(read(dir.path()).expect("read"), sample()[..1].to_vec());
        let path = dir.path().join(PEERS_FILE);
        std::fs::write(&path, b"garbage").expect("damage");
        assert!(matches!(read(dir.path()), Err(Error::Corrupt { .. })));
        std::fs::write(&path, vec![0u8; PEERS_BYTES_MAX as usize + 1]).expect("oversize");
        assert!(matches!(read(dir.path()), Err(Error::Corrupt { .. })));
        let many = vec![(NodeId(1), DiskId(1)); PEERS_MAX + 1];
        assert!(write(dir.path(), &many).is_err());
    }
}
