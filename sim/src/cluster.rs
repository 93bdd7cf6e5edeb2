//! The simulated cluster: nodes, disks, network and one event queue on
//! virtual time.
//!
//! Owns the driving of every [`Node`] by its contract: ticks at each node's
//! own rate, message delivery through the [`Network`], `Persist` writes into
//! each node's [`Disk`] and `Persisted` back after a random fsync latency,
//! `Apply` into a per-node model state machine and `Applied` back. Time is
//! in microseconds; a tick is [`TICK_US`] (10 ms) at nominal rate. Idle time
//! is jumped: a node gets a wake-up event only when
//! [`Node::ticks_until_timer`] says it needs one; the ticks in between are
//! fed lazily, just before the node's next input, and must produce nothing
//! (checked: `TimerContract`). Events at equal times run in insertion order,
//! so one root seed fixes the whole run.
//!
//! Every observable step is reported to the [`Oracle`] at once and traced.
//! The first violation is kept (and panics in scripted mode). The scripted
//! API (`crash`, `restart`, `disconnect`, `propose`, `run_for_ms`, ...)
//! drives the same loop the seeded swarm uses.

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::collections::BinaryHeap;

use bytes::Bytes;
use xraft::{
    Commands, Config, Entry, EntryKind, Input, LogIndex, Membership, MembershipChange, Message,
    MessageBody, Metrics, Node, NodeId, Output, PersistWrite, ProposeError, RequestId, Role,
    SnapshotMeta, SnapshotWrite, Term,
};

use crate::app::{decode_write, encode_write, App, Key, Value};
use crate::check::{node_id, EntryId, Oracle, Violation};
use crate::disk::{CrashMode, Disk, WriteError};
use crate::linear::{HistOp, OpKind};
use crate::net::{LinkModel, Network};
use crate::sim_rng::{derive_seed, stream, SimRng};
use crate::trace::{role_name, DropWhy, Rec, Trace};

/// Simulated microseconds per tick at nominal rate (the core's 10 ms).
pub const TICK_US: u64 = 10_000;

/// Core settings a run may vary (the rest are the core defaults).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CoreKnobs {
    /// `Config::pre_vote`.
    pub pre_vote: bool,
    /// `Config::check_quorum`.
    pub check_quorum: bool,
    /// `Config::inflight_appends_max`.
    pub inflight_appends_max: usize,
    /// `Config::append_entries_max`.
    pub append_entries_max: usize,
    /// `Config::forward_requests`.
    pub forward_requests: bool,
    /// `Config::snapshot_threshold_entries`.
    pub snapshot_threshold_entries: usize,
    /// `Config::snapshot_min_retention_entries`.
    pub snapshot_min_retention_entries: usize,
    /// `Config::snapshot_chunk_bytes`.
    pub snapshot_chunk_bytes: usize,
    /// `Config::snapshot_chunk_timeout_ticks`.
    pub snapshot_chunk_timeout_ticks: u32,
    /// `Config::propose_timeout_ticks`.
    pub propose_timeout_ticks: u32,
    /// `Config::promote_lag_entries_max`.
    pub promote_lag_entries_max: u64,
    /// `Config::append_bytes_max`.
    pub append_bytes_max: usize,
    /// `Config::inflight_bytes_max`.
    pub inflight_bytes_max: usize,
    /// `Config::propose_entries_max`.
    pub propose_entries_max: usize,
    /// `Config::uncommitted_entries_max`.
    pub uncommitted_entries_max: usize,
    /// `Config::uncommitted_bytes_max`.
    pub uncommitted_bytes_max: usize,
    /// `Config::apply_entries_max`.
    pub apply_entries_max: usize,
    /// `Config::reads_pending_max`.
    pub reads_pending_max: usize,
    /// `Config::forward_pending_max`.
    pub forward_pending_max: usize,
}

impl Default for CoreKnobs {
    fn default() -> Self {
        let c = Config::new(NodeId(1));
        CoreKnobs {
            pre_vote: c.pre_vote,
            check_quorum: c.check_quorum,
            inflight_appends_max: c.inflight_appends_max,
            append_entries_max: c.append_entries_max,
            forward_requests: c.forward_requests,
            snapshot_threshold_entries: c.snapshot_threshold_entries,
            snapshot_min_retention_entries: c.snapshot_min_retention_entries,
            snapshot_chunk_bytes: c.snapshot_chunk_bytes,
            snapshot_chunk_timeout_ticks: c.snapshot_chunk_timeout_ticks,
            propose_timeout_ticks: c.propose_timeout_ticks,
            promote_lag_entries_max: c.promote_lag_entries_max,
            append_bytes_max: c.append_bytes_max,
            inflight_bytes_max: c.inflight_bytes_max,
            propose_entries_max: c.propose_entries_max,
            uncommitted_entries_max: c.uncommitted_entries_max,
            uncommitted_bytes_max: c.uncommitted_bytes_max,
            apply_entries_max: c.apply_entries_max,
            reads_pending_max: c.reads_pending_max,
            forward_pending_max: c.forward_pending_max,
        }
    }
}

impl CoreKnobs {
    /// Tiny snapshot settings: compact every `threshold` entries, keep
    /// `retention`, ship `chunk`-byte chunks with a short retry timeout.
    pub fn with_snapshots(mut self, threshold: usize, retention: usize, chunk: usize) -> Self {
        self.snapshot_threshold_entries = threshold;
        self.snapshot_min_retention_entries = retention;
        self.snapshot_chunk_bytes = chunk;
        self.snapshot_chunk_timeout_ticks = 10;
        self
    }
}

/// A planted bug in the simulated runtime, to prove the checkers catch the
/// failure class it stands for (SIM-CHECKLIST process item 5).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Canary {
    /// No planted bug.
    #[default]
    None,
    /// The disk reports writes durable as soon as they are issued, but they
    /// stay volatile until the real fsync (class 16, ack before fsync).
    AckBeforeFsync,
    /// A restart forgets the durable vote (class 1, vote not durable).
    ForgetVote,
    /// Client reads are served from the local state machine at once,
    /// without a read index (class 21/22: a stale read).
    StaleRead,
    /// The application reports a snapshot taken without making it durable
    /// (class 18/30: the snapshot and the log's compaction disagree).
    SnapshotNotDurable,
    /// The runtime tells every seventh client write proposed on a node that
    /// it was refused (as if `NotLeader`), though it is in the log (class
    /// 34/35: a client told "not done" for a write that takes effect).
    FalseRefusal,
    /// A leadership transfer is reported done when the target's campaign
    /// reaches a node, before the target is elected: the core's rule before
    /// 07cd4c9 (done when the target's vote request deposed the old
    /// leader), which told callers "done" for hand-offs that could fail.
    EarlyTransfer,
}

/// Everything that shapes a cluster run besides the scripted operations.
#[derive(Clone, Debug)]
pub struct ClusterConfig {
    /// Number of founding voters.
    pub nodes: usize,
    /// Extra node slots that start empty and may join later.
    pub spares: usize,
    /// Probability the application fails to take a requested snapshot.
    pub snapshot_fail: f64,
    /// The root seed.
    pub seed: u64,
    /// Initial model of every link.
    pub link: LinkModel,
    /// fsync latency range, microseconds.
    pub disk_latency_us: (u64, u64),
    /// Probability one completion covers every pending write.
    pub group_commit: f64,
    /// Delay between `Apply` and `Applied`, microseconds.
    pub apply_delay_us: (u64, u64),
    /// Largest per-node tick-rate deviation, parts per million.
    pub tick_drift_ppm: u64,
    /// Core settings.
    pub core: CoreKnobs,
    /// Keep every trace record (for replaying one seed).
    pub verbose: bool,
    /// Panic on the first violation (scripted tests) instead of recording it.
    pub panic_on_violation: bool,
    /// Count exact wire bytes of every message (costs an encode per send).
    pub count_wire_bytes: bool,
    /// A planted runtime bug (tests of the checkers only).
    pub canary: Canary,
}

impl ClusterConfig {
    /// The lab's setting: reliable network, fast disk, core defaults.
    pub fn lab(nodes: usize, seed: u64) -> Self {
        ClusterConfig {
            nodes,
            spares: 0,
            snapshot_fail: 0.0,
            seed,
            link: LinkModel::RELIABLE,
            disk_latency_us: (100, 2_000),
            group_commit: 0.5,
            apply_delay_us: (0, 500),
            tick_drift_ppm: 0,
            // The lab's Start answers at once; a forwarded request would not.
            core: CoreKnobs { forward_requests: false, ..CoreKnobs::default() },
            verbose: false,
            panic_on_violation: true,
            count_wire_bytes: true,
            canary: Canary::None,
        }
    }
}

/// An operation on the cluster: a fault, a repair or a client action. The
/// seeded driver and the scripted tests both go through [`Cluster::apply_op`].
#[derive(Clone, Copy, Debug, PartialEq)]
#[non_exhaustive]
pub enum Op {
    /// Crash a node, treating its pending writes by `mode`.
    Crash {
        /// The node.
        node: usize,
        /// What happens to its pending writes.
        mode: CrashMode,
    },
    /// Restart a crashed node from its durable state.
    Restart {
        /// The node.
        node: usize,
    },
    /// Remove every partition cut.
    Heal,
    /// Split into `mask` and the rest.
    Split {
        /// Bit i set: node i on one side.
        mask: u64,
    },
    /// Cut one node off both ways.
    Isolate {
        /// The node.
        node: usize,
    },
    /// The node can send but not receive.
    SendOnly {
        /// The node.
        node: usize,
    },
    /// The node can receive but not send.
    ReceiveOnly {
        /// The node.
        node: usize,
    },
    /// Cut each directed link with probability `per_mille / 1000`.
    RandomCuts {
        /// Probability in thousandths.
        per_mille: u32,
    },
    /// Set every link's model.
    SetLinks(LinkModel),
    /// Stop the world on a live node for `us` microseconds (a GC or VM
    /// pause): its ticks, messages, disk completions and apply reports wait
    /// and arrive, in order, when it resumes.
    Pause {
        /// The node.
        node: usize,
        /// How long, in microseconds.
        us: u64,
    },
}

