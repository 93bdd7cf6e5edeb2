//! Review tests of the Raft core: tricky safety and liveness cases, each
//! pinned down on a single node driven by hand or on a small deterministic
//! in-memory cluster. The cluster harness is `features.rs`'s `Net`, extended
//! with writes that stay volatile until `sync` (a crash loses them),
//! directed link cuts and message capture (for reordering and duplication).
//!
//! Tests marked `` demonstrate a bug in the core and
//! fail today; the others confirm correct behaviour.

use std::collections::{BTreeSet, VecDeque};

use bytes::Bytes;
use xraft::{
    Config, Entry, EntryKind, EntryVec, HardState, Input, LogIndex, Message, MessageBody, Node,
    NodeId, Output, PersistId, PersistWrite, RequestId, RestartState, Role, SnapshotMeta,
    SnapshotWrite, Term,
};

// ---------------------------------------------------------------------------
// The cluster harness.
// ---------------------------------------------------------------------------

/// What a node's disk holds durably.
#[derive(Default, Clone)]
struct Disk {
    hard_state: HardState,
    entries: Vec<Entry>,
    snapshot: Option<(SnapshotMeta, Vec<u8>)>,
    receiving: Vec<u8>,
}

impl Disk {
    fn write(&mut self, w: &PersistWrite) {
        match &w.snapshot {
            Some(SnapshotWrite::Taken { compact_through, .. }) => {
                self.entries.retain(|e| e.index > *compact_through)
            }
            Some(SnapshotWrite::Chunk { meta, offset, data, done }) => {
                if *offset == 0 {
                    self.receiving.clear();
                }
                assert_eq!(*offset as usize, self.receiving.len(), "chunks arrive in order");
                self.receiving.extend_from_slice(data);
                if *done {
                    let keep =
                        self.entries.iter().any(|e| e.index == meta.index && e.term == meta.term);
                    if keep {
                        self.entries.retain(|e| e.index > meta.index);
                    } else {
                        self.entries.clear();
                    }
                    self.snapshot = Some((meta.clone(), std::mem::take(&mut self.receiving)));
                }
            }
            None => {}
        }
        if let Some(first) = w.entries.first() {
            self.entries.retain(|e| e.index < first.index);
            self.entries.extend(w.entries.iter().cloned());
        }
        if let Some(hs) = w.hard_state {
            self.hard_state = hs;
        }
    }

    fn restart_state(&self) -> RestartState {
        RestartState {
            hard_state: self.hard_state,
            snapshot: self.snapshot.as_ref().map(|(m, _)| m.clone()),
            entries: self.entries.clone(),
        }
    }
}

/// The application: the list of applied commands.
#[derive(Default, Clone, PartialEq, Eq, Debug)]
struct App {
    applied: Vec<Bytes>,
}

impl App {
    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for c in &self.applied {
            out.extend_from_slice(&(c.len() as u32).to_le_bytes());
            out.extend_from_slice(c);
        }
        out
    }

    fn decode(mut b: &[u8]) -> App {
        let mut app = App::default();
        while !b.is_empty() {
            let n = u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize;
            app.applied.push(Bytes::copy_from_slice(&b[4..4 + n]));
            b = &b[4 + n..];
        }
        app
    }
}

struct Slot {
    node: Option<Node>,
    disk: Disk,
    /// Writes emitted but not yet durable (only with `manual_sync`).
    unsynced: Vec<PersistWrite>,
    app: App,
    cfg: Config,
}

type Filter = Box<dyn Fn(usize, &Message) -> bool>;

/// A deterministic in-memory cluster: messages delivered in FIFO order,
/// entries applied at once; writes durable at once unless `manual_sync`.
struct Net {
    slots: Vec<Slot>,
    queue: VecDeque<(usize, Input)>,
    isolated: BTreeSet<usize>,
    /// Directed links (from, to) that drop every message.
    cut: BTreeSet<(usize, usize)>,
    /// Messages (sender, message) matching this filter are set aside in
    /// `captured` instead of being delivered.
    capture: Option<Filter>,
    captured: Vec<(usize, Message)>,
    /// Writes stay volatile until `sync`; a crash loses them.
    manual_sync: bool,
    events: Vec<(usize, Output)>,
    next_request: u64,
}

fn cfg(id: u64, tweak: &dyn Fn(&mut Config)) -> Config {
    let mut c = Config::new(NodeId(id));
    tweak(&mut c);
    c
}

