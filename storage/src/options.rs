//! Every bound and identity the storage needs, with defaults.
//!
//! Owns [`Options`]. Invariant: [`Options::validate`] passed before any file
//! is touched (`Storage::open` calls it). `record_bytes_max` must never be
//! lowered below the size of a record already on disk: the recovery decoder
//! treats a longer record as corruption.

use xraft::NodeId;

use crate::error::{Error, Result};

/// Options of a storage directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Options {
    /// The node this directory belongs to. Recorded at creation; opening the
    /// directory with another id fails with `Error::WrongNode`.
    pub node_id: NodeId,
    /// The cluster this directory belongs to. Recorded at creation; opening
    /// with another id fails with `Error::WrongCluster`.
    pub cluster_id: u64,
    /// A segment that has reached this size is closed and the next entry
    /// starts a new one. Default 64 MiB.
    pub segment_bytes_max: u64,
    /// Largest entry payload accepted by `append` and by the recovery
    /// decoder (checked before anything is sliced or allocated). Default
    /// 16 MiB.
    pub record_bytes_max: u32,
    /// Encoded records buffered in memory before they are written to the
    /// segment file without a sync (a `sync` always writes everything).
    /// Default 4 MiB.
    pub write_buffer_bytes_max: usize,
    /// Largest encoded `SnapshotMeta` accepted in a snapshot file header.
    /// Default 1 MiB.
    pub snapshot_meta_bytes_max: u32,
    /// Zeros written ahead of the records in the tail segment, so that a
    /// sync rewrites allocated blocks instead of growing the file (which
    /// makes the file system commit the new size too: on ext4 about a
    /// quarter slower). 0 turns preallocation off; at most 1 GiB. Default
    /// 1 MiB.
    pub preallocate_bytes: u64,
}

impl Options {
    /// Options for `node_id` in `cluster_id` with every bound at its default.
    pub fn new(node_id: NodeId, cluster_id: u64) -> Self {
        Options {
            node_id,
            cluster_id,
            segment_bytes_max: 64 << 20,
            record_bytes_max: 16 << 20,
            write_buffer_bytes_max: 4 << 20,
            snapshot_meta_bytes_max: 1 << 20,
            preallocate_bytes: 1 << 20,
        }
    }

    /// Checks that the bounds are usable.
    pub fn validate(&self) -> Result<()> {
        if self.segment_bytes_max < 4096 {
            return Err(Error::InvalidOptions("segment_bytes_max must be at least 4096"));
        }
        if self.record_bytes_max == 0 || self.record_bytes_max > (1 << 30) {
            return Err(Error::InvalidOptions("record_bytes_max must be in 1..=1 GiB"));
        }
        if self.write_buffer_bytes_max == 0 {
            return Err(Error::InvalidOptions("write_buffer_bytes_max must be positive"));
        }
        if self.snapshot_meta_bytes_max < 64 {
            return Err(Error::InvalidOptions("snapshot_meta_bytes_max must be at least 64"));
        }
        if self.preallocate_bytes > (1 << 30) {
            return Err(Error::InvalidOptions("preallocate_bytes must be at most 1 GiB"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_validate() {
        assert!(Options::new(NodeId(1), 7).validate().is_ok());
    }

    #[test]
    fn huge_preallocation_is_refused() {
        let mut o = Options::new(NodeId(1), 7);
        o.preallocate_bytes = u64::MAX;
        assert!(o.validate().is_err());
        o.preallocate_bytes = 1 << 30;
        assert!(o.validate().is_ok());
    }

    #[test]
    fn tiny_segment_is_refused() {
        let mut o = Options::new(NodeId(1), 7);
        o.segment_bytes_max = 10;
        assert!(matches!(o.validate(), Err(Error::InvalidOptions(_))));
    }
}
