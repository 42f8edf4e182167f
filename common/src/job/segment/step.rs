//! The segment job on the coordinator: a reference date, standardization from a moments round,
//! consortium quintiles, then federated Lloyd k-means. Each Lloyd round the participants send,
//! inside one encrypted aggregate, per segment the count of their customers nearest each
//! centroid and the sums and sums of squares of those customers' standardized features, plus
//! the total inertia and the sum of simplified silhouettes; the coordinator moves each centroid
//! to its segment's mean. With the same initial centroids this is exactly centralized Lloyd on the
//! pooled rows.
//!
//! **Reference date.** Unless the job gives one, two presence rounds find the consortium's latest
//! purchase: per month since 1970 and then per day of the latest month, each participant sets
//! the slots on or before its own latest purchase. A presence aggregate reveals only whether
//! anyone set a slot ([`fedbank_common::encoding::Combine::Presence`]), so the coordinator
//! learns the consortium's latest purchase day — which the reference date itself reveals — and
//! nothing about any other participant's dates, or how many participants bought when.
//!
//! **Initialization.** Explicit centroids from the job, or by splitting: start from one segment,
//! run Lloyd to convergence, split the segment with the largest within-segment sum of squares
//! into two centroids one standard deviation either side of its mean along its widest feature,
//! and repeat up to k. It needs no customer's row: it uses only the per-segment counts, sums and
//! sums of squares that every Lloyd round aggregates. What it reveals is what every Lloyd round
//! reveals: per-segment sizes and first and second moments, over at least `min_participants`
//! contributors. Intermediate segments are not held to `k_anonymity` (only released ones are),
//! so a segment of very few customers can show the coordinator those customers' standardized
//! moments; the same holds for explicit centroids.
//!
//! **Choice of k.** With `choose_k`, every k from 1 to `max_k` is run to convergence while
//! splitting, and k is chosen by the highest mean simplified silhouette or by the elbow of the
//! inertia curve; every candidate's figures go into the result.
//!
//! Segments smaller than `k_anonymity` customers are never released: at convergence the smallest
//! such segment's centroid is dropped, its customers fall to the nearest remaining segments, Lloyd
//! continues, and the result says so.

use super::labels::{profile_label, rfm_label, unique_labels};
use super::{
    is_rfm, Binned, KCriterion, Lloyd, Scoring, SegmentRelease, SegmentRound, SegmentSpec,
    LATEST_DAY, LATEST_MONTH, LIFECYCLE_STAGES,
};
use crate::calendar;
use crate::canonical::encode_body;
use crate::encoding::DecodedQuantity;
use crate::job::stats::{histogram_edges, mean_std, quantile};
use crate::job::{CoordinatorStep, FeatureSpec, JobRound};
use serde::{Deserialize, Serialize};

/// One released segment.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Segment {
    /// Human label from its RFM profile (or "segment N").
    pub label: String,
    /// Customers in it, consortium-wide.
    pub size: f64,
    /// Centroid in standardized units.
    pub centroid_standardized: Vec<f64>,
    /// Centroid in original units (for RFM: days, purchase days, money).
    pub centroid_original: Vec<f64>,
    /// Mean RFM 1–5 scores of the segment's customers against the consortium quintiles
    /// (transaction-log jobs).
    pub rfm_scores: Option<Vec<f64>>,
}

/// One number of segments tried by `choose_k`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct KCandidate {
    /// Segments.
    pub k: usize,
    /// Inertia at the end of its Lloyd run (standardized units).
    pub inertia: f64,
    /// Mean simplified silhouette at the end of its Lloyd run (0 for k = 1).
    pub silhouette: f64,
    /// Lloyd iterations this k ran (each k has its own `max_iterations`).
    pub iterations: u32,
    /// Whether its centroids moved less than `tolerance` before `max_iterations`.
    pub converged: bool,
}

/// How k was chosen.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct KSelection {
    /// The criterion.
    pub criterion: KCriterion,
    /// Every k tried, in order.
    pub candidates: Vec<KCandidate>,
    /// The k chosen (before any k-anonymity merge).
    pub chosen: usize,
}

