//! Model test: random appends (with conflict truncations, and writes at or
//! below a local snapshot taken of entries not yet durable), hard-state
//! updates, syncs, compactions, local snapshots, snapshot installs, reads,
//! clean reopens and crashes (drop without sync), checked against an
//! in-memory model after every step.
// Tests of a storage crate read and write files.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

mod common;

use std::io::Write;

use common::{entry, meta};
use proptest::prelude::*;
use xraft::{Entry, HardState, LogIndex, NodeId, SnapshotMeta, Term};
use xraft_storage::{Options, Recovered, Storage};

#[derive(Clone, Debug)]
enum Op {
    /// Append `n` entries starting `back` entries before the next index.
    Append {
        back: u8,
        n: u8,
        size: u16,
        bump: bool,
    },
    SetHardState {
        term: u8,
        vote: Option<u8>,
        commit: u8,
    },
    Sync,
    Compact {
        frac: u8,
    },
    LocalSnapshot {
        frac: u8,
    },
    InstallSnapshot {
        ahead: u8,
        matching: bool,
        chunk: u8,
    },
    Read,
    Reopen,
    Crash,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0u8..6, 1u8..8, 0u16..400, any::<bool>())
            .prop_map(|(back, n, size, bump)| Op::Append { back, n, size, bump }),
        1 => (any::<u8>(), proptest::option::of(0u8..4), any::<u8>())
            .prop_map(|(term, vote, commit)| Op::SetHardState { term, vote, commit }),
        3 => Just(Op::Sync),
        1 => any::<u8>().prop_map(|frac| Op::Compact { frac }),
        1 => any::<u8>().prop_map(|frac| Op::LocalSnapshot { frac }),
        1 => (0u8..30, any::<bool>(), 1u8..40)
            .prop_map(|(ahead, matching, chunk)| Op::InstallSnapshot { ahead, matching, chunk }),
        1 => Just(Op::Read),
        1 => Just(Op::Reopen),
        1 => Just(Op::Crash),
    ]
}

/// What the storage should hold.
#[derive(Debug, Default)]
struct Model {
    /// Entries at or below `base` are not readable.
    base: u64,
    /// Readable entries, `base + 1 ..`.
    log: Vec<Entry>,
    snapshot: Option<SnapshotMeta>,
    hard_durable: HardState,
    hard_pending: Option<HardState>,
    /// Every entry up to here is durable.
    synced_through: u64,
    term: u64,
}

impl Model {
    fn last(&self) -> u64 {
        self.base + self.log.len() as u64
    }

    fn term_of(&self, index: u64) -> Term {
        self.log[(index - self.base - 1) as usize].term
    }

    fn snap_index(&self) -> u64 {
        self.snapshot.as_ref().map_or(0, |s| s.index.0)
    }

    /// Adopts a recovered state (after the checks).
    fn adopt(&mut self, r: &Recovered) {
        self.base = self.snap_index();
        self.log = r.entries.clone();
        self.synced_through = self.last();
        self.hard_durable = r.hard_state;
        self.hard_pending = None;
    }
}

fn options() -> Options {
    let mut o = Options::new(NodeId(1), 5);
    o.segment_bytes_max = 4096;
    o
}

fn check_live(s: &Storage, m: &Model) {
    assert_eq!(s.first_index(), LogIndex(m.base + 1));
    assert_eq!(s.last_index(), LogIndex(m.last()));
    if m.last() > m.base {
        assert_eq!(s.term(LogIndex(m.last())), Some(m.term_of(m.last())));
    }
    assert_eq!(s.snapshot_meta(), m.snapshot);
}

fn run(ops: &[Op]) {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut s, r) = Storage::open(dir.path(), options()).expect("open");
    let mut m = Model::default();
    m.adopt(&r);
    for op in ops {
        step(&mut s, &mut m, op, dir.path());
        check_live(&s, &m);
    }
    s.sync().expect("final sync");
    drop(s);
    let (_, r) = Storage::open(dir.path(), options()).expect("final reopen");
    check_clean(&r, &m);
}

/// What a node can restart from: terms never fall, from the snapshot's on.
fn check_terms(r: &Recovered) {
    let mut term = r.snapshot.as_ref().map_or(Term::ZERO, |s| s.term);
    for e in &r.entries {
        assert!(e.term >= term, "entry {:?} of term {:?} after term {term:?}", e.index, e.term);
        term = e.term;
    }
}

fn check_clean(r: &Recovered, m: &Model) {
    check_terms(r);
    let snap = m.snap_index();
    let expected: Vec<Entry> = m.log.iter().filter(|e| e.index.0 > snap).cloned().collect();
    assert_eq!(r.snapshot, m.snapshot);
    assert_eq!(r.entries, expected);
    assert_eq!(r.hard_state, m.hard_pending.unwrap_or(m.hard_durable));
}

