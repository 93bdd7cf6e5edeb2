//! The RESP client port: `redis-cli`, `redis-benchmark` and Redis client
//! libraries talk to any node here.
//!
//! Owns the accept loop (bounded by `client_connections_max`) and the
//! connection handler. Each read parses every complete pipelined command;
//! consecutive data commands form a group: a group of reads only (GET, MGET,
//! EXISTS) is served by ONE ReadIndex round then local reads, a group with
//! any write goes through the log as ONE proposal of many entries (reads in
//! it are answered from the log, so program order holds); the replies of one
//! read go out together, in writes of about 64 KiB (a larger reply, such as
//! an MGET of many large values, is streamed out in such pieces rather than
//! held whole). Requests are parsed with a [`RequestParser`] per connection,
//! so one arriving in many small pieces is scanned once, not once per piece.
//! Follower nodes forward to the leader (in the core). Invariants: replies
//! are in request order, one per request; a connection buffers at most
//! about 64 KiB plus one value of replies; a malformed request is answered
//! `-ERR Protocol error` and the connection is closed; a bad command is an
//! error reply and the connection stays usable.
//!
//! Bounds on what clients can hold (all in [`Limits`]): request bytes
//! buffered past 64 KiB per connection draw on one shared budget
//! (`client_input_bytes_max`), waited for at most the request timeout; a
//! connection whose buffered requests make no progress (no request
//! completes) within `client_request_timeout_ms` is closed, as is one
//! whose replies cannot be written for `client_write_timeout_ms`, and,
//! if set, one idle for `client_idle_timeout_ms`; a read buffer a large
//! request grew is given back once empty.

use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};
use tokio::time::Instant;
use tracing::{debug, warn};
use xraft::{Commands, NodeId, ProposeError};
use xraft_kv::resp::{Command, RaftCommand, Reply, RequestParser};
use xraft_kv::{KvCommand, KvRequest, KvStore};

use crate::accept::{
    fd_budgets, keepalive, write_all_progress, AcceptBackoff, BufferShare, LogThrottle,
    BUFFER_FREE_BYTES,
};
use crate::config::Limits;
use crate::error::Error;
use crate::kv::{nodes_of, role_name, Health, KvApp};
use crate::raft::RaftHandle;

/// Accepts client connections until shutdown.
pub(crate) async fn serve(
    listener: TcpListener,
    handle: RaftHandle<KvApp>,
    limits: Limits,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut max = limits.client_connections_max;
    let budgets = fd_budgets(max, limits.peer_connections_max);
    if let Some((budget, _)) = budgets.filter(|(b, _)| *b < max) {
        warn!(
            configured = max,
            allowed = budget,
            "client_connections_max lowered to fit the open-file limit"
        );
        max = budget;
    }
    let slots = Arc::new(Semaphore::new(max));
    let input = Arc::new(Semaphore::new(limits.client_input_bytes_max.min(Semaphore::MAX_PERMITS)));
    let limits = Arc::new(limits);
    let mut backoff = AcceptBackoff::new("client");
    loop {
        let (mut stream, remote) = tokio::select! {
            _ = shutdown.changed() => return,
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    if backoff.failed(&e, &mut shutdown).await {
                        return;
                    }
                    continue;
                }
            },
        };
        backoff.ok();
        let Ok(permit) = Arc::clone(&slots).try_acquire_owned() else {
            let _ = stream.write_all(b"-ERR max number of clients reached\r\n").await;
            continue;
        };
        let (handle, limits, mut shutdown) =
            (handle.clone(), Arc::clone(&limits), shutdown.clone());
        let input = BufferShare::new(&input, limits.client_input_bytes_max);
        let slots = Arc::clone(&slots);
        tokio::spawn(async move {
            let clients = Clients { slots: &slots, max };
            tokio::select! {
                _ = shutdown.changed() => {}
                r = connection(stream, &handle, &limits, input, clients) => {
                    if let Err(e) = r {
                        debug!(%remote, error = %e, "client connection closed");
                    }
                }
            }
            drop(permit);
        });
    }
}