impl Net {
    /// `voters` founding members plus `extra` empty nodes that can join.
    fn new(voters: u64, extra: u64, tweak: &dyn Fn(&mut Config)) -> Net {
        let ids: Vec<NodeId> = (1..=voters).map(NodeId).collect();
        let mut slots = Vec::new();
        for id in 1..=voters + extra {
            let state = if id <= voters {
                RestartState::bootstrap(ids.clone())
            } else {
                RestartState::default()
            };
            let c = cfg(id, tweak);
            let disk = Disk {
                hard_state: state.hard_state,
                entries: state.entries.clone(),
                ..Disk::default()
            };
            let node = Node::new(c.clone(), state).expect("valid");
            slots.push(Slot {
                node: Some(node),
                disk,
                unsynced: Vec::new(),
                app: App::default(),
                cfg: c,
            });
        }
        Net {
            slots,
            queue: VecDeque::new(),
            isolated: BTreeSet::new(),
            cut: BTreeSet::new(),
            capture: None,
            captured: Vec::new(),
            manual_sync: false,
            events: Vec::new(),
            next_request: 0,
        }
    }

    fn node(&self, i: usize) -> &Node {
        self.slots[i].node.as_ref().expect("node is up")
    }

    fn run(&mut self) {
        let mut out = Vec::new();
        let mut budget = 1_000_000;
        while let Some((i, input)) = self.queue.pop_front() {
            budget -= 1;
            assert!(budget > 0, "the cluster never went quiet");
            let Some(node) = self.slots[i].node.as_mut() else { continue };
            node.step_into(input, &mut out);
            for o in out.drain(..) {
                self.handle(i, o);
            }
        }
    }

    fn handle(&mut self, i: usize, o: Output) {
        match o {
            Output::Send(m) => {
                let to = (m.to.0 - 1) as usize;
                if self.capture.as_ref().is_some_and(|f| f(i, &m)) {
                    self.captured.push((i, m));
                    return;
                }
                if to < self.slots.len()
                    && !self.isolated.contains(&i)
                    && !self.isolated.contains(&to)
                    && !self.cut.contains(&(i, to))
                {
                    self.queue.push_back((to, Input::Message(m)));
                }
            }
            Output::Persist(w) => {
                if self.manual_sync {
                    self.slots[i].unsynced.push(w);
                } else {
                    self.slots[i].disk.write(&w);
                    self.queue.push_back((i, Input::Persisted { through: w.id }));
                }
            }
            Output::Apply { entries } => {
                let last = entries.last().map_or(LogIndex::ZERO, |e| e.index);
                for e in entries {
                    if e.kind == EntryKind::Normal {
                        self.slots[i].app.applied.push(e.data);
                    }
                }
                self.queue.push_back((i, Input::Applied { index: last }));
            }
            Output::TakeSnapshot { meta } => {
                let bytes = self.slots[i].app.encode();
                let index = meta.index;
                self.slots[i].disk.snapshot = Some((meta, bytes));
                self.queue.push_back((i, Input::SnapshotTaken { index, ok: true }));
            }
            Output::ReadSnapshotChunk { to, index, offset, max_bytes } => {
                let (meta, bytes) = self.slots[i].disk.snapshot.clone().expect("a snapshot exists");
                // The contract: a newer snapshot than the one asked for is
                // sent from its first byte.
                let offset =
                    if index != LogIndex::ZERO && index != meta.index { 0 } else { offset };
                let start = (offset as usize).min(bytes.len());
                let end = (start + max_bytes).min(bytes.len());
                let data = Bytes::copy_from_slice(&bytes[start..end]);
                let done = end == bytes.len();
                self.queue.push_back((i, Input::SnapshotChunk { to, meta, offset, data, done }));
            }
            Output::RestoreSnapshot { meta } => {
                let (m, bytes) = self.slots[i].disk.snapshot.clone().expect("installed");
                assert_eq!(m, meta);
                self.slots[i].app = App::decode(&bytes);
                self.queue.push_back((i, Input::Applied { index: meta.index }));
            }
            other => self.events.push((i, other)),
        }
    }

    /// Makes node `i`'s pending writes durable and reports them.
    fn sync(&mut self, i: usize) {
        let writes = std::mem::take(&mut self.slots[i].unsynced);
        let Some(last) = writes.last().map(|w| w.id) else { return };
        for w in &writes {
            self.slots[i].disk.write(w);
        }
        self.queue.push_back((i, Input::Persisted { through: last }));
    }

    /// Runs, syncing every node, until nothing is left to do.
    fn settle(&mut self) {
        loop {
            self.run();
            if self.slots.iter().all(|s| s.unsynced.is_empty()) {
                return;
            }
            for i in 0..self.slots.len() {
                if self.slots[i].node.is_some() {
                    self.sync(i);
                }
            }
        }
    }