fn step(s: &mut Storage, m: &mut Model, op: &Op, dir: &std::path::Path) {
    match *op {
        Op::Append { back, n, size, bump } => {
            // A write may start at or below a local snapshot's index: one
            // queued before the snapshot (of entries applied but not yet
            // durable) became durable. Never below the compaction point.
            let first = (m.last() + 1).saturating_sub(u64::from(back)).max(m.base + 1);
            if first > m.last() + 1 {
                // The log ends below the snapshot: only an install moves it on.
                return;
            }
            let snap = m.snap_index();
            let snap_term = m.snapshot.as_ref().map_or(Term::ZERO, |s| s.term);
            // Below the snapshot, and not bumping: a deposed leader's stale
            // write, of a term older than the snapshot's.
            let stale = first <= snap && !bump && snap_term.0 > 1;
            if !stale && (bump || m.term == 0) {
                m.term += 1;
            }
            let term = if stale { snap_term.0 - 1 } else { m.term };
            let batch: Vec<Entry> =
                (first..first + u64::from(n)).map(|i| entry(i, term, size as usize)).collect();
            s.append(&batch).expect("append");
            if first <= snap {
                // The log goes on after the snapshot with what the write
                // holds after the snapshot's own entry, if it holds that.
                m.log.clear();
                m.base = snap;
                m.log.extend_from_slice(xraft::entries_after_snapshot(
                    &batch,
                    LogIndex(snap),
                    snap_term,
                ));
                m.synced_through = snap;
            } else {
                m.log.truncate((first - m.base - 1) as usize);
                m.log.extend(batch);
                m.synced_through = m.synced_through.min(first - 1);
            }
        }
        Op::SetHardState { term, vote, commit } => {
            let hs = HardState {
                term: Term(u64::from(term)),
                vote: vote.map(|v| NodeId(u64::from(v))),
                commit: LogIndex(u64::from(commit)),
            };
            s.set_hard_state(hs);
            m.hard_pending = Some(hs);
        }
        Op::Sync => {
            s.sync().expect("sync");
            m.synced_through = m.last();
            if let Some(hs) = m.hard_pending.take() {
                m.hard_durable = hs;
            }
        }
        Op::Compact { frac } => {
            let limit = m.snap_index().min(m.last());
            if limit > m.base {
                let through = m.base + (limit - m.base) * u64::from(frac) / 255;
                s.compact(LogIndex(through)).expect("compact");
                if through > m.base {
                    m.log.drain(..(through - m.base) as usize);
                    m.base = through;
                }
            }
        }
        Op::LocalSnapshot { frac } => {
            // The application snapshots applied entries, which on a follower
            // need not be durable here yet.
            let lo = m.base.max(m.snap_index()) + 1;
            let hi = m.last();
            if hi >= lo {
                let index = lo + (hi - lo) * u64::from(frac) / 255;
                let mt = meta(index, m.term_of(index).0);
                let mut w = s.snapshot_writer(mt.clone()).expect("writer");
                w.write_all(&index.to_le_bytes()).expect("write");
                assert_eq!(w.finish().expect("finish"), mt);
                m.snapshot = Some(mt);
            }
        }
        Op::InstallSnapshot { ahead, matching, chunk } => {
            let index = m.base.max(m.snap_index()) + 1 + u64::from(ahead);
            let keep = matching && index <= m.last();
            let term = if keep {
                m.term_of(index).0
            } else {
                m.term += 1;
                m.term
            };
            let mt = meta(index, term);
            let data: Vec<u8> = (0..200u32).map(|i| (i as u64 * index) as u8).collect();
            let mut w = s.snapshot_writer(mt.clone()).expect("writer");
            for (k, c) in data.chunks(usize::from(chunk)).enumerate() {
                w.write_chunk((k * usize::from(chunk)) as u64, c).expect("chunk");
            }
            w.finish().expect("finish");
            s.install_snapshot(&mt).expect("install");
            if keep {
                m.log.drain(..(index - m.base) as usize);
            } else {
                m.log.clear();
                m.synced_through = index;
            }
            m.base = index;
            m.snapshot = Some(mt);
            let mut r = s.snapshot_reader().expect("reader").expect("some");
            let mut back = Vec::new();
            std::io::Read::read_to_end(&mut r, &mut back).expect("read");
            assert_eq!(back, data);
        }
        Op::Read => {
            let got = s.entries(LogIndex(m.base + 1), LogIndex(m.last() + 1)).expect("read");
            assert_eq!(got, m.log);
        }
        Op::Reopen => {
            s.sync().expect("sync");
            if let Some(hs) = m.hard_pending.take() {
                m.hard_durable = hs;
            }
            let (t, r) = reopen(s, dir);
            *s = t;
            check_clean(&r, m);
            m.adopt(&r);
        }
        Op::Crash => {
            let (t, r) = reopen(s, dir);
            *s = t;
            // Durable entries survive; beyond them, only a prefix of what was
            // appended may (written but unsynced bytes can be in the page cache).
            let snap = m.snap_index();
            let want: Vec<&Entry> = m.log.iter().filter(|e| e.index.0 > snap).collect();
            let got: Vec<&Entry> = r.entries.iter().collect();
            assert!(got.len() <= want.len(), "recovered more than appended");
            assert_eq!(got[..], want[..got.len()], "recovered log is not a prefix");
            let last = r.entries.last().map_or(snap, |e| e.index.0);
            assert!(last >= m.synced_through.max(snap), "durable entries lost");
            assert_eq!(r.snapshot, m.snapshot);
            assert_eq!(r.hard_state, m.hard_durable);
            check_terms(&r);
            m.adopt(&r);
        }
    }
}

/// Drops the storage (without syncing) and opens the directory again.
fn reopen(s: &mut Storage, dir: &std::path::Path) -> (Storage, Recovered) {
    // Put a throwaway handle in place so the old one is dropped (and its
    // lock released) before the directory is opened again.
    let other = tempfile::tempdir().expect("tempdir");
    let (placeholder, _) = Storage::open(other.path(), options()).expect("placeholder");
    drop(std::mem::replace(s, placeholder));
    Storage::open(dir, options()).expect("reopen")
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 128,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn storage_matches_the_model(ops in proptest::collection::vec(op(), 1..60)) {
        run(&ops);
    }
}
