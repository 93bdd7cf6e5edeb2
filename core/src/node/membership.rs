//! Membership: the configuration history in the log, and single-server
//! changes (thesis §4.1).
//!
//! Owns which configuration is in force and how a change is proposed. A
//! configuration takes effect as soon as its entry is appended (on every
//! node) and is rolled back if that entry is truncated. Invariants: at most
//! one change is uncommitted at a time; a leader accepts a change only after
//! an entry of its own term has committed (the 2015 single-server-change
//! bug: two changes from different terms could otherwise both commit and
//! split the cluster); a leader removed from the voters stops counting
//! itself at once and steps down when the change commits.

use std::borrow::Cow;

use crate::error::ProposeError;
use crate::message::ForwardResult;
use crate::types::{Entry, EntryKind, LogIndex, Membership, MembershipChange};

use super::progress::Progress;
use super::{Node, Requester, Role};

/// The configurations in the log after its base, oldest first.
#[derive(Debug)]
pub(crate) struct ConfigState {
    /// Membership in force at the log base (snapshot point).
    base_index: LogIndex,
    base: Membership,
    /// (index, membership) of each config entry above the base.
    history: Vec<(LogIndex, Membership)>,
}

impl ConfigState {
    pub fn new(base_index: LogIndex, base: Membership) -> Self {
        ConfigState { base_index, base, history: Vec::new() }
    }

    /// The configuration in force: the latest in the log.
    pub fn current(&self) -> &Membership {
        self.history.last().map_or(&self.base, |(_, m)| m)
    }

    /// Index of the latest configuration entry (the base index if none).
    pub fn latest_index(&self) -> LogIndex {
        self.history.last().map_or(self.base_index, |(i, _)| *i)
    }

    /// Records a configuration entry appended at `index`.
    pub fn push(&mut self, index: LogIndex, m: Membership) {
        debug_assert!(index > self.latest_index());
        self.history.push((index, m));
    }

    /// Forgets configurations at or after `from` (their entries were truncated).
    pub fn truncate_from(&mut self, from: LogIndex) {
        self.history.retain(|(i, _)| *i < from);
    }

    /// The configuration in force at `index`.
    pub fn at(&self, index: LogIndex) -> Membership {
        self.history
            .iter()
            .rev()
            .find(|(i, _)| *i <= index)
            .map_or_else(|| self.base.clone(), |(_, m)| m.clone())
    }

    /// Folds configurations at or below `through` into the base.
    pub fn compact(&mut self, through: LogIndex) {
        if through <= self.base_index {
            return;
        }
        self.base = self.at(through);
        self.base_index = through;
        self.history.retain(|(i, _)| *i > through);
    }

    /// Replaces everything with a snapshot's configuration.
    pub fn reset(&mut self, index: LogIndex, m: Membership) {
        self.base_index = index;
        self.base = m;
        self.history.clear();
    }
}

impl Node {
    /// Called after any change to `conf`: refreshes the cached membership
    /// and, on a leader, the set of peers it replicates to.
    pub(super) fn membership_changed(&mut self) {
        let m = self.conf.current().clone();
        if m == self.membership {
            return;
        }
        self.membership = m;
        if self.role != Role::Leader {
            return;
        }
        let me = self.cfg.id;
        let next = self.log.last_index().next();
        self.progress.retain(|p| self.membership.contains(p.id));
        for id in self.membership.members() {
            if id == me {
                continue;
            }
            let voter = self.membership.voters.contains(&id);
            match self.progress.binary_search_by_key(&id, |p| p.id) {
                Ok(i) => self.progress[i].voter = voter,
                Err(i) => self.progress.insert(i, Progress::new(id, next, voter)),
            }
        }
        if let Some(t) = &self.transfer {
            if !self.membership.voters.contains(&t.target) {
                self.abort_transfer(ProposeError::InvalidChange(Cow::Borrowed(
                    "the transfer target left the voters",
                )));
            }
        }
    }

    /// Tracks configuration entries as they enter the log.
    pub(super) fn note_appended(&mut self, e: &Entry) {
        if e.kind != EntryKind::Config {
            return;
        }
        // A config entry that does not decode cannot come from a correct
        // leader (frames are checksummed); keep the configuration in force.
        if let Ok(m) = Membership::decode(&e.data) {
            self.conf.push(e.index, m);
            self.membership_changed();
        }
    }

    /// Rolls back configurations whose entries were truncated.
    pub(super) fn note_truncated(&mut self, from: LogIndex) {
        if self.conf.latest_index() >= from {
            self.conf.truncate_from(from);
            self.membership_changed();
        }
    }

    /// Leader: proposes a membership change.
    pub(super) fn change_membership(&mut self, who: Requester, change: MembershipChange) {
        match self.check_change(&change) {
            Ok(next) => {
                let index = self.log.last_index().next();
                let term = self.term;
                let e = Entry { index, term, kind: EntryKind::Config, data: next.encode() };
                self.append_local(e);
                self.respond(who, ForwardResult::Proposed { term, first: index, last: index });
                self.broadcast_append();
            }
            Err(error) => self.respond(who, ForwardResult::Rejected(error)),
        }
    }

