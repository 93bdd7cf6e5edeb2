//! Server configuration: the seed's settings in milliseconds, converted once
//! to the core's ticks, plus every runtime bound (queues, connections).
//!
//! Owns [`ServerConfig`] and [`Limits`]. Invariant: a node only starts with
//! a configuration that passed [`ServerConfig::validate`], which also
//! validates the derived core [`Config`] and storage options.

use std::path::PathBuf;

use xraft::{Config, NodeId};
use xraft_kv::resp::RespLimits;
use xraft_kv::KvConfig;

/// Everything one node needs to run. Times are in milliseconds, as in the
/// seed; [`ServerConfig::core_config`] turns them into ticks.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// This node's id (non-zero, unique in the cluster, never reused).
    pub node_id: u64,
    /// The cluster's id: peers and data directories of another cluster are
    /// refused.
    pub cluster_id: u64,
    /// Where the peer transport listens (`host:port`; port 0 picks one).
    pub peer_addr: String,
    /// The peer address other nodes should dial; defaults to the bound
    /// `peer_addr`.
    pub advertise_addr: Option<String>,
    /// Where the RESP client port listens, if any.
    pub client_addr: Option<String>,
    /// Where the HTTP `/metrics` and `/health` endpoint listens, if any.
    pub http_addr: Option<String>,
    /// The node's data directory (log, hard state, snapshots).
    pub data_dir: PathBuf,
    /// The founding members (`id`, peer address), this node included, for a
    /// brand-new cluster. Empty: the node joins an existing cluster and
    /// waits to be added (`RAFT.ADDNODE` on a member). Ignored once the data
    /// directory holds state.
    pub initial_members: Vec<(u64, String)>,
    /// Length of one logical tick (default 10 ms).
    pub tick_ms: u64,
    /// Lower bound of the randomized election timeout (default 150 ms).
    pub election_timeout_min_ms: u64,
    /// Upper bound of the randomized election timeout (default 300 ms).
    pub election_timeout_max_ms: u64,
    /// Leader heartbeat period (default 50 ms).
    pub heartbeat_interval_ms: u64,
    /// Maximum entries in one append message (default 5,000).
    pub max_entries_per_request: usize,
    /// Initial dynamic snapshot threshold, in entries (default 100,000).
    pub snapshot_threshold: usize,
    /// Entries kept after a snapshot (default 10,000).
    pub snapshot_min_retention: usize,
    /// Snapshot chunk size (default 1 MiB).
    pub snapshot_chunk_bytes: usize,
    /// Connect and handshake timeout of the peer transport (default 500 ms).
    pub rpc_timeout_ms: u64,
    /// A snapshot chunk not answered in this time is sent again (default 30 s).
    pub snapshot_rpc_timeout_ms: u64,
    /// How long a request waits for its outcome (default 3 s).
    pub propose_timeout_ms: u64,
    /// Log segment size: a segment that reached it is closed (default
    /// 64 MiB, at least 4 KiB).
    pub segment_bytes_max: u64,
    /// Zeros kept written ahead of the log's records, so that a sync does
    /// not grow the file (default 1 MiB; 0 turns preallocation off).
    pub preallocate_bytes: u64,
    /// Runtime bounds.
    pub limits: Limits,
    /// KV state machine settings (used by `KvServer`).
    pub kv: KvConfig,
}

