//! The simulated disk of one node.
//!
//! Owns what survives a crash. It holds the durable hard state, the durable
//! snapshot (metadata and the state machine's bytes), the durable log after
//! it, the durable chunks of a snapshot being received, and a FIFO of
//! `PersistWrite`s the node emitted that are not yet durable. Writes become
//! durable strictly in order (a completion may cover several: group
//! commit). A crash keeps none of the pending writes, a prefix of them, or a
//! prefix plus a torn next write. A torn write keeps its snapshot part (laid
//! out first), its hard state and a strict prefix of its entries. A write's
//! entries replace the stored log from their first index, exactly as the
//! driving contract says. Snapshot parts follow the contract too: `Taken`
//! drops entries up to `compact_through`; `Chunk` bytes go to a staging area
//! (offset 0 starts over; lost on a crash) and the `done` chunk installs the
//! snapshot, dropping the log up to it (all of it if the log does not hold
//! the snapshot's last entry). A snapshot the application takes
//! ([`Disk::snapshot_taken`]) replaces the durable one only if newer.
//! Invariant: the durable log is consecutive from `base + 1`, and `base` is
//! at most the durable snapshot's index.

use std::collections::VecDeque;

use bytes::Bytes;
use xraft::{
    Entry, HardState, LogIndex, Membership, NodeId, PersistWrite, RestartState, SnapshotMeta,
    SnapshotWrite, Term,
};

use crate::sim_rng::SimRng;

/// How a crash treats the writes not yet durable.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CrashMode {
    /// Every pending write is lost.
    LoseAll,
    /// A random prefix of the pending writes survives whole (they became
    /// durable before the node learned so).
    KeepPrefix,
    /// A random prefix survives and the next write is torn.
    Torn,
}

/// What a crash did to the pending writes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CrashOutcome {
    /// Writes pending at the crash.
    pub pending: usize,
    /// Writes that survived, whole or torn.
    pub kept: usize,
    /// Whether the last surviving write was torn.
    pub torn: bool,
}

/// A durable write the driving contract does not allow.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WriteError {
    /// Entries would leave a gap after the stored log, or rewrite entries a
    /// snapshot already covers.
    Gap {
        /// The write's first index.
        first: LogIndex,
        /// The stored last index.
        last: LogIndex,
    },
    /// A snapshot chunk does not continue the staged bytes.
    ChunkOutOfOrder {
        /// The chunk's offset.
        offset: u64,
        /// Bytes staged so far.
        staged: u64,
    },
    /// A received snapshot not newer than the durable one was installed.
    StaleInstall {
        /// The installed snapshot's index.
        index: LogIndex,
        /// The durable snapshot's index.
        durable: LogIndex,
    },
}

/// One node's disk.
#[derive(Debug, Default)]
pub struct Disk {
    hard_state: HardState,
    snapshot: Option<(SnapshotMeta, Bytes)>,
    /// Index before the first stored entry.
    base: LogIndex,
    entries: Vec<Entry>,
    /// Durable chunks of a snapshot being received (lost on a crash).
    staging: Option<(SnapshotMeta, Vec<u8>)>,
    pending: VecDeque<PersistWrite>,
}

impl Disk {
    /// A founding member's disk: the bootstrap state is durable at time 0.
    pub fn bootstrap(voters: &[NodeId]) -> Disk {
        let rs = RestartState::bootstrap(voters.iter().copied());
        Disk { hard_state: rs.hard_state, entries: rs.entries, ..Disk::default() }
    }

    /// An empty disk: a node that joins an existing cluster later.
    pub fn empty() -> Disk {
        Disk::default()
    }

    /// The durable state, for restarting a node.
    pub fn restart_state(&self) -> RestartState {
        RestartState {
            hard_state: self.hard_state,
            snapshot: self.snapshot.as_ref().map(|(m, _)| m.clone()),
            entries: self.entries.clone(),
        }
    }

