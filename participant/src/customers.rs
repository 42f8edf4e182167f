//! A participant's labeled customer table for a propensity job: numeric features (missing
//! values allowed), categorical columns checked against the job's levels, the label, and the
//! hold-out split ([`read_customers`] into the propensity job's [`CustomerRecords`]). The table
//! never leaves the participant.
//!
//! Bad input stops the participant before anything is sent, naming the file, the line and the
//! column: a label with a value that is neither the positive nor the negative one, a level not in
//! the job's list (unless the job enables `other`), a value that is not a number in a numeric
//! column, a missing column, a duplicate header, an empty file.

use crate::local_table::{numeric_cell, CsvFile, TableError};
pub use fedbank_common::job::propensity::{held_out, CustomerRecords};
use fedbank_common::job::{FeatureSpec, PropensitySpec};
use fedbank_common::model::CategoricalEncoding;
use std::path::{Path, PathBuf};

/// Why a customer table cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum CustomerError {
    /// The file could not be read, or its header is wrong.
    #[error(transparent)]
    Table(#[from] TableError),
    /// A cell is invalid.
    #[error("{path}, line {line}, column '{column}': {problem} ('{value}')")]
    BadCell {
        /// File.
        path: PathBuf,
        /// Line (1 is the header).
        line: u64,
        /// Column.
        column: String,
        /// What is wrong.
        problem: String,
        /// The value.
        value: String,
    },
    /// The rows read do not fit together (a reader's defect, not the file's).
    #[error("{path}: {problem}")]
    Inconsistent {
        /// File.
        path: PathBuf,
        /// What does not fit.
        problem: String,
    },
}

/// An invalid cell at `path`, `line`, `column`.
pub(crate) fn bad_cell(
    path: &Path,
    line: u64,
    column: &str,
    problem: String,
    value: &str,
) -> CustomerError {
    CustomerError::BadCell {
        path: path.to_path_buf(),
        line,
        column: column.to_owned(),
        problem,
        value: value.chars().take(40).collect(),
    }
}

/// The model's columns located in a CSV header: numeric features, then categorical columns
/// whose cells must be one of their levels (or map to `other` where enabled).
pub(crate) struct ModelColumns {
    numeric: Vec<(String, usize)>,
    categorical: Vec<(CategoricalEncoding, usize)>,
    /// Says, around the list of levels, why an unlisted level is refused.
    unknown_level: (&'static str, &'static str),
}

impl ModelColumns {
    /// Finds every column in `file`'s header.
    pub(crate) fn locate(
        file: &CsvFile,
        numeric: impl IntoIterator<Item = String>,
        categorical: Vec<CategoricalEncoding>,
        unknown_level: (&'static str, &'static str),
    ) -> Result<Self, TableError> {
        Ok(Self {
            numeric: numeric
                .into_iter()
                .map(|n| file.index(&n).map(|i| (n, i)))
                .collect::<Result<_, _>>()?,
            categorical: categorical
                .into_iter()
                .map(|c| file.index(&c.name).map(|i| (c, i)))
                .collect::<Result<_, _>>()?,
            unknown_level,
        })
    }

    /// A row's numeric values (None when missing) and level indices (the list's length for
    /// `other`).
    pub(crate) fn read(
        &self,
        record: &csv::StringRecord,
        path: &Path,
        line: u64,
    ) -> Result<(Vec<Option<f64>>, Vec<usize>), CustomerError> {
        let mut numeric = Vec::with_capacity(self.numeric.len());
        for (name, i) in &self.numeric {
            let cell = record.get(*i).unwrap_or("");
            numeric.push(
                numeric_cell(cell)
                    .map_err(|()| bad_cell(path, line, name, "not a number".into(), cell))?,
            );
        }
        let mut levels = Vec::with_capacity(self.categorical.len());
        for (c, i) in &self.categorical {
            let cell = record.get(*i).unwrap_or("");
            levels.push(match c.levels.iter().position(|l| l == cell) {
                Some(level) => level,
                None if c.other => c.levels.len(),
                None => {
                    let (before, after) = self.unknown_level;
                    let problem = format!("{before}{}{after}", c.levels.join(", "));
                    return Err(bad_cell(path, line, &c.name, problem, cell));
                }
            });
        }
        Ok((numeric, levels))
    }
}

/// Reads the table at `path` for a propensity job.
pub fn read_customers(
    path: &Path,
    features: &[FeatureSpec],
    spec: &PropensitySpec,
    id_column: Option<&str>,
) -> Result<CustomerRecords, CustomerError> {
    let mut file = CsvFile::open(path)?;
    let columns = ModelColumns::locate(
        &file,
        features.iter().map(|f| f.name.clone()),
        spec.categorical
            .iter()
            .map(|c| CategoricalEncoding {
                name: c.name.clone(),
                levels: c.levels.clone(),
                other: spec.other_level,
            })
            .collect(),
        (
            "level not declared in the job (declared: ",
            "); enable other_level to map it to 'other'",
        ),
    )?;
    let label_index = file.index(&spec.label)?;
    let id_index = id_column.map(|c| file.index(c)).transpose()?;
    let mut records = CustomerRecords {
        ids: id_index.map(|_| Vec::new()),
        numeric: Vec::new(),
        levels: Vec::new(),
        label: Vec::new(),
        holdout: Vec::new(),
    };
    let mut seen = std::collections::HashSet::new();
    let mut record = csv::StringRecord::new();
    while file.next_record(&mut record)? {
        let line = record.position().map_or(0, |p| p.line());
        let bad = |column: &str, problem: String, value: &str| {
            bad_cell(path, line, column, problem, value)
        };
        let key = match (id_index, id_column) {
            (Some(i), Some(column)) => {
                let id = record.get(i).unwrap_or("");
                if id.is_empty() || !seen.insert(id.to_owned()) {
                    return Err(bad(column, "customer id is empty or repeated".into(), id));
                }
                id.to_owned()
            }
            _ => format!("row {}", records.label.len() + 1),
        };
        let (numeric, levels) = columns.read(&record, path, line)?;
        let label = record.get(label_index).unwrap_or("");
        let positive = if label == spec.positive {
            true
        } else if label == spec.negative {
            false
        } else {
            return Err(bad(
                &spec.label,
                format!(
                    "label is neither '{}' nor '{}'",
                    spec.positive, spec.negative
                ),
                label,
            ));
        };
        records
            .holdout
            .push(held_out(spec.holdout_seed, &key, spec.holdout));
        if let Some(ids) = records.ids.as_mut() {
            ids.push(key);
        }
        records.numeric.push(numeric);
        records.levels.push(levels);
        records.label.push(positive);
    }
    if records.label.is_empty() {
        return Err(TableError::Empty {
            path: path.to_path_buf(),
            what: "no data rows",
        }
        .into());
    }
    Ok(records)
}
