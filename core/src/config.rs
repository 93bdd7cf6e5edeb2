//! Node configuration: every bound and timeout, in logical units, with the
//! defaults of the seed library (at a 10 ms tick).
//!
//! Invariant: a `Node` only ever runs with a configuration that passed
//! [`Config::validate`].

use thiserror::Error;

use crate::types::NodeId;

/// Room a peer frame needs besides its bulk (entries of an append, data of
/// a snapshot chunk): the message's other fields, the entries' indexes and
/// terms, a snapshot's membership. `frame_bytes_max` must exceed
/// `append_bytes_max` and `snapshot_chunk_bytes` by at least this much.
pub const FRAME_HEADROOM_BYTES: usize = 64 << 10;

/// Configuration of one Raft node. Times are in ticks (`Input::Tick`); the
/// defaults assume a 10 ms tick, matching the seed's millisecond defaults.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// This node's id.
    pub id: NodeId,
    /// Seed of the node's PRNG (election jitter). Same seed, same behaviour.
    pub seed: u64,
    /// Lower bound of the randomized election timeout (default 15 = 150 ms).
    pub election_timeout_ticks_min: u32,
    /// Upper bound, exclusive, of the randomized election timeout (default 30 = 300 ms).
    pub election_timeout_ticks_max: u32,
    /// Leader heartbeat period (default 5 = 50 ms).
    pub heartbeat_interval_ticks: u32,
    /// Run a PreVote round before a real election (default on).
    pub pre_vote: bool,
    /// A leader that has not heard from a quorum within an election timeout
    /// steps down (default on). Also makes followers ignore votes while they
    /// hear from a leader.
    pub check_quorum: bool,
    /// Maximum entries in one `Append` message (default 5,000).
    pub append_entries_max: usize,
    /// Maximum payload bytes in one `Append` message (default 1 MiB).
    pub append_bytes_max: usize,
    /// Maximum `Append` messages in flight to one follower (default 64).
    pub inflight_appends_max: usize,
    /// Maximum payload bytes in flight to one follower (default 16 MiB).
    pub inflight_bytes_max: usize,
    /// Maximum entries in one `Propose` (default 5,000).
    pub propose_entries_max: usize,
    /// Maximum entries the leader holds that are not yet committed; proposals
    /// beyond it are refused with `Busy` (default 100,000).
    pub uncommitted_entries_max: usize,
    /// Maximum payload bytes the leader holds that are not yet committed
    /// (default 64 MiB).
    pub uncommitted_bytes_max: usize,
    /// Maximum committed entries handed out in `Apply` outputs and not yet
    /// reported applied (default 5,000).
    pub apply_entries_max: usize,
    /// Largest peer frame payload accepted by the wire decoder (default 16 MiB).
    pub frame_bytes_max: usize,
    /// A follower forwards proposals, reads, membership changes and transfers
    /// to the leader (default on); off, it refuses them with `NotLeader`.
    pub forward_requests: bool,
    /// How long a forwarded or leaderless request waits for its answer
    /// before failing with `Timeout` / `NoLeader` (default 300 = 3 s).
    pub propose_timeout_ticks: u32,
    /// Most requests a follower holds while forwarding (default 10,000).
    pub forward_pending_max: usize,
    /// Forwarded proposals a leader remembers, by (sender, request), to drop
    /// a second copy the network delivers (default 100,000; at least
    /// `forward_pending_max`). A copy arriving after this many later
    /// forwarded proposals would be appended again: TCP never duplicates,
    /// so this matters only on a transport that may.
    pub forward_dedup_max: usize,
    /// Most read-index requests waiting for confirmation (default 10,000).
    pub reads_pending_max: usize,
    /// Take a snapshot once the in-memory log holds more entries than this;
    /// the initial value of the dynamic threshold (default 100,000).
    pub snapshot_threshold_entries: usize,
    /// Entries kept after the snapshot point when compacting, for slow
    /// followers (default 10,000).
    pub snapshot_min_retention_entries: usize,
    /// Bytes per snapshot chunk sent to a follower (default 1 MiB).
    pub snapshot_chunk_bytes: usize,
    /// A snapshot chunk not answered within this many ticks is sent again
    /// (default 3,000 = 30 s).
    pub snapshot_chunk_timeout_ticks: u32,
    /// A learner is promoted only once it is at most this many entries
    /// behind the leader (default 1,000).
    pub promote_lag_entries_max: u64,
}

