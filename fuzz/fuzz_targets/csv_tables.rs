#![no_main]
//! `csv_tables`: see `fedbank_fuzzing::csv_tables`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| fedbank_fuzzing::csv_tables(data));
