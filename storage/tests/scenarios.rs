//! Scenario tests of the public API: identity and locking, append / sync /
//! reopen, conflict truncation, compaction, snapshot install, misuse errors.
// Tests of a storage crate read and write files.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

mod common;

use std::io::Write;

use common::{entries, entry, meta, segment_files, small_options};
use xraft::{HardState, LogIndex, NodeId, Term};
use xraft_storage::{Error, Options, Storage};

fn hs(term: u64, vote: Option<u64>, commit: u64) -> HardState {
    HardState { term: Term(term), vote: vote.map(NodeId), commit: LogIndex(commit) }
}

#[test]
fn fresh_directory_recovers_defaults_and_keeps_its_disk_id() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("node");
    let (s, r) = Storage::open(&path, small_options()).expect("open");
    assert_eq!(r.hard_state, HardState::default());
    assert_eq!(r.snapshot, None);
    assert!(r.entries.is_empty());
    assert_eq!(s.first_index(), LogIndex(1));
    assert_eq!(s.last_index(), LogIndex(0));
    let id = s.disk_id();
    drop(s);
    let (s, r) = Storage::open(&path, small_options()).expect("reopen");
    assert_eq!(r.disk_id, id);
    assert_eq!(s.disk_id(), id);
    let other = tempfile::tempdir().expect("tempdir");
    let (t, _) = Storage::open(other.path(), small_options()).expect("open other");
    assert_ne!(t.disk_id(), id, "every directory gets its own disk id");
}

#[test]
fn a_second_handle_is_refused_while_the_first_lives() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (s, _) = Storage::open(dir.path(), small_options()).expect("open");
    let err = Storage::open(dir.path(), small_options()).expect_err("locked");
    assert!(matches!(err, Error::Locked { .. }), "{err}");
    drop(s);
    Storage::open(dir.path(), small_options()).expect("lock released on drop");
}

#[test]
fn another_nodes_or_clusters_directory_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    drop(Storage::open(dir.path(), small_options()).expect("open"));
    let mut o = small_options();
    o.node_id = NodeId(2);
    assert!(matches!(Storage::open(dir.path(), o), Err(Error::WrongNode { .. })));
    let mut o = small_options();
    o.cluster_id = 78;
    assert!(matches!(Storage::open(dir.path(), o), Err(Error::WrongCluster { .. })));
}

#[test]
fn data_without_identity_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut s, _) = Storage::open(dir.path(), small_options()).expect("open");
    s.append(&entries(1, 3, 1, 10)).expect("append");
    s.sync().expect("sync");
    drop(s);
    std::fs::remove_file(dir.path().join("IDENTITY")).expect("rm");
    let err = Storage::open(dir.path(), small_options()).expect_err("refused");
    assert!(matches!(err, Error::MissingIdentity { .. }), "{err}");
}

#[test]
fn append_sync_reopen_round_trips_log_and_hard_state() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut s, _) = Storage::open(dir.path(), small_options()).expect("open");
    let all = entries(1, 200, 1, 100);
    for batch in all.chunks(17) {
        s.append(batch).expect("append");
        s.sync().expect("sync");
    }
    s.set_hard_state(hs(3, Some(2), 150));
    s.sync().expect("sync");
    assert!(segment_files(dir.path()).len() > 3, "small segments roll");
    assert_eq!(s.entries(LogIndex(1), LogIndex(201)).expect("read"), all);
    drop(s);
    let (s, r) = Storage::open(dir.path(), small_options()).expect("reopen");
    assert_eq!(r.entries, all);
    assert_eq!(r.hard_state, hs(3, Some(2), 150));
    assert_eq!(s.term(LogIndex(200)), Some(Term(1)));
}

#[test]
fn unsynced_appends_and_hard_state_are_not_recovered() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut s, _) = Storage::open(dir.path(), small_options()).expect("open");
    s.append(&entries(1, 5, 1, 10)).expect("append");
    s.set_hard_state(hs(1, None, 5));
    s.sync().expect("sync");
    s.append(&entries(6, 9, 1, 10)).expect("append");
    s.set_hard_state(hs(2, Some(1), 5));
    drop(s);
    let (_, r) = Storage::open(dir.path(), small_options()).expect("reopen");
    assert_eq!(r.entries, entries(1, 5, 1, 10));
    assert_eq!(r.hard_state, hs(1, None, 5));
}

