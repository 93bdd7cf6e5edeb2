//! Leadership transfer (thesis §3.10).
//!
//! Owns the leader's side: bring the target up to date, send it
//! `TimeoutNow`, and refuse proposals meanwhile; the target campaigns at once
//! with a vote request that voters honour despite the leader lease.
//! Invariants: at most one transfer at a time; it ends when this node stops
//! leading (handed off), after an election timeout (aborted, `Timeout`), or
//! when the target stops being a voter (aborted).

use std::borrow::Cow;

use crate::error::ProposeError;
use crate::message::{ForwardResult, Message, MessageBody};
use crate::types::NodeId;

use super::{Node, Requester};

#[derive(Debug)]
pub(crate) struct Transfer {
    pub target: NodeId,
    who: Requester,
    deadline: u64,
    timeout_now_sent: bool,
    /// Who sent the higher-term message that deposes us, if one did.
    pub deposed_by: Option<NodeId>,
}

impl Transfer {
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
        self.transfer =
            Some(Transfer { target, who, deadline, timeout_now_sent: false, deposed_by: None });
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
        let me = self.cfg.id;
        self.send(Message { from: me, to: target, term: self.term, body: MessageBody::TimeoutNow });
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

    /// This node stops leading: a transfer in progress handed off only if
    /// the target's campaign deposed us; otherwise (CheckQuorum, another
    /// node's term) the leader is lost and the hand-off did not happen.
    pub(super) fn end_transfer_on_step_down(&mut self) {
        let Some(t) = self.transfer.take() else { return };
        let handed_off = t.timeout_now_sent && t.deposed_by == Some(t.target);
        if handed_off {
            self.metrics.transfers_completed += 1;
            self.respond(t.who, ForwardResult::Completed);
        } else {
            self.respond(t.who, ForwardResult::Rejected(ProposeError::LeadershipLost));
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
