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
//! See [`Node`] for the driving contract.
#![forbid(unsafe_code)]

pub mod config;
pub mod error;
pub mod message;
pub mod state_machine;
pub mod types;
pub mod wire;

pub use config::{Config, ConfigError};
pub use error::ProposeError;
pub use message::{ForwardResult, Forwarded, Message, MessageBody};
pub use state_machine::StateMachine;
pub use types::{
    Entry, EntryKind, EntryVec, HardState, LogIndex, Membership, MembershipChange, NodeId, NodeIds,
    PersistId, RequestId, SnapshotMeta, Term,
};
pub mod node;
pub mod rng;

pub use node::{
    Commands, Input, Metrics, Node, Output, PersistWrite, RestartError, RestartState, Role,
    SnapshotWrite, Status,
};
