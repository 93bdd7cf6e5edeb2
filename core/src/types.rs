//! Identifiers and the records that Raft stores and ships.
//!
//! Owns the newtypes (`NodeId`, `Term`, `LogIndex`), log entries, the hard
//! state that must be durable before a node promises anything, membership and
//! snapshot metadata. Invariants: an `Entry`'s `index` and `term` never change
//! once created; `LogIndex(0)` / `Term(0)` mean "before the first entry".

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use smallvec::SmallVec;

/// A node's identity within a cluster. Chosen by the operator, never reused.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize)]
pub struct NodeId(pub u64);

/// A Raft term (paper §5.1). Terms only grow on any one node.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize)]
pub struct Term(pub u64);

/// A position in the replicated log. The first entry has index 1.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize)]
pub struct LogIndex(pub u64);

/// A caller-chosen tag that ties a `Propose` (or later request) to its result.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize)]
pub struct RequestId(pub u64);

/// Sequence number of a `Persist` output; `Input::Persisted { through }` is cumulative.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize)]
pub struct PersistId(pub u64);

macro_rules! newtype_fmt {
    ($($t:ident => $p:literal),*) => {$(
        impl fmt::Debug for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!($p, "{}"), self.0)
            }
        }
        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.0, f)
            }
        }
    )*};
}
newtype_fmt!(NodeId => "n", Term => "t", LogIndex => "i", RequestId => "r", PersistId => "p");

impl LogIndex {
    /// The index before the first entry of any log.
    pub const ZERO: LogIndex = LogIndex(0);

    /// The next index, saturating at `u64::MAX` (no log gets there; a
    /// hostile peer's index may, and must not overflow).
    #[inline]
    pub fn next(self) -> LogIndex {
        LogIndex(self.0.saturating_add(1))
    }

    /// The previous index, saturating at zero.
    #[inline]
    pub fn prev(self) -> LogIndex {
        LogIndex(self.0.saturating_sub(1))
    }
}

impl Term {
    /// The term before any election.
    pub const ZERO: Term = Term(0);

    /// The next term, saturating at `u64::MAX` (as [`LogIndex::next`]).
    #[inline]
    pub fn next(self) -> Term {
        Term(self.0.saturating_add(1))
    }
}

/// What an entry carries.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[repr(u8)]
pub enum EntryKind {
    /// An application command, handed to the state machine when committed.
    Normal = 0,
    /// The empty entry a new leader appends to commit its term (paper §8).
    Noop = 1,
    /// A membership configuration; `data` is a postcard-encoded [`Membership`].
    Config = 2,
}

/// One log entry. `data` is reference-counted, so cloning an entry is cheap.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// Position in the log.
    pub index: LogIndex,
    /// Term of the leader that created the entry.
    pub term: Term,
    /// What the entry carries.
    pub kind: EntryKind,
    /// The payload (application command, or encoded membership).
    pub data: Bytes,
}

impl fmt::Debug for Entry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}/{:?}/{:?}({}B)", self.index, self.term, self.kind, self.data.len())
    }
}

impl Entry {
    /// An application command at `index` in `term`.
    pub fn normal(index: LogIndex, term: Term, data: Bytes) -> Entry {
        Entry { index, term, kind: EntryKind::Normal, data }
    }

    /// Bytes this entry accounts for in size limits (payload plus a fixed header).
    #[inline]
    pub fn size_bytes(&self) -> usize {
        self.data.len() + ENTRY_OVERHEAD_BYTES
    }
}

/// Fixed per-entry overhead counted by byte limits.
pub const ENTRY_OVERHEAD_BYTES: usize = 24;

/// Node ids in a small inline list.
pub type NodeIds = SmallVec<[NodeId; 8]>;

/// A batch of entries; one entry lives inline without a heap allocation.
pub type EntryVec = SmallVec<[Entry; 1]>;

/// State that must be durable before the node sends anything that depends on
/// it (paper Figure 2: "updated on stable storage before responding").
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default, Serialize, Deserialize)]
pub struct HardState {
    /// The latest term this node has seen.
    pub term: Term,
    /// Whom this node voted for in `term`, if anyone.
    pub vote: Option<NodeId>,
    /// A commit index known at the time of writing (a hint: never above the
    /// durable log, may lag the real commit index).
    pub commit: LogIndex,
}

/// The members of a cluster configuration.
#[derive(Clone, PartialEq, Eq, Debug, Default, Serialize, Deserialize)]
pub struct Membership {
    /// Members that vote and count in quorums.
    pub voters: BTreeSet<NodeId>,
    /// Members that receive the log but never vote or count.
    pub learners: BTreeSet<NodeId>,
    /// How runtimes reach each member (opaque to the core; may be empty in
    /// tests and simulations).
    pub addrs: BTreeMap<NodeId, String>,
}

