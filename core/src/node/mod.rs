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
//!   `index` (or restored a snapshot through it).
//! * [`Input::ReadIndex`], [`Input::ChangeMembership`],
//!   [`Input::TransferLeadership`]: requests; on a follower they are
//!   forwarded to the leader (when `Config::forward_requests`).
//! * [`Input::SnapshotTaken`]: the application answered
//!   [`Output::TakeSnapshot`]: its state at `index` is durable in storage.
//! * [`Input::SnapshotChunk`]: bytes of the latest durable snapshot that an
//!   [`Output::ReadSnapshotChunk`] asked for.
//!
//! Outputs:
//!
//! * [`Output::Send`]: the runtime SHOULD deliver the message to `msg.to`;
//!   dropping it is safe.
//! * [`Output::Persist`]: the runtime MUST carry out the write (see
//!   [`PersistWrite`]: snapshot part first, then entries, then hard state),
//!   then report durability with `Input::Persisted`. Writes MUST become
//!   durable in emission order; many may share one fsync. A crash may lose
//!   any write not yet reported.
//! * [`Output::Apply`]: committed entries, in order, never twice. The
//!   runtime MUST apply the `Normal` ones to its state machine, then report
//!   `Input::Applied` with the last index (covering `Noop`/`Config` entries).
//! * [`Output::Proposed`] / [`Output::Rejected`]: the fate of a `Propose`.
//!   An accepted proposal succeeded once the entry at `last` is applied with
//!   the same `term`; if another term's entry is applied there, it was lost.
//! * [`Output::ReadReady`]: a linearizable read may now be served from the
//!   local state machine (applied has reached its read index).
//! * [`Output::Completed`]: a request without a log index finished (a
//!   leadership transfer done: the target is known to lead a later term).
//! * [`Output::TakeSnapshot`]: the runtime SHOULD have the state machine
//!   write its state as of `meta.index` (everything handed out in `Apply`
//!   so far) to a durable snapshot and answer `Input::SnapshotTaken`.
//! * [`Output::ReadSnapshotChunk`]: read bytes of the latest durable snapshot
//!   and answer `Input::SnapshotChunk`.
//! * [`Output::RestoreSnapshot`]: the state machine MUST replace its state by
//!   the installed snapshot `meta`, then report `Input::Applied { meta.index }`.
//! * [`Output::RoleChanged`]: informational (leader, term, role).
//!
//! Restart: a runtime rebuilds a node with [`Node::new`] from what storage
//! made durable, and restores the state machine from the durable snapshot
//! (if any) before feeding the node.

mod durability;
mod election;
mod forward;
mod log;
mod membership;
mod progress;
mod quorum;
mod read;
mod replication;
mod snapshot;
mod transfer;

use bytes::Bytes;
use smallvec::SmallVec;

use crate::config::{Config, ConfigError};
use crate::error::ProposeError;
use crate::message::{Forwarded, Message};
use crate::rng::Rng;
use crate::types::{
    Entry, EntryKind, EntryVec, HardState, LogIndex, Membership, MembershipChange, NodeId,
    PersistId, RequestId, SnapshotMeta, Term,
};

