//! Crash and corruption tests on real files: the last write cut at every
//! byte offset, at the end of the file or inside preallocated zeros (torn
//! tails are truncated, never an error), a new segment's header cut at
//! every offset, and bit flips at seeded random places in every kind of
//! file (always detected, naming the file and offset).
// Tests of a storage crate read and write files.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

mod common;

use std::fs;
use std::path::{Path, PathBuf};

use common::{entries, meta, records_of, segment_files, small_options};
use xraft::{Entry, LogIndex};
use xraft_storage::{Error, Storage, RECORD_OVERHEAD_BYTES};

/// Opens `dir`, appends `batches` with a sync after each, and closes it.
fn write_batches(dir: &Path, batches: &[Vec<Entry>]) {
    let (mut s, _) = Storage::open(dir, small_options()).expect("open");
    for b in batches {
        s.append(b).expect("append");
        s.sync().expect("sync");
    }
}

fn last_segment(dir: &Path) -> PathBuf {
    segment_files(dir).pop().expect("a segment")
}

#[test]
fn the_last_write_cut_at_every_byte_offset_recovers_the_whole_records() {
    let dir = tempfile::tempdir().expect("tempdir");
    let before = entries(1, 10, 1, 40);
    let last = entries(11, 14, 2, 23);
    write_batches(dir.path(), std::slice::from_ref(&before));
    let seg = last_segment(dir.path());
    let len_before = records_of(&fs::read(&seg).expect("read")).len();
    write_batches(dir.path(), std::slice::from_ref(&last));
    assert_eq!(last_segment(dir.path()), seg, "the last write stays in one segment");
    let file = fs::read(&seg).expect("read");
    let full = records_of(&file).to_vec();
    let record = RECORD_OVERHEAD_BYTES + 23;
    assert_eq!(full.len(), len_before + 4 * record);
    // Cut where the file ends, and cut inside preallocated zeros.
    let cuts = (len_before..=full.len()).flat_map(|cut| [(cut, cut), (cut, full.len() + 1024)]);
    for (cut, file_len) in cuts {
        let mut bytes = full[..cut].to_vec();
        bytes.resize(file_len, 0);
        fs::write(&seg, &bytes).expect("cut");
        let (mut s, r) = Storage::open(dir.path(), small_options())
            .unwrap_or_else(|e| panic!("cut at {cut}: {e}"));
        let whole = (cut - len_before) / record;
        let mut want = before.clone();
        want.extend_from_slice(&last[..whole]);
        assert_eq!(r.entries, want, "cut at {cut}");
        assert_eq!(fs::metadata(&seg).expect("meta").len() as usize, len_before + whole * record);
        // The log continues cleanly after a repaired tail.
        let next = entries(want.len() as u64 + 1, want.len() as u64 + 1, 3, 5);
        s.append(&next).expect("append");
        s.sync().expect("sync");
        drop(s);
        let (_, r) = Storage::open(dir.path(), small_options()).expect("reopen");
        want.extend(next);
        assert_eq!(r.entries, want, "cut at {cut}, after append");
    }
}

#[test]
fn a_new_segment_cut_at_every_offset_recovers_the_previous_segments() {
    let dir = tempfile::tempdir().expect("tempdir");
    let before = entries(1, 60, 1, 100);
    write_batches(dir.path(), std::slice::from_ref(&before));
    let segs = segment_files(dir.path());
    assert!(segs.len() >= 2);
    let seg = segs.last().expect("seg").clone();
    let full = records_of(&fs::read(&seg).expect("read")).to_vec();
    for closed in &segs[..segs.len() - 1] {
        let bytes = fs::read(closed).expect("read");
        assert_eq!(records_of(&bytes).len(), bytes.len(), "a closed segment has no zeros left");
    }
    let header_and_one = 32 + RECORD_OVERHEAD_BYTES + 100;
    let kept: usize = before.len() - (full.len() - 32) / (RECORD_OVERHEAD_BYTES + 100);
    for cut in 0..=header_and_one {
        fs::write(&seg, &full[..cut]).expect("cut");
        let (_, r) = Storage::open(dir.path(), small_options())
            .unwrap_or_else(|e| panic!("cut at {cut}: {e}"));
        let extra = usize::from(cut == header_and_one);
        assert_eq!(r.entries, before[..kept + extra], "cut at {cut}");
        if cut < 32 {
            assert!(!seg.exists(), "a torn header segment is removed (cut {cut})");
        }
    }
}

