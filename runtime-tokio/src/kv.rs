//! The built-in KV server: the KV store as an [`Application`], and the
//! in-process API mirroring the seed's `KVServer`.
//!
//! Owns [`KvApp`] (the [`KvStore`] plus the channels of local watchers),
//! [`KvServer`] (a node with the KV store, its RESP client port and HTTP
//! endpoint) and the health report. Invariants: watcher events leave the
//! apply task in commit order, one bounded channel per watcher; a slow
//! watcher delays only itself (its hub queue holds the overflow, then counts
//! what it dropped), and the overflow follows once it has read its channel
//! empty, writes or not; a dropped watcher is unregistered at the next
//! registration or apply, so dropped ones never use up `watchers_max`.

use std::collections::BTreeMap;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use xraft::{LogIndex, Metrics, NodeId, Role, StateMachine};
use xraft_kv::{
    KvCommand, KvRequest, KvResponse, KvSnapshot, KvStore, Pattern, SnapshotError, WatchId,
    WatchItem,
};

use crate::apply::Application;
use crate::config::ServerConfig;
use crate::error::{Error, Result};
use crate::node::Report;
use crate::raft::{RaftHandle, RaftNode};

/// The KV store driven by the runtime, with its local watchers' channels.
#[derive(Debug)]
pub struct KvApp {
    store: KvStore,
    subscribers: BTreeMap<WatchId, Subscriber>,
    /// Watchers with items left in the hub (their channel was full).
    backlog: Vec<WatchId>,
    ready: Vec<WatchId>,
    items: Vec<WatchItem>,
    /// Watchers their owners dropped, to unregister.
    dropped: Arc<Mutex<Vec<WatchId>>>,
}

/// A registered watcher's end of its channel.
#[derive(Debug)]
struct Subscriber {
    tx: mpsc::Sender<WatchItem>,
    /// Set while items wait in the hub for room in the channel.
    waiting: Arc<AtomicBool>,
}

impl KvApp {
    /// Wraps a store.
    pub fn new(store: KvStore) -> Self {
        KvApp {
            store,
            subscribers: BTreeMap::new(),
            backlog: Vec::new(),
            ready: Vec::new(),
            items: Vec::new(),
            dropped: Arc::default(),
        }
    }

    /// The store (read it locally).
    pub fn store(&self) -> &KvStore {
        &self.store
    }

    /// Registers a watcher whose events go to a channel of `capacity`.
    /// Items that overflow the channel wait in the hub and move into it as
    /// it drains: at each apply, and (for a watcher from
    /// [`KvServer::watch`]) when [`Watcher::recv`] finds it empty.
    pub fn watch(&mut self, pattern: Pattern, capacity: usize) -> Result<Watcher> {
        self.sweep();
        let id = self.store.watches_mut().watch(pattern)?;
        let (tx, rx) = mpsc::channel(capacity.max(1));
        let waiting = Arc::new(AtomicBool::new(false));
        self.subscribers.insert(id, Subscriber { tx, waiting: Arc::clone(&waiting) });
        Ok(Watcher { rx, id, waiting, dropped: Arc::clone(&self.dropped), handle: None })
    }

    /// Unregisters the watchers dropped since the last sweep.
    fn sweep(&mut self) {
        let ids = std::mem::take(&mut *self.dropped.lock().unwrap_or_else(|e| e.into_inner()));
        for id in ids {
            self.subscribers.remove(&id);
            let _ = self.store.watches_mut().unwatch(id);
        }
    }

    /// Moves queued watcher items into their channels.
    fn deliver(&mut self) {
        self.sweep();
        self.store.watches_mut().take_ready(&mut self.ready);
        self.ready.append(&mut self.backlog);
        self.ready.sort_unstable();
        self.ready.dedup();
        for id in self.ready.drain(..) {
            let Some(sub) = self.subscribers.get(&id) else { continue };
            let tx = &sub.tx;
            if tx.is_closed() {
                self.subscribers.remove(&id);
                let _ = self.store.watches_mut().unwatch(id);
                continue;
            }
            let room = tx.capacity();
            self.items.clear();
            let hub = self.store.watches_mut();
            if hub.drain_into(id, room, &mut self.items).is_err() {
                continue;
            }
            for item in self.items.drain(..) {
                // Cannot be full: at most `capacity()` items were drained.
                let _ = tx.try_send(item);
            }
            let left = hub.queued(id).unwrap_or(0) > 0;
            sub.waiting.store(left, Ordering::Release);
            if left {
                self.backlog.push(id);
            }
        }
    }
}