use self::durability::Durability;
use self::forward::Forwarding;
use self::log::Log;
use self::membership::ConfigState;
use self::progress::Progress;
use self::read::Reads;
use self::snapshot::SnapState;
use self::transfer::{Handoff, Transfer};

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
        /// Caller's tag, echoed in `Proposed` / `Rejected`. MUST be unique
        /// among this node's requests, also across restarts: a leader drops
        /// a forwarded proposal whose (node, request) it saw recently (the
        /// network may deliver a message twice).
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
    /// Ask for a linearizable read point; answered by `ReadReady`.
    ReadIndex {
        /// Caller's tag.
        request: RequestId,
    },
    /// Change the membership (one change at a time).
    ChangeMembership {
        /// Caller's tag.
        request: RequestId,
        /// The change.
        change: MembershipChange,
    },
    /// Hand leadership to `target`.
    TransferLeadership {
        /// Caller's tag.
        request: RequestId,
        /// The voter to take over.
        target: NodeId,
    },
    /// The snapshot asked for by `Output::TakeSnapshot` is durable in
    /// storage (or could not be taken: `ok == false`; it is then asked for
    /// again after `snapshot_chunk_timeout_ticks`, not at once). An answer
    /// may come after the request was made again (a slow snapshot): an `ok`
    /// one is still used.
    SnapshotTaken {
        /// The snapshot's index.
        index: LogIndex,
        /// Whether it was written.
        ok: bool,
    },
    /// Bytes of the latest durable snapshot, for sending to `to`.
    SnapshotChunk {
        /// The follower the chunk is for.
        to: NodeId,
        /// The snapshot the bytes come from.
        meta: SnapshotMeta,
        /// Byte offset of `data`.
        offset: u64,
        /// The bytes (at most the requested length).
        data: Bytes,
        /// Whether the snapshot ends with `data`.
        done: bool,
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
    /// A read requested with `Input::ReadIndex` may be served locally now.
    ReadReady {
        /// The read's tag.
        request: RequestId,
        /// Its read index (already applied).
        index: LogIndex,
    },
    /// A request without a log index finished (a transfer done: the node
    /// that handed off learned that the target leads a later term).
    Completed {
        /// The request's tag.
        request: RequestId,
    },
    /// Write a snapshot of the state machine as of `meta.index`, which is
    /// the last entry handed out in `Output::Apply` so far (take it after
    /// applying those, before any later ones), make it durable under `meta`,
    /// then answer `Input::SnapshotTaken`.
    TakeSnapshot {
        /// What the snapshot stands for.
        meta: SnapshotMeta,
    },
    /// Read bytes of the latest durable snapshot for a follower; answer
    /// `Input::SnapshotChunk`. If the latest snapshot is not `index` (and
    /// `index` is not zero), answer from the latest one at offset 0.
    ReadSnapshotChunk {
        /// The follower.
        to: NodeId,
        /// The snapshot the transfer is about (zero: the latest).
        index: LogIndex,
        /// Byte offset to read from.
        offset: u64,
        /// Most bytes to read.
        max_bytes: usize,
    },
    /// Replace the state machine's state by the installed snapshot.
    RestoreSnapshot {
        /// The snapshot now durable in storage.
        meta: SnapshotMeta,
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

/// One durable write, carried out in field order: snapshot, entries, hard
/// state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PersistWrite {
    /// Sequence number to answer with `Input::Persisted`.
    pub id: PersistId,
    /// Snapshot work, if any.
    pub snapshot: Option<SnapshotWrite>,
    /// Entries to store, consecutive; every stored entry at or after the
    /// first one's index is discarded first. If a durable local snapshot
    /// already covers the first index when the write reaches storage, see
    /// [`entries_after_snapshot`].
    pub entries: EntryVec,
    /// New hard state to store, if it changed.
    pub hard_state: Option<HardState>,
}

/// What of a write's `entries` goes on after a durable snapshot at
/// (`index`, `term`) that covers the write's first index.
///
/// Such a write was queued before the snapshot became durable: a node may
/// apply committed entries before they are durable here, and snapshot
/// them, while its writes wait for the disk. The snapshot covers the
/// entries up to `index` (committed), so those are dropped, and as the
/// write replaces the log from its first index on, storage discards every
/// stored entry. The entries after `index` go on after the snapshot only if
/// the write holds the snapshot's own entry (`index` with `term`): one
/// holding another term there is a stale branch (a deposed leader's
/// entries, replaced by a later write in the queue), and keeping its later
/// entries would put older terms after the snapshot's. Returns an empty
/// slice if nothing goes on; `entries` must start at or below `index`.
pub fn entries_after_snapshot(entries: &[Entry], index: LogIndex, term: Term) -> &[Entry] {
    let Some(first) = entries.first() else { return entries };
    let at = index.0.saturating_sub(first.index.0) as usize;
    match entries.get(at) {
        Some(e) if e.index == index && e.term == term => &entries[at + 1..],
        _ => &[],
    }
}

/// The snapshot part of a [`PersistWrite`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SnapshotWrite {
    /// The snapshot `meta` (reported by `Input::SnapshotTaken`) is durable:
    /// drop stored entries up to `compact_through`.
    Taken {
        /// What the snapshot stands for.
        meta: SnapshotMeta,
        /// Entries at or below this index may be deleted.
        compact_through: LogIndex,
    },
    /// Write a chunk received from the leader at `offset` of the snapshot
    /// `meta` (an `offset` of 0 starts over). When `done`, make it durable
    /// and install it: drop stored entries up to `meta.index`, and the whole
    /// log if it has no entry at `meta.index` with `meta.term`.
    Chunk {
        /// The snapshot being received.
        meta: SnapshotMeta,
        /// Where `data` goes.
        offset: u64,
        /// The bytes.
        data: Bytes,
        /// Whether this completes the snapshot.
        done: bool,
    },
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
        Self::bootstrap_with(Membership::with_voters(voters))
    }

    /// Like [`RestartState::bootstrap`], with a full membership (addresses,
    /// learners).
    pub fn bootstrap_with(membership: Membership) -> Self {
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
    /// Requests of any kind answered with `Rejected` on this node.
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
    /// Requests forwarded to the leader.
    pub forwarded: u64,
    /// Read-index requests received (local and forwarded).
    pub read_index_requests: u64,
    /// Reads released (`ReadReady`).
    pub reads_served: u64,
    /// Snapshots taken and made durable locally.
    pub snapshots_taken: u64,
    /// Snapshots received from a leader and installed.
    pub snapshots_installed: u64,
    /// Snapshot transfers completed to followers (as leader).
    pub snapshots_sent: u64,
    /// Membership changes committed while this node led.
    pub config_changes_committed: u64,
    /// Learners promoted while this node led.
    pub learners_promoted: u64,
    /// Leadership transfers handed off by this node whose target it then
    /// saw elected.
    pub transfers_completed: u64,
    /// Messages dropped as impossible from an honest peer: an append whose
    /// entries do not follow on from its anchor one index at a time, whose
    /// terms go backwards or pass the message's term, or that contradicts
    /// an entry this node knows committed. Always 0 unless a peer is broken
    /// (or its disk was swapped under the same id).
    pub messages_invalid: u64,
}

