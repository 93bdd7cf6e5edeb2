//! Typed errors a caller of the core can see.
//!
//! Owns [`ProposeError`]: everything a peer, a client or the cluster's state
//! can cause is a value here, never a panic.

use thiserror::Error;

use crate::types::NodeId;

/// Why a request was refused or did not complete.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProposeError {
    /// This node is not the leader; `leader_hint` is the leader it knows of.
    #[error("not the leader (leader hint: {leader_hint:?})")]
    NotLeader {
        /// The current leader, if known.
        leader_hint: Option<NodeId>,
    },
    /// No leader is known.
    #[error("no leader")]
    NoLeader,
    /// The leader's uncommitted log is at its bound; retry later.
    #[error("too many uncommitted entries; retry later")]
    Busy,
    /// The request is larger than the configured bound.
    #[error("request too large: {0}")]
    TooLarge(&'static str),
    /// Leadership was lost before the request's outcome was known. The
    /// request may or may not take effect.
    #[error("leadership lost; outcome unknown")]
    LeadershipLost,
}
