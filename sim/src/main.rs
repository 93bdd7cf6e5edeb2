//! The seed runner: `xraft-sim --seeds N [--start S] [--nodes K] [--jobs J]
//! [--quiet]` runs seeds `S..S+N`; `xraft-sim --seed S` replays one seed with
//! its full trace. Prints each failing seed with its violation and a trace
//! tail, then a summary with seeds/s, the ratio of simulated to wall time and
//! coverage counters. One seed in 100 runs twice and must leave the same
//! trace (determinism). Exits non-zero on any failure.
// The runner is the one impure part of the simulator: it reads the wall
// clock to report speed and may use threads to run seeds in parallel. Each
// seed still runs deterministically on one thread.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use xraft_sim::{Failure, SeedOptions, SeedRun, Stats, Violation};

const USAGE: &str = "usage: xraft-sim [--seeds N] [--start S] [--seed S] [--nodes K] [--jobs J] \
                     [--tail LINES] [--quiet] [--classic]";

struct Args {
    seeds: u64,
    start: u64,
    one: Option<u64>,
    nodes: Option<usize>,
    jobs: usize,
    tail: usize,
    quiet: bool,
    /// Keep the core's default flow-control bounds (replays seeds as they
    /// ran before the swarm drew them).
    classic: bool,
}

/// One job per core (each seed still runs on one thread, deterministically).
fn default_jobs() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        seeds: 100,
        start: 0,
        one: None,
        nodes: None,
        jobs: default_jobs(),
        tail: 60,
        quiet: false,
        classic: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut num = |name: &str| -> Result<u64, String> {
            let v = it.next().ok_or(format!("{name} needs a value"))?;
            v.parse::<u64>().map_err(|e| format!("{name} {v}: {e}"))
        };
        match flag.as_str() {
            "--seeds" => a.seeds = num("--seeds")?,
            "--start" => a.start = num("--start")?,
            "--seed" => a.one = Some(num("--seed")?),
            "--nodes" => {
                let k = num("--nodes")? as usize;
                if !(1..=16).contains(&k) {
                    return Err("--nodes must be 1..=16".into());
                }
                a.nodes = Some(k);
            }
            "--jobs" => a.jobs = (num("--jobs")? as usize).max(1),
            "--tail" => a.tail = num("--tail")? as usize,
            "--quiet" => a.quiet = true,
            "--classic" => a.classic = true,
            "-h" | "--help" => return Err(USAGE.into()),
            other => return Err(format!("unknown argument {other}\n{USAGE}")),
        }
    }
    Ok(a)
}

/// What one seed produced.
struct Outcome {
    seed: u64,
    nodes: usize,
    result: Result<(), Failure>,
    stats: Stats,
    hash: u64,
    tail: String,
    params: String,
}

fn run_one(seed: u64, opts: &SeedOptions, tail: usize) -> (Outcome, SeedRun) {
    let mut run = SeedRun::new(seed, opts);
    let result = match catch_unwind(AssertUnwindSafe(|| run.run())) {
        Ok(r) => r,
        Err(p) => {
            let message = p
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "non-string panic".into());
            Err(Failure { time_us: run.cluster.now_us(), violation: Violation::Panic { message } })
        }
    };
    let failed = result.is_err();
    let out = Outcome {
        seed,
        nodes: run.params.nodes,
        stats: run.cluster.stats(),
        hash: run.cluster.trace().hash(),
        tail: if failed { run.cluster.trace().tail_string(tail) } else { String::new() },
        params: if failed { format!("{:#?}", run.params) } else { String::new() },
        result,
    };
    (out, run)
}

fn print_failure(o: &Outcome, f: &Failure, opts: &SeedOptions) {
    println!(
        "FAIL seed {} ({} nodes) at {}.{:03} ms: {}",
        o.seed,
        o.nodes,
        f.time_us / 1000,
        f.time_us % 1000,
        f.violation
    );
    // The same options as the sweep, or the replay draws another run.
    let nodes = opts.nodes.map(|k| format!(" --nodes {k}")).unwrap_or_default();
    let classic = if opts.classic { " --classic" } else { "" };
    println!("  replay: cargo run -p xraft-sim --release -- --seed {}{nodes}{classic}", o.seed);
    println!("  params: {}", o.params.replace('\n', "\n  "));
    println!("  trace tail:\n{}", o.tail);
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    // Panics inside a seed are caught and reported with the seed.
    std::panic::set_hook(Box::new(|_| {}));
    if let Some(seed) = args.one {
        return replay(seed, &args);
    }
    let opts = SeedOptions {
        nodes: args.nodes,
        verbose: false,
        classic: args.classic,
        ..SeedOptions::default()
    };
    let next = AtomicU64::new(args.start);
    let end = args.start + args.seeds;
    let outcomes = Mutex::new(Vec::with_capacity(args.seeds as usize));
    let wall = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..args.jobs {
            s.spawn(|| loop {
                let seed = next.fetch_add(1, Ordering::Relaxed);
                if seed >= end {
                    break;
                }
                let (mut o, _) = run_one(seed, &opts, args.tail);
                // Determinism: one seed in a hundred runs twice and must
                // leave the same trace (replay by seed depends on it).
                if seed.is_multiple_of(100) && o.result.is_ok() {
                    let (again, _) = run_one(seed, &opts, args.tail);
                    if again.hash != o.hash {
                        let violation =
                            Violation::Nondeterministic { first: o.hash, second: again.hash };
                        o.result = Err(Failure { time_us: o.stats.sim_us, violation });
                    }
                }
                if let Err(f) = &o.result {
                    print_failure(&o, f, &opts);
                }
                outcomes.lock().expect("no panics while holding the lock").push(o);
            });
        }
    });
    let secs = wall.elapsed().as_secs_f64();
    let mut outcomes = outcomes.into_inner().expect("threads joined");
    outcomes.sort_by_key(|o| o.seed);
    let mut total = Stats::default();
    let mut failures = Vec::new();
    let mut hash = 0u64;
    for o in &outcomes {
        total.add(&o.stats);
        hash = hash.rotate_left(5) ^ o.hash;
        if o.result.is_err() {
            failures.push(o.seed);
        }
    }
    let n = outcomes.len() as f64;
    let sim_s = total.sim_us as f64 / 1e6;
    println!(
        "seeds {}..{}: {} run, {} failed in {secs:.2} s wall ({:.1} seeds/s, {} jobs); \
         simulated {sim_s:.0} s ({:.0}x wall); trace hash {hash:016x}",
        args.start,
        end,
        outcomes.len(),
        failures.len(),
        n / secs,
        args.jobs,
        sim_s / secs
    );
    if !args.quiet {
        print_stats(&total);
    }
    let missing = print_features(&total);
    if !failures.is_empty() {
        println!("failing seeds: {failures:?}");
        return ExitCode::FAILURE;
    }
    // Every feature must be exercised by a 1,000-seed batch.
    if args.seeds >= 1000 && !missing.is_empty() {
        println!("feature coverage missing in {} seeds: {missing:?}", args.seeds);
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}

