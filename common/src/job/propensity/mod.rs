//! The propensity job, in one folder behind [`Job`]: a logistic-regression propensity model
//! (campaign response, churn) trained by federated Newton or FedAvg over each participant's
//! labeled customers, evaluated on their hold-out customers, optionally under differential
//! privacy, and released to participants so that each scores its own hold-out with it.
//!
//! Its rounds and their wire tags:
//!
//! | tag      | round      | what each participant sends                                      |
//! |----------|------------|------------------------------------------------------------------|
//! | `0x0310` | `moments`  | per numeric feature over its training customers: count, missing, sum, sum of squares |
//! | `0x0311` | `classes`  | training and hold-out customers and positives                    |
//! | `0x0312` | `newton`   | Σ w(p − y)x, the packed Σ w p(1 − p)xxᵀ and the loss at \[β\]     |
//! | `0x0313` | `fedavg`   | n_i·β_i after local descent from \[β\], n_i and the loss          |
//! | `0x0314` | `evaluate` | score histograms of positives and negatives at \[β\], loss, correct |
//!
//! (Tags `0x0001` and `0x0301`–`0x0304` were these rounds in the protocol's round enum up to
//! version 7; they are retired, never reused.)
//!
//! - `spec`: the `[job.propensity]` table and its checks;
//! - `rounds`: the rounds' parameter records ([`PropensityRound`]);
//! - `records`: a participant's labeled customers ([`CustomerRecords`]);
//! - `local`: a participant's step, and its own figures from the released model;
//! - `step`: the coordinator's step ([`PropensityJob`]) and the released [`PropensityResult`].
//!
//! - `privacy`: the differential-privacy plan and accountant (also `job::privacy`);
//! - `model`: the exported model (`model.json`, also `fedbank_common::model`);
//! - `report`: the human report (`model.json`, `report.md`, `training.svg`, `lift.svg`).
//!
//! The noise each participant adds before encryption is the participant machine's
//! (`participant/src/privacy_noise.rs`), driven by that plan. Reading labeled customers from a
//! file is the participant's (`participant/src/customers.rs`).

mod local;
pub mod model;
pub mod privacy;
mod records;
mod report;
mod rounds;
mod spec;
mod step;

pub use local::{compute, local_figures, LocalFigures, PropensityError, PropensityParticipant};
pub use records::{held_out, CustomerRecords};
pub use rounds::{PropensityRound, CLASSES, EVALUATE, FEDAVG, NEWTON};
pub use spec::*;
pub use step::{CoefficientRow, PropensityJob, PropensityJobError, PropensityResult};

use super::{
    CoordinatorStep, Job, JobRound, JobSpec, ParticipantStep, RoundDecl, RoundTag, ValidJob,
    LOGISTIC_SCALE, MOMENTS, Z_BOUND,
};
use crate::encoding::QuantitySpec;
use serde::Deserialize;

/// The kind's name in job files.
pub const KIND: &str = "propensity";

/// The moments round (standardization over the training customers).
pub const MOMENTS_TAG: RoundTag = RoundTag(0x0310);
/// The class-count round.
pub const CLASSES_TAG: RoundTag = RoundTag(0x0311);
/// A Newton step.
pub const NEWTON_TAG: RoundTag = RoundTag(0x0312);
/// A FedAvg round.
pub const FEDAVG_TAG: RoundTag = RoundTag(0x0313);
/// The evaluation round.
pub const EVALUATE_TAG: RoundTag = RoundTag(0x0314);

const ROUNDS: &[RoundDecl] = &[
    RoundDecl {
        tag: MOMENTS_TAG,
        label: MOMENTS,
    },
    RoundDecl {
        tag: CLASSES_TAG,
        label: CLASSES,
    },
    RoundDecl {
        tag: NEWTON_TAG,
        label: NEWTON,
    },
    RoundDecl {
        tag: FEDAVG_TAG,
        label: FEDAVG,
    },
    RoundDecl {
        tag: EVALUATE_TAG,
        label: EVALUATE,
    },
];

/// The propensity job kind.
pub struct PropensityKind;

fn section(job: &ValidJob) -> Result<&PropensitySpec, String> {
    job.propensity()
        .ok_or_else(|| "a propensity job needs a [job.propensity] table".to_owned())
}

