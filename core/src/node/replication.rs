//! Log replication, commit and apply (paper §5.3, §5.4).
//!
//! Owns proposals, the leader's appends and heartbeats, the follower's
//! consistency check and acknowledgements, commit advancement and handing
//! committed entries to the application. Invariants: a follower acknowledges
//! only entries that are durable and known to match the current leader; it
//! truncates only on a real conflict, never for a stale or reordered append;
//! a leader counts itself only for durable entries and commits by counting
//! only entries of its own term (Figure 8); only committed entries are
//! applied, in order, once each.

use std::borrow::Cow;

use bytes::Bytes;
use smallvec::SmallVec;

use crate::error::ProposeError;
use crate::message::{ForwardResult, Message, MessageBody};
use crate::types::{Entry, EntryKind, EntryVec, LogIndex, NodeId, PersistId, Term};

use super::progress::ProgressState;
use super::{quorum, Commands, Node, Output, PersistWrite, Requester, Role};

impl Node {
    /// Leader: appends a client's commands.
    pub(super) fn propose(&mut self, who: Requester, commands: Commands) {
        let bytes = match self.check_proposal(&commands) {
            Ok(bytes) => bytes,
            Err(error) => return self.respond(who, ForwardResult::Rejected(error)),
        };
        self.uncommitted_bytes += bytes;
        let term = self.term;
        let first = self.log.last_index().next();
        let mut index = first;
        for data in commands {
            self.append_local(Entry::normal(index, term, data));
            index = index.next();
        }
        let last = index.prev();
        self.pending_proposals.push_back((last, bytes));
        self.respond(who, ForwardResult::Proposed { term, first, last });
        self.broadcast_append();
    }

    /// Checks a proposal against the bounds; returns its size in bytes.
    fn check_proposal(&self, commands: &[Bytes]) -> Result<usize, ProposeError> {
        if self.role != Role::Leader {
            return Err(match self.leader {
                Some(l) => ProposeError::NotLeader { leader_hint: Some(l) },
                None => ProposeError::NoLeader,
            });
        }
        if let Some(t) = &self.transfer {
            return Err(ProposeError::Transferring { target: t.target });
        }
        let bytes = self.check_proposal_size(commands)?;
        let uncommitted = (self.log.last_index().0 - self.commit.0) as usize;
        if uncommitted + commands.len() > self.cfg.uncommitted_entries_max
            || self.uncommitted_bytes + bytes > self.cfg.uncommitted_bytes_max
        {
            return Err(ProposeError::Busy);
        }
        Ok(bytes)
    }

    /// Checks a proposal's shape against the bounds any leader applies
    /// (also before a follower forwards it, so that a proposal no leader
    /// would take never travels); returns its size in bytes.
    pub(super) fn check_proposal_size(&self, commands: &[Bytes]) -> Result<usize, ProposeError> {
        if commands.is_empty() {
            return Err(ProposeError::TooLarge(Cow::Borrowed(
                "a proposal needs at least one command",
            )));
        }
        if commands.len() > self.cfg.propose_entries_max {
            return Err(ProposeError::TooLarge(Cow::Borrowed(
                "more commands than propose_entries_max",
            )));
        }
        let bytes: usize =
            commands.iter().map(|c| c.len() + crate::types::ENTRY_OVERHEAD_BYTES).sum();
        if bytes > self.cfg.append_bytes_max {
            return Err(ProposeError::TooLarge(Cow::Borrowed(
                "proposal larger than append_bytes_max",
            )));
        }
        Ok(bytes)
    }

    pub(super) fn append_noop(&mut self) {
        let index = self.log.last_index().next();
        let term = self.term;
        self.append_local(Entry { index, term, kind: EntryKind::Noop, data: Bytes::new() });
        self.broadcast_append();
    }

