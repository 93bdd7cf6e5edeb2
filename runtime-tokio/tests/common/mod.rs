//! Shared helpers for the runtime's integration tests: real sockets on
//! loopback (bound first, then handed to the nodes), real temp dirs, and
//! waiting on conditions with deadlines instead of sleeping.
#![allow(dead_code, clippy::disallowed_methods, clippy::disallowed_types, clippy::unwrap_used)]

use std::future::Future;
use std::net::TcpListener;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use xraft_tokio::{KvServer, Listeners, ServerConfig};

/// Generous: the test box has two shared cores.
pub const DEADLINE: Duration = Duration::from_secs(20);

pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_test_writer()
        .try_init();
}

/// Polls `f` every 10 ms until it returns `Some`, or panics after the deadline.
pub async fn wait_for<T, F, Fut>(what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(v) = f().await {
            return v;
        }
        if start.elapsed() > DEADLINE {
            panic!("timed out waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

pub fn listener() -> TcpListener {
    TcpListener::bind("127.0.0.1:0").unwrap()
}

/// One node's fixed identity: id, addresses, data dir.
pub struct Slot {
    pub id: u64,
    pub peer: String,
    pub client: String,
    pub dir: PathBuf,
    peer_l: Option<TcpListener>,
    client_l: Option<TcpListener>,
}

impl Slot {
    pub fn new(id: u64, root: &std::path::Path) -> Slot {
        let (p, c) = (listener(), listener());
        Slot {
            id,
            peer: p.local_addr().unwrap().to_string(),
            client: c.local_addr().unwrap().to_string(),
            dir: root.join(format!("n{id}")),
            peer_l: Some(p),
            client_l: Some(c),
        }
    }

    pub fn config(&self, members: &[(u64, String)]) -> ServerConfig {
        let mut c = ServerConfig::new(self.id, self.peer.clone(), self.dir.clone());
        c.client_addr = Some(self.client.clone());
        c.initial_members = members.to_vec();
        c
    }

    /// Starts the node: on the pre-bound listeners the first time, binding
    /// the same addresses again after a restart.
    pub async fn start(&mut self, config: ServerConfig) -> KvServer {
        let listeners =
            Listeners { peer: self.peer_l.take(), client: self.client_l.take(), http: None };
        KvServer::start_with(config, listeners).await.unwrap()
    }
}

/// A cluster of `n` founding members.
pub struct Cluster {
    pub root: tempfile::TempDir,
    pub slots: Vec<Slot>,
    pub nodes: Vec<Option<KvServer>>,
}

impl Cluster {
    pub async fn start(n: u64) -> Cluster {
        Cluster::start_with(n, |_| {}).await
    }

    pub async fn start_with(n: u64, tweak: impl Fn(&mut ServerConfig)) -> Cluster {
        init_tracing();
        let root = tempfile::tempdir().unwrap();
        let mut slots: Vec<Slot> = (1..=n).map(|id| Slot::new(id, root.path())).collect();
        let members = Cluster::members_of(&slots);
        let mut nodes = Vec::new();
        for s in &mut slots {
            let mut c = s.config(&members);
            tweak(&mut c);
            nodes.push(Some(s.start(c).await));
        }
        Cluster { root, slots, nodes }
    }

    pub fn members_of(slots: &[Slot]) -> Vec<(u64, String)> {
        slots.iter().map(|s| (s.id, s.peer.clone())).collect()
    }

    pub fn node(&self, id: u64) -> &KvServer {
        self.nodes[(id - 1) as usize].as_ref().expect("node running")
    }

    pub fn running(&self) -> impl Iterator<Item = &KvServer> {
        self.nodes.iter().flatten()
    }

    /// Waits until every running node agrees on one leader; returns its id.
    pub async fn leader(&self) -> u64 {
        wait_for("a leader all running nodes agree on", || async {
            let mut leader = None;
            for n in self.running() {
                let h = n.health().await.ok()?;
                let l = h.leader?;
                if leader.is_some_and(|x| x != l) {
                    return None;
                }
                leader = Some(l);
            }
            let l = leader?;
            let lh = self.nodes.get((l - 1) as usize)?.as_ref()?.health().await.ok()?;
            (lh.role == "leader").then_some(l)
        })
        .await
    }

    pub async fn stop(&mut self, id: u64) {
        let mut n = self.nodes[(id - 1) as usize].take().expect("running");
        n.shutdown().await;
    }

    pub async fn restart(&mut self, id: u64) {
        let members = Cluster::members_of(&self.slots);
        let slot = &mut self.slots[(id - 1) as usize];
        let c = slot.config(&members);
        self.nodes[(id - 1) as usize] = Some(slot.start(c).await);
    }

    /// The documented way to replace a member whose data is lost: `id`
    /// (already stopped) is removed through `via`, started again with an
    /// empty directory and no members, and added back.
    pub async fn replace_with_empty(&mut self, via: u64, id: u64) {
        self.node(via).leave(id).await.unwrap();
        let slot = &mut self.slots[(id - 1) as usize];
        std::fs::remove_dir_all(&slot.dir).unwrap();
        self.nodes[(id - 1) as usize] = Some(slot.start(slot.config(&[])).await);
        let addr = slot.peer.clone();
        self.node(via).join(id, addr).await.unwrap();
    }

    /// Waits until each node of `ids` knows the disks of `n` other members.
    pub async fn wait_disks_known(&self, ids: impl IntoIterator<Item = u64>, n: usize) {
        for id in ids {
            wait_for("every node to know the other members' disks", || async {
                (self.node(id).handle().report().await.ok()?.peer_disks_known == n).then_some(())
            })
            .await;
        }
    }

    /// Waits until every running node has applied at least `index`.
    pub async fn applied_all(&self, index: u64) {
        wait_for("all nodes to apply", || async {
            for n in self.running() {
                if n.health().await.ok()?.last_applied < index {
                    return None;
                }
            }
            Some(())
        })
        .await
    }

    pub async fn shutdown(mut self) {
        for n in self.nodes.iter_mut().flatten() {
            n.shutdown().await;
        }
    }
}
