//! Ghost-oracle invariant checkers (SIM-CHECKLIST section 4).
//!
//! Owns the one allowed history of the cluster, built from what the nodes do
//! rather than from what they say: which node led each term, the committed
//! log (index -> entry id), the payload seen at each (index, term), each
//! node's durable hard state and applied log, and the acknowledged writes.
//! The simulator reports events to an [`Oracle`] as they happen; each report
//! is checked at once, in O(1) or O(nodes) (O(commit) for a new leader), and
//! a broken rule comes back as a typed [`Violation`]. Nodes are named by
//! their position `0..n` in the cluster (node id = position + 1).
//!
//! The checkers are plain functions of their inputs so the unit tests below
//! can feed hand-made bad histories and prove that each one fires.

use std::collections::BTreeMap;
use std::fmt;

use xraft::{Entry, EntryKind, HardState, LogIndex, NodeId, Term};

use crate::trace::Fnv;

/// What identifies an entry's content: its term and a hash of kind and data.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct EntryId {
    /// The entry's term.
    pub term: Term,
    /// Hash of the entry's kind and payload.
    pub hash: u64,
}

impl EntryId {
    /// The id of `e`.
    pub fn of(e: &Entry) -> EntryId {
        use std::hash::Hasher;
        let mut h = Fnv::new();
        h.write_u8(match e.kind {
            EntryKind::Normal => 0,
            EntryKind::Noop => 1,
            EntryKind::Config => 2,
        });
        h.write(&e.data);
        EntryId { term: e.term, hash: h.finish() }
    }
}