/// Coverage counters: proof that faults and paths were exercised.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Events processed.
    pub events: u64,
    /// Messages sent by nodes.
    pub msgs_sent: u64,
    /// Requests sent (messages that are not answers): the lab's RPC count.
    pub requests_sent: u64,
    /// Messages delivered.
    pub msgs_delivered: u64,
    /// Messages dropped by random loss.
    pub msgs_lost: u64,
    /// Messages dropped by a cut link.
    pub msgs_cut: u64,
    /// Messages dropped because the recipient was down.
    pub msgs_to_down: u64,
    /// Messages duplicated.
    pub msgs_duplicated: u64,
    /// Messages held for a long time.
    pub msgs_long_held: u64,
    /// Bytes sent (wire bytes when counted, else an estimate).
    pub bytes_sent: u64,
    /// Persist writes emitted.
    pub persists: u64,
    /// Completions reported (`Persisted`).
    pub fsyncs: u64,
    /// Crashes.
    pub crashes: u64,
    /// Crashes that lost at least one pending write.
    pub crashes_losing_writes: u64,
    /// Crashes whose last surviving write was torn.
    pub torn_writes: u64,
    /// Restarts.
    pub restarts: u64,
    /// Partition operations.
    pub partitions: u64,
    /// Node pauses.
    pub pauses: u64,
    /// Elections won.
    pub leaders_elected: u64,
    /// Proposals submitted.
    pub proposals: u64,
    /// Proposals refused.
    pub proposals_rejected: u64,
    /// Proposals acknowledged (applied with their term on their leader).
    pub acked: u64,
    /// Accepted proposals overwritten by another term's entry.
    pub proposals_lost: u64,
    /// Entries applied (all nodes).
    pub applied: u64,
    /// Simulated microseconds.
    pub sim_us: u64,
    /// Snapshots the application took (`TakeSnapshot` answered).
    pub app_snapshots: u64,
    /// Snapshot chunks read for a leader.
    pub chunks_read: u64,
    /// State machine restores from an installed snapshot.
    pub restores: u64,
    /// Client register writes issued.
    pub client_writes: u64,
    /// Client register writes acknowledged.
    pub client_writes_ok: u64,
    /// Client reads issued.
    pub client_reads: u64,
    /// Client reads served.
    pub client_reads_ok: u64,
    /// Requests answered `NoLeader`.
    pub err_no_leader: u64,
    /// Requests answered `NotLeader`.
    pub err_not_leader: u64,
    /// Requests answered `ConfigInFlight`.
    pub err_config_in_flight: u64,
    /// Requests answered `Timeout`.
    pub err_timeout: u64,
    /// Requests answered `LeadershipLost`.
    pub err_leadership_lost: u64,
    /// Requests answered `Transferring`.
    pub err_transferring: u64,
    /// Requests answered with another error (`Busy`, `InvalidChange`, ...).
    pub err_other: u64,
    /// Membership changes accepted (`Proposed`).
    pub changes_proposed: u64,
    /// Leadership transfers requested.
    pub transfers_requested: u64,
    /// Client operations checked for linearizability (by index).
    pub lin_ops_checked: u64,
    /// Keys whose history the WGL search checked.
    pub wgl_keys_checked: u64,
    /// The core's counters summed over every node incarnation.
    pub core: Metrics,
    /// Operations the WGL search checked.
    pub wgl_ops_checked: u64,
}

impl Stats {
    /// Adds `o` into `self`.
    pub fn add(&mut self, o: &Stats) {
        macro_rules! sum { ($($f:ident),*) => { $( self.$f += o.$f; )* } }
        sum!(
            events,
            msgs_sent,
            requests_sent,
            msgs_delivered,
            msgs_lost,
            msgs_cut,
            msgs_to_down,
            msgs_duplicated,
            msgs_long_held,
            bytes_sent,
            persists,
            fsyncs,
            crashes,
            crashes_losing_writes,
            torn_writes,
            restarts,
            partitions,
            pauses,
            leaders_elected,
            proposals,
            proposals_rejected,
            acked,
            proposals_lost,
            applied,
            sim_us,
            app_snapshots,
            chunks_read,
            restores,
            client_writes,
            client_writes_ok,
            client_reads,
            client_reads_ok,
            err_no_leader,
            err_not_leader,
            err_config_in_flight,
            err_timeout,
            err_leadership_lost,
            err_transferring,
            err_other,
            changes_proposed,
            transfers_requested,
            lin_ops_checked,
            wgl_keys_checked,
            wgl_ops_checked
        );
        self.core += o.core;
    }

    /// Adds a node's core counters.
    pub fn add_metrics(&mut self, m: &Metrics) {
        self.core += *m;
    }
}

/// The state of a client operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpState {
    /// Submitted, no answer yet.
    Pending,
    /// Succeeded: the write is applied / the read served.
    Done,
    /// Definitely did not and will not take effect.
    Failed,
    /// The outcome is unknown (timeout, leadership lost, node crashed).
    Unknown,
}

/// One client operation on a register.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClientOp {
    /// The node it was submitted to.
    pub node: usize,
    /// The register.
    pub key: Key,
    /// `Some(v)` for a write of `v`, `None` for a read.
    pub write: Option<Value>,
    /// What a finished read returned.
    pub read: Option<Option<Value>>,
    /// Invocation time, microseconds.
    pub invoke: u64,
    /// Return time, if finished.
    pub ret: Option<u64>,
    /// A write's log index, or the applied index a read was served at.
    pub index: Option<LogIndex>,
    /// Where it stands.
    pub state: OpState,
}

/// How a request (of any kind) was answered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Appended at `first..=last` in `term`.
    Proposed {
        /// First index.
        first: LogIndex,
        /// Last index.
        last: LogIndex,
        /// The leader's term.
        term: Term,
    },
    /// Refused, or failed with an unknown outcome.
    Rejected(ProposeError),
    /// A read may be served: its read index and the applied index it was
    /// served at.
    ReadReady {
        /// The read index.
        index: LogIndex,
        /// The node's applied index when served.
        applied: LogIndex,
    },
    /// A transfer handed off.
    Completed,
}

#[derive(Clone, Debug)]
enum ReqKind {
    /// Commands, each maybe a client write op.
    Propose(Vec<Option<usize>>),
    /// A read, maybe a client op.
    Read(Option<usize>),
    Change,
    /// A transfer to `target`, asked of a node whose term was `since`.
    Transfer {
        target: usize,
        since: Term,
    },
}

#[derive(Clone, Debug)]
struct Req {
    node: usize,
    kind: ReqKind,
}

/// A proposed entry awaiting its apply on the node that accepted it.
#[derive(Clone, Copy, Debug)]
struct Pending {
    term: Term,
    op: Option<usize>,
}

/// The first violation of a run and when it happened.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    /// Simulated time, microseconds.
    pub time_us: u64,
    /// What broke.
    pub violation: Violation,
}

/// Where an accepted proposal landed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Proposed {
    /// First index.
    pub first: LogIndex,
    /// Last index.
    pub last: LogIndex,
    /// The leader's term.
    pub term: Term,
}

#[derive(Debug)]
enum Ev {
    Wake(usize),
    /// Boxed: messages are large and the heap moves events around.
    Deliver(Box<Message>),
    DiskDone(usize, u32),
    Applied(usize, u32, LogIndex),
    /// Canary only: a premature `Persisted`.
    EarlyAck(usize, u32, xraft::PersistId),
    /// The application's snapshot is durable (or failed): store it, answer.
    SnapTaken(usize, u32, Box<SnapshotMeta>, Option<Bytes>),
    /// An answer the runtime feeds back later (a snapshot chunk read).
    Feed(usize, u32, Box<Input>),
}

#[derive(Debug)]
struct Queued {
    time: u64,
    seq: u64,
    ev: Ev,
}

impl PartialEq for Queued {
    fn eq(&self, o: &Self) -> bool {
        (self.time, self.seq) == (o.time, o.seq)
    }
}
impl Eq for Queued {}
impl PartialOrd for Queued {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Queued {
    fn cmp(&self, o: &Self) -> Ordering {
        // BinaryHeap is a max-heap: the earliest (time, seq) is the greatest.
        (o.time, o.seq).cmp(&(self.time, self.seq))
    }
}

#[derive(Debug)]
struct Slot {
    node: Option<Node>,
    disk: Disk,
    incarnation: u32,
    tick_period_us: u64,
    next_tick_us: u64,
    wake_us: u64,
    /// Until when the node is paused (its events wait); 0 if it is not.
    paused_until: u64,
    disk_busy: bool,
    last_commit: LogIndex,
    /// Highest index the node's in-memory log may have compacted or
    /// replaced by a snapshot (entries at or below it may be missing).
    mem_snap: LogIndex,
    /// The model state machine.
    app: App,
    /// Accepted proposals awaiting apply, one per index.
    proposals: BTreeMap<LogIndex, Pending>,
}

/// The simulated cluster. See the module documentation.
#[derive(Debug)]
pub struct Cluster {
    cfg: ClusterConfig,
    now: u64,
    seq: u64,
    queue: BinaryHeap<Queued>,
    /// The latest time events held back for a paused node were put off
    /// to: they stay queued if the node crashes meanwhile (messages in
    /// its socket) and then reach the next incarnation then.
    held_until: u64,
    slots: Vec<Slot>,
    net: Network,
    oracle: Oracle,
    trace: Trace,
    rng_net: SimRng,
    rng_disk: SimRng,
    stats: Stats,
    failure: Option<Failure>,
    out_buf: Vec<Output>,
    next_request: u64,
    /// The request submitted synchronously by `propose_many`.
    sync_request: u64,
    propose_result: Option<Result<Proposed, ProposeError>>,
    voters: Vec<NodeId>,
    /// Requests not yet answered.
    requests: BTreeMap<u64, Req>,
    /// How each request was answered (scripted tests look here).
    outcomes: BTreeMap<u64, Outcome>,
    /// Client operations, by op id.
    ops: Vec<ClientOp>,
    /// Payload of each committed entry (index - 1).
    history: Vec<Bytes>,
    /// Committed configuration entries, in index order.
    configs: Vec<(LogIndex, Membership)>,
    /// Membership changes requested that may still enter a log although no
    /// node's log holds them: unanswered, or answered with an unknown
    /// outcome (a forwarded request may still reach a leader).
    uncertain_changes: BTreeMap<u64, MembershipChange>,
}

impl Cluster {
    /// A lab-style cluster of `n` nodes (reliable network, panics on a
    /// violation), started at time 0.
    pub fn new(n: usize, seed: u64) -> Self {
        Cluster::with_config(ClusterConfig::lab(n, seed))
    }

