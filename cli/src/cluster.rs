//! `xraft cluster`: the seed's stress test on a local three-node cluster.
//!
//! Five phases, each PASS or FAIL: (1) formation — node 1 founds the
//! cluster, nodes 2 and 3 join; (2) stress — SETs over RESP spread across
//! all nodes, reporting QPS and success rate; (3) consistency — sampled keys
//! read locally on every node once all have applied the leader's commit
//! index; (4) ReadIndex on a follower; (5) write then linearizable read on
//! every node, through every node.

use crate::at_least_one;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use bytes::Bytes;
use xraft_kv::resp::Reply;

use crate::load::{self, Op, Stop};
use crate::local::{wait_until, LocalCluster};
use crate::resp::Client;

/// `xraft cluster` options.
#[derive(clap::Args)]
pub struct Args {
    /// Nodes in the cluster.
    #[arg(long, default_value_t = 3)]
    nodes: u64,
    /// Requests in the stress phase.
    #[arg(long, default_value_t = 50_000)]
    ops: u64,
    /// Connections in the stress phase.
    #[arg(long, default_value_t = 50, value_parser = at_least_one())]
    clients: usize,
    /// Requests in flight per connection in the stress phase.
    #[arg(long, default_value_t = 1, value_parser = at_least_one())]
    pipeline: usize,
    /// Keys sampled in the consistency phase.
    #[arg(long, default_value_t = 100)]
    samples: u64,
}

struct Report {
    results: Vec<(&'static str, bool)>,
}

impl Report {
    fn phase(&mut self, name: &'static str, ok: bool) {
        println!("{}", if ok { "PASS" } else { "FAIL" });
        println!();
        self.results.push((name, ok));
    }
}

/// Runs the five phases; fails if any does.
pub async fn run(a: Args) -> Result<()> {
    println!("=== Raft Cluster Test Suite ===");
    println!("(three durable nodes on loopback: every write is fsync'd on a quorum)");
    println!();
    let mut report = Report { results: Vec::new() };

    println!("=== Phase 1: Cluster Formation ===");
    let t = Instant::now();
    let cluster = LocalCluster::start(a.nodes, |line| println!("{line}")).await?;
    for n in &cluster.nodes {
        let h = n.health().await?;
        println!(
            "  node {} {:<9} term {} leader {} peer {} client {}",
            h.node_id,
            h.role,
            h.term,
            h.leader.map_or("-".into(), |l| l.to_string()),
            n.peer_addr(),
            n.client_addr().map_or("-".into(), |c| c.to_string())
        );
    }
    println!("Formed in {:.0} ms", t.elapsed().as_secs_f64() * 1000.0);
    report.phase("formation", true);

    println!("=== Phase 2: Stress Test ===");
    let spec = load::Spec {
        addrs: cluster.client_addrs(),
        clients: a.clients,
        pipeline: a.pipeline,
        value_size: 16,
        keyspace: a.ops.max(1),
        prefix: "stress:".into(),
        op: Op::Set,
        stop: Stop::Count(a.ops),
        progress: false,
    };
    let out = load::run(spec).await?;
    let success = 100.0 * (out.ops - out.errors.min(out.ops)) as f64 / a.ops.max(1) as f64;
    println!("Clients:      {} over {} nodes, pipeline {}", a.clients, a.nodes, a.pipeline);
    println!("Duration:     {:.0}ms", out.elapsed.as_secs_f64() * 1000.0);
    println!("Total ops:    {}", out.ops);
    println!("QPS:          {:.2}", out.qps());
    println!("Success rate: {success:.2}%");
    println!(
        "Latency:      p50 {:.3} ms, p99 {:.3} ms, p999 {:.3} ms",
        out.ms(0.5),
        out.ms(0.99),
        out.ms(0.999)
    );
    if let Some(e) = &out.first_error {
        println!("First error:  {e}");
    }
    report.phase("stress", out.errors == 0 && out.ops == a.ops);

    println!("=== Phase 3: Data Consistency Verification ===");
    let ok = consistency(&cluster, a.samples, a.ops).await?;
    report.phase("consistency", ok);

    println!("=== Phase 4: ReadIndex Test ===");
    let leader_id = cluster.leader().await?.id();
    let follower = cluster.nodes.iter().find(|n| n.id() != leader_id).unwrap_or(&cluster.nodes[0]);
    let ok = match follower.handle().read_index().await {
        Ok(index) => {
            println!(
                "ReadIndex succeeded on follower node {}: readIndex={}",
                follower.id(),
                index.0
            );
            true
        }
        Err(e) => {
            println!("ReadIndex failed: {e}");
            false
        }
    };
    report.phase("readindex", ok);

    println!("=== Phase 5: Write-then-Read Verification ===");
    let ok = write_then_read(&cluster).await?;
    report.phase("write-then-read", ok);

    cluster.shutdown().await;
    let passed = report.results.iter().filter(|(_, ok)| *ok).count();
    println!("=== Summary: {passed}/{} phases passed ===", report.results.len());
    for (name, ok) in &report.results {
        println!("  {:<16} {}", name, if *ok { "PASS" } else { "FAIL" });
    }
    if passed != report.results.len() {
        anyhow::bail!("{} phase(s) failed", report.results.len() - passed);
    }
    Ok(())
}

async fn consistency(cluster: &LocalCluster, samples: u64, keyspace: u64) -> Result<bool> {
    let leader = cluster.leader().await?;
    let commit = leader.health().await?.commit_index;
    wait_until(Duration::from_secs(20), "every node to apply the leader's commit", || async {
        for n in &cluster.nodes {
            if n.health().await.map_or(true, |h| h.last_applied < commit) {
                return false;
            }
        }
        true
    })
    .await?;
    println!("Verifying {samples} sampled keys across all nodes...");
    let mut bad = 0;
    let mut present = 0;
    let step = (keyspace / samples.max(1)).max(1);
    for i in 0..samples {
        let key = Bytes::from(format!("stress:{:012}", (i * step * 7919) % keyspace.max(1)));
        let mut values = Vec::new();
        for n in &cluster.nodes {
            values.push(n.get(key.clone()).await?);
        }
        if values[0].is_some() {
            present += 1;
        }
        if values.windows(2).any(|w| w[0] != w[1]) {
            bad += 1;
            println!("  INCONSISTENT {key:?}: {values:?}");
        }
    }
    if bad == 0 {
        println!(
            "✅ All checked keys are CONSISTENT across all nodes! ({present} of {samples} present)"
        );
    } else {
        println!("❌ {bad} of {samples} keys differ between nodes");
    }
    Ok(bad == 0)
}

async fn write_then_read(cluster: &LocalCluster) -> Result<bool> {
    let addrs = cluster.client_addrs();
    let mut all = true;
    for (i, writer) in addrs.iter().enumerate() {
        let key = format!("wtr:{i}");
        let value = format!("written-through-{writer}-{}", Instant::now().elapsed().as_nanos());
        let mut c = Client::connect(writer).await?;
        let r = c.call(&["SET", &key, &value]).await.context("SET")?;
        if r != Reply::ok() {
            println!("  SET via {writer} failed: {r:?}");
            all = false;
            continue;
        }
        for reader in &addrs {
            let mut c = Client::connect(reader).await?;
            let got = c.call(&["GET", &key]).await.context("GET")?;
            let ok = got == Reply::Bulk(Bytes::from(value.clone()));
            all &= ok;
            if ok {
                println!("  {writer} -> {reader}: ✓ Value matches");
            } else {
                println!("  {writer} -> {reader}: ✗ got {got:?}");
            }
        }
    }
    Ok(all)
}
