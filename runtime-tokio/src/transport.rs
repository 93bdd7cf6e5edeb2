//! The peer transport: TCP, one outbound connection to each member (and to
//! any other node this one sends to), the core's framed wire format after a
//! handshake.
//!
//! Owns dialing (with backoff), the handshake, per-peer writer tasks with
//! bounded queues and batched writes, and the listener whose connections
//! feed inbound messages to the node task.
//!
//! Handshake (dialer first, all integers little endian):
//! `"XRFTPEER" | version u16 | cluster u64 | from u64 | to u64 | disk u128 |
//! len u16 | advertised address (len bytes)`; the listener answers
//! `"XRFTPEER" | version u16 | cluster u64 | its id u64 | status u8 |
//! disk u128 | len u16 | reason`. `disk` is the sender's data directory's
//! disk id. A wrong magic, version, cluster or node id, or a member that
//! comes with another disk than before ([`crate::disks`]), is refused with
//! the reason logged on both sides. After it, the dialer only writes frames and the
//! listener only reads them. Invariants: a frame's length is checked against
//! `frame_bytes_max` before it is buffered; any bad frame closes that
//! connection with a logged reason and nothing else; a full peer queue drops
//! the message (Raft tolerates loss); nothing here blocks the node task.
//! Inbound connections are capped (`peer_connections_max`; one more is
//! closed at once), and received messages not yet stepped hold shares of a
//! byte budget (`peer_inbound_bytes_max`, each weighed by frame plus
//! decoded entries): a connection waiting for a share reads nothing more.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::Duration;

use bytes::{Buf, BytesMut};
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use tokio::sync::{mpsc, watch, Semaphore};
use tracing::{debug, info, warn};
use xraft::wire::{decode_frame, encode_frame};
use xraft::{Message, NodeId};
use xraft_storage::DiskId;

use crate::accept::{
    fd_budgets, keepalive, write_all_progress, AcceptBackoff, BufferShare, LogThrottle, Permits,
    BUFFER_FREE_BYTES,
};
use crate::disks::{Live, PeerDisks};

/// Handshake magic.
pub const PEER_MAGIC: [u8; 8] = *b"XRFTPEER";
/// Peer protocol version.
pub const PEER_PROTOCOL_VERSION: u16 = 2;
/// Longest advertised address or refusal reason in a handshake.
const HANDSHAKE_TEXT_MAX: usize = 256;
/// Fixed part of the dialer's hello, before the advertised address.
const HELLO_FIXED: usize = 52;
/// Fixed part of the listener's answer, before the refusal reason.
const ANSWER_FIXED: usize = 45;
const BACKOFF_MIN: Duration = Duration::from_millis(20);
const BACKOFF_MAX: Duration = Duration::from_secs(1);

/// What the listener hands the node task.
pub(crate) enum Inbound {
    /// A peer connected and said where it can be reached.
    Hello { from: NodeId, addr: String },
    /// A message from a peer, with its share of the inbound byte budget
    /// (returned when dropped, once the node task stepped it).
    Message(Message, Permits),
}

/// Settings shared by every connection.
#[derive(Clone, Debug)]
pub(crate) struct TransportConfig {
    pub me: NodeId,
    pub cluster_id: u64,
    pub advertise: String,
    pub frame_bytes_max: usize,
    pub handshake_timeout: Duration,
    pub queue_max: usize,
    pub write_batch_bytes_max: usize,
    /// See `Limits::peer_inbound_bytes_max`.
    pub inbound_bytes_max: usize,
    /// See `Limits::peer_connections_max`.
    pub connections_max: usize,
    /// See `Limits::peer_non_members_max`.
    pub non_members_max: usize,
    /// See `Limits::client_connections_max` (they share the open files).
    pub client_connections_max: usize,
    /// A write call to a peer that makes no progress for this long is
    /// abandoned and the peer redialed (the snapshot RPC timeout).
    pub write_timeout: Duration,
    /// This node's data directory's disk id.
    pub disk: DiskId,
    /// The disks members were seen with.
    pub disks: Arc<PeerDisks>,
}

