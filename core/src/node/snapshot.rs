//! Snapshots: the dynamic compaction policy, sending snapshots to followers
//! in chunks, and installing one received from the leader.
//!
//! Owns when to snapshot (the seed's dynamic threshold: snapshot once the
//! in-memory log holds more than the threshold; keep
//! `snapshot_min_retention_entries` after the snapshot point; next threshold
//! = max(initial, 1.5 × entries kept)), the leader's chunked transfer with a
//! per-chunk timeout, and the follower's install. Invariants: memory is
//! compacted only after the snapshot covering it is durable; a snapshot
//! older than what a follower already holds is never installed (Figure 13
//! rule 6); a received snapshot replaces the log only when it does not match
//! (same index and term keeps the suffix); the state machine restores only
//! from a durable snapshot; a crash between any two writes leaves storage
//! with either the old or the new snapshot, each consistent with its log.

use bytes::Bytes;

use crate::message::{Message, MessageBody};
use crate::types::{LogIndex, NodeId, PersistId, SnapshotMeta};

use super::progress::ProgressState;
use super::{Node, Output, SnapshotWrite};

/// A snapshot being received: the next offset expected.
#[derive(Debug)]
struct Install {
    meta: SnapshotMeta,
    next_offset: u64,
}

#[derive(Debug)]
pub(crate) struct SnapState {
    /// The latest durable snapshot.
    pub meta: SnapshotMeta,
    /// Current dynamic threshold, in log entries.
    threshold: usize,
    /// When and for what `TakeSnapshot` was last emitted (not yet answered).
    requested: Option<(u64, SnapshotMeta)>,
    /// A local snapshot written, waiting to be durable: (write, meta, compact through).
    taking: Option<(PersistId, SnapshotMeta, LogIndex)>,
    /// A snapshot being received from the leader.
    install: Option<Install>,
    /// A received snapshot complete and written, waiting to be durable.
    install_write: Option<(PersistId, SnapshotMeta)>,
}

impl SnapState {
    pub fn new(meta: SnapshotMeta, threshold: usize) -> Self {
        SnapState {
            meta,
            threshold,
            requested: None,
            taking: None,
            install: None,
            install_write: None,
        }
    }
}

impl Node {
    /// Asks the application for a snapshot when the log outgrew the threshold.
    pub(super) fn maybe_snapshot(&mut self) {
        let s = &self.snap;
        let retry = u64::from(self.cfg.snapshot_chunk_timeout_ticks);
        if self.log.len() <= s.threshold
            || self.apply_sent <= s.meta.index
            || s.taking.is_some()
            || s.install_write.is_some()
            || s.requested.as_ref().is_some_and(|(t, _)| self.now < t + retry)
        {
            return;
        }
        let index = self.apply_sent;
        let Some(term) = self.log.term(index) else { return };
        let meta = SnapshotMeta { index, term, membership: self.conf.at(index) };
        self.snap.requested = Some((self.now, meta.clone()));
        self.emit(Output::TakeSnapshot { meta });
    }

    /// The application's snapshot at `index` is durable: compact up to the
    /// retention point (in storage now, in memory once that is durable).
    pub(super) fn on_snapshot_taken(&mut self, index: LogIndex, ok: bool) {
        if !ok {
            // A failed snapshot is asked for again only after the timeout of
            // an unanswered one, counted from the failure: storage that
            // refuses it (full, read-only, removed) would otherwise be asked
            // again on every step, in a busy loop.
            if let Some((at, _)) = self.snap.requested.as_mut().filter(|(_, m)| m.index == index) {
                *at = self.now;
            }
            return;
        }
        let meta = match self.snap.requested.take_if(|(_, m)| m.index == index) {
            Some((_, meta)) => meta,
            // The answer to an earlier request, asked again (for a later
            // index) after its timeout because the application was slow. It
            // is still a durable snapshot of applied state, so it is used:
            // otherwise a snapshot slower than the timeout is never used and
            // the log never compacts. Its meta is rebuilt exactly: applied
            // entries are committed and never change.
            None if index <= self.apply_sent => {
                let Some(term) = self.log.term(index) else { return };
                SnapshotMeta { index, term, membership: self.conf.at(index) }
            }
            None => return,
        };
        // A received snapshot may have replaced the log meanwhile (installed,
        // or written and not yet durable): this one is then stale.
        if self.snap.taking.is_some()
            || self.snap.install_write.is_some()
            || index <= self.snap.meta.index
            || index <= self.log.snapshot_index()
        {
            return;
        }
        let retention = self.cfg.snapshot_min_retention_entries as u64;
        // Entries are applied (and so snapshotted) before they are locally
        // durable: never ask storage to drop entries it does not hold yet.
        let compact = LogIndex(index.0.saturating_sub(retention))
            .min(self.dur.stable_index())
            .max(self.log.snapshot_index())
            .min(index);
        let id = self
            .dur
            .write_snapshot(SnapshotWrite::Taken { meta: meta.clone(), compact_through: compact });
        self.snap.taking = Some((id, meta, compact));
    }

