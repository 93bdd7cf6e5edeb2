//! The Raft node: one deterministic state machine for every role.
//!
//! Owns the protocol state of one server and the driving contract below.
//! Role logic lives in `election` (ticks, PreVote, votes, role changes) and
//! `replication` (proposals, appends, commit, apply); durability bookkeeping
//! in `durability`. Invariants, checked after every step in debug builds:
//! `applied <= commit`; the commit index never exceeds the last index; a
//! vote or an append acknowledgement never leaves the node before the state
//! it promises is durable.
//!
//! # Driving contract
//!
//! A runtime owns one `Node` and loops: feed one [`Input`] to
//! [`Node::step_into`] (or [`Node::step`]) and carry out every [`Output`] in
//! the order given, then repeat.
//!
//! * [`Input::Tick`]: one logical clock tick. Timeouts in [`Config`] count
//!   these. The runtime MUST tick at a steady rate (10 ms for the defaults).
//! * [`Input::Message`]: a message from a peer. Messages may be lost,
//!   duplicated or reordered; the node copes.
//! * [`Input::Propose`]: new commands for the log.
//! * [`Input::Persisted`]: every [`Output::Persist`] up to and including
//!   `through` is durable (fsync'd), in the order they were emitted.
//! * [`Input::Applied`]: the state machine has applied every entry up to
//!   `index`.
//!
//! Outputs:
//!
//! * [`Output::Send`]: the runtime SHOULD deliver the message to `msg.to`;
//!   dropping it is safe.
//! * [`Output::Persist`]: the runtime MUST write `hard_state` (if any) and
//!   the entries, discarding first every stored entry with an index at or
//!   above the first new entry's, then report durability with
//!   `Input::Persisted`. Writes MUST become durable in emission order; many
//!   may share one fsync. A crash may lose any write not yet reported.
//! * [`Output::Apply`]: committed entries, in order, never twice. The
//!   runtime MUST apply the `Normal` ones to its state machine, then report
//!   `Input::Applied` with the last index (covering `Noop`/`Config` entries).
//! * [`Output::Proposed`] / [`Output::Rejected`]: the fate of a `Propose`.
//!   An accepted proposal succeeded once the entry at `last` is applied with
//!   the same `term`; if another term's entry is applied there, it was lost.
//! * [`Output::RoleChanged`]: informational (leader, term, role).

mod durability;
mod election;
mod log;
mod progress;
mod quorum;
mod replication;

use bytes::Bytes;
use smallvec::SmallVec;

use crate::config::{Config, ConfigError};
use crate::error::ProposeError;
use crate::message::Message;
use crate::rng::Rng;
use crate::types::{
    Entry, EntryKind, EntryVec, HardState, LogIndex, Membership, NodeId, PersistId, RequestId,
    SnapshotMeta, Term,
};

use self::durability::Durability;
use self::log::Log;
use self::progress::Progress;

/// Commands carried by one `Propose`; one lives inline.
pub type Commands = SmallVec<[Bytes; 1]>;

/// Everything that can happen to a node.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum Input {
    /// One logical clock tick.
    Tick,
    /// A message from a peer.
    Message(Message),
    /// Append `commands` to the log, tagged `request` for the answer.
    Propose {
        /// Caller's tag, echoed in `Proposed` / `Rejected`.
        request: RequestId,
        /// The commands, appended as consecutive `Normal` entries.
        commands: Commands,
    },
    /// All `Persist` outputs up to and including `through` are durable.
    Persisted {
        /// The last durable write.
        through: PersistId,
    },
    /// The state machine has applied every entry up to `index`.
    Applied {
        /// The last applied index.
        index: LogIndex,
    },
}