/// The segmentation result.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct SegmentResult {
    /// Segments released.
    pub k: usize,
    /// Lloyd iterations run.
    pub iterations: u32,
    /// Sum of squared distances to the assigned centroid, standardized units (last round).
    pub inertia: f64,
    /// Inertia of every round.
    pub inertia_per_round: Vec<f64>,
    /// The segments.
    pub segments: Vec<Segment>,
    /// Feature names, in centroid order.
    pub features: Vec<String>,
    /// Standardization: mean and standard deviation per feature (of the possibly log-scaled values).
    pub mean: Vec<f64>,
    /// Standard deviation per feature.
    pub std: Vec<f64>,
    /// Segments merged away for k-anonymity, with their sizes.
    pub merged_for_k_anonymity: Vec<String>,
    /// Customers per lifecycle stage, consortium-wide (transaction-log jobs); a stage with 1 to
    /// k_anonymity − 1 customers is withheld (null).
    pub lifecycle: Option<std::collections::BTreeMap<String, Option<f64>>>,
    /// The date recency was counted to (transaction-log jobs), and whether the job gave it or
    /// the consortium found it.
    pub reference_date: Option<String>,
    /// How the centroids were initialized.
    pub initialization: String,
    /// How k was chosen, if the job asked.
    pub k_selection: Option<KSelection>,
}

/// Why an aggregate could not be used.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SegmentError {
    /// A quantity the round should hold is missing.
    #[error("the decrypted aggregate has no quantity '{0}'")]
    MissingQuantity(String),
    /// A presence aggregate is not a run of set slots followed by unset ones.
    #[error("the '{0}' aggregate is not consistent: its set slots are not a prefix")]
    Inconsistent(&'static str),
    /// No participant has a purchase in the covered months.
    #[error("no participant has a purchase between 1970-01 and 2099-12")]
    NoPurchases,
    /// Every segment is below k-anonymity.
    #[error("no segment reaches k_anonymity = {0} customers; nothing can be released")]
    NothingReleasable(u64),
}

/// The coordinator's side of a segment job.
#[derive(Debug, Clone)]
pub struct SegmentJob {
    features: Vec<FeatureSpec>,
    spec: SegmentSpec,
    reference_day: Option<i64>,
    mean: Vec<f64>,
    std: Vec<f64>,
    centroids: Vec<Vec<f64>>,
    /// Splitting initialization still growing towards `target_k` (or choosing k).
    growing: bool,
    target_k: usize,
    candidates: Vec<(KCandidate, Vec<Vec<f64>>)>,
    k_selection: Option<KSelection>,
    /// Lloyd iterations of the whole job.
    iterations: u32,
    /// Lloyd iterations of the current set of centroids (reset when it changes: a split, a
    /// return to a chosen k, a merge), bounded by `max_iterations`.
    lloyd_iterations: u32,
    /// Whether the current Lloyd run stopped because it converged.
    converged: bool,
    inertia: Vec<f64>,
    merged: Vec<String>,
    bins: usize,
    quintiles: Option<Vec<Vec<f64>>>,
    result: Option<SegmentResult>,
}

/// What one Lloyd round's aggregate says.
struct LloydRound {
    count: Vec<f64>,
    /// [feature][segment]
    sums: Vec<Vec<f64>>,
    /// [feature][segment]
    sumsq: Vec<Vec<f64>>,
    inertia: f64,
    silhouette: f64,
}

fn find<'a>(decoded: &'a [DecodedQuantity], name: &str) -> Result<&'a [f64], SegmentError> {
    DecodedQuantity::find(decoded, name)
        .ok_or_else(|| SegmentError::MissingQuantity(name.to_owned()))
}

impl SegmentJob {
    /// A segment job over `features` as `spec` says.
    pub fn new(features: Vec<FeatureSpec>, spec: SegmentSpec, bins: usize) -> Self {
        let centroids = spec.initial_centroids.clone();
        let growing = centroids.is_empty();
        let target_k = spec.max_k();
        Self {
            features,
            reference_day: spec.reference_day(),
            spec,
            mean: Vec::new(),
            std: Vec::new(),
            centroids,
            growing,
            target_k,
            candidates: Vec::new(),
            k_selection: None,
            iterations: 0,
            lloyd_iterations: 0,
            converged: false,
            inertia: Vec::new(),
            merged: Vec::new(),
            bins,
            quintiles: None,
            result: None,
        }
    }

    /// Starts from a reference day already known (an in-process run on pooled data).
    pub fn with_reference_day(mut self, day: i64) -> Self {
        self.reference_day = Some(day);
        self
    }

