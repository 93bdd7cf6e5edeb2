//! The storage facade a runtime drives: open/recover, append, hard state,
//! group-commit sync, compaction and snapshots.
//!
//! Owns [`Storage`] and [`Recovered`]. Invariants: the directory lock is held
//! for the storage's whole life; after any I/O failure in a mutating call the
//! storage is poisoned and refuses further work (what reached the disk is
//! unknown, and a failed `fsync` must not be retried as if it had worked);
//! `sync` makes the log durable before the hard state, so a durable commit
//! hint never points past the durable log.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use xraft::{Entry, HardState, LogIndex, NodeId, SnapshotMeta, Term};

use crate::error::{Error, IoContext, Result};
use crate::fsutil::sync_dir;
use crate::hard_state::HardStateFile;
use crate::identity::{lock, DiskId, Identity};
use crate::log::{is_segment_name, Log, LogBounds};
use crate::options::Options;
use crate::peers;
use crate::snapshot::{SnapshotReader, SnapshotShared, SnapshotSource, SnapshotWriter};

/// What `Storage::open` found on disk: exactly the state last made durable
/// (less any torn tail of an unfinished write).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Recovered {
    /// The newest durable hard state (the default for a new directory).
    pub hard_state: HardState,
    /// The newest durable snapshot, if any.
    pub snapshot: Option<SnapshotMeta>,
    /// The log after the snapshot: consecutive entries starting at the
    /// snapshot's index + 1 (or at 1 without a snapshot).
    pub entries: Vec<Entry>,
    /// The directory's disk id.
    pub disk_id: DiskId,
    /// The peers' disk ids last saved with [`Storage::save_peer_disks`]
    /// (empty if never, or if the file is damaged: see `peer_disks_error`).
    pub peer_disks: Vec<(NodeId, DiskId)>,
    /// Why the saved peers' disk ids could not be read, if so. The record
    /// is advisory (a runtime starts without it and learns the disks
    /// again), so a `PEERS` file with damaged content does not fail the
    /// open (an I/O error reading it does); the next save replaces it.
    pub peer_disks_error: Option<String>,
}

/// Durable storage for one Raft node: its log, hard state and snapshots in
/// one directory.
///
/// Driving contract, for a core `Persist { id, hard_state, entries }`:
/// call [`Storage::set_hard_state`] (if any) and [`Storage::append`] (if
/// any entries; the entries replace the log from `entries[0].index` on),
/// possibly for several `Persist` outputs, then one [`Storage::sync`]; only
/// when it returns `Ok` report `Persisted { through: id }` of the last one.
/// After a snapshot file is finished, [`Storage::install_snapshot`] applies
/// it to the log when it came from a leader; local snapshots are followed by
/// [`Storage::compact`] at the core's request.
///
/// Synchronous and `Send`: use it from a blocking thread of an async
/// runtime or from a plain thread beside an event loop.
#[derive(Debug)]
pub struct Storage {
    dir: PathBuf,
    options: Options,
    disk_id: DiskId,
    log: Log,
    hard: HardStateFile,
    pending_hard_state: Option<HardState>,
    snapshots: Arc<SnapshotShared>,
    poisoned: bool,
    /// Held for the storage's lifetime: the directory lock.
    _lock: fs::File,
}