impl StateMachine for KvApp {
    type Response = KvResponse;
    type Snapshot = KvSnapshot;
    type Error = SnapshotError;

    fn apply(&mut self, index: LogIndex, command: &[u8]) -> KvResponse {
        self.store.apply(index, command)
    }

    fn snapshot(&self) -> KvSnapshot {
        self.store.snapshot()
    }

    fn restore(&mut self, input: &mut dyn io::Read) -> Result<(), SnapshotError> {
        self.store.restore(input)
    }
}

impl Application for KvApp {
    fn apply_entry(&mut self, index: LogIndex, data: &Bytes) -> KvResponse {
        self.store.apply_shared(index, data)
    }

    fn after_apply(&mut self) {
        if !self.subscribers.is_empty() {
            self.deliver();
        }
    }

    /// Values a read in a write group returned (they stay alive while the
    /// response is kept, even once overwritten in the store).
    fn response_bytes(response: &KvResponse) -> usize {
        match response {
            KvResponse::Value(Some(v)) => v.len(),
            KvResponse::Values(vs) => vs
                .iter()
                .map(|v| std::mem::size_of::<Option<Bytes>>() + v.as_ref().map_or(0, Bytes::len))
                .sum(),
            _ => 0,
        }
    }
}

/// A stream of committed changes to watched keys, in commit order.
/// Dropping it unregisters the watch.
pub struct Watcher {
    rx: mpsc::Receiver<WatchItem>,
    id: WatchId,
    /// Set by the apply task while items wait in the hub.
    waiting: Arc<AtomicBool>,
    dropped: Arc<Mutex<Vec<WatchId>>>,
    /// Asks the apply task for items waiting in the hub; `None` for a
    /// watcher registered on a bare [`KvApp`].
    handle: Option<RaftHandle<KvApp>>,
}

impl Watcher {
    /// The next item; `None` once the node stopped. Items that overflowed
    /// the channel are fetched once it is read empty, even if nothing more
    /// is written.
    pub async fn recv(&mut self) -> Option<WatchItem> {
        if let Ok(item) = self.rx.try_recv() {
            return Some(item);
        }
        if let Some(handle) = &self.handle {
            // The flag stays set until a delivery left nothing waiting, so a
            // request that failed (a full queue timing out) or was
            // cancelled with this future is made again by the next `recv`.
            // With the channel empty, a delivery always makes progress.
            if self.waiting.load(Ordering::Acquire) {
                let _ = handle.read_local(KvApp::deliver).await;
            }
        }
        self.rx.recv().await
    }

    /// The next item if one is in the channel (items waiting in the hub
    /// come with the next apply or the next [`Watcher::recv`]).
    pub fn try_recv(&mut self) -> Option<WatchItem> {
        self.rx.try_recv().ok()
    }
}

impl std::fmt::Debug for Watcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Watcher")
            .field("id", &self.id)
            .field("waiting", &self.waiting.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        self.dropped.lock().unwrap_or_else(|e| e.into_inner()).push(self.id);
    }
}

/// The seed's health status.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Health {
    /// Node id.
    pub node_id: u64,
    /// Role: `leader`, `follower`, `candidate` or `precandidate`.
    pub role: &'static str,
    /// Current term.
    pub term: u64,
    /// Known leader.
    pub leader: Option<u64>,
    /// Voters and learners.
    pub cluster_size: usize,
    /// Commit index.
    pub commit_index: u64,
    /// Last applied index.
    pub last_applied: u64,
    /// Committed entries not yet applied.
    pub behind: u64,
    /// A leader is known and this node is not far behind.
    pub healthy: bool,
    /// Time since start.
    pub uptime: Duration,
}

/// One cluster member.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeInfo {
    /// Its id.
    pub id: u64,
    /// Its peer address, if known.
    pub addr: String,
    /// Voter (true) or learner.
    pub voter: bool,
    /// Whether it is the leader this node knows of.
    pub leader: bool,
}

/// A node is unhealthy when this far behind its commit index.
const HEALTHY_BEHIND_MAX: u64 = 10_000;

