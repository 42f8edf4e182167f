//! A participant's side of a propensity job: the moments and class counts, the Newton sums
//! (or the FedAvg local model) over its training customers and the score histograms over its
//! hold-out customers, each computed locally and sent only inside an encrypted aggregate; and,
//! from the released model, its own figures — the AUC of a model trained on its data alone next
//! to the federated model's AUC on its hold-out — which it keeps.

use super::model::{design_row, CategoricalEncoding, NumericEncoding, PropensityModel};
use super::privacy;
use super::{CustomerRecords, PropensityRound, PropensitySpec, FEDAVG_COEFFICIENT_BOUND};
use crate::job::stats::moments;
use crate::job::{
    decode_record, FeatureSpec, JobRound, LocalInput, LocalRelease, LocalValues, ParticipantStep,
    ValidJob,
};
use crate::logistic::{self, NewtonSums};
use serde::{Deserialize, Serialize};

/// A participant's step in one propensity job.
pub struct PropensityParticipant {
    job: ValidJob,
}

impl PropensityParticipant {
    /// A fresh step for `job`.
    pub fn new(job: ValidJob) -> Self {
        Self { job }
    }

    fn section(&self) -> Result<&PropensitySpec, String> {
        self.job
            .propensity()
            .ok_or_else(|| "a propensity job needs a [job.propensity] table".to_owned())
    }
}

fn records<'a>(data: &LocalInput<'a>) -> Result<&'a CustomerRecords, String> {
    data.customers.ok_or_else(|| {
        "a propensity round needs labeled customers, and this participant holds none".to_owned()
    })
}

impl ParticipantStep for PropensityParticipant {
    fn local_round(
        &mut self,
        data: LocalInput<'_>,
        round: &JobRound,
    ) -> Result<LocalValues, String> {
        let round = PropensityRound::parse(round)?;
        let records = records(&data)?;
        let spec = self.job.spec();
        let max_rows = spec.max_rows;
        if records.rows() as u64 > max_rows {
            return Err(format!(
                "the local table has {} rows, the job allows at most {max_rows}",
                records.rows()
            ));
        }
        if round == PropensityRound::Moments {
            // Standardization is fitted on the training customers only.
            let training = records.numeric_table(&spec.features);
            return moments(training.view(), &spec.features).map_err(|e| e.to_string());
        }
        let values =
            compute(records, &spec.features, self.section()?, &round).map_err(|e| e.to_string())?;
        Ok(LocalValues {
            values,
            clipped: 0,
            report: None,
        })
    }

    fn released(&mut self, data: LocalInput<'_>, release: &[u8]) -> Result<LocalRelease, String> {
        let model: PropensityModel =
            decode_record(release).map_err(|e| format!("the released model: {e}"))?;
        let spec = self.job.spec();
        let propensity = self.section()?;
        let expected = propensity.design_names(&spec.features);
        let names: Vec<String> = model.coefficients.iter().map(|c| c.name.clone()).collect();
        model
            .validate()
            .map_err(|e| format!("the released model: {e}"))?;
        if model.job != spec.job.as_str() || names != expected {
            return Err(format!(
                "the released model is for job {} with coefficients {:?}",
                model.job,
                names.iter().take(5).collect::<Vec<_>>()
            ));
        }
        let figures = data
            .customers
            .map(|records| local_figures(records, &spec.features, propensity, &model));
        Ok(LocalRelease::Model {
            model: Box::new(model),
            figures,
        })
    }
}