/// Bounds of the runtime's queues and connections.
#[derive(Clone, Debug)]
pub struct Limits {
    /// Requests from handles and client connections queued for the node task.
    pub requests_queue_max: usize,
    /// Peer messages queued for the node task.
    pub peer_inbound_queue_max: usize,
    /// Bytes of peer messages received but not yet stepped, over all peer
    /// connections (each message weighed by its frame plus its decoded
    /// entries); a connection over the budget waits, and TCP pushes back on
    /// its sender. An honest leader keeps at most `inflight_bytes_max` in
    /// flight to a follower, far below the default (64 MiB).
    pub peer_inbound_bytes_max: usize,
    /// Concurrent inbound peer connections; one more is closed at once,
    /// with a log line (default 1,024). A connection holds its place from
    /// accept to close, handshake included, and a crashed peer's half-open
    /// one until TCP keepalive reclaims it (about 50 s): keep this well
    /// above the member count.
    pub peer_connections_max: usize,
    /// Messages queued for one peer; further ones are dropped (Raft copes).
    pub peer_outbound_queue_max: usize,
    /// Non-members whose address (from their handshake) a node keeps, so
    /// it can answer them (a node joining, a removed one still calling);
    /// past the bound the oldest is forgotten, with its connection
    /// (default 64).
    pub peer_non_members_max: usize,
    /// Bytes one peer write gathers from the queue before writing.
    pub peer_write_batch_bytes_max: usize,
    /// Jobs queued for the disk thread (the node task waits when full).
    pub disk_queue_max: usize,
    /// Jobs queued for the apply task (the node task waits when full).
    pub apply_queue_max: usize,
    /// Inputs the node task steps per wake-up before handling outputs.
    pub inputs_per_wakeup_max: usize,
    /// Concurrent client connections on the RESP port.
    pub client_connections_max: usize,
    /// Bytes of requests all client connections together may buffer past
    /// 64 KiB each (a large request being received, a deep pipeline). A
    /// connection that needs more waits up to `client_request_timeout_ms`
    /// for others to release theirs, then is closed with an error (default
    /// 512 MiB; at least `resp.frame_bytes_max`).
    pub client_input_bytes_max: usize,
    /// A request whose first bytes arrived must be complete within this
    /// many milliseconds, or the connection is closed (default 30,000).
    pub client_request_timeout_ms: u64,
    /// A write of replies to a client that makes no progress for this many
    /// milliseconds (the client stopped reading) closes the connection
    /// (default 30,000).
    pub client_write_timeout_ms: u64,
    /// A connection with no request for this many milliseconds is closed;
    /// 0 keeps idle connections open, as Redis's `timeout 0` (default 0).
    pub client_idle_timeout_ms: u64,
    /// Bounds of the RESP parser.
    pub resp: RespLimits,
    /// Events buffered per watcher channel before the hub's queue holds them.
    pub watch_channel_events_max: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            requests_queue_max: 4096,
            peer_inbound_queue_max: 4096,
            peer_inbound_bytes_max: 64 << 20,
            peer_connections_max: 1024,
            peer_outbound_queue_max: 4096,
            peer_non_members_max: 64,
            peer_write_batch_bytes_max: 4 << 20,
            disk_queue_max: 1024,
            apply_queue_max: 1024,
            inputs_per_wakeup_max: 256,
            client_connections_max: 10_000,
            client_input_bytes_max: 512 << 20,
            client_request_timeout_ms: 30_000,
            client_write_timeout_ms: 30_000,
            client_idle_timeout_ms: 0,
            resp: RespLimits::default(),
            watch_channel_events_max: 1024,
        }
    }
}

/// Why a configuration cannot run.
#[derive(Debug, thiserror::Error)]
#[error("invalid server configuration: {0}")]
pub struct ConfigError(pub String);

impl ServerConfig {
    /// The seed's defaults for node `node_id` in `cluster_id`, listening for
    /// peers on `peer_addr`, with data in `data_dir`.
    pub fn new(node_id: u64, peer_addr: impl Into<String>, data_dir: impl Into<PathBuf>) -> Self {
        ServerConfig {
            node_id,
            cluster_id: 1,
            peer_addr: peer_addr.into(),
            advertise_addr: None,
            client_addr: None,
            http_addr: None,
            data_dir: data_dir.into(),
            initial_members: Vec::new(),
            tick_ms: 10,
            election_timeout_min_ms: 150,
            election_timeout_max_ms: 300,
            heartbeat_interval_ms: 50,
            max_entries_per_request: 5_000,
            snapshot_threshold: 100_000,
            snapshot_min_retention: 10_000,
            snapshot_chunk_bytes: 1 << 20,
            rpc_timeout_ms: 500,
            snapshot_rpc_timeout_ms: 30_000,
            propose_timeout_ms: 3_000,
            segment_bytes_max: 64 << 20,
            preallocate_bytes: 1 << 20,
            limits: Limits::default(),
            kv: KvConfig::default(),
        }
    }

