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
use std::collections::{BTreeMap, BinaryHeap};

use bytes::Bytes;
use xraft::{
    Commands, Config, Input, LogIndex, Message, MessageBody, Node, NodeId, Output, PersistWrite,
    ProposeError, Role, Term,
};

use crate::check::{node_id, EntryId, Oracle, Violation};
use crate::disk::{CrashMode, Disk};
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
        }
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
}

/// Everything that shapes a cluster run besides the scripted operations.
#[derive(Clone, Debug)]
pub struct ClusterConfig {
    /// Number of founding voters.
    pub nodes: usize,
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
            leaders_elected,
            proposals,
            proposals_rejected,
            acked,
            proposals_lost,
            applied,
            sim_us
        );
    }
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
    disk_busy: bool,
    last_commit: LogIndex,
    /// The model state machine: the payload applied at each index.
    applied: Vec<Bytes>,
    /// Accepted proposals awaiting apply: last index -> (term, request).
    proposals: BTreeMap<LogIndex, (Term, u64)>,
}

/// The simulated cluster. See the module documentation.
#[derive(Debug)]
pub struct Cluster {
    cfg: ClusterConfig,
    now: u64,
    seq: u64,
    queue: BinaryHeap<Queued>,
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
    propose_result: Option<Result<Proposed, ProposeError>>,
    voters: Vec<NodeId>,
}

impl Cluster {
    /// A lab-style cluster of `n` nodes (reliable network, panics on a
    /// violation), started at time 0.
    pub fn new(n: usize, seed: u64) -> Self {
        Cluster::with_config(ClusterConfig::lab(n, seed))
    }