/// Something the runtime must do (see the driving contract on [`Node`]).
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum Output {
    /// Deliver a message to a peer.
    Send(Message),
    /// Make state durable, then answer with `Input::Persisted`.
    Persist(PersistWrite),
    /// Apply committed entries, then answer with `Input::Applied`.
    Apply {
        /// Consecutive committed entries.
        entries: EntryVec,
    },
    /// A proposal was appended to the leader's log at `first..=last` in `term`.
    Proposed {
        /// The proposal's tag.
        request: RequestId,
        /// The leader's term.
        term: Term,
        /// Index of the first command.
        first: LogIndex,
        /// Index of the last command.
        last: LogIndex,
    },
    /// A proposal was refused; nothing was appended.
    Rejected {
        /// The proposal's tag.
        request: RequestId,
        /// Why.
        error: ProposeError,
    },
    /// The node's role, term or known leader changed.
    RoleChanged {
        /// The new role.
        role: Role,
        /// The current term.
        term: Term,
        /// The leader, if known.
        leader: Option<NodeId>,
    },
}

/// One durable write. Entries replace the stored log from `entries[0].index`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PersistWrite {
    /// Sequence number to answer with `Input::Persisted`.
    pub id: PersistId,
    /// New hard state to store, if it changed.
    pub hard_state: Option<HardState>,
    /// Entries to store, consecutive; every stored entry at or after the
    /// first one's index is discarded first.
    pub entries: EntryVec,
}

/// A node's role.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Role {
    /// Follows a leader (or waits for one).
    Follower,
    /// Probing whether an election could succeed, without raising the term.
    PreCandidate,
    /// Campaigning in its term.
    Candidate,
    /// Leads its term.
    Leader,
}

/// What storage made durable, from which a node restarts (or starts).
#[derive(Clone, Debug, Default)]
pub struct RestartState {
    /// The durable hard state.
    pub hard_state: HardState,
    /// The durable snapshot's metadata, if any.
    pub snapshot: Option<SnapshotMeta>,
    /// The durable log after the snapshot, consecutive.
    pub entries: Vec<Entry>,
}

impl RestartState {
    /// The state every founding member of a new cluster starts from: one
    /// `Config` entry at index 1, term 1, naming the voters, committed.
    /// A runtime MUST make it durable before starting the node.
    pub fn bootstrap(voters: impl IntoIterator<Item = NodeId>) -> Self {
        let membership = Membership::with_voters(voters);
        RestartState {
            hard_state: HardState { term: Term(1), vote: None, commit: LogIndex(1) },
            snapshot: None,
            entries: vec![Entry {
                index: LogIndex(1),
                term: Term(1),
                kind: EntryKind::Config,
                data: membership.encode(),
            }],
        }
    }
}

/// Why a node could not be built from a restart state.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RestartError {
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The durable state is inconsistent.
    #[error("inconsistent durable state: {0}")]
    Inconsistent(String),
}

/// Counters a node keeps. All only grow.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Metrics {
    /// Elections (real ones, not PreVote rounds) started.
    pub elections_started: u64,
    /// Elections won.
    pub elections_won: u64,
    /// PreVote rounds started.
    pub pre_votes_started: u64,
    /// `Propose` inputs received.
    pub proposals_total: u64,
    /// Proposals whose last entry committed while this node led its term.
    pub proposals_ok: u64,
    /// Proposals rejected.
    pub proposals_failed: u64,
    /// `Append` messages sent.
    pub appends_sent: u64,
    /// `Append` messages received.
    pub appends_received: u64,
    /// Messages sent, all kinds.
    pub messages_sent: u64,
    /// Messages received, all kinds.
    pub messages_received: u64,
    /// `Persist` outputs emitted.
    pub persists: u64,
}

/// A snapshot of a node's state, for health checks and tests.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Status {
    /// This node.
    pub id: NodeId,
    /// Current role.
    pub role: Role,
    /// Current term.
    pub term: Term,
    /// Vote in the current term.
    pub vote: Option<NodeId>,
    /// Known leader.
    pub leader: Option<NodeId>,
    /// Commit index.
    pub commit: LogIndex,
    /// Last index reported applied.
    pub applied: LogIndex,
    /// Last log index (durable or not).
    pub last_index: LogIndex,
    /// Last index known durable.
    pub durable_index: LogIndex,
    /// Entries held in memory (bounded by compaction).
    pub log_entries: usize,
    /// Membership in force.
    pub membership: Membership,
    /// Counters.
    pub metrics: Metrics,
}