    /// A cluster built from `cfg`, every node bootstrapped and started
    /// (spare slots start empty, outside the cluster).
    pub fn with_config(cfg: ClusterConfig) -> Self {
        let n = cfg.nodes;
        let total = n + cfg.spares;
        assert!((1..=16).contains(&n) && total <= 16, "1..=16 nodes");
        let voters: Vec<NodeId> = (0..n).map(node_id).collect();
        let mut rng_ticks = SimRng::derive(cfg.seed, stream::NODE - 1);
        let slots = (0..total)
            .map(|i| {
                let drift = if cfg.tick_drift_ppm > 0 {
                    let d = rng_ticks.between(0, 2 * cfg.tick_drift_ppm) as i64
                        - cfg.tick_drift_ppm as i64;
                    (TICK_US as i64 * d / 1_000_000) as u64
                } else {
                    0
                };
                Slot {
                    node: None,
                    disk: if i < n { Disk::bootstrap(&voters) } else { Disk::empty() },
                    incarnation: 0,
                    tick_period_us: TICK_US.wrapping_add(drift),
                    next_tick_us: rng_ticks.below(TICK_US),
                    wake_us: u64::MAX,
                    paused_until: 0,
                    disk_busy: false,
                    last_commit: LogIndex::ZERO,
                    mem_snap: LogIndex::ZERO,
                    app: App::default(),
                    proposals: BTreeMap::new(),
                }
            })
            .collect();
        let mut c = Cluster {
            now: 0,
            seq: 0,
            queue: BinaryHeap::new(),
            held_until: 0,
            slots,
            net: Network::new(total, cfg.link),
            oracle: Oracle::new(total),
            trace: Trace::new(cfg.verbose),
            rng_net: SimRng::derive(cfg.seed, stream::NET),
            rng_disk: SimRng::derive(cfg.seed, stream::DISK),
            stats: Stats::default(),
            failure: None,
            out_buf: Vec::new(),
            next_request: 1,
            sync_request: 0,
            propose_result: None,
            voters,
            requests: BTreeMap::new(),
            outcomes: BTreeMap::new(),
            ops: Vec::new(),
            history: Vec::new(),
            configs: Vec::new(),
            uncertain_changes: BTreeMap::new(),
            cfg,
        };
        // The bootstrap configuration is committed by construction.
        let boot = xraft::RestartState::bootstrap(c.voters.iter().copied());
        for e in &boot.entries {
            c.oracle.bootstrap(EntryId::of(e));
            c.push_history(e);
        }
        for i in 0..total {
            c.start_node(i);
        }
        c
    }

    // ----- time -----

    /// Simulated time now, microseconds.
    pub fn now_us(&self) -> u64 {
        self.now
    }

    /// Runs every event up to and including time `t_us`, then sets the clock
    /// to `t_us`. Stops early after a violation when not panicking.
    pub fn run_until(&mut self, t_us: u64) {
        while let Some(top) = self.queue.peek() {
            if top.time > t_us || self.failure.is_some() {
                break;
            }
            let q = self.queue.pop().expect("peeked");
            self.now = q.time;
            // A paused node's events wait until it resumes, in their order.
            if let Some(until) = self.paused_until(&q.ev).filter(|&u| u > q.time) {
                // Same sequence number: held events keep their order among
                // themselves and before those due at `until` (FIFO links).
                self.queue.push(Queued { time: until, seq: q.seq, ev: q.ev });
                self.held_until = self.held_until.max(until);
                continue;
            }
            self.stats.events += 1;
            self.dispatch(q.ev);
        }
        if self.failure.is_none() {
            self.now = self.now.max(t_us);
        }
        self.stats.sim_us = self.now;
    }

    /// Runs for `ms` simulated milliseconds.
    pub fn run_for_ms(&mut self, ms: u64) {
        self.run_until(self.now + ms * 1000);
    }

    /// Runs for `k` nominal ticks.
    pub fn run_ticks(&mut self, k: u64) {
        self.run_until(self.now + k * TICK_US);
    }

    // ----- observation -----

    /// Number of node slots (founding members and spares).
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// Whether the cluster has no nodes (never: at least one is required).
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// Node `i`, if running.
    pub fn node(&self, i: usize) -> Option<&Node> {
        self.slots[i].node.as_ref()
    }

    /// Whether node `i` is running.
    pub fn is_up(&self, i: usize) -> bool {
        self.slots[i].node.is_some()
    }

    /// Node `i`'s disk.
    pub fn disk(&self, i: usize) -> &Disk {
        &self.slots[i].disk
    }

    /// Node `i`'s state machine.
    pub fn app(&self, i: usize) -> &App {
        &self.slots[i].app
    }

    /// The payloads node `i`'s state machine has applied (index - 1), by
    /// applying entries or restoring a snapshot. Every apply and restore is
    /// checked against the committed history, so this is a prefix of it.
    pub fn applied(&self, i: usize) -> &[Bytes] {
        let k = (self.slots[i].app.index.0 as usize).min(self.history.len());
        &self.history[..k]
    }

    /// The payloads of the committed history (index - 1).
    pub fn committed_payloads(&self) -> &[Bytes] {
        &self.history
    }

    /// Writes node `i` emitted that are not yet durable.
    pub fn pending_writes(&self, i: usize) -> usize {
        self.slots[i].disk.pending_len()
    }

    /// Proposals node `i` accepted that it has not yet applied.
    pub fn outstanding(&self, i: usize) -> usize {
        self.slots[i].proposals.len()
    }

    /// The live node that is leader in the highest term, if any.
    pub fn leader(&self) -> Option<usize> {
        let mut best: Option<(Term, usize)> = None;
        for (i, s) in self.slots.iter().enumerate() {
            if let Some(n) = &s.node {
                if n.role() == Role::Leader && best.is_none_or(|(t, _)| n.term() > t) {
                    best = Some((n.term(), i));
                }
            }
        }
        best.map(|(_, i)| i)
    }

    /// The membership node `i` has in force (its latest configuration).
    pub fn membership(&self, i: usize) -> Option<Membership> {
        self.node(i).map(|n| n.status().membership)
    }

    /// The committed configuration in force at `index`.
    pub fn committed_config_at(&self, index: LogIndex) -> Option<&Membership> {
        self.configs.iter().rev().find(|(i, _)| *i <= index).map(|(_, m)| m)
    }

    /// The latest committed configuration.
    pub fn committed_config(&self) -> Option<&Membership> {
        self.configs.last().map(|(_, m)| m)
    }

    /// Configurations carried by messages still in the network (a config
    /// entry in an append, a snapshot's membership): a node may adopt one
    /// on delivery though no log or disk holds it now (seed 19106061 at
    /// three nodes: a leader sent its own removal, then crashed with that
    /// write torn; the follower got it after the heal).
    pub fn configs_in_flight(&self) -> Vec<Membership> {
        let mut out = Vec::new();
        for q in self.queue.iter() {
            let Ev::Deliver(m) = &q.ev else { continue };
            match &m.body {
                xraft::MessageBody::Append { entries, .. } => {
                    for e in entries.iter().filter(|e| e.kind == xraft::EntryKind::Config) {
                        if let Ok(c) = Membership::decode(&e.data) {
                            out.push(c);
                        }
                    }
                }
                xraft::MessageBody::InstallSnapshot { meta, .. } => {
                    out.push(meta.membership.clone())
                }
                _ => {}
            }
        }
        out
    }

    /// Membership changes that no log holds yet but that may still take
    /// effect: requests not answered, or answered with an unknown outcome
    /// (`Timeout`, `LeadershipLost`, or the node crashed), whose forwarded
    /// copy may still reach a leader.
    pub fn uncertain_changes(&self) -> impl Iterator<Item = &MembershipChange> {
        self.uncertain_changes.values()
    }

    /// The first violation, if any.
    pub fn failure(&self) -> Option<&Failure> {
        self.failure.as_ref()
    }

    /// Coverage counters, including the core counters of every node
    /// incarnation so far.
    pub fn stats(&self) -> Stats {
        let mut s = self.stats;
        for slot in &self.slots {
            if let Some(n) = &slot.node {
                s.add_metrics(n.metrics());
            }
        }
        s
    }

    /// Adds to the linearizability coverage counters.
    pub fn count_checked(&mut self, by_index: u64, wgl_keys: u64, wgl_ops: u64) {
        self.stats.lin_ops_checked += by_index;
        self.stats.wgl_keys_checked += wgl_keys;
        self.stats.wgl_ops_checked += wgl_ops;
    }

