//! Starting a node, and the generic handle to it.
//!
//! Owns [`RaftNode`] (a running node: its tasks, threads and listeners) and
//! [`RaftHandle`] (a cheap, cloneable way to ask it things, for any
//! [`Application`]). Start-up order: open and recover storage; bootstrap a
//! brand-new founding member durably; restore the state machine from the
//! durable snapshot; build the core node; then start the disk thread, the
//! apply task, the transport and the node task. Invariant: every call on a
//! handle ends, with an answer, `Stopped`, or `Timeout` after the propose
//! timeout.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tracing::{error, info, warn};
use xraft::{
    Commands, LogIndex, Membership, MembershipChange, Node, NodeId, PersistId, ProposeError,
    RestartState,
};
use xraft_storage::{DiskId, Storage};

use crate::apply::{Application, Applier};
use crate::config::ServerConfig;
use crate::disk;
use crate::disks::PeerDisks;
use crate::error::{Error, Result};
use crate::node::{NodeTask, Report, Request};
use crate::transport::{self, Peers, TransportConfig};

/// A running node: owns its tasks; [`RaftNode::handle`] talks to it.
pub struct RaftNode<A: Application> {
    handle: RaftHandle<A>,
    peer_addr: std::net::SocketAddr,
    /// Turns `true` on `shutdown` and when the node task ends by itself (a
    /// fatal error): every listener and task of the node then stops.
    shutdown: Arc<watch::Sender<bool>>,
    /// Why the node task stopped, if it failed.
    failure: Arc<std::sync::OnceLock<String>>,
    node_task: Option<JoinHandle<Result<(), String>>>,
    disk_thread: Option<std::thread::JoinHandle<()>>,
    /// The peer listener's task: it owns the listening socket.
    listener_task: Option<JoinHandle<()>>,
}

/// A cloneable handle to a running node, for any state machine.
pub struct RaftHandle<A: Application> {
    inner: Arc<Inner<A>>,
}

struct Inner<A: Application> {
    id: NodeId,
    requests: mpsc::Sender<Request<A>>,
    timeout: Duration,
    /// Bytes one proposal may carry (the core's `append_bytes_max`), with
    /// `xraft::ENTRY_OVERHEAD_BYTES` per command.
    proposal_bytes_max: usize,
}

impl<A: Application> Clone for RaftHandle<A> {
    fn clone(&self) -> Self {
        RaftHandle { inner: Arc::clone(&self.inner) }
    }
}

