//! Typed errors a caller of the core can see.
//!
//! Owns [`ProposeError`]: everything a peer, a client or the cluster's state
//! can cause is a value here, never a panic.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::types::NodeId;

/// Why a request (proposal, read, membership change, transfer) was refused or
/// did not complete. Crosses the wire when a follower forwards a request.
#[derive(Clone, Debug, Error, PartialEq, Eq, Serialize, Deserialize)]
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
    TooLarge(Cow<'static, str>),
    /// A membership change is already in flight (or this leader has not yet
    /// committed an entry of its term); retry once it commits.
    #[error("a configuration change is in flight")]
    ConfigInFlight,
    /// The membership change is not valid for the current configuration.
    #[error("invalid membership change: {0}")]
    InvalidChange(Cow<'static, str>),
    /// Leadership is being transferred; retry against the new leader.
    #[error("leadership transfer to {target:?} in progress")]
    Transferring {
        /// The node taking over.
        target: NodeId,
    },
    /// No answer within the configured timeout; the outcome is unknown.
    #[error("timed out; outcome unknown")]
    Timeout,
    /// The node is shutting down.
    #[error("shutting down")]
    Shutdown,
    /// Leadership was lost before the request's outcome was known. The
    /// request may or may not take effect.
    #[error("leadership lost; outcome unknown")]
    LeadershipLost,
}