impl std::ops::AddAssign for Metrics {
    /// Sums counters, e.g. over the incarnations of a node or over a cluster.
    fn add_assign(&mut self, o: Metrics) {
        self.elections_started += o.elections_started;
        self.elections_won += o.elections_won;
        self.pre_votes_started += o.pre_votes_started;
        self.proposals_total += o.proposals_total;
        self.proposals_ok += o.proposals_ok;
        self.proposals_failed += o.proposals_failed;
        self.appends_sent += o.appends_sent;
        self.appends_received += o.appends_received;
        self.messages_sent += o.messages_sent;
        self.messages_received += o.messages_received;
        self.persists += o.persists;
        self.forwarded += o.forwarded;
        self.read_index_requests += o.read_index_requests;
        self.reads_served += o.reads_served;
        self.snapshots_taken += o.snapshots_taken;
        self.snapshots_installed += o.snapshots_installed;
        self.snapshots_sent += o.snapshots_sent;
        self.config_changes_committed += o.config_changes_committed;
        self.learners_promoted += o.learners_promoted;
        self.transfers_completed += o.transfers_completed;
        self.messages_invalid += o.messages_invalid;
    }
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
    /// Index of the latest durable snapshot.
    pub snapshot_index: LogIndex,
    /// Counters.
    pub metrics: Metrics,
}

