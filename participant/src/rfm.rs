//! RFM per customer from the participant's own transaction log: recency (days from the last
//! purchase to the reference date), frequency (distinct purchase days) and monetary (total
//! amount), each log-scaled as ln(1 + x). The log never leaves the participant.
//!
//! Bad input stops the participant before anything is sent, with the file, line and column:
//! a missing column, a duplicate header, an empty file, an unparsable date or amount, a negative
//! amount, or a purchase after the reference date.

use crate::local_table::{CsvFile, LocalTable, TableError};
use fedbank_common::job::{TransactionColumns, RFM_FEATURES};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Why a transaction log could not be turned into RFM rows.
#[derive(Debug, thiserror::Error)]
pub enum TransactionError {
    /// The file could not be read.
    #[error("{path}: cannot read")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        #[source]
        source: csv::Error,
    },
    /// The header is missing or repeats a name, or a mapped column is missing.
    #[error(transparent)]
    Header(#[from] TableError),
    /// The file holds no transaction.
    #[error("{path}: no transactions")]
    NoTransactions {
        /// The file.
        path: PathBuf,
    },
    /// A cell is invalid.
    #[error("{path}, line {line}, column '{column}': {problem} ('{value}')")]
    BadCell {
        /// The file.
        path: PathBuf,
        /// Line (1 is the header).
        line: u64,
        /// Column.
        column: String,
        /// What is wrong.
        problem: &'static str,
        /// The value.
        value: String,
    },
    /// The reference date is not a date.
    #[error("reference date '{0}' is not a YYYY-MM-DD date")]
    BadReference(String),
}

/// Column of the RFM table holding each customer's lifecycle stage (an index into
/// [`fedbank_common::job::LIFECYCLE_STAGES`]); it is not a model feature.
pub const LIFECYCLE_COLUMN: &str = "lifecycle_stage";

/// The lifecycle stage of a customer whose first and last purchases were `since_first` and
/// `since_last` days before the reference date, with `purchase_days` distinct purchase days.
pub fn lifecycle_stage(since_first: i64, since_last: i64, purchase_days: usize) -> usize {
    if since_first <= 90 {
        0
    } else if since_last <= 90 {
        if purchase_days >= 5 {
            2
        } else {
            1
        }
    } else if since_last <= 365 {
        3
    } else {
        4
    }
}

/// Days since 1970-01-01 of a `YYYY-MM-DD` date (proleptic Gregorian), if valid.
pub fn day_number(date: &str) -> Option<i64> {
    let b = date.as_bytes();
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let y: i64 = date[..4].parse().ok()?;
    let m: i64 = date[5..7].parse().ok()?;
    let d: i64 = date[8..].parse().ok()?;
    let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    let days_in_month = [
        31,
        if leap { 29 } else { 28 },
        31,
        30,
        31,
        30,
        31,
        31,
        30,
        31,
        30,
        31,
    ];
    if !(1..=12).contains(&m) || d < 1 || d > days_in_month[(m - 1) as usize] {
        return None;
    }
    // Days from civil (Howard Hinnant's algorithm).
    let (y, m) = if m <= 2 { (y - 1, m + 9) } else { (y, m - 3) };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * m + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    Some(era * 146_097 + doe - 719_468)
}

#[derive(Default)]
struct Customer {
    first: i64,
    last: i64,
    days: BTreeSet<i64>,
    total: f64,
}