impl Membership {
    /// A configuration of voters only, without addresses.
    pub fn with_voters(voters: impl IntoIterator<Item = NodeId>) -> Self {
        Membership { voters: voters.into_iter().collect(), ..Membership::default() }
    }

    /// A configuration of voters with their addresses.
    pub fn with_addrs(voters: impl IntoIterator<Item = (NodeId, String)>) -> Self {
        let addrs: BTreeMap<NodeId, String> = voters.into_iter().collect();
        Membership { voters: addrs.keys().copied().collect(), learners: BTreeSet::new(), addrs }
    }

    /// Whether `id` is a voter or a learner.
    pub fn contains(&self, id: NodeId) -> bool {
        self.voters.contains(&id) || self.learners.contains(&id)
    }

    /// Every member, voters first, each group in id order.
    pub fn members(&self) -> impl Iterator<Item = NodeId> + '_ {
        self.voters.iter().chain(self.learners.iter()).copied()
    }

    /// Postcard encoding, as stored in a `Config` entry.
    pub fn encode(&self) -> Bytes {
        // Encoding a BTreeSet of u64 into a Vec cannot fail.
        Bytes::from(postcard::to_allocvec(self).expect("membership encodes into a Vec"))
    }

    /// Decodes a `Config` entry's payload.
    pub fn decode(data: &[u8]) -> Result<Self, postcard::Error> {
        postcard::from_bytes(data)
    }
}

/// What a snapshot stands for: the log prefix it replaces and the membership
/// in force at its last entry.
#[derive(Clone, PartialEq, Eq, Debug, Default, Serialize, Deserialize)]
pub struct SnapshotMeta {
    /// Index of the last entry the snapshot covers.
    pub index: LogIndex,
    /// Term of that entry.
    pub term: Term,
    /// Membership as of `index`.
    pub membership: Membership,
}

/// One single-server membership change (thesis §4.1): at most one is in
/// flight at a time.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub enum MembershipChange {
    /// Add a voting member reachable at `addr`.
    AddVoter {
        /// The new member.
        id: NodeId,
        /// Its peer address (opaque to the core).
        addr: String,
    },
    /// Add a non-voting learner that receives the log.
    AddLearner {
        /// The new member.
        id: NodeId,
        /// Its peer address (opaque to the core).
        addr: String,
    },
    /// Make a learner a voter (refused while it lags too far behind).
    Promote(NodeId),
    /// Remove a voter or a learner.
    Remove(NodeId),
}

/// Longest peer address a membership change may carry (a host name is at
/// most 253 bytes). Addresses travel in every snapshot's metadata, which
/// storage bounds, so they are bounded too.
pub const ADDR_BYTES_MAX: usize = 255;

/// Most members (voters and learners) a membership may hold.
pub const MEMBERS_MAX: usize = 256;

impl Membership {
    /// The membership after `change`, or why the change is not valid here.
    pub fn apply(&self, change: &MembershipChange) -> Result<Membership, &'static str> {
        let mut next = self.clone();
        if let MembershipChange::AddVoter { id, ref addr }
        | MembershipChange::AddLearner { id, ref addr } = *change
        {
            if addr.len() > ADDR_BYTES_MAX {
                return Err("peer address longer than ADDR_BYTES_MAX");
            }
            if !self.contains(id) && self.voters.len() + self.learners.len() >= MEMBERS_MAX {
                return Err("membership already holds MEMBERS_MAX members");
            }
        }
        match *change {
            MembershipChange::AddVoter { id, ref addr } => {
                if self.voters.contains(&id) {
                    return Err("already a voter");
                }
                next.learners.remove(&id);
                next.voters.insert(id);
                next.addrs.insert(id, addr.clone());
            }
            MembershipChange::AddLearner { id, ref addr } => {
                if self.contains(id) {
                    return Err("already a member");
                }
                next.learners.insert(id);
                next.addrs.insert(id, addr.clone());
            }
            MembershipChange::Promote(id) => {
                if !self.learners.contains(&id) {
                    return Err("not a learner");
                }
                next.learners.remove(&id);
                next.voters.insert(id);
            }
            MembershipChange::Remove(id) => {
                if !self.contains(id) {
                    return Err("not a member");
                }
                next.voters.remove(&id);
                next.learners.remove(&id);
                next.addrs.remove(&id);
                if next.voters.is_empty() {
                    return Err("cannot remove the last voter");
                }
            }
        }
        Ok(next)
    }
}
