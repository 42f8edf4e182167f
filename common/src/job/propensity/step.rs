//! The propensity job on the coordinator: standardization from a moments round over the
//! training customers, the consortium's class counts, federated Newton (each round the
//! participants send Σ w(p − y)x, the packed Σ w p(1 − p)xxᵀ and the loss, inside one encrypted
//! aggregate; the coordinator solves (H + λI′)Δ = −(g + λβ′)), then one evaluation round over the
//! hold-out customers whose score histograms give the consortium's AUC, log-loss, accuracy and
//! precision and lift by decile. With the same penalty, federated Newton reaches the same
//! optimum as centralized Newton on the pooled rows.
//!
//! With `optimizer = "fedavg"` each training round is instead one FedAvg round: participants
//! run local mini-batch gradient descent from the current model and send n_i·β_i, n_i and their
//! loss; the coordinator averages (d values per round instead of d + d(d+1)/2, for models too
//! large for Newton). FedAvg approaches the optimum, it does not reach it exactly: with
//! heterogeneous institutions local steps drift towards local optima.
//!
//! With `[job.propensity.privacy]` every aggregate carries Gaussian noise (added by the
//! participants, see `fedbank_common::job::privacy`); this side accounts for it, stops training when
//! one more Newton round and the evaluation would overspend the budget, and post-processes the
//! noisy aggregates (counts rounded and kept non-negative, variances kept non-negative, a ridge
//! added when the noisy Hessian is not positive definite, log-loss and accuracy read off the
//! noisy histograms). Post-processing never costs privacy.

use super::model::{Coefficient, PropensityModel, MODEL_FORMAT};
use super::privacy::{Accountant, PrivacyPlan, PrivacyReport};
use super::{Optimizer, PropensityRound, PropensitySpec};
use crate::canonical::encode_body;
use crate::encoding::DecodedQuantity;
use crate::job::stats::mean_std;
use crate::job::{CoordinatorStep, FeatureSpec, JobRound};
use crate::logistic::{self, Decile, NewtonSums};
use serde::{Deserialize, Serialize};

/// One coefficient with its odds ratio.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CoefficientRow {
    /// Name.
    pub name: String,
    /// Log-odds coefficient.
    pub coefficient: f64,
    /// e^coefficient: the odds multiply by this per standard deviation of a numeric feature, or
    /// for a level against the reference level.
    pub odds_ratio: f64,
}

/// The propensity result.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PropensityResult {
    /// How it was trained.
    pub optimizer: Optimizer,
    /// Training rounds run (Newton or FedAvg).
    pub rounds: u32,
    /// Whether the step fell below the tolerance (else max_rounds stopped it).
    pub converged: bool,
    /// Penalized training objective per round (weighted log-loss + L2), before each step.
    pub objective_per_round: Vec<f64>,
    /// Coefficients.
    pub coefficients: Vec<CoefficientRow>,
    /// Consortium AUC on the hold-out customers (from score histograms).
    pub auc: Option<f64>,
    /// Largest difference between that AUC and the exact pooled AUC (ties within a bin).
    pub auc_resolution: f64,
    /// Mean log-loss on the hold-out customers.
    pub log_loss: f64,
    /// Share of hold-out customers classified correctly at 0.5.
    pub accuracy: f64,
    /// Precision and lift by score decile.
    pub deciles: Vec<Decile>,
    /// Training and hold-out customers and positives.
    pub training_customers: f64,
    /// Positives among them.
    pub training_positives: f64,
    /// Hold-out customers.
    pub holdout_customers: f64,
    /// Positives among them.
    pub holdout_positives: f64,
    /// Class weights used (positives, negatives).
    pub class_weights: [f64; 2],
    /// Missing values per numeric feature among the training customers (imputed with the mean).
    pub imputed: Vec<(String, f64)>,
    /// Numeric features that are constant across the consortium (they get no weight).
    pub constant_features: Vec<String>,
    /// Differential privacy: the budget, the spend and every noised release (absent without).
    pub privacy: Option<PrivacyReport>,
    /// How the figures were obtained where that differs from the plain job (differential
    /// privacy).
    pub notes: Vec<String>,
    /// The exported model.
    pub model: PropensityModel,
}

