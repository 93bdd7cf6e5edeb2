//! Durable append throughput: `Storage::append` + `Storage::sync` of 16-byte
//! and 256-byte entries in batches of 1, 64 and 1,024, each beside the raw
//! rate of `write` + `fdatasync` of the same number of bytes (payload plus
//! record headers) to a plain file in the same directory, in the same run.
//!
//! The two are stepped alternately (one storage batch, one raw batch) so
//! both see the same disk conditions on a disk shared with other work.
//!
//! Run: `cargo bench -p xraft-storage --bench append`. Criterion prints its
//! usual per-case estimates; at the end a table sums every step (warm-up
//! included) per case: entries/s, payload MB/s, the ratio to the raw rate,
//! and the CPU spent outside the kernel per entry: the wall time inside
//! `Storage::append` (which encodes into the write buffer and makes no
//! system call unless a 64 MiB segment rolls or the 4 MiB buffer fills),
//! divided by the entries. `sync` adds one positioned write and one
//! `fdatasync` per batch and a few calls of bookkeeping. The directory is
//! `$XRAFT_BENCH_DIR` if set, else the system temp dir.
// A benchmark of file I/O: it uses files, clocks and the environment.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{BenchmarkId, Criterion, Throughput};
use xraft::{Entry, EntryKind, LogIndex, NodeId, Term};
use xraft_storage::{Options, Storage, RECORD_OVERHEAD_BYTES};

const SIZES: [usize; 2] = [16, 256];
const BATCHES: [usize; 3] = [1, 64, 1024];

/// Totals over every timed iteration of one case.
#[derive(Default, Clone, Copy)]
struct Totals {
    batches: u64,
    elapsed: Duration,
    /// Time inside `Storage::append` alone (it makes no system call while
    /// the write buffer has room): user-mode CPU of the hot path.
    append: Duration,
}

static TOTALS: Mutex<BTreeMap<(usize, usize, &'static str), Totals>> = Mutex::new(BTreeMap::new());

fn record(key: (usize, usize, &'static str), add: Totals) {
    let mut map = TOTALS.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let t = map.entry(key).or_default();
    t.batches += add.batches;
    t.elapsed += add.elapsed;
    t.append += add.append;
}

fn bench_dir() -> PathBuf {
    let base = std::env::var_os("XRAFT_BENCH_DIR").map_or_else(std::env::temp_dir, PathBuf::from);
    base.join(format!("xraft-storage-bench-{}", std::process::id()))
}

/// A storage and a raw file side by side, stepped alternately so both see
/// the same disk conditions (the disk is shared with other work).
struct Pair {
    storage: Storage,
    entries: Vec<Entry>,
    next: u64,
    file: File,
    buf: Vec<u8>,
    offset: u64,
}

impl Pair {
    fn new(dir: &Path, size: usize, batch: usize) -> Self {
        let (storage, _) =
            Storage::open(dir.join("storage"), Options::new(NodeId(1), 1)).expect("open storage");
        let data = Bytes::from(vec![0xa5u8; size]);
        let entries = (0..batch)
            .map(|_| Entry {
                index: LogIndex(0),
                term: Term(1),
                kind: EntryKind::Normal,
                data: data.clone(),
            })
            .collect();
        let path = dir.join("raw");
        let file = OpenOptions::new().write(true).create(true).truncate(true).open(&path);
        let buf = vec![0xa5u8; batch * (size + RECORD_OVERHEAD_BYTES)];
        Pair { storage, entries, next: 1, file: file.expect("raw file"), buf, offset: 0 }
    }

    /// One durable batch through the storage: (total time, time in append).
    fn xraft(&mut self) -> (Duration, Duration) {
        let start = Instant::now();
        for (k, e) in self.entries.iter_mut().enumerate() {
            e.index = LogIndex(self.next + k as u64);
        }
        self.next += self.entries.len() as u64;
        self.storage.append(&self.entries).expect("append");
        let appended = start.elapsed();
        self.storage.sync().expect("sync");
        (start.elapsed(), appended)
    }

    /// The same bytes with one write and one fdatasync.
    fn raw(&mut self) -> Duration {
        let start = Instant::now();
        self.file.write_all_at(&self.buf, self.offset).expect("write");
        self.file.sync_data().expect("fdatasync");
        self.offset += self.buf.len() as u64;
        start.elapsed()
    }

    /// `iters` alternating steps; returns the time of the `timed` side.
    fn run(&mut self, iters: u64, size: usize, batch: usize, timed: &str) -> Duration {
        let (mut x, mut r) = (Totals::default(), Totals::default());
        for _ in 0..iters {
            let (t, a) = self.xraft();
            x.elapsed += t;
            x.append += a;
            r.elapsed += self.raw();
        }
        x.batches = iters;
        r.batches = iters;
        record((size, batch, "xraft"), x);
        record((size, batch, "raw"), r);
        if timed == "xraft" {
            x.elapsed
        } else {
            r.elapsed
        }
    }
}

fn storage_case(c: &mut Criterion, dir: &Path, size: usize, batch: usize) {
    let case_dir = dir.join(format!("{size}-{batch}"));
    let mut pair = Pair::new(&case_dir, size, batch);
    let mut group = c.benchmark_group(format!("append_{size}B"));
    group.throughput(Throughput::Elements(batch as u64));
    for timed in ["xraft", "raw write+fdatasync"] {
        group.bench_function(BenchmarkId::new(timed, batch), |b| {
            b.iter_custom(|iters| pair.run(iters, size, batch, timed));
        });
    }
    group.finish();
    drop(pair);
    let _ = std::fs::remove_dir_all(&case_dir);
}

fn print_table() {
    let map = TOTALS.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    println!();
    println!("| entry | batch | xraft entries/s | xraft MB/s | raw entries/s | raw MB/s | xraft/raw | append() CPU ns/entry |");
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|");
    for size in SIZES {
        for batch in BATCHES {
            let (Some(x), Some(r)) =
                (map.get(&(size, batch, "xraft")), map.get(&(size, batch, "raw")))
            else {
                continue;
            };
            let n = |t: &Totals| (t.batches * batch as u64) as f64;
            let rate = |t: &Totals| n(t) / t.elapsed.as_secs_f64();
            let (xr, rr) = (rate(x), rate(r));
            let mb = |r: f64| r * size as f64 / 1e6;
            println!(
                "| {size} B | {batch} | {xr:.0} | {:.2} | {rr:.0} | {:.2} | {:.1} % | {:.0} |",
                mb(xr),
                mb(rr),
                100.0 * xr / rr,
                x.append.as_nanos() as f64 / n(x),
            );
        }
    }
    println!();
    println!("MB/s counts payload bytes; the raw file gets payload + {RECORD_OVERHEAD_BYTES} B per entry, the bytes xraft writes.");
}

fn main() {
    let dir = bench_dir();
    std::fs::create_dir_all(&dir).expect("bench dir");
    let mut c = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .configure_from_args();
    for size in SIZES {
        for batch in BATCHES {
            storage_case(&mut c, &dir, size, batch);
        }
    }
    c.final_summary();
    let _ = std::fs::remove_dir_all(&dir);
    print_table();
}
