//! A job's specification: who takes part, under which policy, and what is computed. The same
//! file is given to the coordinator and to every participant; a participant contributes only to
//! the job whose digest matches its own copy.

use crate::compliance::ComplianceSpec;
use crate::digest::Digest;
use crate::encoding::{EncodingError, EncodingPlan, QuantitySpec};
use crate::ids::{JobId, NodeId};
use crate::secagg::{ParameterError, Profile, SchemeParameters};
use serde::{Deserialize, Serialize};

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

/// What the job computes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JobKind {
    /// Per-feature count, missing rate, mean, standard deviation and approximate quantiles.
    Stats,
    /// Customer segmentation: global standardization, then federated Lloyd k-means.
    Segment,
    /// Propensity model: federated logistic regression (Newton) and federated evaluation.
    Propensity,
    /// Compliance audit run: declared rules over marketing-contact logs and consent tables,
    /// per-rule violation counts aggregated securely, optional private alerts.
    Compliance,
}

impl JobKind {
    /// The name used in job files and results.
    pub fn name(self) -> &'static str {
        match self {
            JobKind::Stats => "stats",
            JobKind::Segment => "segment",
            JobKind::Propensity => "propensity",
            JobKind::Compliance => "compliance",
        }
    }
}

/// Where a participant's per-customer rows come from in a segment job.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TransactionColumns {
    /// Customer id column.
    pub customer: String,
    /// Purchase date column (YYYY-MM-DD).
    pub date: String,
    /// Purchase amount column.
    pub amount: String,
}

/// The `[job.segment]` table: how to segment.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SegmentSpec {
    /// Transaction-log columns; the features are then the log-scaled RFM values
    /// (`log_recency`, `log_frequency`, `log_monetary`). Without it, the job's declared features
    /// are read from a customer table.
    #[serde(default)]
    pub transactions: Option<TransactionColumns>,
    /// Recency is counted in days up to this date (YYYY-MM-DD). Without it, the consortium finds
    /// the day after its latest purchase with two presence rounds that reveal that date and
    /// nothing else about any participant's dates.
    #[serde(default)]
    pub reference_date: Option<String>,
    /// Number of segments (unless `choose_k` chooses it).
    #[serde(default)]
    pub k: Option<usize>,
    /// Initial centroids in standardized units, one per segment (k lists of one value per
    /// feature), for reproducibility. Without them the job starts from one segment and splits
    /// the segment with the largest within-segment sum of squares along its widest feature,
    /// using only aggregates (see the coordinator's `segment` module).
    #[serde(default)]
    pub initial_centroids: Vec<Vec<f64>>,
    /// Choose k by comparing k = 2..=max_k from aggregates (needs the default initialization).
    #[serde(default)]
    pub choose_k: Option<ChooseK>,
    /// Largest number of Lloyd iterations.
    #[serde(default = "default_iterations")]
    pub max_iterations: u32,
    /// Stop when no centroid coordinate moves more than this (standardized units).
    #[serde(default = "default_tolerance")]
    pub tolerance: f64,
    /// Segments smaller than this are never released; they are merged into the others.
    #[serde(default = "default_k_anonymity")]
    pub k_anonymity: u64,
}

/// How a segment job chooses its number of segments.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChooseK {
    /// Largest k tried; every k from 1 to this is run to convergence or to its own
    /// `max_iterations`.
    pub max_k: usize,
    /// How the candidates are compared.
    pub criterion: KCriterion,
}

/// How candidate numbers of segments are compared.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KCriterion {
    /// Highest mean simplified silhouette: per customer (b − a) / max(a, b), with a and b the
    /// distances to its own and to the nearest other centroid, summed inside the aggregate.
    Silhouette,
    /// The elbow of the inertia curve: the k whose gain over k − 1 is largest compared with
    /// the gain of k + 1 over k, (W[k−1] − W[k]) / (W[k] − W[k+1]); k = max_k is not a
    /// candidate.
    Elbow,
}

impl SegmentSpec {
    /// The most segments any round of the job can have.
    pub fn max_k(&self) -> usize {
        self.choose_k
            .as_ref()
            .map_or(self.k.unwrap_or(1), |c| c.max_k)
            .max(self.initial_centroids.len())
            .max(1)
    }

    /// Days since 1970-01-01 of the job's reference date, if it gives one.
    pub fn reference_day(&self) -> Option<i64> {
        self.reference_date
            .as_deref()
            .and_then(crate::calendar::day_number)
    }
}

fn default_iterations() -> u32 {
    100
}
fn default_tolerance() -> f64 {
    1e-6
}
fn default_k_anonymity() -> u64 {
    10
}

/// Most segments a job may ask for.
pub const MAX_SEGMENTS: usize = 50;

/// A categorical column with its full list of levels.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CategoricalSpec {
    /// Column name.
    pub name: String,
    /// Every level; the first is the reference level (no coefficient of its own).
    pub levels: Vec<String>,
}

/// Class weighting of the training loss.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ClassWeight {
    /// Every customer counts one.
    #[default]
    None,
    /// Each class weighs half of the total: positives n/(2·n₊), negatives n/(2·n₋), from the
    /// consortium's training counts (capped at [`MAX_CLASS_WEIGHT`]).
    Balanced,
}

