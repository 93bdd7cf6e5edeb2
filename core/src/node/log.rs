//! The in-memory log: every entry after the last snapshot.
//!
//! Owns entry storage and the index arithmetic around the snapshot boundary.
//! Invariants: entries are consecutive, starting at `snapshot_index + 1`;
//! terms never decrease along the log; nothing here knows about durability
//! (that is `durability`'s job).

use std::collections::VecDeque;

use crate::types::{Entry, EntryVec, LogIndex, Term};

/// The uncompacted log held in memory.
#[derive(Debug, Default)]
pub(crate) struct Log {
    entries: VecDeque<Entry>,
    /// Index of the last entry covered by the snapshot (0 if none).
    snapshot_index: LogIndex,
    /// Term of that entry.
    snapshot_term: Term,
}

impl Log {
    /// A log that starts after the given snapshot point and holds `entries`.
    pub fn new(snapshot_index: LogIndex, snapshot_term: Term, entries: Vec<Entry>) -> Self {
        let log = Log { entries: entries.into(), snapshot_index, snapshot_term };
        log.assert_consecutive();
        log
    }

    fn assert_consecutive(&self) {
        let mut expect = self.snapshot_index.next();
        let mut term = self.snapshot_term;
        for e in &self.entries {
            assert_eq!(e.index, expect, "log entries must be consecutive");
            assert!(e.term >= term, "log terms must not decrease");
            expect = expect.next();
            term = e.term;
        }
    }

    /// Index of the last entry (the snapshot index if the log is empty).
    #[inline]
    pub fn last_index(&self) -> LogIndex {
        LogIndex(self.snapshot_index.0 + self.entries.len() as u64)
    }

    /// Term of the last entry.
    #[inline]
    pub fn last_term(&self) -> Term {
        self.entries.back().map_or(self.snapshot_term, |e| e.term)
    }

    /// The snapshot boundary.
    #[inline]
    pub fn snapshot_index(&self) -> LogIndex {
        self.snapshot_index
    }

    /// Term at `index`: known for the snapshot point and every held entry,
    /// `None` below the snapshot or past the end.
    #[inline]
    pub fn term(&self, index: LogIndex) -> Option<Term> {
        if index == self.snapshot_index {
            return Some(self.snapshot_term);
        }
        self.entry(index).map(|e| e.term)
    }

    /// The entry at `index`, if held.
    #[inline]
    pub fn entry(&self, index: LogIndex) -> Option<&Entry> {
        let off = index.0.checked_sub(self.snapshot_index.0 + 1)?;
        self.entries.get(usize::try_from(off).ok()?)
    }

    /// Appends one entry; its index must be `last_index() + 1`.
    #[inline]
    pub fn push(&mut self, entry: Entry) {
        debug_assert_eq!(entry.index, self.last_index().next());
        debug_assert!(entry.term >= self.last_term());
        self.entries.push_back(entry);
    }

    /// Drops every entry at or after `index`.
    pub fn truncate_from(&mut self, index: LogIndex) {
        assert!(index > self.snapshot_index, "cannot truncate into the snapshot");
        let keep = (index.0 - self.snapshot_index.0 - 1) as usize;
        self.entries.truncate(keep);
    }

    /// Drops entries up to `through` (which must be held); the log then
    /// starts after it.
    pub fn compact(&mut self, through: LogIndex) {
        let term = self.term(through).expect("compaction point is held");
        let n = (through.0 - self.snapshot_index.0) as usize;
        self.entries.drain(..n);
        self.snapshot_index = through;
        self.snapshot_term = term;
    }

    /// Replaces the whole log by an empty one starting after `index`.
    pub fn reset(&mut self, index: LogIndex, term: Term) {
        self.entries.clear();
        self.snapshot_index = index;
        self.snapshot_term = term;
    }

    /// Clones entries `from..=to`, at most `max_entries` and (after the first)
    /// at most `max_bytes`; returns them with their size in bytes.
    pub fn slice(
        &self,
        from: LogIndex,
        to: LogIndex,
        max_entries: usize,
        max_bytes: usize,
    ) -> (EntryVec, usize) {
        let mut out = EntryVec::new();
        let mut bytes = 0usize;
        let Some(skip) = from.0.checked_sub(self.snapshot_index.0 + 1) else {
            return (out, 0);
        };
        let skip = (skip as usize).min(self.entries.len());
        let want = (to.0 + 1).saturating_sub(from.0).min(max_entries as u64) as usize;
        let end = skip + want.min(self.entries.len() - skip);
        out.reserve_exact(end - skip);
        for e in self.entries.range(skip..end) {
            let size = e.size_bytes();
            if !out.is_empty() && bytes + size > max_bytes {
                break;
            }
            bytes += size;
            out.push(e.clone());
        }
        (out, bytes)
    }