    fn tick(&mut self, n: usize) {
        for _ in 0..n {
            for i in 0..self.slots.len() {
                if self.slots[i].node.is_some() {
                    self.queue.push_back((i, Input::Tick));
                }
            }
            if self.manual_sync {
                self.settle();
            } else {
                self.run();
            }
        }
    }

    fn leader(&self) -> Option<usize> {
        (0..self.slots.len()).find(|&i| {
            self.slots[i].node.as_ref().is_some_and(|n| n.role() == Role::Leader)
                && !self.isolated.contains(&i)
        })
    }

    fn elect(&mut self) -> usize {
        for _ in 0..200 {
            if let Some(l) = self.leader() {
                return l;
            }
            self.tick(1);
        }
        panic!("no leader elected");
    }

    fn input(&mut self, i: usize, input: Input) {
        self.queue.push_back((i, input));
        self.run();
    }

    fn request(&mut self) -> RequestId {
        self.next_request += 1;
        RequestId(self.next_request)
    }

    fn propose(&mut self, i: usize, data: &'static [u8]) -> RequestId {
        let request = self.request();
        self.input(
            i,
            Input::Propose { request, commands: [Bytes::from_static(data)].into_iter().collect() },
        );
        request
    }

    fn outcome(&self, request: RequestId) -> Option<&Output> {
        self.events.iter().map(|(_, o)| o).find(|o| match o {
            Output::Proposed { request: r, .. }
            | Output::Rejected { request: r, .. }
            | Output::ReadReady { request: r, .. }
            | Output::Completed { request: r } => *r == request,
            _ => false,
        })
    }

    /// Crashes node `i`: its volatile writes are lost.
    fn crash(&mut self, i: usize) {
        self.slots[i].node = None;
        self.slots[i].unsynced.clear();
        self.slots[i].app = App::default();
        self.queue.retain(|(j, _)| *j != i);
    }

    fn restart(&mut self, i: usize) {
        let s = &mut self.slots[i];
        if let Some((_, bytes)) = &s.disk.snapshot {
            s.app = App::decode(bytes);
        }
        s.node = Some(Node::new(s.cfg.clone(), s.disk.restart_state()).expect("restart"));
    }
}

// ---------------------------------------------------------------------------
// Single-node helpers: drive one node by hand with crafted messages.
// ---------------------------------------------------------------------------

fn entry(index: u64, term: u64) -> Entry {
    Entry {
        index: LogIndex(index),
        term: Term(term),
        kind: EntryKind::Normal,
        data: Bytes::from_static(b"x"),
    }
}

fn entries(range: std::ops::RangeInclusive<u64>, term: u64) -> EntryVec {
    range.map(|i| entry(i, term)).collect()
}

/// Node `id` of a freshly bootstrapped cluster of `voters` (log: the config
/// entry at index 1, term 1, committed).
fn solo(id: u64, voters: u64, tweak: &dyn Fn(&mut Config)) -> Node {
    Node::new(cfg(id, tweak), RestartState::bootstrap((1..=voters).map(NodeId))).expect("valid")
}

fn msg(from: u64, to: u64, term: u64, body: MessageBody) -> Input {
    Input::Message(Message { from: NodeId(from), to: NodeId(to), term: Term(term), body })
}

fn append(from: u64, to: u64, term: u64, prev: (u64, u64), commit: u64, es: EntryVec) -> Input {
    msg(
        from,
        to,
        term,
        MessageBody::Append {
            prev_index: LogIndex(prev.0),
            prev_term: Term(prev.1),
            commit: LogIndex(commit),
            entries: es,
        },
    )
}

fn sent(out: &[Output]) -> Vec<&Message> {
    out.iter()
        .filter_map(|o| match o {
            Output::Send(m) => Some(m),
            _ => None,
        })
        .collect()
}

fn write_of(out: &[Output]) -> Option<&PersistWrite> {
    out.iter().find_map(|o| match o {
        Output::Persist(w) => Some(w),
        _ => None,
    })
}

/// Successful append acknowledgements in `out`: (to, term, index).
fn acks(out: &[Output]) -> Vec<(NodeId, Term, LogIndex)> {
    sent(out)
        .into_iter()
        .filter_map(|m| match m.body {
            MessageBody::AppendResp { success: true, index, .. } => Some((m.to, m.term, index)),
            _ => None,
        })
        .collect()
}

fn persisted(node: &mut Node, id: PersistId) -> Vec<Output> {
    node.step(Input::Persisted { through: id })
}

// ---------------------------------------------------------------------------
// Liveness: flow control.
// ---------------------------------------------------------------------------