    /// Leader: appends to the log and queues the write.
    pub(super) fn append_local(&mut self, e: Entry) {
        self.note_appended(&e);
        self.dur.write_entry(e.clone());
        self.log.push(e);
    }

    /// Sends new entries to every follower whose window allows.
    pub(super) fn broadcast_append(&mut self) {
        for i in 0..self.progress.len() {
            self.send_append(i, false);
        }
        // A single-voter cluster commits on its own durable write alone.
        self.maybe_commit();
    }

    /// Sends what follower `i` is missing, within flow control. With
    /// `allow_empty`, sends an empty append if there is nothing new (a probe
    /// or a commit update).
    pub(super) fn send_append(&mut self, i: usize, allow_empty: bool) {
        let last = self.log.last_index();
        let (max_msgs, max_bytes) = (self.cfg.inflight_appends_max, self.cfg.inflight_bytes_max);
        let me = self.cfg.id;
        let mut sent_one = false;
        loop {
            let p = &self.progress[i];
            if p.paused(max_msgs, max_bytes) {
                return;
            }
            let next = p.next_index;
            if next > last && (sent_one || !allow_empty) {
                return;
            }
            let prev_index = next.prev();
            let Some(prev_term) = self.log.term(prev_index) else {
                // The follower needs entries we no longer hold: a snapshot.
                return self.start_snapshot_transfer(i);
            };
            let (entries, bytes) = if next <= last {
                self.log.slice(next, last, self.cfg.append_entries_max, self.cfg.append_bytes_max)
            } else {
                (EntryVec::new(), 0)
            };
            let end = entries.last().map_or(prev_index, |e| e.index);
            let had = !entries.is_empty();
            let to = p.id;
            self.progress[i].sent(end, bytes, had);
            self.metrics.appends_sent += 1;
            let commit = self.commit;
            self.send(Message {
                from: me,
                to,
                term: self.term,
                body: MessageBody::Append { prev_index, prev_term, commit, entries },
            });
            sent_one = true;
            if self.progress[i].state == ProgressState::Probe {
                return;
            }
        }
    }

    /// Follower: leader contact resets the election timer and fixes the leader.
    pub(super) fn follow(&mut self, from: NodeId) {
        if self.role != Role::Follower || self.leader != Some(from) {
            let term = self.term;
            self.become_follower(term, Some(from));
        }
        self.election_elapsed = 0;
        // A leader is alive: no rescue is needed (see `on_request_vote`).
        self.rescue = false;
    }

    pub(super) fn on_append(
        &mut self,
        from: NodeId,
        prev_index: LogIndex,
        prev_term: Term,
        commit: LogIndex,
        entries: EntryVec,
    ) {
        self.metrics.appends_received += 1;
        if !self.append_is_well_formed(prev_index, prev_term, &entries) {
            self.metrics.messages_invalid += 1;
            return;
        }
        self.follow(from);
        let me = self.cfg.id;
        let term = self.term;
        let snap = self.log.snapshot_index();
        let prev_ok = if prev_index < snap {
            true // below our snapshot: committed, hence matching
        } else {
            self.log.term(prev_index) == Some(prev_term)
        };
        if !prev_ok {
            let (hint_index, hint_term) = self.log.hint_at_or_below(prev_index, prev_term);
            self.send(Message {
                from: me,
                to: from,
                term,
                body: MessageBody::AppendResp {
                    success: false,
                    index: prev_index,
                    hint_index,
                    hint_term,
                },
            });
            return;
        }
        let had_entries = !entries.is_empty();
        let end = LogIndex(prev_index.0 + entries.len() as u64);
        // Append only from the first real conflict: an older, shorter append
        // arriving late must not truncate entries a newer one added.
        let mut appending = false;
        for e in entries {
            if e.index <= snap {
                continue;
            }
            if !appending {
                match self.log.term(e.index) {
                    Some(t) if t == e.term => continue,
                    Some(_) if e.index <= self.commit => {
                        // No honest leader contradicts a committed entry
                        // (leader completeness): drop the whole append,
                        // nothing of it was applied yet.
                        self.metrics.messages_invalid += 1;
                        return;
                    }
                    Some(_) => {
                        self.log.truncate_from(e.index);
                        self.note_truncated(e.index);
                    }
                    None => {}
                }
                appending = true;
            }
            self.note_appended(&e);
            self.dur.write_entry(e.clone());
            self.log.push(e);
        }
        if end > self.leader_match {
            self.leader_match = end;
        }
        // Commit only what is verified to match the leader (bug: commit =
        // leaderCommit would apply entries the leader never sent us).
        let new_commit = commit.min(self.leader_match);
        if new_commit > self.commit {
            self.commit = new_commit;
        }
        // Answer now if there is something to say: a probe or commit update
        // (always answered), newly durable entries, or entries that were
        // already durable (a retransmission after a lost answer; without this
        // reply a probing leader would wait forever). Otherwise the answer
        // goes out when the write is durable (`on_persisted`).
        let ack = self.ack_index();
        if !had_entries || ack > self.acked || ack >= end {
            self.send_ack(from);
        }
    }

