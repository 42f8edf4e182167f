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
    /// The file is wider or longer-lined than any table a participant reads: refused before it
    /// costs more than the limit in memory or time ([`MAX_COLUMNS`], [`MAX_RECORD_BYTES`],
    /// [`MAX_CELL_BYTES`]).
    #[error("{path}, line {line}: {what}")]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// Line where the offending header, record or cell starts (1 is the header).
        line: u64,
        /// What is too large, and the limit.
        what: String,
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

/// Most columns a participant's CSV header may have.
pub const MAX_COLUMNS: usize = 4096;
/// Most bytes one CSV record (a line, or several where a quoted cell holds line breaks) may
/// have.
pub const MAX_RECORD_BYTES: usize = 1 << 20;
/// Most bytes one CSV cell may have.
pub const MAX_CELL_BYTES: usize = 16 << 10;

/// A CSV file opened with its header checked: present, at most [`MAX_COLUMNS`] wide, and no
/// name twice. Records are read through [`CsvFile::next_record`], which refuses a record longer
/// than [`MAX_RECORD_BYTES`] before it is buffered and a cell longer than [`MAX_CELL_BYTES`]:
/// reading costs time linear in the file and memory bounded by the limits, whatever the file.
pub(crate) struct CsvFile {
    reader: csv::Reader<RecordLimit<std::fs::File>>,
    pub(crate) header: Vec<String>,
    path: PathBuf,
}

/// Why a record was cut off: it passed [`MAX_RECORD_BYTES`].
#[derive(Debug)]
struct OversizedRecord {
    line: u64,
}

impl std::fmt::Display for OversizedRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "a record starting on line {} is longer than {} bytes",
            self.line, MAX_RECORD_BYTES
        )
    }
}

impl std::error::Error for OversizedRecord {}

/// A reader that fails once a CSV record passes [`MAX_RECORD_BYTES`]. It follows quoting (a
/// line break inside a quoted cell does not end the record; `""` toggles twice), so the limit is
/// on records as the CSV parser sees them, and it counts lines for the error.
struct RecordLimit<R> {
    inner: R,
    in_quotes: bool,
    record_bytes: usize,
    line: u64,
    record_line: u64,
}

impl<R> RecordLimit<R> {
    fn new(inner: R) -> Self {
        Self {
            inner,
            in_quotes: false,
            record_bytes: 0,
            line: 1,
            record_line: 1,
        }
    }
}

impl<R: std::io::Read> std::io::Read for RecordLimit<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        for &b in &buf[..n] {
            match b {
                b'"' => self.in_quotes = !self.in_quotes,
                b'\n' => {
                    self.line += 1;
                    if !self.in_quotes {
                        self.record_bytes = 0;
                        self.record_line = self.line;
                        continue;
                    }
                }
                _ => {}
            }
            self.record_bytes += 1;
            if self.record_bytes > MAX_RECORD_BYTES {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    OversizedRecord {
                        line: self.record_line,
                    },
                ));
            }
        }
        Ok(n)
    }
}

/// The error of reading `path`: a record over the limit named as such, anything else as I/O.
fn read_error(path: &Path, source: csv::Error) -> TableError {
    let oversized = match source.kind() {
        csv::ErrorKind::Io(e) => e
            .get_ref()
            .and_then(|inner| inner.downcast_ref::<OversizedRecord>())
            .map(|o| o.line),
        _ => None,
    };
    match oversized {
        Some(line) => TableError::TooLarge {
            path: path.to_path_buf(),
            line,
            what: format!("a record longer than {MAX_RECORD_BYTES} bytes (the limit)"),
        },
        None => TableError::Io {
            path: path.to_path_buf(),
            source,
        },
    }
}

impl CsvFile {
    /// Opens `path` and checks its header.
    pub(crate) fn open(path: &Path) -> Result<Self, TableError> {
        let file = std::fs::File::open(path).map_err(|e| read_error(path, e.into()))?;
        let mut reader = csv::ReaderBuilder::new()
            .trim(csv::Trim::All)
            .from_reader(RecordLimit::new(file));
        let names = reader.headers().map_err(|e| read_error(path, e))?;
        if names.len() > MAX_COLUMNS {
            return Err(TableError::TooLarge {
                path: path.to_path_buf(),
                line: 1,
                what: format!(
                    "the header has {} columns; a table may have at most {MAX_COLUMNS}",
                    names.len()
                ),
            });
        }
        let header: Vec<String> = names.iter().map(str::to_owned).collect();
        if header.is_empty() || header.iter().all(String::is_empty) {
            return Err(TableError::Empty {
                path: path.to_path_buf(),
                what: "no header line",
            });
        }
        let mut seen = std::collections::HashSet::with_capacity(header.len());
        for name in &header {
            if !seen.insert(name.as_str()) {
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

    /// Reads the next record into `record`: `false` at the end of the file. A record or a cell
    /// over its limit is refused with its line.
    pub(crate) fn next_record(
        &mut self,
        record: &mut csv::StringRecord,
    ) -> Result<bool, TableError> {
        if !self
            .reader
            .read_record(record)
            .map_err(|e| read_error(&self.path, e))?
        {
            return Ok(false);
        }
        if let Some((i, cell)) = record
            .iter()
            .enumerate()
            .find(|(_, c)| c.len() > MAX_CELL_BYTES)
        {
            return Err(TableError::TooLarge {
                path: self.path.clone(),
                line: record.position().map_or(0, |p| p.line()),
                what: format!(
                    "column '{}' holds a cell of {} bytes; a cell may have at most {MAX_CELL_BYTES}",
                    self.header.get(i).map_or("?", String::as_str),
                    cell.len()
                ),
            });
        }
        Ok(true)
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
        let mut record = csv::StringRecord::new();
        while file.next_record(&mut record)? {
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