#[test]
fn conflicting_append_replaces_the_suffix_across_segments() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut s, _) = Storage::open(dir.path(), small_options()).expect("open");
    s.append(&entries(1, 100, 1, 100)).expect("append");
    s.sync().expect("sync");
    let before = segment_files(dir.path()).len();
    let mut expected = entries(1, 20, 1, 100);
    expected.extend(entries(21, 25, 2, 5));
    s.append(&entries(21, 25, 2, 5)).expect("conflicting append");
    assert!(segment_files(dir.path()).len() < before, "later segments deleted");
    assert_eq!(s.last_index(), LogIndex(25));
    assert_eq!(s.entries(LogIndex(1), LogIndex(26)).expect("read"), expected);
    s.sync().expect("sync");
    drop(s);
    let (_, r) = Storage::open(dir.path(), small_options()).expect("reopen");
    assert_eq!(r.entries, expected);
}

#[test]
fn compaction_deletes_whole_segments_only() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut s, _) = Storage::open(dir.path(), small_options()).expect("open");
    s.append(&entries(1, 100, 1, 100)).expect("append");
    s.sync().expect("sync");
    assert!(matches!(s.compact(LogIndex(50)), Err(Error::CompactTooFar { .. })), "no snapshot");
    let mut w = s.snapshot_writer(meta(60, 1)).expect("writer");
    w.write_all(b"state at 60").expect("write");
    w.finish().expect("finish");
    let before = segment_files(dir.path()).len();
    s.compact(LogIndex(50)).expect("compact");
    assert!(segment_files(dir.path()).len() < before);
    assert_eq!(s.first_index(), LogIndex(51));
    assert!(matches!(s.entries(LogIndex(40), LogIndex(52)), Err(Error::OutOfRange { .. })));
    assert_eq!(s.entries(LogIndex(51), LogIndex(101)).expect("read"), entries(51, 100, 1, 100));
    assert!(matches!(s.compact(LogIndex(61)), Err(Error::CompactTooFar { .. })));
    drop(s);
    let (s, r) = Storage::open(dir.path(), small_options()).expect("reopen");
    assert_eq!(r.snapshot, Some(meta(60, 1)));
    assert_eq!(r.entries, entries(61, 100, 1, 100));
    assert_eq!(s.first_index(), LogIndex(61));
    assert_eq!(s.term(LogIndex(60)), Some(Term(1)));
}

#[test]
fn installing_a_matching_snapshot_keeps_the_log_after_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut s, _) = Storage::open(dir.path(), small_options()).expect("open");
    s.append(&entries(1, 100, 2, 50)).expect("append");
    s.sync().expect("sync");
    let mut w = s.snapshot_writer(meta(70, 2)).expect("writer");
    w.write_chunk(0, b"chunk one ").expect("chunk");
    w.write_chunk(10, b"chunk two").expect("chunk");
    let m = w.finish().expect("finish");
    s.install_snapshot(&m).expect("install");
    assert_eq!(s.first_index(), LogIndex(71));
    assert_eq!(s.last_index(), LogIndex(100));
    let r = s.snapshot_reader().expect("reader").expect("some");
    assert_eq!(r.read_chunk(0, 100).expect("read"), b"chunk one chunk two");
    // Offsets at or past the end, however large (a peer's claim), read nothing.
    for off in [19, 20, 1 << 40, u64::MAX] {
        assert_eq!(r.read_chunk(off, 100).expect("read past the end"), b"");
    }
    drop((s, r));
    let (_, r) = Storage::open(dir.path(), small_options()).expect("reopen");
    assert_eq!(r.entries, entries(71, 100, 2, 50));
}

#[test]
fn installing_a_conflicting_snapshot_discards_the_log() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut s, _) = Storage::open(dir.path(), small_options()).expect("open");
    s.append(&entries(1, 100, 2, 50)).expect("append");
    s.sync().expect("sync");
    let mut w = s.snapshot_writer(meta(70, 3)).expect("writer");
    w.write_all(b"leader state").expect("write");
    let m = w.finish().expect("finish");
    s.install_snapshot(&m).expect("install");
    assert!(segment_files(dir.path()).is_empty());
    assert_eq!(s.last_index(), LogIndex(70));
    assert!(matches!(s.append(&entries(75, 76, 3, 5)), Err(Error::AppendGap { .. })));
    s.append(&entries(71, 80, 3, 5)).expect("append after install");
    s.sync().expect("sync");
    drop(s);
    let (_, r) = Storage::open(dir.path(), small_options()).expect("reopen");
    assert_eq!(r.snapshot, Some(meta(70, 3)));
    assert_eq!(r.entries, entries(71, 80, 3, 5));
}