/// A broken invariant, with what is needed to understand it.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Violation {
    /// The same seed, run twice, left two different traces: replay by seed
    /// would not reproduce a failure (the runner checks one seed in 100).
    Nondeterministic {
        /// The first run's trace hash.
        first: u64,
        /// The second run's.
        second: u64,
    },
    /// A node dropped a message as impossible from an honest peer
    /// (`Metrics::messages_invalid`): the simulator's peers are all honest,
    /// so one of them sent something Raft forbids.
    InvalidMessage {
        /// The node that dropped it.
        node: NodeId,
    },
    /// Election safety: two nodes became leader of one term.
    TwoLeaders {
        /// The term.
        term: Term,
        /// The first leader.
        first: NodeId,
        /// The second.
        second: NodeId,
    },
    /// Log matching: two entries with the same index and term differ.
    LogMismatch {
        /// The node whose entry disagrees.
        node: NodeId,
        /// The index.
        index: LogIndex,
        /// The term.
        term: Term,
    },
    /// Leader completeness: a new leader lacks a committed entry.
    LeaderIncomplete {
        /// The leader.
        node: NodeId,
        /// Its term.
        term: Term,
        /// The committed index it lacks (or holds differently).
        index: LogIndex,
    },
    /// A node committed an entry that differs from the committed history.
    CommitDivergence {
        /// The node.
        node: NodeId,
        /// The index.
        index: LogIndex,
        /// What the history says.
        expected: EntryId,
        /// What the node committed.
        got: EntryId,
    },
    /// A node's commit index went backwards without a restart.
    CommitRegressed {
        /// The node.
        node: NodeId,
        /// Previous commit index.
        from: LogIndex,
        /// New commit index.
        to: LogIndex,
    },
    /// A committed index is not held durably by a majority of voters.
    CommitWithoutDurableQuorum {
        /// The node that advanced its commit index.
        node: NodeId,
        /// The index.
        index: LogIndex,
        /// Voters holding it durably.
        holders: usize,
        /// Voters needed.
        needed: usize,
    },
    /// A node applied out of order (a gap, a repeat or a regression).
    ApplyOutOfOrder {
        /// The node.
        node: NodeId,
        /// The index applied.
        index: LogIndex,
        /// The index expected next.
        expected: LogIndex,
    },
    /// State machine safety: two nodes applied different entries at one index.
    ApplyDivergence {
        /// The node.
        node: NodeId,
        /// The index.
        index: LogIndex,
        /// The committed history's entry.
        expected: EntryId,
        /// What the node applied.
        got: EntryId,
    },
    /// The durable term went backwards.
    TermRegressed {
        /// The node.
        node: NodeId,
        /// Durable term before.
        from: Term,
        /// Durable term after.
        to: Term,
    },
    /// The durable vote changed within a term.
    VoteChanged {
        /// The node.
        node: NodeId,
        /// The term.
        term: Term,
        /// Vote before.
        from: Option<NodeId>,
        /// Vote after.
        to: Option<NodeId>,
    },
    /// A node sent a promise before the state it promises was durable: a
    /// granted vote or a vote request whose (term, vote) was not on disk,
    /// an acknowledgement of entries past its durable log, or any message
    /// of a term its disk did not yet hold.
    PromiseNotDurable {
        /// The sender.
        node: NodeId,
        /// What was sent, and what the disk held.
        what: String,
    },
    /// An acknowledged write is missing or different on a node at the end,
    /// or was acknowledged with an entry other than the committed one.
    AckedLost {
        /// The node lacking it.
        node: NodeId,
        /// The write's index.
        index: LogIndex,
        /// The acknowledged entry.
        acked: EntryId,
        /// What the node holds there, if anything.
        found: Option<EntryId>,
    },
    /// A durable write left a gap in the stored log.
    PersistGap {
        /// The node.
        node: NodeId,
        /// The write's first index.
        first: LogIndex,
        /// The stored last index.
        last: LogIndex,
    },
    /// A node could not restart from its durable state.
    RestartFailed {
        /// The node.
        node: NodeId,
        /// The core's error.
        error: String,
    },
    /// A tick the node said it did not need produced output.
    TimerContract {
        /// The node.
        node: NodeId,
    },
    /// The core panicked.
    Panic {
        /// The panic message.
        message: String,
    },
    /// The healed cluster did not elect a stable leader and make progress.
    Liveness {
        /// What did not happen.
        what: String,
    },
    /// Terms kept rising in a healed, stable cluster.
    TermChurn {
        /// Term at the start of the stable window.
        from: Term,
        /// Term at its end.
        to: Term,
    },
    /// A follower's commit index went past anything a leader committed.
    FollowerCommitAhead {
        /// The node.
        node: NodeId,
        /// Its new commit index.
        index: LogIndex,
        /// The highest index any leader committed.
        leader_max: LogIndex,
    },
    /// A snapshot's state or metadata disagrees with the committed history.
    SnapshotMismatch {
        /// The node.
        node: NodeId,
        /// The snapshot's index.
        index: LogIndex,
        /// What disagrees.
        what: String,
    },
    /// The core broke its driving contract (an output the runtime cannot
    /// carry out as specified).
    Contract {
        /// The node.
        node: NodeId,
        /// What it did.
        what: String,
    },
    /// A client history is not linearizable.
    NotLinearizable {
        /// The checker's finding.
        what: String,
    },
    /// Live nodes' logs differ below their common commit index after healing.
    LogsDiffer {
        /// One node.
        a: NodeId,
        /// The other.
        b: NodeId,
        /// The first differing index.
        index: LogIndex,
    },
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self:?}")
    }
}

impl std::error::Error for Violation {}

/// Node position to id.
#[inline]
pub fn node_id(pos: usize) -> NodeId {
    NodeId(pos as u64 + 1)
}

/// A view of a log by index (a node's memory, or a disk).
pub type LogView<'a> = &'a dyn Fn(LogIndex) -> Option<EntryId>;

/// The chained hash of a history: `chain(prev, id)` after each entry.
#[inline]
pub fn chain(prev: u64, id: EntryId) -> u64 {
    use std::hash::Hasher;
    let mut h = Fnv::new();
    h.write_u64(prev);
    h.write_u64(id.term.0);
    h.write_u64(id.hash);
    h.finish()
}

/// The ghost oracle. See the module documentation.
#[derive(Debug)]
pub struct Oracle {
    leaders: BTreeMap<Term, NodeId>,
    by_index_term: BTreeMap<(LogIndex, Term), u64>,
    committed: Vec<EntryId>,
    /// `commit_term[k]`: the term of the node that first committed
    /// `committed[k]` (leader completeness binds leaders of later terms).
    commit_term: Vec<Term>,
    /// `chain[k]`: chained hash of `committed[..=k]`.
    chain: Vec<u64>,
    applied: Vec<LogIndex>,
    durable_hs: Vec<Option<HardState>>,
    acked: BTreeMap<LogIndex, EntryId>,
    leader_commit_max: LogIndex,
}

