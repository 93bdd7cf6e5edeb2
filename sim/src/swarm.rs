//! One seeded simulation run: swarm-drawn faults, then healing and liveness.
//!
//! Owns the per-seed schedule. From the root seed it draws which faults are
//! on and how hard (swarm testing: each seed explores a different corner),
//! builds a [`Cluster`], and drives it in two phases:
//!
//! 1. **Faults** for a bounded simulated time: a client workload of
//!    register reads (ReadIndex) and writes on a few keys sent to random
//!    nodes (so forwarding is exercised), crashes (losing all, a prefix, or
//!    a torn last write of the pending writes) with later restarts,
//!    partitions of every shape, lossy, duplicating, reordering links with
//!    long holds, slow disks, tick drift, membership churn (add a voter or
//!    a learner from spare slots, promote, remove, remove the leader),
//!    leadership transfers at random moments, and tiny snapshot thresholds
//!    and chunk sizes so compaction and chunked installs happen constantly.
//! 2. **Liveness**: heal the network, restart every node but an optional
//!    permanently crashed minority, stop the faults. Within a bounded time
//!    one stable leader must emerge and a fresh write must be applied on every
//!    live node; then terms must stay put for a while (churn alarm); then the
//!    live logs must agree below their commit and every acknowledged write
//!    must be applied everywhere. "Live" means running members of the
//!    leader's configuration: removed nodes stay up, outside the cluster.
//! 3. **Linearizability**: the client history is checked by index against
//!    the committed log and by a WGL search per key.
//!
//! The safety checkers run after every event throughout.

use std::collections::{BTreeSet, BinaryHeap};

use bytes::Bytes;
use xraft::{LogIndex, Membership, MembershipChange, NodeId, Role, Term};

use crate::check::{node_id, EntryId, Violation};
use crate::cluster::{
    Canary, Cluster, ClusterConfig, CoreKnobs, Failure, Op, OpState, Proposed, TICK_US,
};
use crate::disk::CrashMode;
use crate::net::LinkModel;
use crate::sim_rng::{stream, SimRng};

/// Liveness bound after healing: 10 longest election timeouts plus catch-up.
pub const LIVENESS_BOUND_US: u64 = 10 * 30 * TICK_US + 2_000_000;
/// After healing, the cluster fails if no live node persists, commits or
/// applies anything for this long.
pub const STALL_US: u64 = 5_000_000;
/// A client gives up waiting for an answer after this long (the op's
/// outcome stays unknown) and issues its next op.
pub const CLIENT_PATIENCE_US: u64 = 4_000_000;
/// Budget of search states per key for the WGL check; exceeding it fails
/// the seed (it is never taken as a pass). Seed 9326136 (`--classic`, 3,341
/// ops on one key) needs between 2 and 5 million, in 1.8 s and 123 MB.
pub const WGL_BUDGET: u64 = 8_000_000;
/// Hard cap on the healed phase, progress or not.
pub const LIVENESS_CAP_US: u64 = 60_000_000;
/// How long terms must stay put once the healed cluster made progress.
pub const STABLE_WINDOW_US: u64 = 1_000_000;

/// Options from the command line.
#[derive(Clone, Copy, Debug, Default)]
pub struct SeedOptions {
    /// Cluster size; drawn per seed (3 or 5) when `None`.
    pub nodes: Option<usize>,
    /// Keep the full trace.
    pub verbose: bool,
    /// A planted runtime bug (checker tests only).
    pub canary: Canary,
    /// Run the seed as seeds ran before the swarm drew flow-control and
    /// queue bounds and node pauses: the core's default bounds, no pauses.
    /// The regression seeds found then replay their original scenarios.
    pub classic: bool,
}

/// The faults and rates one seed draws.
#[derive(Clone, Debug)]
pub struct Params {
    /// Founding voters.
    pub nodes: usize,
    /// Empty node slots that may join.
    pub spares: usize,
    /// Length of the fault phase.
    pub phase1_us: u64,
    /// Mean think time of each client between ops.
    pub client_mean_us: u64,
    /// Number of clients (each with at most one op or batch in flight).
    pub clients: usize,
    /// Number of register keys.
    pub keys: u64,
    /// Probability an op is a read.
    pub read_ratio: f64,
    /// Most writes per proposal.
    pub batch_max: u64,
    /// Mean time between membership changes, if on.
    pub churn_mean_us: Option<u64>,
    /// Mean time between leadership transfers, if on.
    pub transfer_mean_us: Option<u64>,
    /// Probability a proposal goes to a random node instead of the leader.
    pub misdirect: f64,
    /// Mean time between crashes, if crashes are on.
    pub crash_mean_us: Option<u64>,
    /// Mean time between node pauses (a stop-the-world pause: the node's
    /// ticks, messages and disk completions wait, then arrive at once).
    pub pause_mean_us: Option<u64>,
    /// Range of pause lengths.
    pub pause_us: (u64, u64),
    /// Range of down time before a restart.
    pub down_us: (u64, u64),
    /// Weights of lose-all, keep-prefix and torn crashes.
    pub crash_weights: [u64; 3],
    /// Mean time between partitions, if on.
    pub partition_mean_us: Option<u64>,
    /// Range of partition lengths.
    pub partition_us: (u64, u64),
    /// Base link model in the fault phase.
    pub link: LinkModel,
    /// One node whose outgoing links are ten times slower, if any.
    pub slow_node: Option<usize>,
    /// Nodes left crashed for good when healing (a minority).
    pub permanent_down: usize,
    /// The cluster's own settings.
    pub cluster: ClusterConfig,
}

