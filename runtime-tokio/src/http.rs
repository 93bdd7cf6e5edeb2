//! The HTTP observability endpoint: Prometheus text at `/metrics`, JSON at
//! `/health`.
//!
//! Owns a deliberately tiny HTTP/1.1 server: one request per connection,
//! headers bounded to 8 KiB and read within 5 s, `Connection: close`, at
//! most `HTTP_CONNECTIONS_MAX` at once.
//! Invariant: a bad request gets a 4xx answer or a closed connection; the
//! node is never affected.

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};
use tracing::debug;

use crate::accept::{AcceptBackoff, HTTP_CONNECTIONS_MAX};
use crate::disk::SYNC_BUCKETS_MICROS;
use crate::kv::{role_name, Health, KvApp};
use crate::node::Report;
use crate::raft::RaftHandle;

const HEADER_BYTES_MAX: usize = 8 << 10;

/// Serves until shutdown.
pub(crate) async fn serve(
    listener: TcpListener,
    handle: RaftHandle<KvApp>,
    mut shutdown: watch::Receiver<bool>,
) {
    let slots = Arc::new(Semaphore::new(HTTP_CONNECTIONS_MAX));
    let mut backoff = AcceptBackoff::new("http");
    loop {
        let stream = tokio::select! {
            _ = shutdown.changed() => return,
            r = listener.accept() => match r {
                Ok((s, _)) => s,
                Err(e) => {
                    if backoff.failed(&e, &mut shutdown).await {
                        return;
                    }
                    continue;
                }
            },
        };
        backoff.ok();
        // Over the bound the connection is closed at once (scrapers retry).
        let Ok(permit) = Arc::clone(&slots).try_acquire_owned() else { continue };
        let handle = handle.clone();
        tokio::spawn(async move {
            let r = tokio::time::timeout(Duration::from_secs(5), one(stream, &handle)).await;
            if let Ok(Err(e)) = r {
                debug!(error = %e, "http request failed");
            }
            drop(permit);
        });
    }
}

async fn one(mut s: TcpStream, handle: &RaftHandle<KvApp>) -> std::io::Result<()> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        if buf.len() >= HEADER_BYTES_MAX {
            return respond(&mut s, "431 Request Header Fields Too Large", "text/plain", "").await;
        }
        let n = s.read(&mut chunk).await?;
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let line = buf.split(|&b| b == b'\r').next().unwrap_or_default();
    let mut parts = line.split(|&b| b == b' ');
    let (method, path) = (parts.next().unwrap_or_default(), parts.next().unwrap_or_default());
    if method != b"GET" {
        return respond(&mut s, "405 Method Not Allowed", "text/plain", "GET only\n").await;
    }
    let report = match handle.report().await {
        Ok(r) => r,
        Err(e) => {
            return respond(&mut s, "503 Service Unavailable", "text/plain", &format!("{e}\n"))
                .await
        }
    };
    match path {
        b"/metrics" => {
            let body = prometheus(&report);
            respond(&mut s, "200 OK", "text/plain; version=0.0.4", &body).await
        }
        b"/health" => {
            let h = Health::of(&report);
            let status = if h.healthy { "200 OK" } else { "503 Service Unavailable" };
            respond(&mut s, status, "application/json", &health_json(&h)).await
        }
        _ => respond(&mut s, "404 Not Found", "text/plain", "try /metrics or /health\n").await,
    }
}

async fn respond(s: &mut TcpStream, status: &str, ctype: &str, body: &str) -> std::io::Result<()> {
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).await?;
    s.write_all(body.as_bytes()).await?;
    s.shutdown().await
}

/// The health report as JSON.
pub(crate) fn health_json(h: &Health) -> String {
    format!(
        "{{\"node_id\":{},\"role\":\"{}\",\"term\":{},\"leader_id\":{},\"cluster_size\":{},\
         \"commit_index\":{},\"last_applied\":{},\"behind\":{},\"healthy\":{},\"uptime_seconds\":{}}}\n",
        h.node_id,
        h.role,
        h.term,
        h.leader.map_or_else(|| "null".to_owned(), |l| l.to_string()),
        h.cluster_size,
        h.commit_index,
        h.last_applied,
        h.behind,
        h.healthy,
        h.uptime.as_secs_f64()
    )
}