/// A follower in `Replicate` whose whole inflight window was lost, and whose
/// next index the leader then compacted away, must still be caught up (by a
/// snapshot). Before ac21f04 the heartbeat answer's recovery probe
/// (`send_empty_append_at_next`) found no term for `next - 1` and silently
/// returned, the window never drained, and the follower stayed behind
/// forever (found independently by this review and the lead).
#[test]
fn a_follower_whose_lost_window_was_compacted_away_catches_up() {
    let tweak = |c: &mut Config| {
        c.inflight_appends_max = 2;
        c.snapshot_threshold_entries = 20;
        c.snapshot_min_retention_entries = 5;
    };
    let mut net = Net::new(3, 0, &tweak);
    let l = net.elect();
    for _ in 0..3 {
        net.propose(l, b"warm");
    }
    net.tick(2);
    let f = (l + 1) % 3;
    assert_eq!(net.node(f).commit_index(), net.node(l).commit_index());
    // The follower is replicating. Drop everything the leader sends it: the
    // first two appends fill its window and are lost.
    net.cut.insert((l, f));
    for _ in 0..60 {
        net.propose(l, b"payload");
        net.tick(1);
    }
    assert!(net.node(l).metrics().snapshots_taken >= 1, "the leader compacted");
    net.cut.clear();
    net.tick(200);
    assert_eq!(
        net.node(f).commit_index(),
        net.node(l).commit_index(),
        "the follower never caught up"
    );
    assert_eq!(net.slots[f].app, net.slots[l].app);
}

/// The same, without compaction: the heartbeat answer's probe recovers a
/// follower whose whole window was lost.
#[test]
fn a_follower_whose_window_was_lost_catches_up() {
    let mut net = Net::new(3, 0, &|c| c.inflight_appends_max = 2);
    let l = net.elect();
    net.propose(l, b"warm");
    net.tick(2);
    let f = (l + 1) % 3;
    net.cut.insert((l, f));
    for _ in 0..10 {
        net.propose(l, b"payload");
        net.tick(1);
    }
    net.cut.clear();
    net.tick(30);
    assert_eq!(net.node(f).commit_index(), net.node(l).commit_index());
    assert_eq!(net.slots[f].app, net.slots[l].app);
}

// ---------------------------------------------------------------------------
// Durability: nothing is promised before it is durable.
// ---------------------------------------------------------------------------

#[test]
fn a_vote_leaves_only_once_durable_and_a_lost_vote_is_not_a_promise() {
    let mut n = solo(2, 3, &|_| {});
    let vote = |from: u64, term: u64| {
        msg(
            from,
            2,
            term,
            MessageBody::RequestVote {
                pre_vote: false,
                last_log_index: LogIndex(1),
                last_log_term: Term(1),
                transfer: false,
            },
        )
    };
    let out = n.step(vote(3, 2));
    let w = write_of(&out).expect("the vote is written").clone();
    assert_eq!(w.hard_state.map(|h| h.vote), Some(Some(NodeId(3))));
    assert!(sent(&out).is_empty(), "no vote answer before the vote is durable: {out:?}");
    // A second candidate in the same term is refused even before durability.
    let out = n.step(vote(1, 2));
    assert!(
        sent(&out)
            .iter()
            .all(|m| !matches!(m.body, MessageBody::RequestVoteResp { granted: true, .. })),
        "{out:?}"
    );
    let out = persisted(&mut n, w.id);
    let grants: Vec<_> = sent(&out)
        .into_iter()
        .filter(|m| matches!(m.body, MessageBody::RequestVoteResp { granted: true, .. }))
        .map(|m| m.to)
        .collect();
    assert_eq!(grants, vec![NodeId(3)]);
}

#[test]
fn a_candidate_asks_for_votes_only_once_its_term_is_durable() {
    let mut n = solo(1, 3, &|c| c.pre_vote = false);
    let mut out = Vec::new();
    for _ in 0..40 {
        out.extend(n.step(Input::Tick));
        if n.role() == Role::Candidate {
            break;
        }
    }
    assert_eq!(n.role(), Role::Candidate);
    assert!(sent(&out).is_empty(), "vote requests before the term is durable: {out:?}");
    let w = write_of(&out).expect("term written").id;
    let out = persisted(&mut n, w);
    assert_eq!(sent(&out).len(), 2);
}

