#![no_main]
//! `ciphertext`: see `fedbank_fuzzing::ciphertext`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| fedbank_fuzzing::ciphertext(data));
