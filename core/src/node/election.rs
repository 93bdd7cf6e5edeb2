//! Elections: timers, PreVote, votes, CheckQuorum and role transitions.
//!
//! Owns everything that changes `role`, `term` or `vote`, and the term rules
//! every incoming message passes first (paper §5.1, §5.2; thesis §9.6 for
//! PreVote; etcd's CheckQuorum lease). Invariants: the term never decreases;
//! a vote is granted at most once per term; a vote request leaves only after
//! the candidate's term and self-vote are durable, and a granted vote only
//! after the voter's is.

use crate::error::ProposeError;
use crate::message::{ForwardResult, Message, MessageBody};
use crate::types::{LogIndex, NodeId, Term};

use super::progress::Progress;
use super::quorum::{vote_result, VoteResult};
use super::{Node, Output, Role};

impl Node {
    pub(super) fn reset_election_timeout(&mut self) {
        self.election_elapsed = 0;
        self.election_timeout = self.rng.range(
            u64::from(self.cfg.election_timeout_ticks_min),
            u64::from(self.cfg.election_timeout_ticks_max),
        ) as u32;
    }

    pub(super) fn on_tick(&mut self) {
        self.now += 1;
        self.election_elapsed = self.election_elapsed.saturating_add(1);
        self.expire_forwards();
        self.expire_ready_reads();
        if self.role == Role::Leader {
            self.check_transfer_deadline();
            self.retry_snapshot_chunks();
            self.heartbeat_elapsed += 1;
            if self.heartbeat_elapsed >= self.cfg.heartbeat_interval_ticks {
                self.heartbeat_elapsed = 0;
                self.broadcast_heartbeat();
            }
            if self.election_elapsed >= self.cfg.election_timeout_ticks_min {
                self.election_elapsed = 0;
                if self.cfg.check_quorum && !self.quorum_active() {
                    // CheckQuorum: we cannot hear a majority, so another leader
                    // may exist; stop accepting writes.
                    let term = self.term;
                    self.become_follower(term, None);
                }
            }
        } else if self.election_elapsed >= self.election_timeout && self.may_campaign() {
            self.campaign();
        }
        // A node that may not campaign lets `election_elapsed` grow: it
        // measures the time since a leader was last heard, and the leader
        // lease (`check_term`) must expire for it too. Resetting it at each
        // timeout kept a learner in the lease of a dead leader forever, so
        // it ignored the campaigns of the voters that needed its vote.
    }

    /// Whether a majority of voters (self included) was heard from since the
    /// last check; resets the marks.
    fn quorum_active(&mut self) -> bool {
        let me = self.cfg.id;
        let mut active = usize::from(self.is_voter(me));
        for p in &mut self.progress {
            if p.voter && p.recent_active {
                active += 1;
            }
            p.recent_active = false;
        }
        active >= super::quorum::majority(self.membership.voters.len())
    }

    /// Whether this node may campaign: it is a voter of its latest
    /// configuration, or that configuration removed it and is not yet
    /// committed (here) while the one before named it a voter. Thesis
    /// §4.2.2: such a server "should still start new elections, as it might
    /// still be needed until the Cnew entry is committed" (Figure 4.6: it
    /// may hold the only copy of Cnew and refuse every other candidate). Its
    /// own vote counts only where it is a voter.
    pub(super) fn may_campaign(&self) -> bool {
        let me = self.cfg.id;
        if self.is_voter(me) || self.rescue {
            return true;
        }
        let latest = self.conf.latest_index();
        latest > self.commit && self.conf.at(latest.prev()).voters.contains(&me)
    }

    /// Starts a PreVote round (or an election when PreVote is off).
    pub(super) fn campaign(&mut self) {
        if !self.may_campaign() {
            // Learners and removed nodes never campaign.
            return;
        }
        if self.cfg.pre_vote {
            self.become_pre_candidate();
        } else {
            self.become_candidate();
        }
    }

    fn become_pre_candidate(&mut self) {
        self.metrics.pre_votes_started += 1;
        self.role = Role::PreCandidate;
        self.leader = None;
        self.reset_election_timeout();
        self.start_vote_round(true);
    }

