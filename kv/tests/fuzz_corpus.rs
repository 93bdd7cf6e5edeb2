//! Replays the committed `resp_parse` fuzz corpus through the fuzz target's
//! body on stable Rust, so every CI run re-checks every input the fuzzer
//! (or a person) ever saved there.

use std::path::PathBuf;

use xraft_kv::resp::fuzz_check;

/// Reading the committed corpus is this test's whole purpose; the purity
/// lints guard the library, not fixture loading in an integration test.
#[allow(clippy::disallowed_methods)]
fn corpus() -> Vec<(PathBuf, Vec<u8>)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/resp_parse");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("corpus directory {}: {e}", dir.display()))
        .map(|entry| entry.expect("readable directory entry").path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|p| {
            let data = std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            (p, data)
        })
        .collect()
}

#[test]
fn resp_parse_corpus_replays_clean() {
    let corpus = corpus();
    assert!(corpus.len() >= 10, "seed corpus missing: {} files", corpus.len());
    for (path, data) in corpus {
        // fuzz_check panics on a violated property; name the input if so.
        let outcome = std::panic::catch_unwind(|| fuzz_check(&data));
        assert!(outcome.is_ok(), "corpus input {} fails the fuzz properties", path.display());
    }
}