    /// Checks every setting, including the derived core configuration.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let check = |ok: bool, what: &str| if ok { Ok(()) } else { Err(ConfigError(what.into())) };
        check(self.node_id != 0, "node_id must be non-zero")?;
        // Peers dial the advertised address (the peer address by default):
        // a wildcard one would have them dial themselves.
        let advertised = self.advertise_addr.as_deref().unwrap_or(&self.peer_addr);
        if let Ok(a) = advertised.parse::<std::net::SocketAddr>() {
            check(
                !a.ip().is_unspecified(),
                "the advertised peer address must not be a wildcard (0.0.0.0 or ::): \
                 set advertise_addr to an address other nodes can dial",
            )?;
        }
        self.storage_options().validate().map_err(|e| ConfigError(e.to_string()))?;
        check(self.tick_ms >= 1, "tick_ms must be >= 1")?;
        for (ms, what) in [
            (self.election_timeout_min_ms, "election_timeout_min_ms"),
            (self.election_timeout_max_ms, "election_timeout_max_ms"),
            (self.heartbeat_interval_ms, "heartbeat_interval_ms"),
            (self.snapshot_rpc_timeout_ms, "snapshot_rpc_timeout_ms"),
            (self.propose_timeout_ms, "propose_timeout_ms"),
        ] {
            if ms < self.tick_ms {
                return Err(ConfigError(format!("{what} ({ms} ms) is below one tick")));
            }
        }
        check(self.rpc_timeout_ms >= 1, "rpc_timeout_ms must be >= 1")?;
        check(
            self.limits.client_request_timeout_ms >= 1,
            "client_request_timeout_ms must be >= 1",
        )?;
        check(self.limits.client_write_timeout_ms >= 1, "client_write_timeout_ms must be >= 1")?;
        // A request of the largest size must be able to get its share, or it
        // would wait at the head of the budget's queue, holding up others.
        check(
            self.limits.client_input_bytes_max >= self.limits.resp.frame_bytes_max,
            "client_input_bytes_max must be at least resp.frame_bytes_max",
        )?;
        let l = &self.limits;
        for (n, what) in [
            (l.requests_queue_max, "requests_queue_max"),
            (l.peer_inbound_queue_max, "peer_inbound_queue_max"),
            (l.peer_inbound_bytes_max, "peer_inbound_bytes_max"),
            (l.peer_connections_max, "peer_connections_max"),
            (l.peer_outbound_queue_max, "peer_outbound_queue_max"),
            (l.peer_non_members_max, "peer_non_members_max"),
            (l.peer_write_batch_bytes_max, "peer_write_batch_bytes_max"),
            (l.disk_queue_max, "disk_queue_max"),
            (l.apply_queue_max, "apply_queue_max"),
            (l.inputs_per_wakeup_max, "inputs_per_wakeup_max"),
            (l.client_connections_max, "client_connections_max"),
            (l.client_input_bytes_max, "client_input_bytes_max"),
            (l.watch_channel_events_max, "watch_channel_events_max"),
        ] {
            if n == 0 {
                return Err(ConfigError(format!("limits.{what} must be positive")));
            }
        }
        for (id, addr) in &self.initial_members {
            check(*id != 0, "initial member ids must be non-zero")?;
            check(!addr.is_empty(), "initial member addresses must be non-empty")?;
        }
        if !self.initial_members.is_empty() {
            check(
                self.initial_members.iter().any(|(id, _)| *id == self.node_id),
                "initial_members must include this node",
            )?;
        }
        self.core_config().validate().map_err(|e| ConfigError(e.to_string()))
    }

    /// The core configuration: milliseconds divided into ticks.
    pub fn core_config(&self) -> Config {
        let ticks = |ms: u64| u32::try_from(ms / self.tick_ms.max(1)).unwrap_or(u32::MAX);
        let mut c = Config::new(NodeId(self.node_id));
        c.election_timeout_ticks_min = ticks(self.election_timeout_min_ms);
        c.election_timeout_ticks_max = ticks(self.election_timeout_max_ms);
        c.heartbeat_interval_ticks = ticks(self.heartbeat_interval_ms);
        c.append_entries_max = self.max_entries_per_request;
        c.snapshot_threshold_entries = self.snapshot_threshold;
        c.snapshot_min_retention_entries = self.snapshot_min_retention;
        c.snapshot_chunk_bytes = self.snapshot_chunk_bytes;
        c.snapshot_chunk_timeout_ticks = ticks(self.snapshot_rpc_timeout_ms);
        c.propose_timeout_ticks = ticks(self.propose_timeout_ms);
        c
    }

    /// The storage options for this node.
    pub fn storage_options(&self) -> xraft_storage::Options {
        let mut o = xraft_storage::Options::new(NodeId(self.node_id), self.cluster_id);
        o.segment_bytes_max = self.segment_bytes_max;
        o.preallocate_bytes = self.preallocate_bytes;
        o
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seed_defaults_convert_to_core_defaults() {
        let c = ServerConfig::new(1, "127.0.0.1:0", "/tmp/x");
        assert!(c.validate().is_ok());
        let core = c.core_config();
        assert_eq!(core, Config::new(NodeId(1)));
    }

    #[test]
    fn a_wildcard_advertised_address_is_refused() {
        let mut c = ServerConfig::new(1, "0.0.0.0:7001", "/tmp/x");
        assert!(c.validate().is_err(), "defaults to advertising the wildcard");
        c.advertise_addr = Some("10.0.0.5:7001".into());
        assert!(c.validate().is_ok());
        c.advertise_addr = Some("[::]:7001".into());
        assert!(c.validate().is_err());
        c.advertise_addr = Some("node1.example:7001".into());
        assert!(c.validate().is_ok(), "host names are dialed as given");
    }

    #[test]
    fn bad_settings_are_refused() {
        let mut c = ServerConfig::new(1, "127.0.0.1:0", "/tmp/x");
        c.heartbeat_interval_ms = 5;
        assert!(c.validate().is_err());
        let mut c = ServerConfig::new(1, "127.0.0.1:0", "/tmp/x");
        c.election_timeout_max_ms = 150;
        assert!(c.validate().is_err());
        let mut c = ServerConfig::new(1, "127.0.0.1:0", "/tmp/x");
        c.initial_members = vec![(2, "a:1".into())];
        assert!(c.validate().is_err());
        let mut c = ServerConfig::new(0, "127.0.0.1:0", "/tmp/x");
        c.cluster_id = 3;
        assert!(c.validate().is_err());
    }
}
