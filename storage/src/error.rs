//! Typed errors of the storage crate.
//!
//! Owns [`Error`]: everything the disk, the directory's contents or a caller's
//! arguments can cause is a value here, never a panic. Errors are grouped as
//! I/O failures (the storage is then poisoned, see [`Error::Poisoned`]),
//! on-disk damage or foreign data found while opening, and API misuse.

use std::io;
use std::path::PathBuf;

use xraft::{LogIndex, NodeId, Term};

/// Why a storage operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An operating-system call failed on `path`.
    #[error("I/O error on {path}: {source}")]
    Io {
        /// The file or directory the call was about.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: io::Error,
    },
    /// An earlier write or sync failed, so what is on disk is unknown; the
    /// storage refuses further work until it is reopened (a failed `fsync`
    /// must never be retried as if the data were safe).
    #[error("storage poisoned by an earlier I/O failure; reopen it")]
    Poisoned,
    /// Another process (or another handle in this process) holds the data
    /// directory's lock file.
    #[error("data directory {path} is locked by another storage handle")]
    Locked {
        /// The lock file.
        path: PathBuf,
    },
    /// A file is damaged: a checksum mismatch, an impossible length or an
    /// out-of-sequence record that is not a torn tail of the last write.
    #[error("corrupt data in {path} at byte {offset}: {reason}")]
    Corrupt {
        /// The damaged file.
        path: PathBuf,
        /// Byte offset of the first bad record or field.
        offset: u64,
        /// What was wrong.
        reason: &'static str,
    },
    /// The log segments do not join up: a segment starts after a gap.
    #[error("log gap in {path}: expected index {expected}, found {found}")]
    LogGap {
        /// The segment that starts at the wrong index.
        path: PathBuf,
        /// The index that should have come next.
        expected: LogIndex,
        /// The index found.
        found: LogIndex,
    },
    /// The directory holds log or snapshot files but no identity file, so
    /// whose data it is cannot be proven.
    #[error("{path} holds data but has no identity file")]
    MissingIdentity {
        /// The data directory.
        path: PathBuf,
    },
    /// The directory was created for another node.
    #[error("data directory belongs to node {found}, not {expected}")]
    WrongNode {
        /// The node id given in the options.
        expected: NodeId,
        /// The node id recorded in the directory.
        found: NodeId,
    },
    /// The directory was created for another cluster.
    #[error("data directory belongs to cluster {found}, not {expected}")]
    WrongCluster {
        /// The cluster id given in the options.
        expected: u64,
        /// The cluster id recorded in the directory.
        found: u64,
    },
    /// A file was written by an unknown version of this format.
    #[error("{path} has unsupported format version {found}")]
    UnsupportedVersion {
        /// The file.
        path: PathBuf,
        /// The version found.
        found: u32,
    },
    /// The options are inconsistent.
    #[error("invalid storage options: {0}")]
    InvalidOptions(&'static str),
    /// Entries given to `append` do not have consecutive indexes.
    #[error("entries to append are not consecutive at index {index}")]
    NonContiguous {
        /// The first index out of sequence.
        index: LogIndex,
    },
    /// An append would leave a hole after the last stored entry.
    #[error("append at index {index} leaves a gap after the last index {last}")]
    AppendGap {
        /// First index of the batch.
        index: LogIndex,
        /// Last index stored.
        last: LogIndex,
    },
    /// An append would rewrite an entry at or below the compaction point
    /// (covered by a snapshot, hence committed).
    #[error("append at index {index} is at or below the compaction point {base}")]
    AppendBelowBase {
        /// First index of the batch.
        index: LogIndex,
        /// Entries at or below this index are compacted.
        base: LogIndex,
    },
    /// An entry's payload exceeds `Options::record_bytes_max`.
    #[error("entry {index} has {bytes} payload bytes, more than the bound {max}")]
    EntryTooLarge {
        /// The entry's index.
        index: LogIndex,
        /// Its payload size.
        bytes: usize,
        /// The bound.
        max: u32,
    },
    /// `compact` was asked to drop entries not covered by a durable snapshot,
    /// or beyond the end of the log.
    #[error("cannot compact through {through}: limit is {limit}")]
    CompactTooFar {
        /// The requested compaction point.
        through: LogIndex,
        /// The highest allowed point (snapshot index, or last log index).
        limit: LogIndex,
    },
    /// A read asked for entries outside the readable range.
    #[error("entries {lo}..{hi} are outside the readable range {first}..={last}")]
    OutOfRange {
        /// Requested start (inclusive).
        lo: LogIndex,
        /// Requested end (exclusive).
        hi: LogIndex,
        /// First readable index.
        first: LogIndex,
        /// Last readable index.
        last: LogIndex,
    },
    /// `install_snapshot` was called with metadata that is not the latest
    /// durable snapshot.
    #[error("snapshot {index}/{term} is not the latest durable snapshot")]
    SnapshotNotDurable {
        /// Index of the metadata given.
        index: LogIndex,
        /// Term of the metadata given.
        term: Term,
    },
    /// A finished snapshot is not newer than the latest durable one.
    #[error("snapshot at index {index} is not newer than the durable one at {latest}")]
    StaleSnapshot {
        /// Index of the snapshot being finished.
        index: LogIndex,
        /// Index of the latest durable snapshot.
        latest: LogIndex,
    },
    /// A snapshot chunk does not continue the bytes received so far.
    #[error("snapshot chunk at offset {offset}, expected {expected}")]
    ChunkOutOfOrder {
        /// The chunk's offset.
        offset: u64,
        /// The number of bytes received so far.
        expected: u64,
    },
}

/// Shorthand for results of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Extension to attach a path to an `io::Result`.
pub(crate) trait IoContext<T> {
    /// Wraps an I/O error as [`Error::Io`] naming `path`.
    fn at(self, path: &std::path::Path) -> Result<T>;
    /// As `at`, with the path built only on error (hot paths).
    fn at_path(self, path: impl FnOnce() -> std::path::PathBuf) -> Result<T>;
}

impl<T> IoContext<T> for io::Result<T> {
    fn at(self, path: &std::path::Path) -> Result<T> {
        self.map_err(|source| Error::Io { path: path.to_path_buf(), source })
    }

    fn at_path(self, path: impl FnOnce() -> std::path::PathBuf) -> Result<T> {
        self.map_err(|source| Error::Io { path: path(), source })
    }
}