/// One Raft server. See the module documentation for the driving contract.
#[derive(Debug)]
pub struct Node {
    cfg: Config,
    rng: Rng,
    // Persistent state (durable copy tracked by `dur`).
    term: Term,
    vote: Option<NodeId>,
    log: Log,
    // Volatile state.
    role: Role,
    leader: Option<NodeId>,
    commit: LogIndex,
    /// Last index handed out in `Output::Apply`.
    apply_sent: LogIndex,
    /// Last index reported by `Input::Applied`.
    applied: LogIndex,
    membership: Membership,
    election_elapsed: u32,
    heartbeat_elapsed: u32,
    election_timeout: u32,
    /// Candidate: voters that granted / refused.
    granted: SmallVec<[NodeId; 8]>,
    refused: SmallVec<[NodeId; 8]>,
    /// Leader: one entry per other member, sorted by id.
    progress: Vec<Progress>,
    /// Follower: highest index known to match the current leader's log.
    leader_match: LogIndex,
    /// Follower: highest index acknowledged to the current leader.
    acked: LogIndex,
    /// Leader: (last index, bytes) of each accepted proposal not yet committed.
    pending_proposals: std::collections::VecDeque<(LogIndex, usize)>,
    uncommitted_bytes: usize,
    dur: Durability,
    out: Vec<Output>,
    metrics: Metrics,
}

impl Node {
    /// Builds a node from its durable state. A brand-new cluster member
    /// starts from [`RestartState::bootstrap`]; a node that will be added to
    /// an existing cluster starts from `RestartState::default()` and waits.
    pub fn new(cfg: Config, state: RestartState) -> Result<Node, RestartError> {
        cfg.validate()?;
        let RestartState { hard_state, snapshot, entries } = state;
        let (snap_index, snap_term, mut membership) = match snapshot {
            Some(s) => (s.index, s.term, s.membership),
            None => (LogIndex::ZERO, Term::ZERO, Membership::default()),
        };
        let mut expect = snap_index.next();
        let mut last_term = snap_term;
        for e in &entries {
            if e.index != expect || e.term < last_term {
                return Err(RestartError::Inconsistent(format!(
                    "entry {:?} does not follow index {:?} term {:?}",
                    e,
                    expect.prev(),
                    last_term
                )));
            }
            if e.term > hard_state.term {
                return Err(RestartError::Inconsistent(format!(
                    "entry {e:?} has a term above the durable term {:?}",
                    hard_state.term
                )));
            }
            if e.kind == EntryKind::Config {
                membership = Membership::decode(&e.data).map_err(|err| {
                    RestartError::Inconsistent(format!("config entry {e:?}: {err}"))
                })?;
            }
            expect = expect.next();
            last_term = e.term;
        }
        let log = Log::new(snap_index, snap_term, entries);
        // The stored commit is a hint: never beyond the durable log.
        let commit = hard_state.commit.max(snap_index).min(log.last_index());
        let mut node = Node {
            rng: Rng::new(cfg.seed),
            term: hard_state.term,
            vote: hard_state.vote,
            role: Role::Follower,
            leader: None,
            commit,
            apply_sent: snap_index,
            applied: snap_index,
            membership,
            election_elapsed: 0,
            heartbeat_elapsed: 0,
            election_timeout: cfg.election_timeout_ticks_min,
            granted: SmallVec::new(),
            refused: SmallVec::new(),
            progress: Vec::new(),
            leader_match: LogIndex::ZERO,
            acked: LogIndex::ZERO,
            pending_proposals: Default::default(),
            uncommitted_bytes: 0,
            dur: Durability::new(hard_state, log.last_index()),
            log,
            out: Vec::new(),
            metrics: Metrics::default(),
            cfg,
        };
        node.reset_election_timeout();
        Ok(node)
    }

    /// Feeds one input and returns the outputs (a convenience over
    /// [`Node::step_into`], which reuses a buffer).
    pub fn step(&mut self, input: Input) -> Vec<Output> {
        let mut out = Vec::new();
        self.step_into(input, &mut out);
        out
    }