/// Largest class weight.
pub const MAX_CLASS_WEIGHT: f64 = 100.0;

impl ClassWeight {
    /// Weights of positives and negatives for `n` training customers of which `positives` are
    /// positive.
    pub fn weights(self, n: f64, positives: f64) -> [f64; 2] {
        match self {
            ClassWeight::None => [1.0, 1.0],
            ClassWeight::Balanced => [
                (n / (2.0 * positives)).min(MAX_CLASS_WEIGHT),
                (n / (2.0 * (n - positives))).min(MAX_CLASS_WEIGHT),
            ],
        }
    }
}

/// The `[job.propensity]` table: what to predict and how to train and evaluate.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PropensitySpec {
    /// Label column.
    pub label: String,
    /// The label value of the positive class (e.g. "Yes").
    pub positive: String,
    /// The label value of the negative class; any third value is an error.
    pub negative: String,
    /// Categorical columns with their levels, one-hot encoded after the numeric features.
    #[serde(default)]
    pub categorical: Vec<CategoricalSpec>,
    /// Map a level not in the list to an explicit `other` level (with its own coefficient)
    /// instead of stopping with an error.
    #[serde(default)]
    pub other_level: bool,
    /// L2 penalty λ on every coefficient but the intercept (standardized units).
    #[serde(default = "default_l2")]
    pub l2: f64,
    /// Most Newton rounds.
    #[serde(default = "default_newton_rounds")]
    pub max_rounds: u32,
    /// Stop when no coefficient moves more than this.
    #[serde(default = "default_newton_tolerance")]
    pub tolerance: f64,
    /// Share of each participant's customers held out for evaluation (by a keyed hash of the
    /// customer id, so a customer stays on the same side in every run with the same seed).
    #[serde(default = "default_holdout")]
    pub holdout: f64,
    /// Seed of the hold-out split.
    #[serde(default)]
    pub holdout_seed: u64,
    /// Class weighting.
    #[serde(default)]
    pub class_weight: ClassWeight,
    /// Bins of the score histograms the evaluation aggregates (the AUC's resolution).
    #[serde(default = "default_score_bins")]
    pub score_bins: usize,
    /// Differential privacy (off when absent): see [`crate::privacy`].
    #[serde(default)]
    pub privacy: Option<crate::privacy::PrivacySpec>,
    /// How the model is trained.
    #[serde(default)]
    pub optimizer: Optimizer,
    /// FedAvg: local passes over each participant's training customers per round.
    #[serde(default = "default_local_epochs")]
    pub local_epochs: u32,
    /// FedAvg: step size of local mini-batch gradient descent (standardized units).
    #[serde(default = "default_learning_rate")]
    pub learning_rate: f64,
    /// FedAvg: customers per local mini-batch.
    #[serde(default = "default_batch_size")]
    pub batch_size: usize,
}

/// How a propensity model is trained.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Optimizer {
    /// Federated Newton: each round sums gradients and Hessians (d(d+1)/2 values); reaches the
    /// centralized optimum in a handful of rounds. Up to [`MAX_COEFFICIENTS`] coefficients.
    #[default]
    Newton,
    /// Federated averaging: each participant runs `local_epochs` of mini-batch gradient
    /// descent from the current model on its own customers; the coordinator averages the
    /// local models weighted by customers. Each round sends d values: for models up to
    /// [`MAX_FEDAVG_COEFFICIENTS`] coefficients.
    FedAvg,
}

/// Most coefficients of a model trained by FedAvg.
pub const MAX_FEDAVG_COEFFICIENTS: usize = 20_000;

/// Local coefficients are clipped to ±this before they are averaged (standardized units).
pub const FEDAVG_COEFFICIENT_BOUND: f64 = 100.0;

fn default_local_epochs() -> u32 {
    5
}
fn default_learning_rate() -> f64 {
    0.1
}
fn default_batch_size() -> usize {
    64
}

fn default_l2() -> f64 {
    1.0
}
fn default_newton_rounds() -> u32 {
    25
}
fn default_newton_tolerance() -> f64 {
    1e-8
}
fn default_holdout() -> f64 {
    0.2
}
fn default_score_bins() -> usize {
    1000
}

impl PropensitySpec {
    /// Names of the model's coefficients: the intercept, the numeric features, then one per
    /// non-reference level of each categorical column (and its `other` level if enabled).
    pub fn design_names(&self, features: &[FeatureSpec]) -> Vec<String> {
        let mut names = vec!["intercept".to_owned()];
        names.extend(features.iter().map(|f| f.name.clone()));
        for c in &self.categorical {
            names.extend(c.levels.iter().skip(1).map(|l| format!("{}={l}", c.name)));
            if self.other_level {
                names.push(format!("{}=other", c.name));
            }
        }
        names
    }