impl Config {
    /// The defaults for node `id`, seeded with `id`.
    pub fn new(id: NodeId) -> Self {
        Config {
            id,
            seed: id.0,
            election_timeout_ticks_min: 15,
            election_timeout_ticks_max: 30,
            heartbeat_interval_ticks: 5,
            pre_vote: true,
            check_quorum: true,
            append_entries_max: 5_000,
            append_bytes_max: 1 << 20,
            inflight_appends_max: 64,
            inflight_bytes_max: 16 << 20,
            propose_entries_max: 5_000,
            uncommitted_entries_max: 100_000,
            uncommitted_bytes_max: 64 << 20,
            apply_entries_max: 5_000,
            frame_bytes_max: 16 << 20,
            forward_requests: true,
            propose_timeout_ticks: 300,
            forward_pending_max: 10_000,
            forward_dedup_max: 100_000,
            reads_pending_max: 10_000,
            snapshot_threshold_entries: 100_000,
            snapshot_min_retention_entries: 10_000,
            snapshot_chunk_bytes: 1 << 20,
            snapshot_chunk_timeout_ticks: 3_000,
            promote_lag_entries_max: 1_000,
        }
    }

    /// Checks every bound; a node refuses to start with an invalid configuration.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let check = |ok: bool, what: &'static str| if ok { Ok(()) } else { Err(ConfigError(what)) };
        check(self.id.0 != 0, "id must be non-zero")?;
        check(self.heartbeat_interval_ticks >= 1, "heartbeat_interval_ticks must be >= 1")?;
        check(
            self.election_timeout_ticks_min > self.heartbeat_interval_ticks,
            "election_timeout_ticks_min must exceed heartbeat_interval_ticks",
        )?;
        check(
            self.election_timeout_ticks_max > self.election_timeout_ticks_min,
            "election_timeout_ticks_max must exceed election_timeout_ticks_min",
        )?;
        check(self.append_entries_max >= 1, "append_entries_max must be >= 1")?;
        check(self.append_bytes_max >= 1, "append_bytes_max must be >= 1")?;
        check(self.inflight_appends_max >= 1, "inflight_appends_max must be >= 1")?;
        check(
            self.inflight_bytes_max >= self.append_bytes_max,
            "inflight_bytes_max must be >= append_bytes_max",
        )?;
        check(self.propose_entries_max >= 1, "propose_entries_max must be >= 1")?;
        check(
            self.uncommitted_entries_max >= self.propose_entries_max,
            "uncommitted_entries_max must be >= propose_entries_max",
        )?;
        check(self.uncommitted_bytes_max >= 1, "uncommitted_bytes_max must be >= 1")?;
        check(self.apply_entries_max >= 1, "apply_entries_max must be >= 1")?;
        check(
            self.frame_bytes_max >= self.append_bytes_max.saturating_add(FRAME_HEADROOM_BYTES),
            "frame_bytes_max must exceed append_bytes_max by FRAME_HEADROOM_BYTES",
        )?;
        check(
            self.frame_bytes_max >= self.snapshot_chunk_bytes.saturating_add(FRAME_HEADROOM_BYTES),
            "frame_bytes_max must exceed snapshot_chunk_bytes by FRAME_HEADROOM_BYTES",
        )?;
        check(self.propose_timeout_ticks >= 1, "propose_timeout_ticks must be >= 1")?;
        check(self.forward_pending_max >= 1, "forward_pending_max must be >= 1")?;
        check(
            self.forward_dedup_max >= self.forward_pending_max,
            "forward_dedup_max must be >= forward_pending_max",
        )?;
        check(self.reads_pending_max >= 1, "reads_pending_max must be >= 1")?;
        check(self.snapshot_threshold_entries >= 1, "snapshot_threshold_entries must be >= 1")?;
        check(
            self.snapshot_min_retention_entries < self.snapshot_threshold_entries,
            "snapshot_min_retention_entries must be below snapshot_threshold_entries",
        )?;
        check(self.snapshot_chunk_bytes >= 1, "snapshot_chunk_bytes must be >= 1")?;
        check(self.snapshot_chunk_timeout_ticks >= 1, "snapshot_chunk_timeout_ticks must be >= 1")?;
        Ok(())
    }
}

/// A configuration that cannot run, with the rule it breaks.
#[derive(Debug, Error, PartialEq, Eq)]
#[error("invalid configuration: {0}")]
pub struct ConfigError(pub &'static str);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        assert_eq!(Config::new(NodeId(1)).validate(), Ok(()));
    }

    #[test]
    fn bad_bounds_are_refused() {
        let mut c = Config::new(NodeId(1));
        c.election_timeout_ticks_max = c.election_timeout_ticks_min;
        assert!(c.validate().is_err());
        let mut c = Config::new(NodeId(0));
        c.seed = 1;
        assert!(c.validate().is_err());
        let mut c = Config::new(NodeId(1));
        c.heartbeat_interval_ticks = c.election_timeout_ticks_min;
        assert!(c.validate().is_err());
    }
}
