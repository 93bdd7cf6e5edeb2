//! Helpers shared by the integration tests: options, entries, file listing.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use bytes::Bytes;
use xraft::{Entry, EntryKind, LogIndex, Membership, NodeId, SnapshotMeta, Term};
use xraft_storage::Options;

/// Options with small segments so tests cross segment boundaries.
pub fn small_options() -> Options {
    let mut o = Options::new(NodeId(1), 77);
    o.segment_bytes_max = 4096;
    // Preallocation on, in steps smaller than a segment: tails end in zeros.
    o.preallocate_bytes = 1024;
    o
}

/// `bytes` without its trailing zeros (a tail segment's preallocated space):
/// every record ends with a non-zero end mark.
pub fn records_of(bytes: &[u8]) -> &[u8] {
    &bytes[..bytes.iter().rposition(|b| *b != 0).map_or(0, |i| i + 1)]
}

/// A deterministic entry of `size` payload bytes.
pub fn entry(index: u64, term: u64, size: usize) -> Entry {
    let data: Vec<u8> = (0..size).map(|i| (index as usize * 31 + i * 7) as u8).collect();
    Entry {
        index: LogIndex(index),
        term: Term(term),
        kind: EntryKind::Normal,
        data: Bytes::from(data),
    }
}

/// Entries `lo..=hi` in `term`.
pub fn entries(lo: u64, hi: u64, term: u64, size: usize) -> Vec<Entry> {
    (lo..=hi).map(|i| entry(i, term, size)).collect()
}

/// Snapshot metadata with a fixed membership.
pub fn meta(index: u64, term: u64) -> SnapshotMeta {
    SnapshotMeta {
        index: LogIndex(index),
        term: Term(term),
        membership: Membership::with_voters([NodeId(1), NodeId(2), NodeId(3)]),
    }
}

/// Segment files in `dir`, in order.
pub fn segment_files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("read_dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("seg-")))
        .collect();
    v.sort();
    v
}
