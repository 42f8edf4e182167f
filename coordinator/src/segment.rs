//! The segment job on the coordinator: standardization from a moments round, then federated
//! Lloyd k-means. Each round the participants send, inside one encrypted aggregate, the count of
//! their customers nearest each centroid, the sums of those customers' standardized features and
//! the total inertia; the coordinator moves each centroid to its segment's mean. With the same
//! initial centroids this is exactly centralized Lloyd on the pooled rows.
//!
//! Segments smaller than `k_anonymity` customers are never released: at convergence the smallest
//! such segment's centroid is dropped, its customers fall to the nearest remaining segments, Lloyd
//! continues, and the result says so.

use crate::stats::{histogram_edges, mean_std, quantile};
use fedbank_common::encoding::DecodedQuantity;
use fedbank_common::job::{FeatureSpec, RoundKind, SegmentSpec, LIFECYCLE_STAGES, RFM_FEATURES};
use serde::Serialize;

/// One released segment.
#[derive(Clone, Debug, Serialize, PartialEq)]
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

/// The segmentation result.
#[derive(Clone, Debug, Serialize, PartialEq)]
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
}

/// Why an aggregate could not be used.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SegmentError {
    /// A quantity the round should hold is missing.
    #[error("the decrypted aggregate has no quantity '{0}'")]
    MissingQuantity(String),
    /// A round kind this job does not run.
    #[error("round '{0}' is not part of a segment job")]
    UnexpectedRound(&'static str),
    /// Every segment is below k-anonymity.
    #[error("no segment reaches k_anonymity = {0} customers; nothing can be released")]
    NothingReleasable(u64),
}

/// The coordinator's side of a segment job.
#[derive(Debug, Clone)]
pub struct SegmentJob {
    features: Vec<FeatureSpec>,
    spec: SegmentSpec,
    mean: Vec<f64>,
    std: Vec<f64>,
    centroids: Vec<Vec<f64>>,
    iterations: u32,
    inertia: Vec<f64>,
    merged: Vec<String>,
    bins: usize,
    quintiles: Option<Vec<Vec<f64>>>,
    result: Option<SegmentResult>,
}

fn find<'a>(decoded: &'a [DecodedQuantity], name: &str) -> Result<&'a [f64], SegmentError> {
    DecodedQuantity::find(decoded, name)
        .ok_or_else(|| SegmentError::MissingQuantity(name.to_owned()))
}

impl SegmentJob {
    /// A segment job over `features` as `spec` says.
    pub fn new(features: Vec<FeatureSpec>, spec: SegmentSpec, bins: usize) -> Self {
        let centroids = spec.initial_centroids.clone();
        Self {
            features,
            spec,
            mean: Vec::new(),
            std: Vec::new(),
            centroids,
            iterations: 0,
            inertia: Vec::new(),
            merged: Vec::new(),
            bins,
            quintiles: None,
            result: None,
        }
    }

    /// The first round: moments for standardization.
    pub fn first_round(&self) -> RoundKind {
        RoundKind::Moments
    }

    fn kmeans_round(&self) -> RoundKind {
        RoundKind::KMeans {
            mean: self.mean.clone(),
            std: self.std.clone(),
            centroids: self.centroids.clone(),
        }
    }