    /// Bookkeeping once writes through `through` are durable.
    pub(super) fn snapshot_persisted(&mut self, through: PersistId) {
        if self.snap.taking.as_ref().is_some_and(|(id, _, _)| *id <= through) {
            let (_, meta, compact) = self.snap.taking.take().expect("checked above");
            if meta.index > self.snap.meta.index {
                self.snap.meta = meta;
            }
            // An install may have replaced the log meanwhile: compact only
            // what is still ours.
            if compact > self.log.snapshot_index() && self.log.term(compact).is_some() {
                self.log.compact(compact);
                self.conf.compact(compact);
            }
            self.metrics.snapshots_taken += 1;
            let kept = self.log.len();
            self.snap.threshold = self.cfg.snapshot_threshold_entries.max(kept + kept / 2);
        }
        if self.snap.install_write.as_ref().is_some_and(|(id, _)| *id <= through) {
            let (_, meta) = self.snap.install_write.take().expect("checked above");
            self.metrics.snapshots_installed += 1;
            if meta.index > self.apply_sent {
                self.apply_sent = meta.index;
                self.emit(Output::RestoreSnapshot { meta: meta.clone() });
            }
            if meta.index > self.snap.meta.index {
                self.snap.meta = meta;
            }
        }
    }

    // ----- leader side -----

    /// Leader: follower `i` needs entries we compacted: send the latest
    /// snapshot (its index is learned from the first chunk).
    pub(super) fn start_snapshot_transfer(&mut self, i: usize) {
        self.progress[i].become_snapshot(LogIndex::ZERO);
        self.request_chunk(i);
    }

    fn request_chunk(&mut self, i: usize) {
        let now = self.now;
        let p = &mut self.progress[i];
        p.snap_sent_at = now;
        let (to, index, offset) = (p.id, p.snap_index, p.snap_offset);
        let max_bytes = self.cfg.snapshot_chunk_bytes;
        self.emit(Output::ReadSnapshotChunk { to, index, offset, max_bytes });
    }

    pub(super) fn on_snapshot_chunk(
        &mut self,
        to: NodeId,
        meta: SnapshotMeta,
        offset: u64,
        data: Bytes,
        done: bool,
    ) {
        let Some(i) = self.progress_index(to) else { return };
        let p = &mut self.progress[i];
        if p.state != ProgressState::Snapshot {
            return; // an answer to an older request
        }
        if meta.index != p.snap_index {
            if offset != 0 || meta.index < self.log.snapshot_index() {
                return;
            }
            // The first chunk, or a newer snapshot replaced the one being
            // sent: (re)start from its first byte.
            p.snap_index = meta.index;
            p.snap_offset = 0;
        } else if offset != p.snap_offset {
            return;
        }
        p.snap_sent_at = self.now;
        let me = self.cfg.id;
        self.send(Message {
            from: me,
            to,
            term: self.term,
            body: MessageBody::InstallSnapshot { meta, offset, data, done },
        });
    }

    pub(super) fn on_install_snapshot_resp(
        &mut self,
        from: NodeId,
        index: LogIndex,
        next_offset: u64,
        done: bool,
    ) {
        let Some(i) = self.progress_index(from) else { return };
        self.progress[i].recent_active = true;
        if done {
            // The follower holds (durably) the state through `index`.
            let p = &self.progress[i];
            if p.state == ProgressState::Snapshot && index >= p.snap_index {
                self.metrics.snapshots_sent += 1;
            }
            if index <= self.log.last_index() && self.progress[i].on_ack(index) {
                self.maybe_commit();
            }
            // The commit may have removed the follower already.
            let Some(i) = self.progress_index(from) else { return };
            self.send_append(i, false);
            return;
        }
        let p = &mut self.progress[i];
        if p.state != ProgressState::Snapshot || p.snap_index != index {
            return;
        }
        // The follower names the offset it expects, and it is the one that
        // knows: the leader resumes from there. The offset in flight itself
        // means that chunk went missing: resend it now rather than at the
        // chunk timeout. A lower one is usually a late duplicate answer,
        // which costs a chunk sent again (the follower then names its real
        // offset); but it can be real (the follower restarted, staged the
        // first chunks again, and a stale answer had moved the leader past
        // them), and ignoring it then stalled the transfer forever (seed
        // 89463).
        p.snap_offset = next_offset;
        self.request_chunk(i);
    }