/// The connection slots, for `INFO`'s `connected_clients`.
#[derive(Clone, Copy)]
struct Clients<'a> {
    slots: &'a Semaphore,
    max: usize,
}

impl Clients<'_> {
    fn connected(&self) -> usize {
        self.max.saturating_sub(self.slots.available_permits())
    }
}

async fn connection(
    mut s: TcpStream,
    handle: &RaftHandle<KvApp>,
    limits: &Limits,
    mut input: BufferShare,
    clients: Clients<'_>,
) -> std::io::Result<()> {
    s.set_nodelay(true)?;
    keepalive(&s);
    let ms = Duration::from_millis;
    let (request_timeout, idle) =
        (ms(limits.client_request_timeout_ms), ms(limits.client_idle_timeout_ms));
    let write_timeout = ms(limits.client_write_timeout_ms);
    let mut buf = BytesMut::with_capacity(16 << 10);
    let mut out = Vec::with_capacity(16 << 10);
    let mut items = Vec::new();
    let mut parser = RequestParser::new();
    // Since when buffered request bytes wait without a request completing.
    let mut pending_since: Option<Instant> = None;
    loop {
        if buf.capacity() - buf.len() < 4 << 10 {
            buf.reserve(16 << 10);
        }
        let deadline = match pending_since {
            Some(t) => Some(t + request_timeout),
            None if !idle.is_zero() => Some(Instant::now() + idle),
            None => None,
        };
        if !input.cover(buf.capacity(), request_timeout).await {
            static OVER: LogThrottle = LogThrottle::new();
            match OVER.loud() {
                (true, times) => warn!(
                    times,
                    "client request buffers over client_input_bytes_max; closing the connection"
                ),
                (false, _) => debug!("client request buffers over client_input_bytes_max; closing"),
            }
            let msg = b"-ERR request buffers over the server's client input budget\r\n";
            let _ = tokio::time::timeout(write_timeout, s.write_all(msg)).await;
            return Ok(());
        }
        let read = match deadline {
            Some(d) => match tokio::time::timeout_at(d, s.read_buf(&mut buf)).await {
                Ok(r) => r?,
                Err(_) => {
                    debug!(pending = pending_since.is_some(), "client timed out; closing");
                    return Ok(());
                }
            },
            None => s.read_buf(&mut buf).await?,
        };
        if read == 0 {
            return Ok(());
        }
        let mut close = false;
        let mut completed = false;
        loop {
            match parser.split(&mut buf, &limits.resp) {
                Ok(Some(args)) => {
                    completed = true;
                    items.push(Command::parse(&args).map_err(|e| e.to_reply()));
                }
                Ok(None) => break,
                Err(e) => {
                    static MALFORMED: LogThrottle = LogThrottle::new();
                    match MALFORMED.loud() {
                        (true, times) => {
                            warn!(error = %e, times, "malformed client request; closing the connection")
                        }
                        (false, _) => debug!(error = %e, "malformed client request; closing"),
                    }
                    items.push(Err(e.to_reply()));
                    close = true;
                    break;
                }
            }
        }
        let mut replies = Out { stream: &mut s, buf: &mut out, write_timeout };
        close |= execute(handle, clients, &mut items, &mut replies).await?;
        replies.flush().await?;
        if close {
            return Ok(());
        }
        if buf.is_empty() {
            pending_since = None;
            // Give back what a large request made the buffer grow to.
            if buf.capacity() > 4 * BUFFER_FREE_BYTES {
                buf = BytesMut::with_capacity(16 << 10);
            }
        } else if completed || pending_since.is_none() {
            pending_since = Some(Instant::now());
        }
    }
}

/// Replies on their way to one client: encoded into a buffer that goes out
/// whenever it passes [`OUT_FLUSH_BYTES`], so no reply's size (a pipelined
/// run of large GETs, an MGET of a million keys) sets the buffer's: it
/// holds at most the threshold plus one value.
struct Out<'a> {
    stream: &'a mut TcpStream,
    buf: &'a mut Vec<u8>,
    /// A write call that makes no progress for this long fails (`TimedOut`).
    write_timeout: Duration,
}

