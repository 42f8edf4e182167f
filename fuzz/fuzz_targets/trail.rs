#![no_main]
//! `trail`: see `fedbank_fuzzing::trail`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| fedbank_fuzzing::trail(data));
