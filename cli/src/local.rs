//! A local cluster in this process: nodes on loopback ports, data in a
//! temporary directory. Node 1 founds the cluster alone; the others start
//! empty and are added with joins, as in the seed's formation phase.

use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use xraft_tokio::{KvServer, ServerConfig};

/// The running nodes and their data directory (removed on drop).
pub struct LocalCluster {
    /// The nodes, id 1 first.
    pub nodes: Vec<KvServer>,
    /// Where their data lives (removed when dropped).
    _dir: tempfile::TempDir,
}

fn config(id: u64, dir: &std::path::Path) -> ServerConfig {
    let mut c = ServerConfig::new(id, "127.0.0.1:0", dir.join(format!("node{id}")));
    c.client_addr = Some("127.0.0.1:0".into());
    c
}

impl LocalCluster {
    /// Starts `n` nodes, announcing each join with `log`.
    pub async fn start(n: u64, mut log: impl FnMut(&str)) -> Result<LocalCluster> {
        let dir = tempfile::Builder::new().prefix("xraft-cluster-").tempdir()?;
        // Node 1 binds first so its real peer address can be its membership.
        let first = {
            let l = std::net::TcpListener::bind("127.0.0.1:0")?;
            let addr = l.local_addr()?.to_string();
            let mut c = config(1, dir.path());
            c.peer_addr = addr.clone();
            c.initial_members = vec![(1, addr)];
            let listeners = xraft_tokio::Listeners { peer: Some(l), ..Default::default() };
            KvServer::start_with(c, listeners).await.context("start node 1")?
        };
        wait_until(Duration::from_secs(10), "node 1 to lead", || async {
            first.health().await.is_ok_and(|h| h.role == "leader")
        })
        .await?;
        let mut nodes = vec![first];
        for id in 2..=n {
            log(&format!("Adding Node {id}..."));
            let node = KvServer::start(config(id, dir.path())).await?;
            let addr = node.peer_addr().to_string();
            let leader = &nodes[0];
            retry(Duration::from_secs(10), || async {
                // A retried join may find its earlier attempt applied.
                let members = leader.cluster_nodes().await?;
                if members.iter().any(|m| m.id == id && m.voter) {
                    return Ok(());
                }
                leader.join(id, addr.clone()).await
            })
            .await?;
            nodes.push(node);
        }
        let c = LocalCluster { nodes, _dir: dir };
        let size = n as usize;
        wait_until(Duration::from_secs(20), "every node to see the whole cluster", || async {
            for node in &c.nodes {
                match node.health().await {
                    Ok(h) if h.cluster_size == size && h.leader.is_some() => {}
                    _ => return false,
                }
            }
            true
        })
        .await?;
        Ok(c)
    }

    /// RESP addresses of the nodes.
    pub fn client_addrs(&self) -> Vec<String> {
        self.nodes.iter().filter_map(|n| n.client_addr()).map(|a| a.to_string()).collect()
    }

    /// The node that leads, as the first node sees it.
    pub async fn leader(&self) -> Result<&KvServer> {
        let h = self.nodes[0].health().await?;
        let id = h.leader.context("no leader")?;
        self.nodes.iter().find(|n| n.id() == id).context("leader is not local")
    }

    /// Stops every node.
    pub async fn shutdown(mut self) {
        for n in &mut self.nodes {
            n.shutdown().await;
        }
    }
}

/// Polls `f` every 10 ms until true or the deadline.
pub async fn wait_until<F, Fut>(limit: Duration, what: &str, mut f: F) -> Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while !f().await {
        if start.elapsed() > limit {
            bail!("timed out waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Ok(())
}

/// Retries `f` (a membership change may meet `ConfigInFlight`) until it
/// succeeds or the deadline passes.
pub async fn retry<F, Fut>(limit: Duration, mut f: F) -> Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = xraft_tokio::Result<()>>,
{
    let start = Instant::now();
    loop {
        match f().await {
            Ok(()) => return Ok(()),
            Err(e) if start.elapsed() > limit => return Err(e.into()),
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}
