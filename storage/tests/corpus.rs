//! Replays the committed fuzz corpus of the `storage_segment` target through
//! `fuzz_check` on stable, and (ignored) regenerates its seed files.
// Tests of a storage crate read and write files.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

mod common;

use std::path::PathBuf;

use common::{entries, records_of, segment_files, small_options};
use xraft_storage::Storage;

fn corpus_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/storage_segment")
}

#[test]
fn fuzz_corpus_replays() {
    let mut n = 0;
    for entry in std::fs::read_dir(corpus_dir()).expect("corpus directory") {
        let path = entry.expect("entry").path();
        let data = std::fs::read(&path).expect("read seed");
        xraft_storage::fuzz_check(&data);
        n += 1;
    }
    assert!(n >= 5, "the seed corpus has {n} files");
}

/// Writes the seed files: `cargo test -p xraft-storage --test corpus -- --ignored`.
#[test]
#[ignore = "regenerates committed files"]
fn write_seed_corpus() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut s, _) = Storage::open(dir.path(), small_options()).expect("open");
    s.append(&entries(1, 3, 1, 12)).expect("append");
    s.append(&entries(4, 4, 2, 0)).expect("append");
    s.sync().expect("sync");
    drop(s);
    let file = std::fs::read(&segment_files(dir.path())[0]).expect("read");
    let valid = records_of(&file).to_vec();
    // Header, then records of 32 + payload + 1 bytes: 45 for the first three.
    let record = 45;
    let out = corpus_dir();
    std::fs::create_dir_all(&out).expect("mkdir");
    let write = |name: &str, b: &[u8]| std::fs::write(out.join(name), b).expect("write seed");
    write("valid", &valid);
    write("torn_mid_record", &valid[..valid.len() - 20]);
    write("torn_mid_header", &valid[..32 + record + 10]);
    let mut torn_into_zeros = valid[..valid.len() - 20].to_vec();
    torn_into_zeros.extend_from_slice(&[0u8; 64]);
    write("torn_into_preallocated_zeros", &torn_into_zeros);
    let mut flipped = valid.clone();
    flipped[32 + record + 40] ^= 0x08;
    write("corrupt_followed_by_good", &flipped);
    let mut zeros = valid.clone();
    zeros.extend_from_slice(&[0u8; 64]);
    write("zero_tail", &zeros);
    write("header_only", &valid[..32]);
    write("short_header", &valid[..20]);
}