/// Bytes of encoded replies gathered before they are written out.
const OUT_FLUSH_BYTES: usize = 64 << 10;

impl Out<'_> {
    async fn put(&mut self, reply: &Reply) -> std::io::Result<()> {
        for item in reply.encode_head(self.buf) {
            self.flush_if_full().await?;
            item.encode(self.buf);
        }
        self.flush_if_full().await
    }

    async fn flush_if_full(&mut self) -> std::io::Result<()> {
        if self.buf.len() >= OUT_FLUSH_BYTES {
            self.flush().await?;
        }
        Ok(())
    }

    /// Writes out what is gathered; gives back memory a large value left.
    async fn flush(&mut self) -> std::io::Result<()> {
        if !self.buf.is_empty() {
            write_all_progress(self.stream, self.buf, self.write_timeout).await?;
            self.buf.clear();
        }
        if self.buf.capacity() > 4 * OUT_FLUSH_BYTES {
            self.buf.shrink_to(OUT_FLUSH_BYTES);
        }
        Ok(())
    }
}

/// Runs parsed commands in order, sending their replies to `out`; returns
/// whether the connection should close (QUIT).
async fn execute(
    handle: &RaftHandle<KvApp>,
    clients: Clients<'_>,
    items: &mut Vec<Result<Command, Reply>>,
    out: &mut Out<'_>,
) -> std::io::Result<bool> {
    let mut group: Vec<KvCommand> = Vec::new();
    let mut quit = false;
    for item in items.drain(..) {
        if quit {
            continue;
        }
        match item {
            Ok(cmd) => match cmd.to_kv() {
                Some(kv) => group.push(kv),
                None => {
                    run_group(handle, &mut group, out).await?;
                    quit = matches!(cmd, Command::Quit);
                    out.put(&admin(handle, clients, cmd).await).await?;
                }
            },
            Err(reply) => {
                run_group(handle, &mut group, out).await?;
                out.put(&reply).await?;
            }
        }
    }
    run_group(handle, &mut group, out).await?;
    Ok(quit)
}

/// Most commands in one proposal (the core's `propose_entries_max`).
const GROUP_COMMANDS_MAX: usize = 5_000;

async fn run_group(
    handle: &RaftHandle<KvApp>,
    group: &mut Vec<KvCommand>,
    out: &mut Out<'_>,
) -> std::io::Result<()> {
    while !group.is_empty() {
        let n = group.len().min(GROUP_COMMANDS_MAX);
        let part: Vec<KvCommand> = group.drain(..n).collect();
        if part.iter().all(|c| !c.is_write()) {
            let r = handle
                .read_linear(move |app, _| {
                    part.iter().map(|c| read(app.store(), c)).collect::<Vec<Reply>>()
                })
                .await;
            match r {
                Ok(replies) => {
                    for r in &replies {
                        out.put(r).await?;
                    }
                }
                Err(e) => repeat(&error_reply(&e), n, out).await?,
            }
        } else {
            // One proposal per run of commands that fits the core's byte
            // bound: a larger proposal would be refused whole.
            let max = handle.proposal_bytes_max();
            let mut commands = part
                .into_iter()
                .map(|c| {
                    let c = KvRequest::new(c).encode();
                    let size = c.len() + xraft::ENTRY_OVERHEAD_BYTES;
                    (c, size)
                })
                .peekable();
            while commands.peek().is_some() {
                let (mut chunk, mut bytes) = (Commands::new(), 0);
                while let Some((c, size)) =
                    commands.next_if(|(_, size)| chunk.is_empty() || bytes + size <= max)
                {
                    bytes += size;
                    chunk.push(c);
                }
                let k = chunk.len();
                match handle.propose_batch(chunk, true).await {
                    Ok(responses) => {
                        for r in responses {
                            out.put(&Reply::from(r)).await?;
                        }
                    }
                    Err(e) => repeat(&error_reply(&e), k, out).await?,
                }
            }
        }
    }
    Ok(())
}

