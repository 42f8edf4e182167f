//! A job's specification: who takes part, under which policy, and what is computed. The same
//! file is given to the coordinator and to every participant; a participant contributes only to
//! the job whose digest matches its own copy.
//!
//! - this file: the spec ([`JobSpec`]), its errors and the checked [`ValidJob`];
//! - `validate`: [`JobSpec::validate`] and the digest; `plan`: what a valid job computes
//!   (quantities, encoding plans, message limits); `rounds`: [`RoundKind`] and quantity labels.
//!
//! - `registered`: the [`Job`] trait through which a job kind in its own folder plugs in, and
//!   the registry [`JOBS`].
//!
//! - `stats/`, `segment/`, `propensity/` and `compliance/`: those job kinds in their own
//!   folders, behind [`Job`].
//!
//! The built-in kinds' own tables (`[job.segment]`, `[job.propensity]`, `[job.compliance]`) are
//! fields of the spec, checked here to belong to the job's kind; a kind registered from
//! elsewhere reads its own settings from `[job.settings]` ([`JobSpec::settings`]).

use crate::digest::Digest;
use crate::encoding::EncodingError;
use crate::ids::{JobId, NodeId};
use crate::secagg::{ParameterError, Profile, SchemeParameters};
use compliance::rules::ComplianceSpec;
use serde::{Deserialize, Serialize};

pub mod compliance;
mod plan;
pub mod propensity;
mod registered;
mod rounds;
pub mod segment;
pub mod stats;
mod validate;

pub use plan::{RoundPlanError, CLIPPED_VALUES};
pub use propensity::privacy;
pub use propensity::{
    CategoricalSpec, ClassWeight, Optimizer, PropensitySpec, FEDAVG_COEFFICIENT_BOUND,
    MAX_CLASS_WEIGHT, MAX_COEFFICIENTS, MAX_FEDAVG_COEFFICIENTS,
};
pub use registered::*;
pub use rounds::*;
pub use segment::{ChooseK, KCriterion, SegmentSpec, TransactionColumns, MAX_SEGMENTS};

/// A numeric feature (column) with its declared bound and fixed-point scale.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeatureSpec {
    /// Column name in the participants' tables.
    pub name: String,
    /// |value| ≤ bound; values beyond are clipped and counted.
    pub bound: f64,
    /// Smallest valid value (default −bound); values below are clipped and counted. Set it to 0
    /// for amounts and counts so that histograms and quantiles do not reach below zero.
    #[serde(default)]
    pub min: Option<f64>,
    /// Fixed-point scale (1 for integer features).
    #[serde(default = "one")]
    pub scale: f64,
}

fn one() -> f64 {
    1.0
}

impl FeatureSpec {
    /// The smallest valid value: `min`, or −bound.
    pub fn lower(&self) -> f64 {
        self.min.unwrap_or(-self.bound)
    }
}

/// What the job computes. In a job file and in every encoding it is the kind's name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JobKind {
    /// A job kind behind the [`Job`] trait, by its name: fedbank's own in [`BUILT_IN`]
    /// (`stats`: per-feature count, missing rate, mean, standard deviation, histogram and
    /// quantiles; `segment`: customer segments by federated Lloyd k-means; `propensity`: a
    /// federated logistic-regression model and its evaluation; `compliance`: declared rules over
    /// marketing-contact logs and consent tables, per-rule violation counts, optional private
    /// alerts) or one registered from its own folder ([`JOBS`]).
    Registered(&'static str),
}

impl JobKind {
    /// The stats job (`job/stats/`).
    pub const STATS: JobKind = JobKind::Registered(stats::KIND);
    /// The segment job (`job/segment/`).
    pub const SEGMENT: JobKind = JobKind::Registered(segment::KIND);
    /// The propensity job (`job/propensity/`).
    pub const PROPENSITY: JobKind = JobKind::Registered(propensity::KIND);
    /// The compliance job (`job/compliance/`).
    pub const COMPLIANCE: JobKind = JobKind::Registered(compliance::KIND);

