#![no_main]
//! `parity`: see `fedbank_fuzzing::parity`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| fedbank_fuzzing::parity(data));
