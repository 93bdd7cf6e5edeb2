//! xraft-storage: durable storage for an xraft node.
//!
//! One data directory per node holds:
//! - `seg-<first index>.log` — the log, in segments of length-prefixed,
//!   CRC32C-checked records (module `codec` has the layout, `log` the rules);
//! - `HARDSTATE` — term, vote and commit in two checksummed slots;
//! - `snap-<index>-<term>.snap` — the newest durable snapshot;
//! - `IDENTITY` — disk id, node id and cluster id; `LOCK` — the lock file;
//! - `PEERS` — the disk id each peer was last seen with, for the runtime.
//!
//! A runtime turns the core's `Persist` outputs into [`Storage::append`] and
//! [`Storage::set_hard_state`] calls, makes a group of them durable with one
//! [`Storage::sync`] (group commit: one write and one `fdatasync` per touched
//! file), and rebuilds the core from [`Recovered`] after a restart. All I/O
//! is synchronous `std::fs`, and every handle is `Send`, so the crate serves
//! a tokio blocking thread and a plain thread beside a mio loop alike.
//!
//! `docs/storage.md` describes the on-disk format and the recovery rules.
#![forbid(unsafe_code)]
// This crate exists to do file I/O and to read the clock (for disk ids): the
// workspace clippy.toml bans both for the sans-IO crates only.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

mod codec;
mod error;
mod fsutil;
mod hard_state;
mod identity;
mod log;
mod options;
mod peers;
mod snapshot;
mod storage;

pub use codec::fuzz_check;
pub use error::{Error, Result};
pub use identity::DiskId;
pub use log::RECORD_OVERHEAD_BYTES;
pub use options::Options;
pub use peers::PEERS_MAX;
pub use snapshot::{SnapshotReader, SnapshotSource, SnapshotWriter};
pub use storage::{Recovered, Storage};
