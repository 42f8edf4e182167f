//! The statistics a participant computes on its own table for the rounds of the segment and
//! propensity jobs over a table (moments and histogram come from the stats job's folder,
//! `common::job::stats`).
//! Values are clipped to the feature's declared range (and counted) before they are summed, so
//! that each sum respects the bound the encoding was validated for.

use crate::local_table::LocalTable;
use fedbank_common::job::{stats, FeatureSpec, LocalColumns, RoundKind, Z_BOUND};

/// Why a round cannot be computed locally.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum LocalStatsError {
    /// The table lacks a feature column.
    #[error("the local table has no column '{0}'")]
    MissingColumn(String),
    /// The table has more rows than the job allows.
    #[error("the local table has {rows} rows, the job allows at most {max}")]
    TooManyRows {
        /// Rows.
        rows: usize,
        /// max_rows.
        max: u64,
    },
    /// The round is not computed from the table (the reference-date rounds come from the
    /// transaction history).
    #[error("round '{0}' is not computed from a customer table")]
    NotATableRound(&'static str),
    /// The round's edges do not match the features.
    #[error("the histogram request has {got} edge lists for {expected} features")]
    EdgeCount {
        /// Features.
        expected: usize,
        /// Edge lists.
        got: usize,
    },
}

impl From<stats::TableRoundError> for LocalStatsError {
    fn from(e: stats::TableRoundError) -> Self {
        match e {
            stats::TableRoundError::MissingColumn(c) => LocalStatsError::MissingColumn(c),
            stats::TableRoundError::EdgeCount { expected, got } => {
                LocalStatsError::EdgeCount { expected, got }
            }
        }
    }
}

impl From<fedbank_common::job::LocalValues> for LocalRound {
    fn from(local: fedbank_common::job::LocalValues) -> Self {
        LocalRound {
            values: local.values,
            clipped: local.clipped,
        }
    }
}

/// One round's local values, in the order of the job's quantities, plus how many values were
/// clipped to their bound.
#[derive(Debug, Clone, PartialEq)]
pub struct LocalRound {
    /// Values per quantity.
    pub values: Vec<Vec<f64>>,
    /// Values clipped to their bound.
    pub clipped: u64,
}

/// Computes a table round of the segment or propensity job over `table`.
pub fn compute(
    table: &LocalTable,
    features: &[FeatureSpec],
    max_rows: u64,
    round: &RoundKind,
) -> Result<LocalRound, LocalStatsError> {
    if table.rows as u64 > max_rows {
        return Err(LocalStatsError::TooManyRows {
            rows: table.rows,
            max: max_rows,
        });
    }
    let columns = LocalColumns {
        rows: table.rows,
        columns: &table.columns,
    };
    let column = |f: &FeatureSpec| {
        table
            .columns
            .get(&f.name)
            .ok_or_else(|| LocalStatsError::MissingColumn(f.name.clone()))
    };
    let mut clipped = 0u64;
    let mut clip = |v: f64, f: &FeatureSpec| {
        let (lo, hi) = (f.lower(), f.bound);
        if v < lo || v > hi {
            clipped += 1;
        }
        v.clamp(lo, hi)
    };
    let mut values = Vec::new();
    match round {
        RoundKind::Moments => return Ok(stats::moments(columns, features)?.into()),
        RoundKind::KMeans {
            mean,
            std,
            centroids,
        } => {
            let columns: Vec<&Vec<Option<f64>>> =
                features.iter().map(column).collect::<Result<_, _>>()?;
            let (k, d) = (centroids.len(), features.len());
            if mean.len() != d || std.len() != d || centroids.iter().any(|c| c.len() != d) {
                return Err(LocalStatsError::EdgeCount {
                    expected: d,
                    got: mean.len(),
                });
            }
            let mut count = vec![0.0; k];
            let mut sums = vec![vec![0.0; k]; d];
            let mut sumsq = vec![vec![0.0; k]; d];
            let mut inertia = 0.0;
            let mut silhouette = 0.0;
            let mut z = vec![0.0; d];
            'rows: for row in 0..table.rows {
                for (j, (col, f)) in columns.iter().zip(features).enumerate() {
                    let Some(v) = col[row] else { continue 'rows };
                    let v = clip(v, f);
                    z[j] = standardize(v, mean[j], std[j]);
                }
                let (best, dist, second) = nearest_two(&z, centroids);
                count[best] += 1.0;
                for (j, zj) in z.iter().enumerate() {
                    sums[j][best] += zj;
                    sumsq[j][best] += zj * zj;
                }
                inertia += dist;
                silhouette += simplified_silhouette(dist, second);
            }
            values.push(count);
            values.extend(sums);
            values.extend(sumsq);
            values.push(vec![inertia]);
            values.push(vec![silhouette]);
        }
        RoundKind::Scores {
            mean,
            std,
            centroids,
            quintiles,
        } => {
            let columns: Vec<&Vec<Option<f64>>> =
                features.iter().map(column).collect::<Result<_, _>>()?;
            let (k, d) = (centroids.len(), features.len());
            if mean.len() != d
                || std.len() != d
                || quintiles.len() != d
                || centroids.iter().any(|c| c.len() != d)
            {
                return Err(LocalStatsError::EdgeCount {
                    expected: d,
                    got: quintiles.len(),
                });
            }
            let mut sums = vec![vec![0.0; k]; d];
            let mut z = vec![0.0; d];
            let mut x = vec![0.0; d];
            'scored: for row in 0..table.rows {
                for (j, (col, f)) in columns.iter().zip(features).enumerate() {
                    let Some(v) = col[row] else { continue 'scored };
                    x[j] = clip(v, f);
                    z[j] = standardize(x[j], mean[j], std[j]);
                }
                let (best, _) = nearest(&z, centroids);
                for j in 0..d {
                    sums[j][best] += rfm_score(x[j], &quintiles[j], j == 0);
                }
            }
            values.extend(sums);
        }
        RoundKind::LatestMonth
        | RoundKind::LatestDay { .. }
        | RoundKind::Classes
        | RoundKind::Newton { .. }
        | RoundKind::FedAvg { .. }
        | RoundKind::Evaluate { .. }
        | RoundKind::Compliance
        | RoundKind::Registered(_) => return Err(LocalStatsError::NotATableRound(round.label())),
        RoundKind::Lifecycle => {
            let stages = table
                .columns
                .get(crate::rfm::LIFECYCLE_COLUMN)
                .ok_or_else(|| {
                    LocalStatsError::MissingColumn(crate::rfm::LIFECYCLE_COLUMN.to_owned())
                })?;
            let mut counts = vec![0.0; fedbank_common::job::LIFECYCLE_STAGES.len()];
            for stage in stages.iter().flatten() {
                if let Some(c) = counts.get_mut(*stage as usize) {
                    *c += 1.0;
                }
            }
            values.push(counts);
        }
        RoundKind::Histogram { edges } => {
            return Ok(stats::histogram(columns, features, edges)?.into())
        }
    }
    Ok(LocalRound { values, clipped })
}

