//! # fedbank-coordinator
//!
//! The coordinator of a consortium job:
//!
//! - [`CoordinatorMachine`]: the job as a plain state machine (joins, key setup with the
//!   committee, rounds with deadlines, retries, decryption, result), driven by a network shell
//!   that feeds it inputs and the time, and carries out its outputs.
//! - [`RoundAggregate`]: one slot's homomorphic sum, its manifest and the combination of the
//!   committee's partial decryptions.
//! - [`JobLogic`]: the job kind's step between rounds, which lives in the kind's folder in
//!   `fedbank-common` (`job::stats`, `job::segment`, `job::propensity`, `job::compliance`) and is
//!   reached through the `Job` trait; the private alert step, computed under the auditor's
//!   server key for a kind that declares limits, is the machine's (`machine/alerts.rs`).
//! - [`ResultFile`]: `result.json`, with [`Participation`] (who took part in each round, read
//!   back from the coordinator's own trail).
//!
//! The coordinator never holds a key share: it sees ciphertexts, the contributor list and the
//! decrypted aggregate, never an individual update. It does not open sockets or read clocks.
//!
//! ```text
//!   RoundAggregate::commit(participant, signed statement)    × K   (digests only)
//!   RoundAggregate::fix_roster()                                   (before any ciphertext)
//!   RoundAggregate::add(participant, ciphertext, signed reveal) × K (not committed, not the
//!                                                    committed one, duplicates, misfits refused)
//!   RoundAggregate::decryption_request()   (manifest, roster, each signed statement, reveal and
//!                                           mask; no bodies)
//!   RoundAggregate::combine(request, partials)           (every member exactly once) → slots
//! ```

mod aggregation;
mod job_logic;
mod machine;
mod participation;
mod result_file;

pub use aggregation::{AggregationError, PartialProblem, RoundAggregate};
pub use job_logic::{JobLogic, JobResult};
pub use machine::{
    Checkpoint, CompletedRound, CoordinatorMachine, CoordinatorOutbound, CoordinatorOutput,
    CoordinatorProgress, Input, JobFailure, Millis, ResumeError, Status, Violation,
};
pub use participation::{ClippingRun, DroppedParticipant, Participation, RoundParticipation};
pub use result_file::{Released, ResultFile, ResultFileError, RESULT_SCHEMA};

/// This coordinator's software and version, recorded in `job.started`.
pub const SOFTWARE: &str = concat!("fedbank ", env!("CARGO_PKG_VERSION"));