    /// Whether an append's entries could come from an honest leader of our
    /// term: indices follow on from `prev_index` one at a time, terms never
    /// go backwards from `prev_term` and none passes our term. Anything else
    /// would corrupt the log (or make it unreadable at restart), so it is
    /// dropped before it touches anything.
    fn append_is_well_formed(
        &self,
        prev_index: LogIndex,
        prev_term: Term,
        entries: &[Entry],
    ) -> bool {
        if prev_term > self.term {
            return false;
        }
        let (mut index, mut term) = (prev_index, prev_term);
        for e in entries {
            match index.0.checked_add(1) {
                Some(next) if e.index.0 == next => {}
                _ => return false,
            }
            if e.term < term || e.term > self.term {
                return false;
            }
            (index, term) = (e.index, e.term);
        }
        true
    }

    /// Highest index we may acknowledge: durable, and known to match the
    /// leader (verified by its appends, or committed, hence in every
    /// leader's log).
    fn ack_index(&self) -> LogIndex {
        self.dur.stable_index().min(self.leader_match.max(self.commit))
    }

    pub(super) fn send_ack(&mut self, to: NodeId) {
        let index = self.ack_index();
        self.acked = self.acked.max(index);
        let me = self.cfg.id;
        self.send(Message {
            from: me,
            to,
            term: self.term,
            body: MessageBody::AppendResp {
                success: true,
                index,
                hint_index: LogIndex::ZERO,
                hint_term: Term::ZERO,
            },
        });
    }

    pub(super) fn on_append_resp(
        &mut self,
        from: NodeId,
        success: bool,
        index: LogIndex,
        hint_index: LogIndex,
        hint_term: Term,
    ) {
        if self.role != Role::Leader {
            return;
        }
        let Some(i) = self.progress_index(from) else { return };
        self.progress[i].recent_active = true;
        if success {
            if index > self.log.last_index() {
                return; // cannot match entries we never had: a bogus answer
            }
            if self.progress[i].on_ack(index) {
                self.maybe_commit();
            }
            // The commit may have removed us (and our followers) already.
            let Some(i) = self.progress_index(from) else { return };
            self.send_append(i, false);
            if self.transfer.as_ref().is_some_and(|t| t.target == from) {
                self.maybe_send_timeout_now();
            }
        } else {
            // Fast back-off: skip every entry of a term the follower cannot
            // match, using its hint (etcd's findConflictByTerm on both sides).
            let next = if hint_index < self.log.snapshot_index() {
                // The follower's log ends below what we still hold: it needs
                // the snapshot (send_append finds no term for its prev).
                hint_index.next()
            } else if hint_term > Term::ZERO {
                self.log.hint_at_or_below(hint_index, hint_term).0.next()
            } else {
                hint_index.next()
            };
            if self.progress[i].on_reject(index, next) {
                self.send_append(i, true);
            }
        }
    }