    /// Reconciles the log with the durable snapshot as the real storage
    /// does when it opens (`xraft_storage`'s recovery rule 5): a log that
    /// starts at or below the snapshot's index is compacted through it if it
    /// holds the snapshot's entry, and discarded whole otherwise. A snapshot
    /// can be durable ahead of the durable log (entries are applied, and so
    /// snapshotted, before they are locally durable), so a crash can leave a
    /// log ending below the snapshot; keeping it would put a gap between it
    /// and the entries written after the restart.
    pub fn recover(&mut self) {
        let Some((m, _)) = &self.snapshot else { return };
        let (index, term) = (m.index, m.term);
        if self.base >= index {
            return;
        }
        if self.term_at(index) == Some(term) {
            self.compact(index);
        } else {
            self.entries.clear();
            self.base = index;
        }
    }

    /// The durable hard state.
    pub fn hard_state(&self) -> HardState {
        self.hard_state
    }

    /// The durable snapshot.
    pub fn snapshot(&self) -> Option<&(SnapshotMeta, Bytes)> {
        self.snapshot.as_ref()
    }

    /// The durable snapshot's index (0 if none).
    pub fn snapshot_index(&self) -> LogIndex {
        self.snapshot.as_ref().map_or(LogIndex::ZERO, |(m, _)| m.index)
    }

    /// Durable last index (of the log, or of the snapshot if the log is empty).
    pub fn last_index(&self) -> LogIndex {
        LogIndex(self.base.0 + self.entries.len() as u64).max(self.snapshot_index())
    }

    /// Durable entries held in the log.
    pub fn log_len(&self) -> usize {
        self.entries.len()
    }

    /// The durable entry at `index`.
    #[inline]
    pub fn entry(&self, index: LogIndex) -> Option<&Entry> {
        let k = index.0.checked_sub(self.base.0 + 1)?;
        self.entries.get(usize::try_from(k).ok()?)
    }

    /// The durable term at `index`.
    #[inline]
    pub fn term_at(&self, index: LogIndex) -> Option<Term> {
        self.entry(index).map(|e| e.term)
    }

    /// Whether the disk durably holds the entry `(index, term)`, in its log
    /// or covered by its snapshot.
    pub fn holds(&self, index: LogIndex, term: Term) -> bool {
        match &self.snapshot {
            Some((m, _)) if index < m.index => true,
            Some((m, _)) if index == m.index && m.term == term => true,
            _ => self.term_at(index) == Some(term),
        }
    }

    /// Membership from the last durable config entry, or the snapshot's.
    pub fn membership(&self) -> Option<Membership> {
        self.entries
            .iter()
            .rev()
            .find(|e| e.kind == xraft::EntryKind::Config)
            .and_then(|e| Membership::decode(&e.data).ok())
            .or_else(|| self.snapshot.as_ref().map(|(m, _)| m.membership.clone()))
    }

    /// Queues a write emitted by the node.
    pub fn push(&mut self, w: PersistWrite) {
        self.pending.push_back(w);
    }

    /// Writes not yet durable.
    pub fn pending_len(&self) -> usize {
        self.pending.len()
    }

    /// Takes the oldest pending write to make it durable (the caller then
    /// calls [`Disk::apply_write`]).
    pub fn pop_pending(&mut self) -> Option<PersistWrite> {
        self.pending.pop_front()
    }

    /// The application made a snapshot durable (temp file, fsync, rename):
    /// it replaces the durable one if newer. Returns whether it did.
    pub fn snapshot_taken(&mut self, meta: SnapshotMeta, data: Bytes) -> bool {
        if meta.index <= self.snapshot_index() {
            return false;
        }
        self.snapshot = Some((meta, data));
        true
    }

