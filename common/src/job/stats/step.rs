//! The stats job on the coordinator: two rounds (moments, then fixed-edge histograms whose edges
//! come from the consortium mean and standard deviation), and the result built only from the
//! decrypted aggregates. The helpers (`mean_std`, `histogram_edges`, `quantile`) serve the
//! segment and propensity jobs too.

use super::{histogram_round, moments_round, Edges, HISTOGRAM_TAG, KIND, MOMENTS_TAG};
use crate::encoding::DecodedQuantity;
use crate::job::{CoordinatorStep, FeatureSpec, JobRound};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Histogram edges span mean ± this many standard deviations (clipped to the declared bound).
pub const EDGE_SIGMAS: f64 = 4.0;
/// Quantiles reported.
pub const QUANTILES: [(&str, f64); 5] = [
    ("p05", 0.05),
    ("p25", 0.25),
    ("p50", 0.50),
    ("p75", 0.75),
    ("p95", 0.95),
];

/// Consortium statistics of one feature.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct FeatureStats {
    /// Feature name.
    pub name: String,
    /// Rows with a value.
    pub count: f64,
    /// Rows without a value.
    pub missing: f64,
    /// missing / (count + missing).
    pub missing_rate: f64,
    /// Mean of the values.
    pub mean: f64,
    /// Population standard deviation.
    pub std: f64,
    /// Approximate quantiles from the histogram.
    pub quantiles: BTreeMap<String, f64>,
    /// Histogram inner edges (bins + 1 values).
    pub edges: Vec<f64>,
    /// Counts: below the first edge, each bin, at or above the last edge.
    pub histogram: Vec<f64>,
}

/// Why decrypted aggregates could not be turned into statistics.
#[derive(Debug, thiserror::Error)]
pub enum StatsError {
    /// A quantity the round should hold is missing.
    #[error("the decrypted aggregate has no quantity '{0}'")]
    MissingQuantity(String),
    /// A round this job does not run.
    #[error("round {0} is not part of a stats job")]
    UnexpectedRound(crate::job::RoundTag),
    /// The round's parameters cannot be read or written.
    #[error(transparent)]
    Parameters(#[from] crate::job::RoundParameterError),
}

/// What a stats job releases.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StatsResult {
    /// By feature name.
    pub features: BTreeMap<String, FeatureStats>,
}

impl StatsResult {
    /// The features' statistics in the order of `features` (the job file's order); a feature
    /// the result lacks is left out.
    pub fn in_feature_order(&self, features: &[FeatureSpec]) -> Vec<FeatureStats> {
        features
            .iter()
            .filter_map(|f| self.features.get(&f.name).cloned())
            .collect()
    }
}

/// The coordinator's side of the stats job.
#[derive(Debug, Clone)]
pub struct StatsJob {
    features: Vec<FeatureSpec>,
    bins: usize,
    moments: Vec<(f64, f64, f64, f64)>,
    result: Option<StatsResult>,
}

fn find<'a>(decoded: &'a [DecodedQuantity], name: &str) -> Result<&'a [f64], StatsError> {
    DecodedQuantity::find(decoded, name).ok_or_else(|| StatsError::MissingQuantity(name.to_owned()))
}

impl StatsJob {
    /// A stats job over `features` with `bins` histogram bins.
    pub fn new(features: Vec<FeatureSpec>, bins: usize) -> Self {
        Self {
            features,
            bins,
            moments: Vec::new(),
            result: None,
        }
    }

    /// Takes a round's decrypted aggregate; returns the next round, or `None` when done.
    pub fn apply(
        &mut self,
        round: &JobRound,
        decoded: &[DecodedQuantity],
    ) -> Result<Option<JobRound>, StatsError> {
        match round.tag {
            MOMENTS_TAG => {
                self.moments = self
                    .features
                    .iter()
                    .map(|f| {
                        Ok((
                            find(decoded, &format!("{}.count", f.name))?[0],
                            find(decoded, &format!("{}.missing", f.name))?[0],
                            find(decoded, &format!("{}.sum", f.name))?[0],
                            find(decoded, &format!("{}.sumsq", f.name))?[0],
                        ))
                    })
                    .collect::<Result<_, StatsError>>()?;
                let edges = self
                    .features
                    .iter()
                    .zip(&self.moments)
                    .map(|(f, &(n, _, sum, sumsq))| {
                        let (mean, std) = mean_std(n, sum, sumsq);
                        histogram_edges(f, mean, std, self.bins)
                    })
                    .collect();
                Ok(histogram_round(edges)?.registered().cloned())
            }
            HISTOGRAM_TAG => {
                let Edges { edges } = round.parameters()?;
                let mut out = Vec::with_capacity(self.features.len());
                for ((f, &(n, missing, sum, sumsq)), edges) in
                    self.features.iter().zip(&self.moments).zip(&edges)
                {
                    let histogram = find(decoded, &format!("{}.hist", f.name))?.to_vec();
                    let (mean, std) = mean_std(n, sum, sumsq);
                    let total = n + missing;
                    out.push(FeatureStats {
                        name: f.name.clone(),
                        count: n,
                        missing,
                        missing_rate: if total > 0.0 { missing / total } else { 0.0 },
                        mean,
                        std,
                        quantiles: QUANTILES
                            .iter()
                            .map(|(label, q)| {
                                ((*label).to_owned(), quantile(edges, &histogram, *q))
                            })
                            .collect(),
                        edges: edges.clone(),
                        histogram,
                    });
                }
                self.result = Some(StatsResult {
                    features: out.into_iter().map(|f| (f.name.clone(), f)).collect(),
                });
                Ok(None)
            }
            other => Err(StatsError::UnexpectedRound(other)),
        }
    }

