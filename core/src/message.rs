//! Messages exchanged between Raft peers.
//!
//! Owns the peer protocol's vocabulary. Every message carries the sender's
//! term; a node that sends a message has made that term (and any vote it
//! implies) durable first. Encoding to bytes lives in [`crate::wire`].

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::error::ProposeError;
use crate::node::Commands;
use crate::types::{EntryVec, LogIndex, MembershipChange, NodeId, RequestId, SnapshotMeta, Term};

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
        /// Sent on a leader's request (leadership transfer): voters skip the
        /// leader-lease check.
        transfer: bool,
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
        /// The leader's latest ReadIndex round, echoed back.
        ctx: u64,
    },
    /// The answer to a `Heartbeat`.
    HeartbeatResp {
        /// The follower's durable last index that matches this term's leader
        /// (lets a leader resume replication to a probing follower).
        index: LogIndex,
        /// Echo of the heartbeat's `ctx`.
        ctx: u64,
    },
    /// Leadership transfer: campaign now, skipping PreVote.
    TimeoutNow,
    /// One chunk of the leader's snapshot.
    InstallSnapshot {
        /// What the snapshot stands for.
        meta: SnapshotMeta,
        /// Byte offset of `data` in the snapshot.
        offset: u64,
        /// The chunk.
        data: Bytes,
        /// Whether this is the last chunk.
        done: bool,
    },
    /// The answer to an `InstallSnapshot` chunk, sent once it is durable.
    InstallSnapshotResp {
        /// The snapshot's index.
        index: LogIndex,
        /// The offset the follower expects next.
        next_offset: u64,
        /// The follower holds state through `index` (installed, or it
        /// already had it); the leader resumes appends after it.
        done: bool,
    },
    /// A request a follower forwards to the leader.
    Forward {
        /// The follower's tag for the answer.
        ctx: RequestId,
        /// The request.
        request: Forwarded,
    },
    /// The leader's answer to a `Forward`.
    ForwardResp {
        /// Echo of the request's `ctx`.
        ctx: RequestId,
        /// The outcome.
        result: ForwardResult,
    },
}

/// A request forwarded from a follower to the leader.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub enum Forwarded {
    /// Append these commands.
    Propose(Commands),
    /// Confirm leadership and return a read index.
    ReadIndex,
    /// Change the membership.
    ChangeMembership(MembershipChange),
    /// Transfer leadership to a node.
    Transfer(NodeId),
}

/// The leader's answer to a forwarded request.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub enum ForwardResult {
    /// Appended at `first..=last` in `term`.
    Proposed {
        /// The leader's term.
        term: Term,
        /// First index.
        first: LogIndex,
        /// Last index.
        last: LogIndex,
    },
    /// Leadership confirmed: reads may be served once applied through this index.
    ReadIndex(LogIndex),
    /// Done (a transfer completed).
    Completed,
    /// Refused.
    Rejected(ProposeError),
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
            MessageBody::TimeoutNow => "TimeoutNow",
            MessageBody::InstallSnapshot { .. } => "InstallSnapshot",
            MessageBody::InstallSnapshotResp { .. } => "InstallSnapshotResp",
            MessageBody::Forward { .. } => "Forward",
            MessageBody::ForwardResp { .. } => "ForwardResp",
        }
    }
}
