//! Fuzz target: arbitrary bytes into the peer frame decoder.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    xraft::wire::fuzz_check(data);
});
