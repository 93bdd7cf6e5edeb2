//! Client sessions: at-most-once execution of retried writes.
//!
//! Owns the session table (Raft dissertation §6.3). A session is opened by a
//! replicated command and named by that command's log index; each tagged
//! write records the session's last sequence number and response, so a retry
//! of that write is answered from the record instead of executed twice.
//!
//! Invariants: the table is part of the replicated state (it is in every
//! snapshot, and every replica evicts the same session at the same index);
//! it holds at most `sessions_max` sessions, evicting the one idle longest
//! (smallest last-activity index) when a new one is opened; `by_activity` is
//! exactly the inverse of the sessions' `last_index` fields.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::command::{KvError, KvResponse, SessionTag};

/// One client session's record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Session {
    /// Highest sequence number applied (0 before the first write).
    pub last_seq: u64,
    /// Log index of the session's last activity (open or write).
    pub last_index: u64,
    /// Response to the write numbered `last_seq`.
    pub response: KvResponse,
}

/// What to do with a tagged write.
pub(crate) enum Check {
    /// A new write: execute it, then [`Sessions::record`] it.
    Execute,
    /// A retry of the last write: answer with its response.
    Duplicate(KvResponse),
    /// Refuse it.
    Refuse(KvError),
}

/// The session table. `map` is behind an `Arc` so a snapshot can freeze it
/// in O(1); the first change after a snapshot copies it (O(sessions)).
#[derive(Clone, Debug, Default)]
pub(crate) struct Sessions {
    map: Arc<BTreeMap<u64, Session>>,
    by_activity: BTreeMap<u64, u64>,
}

impl Sessions {
    /// Rebuilds the table from restored records.
    pub fn from_map(map: BTreeMap<u64, Session>) -> Self {
        let by_activity = map.iter().map(|(&c, s)| (s.last_index, c)).collect();
        Sessions { map: Arc::new(map), by_activity }
    }

    /// The records, frozen for a snapshot.
    pub fn frozen(&self) -> Arc<BTreeMap<u64, Session>> {
        Arc::clone(&self.map)
    }

    /// Number of open sessions.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Opens a session named `index`, evicting the idlest one if the table
    /// holds `max` already.
    pub fn open(&mut self, index: u64, max: usize) -> u64 {
        let map = Arc::make_mut(&mut self.map);
        while map.len() >= max.max(1) {
            let Some((_, client)) = self.by_activity.pop_first() else { break };
            map.remove(&client);
        }
        map.insert(index, Session { last_seq: 0, last_index: index, response: KvResponse::Ok });
        self.by_activity.insert(index, index);
        index
    }

    /// Classifies a tagged write. Sequence numbers start at 1: a 0 is
    /// refused as stale (it would otherwise match a new session's
    /// placeholder and be answered without being executed).
    pub fn check(&self, tag: SessionTag) -> Check {
        let Some(s) = self.map.get(&tag.client) else {
            return Check::Refuse(KvError::SessionExpired { client: tag.client });
        };
        if tag.seq == 0 {
            let e = KvError::StaleSequence { client: tag.client, seq: 0, last: s.last_seq };
            return Check::Refuse(e);
        }
        if tag.seq > s.last_seq {
            Check::Execute
        } else if tag.seq == s.last_seq {
            Check::Duplicate(s.response.clone())
        } else {
            Check::Refuse(KvError::StaleSequence {
                client: tag.client,
                seq: tag.seq,
                last: s.last_seq,
            })
        }
    }

    /// Records the response of an executed write (after `check` said `Execute`).
    pub fn record(&mut self, tag: SessionTag, index: u64, response: KvResponse) {
        let map = Arc::make_mut(&mut self.map);
        let Some(s) = map.get_mut(&tag.client) else { return };
        self.by_activity.remove(&s.last_index);
        self.by_activity.insert(index, tag.client);
        *s = Session { last_seq: tag.seq, last_index: index, response };
    }

    /// Panics if the activity index and the records disagree.
    pub fn check_invariants(&self) {
        assert_eq!(self.map.len(), self.by_activity.len(), "activity index size drifted");
        for (&index, client) in &self.by_activity {
            let s = self.map.get(client).expect("activity index names a live session");
            assert_eq!(s.last_index, index, "activity index out of date");
        }
    }
}