/// The node task's side: one bounded queue per peer.
pub(crate) struct Peers {
    cfg: TransportConfig,
    peers: BTreeMap<NodeId, Peer>,
    /// Addresses learned from configuration and handshakes.
    addrs: BTreeMap<NodeId, String>,
    /// The membership in force (voters and learners); empty until known.
    members: BTreeSet<NodeId>,
    /// Non-members whose address came from a handshake, oldest first; at
    /// most `non_members_max`, each with its address and maybe a writer.
    strangers: VecDeque<NodeId>,
    shutdown: watch::Receiver<bool>,
    /// Messages dropped because a queue was full or the peer unknown.
    pub dropped: u64,
}

struct Peer {
    addr: String,
    tx: mpsc::Sender<Message>,
}

impl Peers {
    pub fn new(
        cfg: TransportConfig,
        addrs: BTreeMap<NodeId, String>,
        shutdown: watch::Receiver<bool>,
    ) -> Self {
        let (members, strangers) = (BTreeSet::new(), VecDeque::new());
        Peers { cfg, peers: BTreeMap::new(), addrs, members, strangers, shutdown, dropped: 0 }
    }

    /// A peer's handshake announced its address. A non-member's is kept so
    /// that it can be answered (a node asking to join, a removed one still
    /// calling), but only for the newest `non_members_max` of them: anyone
    /// can handshake under any id, and each address kept may get a writer
    /// that redials it.
    pub fn hello(&mut self, id: NodeId, addr: String) {
        if id == self.cfg.me || addr.is_empty() {
            return;
        }
        // A member's address is the replicated one: a handshake claiming
        // its id (anyone can send one) does not redirect its writer.
        if self.members.contains(&id) && self.addrs.get(&id).is_some_and(|a| !a.is_empty()) {
            return;
        }
        if !self.members.contains(&id) && !self.strangers.contains(&id) {
            self.strangers.push_back(id);
            while self.strangers.len() > self.cfg.non_members_max {
                if let Some(old) = self.strangers.pop_front() {
                    debug!(peer = old.0, "forgetting a non-member's address");
                    self.addrs.remove(&old);
                    self.peers.remove(&old);
                }
            }
        }
        self.learn(id, addr);
    }

    /// Queues `msg` for its peer; `lookup` resolves an unknown address (from
    /// the replicated membership). Never waits.
    pub fn send(&mut self, msg: Message, lookup: impl FnOnce(NodeId) -> Option<String>) {
        let to = msg.to;
        if !self.peers.contains_key(&to) {
            let addr = match self.addrs.get(&to) {
                Some(a) => a.clone(),
                None => match lookup(to) {
                    Some(a) => {
                        self.addrs.insert(to, a.clone());
                        a
                    }
                    None => {
                        self.dropped += 1;
                        debug!(to = to.0, "no address for peer; message dropped");
                        return;
                    }
                },
            };
            self.start(to, addr);
        }
        let peer = self.peers.get(&to).expect("started above");
        if peer.tx.try_send(msg).is_err() {
            self.dropped += 1;
        }
    }

    /// Records `id`'s address, reconnecting if it changed.
    fn learn(&mut self, id: NodeId, addr: String) {
        if id == self.cfg.me || addr.is_empty() {
            return;
        }
        if self.peers.get(&id).is_some_and(|p| p.addr != addr) {
            info!(peer = id.0, addr = %addr, "peer address changed; reconnecting");
            self.peers.remove(&id);
        }
        self.addrs.insert(id, addr);
    }

    /// The membership in force changed: updates addresses, stops writers
    /// to peers whose address changed and to former members (a writer is
    /// started again if the node ever sends to one), and connects to every
    /// member not yet connected, so each node handshakes with, and learns
    /// the disk of, every member rather than only those it sends to.
    pub fn update_addrs(&mut self, membership: &xraft::Membership) {
        self.cfg.disks.set_members(membership);
        for (id, addr) in &membership.addrs {
            self.learn(*id, addr.clone());
        }
        // A node not yet added knows no membership: keep what it has.
        if membership.voters.is_empty() {
            return;
        }
        self.members = membership.voters.iter().chain(&membership.learners).copied().collect();
        let members = &self.members;
        self.strangers.retain(|id| !members.contains(id));
        self.peers.retain(|id, _| membership.contains(*id));
        let missing: Vec<(NodeId, String)> = membership
            .addrs
            .iter()
            .filter(|(id, a)| {
                **id != self.cfg.me
                    && !a.is_empty()
                    && membership.contains(**id)
                    && !self.peers.contains_key(*id)
            })
            .map(|(id, a)| (*id, a.clone()))
            .collect();
        for (id, addr) in missing {
            self.start(id, addr);
        }
    }