    /// Feeds one input and appends the resulting outputs to `out`.
    pub fn step_into(&mut self, input: Input, out: &mut Vec<Output>) {
        std::mem::swap(&mut self.out, out);
        match input {
            Input::Tick => self.on_tick(),
            Input::Message(m) => self.on_message(m),
            Input::Propose { request, commands } => self.on_propose(request, commands),
            Input::Persisted { through } => self.on_persisted(through),
            Input::Applied { index } => self.on_applied(index),
        }
        self.flush_write();
        self.maybe_apply();
        #[cfg(debug_assertions)]
        self.check_invariants();
        std::mem::swap(&mut self.out, out);
    }

    /// This node's id.
    pub fn id(&self) -> NodeId {
        self.cfg.id
    }

    /// The configuration in force.
    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// Current role.
    pub fn role(&self) -> Role {
        self.role
    }

    /// Current term.
    pub fn term(&self) -> Term {
        self.term
    }

    /// Known leader.
    pub fn leader(&self) -> Option<NodeId> {
        self.leader
    }

    /// Commit index.
    pub fn commit_index(&self) -> LogIndex {
        self.commit
    }

    /// Last log index.
    pub fn last_index(&self) -> LogIndex {
        self.log.last_index()
    }

    /// The entry at `index`, if held in memory.
    pub fn entry(&self, index: LogIndex) -> Option<&Entry> {
        self.log.entry(index)
    }

    /// Counters.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// A full status report.
    pub fn status(&self) -> Status {
        Status {
            id: self.cfg.id,
            role: self.role,
            term: self.term,
            vote: self.vote,
            leader: self.leader,
            commit: self.commit,
            applied: self.applied,
            last_index: self.log.last_index(),
            durable_index: self.dur.stable_index(),
            log_entries: self.log.len(),
            membership: self.membership.clone(),
            metrics: self.metrics,
        }
    }

    /// The number of ticks until this node next needs a tick to make
    /// progress on its own (a simulator may skip idle time up to it).
    pub fn ticks_until_timer(&self) -> u32 {
        match self.role {
            Role::Leader => {
                let hb = self.cfg.heartbeat_interval_ticks.saturating_sub(self.heartbeat_elapsed);
                let cq = self.cfg.election_timeout_ticks_min.saturating_sub(self.election_elapsed);
                hb.min(cq).max(1)
            }
            _ => self.election_timeout.saturating_sub(self.election_elapsed).max(1),
        }
    }

    // ----- internal plumbing shared by the role modules -----

    fn emit(&mut self, o: Output) {
        self.out.push(o);
    }

    /// Sends `msg`, holding it back while the hard state it depends on is not
    /// yet durable (a vote, or a term raised by this node).
    fn send(&mut self, msg: Message) {
        self.metrics.messages_sent += 1;
        if let Some(id) = self.dur.hard_state_pending() {
            self.dur.hold(id, msg);
        } else {
            self.out.push(Output::Send(msg));
        }
    }

    fn is_voter(&self, id: NodeId) -> bool {
        self.membership.voters.contains(&id)
    }

    fn hard_state(&self) -> HardState {
        HardState { term: self.term, vote: self.vote, commit: self.commit }
    }

    fn on_applied(&mut self, index: LogIndex) {
        debug_assert!(index <= self.apply_sent, "applied beyond what was handed out");
        if index > self.applied && index <= self.apply_sent {
            self.applied = index;
        }
    }

    #[cfg(debug_assertions)]
    fn check_invariants(&self) {
        assert!(self.applied <= self.apply_sent, "applied beyond apply_sent");
        assert!(self.apply_sent <= self.commit, "handed out uncommitted entries");
        assert!(self.commit <= self.log.last_index(), "commit beyond the log");
        let durable = self.dur.durable_hard_state();
        assert!(durable.term <= self.term, "durable term ahead of the current term");
        if durable.term == self.term && durable.vote.is_some() {
            assert_eq!(durable.vote, self.vote, "vote changed within a term");
        }
        assert!(self.dur.stable_index() <= self.log.last_index(), "stable beyond the log");
        assert!(self.leader_match <= self.log.last_index(), "leader_match beyond the log");
        if self.role == Role::Leader {
            assert_eq!(self.leader, Some(self.cfg.id));
            for p in &self.progress {
                p.check(self.cfg.inflight_appends_max);
            }
        }
        if self.role != Role::Follower {
            assert!(self.is_voter(self.cfg.id), "a non-voter campaigned or leads");
        }
    }
}