    fn check(&self, job: &JobId, features: &[FeatureSpec]) -> Result<(), JobError> {
        let bad = |problem: String| JobError::Propensity {
            job: job.clone(),
            problem,
        };
        if self.positive == self.negative {
            return Err(bad(format!(
                "positive and negative are both '{}'",
                self.positive
            )));
        }
        let mut columns: Vec<&str> = features.iter().map(|f| f.name.as_str()).collect();
        columns.push(&self.label);
        for c in &self.categorical {
            if c.levels.is_empty() {
                return Err(bad(format!(
                    "categorical column '{}' lists no levels",
                    c.name
                )));
            }
            if let Some((i, l)) = c
                .levels
                .iter()
                .enumerate()
                .find(|(i, l)| c.levels[..*i].contains(l))
            {
                return Err(bad(format!(
                    "categorical column '{}' lists level '{l}' twice (position {})",
                    c.name,
                    i + 1
                )));
            }
            columns.push(&c.name);
        }
        if let Some((i, c)) = columns
            .iter()
            .enumerate()
            .find(|(i, c)| columns[..*i].contains(c))
        {
            return Err(bad(format!(
                "column '{c}' is used twice (as feature, label or categorical column; position {})",
                i + 1
            )));
        }
        let d = self.design_names(features).len();
        match self.optimizer {
            Optimizer::Newton if d > MAX_COEFFICIENTS => {
                return Err(bad(format!(
                    "{d} coefficients; the Newton optimizer takes at most {MAX_COEFFICIENTS} (optimizer = \"fedavg\" takes up to {MAX_FEDAVG_COEFFICIENTS})"
                )));
            }
            Optimizer::FedAvg if d > MAX_FEDAVG_COEFFICIENTS => {
                return Err(bad(format!(
                    "{d} coefficients; FedAvg takes at most {MAX_FEDAVG_COEFFICIENTS}"
                )));
            }
            Optimizer::FedAvg => {
                if !(1..=1000).contains(&self.local_epochs) {
                    return Err(bad(format!(
                        "local_epochs = {} is out of range (1 to 1000)",
                        self.local_epochs
                    )));
                }
                if !(self.learning_rate.is_finite()
                    && self.learning_rate > 0.0
                    && self.learning_rate <= 10.0)
                {
                    return Err(bad(format!(
                        "learning_rate = {} is out of range (above 0, at most 10)",
                        self.learning_rate
                    )));
                }
                if !(1..=1_000_000).contains(&self.batch_size) {
                    return Err(bad(format!(
                        "batch_size = {} is out of range (1 to 10^6)",
                        self.batch_size
                    )));
                }
                if self.privacy.is_some() {
                    return Err(bad(
                        "privacy: differential privacy is accounted for federated Newton only; use optimizer = \"newton\" or leave out [job.propensity.privacy]"
                            .to_owned(),
                    ));
                }
            }
            Optimizer::Newton => {}
        }
        if !(self.l2.is_finite() && self.l2 >= 0.0) {
            return Err(bad(format!("l2 = {} must be ≥ 0", self.l2)));
        }
        if !(1..=1000).contains(&self.max_rounds) {
            return Err(bad(format!(
                "max_rounds = {} is out of range (1 to 1000)",
                self.max_rounds
            )));
        }
        if !(self.tolerance.is_finite() && self.tolerance >= 0.0) {
            return Err(bad(format!("tolerance = {} must be ≥ 0", self.tolerance)));
        }
        if !(self.holdout > 0.0 && self.holdout < 1.0) {
            return Err(bad(format!(
                "holdout = {} must be between 0 and 1",
                self.holdout
            )));
        }
        if !(10..=100_000).contains(&self.score_bins) {
            return Err(bad(format!(
                "score_bins = {} is out of range (10 to 100000)",
                self.score_bins
            )));
        }
        if let Some(plan) = crate::privacy::PrivacyPlan::of(features, self) {
            plan.check().map_err(|e| bad(format!("privacy: {e}")))?;
            if !self.score_bins.is_multiple_of(2) {
                return Err(bad(format!(
                    "privacy: score_bins = {} must be even (accuracy at 0.5 is read off the histograms)",
                    self.score_bins
                )));
            }
        }
        Ok(())
    }
}

/// Most coefficients of a propensity model (the Hessian has d(d+1)/2 values).
pub const MAX_COEFFICIENTS: usize = 500;

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
    /// How often a round whose decryption failed because a committee member went away is run
    /// again (under a fresh round number, once the whole committee is back) before the job stops.
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

/// Round label of the moments round of the stats job.
pub const MOMENTS: &str = "moments";
/// Round label of the compliance round.
pub const COMPLIANCE: &str = "compliance";
/// Round label of the histogram round of the stats job.
pub const HISTOGRAM: &str = "histogram";
/// Round label of a Lloyd iteration of the segment job.
pub const KMEANS: &str = "kmeans";
/// Round label of the RFM-score round of a segment job over transactions.
pub const SCORES: &str = "scores";
/// Round label of the first reference-date round: in which months (since 1970-01) has anyone
/// bought on or after that month.
pub const LATEST_MONTH: &str = "latest_month";
/// Round label of the second reference-date round: on which days of the latest month has anyone
/// bought on or after that day.
pub const LATEST_DAY: &str = "latest_day";
/// Round label of the lifecycle round of a segment job over transactions.
pub const LIFECYCLE: &str = "lifecycle";
/// Lifecycle stages, from a customer's first and last purchase and purchase days, relative to
/// the reference date: `new` (first purchase within 90 days), `active` (last purchase within
/// 90 days, fewer than 5 purchase days), `loyal` (last within 90 days, 5 or more purchase days),
/// `at risk` (last purchase 91 to 365 days ago), `churned` (more than 365 days ago).
pub const LIFECYCLE_STAGES: [&str; 5] = ["new", "active", "loyal", "at risk", "churned"];