/// A follower may apply, and snapshot, entries it has not made durable
/// itself; writes queued before the snapshot became durable then reach
/// storage after it (simulator seed 7054396: a deposed leader's entries at
/// and after the snapshot's index, then their rewrite). The snapshot covers
/// what they hold up to its index; each such write replaces the log from
/// its first index on, and only a write holding the snapshot's own entry
/// goes on after it: a stale branch's later entries must not follow the
/// snapshot (a restart would find older terms after newer ones).
#[test]
fn writes_queued_before_a_local_snapshot_are_cut_to_what_it_does_not_cover() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut s, _) = Storage::open(dir.path(), small_options()).expect("open");
    s.append(&entries(1, 86, 2, 50)).expect("append");
    s.sync().expect("sync");
    let mut w = s.snapshot_writer(meta(87, 4)).expect("writer");
    w.write_all(b"state through 87").expect("write");
    w.finish().expect("finish");
    // Queued before it: 87 and 88 of a deposed leader's term 3.
    s.append(&entries(87, 88, 3, 5)).expect("stale 87..88");
    assert_eq!(s.last_index(), LogIndex(87), "nothing of a stale branch after the snapshot");
    s.sync().expect("sync");
    drop(s);
    let (mut s, r) = Storage::open(dir.path(), small_options()).expect("reopen after it");
    assert_eq!(r.snapshot, Some(meta(87, 4)));
    assert_eq!(r.entries, vec![]);
    // Then the new leader's 87 (the snapshot's) and 88 of term 4, and 89.
    s.append(&entries(87, 88, 4, 5)).expect("the snapshot's own entry and one more");
    assert_eq!(s.last_index(), LogIndex(88));
    s.append(&entries(89, 89, 5, 5)).expect("after the snapshot");
    s.sync().expect("sync");
    s.compact(LogIndex(87)).expect("compact");
    drop(s);
    let (_, r) = Storage::open(dir.path(), small_options()).expect("reopen");
    assert_eq!(r.snapshot, Some(meta(87, 4)));
    let mut want = entries(88, 88, 4, 5);
    want.extend(entries(89, 89, 5, 5));
    assert_eq!(r.entries, want);
}

#[test]
fn a_crash_between_snapshot_rename_and_install_is_finished_on_open() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut s, _) = Storage::open(dir.path(), small_options()).expect("open");
    s.append(&entries(1, 100, 2, 50)).expect("append");
    s.sync().expect("sync");
    let mut w = s.snapshot_writer(meta(150, 4)).expect("writer");
    w.write_all(b"leader state").expect("write");
    w.finish().expect("finish");
    drop(s); // "crash": install_snapshot never called
    let (s, r) = Storage::open(dir.path(), small_options()).expect("reopen");
    assert_eq!(r.snapshot, Some(meta(150, 4)));
    assert!(r.entries.is_empty());
    assert!(segment_files(dir.path()).is_empty(), "stale log discarded on open");
    assert_eq!(s.last_index(), LogIndex(150));
}

#[test]
fn a_partially_discarded_log_is_discarded_again_on_open() {
    // Newest-first deletion leaves a prefix; the prefix must not survive.
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut s, _) = Storage::open(dir.path(), small_options()).expect("open");
    s.append(&entries(1, 100, 2, 100)).expect("append");
    s.sync().expect("sync");
    let segs = segment_files(dir.path());
    let mut w = s.snapshot_writer(meta(60, 5)).expect("writer");
    w.write_all(b"leader state").expect("write");
    w.finish().expect("finish");
    drop(s);
    for p in segs.iter().rev().take(segs.len() / 2) {
        std::fs::remove_file(p).expect("rm");
    }
    let (_, r) = Storage::open(dir.path(), small_options()).expect("reopen");
    assert!(r.entries.is_empty());
    assert!(segment_files(dir.path()).is_empty());
}