    /// The trace.
    pub fn trace(&self) -> &Trace {
        &self.trace
    }

    /// The oracle.
    pub fn oracle(&self) -> &Oracle {
        &self.oracle
    }

    /// The network.
    pub fn net(&self) -> &Network {
        &self.net
    }

    /// The network, to change links directly.
    pub fn net_mut(&mut self) -> &mut Network {
        &mut self.net
    }

    /// The configuration.
    pub fn config(&self) -> &ClusterConfig {
        &self.cfg
    }

    /// Records a violation found outside the event loop (liveness checks).
    pub fn fail(&mut self, violation: Violation) {
        if self.failure.is_some() {
            return;
        }
        if self.cfg.panic_on_violation {
            panic!(
                "seed {}: violation at {} us: {violation}\ntrace tail:\n{}",
                self.cfg.seed,
                self.now,
                self.trace.tail_string(60)
            );
        }
        self.failure = Some(Failure { time_us: self.now, violation });
    }

    // ----- operations -----

    /// Applies one operation.
    pub fn apply_op(&mut self, op: Op) {
        let fault = |what| Rec::Fault { what, node: NodeId(0), detail: 0 };
        match op {
            Op::Crash { node, mode } => self.crash_with(node, mode),
            Op::Restart { node } => self.restart(node),
            Op::Heal => {
                self.net.heal();
                self.trace.push(self.now, fault("heal"));
            }
            Op::Split { mask } => {
                self.net.split(mask);
                self.stats.partitions += 1;
                self.trace
                    .push(self.now, Rec::Fault { what: "split", node: NodeId(0), detail: mask });
            }
            Op::Isolate { node } => {
                self.net.split(1 << node);
                self.stats.partitions += 1;
                self.trace
                    .push(self.now, Rec::Fault { what: "isolate", node: node_id(node), detail: 0 });
            }
            Op::SendOnly { node } => {
                self.net.send_only(node);
                self.stats.partitions += 1;
                self.trace.push(
                    self.now,
                    Rec::Fault { what: "send-only", node: node_id(node), detail: 0 },
                );
            }
            Op::ReceiveOnly { node } => {
                self.net.receive_only(node);
                self.stats.partitions += 1;
                self.trace.push(
                    self.now,
                    Rec::Fault { what: "receive-only", node: node_id(node), detail: 0 },
                );
            }
            Op::RandomCuts { per_mille } => {
                let mask = self.net.random_cuts(f64::from(per_mille) / 1000.0, &mut self.rng_net);
                self.stats.partitions += 1;
                self.trace
                    .push(self.now, Rec::Fault { what: "cuts", node: NodeId(0), detail: mask });
            }
            Op::SetLinks(model) => {
                self.net.set_all(model);
                self.trace.push(self.now, fault("links"));
            }
            Op::Pause { node, us } => {
                if self.slots.get(node).is_some_and(|s| s.node.is_some()) {
                    let until = self.now.saturating_add(us);
                    let s = &mut self.slots[node];
                    s.paused_until = s.paused_until.max(until);
                    self.stats.pauses += 1;
                    self.trace.push(
                        self.now,
                        Rec::Fault { what: "pause", node: node_id(node), detail: us },
                    );
                }
            }
        }
    }

    /// The lab's `disconnect(i)`: node `i` can neither send nor receive.
    pub fn disconnect(&mut self, i: usize) {
        self.net.set_connected(i, false);
        self.trace.push(self.now, Rec::Fault { what: "disconnect", node: node_id(i), detail: 0 });
    }

    /// The lab's `connect(i)`.
    pub fn connect(&mut self, i: usize) {
        self.net.set_connected(i, true);
        self.trace.push(self.now, Rec::Fault { what: "connect", node: node_id(i), detail: 0 });
    }

    /// Whether node `i` is connected (lab sense).
    pub fn connected(&self, i: usize) -> bool {
        self.net.connected(i)
    }

    /// The lab's `setunreliable`.
    pub fn set_unreliable(&mut self, on: bool) {
        let long = self.net.link(0, 0).long_prob > 0.0;
        let mut m = if on { LinkModel::UNRELIABLE } else { self.cfg.link };
        if long {
            m = m.with_long_reordering();
        }
        self.net.set_all(m);
    }

    /// The lab's `setlongreordering`.
    pub fn set_long_reordering(&mut self, on: bool) {
        self.net.map_all(|l| {
            if on {
                *l = l.with_long_reordering();
            } else {
                l.long_prob = 0.0;
            }
        });
    }

    /// Crashes node `i`, losing a random share of its unsynced writes.
    pub fn crash(&mut self, i: usize) {
        let mode = match self.rng_disk.below(3) {
            0 => CrashMode::LoseAll,
            1 => CrashMode::KeepPrefix,
            _ => CrashMode::Torn,
        };
        self.crash_with(i, mode);
    }

    /// Crashes node `i`; `mode` says what happens to its pending writes.
    pub fn crash_with(&mut self, i: usize, mode: CrashMode) {
        let Some(node) = self.slots[i].node.take() else { return };
        self.stats.add_metrics(node.metrics());
        let (kept, outcome) = self.slots[i].disk.crash(mode, &mut self.rng_disk);
        for w in &kept {
            self.make_durable(i, w);
        }
        self.slots[i].disk.drop_staging();
        let s = &mut self.slots[i];
        s.incarnation += 1;
        s.disk_busy = false;
        s.wake_us = u64::MAX;
        s.paused_until = 0;
        let pending = std::mem::take(&mut s.proposals);
        for p in pending.values() {
            if let Some(op) = p.op {
                self.unknown(op);
            }
        }
        // Every request the node had not answered has an unknown outcome.
        let lost: Vec<u64> =
            self.requests.iter().filter(|(_, r)| r.node == i).map(|(&id, _)| id).collect();
        for id in lost {
            let r = self.requests.remove(&id).expect("listed");
            self.forget_request(r);
        }
        self.stats.crashes += 1;
        if outcome.kept < outcome.pending {
            self.stats.crashes_losing_writes += 1;
        }
        if outcome.torn {
            self.stats.torn_writes += 1;
        }
        self.trace.push(
            self.now,
            Rec::Crash {
                node: node_id(i),
                pending: outcome.pending as u64,
                kept: outcome.kept as u64,
                torn: outcome.torn,
            },
        );
    }

    /// Restarts crashed node `i` from its durable state.
    pub fn restart(&mut self, i: usize) {
        if self.slots[i].node.is_some() {
            return;
        }
        self.stats.restarts += 1;
        let s = &self.slots[i];
        self.trace.push(
            self.now,
            Rec::Restart {
                node: node_id(i),
                term: s.disk.hard_state().term,
                last: s.disk.last_index(),
            },
        );
        self.start_node(i);
    }

    /// Submits one command to node `i` (the lab's `Start`).
    pub fn propose(&mut self, i: usize, data: Bytes) -> Result<Proposed, Option<ProposeError>> {
        let mut cmds = Commands::new();
        cmds.push(data);
        self.propose_many(i, cmds)
    }

    /// Submits commands to node `i` and returns the answer given at once
    /// (`Err(Some(NoLeader))` stands for "no answer yet": forwarded).
    /// `Err(None)` if the node is down.
    pub fn propose_many(
        &mut self,
        i: usize,
        commands: Commands,
    ) -> Result<Proposed, Option<ProposeError>> {
        let ops = vec![None; commands.len()];
        self.submit_propose(i, commands, ops).map_err(|e| e.map(|(_, e)| e))
    }

    fn submit_propose(
        &mut self,
        i: usize,
        commands: Commands,
        ops: Vec<Option<usize>>,
    ) -> Result<Proposed, Option<(u64, ProposeError)>> {
        if self.slots[i].node.is_none() {
            return Err(None);
        }
        let request = self.new_request(i, ReqKind::Propose(ops));
        self.stats.proposals += 1;
        self.propose_result = None;
        self.sync_request = request;
        self.submit(i, Input::Propose { request: RequestId(request), commands });
        self.sync_request = 0;
        let r = self.propose_result.take().unwrap_or(Err(ProposeError::NoLeader));
        let index = r.as_ref().map_or(LogIndex::ZERO, |p| p.last);
        self.trace.push(self.now, Rec::Propose { node: node_id(i), request, index });
        r.map_err(|e| Some((request, e)))
    }

    fn new_request(&mut self, node: usize, kind: ReqKind) -> u64 {
        let request = self.next_request;
        self.next_request += 1;
        self.requests.insert(request, Req { node, kind });
        request
    }

    /// A client writes `value` to `key` through node `i`; returns the op id.
    pub fn client_write(&mut self, i: usize, writes: &[(Key, Value)]) -> Vec<usize> {
        let mut ids = Vec::with_capacity(writes.len());
        let mut cmds = Commands::new();
        for &(key, value) in writes {
            ids.push(self.new_op(i, key, Some(value)));
            cmds.push(encode_write(key, value));
        }
        self.stats.client_writes += writes.len() as u64;
        if self.slots[i].node.is_none() {
            ids.iter().for_each(|&op| self.ops[op].state = OpState::Failed);
            return ids;
        }
        let _ = self.submit_propose(i, cmds, ids.iter().map(|&o| Some(o)).collect());
        ids
    }