async fn repeat(reply: &Reply, n: usize, out: &mut Out<'_>) -> std::io::Result<()> {
    for _ in 0..n {
        out.put(reply).await?;
    }
    Ok(())
}

/// A read command served from the local store (after ReadIndex).
fn read(store: &KvStore, c: &KvCommand) -> Reply {
    match c {
        KvCommand::Get { key } => store.get(key).cloned().map_or(Reply::Null, Reply::Bulk),
        KvCommand::MGet { keys } => Reply::Array(
            store.mget(keys).into_iter().map(|v| v.map_or(Reply::Null, Reply::Bulk)).collect(),
        ),
        KvCommand::Exists { keys } => {
            Reply::Integer(keys.iter().filter(|k| store.exists(k)).count() as i64)
        }
        _ => Reply::Error("ERR not a read command".into()),
    }
}

/// The Redis error reply for a runtime error.
pub(crate) fn error_reply(e: &Error) -> Reply {
    let text = match e {
        Error::Propose(p) => match p {
            ProposeError::NotLeader { leader_hint: Some(l) } => {
                format!("NOTLEADER this node does not lead; the leader is node {l}")
            }
            ProposeError::NotLeader { leader_hint: None } => {
                "NOTLEADER this node does not lead; the leader is unknown".into()
            }
            ProposeError::NoLeader => "NOLEADER no leader elected; retry later".into(),
            ProposeError::Timeout => "TIMEOUT request timed out; outcome unknown".into(),
            ProposeError::ConfigInFlight => {
                "CONFIGINFLIGHT a configuration change is in flight; retry later".into()
            }
            other => format!("ERR {other}"),
        },
        other => format!("ERR {other}"),
    };
    Reply::Error(text)
}

/// Commands other than data commands.
async fn admin(handle: &RaftHandle<KvApp>, clients: Clients<'_>, cmd: Command) -> Reply {
    if let Some(r) = cmd.local_reply() {
        return r;
    }
    let ok = |r: crate::error::Result<()>| match r {
        Ok(()) => Reply::ok(),
        Err(e) => error_reply(&e),
    };
    let addr = |a: &bytes::Bytes| String::from_utf8_lossy(a).into_owned();
    match cmd {
        Command::Info(_) => match handle.report().await {
            Ok(r) => {
                let mut text = info_text(&r);
                text.push_str(&format!(
                    "# Clients\r\nconnected_clients:{}\r\n",
                    clients.connected()
                ));
                Reply::Bulk(text.into())
            }
            Err(e) => error_reply(&e),
        },
        Command::Raft(raft) => match raft {
            RaftCommand::AddNode { id, addr: a } => ok(handle.add_node(id, addr(&a)).await),
            RaftCommand::AddLearner { id, addr: a } => ok(handle.add_learner(id, addr(&a)).await),
            RaftCommand::Promote(id) => ok(handle.promote(id).await),
            RaftCommand::RemoveNode(id) => ok(handle.remove_node(id).await),
            RaftCommand::Transfer(id) => ok(handle.transfer_leadership(id).await),
            RaftCommand::Info => match handle.report().await {
                Ok(r) => Reply::Bulk(health_text(&Health::of(&r)).into()),
                Err(e) => error_reply(&e),
            },
            RaftCommand::Nodes => match handle.report().await {
                Ok(r) => Reply::Array(
                    nodes_of(&r)
                        .into_iter()
                        .map(|n| {
                            let kind = if n.voter { "voter" } else { "learner" };
                            let lead = if n.leader { " leader" } else { "" };
                            Reply::Bulk(format!("{} {} {kind}{lead}", n.id, n.addr).into())
                        })
                        .collect(),
                ),
                Err(e) => error_reply(&e),
            },
        },
        _ => Reply::Error("ERR command not handled".into()),
    }
}