    /// Leader tick: resend chunks whose answer is overdue.
    pub(super) fn retry_snapshot_chunks(&mut self) {
        let timeout = u64::from(self.cfg.snapshot_chunk_timeout_ticks);
        for i in 0..self.progress.len() {
            let p = &self.progress[i];
            if p.state == ProgressState::Snapshot && self.now >= p.snap_sent_at + timeout {
                self.request_chunk(i);
            }
        }
    }

    /// The earliest tick at which a chunk will be retried.
    pub(super) fn next_chunk_deadline(&self) -> Option<u64> {
        let timeout = u64::from(self.cfg.snapshot_chunk_timeout_ticks);
        self.progress
            .iter()
            .filter(|p| p.state == ProgressState::Snapshot)
            .map(|p| p.snap_sent_at + timeout)
            .min()
    }

    // ----- follower side -----

    pub(super) fn on_install_snapshot(
        &mut self,
        from: NodeId,
        meta: SnapshotMeta,
        offset: u64,
        data: Bytes,
        done: bool,
    ) {
        self.follow(from);
        let me = self.cfg.id;
        let term = self.term;
        let stale = meta.index <= self.commit.max(self.snap.meta.index);
        if stale || self.snap.install_write.is_some() {
            // We already hold this state (Figure 13 rule 6): answer like an
            // append so the leader learns how far we are.
            return self.send_ack(from);
        }
        // Offset 0 starts over, except for a late or duplicated first chunk
        // of the snapshot already being received: restarting then would
        // put us behind a leader that ignores a lower offset as a late
        // answer, and the transfer would never finish. The bytes received
        // so far are those of the same snapshot, so we keep them.
        let resuming = self.snap.install.as_ref().is_some_and(|i| i.meta == meta);
        if offset == 0 && !resuming {
            self.snap.install = Some(Install { meta: meta.clone(), next_offset: 0 });
        }
        let expected = match &self.snap.install {
            Some(inst) if inst.meta == meta => inst.next_offset,
            _ => 0,
        };
        if offset != expected {
            let body = MessageBody::InstallSnapshotResp {
                index: meta.index,
                next_offset: expected,
                done: false,
            };
            return self.send(Message { from: me, to: from, term, body });
        }
        let next_offset = offset + data.len() as u64;
        if let Some(inst) = &mut self.snap.install {
            inst.next_offset = next_offset;
        }
        let id = self.dur.write_snapshot(SnapshotWrite::Chunk {
            meta: meta.clone(),
            offset,
            data,
            done,
        });
        if done {
            self.snap.install = None;
            self.install_in_memory(&meta);
            self.snap.install_write = Some((id, meta.clone()));
        }
        let body = MessageBody::InstallSnapshotResp { index: meta.index, next_offset, done };
        self.send_after(id, Message { from: me, to: from, term, body });
    }

    /// Makes the log and membership agree with a snapshot being installed.
    /// Done when the final chunk is written, so that every later write
    /// follows the install in storage as in memory.
    fn install_in_memory(&mut self, meta: &SnapshotMeta) {
        if self.log.term(meta.index) == Some(meta.term) {
            // Figure 13 rule 6: the log matches at the snapshot point; keep
            // the suffix.
            self.log.compact(meta.index);
            self.conf.compact(meta.index);
        } else {
            let safe = self.commit.min(self.dur.stable_index());
            self.log.reset(meta.index, meta.term);
            self.conf.reset(meta.index, meta.membership.clone());
            self.dur.install_reset(meta.index, safe);
        }
        self.membership_changed();
        self.commit = self.commit.max(meta.index);
        self.leader_match = self.leader_match.max(meta.index);
    }
}
