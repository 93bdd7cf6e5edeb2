//! The node task: the one owner of the core [`Node`].
//!
//! Owns the select loop that feeds the node its inputs (ticks, peer
//! messages, requests, durability and apply reports, snapshot results) and
//! carries out every output in the order given. Invariants: the node is
//! stepped only here; each wake-up steps at most `inputs_per_wakeup_max`
//! inputs of each kind, then handles all outputs in order; every request
//! gets exactly one answer (the core guarantees one outcome per request; a
//! stop answers the rest with `Stopped`); writes go to the disk thread in
//! emission order; apply-side work goes to the apply task through one FIFO.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use hashbrown::HashMap;
use tokio::sync::{mpsc, oneshot, watch};
use tracing::{debug, error, info, warn};
use xraft::{
    Input, LogIndex, Membership, MembershipChange, Node, NodeId, Output, PersistId, PersistWrite,
    ProposeError, RequestId, Role, Status,
};
use xraft_storage::{SnapshotReader, SnapshotSource};

use crate::apply::{Application, ApplyJob, Callers, LocalFn, ReadFn, Reply};
use crate::disk::{DiskJob, DiskStats, SyncHistogram};
use crate::error::{Error, Result};
use crate::transport::{Inbound, Peers};

/// Reports to the node task from the disk thread, the apply task and
/// snapshot helpers. Unbounded, but bounded in practice: each answers a job
/// the node task sent through a bounded queue.
pub(crate) enum Event {
    Input(Input),
    Fatal(String),
}

/// What handles ask of the node task.
pub(crate) enum Request<A: Application> {
    Propose {
        commands: xraft::Commands,
        forward: bool,
        reply: oneshot::Sender<Result<Vec<A::Response>>>,
    },
    Read {
        f: ReadFn<A>,
    },
    Local(LocalFn<A>),
    Change {
        change: MembershipChange,
        reply: oneshot::Sender<Result<()>>,
    },
    Transfer {
        target: NodeId,
        reply: oneshot::Sender<Result<()>>,
    },
    Status(oneshot::Sender<Report>),
}

/// A status report with the runtime's own counters.
#[derive(Clone, Debug)]
pub struct Report {
    /// The core's status.
    pub status: Status,
    /// Peer messages dropped (full queue or unknown address).
    pub messages_dropped: u64,
    /// Peer connections refused because a member came back with another
    /// data directory than before (it lost its state).
    pub peer_disks_refused: u64,
    /// Other members whose data directory's disk id this node knows (from
    /// a handshake this node dialed); a member back with another is refused.
    pub peer_disks_known: usize,
    /// Group commits (one fsync each) by the disk thread.
    pub disk_syncs: u64,
    /// Writes (`Persist` outputs) made durable.
    pub disk_writes: u64,
    /// Log entries made durable.
    pub disk_entries: u64,
    /// Durations of the group commits' syncs.
    pub disk_sync: SyncHistogram,
    /// Time since the node started.
    pub uptime: Duration,
}

enum Pending<A: Application> {
    Propose(Callers<A::Response>),
    Change(oneshot::Sender<Result<()>>),
    Read(ReadFn<A>),
    Transfer(oneshot::Sender<Result<()>>),
}

pub(crate) struct NodeTask<A: Application> {
    pub node: Node,
    pub tick: Duration,
    pub inputs_per_wakeup_max: usize,
    pub peers: Peers,
    pub requests: mpsc::Receiver<Request<A>>,
    pub inbound: mpsc::Receiver<Inbound>,
    pub events_tx: mpsc::UnboundedSender<Event>,
    pub persisted: watch::Receiver<PersistId>,
    pub applied: watch::Receiver<LogIndex>,
    pub disk: mpsc::Sender<DiskJob>,
    pub apply: mpsc::Sender<ApplyJob<A>>,
    pub shutdown: watch::Receiver<bool>,
    pub started: Instant,
    pub snap_reader: Arc<std::sync::Mutex<Option<Arc<SnapshotReader>>>>,
    pub snapshots: SnapshotSource,
    pub disk_stats: Arc<DiskStats>,
}

// The Event receiver is unbounded; this alias keeps the field type readable.
pub(crate) type EventRx = mpsc::UnboundedReceiver<Event>;

