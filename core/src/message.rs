//! Messages exchanged between Raft peers.
//!
//! Owns the peer protocol's vocabulary. Every message carries the sender's
//! term; a node that sends a message has made that term (and any vote it
//! implies) durable first. Encoding to bytes lives in [`crate::wire`].

use serde::{Deserialize, Serialize};

use crate::types::{EntryVec, LogIndex, NodeId, Term};

/// One peer message, addressed and stamped with the sender's term.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct Message {
    /// Sender.
    pub from: NodeId,
    /// Recipient.
    pub to: NodeId,
    /// The sender's current term (for a granted pre-vote: the term asked about).
    pub term: Term,
    /// What the message says.
    pub body: MessageBody,
}

/// The kinds of peer message.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[non_exhaustive]
pub enum MessageBody {
    /// A vote request (paper §5.2), or a PreVote probe (thesis §9.6) that
    /// changes no state on the receiver.
    RequestVote {
        /// True for a PreVote: `term` is the term the sender would campaign in.
        pre_vote: bool,
        /// Index of the candidate's last log entry.
        last_log_index: LogIndex,
        /// Term of the candidate's last log entry.
        last_log_term: Term,
    },
    /// The answer to a `RequestVote`.
    RequestVoteResp {
        /// Echoes the request's `pre_vote`.
        pre_vote: bool,
        /// Whether the vote (or pre-vote) is granted.
        granted: bool,
    },
    /// Log replication (paper §5.3). Empty `entries` is a probe.
    Append {
        /// Index of the entry just before `entries`.
        prev_index: LogIndex,
        /// Term of that entry.
        prev_term: Term,
        /// The leader's commit index.
        commit: LogIndex,
        /// Entries to append, consecutive from `prev_index + 1`.
        entries: EntryVec,
    },
    /// The answer to an `Append`.
    AppendResp {
        /// Whether the consistency check passed.
        success: bool,
        /// On success: the highest index known to match the leader's log and
        /// to be durable on the sender. On rejection: the rejected `prev_index`.
        index: LogIndex,
        /// On rejection, the fast back-off hint: the sender's largest index at
        /// or below `prev_index` whose term is at most the leader's `prev_term`.
        hint_index: LogIndex,
        /// The term at `hint_index` on the sender.
        hint_term: Term,
    },
    /// Leader liveness and commit propagation; `commit` never exceeds what the
    /// leader knows the follower holds.
    Heartbeat {
        /// Commit index, capped at the follower's match index.
        commit: LogIndex,
    },
    /// The answer to a `Heartbeat`.
    HeartbeatResp {
        /// The follower's durable last index that matches this term's leader
        /// (lets a leader resume replication to a probing follower).
        index: LogIndex,
    },
}

impl MessageBody {
    /// A short name for traces and metrics.
    pub fn name(&self) -> &'static str {
        match self {
            MessageBody::RequestVote { pre_vote: true, .. } => "PreVote",
            MessageBody::RequestVote { pre_vote: false, .. } => "Vote",
            MessageBody::RequestVoteResp { pre_vote: true, .. } => "PreVoteResp",
            MessageBody::RequestVoteResp { pre_vote: false, .. } => "VoteResp",
            MessageBody::Append { .. } => "Append",
            MessageBody::AppendResp { .. } => "AppendResp",
            MessageBody::Heartbeat { .. } => "Heartbeat",
            MessageBody::HeartbeatResp { .. } => "HeartbeatResp",
        }
    }
}
