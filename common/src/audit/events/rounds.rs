//! A round at the coordinator and at a participant.

use super::trail_events;
use crate::ids::{JobId, NodeId};
use serde::{Deserialize, Serialize};

/// `round.started` (coordinator).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoundStarted {
    /// Job.
    pub job: JobId,
    /// Round.
    pub round: u32,
    /// Attempt (0 first).
    pub attempt: u32,
    /// The round's quantity label (`alerts` for the alert step).
    pub quantity: String,
    /// Participants asked.
    pub asked: Vec<NodeId>,
}

/// `roster.fixed` (coordinator): the committed contributions of a round attempt.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RosterFixed {
    /// Job.
    pub job: JobId,
    /// Round.
    pub round: u32,
    /// Attempt.
    pub attempt: u32,
    /// Quantity label.
    pub quantity: String,
    /// Digest of the roster (hex).
    pub roster: String,
    /// Participants listed.
    pub participants: Vec<NodeId>,
}

/// `contribution.received` (coordinator).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContributionReceived {
    /// Job.
    pub job: JobId,
    /// Round.
    pub round: u32,
    /// Quantity label.
    pub quantity: String,
    /// The participant.
    pub node: NodeId,
    /// Digest of the ciphertext (hex).
    pub digest: String,
}

/// `contribution.sent` (participant): revealed against a roster.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContributionSent {
    /// Job.
    pub job: JobId,
    /// Round.
    pub round: u32,
    /// Attempt.
    pub attempt: u32,
    /// Quantity label.
    pub quantity: String,
    /// Digest of the ciphertext (hex).
    pub digest: String,
    /// Digest of the roster it was revealed against (hex).
    pub roster: String,
    /// Values clipped to their feature's declared bound.
    pub clipped_values: u64,
}

/// `participant.dropped` (coordinator): left out of a round.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ParticipantDropped {
    /// Job.
    pub job: JobId,
    /// Round.
    pub round: u32,
    /// Attempt, where the round has attempts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempt: Option<u32>,
    /// The participant.
    pub node: NodeId,
    /// Why.
    pub reason: String,
}

/// `decryption.requested` (coordinator).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DecryptionRequested {
    /// Job.
    pub job: JobId,
    /// Round.
    pub round: u32,
    /// Quantity label.
    pub quantity: String,
    /// Digest of the manifest (hex).
    pub manifest: String,
    /// Contributors summed.
    pub contributors: Vec<NodeId>,
    /// Fewest contributors allowed.
    pub min_participants: usize,
}

/// `decryption.approved` (coordinator): a member's partial decryption received.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DecryptionApproved {
    /// Job.
    pub job: JobId,
    /// Round.
    pub round: u32,
    /// Quantity label.
    pub quantity: String,
    /// The member.
    pub node: NodeId,
    /// Digest of the manifest (hex).
    pub manifest: String,
}

/// `decryption.released` (member): it approved and released its partial decryption.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DecryptionReleased {
    /// Job.
    pub job: JobId,
    /// Round.
    pub round: u32,
    /// Quantity label.
    pub quantity: String,
    /// Digest of the manifest (hex).
    pub manifest: String,
    /// Contributors of the sum.
    pub contributors: Vec<NodeId>,
}

/// `decryption.refused` (member).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DecryptionRefused {
    /// Job.
    pub job: JobId,
    /// Round.
    pub round: u32,
    /// Quantity label.
    pub quantity: String,
    /// Why.
    pub reason: String,
}

/// `decryption.retried` (coordinator): a member went away; nothing was released.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DecryptionRetried {
    /// Job.
    pub job: JobId,
    /// Round.
    pub round: u32,
    /// Quantity label.
    pub quantity: String,
    /// Members that went away.
    pub missing_members: Vec<NodeId>,
    /// This retry's number.
    pub retry: u32,
    /// Retries allowed.
    pub max_retries: u32,
    /// The round number it runs again under.
    pub next_round: u32,
    /// What was released (nothing).
    pub released: String,
}

/// `aggregate.decrypted` (coordinator).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AggregateDecrypted {
    /// Job.
    pub job: JobId,
    /// Round.
    pub round: u32,
    /// Quantity label.
    pub quantity: String,
    /// Digest of the manifest (hex).
    pub manifest: String,
    /// Number of contributors.
    pub contributors: usize,
    /// How many values the contributors clipped to a declared bound, summed over them: decrypted
    /// with the aggregate, so no institution's own count is known (absent for a round that does
    /// not carry it, and for every round of a differentially private job).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clipped_values: Option<u64>,
}

/// `round.completed` (coordinator).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoundCompleted {
    /// Job.
    pub job: JobId,
    /// Round.
    pub round: u32,
}

trail_events! {
    RoundStarted => RoundStarted,
    RosterFixed => RosterFixed,
    ContributionReceived => ContributionReceived,
    ContributionSent => ContributionSent,
    ParticipantDropped => ParticipantDropped,
    DecryptionRequested => DecryptionRequested,
    DecryptionApproved => DecryptionApproved,
    DecryptionReleased => DecryptionReleased,
    DecryptionRefused => DecryptionRefused,
    DecryptionRetried => DecryptionRetried,
    AggregateDecrypted => AggregateDecrypted,
    RoundCompleted => RoundCompleted,
}
