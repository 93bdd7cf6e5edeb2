//! The simulated disk of one node.
//!
//! Owns what survives a crash. It holds the durable hard state and log plus
//! a FIFO of `PersistWrite`s the node emitted that are not yet durable.
//! Writes become durable strictly in order (a completion may cover several:
//! group commit). A crash keeps none of the pending writes, a prefix of them,
//! or a prefix plus a torn next write. A torn write is laid out hard state
//! first, then entries in order: what survives is its hard state and a strict
//! prefix of its entries. A write's entries replace the stored log from their
//! first index, exactly as the driving contract says.
//! Invariant: the durable log is consecutive from index 1 (no snapshots yet).

use std::collections::VecDeque;

use xraft::{Entry, HardState, LogIndex, Membership, NodeId, PersistWrite, RestartState, Term};

use crate::sim_rng::SimRng;

/// How a crash treats the writes not yet durable.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CrashMode {
    /// Every pending write is lost.
    LoseAll,
    /// A random prefix of the pending writes survives whole (they became
    /// durable before the node learned so).
    KeepPrefix,
    /// A random prefix survives and the next write is torn.
    Torn,
}

/// What a crash did to the pending writes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CrashOutcome {
    /// Writes pending at the crash.
    pub pending: usize,
    /// Writes that survived, whole or torn.
    pub kept: usize,
    /// Whether the last surviving write was torn.
    pub torn: bool,
}

/// One node's disk.
#[derive(Debug, Default)]
pub struct Disk {
    hard_state: HardState,
    entries: Vec<Entry>,
    pending: VecDeque<PersistWrite>,
}

impl Disk {
    /// A founding member's disk: the bootstrap state is durable at time 0.
    pub fn bootstrap(voters: &[NodeId]) -> Disk {
        let rs = RestartState::bootstrap(voters.iter().copied());
        Disk { hard_state: rs.hard_state, entries: rs.entries, pending: VecDeque::new() }
    }

    /// The durable state, for restarting a node.
    pub fn restart_state(&self) -> RestartState {
        RestartState { hard_state: self.hard_state, snapshot: None, entries: self.entries.clone() }
    }

    /// The durable hard state.
    pub fn hard_state(&self) -> HardState {
        self.hard_state
    }

    /// Durable last index.
    pub fn last_index(&self) -> LogIndex {
        LogIndex(self.entries.len() as u64)
    }

    /// The durable entry at `index`.
    #[inline]
    pub fn entry(&self, index: LogIndex) -> Option<&Entry> {
        self.entries.get(usize::try_from(index.0.checked_sub(1)?).ok()?)
    }

    /// The durable term at `index`.
    #[inline]
    pub fn term_at(&self, index: LogIndex) -> Option<Term> {
        self.entry(index).map(|e| e.term)
    }

    /// Membership from the last durable config entry (the bootstrap one for now).
    pub fn membership(&self) -> Option<Membership> {
        self.entries
            .iter()
            .rev()
            .find(|e| e.kind == xraft::EntryKind::Config)
            .and_then(|e| Membership::decode(&e.data).ok())
    }

    /// Queues a write emitted by the node.
    pub fn push(&mut self, w: PersistWrite) {
        self.pending.push_back(w);
    }

    /// Writes not yet durable.
    pub fn pending_len(&self) -> usize {
        self.pending.len()
    }

    /// Takes the oldest pending write to make it durable (the caller then
    /// calls [`Disk::apply`]).
    pub fn pop_pending(&mut self) -> Option<PersistWrite> {
        self.pending.pop_front()
    }

    /// Makes `hard_state` and `entries` durable. Fails, changing nothing, if
    /// the entries would leave a gap after the stored log.
    pub fn apply(
        &mut self,
        hard_state: Option<HardState>,
        entries: &[Entry],
    ) -> Result<(), (LogIndex, LogIndex)> {
        if let Some(first) = entries.first() {
            let last = self.last_index();
            if first.index.0 == 0 || first.index > last.next() {
                return Err((first.index, last));
            }
            self.entries.truncate((first.index.0 - 1) as usize);
            self.entries.extend_from_slice(entries);
        }
        if let Some(hs) = hard_state {
            self.hard_state = hs;
        }
        Ok(())
    }