impl Oracle {
    /// An oracle for `nodes` node slots.
    pub fn new(nodes: usize) -> Self {
        Oracle {
            leaders: BTreeMap::new(),
            by_index_term: BTreeMap::new(),
            committed: Vec::new(),
            commit_term: Vec::new(),
            chain: Vec::new(),
            applied: vec![LogIndex::ZERO; nodes],
            durable_hs: vec![None; nodes],
            acked: BTreeMap::new(),
            leader_commit_max: LogIndex::ZERO,
        }
    }

    /// Records `id` as the next committed entry without any node's report:
    /// the bootstrap configuration every founding member starts with.
    pub fn bootstrap(&mut self, id: EntryId) {
        self.push_committed(id, Term::ZERO);
        self.leader_commit_max = self.commit_max();
    }

    /// The committed history's length.
    pub fn commit_max(&self) -> LogIndex {
        LogIndex(self.committed.len() as u64)
    }

    /// The committed entry at `index`, if known.
    pub fn committed_at(&self, index: LogIndex) -> Option<EntryId> {
        let i = usize::try_from(index.0.checked_sub(1)?).ok()?;
        self.committed.get(i).copied()
    }

    /// The chained hash of the committed history through `index` (0 for
    /// index 0), if known.
    pub fn chain_at(&self, index: LogIndex) -> Option<u64> {
        match index.0.checked_sub(1) {
            None => Some(0),
            Some(k) => self.chain.get(usize::try_from(k).ok()?).copied(),
        }
    }

    /// Acknowledged writes so far.
    pub fn acked_count(&self) -> usize {
        self.acked.len()
    }

    /// The last index `node` has applied (or restored) since it started.
    pub fn applied_index(&self, node: usize) -> LogIndex {
        self.applied[node]
    }

    /// Whether `id` was elected leader in `term` or a later one.
    pub fn led_since(&self, id: NodeId, term: Term) -> bool {
        self.leaders.range(term..).any(|(_, &l)| l == id)
    }

    /// Election safety and leader completeness: `node` became leader of
    /// `term`; `log` is its log at that moment, which a snapshot covers
    /// through `snap_index`. Completeness binds entries committed in
    /// earlier terms (a late vote may still elect a leader of an older
    /// term than the one that committed an entry).
    pub fn leader_elected(
        &mut self,
        node: usize,
        term: Term,
        log: LogView<'_>,
        snap_index: LogIndex,
    ) -> Result<(), Violation> {
        let id = node_id(node);
        match self.leaders.get(&term) {
            Some(&first) if first != id => {
                return Err(Violation::TwoLeaders { term, first, second: id });
            }
            Some(_) => {}
            None => {
                self.leaders.insert(term, id);
            }
        }
        let max = self.commit_max();
        if snap_index > max {
            return Err(Violation::SnapshotMismatch {
                node: id,
                index: snap_index,
                what: format!("snapshot beyond the committed history ({max:?})"),
            });
        }
        let mut index = snap_index.next();
        while index <= max {
            let want = self.committed_at(index).expect("index <= commit_max");
            let k = (index.0 - 1) as usize;
            if self.commit_term[k] < term && log(index) != Some(want) {
                return Err(Violation::LeaderIncomplete { node: id, term, index });
            }
            index = index.next();
        }
        Ok(())
    }

    /// Log matching: `node` holds `id` at `index`.
    pub fn saw_entry(
        &mut self,
        node: usize,
        index: LogIndex,
        id: EntryId,
    ) -> Result<(), Violation> {
        match self.by_index_term.get(&(index, id.term)) {
            Some(&h) if h != id.hash => {
                Err(Violation::LogMismatch { node: node_id(node), index, term: id.term })
            }
            Some(_) => Ok(()),
            None => {
                self.by_index_term.insert((index, id.term), id.hash);
                Ok(())
            }
        }
    }