    /// The first round: the reference-date rounds when a transaction-log job has no reference
    /// date yet, otherwise moments for standardization.
    pub fn first_round(&self) -> SegmentRound {
        if self.spec.transactions.is_some() && self.reference_day.is_none() {
            SegmentRound::LatestMonth
        } else {
            SegmentRound::Moments {
                reference_day: self.reference_day,
            }
        }
    }

    /// The day recency is counted to, once known.
    pub fn reference_day(&self) -> Option<i64> {
        self.reference_day
    }

    /// The first round of a Lloyd run over a new set of centroids.
    fn new_lloyd_run(&mut self) -> SegmentRound {
        self.lloyd_iterations = 0;
        self.kmeans_round()
    }

    fn kmeans_round(&self) -> SegmentRound {
        SegmentRound::KMeans(Lloyd {
            reference_day: self.reference_day,
            mean: self.mean.clone(),
            std: self.std.clone(),
            centroids: self.centroids.clone(),
        })
    }

    fn start_lloyd(&mut self) -> SegmentRound {
        if self.centroids.is_empty() {
            self.centroids = vec![vec![0.0; self.features.len()]];
        }
        self.new_lloyd_run()
    }

    /// Takes a round's decrypted aggregate; returns the next round, or `None` when done.
    pub fn apply(
        &mut self,
        kind: &SegmentRound,
        decoded: &[DecodedQuantity],
    ) -> Result<Option<SegmentRound>, SegmentError> {
        match kind {
            SegmentRound::LatestMonth => {
                let month = last_present(find(decoded, LATEST_MONTH)?, LATEST_MONTH)?
                    .ok_or(SegmentError::NoPurchases)?;
                Ok(Some(SegmentRound::LatestDay {
                    month: month as i64,
                }))
            }
            SegmentRound::LatestDay { month } => {
                let day = last_present(find(decoded, LATEST_DAY)?, LATEST_DAY)?
                    .ok_or(SegmentError::Inconsistent(LATEST_DAY))?;
                // The day after the consortium's latest purchase.
                let reference = calendar::first_day_of_month(*month) + day as i64 + 1;
                self.reference_day = Some(reference);
                Ok(Some(SegmentRound::Moments {
                    reference_day: Some(reference),
                }))
            }
            SegmentRound::Moments { .. } => {
                for f in &self.features {
                    let n = find(decoded, &format!("{}.count", f.name))?[0];
                    let sum = find(decoded, &format!("{}.sum", f.name))?[0];
                    let sumsq = find(decoded, &format!("{}.sumsq", f.name))?[0];
                    let (mean, std) = mean_std(n, sum, sumsq);
                    self.mean.push(mean);
                    self.std.push(std);
                }
                if self.spec.transactions.is_none() {
                    return Ok(Some(self.start_lloyd()));
                }
                // Consortium quintiles for the RFM scores come from a histogram round.
                let edges = self
                    .features
                    .iter()
                    .zip(self.mean.iter().zip(&self.std))
                    .map(|(f, (&mean, &std))| histogram_edges(f, mean, std, self.bins))
                    .collect();
                Ok(Some(SegmentRound::Histogram(Binned {
                    reference_day: self.reference_day,
                    edges,
                })))
            }
            SegmentRound::Histogram(Binned { edges, .. }) => {
                let quintiles = self
                    .features
                    .iter()
                    .zip(edges)
                    .map(|(f, edges)| {
                        let histogram = find(decoded, &format!("{}.hist", f.name))?;
                        Ok([0.2, 0.4, 0.6, 0.8]
                            .iter()
                            .map(|q| quantile(edges, histogram, *q))
                            .collect())
                    })
                    .collect::<Result<Vec<Vec<f64>>, SegmentError>>()?;
                self.quintiles = Some(quintiles);
                Ok(Some(self.start_lloyd()))
            }
            SegmentRound::KMeans(Lloyd { centroids, .. }) => {
                let round = self.lloyd_round(decoded)?;
                let updated: Vec<Vec<f64>> = centroids
                    .iter()
                    .enumerate()
                    .map(|(c, old)| {
                        if round.count[c] > 0.0 {
                            round.sums.iter().map(|s| s[c] / round.count[c]).collect()
                        } else {
                            old.clone()
                        }
                    })
                    .collect();
                let shift = updated
                    .iter()
                    .zip(centroids)
                    .flat_map(|(a, b)| a.iter().zip(b).map(|(x, y)| (x - y).abs()))
                    .fold(0.0, f64::max);
                self.iterations += 1;
                self.lloyd_iterations += 1;
                self.inertia.push(round.inertia);
                self.centroids = updated;
                self.converged = shift <= self.spec.tolerance;
                if !self.converged && self.lloyd_iterations < self.spec.max_iterations {
                    return Ok(Some(self.kmeans_round()));
                }
                self.on_converged(&round)
            }
            SegmentRound::Lifecycle { .. } => {
                let counts = find(decoded, "lifecycle.count")?;
                let k = self.spec.k_anonymity as f64;
                let stages = LIFECYCLE_STAGES
                    .iter()
                    .zip(counts)
                    // An empty stage reveals nothing; 1..k-1 customers would, so they are withheld.
                    .map(|(stage, &n)| ((*stage).to_owned(), (n == 0.0 || n >= k).then_some(n)))
                    .collect();
                if let Some(result) = &mut self.result {
                    result.lifecycle = Some(stages);
                }
                Ok(self.quintiles.clone().map(|quintiles| {
                    SegmentRound::Scores(Scoring {
                        reference_day: self.reference_day,
                        mean: self.mean.clone(),
                        std: self.std.clone(),
                        centroids: self.centroids.clone(),
                        quintiles,
                    })
                }))
            }
            SegmentRound::Scores(_) => {
                let sums: Vec<&[f64]> = self
                    .features
                    .iter()
                    .map(|f| find(decoded, &format!("scores.{}", f.name)))
                    .collect::<Result<_, _>>()?;
                if let Some(result) = &mut self.result {
                    for (c, segment) in result.segments.iter_mut().enumerate() {
                        let size = segment.size.max(1.0);
                        segment.rfm_scores = Some(sums.iter().map(|s| s[c] / size).collect());
                    }
                }
                Ok(None)
            }
        }
    }