/// Who asked for something: this node's caller, or a follower that
/// forwarded the request.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Requester {
    Local(RequestId),
    Remote(NodeId, RequestId),
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
    /// The membership in force (the latest in the log, committed or not).
    membership: Membership,
    conf: ConfigState,
    /// Logical time: ticks since start.
    now: u64,
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
    /// Leader: index of this term's no-op; reads and membership changes
    /// wait until it commits.
    term_start: LogIndex,
    /// Candidate: campaigning on a leader's `TimeoutNow`.
    campaign_transfer: bool,
    /// A learner asked for a vote it refused only because its own log is
    /// newer: it may campaign (see `election.rs`) until it hears from a
    /// leader, loses a round, or hands over.
    rescue: bool,
    reads: Reads,
    fwd: Forwarding,
    transfer: Option<Transfer>,
    /// A transfer handed off while leading, awaiting news of the next leader.
    handoff: Option<Handoff>,
    snap: SnapState,
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
        let RestartState { hard_state, snapshot, mut entries } = state;
        let snapshot = snapshot.unwrap_or_default();
        let snap_index = snapshot.index;
        // Entries the snapshot covers may still be in storage; the node keeps
        // only what follows the snapshot.
        entries.retain(|e| e.index > snap_index);
        let mut conf = ConfigState::new(snap_index, snapshot.membership.clone());
        let mut expect = snap_index.next();
        let mut last_term = snapshot.term;
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
                let m = Membership::decode(&e.data).map_err(|err| {
                    RestartError::Inconsistent(format!("config entry {e:?}: {err}"))
                })?;
                conf.push(e.index, m);
            }
            expect = expect.next();
            last_term = e.term;
        }
        let log = Log::new(snap_index, snapshot.term, entries);
        // The stored commit is a hint: never beyond the durable log.
        let commit = hard_state.commit.max(snap_index).min(log.last_index());
        let membership = conf.current().clone();
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
            conf,
            now: 0,
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
            term_start: LogIndex::ZERO,
            campaign_transfer: false,
            rescue: false,
            reads: Reads::default(),
            fwd: Forwarding::default(),
            transfer: None,
            handoff: None,
            snap: SnapState::new(snapshot, cfg.snapshot_threshold_entries),
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
            Input::Propose { request, commands } => {
                self.metrics.proposals_total += 1;
                self.request(Requester::Local(request), Forwarded::Propose(commands))
            }
            Input::ReadIndex { request } => {
                self.request(Requester::Local(request), Forwarded::ReadIndex)
            }
            Input::ChangeMembership { request, change } => {
                self.request(Requester::Local(request), Forwarded::ChangeMembership(change))
            }
            Input::TransferLeadership { request, target } => {
                self.request(Requester::Local(request), Forwarded::Transfer(target))
            }
            Input::Persisted { through } => self.on_persisted(through),
            Input::Applied { index } => self.on_applied(index),
            Input::SnapshotTaken { index, ok } => self.on_snapshot_taken(index, ok),
            Input::SnapshotChunk { to, meta, offset, data, done } => {
                self.on_snapshot_chunk(to, meta, offset, data, done)
            }
        }
        self.settle_handoff();
        self.flush_write();
        self.maybe_apply();
        self.release_reads();
        self.maybe_snapshot();
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

    /// The membership in force (the latest in the log, committed or not).
    pub fn membership(&self) -> &Membership {
        &self.membership
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
            snapshot_index: self.snap.meta.index,
            metrics: self.metrics,
        }
    }

    /// The number of ticks until this node next needs a tick to make
    /// progress on its own (a simulator may skip idle time up to it).
    pub fn ticks_until_timer(&self) -> u32 {
        let role_timer = match self.role {
            Role::Leader => {
                let hb = self.cfg.heartbeat_interval_ticks.saturating_sub(self.heartbeat_elapsed);
                let cq = self.cfg.election_timeout_ticks_min.saturating_sub(self.election_elapsed);
                hb.min(cq)
            }
            _ if self.may_campaign() => self.election_timeout.saturating_sub(self.election_elapsed),
            // Nothing to time out: the lease check reads the elapsed ticks.
            _ => u32::MAX,
        };
        let deadlines = [
            self.fwd.next_deadline(),
            self.reads.next_deadline(),
            self.transfer.as_ref().map(|t| t.deadline()),
            self.handoff.as_ref().map(|h| h.deadline()),
            self.next_chunk_deadline(),
        ];
        let until = deadlines
            .into_iter()
            .flatten()
            .map(|d| d.saturating_sub(self.now).min(u64::from(u32::MAX)) as u32)
            .fold(role_timer, u32::min);
        until.max(1)
    }

    // ----- internal plumbing shared by the role modules -----

    fn emit(&mut self, o: Output) {
        self.out.push(o);
    }

    /// Sends `msg`, holding it back while the hard state it depends on is not
    /// yet durable (a vote, or a term raised by this node).
    /// Sends `body` to `to`, stamped with this node's id and current term.
    fn send_to(&mut self, to: NodeId, body: crate::message::MessageBody) {
        let msg = Message { from: self.cfg.id, to, term: self.term, body };
        self.send(msg);
    }

    fn send(&mut self, msg: Message) {
        self.metrics.messages_sent += 1;
        if let Some(id) = self.dur.hard_state_pending() {
            self.dur.hold(id, msg);
        } else {
            self.out.push(Output::Send(msg));
        }
    }

    /// Sends `msg` once write `id` (and any pending hard state) is durable.
    fn send_after(&mut self, id: PersistId, msg: Message) {
        self.metrics.messages_sent += 1;
        let id = self.dur.hard_state_pending().map_or(id, |h| h.max(id));
        self.dur.hold(id, msg);
    }

    fn is_voter(&self, id: NodeId) -> bool {
        self.membership.voters.contains(&id)
    }

    fn hard_state(&self) -> HardState {
        HardState { term: self.term, vote: self.vote, commit: self.commit }
    }

    fn on_applied(&mut self, index: LogIndex) {
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
        if matches!(self.role, Role::Candidate | Role::PreCandidate) {
            assert!(self.may_campaign(), "a non-voter campaigned");
        }
        if self.role == Role::Leader && !self.is_voter(self.cfg.id) {
            // Removed by a change it leads: only until that change commits.
            // Elected as a non-voter (a rescue): only until its term's
            // first entry commits.
            assert!(
                self.conf.latest_index() > self.commit
                    || (self.rescue && self.commit < self.term_start),
                "a non-voter kept leading"
            );
        }
    }
}
