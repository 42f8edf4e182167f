//! The segment job's part of a job file: k, choosing k, k-anonymity, transaction-log columns.

use crate::job::{FeatureSpec, RFM_FEATURES, Z_BOUND};
use serde::{Deserialize, Serialize};

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

    /// A table of one segment over a customer table with the defaults, for a job that has no
    /// table (validation refuses such a segment job; nothing else should use it).
    pub fn empty() -> Self {
        Self {
            transactions: None,
            reference_date: None,
            k: Some(1),
            initial_centroids: Vec::new(),
            choose_k: None,
            max_iterations: default_iterations(),
            tolerance: default_tolerance(),
            k_anonymity: default_k_anonymity(),
        }
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

impl SegmentSpec {
    /// Checks the table against the job's `features`; the problem in the job file's words
    /// otherwise.
    pub fn check(&self, features: &[FeatureSpec]) -> Result<(), String> {
        let d = features.len();
        if self.transactions.is_some() {
            let names: Vec<&str> = features.iter().map(|f| f.name.as_str()).collect();
            if names != RFM_FEATURES {
                return Err(format!(
                    "a segment job over transaction logs has the features {RFM_FEATURES:?} in that order, not {names:?}"
                ));
            }
        } else if self.reference_date.is_some() {
            return Err(
                "reference_date applies only to transaction logs ([job.segment.transactions])"
                    .to_owned(),
            );
        }
        if let Some(date) = &self.reference_date {
            if self.reference_day().is_none() {
                return Err(format!("reference_date '{date}' is not a YYYY-MM-DD date"));
            }
        }
        match (&self.choose_k, self.k) {
            (Some(_), Some(k)) => {
                return Err(format!("give either k (= {k}) or choose_k, not both"))
            }
            (None, None) => return Err("give k or choose_k".to_owned()),
            (Some(choose), None) => {
                if !(2..=MAX_SEGMENTS).contains(&choose.max_k) {
                    return Err(format!(
                        "choose_k.max_k = {} is out of range (2 to {MAX_SEGMENTS})",
                        choose.max_k
                    ));
                }
                if !self.initial_centroids.is_empty() {
                    return Err(
                        "choose_k starts from one segment and splits; it cannot use initial_centroids"
                            .to_owned(),
                    );
                }
            }
            (None, Some(k)) => {
                if !(1..=MAX_SEGMENTS).contains(&k) {
                    return Err(format!("k = {k} is out of range (1 to {MAX_SEGMENTS})"));
                }
                if !self.initial_centroids.is_empty() && self.initial_centroids.len() != k {
                    return Err(format!(
                        "k = {k} but initial_centroids lists {} centroids",
                        self.initial_centroids.len()
                    ));
                }
            }
        }
        for (i, c) in self.initial_centroids.iter().enumerate() {
            if c.len() != d || c.iter().any(|v| !v.is_finite() || v.abs() > Z_BOUND) {
                return Err(format!(
                    "initial centroid {} must have {d} finite values within ±{Z_BOUND} (one per feature), it has {c:?}",
                    i + 1
                ));
            }
        }
        if !(self.tolerance.is_finite() && self.tolerance >= 0.0) {
            return Err(format!("tolerance = {} must be ≥ 0", self.tolerance));
        }
        if !(1..=10_000).contains(&self.max_iterations) {
            return Err(format!(
                "max_iterations = {} is out of range (1 to 10000)",
                self.max_iterations
            ));
        }
        if self.k_anonymity == 0 {
            return Err("k_anonymity must be at least 1".to_owned());
        }
        Ok(())
    }
}