    /// Makes one write durable, in contract order: snapshot part, entries,
    /// hard state. Fails, changing nothing more, on a write the contract
    /// forbids. Returns the snapshot it installed, if any.
    pub fn apply_write(&mut self, w: &PersistWrite) -> Result<Option<SnapshotMeta>, WriteError> {
        let mut installed = None;
        match &w.snapshot {
            None => {}
            Some(SnapshotWrite::Taken { compact_through, .. }) => {
                // The snapshot itself became durable before `SnapshotTaken`.
                let through = (*compact_through).min(self.snapshot_index());
                self.compact(through);
            }
            Some(SnapshotWrite::Chunk { meta, offset, data, done }) => {
                if *offset == 0 {
                    self.staging = Some((meta.clone(), Vec::new()));
                }
                let staged = match &mut self.staging {
                    Some((m, bytes)) if m == meta && bytes.len() as u64 == *offset => bytes,
                    other => {
                        let staged = other.as_ref().map_or(0, |(_, b)| b.len() as u64);
                        return Err(WriteError::ChunkOutOfOrder { offset: *offset, staged });
                    }
                };
                staged.extend_from_slice(data);
                if *done {
                    let (meta, bytes) = self.staging.take().expect("staged above");
                    let durable = self.snapshot_index();
                    if meta.index <= durable {
                        return Err(WriteError::StaleInstall { index: meta.index, durable });
                    }
                    if self.term_at(meta.index) == Some(meta.term) {
                        self.compact(meta.index);
                    } else {
                        self.entries.clear();
                    }
                    self.base = meta.index;
                    self.snapshot = Some((meta.clone(), Bytes::from(bytes)));
                    installed = Some(meta);
                }
            }
        }
        self.apply(w.hard_state, &w.entries)
            .map_err(|(first, last)| WriteError::Gap { first, last })?;
        Ok(installed)
    }

    fn compact(&mut self, through: LogIndex) {
        if through <= self.base {
            return;
        }
        let k = (through.0 - self.base.0).min(self.entries.len() as u64) as usize;
        self.entries.drain(..k);
        self.base = through;
    }

    /// Makes `hard_state` and `entries` durable. Fails, changing nothing, if
    /// the entries would leave a gap after the stored log or rewrite what
    /// the compaction point covers without a snapshot covering it.
    ///
    /// As in `xraft_storage::Storage::append`, a write at or below the
    /// durable snapshot's index (queued before a snapshot of entries not yet
    /// durable here) discards every stored entry, and the log goes on after
    /// the snapshot with what [`xraft::entries_after_snapshot`] keeps.
    pub fn apply(
        &mut self,
        hard_state: Option<HardState>,
        entries: &[Entry],
    ) -> Result<(), (LogIndex, LogIndex)> {
        let mut entries = entries;
        let snap = self.snapshot_index();
        if entries.first().is_some_and(|e| e.index <= snap) {
            let term = self.snapshot.as_ref().map_or(Term::ZERO, |(m, _)| m.term);
            entries = xraft::entries_after_snapshot(entries, snap, term);
            self.entries.clear();
            self.base = snap;
        }
        if let Some(first) = entries.first() {
            let mut last = LogIndex(self.base.0 + self.entries.len() as u64);
            if snap >= last && first.index == snap.next() {
                // The snapshot (taken ahead of a durable log that a crash
                // cut short) covers the whole stored log: it goes on after
                // the snapshot.
                self.entries.clear();
                self.base = snap;
                last = snap;
            }
            if first.index <= self.base || first.index > last.next() {
                return Err((first.index, last));
            }
            self.entries.truncate((first.index.0 - self.base.0 - 1) as usize);
            self.entries.extend_from_slice(entries);
        }
        if let Some(hs) = hard_state {
            self.hard_state = hs;
        }
        Ok(())
    }