/// Prometheus text exposition of the status and counters.
pub(crate) fn prometheus(r: &Report) -> String {
    let s = &r.status;
    let m = &s.metrics;
    let mut t = String::with_capacity(4096);
    let node = s.id.0;
    let mut gauge = |name: &str, help: &str, v: u64| {
        let _ = write!(
            t,
            "# HELP xraft_{name} {help}\n# TYPE xraft_{name} gauge\nxraft_{name}{{node=\"{node}\"}} {v}\n"
        );
    };
    gauge("term", "Current term.", s.term.0);
    gauge("commit_index", "Commit index.", s.commit.0);
    gauge("applied_index", "Last applied index.", s.applied.0);
    gauge("last_index", "Last log index.", s.last_index.0);
    gauge("durable_index", "Last index known durable.", s.durable_index.0);
    gauge("snapshot_index", "Index of the latest durable snapshot.", s.snapshot_index.0);
    gauge("log_entries", "Entries held in memory.", s.log_entries as u64);
    gauge("is_leader", "1 if this node leads.", u64::from(role_name(s.role) == "leader"));
    gauge("leader_id", "Known leader (0: none).", s.leader.map_or(0, |l| l.0));
    gauge("voters", "Voting members.", s.membership.voters.len() as u64);
    gauge("learners", "Learners.", s.membership.learners.len() as u64);
    gauge("uptime_seconds", "Seconds since start.", r.uptime.as_secs());
    let mut counter = |name: &str, help: &str, v: u64| {
        let _ = write!(
            t,
            "# HELP xraft_{name}_total {help}\n# TYPE xraft_{name}_total counter\nxraft_{name}_total{{node=\"{node}\"}} {v}\n"
        );
    };
    counter("proposals", "Propose requests received.", m.proposals_total);
    counter("proposals_ok", "Proposals committed while leading.", m.proposals_ok);
    counter("proposals_failed", "Requests rejected.", m.proposals_failed);
    counter("proposals_forwarded", "Requests forwarded to the leader.", m.forwarded);
    counter("appends_sent", "Append messages sent.", m.appends_sent);
    counter("appends_received", "Append messages received.", m.appends_received);
    counter("messages_sent", "Messages sent.", m.messages_sent);
    counter("messages_received", "Messages received.", m.messages_received);
    counter("messages_dropped", "Peer messages dropped by the runtime.", r.messages_dropped);
    counter(
        "peer_disks_refused",
        "Peer connections refused: a member came back with another data directory.",
        r.peer_disks_refused,
    );
    counter("persists", "Persist outputs.", m.persists);
    counter("disk_syncs", "Group commits (one fsync each).", r.disk_syncs);
    counter("disk_writes", "Persist outputs made durable.", r.disk_writes);
    counter("disk_entries", "Log entries made durable.", r.disk_entries);
    counter("elections_started", "Elections started.", m.elections_started);
    counter("elections_won", "Elections won.", m.elections_won);
    counter("pre_votes_started", "PreVote rounds started.", m.pre_votes_started);
    counter("snapshots_taken", "Snapshots taken.", m.snapshots_taken);
    counter("snapshots_installed", "Snapshots installed from a leader.", m.snapshots_installed);
    counter("snapshots_sent", "Snapshots sent to followers.", m.snapshots_sent);
    counter("read_index_requests", "ReadIndex requests.", m.read_index_requests);
    counter(
        "messages_invalid",
        "Peer messages dropped as impossible from an honest peer.",
        m.messages_invalid,
    );
    counter("reads_served", "Linearizable reads released.", m.reads_served);
    counter(
        "transfers_completed",
        "Leadership transfers handed off whose target was then seen elected.",
        m.transfers_completed,
    );
    let h = &r.disk_sync;
    let _ = write!(
        t,
        "# HELP xraft_disk_sync_seconds Duration of the group commits' syncs.\n\
         # TYPE xraft_disk_sync_seconds histogram\n"
    );
    let mut cumulative = 0;
    for (i, n) in h.buckets.iter().enumerate() {
        cumulative += n;
        let le = SYNC_BUCKETS_MICROS
            .get(i)
            .map_or_else(|| "+Inf".to_owned(), |us| format!("{}", *us as f64 / 1e6));
        let _ = writeln!(
            t,
            "xraft_disk_sync_seconds_bucket{{node=\"{node}\",le=\"{le}\"}} {cumulative}"
        );
    }
    let _ = write!(
        t,
        "xraft_disk_sync_seconds_sum{{node=\"{node}\"}} {}\n\
         xraft_disk_sync_seconds_count{{node=\"{node}\"}} {cumulative}\n",
        h.sum_micros as f64 / 1e6
    );
    t
}
