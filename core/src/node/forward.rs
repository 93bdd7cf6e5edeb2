//! Request routing: who handles a request, and forwarding to the leader.
//!
//! Owns the entry point for every client request (proposal, read, membership
//! change, transfer) and the follower's table of forwarded requests. A
//! request reaching a follower goes to the leader it knows; with no leader
//! it waits up to `propose_timeout_ticks` for one and then fails with
//! `NoLeader`; a forwarded request without an answer in that time fails with
//! `Timeout` (its outcome is unknown). Invariants: every request gets exactly
//! one answer (`Proposed`, `ReadReady`, `Completed` or `Rejected`); the
//! follower's tables are bounded by `forward_pending_max`, the leader's
//! memory of forwarded proposals by `forward_dedup_max`.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use crate::error::ProposeError;
use crate::message::{ForwardResult, Forwarded, Message, MessageBody};
use crate::types::{NodeId, RequestId};

use super::{Node, Output, Requester, Role};

#[derive(Debug, Default)]
pub(crate) struct Forwarding {
    /// Waiting for a leader: (request, what, deadline tick).
    queued: VecDeque<(RequestId, Forwarded, u64)>,
    /// Sent to the leader, awaiting its answer: request -> deadline tick.
    sent: BTreeMap<RequestId, u64>,
    /// Forwarded proposals received, (from, request), oldest first, at most
    /// `forward_dedup_max`: the network may deliver a `Forward` twice,
    /// and appending its commands twice would execute a client's write
    /// twice (the second copy can land after later writes).
    seen: VecDeque<(NodeId, RequestId)>,
    seen_set: BTreeSet<(NodeId, RequestId)>,
}

impl Forwarding {
    fn len(&self) -> usize {
        self.queued.len() + self.sent.len()
    }

    /// The earliest deadline, if any.
    pub fn next_deadline(&self) -> Option<u64> {
        let q = self.queued.front().map(|(_, _, d)| *d);
        let s = self.sent.values().min().copied();
        q.into_iter().chain(s).min()
    }
}

impl Node {
    /// Routes a request: handled here if this node leads, else forwarded.
    pub(super) fn request(&mut self, who: Requester, what: Forwarded) {
        if self.role == Role::Leader {
            return self.handle_as_leader(who, what);
        }
        let Requester::Local(request) = who else {
            // A follower forwarded to us but we do not lead: say who does.
            let error = match self.leader {
                Some(l) => ProposeError::NotLeader { leader_hint: Some(l) },
                None => ProposeError::NoLeader,
            };
            return self.respond(who, ForwardResult::Rejected(error));
        };
        if !self.cfg.forward_requests {
            let error = ProposeError::NotLeader { leader_hint: self.leader };
            return self.respond(who, ForwardResult::Rejected(error));
        }
        if let Forwarded::Propose(commands) = &what {
            if let Err(error) = self.check_proposal_size(commands) {
                return self.respond(who, ForwardResult::Rejected(error));
            }
        }
        if self.fwd.len() >= self.cfg.forward_pending_max {
            return self.respond(who, ForwardResult::Rejected(ProposeError::Busy));
        }
        let deadline = self.now + u64::from(self.cfg.propose_timeout_ticks);
        match self.leader {
            Some(leader) => self.forward(leader, request, what, deadline),
            None => self.fwd.queued.push_back((request, what, deadline)),
        }
    }

    fn handle_as_leader(&mut self, who: Requester, what: Forwarded) {
        match what {
            Forwarded::Propose(commands) => self.propose(who, commands),
            Forwarded::ReadIndex => self.read_index(who),
            Forwarded::ChangeMembership(change) => self.change_membership(who, change),
            Forwarded::Transfer(target) => self.transfer_leadership(who, target),
        }
    }

    fn forward(&mut self, leader: NodeId, request: RequestId, what: Forwarded, deadline: u64) {
        self.metrics.forwarded += 1;
        self.fwd.sent.insert(request, deadline);
        let me = self.cfg.id;
        self.send(Message {
            from: me,
            to: leader,
            term: self.term,
            body: MessageBody::Forward { ctx: request, request: what },
        });
    }

    /// A leader became known (or this node leads): send what waited.
    pub(super) fn flush_forward_queue(&mut self) {
        while let Some((request, what, deadline)) = self.fwd.queued.pop_front() {
            match (self.role, self.leader) {
                (Role::Leader, _) => self.handle_as_leader(Requester::Local(request), what),
                (_, Some(leader)) => self.forward(leader, request, what, deadline),
                (_, None) => {
                    self.fwd.queued.push_front((request, what, deadline));
                    return;
                }
            }
        }
    }

    /// Fails requests whose deadline passed.
    pub(super) fn expire_forwards(&mut self) {
        let now = self.now;
        while self.fwd.queued.front().is_some_and(|(_, _, d)| *d <= now) {
            let (request, _, _) = self.fwd.queued.pop_front().expect("front checked");
            self.respond(
                Requester::Local(request),
                ForwardResult::Rejected(ProposeError::NoLeader),
            );
        }
        if self.fwd.sent.values().any(|d| *d <= now) {
            let expired: Vec<RequestId> =
                self.fwd.sent.iter().filter(|(_, d)| **d <= now).map(|(r, _)| *r).collect();
            for request in expired {
                self.fwd.sent.remove(&request);
                self.respond(
                    Requester::Local(request),
                    ForwardResult::Rejected(ProposeError::Timeout),
                );
            }
        }
    }

    pub(super) fn on_forward(&mut self, from: NodeId, ctx: RequestId, what: Forwarded) {
        if let Forwarded::Propose(_) = what {
            // A duplicate: the first copy was (or will be) answered.
            if !self.fwd.seen_set.insert((from, ctx)) {
                return;
            }
            self.fwd.seen.push_back((from, ctx));
            // Not `forward_pending_max` (one follower's own bound, found by
            // the simulator at 1: a late second copy of a proposal then
            // found its first forgotten and was appended twice).
            if self.fwd.seen.len() > self.cfg.forward_dedup_max {
                let old = self.fwd.seen.pop_front().expect("non-empty");
                self.fwd.seen_set.remove(&old);
            }
            self.metrics.proposals_total += 1;
        }
        self.request(Requester::Remote(from, ctx), what);
    }

    pub(super) fn on_forward_resp(&mut self, ctx: RequestId, result: ForwardResult) {
        if self.fwd.sent.remove(&ctx).is_some() {
            self.respond(Requester::Local(ctx), result);
        }
    }

    /// Delivers a request's outcome to whoever asked.
    pub(super) fn respond(&mut self, who: Requester, result: ForwardResult) {
        match who {
            Requester::Remote(to, ctx) => {
                let me = self.cfg.id;
                self.send(Message {
                    from: me,
                    to,
                    term: self.term,
                    body: MessageBody::ForwardResp { ctx, result },
                });
            }
            Requester::Local(request) => match result {
                ForwardResult::Proposed { term, first, last } => {
                    self.emit(Output::Proposed { request, term, first, last })
                }
                ForwardResult::ReadIndex(index) => self.read_confirmed(request, index),
                ForwardResult::Completed => self.emit(Output::Completed { request }),
                ForwardResult::Rejected(error) => {
                    self.metrics.proposals_failed += 1;
                    self.emit(Output::Rejected { request, error })
                }
            },
        }
    }
}
