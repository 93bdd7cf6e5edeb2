//! The load generator behind `xraft bench` and the stress phase of
//! `xraft cluster`: many RESP connections, each keeping a pipeline of
//! requests in flight, with latency recorded per request in an HDR
//! histogram (a request's latency is its pipeline batch's round trip, as
//! `redis-benchmark` counts it).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Result;
use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressStyle};
use xraft_kv::resp::Reply;

use crate::resp::Client;

/// Which requests to send.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Op {
    /// `SET key value`.
    Set,
    /// `GET key` (linearizable).
    Get,
    /// Alternating SET and GET.
    Mixed,
}

/// When to stop.
#[derive(Clone, Copy, Debug)]
pub enum Stop {
    /// After this many requests in total.
    Count(u64),
    /// After this long.
    Duration(Duration),
}

/// A load to generate.
#[derive(Clone, Debug)]
pub struct Spec {
    /// Client ports; connections are spread over them round-robin.
    pub addrs: Vec<String>,
    /// Connections.
    pub clients: usize,
    /// Requests in flight per connection.
    pub pipeline: usize,
    /// Bytes per value.
    pub value_size: usize,
    /// Distinct keys.
    pub keyspace: u64,
    /// Key prefix.
    pub prefix: String,
    /// Request kind.
    pub op: Op,
    /// Stop condition.
    pub stop: Stop,
    /// Show a progress bar.
    pub progress: bool,
}

/// What a load run measured.
pub struct Outcome {
    /// Requests answered.
    pub ops: u64,
    /// Requests answered with an error reply.
    pub errors: u64,
    /// The first error reply or failure seen.
    pub first_error: Option<String>,
    /// Wall time.
    pub elapsed: Duration,
    /// Latencies in microseconds.
    pub hist: Histogram<u64>,
}

impl Outcome {
    /// Requests per second.
    pub fn qps(&self) -> f64 {
        self.ops as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// A latency percentile in milliseconds.
    pub fn ms(&self, q: f64) -> f64 {
        self.hist.value_at_quantile(q) as f64 / 1000.0
    }
}

/// Runs the load.
pub async fn run(spec: Spec) -> Result<Outcome> {
    let claimed = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let bar = spec.progress.then(|| progress_bar(&spec));
    let ticker = bar.clone().map(|bar| {
        let (done, stop) = (Arc::clone(&done), spec.stop);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(100)).await;
                let n = done.load(Ordering::Relaxed);
                let secs = start.elapsed().as_secs_f64();
                match stop {
                    Stop::Count(_) => bar.set_position(n),
                    Stop::Duration(_) => bar.set_position((secs * 1000.0) as u64),
                }
                bar.set_message(format!("{n} requests, {:.0} req/s", n as f64 / secs.max(1e-9)));
            }
        })
    });
    let mut tasks = Vec::with_capacity(spec.clients);
    for i in 0..spec.clients {
        let addr = spec.addrs[i % spec.addrs.len()].clone();
        let (spec, claimed, done) = (spec.clone(), Arc::clone(&claimed), Arc::clone(&done));
        tasks.push(tokio::spawn(async move { client(i, addr, spec, claimed, done, start).await }));
    }
    let mut out = Outcome {
        ops: 0,
        errors: 0,
        first_error: None,
        elapsed: Duration::ZERO,
        hist: Histogram::new_with_bounds(1, 60_000_000, 3)?,
    };
    for t in tasks {
        let r = t.await?;
        out.ops += r.ops;
        out.errors += r.errors;
        if out.first_error.is_none() {
            out.first_error = r.first_error;
        }
        out.hist.add(&r.hist)?;
    }
    out.elapsed = start.elapsed();
    if let Some(t) = ticker {
        t.abort();
    }
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    Ok(out)
}

fn progress_bar(spec: &Spec) -> ProgressBar {
    let (len, unit) = match spec.stop {
        Stop::Count(n) => (n, "{pos}/{len}"),
        Stop::Duration(d) => (d.as_millis() as u64, "{elapsed}"),
    };
    let bar = ProgressBar::new(len);
    let template = format!("{{bar:40}} {unit} {{msg}}");
    if let Ok(style) = ProgressStyle::with_template(&template) {
        bar.set_style(style);
    }
    bar
}

async fn client(
    i: usize,
    addr: String,
    spec: Spec,
    claimed: Arc<AtomicU64>,
    done: Arc<AtomicU64>,
    start: Instant,
) -> Outcome {
    let mut out = Outcome {
        ops: 0,
        errors: 0,
        first_error: None,
        elapsed: Duration::ZERO,
        hist: Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid bounds"),
    };
    let mut c = match Client::connect(&addr).await {
        Ok(c) => c,
        Err(e) => {
            out.first_error = Some(e.to_string());
            out.errors += 1;
            return out;
        }
    };
    let value = vec![b'x'; spec.value_size];
    let mut rng = 0x9E37_79B9_7F4A_7C15u64 ^ (i as u64 + 1).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    let mut seq = 0u64;
    loop {
        let n = match spec.stop {
            Stop::Count(total) => {
                let from = claimed.fetch_add(spec.pipeline as u64, Ordering::Relaxed);
                if from >= total {
                    break;
                }
                (total - from).min(spec.pipeline as u64)
            }
            Stop::Duration(d) => {
                if start.elapsed() >= d {
                    break;
                }
                spec.pipeline as u64
            }
        };
        for _ in 0..n {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            let key = format!("{}{:012}", spec.prefix, rng % spec.keyspace.max(1));
            let set = match spec.op {
                Op::Set => true,
                Op::Get => false,
                Op::Mixed => seq.is_multiple_of(2),
            };
            seq += 1;
            if set {
                c.queue(&[b"SET".as_slice(), key.as_bytes(), &value]);
            } else {
                c.queue(&[b"GET".as_slice(), key.as_bytes()]);
            }
        }
        let t0 = Instant::now();
        if let Err(e) = c.flush().await {
            out.first_error.get_or_insert(e.to_string());
            out.errors += n;
            break;
        }
        let mut failed = false;
        for _ in 0..n {
            match c.reply().await {
                Ok(Reply::Error(e)) => {
                    out.errors += 1;
                    out.first_error.get_or_insert(e);
                }
                Ok(_) => {}
                Err(e) => {
                    out.errors += 1;
                    out.first_error.get_or_insert(e.to_string());
                    failed = true;
                    break;
                }
            }
        }
        if failed {
            break;
        }
        let us = (t0.elapsed().as_micros() as u64).max(1);
        let _ = out.hist.record_n(us, n);
        out.ops += n;
        done.fetch_add(n, Ordering::Relaxed);
    }
    out
}
