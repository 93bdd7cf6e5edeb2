//! The disk thread: owns the node's [`Storage`] and carries out its writes.
//!
//! Owns group commit: the thread takes every job queued, carries out each
//! `PersistWrite` in emission order (snapshot part, then entries, then hard
//! state), makes the whole group durable with ONE `sync`, and only then
//! publishes `Persisted { through }` with the last write's id; when no job
//! waits, it then grows the log's preallocated space. Invariants: a
//! write is never reported before its `sync` returned `Ok`; after any
//! storage error nothing more is reported and the node is told to stop
//! (what reached the disk is unknown). Snapshot writers are handed out
//! from here because only the storage can create them; the streaming itself
//! happens on other threads. Snapshot readers are opened elsewhere, through
//! a `SnapshotSource` (opening one checksums the whole snapshot, which
//! would hold up group commits here).

use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::Relaxed;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot, watch};
use tracing::{debug, error, warn};
use xraft::{PersistId, PersistWrite, SnapshotMeta, SnapshotWrite};
use xraft_storage::{SnapshotWriter, Storage};

use crate::disks::PeerDisks;
use crate::node::Event;

/// Work for the disk thread.
pub(crate) enum DiskJob {
    /// Writes to make durable, in order, and the peer-disk record's version
    /// they carry (released once they are durable; see
    /// `PeerDisks::set_members_in_turn`).
    Persist(Vec<PersistWrite>, Option<u64>),
    /// A writer for a local snapshot.
    Writer { meta: SnapshotMeta, reply: oneshot::Sender<xraft_storage::Result<SnapshotWriter>> },
    /// Only a wake-up: the peers' disk record changed (saved after every
    /// group anyway).
    SavePeerDisks,
}

/// Upper bounds, in microseconds, of the sync-duration histogram's buckets
/// (a last, unbounded bucket follows).
pub const SYNC_BUCKETS_MICROS: [u64; 10] =
    [100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 100_000, 1_000_000];

/// Counters of the disk thread, read by status reports.
#[derive(Debug, Default)]
pub(crate) struct DiskStats {
    /// `PersistWrite`s made durable.
    pub writes: AtomicU64,
    /// Entries made durable.
    pub entries: AtomicU64,
    /// Time spent in `sync`, in microseconds.
    pub sync_micros: AtomicU64,
    /// Syncs by duration: bucket `i` counts those at most
    /// `SYNC_BUCKETS_MICROS[i]` (and above the bucket before); the last
    /// counts the rest.
    pub sync_buckets: [AtomicU64; SYNC_BUCKETS_MICROS.len() + 1],
}

impl DiskStats {
    fn record_sync(&self, took: Duration) {
        let us = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        self.sync_micros.fetch_add(us, Relaxed);
        let i =
            SYNC_BUCKETS_MICROS.iter().position(|&b| us <= b).unwrap_or(SYNC_BUCKETS_MICROS.len());
        self.sync_buckets[i].fetch_add(1, Relaxed);
    }

    /// A copy of the sync-duration histogram.
    pub(crate) fn sync_histogram(&self) -> SyncHistogram {
        SyncHistogram {
            buckets: std::array::from_fn(|i| self.sync_buckets[i].load(Relaxed)),
            sum_micros: self.sync_micros.load(Relaxed),
        }
    }
}

/// Durations of the disk thread's syncs (one per group commit).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SyncHistogram {
    /// Syncs per bucket of [`SYNC_BUCKETS_MICROS`] (not cumulative); the
    /// last counts syncs above the last bound.
    pub buckets: [u64; SYNC_BUCKETS_MICROS.len() + 1],
    /// Total time in sync, in microseconds.
    pub sum_micros: u64,
}

impl SyncHistogram {
    /// Syncs counted.
    pub fn count(&self) -> u64 {
        self.buckets.iter().sum()
    }

    /// The bucket bound at or under which fraction `q` of the syncs took
    /// (`None` with no syncs, `u64::MAX` for the unbounded bucket).
    pub fn quantile_bound_micros(&self, q: f64) -> Option<u64> {
        let n = self.count();
        if n == 0 {
            return None;
        }
        let want = ((n as f64) * q).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (i, c) in self.buckets.iter().enumerate() {
            seen += c;
            if seen >= want {
                return Some(SYNC_BUCKETS_MICROS.get(i).copied().unwrap_or(u64::MAX));
            }
        }
        Some(u64::MAX)
    }
}

/// Most jobs gathered into one group commit.
const GROUP_JOBS_MAX: usize = 1024;

