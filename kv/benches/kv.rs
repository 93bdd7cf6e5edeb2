//! Criterion benchmarks of the KV state machine and the RESP codec.
//!
//! - `apply_set/<variant>/<watchers>`: applying a batch of 10,000 postcard
//!   SET commands (16-byte values, keys `key.NNNNNN` cycling over 100,000
//!   keys) to a store with 0, 100 or 10,000 watchers, then draining every
//!   ready watcher's queue as a runtime would. Variants:
//!   - `none`: no watchers;
//!   - `exact-miss`: watchers on `key.NNNNNNx`, one byte longer than the
//!     applied keys, never equal (one hash lookup per SET);
//!   - `prefix-miss`: watchers on `key.NNNNNN.**`, whose prefixes share every
//!     byte of an applied key's path in the trie but never match (the
//!     deepest possible non-matching walk);
//!   - `exact-hit`: watchers on `key.<10·j>` (10,000 watchers: 10 % of SETs
//!     match one watcher; 100: 0.1 %);
//!   - `prefix-hit`: watchers on `key.<j as 5 digits>**` (10,000 watchers:
//!     every SET matches one watcher; 100: 1 %).
//!
//!   Each watcher benchmark interleaves, batch by batch, a batch on a
//!   watcher-free store with the batch it measures, and the run ends by
//!   printing throughput with watchers as a percentage of throughput without,
//!   from those interleaved batches (robust to load from other processes,
//!   which shifts sequential benchmarks against each other).
//! - `resp/*`: a redis-benchmark-like pipeline of 1,000
//!   `SET key:<12 digits> xxx` requests: `parse_frame` alone (MB/s), and the
//!   server path `split_command` + `Command::parse` (commands/s).
//!
//! - `snapshot/100k`: taking and reading out a snapshot of 100,000 keys.
//! - `snapshot/first_set_after_freeze/100k`: the first SET after a snapshot
//!   froze 100,000 keys (the copy-on-write it pays).
//!
//! Run: `cargo bench -p xraft-kv --bench kv -- --measurement-time 3 --warm-up-time 1`.
// criterion_group! generates an undocumented `pub fn`. A benchmark times
// itself (iter_custom): the clock rule is for the pure crate, not its benches.
#![allow(missing_docs, clippy::disallowed_methods, clippy::disallowed_types)]

use bytes::{Bytes, BytesMut};
use std::time::Duration;

use criterion::measurement::{Measurement, WallTime};
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use xraft::{LogIndex, StateMachine};
use xraft_kv::resp::{encode_command, parse_frame, split_command, Command, RespLimits};
use xraft_kv::{KvCommand, KvRequest, KvStore, Pattern, WatchId, WatchItem};

const BATCH: usize = 10_000;
const KEYS: usize = 100_000;

fn set_commands() -> Vec<Bytes> {
    // A fixed LCG spreads the keys without a dependency on a RNG crate.
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    (0..BATCH)
        .map(|_| {
            x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
            let n = (x >> 33) as usize % KEYS;
            let cmd = KvCommand::Set {
                key: Bytes::from(format!("key.{n:06}")),
                value: Bytes::from_static(b"0123456789abcdef"),
            };
            KvRequest::new(cmd).encode()
        })
        .collect()
}

fn patterns(variant: &str, watchers: usize) -> Vec<Vec<u8>> {
    (0..watchers)
        .map(|j| match variant {
            "exact-miss" => format!("key.{j:06}x"),
            "prefix-miss" => format!("key.{j:06}.**"),
            "exact-hit" => format!("key.{:06}", j * 10),
            "prefix-hit" => format!("key.{j:05}**"),
            _ => unreachable!("unknown variant"),
        })
        .map(String::into_bytes)
        .collect()
}

fn bench_apply(c: &mut Criterion) {
    let commands = set_commands();
    let mut group = c.benchmark_group("apply_set");
    group.throughput(Throughput::Elements(BATCH as u64));
    let mut baseline = Batcher::new(Vec::new());
    group.bench_function("none/0", |b| b.iter(|| baseline.run(&commands)));
    let mut ratios = Vec::new();
    for variant in ["exact-miss", "prefix-miss", "exact-hit", "prefix-hit"] {
        for watchers in [100, 10_000] {
            let mut store = Batcher::new(patterns(variant, watchers));
            let (mut without, mut with) = (Duration::ZERO, Duration::ZERO);
            // Each sample times a batch on the watcher-free store and one on
            // this store back to back, so load from other processes hits
            // both alike; criterion reports this store's time.
            group.bench_function(format!("{variant}/{watchers}"), |b| {
                b.iter_custom(|iters| {
                    let clock = WallTime;
                    let mut total = Duration::ZERO;
                    for _ in 0..iters {
                        let start = clock.start();
                        baseline.run(&commands);
                        without += clock.end(start);
                        let start = clock.start();
                        store.run(&commands);
                        let took = clock.end(start);
                        with += took;
                        total += took;
                    }
                    total
                })
            });
            ratios.push((variant, watchers, without.as_secs_f64() / with.as_secs_f64()));
        }
    }
    group.finish();
    println!("\nthroughput with watchers / without, interleaved batch by batch in this run:");
    for (variant, watchers, ratio) in ratios {
        println!("  {variant:>12}/{watchers:<6} {:6.1} %", ratio * 100.0);
    }
}