/// Reads a transaction log and returns one row per customer with the log-scaled RFM features,
/// plus the customer ids in row order (for the participant's local assignment file).
pub fn read_transactions(
    path: &Path,
    columns: &TransactionColumns,
    reference_date: &str,
) -> Result<(LocalTable, Vec<String>), TransactionError> {
    let reference = day_number(reference_date)
        .ok_or_else(|| TransactionError::BadReference(reference_date.to_owned()))?;
    let io = |source| TransactionError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut file = CsvFile::open(path)?;
    let (ci, di, ai) = (
        file.index(&columns.customer)?,
        file.index(&columns.date)?,
        file.index(&columns.amount)?,
    );
    let mut customers: BTreeMap<String, Customer> = BTreeMap::new();
    for record in file.reader.records() {
        let record = record.map_err(io)?;
        let line = record.position().map_or(0, |p| p.line());
        let bad = |column: &String, problem, value: &str| TransactionError::BadCell {
            path: path.to_path_buf(),
            line,
            column: column.clone(),
            problem,
            value: value.chars().take(40).collect(),
        };
        let customer = record.get(ci).unwrap_or("");
        if customer.is_empty() {
            return Err(bad(&columns.customer, "empty customer id", customer));
        }
        let date = record.get(di).unwrap_or("");
        let day =
            day_number(date).ok_or_else(|| bad(&columns.date, "not a YYYY-MM-DD date", date))?;
        if day > reference {
            return Err(bad(&columns.date, "after the job's reference date", date));
        }
        let amount_text = record.get(ai).unwrap_or("");
        let amount: f64 = amount_text
            .parse()
            .ok()
            .filter(|a: &f64| a.is_finite())
            .ok_or_else(|| bad(&columns.amount, "not a number", amount_text))?;
        if amount < 0.0 {
            return Err(bad(&columns.amount, "negative amount", amount_text));
        }
        let c = customers.entry(customer.to_owned()).or_default();
        c.last = if c.days.is_empty() {
            day
        } else {
            c.last.max(day)
        };
        c.days.insert(day);
        c.total += amount;
    }
    if customers.is_empty() {
        return Err(TransactionError::NoTransactions {
            path: path.to_path_buf(),
        });
    }
    let mut cols: Vec<Vec<Option<f64>>> = (0..3)
        .map(|_| Vec::with_capacity(customers.len()))
        .collect();
    let mut ids = Vec::with_capacity(customers.len());
    let mut stage = Vec::with_capacity(customers.len());
    for (id, c) in &customers {
        let rfm = [(reference - c.last) as f64, c.days.len() as f64, c.total];
        for (col, v) in cols.iter_mut().zip(rfm) {
            col.push(Some(v.ln_1p()));
        }
        stage.push(Some(
            lifecycle_stage(reference - c.first, reference - c.last, c.days.len()) as f64,
        ));
        ids.push(id.clone());
    }
    let mut columns: BTreeMap<String, Vec<Option<f64>>> = RFM_FEATURES
        .iter()
        .map(|f| (*f).to_owned())
        .zip(cols)
        .collect();
    columns.insert(LIFECYCLE_COLUMN.to_owned(), stage);
    let table = LocalTable {
        columns,
        rows: customers.len(),
    };
    Ok((table, ids))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn columns() -> TransactionColumns {
        TransactionColumns {
            customer: "customer_id".into(),
            date: "date".into(),
            amount: "amount".into(),
        }
    }

    fn write(text: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("tx.csv");
        std::fs::write(&path, text).expect("write");
        (dir, path)
    }

    #[test]
    fn dates_count_days() {
        assert_eq!(day_number("1970-01-01"), Some(0));
        assert_eq!(
            day_number("1998-07-01").map(|d| d - day_number("1998-06-30").unwrap_or(0)),
            Some(1)
        );
        assert!(day_number("2000-02-29").is_some());
        assert_eq!(day_number("1999-02-29"), None);
        assert_eq!(day_number("1998-13-01"), None);
    }

    #[test]
    fn lifecycle_stages() {
        assert_eq!(lifecycle_stage(30, 10, 1), 0); // new
        assert_eq!(lifecycle_stage(400, 10, 2), 1); // active
        assert_eq!(lifecycle_stage(400, 10, 9), 2); // loyal
        assert_eq!(lifecycle_stage(400, 200, 9), 3); // at risk
        assert_eq!(lifecycle_stage(800, 500, 9), 4); // churned
    }

    #[test]
    fn rfm_per_customer() {
        let (_d, path) = write("customer_id,date,quantity,amount\nA,1998-06-01,1,10\nA,1998-06-01,2,5\nA,1998-06-21,1,15\nB,1998-01-01,1,100\n");
        let (t, ids) = read_transactions(&path, &columns(), "1998-07-01").expect("read");
        assert_eq!(ids, vec!["A", "B"]);
        let r = |c: &str, i: usize| {
            t.columns[c][i]
                .map(f64::exp_m1)
                .map(|v| (v * 1e6).round() / 1e6)
        };
        assert_eq!(
            (
                r("log_recency", 0),
                r("log_frequency", 0),
                r("log_monetary", 0)
            ),
            (Some(10.0), Some(2.0), Some(30.0))
        );
        assert_eq!(r("log_recency", 1), Some(181.0));
    }

    #[test]
    fn bad_input_names_file_line_and_column() {
        let cases = [
            (
                "customer_id,date,amount\nA,1998-06-01,-3\n",
                "line 2, column 'amount': negative amount",
            ),
            (
                "customer_id,date,amount\nA,1998-06-01,10\nB,98-6-1,3\n",
                "line 3, column 'date': not a YYYY-MM-DD date",
            ),
            (
                "customer_id,date,amount\nA,1998-06-01,ten\n",
                "column 'amount': not a number",
            ),
            ("customer_id,date\nA,1998-06-01\n", "no column 'amount'"),
            (
                "customer_id,date,amount,amount\nA,1998-06-01,1,1\n",
                "'amount' appears twice",
            ),
            ("customer_id,date,amount\n", "no transactions"),
            ("", "no header"),
        ];
        for (text, expected) in cases {
            let (_d, path) = write(text);
            let err = read_transactions(&path, &columns(), "1998-07-01").expect_err(expected);
            let message = err.to_string();
            assert!(
                message.contains("tx.csv") && message.contains(expected),
                "{message} / {expected}"
            );
        }
    }
}