    /// The fast back-off hint (etcd's `findConflictByTerm`): the largest index
    /// at or below `index` whose term is at most `term`, with that term. If
    /// the search reaches the snapshot point and its term is above `term`,
    /// the answer lies below what we hold: `(snapshot_index - 1, 0)`, so a
    /// leader probing from there needs the snapshot (returning the snapshot
    /// point itself made a leader probe a follower that diverges exactly
    /// there forever).
    pub fn hint_at_or_below(&self, index: LogIndex, term: Term) -> (LogIndex, Term) {
        let mut i = index.min(self.last_index());
        while i > self.snapshot_index {
            let t = self.term(i).expect("index is within the held log");
            if t <= term {
                return (i, t);
            }
            i = i.prev();
        }
        if self.snapshot_term <= term {
            (self.snapshot_index, self.snapshot_term)
        } else {
            (self.snapshot_index.prev(), Term::ZERO)
        }
    }

    /// Number of entries held in memory.
    #[inline]
    pub fn len(&self) -> usize {
        self.entries.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use bytes::Bytes;

    fn e(index: u64, term: u64) -> Entry {
        Entry::normal(LogIndex(index), Term(term), Bytes::new())
    }

    #[test]
    fn indexes_and_terms() {
        let log = Log::new(LogIndex(5), Term(2), vec![e(6, 2), e(7, 3), e(8, 3)]);
        assert_eq!(log.last_index(), LogIndex(8));
        assert_eq!(log.last_term(), Term(3));
        assert_eq!(log.term(LogIndex(5)), Some(Term(2)));
        assert_eq!(log.term(LogIndex(4)), None);
        assert_eq!(log.term(LogIndex(9)), None);
        assert_eq!(log.term(LogIndex(7)), Some(Term(3)));
    }

    #[test]
    fn truncate_and_slice() {
        let mut log = Log::new(LogIndex(0), Term(0), vec![e(1, 1), e(2, 1), e(3, 2)]);
        assert_eq!(log.slice(LogIndex(1), LogIndex(3), 2, usize::MAX).0.len(), 2);
        assert_eq!(log.slice(LogIndex(1), LogIndex(3), 10, 1).0.len(), 1);
        assert_eq!(log.slice(LogIndex(2), LogIndex(9), 10, usize::MAX).0.len(), 2);
        log.truncate_from(LogIndex(2));
        assert_eq!(log.last_index(), LogIndex(1));
        log.push(e(2, 3));
        assert_eq!(log.last_term(), Term(3));
        let got: Vec<_> = log
            .slice(LogIndex(1), LogIndex(9), 10, usize::MAX)
            .0
            .iter()
            .map(|e| e.index.0)
            .collect();
        assert_eq!(got, vec![1, 2]);
    }

    #[test]
    fn compact_and_reset() {
        let mut log = Log::new(LogIndex(0), Term(0), vec![e(1, 1), e(2, 1), e(3, 2), e(4, 2)]);
        log.compact(LogIndex(2));
        assert_eq!(log.snapshot_index(), LogIndex(2));
        assert_eq!(log.term(LogIndex(2)), Some(Term(1)));
        assert_eq!(log.term(LogIndex(1)), None);
        assert_eq!(log.len(), 2);
        assert_eq!(log.last_index(), LogIndex(4));
        log.reset(LogIndex(10), Term(5));
        assert_eq!(log.last_index(), LogIndex(10));
        assert_eq!(log.last_term(), Term(5));
        assert_eq!(log.len(), 0);
    }

    #[test]
    fn conflict_hint() {
        // terms: 1 1 1 4 4 5 5
        let log = Log::new(
            LogIndex(0),
            Term(0),
            vec![e(1, 1), e(2, 1), e(3, 1), e(4, 4), e(5, 4), e(6, 5), e(7, 5)],
        );
        assert_eq!(log.hint_at_or_below(LogIndex(7), Term(3)), (LogIndex(3), Term(1)));
        assert_eq!(log.hint_at_or_below(LogIndex(7), Term(4)), (LogIndex(5), Term(4)));
        assert_eq!(log.hint_at_or_below(LogIndex(10), Term(9)), (LogIndex(7), Term(5)));
        assert_eq!(log.hint_at_or_below(LogIndex(7), Term(0)), (LogIndex(0), Term(0)));
    }
}
