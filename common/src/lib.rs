//! # fedbank-common
//!
//! What every fedbank role shares: the secure-aggregation scheme, the encoding of statistics
//! into plaintext slots, the committee's decryption policy, and the wire format.
//!
//! ```text
//!   encoding ──slots──▶ secagg::Encryptor ──Ciphertext──▶ Ciphertext::add_assign (aggregate)
//!                                                               │ summed masks + Manifest
//!   encoding ◀──slots── secagg::combine ◀──PartialDecryption── policy::check + PartialDecryptor
//! ```
//!
//! - [`secagg`] (the `fedbank-secagg` crate, re-exported with its [`encoding`], [`digest`],
//!   [`canonical`] and [`ids`] modules): threshold compact public-key encryption on tfhe's
//!   `core_crypto` (docs/threat-model.md §3), the fixed-point encoding into slots, digests. It
//!   has no fedbank dependency, so that it can be reviewed and fuzzed alone.
//! - [`calendar`]: dates as day numbers, for recency and the reference-date rounds.
//! - [`logistic`] and [`model`]: logistic-regression arithmetic and the exported model format.
//! - [`job::privacy`]: differential privacy of propensity jobs: noise per released aggregate, zCDP
//!   accounting converted to (ε, δ), the budget.
//! - [`compliance_rules`]: the compliance job's rules and column mappings; [`alerts`]: private
//!   alerts on tfhe's high-level API (compact public-key encryption, programmable bootstrapping).
//! - [`endorsement`]: statements signed by a node's certified key and checked against the
//!   consortium CA; [`key_ceremony`]: commit-then-reveal of the members' signed key shares,
//!   checked by every participant, which forms the joint key itself.
//! - [`policy`]: the committee member's decision to decrypt, as a pure function.
//! - [`roster`]: a round's contributions committed before any is revealed, so that no mask is
//!   chosen after the honest ones; [`committee`]: decryption requests and partial decryptions.
//! - [`wire`]: versioned, size-limited bincode 2 encoding; [`storage`]: atomic, permission-aware
//!   files.
//!
//! It does not open sockets, read clocks, spawn tasks or log secrets: the coordinator and
//! participant crates drive it, and the network code only moves its bytes.

pub use fedbank_secagg as secagg;
pub use fedbank_secagg::{canonical, digest, encoding, ids};

pub mod alerts;
pub mod audit;
pub mod calendar;
pub mod committee;
pub use job::compliance::rules as compliance_rules;
pub mod endorsement;
pub mod job;
pub mod key_ceremony;
pub mod logistic;
pub use job::propensity::model;
pub mod node_machine;
pub mod policy;

pub mod protocol;
pub mod roster;
pub mod round_plan;
pub mod storage;
pub mod wire;
