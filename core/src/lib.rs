//! xraft: a deterministic, sans-IO Raft consensus core.
//!
//! The whole protocol lives in [`Node`], a state machine driven by
//! [`Node::step`]: feed it one [`Input`] (a tick, a peer message, a proposal,
//! a durability or apply report) and carry out the [`Output`]s it returns, in
//! order. The core reads no clock, opens no socket or file, spawns no thread
//! and draws randomness only from the seed in its [`Config`], so the same
//! inputs always give the same outputs. Runtimes (tokio, mio) and the
//! deterministic simulator drive it the same way.
//!
//! See [`Node`] for the driving contract. A single-node cluster, driven by
//! hand (a real runtime would write to disk before reporting `Persisted`):
//!
//! ```
//! use bytes::Bytes;
//! use xraft::{Config, Input, Node, NodeId, Output, RequestId, RestartState, Role};
//!
//! /// Feeds `input`, then carries out every output: writes are durable at
//! /// once and committed commands are "applied" by collecting them.
//! fn drive(node: &mut Node, input: Input, applied: &mut Vec<Bytes>) {
//!     let mut inputs = vec![input];
//!     while let Some(input) = inputs.pop() {
//!         for output in node.step(input) {
//!             match output {
//!                 Output::Persist(write) => inputs.push(Input::Persisted { through: write.id }),
//!                 Output::Apply { entries } => {
//!                     let index = entries.last().expect("never empty").index;
//!                     applied.extend(entries.into_iter().map(|e| e.data));
//!                     inputs.push(Input::Applied { index });
//!                 }
//!                 _ => {} // a lone node sends nothing
//!             }
//!         }
//!     }
//! }
//!
//! let mut node = Node::new(Config::new(NodeId(1)), RestartState::bootstrap([NodeId(1)]))?;
//! let mut applied = Vec::new();
//! while node.role() != Role::Leader {
//!     drive(&mut node, Input::Tick, &mut applied);
//! }
//! let commands = [Bytes::from_static(b"hello")].into_iter().collect();
//! drive(&mut node, Input::Propose { request: RequestId(1), commands }, &mut applied);
//! assert!(applied.contains(&Bytes::from_static(b"hello")));
//! # Ok::<(), xraft::RestartError>(())
//! ```
#![forbid(unsafe_code)]

pub mod config;
pub mod error;
pub mod message;
pub mod state_machine;
pub mod types;
pub mod wire;

pub use config::{Config, ConfigError, FRAME_HEADROOM_BYTES};
pub use error::ProposeError;
pub use message::{ForwardResult, Forwarded, Message, MessageBody};
pub use state_machine::StateMachine;
pub use types::{
    Entry, EntryKind, EntryVec, HardState, LogIndex, Membership, MembershipChange, NodeId, NodeIds,
    PersistId, RequestId, SnapshotMeta, Term, ADDR_BYTES_MAX, ENTRY_OVERHEAD_BYTES, MEMBERS_MAX,
};
pub mod node;
pub mod rng;

pub use node::{
    entries_after_snapshot, Commands, Input, Metrics, Node, Output, PersistWrite, RestartError,
    RestartState, Role, SnapshotWrite, Status,
};