/// Why an aggregate could not be used.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PropensityJobError {
    /// A quantity is missing.
    #[error("the decrypted aggregate has no quantity '{0}'")]
    MissingQuantity(String),
    /// The Newton step failed.
    #[error("Newton step")]
    Newton(#[from] logistic::NewtonError),
    /// The consortium's training customers are all of one class.
    #[error("the consortium's training customers are all {0}: there is nothing to learn")]
    OneClass(&'static str),
    /// A FedAvg round summed no training customers.
    #[error("the FedAvg round summed no training customers")]
    NoTrainingCustomers,
}

fn find<'a>(decoded: &'a [DecodedQuantity], name: &str) -> Result<&'a [f64], PropensityJobError> {
    DecodedQuantity::find(decoded, name)
        .ok_or_else(|| PropensityJobError::MissingQuantity(name.to_owned()))
}

/// The coordinator's side of a propensity job.
#[derive(Debug, Clone)]
pub struct PropensityJob {
    job: String,
    id_column: Option<String>,
    features: Vec<FeatureSpec>,
    spec: PropensitySpec,
    mean: Vec<f64>,
    std: Vec<f64>,
    missing: Vec<f64>,
    beta: Vec<f64>,
    weights: [f64; 2],
    classes: [f64; 4],
    objective: Vec<f64>,
    rounds: u32,
    converged: bool,
    accountant: Option<Accountant>,
    /// Largest ridge added to a noisy Hessian to keep it positive definite.
    ridge: f64,
    result: Option<PropensityResult>,
}

impl PropensityJob {
    /// A propensity job.
    pub fn new(
        job: &str,
        id_column: Option<String>,
        features: Vec<FeatureSpec>,
        spec: PropensitySpec,
    ) -> Self {
        let d = spec.design_names(&features).len();
        let accountant = PrivacyPlan::of(&features, &spec).map(Accountant::new);
        Self {
            accountant,
            ridge: 0.0,
            job: job.to_owned(),
            id_column,
            features,
            spec,
            mean: Vec::new(),
            std: Vec::new(),
            missing: Vec::new(),
            beta: vec![0.0; d],
            weights: [1.0, 1.0],
            classes: [0.0; 4],
            objective: Vec::new(),
            rounds: 0,
            converged: false,
            result: None,
        }
    }

    /// The first round.
    pub fn first_round(&self) -> PropensityRound {
        PropensityRound::Moments
    }

    /// The next training round: Newton or FedAvg, at the current coefficients.
    fn training_round(&self) -> PropensityRound {
        match self.spec.optimizer {
            Optimizer::Newton => PropensityRound::Newton {
                mean: self.mean.clone(),
                std: self.std.clone(),
                beta: self.beta.clone(),
                weights: self.weights,
            },
            Optimizer::FedAvg => PropensityRound::FedAvg {
                mean: self.mean.clone(),
                std: self.std.clone(),
                beta: self.beta.clone(),
                weights: self.weights,
                training_customers: self.classes[0],
            },
        }
    }

    /// After a training round moved the coefficients by `step`: evaluate when converged, at
    /// max_rounds or out of privacy budget, else train on.
    fn after_step(&mut self, step: &[f64]) -> PropensityRound {
        self.rounds += 1;
        self.converged = step.iter().fold(0.0f64, |m, s| m.max(s.abs())) <= self.spec.tolerance;
        let budget_left = self.accountant.as_ref().is_none_or(|a| a.affords_newton());
        let done = self.converged || self.rounds >= self.spec.max_rounds;
        if !done && !budget_left {
            if let Some(a) = &mut self.accountant {
                a.stop_for_budget();
            }
        }
        if done || !budget_left {
            return PropensityRound::Evaluate {
                mean: self.mean.clone(),
                std: self.std.clone(),
                beta: self.beta.clone(),
            };
        }
        self.training_round()
    }

