//! Private compliance alerts.

use super::trail_events;
use crate::ids::{JobId, NodeId};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// `alert.keys`: the auditor's alert keys, as it published them and as the coordinator
/// accepted them.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertKeys {
    /// Job.
    pub job: JobId,
    /// The auditor.
    pub auditor: NodeId,
    /// Digest of the public key (hex).
    pub public_key: String,
    /// Digest of the server key (hex).
    pub server_key: String,
}

/// `alert.sent` (participant): its rates under the auditor's key.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertSent {
    /// Job.
    pub job: JobId,
    /// Round.
    pub round: u32,
    /// Digest of the auditor's public key (hex).
    pub public_key: String,
    /// Digest of the encrypted rates (hex).
    pub digest: String,
    /// Rules.
    pub rules: Vec<String>,
}

/// `alert.received` (coordinator).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertReceived {
    /// Job.
    pub job: JobId,
    /// Round.
    pub round: u32,
    /// The participant.
    pub node: NodeId,
    /// Digest of the encrypted rates (hex).
    pub digest: String,
    /// Encrypted comparisons made.
    pub comparisons: usize,
}

/// A rule's limit as the tally asks.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleLimit {
    /// Rule.
    pub rule: String,
    /// Limit in basis points.
    pub limit_basis_points: u16,
}

/// `alert.tally_requested` (coordinator).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertTallyRequested {
    /// Job.
    pub job: JobId,
    /// Round.
    pub round: u32,
    /// Digest of the tally's manifest (hex).
    pub manifest: String,
    /// The auditor.
    pub auditor: NodeId,
    /// Institutions counted.
    pub contributors: Vec<NodeId>,
    /// Rules and limits.
    pub rules: Vec<RuleLimit>,
    /// Fewest institutions per tally.
    pub min_participants: usize,
}

/// `alert.decrypted`: the auditor decrypted the per-rule counts, or the coordinator received
/// them.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum AlertDecrypted {
    /// Auditor.
    ByAuditor(TallyDecrypted),
    /// Coordinator.
    AtCoordinator(TallyReceived),
}

/// The auditor's decryption of a tally.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TallyDecrypted {
    /// Job.
    pub job: JobId,
    /// Round.
    pub round: u32,
    /// Digest of the manifest (hex).
    pub manifest: String,
    /// Institutions counted.
    pub contributors: Vec<NodeId>,
    /// Digests of their encrypted rates (hex).
    pub digests: Vec<String>,
    /// Institutions over each rule's limit.
    pub institutions_over_limit: BTreeMap<String, u16>,
}

/// The coordinator's receipt of the auditor's counts.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TallyReceived {
    /// Job.
    pub job: JobId,
    /// Round.
    pub round: u32,
    /// Digest of the manifest (hex).
    pub manifest: String,
    /// The auditor.
    pub auditor: NodeId,
    /// Institutions over each rule's limit.
    pub institutions_over_limit: BTreeMap<String, u16>,
    /// Rules whose count differs from the verified aggregate's.
    pub differs_from_verified_count: Vec<String>,
}

/// `alert.refused` (auditor).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertRefused {
    /// Job.
    pub job: JobId,
    /// Round.
    pub round: u32,
    /// Digest of the manifest (hex).
    pub manifest: String,
    /// Why.
    pub reason: String,
}

trail_events! {
    AlertKeys => AlertKeys,
    AlertSent => AlertSent,
    AlertReceived => AlertReceived,
    AlertTallyRequested => AlertTallyRequested,
    AlertDecrypted => AlertDecrypted,
    AlertRefused => AlertRefused,
}
