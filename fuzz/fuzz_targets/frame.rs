#![no_main]
//! `frame`: see `fedbank_fuzzing::frame`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| fedbank_fuzzing::frame(data));
