//! The bodies of fedbank's coverage-guided fuzz targets.
//!
//! Each target feeds arbitrary bytes to one family of decoders that read what another party or
//! the disk hands a node, and then to what a node does next with a value that decoded (validate
//! it, add it to an aggregate, decrypt under policy, resume from it). A body returns for every
//! input; an error from the code under test is the expected outcome, a panic, a hang or an
//! unbounded allocation is a finding.
//!
//! | target        | reads                                                                |
//! |---------------|----------------------------------------------------------------------|
//! | `frame`       | a QUIC stream's bytes: frame head, declared length, body, message    |
//! | `parity`      | a stream's pieces in any order and its parity datagrams, reassembled  |
//! | `message`     | every protocol message, then validation and the receiving role's use |
//! | `ciphertext`  | a contribution's ciphertext, added to an aggregate and decrypted      |
//! | `keys`        | key setup, public-key shares, joint key, a stored secret share, record |
//! | `alert_bytes` | tfhe bytes of private alerts: the auditor's public key, rate lists, tallies |
//! | `trail`       | an audit trail file, verified                                        |
//! | `config`      | a job file (TOML) and a coordinator checkpoint (JSON), resumed       |
//! | `csv_tables`  | customer tables, transaction logs, labeled customers, contact logs   |
//!
//! The `fuzz/` package (outside the workspace; cargo-fuzz and libFuzzer) wraps each body in a
//! `fuzz_target!`; `tests/fuzz_regressions.rs` replays the seeds of [`seeds`] and every saved
//! finding under `fuzz/regressions/<target>/` on every `cargo test`. This crate does not fuzz by
//! itself and does not cover the tfhe server key (60 MB, checked by tfhe's own conformance).

mod fixtures;
mod targets;

pub use fixtures::seeds;
pub use targets::*;

/// A target's body: arbitrary bytes in, nothing out; it must return for every input.
pub type Body = fn(&[u8]);

/// Every target: its name (as in `fuzz/fuzz_targets/<name>.rs`) and its body.
pub const TARGETS: &[(&str, Body)] = &[
    ("frame", frame),
    ("parity", parity),
    ("message", message),
    ("ciphertext", ciphertext),
    ("keys", keys),
    ("alert_bytes", alert_bytes),
    ("trail", trail),
    ("config", config),
    ("csv_tables", csv_tables),
];