    pub(super) fn on_heartbeat(&mut self, from: NodeId, commit: LogIndex, ctx: u64) {
        self.follow(from);
        // The leader capped `commit` at what it knows we hold durably and
        // matching (our acknowledged index in its term), so it holds even
        // across our restart, when `leader_match` starts over.
        let new_commit = commit.min(self.log.last_index());
        if new_commit > self.commit {
            self.commit = new_commit;
        }
        let me = self.cfg.id;
        let index = self.ack_index();
        self.send(Message {
            from: me,
            to: from,
            term: self.term,
            body: MessageBody::HeartbeatResp { index, ctx },
        });
    }

    pub(super) fn on_heartbeat_resp(&mut self, from: NodeId, _index: LogIndex, ctx: u64) {
        if self.role != Role::Leader {
            return;
        }
        self.on_read_ack(from, ctx);
        let Some(i) = self.progress_index(from) else { return };
        let p = &mut self.progress[i];
        p.recent_active = true;
        p.probe_sent = false;
        // A lost append leaves the follower behind with nothing new to send:
        // an empty append (rejected if there is a gap) recovers it.
        let full = p.state == ProgressState::Replicate
            && p.paused(self.cfg.inflight_appends_max, self.cfg.inflight_bytes_max);
        if full {
            // Every append in the window may have been lost, and no answer
            // will ever free it: probe at the optimistic next index anyway,
            // outside the window. A follower with a gap rejects it, which
            // sends this progress back to probing (etcd does the same).
            self.send_empty_append_at_next(i);
        } else if p.match_index < self.log.last_index() {
            self.send_append(i, true);
        }
    }

    /// An empty append at follower `i`'s next index, ignoring flow control.
    fn send_empty_append_at_next(&mut self, i: usize) {
        let prev_index = self.progress[i].next_index.prev();
        if self.log.term(prev_index).is_none() {
            // Compacted while the window was lost (the follower was down):
            // only a snapshot can bring it back.
            return self.start_snapshot_transfer(i);
        }
        self.send_empty_append(i, prev_index);
    }

    /// An empty append to follower `i` anchored at `prev_index` (a probe, or
    /// a commit update), carrying the commit index. Sends nothing if the
    /// anchor is compacted away.
    fn send_empty_append(&mut self, i: usize, prev_index: LogIndex) {
        let Some(prev_term) = self.log.term(prev_index) else { return };
        let to = self.progress[i].id;
        let me = self.cfg.id;
        self.metrics.appends_sent += 1;
        self.send(Message {
            from: me,
            to,
            term: self.term,
            body: MessageBody::Append {
                prev_index,
                prev_term,
                commit: self.commit,
                entries: EntryVec::new(),
            },
        });
    }

    pub(super) fn progress_index(&self, id: NodeId) -> Option<usize> {
        self.progress.binary_search_by_key(&id, |p| p.id).ok()
    }

