//! The leader's view of one follower's log (etcd's `Progress`).
//!
//! Owns flow control: probing a follower one message at a time until its log
//! matches, then pipelining appends within a window bounded by count and
//! bytes. Invariants: `match_index < next_index`; `match_index` never
//! decreases within a term; the inflight window never exceeds its bounds.

use std::collections::VecDeque;

use crate::types::{LogIndex, NodeId};

/// How the leader is currently replicating to a follower.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum ProgressState {
    /// Matching point unknown: one append at a time, waiting for each answer.
    Probe,
    /// Matching: appends are pipelined optimistically.
    Replicate,
    /// Sending a snapshot; appends wait until it is installed.
    Snapshot,
}

/// Replication state of one peer.
#[derive(Debug)]
pub(crate) struct Progress {
    pub id: NodeId,
    /// Highest index known to be durable on the peer and to match our log.
    pub match_index: LogIndex,
    /// Next index to send.
    pub next_index: LogIndex,
    pub state: ProgressState,
    /// In `Probe`: a probe is out, wait for its answer (or a heartbeat answer).
    pub probe_sent: bool,
    /// Appends in flight in `Replicate`: (last index sent, payload bytes).
    inflight: VecDeque<(LogIndex, usize)>,
    inflight_bytes: usize,
    /// Heard from since the last CheckQuorum round.
    pub recent_active: bool,
    /// Whether this peer votes.
    pub voter: bool,
    /// In `Snapshot`: the snapshot being sent, the next offset to send, and
    /// when the last chunk went out (ticks).
    pub snap_index: LogIndex,
    pub snap_offset: u64,
    pub snap_sent_at: u64,
}

impl Progress {
    pub fn new(id: NodeId, next_index: LogIndex, voter: bool) -> Self {
        Progress {
            id,
            match_index: LogIndex::ZERO,
            next_index,
            state: ProgressState::Probe,
            probe_sent: false,
            inflight: VecDeque::new(),
            inflight_bytes: 0,
            recent_active: true,
            voter,
            snap_index: LogIndex::ZERO,
            snap_offset: 0,
            snap_sent_at: 0,
        }
    }

    /// Whether no further append may be sent now.
    pub fn paused(&self, max_msgs: usize, max_bytes: usize) -> bool {
        match self.state {
            ProgressState::Probe => self.probe_sent,
            ProgressState::Replicate => {
                self.inflight.len() >= max_msgs || self.inflight_bytes >= max_bytes
            }
            ProgressState::Snapshot => true,
        }
    }

    /// Records an append of entries through `last` carrying `bytes` of payload.
    pub fn sent(&mut self, last: LogIndex, bytes: usize, had_entries: bool) {
        match self.state {
            ProgressState::Probe | ProgressState::Snapshot => self.probe_sent = true,
            ProgressState::Replicate => {
                if had_entries {
                    self.next_index = last.next();
                    self.inflight.push_back((last, bytes));
                    self.inflight_bytes += bytes;
                }
            }
        }
    }

    /// A success answer acknowledging `index`. Returns whether `match_index`
    /// advanced. Stale or duplicated answers change nothing.
    pub fn on_ack(&mut self, index: LogIndex) -> bool {
        let advanced = index > self.match_index;
        if advanced {
            self.match_index = index;
        }
        if self.next_index <= index {
            self.next_index = index.next();
        }
        while let Some(&(last, bytes)) = self.inflight.front() {
            if last > index {
                break;
            }
            self.inflight.pop_front();
            self.inflight_bytes -= bytes;
        }
        match self.state {
            ProgressState::Probe => self.become_replicate(),
            ProgressState::Snapshot if self.match_index >= self.snap_index => self.become_probe(),
            _ => {}
        }
        advanced
    }

    /// A rejection of the append whose `prev_index` was `rejected`. Returns
    /// false if the answer is stale. `next` is the leader's choice of where to
    /// probe next (from the follower's hint).
    pub fn on_reject(&mut self, rejected: LogIndex, next: LogIndex) -> bool {
        match self.state {
            ProgressState::Snapshot => return false,
            ProgressState::Replicate => {
                if rejected <= self.match_index {
                    return false; // an old append, answered late
                }
            }
            ProgressState::Probe => {
                if rejected != self.next_index.prev() {
                    return false; // not the probe we are waiting for
                }
            }
        }
        self.become_probe();
        self.next_index = next.max(self.match_index.next());
        true
    }

    /// Starts sending snapshot `index` from its first byte.
    pub fn become_snapshot(&mut self, index: LogIndex) {
        self.state = ProgressState::Snapshot;
        self.snap_index = index;
        self.snap_offset = 0;
        self.inflight.clear();
        self.inflight_bytes = 0;
    }

    pub fn become_probe(&mut self) {
        self.state = ProgressState::Probe;
        self.probe_sent = false;
        self.next_index = self.match_index.next();
        self.inflight.clear();
        self.inflight_bytes = 0;
    }

    fn become_replicate(&mut self) {
        self.state = ProgressState::Replicate;
        self.probe_sent = false;
        self.next_index = self.match_index.next();
        self.inflight.clear();
        self.inflight_bytes = 0;
    }

    #[cfg(any(test, debug_assertions))]
    pub fn check(&self, max_msgs: usize) {
        assert!(self.match_index < self.next_index, "{:?}: match >= next", self.id);
        assert!(self.inflight.len() <= max_msgs, "{:?}: inflight window overflow", self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probe_then_replicate() {
        let mut p = Progress::new(NodeId(2), LogIndex(11), true);
        assert!(!p.paused(4, 1000));
        p.sent(LogIndex(10), 0, false);
        assert!(p.paused(4, 1000), "one probe at a time");
        // rejected prev=10, hint says probe from 6
        assert!(p.on_reject(LogIndex(10), LogIndex(6)));
        assert_eq!(p.next_index, LogIndex(6));
        assert!(!p.paused(4, 1000));
        p.sent(LogIndex(8), 10, true);
        assert!(p.on_ack(LogIndex(8)));
        assert_eq!(p.state, ProgressState::Replicate);
        assert_eq!(p.next_index, LogIndex(9));
    }

    #[test]
    fn window_bounds_and_stale_answers() {
        let mut p = Progress::new(NodeId(2), LogIndex(1), true);
        p.on_ack(LogIndex::ZERO);
        for i in 1..=4 {
            p.sent(LogIndex(i), 100, true);
        }
        assert!(p.paused(4, 10_000));
        assert!(!p.on_ack(LogIndex(0)));
        assert!(p.on_ack(LogIndex(2)));
        assert!(!p.paused(4, 10_000));
        assert!(!p.on_ack(LogIndex(1)), "duplicate answer does not regress");
        assert_eq!(p.match_index, LogIndex(2));
        assert!(!p.on_reject(LogIndex(1), LogIndex(1)), "stale rejection is ignored");
        assert_eq!(p.state, ProgressState::Replicate);
        assert!(p.on_reject(LogIndex(3), LogIndex(3)));
        assert_eq!(p.state, ProgressState::Probe);
        assert_eq!(p.next_index, LogIndex(3));
    }
}