impl Storage {
    /// Opens (creating if needed) the data directory `dir` and recovers it.
    ///
    /// Fails with `Locked` if another handle has it open, `WrongNode` /
    /// `WrongCluster` if it belongs to someone else, `MissingIdentity` if it
    /// holds data but no identity, and `Corrupt` / `LogGap` on damage. A torn
    /// tail of the last write is truncated, durably, before returning.
    pub fn open(dir: impl AsRef<Path>, options: Options) -> Result<(Storage, Recovered)> {
        options.validate()?;
        let dir = dir.as_ref().to_path_buf();
        if !dir.exists() {
            fs::create_dir_all(&dir).at(&dir)?;
            if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
                sync_dir(parent)?;
            }
        }
        let lock = lock(&dir)?;
        remove_temporaries(&dir)?;
        let identity = match Identity::read(&dir)? {
            Some(id) => id,
            None => initialise(&dir, &options)?,
        };
        identity.check(options.node_id, options.cluster_id)?;
        let hard = HardStateFile::open(&dir)?;
        let snapshots = SnapshotShared::recover(&dir, options.snapshot_meta_bytes_max)?;
        let snapshot = snapshots.latest();
        let bounds = LogBounds {
            segment_bytes_max: options.segment_bytes_max,
            record_bytes_max: options.record_bytes_max,
            write_buffer_bytes_max: options.write_buffer_bytes_max,
            preallocate_bytes: options.preallocate_bytes,
        };
        let (log, entries) = Log::open(&dir, bounds, snapshot.as_ref())?;
        // Damaged content reads as none (advisory); a failing read fails
        // the open, as for any other file (it may be passing).
        let (peer_disks, peer_disks_error) = match peers::read(&dir) {
            Ok(list) => (list, None),
            Err(e @ Error::Corrupt { .. }) => (Vec::new(), Some(e.to_string())),
            Err(e) => return Err(e),
        };
        let recovered = Recovered {
            hard_state: hard.durable(),
            snapshot,
            entries,
            disk_id: identity.disk_id,
            peer_disks,
            peer_disks_error,
        };
        let storage = Storage {
            dir,
            options,
            disk_id: identity.disk_id,
            log,
            hard,
            pending_hard_state: None,
            snapshots,
            poisoned: false,
            _lock: lock,
        };
        Ok((storage, recovered))
    }

    /// Buffers `entries` (consecutive indexes) to replace the log from
    /// `entries[0].index` on: stored entries at or after it are discarded
    /// first (a conflict truncation; the discard of entries already on disk
    /// is made durable at once). Durable only after [`Storage::sync`].
    /// `entries[0].index` must be above the compaction point and at most one
    /// past the last index, or at or below the latest snapshot's index.
    ///
    /// A write at or below the latest snapshot's index was queued before the
    /// snapshot became durable (a follower may apply, and snapshot, entries
    /// it has not yet made durable itself). Every stored entry is discarded
    /// (durably at once) and the log goes on after the snapshot with what
    /// [`xraft::entries_after_snapshot`] keeps of the write.
    pub fn append(&mut self, entries: &[Entry]) -> Result<()> {
        self.check_poisoned()?;
        for pair in entries.windows(2) {
            if pair[1].index != pair[0].index.next() {
                return Err(Error::NonContiguous { index: pair[1].index });
            }
        }
        let (snap, snap_term) = self.snapshots.latest_point();
        let mut entries = entries;
        if entries.first().is_some_and(|e| e.index <= snap) {
            entries = xraft::entries_after_snapshot(entries, snap, snap_term);
            let r = self.log.restart_after(snap);
            self.poison_on_io(r)?;
        }
        let max = self.options.record_bytes_max;
        if let Some(e) = entries.iter().find(|e| e.data.len() > max as usize) {
            return Err(Error::EntryTooLarge { index: e.index, bytes: e.data.len(), max });
        }
        let r = self.log.append(entries);
        self.poison_on_io(r)
    }

    /// Buffers a new hard state; durable after the next [`Storage::sync`].
    pub fn set_hard_state(&mut self, hard_state: HardState) {
        self.pending_hard_state = Some(hard_state);
    }

    /// Makes everything buffered durable: the log (one write and one
    /// `fdatasync` of the tail segment) and then, if it changed, the hard
    /// state (one `fdatasync` of its file).
    pub fn sync(&mut self) -> Result<()> {
        self.check_poisoned()?;
        let r = self.log.sync();
        self.poison_on_io(r)?;
        if let Some(hs) = self.pending_hard_state.take() {
            if hs != self.hard.durable() {
                let r = self.hard.write(hs);
                self.poison_on_io(r)?;
            }
        }
        Ok(())
    }

    /// Replaces the saved list of peers' disk ids (at most
    /// [`crate::PEERS_MAX`]), durably and atomically; [`Recovered`] returns
    /// it after a restart. Independent of the log: a failure here does not
    /// poison the storage.
    pub fn save_peer_disks(&mut self, peers: &[(NodeId, DiskId)]) -> Result<()> {
        peers::write(&self.dir, peers)
    }

    /// Preallocates the tail segment ahead of need (see
    /// `Options::preallocate_bytes`) if less than half a step of zeros is
    /// left; otherwise does nothing. For idle moments: `sync` preallocates
    /// by itself when it must, adding a write and a sync to that group
    /// commit. Durable when it returns.
    pub fn preallocate(&mut self) -> Result<()> {
        self.check_poisoned()?;
        let r = self.log.preallocate();
        self.poison_on_io(r)
    }

    /// Drops entries up to `through`, which must be covered by the latest
    /// durable snapshot and not past the last index. Whole segments at or
    /// below it are deleted; entries below it may remain in a partly covered
    /// segment but are no longer readable.
    pub fn compact(&mut self, through: LogIndex) -> Result<()> {
        self.check_poisoned()?;
        let (snap, _) = self.snapshots.latest_point();
        let limit = snap.min(self.log.last_index());
        if through > limit {
            return Err(Error::CompactTooFar { through, limit });
        }
        let r = self.log.compact(through);
        self.poison_on_io(r)
    }

    /// Applies the latest durable snapshot, received from a leader, to the
    /// log: entries up to `meta.index` are dropped, and if the log does not
    /// hold `meta.index` with `meta.term`, the whole log is discarded. Any
    /// buffered entries after a discarded log are dropped with it.
    pub fn install_snapshot(&mut self, meta: &SnapshotMeta) -> Result<()> {
        self.check_poisoned()?;
        if self.snapshots.latest().as_ref() != Some(meta) {
            return Err(Error::SnapshotNotDurable { index: meta.index, term: meta.term });
        }
        let r = self.log.install(meta);
        self.poison_on_io(r)
    }

    /// Starts writing a snapshot for `meta` (a local snapshot, or one being
    /// received from a leader). The writer can be moved to another thread.
    pub fn snapshot_writer(&self, meta: SnapshotMeta) -> Result<SnapshotWriter> {
        SnapshotWriter::create(Arc::clone(&self.snapshots), meta)
    }

    /// A reader over the latest durable snapshot, its data checksum verified.
    pub fn snapshot_reader(&self) -> Result<Option<SnapshotReader>> {
        self.snapshots.reader()
    }

    /// A handle that opens readers over the newest durable snapshot from any
    /// thread, without this `Storage`.
    pub fn snapshot_source(&self) -> SnapshotSource {
        SnapshotSource { shared: Arc::clone(&self.snapshots) }
    }

    /// The latest durable snapshot's metadata.
    pub fn snapshot_meta(&self) -> Option<SnapshotMeta> {
        self.snapshots.latest()
    }

    /// Reads entries `lo..hi` from disk (buffered ones included), checking
    /// their checksums. The range must lie within `first_index..=last_index`.
    pub fn entries(&mut self, lo: LogIndex, hi: LogIndex) -> Result<Vec<Entry>> {
        self.check_poisoned()?;
        let (first, last) = (self.first_index(), self.last_index());
        if lo > hi || lo < first || hi > last.next() {
            return Err(Error::OutOfRange { lo, hi, first, last });
        }
        let r = self.log.read(lo, hi);
        self.poison_on_io(r)
    }

    /// Term of the entry at `index`: from the log if readable, from the
    /// snapshot if it is the snapshot's index, else `None`.
    pub fn term(&self, index: LogIndex) -> Option<Term> {
        if index > self.log.base() && index <= self.last_index() {
            return self.log.term_at(index);
        }
        self.snapshots.latest().filter(|s| s.index == index).map(|s| s.term)
    }

    /// First readable index (one past the compaction point).
    pub fn first_index(&self) -> LogIndex {
        self.log.first_index()
    }

    /// Last index in the log, buffered entries included (the compaction
    /// point if the log is empty).
    pub fn last_index(&self) -> LogIndex {
        self.log.last_index()
    }

    /// The hard state as last set (possibly not yet durable).
    pub fn hard_state(&self) -> HardState {
        self.pending_hard_state.unwrap_or_else(|| self.hard.durable())
    }

    /// The directory's disk id.
    pub fn disk_id(&self) -> DiskId {
        self.disk_id
    }

    /// The data directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn check_poisoned(&self) -> Result<()> {
        if self.poisoned {
            return Err(Error::Poisoned);
        }
        Ok(())
    }

    fn poison_on_io<T>(&mut self, r: Result<T>) -> Result<T> {
        if matches!(r, Err(Error::Io { .. })) {
            self.poisoned = true;
        }
        r
    }
}

