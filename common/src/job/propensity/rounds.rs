//! The propensity job's rounds as a typed record: [`PropensityRound`] is read from and written
//! to a [`JobRound`] (its tag and canonical parameters).

use super::{CLASSES_TAG, EVALUATE_TAG, FEDAVG_TAG, MOMENTS_TAG, NEWTON_TAG};
use crate::job::{JobRound, RoundKind, RoundParameterError, MOMENTS};
use serde::{Deserialize, Serialize};

/// Round label of the class-count round.
pub const CLASSES: &str = "classes";
/// Round label of a Newton step.
pub const NEWTON: &str = "newton";
/// Round label of a FedAvg round.
pub const FEDAVG: &str = "fedavg";
/// Round label of the evaluation round.
pub const EVALUATE: &str = "evaluate";

/// A round of the propensity job.
#[derive(Clone, Debug, PartialEq)]
pub enum PropensityRound {
    /// Count, missing count, sum and sum of squares per numeric feature over the training
    /// customers.
    Moments,
    /// Training and hold-out customers and positives: four counts.
    Classes,
    /// One Newton step: over the training customers, Σ w(p − y)x, the packed
    /// Σ w p(1 − p) x xᵀ and the weighted log-loss at coefficients `beta`.
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
    /// One FedAvg round: each participant runs local mini-batch gradient descent from `beta`
    /// on its training customers and sends n_i·β_i, n_i and its weighted log-loss at `beta`.
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
    /// Evaluation of the final model over the hold-out customers: score histograms of
    /// positives and negatives, log-loss and the number classified correctly at 0.5.
    Evaluate {
        /// Mean per numeric feature.
        mean: Vec<f64>,
        /// Standard deviation per numeric feature.
        std: Vec<f64>,
        /// Final coefficients.
        beta: Vec<f64>,
    },
}

#[derive(Serialize, Deserialize)]
struct Newton {
    mean: Vec<f64>,
    std: Vec<f64>,
    beta: Vec<f64>,
    weights: [f64; 2],
}

#[derive(Serialize, Deserialize)]
struct FedAvg {
    mean: Vec<f64>,
    std: Vec<f64>,
    beta: Vec<f64>,
    weights: [f64; 2],
    training_customers: f64,
}

#[derive(Serialize, Deserialize)]
struct Evaluate {
    mean: Vec<f64>,
    std: Vec<f64>,
    beta: Vec<f64>,
}

impl PropensityRound {
    /// The round a [`JobRound`] carries; the problem otherwise.
    pub fn parse(round: &JobRound) -> Result<Self, String> {
        let text = |e: RoundParameterError| e.to_string();
        Ok(match round.tag {
            MOMENTS_TAG => {
                round.parameters::<()>().map_err(text)?;
                PropensityRound::Moments
            }
            CLASSES_TAG => {
                round.parameters::<()>().map_err(text)?;
                PropensityRound::Classes
            }
            NEWTON_TAG => {
                let Newton {
                    mean,
                    std,
                    beta,
                    weights,
                } = round.parameters().map_err(text)?;
                PropensityRound::Newton {
                    mean,
                    std,
                    beta,
                    weights,
                }
            }
            FEDAVG_TAG => {
                let FedAvg {
                    mean,
                    std,
                    beta,
                    weights,
                    training_customers,
                } = round.parameters().map_err(text)?;
                PropensityRound::FedAvg {
                    mean,
                    std,
                    beta,
                    weights,
                    training_customers,
                }
            }
            EVALUATE_TAG => {
                let Evaluate { mean, std, beta } = round.parameters().map_err(text)?;
                PropensityRound::Evaluate { mean, std, beta }
            }
            other => return Err(format!("tag {other} is not a round of a propensity job")),
        })
    }

    /// The propensity round a [`RoundKind`] carries, if it is one.
    pub fn of_kind(kind: &RoundKind) -> Option<Self> {
        kind.registered().and_then(|r| Self::parse(r).ok())
    }

    /// The round as a [`JobRound`].
    pub fn to_round(&self) -> Result<JobRound, RoundParameterError> {
        match self.clone() {
            PropensityRound::Moments => JobRound::new(MOMENTS_TAG, &()),
            PropensityRound::Classes => JobRound::new(CLASSES_TAG, &()),
            PropensityRound::Newton {
                mean,
                std,
                beta,
                weights,
            } => JobRound::new(
                NEWTON_TAG,
                &Newton {
                    mean,
                    std,
                    beta,
                    weights,
                },
            ),
            PropensityRound::FedAvg {
                mean,
                std,
                beta,
                weights,
                training_customers,
            } => JobRound::new(
                FEDAVG_TAG,
                &FedAvg {
                    mean,
                    std,
                    beta,
                    weights,
                    training_customers,
                },
            ),
            PropensityRound::Evaluate { mean, std, beta } => {
                JobRound::new(EVALUATE_TAG, &Evaluate { mean, std, beta })
            }
        }
    }

    /// The round as a [`RoundKind`] (what a round request carries).
    pub fn to_kind(&self) -> Result<RoundKind, RoundParameterError> {
        self.to_round().map(RoundKind::Registered)
    }

    /// Label used as the decryption slot's quantity.
    pub fn label(&self) -> &'static str {
        match self {
            PropensityRound::Moments => MOMENTS,
            PropensityRound::Classes => CLASSES,
            PropensityRound::Newton { .. } => NEWTON,
            PropensityRound::FedAvg { .. } => FEDAVG,
            PropensityRound::Evaluate { .. } => EVALUATE,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_round_reads_back_as_written() {
        let v = || vec![0.5, -1.25];
        for round in [
            PropensityRound::Moments,
            PropensityRound::Classes,
            PropensityRound::Newton {
                mean: v(),
                std: v(),
                beta: v(),
                weights: [1.0, 3.5],
            },
            PropensityRound::FedAvg {
                mean: v(),
                std: v(),
                beta: v(),
                weights: [1.0, 3.5],
                training_customers: 4200.0,
            },
            PropensityRound::Evaluate {
                mean: v(),
                std: v(),
                beta: v(),
            },
        ] {
            let wire = round.to_round().expect("encode");
            assert_eq!(PropensityRound::parse(&wire).expect("decode"), round);
            let kind = round.to_kind().expect("kind");
            assert_eq!(kind.label(), round.label());
            assert_eq!(PropensityRound::of_kind(&kind), Some(round));
        }
        let foreign = JobRound::new(crate::job::RoundTag(0x0101), &()).expect("encode");
        assert!(PropensityRound::parse(&foreign)
            .expect_err("tag")
            .contains("not a round of a propensity job"));
    }
}