/// Starts the disk thread for node `id`.
pub(crate) fn spawn(
    id: u64,
    storage: Storage,
    mut rx: mpsc::Receiver<DiskJob>,
    persisted: watch::Sender<PersistId>,
    events: mpsc::UnboundedSender<Event>,
    stats: std::sync::Arc<DiskStats>,
    peer_disks: std::sync::Arc<PeerDisks>,
) -> std::io::Result<JoinHandle<()>> {
    std::thread::Builder::new().name(format!("xraft-disk-{id}")).spawn(move || {
        let mut disk = Disk { storage, receiving: None, stats };
        let mut group = Vec::new();
        let mut save_failed = None;
        while let Some(job) = rx.blocking_recv() {
            group.push(job);
            while group.len() < GROUP_JOBS_MAX {
                match rx.try_recv() {
                    Ok(job) => group.push(job),
                    Err(_) => break,
                }
            }
            let done = disk.carry_out(&mut group).and_then(|(through, release)| {
                if let Some(through) = through {
                    persisted.send_replace(through);
                }
                // The writes that changed the peer-disk record are durable.
                if let Some(v) = release {
                    peer_disks.release(v);
                }
                // Idle: grow the tail's preallocated zeros now rather than
                // in a later group commit, on the acknowledgement path.
                if rx.is_empty() {
                    disk.storage.preallocate()?;
                }
                Ok(())
            });
            if let Err(e) = done {
                error!(node = id, error = %e, "storage failed; stopping the node");
                let _ = events.send(Event::Fatal(format!("storage: {e}")));
                return;
            }
            // The peers' disks, when the record changed (and nothing of it
            // waits for a log write): advisory, so a failure is logged
            // (once per version) and retried after a later group.
            disk.save_peer_disks(id, &peer_disks, &mut save_failed);
        }
        // Changes to the record since the last group (say, during shutdown).
        disk.save_peer_disks(id, &peer_disks, &mut save_failed);
        debug!(node = id, "disk thread stopped");
    })
}

/// What a group made durable: its last write, and the peer-disk record
/// version its writes carried.
type Durable = (Option<PersistId>, Option<u64>);

struct Disk {
    storage: Storage,
    /// A snapshot being received from the leader.
    receiving: Option<SnapshotWriter>,
    stats: std::sync::Arc<DiskStats>,
}

impl Disk {
    /// Saves the peer-disk record if a version not yet saved (and not held
    /// for a log write) is there. Advisory: a failure is logged once per
    /// version (`failed`) and retried at the next call.
    fn save_peer_disks(&mut self, id: u64, disks: &PeerDisks, failed: &mut Option<u64>) {
        let Some((v, list)) = disks.unsaved() else { return };
        match self.storage.save_peer_disks(&list) {
            Ok(()) => disks.saved(v),
            Err(e) if *failed != Some(v) => {
                warn!(node = id, error = %e, "could not save the peers' disk ids");
                *failed = Some(v);
            }
            Err(_) => {}
        }
    }

    /// Carries out a group of jobs; returns the last write made durable and
    /// the newest peer-disk record version those writes carried.
    fn carry_out(&mut self, group: &mut Vec<DiskJob>) -> xraft_storage::Result<Durable> {
        let (mut last, mut release) = (None, None);
        for job in group.drain(..) {
            match job {
                DiskJob::Persist(writes, carried) => {
                    release = release.max(carried);
                    for w in writes {
                        self.stats.writes.fetch_add(1, Relaxed);
                        self.stats.entries.fetch_add(w.entries.len() as u64, Relaxed);
                        self.write(w.snapshot, &w.entries, w.hard_state)?;
                        last = Some(w.id);
                    }
                }
                DiskJob::Writer { meta, reply } => {
                    let _ = reply.send(self.storage.snapshot_writer(meta));
                }
                DiskJob::SavePeerDisks => {}
            }
        }
        if last.is_some() {
            let started = Instant::now();
            self.storage.sync()?;
            self.stats.record_sync(started.elapsed());
        }
        Ok((last, release))
    }

    fn write(
        &mut self,
        snapshot: Option<SnapshotWrite>,
        entries: &[xraft::Entry],
        hard_state: Option<xraft::HardState>,
    ) -> xraft_storage::Result<()> {
        match snapshot {
            None => {}
            Some(SnapshotWrite::Taken { compact_through, .. }) => {
                self.storage.compact(compact_through)?;
            }
            Some(SnapshotWrite::Chunk { meta, offset, data, done }) => {
                if offset == 0 || self.receiving.as_ref().is_none_or(|w| *w.meta() != meta) {
                    if offset != 0 {
                        return Err(xraft_storage::Error::InvalidOptions(
                            "snapshot chunk at a non-zero offset without a transfer in progress",
                        ));
                    }
                    self.receiving = Some(self.storage.snapshot_writer(meta.clone())?);
                }
                let w = self.receiving.as_mut().expect("set just above");
                w.write_chunk(offset, &data)?;
                if done {
                    let w = self.receiving.take().expect("set just above");
                    let meta = w.finish()?;
                    self.storage.install_snapshot(&meta)?;
                }
            }
        }
        if !entries.is_empty() {
            self.storage.append(entries)?;
        }
        if let Some(hs) = hard_state {
            self.storage.set_hard_state(hs);
        }
        Ok(())
    }
}