    /// Takes a round's decrypted aggregate; the next round, or `None` when done.
    pub fn apply(
        &mut self,
        kind: &PropensityRound,
        decoded: &[DecodedQuantity],
    ) -> Result<Option<PropensityRound>, PropensityJobError> {
        let private = self.accountant.is_some();
        let noise = self.accountant.as_ref().and_then(|a| a.plan().round(kind));
        if let (Some(accountant), Some(noise)) = (&mut self.accountant, &noise) {
            accountant.record(kind.label(), noise.clone());
        }
        // Noisy counts are rounded and kept non-negative (post-processing).
        let count = |v: f64| if private { v.round().max(0.0) } else { v };
        match kind {
            PropensityRound::Moments => {
                for f in &self.features {
                    let n = count(find(decoded, &format!("{}.count", f.name))?[0]);
                    let sum = find(decoded, &format!("{}.sum", f.name))?[0];
                    let sumsq = find(decoded, &format!("{}.sumsq", f.name))?[0];
                    let (mut mean, std) = mean_std(n, sum, sumsq);
                    if private {
                        mean = mean.clamp(f.lower(), f.bound);
                    }
                    self.mean.push(mean);
                    self.std.push(if std > 1e-12 { std } else { 0.0 });
                    self.missing
                        .push(count(find(decoded, &format!("{}.missing", f.name))?[0]));
                }
                Ok(Some(PropensityRound::Classes))
            }
            PropensityRound::Classes => {
                let c: Vec<f64> = find(decoded, "classes")?
                    .iter()
                    .map(|&v| count(v))
                    .collect();
                let c = [c[0], c[1].min(c[0]), c[2], c[3].min(c[2])];
                self.classes = c;
                let (n, pos) = (c[0], c[1]);
                if pos <= 0.0 {
                    return Err(PropensityJobError::OneClass("negative"));
                }
                if pos >= n {
                    return Err(PropensityJobError::OneClass("positive"));
                }
                self.weights = self.spec.class_weight.weights(n, pos);
                Ok(Some(self.training_round()))
            }
            PropensityRound::Newton { beta, .. } => {
                let mut sums = NewtonSums {
                    gradient: find(decoded, "newton.gradient")?.to_vec(),
                    hessian: find(decoded, "newton.hessian")?.to_vec(),
                    loss: 0.0,
                };
                // Without differential privacy the loss comes with the sums.
                if let Some(loss) = DecodedQuantity::find(decoded, "newton.loss") {
                    sums.loss = loss[0];
                    self.objective
                        .push(logistic::penalized(sums.loss, beta, self.spec.l2));
                }
                let hessian_sigma = noise.as_ref().and_then(|n| {
                    n.quantities
                        .iter()
                        .find(|q| q.name == "newton.hessian")
                        .map(|q| q.sigma)
                });
                let step = if let Some(sigma) = hessian_sigma {
                    self.noisy_newton_step(&mut sums, beta, sigma)?
                } else {
                    logistic::newton_step(&sums, beta, self.spec.l2)?
                };
                self.beta = beta.iter().zip(&step).map(|(b, s)| b + s).collect();
                Ok(Some(self.after_step(&step)))
            }
            PropensityRound::FedAvg { beta, .. } => {
                let weighted = find(decoded, "fedavg.weighted_beta")?;
                let customers = find(decoded, "fedavg.customers")?[0];
                let loss = find(decoded, "fedavg.loss")?[0];
                if customers <= 0.0 {
                    return Err(PropensityJobError::NoTrainingCustomers);
                }
                self.objective
                    .push(logistic::penalized(loss, beta, self.spec.l2));
                let averaged: Vec<f64> = weighted.iter().map(|v| v / customers).collect();
                let step: Vec<f64> = averaged.iter().zip(beta).map(|(a, b)| a - b).collect();
                self.beta = averaged;
                Ok(Some(self.after_step(&step)))
            }
            PropensityRound::Evaluate { .. } => {
                let mut pos = find(decoded, "eval.positives")?.to_vec();
                let mut neg = find(decoded, "eval.negatives")?.to_vec();
                let (loss, correct, holdout) = match (
                    DecodedQuantity::find(decoded, "eval.loss"),
                    DecodedQuantity::find(decoded, "eval.correct"),
                ) {
                    (Some(loss), Some(correct)) => {
                        // The hold-out customers of this round's contributors, counted exactly
                        // by its histograms: an institution that left after the classes round
                        // is in neither the sums nor the count.
                        let positives: f64 = pos.iter().sum();
                        let customers = positives + neg.iter().sum::<f64>();
                        let n = customers.max(1.0);
                        (loss[0] / n, correct[0] / n, Some((customers, positives)))
                    }
                    _ => {
                        pos.iter_mut()
                            .chain(neg.iter_mut())
                            .for_each(|v| *v = count(*v));
                        let (loss, correct) =
                            logistic::loss_and_accuracy_from_histograms(&pos, &neg);
                        (loss, correct, None)
                    }
                };
                self.result = Some(self.finish(&pos, &neg, (loss, correct), holdout));
                Ok(None)
            }
        }
    }

