//! A participant's labeled customers as the propensity job reads them: numeric values, levels
//! of categorical columns, the label and whether each customer is held out for evaluation.
//! Reading them from a file is the participant's (`participant/src/customers.rs`).

use crate::job::{FeatureSpec, TableColumns};
use sha2::{Digest as _, Sha256};

/// The labeled customers of one participant.
#[derive(Clone, Debug, PartialEq)]
pub struct CustomerRecords {
    /// Customer ids (from the job's id column), in row order.
    pub ids: Option<Vec<String>>,
    /// Numeric values per row, in the job's feature order.
    pub numeric: Vec<Vec<Option<f64>>>,
    /// Level index per row and categorical column (the list's length for `other`).
    pub levels: Vec<Vec<usize>>,
    /// Label per row (true = positive).
    pub label: Vec<bool>,
    /// Whether the row is held out for evaluation.
    pub holdout: Vec<bool>,
}

/// Whether a customer is held out: a keyed hash of its id (or row number) below the fraction.
pub fn held_out(seed: u64, key: &str, fraction: f64) -> bool {
    let digest = Sha256::new()
        .chain_update(b"fedbank.holdout.v1")
        .chain_update(seed.to_le_bytes())
        .chain_update(key.as_bytes())
        .finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    (u64::from_le_bytes(first) as f64 / u64::MAX as f64) < fraction
}

impl CustomerRecords {
    /// Rows.
    pub fn rows(&self) -> usize {
        self.label.len()
    }

    /// The numeric features of the training rows as a table, for the moments round
    /// (standardization is fitted on training rows only).
    pub fn numeric_table(&self, features: &[FeatureSpec]) -> TableColumns {
        let train: Vec<usize> = (0..self.rows()).filter(|&r| !self.holdout[r]).collect();
        let mut table = TableColumns {
            rows: train.len(),
            ..TableColumns::default()
        };
        for (j, f) in features.iter().enumerate() {
            table.columns.insert(
                f.name.clone(),
                train.iter().map(|&r| self.numeric[r][j]).collect(),
            );
        }
        table
    }
}