    pub(super) fn become_candidate(&mut self) {
        // The last term has no successor: campaigning would vote a second
        // time in it. Only a broken peer gets a node there (`check_term`
        // drops messages of that term), and such a node waits as follower.
        if self.term == Term(u64::MAX) {
            return;
        }
        self.metrics.elections_started += 1;
        self.role = Role::Candidate;
        self.term = self.term.next();
        self.vote = Some(self.cfg.id);
        self.leader = None;
        self.dur.write_hard_state(self.hard_state());
        self.reset_election_timeout();
        self.role_changed();
        self.start_vote_round(false);
    }

    fn start_vote_round(&mut self, pre_vote: bool) {
        self.granted.clear();
        self.refused.clear();
        self.granted.push(self.cfg.id);
        let term = if pre_vote { self.term.next() } else { self.term };
        let body = MessageBody::RequestVote {
            pre_vote,
            last_log_index: self.log.last_index(),
            last_log_term: self.log.last_term(),
            transfer: std::mem::take(&mut self.campaign_transfer),
        };
        let me = self.cfg.id;
        let voters: smallvec::SmallVec<[NodeId; 8]> =
            self.membership.voters.iter().copied().filter(|&v| v != me).collect();
        for to in voters {
            self.send(Message { from: me, to, term, body: body.clone() });
        }
        self.check_vote_result();
    }

    /// Counts votes; the self-vote of a real election counts only once the
    /// term and vote are durable.
    pub(super) fn check_vote_result(&mut self) {
        if !matches!(self.role, Role::PreCandidate | Role::Candidate) {
            return;
        }
        let voters = self.membership.voters.len();
        let mut granted = self.granted.iter().filter(|v| self.is_voter(**v)).count();
        let me = self.cfg.id;
        if self.role == Role::Candidate
            && self.is_voter(me)
            && self.dur.hard_state_pending().is_some()
        {
            granted -= 1;
        }
        let refused = self.refused.iter().filter(|v| self.is_voter(**v)).count();
        match vote_result(voters, granted, refused) {
            VoteResult::Won if self.role == Role::PreCandidate => self.become_candidate(),
            VoteResult::Won => self.become_leader(),
            VoteResult::Lost => {
                let term = self.term;
                // A lost rescue is not retried on its own: the candidate
                // that needs it asks again if it still does.
                self.rescue = false;
                self.become_follower(term, None);
            }
            VoteResult::Pending => {}
        }
    }

    pub(super) fn become_follower(&mut self, term: Term, leader: Option<NodeId>) {
        let was_leader = self.role == Role::Leader;
        if was_leader {
            self.end_transfer_on_step_down();
            self.fail_pending_reads();
            self.term_start = LogIndex::ZERO;
        }
        let changed = self.role != Role::Follower || self.leader != leader;
        if self.leader != leader || term > self.term {
            // What matched the old leader says nothing about the new one.
            self.leader_match = LogIndex::ZERO;
            self.acked = LogIndex::ZERO;
        }
        if term > self.term {
            self.term = term;
            self.vote = None;
            self.dur.write_hard_state(self.hard_state());
        }
        self.role = Role::Follower;
        self.leader = leader;
        if leader.is_some() || was_leader {
            // A leader is heard of, or this one handed over.
            self.rescue = false;
        }
        self.reset_election_timeout();
        if was_leader {
            self.progress.clear();
            self.pending_proposals.clear();
            self.uncommitted_bytes = 0;
        }
        if changed {
            self.role_changed();
        }
        if leader.is_some() {
            self.flush_forward_queue();
        }
    }

    fn become_leader(&mut self) {
        self.metrics.elections_won += 1;
        self.role = Role::Leader;
        self.leader = Some(self.cfg.id);
        self.heartbeat_elapsed = 0;
        self.election_elapsed = 0;
        let next = self.log.last_index().next();
        let me = self.cfg.id;
        self.progress = self
            .membership
            .members()
            .filter(|&id| id != me)
            .map(|id| Progress::new(id, next, self.membership.voters.contains(&id)))
            .collect();
        self.progress.sort_by_key(|p| p.id);
        self.uncommitted_bytes = 0;
        self.role_changed();
        // Paper §8: a new leader commits a no-op to learn its commit index and
        // to commit earlier terms' entries (which it may not count, §5.4.2).
        self.term_start = self.log.last_index().next();
        self.append_noop();
        self.flush_forward_queue();
    }

    fn role_changed(&mut self) {
        self.emit(Output::RoleChanged { role: self.role, term: self.term, leader: self.leader });
    }