    /// A Newton step on noisy sums. The Hessian's noise E (entries of standard deviation σ)
    /// has spectral norm about 2σ√d, so a ridge τ = 2σ√d is added first: H + E + τI is then at
    /// least H with high probability, which keeps the step from running along directions the
    /// noise made flat (collinear levels, for one). If it is still not positive definite the
    /// ridge doubles until it is.
    fn noisy_newton_step(
        &mut self,
        sums: &mut NewtonSums,
        beta: &[f64],
        hessian_sigma: f64,
    ) -> Result<Vec<f64>, PropensityJobError> {
        let d = beta.len();
        let diagonal: Vec<usize> = (0..d).map(|i| logistic::packed_index(d, i, i)).collect();
        let mut ridge = 2.0 * hessian_sigma * (d as f64).sqrt();
        let mut added = 0.0;
        for _ in 0..60 {
            for &i in &diagonal {
                sums.hessian[i] += ridge - added;
            }
            added = ridge;
            match logistic::newton_step(sums, beta, self.spec.l2) {
                Ok(step) => {
                    self.ridge = self.ridge.max(ridge);
                    return Ok(step);
                }
                Err(logistic::NewtonError::NotPositiveDefinite(_)) => {
                    ridge = (2.0 * ridge).max(1e-9);
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(logistic::NewtonError::NotPositiveDefinite(0).into())
    }

    /// The model at the current coefficients.
    pub fn model(&self) -> PropensityModel {
        let (numeric, categorical) = PropensityModel::encodings(
            &self.features,
            &self.mean,
            &self.std,
            &self.spec.categorical,
            self.spec.other_level,
        );
        PropensityModel {
            format: MODEL_FORMAT.to_owned(),
            job: self.job.clone(),
            label: self.spec.label.clone(),
            positive: self.spec.positive.clone(),
            negative: self.spec.negative.clone(),
            id_column: self.id_column.clone(),
            numeric,
            categorical,
            coefficients: self
                .spec
                .design_names(&self.features)
                .into_iter()
                .zip(&self.beta)
                .map(|(name, &value)| Coefficient { name, value })
                .collect(),
        }
    }

    /// The result, with the evaluation round's own hold-out count and positives when it has
    /// exact ones (`holdout`); otherwise the classes round's.
    fn finish(
        &self,
        pos: &[f64],
        neg: &[f64],
        (log_loss, accuracy): (f64, f64),
        holdout: Option<(f64, f64)>,
    ) -> PropensityResult {
        let model = self.model();
        let (holdout_customers, holdout_positives) =
            holdout.unwrap_or((self.classes[2], self.classes[3]));
        PropensityResult {
            optimizer: self.spec.optimizer,
            rounds: self.rounds,
            converged: self.converged,
            objective_per_round: self.objective.clone(),
            coefficients: model
                .coefficients
                .iter()
                .map(|c| CoefficientRow {
                    name: c.name.clone(),
                    coefficient: c.value,
                    odds_ratio: c.value.exp(),
                })
                .collect(),
            auc: logistic::auc_from_histograms(pos, neg),
            auc_resolution: logistic::auc_resolution(pos, neg),
            log_loss,
            accuracy,
            deciles: logistic::deciles(pos, neg),
            training_customers: self.classes[0],
            training_positives: self.classes[1],
            holdout_customers,
            holdout_positives,
            class_weights: self.weights,
            imputed: self
                .features
                .iter()
                .zip(&self.missing)
                .map(|(f, &m)| (f.name.clone(), m))
                .collect(),
            constant_features: self
                .features
                .iter()
                .zip(&self.std)
                .filter(|(_, &s)| s == 0.0)
                .map(|(f, _)| f.name.clone())
                .collect(),
            privacy: self.accountant.as_ref().map(Accountant::report),
            notes: self.notes(),
            model,
        }
    }

    fn notes(&self) -> Vec<String> {
        let Some(a) = &self.accountant else {
            return Vec::new();
        };
        let mut notes = vec![
            "differential privacy: every aggregate carries Gaussian noise; counts, moments, coefficients and evaluation are noisy".to_owned(),
            "the training loss is not released; log-loss and accuracy are read off the noisy score histograms (bin centres)".to_owned(),
            "auc_resolution covers ties within a bin only, not the noise".to_owned(),
        ];
        if self.ridge > 0.0 {
            notes.push(format!(
                "a ridge of up to {:.3} (twice the Hessian noise's spectral scale, more if needed) was added to each noisy Hessian",
                self.ridge
            ));
        }
        if a.report().stopped_by_budget {
            notes.push(format!(
                "the privacy budget stopped training after {} Newton rounds",
                self.rounds
            ));
        }
        notes
    }

    /// The privacy spend so far (jobs with differential privacy).
    pub fn privacy(&self) -> Option<PrivacyReport> {
        self.accountant.as_ref().map(Accountant::report)
    }

    /// The result, once done.
    pub fn result(&self) -> Option<&PropensityResult> {
        self.result.as_ref()
    }
}

impl CoordinatorStep for PropensityJob {
    fn first_round(&self) -> Result<JobRound, String> {
        PropensityJob::first_round(self)
            .to_round()
            .map_err(|e| e.to_string())
    }

    fn apply(
        &mut self,
        round: &JobRound,
        decoded: &[DecodedQuantity],
        _contributors: usize,
    ) -> Result<Option<JobRound>, String> {
        let round = PropensityRound::parse(round)?;
        let next = PropensityJob::apply(self, &round, decoded).map_err(|e| {
            let source = std::error::Error::source(&e).map(|s| format!(": {s}"));
            format!("{e}{}", source.unwrap_or_default())
        })?;
        next.map(|r| r.to_round().map_err(|e| e.to_string()))
            .transpose()
    }

    fn result(&self) -> Option<serde_json::Value> {
        // A plain record of numbers and strings: it always renders as JSON.
        PropensityJob::result(self).and_then(|r| serde_json::to_value(r).ok())
    }

    /// The trained model, so that each participant scores its own hold-out with it.
    fn release(&self) -> Option<Vec<u8>> {
        PropensityJob::result(self).and_then(|r| encode_body(&r.model).ok())
    }

    fn privacy(&self) -> Option<PrivacyReport> {
        PropensityJob::privacy(self)
    }

    fn boxed_clone(&self) -> Box<dyn CoordinatorStep> {
        Box::new(self.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::job::{JobSpec, ValidJob};

    #[derive(Deserialize)]
    struct JobFile {
        job: JobSpec,
    }

    fn telco() -> ValidJob {
        toml::from_str::<JobFile>(include_str!("../../../../configs/propensity-telco.toml"))
            .expect("job file")
            .job
            .validate()
            .expect("valid")
    }

    fn quantity(name: &str, values: Vec<f64>) -> DecodedQuantity {
        DecodedQuantity {
            name: name.to_owned(),
            exact: values.iter().map(|v| *v as i128).collect(),
            values,
        }
    }

    /// Four institutions held out 400 customers in the classes round; one left before the
    /// evaluation, whose three contributors hold 300 of them, 240 classified correctly. The
    /// accuracy is 240 / 300 and the result counts 300 hold-out customers, not 400 (the
    /// evaluation's sums and its count come from the same contributors).
    #[test]
    fn the_evaluation_counts_only_its_own_contributors_hold_out_customers() {
        let job = telco();
        let spec = job.spec();
        let mut step = PropensityJob::new(
            spec.job.as_str(),
            spec.id_column.clone(),
            spec.features.clone(),
            job.propensity().expect("propensity").clone(),
        );
        step.classes = [4000.0, 1000.0, 400.0, 100.0];
        let bins = step.spec.score_bins;
        let mut pos = vec![0.0; bins];
        let mut neg = vec![0.0; bins];
        pos[bins - 1] = 60.0;
        pos[0] = 15.0;
        neg[0] = 180.0;
        neg[bins - 1] = 45.0;
        let d = step.beta.len();
        let round = PropensityRound::Evaluate {
            mean: vec![0.0; step.features.len()],
            std: vec![1.0; step.features.len()],
            beta: vec![0.0; d],
        };
        let decoded = vec![
            quantity("eval.positives", pos),
            quantity("eval.negatives", neg),
            quantity("eval.loss", vec![150.0]),
            quantity("eval.correct", vec![240.0]),
        ];
        assert!(step.apply(&round, &decoded).expect("applies").is_none());
        let result = step.result().expect("a result");
        assert_eq!(result.holdout_customers, 300.0);
        assert_eq!(result.holdout_positives, 75.0);
        assert!((result.accuracy - 0.8).abs() < 1e-12, "{}", result.accuracy);
        assert!((result.log_loss - 0.5).abs() < 1e-12, "{}", result.log_loss);
    }
}