impl Params {
    /// Draws the parameters of `seed`.
    pub fn draw(seed: u64, opts: &SeedOptions) -> Params {
        let mut r = SimRng::derive(seed, stream::SWARM);
        let nodes = opts.nodes.unwrap_or_else(|| r.pick(&[3, 3, 5]));
        let spares = r.pick(&[0, 1, 2, 2]).min(16 - nodes);
        let total = nodes + spares;
        let phase1_us = r.between(2_000, 10_000) * 1000;
        let client_mean_us = r.pick(&[2_000, 10_000, 50_000]);
        let clients = r.between(2, 5) as usize;
        let keys = r.between(1, 3);
        let read_ratio = r.pick(&[0.2, 0.5, 0.7]);
        let batch_max = r.pick(&[1, 1, 3]);
        let churn_mean_us = r.chance(0.8).then(|| r.between(200, 2_000) * 1000);
        let transfer_mean_us = r.chance(0.6).then(|| r.between(300, 3_000) * 1000);
        let misdirect = r.pick(&[0.0, 0.1, 0.5]);
        let crash_mean_us = r.chance(0.6).then(|| r.between(300, 3_000) * 1000);
        let down_us = (10_000, r.between(100, 2_000) * 1000);
        let crash_weights = [r.between(0, 3), r.between(0, 3), r.between(1, 3)];
        let partition_mean_us = r.chance(0.6).then(|| r.between(200, 3_000) * 1000);
        let partition_us = (50_000, r.between(200, 3_000) * 1000);
        let delay_min_us = r.between(0, 500);
        let delay_max_us = delay_min_us + r.pick(&[1_000, 5_000, 30_000]);
        let loss = if r.chance(0.5) { 0.0 } else { r.unit() * 0.2 };
        let dup = if r.chance(0.7) { 0.0 } else { r.unit() * 0.1 };
        let (long_prob, long_max_us) = if r.chance(0.7) {
            (0.0, 0)
        } else {
            (0.001 + r.unit() * 0.05, r.between(200, 3_000) * 1000)
        };
        let fifo = r.chance(0.3);
        let link = LinkModel {
            delay_min_us,
            delay_max_us,
            loss,
            dup,
            long_prob,
            long_base_us: 0,
            long_max_us,
            fifo,
        };
        let slow_node = r.chance(0.2).then(|| r.below(total as u64) as usize);
        let permanent_down =
            if r.chance(0.25) { r.between(1, (nodes as u64 - 1) / 2) as usize } else { 0 };
        let disk_latency_us = r.pick(&[(50, 500), (200, 5_000), (1_000, 30_000)]);
        let core = CoreKnobs {
            pre_vote: r.chance(0.85),
            check_quorum: r.chance(0.85),
            inflight_appends_max: r.pick(&[1, 2, 4, 64]),
            append_entries_max: r.pick(&[1, 3, 64, 5_000]),
            forward_requests: r.chance(0.7),
            snapshot_threshold_entries: 0,
            snapshot_min_retention_entries: 0,
            snapshot_chunk_bytes: r.pick(&[8, 16, 64, 256]),
            snapshot_chunk_timeout_ticks: r.pick(&[3, 10, 30]) as u32,
            propose_timeout_ticks: r.pick(&[50, 100, 300]) as u32,
            promote_lag_entries_max: r.pick(&[0, 5, 50, 1_000]),
            ..CoreKnobs::default()
        };
        // Flow control and queue bounds, small often enough to bite (an
        // append of one entry, a window of one message's bytes, Busy after a
        // few uncommitted entries, one entry per Apply, one pending read or
        // forward), the defaults otherwise.
        let mut b = SimRng::derive(seed, stream::BOUNDS);
        let with_defaults = core;
        let append_bytes_max = b.pick(&[64, 256, 4_096, 1 << 20]) as usize;
        let propose_entries_max = b.pick(&[1, 4, 5_000]) as usize;
        let core = CoreKnobs {
            append_bytes_max,
            inflight_bytes_max: append_bytes_max * b.pick(&[1, 4, 64]) as usize,
            propose_entries_max,
            uncommitted_entries_max: propose_entries_max * b.pick(&[1, 8, 1_000]) as usize,
            uncommitted_bytes_max: b.pick(&[256, 4_096, 64 << 20]) as usize,
            apply_entries_max: b.pick(&[1, 4, 5_000]) as usize,
            reads_pending_max: b.pick(&[1, 4, 10_000]) as usize,
            forward_pending_max: b.pick(&[1, 4, 10_000]) as usize,
            ..core
        };
        let core = if opts.classic { with_defaults } else { core };
        let mut pr = SimRng::derive(seed, stream::PAUSES);
        let pause_mean_us =
            (!opts.classic && pr.chance(0.5)).then(|| pr.between(300, 3_000) * 1000);
        let pause_us = (pr.between(20, 100) * 1000, pr.between(200, 2_000) * 1000);
        let threshold = r.pick(&[5, 10, 20, 50]) as usize;
        let core = CoreKnobs {
            snapshot_threshold_entries: threshold,
            snapshot_min_retention_entries: r.between(0, 10.min(threshold as u64 - 1)) as usize,
            ..core
        };
        let cluster = ClusterConfig {
            nodes,
            spares,
            snapshot_fail: r.pick(&[0.0, 0.0, 0.1]),
            seed,
            link,
            disk_latency_us,
            group_commit: r.unit(),
            apply_delay_us: (0, r.pick(&[0, 200, 5_000])),
            tick_drift_ppm: if r.chance(0.3) { r.between(0, 50_000) } else { 0 },
            core,
            verbose: opts.verbose,
            panic_on_violation: false,
            count_wire_bytes: false,
            canary: opts.canary,
        };
        Params {
            nodes,
            spares,
            phase1_us,
            client_mean_us,
            clients,
            keys,
            read_ratio,
            batch_max,
            churn_mean_us,
            transfer_mean_us,
            misdirect,
            crash_mean_us,
            pause_mean_us,
            pause_us,
            down_us,
            crash_weights,
            partition_mean_us,
            partition_us,
            link,
            slow_node,
            permanent_down,
            cluster,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Act {
    Client(usize),
    Churn,
    Transfer,
    Crash,
    Restart(usize),
    Partition,
    Heal(u64),
    Pause,
}

/// One seed's run. Build with [`SeedRun::new`], drive with [`SeedRun::run`];
/// the cluster stays readable afterwards (also after a panic in the core).
#[derive(Debug)]
pub struct SeedRun {
    /// The root seed.
    pub seed: u64,
    /// What the seed drew.
    pub params: Params,
    /// The simulated cluster.
    pub cluster: Cluster,
    rng: SimRng,
    client: SimRng,
    /// Pause draws (a stream of their own: pauses leave the other draws of
    /// a seed as they were).
    pause_rng: SimRng,
    acts: BinaryHeap<std::cmp::Reverse<(u64, u64, Act)>>,
    act_seq: u64,
    partition_gen: u64,
    payload_seq: u64,
    faults_on: bool,
    /// The last stable leader the healed phase saw.
    last_leader: Option<usize>,
    /// Leadership transfers asked for: (when, target).
    transfers: Vec<(u64, usize)>,
    /// Per client: its ops in flight and when it gives up on them.
    client_ops: Vec<(Vec<usize>, u64)>,
}

impl SeedRun {
    /// Draws the seed's parameters and builds its cluster.
    pub fn new(seed: u64, opts: &SeedOptions) -> SeedRun {
        let params = Params::draw(seed, opts);
        let mut cluster = Cluster::with_config(params.cluster.clone());
        if let Some(slow) = params.slow_node {
            for to in 0..cluster.len() {
                let mut m = params.link;
                m.delay_min_us *= 10;
                m.delay_max_us *= 10;
                cluster.net_mut().set_link(slow, to, m);
            }
        }
        SeedRun {
            seed,
            cluster,
            rng: SimRng::derive(seed, stream::FAULTS),
            client: SimRng::derive(seed, stream::CLIENT),
            pause_rng: SimRng::derive(seed, stream::PAUSES ^ 0x5a5a),
            acts: BinaryHeap::new(),
            act_seq: 0,
            partition_gen: 0,
            payload_seq: 0,
            faults_on: true,
            last_leader: None,
            transfers: Vec::new(),
            client_ops: vec![(Vec::new(), 0); params.clients],
            params,
        }
    }

    /// Runs both phases; the first violation, if any.
    pub fn run(&mut self) -> Result<(), Failure> {
        let p = self.params.clone();
        for c in 0..p.clients {
            let t = self.client.exp(p.client_mean_us);
            self.schedule(t, Act::Client(c));
        }
        if let Some(m) = p.churn_mean_us {
            let t = self.rng.exp(m);
            self.schedule(t, Act::Churn);
        }
        if let Some(m) = p.transfer_mean_us {
            let t = self.rng.exp(m);
            self.schedule(t, Act::Transfer);
        }
        if let Some(m) = p.crash_mean_us {
            let t = self.rng.exp(m);
            self.schedule(t, Act::Crash);
        }
        if let Some(m) = p.partition_mean_us {
            let t = self.rng.exp(m);
            self.schedule(t, Act::Partition);
        }
        if let Some(m) = p.pause_mean_us {
            let t = self.pause_rng.exp(m);
            self.schedule(t, Act::Pause);
        }
        self.advance_to(p.phase1_us);
        if let Some(f) = self.cluster.failure() {
            return Err(f.clone());
        }
        self.heal();
        self.liveness();
        if self.cluster.failure().is_none() {
            self.check_log_matching();
        }
        if self.cluster.failure().is_none() {
            self.check_linearizable();
        }
        match self.cluster.failure() {
            Some(f) => Err(f.clone()),
            None => Ok(()),
        }
    }

    fn schedule(&mut self, delay: u64, act: Act) {
        self.act_seq += 1;
        let t = self.cluster.now_us() + delay;
        self.acts.push(std::cmp::Reverse((t, self.act_seq, act)));
    }

    /// Runs the cluster and the fault schedule up to `t`.
    fn advance_to(&mut self, t: u64) {
        while let Some(&std::cmp::Reverse((at, _, act))) = self.acts.peek() {
            if at > t || self.cluster.failure().is_some() {
                break;
            }
            self.acts.pop();
            self.cluster.run_until(at);
            self.act(act);
        }
        self.cluster.run_until(t);
    }

    fn act(&mut self, act: Act) {
        let p = &self.params;
        let n = self.cluster.len();
        match act {
            Act::Client(c) if self.faults_on => {
                // The workload stops when healing, so the liveness probe,
                // once applied everywhere, covers every acknowledged write.
                self.client_op(c);
                let d = self.client.exp(self.params.client_mean_us);
                self.schedule(d, Act::Client(c));
            }
            Act::Churn if self.faults_on => {
                self.churn();
                let d = self.rng.exp(self.params.churn_mean_us.unwrap_or(1_000_000));
                self.schedule(d, Act::Churn);
            }
            Act::Transfer if self.faults_on => {
                self.transfer();
                let d = self.rng.exp(self.params.transfer_mean_us.unwrap_or(1_000_000));
                self.schedule(d, Act::Transfer);
            }
            Act::Crash if self.faults_on => {
                let (mean, down, w) =
                    (p.crash_mean_us.unwrap_or(1_000_000), p.down_us, p.crash_weights);
                // Bias crashes towards nodes with writes in flight: that is
                // where durability bugs hide.
                let busy: Vec<usize> =
                    (0..n).filter(|&i| self.cluster.pending_writes(i) > 0).collect();
                let node = if !busy.is_empty() && self.rng.chance(0.7) {
                    self.rng.pick(&busy)
                } else {
                    self.rng.below(n as u64) as usize
                };
                if self.cluster.is_up(node) {
                    let mode = pick_mode(&mut self.rng, w);
                    self.cluster.apply_op(Op::Crash { node, mode });
                    let d = self.rng.between(down.0, down.1);
                    self.schedule(d, Act::Restart(node));
                }
                let d = self.rng.exp(mean);
                self.schedule(d, Act::Crash);
            }
            Act::Restart(node) if self.faults_on => self.cluster.apply_op(Op::Restart { node }),
            Act::Partition if self.faults_on => {
                let (mean, len) = (p.partition_mean_us.unwrap_or(1_000_000), p.partition_us);
                self.cluster.apply_op(Op::Heal);
                let op = match self.rng.below(5) {
                    0 => {
                        let mask = 1 + self.rng.below((1 << n) - 2);
                        Op::Split { mask }
                    }
                    1 => Op::Isolate { node: self.rng.below(n as u64) as usize },
                    2 => Op::SendOnly { node: self.rng.below(n as u64) as usize },
                    3 => Op::ReceiveOnly { node: self.rng.below(n as u64) as usize },
                    _ => Op::RandomCuts { per_mille: self.rng.between(100, 500) as u32 },
                };
                self.cluster.apply_op(op);
                self.partition_gen += 1;
                let d = self.rng.between(len.0, len.1);
                let g = self.partition_gen;
                self.schedule(d, Act::Heal(g));
                let d = self.rng.exp(mean);
                self.schedule(d, Act::Partition);
            }
            Act::Heal(g) if self.faults_on && g == self.partition_gen => {
                self.cluster.apply_op(Op::Heal)
            }
            Act::Pause if self.faults_on => {
                let (mean, len) = (p.pause_mean_us.unwrap_or(1_000_000), p.pause_us);
                let node = self.pause_rng.below(n as u64) as usize;
                let us = self.pause_rng.between(len.0, len.1.max(len.0));
                self.cluster.apply_op(Op::Pause { node, us });
                let d = self.pause_rng.exp(mean);
                self.schedule(d, Act::Pause);
            }
            _ => {}
        }
    }

    fn next_payload(&mut self) -> Bytes {
        self.payload_seq += 1;
        let mut b = Vec::with_capacity(16);
        b.extend_from_slice(&self.seed.to_le_bytes());
        b.extend_from_slice(&self.payload_seq.to_le_bytes());
        Bytes::from(b)
    }

    /// A random target for a request: usually the leader, sometimes any
    /// node slot (a follower forwards; a removed or spare node refuses).
    fn target(&mut self) -> usize {
        match self.cluster.leader() {
            Some(l) if !self.client.chance(self.params.misdirect) => l,
            _ => self.client.below(self.cluster.len() as u64) as usize,
        }
    }

    /// Client `c` issues its next op unless one is still in flight.
    fn client_op(&mut self, c: usize) {
        let now = self.cluster.now_us();
        let (ops, deadline) = &self.client_ops[c];
        let busy = ops.iter().any(|&o| self.cluster.ops()[o].state == OpState::Pending);
        if busy && now < *deadline {
            return;
        }
        let target = self.target();
        let ops = if self.client.chance(self.params.read_ratio) {
            let key = self.client.below(self.params.keys);
            vec![self.cluster.client_read(target, key)]
        } else {
            let k = self.client.between(1, self.params.batch_max);
            let writes: Vec<(u64, u64)> = (0..k)
                .map(|_| {
                    self.payload_seq += 1;
                    (self.client.below(self.params.keys), self.payload_seq)
                })
                .collect();
            self.cluster.client_write(target, &writes)
        };
        self.client_ops[c] = (ops, now + CLIENT_PATIENCE_US);
    }

    /// One membership change, drawn from what the leader's configuration
    /// allows: add a learner or a voter from the non-members, promote a
    /// learner, remove a learner or a voter (sometimes the leader).
    fn churn(&mut self) {
        let Some(l) = self.cluster.leader() else { return };
        let Some(m) = self.cluster.membership(l) else { return };
        let n = self.cluster.len();
        let outside: Vec<usize> = (0..n).filter(|&i| !m.contains(node_id(i))).collect();
        let learners: Vec<NodeId> = m.learners.iter().copied().collect();
        let voters: Vec<NodeId> = m.voters.iter().copied().collect();
        let k = &self.params.cluster.core;
        // Without PreVote and CheckQuorum a node that believes it is a voter
        // but is no member disrupts the cluster forever (thesis §4.2.3): the
        // expected outcome, so such seeds make no change that can leave one.
        // That is removing a voter, removing a learner (it may hold a
        // rolled-back promotion), and adding a non-member as a voter at
        // once (seed 12955: a stale leader's AddVoter reached only the new
        // node and was overwritten; the node campaigned forever, never
        // hearing from the real leader). Learners are added, then promoted.
        let disruptable = !(k.pre_vote || k.check_quorum);
        let may_remove_voter = voters.len() >= 3 && !disruptable;
        let mut options = Vec::new();
        if !outside.is_empty() {
            options.push(0);
            if !disruptable {
                options.push(1);
            }
        }
        if !learners.is_empty() {
            options.extend([2, 2]);
            if !disruptable {
                options.push(3);
            }
        }
        if may_remove_voter {
            options.extend([4, 5]);
        }
        if options.is_empty() {
            return;
        }
        let addr = String::new();
        let change = match self.rng.pick(&options) {
            0 => MembershipChange::AddLearner { id: node_id(self.rng.pick(&outside)), addr },
            1 => MembershipChange::AddVoter { id: node_id(self.rng.pick(&outside)), addr },
            2 => MembershipChange::Promote(self.rng.pick(&learners)),
            3 => MembershipChange::Remove(self.rng.pick(&learners)),
            4 => MembershipChange::Remove(node_id(l)),
            _ => MembershipChange::Remove(self.rng.pick(&voters)),
        };
        let at = if self.rng.chance(0.5) { l } else { self.rng.below(n as u64) as usize };
        let _ = self.cluster.change_membership(at, change);
    }

    /// A leadership transfer, usually to a voter, sent to the leader or
    /// any node.
    fn transfer(&mut self) {
        let Some(l) = self.cluster.leader() else { return };
        let Some(m) = self.cluster.membership(l) else { return };
        let n = self.cluster.len();
        let others: Vec<usize> =
            m.voters.iter().map(|id| (id.0 - 1) as usize).filter(|&v| v != l).collect();
        let target = if !others.is_empty() && self.rng.chance(0.85) {
            self.rng.pick(&others)
        } else {
            self.rng.below(n as u64) as usize
        };
        let at = if self.rng.chance(0.7) { l } else { self.rng.below(n as u64) as usize };
        self.transfers.push((self.cluster.now_us(), target));
        let _ = self.cluster.transfer_leadership(at, target);
    }

    /// Nodes to leave down for good when healing: at most
    /// `permanent_down` voters of the committed configuration, such that
    /// every configuration any node may still adopt keeps a live majority.
    fn choose_down(&mut self) -> Vec<usize> {
        let n = self.cluster.len();
        let mut configs: Vec<Membership> = Vec::new();
        if let Some(m) = self.cluster.committed_config() {
            configs.push(m.clone());
        }
        for i in 0..n {
            let m = match self.cluster.membership(i) {
                Some(m) => Some(m),
                None => self.cluster.disk(i).membership(),
            };
            if let Some(m) = m.filter(|m| !m.voters.is_empty()) {
                configs.push(m);
            }
        }
        // Once each: many held or repeated appends carry the same one, and
        // copies would crowd the expansion below out of its cap.
        for m in self.cluster.configs_in_flight() {
            if !m.voters.is_empty() && !configs.contains(&m) {
                configs.push(m);
            }
        }
        // A change no log holds yet may still commit after healing (a
        // follower forwards a queued request once it learns the leader):
        // every configuration it, or a sequence of such changes, may yield
        // from one above counts too (seed 8762: a queued removal of the
        // leader committed after healing, leaving {n1, n2} with n2 down).
        let uncertain: Vec<MembershipChange> = self.cluster.uncertain_changes().cloned().collect();
        let mut k = 0;
        while k < configs.len() && configs.len() < 256 {
            for ch in &uncertain {
                if let Ok(next) = configs[k].apply(ch) {
                    if !configs.contains(&next) {
                        configs.push(next);
                    }
                }
            }
            k += 1;
        }
        let configs: Vec<BTreeSet<NodeId>> = configs.into_iter().map(|m| m.voters).collect();
        let mut pool: Vec<usize> = configs
            .first()
            .map(|v| v.iter().map(|id| (id.0 - 1) as usize).collect())
            .unwrap_or_default();
        let mut down = Vec::new();
        while down.len() < self.params.permanent_down && !pool.is_empty() {
            let d = pool.remove(self.rng.below(pool.len() as u64) as usize);
            down.push(d);
            let ok = configs.iter().all(|c| {
                let alive = c.iter().filter(|id| !down.contains(&((id.0 - 1) as usize))).count();
                alive > c.len() / 2
            });
            if !ok {
                down.pop();
            }
        }
        down
    }

    /// Ends the fault phase: heals the network, restarts nodes, leaves an
    /// optional minority down for good.
    fn heal(&mut self) {
        self.faults_on = false;
        // Let every pause end first: a node resuming catches up on its
        // missed ticks at once and may campaign (without PreVote, or
        // without CheckQuorum's lease), deposing a leader once; that is the
        // pause's doing, not churn, so it happens before the network heals
        // and the liveness window opens (seeds 5018326, 6011621).
        let resumed = self.cluster.pauses_end();
        self.advance_to(resumed.max(self.cluster.now_us()));
        let mut link = self.params.link;
        link.loss = 0.0;
        link.dup = 0.0;
        link.long_prob = 0.0;
        // A healed network behaves like TCP: per-link FIFO.
        link.fifo = true;
        self.cluster.apply_op(Op::SetLinks(link));
        self.cluster.apply_op(Op::Heal);
        let down = self.choose_down();
        for i in 0..self.cluster.len() {
            if down.contains(&i) {
                let mode = pick_mode(&mut self.rng, self.params.crash_weights);
                self.cluster.apply_op(Op::Crash { node: i, mode });
            } else {
                self.cluster.apply_op(Op::Restart { node: i });
            }
        }
        // Healing is complete once every message sent during the faults has
        // been delivered or dropped: a long-held message from a node that
        // raised its term while cut off (without PreVote) may still depose a
        // leader once, which is expected and not churn.
        let drained = self.cluster.net().last_delivery_any();
        self.advance_to(drained.max(self.cluster.now_us()));
        // Without CheckQuorum a leader cut off from a majority keeps
        // leading, and no lease protects it: voters whose timers ran out
        // while cut off (two of them can grant each other's PreVote, their
        // logs equally behind) may depose it once right after the heal,
        // before its heartbeats reach them. That is the faults' doing, not
        // churn: let it happen before the liveness window opens (seed
        // 9203206 at five nodes).
        if !self.params.cluster.core.check_quorum {
            let timeout = u64::from(xraft::Config::new(node_id(0)).election_timeout_ticks_max);
            let settle = self.cluster.now_us() + 2 * timeout * TICK_US;
            self.advance_to(settle);
        }
    }

    /// Running nodes.
    fn up(&self) -> Vec<usize> {
        (0..self.cluster.len()).filter(|&i| self.cluster.is_up(i)).collect()
    }

    /// Running members (voters and learners) of the leader's configuration.
    fn live(&self) -> Vec<usize> {
        let Some(m) = self.cluster.leader().and_then(|l| self.cluster.membership(l)) else {
            return self.up();
        };
        self.up().into_iter().filter(|&i| m.contains(node_id(i))).collect()
    }

    /// A leader every live member follows in its term.
    fn stable_leader(&self) -> Option<(usize, Term)> {
        let l = self.cluster.leader()?;
        let term = self.cluster.node(l)?.term();
        let all = self.live().into_iter().all(|i| {
            let n = self.cluster.node(i).expect("live");
            n.term() == term && n.leader() == Some(node_id(l))
        });
        all.then_some((l, term))
    }

    /// A number that grows whenever a live node persists or applies more.
    fn progress_marker(&self) -> u64 {
        self.up()
            .iter()
            .filter_map(|&i| self.cluster.node(i))
            .map(|n| {
                let st = n.status();
                st.applied.0 + st.durable_index.0 + st.commit.0
            })
            .sum()
    }

    /// The healed phase. A leader change right after progress is expected
    /// once in a while (a transfer requested before healing completes, or a
    /// change removing the leader commits with the probe): the phase then
    /// starts over, at most three times.
    fn liveness(&mut self) {
        for _ in 0..3 {
            let before = self.cluster.stats().core.transfers_completed;
            let Err(v) = self.liveness_once() else { return };
            // A hand-off may be under way (TimeoutNow sent, the target
            // campaigning, the old leader not yet told of it): it counts as
            // completed only once the old leader hears that the target
            // leads, so let the cluster settle before judging.
            let t = self.cluster.now_us() + STABLE_WINDOW_US;
            self.advance_to(t);
            let l = self.cluster.leader();
            let removed = |c: &Cluster| {
                let leaders: Vec<usize> = (0..c.len())
                    .filter(|&i| c.node(i).is_some_and(|n| n.role() == Role::Leader))
                    .collect();
                let voters = c.committed_config().map(|m| m.voters.clone()).unwrap_or_default();
                leaders.is_empty() || leaders.iter().any(|&i| !voters.contains(&node_id(i)))
            };
            // A transfer asked for before healing may also finish after it
            // (forwarded late, or the target caught up late) and be counted
            // as lost by the old leader, deposed by a third node that heard
            // the target's campaign first: the new leader being a recent
            // transfer's target is expected too.
            let now = self.cluster.now_us();
            let recent_target = l.is_some_and(|l| {
                self.transfers
                    .iter()
                    .any(|&(at, t)| t == l && now.saturating_sub(at) <= 2 * STALL_US)
            });
            // A removed node that never learned of its removal campaigns on
            // forever; without PreVote its terms depose a leader whenever a
            // node outside the leader's lease (one just restarted, say)
            // hears it (thesis §4.2.3): expected, until the lease covers all.
            let removed_campaigning = {
                let c = &self.cluster;
                let voters = c.committed_config().map(|m| m.voters.clone()).unwrap_or_default();
                // Only a campaign that reached the cluster's term can be what
                // moved it.
                let top = (0..c.len())
                    .filter(|&i| voters.contains(&node_id(i)))
                    .filter_map(|i| c.node(i).map(|n| n.term()))
                    .max()
                    .unwrap_or(Term::ZERO);
                !self.params.cluster.core.pre_vote
                    && (0..c.len()).any(|i| {
                        c.node(i).is_some_and(|n| {
                            n.role() == Role::Candidate
                                && !voters.contains(&node_id(i))
                                && n.term() >= top
                        })
                    })
            };
            let expected = recent_target
                || removed_campaigning
                || self.cluster.stats().core.transfers_completed > before
                || self.last_leader.is_some_and(|old| {
                    let voters = self.cluster.committed_config().map(|m| m.voters.clone());
                    !voters.is_some_and(|v| v.contains(&node_id(old)))
                })
                || (l.is_none() && removed(&self.cluster));
            if !expected || self.cluster.failure().is_some() {
                self.cluster.fail(v);
                return;
            }
        }
        self.cluster
            .fail(Violation::Liveness { what: "leader kept changing after healing".into() });
    }

    fn liveness_once(&mut self) -> Result<(), Violation> {
        let start = self.cluster.now_us();
        let cap = start + LIVENESS_CAP_US;
        let mut deadline = start + LIVENESS_BOUND_US;
        let mut marker = self.progress_marker();
        let mut probe: Option<(Term, Proposed, Bytes)> = None;
        let mut done = false;
        while self.cluster.now_us() < deadline.min(cap) && self.cluster.failure().is_none() {
            let t = self.cluster.now_us() + 10_000;
            self.advance_to(t);
            if let Some((l, term)) = self.stable_leader() {
                self.last_leader = Some(l);
                if probe.as_ref().is_none_or(|(t, _, _)| *t != term) {
                    let data = self.next_payload();
                    if let Ok(p) = self.cluster.propose(l, data.clone()) {
                        probe = Some((term, p, data));
                    }
                }
            }
            if let Some((_, p, data)) = &probe {
                let k = (p.last.0 - 1) as usize;
                if self.live().iter().all(|&i| self.cluster.applied(i).get(k) == Some(data)) {
                    done = true;
                    break;
                }
            }
            // Slow is not stuck: catching up a long log one small append
            // per round trip may take a while; only a stall fails.
            let m = self.progress_marker();
            if m > marker {
                marker = m;
                deadline = deadline.max(self.cluster.now_us() + STALL_US);
            }
        }
        if self.cluster.failure().is_some() {
            return Ok(());
        }
        if !done {
            let what = self.describe_stuck(probe.as_ref().map(|p| p.1));
            self.cluster.fail(Violation::Liveness { what });
            return Ok(());
        }
        // Churn alarm: a healed cluster keeps its leader and term.
        let Some((leader, term)) = self.stable_leader() else {
            return Err(Violation::Liveness { what: "leader lost right after progress".into() });
        };
        let t = self.cluster.now_us() + STABLE_WINDOW_US;
        self.advance_to(t);
        if self.cluster.failure().is_some() {
            return Ok(());
        }
        let max_term =
            self.live().iter().filter_map(|&i| self.cluster.node(i)).map(|n| n.term()).max();
        if max_term != Some(term) || self.cluster.leader() != Some(leader) {
            return Err(Violation::TermChurn { from: term, to: max_term.unwrap_or(term) });
        }
        // Requests forwarded late may still be committing: let every live
        // node apply the leader's commit index before the final checks.
        let target = self.cluster.node(leader).map_or(LogIndex::ZERO, |n| n.commit_index());
        let cap = self.cluster.now_us() + LIVENESS_CAP_US;
        let mut deadline = self.cluster.now_us() + STALL_US;
        let mut marker = self.progress_marker();
        while self.min_applied() < target {
            if self.cluster.now_us() >= deadline.min(cap) {
                let what =
                    format!("live nodes did not apply {target:?}: {}", self.describe_stuck(None));
                self.cluster.fail(Violation::Liveness { what });
                return Ok(());
            }
            let t = self.cluster.now_us() + 10_000;
            self.advance_to(t);
            if self.cluster.failure().is_some() {
                return Ok(());
            }
            let m = self.progress_marker();
            if m > marker {
                marker = m;
                deadline = deadline.max(self.cluster.now_us() + STALL_US);
            }
        }
        self.final_checks();
        Ok(())
    }

    /// The least number of entries applied by a live node since it started.
    fn min_applied(&self) -> LogIndex {
        self.live().iter().map(|&i| self.cluster.app(i).index).min().unwrap_or_default()
    }

    fn final_checks(&mut self) {
        let live = self.live();
        let c = &self.cluster;
        let commit = live.iter().filter_map(|&i| c.node(i)).map(|n| n.commit_index()).min();
        let commit = commit.unwrap_or(LogIndex::ZERO);
        let a = live[0];
        for &b in &live[1..] {
            let (na, nb) = (c.node(a).expect("live"), c.node(b).expect("live"));
            let mut i = LogIndex(1);
            while i <= commit {
                let (ea, eb) = (na.entry(i).map(EntryId::of), nb.entry(i).map(EntryId::of));
                // Entries compacted on either side are covered by snapshots,
                // which were checked against the history when taken.
                if ea.is_some() && eb.is_some() && ea != eb {
                    let v = Violation::LogsDiffer { a: node_id(a), b: node_id(b), index: i };
                    self.cluster.fail(v);
                    return;
                }
                i = i.next();
            }
        }
        if let Err(v) = self.cluster.oracle().check_acked(&live, self.min_applied()) {
            self.cluster.fail(v);
        }
    }

    /// Log Matching over whole prefixes (the per-entry check compares one
    /// entry at a time): for every two live nodes, if both hold an entry of
    /// the same index and term, they agree on every entry both hold before
    /// it, term and payload.
    fn check_log_matching(&mut self) {
        let c = &self.cluster;
        let live: Vec<usize> = (0..c.len()).filter(|&i| c.node(i).is_some()).collect();
        for (k, &a) in live.iter().enumerate() {
            for &b in &live[k + 1..] {
                let (na, nb) = (c.node(a).expect("live"), c.node(b).expect("live"));
                let top = na.last_index().min(nb.last_index());
                // The highest index where both hold an entry of one term.
                let mut i = top;
                while i > LogIndex::ZERO {
                    match (na.entry(i), nb.entry(i)) {
                        (Some(x), Some(y)) if x.term == y.term => break,
                        (None, _) | (_, None) => i = LogIndex::ZERO,
                        _ => i = i.prev(),
                    }
                }
                while i > LogIndex::ZERO {
                    let (Some(x), Some(y)) = (na.entry(i), nb.entry(i)) else { break };
                    if x.term != y.term || x.kind != y.kind || x.data != y.data {
                        let v = Violation::LogMismatch { node: node_id(b), index: i, term: y.term };
                        self.cluster.fail(v);
                        return;
                    }
                    i = i.prev();
                }
            }
        }
    }

    /// Checks the client history: by index against the committed log, then
    /// by a WGL search per key.
    fn check_linearizable(&mut self) {
        let history = self.cluster.history();
        let committed = self.cluster.committed_writes();
        // A write answered with a definite refusal (or whose entry another
        // term's took) must never take effect: values are unique, so none
        // of them may be in the committed log (exactly-once's first half).
        let refused: std::collections::BTreeSet<_> = self
            .cluster
            .ops()
            .iter()
            .filter(|o| o.state == crate::cluster::OpState::Failed)
            .filter_map(|o| o.write.map(|v| (o.key, v)))
            .collect();
        if let Some((index, kv)) = committed.iter().find(|(_, kv)| refused.contains(kv)) {
            let what = format!("write {kv:?} was refused but committed at {index:?}");
            self.cluster.fail(Violation::NotLinearizable { what });
            return;
        }
        if let Err(v) = crate::linear::check_by_index(&history, &committed) {
            self.cluster.fail(Violation::NotLinearizable { what: format!("by index: {v:?}") });
            return;
        }
        let finished = history.iter().filter(|o| o.ret.is_some()).count() as u64;
        match crate::linear::check_wgl_bounded(&history, WGL_BUDGET) {
            Ok(c) => self.cluster.count_checked(finished, c.keys, c.ops),
            Err(v) => self.cluster.fail(Violation::NotLinearizable { what: format!("WGL: {v:?}") }),
        }
    }

    fn describe_stuck(&self, probe: Option<Proposed>) -> String {
        let mut s = format!(
            "no convergence {} ms after healing (stalled {} ms, or cap {} ms); probe {probe:?}; nodes:",
            self.cluster.now_us() / 1000,
            STALL_US / 1000,
            LIVENESS_CAP_US / 1000
        );
        for i in 0..self.cluster.len() {
            match self.cluster.node(i) {
                Some(n) => {
                    let st = n.status();
                    let role = match st.role {
                        Role::Leader => "L",
                        Role::Candidate => "C",
                        Role::PreCandidate => "P",
                        Role::Follower => "F",
                    };
                    let last_term = n.entry(st.last_index).map(|e| e.term.0);
                    let ids = |m: &std::collections::BTreeSet<NodeId>| {
                        m.iter().map(|i| i.0.to_string()).collect::<Vec<_>>().join(",")
                    };
                    s.push_str(&format!(
                        " [{:?} {role} {:?} leader {:?} commit {:?} applied {:?} last {:?} (t{}) durable {:?} voters {{{}}} learners {{{}}}]",
                        st.id, st.term, st.leader, st.commit, st.applied, st.last_index,
                        last_term.map_or("?".into(), |t| t.to_string()), st.durable_index,
                        ids(&st.membership.voters), ids(&st.membership.learners)
                    ));
                }
                None => s.push_str(&format!(" [{:?} down]", node_id(i))),
            }
        }
        s
    }
}

fn pick_mode(r: &mut SimRng, w: [u64; 3]) -> CrashMode {
    let total = w.iter().sum::<u64>().max(1);
    let x = r.below(total);
    if x < w[0] {
        CrashMode::LoseAll
    } else if x < w[0] + w[1] {
        CrashMode::KeepPrefix
    } else {
        CrashMode::Torn
    }
}