    /// The result, once the last round is applied.
    pub fn result(&self) -> Option<&StatsResult> {
        self.result.as_ref()
    }
}

impl CoordinatorStep for StatsJob {
    fn first_round(&self) -> Result<JobRound, String> {
        moments_round()
            .registered()
            .cloned()
            .ok_or_else(|| format!("the {KIND} job has no moments round"))
    }

    fn apply(
        &mut self,
        round: &JobRound,
        decoded: &[DecodedQuantity],
        _contributors: usize,
    ) -> Result<Option<JobRound>, String> {
        StatsJob::apply(self, round, decoded).map_err(|e| e.to_string())
    }

    fn result(&self) -> Option<serde_json::Value> {
        self.result
            .as_ref()
            .and_then(|r| serde_json::to_value(r).ok())
    }

    fn boxed_clone(&self) -> Box<dyn CoordinatorStep> {
        Box::new(self.clone())
    }
}

/// Histogram edges for a feature: `bins` equal bins over mean ± [`EDGE_SIGMAS`] standard
/// deviations, clipped to the feature's declared range.
pub fn histogram_edges(f: &FeatureSpec, mean: f64, std: f64, bins: usize) -> Vec<f64> {
    let spread = if std > 0.0 { EDGE_SIGMAS * std } else { 1.0 };
    let lo = (mean - spread).max(f.lower());
    let hi = (mean + spread).min(f.bound).max(lo + 1e-9);
    (0..=bins)
        .map(|i| lo + (hi - lo) * i as f64 / bins as f64)
        .collect()
}

/// Mean and population standard deviation from count, sum and sum of squares.
pub fn mean_std(n: f64, sum: f64, sumsq: f64) -> (f64, f64) {
    if n <= 0.0 {
        return (0.0, 0.0);
    }
    let mean = sum / n;
    let var = (sumsq / n - mean * mean).max(0.0);
    (mean, var.sqrt())
}

/// The q-quantile by linear interpolation inside the histogram bin that holds it; the outer bins
/// (below the first and at or above the last edge) are placed at those edges.
pub fn quantile(edges: &[f64], histogram: &[f64], q: f64) -> f64 {
    let total: f64 = histogram.iter().sum();
    if total <= 0.0 || edges.len() < 2 || histogram.len() != edges.len() + 1 {
        return f64::NAN;
    }
    let target = q * total;
    let mut seen = 0.0;
    for (i, &count) in histogram.iter().enumerate() {
        if seen + count >= target && count > 0.0 {
            return match i {
                0 => edges[0],
                i if i == histogram.len() - 1 => edges[edges.len() - 1],
                i => {
                    let (lo, hi) = (edges[i - 1], edges[i]);
                    lo + (hi - lo) * ((target - seen) / count)
                }
            };
        }
        seen += count;
    }
    edges[edges.len() - 1]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_interpolate_within_bins() {
        let edges = [0.0, 10.0, 20.0];
        // 0 below, 50 in [0,10), 50 in [10,20), 0 above.
        let h = [0.0, 50.0, 50.0, 0.0];
        assert!((quantile(&edges, &h, 0.5) - 10.0).abs() < 1e-9);
        assert!((quantile(&edges, &h, 0.25) - 5.0).abs() < 1e-9);
        assert!((quantile(&edges, &h, 0.75) - 15.0).abs() < 1e-9);
    }

    #[test]
    fn mean_and_std_from_moments() {
        let (m, s) = mean_std(4.0, 10.0, 30.0); // 1,2,3,4
        assert!((m - 2.5).abs() < 1e-12 && (s - 1.25f64.sqrt()).abs() < 1e-12);
    }
}
