//! A participant's moments and histogram over its own table. Values are clipped to the
//! feature's declared range (and counted) before they are summed, so that each sum respects the
//! bound its encoding was validated for.

use crate::job::{FeatureSpec, LocalColumns, LocalValues};

/// Why a table round cannot be computed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum TableRoundError {
    /// The table lacks a feature column.
    #[error("the local table has no column '{0}'")]
    MissingColumn(String),
    /// The round's edges do not match the features.
    #[error("the histogram request has {got} edge lists for {expected} features")]
    EdgeCount {
        /// Features.
        expected: usize,
        /// Edge lists.
        got: usize,
    },
}

fn column<'a>(
    table: LocalColumns<'a>,
    f: &FeatureSpec,
) -> Result<&'a [Option<f64>], TableRoundError> {
    table
        .columns
        .get(&f.name)
        .map(Vec::as_slice)
        .ok_or_else(|| TableRoundError::MissingColumn(f.name.clone()))
}

fn clip(v: f64, f: &FeatureSpec, clipped: &mut u64) -> f64 {
    let (lo, hi) = (f.lower(), f.bound);
    if v < lo || v > hi {
        *clipped += 1;
    }
    v.clamp(lo, hi)
}

/// Per feature: count, missing count, sum and sum of squares (four quantities of one value).
pub fn moments(
    table: LocalColumns<'_>,
    features: &[FeatureSpec],
) -> Result<LocalValues, TableRoundError> {
    let mut out = LocalValues::default();
    for f in features {
        let (mut n, mut missing, mut sum, mut sumsq) = (0.0, 0.0, 0.0, 0.0);
        for v in column(table, f)? {
            match v {
                Some(v) => {
                    let v = clip(*v, f, &mut out.clipped);
                    n += 1.0;
                    sum += v;
                    sumsq += v * v;
                }
                None => missing += 1.0,
            }
        }
        out.values
            .extend([vec![n], vec![missing], vec![sum], vec![sumsq]]);
    }
    Ok(out)
}

/// Per feature: counts below the first edge, in each bin, and at or above the last edge.
pub fn histogram(
    table: LocalColumns<'_>,
    features: &[FeatureSpec],
    edges: &[Vec<f64>],
) -> Result<LocalValues, TableRoundError> {
    if edges.len() != features.len() {
        return Err(TableRoundError::EdgeCount {
            expected: features.len(),
            got: edges.len(),
        });
    }
    let mut out = LocalValues::default();
    for (f, edges) in features.iter().zip(edges) {
        let mut counts = vec![0.0; edges.len() + 1];
        for v in column(table, f)?.iter().flatten() {
            let v = clip(*v, f, &mut out.clipped);
            // Index of the first edge above v: 0 = below the first edge.
            let bin = edges.partition_point(|e| *e <= v);
            counts[bin] += 1.0;
        }
        out.values.push(counts);
    }
    Ok(out)
}