    fn check_change(&self, change: &MembershipChange) -> Result<Membership, ProposeError> {
        // One change at a time, and only once this term's no-op committed.
        if self.conf.latest_index() > self.commit || self.commit < self.term_start {
            return Err(ProposeError::ConfigInFlight);
        }
        let promoting = match *change {
            MembershipChange::Promote(id) => Some(id),
            MembershipChange::AddVoter { id, .. } if self.membership.learners.contains(&id) => {
                Some(id)
            }
            _ => None,
        };
        if let Some(id) = promoting {
            let lag_ok = self.progress.iter().find(|p| p.id == id).is_some_and(|p| {
                p.match_index.0 + self.cfg.promote_lag_entries_max >= self.log.last_index().0
            });
            if self.membership.learners.contains(&id) && !lag_ok {
                return Err(ProposeError::InvalidChange(Cow::Borrowed(
                    "the learner is too far behind to be promoted",
                )));
            }
        }
        self.membership.apply(change).map_err(|e| ProposeError::InvalidChange(Cow::Borrowed(e)))
    }

    /// Leader: after commit advances past a configuration entry.
    pub(super) fn on_config_committed(&mut self, old_commit: LogIndex) {
        let latest = self.conf.latest_index();
        if latest <= old_commit || latest > self.commit {
            return;
        }
        self.metrics.config_changes_committed += 1;
        let promoted =
            self.conf.at(old_commit).learners.iter().any(|l| self.membership.voters.contains(l));
        if promoted {
            self.metrics.learners_promoted += 1;
        }
        if !self.membership.voters.contains(&self.cfg.id) {
            // Removed (or demoted): hand over by simply stepping down; the
            // remaining voters elect a leader among themselves.
            let term = self.term;
            self.become_follower(term, None);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::NodeId;

    fn m(v: &[u64]) -> Membership {
        Membership::with_voters(v.iter().map(|&i| NodeId(i)))
    }

    #[test]
    fn history_rolls_back_and_compacts() {
        let mut c = ConfigState::new(LogIndex(0), m(&[1, 2, 3]));
        c.push(LogIndex(5), m(&[1, 2, 3, 4]));
        c.push(LogIndex(9), m(&[1, 2, 4]));
        assert_eq!(c.current(), &m(&[1, 2, 4]));
        assert_eq!(c.at(LogIndex(7)), m(&[1, 2, 3, 4]));
        assert_eq!(c.at(LogIndex(4)), m(&[1, 2, 3]));
        c.truncate_from(LogIndex(9));
        assert_eq!(c.current(), &m(&[1, 2, 3, 4]));
        assert_eq!(c.latest_index(), LogIndex(5));
        c.compact(LogIndex(6));
        assert_eq!(c.current(), &m(&[1, 2, 3, 4]));
        assert_eq!(c.latest_index(), LogIndex(6));
        c.reset(LogIndex(20), m(&[7]));
        assert_eq!(c.current(), &m(&[7]));
    }

    #[test]
    fn change_rules() {
        let base = m(&[1, 2, 3]);
        let add = |id| MembershipChange::AddVoter { id: NodeId(id), addr: String::new() };
        assert!(base.apply(&add(2)).is_err());
        assert!(base.apply(&MembershipChange::Promote(NodeId(4))).is_err());
        let learner = MembershipChange::AddLearner { id: NodeId(4), addr: "h:4".into() };
        let with_learner = base.apply(&learner).expect("valid");
        assert!(with_learner.learners.contains(&NodeId(4)));
        assert_eq!(with_learner.addrs.get(&NodeId(4)).map(String::as_str), Some("h:4"));
        let promoted = with_learner.apply(&MembershipChange::Promote(NodeId(4))).expect("valid");
        assert!(promoted.voters.contains(&NodeId(4)) && promoted.learners.is_empty());
        let removed = promoted.apply(&MembershipChange::Remove(NodeId(4))).expect("valid");
        assert!(!removed.contains(NodeId(4)) && removed.addrs.is_empty());
        assert!(m(&[1]).apply(&MembershipChange::Remove(NodeId(1))).is_err());
        assert!(base.apply(&MembershipChange::Remove(NodeId(9))).is_err());
        // Bounded: addresses travel in every snapshot's metadata.
        let long = "a".repeat(crate::types::ADDR_BYTES_MAX + 1);
        let too_long = MembershipChange::AddLearner { id: NodeId(5), addr: long };
        assert!(base.apply(&too_long).is_err());
        let mut big = base.clone();
        for id in 100..(100 + crate::types::MEMBERS_MAX as u64) {
            if let Ok(next) =
                big.apply(&MembershipChange::AddLearner { id: NodeId(id), addr: "h:1".into() })
            {
                big = next;
            }
        }
        assert_eq!(big.voters.len() + big.learners.len(), crate::types::MEMBERS_MAX);
        let one_more = MembershipChange::AddLearner { id: NodeId(9_999), addr: "h:1".into() };
        assert_eq!(big.apply(&one_more), Err("membership already holds MEMBERS_MAX members"));
    }
}
