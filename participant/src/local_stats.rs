//! The check of a participant's table before it connects: its moments over the job's features
//! (the stats job's computation, `common::job::stats`), which fail on a missing column or too
//! many rows. The jobs' own rounds live in their folders in `common::job`.
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

/// Computes the stats job's moments round over `table`.
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
        RoundKind::Registered(r) if r.tag == stats::MOMENTS_TAG => {
            Ok(stats::moments(columns, features)?.into())
        }
        RoundKind::Registered(_) => Err(LocalStatsError::NotATableRound(round.label())),
    }
}
