//! What a participant records about its own data and what it received, and the privacy spend.

use super::trail_events;
use crate::ids::JobId;
use serde::{Deserialize, Serialize};

/// `privacy.spent`: the noise of a round, as the participant added it or as the coordinator
/// released it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum PrivacySpent {
    /// Coordinator: the released aggregate's noise and the budget spent so far.
    Released(PrivacyReleased),
    /// Participant: the noise share it added to its contribution.
    Added(NoiseAdded),
}

/// A released aggregate's noise (coordinator).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrivacyReleased {
    /// Job.
    pub job: JobId,
    /// Round.
    pub round: u32,
    /// Quantity label.
    pub quantity: String,
    /// Contributors of the aggregate.
    pub contributors: usize,
    /// Fewest contributors per decryption.
    pub min_participants: usize,
    /// Per quantity.
    pub noise: Vec<ReleasedNoise>,
    /// This release's ρ (zCDP).
    pub rho: f64,
    /// ρ spent so far.
    pub rho_spent: f64,
    /// ε spent so far.
    pub epsilon_spent: f64,
    /// δ.
    pub delta: f64,
    /// The ε budget.
    pub epsilon_budget: f64,
    /// Whether the budget stopped training.
    pub stopped_by_budget: bool,
}

/// One quantity's noise in a released aggregate.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReleasedNoise {
    /// Quantity.
    pub name: String,
    /// L2 sensitivity.
    pub sensitivity: f64,
    /// σ the accountant charged.
    pub sigma_accounted: f64,
    /// σ the aggregate carries, from the contributors beyond the colluding ones.
    pub sigma_carried: f64,
}

/// A participant's noise share (participant).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoiseAdded {
    /// Job.
    pub job: JobId,
    /// Round.
    pub round: u32,
    /// Quantity label.
    pub quantity: String,
    /// The round's ρ.
    pub rho: f64,
    /// Per quantity.
    pub noise: Vec<AddedNoise>,
    /// ε spent so far, by this participant's own accountant.
    pub epsilon_spent: f64,
}

/// One quantity's noise share.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AddedNoise {
    /// Quantity.
    pub name: String,
    /// L2 sensitivity.
    pub sensitivity: f64,
    /// σ of the aggregate.
    pub sigma: f64,
    /// σ of this participant's share.
    pub share_added: f64,
}

/// `rules.evaluated` (participant): it evaluated the compliance rules over its own contacts.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RulesEvaluated {
    /// Job.
    pub job: JobId,
    /// Round.
    pub round: u32,
    /// The rules.
    pub rules: Vec<String>,
    /// The day of the earliest contact evaluated (`YYYY-MM-DD`, the log's clock).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_contact: Option<String>,
    /// The day of the latest contact evaluated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_contact: Option<String>,
}

/// `segments.assigned` (participant): its own customers assigned locally.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SegmentsAssigned {
    /// Job.
    pub job: JobId,
    /// Segments released.
    pub segments: usize,
    /// Customers assigned.
    pub customers: usize,
}

/// `model.received` (participant).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelReceived {
    /// Job.
    pub job: JobId,
    /// Digest of the model (hex).
    pub model_digest: String,
    /// Coefficients.
    pub coefficients: usize,
    /// Whether it computed its own figures on its hold-out customers.
    pub local_figures: bool,
}

trail_events! {
    PrivacySpent => PrivacySpent,
    RulesEvaluated => RulesEvaluated,
    SegmentsAssigned => SegmentsAssigned,
    ModelReceived => ModelReceived,
}
