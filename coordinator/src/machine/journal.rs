//! The coordinator's checkpoint as a record: what a restarted coordinator needs to resume a job
//! (see `checkpoint.rs` for how it is written and replayed), and why a checkpoint cannot be
//! resumed.

use fedbank_common::digest::Digest;
use fedbank_common::encoding::DecodedQuantity;
use fedbank_common::ids::{JobId, NodeId};
use fedbank_common::job::RoundKind;
use fedbank_common::secagg::KeySetup;
use serde::{Deserialize, Serialize};

/// One completed round as the coordinator learned it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CompletedRound {
    /// Round number.
    pub round: u32,
    /// What it computed.
    pub kind: RoundKind,
    /// Who contributed to the decrypted aggregate.
    pub contributors: Vec<NodeId>,
    /// The decrypted aggregate.
    pub decoded: Vec<DecodedQuantity>,
}

/// What a restarted coordinator needs to resume a job.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// Job.
    pub job: JobId,
    /// Digest of the job file it ran.
    pub job_digest: Digest,
    /// Public seed of the joint key's mask, hex.
    pub mask_seed: String,
    /// The key setup (key epoch and committee), once made.
    pub setup: Option<KeySetup>,
    /// The key ceremony's transcript (the key bundle participants verify) in its wire form, once
    /// complete.
    pub key_bundle: Option<Vec<u8>>,
    /// The number the next round will take.
    pub next_round: u32,
    /// Every completed round, in order.
    pub completed: Vec<CompletedRound>,
    /// Events in the coordinator's trail when this was written (filled in by the shell).
    #[serde(default)]
    pub trail_events: u64,
    /// How many times the job had been resumed when this was written; a checkpoint is written
    /// at every resume, so each restart gets its own number.
    #[serde(default)]
    pub restarts: u32,
    /// The data each participant joined with, so that a restarted coordinator still refuses a
    /// participant that comes back with other data.
    #[serde(default)]
    pub data_commitments:
        std::collections::BTreeMap<NodeId, fedbank_common::protocol::DataCommitment>,
}

/// Why a checkpoint cannot be resumed.
#[derive(Debug, thiserror::Error)]
pub enum ResumeError {
    /// The checkpoint belongs to another job or another version of the job file.
    #[error("the checkpoint is for job {job} with digest {digest}, not this job ({expected})")]
    OtherJob {
        /// Job in the checkpoint.
        job: String,
        /// Its digest.
        digest: String,
        /// This job's digest.
        expected: String,
    },
    /// The stored joint key or seed cannot be read.
    #[error("the checkpoint's {0} cannot be read")]
    Corrupt(&'static str),
    /// Replaying a completed round failed.
    #[error("replaying round {round}: {reason}")]
    Replay {
        /// Round.
        round: u32,
        /// Why.
        reason: String,
    },
}