#[test]
fn misuse_is_a_typed_error_and_does_not_poison() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut o = small_options();
    o.record_bytes_max = 64;
    let (mut s, _) = Storage::open(dir.path(), o).expect("open");
    let gap = vec![entry(1, 1, 1), entry(3, 1, 1)];
    assert!(matches!(s.append(&gap), Err(Error::NonContiguous { .. })));
    assert!(matches!(s.append(&[entry(1, 1, 65)]), Err(Error::EntryTooLarge { .. })));
    assert!(matches!(s.append(&[entry(2, 1, 1)]), Err(Error::AppendGap { .. })));
    assert!(matches!(s.install_snapshot(&meta(5, 1)), Err(Error::SnapshotNotDurable { .. })));
    s.append(&[entry(1, 1, 1)]).expect("still usable");
    s.sync().expect("sync");
    let w = s.snapshot_writer(meta(1, 1)).expect("writer");
    w.finish().expect("empty snapshot is fine");
    let stale = s.snapshot_writer(meta(1, 1)).expect("writer");
    assert!(matches!(stale.finish(), Err(Error::StaleSnapshot { .. })));
}

#[test]
fn storage_and_writers_work_from_other_threads() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut s, _) = Storage::open(dir.path(), small_options()).expect("open");
    s.append(&entries(1, 10, 1, 10)).expect("append");
    s.sync().expect("sync");
    let w = s.snapshot_writer(meta(10, 1)).expect("writer");
    let t = std::thread::spawn(move || {
        let mut w = w;
        w.write_all(&[7u8; 100_000]).expect("write");
        w.finish().expect("finish")
    });
    let m = t.join().expect("join");
    let s = std::thread::spawn(move || {
        s.compact(LogIndex(10)).expect("compact");
        s
    })
    .join()
    .expect("join");
    assert_eq!(s.snapshot_meta(), Some(m));
    let mut r = s.snapshot_reader().expect("reader").expect("some");
    let mut all = Vec::new();
    std::io::Read::read_to_end(&mut r, &mut all).expect("read");
    assert_eq!(all, vec![7u8; 100_000]);
}

#[test]
fn invalid_options_are_refused_before_touching_disk() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut o = Options::new(NodeId(1), 1);
    o.write_buffer_bytes_max = 0;
    assert!(matches!(Storage::open(dir.path().join("x"), o), Err(Error::InvalidOptions(_))));
    assert!(!dir.path().join("x").exists());
}

/// The tail segment is preallocated ahead of the records (so most syncs
/// commit no new file size), grown again by `preallocate` when less than
/// half a step is left, trimmed when the segment closes and when the
/// directory is reopened; with `preallocate_bytes = 0` files are exact.
#[test]
fn the_tail_is_preallocated_and_trimmed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut o = small_options();
    o.segment_bytes_max = 1 << 20;
    o.preallocate_bytes = 4096;
    let (mut s, _) = Storage::open(dir.path(), o.clone()).expect("open");
    s.append(&entries(1, 10, 1, 50)).expect("append");
    s.sync().expect("sync");
    let seg = segment_files(dir.path()).pop().expect("a segment");
    let len = |p: &std::path::Path| std::fs::metadata(p).expect("meta").len();
    let records = 32 + 10 * (xraft_storage::RECORD_OVERHEAD_BYTES as u64 + 50);
    assert_eq!(len(&seg), records + 4096, "one step of zeros past the records");
    // Writes within the zeros leave the file size alone.
    s.append(&entries(11, 40, 1, 50)).expect("append");
    s.sync().expect("sync");
    assert_eq!(len(&seg), records + 4096);
    // Less than half a step left: `preallocate` grows it; otherwise not.
    s.preallocate().expect("preallocate");
    let used = records + 30 * (xraft_storage::RECORD_OVERHEAD_BYTES as u64 + 50);
    assert_eq!(len(&seg), records + 2 * 4096, "another step");
    s.preallocate().expect("preallocate");
    assert_eq!(len(&seg), records + 2 * 4096, "enough left: nothing to do");
    drop(s);
    let (s, r) = Storage::open(dir.path(), o.clone()).expect("reopen");
    assert_eq!(r.entries, entries(1, 40, 1, 50));
    assert_eq!(len(&seg), used, "recovery trims the zeros");
    drop(s);

    let mut exact = o;
    exact.preallocate_bytes = 0;
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut s, _) = Storage::open(dir.path(), exact).expect("open");
    s.append(&entries(1, 10, 1, 50)).expect("append");
    s.sync().expect("sync");
    s.preallocate().expect("preallocate");
    let seg = segment_files(dir.path()).pop().expect("a segment");
    assert_eq!(len(&seg), records, "no preallocation");
}