/// Why a round cannot be computed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PropensityError {
    /// The round's statistics do not fit the job.
    #[error("round '{0}' does not match the job's {1} features / coefficients")]
    Shape(&'static str, usize),
    /// Not a round computed from the labeled customers.
    #[error("round '{0}' is not computed from the labeled customers")]
    NotPropensity(&'static str),
}

fn encodings(
    features: &[FeatureSpec],
    spec: &PropensitySpec,
    mean: &[f64],
    std: &[f64],
) -> (Vec<NumericEncoding>, Vec<CategoricalEncoding>) {
    PropensityModel::encodings(features, mean, std, &spec.categorical, spec.other_level)
}

/// The values of a propensity round (in the order of the job's quantities).
pub fn compute(
    records: &CustomerRecords,
    features: &[FeatureSpec],
    spec: &PropensitySpec,
    round: &PropensityRound,
) -> Result<Vec<Vec<f64>>, PropensityError> {
    let d = spec.design_names(features).len();
    match round {
        PropensityRound::Classes => {
            let mut counts = vec![0.0; 4];
            for (&y, &h) in records.label.iter().zip(&records.holdout) {
                let at = if h { 2 } else { 0 };
                counts[at] += 1.0;
                if y {
                    counts[at + 1] += 1.0;
                }
            }
            Ok(vec![counts])
        }
        PropensityRound::Newton {
            mean,
            std,
            beta,
            weights,
        } => {
            if beta.len() != d || mean.len() != features.len() || std.len() != features.len() {
                return Err(PropensityError::Shape("newton", d));
            }
            let (numeric, categorical) = encodings(features, spec, mean, std);
            let clip = spec.privacy.as_ref().map(|p| p.clip_norm);
            let mut sums = NewtonSums::new(d);
            for r in (0..records.rows()).filter(|&r| !records.holdout[r]) {
                let mut x = design_row(
                    &numeric,
                    &categorical,
                    &records.numeric[r],
                    &records.levels[r],
                );
                if let Some(c) = clip {
                    privacy::clip_row(&mut x, c);
                }
                let y = records.label[r];
                sums.add(&x, y, if y { weights[0] } else { weights[1] }, beta);
            }
            if clip.is_some() {
                // Under differential privacy the loss is not released.
                return Ok(vec![sums.gradient, sums.hessian]);
            }
            Ok(vec![sums.gradient, sums.hessian, vec![sums.loss]])
        }
        PropensityRound::FedAvg {
            mean,
            std,
            beta,
            weights,
            training_customers,
        } => {
            if beta.len() != d || mean.len() != features.len() || std.len() != features.len() {
                return Err(PropensityError::Shape("fedavg", d));
            }
            let (numeric, categorical) = encodings(features, spec, mean, std);
            let rows = training_rows(records, &numeric, &categorical, *weights);
            let loss: f64 = rows
                .iter()
                .map(|(x, y, w)| w * logistic::row_loss(dot(x, beta), *y))
                .sum();
            let local = local_descent(&rows, beta, spec, *training_customers);
            let n = rows.len() as f64;
            Ok(vec![
                local.iter().map(|b| b * n).collect(),
                vec![n],
                vec![loss],
            ])
        }
        PropensityRound::Evaluate { mean, std, beta } => {
            if beta.len() != d || mean.len() != features.len() || std.len() != features.len() {
                return Err(PropensityError::Shape("evaluate", d));
            }
            let (numeric, categorical) = encodings(features, spec, mean, std);
            let bins = spec.score_bins;
            let (mut pos, mut neg) = (vec![0.0; bins], vec![0.0; bins]);
            let (mut loss, mut correct) = (0.0, 0.0);
            for r in (0..records.rows()).filter(|&r| records.holdout[r]) {
                let x = design_row(
                    &numeric,
                    &categorical,
                    &records.numeric[r],
                    &records.levels[r],
                );
                let t: f64 = x.iter().zip(beta).map(|(a, b)| a * b).sum();
                let p = logistic::sigmoid(t);
                let y = records.label[r];
                let bin = logistic::score_bin(p, bins);
                if y {
                    pos[bin] += 1.0;
                } else {
                    neg[bin] += 1.0;
                }
                loss += logistic::row_loss(t, y);
                if (p >= 0.5) == y {
                    correct += 1.0;
                }
            }
            if spec.privacy.is_some() {
                // Under differential privacy only the histograms are released.
                return Ok(vec![pos, neg]);
            }
            Ok(vec![pos, neg, vec![loss], vec![correct]])
        }
        other => Err(PropensityError::NotPropensity(other.label())),
    }
}

/// The training customers' (design row, label, weight), `weights` of positives and negatives.
fn training_rows(
    records: &CustomerRecords,
    numeric: &[NumericEncoding],
    categorical: &[CategoricalEncoding],
    weights: [f64; 2],
) -> Vec<(Vec<f64>, bool, f64)> {
    (0..records.rows())
        .filter(|&r| !records.holdout[r])
        .map(|r| {
            let y = records.label[r];
            (
                design_row(
                    numeric,
                    categorical,
                    &records.numeric[r],
                    &records.levels[r],
                ),
                y,
                if y { weights[0] } else { weights[1] },
            )
        })
        .collect()
}

fn dot(x: &[f64], beta: &[f64]) -> f64 {
    x.iter().zip(beta).map(|(a, b)| a * b).sum()
}

/// FedAvg's local training: `local_epochs` passes of mini-batch gradient descent from `beta`
/// over `rows`, on the mean weighted log-loss plus this participant's share of the penalty,
/// (λ/2N)‖β′‖² with N the consortium's training customers (so that the shares, weighted by
/// customers, add up to the consortium objective). The order of the customers is shuffled per
/// epoch by a generator seeded from the starting coefficients, so a repeated request gets the
/// same answer. Coefficients are kept within ±[`FEDAVG_COEFFICIENT_BOUND`].
fn local_descent(
    rows: &[(Vec<f64>, bool, f64)],
    beta: &[f64],
    spec: &PropensitySpec,
    training_customers: f64,
) -> Vec<f64> {
    let mut b = beta.to_vec();
    if rows.is_empty() {
        return b;
    }
    let penalty = spec.l2 / training_customers.max(1.0);
    let mut order: Vec<usize> = (0..rows.len()).collect();
    let mut state = beta
        .iter()
        .fold(0x9e37_79b9_7f4a_7c15u64 ^ rows.len() as u64, |h, v| {
            (h ^ v.to_bits()).wrapping_mul(0x1000_0000_01b3)
        })
        | 1;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut gradient = vec![0.0; b.len()];
    for _ in 0..spec.local_epochs {
        for i in (1..order.len()).rev() {
            order.swap(i, (next() % (i as u64 + 1)) as usize);
        }
        for batch in order.chunks(spec.batch_size.max(1)) {
            gradient.iter_mut().for_each(|g| *g = 0.0);
            for &r in batch {
                let (x, y, w) = &rows[r];
                let residual = w * (logistic::sigmoid(dot(x, &b)) - f64::from(u8::from(*y)));
                gradient
                    .iter_mut()
                    .zip(x)
                    .for_each(|(g, xi)| *g += residual * xi);
            }
            let m = batch.len() as f64;
            for (j, (bj, g)) in b.iter_mut().zip(&gradient).enumerate() {
                let penalty = if j == 0 { 0.0 } else { penalty * *bj };
                *bj -= spec.learning_rate * (g / m + penalty);
            }
        }
    }
    b.iter_mut()
        .for_each(|v| *v = v.clamp(-FEDAVG_COEFFICIENT_BOUND, FEDAVG_COEFFICIENT_BOUND));
    b
}

/// What a participant learns about the value of federation, on its own hold-out customers.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LocalFigures {
    /// Hold-out customers.
    pub holdout_customers: usize,
    /// AUC of the federated model on them.
    pub federated_auc: Option<f64>,
    /// AUC of a model trained on this participant's training customers alone (same penalty,
    /// its own standardization).
    pub local_only_auc: Option<f64>,
    /// Why a figure is missing, if one is.
    pub note: Option<String>,
}