    /// `node`'s commit index moved from `from` to `to`; `log` is its log
    /// (entries at or below `from` may be compacted). For a leader,
    /// `voters` are the voters of its configuration in force and
    /// `durable(voter, index, term)` whether a voter's disk holds that entry
    /// durably: `to` must sit on a durable majority of them. A follower
    /// (`voters` is `None`) may not commit past what some leader committed.
    /// Both must agree with the commit history. `term` is the node's term.
    #[allow(clippy::too_many_arguments)]
    pub fn commit_advanced(
        &mut self,
        node: usize,
        from: LogIndex,
        to: LogIndex,
        log: LogView<'_>,
        durable: &dyn Fn(usize, LogIndex, Term) -> bool,
        voters: Option<&[usize]>,
        term: Term,
    ) -> Result<(), Violation> {
        let id = node_id(node);
        if to < from {
            return Err(Violation::CommitRegressed { node: id, from, to });
        }
        let mut last = None;
        let mut i = from.next();
        while i <= to {
            let Some(got) = log(i) else {
                // Commit beyond what the node holds: count it as diverging.
                let expected = self.committed_at(i).unwrap_or(EntryId { term: Term(0), hash: 0 });
                let got = EntryId { term: Term(0), hash: 0 };
                return Err(Violation::CommitDivergence { node: id, index: i, expected, got });
            };
            self.define_committed(id, i, got, term)?;
            last = Some(got);
            i = i.next();
        }
        let Some(got) = last else { return Ok(()) };
        match voters {
            Some(voters) => {
                let holders = voters.iter().filter(|&&v| durable(v, to, got.term)).count();
                let needed = voters.len() / 2 + 1;
                if holders < needed {
                    return Err(Violation::CommitWithoutDurableQuorum {
                        node: id,
                        index: to,
                        holders,
                        needed,
                    });
                }
                self.leader_commit_max = self.leader_commit_max.max(to);
            }
            None => {
                if to > self.leader_commit_max {
                    return Err(Violation::FollowerCommitAhead {
                        node: id,
                        index: to,
                        leader_max: self.leader_commit_max,
                    });
                }
            }
        }
        Ok(())
    }

    fn define_committed(
        &mut self,
        node: NodeId,
        index: LogIndex,
        got: EntryId,
        term: Term,
    ) -> Result<(), Violation> {
        let k = (index.0 - 1) as usize;
        if k < self.committed.len() {
            let expected = self.committed[k];
            if expected != got {
                return Err(Violation::CommitDivergence { node, index, expected, got });
            }
        } else if k == self.committed.len() {
            self.push_committed(got, term);
        } else {
            // Snapshots let a node commit past an index it never held; the
            // history up to it must have been defined by whoever took the
            // snapshot, so a gap here is a divergence.
            let expected = EntryId { term: Term(0), hash: 0 };
            return Err(Violation::CommitDivergence { node, index, expected, got });
        }
        Ok(())
    }

    fn push_committed(&mut self, got: EntryId, term: Term) {
        let prev = self.chain.last().copied().unwrap_or(0);
        self.committed.push(got);
        self.commit_term.push(term);
        self.chain.push(chain(prev, got));
    }

    /// `node` applied `got` at `index`. Checks order and state machine safety.
    pub fn applied(&mut self, node: usize, index: LogIndex, got: EntryId) -> Result<(), Violation> {
        let id = node_id(node);
        let expected_index = self.applied[node].next();
        if index != expected_index {
            return Err(Violation::ApplyOutOfOrder { node: id, index, expected: expected_index });
        }
        match self.committed_at(index) {
            Some(expected) if expected != got => {
                return Err(Violation::ApplyDivergence { node: id, index, expected, got });
            }
            Some(_) => {}
            None => {
                // First apply of `index` anywhere defines it: the node applies
                // only committed entries, and the history must be gapless.
                if index.0 as usize != self.committed.len() + 1 {
                    let expected = EntryId { term: Term(0), hash: 0 };
                    return Err(Violation::ApplyDivergence { node: id, index, expected, got });
                }
                // (Unreachable: a commit is observed before its apply.)
                self.push_committed(got, Term(u64::MAX));
            }
        }
        self.applied[node] = index;
        Ok(())
    }