/// A store, its next log index, and the buffers a runtime reuses to drain
/// watcher queues after each batch.
struct Batcher {
    store: KvStore,
    index: u64,
    ready: Vec<WatchId>,
    items: Vec<WatchItem>,
}

impl Batcher {
    fn new(patterns: Vec<Vec<u8>>) -> Self {
        let mut store = KvStore::default();
        for p in patterns {
            store.watches_mut().watch(Pattern::parse(&p)).expect("within bounds");
        }
        Batcher { store, index: 0, ready: Vec::new(), items: Vec::new() }
    }

    /// Applies the batch, then drains every ready watcher as a runtime would.
    fn run(&mut self, commands: &[Bytes]) {
        for cmd in commands {
            self.index += 1;
            std::hint::black_box(self.store.apply(LogIndex(self.index), cmd));
        }
        self.store.watches_mut().take_ready(&mut self.ready);
        for &id in &self.ready {
            self.items.clear();
            let _ = self.store.watches_mut().drain_into(id, usize::MAX, &mut self.items);
        }
    }
}

fn redis_benchmark_pipeline() -> Vec<u8> {
    let mut wire = Vec::new();
    let mut x: u64 = 7;
    for _ in 0..1000 {
        x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
        let key = format!("key:{:012}", (x >> 20) % 1_000_000_000_000);
        encode_command(&["SET", key.as_str(), "xxx"], &mut wire);
    }
    wire
}

fn bench_resp(c: &mut Criterion) {
    let wire = redis_benchmark_pipeline();
    let limits = RespLimits::default();
    let mut group = c.benchmark_group("resp");
    group.throughput(Throughput::Bytes(wire.len() as u64));
    group.bench_function("parse_frame/1000xSET", |b| {
        b.iter(|| {
            let mut rest = &wire[..];
            let mut n = 0;
            while let Ok(Some(frame)) = parse_frame(rest, &limits) {
                n += frame.args.len();
                rest = &rest[frame.consumed..];
            }
            std::hint::black_box(n)
        })
    });
    group.throughput(Throughput::Elements(1000));
    group.bench_function("split_command+Command::parse/1000xSET", |b| {
        b.iter_batched(
            || BytesMut::from(&wire[..]),
            |mut buf| {
                let mut n = 0;
                while let Ok(Some(args)) = split_command(&mut buf, &limits) {
                    if let Ok(Command::Set { .. }) = Command::parse(&args) {
                        n += 1;
                    }
                }
                std::hint::black_box(n)
            },
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

/// A snapshot of 100,000 redis-benchmark-like keys (`key:<12 digits>`,
/// 3-byte values), read out whole: freezing, sorting the keys, encoding.
fn bench_snapshot(c: &mut Criterion) {
    let mut store = KvStore::default();
    for (i, n) in
        (0..KEYS as u64).map(|n| n.wrapping_mul(2_654_435_761) % 1_000_000_000_000).enumerate()
    {
        let cmd = KvCommand::Set {
            key: Bytes::from(format!("key:{n:012}")),
            value: Bytes::from_static(b"xxx"),
        };
        store.apply(LogIndex(i as u64 + 1), &KvRequest::new(cmd).encode());
    }
    let mut group = c.benchmark_group("snapshot");
    group.throughput(Throughput::Elements(KEYS as u64));
    group.bench_function("100k", |b| b.iter(|| store.snapshot().into_vec().len()));
    // The copy-on-write a snapshot leaves: the first SET after freezing the
    // state (the frozen copy is dropped afterwards, outside the timing).
    let mut index = KEYS as u64;
    group.throughput(Throughput::Elements(1));
    let cmd = KvRequest::new(KvCommand::Set {
        key: Bytes::from_static(b"key:000000000001"),
        value: Bytes::from_static(b"yyy"),
    })
    .encode();
    group.bench_function("first_set_after_freeze/100k", |b| {
        b.iter_custom(|iters| {
            let mut total = std::time::Duration::ZERO;
            for _ in 0..iters {
                let frozen = store.snapshot();
                index += 1;
                let t = std::time::Instant::now();
                store.apply(LogIndex(index), &cmd);
                total += t.elapsed();
                drop(frozen);
            }
            total
        })
    });
    group.finish();
}

criterion_group!(benches, bench_apply, bench_resp, bench_snapshot);
criterion_main!(benches);
