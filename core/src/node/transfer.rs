//! Leadership transfer (thesis §3.10).
//!
//! Owns the leader's side: bring the target up to date, send it
//! `TimeoutNow`, and refuse proposals meanwhile; the target campaigns at once
//! with a vote request that voters honour despite the leader lease.
//! Invariants: at most one transfer at a time; it is aborted after an
//! election timeout (`Timeout`), when the target stops being a voter, or
//! when this node stops leading before sending `TimeoutNow`
//! (`LeadershipLost`). Once `TimeoutNow` went out, stopping leading makes
//! it a hand-off whose outcome waits until this node learns who leads a
//! later term: `Completed` only if the target does, `LeadershipLost` if
//! another node does or if no leader is heard of within two maximum
//! election timeouts. So `Completed` means the target was elected.

use std::borrow::Cow;

use crate::error::ProposeError;
use crate::message::{ForwardResult, MessageBody};
use crate::types::{NodeId, Term};

use super::{Node, Requester, Role};

#[derive(Debug)]
pub(crate) struct Transfer {
    pub target: NodeId,
    who: Requester,
    deadline: u64,
    timeout_now_sent: bool,
}

impl Transfer {
    pub fn deadline(&self) -> u64 {
        self.deadline
    }
}

/// A transfer whose `TimeoutNow` went out before this node stopped leading:
/// its outcome waits for news of the next leader.
#[derive(Debug)]
pub(crate) struct Handoff {
    target: NodeId,
    who: Requester,
    /// The term this node led in; the target must lead a later one.
    term: Term,
    deadline: u64,
}

impl Handoff {
    pub fn deadline(&self) -> u64 {
        self.deadline
    }
}

impl Node {
    /// Leader: starts handing leadership to `target`.
    pub(super) fn transfer_leadership(&mut self, who: Requester, target: NodeId) {
        if target == self.cfg.id {
            return self.respond(who, ForwardResult::Completed);
        }
        if let Some(t) = &self.transfer {
            let error = ProposeError::Transferring { target: t.target };
            return self.respond(who, ForwardResult::Rejected(error));
        }
        if !self.is_voter(target) || self.progress_index(target).is_none() {
            let error =
                ProposeError::InvalidChange(Cow::Borrowed("transfer target is not a voter"));
            return self.respond(who, ForwardResult::Rejected(error));
        }
        let deadline = self.now + u64::from(self.cfg.election_timeout_ticks_min);
        self.transfer = Some(Transfer { target, who, deadline, timeout_now_sent: false });
        self.maybe_send_timeout_now();
    }

    /// Sends `TimeoutNow` once the target holds our whole log; until then
    /// keeps replicating to it.
    pub(super) fn maybe_send_timeout_now(&mut self) {
        let Some(t) = &self.transfer else { return };
        if t.timeout_now_sent {
            return;
        }
        let target = t.target;
        let Some(i) = self.progress_index(target) else { return };
        if self.progress[i].match_index < self.log.last_index() {
            self.send_append(i, false);
            return;
        }
        if let Some(t) = &mut self.transfer {
            t.timeout_now_sent = true;
        }
        self.send_to(target, MessageBody::TimeoutNow);
    }

    /// Ends the transfer with an error (the leader keeps leading).
    pub(super) fn abort_transfer(&mut self, error: ProposeError) {
        if let Some(t) = self.transfer.take() {
            self.respond(t.who, ForwardResult::Rejected(error));
        }
    }

    /// Leader tick: abort a transfer that did not finish in time.
    pub(super) fn check_transfer_deadline(&mut self) {
        if self.transfer.as_ref().is_some_and(|t| self.now >= t.deadline) {
            self.abort_transfer(ProposeError::Timeout);
        }
    }

    /// This node stops leading: a transfer whose `TimeoutNow` went out
    /// becomes a hand-off awaiting the next leader; one that had not got
    /// that far is lost.
    pub(super) fn end_transfer_on_step_down(&mut self) {
        let Some(t) = self.transfer.take() else { return };
        if !t.timeout_now_sent {
            return self.respond(t.who, ForwardResult::Rejected(ProposeError::LeadershipLost));
        }
        // At most one: a node leads again (ending any earlier hand-off, see
        // `settle_handoff`) before it can start another transfer.
        if let Some(old) = self.handoff.take() {
            self.respond(old.who, ForwardResult::Rejected(ProposeError::LeadershipLost));
        }
        let wait = 2 * u64::from(self.cfg.election_timeout_ticks_max);
        let deadline = self.now + wait;
        self.handoff = Some(Handoff { target: t.target, who: t.who, term: self.term, deadline });
    }

    /// After each input: ends a hand-off once this node knows who leads a
    /// later term than the one it handed off (or itself leads again), or
    /// once its deadline passed.
    pub(super) fn settle_handoff(&mut self) {
        let Some(h) = &self.handoff else { return };
        let leader = if self.role == Role::Leader { Some(self.cfg.id) } else { self.leader };
        let completed = match leader {
            Some(l) if self.term > h.term => l == h.target,
            _ if self.now >= h.deadline => false,
            _ => return,
        };
        let Some(h) = self.handoff.take() else { return };
        if completed {
            self.metrics.transfers_completed += 1;
            self.respond(h.who, ForwardResult::Completed);
        } else {
            self.respond(h.who, ForwardResult::Rejected(ProposeError::LeadershipLost));
        }
    }

    /// The target's side: campaign now, skipping PreVote.
    pub(super) fn on_timeout_now(&mut self, from: NodeId) {
        if self.leader == Some(from) && self.is_voter(self.cfg.id) {
            self.campaign_transfer = true;
            self.become_candidate();
        }
    }
}