    /// `node`'s state machine jumped to a snapshot of `index` whose state
    /// has the chained hash `state`: it must move forward and equal the
    /// committed history's state at `index`.
    pub fn restored(&mut self, node: usize, index: LogIndex, state: u64) -> Result<(), Violation> {
        let id = node_id(node);
        if index <= self.applied[node] {
            return Err(Violation::ApplyOutOfOrder {
                node: id,
                index,
                expected: self.applied[node],
            });
        }
        self.check_state(node, index, state)?;
        self.applied[node] = index;
        Ok(())
    }

    /// `node` (re)started with its state machine at `index` (its durable
    /// snapshot, or 0) whose state has the chained hash `state`.
    pub fn restarted(&mut self, node: usize, index: LogIndex, state: u64) -> Result<(), Violation> {
        self.applied[node] = index;
        self.check_state(node, index, state)
    }

    fn check_state(&self, node: usize, index: LogIndex, state: u64) -> Result<(), Violation> {
        match self.chain_at(index) {
            Some(c) if c == state => Ok(()),
            Some(_) => Err(Violation::SnapshotMismatch {
                node: node_id(node),
                index,
                what: "state differs from the committed history's".into(),
            }),
            None => Err(Violation::SnapshotMismatch {
                node: node_id(node),
                index,
                what: format!("snapshot beyond the committed history ({:?})", self.commit_max()),
            }),
        }
    }

    /// `node`'s disk made `hs` durable (if any). Term never decreases; the
    /// vote never changes within a term.
    pub fn durable_hard_state(&mut self, node: usize, hs: HardState) -> Result<(), Violation> {
        let id = node_id(node);
        if let Some(old) = self.durable_hs[node] {
            if hs.term < old.term {
                return Err(Violation::TermRegressed { node: id, from: old.term, to: hs.term });
            }
            if hs.term == old.term && old.vote.is_some() && hs.vote != old.vote {
                return Err(Violation::VoteChanged {
                    node: id,
                    term: hs.term,
                    from: old.vote,
                    to: hs.vote,
                });
            }
        }
        self.durable_hs[node] = Some(hs);
        Ok(())
    }

    /// A client was told that the write at `index` with `id` succeeded.
    pub fn acked(&mut self, node: usize, index: LogIndex, id: EntryId) -> Result<(), Violation> {
        if let Some(c) = self.committed_at(index) {
            if c != id {
                return Err(Violation::AckedLost {
                    node: node_id(node),
                    index,
                    acked: id,
                    found: Some(c),
                });
            }
        }
        self.acked.insert(index, id);
        Ok(())
    }

