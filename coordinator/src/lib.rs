//! # fedbank-coordinator
//!
//! The coordinator's side of secure aggregation, for one (job, round, quantity) slot:
//!
//! ```text
//!   RoundAggregate::add(participant, ciphertext)   × K   (duplicates and misfits refused)
//!   RoundAggregate::decryption_request()                 (manifest + summed masks, no bodies)
//!   RoundAggregate::combine(request, partials)           (every member exactly once) → slots
//! ```
//!
//! The coordinator never holds a key share: it sees ciphertexts, the contributor list and the
//! decrypted aggregate, never an individual update. It does not schedule rounds, keep time or
//! talk to the network; the round state machine and the network shell come on top.

mod aggregation;

pub use aggregation::{AggregationError, PartialProblem, RoundAggregate};
