//! Who owns a data directory: the lock file and the identity file.
//!
//! Owns `LOCK` (an exclusive advisory lock held for the storage's lifetime,
//! so a second process, or a second handle in this process, is refused) and
//! `IDENTITY` (format version, a random disk id, node id and cluster id,
//! with a CRC32C). Invariants: `IDENTITY` is written once, atomically, as the
//! last step of initialising a directory, so a directory without it holds no
//! log or snapshot that anyone acknowledged; it is never rewritten.

use std::fmt;
use std::fs::{File, OpenOptions, TryLockError};
use std::path::Path;

use xraft::NodeId;

use crate::codec::{le_u32, le_u64};
use crate::error::{Error, IoContext, Result};
use crate::fsutil::{random_u64, write_atomic};

/// Name of the lock file.
pub(crate) const LOCK_FILE: &str = "LOCK";
/// Name of the identity file.
pub(crate) const IDENTITY_FILE: &str = "IDENTITY";

const MAGIC: [u8; 8] = *b"XRIDENT\0";
const VERSION: u32 = 1;
const LEN: usize = 52;

/// A random id given to a data directory when it is created. A runtime can
/// tell peers its disk id so that a node that comes back with another
/// node's (or a wiped) disk is noticed.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct DiskId(pub u128);

impl fmt::Display for DiskId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:032x}", self.0)
    }
}

/// What the identity file records.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) struct Identity {
    pub disk_id: DiskId,
    pub node_id: NodeId,
    pub cluster_id: u64,
}

/// Takes the directory lock; the returned file holds it until dropped.
pub(crate) fn lock(dir: &Path) -> Result<File> {
    let path = dir.join(LOCK_FILE);
    let file = OpenOptions::new().read(true).write(true).create(true).truncate(false).open(&path);
    let file = file.at(&path)?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(TryLockError::WouldBlock) => Err(Error::Locked { path }),
        Err(TryLockError::Error(source)) => Err(Error::Io { path, source }),
    }
}

impl Identity {
    /// A fresh identity with a new random disk id.
    pub fn generate(node_id: NodeId, cluster_id: u64) -> Self {
        let disk_id = DiskId(u128::from(random_u64()) << 64 | u128::from(random_u64()));
        Identity { disk_id, node_id, cluster_id }
    }

    /// Writes the identity file atomically (temp file, sync, rename, dir sync).
    pub fn write(&self, dir: &Path) -> Result<()> {
        write_atomic(dir, IDENTITY_FILE, &self.encode())
    }

    /// Reads the identity file, `None` if it does not exist.
    pub fn read(dir: &Path) -> Result<Option<Self>> {
        let path = dir.join(IDENTITY_FILE);
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(Error::Io { path, source }),
        };
        Self::decode(&bytes, &path).map(Some)
    }

    /// Refuses an identity that is not the one the options name.
    pub fn check(&self, node_id: NodeId, cluster_id: u64) -> Result<()> {
        if self.node_id != node_id {
            return Err(Error::WrongNode { expected: node_id, found: self.node_id });
        }
        if self.cluster_id != cluster_id {
            return Err(Error::WrongCluster { expected: cluster_id, found: self.cluster_id });
        }
        Ok(())
    }

    fn encode(&self) -> [u8; LEN] {
        let mut b = [0u8; LEN];
        b[0..8].copy_from_slice(&MAGIC);
        b[8..12].copy_from_slice(&VERSION.to_le_bytes());
        // 12..16 reserved.
        b[16..32].copy_from_slice(&self.disk_id.0.to_le_bytes());
        b[32..40].copy_from_slice(&self.node_id.0.to_le_bytes());
        b[40..48].copy_from_slice(&self.cluster_id.to_le_bytes());
        let crc = crc32c::crc32c(&b[0..48]);
        b[48..52].copy_from_slice(&crc.to_le_bytes());
        b
    }

    fn decode(b: &[u8], path: &Path) -> Result<Self> {
        let corrupt = |reason| Error::Corrupt { path: path.to_path_buf(), offset: 0, reason };
        if b.len() != LEN || b[0..8] != MAGIC {
            return Err(corrupt("not an identity file"));
        }
        if crc32c::crc32c(&b[0..48]) != le_u32(&b[48..52]) {
            return Err(corrupt("identity checksum mismatch"));
        }
        let version = le_u32(&b[8..12]);
        if version != VERSION {
            return Err(Error::UnsupportedVersion { path: path.to_path_buf(), found: version });
        }
        let disk_id = DiskId(u128::from(le_u64(&b[24..32])) << 64 | u128::from(le_u64(&b[16..24])));
        Ok(Identity {
            disk_id,
            node_id: NodeId(le_u64(&b[32..40])),
            cluster_id: le_u64(&b[40..48]),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_flip_detection() {
        let id = Identity::generate(NodeId(3), 42);
        let bytes = id.encode();
        let p = Path::new("IDENTITY");
        assert_eq!(Identity::decode(&bytes, p).ok(), Some(id));
        for i in 0..LEN * 8 {
            let mut b = bytes;
            b[i / 8] ^= 1 << (i % 8);
            assert!(Identity::decode(&b, p).is_err(), "flip {i}");
        }
    }

    #[test]
    fn check_names_the_mismatch() {
        let id = Identity::generate(NodeId(3), 42);
        assert!(id.check(NodeId(3), 42).is_ok());
        assert!(matches!(id.check(NodeId(4), 42), Err(Error::WrongNode { .. })));
        assert!(matches!(id.check(NodeId(3), 43), Err(Error::WrongCluster { .. })));
    }
}