impl<A: Application> NodeTask<A> {
    /// Runs until shutdown or a fatal error; returns why it stopped.
    pub(crate) async fn run(self, mut events: EventRx) -> Result<(), String> {
        let mut s = Loop {
            node: self.node,
            out: Vec::with_capacity(256),
            pending: HashMap::new(),
            next_request: first_request_id(),
            writes: Vec::new(),
            locals: Vec::new(),
            batch: xraft::Commands::new(),
            batch_bytes: 0,
            batch_callers: Vec::new(),
            peers: self.peers,
            disk: self.disk,
            apply: self.apply,
            events_tx: self.events_tx,
            started: self.started,
            snap_reader: self.snap_reader,
            snapshots: self.snapshots,
            disk_stats: self.disk_stats,
            membership: Membership::default(),
            configs_written: Vec::new(),
        };
        let (mut requests, mut inbound) = (self.requests, self.inbound);
        let (mut persisted, mut applied, mut shutdown) =
            (self.persisted, self.applied, self.shutdown);
        let cap = self.inputs_per_wakeup_max;
        let mut tick = tokio::time::interval(self.tick);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut reqs = Vec::with_capacity(cap);
        let mut msgs = Vec::with_capacity(cap);
        let result = loop {
            tokio::select! {
                biased;
                _ = shutdown.changed() => break Ok(()),
                ev = events.recv() => match ev {
                    Some(Event::Input(i)) => {
                        let taken = matches!(i, Input::SnapshotTaken { ok: true, .. });
                        s.step(i);
                        if taken {
                            s.drop_stale_reader();
                        }
                    }
                    Some(Event::Fatal(e)) => break Err(e),
                    None => break Ok(()),
                },
                Ok(()) = persisted.changed() => {
                    let through = *persisted.borrow_and_update();
                    s.step(Input::Persisted { through });
                }
                Ok(()) = applied.changed() => {
                    let index = *applied.borrow_and_update();
                    s.step(Input::Applied { index });
                }
                _ = tick.tick() => s.step(Input::Tick),
                n = inbound.recv_many(&mut msgs, cap) => {
                    if n == 0 { break Ok(()); }
                    for m in msgs.drain(..) { s.inbound(m); }
                }
                n = requests.recv_many(&mut reqs, cap) => {
                    if n == 0 { break Ok(()); }
                    for r in reqs.drain(..) { s.request(r); }
                    s.propose_batch();
                }
            }
            if s.flush().await.is_err() {
                break Err("the disk thread or apply task stopped".into());
            }
            // Let the peer writers, the apply task and the client tasks act
            // on this wake-up's outputs before more inputs are taken: with
            // inputs always ready, the loop would otherwise run on until its
            // cooperative budget ran out, holding back the messages to
            // followers (the commit path) and the replies.
            tokio::task::yield_now().await;
        };
        // Every waiting caller hears that the node stopped.
        for (_, p) in s.pending.drain() {
            match p {
                Pending::Propose(callers) => Reply::Commands(callers).fail(Error::Stopped),
                Pending::Change(tx) | Pending::Transfer(tx) => drop(tx.send(Err(Error::Stopped))),
                Pending::Read(f) => f(Err(Error::Stopped)),
            }
        }
        result
    }
}

struct Loop<A: Application> {
    node: Node,
    out: Vec<Output>,
    pending: HashMap<RequestId, Pending<A>>,
    next_request: u64,
    writes: Vec<PersistWrite>,
    locals: Vec<LocalFn<A>>,
    /// Commands of this wake-up's proposals, stepped as one `Propose`.
    batch: xraft::Commands,
    /// Bytes of `batch` as the core counts them (payload plus
    /// `ENTRY_OVERHEAD_BYTES` each).
    batch_bytes: usize,
    batch_callers: Callers<A::Response>,
    peers: Peers,
    disk: mpsc::Sender<DiskJob>,
    apply: mpsc::Sender<ApplyJob<A>>,
    events_tx: mpsc::UnboundedSender<Event>,
    started: Instant,
    snap_reader: Arc<std::sync::Mutex<Option<Arc<SnapshotReader>>>>,
    snapshots: SnapshotSource,
    disk_stats: Arc<DiskStats>,
    /// The membership the transport was last told of.
    membership: Membership,
    /// Configurations written this wake-up, in log order, with their
    /// indexes (`note_configs`).
    configs_written: Vec<(LogIndex, Membership)>,
}