    /// Crashes: decides which pending writes survive and returns them (the
    /// last maybe torn) for the caller to apply in order with
    /// [`Disk::apply`]; the pending queue is emptied.
    pub fn crash(
        &mut self,
        mode: CrashMode,
        rng: &mut SimRng,
    ) -> (Vec<PersistWrite>, CrashOutcome) {
        let pending: Vec<PersistWrite> = self.pending.drain(..).collect();
        let n = pending.len();
        let mut out = CrashOutcome { pending: n, kept: 0, torn: false };
        let mut keep = match mode {
            CrashMode::LoseAll => Vec::new(),
            CrashMode::KeepPrefix => {
                let k = rng.below(n as u64 + 1) as usize;
                pending.into_iter().take(k).collect()
            }
            CrashMode::Torn => {
                if n == 0 {
                    Vec::new()
                } else {
                    let k = rng.below(n as u64) as usize;
                    let mut v: Vec<PersistWrite> = pending.into_iter().take(k + 1).collect();
                    let last = v.last_mut().expect("k + 1 >= 1 writes taken");
                    let cut = rng.below(last.entries.len().max(1) as u64) as usize;
                    last.entries.truncate(cut);
                    out.torn = true;
                    v
                }
            }
        };
        out.kept = keep.len();
        keep.shrink_to_fit();
        (keep, out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use xraft::{EntryKind, EntryVec, PersistId};

    fn e(index: u64, term: u64) -> Entry {
        Entry {
            index: LogIndex(index),
            term: Term(term),
            kind: EntryKind::Normal,
            data: Bytes::new(),
        }
    }

    fn w(id: u64, entries: &[Entry]) -> PersistWrite {
        PersistWrite {
            id: PersistId(id),
            snapshot: None,
            hard_state: None,
            entries: entries.iter().cloned().collect::<EntryVec>(),
        }
    }

    #[test]
    fn writes_replace_the_suffix_and_refuse_gaps() {
        let mut d = Disk::bootstrap(&[NodeId(1)]);
        assert_eq!(d.apply(None, &[e(2, 1), e(3, 1), e(4, 1)]), Ok(()));
        assert_eq!(d.apply(None, &[e(3, 2)]), Ok(()));
        assert_eq!(d.last_index(), LogIndex(3));
        assert_eq!(d.term_at(LogIndex(3)), Some(Term(2)));
        assert_eq!(d.apply(None, &[e(5, 2)]), Err((LogIndex(5), LogIndex(3))));
    }

    #[test]
    fn crash_modes_keep_what_they_say() {
        let mut rng = SimRng::new(9);
        for _ in 0..50 {
            let mut d = Disk::bootstrap(&[NodeId(1)]);
            d.push(w(1, &[e(2, 1), e(3, 1)]));
            d.push(w(2, &[e(4, 1), e(5, 1), e(6, 1)]));
            let (kept, o) = d.crash(CrashMode::LoseAll, &mut rng);
            assert!(kept.is_empty() && o.pending == 2 && d.pending_len() == 0);
            d.push(w(1, &[e(2, 1), e(3, 1)]));
            d.push(w(2, &[e(4, 1), e(5, 1), e(6, 1)]));
            let (kept, o) = d.crash(CrashMode::KeepPrefix, &mut rng);
            assert!(kept.len() <= 2 && !o.torn);
            assert!(kept.iter().enumerate().all(|(i, k)| k.id == PersistId(i as u64 + 1)));
            d.push(w(1, &[e(2, 1), e(3, 1)]));
            d.push(w(2, &[e(4, 1), e(5, 1), e(6, 1)]));
            let (kept, o) = d.crash(CrashMode::Torn, &mut rng);
            assert!(o.torn && !kept.is_empty());
            let last = kept.last().expect("torn keeps one");
            let full = if last.id == PersistId(1) { 2 } else { 3 };
            assert!(last.entries.len() < full, "a torn write keeps a strict prefix");
        }
    }
}