impl<A: Application> RaftNode<A> {
    /// Starts a node with `app` as its state machine, binding the peer
    /// address from `config` (or using `peer_listener` if given).
    pub async fn start(
        config: ServerConfig,
        app: A,
        peer_listener: Option<std::net::TcpListener>,
    ) -> Result<RaftNode<A>> {
        config.validate()?;
        let listener = match peer_listener {
            Some(l) => {
                l.set_nonblocking(true)?;
                TcpListener::from_std(l)?
            }
            None => TcpListener::bind(&config.peer_addr).await?,
        };
        let peer_addr = listener.local_addr()?;
        let advertise = config.advertise_addr.clone().unwrap_or_else(|| peer_addr.to_string());
        let id = NodeId(config.node_id);

        let Opened { storage, restart, app, peer_disks: recorded_disks } = {
            let config = config.clone();
            tokio::task::spawn_blocking(move || open_storage(&config, app))
                .await
                .map_err(|e| Error::Restore(e.to_string()))??
        };
        let snapshot_index = restart.snapshot.as_ref().map_or(LogIndex::ZERO, |s| s.index);
        let node = Node::new(config.core_config(), restart)?;
        info!(node = id.0, peer = %peer_addr, "node starting");

        let limits = &config.limits;
        let (shutdown, shutdown_rx) = watch::channel(false);
        let shutdown = Arc::new(shutdown);
        let failure = Arc::new(std::sync::OnceLock::new());
        let (events_tx, events_rx) = mpsc::unbounded_channel();
        let (disk_tx, disk_rx) = mpsc::channel(limits.disk_queue_max);
        let (persisted_tx, persisted_rx) = watch::channel(PersistId(0));
        let (applied_tx, applied_rx) = watch::channel(snapshot_index);
        let (apply_tx, apply_rx) = mpsc::channel(limits.apply_queue_max);
        let (req_tx, req_rx) = mpsc::channel(limits.requests_queue_max);
        let (inbound_tx, inbound_rx) = mpsc::channel(limits.peer_inbound_queue_max);

        let disk_id = storage.disk_id();
        let disk_stats = Arc::new(disk::DiskStats::default());
        let snapshots = storage.snapshot_source();
        // A weak sender: the registry must not keep the disk thread alive.
        let wake_disk = disk_tx.downgrade();
        let wake = Box::new(move || {
            if let Some(tx) = wake_disk.upgrade() {
                // A full queue wakes the thread anyway.
                let _ = tx.try_send(disk::DiskJob::SavePeerDisks);
            }
        });
        let disks = PeerDisks::new(node.membership(), &recorded_disks, wake);
        let disk_thread = disk::spawn(
            id.0,
            storage,
            disk_rx,
            persisted_tx,
            events_tx.clone(),
            Arc::clone(&disk_stats),
            Arc::clone(&disks),
        )?;
        let applier = Applier {
            app: Some(app),
            applied: snapshot_index,
            jobs: apply_rx,
            applied_tx,
            disk: disk_tx.clone(),
            snapshots: snapshots.clone(),
            events: events_tx.clone(),
            node_id: id.0,
            snapshotting: Default::default(),
            republish: false,
        };
        tokio::spawn(applier.run());

        let tcfg = TransportConfig {
            me: id,
            cluster_id: config.cluster_id,
            advertise,
            frame_bytes_max: node.config().frame_bytes_max,
            handshake_timeout: Duration::from_millis(config.rpc_timeout_ms.max(1)),
            queue_max: limits.peer_outbound_queue_max,
            write_batch_bytes_max: limits.peer_write_batch_bytes_max,
            inbound_bytes_max: limits.peer_inbound_bytes_max,
            connections_max: limits.peer_connections_max,
            non_members_max: limits.peer_non_members_max,
            client_connections_max: limits.client_connections_max,
            write_timeout: Duration::from_millis(config.snapshot_rpc_timeout_ms.max(1)),
            disk: disk_id,
            disks,
        };
        let addrs: BTreeMap<NodeId, String> = config
            .initial_members
            .iter()
            .filter(|(m, _)| *m != id.0)
            .map(|(m, a)| (NodeId(*m), a.clone()))
            .collect();
        let peers = Peers::new(tcfg.clone(), addrs, shutdown_rx.clone());
        let listener_task =
            tokio::spawn(transport::listen(tcfg, listener, inbound_tx, shutdown_rx.clone()));

        let task = NodeTask {
            node,
            tick: Duration::from_millis(config.tick_ms),
            inputs_per_wakeup_max: limits.inputs_per_wakeup_max,
            peers,
            requests: req_rx,
            inbound: inbound_rx,
            events_tx,
            persisted: persisted_rx,
            applied: applied_rx,
            disk: disk_tx,
            apply: apply_tx,
            shutdown: shutdown_rx,
            started: Instant::now(),
            snap_reader: Default::default(),
            snapshots,
            disk_stats,
        };
        let (stop, failed) = (Arc::clone(&shutdown), Arc::clone(&failure));
        let node_task = tokio::spawn(async move {
            let r = task.run(events_rx).await;
            if let Err(e) = &r {
                error!(node = id.0, error = %e, "node stopped");
                let _ = failed.set(e.clone());
            }
            // A node that stopped by itself stops serving: its listeners
            // close, so peers and clients see it down rather than a zombie.
            stop.send_replace(true);
            r
        });
        let handle = RaftHandle {
            inner: Arc::new(Inner {
                id,
                requests: req_tx,
                timeout: Duration::from_millis(config.propose_timeout_ms),
                proposal_bytes_max: config.core_config().append_bytes_max,
            }),
        };
        Ok(RaftNode {
            handle,
            peer_addr,
            shutdown,
            failure,
            node_task: Some(node_task),
            disk_thread: Some(disk_thread),
            listener_task: Some(listener_task),
        })
    }

    /// A handle to this node.
    pub fn handle(&self) -> &RaftHandle<A> {
        &self.handle
    }

    /// The bound peer address.
    pub fn peer_addr(&self) -> std::net::SocketAddr {
        self.peer_addr
    }