    fn lloyd_round(&self, decoded: &[DecodedQuantity]) -> Result<LloydRound, SegmentError> {
        let per_feature = |prefix: &str| {
            self.features
                .iter()
                .map(|f| find(decoded, &format!("{prefix}.{}", f.name)).map(<[f64]>::to_vec))
                .collect::<Result<Vec<_>, _>>()
        };
        Ok(LloydRound {
            count: find(decoded, "kmeans.count")?.to_vec(),
            sums: per_feature("kmeans.sum")?,
            sumsq: per_feature("kmeans.sumsq")?,
            inertia: find(decoded, "kmeans.inertia")?[0],
            silhouette: find(decoded, "kmeans.silhouette")?[0],
        })
    }

    /// Lloyd converged at the current k: grow (split), choose k, merge for k-anonymity, or
    /// finish.
    fn on_converged(&mut self, round: &LloydRound) -> Result<Option<SegmentRound>, SegmentError> {
        if self.growing {
            let total: f64 = round.count.iter().sum();
            let candidate = KCandidate {
                k: self.centroids.len(),
                inertia: round.inertia,
                silhouette: if total > 0.0 && self.centroids.len() > 1 {
                    round.silhouette / total
                } else {
                    0.0
                },
                iterations: self.lloyd_iterations,
                converged: self.converged,
            };
            self.candidates.push((candidate, self.centroids.clone()));
            if self.centroids.len() < self.target_k {
                if let Some(split) = split_widest(&self.centroids, round) {
                    self.centroids = split;
                    return Ok(Some(self.new_lloyd_run()));
                }
            }
            self.growing = false;
            if let Some(choose) = &self.spec.choose_k {
                let figures: Vec<KCandidate> =
                    self.candidates.iter().map(|(c, _)| c.clone()).collect();
                let chosen = choose_k(choose.criterion, &figures);
                self.k_selection = Some(KSelection {
                    criterion: choose.criterion,
                    candidates: figures,
                    chosen,
                });
                if chosen != self.centroids.len() {
                    // Back to the chosen candidate's converged centroids; one more round
                    // recomputes its sizes.
                    if let Some((_, centroids)) =
                        self.candidates.iter().find(|(c, _)| c.k == chosen)
                    {
                        self.centroids = centroids.clone();
                        return Ok(Some(self.new_lloyd_run()));
                    }
                }
            }
        }
        let count = &round.count;
        // Merge the smallest segment below k-anonymity, one at a time, and run Lloyd again until
        // every remaining segment can be released.
        let smallest = (0..count.len())
            .filter(|&c| count[c] < self.spec.k_anonymity as f64)
            .min_by(|&a, &b| count[a].total_cmp(&count[b]));
        let Some(c) = smallest else {
            self.result = Some(self.finish(count));
            if self.spec.transactions.is_some() {
                return Ok(Some(SegmentRound::Lifecycle {
                    reference_day: self.reference_day,
                }));
            }
            return Ok(None);
        };
        if count.len() == 1 {
            return Err(SegmentError::NothingReleasable(self.spec.k_anonymity));
        }
        self.merged.push(format!(
            "a segment of {} customers (below k_anonymity = {}) was merged into the nearest segments after iteration {}",
            count[c], self.spec.k_anonymity, self.iterations
        ));
        self.centroids.remove(c);
        Ok(Some(self.new_lloyd_run()))
    }