/// A value in standard deviations from the mean, clipped to ±[`Z_BOUND`] (0 when std is 0).
pub fn standardize(v: f64, mean: f64, std: f64) -> f64 {
    if std > 0.0 {
        ((v - mean) / std).clamp(-Z_BOUND, Z_BOUND)
    } else {
        0.0
    }
}

/// The nearest centroid (lowest index on ties) and the squared distance to it.
pub fn nearest(z: &[f64], centroids: &[Vec<f64>]) -> (usize, f64) {
    let mut best = (0, f64::INFINITY);
    for (c, centroid) in centroids.iter().enumerate() {
        let dist: f64 = z.iter().zip(centroid).map(|(a, b)| (a - b) * (a - b)).sum();
        if dist < best.1 {
            best = (c, dist);
        }
    }
    best
}

/// The nearest centroid (lowest index on ties), the squared distance to it, and the squared
/// distance to the second nearest (infinite with one centroid).
pub fn nearest_two(z: &[f64], centroids: &[Vec<f64>]) -> (usize, f64, f64) {
    let mut best = (0, f64::INFINITY, f64::INFINITY);
    for (c, centroid) in centroids.iter().enumerate() {
        let dist: f64 = z.iter().zip(centroid).map(|(a, b)| (a - b) * (a - b)).sum();
        if dist < best.1 {
            best = (c, dist, best.1);
        } else if dist < best.2 {
            best.2 = dist;
        }
    }
    best
}

/// One customer's simplified silhouette (b − a) / max(a, b) from the squared distances to its
/// own and to the nearest other centroid: 0 with one centroid or when both are 0.
pub fn simplified_silhouette(own: f64, other: f64) -> f64 {
    let (a, b) = (own.sqrt(), other.sqrt());
    if !b.is_finite() || b.max(a) == 0.0 {
        0.0
    } else {
        (b - a) / a.max(b)
    }
}

/// A 1–5 score of `value` against four quintile edges; with `reversed` (recency), low values
/// score high.
pub fn rfm_score(value: f64, quintiles: &[f64], reversed: bool) -> f64 {
    let bin = quintiles.iter().filter(|e| value > **e).count() as f64;
    if reversed {
        5.0 - bin
    } else {
        1.0 + bin
    }
}

#[cfg(test)]
mod tests {
    use super::rfm_score;

    #[test]
    fn quintile_scores() {
        let q = [1.0, 2.0, 3.0, 4.0];
        assert_eq!(rfm_score(0.5, &q, false), 1.0);
        assert_eq!(rfm_score(2.5, &q, false), 3.0);
        assert_eq!(rfm_score(9.0, &q, false), 5.0);
        // Recency: the most recent customers score 5.
        assert_eq!(rfm_score(0.5, &q, true), 5.0);
        assert_eq!(rfm_score(9.0, &q, true), 1.0);
    }
}