impl JobSpec {
    /// Checks every field and that every round can be encoded under the profile.
    pub fn validate(mut self) -> Result<ValidJob, JobError> {
        let job = self.job.clone();
        for (field, list) in [
            ("participants", &self.participants),
            ("committee", &self.committee),
        ] {
            if list.is_empty() {
                return Err(JobError::Empty { job, field });
            }
            let mut sorted = list.clone();
            sorted.sort();
            if let Some(w) = sorted.windows(2).find(|w| w[0] == w[1]) {
                return Err(JobError::Duplicate {
                    job,
                    field,
                    node: w[0].to_string(),
                });
            }
        }
        self.committee.sort();
        self.participants.sort();
        if let Some(m) = self
            .committee
            .iter()
            .find(|m| !self.participants.contains(m))
        {
            return Err(JobError::MemberNotParticipant {
                job,
                node: m.clone(),
            });
        }
        if self.min_participants == 0 || self.min_participants > self.participants.len() {
            return Err(JobError::MinParticipants {
                job,
                got: self.min_participants,
                participants: self.participants.len(),
            });
        }
        let colluding = self
            .propensity
            .as_ref()
            .and_then(|p| p.privacy.as_ref())
            .map_or(0, |p| p.colluding_participants);
        if colluding >= self.min_participants {
            return Err(JobError::OutOfRange {
                job: job.clone(),
                field: "privacy.colluding_participants",
                value: colluding.to_string(),
                expected:
                    "below min_participants (some contributors must be honest to carry the noise)",
            });
        }
        if let Some(q) = self.start_quorum {
            if q == 0 || q > self.participants.len() {
                return Err(JobError::OutOfRange {
                    job,
                    field: "start_quorum",
                    value: q.to_string(),
                    expected: "1 to the number of participants",
                });
            }
        }
        if self.features.is_empty() && self.kind != JobKind::Compliance {
            return Err(JobError::Empty {
                job,
                field: "features",
            });
        }
        for f in &self.features {
            if f.min
                .is_some_and(|m| !m.is_finite() || m < -f.bound || m >= f.bound)
            {
                return Err(JobError::OutOfRange {
                    job,
                    field: "features.min",
                    value: format!("{} (feature {})", f.lower(), f.name),
                    expected: "finite, at least -bound and below bound",
                });
            }
        }
        let range = |field, value: String, expected| JobError::OutOfRange {
            job: self.job.clone(),
            field,
            value,
            expected,
        };
        if self.max_rows == 0 || self.max_rows > 1 << 40 {
            return Err(range("max_rows", self.max_rows.to_string(), "1 to 2^40"));
        }
        if !(1..=1000).contains(&self.histogram_bins) {
            return Err(range(
                "histogram_bins",
                self.histogram_bins.to_string(),
                "1 to 1000",
            ));
        }
        for (field, ms) in [
            ("key_setup_timeout_ms", self.key_setup_timeout_ms),
            ("round_timeout_ms", self.round_timeout_ms),
            ("decryption_timeout_ms", self.decryption_timeout_ms),
        ] {
            if !(10..=86_400_000).contains(&ms) {
                return Err(range(field, ms.to_string(), "10 ms to 24 h"));
            }
        }
        if let Some(segment) = &self.segment {
            segment.check(&job, &self.features)?;
        } else if self.kind == JobKind::Segment {
            return Err(JobError::Segment {
                job,
                problem: "a segment job needs a [job.segment] table".to_owned(),
            });
        }
        match (&self.propensity, self.kind) {
            (Some(p), JobKind::Propensity) => p.check(&job, &self.features)?,
            (None, JobKind::Propensity) => {
                return Err(JobError::Propensity {
                    job,
                    problem: "a propensity job needs a [job.propensity] table".to_owned(),
                })
            }
            (Some(_), _) => {
                return Err(JobError::Propensity {
                    job,
                    problem: "only a job of kind \"propensity\" takes a [job.propensity] table"
                        .to_owned(),
                })
            }
            (None, _) => {}
        }
        self.check_compliance()?;
        let params =
            SchemeParameters::new(self.profile, self.committee.len(), self.participants.len())
                .map_err(|source| JobError::Parameters {
                    job: job.clone(),
                    source,
                })?;
        let digest = Digest::of_encoded("fedbank.job.v1", &self).map_err(|source| {
            JobError::Unencodable {
                job: job.clone(),
                source,
            }
        })?;
        let valid = ValidJob {
            spec: self,
            params,
            digest,
        };
        let rounds = match &valid.spec.compliance {
            Some(c) => vec![(COMPLIANCE, c.quantities(valid.spec.max_rows))],
            None => vec![
                (MOMENTS, valid.moments_quantities()),
                (HISTOGRAM, valid.histogram_quantities()),
            ],
        };
        for (round, specs) in rounds {
            EncodingPlan::new(&specs, &valid.params).map_err(|source| JobError::Encoding {
                job: job.clone(),
                round,
                source,
            })?;
        }
        Ok(valid)
    }
}

