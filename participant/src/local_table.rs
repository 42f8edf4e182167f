//! A participant's own customer table, read from CSV. It never leaves the participant: only
//! statistics computed from it are encrypted and sent.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Why the local table could not be read. The participant stops before sending anything.
#[derive(Debug, thiserror::Error)]
pub enum TableError {
    /// The file could not be opened or read.
    #[error("{path}: cannot read")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: csv::Error,
    },
    /// The file has no header or no rows.
    #[error("{path}: {what}")]
    Empty {
        /// The file.
        path: PathBuf,
        /// What is missing.
        what: &'static str,
    },
    /// A column the job needs is missing.
    #[error("{path}: no column '{column}' (the header has {header:?})")]
    MissingColumn {
        /// The file.
        path: PathBuf,
        /// The column.
        column: String,
        /// The header found.
        header: Vec<String>,
    },
    /// A column name appears twice in the header.
    #[error("{path}: column '{column}' appears twice in the header")]
    DuplicateColumn {
        /// The file.
        path: PathBuf,
        /// The column.
        column: String,
    },
    /// A customer id is empty or repeated.
    #[error("{path}, line {line}, column '{column}': customer id '{value}' is empty or repeated")]
    BadId {
        /// The file.
        path: PathBuf,
        /// Line (1 is the header).
        line: u64,
        /// Column.
        column: String,
        /// The value.
        value: String,
    },
    /// A value is not a number.
    #[error("{path}, line {line}, column '{column}': '{value}' is not a number")]
    NotANumber {
        /// The file.
        path: PathBuf,
        /// Line (1 is the header).
        line: u64,
        /// Column.
        column: String,
        /// The value.
        value: String,
    },
}

/// Numeric columns of a participant's table; `None` is a missing value.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LocalTable {
    /// Values per column.
    pub columns: BTreeMap<String, Vec<Option<f64>>>,
    /// Number of rows.
    pub rows: usize,
}

/// Whether a cell is a missing value: empty, `NA`, `NaN` or `null`.
pub(crate) fn is_missing(s: &str) -> bool {
    matches!(s, "" | "NA" | "NaN" | "nan" | "null" | "NULL")
}

/// A numeric cell: `Ok(None)` when missing, `Err(())` when it is not a finite number.
pub(crate) fn numeric_cell(cell: &str) -> Result<Option<f64>, ()> {
    if is_missing(cell) {
        return Ok(None);
    }
    match cell.parse::<f64>() {
        Ok(v) if v.is_finite() => Ok(Some(v)),
        _ => Err(()),
    }
}

/// A CSV file opened with its header checked: present, and no name twice.
pub(crate) struct CsvFile {
    pub(crate) reader: csv::Reader<std::fs::File>,
    pub(crate) header: Vec<String>,
    path: PathBuf,
}

impl CsvFile {
    /// Opens `path` and checks its header.
    pub(crate) fn open(path: &Path) -> Result<Self, TableError> {
        let io = |source| TableError::Io {
            path: path.to_path_buf(),
            source,
        };
        let mut reader = csv::ReaderBuilder::new()
            .trim(csv::Trim::All)
            .from_path(path)
            .map_err(io)?;
        let header: Vec<String> = reader
            .headers()
            .map_err(io)?
            .iter()
            .map(str::to_owned)
            .collect();
        if header.is_empty() || header.iter().all(String::is_empty) {
            return Err(TableError::Empty {
                path: path.to_path_buf(),
                what: "no header line",
            });
        }
        for (i, name) in header.iter().enumerate() {
            if header[..i].contains(name) {
                return Err(TableError::DuplicateColumn {
                    path: path.to_path_buf(),
                    column: name.clone(),
                });
            }
        }
        Ok(Self {
            reader,
            header,
            path: path.to_path_buf(),
        })
    }

    /// The position of `column` in the header.
    pub(crate) fn index(&self, column: &str) -> Result<usize, TableError> {
        self.header
            .iter()
            .position(|h| h == column)
            .ok_or_else(|| TableError::MissingColumn {
                path: self.path.clone(),
                column: column.to_owned(),
                header: self.header.clone(),
            })
    }
}

impl From<fedbank_common::job::TableColumns> for LocalTable {
    fn from(t: fedbank_common::job::TableColumns) -> Self {
        LocalTable {
            rows: t.rows,
            columns: t.columns,
        }
    }
}

impl LocalTable {
    /// Appends `other`'s rows (columns missing on one side become missing values): the pooled
    /// table of an in-process baseline run.
    pub fn append(&mut self, other: &LocalTable) {
        let names: std::collections::BTreeSet<String> = self
            .columns
            .keys()
            .chain(other.columns.keys())
            .cloned()
            .collect();
        for name in names {
            let column = self
                .columns
                .entry(name.clone())
                .or_insert_with(|| vec![None; self.rows]);
            match other.columns.get(&name) {
                Some(values) => column.extend_from_slice(values),
                None => column.extend(std::iter::repeat_n(None, other.rows)),
            }
        }
        self.rows += other.rows;
    }

    /// Reads `columns` from the CSV file at `path`. Empty cells, `NA` and `null` are missing.
    pub fn read_csv(path: &Path, columns: &[String]) -> Result<Self, TableError> {
        Self::read_csv_with_ids(path, columns, None).map(|(table, _)| table)
    }

    /// Reads `columns`, and the row ids from `id_column` if given (each non-empty and unique).
    pub fn read_csv_with_ids(
        path: &Path,
        columns: &[String],
        id_column: Option<&str>,
    ) -> Result<(Self, Option<Vec<String>>), TableError> {
        let io = |source| TableError::Io {
            path: path.to_path_buf(),
            source,
        };
        let mut file = CsvFile::open(path)?;
        let id_index = id_column.map(|c| file.index(c)).transpose()?;
        let mut ids = id_index.map(|_| Vec::new());
        let mut seen = std::collections::HashSet::new();
        let index: Vec<(String, usize)> = columns
            .iter()
            .map(|c| Ok((c.clone(), file.index(c)?)))
            .collect::<Result<_, TableError>>()?;
        let mut table = LocalTable::default();
        let mut values: Vec<Vec<Option<f64>>> = vec![Vec::new(); columns.len()];
        for record in file.reader.records() {
            let record = record.map_err(io)?;
            let line = record.position().map_or(0, |p| p.line());
            if let (Some(i), Some(ids), Some(column)) = (id_index, ids.as_mut(), id_column) {
                let id = record.get(i).unwrap_or("");
                if id.is_empty() || !seen.insert(id.to_owned()) {
                    return Err(TableError::BadId {
                        path: path.to_path_buf(),
                        line,
                        column: column.to_owned(),
                        value: id.chars().take(40).collect(),
                    });
                }
                ids.push(id.to_owned());
            }
            for ((column, i), out) in index.iter().zip(values.iter_mut()) {
                let cell = record.get(*i).unwrap_or("");
                match numeric_cell(cell) {
                    Ok(v) => out.push(v),
                    Err(()) => {
                        return Err(TableError::NotANumber {
                            path: path.to_path_buf(),
                            line,
                            column: column.clone(),
                            value: cell.chars().take(40).collect(),
                        })
                    }
                }
            }
            table.rows += 1;
        }
        if table.rows == 0 {
            return Err(TableError::Empty {
                path: path.to_path_buf(),
                what: "no data rows",
            });
        }
        table.columns = columns.iter().cloned().zip(values).collect();
        Ok((table, ids))
    }
}