/// Preallocation never runs far past the segment size: a small segment
/// with a large step gets no more zeros than it can use.
#[test]
fn preallocation_stops_at_the_segment_size() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut o = small_options();
    o.segment_bytes_max = 4096;
    o.preallocate_bytes = 1 << 20;
    let (mut s, _) = Storage::open(dir.path(), o.clone()).expect("open");
    for i in 0..20u64 {
        s.append(&entries(i * 10 + 1, i * 10 + 10, 1, 90)).expect("append");
        s.sync().expect("sync");
        s.preallocate().expect("preallocate");
    }
    let segs = segment_files(dir.path());
    assert!(segs.len() > 3, "several segments");
    for seg in &segs {
        let len = std::fs::metadata(seg).expect("meta").len();
        assert!(len <= 4096 + 1024, "{} is {len} bytes", seg.display());
    }
    drop(s);
    let (_, r) = Storage::open(dir.path(), o).expect("reopen");
    assert_eq!(r.entries, entries(1, 200, 1, 90));
}

/// A `SnapshotSource` opens verified readers over the newest durable
/// snapshot from another thread, without the `Storage`, and follows a
/// newer snapshot replacing the old one.
#[test]
fn a_snapshot_source_reads_the_newest_snapshot_from_another_thread() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut s, _) = Storage::open(dir.path(), small_options()).expect("open");
    s.append(&entries(1, 30, 1, 10)).expect("append");
    s.sync().expect("sync");
    let source = s.snapshot_source();
    assert!(source.latest().is_none());
    assert!(source.reader().expect("no snapshot is not an error").is_none());
    for (index, byte) in [(10u64, 1u8), (20, 2)] {
        let mut w = s.snapshot_writer(meta(index, 1)).expect("writer");
        w.write_all(&[byte; 300]).expect("write");
        w.finish().expect("finish");
        let source = source.clone();
        let (got_meta, data) = std::thread::spawn(move || {
            let r = source.reader().expect("read").expect("a snapshot");
            (r.meta().clone(), r.read_chunk(0, 1000).expect("chunk"))
        })
        .join()
        .expect("thread");
        assert_eq!(got_meta, meta(index, 1));
        assert_eq!(data, vec![byte; 300]);
    }
}

/// The peers' disk ids survive a reopen; a damaged `PEERS` file does not
/// stop the open (the record is advisory): it reads as none, says why, and
/// the next save replaces it.
#[test]
fn peer_disks_are_saved_and_a_damaged_record_does_not_fail_the_open() {
    use xraft::NodeId;
    use xraft_storage::DiskId;
    let dir = tempfile::tempdir().expect("tempdir");
    let list = vec![(NodeId(2), DiskId(0xabc)), (NodeId(3), DiskId(0xdef))];
    {
        let (mut s, r) = Storage::open(dir.path(), small_options()).expect("open");
        assert!(r.peer_disks.is_empty() && r.peer_disks_error.is_none());
        s.save_peer_disks(&list).expect("save");
    }
    let (s, r) = Storage::open(dir.path(), small_options()).expect("reopen");
    assert_eq!(r.peer_disks, list);
    drop(s);
    std::fs::write(dir.path().join("PEERS"), b"XRPEERS\0 damaged").expect("damage");
    let (mut s, r) = Storage::open(dir.path(), small_options()).expect("opens anyway");
    assert!(r.peer_disks.is_empty());
    assert!(r.peer_disks_error.as_deref().is_some_and(|e| e.contains("PEERS")), "{r:?}");
    s.save_peer_disks(&list[..1]).expect("save over it");
    drop(s);
    let (_, r) = Storage::open(dir.path(), small_options()).expect("reopen");
    assert_eq!(r.peer_disks, list[..1].to_vec());
    assert!(r.peer_disks_error.is_none());
}