    fn finish(&self, count: &[f64]) -> SegmentResult {
        let rfm = is_rfm(&self.features);
        let mut segments: Vec<Segment> = self
            .centroids
            .iter()
            .zip(count)
            .enumerate()
            .map(|(i, (z, &size))| {
                let original: Vec<f64> = z
                    .iter()
                    .zip(self.mean.iter().zip(&self.std))
                    .map(|(z, (m, s))| {
                        let x = m + z * s;
                        if rfm {
                            x.exp() - 1.0
                        } else {
                            x
                        }
                    })
                    .collect();
                Segment {
                    label: if rfm {
                        rfm_label(z, original[0])
                    } else {
                        profile_label(z, &self.features, i)
                    },
                    size,
                    centroid_standardized: z.clone(),
                    centroid_original: original,
                    rfm_scores: None,
                }
            })
            .collect();
        unique_labels(&mut segments, &self.features);
        SegmentResult {
            k: segments.len(),
            iterations: self.iterations,
            inertia: self.inertia.last().copied().unwrap_or(0.0),
            inertia_per_round: self.inertia.clone(),
            segments,
            features: self.features.iter().map(|f| f.name.clone()).collect(),
            mean: self.mean.clone(),
            std: self.std.clone(),
            merged_for_k_anonymity: self.merged.clone(),
            lifecycle: None,
            reference_date: self.reference_day.map(|day| {
                let how = if self.spec.reference_date.is_some() {
                    "given by the job"
                } else {
                    "the day after the consortium's latest purchase"
                };
                format!("{} ({how})", calendar::format_day(day))
            }),
            initialization: if self.spec.initial_centroids.is_empty() {
                "splitting from one segment, from aggregates only".to_owned()
            } else {
                "initial centroids from the job".to_owned()
            },
            k_selection: self.k_selection.clone(),
        }
    }

    /// The result, once converged.
    pub fn result(&self) -> Option<&SegmentResult> {
        self.result.as_ref()
    }

    /// What participants receive once done: the centroids, their labels and the
    /// standardization, to assign their own customers locally.
    pub fn release(&self) -> Option<SegmentRelease> {
        let r = self.result.as_ref()?;
        Some(SegmentRelease {
            reference_day: self.reference_day,
            mean: r.mean.clone(),
            std: r.std.clone(),
            centroids: r
                .segments
                .iter()
                .map(|s| s.centroid_standardized.clone())
                .collect(),
            labels: r.segments.iter().map(|s| s.label.clone()).collect(),
        })
    }
}

impl CoordinatorStep for SegmentJob {
    fn first_round(&self) -> Result<JobRound, String> {
        SegmentJob::first_round(self)
            .to_round()
            .map_err(|e| e.to_string())
    }

    fn apply(
        &mut self,
        round: &JobRound,
        decoded: &[DecodedQuantity],
        _contributors: usize,
    ) -> Result<Option<JobRound>, String> {
        let round = SegmentRound::parse(round)?;
        let next = SegmentJob::apply(self, &round, decoded).map_err(|e| e.to_string())?;
        next.map(|r| r.to_round().map_err(|e| e.to_string()))
            .transpose()
    }

    fn result(&self) -> Option<serde_json::Value> {
        // A plain record of numbers and strings: it always renders as JSON.
        SegmentJob::result(self).and_then(|r| serde_json::to_value(r).ok())
    }

    fn release(&self) -> Option<Vec<u8>> {
        SegmentJob::release(self).and_then(|r| encode_body(&r).ok())
    }

    fn boxed_clone(&self) -> Box<dyn CoordinatorStep> {
        Box::new(self.clone())
    }
}