#[test]
fn a_follower_acks_entries_only_once_durable() {
    let mut n = solo(2, 3, &|_| {});
    let out = n.step(append(1, 2, 2, (1, 1), 1, entries(2..=3, 2)));
    let w = write_of(&out).expect("entries written").clone();
    assert_eq!(w.entries.len(), 2);
    assert!(acks(&out).iter().all(|a| a.2 <= LogIndex(1)), "{out:?}");
    let out = persisted(&mut n, w.id);
    assert_eq!(acks(&out).iter().map(|a| a.2).max(), Some(LogIndex(3)));
}

/// etcd's async-storage ABA race: entries 2..3 of term 2 are written, then
/// overwritten by a term-3 leader before the first write is durable. The
/// first write completing must not let the node acknowledge index 2 to the
/// term-3 leader.
#[test]
fn an_ack_for_overwritten_entries_is_not_taken_for_the_new_ones() {
    let mut n = solo(2, 3, &|_| {});
    let out = n.step(append(1, 2, 2, (1, 1), 1, entries(2..=3, 2)));
    let w1 = write_of(&out).expect("w1").id;
    let out = n.step(append(3, 2, 3, (1, 1), 1, entries(2..=2, 3)));
    let w2 = write_of(&out).expect("w2").id;
    assert!(acks(&out).iter().all(|a| a.2 <= LogIndex(1)));
    let out = persisted(&mut n, w1);
    for (to, term, index) in acks(&out) {
        assert!(
            to != NodeId(3) || index <= LogIndex(1),
            "acknowledged {index:?} to the term-3 leader while only the term-2 entry is durable"
        );
        assert!(term != Term(3) || index <= LogIndex(1));
    }
    let out = persisted(&mut n, w2);
    assert!(acks(&out).iter().any(|&(to, _, i)| to == NodeId(3) && i == LogIndex(2)), "{out:?}");
    assert_eq!(n.status().durable_index, LogIndex(2));
}

/// A crash loses an unacknowledged tail; the restarted follower neither
/// commits nor applies past its durable log when the leader's heartbeat
/// arrives (the heartbeat's commit is capped at the leader's match).
#[test]
fn heartbeat_commit_after_a_follower_loses_its_volatile_tail() {
    let mut net = Net::new(3, 0, &|_| {});
    net.manual_sync = true;
    let l = net.elect();
    net.tick(2);
    let f = (l + 1) % 3;
    let g = (l + 2) % 3;
    // f receives new entries but never makes them durable; the others do.
    for _ in 0..5 {
        net.propose(l, b"v");
        net.run();
        for i in [l, g] {
            net.sync(i);
        }
        net.run();
    }
    let committed = net.node(l).commit_index();
    assert!(committed > net.node(f).status().durable_index);
    net.crash(f);
    net.restart(f);
    let durable = net.node(f).last_index();
    // One heartbeat round, without syncing f.
    net.cut.insert((l, g));
    for _ in 0..6 {
        for i in 0..3 {
            net.queue.push_back((i, Input::Tick));
        }
        net.run();
        assert!(net.node(f).commit_index() <= durable.max(net.node(f).last_index()));
    }
    net.cut.clear();
    net.tick(20);
    assert_eq!(net.node(f).commit_index(), net.node(l).commit_index());
    assert_eq!(net.slots[f].app, net.slots[l].app);
}

/// A single-voter leader counts itself only once its write is durable.
#[test]
fn a_single_voter_commits_only_durable_entries() {
    let mut net = Net::new(1, 0, &|_| {});
    net.manual_sync = true;
    let l = net.elect();
    net.tick(1);
    let before = net.node(l).commit_index();
    net.propose(l, b"one");
    net.run();
    assert_eq!(net.node(l).commit_index(), before, "committed before durable");
    assert!(net.slots[l].app.applied.is_empty());
    net.settle();
    assert!(net.node(l).commit_index() > before);
    assert_eq!(net.slots[l].app.applied, vec![Bytes::from_static(b"one")]);
}

// ---------------------------------------------------------------------------
// Follower append handling.
// ---------------------------------------------------------------------------

/// An older, shorter append arriving after a newer one does not truncate.
#[test]
fn a_reordered_shorter_append_does_not_truncate() {
    let mut n = solo(2, 3, &|_| {});
    let out = n.step(append(1, 2, 2, (1, 1), 1, entries(2..=5, 2)));
    let w = write_of(&out).expect("write").id;
    persisted(&mut n, w);
    let out = n.step(append(1, 2, 2, (1, 1), 1, entries(2..=3, 2)));
    assert_eq!(n.last_index(), LogIndex(5));
    assert!(write_of(&out).is_none_or(|w| w.entries.is_empty()), "{out:?}");
    assert_eq!(n.status().durable_index, LogIndex(5));
}