pub(crate) fn role_name(role: Role) -> &'static str {
    match role {
        Role::Leader => "leader",
        Role::Follower => "follower",
        Role::Candidate => "candidate",
        Role::PreCandidate => "precandidate",
    }
}

impl Health {
    pub(crate) fn of(r: &Report) -> Health {
        let s = &r.status;
        let behind = s.commit.0.saturating_sub(s.applied.0);
        Health {
            node_id: s.id.0,
            role: role_name(s.role),
            term: s.term.0,
            leader: s.leader.map(|l| l.0),
            cluster_size: s.membership.voters.len() + s.membership.learners.len(),
            commit_index: s.commit.0,
            last_applied: s.applied.0,
            behind,
            healthy: s.leader.is_some() && behind < HEALTHY_BEHIND_MAX,
            uptime: r.uptime,
        }
    }
}

pub(crate) fn nodes_of(r: &Report) -> Vec<NodeInfo> {
    let m = &r.status.membership;
    m.members()
        .map(|id| NodeInfo {
            id: id.0,
            addr: m.addrs.get(&id).cloned().unwrap_or_default(),
            voter: m.voters.contains(&id),
            leader: r.status.leader == Some(id),
        })
        .collect()
}

/// Pre-bound listeners (tests bind port 0 first, then pass them in).
#[derive(Debug, Default)]
pub struct Listeners {
    /// The peer port.
    pub peer: Option<std::net::TcpListener>,
    /// The RESP client port.
    pub client: Option<std::net::TcpListener>,
    /// The HTTP endpoint.
    pub http: Option<std::net::TcpListener>,
}

/// A KV node: Raft, the KV store, the RESP client port and the HTTP
/// endpoint. Mirrors the seed's `KVServer`.
pub struct KvServer {
    raft: RaftNode<KvApp>,
    client_addr: Option<SocketAddr>,
    http_addr: Option<SocketAddr>,
    watch_capacity: usize,
    /// The client and HTTP listeners' tasks: they own the listening sockets.
    port_tasks: Vec<tokio::task::JoinHandle<()>>,
}

async fn bind(l: Option<std::net::TcpListener>, addr: Option<&str>) -> Result<Option<TcpListener>> {
    match (l, addr) {
        (Some(l), _) => {
            l.set_nonblocking(true)?;
            Ok(Some(TcpListener::from_std(l)?))
        }
        (None, Some(a)) => Ok(Some(TcpListener::bind(a).await?)),
        (None, None) => Ok(None),
    }
}

impl KvServer {
    /// Starts a node with the addresses in `config`.
    pub async fn start(config: ServerConfig) -> Result<KvServer> {
        KvServer::start_with(config, Listeners::default()).await
    }

    /// Starts a node on pre-bound listeners (those not given are bound from
    /// `config`).
    pub async fn start_with(config: ServerConfig, listeners: Listeners) -> Result<KvServer> {
        config.validate()?;
        let client = bind(listeners.client, config.client_addr.as_deref()).await?;
        let http = bind(listeners.http, config.http_addr.as_deref()).await?;
        let app = KvApp::new(KvStore::new(config.kv.clone()));
        let raft = RaftNode::start(config.clone(), app, listeners.peer).await?;
        let client_addr = client.as_ref().map(|l| l.local_addr()).transpose()?;
        let http_addr = http.as_ref().map(|l| l.local_addr()).transpose()?;
        let mut port_tasks = Vec::new();
        if let Some(l) = client {
            let limits = config.limits.clone();
            let handle = raft.handle().clone();
            let serve = crate::client::serve(l, handle, limits, raft.shutdown_signal());
            port_tasks.push(tokio::spawn(serve));
        }
        if let Some(l) = http {
            let serve = crate::http::serve(l, raft.handle().clone(), raft.shutdown_signal());
            port_tasks.push(tokio::spawn(serve));
        }
        Ok(KvServer {
            raft,
            client_addr,
            http_addr,
            watch_capacity: config.limits.watch_channel_events_max,
            port_tasks,
        })
    }

    /// This node's id.
    pub fn id(&self) -> u64 {
        self.raft.handle().id().0
    }

    /// The generic handle (propose raw commands, read index, membership).
    pub fn handle(&self) -> &RaftHandle<KvApp> {
        self.raft.handle()
    }