impl JobSpec {
    fn check_compliance(&self) -> Result<(), JobError> {
        let job = self.job.clone();
        let bad = |problem: &str| JobError::Compliance {
            job: self.job.clone(),
            problem: problem.to_owned(),
        };
        match (&self.compliance, self.kind) {
            (Some(c), JobKind::Compliance) => {
                c.check(&job)?;
                if !self.features.is_empty() {
                    return Err(bad("a compliance job declares rules, not features"));
                }
                match (&self.auditor, c.alert_rules().is_empty()) {
                    (None, false) => {
                        return Err(bad(
                            "rules with max_violation_rate raise private alerts and need an 'auditor' node",
                        ))
                    }
                    (Some(a), _) if self.participants.contains(a) => {
                        return Err(JobError::Compliance {
                            job,
                            problem: format!(
                                "the auditor {a} must not be a participant: it holds the alert key and no data"
                            ),
                        })
                    }
                    _ => {}
                }
                Ok(())
            }
            (None, JobKind::Compliance) => {
                Err(bad("a compliance job needs a [job.compliance] table"))
            }
            (Some(_), _) => Err(bad(
                "only a job of kind \"compliance\" takes a [job.compliance] table",
            )),
            (None, _) if self.auditor.is_some() => Err(bad(
                "only a compliance job with alert limits takes an 'auditor'",
            )),
            (None, _) => Ok(()),
        }
    }
}

impl SegmentSpec {
    fn check(&self, job: &JobId, features: &[FeatureSpec]) -> Result<(), JobError> {
        let bad = |problem: String| JobError::Segment {
            job: job.clone(),
            problem,
        };
        let d = features.len();
        if self.transactions.is_some() {
            let names: Vec<&str> = features.iter().map(|f| f.name.as_str()).collect();
            if names != RFM_FEATURES {
                return Err(bad(format!(
                    "a segment job over transaction logs has the features {RFM_FEATURES:?} in that order, not {names:?}"
                )));
            }
        } else if self.reference_date.is_some() {
            return Err(bad(
                "reference_date applies only to transaction logs ([job.segment.transactions])"
                    .to_owned(),
            ));
        }
        if let Some(date) = &self.reference_date {
            if self.reference_day().is_none() {
                return Err(bad(format!(
                    "reference_date '{date}' is not a YYYY-MM-DD date"
                )));
            }
        }
        match (&self.choose_k, self.k) {
            (Some(_), Some(k)) => {
                return Err(bad(format!("give either k (= {k}) or choose_k, not both")))
            }
            (None, None) => return Err(bad("give k or choose_k".to_owned())),
            (Some(choose), None) => {
                if !(2..=MAX_SEGMENTS).contains(&choose.max_k) {
                    return Err(bad(format!(
                        "choose_k.max_k = {} is out of range (2 to {MAX_SEGMENTS})",
                        choose.max_k
                    )));
                }
                if !self.initial_centroids.is_empty() {
                    return Err(bad(
                        "choose_k starts from one segment and splits; it cannot use initial_centroids"
                            .to_owned(),
                    ));
                }
            }
            (None, Some(k)) => {
                if !(1..=MAX_SEGMENTS).contains(&k) {
                    return Err(bad(format!(
                        "k = {k} is out of range (1 to {MAX_SEGMENTS})"
                    )));
                }
                if !self.initial_centroids.is_empty() && self.initial_centroids.len() != k {
                    return Err(bad(format!(
                        "k = {k} but initial_centroids lists {} centroids",
                        self.initial_centroids.len()
                    )));
                }
            }
        }
        for (i, c) in self.initial_centroids.iter().enumerate() {
            if c.len() != d || c.iter().any(|v| !v.is_finite() || v.abs() > Z_BOUND) {
                return Err(bad(format!(
                    "initial centroid {} must have {d} finite values within ±{Z_BOUND} (one per feature), it has {c:?}",
                    i + 1
                )));
            }
        }
        if !(self.tolerance.is_finite() && self.tolerance >= 0.0) {
            return Err(bad(format!("tolerance = {} must be ≥ 0", self.tolerance)));
        }
        if !(1..=10_000).contains(&self.max_iterations) {
            return Err(bad(format!(
                "max_iterations = {} is out of range (1 to 10000)",
                self.max_iterations
            )));
        }
        if self.k_anonymity == 0 {
            return Err(bad("k_anonymity must be at least 1".to_owned()));
        }
        Ok(())
    }
}

impl ValidJob {
    /// The specification (committee and participants sorted).
    pub fn spec(&self) -> &JobSpec {
        &self.spec
    }
    /// The crypto parameters.
    pub fn params(&self) -> &SchemeParameters {
        &self.params
    }
    /// Digest of the specification; participants check it before contributing.
    pub fn digest(&self) -> Digest {
        self.digest
    }

