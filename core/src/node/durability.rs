//! Durability bookkeeping: which writes are in flight and what is durable.
//!
//! Owns the `Persist`/`Persisted` protocol. Each step's writes are gathered
//! into one `PersistWrite`; writes complete in order. Invariants:
//! `stable_index` is the highest index up to which the in-memory log equals
//! the durable log (it drops when a write truncates below it, so an
//! acknowledgement for overwritten entries can never be mistaken for the new
//! ones: etcd's append ABA race); a message that depends on a hard state not
//! yet durable is held until it is.

use std::collections::VecDeque;

use crate::message::Message;
use crate::types::{Entry, EntryVec, HardState, LogIndex, PersistId};

use super::SnapshotWrite;

/// A write emitted but not yet reported durable.
#[derive(Debug)]
struct Pending {
    id: PersistId,
    /// Where the write truncates the durable log, if it does: its first
    /// entry, or past the safe prefix for a snapshot install that replaces
    /// the log.
    first: Option<LogIndex>,
    /// Last index of the log once this write is durable.
    last_index: LogIndex,
    hard_state: Option<HardState>,
}

/// The write gathered during the current step.
#[derive(Debug, Default)]
pub(crate) struct Building {
    pub id: PersistId,
    pub hard_state: Option<HardState>,
    pub snapshot: Option<SnapshotWrite>,
    pub entries: EntryVec,
    /// Set when the write installs a snapshot that replaces the log.
    truncates_at: Option<LogIndex>,
}

#[derive(Debug)]
pub(crate) struct Durability {
    next_id: u64,
    building: Option<Building>,
    pending: VecDeque<Pending>,
    /// Last index of the log as of the newest emitted write.
    last_written: LogIndex,
    stable_index: LogIndex,
    durable_hs: HardState,
    /// The newest write carrying a hard state not yet durable.
    hs_pending: Option<PersistId>,
    held: VecDeque<(PersistId, Message)>,
    /// Highest id reported durable.
    done: PersistId,
}

impl Durability {
    pub fn new(hs: HardState, last_index: LogIndex) -> Self {
        Durability {
            next_id: 1,
            building: None,
            pending: VecDeque::new(),
            last_written: last_index,
            stable_index: last_index,
            durable_hs: hs,
            hs_pending: None,
            held: VecDeque::new(),
            done: PersistId(0),
        }
    }

    fn building(&mut self) -> &mut Building {
        let next_id = &mut self.next_id;
        self.building.get_or_insert_with(|| {
            let id = PersistId(*next_id);
            *next_id += 1;
            Building { id, ..Building::default() }
        })
    }

    /// Queues a hard state for this step's write.
    pub fn write_hard_state(&mut self, hs: HardState) {
        let b = self.building();
        b.hard_state = Some(hs);
        let id = b.id;
        self.hs_pending = Some(id);
    }

    /// Queues an entry for this step's write. An entry at or below an index
    /// already written replaces it and everything after.
    pub fn write_entry(&mut self, e: Entry) {
        let index = e.index;
        if index <= self.stable_index {
            self.stable_index = index.prev();
        }
        let b = self.building();
        if let Some(first) = b.entries.first().map(|f| f.index) {
            if index < first {
                b.entries.clear();
            } else {
                b.entries.truncate((index.0 - first.0) as usize);
            }
        }
        b.entries.push(e);
    }

    /// Queues snapshot work for this step's write; returns the write's id.
    pub fn write_snapshot(&mut self, w: SnapshotWrite) -> PersistId {
        let b = self.building();
        debug_assert!(b.snapshot.is_none(), "one snapshot write per step");
        b.snapshot = Some(w);
        b.id
    }

    /// A snapshot install replaces the log with one ending at `index`; only
    /// the prefix through `safe` is known to be the same before and after.
    pub fn install_reset(&mut self, index: LogIndex, safe: LogIndex) {
        self.stable_index = self.stable_index.min(safe);
        self.last_written = index;
        let b = self.building();
        b.truncates_at = Some(safe.next());
    }

    /// Takes this step's write, if any, recording it as pending.
    pub fn take_write(&mut self) -> Option<Building> {
        let b = self.building.take()?;
        let first = match (b.truncates_at, b.entries.first().map(|e| e.index)) {
            (Some(a), Some(e)) => Some(a.min(e)),
            (a, e) => a.or(e),
        };
        if let Some(last) = b.entries.last() {
            self.last_written = last.index;
        }
        self.pending.push_back(Pending {
            id: b.id,
            first,
            last_index: self.last_written,
            hard_state: b.hard_state,
        });
        Some(b)
    }