/// The index of the last set slot of a presence aggregate, checking that the set slots are a
/// prefix (each participant sets every slot up to its own latest purchase).
fn last_present(values: &[f64], name: &'static str) -> Result<Option<usize>, SegmentError> {
    let set = values.iter().take_while(|v| **v != 0.0).count();
    if values[set..].iter().any(|v| *v != 0.0) {
        return Err(SegmentError::Inconsistent(name));
    }
    Ok(set.checked_sub(1))
}

/// Splits the segment with the largest within-segment sum of squares into two centroids one
/// standard deviation either side of its mean along its widest feature; `None` when no segment
/// has spread left.
fn split_widest(centroids: &[Vec<f64>], round: &LloydRound) -> Option<Vec<Vec<f64>>> {
    let d = round.sums.len();
    let variance = |c: usize, j: usize| {
        let n = round.count[c];
        let mean = round.sums[j][c] / n;
        (round.sumsq[j][c] / n - mean * mean).max(0.0)
    };
    let (c, sse) = (0..centroids.len())
        .filter(|&c| round.count[c] >= 2.0)
        .map(|c| {
            (
                c,
                (0..d).map(|j| variance(c, j)).sum::<f64>() * round.count[c],
            )
        })
        .max_by(|a, b| a.1.total_cmp(&b.1))?;
    if sse <= 0.0 {
        return None;
    }
    let j = (0..d).max_by(|&a, &b| variance(c, a).total_cmp(&variance(c, b)))?;
    let sigma = variance(c, j).sqrt();
    let mut split = centroids.to_vec();
    let mut other = centroids[c].clone();
    split[c][j] -= sigma;
    other[j] += sigma;
    split.push(other);
    Some(split)
}

/// The k a criterion picks among converged candidates k = 1, 2, ….
pub fn choose_k(criterion: KCriterion, candidates: &[KCandidate]) -> usize {
    let several: Vec<&KCandidate> = candidates.iter().filter(|c| c.k >= 2).collect();
    let Some(first) = several.first() else {
        return candidates.last().map_or(1, |c| c.k);
    };
    match criterion {
        KCriterion::Silhouette => several
            .iter()
            .max_by(|a, b| a.silhouette.total_cmp(&b.silhouette).then(b.k.cmp(&a.k)))
            .map_or(first.k, |c| c.k),
        KCriterion::Elbow => {
            // The k after which adding a segment gains least compared with what adding it
            // gained: the largest (W[k−1] − W[k]) / (W[k] − W[k+1]). The last k has no
            // successor and is not a candidate.
            let floor = candidates.first().map_or(0.0, |c| c.inertia) * 1e-12;
            candidates
                .windows(3)
                .map(|w| {
                    let gained = w[0].inertia - w[1].inertia;
                    let next = (w[1].inertia - w[2].inertia)
                        .max(floor)
                        .max(f64::MIN_POSITIVE);
                    (w[1].k, gained / next)
                })
                .max_by(|a, b| a.1.total_cmp(&b.1).then(b.0.cmp(&a.0)))
                .map_or(first.k, |(k, _)| k)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn candidate(k: usize, inertia: f64, silhouette: f64) -> KCandidate {
        KCandidate {
            k,
            inertia,
            silhouette,
            iterations: 1,
            converged: true,
        }
    }

    #[test]
    fn presence_aggregates_must_be_prefixes() {
        assert_eq!(last_present(&[1.0, 1.0, 0.0, 0.0], "x"), Ok(Some(1)));
        assert_eq!(last_present(&[0.0, 0.0], "x"), Ok(None));
        assert_eq!(
            last_present(&[1.0, 0.0, 1.0], "x"),
            Err(SegmentError::Inconsistent("x"))
        );
    }

    #[test]
    fn k_criteria() {
        // A clear elbow at 3; silhouette peaks at 4.
        let c = [
            candidate(1, 100.0, 0.0),
            candidate(2, 60.0, 0.5),
            candidate(3, 20.0, 0.6),
            candidate(4, 17.0, 0.7),
            candidate(5, 15.0, 0.4),
        ];
        assert_eq!(choose_k(KCriterion::Elbow, &c), 3);
        assert_eq!(choose_k(KCriterion::Silhouette, &c), 4);
        assert_eq!(choose_k(KCriterion::Silhouette, &c[..1]), 1);
    }
}