    /// A client reads `key` through node `i` (ReadIndex); returns the op id.
    pub fn client_read(&mut self, i: usize, key: Key) -> usize {
        let op = self.new_op(i, key, None);
        self.stats.client_reads += 1;
        if self.slots[i].node.is_none() {
            self.ops[op].state = OpState::Failed;
            return op;
        }
        if self.cfg.canary == Canary::StaleRead {
            let app = &self.slots[i].app;
            let o = &mut self.ops[op];
            o.read = Some(app.kv.get(&key).copied());
            o.ret = Some(self.now);
            o.index = Some(app.index);
            o.state = OpState::Done;
            return op;
        }
        let request = self.new_request(i, ReqKind::Read(Some(op)));
        self.submit(i, Input::ReadIndex { request: RequestId(request) });
        op
    }

    fn new_op(&mut self, node: usize, key: Key, write: Option<Value>) -> usize {
        self.ops.push(ClientOp {
            node,
            key,
            write,
            read: None,
            invoke: self.now,
            ret: None,
            index: None,
            state: OpState::Pending,
        });
        self.ops.len() - 1
    }

    /// Asks node `i` for a read index (no client op); returns the request.
    pub fn read_index(&mut self, i: usize) -> Option<u64> {
        self.slots[i].node.as_ref()?;
        let request = self.new_request(i, ReqKind::Read(None));
        self.submit(i, Input::ReadIndex { request: RequestId(request) });
        Some(request)
    }

    /// Asks node `i` for a membership change; returns the request.
    pub fn change_membership(&mut self, i: usize, change: MembershipChange) -> Option<u64> {
        self.slots[i].node.as_ref()?;
        let request = self.new_request(i, ReqKind::Change);
        self.uncertain_changes.insert(request, change.clone());
        self.trace.push(
            self.now,
            Rec::Fault {
                what: change_name(&change),
                node: node_id(i),
                detail: change_target(&change).0,
            },
        );
        self.submit(i, Input::ChangeMembership { request: RequestId(request), change });
        Some(request)
    }

    /// Asks node `i` to hand leadership to node `target` (a position).
    pub fn transfer_leadership(&mut self, i: usize, target: usize) -> Option<u64> {
        let since = self.slots[i].node.as_ref()?.term();
        let request = self.new_request(i, ReqKind::Transfer { target, since });
        self.stats.transfers_requested += 1;
        self.trace.push(
            self.now,
            Rec::Fault { what: "transfer", node: node_id(i), detail: target as u64 + 1 },
        );
        let input =
            Input::TransferLeadership { request: RequestId(request), target: node_id(target) };
        self.submit(i, input);
        Some(request)
    }

    /// How request `request` was answered, if it was.
    pub fn outcome(&self, request: u64) -> Option<&Outcome> {
        self.outcomes.get(&request)
    }

    /// Every client operation so far.
    pub fn ops(&self) -> &[ClientOp] {
        &self.ops
    }

    /// The client history for the linearizability checkers: finished ops
    /// with their point; writes of unknown outcome without a return; reads
    /// of unknown outcome and definitely failed ops left out.
    pub fn history(&self) -> Vec<HistOp> {
        self.ops
            .iter()
            .filter_map(|o| {
                let done = o.state == OpState::Done;
                let (ret, index) = if done { (o.ret, o.index) } else { (None, None) };
                let kind = match (o.write, o.state) {
                    (_, OpState::Failed) => return None,
                    (Some(v), _) => OpKind::Write(v),
                    (None, OpState::Done) => OpKind::Read(Some(o.read.expect("served read"))),
                    (None, _) => return None,
                };
                Some(HistOp { key: o.key, kind, invoke: o.invoke, ret, index })
            })
            .collect()
    }

    /// Every committed register write: index -> (key, value).
    pub fn committed_writes(&self) -> BTreeMap<LogIndex, (Key, Value)> {
        self.history
            .iter()
            .enumerate()
            .filter_map(|(k, d)| decode_write(d).map(|kv| (LogIndex(k as u64 + 1), kv)))
            .collect()
    }

    // ----- the event loop -----

    fn push(&mut self, time: u64, ev: Ev) {
        self.seq += 1;
        self.queue.push(Queued { time, seq: self.seq, ev });
    }

    fn node_config(&self, i: usize) -> Config {
        let mut c = Config::new(node_id(i));
        let inc = u64::from(self.slots[i].incarnation);
        c.seed = derive_seed(self.cfg.seed, stream::NODE + (i as u64) * 1_000_000 + inc);
        let k = &self.cfg.core;
        c.pre_vote = k.pre_vote;
        c.check_quorum = k.check_quorum;
        c.inflight_appends_max = k.inflight_appends_max;
        c.append_entries_max = k.append_entries_max;
        c.forward_requests = k.forward_requests;
        c.snapshot_threshold_entries = k.snapshot_threshold_entries;
        c.snapshot_min_retention_entries = k.snapshot_min_retention_entries;
        c.snapshot_chunk_bytes = k.snapshot_chunk_bytes;
        c.snapshot_chunk_timeout_ticks = k.snapshot_chunk_timeout_ticks;
        c.propose_timeout_ticks = k.propose_timeout_ticks;
        c.promote_lag_entries_max = k.promote_lag_entries_max;
        c.append_bytes_max = k.append_bytes_max;
        c.inflight_bytes_max = k.inflight_bytes_max;
        c.propose_entries_max = k.propose_entries_max;
        c.uncommitted_entries_max = k.uncommitted_entries_max;
        c.uncommitted_bytes_max = k.uncommitted_bytes_max;
        c.apply_entries_max = k.apply_entries_max;
        c.reads_pending_max = k.reads_pending_max;
        c.forward_pending_max = k.forward_pending_max;
        c
    }

    fn start_node(&mut self, i: usize) {
        let cfg = self.node_config(i);
        self.slots[i].disk.recover();
        let mut state = self.slots[i].disk.restart_state();
        if self.cfg.canary == Canary::ForgetVote {
            state.hard_state.vote = None;
        }
        // The state machine restarts from the durable snapshot, if any.
        let app = match self.slots[i].disk.snapshot() {
            None => App::default(),
            Some((meta, bytes)) => match App::decode(bytes) {
                Ok(app) if app.index == meta.index => app,
                Ok(app) => {
                    let what = format!("snapshot bytes stand for {:?}", app.index);
                    return self.fail(Violation::SnapshotMismatch {
                        node: node_id(i),
                        index: meta.index,
                        what,
                    });
                }
                Err(what) => {
                    return self.fail(Violation::SnapshotMismatch {
                        node: node_id(i),
                        index: meta.index,
                        what: what.into(),
                    })
                }
            },
        };
        if let Err(v) = self.oracle.restarted(i, app.index, app.chain) {
            self.fail(v);
        }
        match Node::new(cfg, state) {
            Ok(node) => {
                let now = self.now;
                let snap = self.slots[i].disk.snapshot_index();
                let commit = node.commit_index();
                let s = &mut self.slots[i];
                s.node = Some(node);
                s.app = app;
                s.mem_snap = snap;
                s.last_commit = snap;
                s.wake_us = u64::MAX;
                if now > 0 {
                    s.next_tick_us = now + s.tick_period_us;
                }
                // The durable commit hint must agree with the history.
                if commit > snap {
                    self.observe_commit(i, false);
                } else {
                    self.slots[i].last_commit = commit;
                }
                self.reschedule(i);
            }
            Err(e) => {
                self.fail(Violation::RestartFailed { node: node_id(i), error: e.to_string() })
            }
        }
    }

    /// When the last pause in progress ends, and the events pauses held
    /// back have been delivered (now if none is).
    pub fn pauses_end(&self) -> u64 {
        let paused = self.slots.iter().map(|s| s.paused_until).max().unwrap_or(0);
        // Events a pause held back are delivered at its end even if the
        // node crashed and restarted meanwhile (seed 21084907: a stale
        // TimeoutNow held so reached the restarted node after the heal).
        paused.max(self.held_until).max(self.now)
    }

    /// When the node `ev` concerns resumes, if it is paused.
    fn paused_until(&self, ev: &Ev) -> Option<u64> {
        let i = match ev {
            Ev::Wake(i)
            | Ev::DiskDone(i, _)
            | Ev::Applied(i, ..)
            | Ev::EarlyAck(i, ..)
            | Ev::SnapTaken(i, ..)
            | Ev::Feed(i, ..) => *i,
            Ev::Deliver(m) => usize::try_from(m.to.0.wrapping_sub(1)).ok()?,
        };
        self.slots.get(i).map(|s| s.paused_until).filter(|&u| u > 0)
    }

    fn dispatch(&mut self, ev: Ev) {
        match ev {
            Ev::Wake(i) => {
                let s = &self.slots[i];
                // `<=`: a wake a pause held back arrives late. (A stale wake,
                // superseded by a later one, still finds `wake_us` ahead.)
                if s.node.is_some() && s.wake_us <= self.now {
                    self.catch_up(i);
                    self.reschedule(i);
                }
            }
            Ev::Deliver(msg) => self.deliver(*msg),
            Ev::DiskDone(i, inc) => {
                if self.slots[i].incarnation == inc && self.slots[i].node.is_some() {
                    self.disk_done(i);
                }
            }
            Ev::EarlyAck(i, inc, through) => {
                if self.slots[i].incarnation == inc && self.slots[i].node.is_some() {
                    self.step_node(i, Input::Persisted { through });
                }
            }
            Ev::Applied(i, inc, index) => {
                if self.slots[i].incarnation == inc && self.slots[i].node.is_some() {
                    self.step_node(i, Input::Applied { index });
                }
            }
            Ev::SnapTaken(i, inc, meta, bytes) => {
                if self.slots[i].incarnation == inc && self.slots[i].node.is_some() {
                    let index = meta.index;
                    let ok = bytes.is_some();
                    if let Some(bytes) = bytes {
                        self.stats.app_snapshots += 1;
                        if self.cfg.canary != Canary::SnapshotNotDurable {
                            self.slots[i].disk.snapshot_taken(*meta, bytes);
                        }
                        self.trace.push(
                            self.now,
                            Rec::Fault { what: "snap-taken", node: node_id(i), detail: index.0 },
                        );
                    }
                    self.step_node(i, Input::SnapshotTaken { index, ok });
                }
            }
            Ev::Feed(i, inc, input) => {
                if self.slots[i].incarnation == inc && self.slots[i].node.is_some() {
                    self.step_node(i, *input);
                }
            }
        }
    }