    /// A cluster built from `cfg`, every node bootstrapped and started.
    pub fn with_config(cfg: ClusterConfig) -> Self {
        let n = cfg.nodes;
        assert!((1..=16).contains(&n), "1..=16 nodes");
        let voters: Vec<NodeId> = (0..n).map(node_id).collect();
        let mut rng_ticks = SimRng::derive(cfg.seed, stream::NODE - 1);
        let slots = (0..n)
            .map(|_| {
                let drift = if cfg.tick_drift_ppm > 0 {
                    let d = rng_ticks.between(0, 2 * cfg.tick_drift_ppm) as i64
                        - cfg.tick_drift_ppm as i64;
                    (TICK_US as i64 * d / 1_000_000) as u64
                } else {
                    0
                };
                Slot {
                    node: None,
                    disk: Disk::bootstrap(&voters),
                    incarnation: 0,
                    tick_period_us: TICK_US.wrapping_add(drift),
                    next_tick_us: rng_ticks.below(TICK_US),
                    wake_us: u64::MAX,
                    disk_busy: false,
                    last_commit: LogIndex::ZERO,
                    applied: Vec::new(),
                    proposals: BTreeMap::new(),
                }
            })
            .collect();
        let mut c = Cluster {
            now: 0,
            seq: 0,
            queue: BinaryHeap::new(),
            slots,
            net: Network::new(n, cfg.link),
            oracle: Oracle::new(n),
            trace: Trace::new(cfg.verbose),
            rng_net: SimRng::derive(cfg.seed, stream::NET),
            rng_disk: SimRng::derive(cfg.seed, stream::DISK),
            stats: Stats::default(),
            failure: None,
            out_buf: Vec::new(),
            next_request: 1,
            propose_result: None,
            voters,
            cfg,
        };
        for i in 0..n {
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

    /// Number of nodes.
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

    /// The payloads node `i` has applied since it last started (index - 1).
    pub fn applied(&self, i: usize) -> &[Bytes] {
        &self.slots[i].applied
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

    /// The first violation, if any.
    pub fn failure(&self) -> Option<&Failure> {
        self.failure.as_ref()
    }

    /// Coverage counters.
    pub fn stats(&self) -> &Stats {
        &self.stats
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
        if self.slots[i].node.take().is_none() {
            return;
        }
        let (kept, outcome) = self.slots[i].disk.crash(mode, &mut self.rng_disk);
        for w in &kept {
            self.make_durable(i, w);
        }
        let s = &mut self.slots[i];
        s.incarnation += 1;
        s.disk_busy = false;
        s.wake_us = u64::MAX;
        s.proposals.clear();
        s.applied.clear();
        self.oracle.restarted(i);
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

    /// Submits commands to node `i`. `Err(None)` if the node is down.
    pub fn propose_many(
        &mut self,
        i: usize,
        commands: Commands,
    ) -> Result<Proposed, Option<ProposeError>> {
        if self.slots[i].node.is_none() {
            return Err(None);
        }
        let request = self.next_request;
        self.next_request += 1;
        self.stats.proposals += 1;
        self.propose_result = None;
        self.step_node(i, Input::Propose { request: xraft::RequestId(request), commands });
        let r = self.propose_result.take().unwrap_or(Err(ProposeError::NoLeader));
        let index = r.as_ref().map_or(LogIndex::ZERO, |p| p.last);
        self.trace.push(self.now, Rec::Propose { node: node_id(i), request, index });
        r.map_err(Some)
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
        c.pre_vote = self.cfg.core.pre_vote;
        c.check_quorum = self.cfg.core.check_quorum;
        c.inflight_appends_max = self.cfg.core.inflight_appends_max;
        c.append_entries_max = self.cfg.core.append_entries_max;
        c.forward_requests = self.cfg.core.forward_requests;
        c
    }

    fn start_node(&mut self, i: usize) {
        let cfg = self.node_config(i);
        let mut state = self.slots[i].disk.restart_state();
        if self.cfg.canary == Canary::ForgetVote {
            state.hard_state.vote = None;
        }
        match Node::new(cfg, state) {
            Ok(node) => {
                let now = self.now;
                let s = &mut self.slots[i];
                s.node = Some(node);
                s.last_commit = LogIndex::ZERO;
                s.wake_us = u64::MAX;
                if now > 0 {
                    s.next_tick_us = now + s.tick_period_us;
                }
                self.reschedule(i);
            }
            Err(e) => {
                self.fail(Violation::RestartFailed { node: node_id(i), error: e.to_string() })
            }
        }
    }

    fn dispatch(&mut self, ev: Ev) {
        match ev {
            Ev::Wake(i) => {
                let s = &self.slots[i];
                if s.node.is_some() && s.wake_us == self.now {
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
        // Snapshots are not modelled yet (the core's default threshold of
        // 100,000 entries is never reached by a seed); fail loudly if one
        // shows up rather than silently mis-simulating it.
        assert!(w.snapshot.is_none(), "snapshot writes are not simulated yet: {w:?}");
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
        if let Err((first, last)) = self.slots[i].disk.apply(w.hard_state, &w.entries) {
            self.fail(Violation::PersistGap { node: node_id(i), first, last });
        }
    }

    /// Feeds the ticks due by now, then `input`, to node `i`.
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
        let mut out = std::mem::take(&mut self.out_buf);
        out.clear();
        node.step_into(input, &mut out);
        if early_tick
            && out.iter().any(|o| matches!(o, Output::Send(_) | Output::RoleChanged { .. }))
        {
            self.fail(Violation::TimerContract { node: node_id(i) });
        }
        self.observe_commit(i);
        for o in out.drain(..) {
            self.handle_output(i, o);
        }
        self.out_buf = out;
    }

    fn observe_commit(&mut self, i: usize) {
        let Cluster { slots, oracle, .. } = self;
        let s = &slots[i];
        let Some(node) = &s.node else { return };
        let c = node.commit_index();
        if c == s.last_commit {
            return;
        }
        let from = s.last_commit;
        let log = |ix: LogIndex| node.entry(ix).map(EntryId::of);
        let durable = |v: usize, ix: LogIndex| slots[v].disk.term_at(ix);
        let r = oracle.commit_advanced(i, from, c, &log, &durable);
        self.slots[i].last_commit = c;
        if c > from {
            self.trace.push(self.now, Rec::Commit { node: node_id(i), index: c });
        }
        if let Err(v) = r {
            self.fail(v);
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
            Output::Apply { entries } => {
                let (Some(first), Some(last)) = (entries.first(), entries.last()) else { return };
                let (first, last) = (first.index, last.index);
                self.trace.push(self.now, Rec::Apply { node: node_id(i), first, last });
                for e in &entries {
                    self.stats.applied += 1;
                    if let Err(v) = self.oracle.applied(i, e.index, EntryId::of(e)) {
                        self.fail(v);
                        return;
                    }
                    let s = &mut self.slots[i];
                    s.applied.push(e.data.clone());
                    if let Some((term, _req)) = s.proposals.remove(&e.index) {
                        if term == e.term {
                            self.stats.acked += 1;
                            self.trace.push(
                                self.now,
                                Rec::Ack { node: node_id(i), index: e.index, term },
                            );
                            if let Err(v) = self.oracle.acked(i, e.index, EntryId::of(e)) {
                                self.fail(v);
                            }
                        } else {
                            self.stats.proposals_lost += 1;
                        }
                    }
                }
                let (lo, hi) = self.cfg.apply_delay_us;
                let t = self.now + self.rng_disk.between(lo, hi);
                let inc = self.slots[i].incarnation;
                self.push(t, Ev::Applied(i, inc, last));
            }
            Output::Proposed { request: _, term, first, last } => {
                self.slots[i].proposals.insert(last, (term, 0));
                self.propose_result = Some(Ok(Proposed { first, last, term }));
            }
            Output::Rejected { request: _, error } => {
                self.stats.proposals_rejected += 1;
                self.propose_result = Some(Err(error));
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
                    if let Err(v) = oracle.leader_elected(i, term, &log) {
                        self.fail(v);
                    }
                }
            }
            _ => {}
        }
    }

    fn send(&mut self, i: usize, msg: Message) {
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