    /// Quantities of the moments round: per feature count, missing, sum and sum of squares.
    pub fn moments_quantities(&self) -> Vec<QuantitySpec> {
        let rows = self.spec.max_rows as f64;
        self.spec
            .features
            .iter()
            .flat_map(|f| {
                [
                    QuantitySpec::new(format!("{}.count", f.name), 1, rows, 1.0),
                    QuantitySpec::new(format!("{}.missing", f.name), 1, rows, 1.0),
                    QuantitySpec::new(format!("{}.sum", f.name), 1, rows * f.bound, f.scale),
                    QuantitySpec::new(
                        format!("{}.sumsq", f.name),
                        1,
                        rows * f.bound * f.bound,
                        f.scale,
                    ),
                ]
            })
            .collect()
    }

    /// Quantities of the histogram round: per feature, counts in bins+2 bins.
    pub fn histogram_quantities(&self) -> Vec<QuantitySpec> {
        let rows = self.spec.max_rows as f64;
        self.spec
            .features
            .iter()
            .map(|f| {
                QuantitySpec::new(
                    format!("{}.hist", f.name),
                    self.spec.histogram_bins + 2,
                    rows,
                    1.0,
                )
            })
            .collect()
    }

    /// The largest message this job can need, in bytes: a ciphertext, decryption request or
    /// partial decryption for its widest round, or a public key; the network caps every frame
    /// at this.
    pub fn max_message_bytes(&self) -> usize {
        let ring = self.params.ring();
        let width = ring.torus_bits as usize / 8;
        let k = self.spec.segment.as_ref().map_or(1, SegmentSpec::max_k);
        let fixed = [
            self.moments_quantities(),
            self.histogram_quantities(),
            self.kmeans_quantities(k),
            vec![QuantitySpec::presence(
                LATEST_MONTH,
                crate::calendar::MONTHS,
            )],
            self.spec
                .compliance
                .as_ref()
                .map(|c| c.quantities(self.spec.max_rows))
                .unwrap_or_default(),
        ]
        .into_iter()
        .filter_map(|q| EncodingPlan::new(&q, &self.params).ok());
        // Propensity rounds as planned (with any privacy noise room), at the largest weights.
        let none = Vec::new;
        let weights = [MAX_CLASS_WEIGHT; 2];
        let propensity = [
            RoundKind::Moments,
            RoundKind::Classes,
            RoundKind::Newton {
                mean: none(),
                std: none(),
                beta: none(),
                weights,
            },
            RoundKind::FedAvg {
                mean: none(),
                std: none(),
                beta: none(),
                weights,
                training_customers: 0.0,
            },
            RoundKind::Evaluate {
                mean: none(),
                std: none(),
                beta: none(),
            },
        ]
        .into_iter()
        .filter(|_| self.propensity().is_some())
        .filter_map(|round| self.plan(&round).ok());
        let slots = fixed
            .chain(propensity)
            .map(|p| p.slot_count())
            .max()
            .unwrap_or(0)
            .max(1);
        let masks = crate::secagg::chunk_count(slots, ring.polynomial_size) * ring.polynomial_size;
        // Room for a signed statement and the signer's certificate.
        let signed = 4 << 10;
        let contribution = (masks + slots) * width + signed + (64 << 10);
        // A decryption request carries every contributor's mask and signed statement.
        let decryption = self.spec.participants.len() * (masks * width + signed) + (64 << 10);
        // The key bundle: every member's share, signed, twice the commitments.
        let bundle =
            self.spec.committee.len() * (ring.polynomial_size * width + 3 * signed) + (64 << 10);
        let secagg = contribution.max(decryption).max(bundle);
        // The auditor's evaluation key is by far the largest message of a job with alerts.
        match self.alert_rules() {
            0 => secagg,
            _ => secagg.max(crate::alerts::MAX_AUDITOR_KEYS_BYTES),
        }
    }

    /// Quantities of a Lloyd iteration with `k` centroids: count per segment, sum and sum of
    /// squares of each standardized feature per segment (the squares let the coordinator split
    /// the widest segment), the total inertia, and the sum of the customers' simplified
    /// silhouettes.
    pub fn kmeans_quantities(&self, k: usize) -> Vec<QuantitySpec> {
        let rows = self.spec.max_rows as f64;
        let d = self.spec.features.len() as f64;
        let mut q = vec![QuantitySpec::new("kmeans.count", k, rows, 1.0)];
        for f in &self.spec.features {
            q.push(QuantitySpec::new(
                format!("kmeans.sum.{}", f.name),
                k,
                rows * Z_BOUND,
                Z_SCALE,
            ));
        }
        for f in &self.spec.features {
            q.push(QuantitySpec::new(
                format!("kmeans.sumsq.{}", f.name),
                k,
                rows * Z_BOUND * Z_BOUND,
                Z_SCALE,
            ));
        }

        q.push(QuantitySpec::new(
            "kmeans.inertia",
            1,
            rows * d * 4.0 * Z_BOUND * Z_BOUND,
            Z_SCALE,
        ));
        q.push(QuantitySpec::new("kmeans.silhouette", 1, rows, 1e9));
        q
    }

    /// The propensity table of a propensity job.
    pub fn propensity(&self) -> Option<&PropensitySpec> {
        self.spec.propensity.as_ref()
    }

    /// Coefficients of a propensity job's model (0 for other jobs).
    pub fn coefficients(&self) -> usize {
        self.propensity()
            .map_or(0, |p| p.design_names(&self.spec.features).len())
    }

