//! `xraft serve`: one node until Ctrl-C, or until the node stops by itself
//! after a fatal error (then the process exits non-zero).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use tracing::{info, warn};
use xraft_kv::resp::Reply;
use xraft_tokio::{KvServer, ServerConfig};

use crate::resp::Client;

/// `xraft serve` options.
#[derive(clap::Args)]
pub struct Args {
    /// This node's id (non-zero, unique, never reused).
    #[arg(long)]
    id: u64,
    /// Cluster id: peers and data of other clusters are refused.
    #[arg(long, default_value_t = 1)]
    cluster_id: u64,
    /// Peer listen address.
    #[arg(long, default_value = "127.0.0.1:7001")]
    peer: String,
    /// Peer address other nodes dial (default: the bound peer address).
    #[arg(long)]
    advertise: Option<String>,
    /// RESP client listen address.
    #[arg(long, default_value = "127.0.0.1:6379")]
    client: String,
    /// HTTP /metrics and /health listen address.
    #[arg(long)]
    http: Option<String>,
    /// Data directory.
    #[arg(long)]
    data: PathBuf,
    /// Founding members of a new cluster, this node included:
    /// `1=127.0.0.1:7001,2=127.0.0.1:7002,3=127.0.0.1:7003`.
    #[arg(long, value_delimiter = ',')]
    members: Vec<String>,
    /// Runtime worker threads (1: a single-threaded runtime; 0: one per core).
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
    /// Join an existing cluster through this member's client address
    /// (sends `RAFT.ADDNODE <id> <peer address>`).
    #[arg(long)]
    join: Option<String>,
}

fn parse_members(list: &[String]) -> Result<Vec<(u64, String)>> {
    list.iter()
        .filter(|m| !m.is_empty())
        .map(|m| {
            let (id, addr) = m.split_once('=').context("a member is `id=host:port`")?;
            Ok((id.trim().parse().context("member id")?, addr.trim().to_owned()))
        })
        .collect()
}

/// Runs the node until Ctrl-C or until it stops by itself.
pub async fn run(a: Args) -> Result<()> {
    let mut c = ServerConfig::new(a.id, a.peer.clone(), a.data.clone());
    c.cluster_id = a.cluster_id;
    c.advertise_addr = a.advertise.clone();
    c.client_addr = Some(a.client.clone());
    c.http_addr = a.http.clone();
    c.initial_members = parse_members(&a.members)?;
    if c.initial_members.is_empty() && a.join.is_none() {
        info!("no --members and no --join: founding a one-node cluster");
        c.initial_members = vec![(a.id, a.advertise.clone().unwrap_or_else(|| a.peer.clone()))];
    }
    let mut server = KvServer::start(c).await?;
    info!(
        id = a.id,
        peer = %server.peer_addr(),
        client = ?server.client_addr(),
        http = ?server.http_addr(),
        "serving"
    );
    if let Some(seed) = &a.join {
        let me = a.advertise.clone().unwrap_or_else(|| server.peer_addr().to_string());
        join(seed, a.id, &me).await?;
    }
    // Ctrl-C, or the node stopping by itself (a storage failure): exit,
    // non-zero in the second case, so a supervisor sees it and can act.
    tokio::select! {
        r = tokio::signal::ctrl_c() => {
            r?;
            info!("shutting down");
            server.shutdown().await;
            Ok(())
        }
        failure = server.stopped() => {
            server.shutdown().await;
            match failure {
                Some(e) => bail!("the node stopped: {e}"),
                None => Ok(()),
            }
        }
    }
}

async fn join(seed: &str, id: u64, addr: &str) -> Result<()> {
    for attempt in 1..=50 {
        let r = async {
            let mut c = Client::connect(seed).await?;
            c.call(&["RAFT.ADDNODE", &id.to_string(), addr]).await
        }
        .await;
        match r {
            Ok(Reply::Simple(_)) => {
                info!(seed, "joined the cluster");
                return Ok(());
            }
            Ok(Reply::Error(e)) if e.contains("already a voter") => return Ok(()),
            Ok(other) => warn!(attempt, reply = ?other, "join not accepted yet"),
            Err(e) => warn!(attempt, error = %e, "join attempt failed"),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    bail!("could not join through {seed}")
}