/// The commit index never passes the prefix verified against this leader:
/// stale entries of an older term beyond `prev_index` are not committed.
#[test]
fn commit_is_capped_at_the_verified_prefix() {
    let mut n = solo(2, 3, &|_| {});
    let out = n.step(append(1, 2, 2, (1, 1), 1, entries(2..=4, 2)));
    let w = write_of(&out).expect("write").id;
    persisted(&mut n, w);
    // A new leader of term 3 whose log diverges after index 2 says its commit
    // is 4: only index 2 is verified.
    let out = n.step(append(3, 2, 3, (2, 2), 4, EntryVec::new()));
    assert_eq!(n.commit_index(), LogIndex(2), "{out:?}");
    // A heartbeat of the new leader, capped by its match (nothing yet).
    n.step(msg(3, 2, 3, MessageBody::Heartbeat { commit: LogIndex(0), ctx: 0 }));
    assert_eq!(n.commit_index(), LogIndex(2));
}

/// A follower's acknowledgement to a new leader covers its committed prefix
/// even before that leader's appends verified it (`ack_index` uses commit):
/// that prefix is in every later leader's log, so the ack is truthful.
#[test]
fn a_committed_prefix_is_acknowledged_to_a_new_leader() {
    let mut n = solo(2, 3, &|_| {});
    let out = n.step(append(1, 2, 2, (1, 1), 3, entries(2..=4, 2)));
    let w = write_of(&out).expect("write").id;
    persisted(&mut n, w);
    assert_eq!(n.commit_index(), LogIndex(3));
    // Term 3 leader probes at its own last index, which we lack.
    let out = n.step(append(3, 2, 3, (6, 3), 3, EntryVec::new()));
    assert!(sent(&out)
        .iter()
        .all(|m| matches!(m.body, MessageBody::AppendResp { success: false, .. })));
    let w = write_of(&out).expect("term written").id;
    let out = persisted(&mut n, w);
    for (_, term, index) in acks(&out) {
        assert_eq!(term, Term(3));
        assert!(index <= LogIndex(3), "acked an unverified, uncommitted index {index:?}");
    }
}

// ---------------------------------------------------------------------------
// Elections.
// ---------------------------------------------------------------------------

fn candidate(voters: u64) -> Node {
    let mut n = solo(1, voters, &|c| c.pre_vote = false);
    let mut out = Vec::new();
    while n.role() != Role::Candidate {
        out.extend(n.step(Input::Tick));
    }
    let w = write_of(&out).expect("term written").id;
    persisted(&mut n, w);
    n
}

fn vote_resp(from: u64, term: u64, granted: bool) -> Input {
    msg(from, 1, term, MessageBody::RequestVoteResp { pre_vote: false, granted })
}

#[test]
fn a_replayed_vote_counts_once() {
    let mut n = candidate(5);
    let term = n.term().0;
    for _ in 0..3 {
        n.step(vote_resp(2, term, true));
    }
    assert_eq!(n.role(), Role::Candidate, "one voter counted three times");
    n.step(vote_resp(3, term, true));
    assert_eq!(n.role(), Role::Leader);
}

#[test]
fn a_stale_term_vote_is_not_counted() {
    let mut n = candidate(3);
    let term = n.term().0;
    n.step(vote_resp(2, term - 1, true));
    assert_eq!(n.role(), Role::Candidate);
}

/// A PreVote from a lower term is answered (with our term) rather than
/// dropped, so the sender learns it is behind.
#[test]
fn a_stale_pre_vote_is_answered_with_our_term() {
    let mut n = solo(2, 3, &|_| {});
    let out = n.step(append(1, 2, 5, (1, 1), 1, EntryVec::new()));
    let w = write_of(&out).expect("term").id;
    persisted(&mut n, w);
    let out = n.step(msg(
        3,
        2,
        3,
        MessageBody::RequestVote {
            pre_vote: true,
            last_log_index: LogIndex(9),
            last_log_term: Term(2),
            transfer: false,
        },
    ));
    let m = sent(&out);
    assert!(
        m.iter().any(|m| m.to == NodeId(3)
            && m.term == Term(5)
            && matches!(m.body, MessageBody::RequestVoteResp { granted: false, .. })),
        "{out:?}"
    );
}

// ---------------------------------------------------------------------------
// Reads.
// ---------------------------------------------------------------------------

