//! Fuzz target: arbitrary bytes scanned as a log segment by the recovery decoder.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    xraft_storage::fuzz_check(data);
});
