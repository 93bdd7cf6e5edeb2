//! xraft-kv: the built-in replicated key-value store of xraft, and the client
//! protocol codec. Pure and deterministic like the core: no clock, socket,
//! file, thread or unseeded randomness.
//!
//! - [`KvStore`] is a [`xraft::StateMachine`]: feed it committed entries
//!   (postcard [`KvRequest`]s) with [`StateMachine::apply`](xraft::StateMachine::apply),
//!   snapshot it in O(1) and stream the [`KvSnapshot`] out in chunks, restore
//!   it from any reader. Optional client sessions make retried writes
//!   at-most-once.
//! - Its [`WatchHub`] queues one [`WatchEvent`] per committed change to each
//!   watcher whose [`Pattern`] (exact key or `prefix.**`) matches; a runtime
//!   drains the queues after each applied batch.
//! - [`resp`] parses and encodes the Redis protocol (RESP2) sans-IO and maps
//!   client commands to a typed [`resp::Command`].
//! - [`counter::Counter`] is a second state machine, showing the runtime is
//!   generic.
#![forbid(unsafe_code)]

pub mod command;
pub mod counter;
mod keyspace;
pub mod resp;
mod session;
pub mod snapshot;
pub mod store;
pub mod watch;

pub use command::{DecodeError, KvCommand, KvError, KvRequest, KvResponse, SessionTag};
pub use snapshot::{KvSnapshot, SnapshotError};
pub use store::{KvConfig, KvStore};
pub use watch::{Pattern, WatchConfig, WatchError, WatchEvent, WatchHub, WatchId, WatchItem};