/// A new leader does not confirm a read before an entry of its own term has
/// committed (its commit index may be stale until then).
#[test]
fn no_read_before_the_new_leaders_noop_commits() {
    let mut net = Net::new(3, 0, &|_| {});
    net.manual_sync = true;
    // Elect without letting followers sync the no-op.
    let l = loop {
        for i in 0..3 {
            net.queue.push_back((i, Input::Tick));
        }
        net.run();
        if let Some(l) = net.leader() {
            break l;
        }
        for i in 0..3 {
            net.sync(i);
        }
    };
    let noop = net.node(l).last_index();
    assert!(net.node(l).commit_index() < noop);
    let request = net.request();
    net.input(l, Input::ReadIndex { request });
    assert!(net.outcome(request).is_none(), "{:?}", net.outcome(request));
    net.settle();
    net.tick(2);
    match net.outcome(request) {
        Some(Output::ReadReady { index, .. }) => assert!(*index >= noop),
        other => panic!("{other:?}"),
    }
}

// ---------------------------------------------------------------------------
// Snapshots.
// ---------------------------------------------------------------------------

/// A snapshot older than the follower's commit neither rolls back nor
/// truncates (Figure 13 rule 6); it is answered like an append.
#[test]
fn a_stale_snapshot_is_ignored() {
    let mut n = solo(2, 3, &|_| {});
    let out = n.step(append(1, 2, 2, (1, 1), 4, entries(2..=6, 2)));
    let w = write_of(&out).expect("write").id;
    persisted(&mut n, w);
    assert_eq!(n.commit_index(), LogIndex(4));
    let meta = SnapshotMeta {
        index: LogIndex(3),
        term: Term(2),
        membership: xraft::Membership::with_voters([NodeId(1), NodeId(2), NodeId(3)]),
    };
    let out = n.step(msg(
        1,
        2,
        2,
        MessageBody::InstallSnapshot {
            meta,
            offset: 0,
            data: Bytes::from_static(b"s"),
            done: true,
        },
    ));
    assert!(write_of(&out).is_none(), "{out:?}");
    assert_eq!(n.last_index(), LogIndex(6));
    assert_eq!(n.commit_index(), LogIndex(4));
    assert!(!acks(&out).is_empty());
}

/// A follower that restarts mid-way through receiving a snapshot, and a
/// slow follower in general, still converge (crash during install).
#[test]
fn a_crash_during_snapshot_install_leaves_a_correct_node() {
    let tweak = |c: &mut Config| {
        c.snapshot_threshold_entries = 20;
        c.snapshot_min_retention_entries = 5;
        c.snapshot_chunk_bytes = 8;
    };
    let mut net = Net::new(3, 0, &tweak);
    let l = net.elect();
    let slow = (l + 1) % 3;
    net.isolated.insert(slow);
    for _ in 0..60 {
        net.propose(l, b"payload!");
        net.tick(1);
    }
    net.isolated.clear();
    // Let a few chunks through, then crash the follower.
    net.manual_sync = true;
    for _ in 0..3 {
        for i in 0..3 {
            net.queue.push_back((i, Input::Tick));
        }
        net.run();
        net.sync(l);
        net.sync((l + 2) % 3);
        net.sync(slow);
        net.run();
    }
    net.crash(slow);
    net.restart(slow);
    net.tick(60);
    assert_eq!(net.node(slow).commit_index(), net.node(l).commit_index());
    assert_eq!(net.slots[slow].app, net.slots[l].app);
}

// ---------------------------------------------------------------------------
// Membership.
// ---------------------------------------------------------------------------

fn config_entry(index: u64, term: u64, voters: &[u64]) -> Entry {
    Entry {
        index: LogIndex(index),
        term: Term(term),
        kind: EntryKind::Config,
        data: xraft::Membership::with_voters(voters.iter().map(|&v| NodeId(v))).encode(),
    }
}

/// A configuration takes effect when appended and is rolled back when a
/// later leader truncates its entry.
#[test]
fn an_uncommitted_config_is_rolled_back_on_truncation() {
    let mut n = solo(2, 3, &|_| {});
    let es: EntryVec = [config_entry(2, 2, &[1, 2, 3, 4])].into_iter().collect();
    let out = n.step(append(1, 2, 2, (1, 1), 1, es));
    persisted(&mut n, write_of(&out).expect("write").id);
    assert_eq!(n.status().membership.voters.len(), 4, "effective on append");
    let out = n.step(append(3, 2, 3, (1, 1), 1, entries(2..=2, 3)));
    persisted(&mut n, write_of(&out).expect("write").id);
    assert_eq!(n.status().membership.voters.len(), 3, "rolled back with its entry");
    // And a restart from what is durable agrees.
    assert_eq!(n.entry(LogIndex(2)).map(|e| e.kind), Some(EntryKind::Normal));
}