    /// Crashes: decides which pending writes survive and returns them (the
    /// last maybe torn) for the caller to apply in order with
    /// [`Disk::apply_write`]; the pending queue is emptied. Call
    /// [`Disk::drop_staging`] after applying them.
    pub fn crash(
        &mut self,
        mode: CrashMode,
        rng: &mut SimRng,
    ) -> (Vec<PersistWrite>, CrashOutcome) {
        let pending: Vec<PersistWrite> = self.pending.drain(..).collect();
        let n = pending.len();
        let mut out = CrashOutcome { pending: n, kept: 0, torn: false };
        let mut keep = match mode {
            CrashMode::LoseAll => Vec::new(),
            CrashMode::KeepPrefix => {
                let k = rng.below(n as u64 + 1) as usize;
                pending.into_iter().take(k).collect()
            }
            CrashMode::Torn => {
                if n == 0 {
                    Vec::new()
                } else {
                    let k = rng.below(n as u64) as usize;
                    let mut v: Vec<PersistWrite> = pending.into_iter().take(k + 1).collect();
                    let last = v.last_mut().expect("k + 1 >= 1 writes taken");
                    let cut = rng.below(last.entries.len().max(1) as u64) as usize;
                    last.entries.truncate(cut);
                    out.torn = true;
                    v
                }
            }
        };
        out.kept = keep.len();
        keep.shrink_to_fit();
        (keep, out)
    }

    /// Forgets the chunks of an incomplete snapshot install (after a crash).
    pub fn drop_staging(&mut self) {
        self.staging = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use xraft::{EntryVec, PersistId};

    fn e(index: u64, term: u64) -> Entry {
        Entry::normal(LogIndex(index), Term(term), Bytes::new())
    }

    fn w(id: u64, entries: &[Entry]) -> PersistWrite {
        PersistWrite {
            id: PersistId(id),
            snapshot: None,
            hard_state: None,
            entries: entries.iter().cloned().collect::<EntryVec>(),
        }
    }

    #[test]
    fn writes_replace_the_suffix_and_refuse_gaps() {
        let mut d = Disk::bootstrap(&[NodeId(1)]);
        assert_eq!(d.apply(None, &[e(2, 1), e(3, 1), e(4, 1)]), Ok(()));
        assert_eq!(d.apply(None, &[e(3, 2)]), Ok(()));
        assert_eq!(d.last_index(), LogIndex(3));
        assert_eq!(d.term_at(LogIndex(3)), Some(Term(2)));
        assert_eq!(d.apply(None, &[e(5, 2)]), Err((LogIndex(5), LogIndex(3))));
    }

    #[test]
    fn crash_modes_keep_what_they_say() {
        let mut rng = SimRng::new(9);
        for _ in 0..50 {
            let mut d = Disk::bootstrap(&[NodeId(1)]);
            d.push(w(1, &[e(2, 1), e(3, 1)]));
            d.push(w(2, &[e(4, 1), e(5, 1), e(6, 1)]));
            let (kept, o) = d.crash(CrashMode::LoseAll, &mut rng);
            assert!(kept.is_empty() && o.pending == 2 && d.pending_len() == 0);
            d.push(w(1, &[e(2, 1), e(3, 1)]));
            d.push(w(2, &[e(4, 1), e(5, 1), e(6, 1)]));
            let (kept, o) = d.crash(CrashMode::KeepPrefix, &mut rng);
            assert!(kept.len() <= 2 && !o.torn);
            assert!(kept.iter().enumerate().all(|(i, k)| k.id == PersistId(i as u64 + 1)));
            d.push(w(1, &[e(2, 1), e(3, 1)]));
            d.push(w(2, &[e(4, 1), e(5, 1), e(6, 1)]));
            let (kept, o) = d.crash(CrashMode::Torn, &mut rng);
            assert!(o.torn && !kept.is_empty());
            let last = kept.last().expect("torn keeps one");
            let full = if last.id == PersistId(1) { 2 } else { 3 };
            assert!(last.entries.len() < full, "a torn write keeps a strict prefix");
        }
    }
}