    /// Marks every write up to `through` durable; returns the messages that
    /// may now be sent, in order.
    pub fn complete(&mut self, through: PersistId, released: &mut Vec<Message>) {
        if through <= self.done {
            return;
        }
        self.done = through;
        let mut cand = None;
        while let Some(p) = self.pending.front() {
            if p.id > through {
                break;
            }
            let p = self.pending.pop_front().expect("front exists");
            cand = Some(p.last_index);
            if let Some(hs) = p.hard_state {
                self.durable_hs = hs;
            }
        }
        if let Some(cand) = cand {
            // Writes are reported between steps, so nothing is being built.
            debug_assert!(self.building.is_none());
            let cap =
                self.pending.iter().filter_map(|p| p.first).map(|f| f.prev()).min().unwrap_or(cand);
            self.stable_index = cand.min(cap);
        }
        if self.hs_pending.is_some_and(|id| id <= through) {
            self.hs_pending = None;
        }
        while self.held.front().is_some_and(|(id, _)| *id <= through) {
            let (_, m) = self.held.pop_front().expect("front exists");
            released.push(m);
        }
    }

    /// The write a hard-state-dependent message must wait for, if any.
    #[inline]
    pub fn hard_state_pending(&self) -> Option<PersistId> {
        self.hs_pending
    }

    /// Holds `msg` until write `id` is durable.
    pub fn hold(&mut self, id: PersistId, msg: Message) {
        self.held.push_back((id, msg));
    }

    /// The hard state known durable (read by the debug invariant checks).
    #[cfg_attr(not(debug_assertions), allow(dead_code))]
    #[inline]
    pub fn durable_hard_state(&self) -> HardState {
        self.durable_hs
    }

    /// Highest index up to which the in-memory log is durable.
    #[inline]
    pub fn stable_index(&self) -> LogIndex {
        self.stable_index
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{NodeId, Term};
    use bytes::Bytes;

    fn e(index: u64, term: u64) -> Entry {
        Entry::normal(LogIndex(index), Term(term), Bytes::new())
    }

    #[test]
    fn stable_advances_in_order() {
        let mut d = Durability::new(HardState::default(), LogIndex(0));
        d.write_entry(e(1, 1));
        d.write_entry(e(2, 1));
        let w1 = d.take_write().expect("write");
        d.write_entry(e(3, 1));
        let w2 = d.take_write().expect("write");
        let mut rel = Vec::new();
        d.complete(w1.id, &mut rel);
        assert_eq!(d.stable_index(), LogIndex(2));
        d.complete(w2.id, &mut rel);
        assert_eq!(d.stable_index(), LogIndex(3));
        d.complete(w1.id, &mut rel);
        assert_eq!(d.stable_index(), LogIndex(3), "a stale report changes nothing");
    }

    #[test]
    fn truncation_caps_stable_index() {
        // ABA: entries 2..3 of term 1 are written, then overwritten by term 2
        // before the first write completes. Completing the first write must
        // not mark the new index 2 durable.
        let mut d = Durability::new(HardState::default(), LogIndex(1));
        d.write_entry(e(2, 1));
        d.write_entry(e(3, 1));
        let w1 = d.take_write().expect("write");
        d.write_entry(e(2, 2));
        let w2 = d.take_write().expect("write");
        assert_eq!(d.stable_index(), LogIndex(1));
        let mut rel = Vec::new();
        d.complete(w1.id, &mut rel);
        assert_eq!(d.stable_index(), LogIndex(1));
        d.complete(w2.id, &mut rel);
        assert_eq!(d.stable_index(), LogIndex(2));
    }

    #[test]
    fn messages_wait_for_hard_state() {
        let mut d = Durability::new(HardState::default(), LogIndex(0));
        d.write_hard_state(HardState { term: Term(2), vote: Some(NodeId(1)), commit: LogIndex(0) });
        let id = d.hard_state_pending().expect("pending");
        let msg = Message {
            from: NodeId(1),
            to: NodeId(2),
            term: Term(2),
            body: crate::message::MessageBody::Heartbeat { commit: LogIndex(0), ctx: 0 },
        };
        d.hold(id, msg.clone());
        let w = d.take_write().expect("write");
        let mut rel = Vec::new();
        d.complete(PersistId(w.id.0 - 1), &mut rel);
        assert!(rel.is_empty());
        d.complete(w.id, &mut rel);
        assert_eq!(rel, vec![msg]);
        assert_eq!(d.durable_hard_state().term, Term(2));
        assert!(d.hard_state_pending().is_none());
    }
}