/// Scores this participant's hold-out customers with the federated `model` and with a model
/// trained on its own data alone.
pub fn local_figures(
    records: &CustomerRecords,
    features: &[FeatureSpec],
    spec: &PropensitySpec,
    model: &PropensityModel,
) -> LocalFigures {
    let holdout: Vec<usize> = (0..records.rows())
        .filter(|&r| records.holdout[r])
        .collect();
    let federated: Vec<(f64, bool)> = holdout
        .iter()
        .map(|&r| {
            (
                model.score(&records.numeric[r], &records.levels[r]),
                records.label[r],
            )
        })
        .collect();
    let federated_auc = logistic::exact_auc(&federated);
    // Its own standardization from its training rows.
    let table = records.numeric_table(features);
    let (mean, std): (Vec<f64>, Vec<f64>) = features
        .iter()
        .map(|f| {
            let values: Vec<f64> = table.columns[&f.name]
                .iter()
                .flatten()
                .map(|v| v.clamp(f.lower(), f.bound))
                .collect();
            let n = values.len() as f64;
            if n == 0.0 {
                return (0.0, 0.0);
            }
            let m = values.iter().sum::<f64>() / n;
            let var = values.iter().map(|v| (v - m) * (v - m)).sum::<f64>() / n;
            (m, var.sqrt())
        })
        .unzip();
    let (numeric, categorical) = encodings(features, spec, &mean, &std);
    let train = training_rows(records, &numeric, &categorical, [1.0, 1.0]);
    let d = spec.design_names(features).len();
    let classes = (
        train.iter().filter(|r| r.1).count(),
        train.iter().filter(|r| !r.1).count(),
    );
    let (local_only_auc, note) = if classes.0 == 0 || classes.1 == 0 {
        (
            None,
            Some("its training customers are all of one class: no model of its own".to_owned()),
        )
    } else {
        match logistic::fit_newton(&train, d, spec.l2, spec.max_rounds, spec.tolerance) {
            Ok((beta, _)) => {
                let scored: Vec<(f64, bool)> = holdout
                    .iter()
                    .map(|&r| {
                        let x = design_row(
                            &numeric,
                            &categorical,
                            &records.numeric[r],
                            &records.levels[r],
                        );
                        (
                            logistic::sigmoid(x.iter().zip(&beta).map(|(a, b)| a * b).sum()),
                            records.label[r],
                        )
                    })
                    .collect();
                (logistic::exact_auc(&scored), None)
            }
            Err(e) => (
                None,
                Some(format!("its own model could not be fitted: {e}")),
            ),
        }
    };
    let note = note.or_else(|| {
        federated_auc
            .is_none()
            .then(|| "its hold-out customers are all of one class: no AUC".to_owned())
    });
    LocalFigures {
        holdout_customers: holdout.len(),
        federated_auc,
        local_only_auc,
        note,
    }
}
