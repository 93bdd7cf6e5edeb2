//! xraft-tokio: the tokio runtime of xraft.
//!
//! Drives a pure [`xraft::Node`] with real time, sockets and files:
//!
//! - one node task owns the `Node` (bounded channels in, outputs handled in
//!   order, work per wake-up capped) — module `node`;
//! - a disk thread owns the [`xraft_storage::Storage`] and group-commits every
//!   queued write with one fsync — module `disk`;
//! - an apply task owns the state machine, answers proposals, serves reads,
//!   streams snapshots on blocking threads — module `apply`;
//! - a TCP peer transport with a handshake, per-peer bounded queues, batched
//!   writes and reconnection — module `transport`;
//! - for the built-in KV store: [`KvServer`] (in-process API), a RESP client
//!   port that `redis-cli` and `redis-benchmark` speak to, and an HTTP
//!   endpoint with Prometheus `/metrics` and JSON `/health`.
//!
//! Any state machine can be driven with [`RaftNode`] and [`RaftHandle`] by
//! implementing [`Application`].
// This crate exists to do I/O: it reads clocks, opens sockets and files and
// spawns threads, which the workspace clippy.toml bans for the sans-IO
// crates only.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]
#![forbid(unsafe_code)]

mod accept;
mod apply;
mod client;
mod config;
mod disk;
mod disks;
mod error;
mod http;
mod kv;
mod node;
mod raft;
mod transport;

pub use accept::raise_fd_limit;
pub use apply::Application;
pub use config::{ConfigError, Limits, ServerConfig};
pub use disk::{SyncHistogram, SYNC_BUCKETS_MICROS};
pub use error::{Error, Result};
pub use kv::{Health, KvApp, KvServer, Listeners, NodeInfo, Watcher};
pub use node::Report;
pub use raft::{RaftHandle, RaftNode};
pub use transport::{PEER_MAGIC, PEER_PROTOCOL_VERSION};