impl<A: Application> Loop<A> {
    fn step(&mut self, input: Input) {
        self.node.step_into(input, &mut self.out);
    }

    fn request_id(&mut self) -> RequestId {
        self.next_request = self.next_request.wrapping_add(1);
        RequestId(self.next_request)
    }

    /// Steps the proposals gathered so far as one `Propose`.
    fn propose_batch(&mut self) {
        if self.batch_callers.is_empty() {
            return;
        }
        let request = self.request_id();
        let commands = std::mem::take(&mut self.batch);
        let callers = std::mem::take(&mut self.batch_callers);
        self.batch_bytes = 0;
        self.pending.insert(request, Pending::Propose(callers));
        self.step(Input::Propose { request, commands });
    }

    fn inbound(&mut self, m: Inbound) {
        match m {
            // The message's share of the inbound byte budget returns once
            // it is stepped (its entries are the core's to bound from then).
            Inbound::Message(msg, _budget) => self.step(Input::Message(msg)),
            Inbound::Hello { from, addr } => self.peers.hello(from, addr),
        }
    }

    fn request(&mut self, r: Request<A>) {
        match r {
            Request::Propose { commands, forward, reply } => {
                if !forward && self.node.role() != Role::Leader {
                    let e = ProposeError::NotLeader { leader_hint: self.node.leader() };
                    let _ = reply.send(Err(e.into()));
                    return;
                }
                // Proposals of one wake-up share one `Propose`: one log
                // append, one message per follower, one write. A batch is
                // closed before it would pass the core's bounds, which
                // would refuse every caller in it (a request alone over
                // them is refused on its own).
                let bytes: usize =
                    commands.iter().map(|c| c.len() + xraft::ENTRY_OVERHEAD_BYTES).sum();
                let cfg = self.node.config();
                if self.batch.len() + commands.len() > cfg.propose_entries_max
                    || self.batch_bytes + bytes > cfg.append_bytes_max
                {
                    self.propose_batch();
                }
                self.batch_callers.push((reply, commands.len()));
                self.batch.extend(commands);
                self.batch_bytes += bytes;
            }
            Request::Read { f } => {
                let request = self.request_id();
                self.pending.insert(request, Pending::Read(f));
                self.step(Input::ReadIndex { request });
            }
            // A local read sees the state as it is; it goes to the apply
            // task after this wake-up's outputs.
            Request::Local(f) => self.locals.push(f),
            Request::Change { change, reply } => {
                let request = self.request_id();
                self.pending.insert(request, Pending::Change(reply));
                self.step(Input::ChangeMembership { request, change });
            }
            Request::Transfer { target, reply } => {
                let request = self.request_id();
                self.pending.insert(request, Pending::Transfer(reply));
                self.step(Input::TransferLeadership { request, target });
            }
            Request::Status(reply) => {
                let sync = self.disk_stats.sync_histogram();
                let _ = reply.send(Report {
                    status: self.node.status(),
                    messages_dropped: self.peers.dropped,
                    peer_disks_refused: self.peers.disks_refused(),
                    peer_disks_known: self.peers.disks_known(),
                    disk_syncs: sync.count(),
                    disk_writes: self.disk_stats.writes.load(Relaxed),
                    disk_entries: self.disk_stats.entries.load(Relaxed),
                    disk_sync: sync,
                    uptime: self.started.elapsed(),
                });
            }
        }
    }
}

