#![no_main]
//! `alert_bytes`: see `fedbank_fuzzing::alert_bytes`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| fedbank_fuzzing::alert_bytes(data));