    fn propensity_quantities(&self, round: &RoundKind) -> Vec<QuantitySpec> {
        let rows = self.spec.max_rows as f64;
        let d = self.coefficients();
        let w = MAX_CLASS_WEIGHT;
        match round {
            RoundKind::Classes => vec![QuantitySpec::new("classes", 4, rows, 1.0)],
            RoundKind::Newton { .. } => {
                let mut q = vec![
                    QuantitySpec::new("newton.gradient", d, rows * w * Z_BOUND, LOGISTIC_SCALE),
                    QuantitySpec::new(
                        "newton.hessian",
                        crate::logistic::packed_len(d),
                        rows * w * Z_BOUND * Z_BOUND / 4.0,
                        LOGISTIC_SCALE,
                    ),
                ];
                // Under differential privacy losses are not released (unbounded sensitivity
                // for little use).
                if !self.private() {
                    q.push(QuantitySpec::new(
                        "newton.loss",
                        1,
                        rows * w * crate::logistic::MAX_ROW_LOSS,
                        LOGISTIC_SCALE,
                    ));
                }
                q
            }
            RoundKind::FedAvg { .. } => vec![
                QuantitySpec::new(
                    "fedavg.weighted_beta",
                    d,
                    rows * FEDAVG_COEFFICIENT_BOUND,
                    LOGISTIC_SCALE,
                ),
                QuantitySpec::new("fedavg.customers", 1, rows, 1.0),
                QuantitySpec::new(
                    "fedavg.loss",
                    1,
                    rows * w * crate::logistic::MAX_ROW_LOSS,
                    LOGISTIC_SCALE,
                ),
            ],
            RoundKind::Evaluate { .. } => {
                let bins = self.propensity().map_or(1, |p| p.score_bins);
                let mut q = vec![
                    QuantitySpec::new("eval.positives", bins, rows, 1.0),
                    QuantitySpec::new("eval.negatives", bins, rows, 1.0),
                ];
                // Under differential privacy log-loss and accuracy are read off the noisy
                // histograms instead of being released (and paid for) separately.
                if !self.private() {
                    q.push(QuantitySpec::new(
                        "eval.loss",
                        1,
                        rows * crate::logistic::MAX_ROW_LOSS,
                        LOGISTIC_SCALE,
                    ));
                    q.push(QuantitySpec::new("eval.correct", 1, rows, 1.0));
                }
                q
            }
            _ => Vec::new(),
        }
    }

    /// The job's differential-privacy plan, if it asks for one.
    pub fn privacy(&self) -> Option<crate::privacy::PrivacyPlan> {
        let p = self.propensity()?;
        crate::privacy::PrivacyPlan::of(&self.spec.features, p)
    }

    fn private(&self) -> bool {
        self.propensity().is_some_and(|p| p.privacy.is_some())
    }

    /// The compliance table of a compliance job.
    pub fn compliance(&self) -> Option<&ComplianceSpec> {
        self.spec.compliance.as_ref()
    }

    /// How many rules raise private alerts (0 for jobs other than compliance).
    pub fn alert_rules(&self) -> usize {
        self.compliance().map_or(0, |c| c.alert_rules().len())
    }

