//! Linearizable reads with ReadIndex (thesis §6.4).
//!
//! Owns read rounds on the leader and the queue of reads waiting for the
//! local state machine to catch up. A read's index is the leader's commit
//! index when its round starts; the round confirms leadership with one
//! heartbeat exchange with a majority, for every read in it. Invariants: no
//! round starts before the leader has committed an entry of its own term
//! (before that its commit index may be stale); a read is released only once
//! the local applied index reaches its read index, or fails with `Timeout`
//! after `propose_timeout_ticks` (a node that stopped catching up does not
//! keep them forever); one round is in flight at a time, so reads arriving
//! meanwhile batch into the next one.

use std::collections::VecDeque;

use crate::error::ProposeError;
use crate::message::{ForwardResult, Message, MessageBody};
use crate::types::{LogIndex, NodeId, NodeIds, RequestId};

use super::quorum::majority;
use super::{Node, Output, Requester};

/// A round of reads awaiting leadership confirmation.
#[derive(Debug, Default)]
struct Round {
    seq: u64,
    index: LogIndex,
    acks: NodeIds,
    reads: Vec<Requester>,
}

#[derive(Debug, Default)]
pub(crate) struct Reads {
    /// Sequence number of the latest round.
    seq: u64,
    round: Option<Round>,
    /// Reads waiting for the next round.
    waiting: Vec<Requester>,
    /// Confirmed local reads waiting for apply: (request, read index,
    /// deadline tick), in nondecreasing index order.
    ready: VecDeque<(RequestId, LogIndex, u64)>,
}

impl Reads {
    /// The context a heartbeat carries: the round in flight.
    pub fn ctx(&self) -> u64 {
        self.seq
    }

    fn pending(&self) -> usize {
        self.waiting.len() + self.round.as_ref().map_or(0, |r| r.reads.len())
    }

    /// The earliest deadline of a confirmed read waiting for apply.
    pub fn next_deadline(&self) -> Option<u64> {
        self.ready.iter().map(|(_, _, d)| *d).min()
    }
}

impl Node {
    /// Leader: queues a read for the next round.
    pub(super) fn read_index(&mut self, who: Requester) {
        self.metrics.read_index_requests += 1;
        if self.reads.pending() >= self.cfg.reads_pending_max {
            self.respond(who, ForwardResult::Rejected(ProposeError::Busy));
            return;
        }
        self.reads.waiting.push(who);
        self.maybe_start_read_round();
    }

    /// Starts a round if reads wait, none is in flight, and this term's
    /// no-op has committed.
    pub(super) fn maybe_start_read_round(&mut self) {
        if self.reads.round.is_some()
            || self.reads.waiting.is_empty()
            || self.commit < self.term_start
            || self.role != super::Role::Leader
        {
            return;
        }
        self.reads.seq += 1;
        let mut acks = NodeIds::new();
        if self.is_voter(self.cfg.id) {
            acks.push(self.cfg.id);
        }
        let reads = std::mem::take(&mut self.reads.waiting);
        self.reads.round = Some(Round { seq: self.reads.seq, index: self.commit, acks, reads });
        self.broadcast_heartbeat();
        self.check_read_round();
    }

    /// Leader: a heartbeat answer echoing `ctx` from `from`.
    pub(super) fn on_read_ack(&mut self, from: NodeId, ctx: u64) {
        let voter = self.is_voter(from);
        let Some(round) = &mut self.reads.round else { return };
        if round.seq != ctx || !voter || round.acks.contains(&from) {
            return;
        }
        round.acks.push(from);
        self.check_read_round();
    }

    fn check_read_round(&mut self) {
        let need = majority(self.membership.voters.len());
        let voters = &self.membership.voters;
        let done = self
            .reads
            .round
            .as_ref()
            .is_some_and(|r| r.acks.iter().filter(|id| voters.contains(id)).count() >= need);
        if !done {
            return;
        }
        let round = self.reads.round.take().expect("round checked above");
        for who in round.reads {
            self.respond(who, ForwardResult::ReadIndex(round.index));
        }
        self.maybe_start_read_round();
    }

    /// A confirmed read index for a local request: wait for apply.
    pub(super) fn read_confirmed(&mut self, request: RequestId, index: LogIndex) {
        // Keep the queue ordered so release can stop at the first unapplied.
        let pos = self.reads.ready.partition_point(|(_, i, _)| *i <= index);
        let deadline = self.now + u64::from(self.cfg.propose_timeout_ticks);
        self.reads.ready.insert(pos, (request, index, deadline));
    }

    /// Tick: confirmed reads still waiting for apply past their deadline
    /// fail with `Timeout`.
    pub(super) fn expire_ready_reads(&mut self) {
        let now = self.now;
        if self.reads.ready.iter().all(|(_, _, d)| *d > now) {
            return;
        }
        let out = &mut self.out;
        self.reads.ready.retain(|&(request, _, deadline)| {
            if deadline > now {
                return true;
            }
            out.push(Output::Rejected { request, error: ProposeError::Timeout });
            false
        });
    }

    /// Releases reads whose index is applied.
    pub(super) fn release_reads(&mut self) {
        while let Some(&(request, index, _)) = self.reads.ready.front() {
            if index > self.applied {
                break;
            }
            self.reads.ready.pop_front();
            self.metrics.reads_served += 1;
            self.out.push(Output::ReadReady { request, index });
        }
    }

    /// Leadership lost: unconfirmed reads fail (confirmed ones stay valid).
    pub(super) fn fail_pending_reads(&mut self) {
        let mut failed: Vec<Requester> = std::mem::take(&mut self.reads.waiting);
        if let Some(r) = self.reads.round.take() {
            failed.extend(r.reads);
        }
        for who in failed {
            self.respond(who, ForwardResult::Rejected(ProposeError::LeadershipLost));
        }
    }

    /// Leader: sends a heartbeat (carrying the read context) to every peer.
    pub(super) fn broadcast_heartbeat(&mut self) {
        let me = self.cfg.id;
        let ctx = self.reads.ctx();
        for i in 0..self.progress.len() {
            let p = &self.progress[i];
            let to = p.id;
            let commit = self.commit.min(p.match_index);
            self.send(Message {
                from: me,
                to,
                term: self.term,
                body: MessageBody::Heartbeat { commit, ctx },
            });
        }
    }
}