    /// Leader: advances commit to the highest current-term index that a
    /// majority of voters holds durably (self counted by its durable index).
    pub(super) fn maybe_commit(&mut self) {
        if self.role != Role::Leader {
            return;
        }
        let me = self.cfg.id;
        let mut matches: SmallVec<[u64; 8]> = SmallVec::new();
        if self.is_voter(me) {
            matches.push(self.dur.stable_index().0);
        }
        matches.extend(self.progress.iter().filter(|p| p.voter).map(|p| p.match_index.0));
        let candidate = LogIndex(quorum::committed_index(&mut matches));
        // Figure 8: never commit an earlier term's entry by counting replicas.
        if candidate <= self.commit || self.log.term(candidate) != Some(self.term) {
            return;
        }
        let old_commit = self.commit;
        self.commit = candidate;
        while let Some(&(last, bytes)) = self.pending_proposals.front() {
            if last > candidate {
                break;
            }
            self.pending_proposals.pop_front();
            self.uncommitted_bytes -= bytes;
            self.metrics.proposals_ok += 1;
        }
        // Tell followers promptly; most get it with their next entries.
        for i in 0..self.progress.len() {
            let p = &self.progress[i];
            if p.state == ProgressState::Replicate && p.next_index > self.log.last_index() {
                // Anchored at the follower's match: always accepted.
                let anchor = p.match_index;
                self.send_empty_append(i, anchor);
            }
        }
        if old_commit < self.term_start && self.term_start <= candidate {
            // This term's no-op committed: reads and changes may proceed.
            self.maybe_start_read_round();
        }
        self.on_config_committed(old_commit);
        // Elected as a non-voter (a rescue, see `on_request_vote`): once this
        // term's first entry commits, the voters hold the newest entries and
        // can elect one of themselves. Hand over: ask a voter holding our
        // whole log to campaign at once (as a transfer does, so the others'
        // lease does not hold it up), and step down.
        if self.role == Role::Leader
            && !self.is_voter(self.cfg.id)
            && self.conf.latest_index() <= self.commit
            && self.term_start <= self.commit
        {
            let last = self.log.last_index();
            let heir =
                self.progress.iter().find(|p| p.voter && p.match_index == last).map(|p| p.id);
            if let Some(to) = heir {
                self.send_to(to, MessageBody::TimeoutNow);
            }
            let term = self.term;
            self.become_follower(term, None);
        }
    }

    pub(super) fn on_persisted(&mut self, through: PersistId) {
        let mut released = Vec::new();
        self.dur.complete(through, &mut released);
        for m in released {
            // An acknowledgement held (for its term's hard state) past a
            // move to a later term may be false by now: the later term's
            // leader may have truncated the entries it acknowledges, in a
            // write this same completion covers. Its leader is deposed
            // anyway; drop it (found by the simulator's send-time check,
            // with pauses delivering a burst of terms at once).
            let ack = matches!(
                m.body,
                MessageBody::AppendResp { success: true, .. } | MessageBody::HeartbeatResp { .. }
            );
            if ack && m.term < self.term {
                continue;
            }
            self.out.push(Output::Send(m));
        }
        self.snapshot_persisted(through);
        match self.role {
            Role::Leader => self.maybe_commit(),
            Role::Candidate => self.check_vote_result(),
            Role::Follower => {
                if let Some(leader) = self.leader {
                    if self.ack_index() > self.acked {
                        self.send_ack(leader);
                    }
                }
            }
            Role::PreCandidate => {}
        }
    }

    /// Emits the step's write, if any.
    pub(super) fn flush_write(&mut self) {
        if let Some(b) = self.dur.take_write() {
            self.metrics.persists += 1;
            self.out.push(Output::Persist(PersistWrite {
                id: b.id,
                snapshot: b.snapshot,
                entries: b.entries,
                hard_state: b.hard_state,
            }));
        }
    }

    /// Hands committed entries to the application. They need not be durable
    /// here: committed means durable on a majority, and the state machine is
    /// rebuilt from snapshot and log on restart anyway. So a leader answers
    /// a client once a majority (itself or not) has the entry, and its own
    /// fsync is off that path when followers are faster.
    pub(super) fn maybe_apply(&mut self) {
        let upto = self.commit;
        let in_flight = (self.apply_sent.0 - self.applied.0) as usize;
        if upto <= self.apply_sent || in_flight >= self.cfg.apply_entries_max {
            return;
        }
        let max = self.cfg.apply_entries_max - in_flight;
        let (entries, _) = self.log.slice(self.apply_sent.next(), upto, max, usize::MAX);
        if let Some(last) = entries.last() {
            self.apply_sent = last.index;
            self.out.push(Output::Apply { entries });
        }
    }
}