impl<A: Application> Loop<A> {
    /// Carries out every output gathered this wake-up, in order. Fails only
    /// if the disk thread or the apply task is gone.
    async fn flush(&mut self) -> Result<(), ()> {
        let mut out = std::mem::take(&mut self.out);
        for o in out.drain(..) {
            self.output(o).await?;
        }
        self.out = out;
        // The peer-disk registry sees every configuration written, in log
        // order, then the one in force: a member removed and added back is
        // forgotten even when both changes came in one write (a node
        // catching up), which the membership in force alone would not
        // show. Persist order, not commit order: applying lags, and an
        // older configuration shown after a newer one had been in force
        // would forget a member's disk while it may be wiped. A restart
        // writes nothing again, so nothing old is replayed. The changed
        // record is held, not saved, until the disk thread has made the
        // write durable (it releases the version sent with the write): a
        // crash between the two loses the change, and the old disk stays
        // refused, the safe side.
        // The membership in force can also change with no configuration
        // written (a truncation back to an older one, a snapshot install):
        // that goes the same way, held until its write is durable.
        let mut release = None;
        let moved = self.node.membership() != &self.membership;
        if !self.configs_written.is_empty() || (moved && !self.writes.is_empty()) {
            let seen: Vec<Membership> =
                std::mem::take(&mut self.configs_written).into_iter().map(|(_, m)| m).collect();
            let hold = !self.writes.is_empty();
            release = self.peers.memberships_in_turn(&seen, self.node.membership(), hold);
        }
        if !self.writes.is_empty() {
            let writes = std::mem::take(&mut self.writes);
            self.disk.send(DiskJob::Persist(writes, release)).await.map_err(|_| ())?;
        }
        for f in self.locals.drain(..) {
            self.apply.send(ApplyJob::Run(f)).await.map_err(|_| ())?;
        }
        if self.node.membership() != &self.membership {
            self.membership = self.node.membership().clone();
            self.peers.update_addrs(&self.membership);
        }
        Ok(())
    }

    async fn output(&mut self, o: Output) -> Result<(), ()> {
        match o {
            Output::Send(msg) => {
                let node = &self.node;
                self.peers.send(msg, |id| node.status().membership.addrs.get(&id).cloned());
            }
            // Gathered and sent as one job after this wake-up's outputs: the
            // disk thread makes them durable in this order, in one fsync.
            Output::Persist(w) => {
                self.note_configs(&w);
                self.writes.push(w);
            }
            Output::Apply { entries } => self.send_apply(ApplyJob::Apply(entries)).await?,
            Output::Proposed { request, term, first, last } => {
                let reply = match self.pending.remove(&request) {
                    Some(Pending::Propose(tx)) => Reply::Commands(tx),
                    Some(Pending::Change(tx)) => Reply::Unit(tx),
                    Some(other) => {
                        self.mismatch(request, other);
                        return Ok(());
                    }
                    None => return Ok(()),
                };
                self.send_apply(ApplyJob::Wait { term, first, last, reply }).await?;
            }
            Output::Rejected { request, error } => match self.pending.remove(&request) {
                Some(Pending::Propose(callers)) => Reply::Commands(callers).fail(error.into()),
                Some(Pending::Change(tx)) | Some(Pending::Transfer(tx)) => {
                    drop(tx.send(Err(error.into())))
                }
                Some(Pending::Read(f)) => f(Err(error.into())),
                None => {}
            },
            Output::ReadReady { request, index } => match self.pending.remove(&request) {
                Some(Pending::Read(f)) => self.send_apply(ApplyJob::Read { index, f }).await?,
                Some(other) => self.mismatch(request, other),
                None => {}
            },
            Output::Completed { request } => match self.pending.remove(&request) {
                Some(Pending::Transfer(tx)) => drop(tx.send(Ok(()))),
                Some(other) => self.mismatch(request, other),
                None => {}
            },
            Output::TakeSnapshot { meta } => self.send_apply(ApplyJob::TakeSnapshot(meta)).await?,
            Output::RestoreSnapshot { meta } => {
                self.drop_stale_reader();
                self.send_apply(ApplyJob::Restore(meta)).await?
            }
            Output::ReadSnapshotChunk { to, index, offset, max_bytes } => {
                self.read_chunk(to, index, offset, max_bytes)
            }
            Output::RoleChanged { role, term, leader } => {
                info!(
                    node = self.node.id().0,
                    ?role,
                    term = term.0,
                    leader = leader.map(|l| l.0),
                    "role changed"
                );
            }
            other => debug!(?other, "unhandled output"),
        }
        Ok(())
    }

    /// Drops the cached snapshot reader once a newer snapshot is durable:
    /// it holds the replaced file open, and so its disk space.
    fn drop_stale_reader(&mut self) {
        let latest = self.snapshots.latest();
        if let Ok(mut c) = self.snap_reader.lock() {
            if c.as_ref().is_some_and(|r| Some(r.meta()) != latest.as_ref()) {
                *c = None;
            }
        }
    }

    async fn send_apply(&mut self, job: ApplyJob<A>) -> Result<(), ()> {
        self.apply.send(job).await.map_err(|_| ())
    }

