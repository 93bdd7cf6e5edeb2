//! Small file-system helpers with the durability steps spelled out.
//!
//! Owns directory syncs, atomic whole-file replacement and the process-local
//! randomness used for ids and segment salts. Invariant: a file created,
//! renamed or deleted is durable only after [`sync_dir`] of its directory.

use std::collections::hash_map::RandomState;
use std::fs::{self, File, OpenOptions};
use std::hash::{BuildHasher, Hasher};
use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::error::{IoContext, Result};

/// Makes the directory entries of `dir` (creations, renames, deletions) durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir).and_then(|d| d.sync_all()).at(dir)
}

/// Writes `bytes` to `dir/name` atomically: a temporary file is written and
/// synced, renamed over `name`, and the directory synced.
pub(crate) fn write_atomic(dir: &Path, name: &str, bytes: &[u8]) -> Result<()> {
    let tmp = dir.join(format!("{name}.tmp"));
    let mut f = OpenOptions::new().write(true).create(true).truncate(true).open(&tmp).at(&tmp)?;
    f.write_all(bytes).at(&tmp)?;
    f.sync_all().at(&tmp)?;
    drop(f);
    let path = dir.join(name);
    fs::rename(&tmp, &path).at(&path)?;
    sync_dir(dir)
}

/// 64 bits that differ between calls, processes and machines.
///
/// `RandomState` keys come from the operating system's randomness (once per
/// thread, then incremented per instance); the time, the process id and a
/// counter are mixed in as well. Good enough for ids and salts, which need
/// to be unique, not secret.
pub(crate) fn random_u64() -> u64 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut h = RandomState::new().build_hasher();
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    h.write_u128(nanos);
    h.write_u32(std::process::id());
    h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_values_differ() {
        let a: Vec<u64> = (0..64).map(|_| random_u64()).collect();
        let mut b = a.clone();
        b.sort_unstable();
        b.dedup();
        assert_eq!(a.len(), b.len());
    }
}