/// Prints the feature coverage counters; returns the names of those at zero.
fn print_features(t: &Stats) -> Vec<&'static str> {
    let features = [
        ("snapshots taken", t.core.snapshots_taken),
        ("snapshots sent", t.core.snapshots_sent),
        ("snapshots installed", t.core.snapshots_installed),
        ("config changes committed", t.core.config_changes_committed),
        ("learners promoted", t.core.learners_promoted),
        ("transfers done", t.core.transfers_completed),
        ("reads served", t.core.reads_served),
        ("forwards", t.core.forwarded),
        ("lin ops checked", t.lin_ops_checked),
        ("wgl keys checked", t.wgl_keys_checked),
    ];
    let line: Vec<String> = features.iter().map(|(n, v)| format!("{n} {v}")).collect();
    println!("features: {}", line.join(" | "));
    features.iter().filter(|(_, v)| *v == 0).map(|(n, _)| *n).collect()
}

fn print_stats(t: &Stats) {
    println!(
        "coverage: events {} | msgs sent {} delivered {} lost {} cut {} to-down {} dup {} long-held {} \
         | persists {} fsyncs {} | crashes {} (losing writes {}, torn {}) restarts {} | partitions {} pauses {} \
         | leaders {} | proposals {} rejected {} acked {} overwritten {} | applied {} \
         | app snapshots {} chunks read {} restores {} | client writes {} ok {} reads {} ok {} \
         | errors: no-leader {} not-leader {} config-in-flight {} timeout {} leadership-lost {} \
         transferring {} other {} | changes proposed {} transfers requested {} | wgl ops {}",
        t.events,
        t.msgs_sent,
        t.msgs_delivered,
        t.msgs_lost,
        t.msgs_cut,
        t.msgs_to_down,
        t.msgs_duplicated,
        t.msgs_long_held,
        t.persists,
        t.fsyncs,
        t.crashes,
        t.crashes_losing_writes,
        t.torn_writes,
        t.restarts,
        t.partitions,
        t.pauses,
        t.leaders_elected,
        t.proposals,
        t.proposals_rejected,
        t.acked,
        t.proposals_lost,
        t.applied,
        t.app_snapshots,
        t.chunks_read,
        t.restores,
        t.client_writes,
        t.client_writes_ok,
        t.client_reads,
        t.client_reads_ok,
        t.err_no_leader,
        t.err_not_leader,
        t.err_config_in_flight,
        t.err_timeout,
        t.err_leadership_lost,
        t.err_transferring,
        t.err_other,
        t.changes_proposed,
        t.transfers_requested,
        t.wgl_ops_checked
    );
}

fn replay(seed: u64, args: &Args) -> ExitCode {
    let opts = SeedOptions {
        nodes: args.nodes,
        verbose: true,
        classic: args.classic,
        ..SeedOptions::default()
    };
    let wall = Instant::now();
    let (o, run) = run_one(seed, &opts, args.tail);
    let secs = wall.elapsed().as_secs_f64();
    println!("seed {seed}: {:#?}", run.params);
    if !args.quiet {
        for line in run.cluster.trace().full().unwrap_or(&[]) {
            println!("{line}");
        }
    }
    print_stats(&o.stats);
    print_features(&o.stats);
    println!(
        "seed {seed}: {} in {secs:.3} s wall, simulated {:.1} s; trace hash {:016x}",
        match &o.result {
            Ok(()) => "ok".to_string(),
            Err(f) => format!("FAIL at {} us: {}", f.time_us, f.violation),
        },
        o.stats.sim_us as f64 / 1e6,
        o.hash
    );
    if o.result.is_err() {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