    /// The name used in job files and results.
    pub fn name(self) -> &'static str {
        match self {
            JobKind::Registered(name) => name,
        }
    }

    /// The kind called `name`, if one is registered in this binary.
    pub fn from_name(name: &str) -> Option<JobKind> {
        registered(name).map(|j| JobKind::Registered(j.kind()))
    }

    /// The job of this kind (`None` for a name no kind of this binary has).
    pub fn registered(self) -> Option<&'static dyn Job> {
        match self {
            JobKind::Registered(name) => registered(name),
        }
    }
}

impl Serialize for JobKind {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.name())
    }
}

impl<'de> Deserialize<'de> for JobKind {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let name = String::deserialize(deserializer)?;
        JobKind::from_name(&name).ok_or_else(|| {
            serde::de::Error::custom(format!(
                "unknown job kind '{name}' (this build knows {})",
                registered_kinds().join(", ")
            ))
        })
    }
}

/// Features of a segment job over a transaction log: log(1 + x) of recency in days, frequency
/// (distinct purchase days) and monetary total.
pub const RFM_FEATURES: [&str; 3] = ["log_recency", "log_frequency", "log_monetary"];

/// Standardized values are clipped to ±this many standard deviations before they are summed.
pub const Z_BOUND: f64 = 50.0;
/// Fixed-point scale of standardized sums.
pub const Z_SCALE: f64 = 1e12;
/// Fixed-point scale of logistic-regression sums (gradient, Hessian, loss).
pub const LOGISTIC_SCALE: f64 = 1e9;

/// The job as written in the job file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobSpec {
    /// Job id.
    pub job: JobId,
    /// What is computed.
    pub kind: JobKind,
    /// Crypto profile.
    #[serde(default)]
    pub profile: Profile,
    /// Participants enrolled in the job.
    pub participants: Vec<NodeId>,
    /// Key committee (each also a participant), in any order.
    pub committee: Vec<NodeId>,
    /// Fewest contributors an aggregate may be decrypted with.
    pub min_participants: usize,
    /// Largest number of rows any participant may hold.
    pub max_rows: u64,
    /// Numeric features (none for a compliance job).
    #[serde(default)]
    pub features: Vec<FeatureSpec>,
    /// Customer id column of the participants' customer tables: it names rows in files a
    /// participant writes locally (segment assignments) and is never sent.
    #[serde(default)]
    pub id_column: Option<String>,
    /// Histogram bins between the edges (plus one bin below and one above).
    #[serde(default = "default_bins")]
    pub histogram_bins: usize,
    /// Milliseconds to wait for every committee member's key share.
    #[serde(default = "default_key_timeout")]
    pub key_setup_timeout_ms: u64,
    /// Milliseconds a round waits for contributions.
    #[serde(default = "default_round_timeout")]
    pub round_timeout_ms: u64,
    /// Milliseconds to wait for the committee's partial decryptions.
    #[serde(default = "default_decryption_timeout")]
    pub decryption_timeout_ms: u64,
    /// How often a round with too few contributors is retried before the job stops.
    #[serde(default = "default_retries")]
    pub max_round_retries: u32,
    /// Participants that must have joined before the job starts (default: the committee is
    /// enough; later joiners take part from the next round).
    #[serde(default)]
    pub start_quorum: Option<usize>,
    /// How often a round whose decryption failed because a committee member was away at its
    /// deadline is run again (under a fresh round number, once the whole committee is back)
    /// before the job stops.
    #[serde(default = "default_retries")]
    pub max_decryption_retries: u32,
    /// How to segment (segment jobs only).
    #[serde(default)]
    pub segment: Option<SegmentSpec>,
    /// What to predict (propensity jobs only).
    #[serde(default)]
    pub propensity: Option<PropensitySpec>,
    /// Which rules to check (compliance jobs only).
    #[serde(default)]
    pub compliance: Option<ComplianceSpec>,
    /// The auditor node: holds the key of private alerts, takes no data and is not a
    /// participant (compliance jobs with alert limits only).
    #[serde(default)]
    pub auditor: Option<NodeId>,
    /// The `[job.settings]` table: the settings of a kind that declares it reads one
    /// ([`Job::reads_settings`]), in the kind's own shape, which it reads with
    /// [`JobSpec::settings`] and checks in its `validate`. Part of the job's digest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub settings: Option<serde_json::Value>,
}