#[test]
fn a_bad_record_followed_by_good_ones_is_an_error_naming_file_and_offset() {
    let dir = tempfile::tempdir().expect("tempdir");
    write_batches(dir.path(), &[entries(1, 5, 1, 20)]);
    let seg = last_segment(dir.path());
    let mut bytes = fs::read(&seg).expect("read");
    let third = 32 + 2 * (RECORD_OVERHEAD_BYTES + 20);
    bytes[third + RECORD_OVERHEAD_BYTES + 3] ^= 0x10;
    fs::write(&seg, &bytes).expect("write");
    match Storage::open(dir.path(), small_options()) {
        Err(Error::Corrupt { path, offset, .. }) => {
            assert_eq!(path, seg);
            assert_eq!(offset, third as u64);
        }
        other => panic!("expected corruption, got {other:?}"),
    }
    assert_eq!(fs::read(&seg).expect("read"), bytes, "a corrupt log is never rewritten");
}

#[test]
fn a_bad_last_record_with_complete_bytes_is_corruption_not_a_torn_tail() {
    let dir = tempfile::tempdir().expect("tempdir");
    write_batches(dir.path(), &[entries(1, 5, 1, 20)]);
    let seg = last_segment(dir.path());
    let mut bytes = fs::read(&seg).expect("read");
    let n = bytes.len();
    bytes[n - 1] ^= 1;
    fs::write(&seg, &bytes).expect("write");
    assert!(matches!(Storage::open(dir.path(), small_options()), Err(Error::Corrupt { .. })));
}

/// Every file of a directory with several segments, a snapshot, a hard
/// state and an identity.
fn populated(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let (mut s, _) = Storage::open(dir, small_options()).expect("open");
    s.append(&entries(1, 80, 1, 90)).expect("append");
    s.set_hard_state(xraft::HardState {
        term: xraft::Term(1),
        vote: Some(xraft::NodeId(1)),
        commit: LogIndex(70),
    });
    s.sync().expect("sync");
    let mut w = s.snapshot_writer(meta(40, 1)).expect("writer");
    std::io::Write::write_all(&mut w, &[5u8; 300]).expect("write");
    w.finish().expect("finish");
    drop(s);
    let mut files: Vec<(PathBuf, Vec<u8>)> = fs::read_dir(dir)
        .expect("ls")
        .map(|e| e.expect("entry").path())
        .filter(|p| !p.ends_with("LOCK"))
        .map(|p| {
            let b = fs::read(&p).expect("read");
            (p, b)
        })
        .collect();
    files.sort();
    files
}

#[test]
fn bit_flips_at_random_places_are_detected() {
    let dir = tempfile::tempdir().expect("tempdir");
    let files = populated(dir.path());
    assert!(files.len() >= 5, "{files:?}");
    let total: usize = files.iter().map(|(_, b)| b.len()).sum();
    let mut rng = 0x9e37_79b9_7f4a_7c15u64; // fixed seed: the test is deterministic
    let rng = &mut rng;
    for _ in 0..300 {
        let mut at = (rand_u64(rng) % total as u64) as usize;
        let bit = (rand_u64(rng) % 8) as u8;
        let (path, good) = files
            .iter()
            .find(|(_, b)| {
                if at < b.len() {
                    true
                } else {
                    at -= b.len();
                    false
                }
            })
            .expect("in range");
        // Bytes 4096.. of HARDSTATE before the second slot are padding.
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        if name == "HARDSTATE" && (48..4096).contains(&at) {
            continue;
        }
        let mut bad = good.clone();
        bad[at] ^= 1 << bit;
        fs::write(path, &bad).expect("flip");
        match Storage::open(dir.path(), small_options()) {
            Err(Error::Corrupt { path: p, offset, .. }) => {
                assert_eq!(&p, path, "flip in {name} at {at}");
                assert!(offset <= at as u64, "offset {offset} after the flip at {at} in {name}");
            }
            other => panic!("flip in {name} at {at}.{bit} not detected: {other:?}"),
        }
        fs::write(path, good).expect("restore");
    }
    let (_, r) = Storage::open(dir.path(), small_options()).expect("intact again");
    assert_eq!(r.entries, entries(41, 80, 1, 90));
}

/// xorshift64*: a tiny seeded generator.
fn rand_u64(state: &mut u64) -> u64 {
    *state ^= *state >> 12;
    *state ^= *state << 25;
    *state ^= *state >> 27;
    state.wrapping_mul(0x2545_f491_4f6c_dd1d)
}
