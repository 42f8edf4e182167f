//! The propensity job's part of a job file: label, categorical features, optimizer, privacy.

use crate::job::FeatureSpec;
use serde::{Deserialize, Serialize};

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
    /// Differential privacy (off when absent): see [`super::privacy`].
    #[serde(default)]
    pub privacy: Option<super::privacy::PrivacySpec>,
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

    /// Checks the table against the job's `features`; the problem in the job file's words
    /// otherwise.
    pub fn check(&self, features: &[FeatureSpec]) -> Result<(), String> {
        if self.positive == self.negative {
            return Err(format!(
                "positive and negative are both '{}'",
                self.positive
            ));
        }
        let mut columns: Vec<&str> = features.iter().map(|f| f.name.as_str()).collect();
        columns.push(&self.label);
        for c in &self.categorical {
            if c.levels.is_empty() {
                return Err(format!("categorical column '{}' lists no levels", c.name));
            }
            if let Some((i, l)) = c
                .levels
                .iter()
                .enumerate()
                .find(|(i, l)| c.levels[..*i].contains(l))
            {
                return Err(format!(
                    "categorical column '{}' lists level '{l}' twice (position {})",
                    c.name,
                    i + 1
                ));
            }
            columns.push(&c.name);
        }
        if let Some((i, c)) = columns
            .iter()
            .enumerate()
            .find(|(i, c)| columns[..*i].contains(c))
        {
            return Err(format!(
                "column '{c}' is used twice (as feature, label or categorical column; position {})",
                i + 1
            ));
        }
        let d = self.design_names(features).len();
        match self.optimizer {
            Optimizer::Newton if d > MAX_COEFFICIENTS => {
                return Err(format!(
                    "{d} coefficients; the Newton optimizer takes at most {MAX_COEFFICIENTS} (optimizer = \"fedavg\" takes up to {MAX_FEDAVG_COEFFICIENTS})"
                ));
            }
            Optimizer::FedAvg if d > MAX_FEDAVG_COEFFICIENTS => {
                return Err(format!(
                    "{d} coefficients; FedAvg takes at most {MAX_FEDAVG_COEFFICIENTS}"
                ));
            }
            Optimizer::FedAvg => {
                if !(1..=1000).contains(&self.local_epochs) {
                    return Err(format!(
                        "local_epochs = {} is out of range (1 to 1000)",
                        self.local_epochs
                    ));
                }
                if !(self.learning_rate.is_finite()
                    && self.learning_rate > 0.0
                    && self.learning_rate <= 10.0)
                {
                    return Err(format!(
                        "learning_rate = {} is out of range (above 0, at most 10)",
                        self.learning_rate
                    ));
                }
                if !(1..=1_000_000).contains(&self.batch_size) {
                    return Err(format!(
                        "batch_size = {} is out of range (1 to 10^6)",
                        self.batch_size
                    ));
                }
                if self.privacy.is_some() {
                    return Err(
                        "privacy: differential privacy is accounted for federated Newton only; use optimizer = \"newton\" or leave out [job.propensity.privacy]"
                            .to_owned(),
                    );
                }
            }
            Optimizer::Newton => {}
        }
        if !(self.l2.is_finite() && self.l2 >= 0.0) {
            return Err(format!("l2 = {} must be ≥ 0", self.l2));
        }
        if !(1..=1000).contains(&self.max_rounds) {
            return Err(format!(
                "max_rounds = {} is out of range (1 to 1000)",
                self.max_rounds
            ));
        }
        if !(self.tolerance.is_finite() && self.tolerance >= 0.0) {
            return Err(format!("tolerance = {} must be ≥ 0", self.tolerance));
        }
        if !(self.holdout > 0.0 && self.holdout < 1.0) {
            return Err(format!(
                "holdout = {} must be between 0 and 1",
                self.holdout
            ));
        }
        if !(10..=100_000).contains(&self.score_bins) {
            return Err(format!(
                "score_bins = {} is out of range (10 to 100000)",
                self.score_bins
            ));
        }
        if let Some(plan) = super::privacy::PrivacyPlan::of(features, self) {
            plan.check().map_err(|e| format!("privacy: {e}"))?;
            if !self.score_bins.is_multiple_of(2) {
                return Err(format!(
                    "privacy: score_bins = {} must be even (accuracy at 0.5 is read off the histograms)",
                    self.score_bins
                ));
            }
        }
        Ok(())
    }
}

/// Most coefficients of a propensity model (the Hessian has d(d+1)/2 values).
pub const MAX_COEFFICIENTS: usize = 500;