impl JobSpec {
    /// The `[job.settings]` table as the kind's own record `T` (`None` without one), or what
    /// does not fit.
    pub fn settings<T: serde::de::DeserializeOwned>(&self) -> Result<Option<T>, String> {
        self.settings
            .as_ref()
            .map(|table| T::deserialize(table).map_err(|e| format!("[job.settings]: {e}")))
            .transpose()
    }
}

fn default_bins() -> usize {
    20
}
fn default_key_timeout() -> u64 {
    30_000
}
fn default_round_timeout() -> u64 {
    60_000
}
fn default_decryption_timeout() -> u64 {
    60_000
}
fn default_retries() -> u32 {
    2
}

/// A job file that does not make a valid job.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum JobError {
    /// The job could not be encoded, so it has no digest to be agreed on.
    #[error("job {job}")]
    Unencodable {
        /// Job.
        job: JobId,
        /// The encoder's error.
        #[source]
        source: crate::digest::EncodingFailed,
    },
    /// A list field is empty.
    #[error("job {job}: '{field}' must not be empty")]
    Empty {
        /// Job.
        job: JobId,
        /// Field.
        field: &'static str,
    },
    /// A node is listed twice.
    #[error("job {job}: '{field}' lists {node} twice")]
    Duplicate {
        /// Job.
        job: JobId,
        /// Field.
        field: &'static str,
        /// The node.
        node: String,
    },
    /// A committee member is not a participant.
    #[error("job {job}: committee member {node} is not listed in 'participants'")]
    MemberNotParticipant {
        /// Job.
        job: JobId,
        /// The member.
        node: NodeId,
    },
    /// min_participants is out of range.
    #[error(
        "job {job}: min_participants = {got} must be between 1 and the {participants} participants"
    )]
    MinParticipants {
        /// Job.
        job: JobId,
        /// Value given.
        got: usize,
        /// Participants listed.
        participants: usize,
    },
    /// A numeric setting is out of range.
    #[error("job {job}: '{field}' = {value} is out of range ({expected})")]
    OutOfRange {
        /// Job.
        job: JobId,
        /// Field.
        field: &'static str,
        /// Value given.
        value: String,
        /// What is expected.
        expected: &'static str,
    },
    /// The `[job.segment]` table does not make a segment job.
    #[error("job {job}: [job.segment]: {problem}")]
    Segment {
        /// Job.
        job: JobId,
        /// What is wrong.
        problem: String,
    },
    /// The `[job.propensity]` table does not make a propensity job.
    #[error("job {job}: [job.propensity]: {problem}")]
    Propensity {
        /// Job.
        job: JobId,
        /// What is wrong.
        problem: String,
    },
    /// A registered job kind refused the spec, or the registry of this build is inconsistent.
    #[error("job {job}: kind '{kind}': {problem}")]
    Registered {
        /// Job.
        job: JobId,
        /// The kind.
        kind: &'static str,
        /// What is wrong.
        problem: String,
    },
    /// The `[job.compliance]` table (or the auditor) does not make a compliance job.
    #[error("job {job}: [job.compliance]: {problem}")]
    Compliance {
        /// Job.
        job: JobId,
        /// What is wrong.
        problem: String,
    },
    /// The crypto parameters cannot be built.
    #[error("job {job}: crypto parameters")]
    Parameters {
        /// Job.
        job: JobId,
        /// Why.
        #[source]
        source: ParameterError,
    },
    /// A quantity cannot be encoded within the profile.
    #[error("job {job}: round '{round}' cannot be encoded")]
    Encoding {
        /// Job.
        job: JobId,
        /// Round label.
        round: &'static str,
        /// Why.
        #[source]
        source: EncodingError,
    },
}

/// A validated job.
#[derive(Clone, Debug, PartialEq)]
pub struct ValidJob {
    spec: JobSpec,
    params: SchemeParameters,
    digest: Digest,
}