    fn mismatch(&mut self, request: RequestId, p: Pending<A>) {
        // The core answers each request with its kind's outcome; anything
        // else is a bug, reported to the caller rather than panicking.
        error!(?request, "request answered with an outcome of another kind");
        let e = || Error::Unexpected("mismatched outcome".into());
        match p {
            Pending::Propose(callers) => Reply::Commands(callers).fail(e()),
            Pending::Change(tx) | Pending::Transfer(tx) => drop(tx.send(Err(e()))),
            Pending::Read(f) => f(Err(e())),
        }
    }

    /// Notes the configuration entries a log write carries, in log order,
    /// for the peer-disk registry (see `flush`); a write that replaces
    /// entries drops those noted from its first index on (never in force
    /// now). An installed snapshot's membership is not noted: the log's
    /// entries after it may be kept, newer than it.
    fn note_configs(&mut self, w: &PersistWrite) {
        let Some(first) = w.entries.first().map(|e| e.index) else { return };
        self.configs_written.retain(|(i, _)| *i < first);
        for e in w.entries.iter().filter(|e| e.kind == xraft::EntryKind::Config) {
            if let Ok(m) = Membership::decode(&e.data) {
                self.configs_written.push((e.index, m));
            }
        }
    }

    /// Reads a chunk of the latest durable snapshot on a blocking thread and
    /// feeds it back as `Input::SnapshotChunk`. A reader is kept while its
    /// snapshot is the newest, so each chunk is one positioned read; opening
    /// one (which checksums the whole file) happens here too, never on the
    /// disk thread, whose group commits it would hold up.
    fn read_chunk(&mut self, to: NodeId, index: LogIndex, offset: u64, max_bytes: usize) {
        let (events, cache, source) =
            (self.events_tx.clone(), Arc::clone(&self.snap_reader), self.snapshots.clone());
        tokio::spawn(async move {
            let read = tokio::task::spawn_blocking(move || {
                let latest = source.latest();
                let cached = cache.lock().ok().and_then(|c| c.clone());
                let reader = match cached.filter(|r| Some(r.meta()) == latest.as_ref()) {
                    Some(r) => r,
                    None => {
                        let r = Arc::new(match source.reader() {
                            Ok(Some(r)) => r,
                            Ok(None) => return Err("no snapshot is durable".to_owned()),
                            Err(e) => return Err(format!("snapshot not readable: {e}")),
                        });
                        if let Ok(mut c) = cache.lock() {
                            *c = Some(Arc::clone(&r));
                        }
                        r
                    }
                };
                // A newer snapshot than the one asked for is sent from 0.
                let offset = if reader.meta().index == index { offset } else { 0 };
                // Past the end: only a faulty follower's answer asks for
                // that. Nothing is sent (it would be told `done` with bytes
                // missing); the core retries after the chunk timeout, so
                // that follower's transfer stalls, and nothing else.
                if offset > reader.data_len() {
                    let len = reader.data_len();
                    return Err(format!("offset {offset} asked past the snapshot's {len} bytes"));
                }
                let data = reader.read_chunk(offset, max_bytes).map_err(|e| e.to_string())?;
                Ok((reader, offset, data))
            })
            .await;
            match read {
                Ok(Ok((reader, offset, data))) => {
                    let done = offset.saturating_add(data.len() as u64) >= reader.data_len();
                    let _ = events.send(Event::Input(Input::SnapshotChunk {
                        to,
                        meta: reader.meta().clone(),
                        offset,
                        data: Bytes::from(data),
                        done,
                    }));
                }
                Ok(Err(e)) => warn!(to = to.0, error = %e, "snapshot chunk not read"),
                Err(e) => warn!(error = %e, "snapshot chunk task failed"),
            }
        });
    }
}

/// Where this incarnation's request ids start. The core requires ids unique
/// per node across restarts (a leader drops a forwarded proposal whose
/// (node, request) it saw recently, so a restarted node reusing ids from 1
/// would have its first requests dropped): start at a random multiple of
/// 2^32 (from the process's hash seed and the clock), so two incarnations'
/// ranges meet with probability about 2^-32.
fn first_request_id() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    h.write_u32(std::process::id());
    h.finish() & !((1 << 32) - 1)
}