fn health_text(h: &Health) -> String {
    format!(
        "node_id:{}\r\nrole:{}\r\nterm:{}\r\nleader_id:{}\r\ncluster_size:{}\r\ncommit_index:{}\r\n\
         last_applied:{}\r\nbehind:{}\r\nhealthy:{}\r\nuptime_in_seconds:{}\r\n",
        h.node_id,
        h.role,
        h.term,
        h.leader.map_or_else(|| "none".to_owned(), |l| l.to_string()),
        h.cluster_size,
        h.commit_index,
        h.last_applied,
        h.behind,
        h.healthy,
        h.uptime.as_secs()
    )
}

/// `INFO`: server, raft and metrics sections, Redis style.
pub(crate) fn info_text(r: &crate::node::Report) -> String {
    use std::fmt::Write;
    let s = &r.status;
    let m = &s.metrics;
    let mut t = String::with_capacity(1024);
    let _ = write!(
        t,
        "# Server\r\nxraft_version:{}\r\nnode_id:{}\r\nuptime_in_seconds:{}\r\n\r\n",
        env!("CARGO_PKG_VERSION"),
        s.id,
        r.uptime.as_secs()
    );
    let leader = s.leader.map_or_else(|| "none".to_owned(), |l: NodeId| l.to_string());
    let _ = write!(
        t,
        "# Raft\r\nrole:{}\r\nterm:{}\r\nleader_id:{leader}\r\ncommit_index:{}\r\nlast_applied:{}\r\n\
         last_index:{}\r\ndurable_index:{}\r\nsnapshot_index:{}\r\nlog_entries:{}\r\nvoters:{}\r\n\
         learners:{}\r\n\r\n",
        role_name(s.role),
        s.term,
        s.commit,
        s.applied,
        s.last_index,
        s.durable_index,
        s.snapshot_index,
        s.log_entries,
        join(s.membership.voters.iter()),
        join(s.membership.learners.iter()),
    );
    let _ = write!(
        t,
        "# Metrics\r\nproposals_total:{}\r\nproposals_ok:{}\r\nproposals_failed:{}\r\n\
         proposals_forwarded:{}\r\nappends_sent:{}\r\nappends_received:{}\r\n\
         elections_started:{}\r\nelections_won:{}\r\nsnapshots_taken:{}\r\n\
         snapshots_installed:{}\r\nread_index_requests:{}\r\nmessages_dropped:{}\r\n\
         messages_invalid:{}\r\npeer_disks_refused:{}\r\npeer_disks_known:{}\r\n\
         disk_syncs:{}\r\ndisk_writes:{}\r\ndisk_entries:{}\r\n",
        m.proposals_total,
        m.proposals_ok,
        m.proposals_failed,
        m.forwarded,
        m.appends_sent,
        m.appends_received,
        m.elections_started,
        m.elections_won,
        m.snapshots_taken,
        m.snapshots_installed,
        m.read_index_requests,
        r.messages_dropped,
        m.messages_invalid,
        r.peer_disks_refused,
        r.peer_disks_known,
        r.disk_syncs,
        r.disk_writes,
        r.disk_entries,
    );
    // Sync latency: the mean, and the histogram bucket bounds that the
    // median and the 99th percentile fall under.
    let h = &r.disk_sync;
    let bound = |q| match h.quantile_bound_micros(q) {
        None => "none".to_owned(),
        Some(u64::MAX) => "inf".to_owned(),
        Some(us) => us.to_string(),
    };
    let _ = write!(
        t,
        "disk_sync_avg_us:{}\r\ndisk_sync_p50_le_us:{}\r\ndisk_sync_p99_le_us:{}\r\n",
        h.sum_micros.checked_div(h.count()).unwrap_or(0),
        bound(0.5),
        bound(0.99),
    );
    t
}

fn join<'a>(ids: impl Iterator<Item = &'a NodeId>) -> String {
    ids.map(|i| i.to_string()).collect::<Vec<_>>().join(",")
}