impl Job for PropensityKind {
    fn kind(&self) -> &'static str {
        KIND
    }

    fn rounds(&self) -> &'static [RoundDecl] {
        ROUNDS
    }

    /// A job trains with one optimizer: a Newton job never computes a FedAvg round (which would
    /// escape its privacy accountant), nor a FedAvg job a Newton round.
    fn computes(&self, job: &ValidJob, tag: RoundTag) -> bool {
        let optimizer = job.propensity().map(|p| p.optimizer);
        match tag {
            NEWTON_TAG => optimizer == Some(Optimizer::Newton),
            FEDAVG_TAG => optimizer == Some(Optimizer::FedAvg),
            other => ROUNDS.iter().any(|d| d.tag == other),
        }
    }

    fn report(
        &self,
        job: &ValidJob,
        result: &serde_json::Value,
        who: &super::ReportedInstitutions,
    ) -> Result<Vec<super::ReportFile>, String> {
        let result = PropensityResult::deserialize(result).map_err(|e| e.to_string())?;
        report::propensity_report(job, &result, who)
    }

    fn privacy(&self, spec: &JobSpec) -> Option<privacy::PrivacyPlan> {
        privacy::PrivacyPlan::of(&spec.features, spec.propensity.as_ref()?)
    }

    fn validate(&self, spec: &JobSpec) -> Result<(), String> {
        let propensity = spec
            .propensity
            .as_ref()
            .ok_or_else(|| "a propensity job needs a [job.propensity] table".to_owned())?;
        propensity
            .check(&spec.features)
            .map_err(|problem| format!("[job.propensity]: {problem}"))
    }

    fn quantities(&self, job: &ValidJob, round: &JobRound) -> Result<Vec<QuantitySpec>, String> {
        let round = PropensityRound::parse(round)?;
        let propensity = section(job)?;
        let spec = job.spec();
        let rows = spec.max_rows as f64;
        let d = propensity.design_names(&spec.features).len();
        let features = spec.features.len();
        let private = propensity.privacy.is_some();
        let w = MAX_CLASS_WEIGHT;
        let fits = |mean: &[f64], std: &[f64], beta: &[f64]| match mean.len() == features
            && std.len() == features
            && beta.len() == d
        {
            true => Ok(()),
            false => Err(format!(
                "{} means and {} coefficients for {features} features and {d} coefficients",
                mean.len(),
                beta.len()
            )),
        };
        let weighted = |weights: &[f64; 2]| match weights
            .iter()
            .all(|w| w.is_finite() && *w > 0.0 && *w <= MAX_CLASS_WEIGHT)
        {
            true => Ok(()),
            false => Err(format!(
                "class weights {weights:?} outside (0, {MAX_CLASS_WEIGHT}]"
            )),
        };
        Ok(match round {
            PropensityRound::Moments => job.moments_quantities(),
            PropensityRound::Classes => vec![QuantitySpec::new(CLASSES, 4, rows, 1.0)],
            PropensityRound::Newton {
                mean,
                std,
                beta,
                weights,
            } => {
                fits(&mean, &std, &beta)?;
                weighted(&weights)?;
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
                if !private {
                    q.push(QuantitySpec::new(
                        "newton.loss",
                        1,
                        rows * w * crate::logistic::MAX_ROW_LOSS,
                        LOGISTIC_SCALE,
                    ));
                }
                q
            }
            PropensityRound::FedAvg {
                mean,
                std,
                beta,
                weights,
                ..
            } => {
                fits(&mean, &std, &beta)?;
                weighted(&weights)?;
                vec![
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
                ]
            }
            PropensityRound::Evaluate { mean, std, beta } => {
                fits(&mean, &std, &beta)?;
                let bins = propensity.score_bins;
                let mut q = vec![
                    QuantitySpec::new("eval.positives", bins, rows, 1.0),
                    QuantitySpec::new("eval.negatives", bins, rows, 1.0),
                ];
                // Under differential privacy log-loss and accuracy are read off the noisy
                // histograms instead of being released (and paid for) separately.
                if !private {
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
        })
    }

    fn widest_rounds(&self, job: &ValidJob) -> Vec<JobRound> {
        let Ok(propensity) = section(job) else {
            return Vec::new();
        };
        let features = job.spec().features.len();
        let d = propensity.design_names(&job.spec().features).len();
        let (mean, std, beta) = (vec![0.0; features], vec![1.0; features], vec![0.0; d]);
        let weights = [MAX_CLASS_WEIGHT; 2];
        let training = match propensity.optimizer {
            Optimizer::Newton => PropensityRound::Newton {
                mean: mean.clone(),
                std: std.clone(),
                beta: beta.clone(),
                weights,
            },
            Optimizer::FedAvg => PropensityRound::FedAvg {
                mean: mean.clone(),
                std: std.clone(),
                beta: beta.clone(),
                weights,
                training_customers: 1.0,
            },
        };
        [
            PropensityRound::Moments,
            PropensityRound::Classes,
            training,
            PropensityRound::Evaluate { mean, std, beta },
        ]
        .iter()
        .filter_map(|r| r.to_round().ok())
        .collect()
    }

    fn planned_rounds(&self, job: &ValidJob) -> u32 {
        // moments, classes, evaluation, and the training rounds
        3u32.saturating_add(job.propensity().map_or(0, |p| p.max_rounds))
    }

    fn coordinator(&self, job: &ValidJob) -> Box<dyn CoordinatorStep> {
        let spec = job.spec();
        match job.propensity() {
            Some(propensity) => Box::new(PropensityJob::new(
                spec.job.as_str(),
                spec.id_column.clone(),
                spec.features.clone(),
                propensity.clone(),
            )),
            // Validation gives every propensity job its table; were one without it to get
            // here, it would compute only the statistics of its features.
            None => super::stats::Stats.coordinator(job),
        }
    }

    fn participant(&self, job: &ValidJob) -> Box<dyn ParticipantStep> {
        Box::new(PropensityParticipant::new(job.clone()))
    }

    fn check_result(&self, result: &serde_json::Value) -> Result<(), String> {
        PropensityResult::deserialize(result)
            .map(|_| ())
            .map_err(|e| e.to_string())
    }
}
