//! The moments a participant computes on its own table for the propensity job's first round
//! (the computation is the stats job's, `common::job::stats`; the segment job's table rounds
//! live in its own folder, `common::job::segment`), and the check of a table before a node
//! connects.
//! Values are clipped to the feature's declared range (and counted) before they are summed, so
//! that each sum respects the bound the encoding was validated for.

use crate::local_table::LocalTable;
use fedbank_common::job::{stats, FeatureSpec, LocalColumns, RoundKind};

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
    /// The round is not computed here from the table.
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

/// Computes the moments round of a propensity job over `table`.
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
    match round {
        RoundKind::Moments => Ok(stats::moments(columns, features)?.into()),
        RoundKind::Classes
        | RoundKind::Newton { .. }
        | RoundKind::FedAvg { .. }
        | RoundKind::Evaluate { .. }
        | RoundKind::Compliance
        | RoundKind::Registered(_) => Err(LocalStatsError::NotATableRound(round.label())),
    }
}
