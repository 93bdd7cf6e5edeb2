//! Fuzz target: arbitrary bytes into the RESP request, command and reply parsers.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    xraft_kv::resp::fuzz_check(data);
});