    /// A receiver that turns `true` when the node is asked to stop. If the
    /// node has already stopped (say, failed while starting), its value
    /// counts as changed, so a `changed()` wait returns at once.
    pub(crate) fn shutdown_signal(&self) -> watch::Receiver<bool> {
        let mut rx = self.shutdown.subscribe();
        if *rx.borrow() {
            rx.mark_changed();
        }
        rx
    }

    /// Stops the node: its tasks end, its listener closes, the disk thread
    /// finishes its current group and releases the data directory.
    pub async fn shutdown(&mut self) {
        let _ = self.shutdown.send(true);
        if let Some(t) = self.node_task.take() {
            let _ = t.await;
        }
        // The listening socket is closed when this returns: the address
        // can be bound again at once.
        if let Some(t) = self.listener_task.take() {
            let _ = t.await;
        }
        if let Some(t) = self.disk_thread.take() {
            let _ = tokio::task::spawn_blocking(move || t.join()).await;
        }
    }

    /// Whether the node task has stopped (shutdown or a fatal error).
    pub fn is_stopped(&self) -> bool {
        self.node_task.as_ref().is_none_or(|t| t.is_finished())
    }

    /// Resolves once the node is stopping: asked to by `shutdown`, or
    /// stopped by itself after a fatal error (storage failure), which it
    /// returns. A process serving one node should exit when this resolves.
    pub fn stopped(&self) -> impl Future<Output = Option<String>> + Send + 'static {
        let mut rx = self.shutdown.subscribe();
        let failure = Arc::clone(&self.failure);
        async move {
            let _ = rx.wait_for(|stop| *stop).await;
            failure.get().cloned()
        }
    }
}

impl<A: Application> Drop for RaftNode<A> {
    fn drop(&mut self) {
        let _ = self.shutdown.send(true);
    }
}

/// Opens storage, bootstraps a founding member, restores the snapshot.
fn open_storage<A: Application>(config: &ServerConfig, mut app: A) -> Result<Opened<A>> {
    let (mut storage, rec) = Storage::open(&config.data_dir, config.storage_options())?;
    if let Some(e) = &rec.peer_disks_error {
        warn!(node = config.node_id, error = %e, "saved peer disk ids unreadable; learning them again");
    }
    let peer_disks = rec.peer_disks;
    let fresh =
        rec.snapshot.is_none() && rec.entries.is_empty() && rec.hard_state == Default::default();
    if fresh && !config.initial_members.is_empty() {
        let members = config.initial_members.iter().map(|(id, a)| (NodeId(*id), a.clone()));
        let state = RestartState::bootstrap_with(Membership::with_addrs(members));
        storage.append(&state.entries)?;
        storage.set_hard_state(state.hard_state);
        storage.sync()?;
        info!(node = config.node_id, "bootstrapped a new cluster");
        return Ok(Opened { storage, restart: state, app, peer_disks });
    }
    if rec.snapshot.is_some() {
        let mut reader = storage
            .snapshot_reader()?
            .ok_or_else(|| Error::Restore("recovered snapshot vanished".into()))?;
        app.restore(&mut reader).map_err(|e| Error::Restore(e.to_string()))?;
    }
    let state =
        RestartState { hard_state: rec.hard_state, snapshot: rec.snapshot, entries: rec.entries };
    Ok(Opened { storage, restart: state, app, peer_disks })
}

/// A data directory opened and recovered, with the application restored.
struct Opened<A> {
    storage: Storage,
    restart: RestartState,
    app: A,
    /// The peers' disks saved in the directory.
    peer_disks: Vec<(NodeId, DiskId)>,
}

impl<A: Application> RaftHandle<A> {
    /// This node's id.
    pub fn id(&self) -> NodeId {
        self.inner.id
    }

    /// The most bytes one proposal may carry, counting
    /// `xraft::ENTRY_OVERHEAD_BYTES` per command (the core's
    /// `append_bytes_max`); a larger one is refused as `TooLarge`.
    pub fn proposal_bytes_max(&self) -> usize {
        self.inner.proposal_bytes_max
    }

    /// Proposes one command on this node, which must lead (`NotLeader`
    /// otherwise); returns its response once applied here.
    pub async fn propose(&self, command: Bytes) -> Result<A::Response> {
        one(self.propose_batch(Commands::from_elem(command, 1), false).await?)
    }

    /// Proposes one command, forwarded to the leader if this node does not
    /// lead; returns its response once applied on this node.
    pub async fn propose_with_forward(&self, command: Bytes) -> Result<A::Response> {
        one(self.propose_batch(Commands::from_elem(command, 1), true).await?)
    }

