#![no_main]
//! `message`: see `fedbank_fuzzing::message`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| fedbank_fuzzing::message(data));
