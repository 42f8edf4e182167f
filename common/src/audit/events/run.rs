//! The trail, the job and the nodes.

use super::trail_events;
use crate::ids::{JobId, NodeId};
use serde::{Deserialize, Serialize};

/// `trail.opened`: the first event, naming the writer's role and public key.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrailOpened {
    /// coordinator, participant or auditor.
    pub role: String,
    /// The writer's Ed25519 public key (hex).
    pub public_key: String,
}

/// `job.started` (coordinator): the job as agreed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobStarted {
    /// Job.
    pub job: JobId,
    /// Job kind name.
    pub kind: String,
    /// Digest of the job file (hex).
    pub config_digest: String,
    /// Crypto profile.
    pub profile: String,
    /// Participants enrolled.
    pub participants: Vec<NodeId>,
    /// Key committee.
    pub committee: Vec<NodeId>,
    /// Fewest contributors per decryption.
    pub min_participants: usize,
    /// Smallest released segment (segment jobs).
    pub k_anonymity: Option<u64>,
    /// The auditor (compliance jobs with alerts).
    pub auditor: Option<NodeId>,
    /// The coordinator's software and version (`fedbank 0.1.0`); absent in older trails.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub software: Option<String>,
}

/// `job.resumed` (coordinator): restarted from its checkpoint.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobResumed {
    /// Job.
    pub job: JobId,
    /// Digest of the job file (hex).
    pub config_digest: String,
    /// Rounds completed before the restart.
    pub completed_rounds: Vec<u32>,
    /// The round number the job goes on with.
    pub next_round: u32,
    /// Key epoch of the checkpoint's key setup.
    pub key_epoch: Option<u32>,
    /// Events in the trail when the checkpoint was written.
    pub trail_events_at_checkpoint: u64,
    /// Which restart of the job this is, from 1. The coordinator tells every node that joins
    /// it afterwards ([`crate::protocol::Welcome::restart`]), and the node records it
    /// (`coordinator.restarted`), so that the restart is in two trails.
    #[serde(default)]
    pub restart: u32,
}

/// `trail.repaired` (any node): its trail ended in a partial line when the node opened it again
/// (the machine stopped mid-write); the partial bytes were moved to `partial_file` beside the
/// trail, kept as evidence, and the trail goes on from its last complete event.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrailRepaired {
    /// The file beside the trail holding the partial bytes (its name).
    pub partial_file: String,
    /// How many bytes.
    pub bytes: u64,
    /// Their SHA-256 (hex).
    pub sha256: String,
}

/// `coordinator.restarted` (participant, committee member, auditor): the coordinator this node
/// joined had restarted from its checkpoint, for the `restart`-th time; the audit finds the
/// coordinator's `job.resumed` of that number.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CoordinatorRestarted {
    /// Job.
    pub job: JobId,
    /// The coordinator's restart number.
    pub restart: u32,
}

impl CoordinatorRestarted {
    /// What a node records on a Welcome to `job` from the coordinator's `restart`-th start, if
    /// it is one it has not recorded (`latest` is the latest it recorded, and is moved on).
    pub fn on_welcome(latest: &mut u32, job: &JobId, restart: u32) -> Option<Self> {
        (restart > *latest).then(|| {
            *latest = restart;
            Self {
                job: job.clone(),
                restart,
            }
        })
    }
}

/// `node.joined` (coordinator).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Joined {
    /// Job.
    pub job: JobId,
    /// The node.
    pub node: NodeId,
    /// Whether it sits on the committee.
    pub committee: bool,
    /// Rows of the data it committed to for the job (absent for the auditor and older trails).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_rows: Option<u64>,
    /// SHA-256 of that data file, hex.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_sha256: Option<String>,
    /// SHA-256 of its consent table, hex (compliance jobs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consent_sha256: Option<String>,
}

/// `message.refused` (participant): a coordinator message it refused, and why.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MessageRefused {
    /// Job.
    pub job: JobId,
    /// The message's name.
    pub message: String,
    /// Why, with its causes.
    pub reason: String,
}

/// `job.completed` (coordinator).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobCompleted {
    /// Job.
    pub job: JobId,
    /// Rounds run.
    pub rounds: u32,
    /// Digest of the result (hex).
    pub result_digest: String,
    /// Digest of what the job released to the participants ([`release_digest`]), when it
    /// released something; each participant records the digest of what it received.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub release_digest: Option<String>,
}

/// The digest (hex) of a job's release to the participants, as the coordinator sent it and as
/// each participant received it.
pub fn release_digest(release: &[u8]) -> String {
    crate::digest::Digest::builder("fedbank.release.v1")
        .bytes(release)
        .finish()
        .to_hex()
}

/// `job.failed` (coordinator).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobFailed {
    /// Job.
    pub job: JobId,
    /// Why.
    pub reason: String,
}

/// `job.ended` (participant, committee member, auditor): the coordinator told the node the
/// job's outcome. A node's trail without it ends before the job did.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobEnded {
    /// Job.
    pub job: JobId,
    /// `finished` or `aborted`.
    pub outcome: String,
    /// The coordinator's reason, for an aborted job.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Digest of the job's release this node received ([`release_digest`]), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub release_digest: Option<String>,
}

/// `artifact.written` (any node): a file of the run the node wrote, bound by its SHA-256 to the
/// signed trail, so that a file changed afterwards fails the audit and is named.
///
/// The coordinator records its files (`result.json`, the job kind's report files) by their
/// path relative to its output directory, the run directory an auditor is given; a participant
/// records its local outputs by their path relative to its trail's directory.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArtifactWritten {
    /// Job.
    pub job: JobId,
    /// What the file is (`result`, `report`, `segment assignment`, `model`, …).
    pub what: String,
    /// The file's path, relative as above, with `/` separators.
    pub file: String,
    /// SHA-256 of the file's bytes (hex), as `sha256sum` prints it.
    pub sha256: String,
    /// Its length in bytes.
    pub bytes: u64,
}

trail_events! {
    TrailOpened => TrailOpened,
    JobStarted => JobStarted,
    JobResumed => JobResumed,
    Joined => Joined,
    MessageRefused => MessageRefused,
    JobCompleted => JobCompleted,
    JobFailed => JobFailed,
    ArtifactWritten => ArtifactWritten,
    JobEnded => JobEnded,
    CoordinatorRestarted => CoordinatorRestarted,
    TrailRepaired => TrailRepaired,
}