    /// Proposes several commands as consecutive entries (one round trip);
    /// returns their responses in order.
    pub async fn propose_batch(
        &self,
        commands: Commands,
        forward: bool,
    ) -> Result<Vec<A::Response>> {
        self.ask(|reply| Request::Propose { commands, forward, reply }).await?
    }

    /// A linearizable read point: the leader's commit index, confirmed by a
    /// quorum, once this node has applied it.
    pub async fn read_index(&self) -> Result<LogIndex> {
        self.read_linear(|_, index| index).await
    }

    /// Runs `f` on the state machine at a linearizable point (ReadIndex,
    /// through the leader if needed), with the read index.
    pub async fn read_linear<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut A, LogIndex) -> T + Send + 'static,
    ) -> Result<T> {
        let (tx, rx) = oneshot::channel();
        let f: crate::apply::ReadFn<A> = Box::new(move |r| {
            let _ = tx.send(r.map(|(app, index)| f(app, index)));
        });
        self.send(Request::Read { f }).await?;
        self.wait(rx).await?
    }

    /// Runs `f` on the state machine as it is on this node now (may be
    /// stale).
    pub async fn read_local<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut A) -> T + Send + 'static,
    ) -> Result<T> {
        let (tx, rx) = oneshot::channel();
        self.send(Request::Local(Box::new(move |app| drop(tx.send(f(app)))))).await?;
        self.wait(rx).await
    }

    /// Adds a voter reachable at `addr` (forwarded to the leader).
    pub async fn add_node(&self, id: NodeId, addr: impl Into<String>) -> Result<()> {
        self.change(MembershipChange::AddVoter { id, addr: addr.into() }).await
    }

    /// Adds a non-voting learner reachable at `addr`.
    pub async fn add_learner(&self, id: NodeId, addr: impl Into<String>) -> Result<()> {
        self.change(MembershipChange::AddLearner { id, addr: addr.into() }).await
    }

    /// Promotes a learner to voter.
    pub async fn promote(&self, id: NodeId) -> Result<()> {
        self.change(MembershipChange::Promote(id)).await
    }

    /// Removes a member.
    pub async fn remove_node(&self, id: NodeId) -> Result<()> {
        self.change(MembershipChange::Remove(id)).await
    }

    /// Applies one membership change; done once it is applied here.
    pub async fn change(&self, change: MembershipChange) -> Result<()> {
        self.ask(|reply| Request::Change { change, reply }).await?
    }

    /// Hands leadership to `target`; `Ok` once the leader that handed off
    /// learns that `target` was elected; `LeadershipLost` if another node
    /// was, or if it heard of no new leader within two election timeouts
    /// (then the outcome is unknown).
    pub async fn transfer_leadership(&self, target: NodeId) -> Result<()> {
        self.ask(|reply| Request::Transfer { target, reply }).await?
    }

    /// The node's status and runtime counters.
    pub async fn report(&self) -> Result<Report> {
        self.ask(Request::Status).await
    }

    async fn ask<T>(&self, make: impl FnOnce(oneshot::Sender<T>) -> Request<A>) -> Result<T> {
        let (tx, rx) = oneshot::channel();
        self.send(make(tx)).await?;
        self.wait(rx).await
    }

    async fn send(&self, r: Request<A>) -> Result<()> {
        let sent = tokio::time::timeout(self.inner.timeout, self.inner.requests.send(r));
        match sent.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(Error::Stopped),
            Err(_) => Err(ProposeError::Timeout.into()),
        }
    }

    async fn wait<T>(
        &self,
        rx: impl Future<Output = Result<T, oneshot::error::RecvError>>,
    ) -> Result<T> {
        // The core fails forwarded requests after the same timeout; the
        // margin lets its typed answer arrive first.
        let limit = self.inner.timeout + Duration::from_millis(500);
        match tokio::time::timeout(limit, rx).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(_)) => Err(Error::Stopped),
            Err(_) => Err(ProposeError::Timeout.into()),
        }
    }
}

fn one<R>(mut v: Vec<R>) -> Result<R> {
    match v.pop() {
        Some(r) if v.is_empty() => Ok(r),
        _ => Err(Error::Unexpected(format!("{} responses for one command", v.len() + 1))),
    }
}