    fn deliver(&mut self, msg: Message) {
        let (from, to) = ((msg.from.0 - 1) as usize, (msg.to.0 - 1) as usize);
        let kind = msg.body.name();
        let why = if !self.net.up(from, to) {
            self.stats.msgs_cut += 1;
            DropWhy::Cut
        } else if self.slots[to].node.is_none() {
            self.stats.msgs_to_down += 1;
            DropWhy::Down
        } else {
            self.stats.msgs_delivered += 1;
            if self.cfg.canary == Canary::EarlyTransfer
                && matches!(
                    msg.body,
                    MessageBody::RequestVote { transfer: true, pre_vote: false, .. }
                )
            {
                self.early_transfer(msg.from);
            }
            let (a, b) = detail(&msg.body);
            self.trace.push(
                self.now,
                Rec::Deliver { from: msg.from, to: msg.to, term: msg.term, kind, a, b },
            );
            self.step_node(to, Input::Message(msg));
            return;
        };
        self.trace.push(self.now, Rec::Drop { from: msg.from, to: msg.to, kind, why });
    }

    fn disk_done(&mut self, i: usize) {
        self.slots[i].disk_busy = false;
        let pending = self.slots[i].disk.pending_len() as u64;
        if pending == 0 {
            return;
        }
        let k = if self.rng_disk.chance(self.cfg.group_commit) {
            pending
        } else {
            self.rng_disk.between(1, pending)
        };
        let mut through = None;
        for _ in 0..k {
            let w = self.slots[i].disk.pop_pending().expect("k <= pending");
            self.make_durable(i, &w);
            through = Some(w.id);
        }
        let through = through.expect("k >= 1");
        self.stats.fsyncs += 1;
        self.trace.push(self.now, Rec::Durable { node: node_id(i), through });
        self.schedule_disk(i);
        self.step_node(i, Input::Persisted { through });
    }

    fn schedule_disk(&mut self, i: usize) {
        let s = &self.slots[i];
        if s.disk_busy || s.disk.pending_len() == 0 {
            return;
        }
        let (lo, hi) = self.cfg.disk_latency_us;
        let t = self.now + self.rng_disk.between(lo, hi);
        let inc = s.incarnation;
        self.slots[i].disk_busy = true;
        self.push(t, Ev::DiskDone(i, inc));
    }

    /// Writes `w` to node `i`'s durable state, checking it.
    fn make_durable(&mut self, i: usize, w: &PersistWrite) {
        if let Some(hs) = w.hard_state {
            if let Err(v) = self.oracle.durable_hard_state(i, hs) {
                self.fail(v);
            }
        }
        for e in &w.entries {
            if let Err(v) = self.oracle.saw_entry(i, e.index, EntryId::of(e)) {
                self.fail(v);
            }
        }
        if let Some(SnapshotWrite::Taken { compact_through, .. }) = &w.snapshot {
            let s = &mut self.slots[i];
            s.mem_snap = s.mem_snap.max(*compact_through);
        }
        match self.slots[i].disk.apply_write(w) {
            Ok(Some(meta)) => {
                self.trace.push(
                    self.now,
                    Rec::Fault { what: "snap-installed", node: node_id(i), detail: meta.index.0 },
                );
            }
            Ok(None) => {}
            Err(WriteError::Gap { first, last }) => {
                self.fail(Violation::PersistGap { node: node_id(i), first, last })
            }
            Err(e) => self.fail(Violation::Contract { node: node_id(i), what: format!("{e:?}") }),
        }
    }

    /// Feeds the ticks due by now, then `input`, to node `i`.
    /// A client request reaching node `i`: stepped now, or, while the node
    /// is paused, when it resumes (the request waits in its socket).
    fn submit(&mut self, i: usize, input: Input) {
        let s = &self.slots[i];
        if s.paused_until > self.now {
            let (until, inc) = (s.paused_until, s.incarnation);
            self.push(until, Ev::Feed(i, inc, Box::new(input)));
        } else {
            self.step_node(i, input);
        }
    }

    fn step_node(&mut self, i: usize, input: Input) {
        self.catch_up(i);
        self.feed(i, input, false);
        self.reschedule(i);
    }

    fn catch_up(&mut self, i: usize) {
        loop {
            let s = &mut self.slots[i];
            if s.node.is_none() || s.next_tick_us > self.now {
                return;
            }
            let early = s.next_tick_us < s.wake_us;
            s.next_tick_us += s.tick_period_us;
            self.feed(i, Input::Tick, early);
        }
    }

    fn reschedule(&mut self, i: usize) {
        let s = &mut self.slots[i];
        let Some(node) = &s.node else { return };
        let k = u64::from(node.ticks_until_timer().max(1));
        let wake = s.next_tick_us + (k - 1) * s.tick_period_us;
        if wake != s.wake_us {
            s.wake_us = wake;
            self.push(wake, Ev::Wake(i));
        }
    }

    fn feed(&mut self, i: usize, input: Input, early_tick: bool) {
        let Some(node) = self.slots[i].node.as_mut() else { return };
        let was_leader = node.role() == Role::Leader;
        let mut out = std::mem::take(&mut self.out_buf);
        out.clear();
        node.step_into(input, &mut out);
        if node.metrics().messages_invalid > 0 {
            self.fail(Violation::InvalidMessage { node: node_id(i) });
        }
        if early_tick
            && out.iter().any(|o| matches!(o, Output::Send(_) | Output::RoleChanged { .. }))
        {
            self.fail(Violation::TimerContract { node: node_id(i) });
        }
        // A snapshot install replaces the in-memory log when its last chunk
        // is written: entries up to it may be gone from now on.
        for o in &out {
            if let Output::Persist(PersistWrite {
                snapshot: Some(SnapshotWrite::Chunk { meta, done: true, .. }),
                ..
            }) = o
            {
                let s = &mut self.slots[i];
                s.mem_snap = s.mem_snap.max(meta.index);
            }
        }
        self.observe_commit(i, was_leader);
        for o in out.drain(..) {
            self.handle_output(i, o);
        }
        self.out_buf = out;
    }

    fn observe_commit(&mut self, i: usize, was_leader: bool) {
        let Cluster { slots, oracle, .. } = self;
        let s = &slots[i];
        let Some(node) = &s.node else { return };
        let c = node.commit_index();
        if c == s.last_commit {
            return;
        }
        let from =
            if c > s.last_commit { s.last_commit.max(s.mem_snap.min(c)) } else { s.last_commit };
        let log = |ix: LogIndex| node.entry(ix).map(EntryId::of);
        let durable = |v: usize, ix: LogIndex, t: Term| slots[v].disk.holds(ix, t);
        let voters: Option<Vec<usize>> = (was_leader || node.role() == Role::Leader).then(|| {
            node.status().membership.voters.iter().map(|id| (id.0 - 1) as usize).collect()
        });
        let term = node.term();
        let r = oracle.commit_advanced(i, from, c, &log, &durable, voters.as_deref(), term);
        self.slots[i].last_commit = c;
        if r.is_ok() {
            self.sync_history_from(i);
        }
        if c > from {
            self.trace.push(self.now, Rec::Commit { node: node_id(i), index: c });
        }
        if let Err(v) = r {
            self.fail(v);
        }
    }

    /// Copies committed entries the oracle just learned from node `i`'s log.
    fn sync_history_from(&mut self, i: usize) {
        let max = self.oracle.commit_max().0 as usize;
        while self.history.len() < max {
            let ix = LogIndex(self.history.len() as u64 + 1);
            let Some(e) = self.slots[i].node.as_ref().and_then(|n| n.entry(ix)).cloned() else {
                return;
            };
            self.push_history(&e);
        }
    }

    fn push_history(&mut self, e: &Entry) {
        debug_assert_eq!(e.index.0 as usize, self.history.len() + 1);
        if e.kind == EntryKind::Config {
            if let Ok(m) = Membership::decode(&e.data) {
                self.configs.push((e.index, m));
            }
        }
        self.history.push(e.data.clone());
    }

    /// Checks, as `msg` leaves node `i`, that what it promises is durable
    /// on `i`'s disk (the model's, which a crash keeps): its term, a vote
    /// it grants or asks for, the entries it acknowledges. Returns what is
    /// wrong. PreVote messages promise nothing and carry a prospective term.
    fn promise_not_durable(&self, i: usize, msg: &Message) -> Option<String> {
        let disk = &self.slots[i].disk;
        let hs = disk.hard_state();
        let prospective = matches!(
            msg.body,
            MessageBody::RequestVote { pre_vote: true, .. }
                | MessageBody::RequestVoteResp { pre_vote: true, .. }
        );
        if !prospective && msg.term > hs.term {
            return Some(format!(
                "{} in term {:?}, durable term {:?}",
                msg.body.name(),
                msg.term,
                hs.term
            ));
        }
        // A later durable term also keeps the promise: no node acts in a
        // term again once its durable term passed it (a held vote may leave
        // after a later term's write completed in the same group).
        let voted =
            |who: NodeId| hs.term > msg.term || (hs.term == msg.term && hs.vote == Some(who));
        let vote_ok = voted(msg.to);
        match msg.body {
            MessageBody::RequestVoteResp { pre_vote: false, granted: true } if !vote_ok => {
                Some(format!("vote for {:?} in {:?}, durable {hs:?}", msg.to, msg.term))
            }
            MessageBody::RequestVote { pre_vote: false, .. } if !voted(msg.from) => {
                Some(format!("vote request in {:?}, durable {hs:?}", msg.term))
            }
            MessageBody::AppendResp { success: true, index, .. }
            | MessageBody::HeartbeatResp { index, .. }
                if index > disk.last_index() =>
            {
                Some(format!(
                    "{} acknowledging {index:?}, durable last index {:?}",
                    msg.body.name(),
                    disk.last_index()
                ))
            }
            // An ack in term T claims entries of the T leader's log, whose
            // terms are at most T; terms never fall along a log, so the
            // durable entry at `index` tells (a truncation that kept the
            // length, by a later term's leader, shows here).
            MessageBody::AppendResp { success: true, index, .. }
            | MessageBody::HeartbeatResp { index, .. } => {
                let at = disk.term_at(index).or_else(|| {
                    disk.snapshot().filter(|(m, _)| m.index == index).map(|(m, _)| m.term)
                });
                at.filter(|&t| t > msg.term).map(|t| {
                    format!(
                        "{} in {:?} acknowledging {index:?}, durable entry there of {t:?}",
                        msg.body.name(),
                        msg.term
                    )
                })
            }
            _ => None,
        }
    }

