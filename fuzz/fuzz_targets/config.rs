#![no_main]
//! `config`: see `fedbank_fuzzing::config`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| fedbank_fuzzing::config(data));
