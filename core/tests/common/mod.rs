//! The in-memory cluster harness shared by the scenario tests: FIFO
//! message delivery, entries applied at once, writes durable at once unless
//! `manual_sync` (then a crash loses the unsynced ones), directed link cuts
//! and message capture (for reordering and duplication), and a snapshot
//! store per node that answers the core's snapshot outputs per the contract.
#![allow(dead_code)] // each test file uses a different part

use std::collections::{BTreeSet, VecDeque};

use bytes::Bytes;
use xraft::{
    Config, Entry, EntryKind, HardState, Input, LogIndex, Message, Node, NodeId, Output,
    PersistWrite, RequestId, RestartState, Role, SnapshotMeta, SnapshotWrite,
};

// ---------------------------------------------------------------------------
// The cluster harness.
// ---------------------------------------------------------------------------

/// What a node's disk holds durably.
#[derive(Default, Clone)]
pub struct Disk {
    pub hard_state: HardState,
    pub entries: Vec<Entry>,
    pub snapshot: Option<(SnapshotMeta, Vec<u8>)>,
    pub receiving: Vec<u8>,
}

impl Disk {
    pub fn write(&mut self, w: &PersistWrite) {
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

    pub fn restart_state(&self) -> RestartState {
        RestartState {
            hard_state: self.hard_state,
            snapshot: self.snapshot.as_ref().map(|(m, _)| m.clone()),
            entries: self.entries.clone(),
        }
    }
}

/// The application: the list of applied commands.
#[derive(Default, Clone, PartialEq, Eq, Debug)]
pub struct App {
    pub applied: Vec<Bytes>,
}

impl App {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for c in &self.applied {
            out.extend_from_slice(&(c.len() as u32).to_le_bytes());
            out.extend_from_slice(c);
        }
        out
    }

    pub fn decode(mut b: &[u8]) -> App {
        let mut app = App::default();
        while !b.is_empty() {
            let n = u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize;
            app.applied.push(Bytes::copy_from_slice(&b[4..4 + n]));
            b = &b[4 + n..];
        }
        app
    }
}

pub struct Slot {
    pub node: Option<Node>,
    pub disk: Disk,
    /// Writes emitted but not yet durable (only with `manual_sync`).
    pub unsynced: Vec<PersistWrite>,
    pub app: App,
    pub cfg: Config,
}

pub type Filter = Box<dyn Fn(usize, &Message) -> bool>;

/// A deterministic in-memory cluster: messages delivered in FIFO order,
/// entries applied at once; writes durable at once unless `manual_sync`.
pub struct Net {
    pub slots: Vec<Slot>,
    pub queue: VecDeque<(usize, Input)>,
    pub isolated: BTreeSet<usize>,
    /// Directed links (from, to) that drop every message.
    pub cut: BTreeSet<(usize, usize)>,
    /// Messages (sender, message) matching this filter are set aside in
    /// `captured` instead of being delivered.
    pub capture: Option<Filter>,
    pub captured: Vec<(usize, Message)>,
    /// Writes stay volatile until `sync`; a crash loses them.
    pub manual_sync: bool,
    pub events: Vec<(usize, Output)>,
    pub next_request: u64,
}

pub fn cfg(id: u64, tweak: &dyn Fn(&mut Config)) -> Config {
    let mut c = Config::new(NodeId(id));
    tweak(&mut c);
    c
}

impl Net {
    /// `voters` founding members plus `extra` empty nodes that can join.
    pub fn new(voters: u64, extra: u64, tweak: &dyn Fn(&mut Config)) -> Net {
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

    pub fn node(&self, i: usize) -> &Node {
        self.slots[i].node.as_ref().expect("node is up")
    }

    pub fn run(&mut self) {
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

    pub fn handle(&mut self, i: usize, o: Output) {
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
    pub fn sync(&mut self, i: usize) {
        let writes = std::mem::take(&mut self.slots[i].unsynced);
        let Some(last) = writes.last().map(|w| w.id) else { return };
        for w in &writes {
            self.slots[i].disk.write(w);
        }
        self.queue.push_back((i, Input::Persisted { through: last }));
    }

    /// Runs, syncing every node, until nothing is left to do.
    pub fn settle(&mut self) {
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

    pub fn tick(&mut self, n: usize) {
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

    pub fn leader(&self) -> Option<usize> {
        (0..self.slots.len()).find(|&i| {
            self.slots[i].node.as_ref().is_some_and(|n| n.role() == Role::Leader)
                && !self.isolated.contains(&i)
        })
    }

    pub fn elect(&mut self) -> usize {
        for _ in 0..200 {
            if let Some(l) = self.leader() {
                return l;
            }
            self.tick(1);
        }
        panic!("no leader elected");
    }

    /// With `manual_sync`: ticks the founding voters until one leads, syncing
    /// writes only between rounds, so the new leader's no-op is appended but
    /// not yet durable anywhere (hence not committed). Returns the leader.
    pub fn elect_unsynced(&mut self, voters: usize) -> usize {
        assert!(self.manual_sync, "needs manual_sync");
        for _ in 0..200 {
            for i in 0..voters {
                self.queue.push_back((i, Input::Tick));
            }
            self.run();
            if let Some(l) = self.leader() {
                return l;
            }
            for i in 0..voters {
                self.sync(i);
            }
        }
        panic!("no leader elected");
    }

    pub fn input(&mut self, i: usize, input: Input) {
        self.queue.push_back((i, input));
        self.run();
    }

    pub fn request(&mut self) -> RequestId {
        self.next_request += 1;
        RequestId(self.next_request)
    }

    pub fn propose(&mut self, i: usize, data: &'static [u8]) -> RequestId {
        let request = self.request();
        self.input(
            i,
            Input::Propose { request, commands: [Bytes::from_static(data)].into_iter().collect() },
        );
        request
    }

    pub fn outcome(&self, request: RequestId) -> Option<&Output> {
        self.events.iter().map(|(_, o)| o).find(|o| match o {
            Output::Proposed { request: r, .. }
            | Output::Rejected { request: r, .. }
            | Output::ReadReady { request: r, .. }
            | Output::Completed { request: r } => *r == request,
            _ => false,
        })
    }

    /// Crashes node `i`: its volatile writes are lost.
    pub fn crash(&mut self, i: usize) {
        self.slots[i].node = None;
        self.slots[i].unsynced.clear();
        self.slots[i].app = App::default();
        self.queue.retain(|(j, _)| *j != i);
    }

    pub fn restart(&mut self, i: usize) {
        let s = &mut self.slots[i];
        if let Some((_, bytes)) = &s.disk.snapshot {
            s.app = App::decode(bytes);
        }
        s.node = Some(Node::new(s.cfg.clone(), s.disk.restart_state()).expect("restart"));
    }
}