    fn handle_output(&mut self, i: usize, o: Output) {
        match o {
            Output::Send(msg) => self.send(i, msg),
            Output::Persist(w) => {
                self.stats.persists += 1;
                self.trace.push(
                    self.now,
                    Rec::Persist {
                        node: node_id(i),
                        id: w.id,
                        first: w.entries.first().map_or(LogIndex::ZERO, |e| e.index),
                        n: w.entries.len() as u64,
                        hs_term: w.hard_state.map(|h| h.term),
                    },
                );
                let id = w.id;
                self.slots[i].disk.push(w);
                self.schedule_disk(i);
                if self.cfg.canary == Canary::AckBeforeFsync {
                    let inc = self.slots[i].incarnation;
                    self.push(self.now, Ev::EarlyAck(i, inc, id));
                }
            }
            Output::Apply { entries } => self.apply_entries(i, &entries),
            Output::Proposed { request, term, first, last } => {
                let p = Proposed { first, last, term };
                if request.0 == self.sync_request {
                    self.propose_result = Some(Ok(p));
                }
                let Some(req) = self.answered(i, request, Outcome::Proposed { first, last, term })
                else {
                    return;
                };
                match req.kind {
                    ReqKind::Propose(ops) => {
                        let n = last.0 + 1 - first.0;
                        if n != ops.len() as u64 {
                            let what = format!("{n} entries proposed for {} commands", ops.len());
                            return self.fail(Violation::Contract { node: node_id(i), what });
                        }
                        for (k, op) in ops.into_iter().enumerate() {
                            let ix = LogIndex(first.0 + k as u64);
                            if self.cfg.canary == Canary::FalseRefusal && ix.0.is_multiple_of(7) {
                                if let Some(op) = op {
                                    self.ops[op].state = OpState::Failed;
                                }
                                continue;
                            }
                            self.slots[i].proposals.insert(ix, Pending { term, op });
                        }
                    }
                    ReqKind::Change => {
                        // In a log now: the nodes' configurations show it.
                        self.uncertain_changes.remove(&request.0);
                        self.stats.changes_proposed += 1;
                    }
                    _ => {
                        let what = format!("request {request:?} answered with Proposed");
                        self.fail(Violation::Contract { node: node_id(i), what });
                    }
                }
            }
            Output::Rejected { request, error } => {
                if request.0 == self.sync_request {
                    self.propose_result = Some(Err(error.clone()));
                }
                self.stats.proposals_rejected += 1;
                match error {
                    ProposeError::NoLeader => self.stats.err_no_leader += 1,
                    ProposeError::NotLeader { .. } => self.stats.err_not_leader += 1,
                    ProposeError::ConfigInFlight => self.stats.err_config_in_flight += 1,
                    ProposeError::Timeout => self.stats.err_timeout += 1,
                    ProposeError::LeadershipLost => self.stats.err_leadership_lost += 1,
                    ProposeError::Transferring { .. } => self.stats.err_transferring += 1,
                    _ => self.stats.err_other += 1,
                }
                let unknown = matches!(error, ProposeError::Timeout | ProposeError::LeadershipLost);
                let Some(req) = self.answered(i, request, Outcome::Rejected(error)) else {
                    return;
                };
                if !unknown {
                    // Refused for good: it will never enter a log.
                    self.uncertain_changes.remove(&request.0);
                }
                let ops: Vec<usize> = match req.kind {
                    ReqKind::Propose(ops) => ops.into_iter().flatten().collect(),
                    ReqKind::Read(op) => op.into_iter().collect(),
                    _ => Vec::new(),
                };
                for op in ops {
                    if unknown {
                        self.unknown(op);
                    } else {
                        self.ops[op].state = OpState::Failed;
                    }
                }
            }
            Output::ReadReady { request, index } => {
                let applied = self.slots[i].app.index;
                if applied < index {
                    let what = format!("read released at {index:?} with {applied:?} applied");
                    return self.fail(Violation::Contract { node: node_id(i), what });
                }
                let Some(req) = self.answered(i, request, Outcome::ReadReady { index, applied })
                else {
                    return;
                };
                match req.kind {
                    ReqKind::Read(Some(op)) => {
                        let key = self.ops[op].key;
                        let o = &mut self.ops[op];
                        o.read = Some(self.slots[i].app.kv.get(&key).copied());
                        o.ret = Some(self.now);
                        o.index = Some(applied);
                        o.state = OpState::Done;
                        self.stats.client_reads_ok += 1;
                    }
                    ReqKind::Read(None) => {}
                    _ => {
                        let what = format!("request {request:?} answered with ReadReady");
                        self.fail(Violation::Contract { node: node_id(i), what });
                    }
                }
            }
            Output::Completed { request } => {
                if let Some(req) = self.answered(i, request, Outcome::Completed) {
                    if let ReqKind::Transfer { target, since } = req.kind {
                        self.transfer_completed(i, target, since);
                    } else {
                        let what = format!("request {request:?} answered with Completed");
                        self.fail(Violation::Contract { node: node_id(i), what });
                    }
                }
            }
            Output::RoleChanged { role, term, leader } => {
                self.trace.push(
                    self.now,
                    Rec::Role { node: node_id(i), role: role_name(role), term, leader },
                );
                if role == Role::Leader {
                    self.stats.leaders_elected += 1;
                    let Cluster { slots, oracle, .. } = self;
                    let Some(node) = &slots[i].node else { return };
                    let log = |ix: LogIndex| node.entry(ix).map(EntryId::of);
                    if let Err(v) = oracle.leader_elected(i, term, &log, slots[i].mem_snap) {
                        self.fail(v);
                    }
                }
            }
            Output::TakeSnapshot { meta } => self.take_snapshot(i, meta),
            Output::ReadSnapshotChunk { to, index, offset, max_bytes } => {
                self.read_chunk(i, to, index, offset, max_bytes)
            }
            Output::RestoreSnapshot { meta } => self.restore_snapshot(i, meta),
            _ => {}
        }
    }

    /// Removes request `request` of node `i` from the unanswered ones and
    /// records its outcome; a second answer breaks the contract.
    fn answered(&mut self, i: usize, request: RequestId, outcome: Outcome) -> Option<Req> {
        match self.requests.remove(&request.0) {
            Some(r) if r.node == i => {
                self.outcomes.insert(request.0, outcome);
                Some(r)
            }
            _ => {
                let what = format!("answer {outcome:?} to request {request:?} not pending here");
                self.fail(Violation::Contract { node: node_id(i), what });
                None
            }
        }
    }

    /// A transfer to `target` was reported done: the target must have been
    /// elected in a term no older than the one its request was asked in.
    fn transfer_completed(&mut self, node: usize, target: usize, since: Term) {
        if !self.oracle.led_since(node_id(target), since) {
            let what = format!(
                "transfer to {:?} reported completed, but it was not elected since term {}",
                node_id(target),
                since.0
            );
            self.fail(Violation::Contract { node: node_id(node), what });
        }
    }

    /// Canary `EarlyTransfer`: reports every pending transfer to `to` done
    /// (called as `to`'s transfer campaign reaches a node).
    fn early_transfer(&mut self, to: NodeId) {
        let done: Vec<(u64, usize, usize, Term)> = self
            .requests
            .iter()
            .filter_map(|(&r, req)| match req.kind {
                ReqKind::Transfer { target, since } if node_id(target) == to => {
                    Some((r, req.node, target, since))
                }
                _ => None,
            })
            .collect();
        for (r, node, target, since) in done {
            self.requests.remove(&r);
            self.outcomes.insert(r, Outcome::Completed);
            self.transfer_completed(node, target, since);
        }
    }

    /// A request whose answer will never come (its node crashed).
    fn forget_request(&mut self, r: Req) {
        match r.kind {
            ReqKind::Propose(ops) => ops.into_iter().flatten().for_each(|op| self.unknown(op)),
            ReqKind::Read(Some(op)) => self.unknown(op),
            _ => {}
        }
    }

    fn unknown(&mut self, op: usize) {
        if self.ops[op].state == OpState::Pending {
            self.ops[op].state = OpState::Unknown;
        }
    }

