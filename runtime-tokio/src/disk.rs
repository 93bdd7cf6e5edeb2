//! The disk thread: owns the node's [`Storage`] and carries out its writes.
//!
//! Owns group commit: the thread takes every job queued, carries out each
//! `PersistWrite` in emission order (snapshot part, then entries, then hard
//! state), makes the whole group durable with ONE `sync`, and only then
//! publishes `Persisted { through }` with the last write's id. Invariants: a
//! write is never reported before its `sync` returned `Ok`; after any
//! storage error nothing more is reported and the node is told to stop
//! (what reached the disk is unknown). Snapshot writers and readers are
//! handed out from here because only the storage can create them; the
//! streaming itself happens on other threads.

use std::sync::atomic::Ordering::Relaxed;
use std::thread::JoinHandle;

use tokio::sync::{mpsc, oneshot, watch};
use tracing::{debug, error};
use xraft::{PersistId, PersistWrite, SnapshotMeta, SnapshotWrite};
use xraft_storage::{SnapshotReader, SnapshotWriter, Storage};

use crate::node::Event;

/// Work for the disk thread.
pub(crate) enum DiskJob {
    /// Writes to make durable, in order.
    Persist(Vec<PersistWrite>),
    /// A writer for a local snapshot.
    Writer { meta: SnapshotMeta, reply: oneshot::Sender<xraft_storage::Result<SnapshotWriter>> },
    /// A reader over the latest durable snapshot.
    Reader { reply: oneshot::Sender<xraft_storage::Result<Option<SnapshotReader>>> },
}

/// Counters of the disk thread, read by status reports.
#[derive(Debug, Default)]
pub(crate) struct DiskStats {
    /// `sync` calls (one per group commit).
    pub syncs: std::sync::atomic::AtomicU64,
    /// `PersistWrite`s made durable.
    pub writes: std::sync::atomic::AtomicU64,
    /// Entries made durable.
    pub entries: std::sync::atomic::AtomicU64,
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
) -> std::io::Result<JoinHandle<()>> {
    std::thread::Builder::new().name(format!("xraft-disk-{id}")).spawn(move || {
        let mut disk = Disk { storage, receiving: None, stats };
        let mut group = Vec::new();
        while let Some(job) = rx.blocking_recv() {
            group.push(job);
            while group.len() < GROUP_JOBS_MAX {
                match rx.try_recv() {
                    Ok(job) => group.push(job),
                    Err(_) => break,
                }
            }
            match disk.carry_out(&mut group) {
                Ok(Some(through)) => {
                    persisted.send_replace(through);
                }
                Ok(None) => {}
                Err(e) => {
                    error!(node = id, error = %e, "storage failed; stopping the node");
                    let _ = events.send(Event::Fatal(format!("storage: {e}")));
                    return;
                }
            }
        }
        debug!(node = id, "disk thread stopped");
    })
}

struct Disk {
    storage: Storage,
    /// A snapshot being received from the leader.
    receiving: Option<SnapshotWriter>,
    stats: std::sync::Arc<DiskStats>,
}

impl Disk {
    /// Carries out a group of jobs; returns the last write made durable.
    fn carry_out(&mut self, group: &mut Vec<DiskJob>) -> xraft_storage::Result<Option<PersistId>> {
        let mut last = None;
        for job in group.drain(..) {
            match job {
                DiskJob::Persist(writes) => {
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
                DiskJob::Reader { reply } => {
                    let _ = reply.send(self.storage.snapshot_reader());
                }
            }
        }
        if last.is_some() {
            self.storage.sync()?;
            self.stats.syncs.fetch_add(1, Relaxed);
        }
        Ok(last)
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