    /// At the end: every acknowledged write at or below `upto` is in the
    /// committed history, and each of `nodes` has applied past it (every
    /// apply and restore was checked against that history).
    pub fn check_acked(&self, nodes: &[usize], upto: LogIndex) -> Result<(), Violation> {
        for (&index, &acked) in self.acked.range(..=upto) {
            let found = self.committed_at(index);
            if found != Some(acked) {
                return Err(Violation::AckedLost { node: NodeId(0), index, acked, found });
            }
            for &n in nodes {
                if self.applied[n] < index {
                    return Err(Violation::AckedLost {
                        node: node_id(n),
                        index,
                        acked,
                        found: None,
                    });
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(term: u64, hash: u64) -> EntryId {
        EntryId { term: Term(term), hash }
    }

    fn log_of(entries: &[EntryId]) -> impl Fn(LogIndex) -> Option<EntryId> + '_ {
        move |i: LogIndex| entries.get((i.0 as usize).checked_sub(1)?).copied()
    }

    #[test]
    fn two_leaders_in_a_term_fire() {
        let mut o = Oracle::new(3);
        let empty = log_of(&[]);
        assert_eq!(o.leader_elected(0, Term(2), &empty, LogIndex(0)), Ok(()));
        assert_eq!(
            o.leader_elected(0, Term(2), &empty, LogIndex(0)),
            Ok(()),
            "same leader again is fine"
        );
        assert_eq!(o.leader_elected(1, Term(3), &empty, LogIndex(0)), Ok(()));
        assert_eq!(
            o.leader_elected(2, Term(2), &empty, LogIndex(0)),
            Err(Violation::TwoLeaders { term: Term(2), first: NodeId(1), second: NodeId(3) })
        );
    }

    #[test]
    fn divergent_applied_entries_fire() {
        let mut o = Oracle::new(3);
        assert_eq!(o.applied(0, LogIndex(1), id(1, 10)), Ok(()));
        assert_eq!(o.applied(0, LogIndex(2), id(1, 11)), Ok(()));
        assert_eq!(o.applied(1, LogIndex(1), id(1, 10)), Ok(()));
        assert_eq!(
            o.applied(1, LogIndex(2), id(2, 99)),
            Err(Violation::ApplyDivergence {
                node: NodeId(2),
                index: LogIndex(2),
                expected: id(1, 11),
                got: id(2, 99)
            })
        );
    }

    #[test]
    fn apply_out_of_order_fires_but_replay_after_restart_is_fine() {
        let mut o = Oracle::new(3);
        assert_eq!(o.applied(0, LogIndex(1), id(1, 10)), Ok(()));
        assert!(matches!(
            o.applied(0, LogIndex(3), id(1, 12)),
            Err(Violation::ApplyOutOfOrder { index: LogIndex(3), expected: LogIndex(2), .. })
        ));
        assert!(matches!(
            o.applied(0, LogIndex(1), id(1, 10)),
            Err(Violation::ApplyOutOfOrder { .. })
        ));
        assert_eq!(o.restarted(0, LogIndex(0), 0), Ok(()));
        assert_eq!(o.applied(0, LogIndex(1), id(1, 10)), Ok(()));
    }

    #[test]
    fn a_lost_acknowledged_write_fires() {
        let mut o = Oracle::new(3);
        assert_eq!(o.applied(0, LogIndex(1), id(1, 10)), Ok(()));
        assert_eq!(o.applied(0, LogIndex(2), id(2, 20)), Ok(()));
        assert_eq!(o.acked(0, LogIndex(2), id(2, 20)), Ok(()));
        // Node 1 restarted and re-applied only index 1: the ack is not there.
        assert_eq!(o.applied(1, LogIndex(1), id(1, 10)), Ok(()));
        assert_eq!(o.check_acked(&[0], LogIndex(2)), Ok(()));
        assert_eq!(
            o.check_acked(&[0, 1], LogIndex(2)),
            Err(Violation::AckedLost {
                node: NodeId(2),
                index: LogIndex(2),
                acked: id(2, 20),
                found: None
            })
        );
        // An ack for an entry other than the committed one fires at once.
        assert!(matches!(o.acked(1, LogIndex(1), id(3, 30)), Err(Violation::AckedLost { .. })));
    }

    #[test]
    fn commit_without_durable_quorum_fires() {
        let mut o = Oracle::new(3);
        let log = [id(1, 1), id(2, 2)];
        let view = log_of(&log);
        // Only the leader (node 0) holds index 2 durably: an ack-before-fsync.
        let durable = |v: usize, i: LogIndex| match (v, i.0) {
            (_, 1) => Some(Term(1)),
            (0, 2) => Some(Term(2)),
            _ => None,
        };
        let durable3 = |v: usize, i: LogIndex, t: Term| durable(v, i) == Some(t);
        assert_eq!(
            o.commit_advanced(
                0,
                LogIndex(0),
                LogIndex(1),
                &view,
                &durable3,
                Some(&[0, 1, 2]),
                Term(9)
            ),
            Ok(())
        );
        assert_eq!(
            o.commit_advanced(
                0,
                LogIndex(1),
                LogIndex(2),
                &view,
                &durable3,
                Some(&[0, 1, 2]),
                Term(9)
            ),
            Err(Violation::CommitWithoutDurableQuorum {
                node: NodeId(1),
                index: LogIndex(2),
                holders: 1,
                needed: 2
            })
        );
        // Durable on two of three: fine.
        let mut o = Oracle::new(3);
        let durable2 = |v: usize, i: LogIndex| (v < 2 || i.0 == 1).then_some(Term(i.0));
        let durable23 = |v: usize, i: LogIndex, t: Term| durable2(v, i) == Some(t);
        assert_eq!(
            o.commit_advanced(
                0,
                LogIndex(0),
                LogIndex(2),
                &view,
                &durable23,
                Some(&[0, 1, 2]),
                Term(9)
            ),
            Ok(())
        );
    }

    #[test]
    fn commit_divergence_and_regression_fire() {
        let mut o = Oracle::new(3);
        let a = [id(1, 1), id(2, 2)];
        let b = [id(1, 1), id(3, 3)];
        let all3 = |_: usize, _: LogIndex, _: Term| true;
        assert_eq!(
            o.commit_advanced(
                0,
                LogIndex(0),
                LogIndex(2),
                &log_of(&a),
                &all3,
                Some(&[0, 1, 2]),
                Term(9)
            ),
            Ok(())
        );
        assert!(matches!(
            o.commit_advanced(
                0,
                LogIndex(1),
                LogIndex(2),
                &log_of(&b),
                &all3,
                Some(&[0, 1, 2]),
                Term(9)
            ),
            Err(Violation::CommitDivergence { index: LogIndex(2), .. })
        ));
        assert!(matches!(
            o.commit_advanced(
                0,
                LogIndex(2),
                LogIndex(1),
                &log_of(&a),
                &all3,
                Some(&[0, 1, 2]),
                Term(9)
            ),
            Err(Violation::CommitRegressed { .. })
        ));
    }

    #[test]
    fn leader_missing_a_committed_entry_fires() {
        let mut o = Oracle::new(3);
        let full = [id(1, 1), id(2, 2)];
        let all3 = |_: usize, _: LogIndex, _: Term| true;
        assert_eq!(
            o.commit_advanced(
                0,
                LogIndex(0),
                LogIndex(2),
                &log_of(&full),
                &all3,
                Some(&[0, 1, 2]),
                Term(2)
            ),
            Ok(())
        );
        let short = [id(1, 1)];
        // A late vote may elect a leader of a term before the one that
        // committed the entry: completeness does not bind it.
        assert_eq!(o.leader_elected(1, Term(1), &log_of(&short), LogIndex(0)), Ok(()));
        assert_eq!(
            o.leader_elected(1, Term(3), &log_of(&short), LogIndex(0)),
            Err(Violation::LeaderIncomplete { node: NodeId(2), term: Term(3), index: LogIndex(2) })
        );
        assert_eq!(o.leader_elected(2, Term(4), &log_of(&full), LogIndex(0)), Ok(()));
    }

    #[test]
    fn log_mismatch_fires() {
        let mut o = Oracle::new(3);
        assert_eq!(o.saw_entry(0, LogIndex(4), id(2, 7)), Ok(()));
        assert_eq!(o.saw_entry(1, LogIndex(4), id(2, 7)), Ok(()));
        assert_eq!(o.saw_entry(1, LogIndex(4), id(3, 8)), Ok(()), "another term may differ");
        assert_eq!(
            o.saw_entry(2, LogIndex(4), id(2, 8)),
            Err(Violation::LogMismatch { node: NodeId(3), index: LogIndex(4), term: Term(2) })
        );
    }

    #[test]
    fn durable_term_regression_and_vote_change_fire() {
        let mut o = Oracle::new(3);
        let hs = |t: u64, v: Option<u64>| HardState {
            term: Term(t),
            vote: v.map(NodeId),
            commit: LogIndex(0),
        };
        assert_eq!(o.durable_hard_state(0, hs(2, None)), Ok(()));
        assert_eq!(o.durable_hard_state(0, hs(2, Some(2))), Ok(()), "a first vote in the term");
        assert_eq!(
            o.durable_hard_state(0, hs(2, Some(3))),
            Err(Violation::VoteChanged {
                node: NodeId(1),
                term: Term(2),
                from: Some(NodeId(2)),
                to: Some(NodeId(3))
            })
        );
        assert_eq!(
            o.durable_hard_state(0, hs(1, None)),
            Err(Violation::TermRegressed { node: NodeId(1), from: Term(2), to: Term(1) })
        );
        assert_eq!(o.durable_hard_state(0, hs(3, Some(1))), Ok(()));
    }
}