    fn apply_entries(&mut self, i: usize, entries: &[Entry]) {
        let (Some(first), Some(last)) = (entries.first(), entries.last()) else { return };
        let (first, last) = (first.index, last.index);
        self.trace.push(self.now, Rec::Apply { node: node_id(i), first, last });
        for e in entries {
            self.stats.applied += 1;
            let id = EntryId::of(e);
            if let Err(v) = self.oracle.applied(i, e.index, id) {
                self.fail(v);
                return;
            }
            if self.history.len() + 1 == e.index.0 as usize {
                self.push_history(e);
            }
            let s = &mut self.slots[i];
            s.app.apply(e, id);
            let Some(p) = s.proposals.remove(&e.index) else { continue };
            if p.term == e.term {
                self.stats.acked += 1;
                self.trace
                    .push(self.now, Rec::Ack { node: node_id(i), index: e.index, term: p.term });
                if let Err(v) = self.oracle.acked(i, e.index, id) {
                    self.fail(v);
                }
                if let Some(op) = p.op {
                    let o = &mut self.ops[op];
                    o.ret = Some(self.now);
                    o.index = Some(e.index);
                    o.state = OpState::Done;
                    self.stats.client_writes_ok += 1;
                }
            } else {
                // Another term's entry took the index: this one never will.
                self.stats.proposals_lost += 1;
                if let Some(op) = p.op {
                    self.ops[op].state = OpState::Failed;
                }
            }
        }
        let (lo, hi) = self.cfg.apply_delay_us;
        let t = self.now + self.rng_disk.between(lo, hi);
        let inc = self.slots[i].incarnation;
        self.push(t, Ev::Applied(i, inc, last));
    }

    /// `TakeSnapshot`: the state machine is exactly at `meta.index` (it
    /// applies synchronously); it writes its state durably after a disk
    /// delay (lost if the node crashes first), then reports.
    fn take_snapshot(&mut self, i: usize, meta: SnapshotMeta) {
        let app = &self.slots[i].app;
        if app.index != meta.index {
            let what = format!("TakeSnapshot at {:?} with {:?} handed out", meta.index, app.index);
            return self.fail(Violation::Contract { node: node_id(i), what });
        }
        if let Err(what) = self.check_meta(&meta) {
            let v = Violation::SnapshotMismatch { node: node_id(i), index: meta.index, what };
            return self.fail(v);
        }
        let bytes = (!self.rng_disk.chance(self.cfg.snapshot_fail)).then(|| app.encode());
        let (lo, hi) = self.cfg.disk_latency_us;
        let t = self.now + self.rng_disk.between(lo, hi);
        let inc = self.slots[i].incarnation;
        self.push(t, Ev::SnapTaken(i, inc, Box::new(meta), bytes));
    }

    /// A snapshot's metadata must name the committed entry at its index and
    /// the configuration in force there.
    fn check_meta(&self, meta: &SnapshotMeta) -> Result<(), String> {
        match self.oracle.committed_at(meta.index) {
            Some(id) if id.term == meta.term => {}
            other => return Err(format!("term {:?}, committed {other:?}", meta.term)),
        }
        match self.committed_config_at(meta.index) {
            Some(m) if *m == meta.membership => Ok(()),
            other => Err(format!("membership {:?}, committed {other:?}", meta.membership)),
        }
    }

    /// `ReadSnapshotChunk`: bytes of the latest durable snapshot, answered
    /// after a short read delay.
    fn read_chunk(&mut self, i: usize, to: NodeId, index: LogIndex, offset: u64, max: usize) {
        let Some((meta, bytes)) = self.slots[i].disk.snapshot() else {
            let what = format!("ReadSnapshotChunk {index:?} without a durable snapshot");
            return self.fail(Violation::Contract { node: node_id(i), what });
        };
        let offset = if index != LogIndex::ZERO && index != meta.index { 0 } else { offset };
        let start = (offset as usize).min(bytes.len());
        let end = start.saturating_add(max).min(bytes.len());
        let input = Input::SnapshotChunk {
            to,
            meta: meta.clone(),
            offset: start as u64,
            data: bytes.slice(start..end),
            done: end == bytes.len(),
        };
        self.stats.chunks_read += 1;
        let t = self.now + self.rng_disk.between(0, self.cfg.disk_latency_us.0);
        let inc = self.slots[i].incarnation;
        self.push(t, Ev::Feed(i, inc, Box::new(input)));
    }

    /// `RestoreSnapshot`: the state machine takes the durable snapshot's
    /// state, which must be the committed history's state at its index.
    fn restore_snapshot(&mut self, i: usize, meta: SnapshotMeta) {
        let node = node_id(i);
        let index = meta.index;
        let mismatch = |what: String| Violation::SnapshotMismatch { node, index, what };
        let app = match self.slots[i].disk.snapshot() {
            Some((m, bytes)) if *m == meta => App::decode(bytes),
            other => {
                let what =
                    format!("RestoreSnapshot {meta:?}, durable {:?}", other.map(|(m, _)| m.index));
                return self.fail(Violation::Contract { node, what });
            }
        };
        let app = match app {
            Ok(a) if a.index == index => a,
            Ok(a) => return self.fail(mismatch(format!("bytes stand for {:?}", a.index))),
            Err(what) => return self.fail(mismatch(what.into())),
        };
        if let Err(what) = self.check_meta(&meta) {
            return self.fail(mismatch(what));
        }
        if let Err(v) = self.oracle.restored(i, index, app.chain) {
            return self.fail(v);
        }
        self.stats.restores += 1;
        self.trace.push(self.now, Rec::Fault { what: "restore", node, detail: index.0 });
        let s = &mut self.slots[i];
        s.app = app;
        // Proposals the snapshot covers: their fate is not visible here.
        let covered: Vec<LogIndex> = s.proposals.range(..=index).map(|(&ix, _)| ix).collect();
        for ix in covered {
            if let Some(op) = self.slots[i].proposals.remove(&ix).and_then(|p| p.op) {
                self.unknown(op);
            }
        }
        let (lo, hi) = self.cfg.apply_delay_us;
        let t = self.now + self.rng_disk.between(lo, hi);
        let inc = self.slots[i].incarnation;
        self.push(t, Ev::Applied(i, inc, index));
    }

    fn send(&mut self, i: usize, msg: Message) {
        if let Some(what) = self.promise_not_durable(i, &msg) {
            self.fail(Violation::PromiseNotDurable { node: node_id(i), what });
        }
        self.stats.msgs_sent += 1;
        if !msg.body.name().ends_with("Resp") {
            self.stats.requests_sent += 1;
        }
        self.stats.bytes_sent += if self.cfg.count_wire_bytes {
            xraft::wire::frame_to_vec(&msg).len() as u64
        } else {
            estimate_bytes(&msg.body)
        };
        let to = msg.to.0.wrapping_sub(1) as usize;
        if to >= self.slots.len() || msg.from != node_id(i) {
            return; // not a member: nowhere to deliver
        }
        let kind = msg.body.name();
        if !self.net.up(i, to) {
            self.stats.msgs_cut += 1;
            self.trace
                .push(self.now, Rec::Drop { from: msg.from, to: msg.to, kind, why: DropWhy::Cut });
            return;
        }
        let link = *self.net.link(i, to);
        if self.rng_net.chance(link.loss) {
            self.stats.msgs_lost += 1;
            self.trace
                .push(self.now, Rec::Drop { from: msg.from, to: msg.to, kind, why: DropWhy::Loss });
            return;
        }
        if self.rng_net.chance(link.dup) {
            self.stats.msgs_duplicated += 1;
            let (d, _) = link.delay(&mut self.rng_net);
            let t = self.net.delivery_time(i, to, self.now, d);
            self.push(t, Ev::Deliver(Box::new(msg.clone())));
        }
        let (d, long) = link.delay(&mut self.rng_net);
        if long {
            self.stats.msgs_long_held += 1;
        }
        let t = self.net.delivery_time(i, to, self.now, d);
        self.push(t, Ev::Deliver(Box::new(msg)));
    }

    /// Voters of the bootstrap configuration.
    pub fn voters(&self) -> &[NodeId] {
        &self.voters
    }
}

fn change_name(c: &MembershipChange) -> &'static str {
    match c {
        MembershipChange::AddVoter { .. } => "add-voter",
        MembershipChange::AddLearner { .. } => "add-learner",
        MembershipChange::Promote(_) => "promote",
        MembershipChange::Remove(_) => "remove",
    }
}

fn change_target(c: &MembershipChange) -> NodeId {
    match c {
        MembershipChange::AddVoter { id, .. } | MembershipChange::AddLearner { id, .. } => *id,
        MembershipChange::Promote(id) | MembershipChange::Remove(id) => *id,
    }
}

/// Two numbers that summarise a message for the trace.
fn detail(body: &MessageBody) -> (u64, u64) {
    match body {
        MessageBody::RequestVote { last_log_index, last_log_term, .. } => {
            (last_log_index.0, last_log_term.0)
        }
        MessageBody::RequestVoteResp { granted, .. } => (u64::from(*granted), 0),
        MessageBody::Append { prev_index, entries, commit, .. } => {
            (prev_index.0, entries.len() as u64 * 1_000_000 + commit.0)
        }
        MessageBody::AppendResp { success, index, .. } => (u64::from(*success), index.0),
        MessageBody::Heartbeat { commit, .. } => (commit.0, 0),
        MessageBody::HeartbeatResp { index, .. } => (index.0, 0),
        MessageBody::InstallSnapshot { meta, offset, data, done } => {
            (meta.index.0, offset * 1_000_000 + data.len() as u64 * 10 + u64::from(*done))
        }
        MessageBody::InstallSnapshotResp { index, next_offset, done } => {
            (index.0, next_offset * 10 + u64::from(*done))
        }
        _ => (0, 0),
    }
}

fn estimate_bytes(body: &MessageBody) -> u64 {
    match body {
        MessageBody::Append { entries, .. } => {
            40 + entries.iter().map(|e| e.data.len() as u64 + 24).sum::<u64>()
        }
        _ => 40,
    }
}