    /// Applies the term rules to `m`; returns false if `m` must be dropped.
    fn check_term(&mut self, m: &Message) -> bool {
        use MessageBody::*;
        if m.term == Term(u64::MAX) {
            // No honest node gets there (it has no successor to campaign
            // in): a broken peer's, dropped before it is adopted.
            self.metrics.messages_invalid += 1;
            return false;
        }
        if m.term > self.term {
            if let RequestVote { pre_vote, transfer, .. } = m.body {
                // Leader lease (with CheckQuorum): while we hear from a leader,
                // ignore campaigns, so a partitioned node that rejoins cannot
                // depose a healthy leader. A transfer campaign is the leader's
                // own wish and passes.
                let in_lease = self.cfg.check_quorum
                    && !transfer
                    && self.leader.is_some()
                    && self.election_elapsed < self.cfg.election_timeout_ticks_min;
                if in_lease {
                    return false;
                }
                if pre_vote {
                    return true; // a PreVote never changes our term
                }
                // The election timer restarts only when the vote is granted
                // (Raft §5.2: on hearing the leader or granting a vote), not
                // on a campaign we turn down. Otherwise a node whose log is
                // behind, campaigning again and again without PreVote,
                // restarts every up-to-date node's timer each time and can
                // keep them from ever campaigning (seed 75524).
                let timer = (self.election_elapsed, self.election_timeout);
                let follower = self.role == Role::Follower;
                self.become_follower(m.term, None);
                if follower {
                    (self.election_elapsed, self.election_timeout) = timer;
                }
                return true;
            }
            if let RequestVoteResp { pre_vote: true, granted: true } = m.body {
                return true; // carries the term asked about, not a newer one
            }
            let leader = matches!(
                m.body,
                Append { .. } | Heartbeat { .. } | InstallSnapshot { .. } | TimeoutNow
            )
            .then_some(m.from);
            self.become_follower(m.term, leader);
            return true;
        }
        if m.term < self.term {
            match m.body {
                // An answer stands whatever the term.
                ForwardResp { .. } => return true,
                // A request forwarded in an older term may be a late copy
                // of one already handled: a leader that crashed since has
                // forgotten which forwards it handled (the memory against
                // duplicates is volatile), and appending it again would
                // execute a client's write twice, after later writes
                // (simulator seed 14132378). A legitimate forward carries
                // our term (its sender learned of us from a message of our
                // term), so only a follower that has not heard of a newer
                // election yet sends a stale one. Not acting on it is
                // always safe, but the first copy may have taken effect:
                // answer "outcome unknown" at once, not a refusal.
                Forward { ctx, .. } => {
                    let result = ForwardResult::Rejected(ProposeError::Timeout);
                    self.send_to(m.from, ForwardResp { ctx, result });
                }
                Append { .. } | Heartbeat { .. } | InstallSnapshot { .. }
                    if self.cfg.check_quorum || self.cfg.pre_vote =>
                {
                    // A stale leader: tell it our term so it steps down. Without
                    // this, a node whose term rose while isolated can stay stuck.
                    let body = AppendResp {
                        success: false,
                        index: LogIndex::ZERO,
                        hint_index: LogIndex::ZERO,
                        hint_term: Term::ZERO,
                    };
                    self.send_to(m.from, body);
                }
                RequestVote { pre_vote, .. } => {
                    // Refuse a stale (Pre)Vote with our term (paper Figure 2:
                    // "reply false if term < currentTerm") so its sender
                    // catches up. Dropping it can deadlock the cluster: a
                    // candidate whose term stays behind ours, and whose
                    // configuration names only us besides itself, never
                    // learns the term it must exceed (sim seed 9613).
                    self.send_to(m.from, RequestVoteResp { pre_vote, granted: false });
                }
                _ => {}
            }
            return false;
        }
        true
    }