    /// The bound peer address.
    pub fn peer_addr(&self) -> SocketAddr {
        self.raft.peer_addr()
    }

    /// The bound RESP client address, if the port is on.
    pub fn client_addr(&self) -> Option<SocketAddr> {
        self.client_addr
    }

    /// The bound HTTP address, if the endpoint is on.
    pub fn http_addr(&self) -> Option<SocketAddr> {
        self.http_addr
    }

    /// Sets `key` to `value` (forwarded to the leader; done once applied
    /// here).
    pub async fn set(&self, key: impl Into<Bytes>, value: impl Into<Bytes>) -> Result<()> {
        let cmd = KvCommand::Set { key: key.into(), value: value.into() };
        match self.command(cmd).await? {
            KvResponse::Ok => Ok(()),
            other => Err(Error::Unexpected(format!("{other:?}"))),
        }
    }

    /// Deletes `key`; whether it existed.
    pub async fn delete(&self, key: impl Into<Bytes>) -> Result<bool> {
        match self.command(KvCommand::Delete { keys: vec![key.into()] }).await? {
            KvResponse::Count(n) => Ok(n > 0),
            other => Err(Error::Unexpected(format!("{other:?}"))),
        }
    }

    /// The value of `key` on this node, possibly stale.
    pub async fn get(&self, key: impl Into<Bytes>) -> Result<Option<Bytes>> {
        let key = key.into();
        self.handle().read_local(move |app| app.store().get(&key).cloned()).await
    }

    /// The value of `key`, linearizable (ReadIndex through the leader).
    pub async fn get_linear(&self, key: impl Into<Bytes>) -> Result<Option<Bytes>> {
        let key = key.into();
        self.handle().read_linear(move |app, _| app.store().get(&key).cloned()).await
    }

    /// Adds node `id` (peer address `addr`) as a voter.
    pub async fn join(&self, id: u64, addr: impl Into<String>) -> Result<()> {
        self.handle().add_node(NodeId(id), addr).await
    }

    /// Removes node `id`.
    pub async fn leave(&self, id: u64) -> Result<()> {
        self.handle().remove_node(NodeId(id)).await
    }

    /// The members as this node knows them.
    pub async fn cluster_nodes(&self) -> Result<Vec<NodeInfo>> {
        Ok(nodes_of(&self.handle().report().await?))
    }

    /// Hands leadership to node `id`; `Ok` once this node's leader knows
    /// that `id` leads.
    pub async fn transfer_leadership(&self, id: u64) -> Result<()> {
        self.handle().transfer_leadership(NodeId(id)).await
    }

    /// The health status.
    pub async fn health(&self) -> Result<Health> {
        Ok(Health::of(&self.handle().report().await?))
    }

    /// The core's counters.
    pub async fn metrics(&self) -> Result<Metrics> {
        Ok(self.handle().report().await?.status.metrics)
    }

    /// Watches `pattern` (an exact key, or `prefix.**`): committed changes
    /// from now on, in commit order.
    pub async fn watch(&self, pattern: impl AsRef<[u8]>) -> Result<Watcher> {
        let pattern = Pattern::parse(pattern.as_ref());
        let cap = self.watch_capacity;
        let mut w = self.handle().read_local(move |app| app.watch(pattern, cap)).await??;
        w.handle = Some(self.handle().clone());
        Ok(w)
    }

    /// Stops the node and its ports; when it returns, every listening
    /// socket of the node is closed (its addresses can be bound again).
    pub async fn shutdown(&mut self) {
        self.raft.shutdown().await;
        for t in self.port_tasks.drain(..) {
            let _ = t.await;
        }
    }

    /// Whether the node has stopped.
    pub fn is_stopped(&self) -> bool {
        self.raft.is_stopped()
    }

    /// Resolves once the node is stopping: asked to by `shutdown`, or
    /// stopped by itself after a fatal error (returned). Its ports close
    /// then; a process serving this node should exit.
    pub fn stopped(&self) -> impl std::future::Future<Output = Option<String>> + Send + 'static {
        self.raft.stopped()
    }

    async fn command(&self, cmd: KvCommand) -> Result<KvResponse> {
        let resp = self.handle().propose_with_forward(KvRequest::new(cmd).encode()).await?;
        if let KvResponse::Error(e) = &resp {
            return Err(Error::Unexpected(e.to_string()));
        }
        Ok(resp)
    }
}