    /// The rules that raise private alerts, in order, with their limits: what every role
    /// expects an alert request, tally or manifest to list.
    pub fn alert_limits(&self) -> Vec<crate::protocol::AlertRule> {
        self.compliance()
            .map(|c| {
                c.alert_rules()
                    .into_iter()
                    .map(|(r, limit)| crate::protocol::AlertRule {
                        rule: r.name.clone(),
                        limit_basis_points: limit,
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The segment table of a segment job.
    pub fn segment(&self) -> Option<&SegmentSpec> {
        self.spec.segment.as_ref()
    }

    /// The encoding plan of a round.
    pub fn plan(&self, round: &RoundKind) -> Result<EncodingPlan, EncodingError> {
        let specs = match round {
            RoundKind::Moments => self.moments_quantities(),
            RoundKind::Histogram { .. } => self.histogram_quantities(),
            RoundKind::KMeans { centroids, .. } => self.kmeans_quantities(centroids.len()),
            RoundKind::Scores { centroids, .. } => self
                .spec
                .features
                .iter()
                .map(|f| {
                    QuantitySpec::new(
                        format!("scores.{}", f.name),
                        centroids.len(),
                        self.spec.max_rows as f64 * 5.0,
                        1.0,
                    )
                })
                .collect(),
            RoundKind::Classes
            | RoundKind::Newton { .. }
            | RoundKind::FedAvg { .. }
            | RoundKind::Evaluate { .. } => self.propensity_quantities(round),
            RoundKind::LatestMonth => vec![QuantitySpec::presence(
                LATEST_MONTH,
                crate::calendar::MONTHS,
            )],
            RoundKind::LatestDay { .. } => vec![QuantitySpec::presence(
                LATEST_DAY,
                crate::calendar::MONTH_DAYS,
            )],
            RoundKind::Compliance => self
                .spec
                .compliance
                .as_ref()
                .map(|c| c.quantities(self.spec.max_rows))
                .unwrap_or_default(),
            RoundKind::Lifecycle => vec![QuantitySpec::new(
                "lifecycle.count",
                LIFECYCLE_STAGES.len(),
                self.spec.max_rows as f64,
                1.0,
            )],
        };
        let mut specs = specs;
        if let Some(noise) = self.privacy().and_then(|p| p.round(round)) {
            // A noised value needs room for its noise share and a grid finer than it.
            for spec in &mut specs {
                if let Some(n) = noise.quantities.iter().find(|n| n.name == spec.name) {
                    let honest = self
                        .privacy()
                        .map_or(1, |p| p.honest_contributors(self.spec.min_participants));
                    let share = crate::privacy::PrivacyPlan::share(n.sigma, honest);
                    spec.bound += 16.0 * share;
                    spec.scale = crate::privacy::PrivacyPlan::noised_scale(spec.scale, share);
                }
            }
        }
        EncodingPlan::new(&specs, &self.params)
    }
}

/// What a round asks participants to compute.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum RoundKind {
    /// Count, missing count, sum and sum of squares per feature.
    Moments,
    /// Presence per month since 1970-01 (1970-01 to 2099-12): set by a participant whose latest
    /// purchase is in that month or later. The aggregate reveals the consortium's latest month.
    LatestMonth,
    /// Presence per day of month `month` (months since 1970-01): set by a participant whose latest
    /// purchase is on that day or later. The aggregate reveals the consortium's latest day.
    LatestDay {
        /// The consortium's latest month, from the previous round.
        month: i64,
    },
    /// One Lloyd iteration: assign each customer's standardized row to the nearest centroid and
    /// sum per segment (count, feature sums, inertia).
    KMeans {
        /// Mean per feature, for standardization.
        mean: Vec<f64>,
        /// Standard deviation per feature.
        std: Vec<f64>,
        /// Current centroids, standardized.
        centroids: Vec<Vec<f64>>,
    },
    /// Customers per lifecycle stage (see [`LIFECYCLE_STAGES`]), from each participant's own
    /// transaction log.
    Lifecycle,
    /// Sum of each segment's RFM 1–5 scores: customers are assigned to the nearest centroid and
    /// scored against the consortium quintiles of each feature (recency reversed: recent is 5).
    Scores {
        /// Mean per feature, for standardization.
        mean: Vec<f64>,
        /// Standard deviation per feature.
        std: Vec<f64>,
        /// Final centroids, standardized.
        centroids: Vec<Vec<f64>>,
        /// Four quintile edges per feature (20, 40, 60 and 80 %).
        quintiles: Vec<Vec<f64>>,
    },
    /// Training and hold-out customers and positives (propensity jobs): four counts.
    Classes,
    /// One Newton step of a propensity model: over the training customers, Σ w(p − y)x, the
    /// packed Σ w p(1 − p) x xᵀ and the weighted log-loss at coefficients `beta`.
    Newton {
        /// Mean per numeric feature, for standardization and imputation.
        mean: Vec<f64>,
        /// Standard deviation per numeric feature.
        std: Vec<f64>,
        /// Current coefficients (intercept first).
        beta: Vec<f64>,
        /// Weights of positives and negatives.
        weights: [f64; 2],
    },
    /// One FedAvg round of a propensity model: each participant runs local mini-batch gradient
    /// descent from `beta` on its training customers and sends n_i·β_i, n_i and its weighted
    /// log-loss at `beta`.
    FedAvg {
        /// Mean per numeric feature.
        mean: Vec<f64>,
        /// Standard deviation per numeric feature.
        std: Vec<f64>,
        /// Current coefficients (intercept first).
        beta: Vec<f64>,
        /// Weights of positives and negatives.
        weights: [f64; 2],
        /// The consortium's training customers (to share the L2 penalty out by size).
        training_customers: f64,
    },
    /// Evaluation of the final model over the hold-out customers: score histograms of positives
    /// and negatives, log-loss and the number classified correctly at 0.5.
    Evaluate {
        /// Mean per numeric feature.
        mean: Vec<f64>,
        /// Standard deviation per numeric feature.
        std: Vec<f64>,
        /// Final coefficients.
        beta: Vec<f64>,
    },
    /// Counts per histogram bin, with these inner edges per feature (bins+1 edges each).
    Histogram {
        /// Edges per feature, in feature order.
        edges: Vec<Vec<f64>>,
    },
    /// Per compliance rule: violating contacts, customers affected and contacts examined.
    Compliance,
}

impl RoundKind {
    /// Label used as the decryption slot's quantity.
    pub fn label(&self) -> &'static str {
        match self {
            RoundKind::Moments => MOMENTS,
            RoundKind::Histogram { .. } => HISTOGRAM,
            RoundKind::KMeans { .. } => KMEANS,
            RoundKind::Lifecycle => LIFECYCLE,
            RoundKind::LatestMonth => LATEST_MONTH,
            RoundKind::Classes => "classes",
            RoundKind::Newton { .. } => "newton",
            RoundKind::FedAvg { .. } => "fedavg",
            RoundKind::Evaluate { .. } => "evaluate",
            RoundKind::LatestDay { .. } => LATEST_DAY,
            RoundKind::Scores { .. } => SCORES,
            RoundKind::Compliance => COMPLIANCE,
        }
    }
}