/// Sets up a directory that has no identity yet. Refuses one that already
/// holds a log or snapshots: their owner cannot be proven.
fn initialise(dir: &Path, options: &Options) -> Result<Identity> {
    for entry in fs::read_dir(dir).at(dir)? {
        let name = entry.at(dir)?.file_name();
        let name = name.to_string_lossy();
        if is_segment_name(&name) || name.ends_with(".snap") {
            return Err(Error::MissingIdentity { path: dir.to_path_buf() });
        }
    }
    // The hard state first, the identity last: a directory with an identity
    // is complete. An interrupted initialisation is simply redone.
    HardStateFile::create(dir)?;
    let identity = Identity::generate(options.node_id, options.cluster_id);
    identity.write(dir)?;
    Ok(identity)
}

/// Removes `*.tmp` leftovers of interrupted atomic writes.
fn remove_temporaries(dir: &Path) -> Result<()> {
    let mut removed = false;
    for entry in fs::read_dir(dir).at(dir)? {
        let entry = entry.at(dir)?;
        if entry.file_name().to_string_lossy().ends_with(".tmp") {
            let path = entry.path();
            fs::remove_file(&path).at(&path)?;
            removed = true;
        }
    }
    if removed {
        sync_dir(dir)?;
    }
    Ok(())
}

// Runtimes move these to blocking threads: they must stay `Send`.
const _: () = {
    const fn assert_send<T: Send>() {}
    assert_send::<Storage>();
    assert_send::<SnapshotWriter>();
    assert_send::<SnapshotReader>();
};