    /// Memberships are being written to the log, in this order; `in_force`
    /// is the one in force: the peer-disk registry forgets those any of
    /// them leaves out. Returns the record's version to release once the
    /// write is durable (see `PeerDisks::set_members_in_turn`).
    pub fn memberships_in_turn(
        &mut self,
        seen: &[xraft::Membership],
        in_force: &xraft::Membership,
        hold: bool,
    ) -> Option<u64> {
        self.cfg.disks.set_members_in_turn(seen, in_force, hold)
    }

    /// Connections, either way, refused because a member came with another
    /// disk than before.
    pub fn disks_refused(&self) -> u64 {
        self.cfg.disks.refused()
    }

    /// Members whose disk this node knows (from a handshake it dialed).
    pub fn disks_known(&self) -> usize {
        self.cfg.disks.known()
    }

    fn start(&mut self, to: NodeId, addr: String) {
        let (tx, rx) = mpsc::channel(self.cfg.queue_max);
        let cfg = self.cfg.clone();
        let shutdown = self.shutdown.clone();
        tokio::spawn(writer(cfg, to, addr.clone(), rx, shutdown));
        self.peers.insert(to, Peer { addr, tx });
    }
}

/// Dials `to`, handshakes, and writes queued messages in batches; redials
/// with backoff after any failure. Ends when the queue's sender is dropped
/// or on shutdown.
async fn writer(
    cfg: TransportConfig,
    to: NodeId,
    addr: String,
    mut rx: mpsc::Receiver<Message>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut backoff = BACKOFF_MIN;
    let mut buf = Vec::with_capacity(64 << 10);
    let mut failures = 0u32;
    loop {
        let dial = tokio::time::timeout(cfg.handshake_timeout, dial(&cfg, to, &addr));
        let (mut stream, _live) = tokio::select! {
            _ = shutdown.changed() => return,
            r = dial => match r.unwrap_or_else(|_| Err(Dial::Failed("handshake timed out".into()))) {
                Ok(s) => s,
                Err(e) => {
                    failures += 1;
                    let loud = failures == 1 || failures.is_multiple_of(50);
                    match e {
                        // Refused either way: a setup error someone must fix.
                        Dial::Refused(reason) if loud => {
                            warn!(peer = to.0, %addr, %reason, failures, "peer connection refused")
                        }
                        Dial::Failed(reason) if loud => {
                            info!(peer = to.0, %addr, %reason, failures, "cannot reach peer")
                        }
                        Dial::Refused(reason) | Dial::Failed(reason) => {
                            debug!(peer = to.0, %addr, %reason, "cannot reach peer")
                        }
                    }
                    // Messages queued meanwhile are stale: drop them.
                    while rx.try_recv().is_ok() {}
                    if rx.is_closed() {
                        return;
                    }
                    tokio::select! {
                        _ = shutdown.changed() => return,
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(BACKOFF_MAX);
                    continue;
                }
            },
        };
        if failures > 0 {
            info!(peer = to.0, %addr, "connected to peer");
        }
        failures = 0;
        backoff = BACKOFF_MIN;
        loop {
            let msg = tokio::select! {
                _ = shutdown.changed() => return,
                m = rx.recv() => match m { Some(m) => m, None => return },
            };
            buf.clear();
            push_frame(&cfg, to, &msg, &mut buf);
            while buf.len() < cfg.write_batch_bytes_max {
                match rx.try_recv() {
                    Ok(m) => push_frame(&cfg, to, &m, &mut buf),
                    Err(_) => break,
                }
            }
            if buf.is_empty() {
                continue;
            }
            // A peer that stopped reading must not hold up shutdown, nor
            // this writer forever (its queue would fill and drop meanwhile).
            let written = tokio::select! {
                _ = shutdown.changed() => return,
                r = write_all_progress(&mut stream, &buf, cfg.write_timeout) => r,
            };
            match written {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {
                    warn!(peer = to.0, "peer write stalled; reconnecting");
                    break;
                }
                Err(e) => {
                    debug!(peer = to.0, error = %e, "peer write failed; reconnecting");
                    break;
                }
            }
        }
    }
}

/// Appends `msg`'s frame to `buf`, unless it is larger than a peer accepts
/// (`frame_bytes_max`): the peer would close the connection on it and lose
/// the rest of the batch, so it is dropped here, with a warning (Raft
/// copes with a lost message; the core's bounds make this a bug if seen).
fn push_frame(cfg: &TransportConfig, to: NodeId, msg: &Message, buf: &mut Vec<u8>) {
    let start = buf.len();
    encode_frame(msg, buf);
    let payload = buf.len() - start - xraft::wire::FRAME_HEADER_BYTES;
    if payload > cfg.frame_bytes_max {
        buf.truncate(start);
        warn!(
            peer = to.0,
            bytes = payload,
            max = cfg.frame_bytes_max,
            "message over the frame bound; dropped"
        );
    }
}

/// Why a dial did not give a connection.
enum Dial {
    /// Unreachable, closed or timed out: retried quietly.
    Failed(String),
    /// Refused by either side (wrong cluster, version, node or disk): a
    /// setup error, logged as a warning.
    Refused(String),
}

async fn dial(cfg: &TransportConfig, to: NodeId, addr: &str) -> Result<(TcpStream, Live), Dial> {
    let failed = |e: std::io::Error| Dial::Failed(e.to_string());
    let mut s = TcpStream::connect(addr).await.map_err(failed)?;
    s.set_nodelay(true).map_err(failed)?;
    keepalive(&s);
    let mut hello = Vec::with_capacity(64);
    hello.extend_from_slice(&PEER_MAGIC);
    hello.extend_from_slice(&PEER_PROTOCOL_VERSION.to_le_bytes());
    hello.extend_from_slice(&cfg.cluster_id.to_le_bytes());
    hello.extend_from_slice(&cfg.me.0.to_le_bytes());
    hello.extend_from_slice(&to.0.to_le_bytes());
    hello.extend_from_slice(&cfg.disk.0.to_le_bytes());
    let advertise = &cfg.advertise.as_bytes()[..cfg.advertise.len().min(HANDSHAKE_TEXT_MAX)];
    hello.extend_from_slice(&(advertise.len() as u16).to_le_bytes());
    hello.extend_from_slice(advertise);
    s.write_all(&hello).await.map_err(failed)?;
    let mut fixed = [0u8; ANSWER_FIXED];
    let short = |e: std::io::Error| Dial::Failed(format!("no handshake answer: {e}"));
    s.read_exact(&mut fixed[..10]).await.map_err(short)?;
    if fixed[0..8] != PEER_MAGIC {
        return Err(Dial::Refused("peer answered with a bad magic".into()));
    }
    let version = u16::from_le_bytes([fixed[8], fixed[9]]);
    if version != PEER_PROTOCOL_VERSION {
        return Err(Dial::Refused(format!(
            "peer speaks protocol version {version}, this node {PEER_PROTOCOL_VERSION}"
        )));
    }
    s.read_exact(&mut fixed[10..]).await.map_err(short)?;
    let status = fixed[26];
    let len = u16::from_le_bytes([fixed[43], fixed[44]]) as usize;
    if status != 0 {
        let mut reason = vec![0u8; len.min(HANDSHAKE_TEXT_MAX)];
        let _ = s.read_exact(&mut reason).await;
        return Err(Dial::Refused(format!("by peer: {}", String::from_utf8_lossy(&reason))));
    }
    let le64 = |at: usize| u64::from_le_bytes(fixed[at..at + 8].try_into().expect("8 bytes"));
    let (cluster, id) = (le64(10), le64(18));
    if cluster != cfg.cluster_id {
        return Err(Dial::Refused(format!(
            "peer is in cluster {cluster}, this node in cluster {}",
            cfg.cluster_id
        )));
    }
    if id != to.0 {
        return Err(Dial::Refused(format!("expected node {} but reached node {id}", to.0)));
    }
    let disk = DiskId(u128::from_le_bytes(fixed[27..43].try_into().expect("16 bytes")));
    let live = cfg.disks.open(to, disk, Some(addr)).map_err(|r| Dial::Refused(r.reason))?;
    Ok((s, live))
}

/// Accepts peer connections until shutdown.
pub(crate) async fn listen(
    cfg: TransportConfig,
    listener: TcpListener,
    inbound: mpsc::Sender<Inbound>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut backoff = AcceptBackoff::new("peer");
    let budget = Arc::new(Semaphore::new(cfg.inbound_bytes_max.min(Semaphore::MAX_PERMITS)));
    let mut max = cfg.connections_max;
    // Shares the open-file limit with the client port (see `fd_budgets`).
    if let Some((_, fit)) = fd_budgets(cfg.client_connections_max, max).filter(|(_, p)| *p < max) {
        warn!(
            configured = max,
            allowed = fit,
            "peer_connections_max lowered to fit the open-file limit"
        );
        max = fit;
    }
    let slots = Arc::new(Semaphore::new(max.min(Semaphore::MAX_PERMITS)));
    loop {
        let (stream, remote) = tokio::select! {
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
        let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
            static FULL: LogThrottle = LogThrottle::new();
            match FULL.loud() {
                (true, times) => {
                    warn!(node = cfg.me.0, %remote, max = cfg.connections_max, times, "too many peer connections; closed")
                }
                (false, _) => debug!(node = cfg.me.0, %remote, "too many peer connections; closed"),
            }
            drop(stream);
            continue;
        };
        let (cfg, inbound, mut shutdown) = (cfg.clone(), inbound.clone(), shutdown.clone());
        let budget = Arc::clone(&budget);
        tokio::spawn(async move {
            tokio::select! {
                _ = shutdown.changed() => {}
                r = serve_peer(&cfg, stream, &inbound, &budget) => {
                    if let Err(reason) = r {
                        static CLOSED: LogThrottle = LogThrottle::new();
                        match CLOSED.loud() {
                            (true, times) => warn!(node = cfg.me.0, %remote, %reason, times, "closed peer connection"),
                            (false, _) => debug!(node = cfg.me.0, %remote, %reason, "closed peer connection"),
                        }
                    }
                }
            }
            drop(slot);
        });
    }
}

/// Handshakes, then reads frames until the peer closes or sends garbage.
async fn serve_peer(
    cfg: &TransportConfig,
    mut s: TcpStream,
    inbound: &mpsc::Sender<Inbound>,
    budget: &Arc<Semaphore>,
) -> Result<(), String> {
    let _ = s.set_nodelay(true);
    keepalive(&s);
    let hello = tokio::time::timeout(cfg.handshake_timeout, read_hello(cfg, &mut s)).await;
    let (from, disk, addr) = match hello.unwrap_or_else(|_| Err("handshake timed out".into())) {
        Ok(h) => h,
        Err(reason) => {
            let _ = answer(cfg, &mut s, Some(&reason)).await;
            return Err(format!("handshake refused: {reason}"));
        }
    };
    let _live = match cfg.disks.open(from, disk, None) {
        Ok(live) => live,
        Err(refused) => {
            let _ = answer(cfg, &mut s, Some(&refused.reason)).await;
            // The refused node redials every second: say so now and then.
            if refused.loud() {
                warn!(node = cfg.me.0, peer = from.0, reason = %refused.reason, times = refused.nth, "handshake refused");
            } else {
                debug!(node = cfg.me.0, peer = from.0, reason = %refused.reason, "handshake refused");
            }
            return Ok(());
        }
    };
    answer(cfg, &mut s, None).await.map_err(|e| e.to_string())?;
    debug!(node = cfg.me.0, peer = from.0, %addr, "peer connected");
    if inbound.send(Inbound::Hello { from, addr }).await.is_err() {
        return Ok(());
    }
    let mut buf = BytesMut::with_capacity(64 << 10);
    // What the buffer holds past 64 KiB (a frame being received) draws on
    // the same budget as received messages, and must keep coming.
    let mut share = BufferShare::new(budget, cfg.inbound_bytes_max);
    // Since when the buffer holds part of a frame.
    let mut frame_started: Option<tokio::time::Instant> = None;
    // Whether the buffer's allocation grew past its first 64 KiB.
    let mut grown = false;
    loop {
        loop {
            match decode_frame(&buf, cfg.frame_bytes_max) {
                Ok(Some((msg, used))) => {
                    buf.advance(used);
                    frame_started = None;
                    if msg.from != from || msg.to != cfg.me {
                        return Err(format!(
                            "message from {:?} to {:?} on the connection of {from:?}",
                            msg.from, msg.to
                        ));
                    }
                    // The frame's share moves to the message; the rest of its
                    // weight is waited for: meanwhile this connection reads
                    // nothing more, so its sender slows.
                    let weight = inbound_weight(&msg, used, cfg.inbound_bytes_max);
                    let Some(permits) = share.hand_over(weight as usize).await else {
                        return Ok(());
                    };
                    if inbound.send(Inbound::Message(msg, permits)).await.is_err() {
                        return Ok(());
                    }
                }
                Ok(None) => break,
                Err(e) => return Err(format!("bad frame from {from:?}: {e}")),
            }
        }
        // Between frames a connection holds nothing of the budget, and
        // the room a large frame made is given back, however long it is
        // quiet. (`capacity()` leaves out what was read from the front of
        // the allocation, so whether it grew is remembered.)
        if buf.is_empty() && grown {
            buf = BytesMut::with_capacity(BUFFER_FREE_BYTES);
            grown = false;
        }
        if buf.capacity() - buf.len() < 16 << 10 {
            buf.reserve(64 << 10);
        }
        grown |= buf.capacity() > BUFFER_FREE_BYTES;
        if !share.cover(buf.capacity(), cfg.write_timeout).await {
            return Err("no room in the inbound byte budget for a frame being received".into());
        }
        // A frame started must keep arriving (each read within the stall
        // timeout) and be complete within four of them; between frames a
        // connection may be quiet as long as it likes (keepalive finds dead
        // hosts).
        let read = if buf.is_empty() {
            s.read_buf(&mut buf).await
        } else {
            let now = tokio::time::Instant::now();
            let started = *frame_started.get_or_insert(now);
            let deadline = (now + cfg.write_timeout).min(started + 4 * cfg.write_timeout);
            match tokio::time::timeout_at(deadline, s.read_buf(&mut buf)).await {
                Ok(r) => r,
                Err(_) => return Err("a frame stopped arriving, or arrived too slowly".into()),
            }
        };
        match read {
            Ok(0) => return Ok(()),
            Ok(_) => {}
            Err(e) => return Err(e.to_string()),
        }
    }
}

/// A received message's weight in the inbound byte budget: its frame,
/// plus what its entries take decoded (a frame of many tiny entries takes
/// many times its size in memory). At most the whole budget, so any
/// message can get through.
fn inbound_weight(msg: &Message, frame_bytes: usize, budget: usize) -> u32 {
    let entries = match &msg.body {
        xraft::MessageBody::Append { entries, .. } => entries.len(),
        _ => 0,
    };
    let bytes =
        frame_bytes.saturating_add(entries.saturating_mul(std::mem::size_of::<xraft::Entry>()));
    u32::try_from(bytes.min(budget).min(Semaphore::MAX_PERMITS)).unwrap_or(u32::MAX)
}

async fn read_hello(
    cfg: &TransportConfig,
    s: &mut TcpStream,
) -> Result<(NodeId, DiskId, String), String> {
    let mut fixed = [0u8; HELLO_FIXED];
    s.read_exact(&mut fixed[..10]).await.map_err(|e| format!("no handshake: {e}"))?;
    if fixed[0..8] != PEER_MAGIC {
        return Err("not an xraft peer (bad magic)".into());
    }
    // The version first: another version's hello may have another length.
    let version = u16::from_le_bytes([fixed[8], fixed[9]]);
    if version != PEER_PROTOCOL_VERSION {
        return Err(format!(
            "peer protocol version {version}, this node speaks {PEER_PROTOCOL_VERSION}"
        ));
    }
    s.read_exact(&mut fixed[10..]).await.map_err(|e| format!("short handshake: {e}"))?;
    let le64 = |at: usize| u64::from_le_bytes(fixed[at..at + 8].try_into().expect("8 bytes"));
    let (cluster, from, to) = (le64(10), le64(18), le64(26));
    let disk = DiskId(u128::from_le_bytes(fixed[34..50].try_into().expect("16 bytes")));
    if cluster != cfg.cluster_id {
        return Err(format!(
            "peer is in cluster {cluster}, this node in cluster {}",
            cfg.cluster_id
        ));
    }
    if to != cfg.me.0 {
        return Err(format!("peer dialed node {to}, this is node {}", cfg.me.0));
    }
    if from == 0 || from == cfg.me.0 {
        return Err(format!("peer claims the invalid id {from}"));
    }
    let len = u16::from_le_bytes([fixed[50], fixed[51]]) as usize;
    if len > HANDSHAKE_TEXT_MAX {
        return Err(format!("advertised address of {len} bytes is too long"));
    }
    let mut addr = vec![0u8; len];
    s.read_exact(&mut addr).await.map_err(|e| format!("short handshake: {e}"))?;
    Ok((NodeId(from), disk, String::from_utf8_lossy(&addr).into_owned()))
}

/// The listener's answer: accepted, or refused with `reason`.
async fn answer(
    cfg: &TransportConfig,
    s: &mut TcpStream,
    refused: Option<&str>,
) -> std::io::Result<()> {
    let reason = refused.map_or(&[][..], |r| &r.as_bytes()[..r.len().min(HANDSHAKE_TEXT_MAX)]);
    let mut answer = Vec::with_capacity(ANSWER_FIXED + reason.len());
    answer.extend_from_slice(&PEER_MAGIC);
    answer.extend_from_slice(&PEER_PROTOCOL_VERSION.to_le_bytes());
    answer.extend_from_slice(&cfg.cluster_id.to_le_bytes());
    answer.extend_from_slice(&cfg.me.0.to_le_bytes());
    answer.push(u8::from(refused.is_some()));
    answer.extend_from_slice(&cfg.disk.0.to_le_bytes());
    answer.extend_from_slice(&(reason.len() as u16).to_le_bytes());
    answer.extend_from_slice(reason);
    s.write_all(&answer).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(non_members_max: usize) -> TransportConfig {
        TransportConfig {
            me: NodeId(1),
            cluster_id: 1,
            advertise: "127.0.0.1:1".into(),
            frame_bytes_max: 1 << 20,
            handshake_timeout: Duration::from_millis(100),
            queue_max: 4,
            write_batch_bytes_max: 1 << 16,
            inbound_bytes_max: 1 << 20,
            connections_max: 4,
            non_members_max,
            client_connections_max: 4,
            write_timeout: Duration::from_secs(1),
            disk: DiskId(1),
            disks: PeerDisks::new(&xraft::Membership::default(), &[], Box::new(|| {})),
        }
    }

    fn heartbeat(to: u64) -> Message {
        Message {
            from: NodeId(1),
            to: NodeId(to),
            term: xraft::Term(1),
            body: xraft::MessageBody::TimeoutNow,
        }
    }

    /// Handshakes under made-up ids keep at most `non_members_max`
    /// addresses (and writers) of non-members; members are never evicted.
    #[tokio::test]
    async fn non_members_learned_from_handshakes_are_bounded() {
        let (_stop, shutdown) = watch::channel(false);
        let mut p = Peers::new(config(8), BTreeMap::new(), shutdown);
        let members = xraft::Membership::with_addrs(
            [1, 2, 3].map(|i| (NodeId(i), format!("127.0.0.1:{}", 10 + i))),
        );
        p.update_addrs(&members);
        for i in 100..200 {
            p.hello(NodeId(i), "127.0.0.1:9".into());
            // The core answers a stranger's message: a writer starts.
            p.send(heartbeat(i), |_| None);
        }
        let strangers = |p: &Peers| p.addrs.keys().filter(|id| id.0 >= 100).count();
        assert_eq!(strangers(&p), 8);
        assert_eq!(p.peers.keys().filter(|id| id.0 >= 100).count(), 8);
        assert!(p.addrs.contains_key(&NodeId(199)), "the newest are kept");
        // A member's handshake never counts against the bound, nor moves
        // the member's replicated address.
        p.hello(NodeId(2), "127.0.0.1:99".into());
        assert_eq!(p.addrs.get(&NodeId(2)).map(String::as_str), Some("127.0.0.1:12"));
        assert!(p.peers.contains_key(&NodeId(2)));
        // A stranger that becomes a member leaves the stranger list.
        let mut m = members.clone();
        m.learners.insert(NodeId(199));
        m.addrs.insert(NodeId(199), "127.0.0.1:9".into());
        p.update_addrs(&m);
        for i in 300..320 {
            p.hello(NodeId(i), "127.0.0.1:9".into());
        }
        assert!(p.addrs.contains_key(&NodeId(199)), "a member is not evicted");
        assert_eq!(strangers(&p), 9, "8 strangers and the new learner");
    }
}
