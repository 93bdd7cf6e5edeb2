//! `xraft`: run a node, a local three-node demo cluster, or a benchmark.
//!
//! - `xraft serve`: one node (peer, client and HTTP ports, data directory;
//!   found a cluster with `--members` or join one with `--join`).
//! - `xraft cluster`: the main demo. Starts three nodes on loopback with data
//!   in a temporary directory and runs the seed's five phases: formation
//!   with joins, a stress test, consistency across nodes, ReadIndex, and
//!   write-then-read on every node; prints a report; exits non-zero if any
//!   phase fails.
//! - `xraft bench`: a RESP load generator with a progress bar and latency
//!   percentiles, against given nodes or a local cluster it starts.
// A command-line program: it reads clocks, sockets and files by design.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]
#![forbid(unsafe_code)]

mod cluster;
mod load;
mod local;
mod resp;
mod serve;

use std::time::Duration;

use anyhow::Result;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "xraft", version, about = "xraft: Raft with a replicated KV store")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run one node.
    Serve(serve::Args),
    /// Start a local three-node cluster and run the five-phase check.
    Cluster(cluster::Args),
    /// Generate RESP load and report throughput and latency.
    Bench(BenchArgs),
}

/// `xraft bench` options.
#[derive(clap::Args)]
struct BenchArgs {
    /// Client port(s) to load (repeatable); none: start a local cluster and
    /// load its leader.
    #[arg(long)]
    addr: Vec<String>,
    /// Connections.
    #[arg(short = 'c', long, default_value_t = 50, value_parser = at_least_one())]
    clients: usize,
    /// Requests in flight per connection.
    #[arg(short = 'P', long, default_value_t = 16, value_parser = at_least_one())]
    pipeline: usize,
    /// Value size in bytes.
    #[arg(short = 'd', long, default_value_t = 3)]
    value_size: usize,
    /// Run for this many seconds (unless --requests is given).
    #[arg(long, default_value_t = 10)]
    duration: u64,
    /// Stop after this many requests.
    #[arg(short = 'n', long)]
    requests: Option<u64>,
    /// Distinct keys.
    #[arg(short = 'r', long, default_value_t = 100_000)]
    keyspace: u64,
    /// Request kind.
    #[arg(long, value_enum, default_value_t = load::Op::Set)]
    op: load::Op,
}

/// A count of connections or of requests in flight: zero would do no work
/// (and would spin), so clap refuses it.
pub(crate) fn at_least_one() -> clap::builder::RangedU64ValueParser<usize> {
    clap::builder::RangedU64ValueParser::<usize>::new().range(1..)
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    let default_level = match cli.cmd {
        Cmd::Serve(_) => "info",
        _ => "warn",
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| default_level.into()),
        )
        .with_writer(std::io::stderr)
        .init();
    // Serving needs descriptors (clients, peers, segments): take what the
    // hard limit allows, as Redis does; the client port caps its
    // connections under what is left.
    if let Some(limit) = xraft_tokio::raise_fd_limit() {
        tracing::debug!(limit, "open-file limit");
    }
    let threads = match &cli.cmd {
        Cmd::Serve(a) => a.threads,
        _ => 0,
    };
    let rt = match threads {
        // One thread for the node, its ports and its apply task (the disk
        // thread is separate): fewest cross-thread wake-ups.
        1 => tokio::runtime::Builder::new_current_thread().enable_all().build()?,
        0 => tokio::runtime::Builder::new_multi_thread().enable_all().build()?,
        n => tokio::runtime::Builder::new_multi_thread().worker_threads(n).enable_all().build()?,
    };
    rt.block_on(async move {
        match cli.cmd {
            Cmd::Serve(a) => serve::run(a).await,
            Cmd::Cluster(a) => cluster::run(a).await,
            Cmd::Bench(a) => bench(a).await,
        }
    })
}

async fn bench(a: BenchArgs) -> Result<()> {
    let local = if a.addr.is_empty() {
        eprintln!("no --addr: starting a local three-node cluster (durable, fsync)");
        Some(local::LocalCluster::start(3, |_| {}).await?)
    } else {
        None
    };
    let addrs = match &local {
        Some(c) => vec![c.leader().await?.client_addr().map(|a| a.to_string()).unwrap_or_default()],
        None => a.addr.clone(),
    };
    let stop = match a.requests {
        Some(n) => load::Stop::Count(n),
        None => load::Stop::Duration(Duration::from_secs(a.duration)),
    };
    let spec = load::Spec {
        addrs: addrs.clone(),
        clients: a.clients,
        pipeline: a.pipeline,
        value_size: a.value_size,
        keyspace: a.keyspace,
        prefix: "key:".into(),
        op: a.op,
        stop,
        progress: true,
    };
    println!(
        "xraft bench: {:?} against {}, {} clients, pipeline {}, {}-byte values",
        a.op,
        addrs.join(","),
        spec.clients,
        spec.pipeline,
        a.value_size
    );
    let out = load::run(spec).await?;
    println!("requests:   {}", out.ops);
    println!("errors:     {}", out.errors);
    if let Some(e) = &out.first_error {
        println!("first error: {e}");
    }
    println!("duration:   {:.2} s", out.elapsed.as_secs_f64());
    println!("throughput: {:.0} requests/s", out.qps());
    println!(
        "latency:    p50 {:.3} ms, p99 {:.3} ms, p999 {:.3} ms, max {:.3} ms",
        out.ms(0.50),
        out.ms(0.99),
        out.ms(0.999),
        out.hist.max() as f64 / 1000.0
    );
    if let Some(c) = local {
        c.shutdown().await;
    }
    if out.errors > 0 {
        anyhow::bail!("{} requests failed", out.errors);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_clients_or_pipeline_is_refused() {
        for args in [
            ["xraft", "cluster", "--pipeline", "0"],
            ["xraft", "cluster", "--clients", "0"],
            ["xraft", "bench", "-P", "0"],
            ["xraft", "bench", "-c", "0"],
        ] {
            assert!(Cli::try_parse_from(args).is_err(), "{args:?} accepted");
        }
        assert!(Cli::try_parse_from(["xraft", "cluster", "--pipeline", "4"]).is_ok());
    }
}