/// A new leader refuses a membership change until an entry of its own term
/// has committed (the 2015 single-server-change bug).
#[test]
fn no_config_change_before_the_new_leaders_noop_commits() {
    let mut net = Net::new(3, 1, &|_| {});
    net.manual_sync = true;
    let l = loop {
        for i in 0..3 {
            net.queue.push_back((i, Input::Tick));
        }
        net.run();
        if let Some(l) = net.leader() {
            break l;
        }
        for i in 0..3 {
            net.sync(i);
        }
    };
    assert!(net.node(l).commit_index() < net.node(l).last_index());
    let request = net.request();
    net.input(
        l,
        Input::ChangeMembership {
            request,
            change: xraft::MembershipChange::AddVoter { id: NodeId(4), addr: "n4".into() },
        },
    );
    assert!(
        matches!(
            net.outcome(request),
            Some(Output::Rejected { error: xraft::ProposeError::ConfigInFlight, .. })
        ),
        "{:?}",
        net.outcome(request)
    );
}

/// A removed leader stops counting itself as soon as the change is in its
/// log: with the only other remaining voter down, the change cannot commit.
#[test]
fn a_leader_removing_itself_does_not_count_itself() {
    let mut net = Net::new(3, 0, &|_| {});
    let l = net.elect();
    net.tick(2);
    let a = (l + 1) % 3;
    let b = (l + 2) % 3;
    net.isolated.insert(a);
    let request = net.request();
    net.input(
        l,
        Input::ChangeMembership {
            request,
            change: xraft::MembershipChange::Remove(NodeId(l as u64 + 1)),
        },
    );
    net.tick(3);
    // New config {a, b}: b alone is not a majority of it; the leader must
    // not have counted itself.
    let latest = net.node(l).last_index();
    assert!(net.node(l).commit_index() < latest, "committed with the removed leader's vote");
    assert!(net.node(b).commit_index() < latest);
}

// ---------------------------------------------------------------------------
// Terms, transfer and forwarding.
// ---------------------------------------------------------------------------

/// A stale leader's append is answered with our term, so it steps down.
#[test]
fn a_stale_append_is_answered_with_our_term() {
    let mut n = solo(2, 3, &|_| {});
    let out = n.step(append(3, 2, 5, (1, 1), 1, EntryVec::new()));
    persisted(&mut n, write_of(&out).expect("term").id);
    let out = n.step(append(1, 2, 3, (1, 1), 1, entries(2..=2, 3)));
    assert_eq!(n.last_index(), LogIndex(1), "a stale append changed the log");
    assert!(
        sent(&out).iter().any(|m| m.to == NodeId(1)
            && m.term == Term(5)
            && matches!(m.body, MessageBody::AppendResp { success: false, .. })),
        "{out:?}"
    );
}

/// `TimeoutNow` from anyone but the known leader is ignored.
#[test]
fn timeout_now_from_a_non_leader_is_ignored() {
    let mut n = solo(2, 3, &|_| {});
    let out = n.step(append(1, 2, 2, (1, 1), 1, EntryVec::new()));
    persisted(&mut n, write_of(&out).expect("term").id);
    n.step(msg(3, 2, 2, MessageBody::TimeoutNow));
    assert_eq!(n.role(), Role::Follower);
    assert_eq!(n.term(), Term(2));
    n.step(msg(1, 2, 2, MessageBody::TimeoutNow));
    assert_eq!(n.role(), Role::Candidate);
}

/// A leader re-elected in a later term drops a `Forward` stamped with the
/// follower's older term without any answer (check_term only answers stale
/// Append/Heartbeat/PreVote), so the follower's caller waits the whole
/// `propose_timeout_ticks` and gets `Timeout` ("outcome unknown") for a
/// request that was never appended. A forward does not depend on the
/// sender's term: it should be handled (or refused with `NotLeader`).
#[test]

fn a_forward_with_an_older_term_is_answered() {
    // Node 1 leads term 2 (elected from the bootstrap term 1).
    let mut n = candidate(3);
    n.step(vote_resp(2, n.term().0, true));
    assert_eq!(n.role(), Role::Leader);
    // Node 3 still believes node 1 leads term 1 and forwards a proposal.
    let out = n.step(msg(
        3,
        1,
        1,
        MessageBody::Forward {
            ctx: RequestId(7),
            request: xraft::Forwarded::Propose([Bytes::from_static(b"p")].into_iter().collect()),
        },
    ));
    assert!(
        sent(&out)
            .iter()
            .any(|m| m.to == NodeId(3) && matches!(m.body, MessageBody::ForwardResp { .. })),
        "the forwarded request got no answer: {out:?}"
    );
}
