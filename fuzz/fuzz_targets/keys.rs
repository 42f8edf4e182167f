#![no_main]
//! `keys`: see `fedbank_fuzzing::keys`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| fedbank_fuzzing::keys(data));