    pub(super) fn on_message(&mut self, m: Message) {
        if m.to != self.cfg.id {
            return;
        }
        self.metrics.messages_received += 1;
        if !self.check_term(&m) {
            return;
        }
        match m.body {
            MessageBody::RequestVote { pre_vote, last_log_index, last_log_term, .. } => {
                self.on_request_vote(m.from, m.term, pre_vote, last_log_index, last_log_term)
            }
            MessageBody::RequestVoteResp { pre_vote, granted } => {
                self.on_vote_resp(m.from, m.term, pre_vote, granted)
            }
            MessageBody::Append { prev_index, prev_term, commit, entries } => {
                self.on_append(m.from, prev_index, prev_term, commit, entries)
            }
            MessageBody::AppendResp { success, index, hint_index, hint_term } => {
                self.on_append_resp(m.from, success, index, hint_index, hint_term)
            }
            MessageBody::Heartbeat { commit, ctx } => self.on_heartbeat(m.from, commit, ctx),
            MessageBody::HeartbeatResp { index, ctx } => self.on_heartbeat_resp(m.from, index, ctx),
            MessageBody::TimeoutNow => self.on_timeout_now(m.from),
            MessageBody::InstallSnapshot { meta, offset, data, done } => {
                self.on_install_snapshot(m.from, meta, offset, data, done)
            }
            MessageBody::InstallSnapshotResp { index, next_offset, done } => {
                if self.role == Role::Leader {
                    self.on_install_snapshot_resp(m.from, index, next_offset, done)
                }
            }
            MessageBody::Forward { ctx, request } => self.on_forward(m.from, ctx, request),
            MessageBody::ForwardResp { ctx, result } => self.on_forward_resp(ctx, result),
        }
    }

    fn on_request_vote(
        &mut self,
        from: NodeId,
        term: Term,
        pre_vote: bool,
        last_log_index: LogIndex,
        last_log_term: Term,
    ) {
        // §5.4.1: grant only to a candidate whose log is at least as up to
        // date as ours: compare last terms first, then lengths.
        let up_to_date =
            (last_log_term, last_log_index) >= (self.log.last_term(), self.log.last_index());
        let can_vote = self.vote == Some(from)
            || (self.vote.is_none() && self.leader.is_none())
            || (pre_vote && term > self.term);
        let granted = can_vote && up_to_date;
        let me = self.cfg.id;
        if !up_to_date && self.membership.learners.contains(&me) {
            // We are a learner, the candidate's configuration counts us as
            // a voter (it holds a promotion we do not), and our log is
            // newer than its: a
            // branch of a later term that reached us, a non-voter, but not
            // the voters (its leader crashed). If no voter holds that
            // branch, no candidate that counts us can win, and we may not
            // campaign: the cluster would wait forever for that leader
            // (simulator seed 9500893). So we may campaign, needing a
            // majority of our own configuration's voters and never counting
            // ourselves (as a removed node may, above), and hand over once
            // our term's first entry commits. Safety does not depend on who
            // campaigns.
            self.rescue = true;
        }
        if granted && !pre_vote {
            self.vote = Some(from);
            self.dur.write_hard_state(self.hard_state());
            self.reset_election_timeout();
        } else if !pre_vote
            && up_to_date
            && term == self.term
            && self.leader.is_none()
            && self.vote.is_some_and(|v| v != from)
        {
            // A candidate we would vote for, but our vote in this term is
            // taken (by ourselves, say). We cannot help it now, but we can
            // keep out of its way: waiting a whole election timeout lets it
            // reach the next term first and get our vote there. Otherwise a
            // candidate that cannot win (its log too far behind; without
            // PreVote), whose timer happens to run ahead of the one that
            // can, takes every next term first and keeps the vote from it
            // for many rounds (simulator seed 7036401: over 5 s). Timers
            // decide nothing about safety.
            self.reset_election_timeout();
        }
        let reply_term = if granted && pre_vote { term } else { self.term };
        self.send(Message {
            from: me,
            to: from,
            term: reply_term,
            body: MessageBody::RequestVoteResp { pre_vote, granted },
        });
    }

    fn on_vote_resp(&mut self, from: NodeId, term: Term, pre_vote: bool, granted: bool) {
        let expected = match self.role {
            Role::PreCandidate => pre_vote && term == self.term.next(),
            Role::Candidate => !pre_vote && term == self.term,
            _ => false,
        };
        // A reply to an earlier round (or to a PreVote after we moved on) is
        // not a vote in this one.
        let pre_vote_refusal = pre_vote && !granted && self.role == Role::PreCandidate;
        if !expected && !pre_vote_refusal {
            return;
        }
        // Count distinct voters: a replayed reply must not count twice, and
        // only voters (which also bounds the lists by the voter count).
        if !self.is_voter(from) || self.granted.contains(&from) || self.refused.contains(&from) {
            return;
        }
        if granted {
            self.granted.push(from);
        } else {
            self.refused.push(from);
        }
        self.check_vote_result();
    }
}
