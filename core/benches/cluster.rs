//! Throughput of the pure core: a three-node cluster in memory, no
//! serialization, durability acknowledged at once, committing 16-byte
//! entries proposed in batches of 1 and 64. Reports entries/s (criterion)
//! and heap allocations per committed entry (a counting allocator).
#![allow(missing_docs)]
// The counting allocator below needs `unsafe impl GlobalAlloc`; it only
// forwards to the system allocator.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use xraft::{
    Commands, Config, Input, LogIndex, Node, NodeId, Output, RequestId, RestartState, Role,
};

struct Counting;
static ALLOCS: AtomicU64 = AtomicU64::new(0);

// SAFETY: forwards every call unchanged to the system allocator.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        unsafe { System.realloc(p, l, n) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Three nodes wired together in memory.
struct Cluster {
    nodes: Vec<Node>,
    queue: VecDeque<(usize, Input)>,
    out: Vec<Output>,
    leader: usize,
    next_request: u64,
}

impl Cluster {
    fn new() -> Self {
        let ids = [NodeId(1), NodeId(2), NodeId(3)];
        let nodes = ids
            .iter()
            .map(|&id| {
                let mut cfg = Config::new(id);
                cfg.uncommitted_entries_max = 1 << 20;
                cfg.uncommitted_bytes_max = 1 << 30;
                Node::new(cfg, RestartState::bootstrap(ids)).expect("valid config")
            })
            .collect();
        let mut c =
            Cluster { nodes, queue: VecDeque::new(), out: Vec::new(), leader: 0, next_request: 0 };
        // Tick node 0 until it campaigns, then settle.
        while c.nodes[0].role() != Role::Leader {
            c.queue.push_back((0, Input::Tick));
            c.run();
        }
        c
    }

    /// Delivers every queued input until the cluster is quiet.
    fn run(&mut self) {
        while self.step_one() {}
    }

    /// Proposes `batches` batches of `batch` entries sliced from one shared
    /// buffer, pipelined: a few inputs are delivered between proposals, as a
    /// runtime interleaves client and peer traffic.
    fn propose(&mut self, batches: usize, batch: usize, payload: &Bytes) {
        for _ in 0..batches {
            let commands: Commands =
                (0..batch).map(|k| payload.slice(k * 16..k * 16 + 16)).collect();
            self.next_request += 1;
            let request = RequestId(self.next_request);
            self.queue.push_back((self.leader, Input::Propose { request, commands }));
            for _ in 0..4 {
                self.step_one();
            }
        }
        self.run();
    }

    /// Delivers one queued input; false if there was none.
    fn step_one(&mut self) -> bool {
        let Some((i, input)) = self.queue.pop_front() else { return false };
        self.nodes[i].step_into(input, &mut self.out);
        for o in self.out.drain(..) {
            match o {
                Output::Send(m) => self.queue.push_back(((m.to.0 - 1) as usize, Input::Message(m))),
                Output::Persist(w) => self.queue.push_back((i, Input::Persisted { through: w.id })),
                Output::Apply { entries } => {
                    let index = entries.last().map_or(LogIndex::ZERO, |e| e.index);
                    self.queue.push_back((i, Input::Applied { index }))
                }
                // A snapshot is "taken" at once, so the log is compacted and
                // memory stays bounded as in a real deployment.
                Output::TakeSnapshot { meta } => {
                    self.queue.push_back((i, Input::SnapshotTaken { index: meta.index, ok: true }))
                }
                _ => {}
            }
        }
        true
    }

    fn applied_everywhere(&self) -> LogIndex {
        self.nodes.iter().map(|n| n.status().applied).min().unwrap_or(LogIndex::ZERO)
    }
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("commit_3_nodes");
    for &batch in &[1usize, 64] {
        let batches = 4096 / batch;
        let entries = (batches * batch) as u64;
        let payload = Bytes::from(vec![7u8; 16 * batch]);
        // Allocation count for one round, outside criterion's timing.
        {
            let mut cl = Cluster::new();
            cl.propose(batches, batch, &payload); // warm buffers
            let before_applied = cl.applied_everywhere();
            let before = ALLOCS.load(Ordering::Relaxed);
            cl.propose(batches, batch, &payload);
            let allocs = ALLOCS.load(Ordering::Relaxed) - before;
            let done = cl.applied_everywhere().0 - before_applied.0;
            assert_eq!(done, entries, "every proposed entry is applied on every node");
            eprintln!(
                "batch {batch}: {:.3} heap allocations per committed entry",
                allocs as f64 / entries as f64
            );
        }
        group.throughput(Throughput::Elements(entries));
        group.bench_with_input(BenchmarkId::new("batch", batch), &batch, |b, &batch| {
            let mut cl = Cluster::new();
            b.iter(|| cl.propose(batches, batch, &payload));
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20).measurement_time(std::time::Duration::from_secs(3));
    targets = bench
}
criterion_main!(benches);