    /// Takes a round's decrypted aggregate; returns the next round, or `None` when done.
    pub fn apply(
        &mut self,
        kind: &RoundKind,
        decoded: &[DecodedQuantity],
    ) -> Result<Option<RoundKind>, SegmentError> {
        match kind {
            RoundKind::Moments => {
                for f in &self.features {
                    let n = find(decoded, &format!("{}.count", f.name))?[0];
                    let sum = find(decoded, &format!("{}.sum", f.name))?[0];
                    let sumsq = find(decoded, &format!("{}.sumsq", f.name))?[0];
                    let (mean, std) = mean_std(n, sum, sumsq);
                    self.mean.push(mean);
                    self.std.push(std);
                }
                if self.spec.transactions.is_none() {
                    return Ok(Some(self.kmeans_round()));
                }
                // Consortium quintiles for the RFM scores come from a histogram round.
                let edges = self
                    .features
                    .iter()
                    .zip(self.mean.iter().zip(&self.std))
                    .map(|(f, (&mean, &std))| histogram_edges(f, mean, std, self.bins))
                    .collect();
                Ok(Some(RoundKind::Histogram { edges }))
            }
            RoundKind::Histogram { edges } => {
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
                Ok(Some(self.kmeans_round()))
            }
            RoundKind::KMeans { centroids, .. } => {
                let count = find(decoded, "kmeans.count")?.to_vec();
                let sums: Vec<&[f64]> = self
                    .features
                    .iter()
                    .map(|f| find(decoded, &format!("kmeans.sum.{}", f.name)))
                    .collect::<Result<_, _>>()?;
                let inertia = find(decoded, "kmeans.inertia")?[0];
                let updated: Vec<Vec<f64>> = centroids
                    .iter()
                    .enumerate()
                    .map(|(c, old)| {
                        if count[c] > 0.0 {
                            sums.iter().map(|s| s[c] / count[c]).collect()
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
                self.inertia.push(inertia);
                self.centroids = updated;
                let converged =
                    shift <= self.spec.tolerance || self.iterations >= self.spec.max_iterations;
                if !converged {
                    return Ok(Some(self.kmeans_round()));
                }
                // Merge the smallest segment below k-anonymity, one at a time, and run Lloyd
                // again until every remaining segment can be released.
                let smallest = (0..count.len())
                    .filter(|&c| count[c] < self.spec.k_anonymity as f64)
                    .min_by(|&a, &b| count[a].total_cmp(&count[b]));
                let Some(c) = smallest else {
                    self.result = Some(self.finish(&count));
                    if self.spec.transactions.is_some() {
                        return Ok(Some(RoundKind::Lifecycle));
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
                Ok(Some(self.kmeans_round()))
            }
            RoundKind::Lifecycle => {
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
                Ok(self.quintiles.clone().map(|quintiles| RoundKind::Scores {
                    mean: self.mean.clone(),
                    std: self.std.clone(),
                    centroids: self.centroids.clone(),
                    quintiles,
                }))
            }
            RoundKind::Scores { .. } => {
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

    fn finish(&self, count: &[f64]) -> SegmentResult {
        let rfm = self
            .features
            .iter()
            .map(|f| f.name.as_str())
            .eq(RFM_FEATURES);
        let mut segments: Vec<Segment> = self
            .centroids
            .iter()
            .zip(count)
            .enumerate()
            .map(|(i, (z, &size))| {
                let original = z
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
                        rfm_label(z)
                    } else {
                        format!("segment {}", i + 1)
                    },
                    size,
                    centroid_standardized: z.clone(),
                    centroid_original: original,
                    rfm_scores: None,
                }
            })
            .collect();
        unique_labels(&mut segments);
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
        }
    }

    /// The result, once converged.
    pub fn result(&self) -> Option<&SegmentResult> {
        self.result.as_ref()
    }
}

/// Makes labels unique by numbering repeats, keeping the first as is.
fn unique_labels(segments: &mut [Segment]) {
    for i in 0..segments.len() {
        let same = segments[..i]
            .iter()
            .filter(|s| s.label.starts_with(&segments[i].label))
            .count();
        if same > 0 {
            segments[i].label = format!("{} ({})", segments[i].label, same + 1);
        }
    }
}

/// A marketing label from a standardized RFM centroid (recency, frequency, monetary; lower
/// recency is better).
pub fn rfm_label(z: &[f64]) -> String {
    let (r, f, m) = (-z[0], z[1], z[2]);
    let label = if r > 0.5 && f > 0.5 && m > 0.5 {
        "champions"
    } else if r > 0.0 && f > 0.0 {
        "loyal"
    } else if r > 0.5 && f <= -0.5 {
        "new"
    } else if r > 0.0 {
        "potential loyalists"
    } else if f > 0.5 || m > 0.5 {
        "at risk"
    } else {
        "hibernating"
    };
    label.to_owned()
}
