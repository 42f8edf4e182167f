//! RFM per customer from the participant's own transaction log: recency (days from the last
//! purchase to the reference date), frequency (distinct purchase days) and monetary (total
//! amount), each log-scaled as ln(1 + x). The log never leaves the participant.
//!
//! The log is streamed once into a [`CustomerHistory`] (first and last purchase day, purchase
//! days and total per customer). While reading, a customer's distinct purchase days are a bitmap
//! over the days between its first and last purchase, so memory follows customers × the log's
//! span, never the number of rows. The RFM table is built from it when the reference date is
//! known — from the job, or from the consortium's reference-date rounds, to which the history
//! contributes only presence indicators up to its latest purchase (the segment job's
//! `latest_purchase_presence`). The segment job reads it through
//! [`fedbank_common::job::TransactionLog`].
//!
//! Bad input stops the participant before anything is sent, with the file, line and column:
//! a missing column, a duplicate header, an empty file, an unparsable date or amount, a negative
//! amount, or a purchase after the reference date.

use crate::local_table::{CsvFile, LocalTable, TableError};
use fedbank_common::calendar::{self, day_number};
use fedbank_common::job::segment::{lifecycle_stage, LIFECYCLE_COLUMN};
use fedbank_common::job::{TableColumns, TransactionColumns, TransactionLog, RFM_FEATURES};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Why a transaction log could not be turned into RFM rows.
#[derive(Debug, thiserror::Error)]
pub enum TransactionError {
    /// The file cannot be read, its header is missing, too wide or repeats a name, a mapped
    /// column is missing, or a record or cell is over its limit.
    #[error(transparent)]
    Table(#[from] TableError),
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
    /// A purchase falls after the reference date.
    #[error("{path}, line {line}, column '{column}': purchase on {date}, after the reference date {reference}")]
    AfterReference {
        /// The file.
        path: PathBuf,
        /// Line of the latest purchase.
        line: u64,
        /// Date column.
        column: String,
        /// The purchase date.
        date: String,
        /// The reference date.
        reference: String,
    },
}

#[derive(Default)]
struct Reading {
    first: i64,
    last: i64,
    days: DaySet,
    total: f64,
}

/// Distinct days as a bitmap over 64-day words from `base` (a multiple of 64): a customer
/// with purchases over two years costs 12 words however many rows it has. A customer whose
/// purchases span more than `MAX_WORDS` words (about 11 years) moves to a set of days, so that
/// a log with far-apart dates costs memory per row, not per day of its span.
#[derive(Default)]
struct DaySet {
    base: i64,
    words: Vec<u64>,
    sparse: Option<std::collections::BTreeSet<i64>>,
}

impl DaySet {
    const MAX_WORDS: i64 = 64;

    fn insert(&mut self, day: i64) {
        if let Some(set) = &mut self.sparse {
            set.insert(day);
            return;
        }
        let word_of = |d: i64| d.div_euclid(64);
        if self.words.is_empty() {
            self.base = word_of(day) * 64;
            self.words.push(0);
        }
        let first_word = self.base / 64;
        let w = word_of(day);
        let last_word = first_word + self.words.len() as i64 - 1;
        if w.max(last_word) - w.min(first_word) >= Self::MAX_WORDS {
            let mut set = self.days();
            set.insert(day);
            self.words = Vec::new();
            self.sparse = Some(set);
            return;
        }
        if w < first_word {
            let grow = (first_word - w) as usize;
            self.words.splice(0..0, std::iter::repeat_n(0, grow));
            self.base = w * 64;
        } else if w > last_word {
            self.words.resize((w - first_word + 1) as usize, 0);
        }
        let offset = (day - self.base) as usize;
        self.words[offset / 64] |= 1 << (offset % 64);
    }

    fn days(&self) -> std::collections::BTreeSet<i64> {
        let mut set = std::collections::BTreeSet::new();
        for (i, word) in self.words.iter().enumerate() {
            for bit in 0..64 {
                if word & (1 << bit) != 0 {
                    set.insert(self.base + 64 * i as i64 + bit);
                }
            }
        }
        set
    }

    fn len(&self) -> usize {
        match &self.sparse {
            Some(set) => set.len(),
            None => self.words.iter().map(|w| w.count_ones() as usize).sum(),
        }
    }
}

/// One customer's purchase history, summarized.
#[derive(Clone, Debug, PartialEq)]
pub struct CustomerSummary {
    /// Day number of the first purchase.
    pub first: i64,
    /// Day number of the last purchase.
    pub last: i64,
    /// Distinct purchase days.
    pub purchase_days: usize,
    /// Total amount.
    pub total: f64,
}

/// A participant's transaction log, summarized per customer (ids in sorted order).
#[derive(Clone, Debug, PartialEq)]
pub struct CustomerHistory {
    path: PathBuf,
    date_column: String,
    ids: Vec<String>,
    customers: Vec<CustomerSummary>,
    /// Day number and line of the latest purchase.
    latest: (i64, u64),
}

/// Reads a transaction log, streaming it once, into per-customer summaries.
pub fn read_transactions(
    path: &Path,
    columns: &TransactionColumns,
) -> Result<CustomerHistory, TransactionError> {
    let mut file = CsvFile::open(path)?;
    let (ci, di, ai) = (
        file.index(&columns.customer)?,
        file.index(&columns.date)?,
        file.index(&columns.amount)?,
    );
    let mut customers: BTreeMap<String, Reading> = BTreeMap::new();
    let mut latest = (i64::MIN, 0);
    let mut record = csv::StringRecord::new();
    while file.next_record(&mut record)? {
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
        let amount_text = record.get(ai).unwrap_or("");
        let amount: f64 = amount_text
            .parse()
            .ok()
            .filter(|a: &f64| a.is_finite())
            .ok_or_else(|| bad(&columns.amount, "not a number", amount_text))?;
        if amount < 0.0 {
            return Err(bad(&columns.amount, "negative amount", amount_text));
        }
        if day > latest.0 {
            latest = (day, line);
        }
        let c = match customers.get_mut(customer) {
            Some(c) => c,
            None => customers.entry(customer.to_owned()).or_insert(Reading {
                first: day,
                last: day,
                ..Reading::default()
            }),
        };
        c.first = c.first.min(day);
        c.last = c.last.max(day);
        c.days.insert(day);
        c.total += amount;
    }
    if customers.is_empty() {
        return Err(TransactionError::NoTransactions {
            path: path.to_path_buf(),
        });
    }
    let (ids, customers) = customers
        .into_iter()
        .map(|(id, c)| {
            (
                id,
                CustomerSummary {
                    first: c.first,
                    last: c.last,
                    purchase_days: c.days.len(),
                    total: c.total,
                },
            )
        })
        .unzip();
    Ok(CustomerHistory {
        path: path.to_path_buf(),
        date_column: columns.date.clone(),
        ids,
        customers,
        latest,
    })
}

impl CustomerHistory {
    /// Customer ids, in row order of [`CustomerHistory::rfm_table`].
    pub fn ids(&self) -> &[String] {
        &self.ids
    }

    /// Day number of the latest purchase in the log.
    pub fn latest_day(&self) -> i64 {
        self.latest.0
    }

    /// One row per customer with the log-scaled RFM features and the lifecycle stage, counted
    /// to `reference` (a day number); refused if any purchase falls after it.
    pub fn rfm_table(&self, reference: i64) -> Result<LocalTable, TransactionError> {
        if self.latest.0 > reference {
            return Err(TransactionError::AfterReference {
                path: self.path.clone(),
                line: self.latest.1,
                column: self.date_column.clone(),
                date: calendar::format_day(self.latest.0),
                reference: calendar::format_day(reference),
            });
        }
        let n = self.customers.len();
        let mut cols: Vec<Vec<Option<f64>>> = (0..3).map(|_| Vec::with_capacity(n)).collect();
        let mut stage = Vec::with_capacity(n);
        for c in &self.customers {
            let rfm = [(reference - c.last) as f64, c.purchase_days as f64, c.total];
            for (col, v) in cols.iter_mut().zip(rfm) {
                col.push(Some(v.ln_1p()));
            }
            stage.push(Some(lifecycle_stage(
                reference - c.first,
                reference - c.last,
                c.purchase_days,
            ) as f64));
        }
        let mut columns: BTreeMap<String, Vec<Option<f64>>> = RFM_FEATURES
            .iter()
            .map(|f| (*f).to_owned())
            .zip(cols)
            .collect();
        columns.insert(LIFECYCLE_COLUMN.to_owned(), stage);
        Ok(LocalTable { columns, rows: n })
    }
}

impl TransactionLog for CustomerHistory {
    fn latest_day(&self) -> i64 {
        CustomerHistory::latest_day(self)
    }

    fn rfm_table(&self, reference_day: i64) -> Result<TableColumns, String> {
        CustomerHistory::rfm_table(self, reference_day)
            .map(|t| TableColumns {
                rows: t.rows,
                columns: t.columns,
            })
            .map_err(|e| e.to_string())
    }

    fn ids(&self) -> &[String] {
        CustomerHistory::ids(self)
    }
}

#[cfg(test)]
mod day_set_tests {
    use super::DaySet;
    use std::collections::BTreeSet;

    proptest::proptest! {
        /// The bitmap counts exactly the distinct days a set does, in any order, across the
        /// epoch and far apart.
        #[test]
        fn counts_distinct_days_like_a_set(days in proptest::collection::vec(-3000i64..30000, 0..300), near in proptest::collection::vec(10_000i64..10_900, 0..300)) {
            let days: Vec<i64> = near.into_iter().chain(days).collect();
            let mut bitmap = DaySet::default();
            for &d in &days {
                bitmap.insert(d);
            }
            let set: BTreeSet<i64> = days.iter().copied().collect();
            proptest::prop_assert_eq!(bitmap.len(), set.len());
        }
    }
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

    fn read(path: &Path, reference: &str) -> Result<(LocalTable, Vec<String>), TransactionError> {
        let history = read_transactions(path, &columns())?;
        let table = history.rfm_table(day_number(reference).expect("date"))?;
        Ok((table, history.ids().to_vec()))
    }

    #[test]
    fn rfm_per_customer() {
        let (_d, path) = write("customer_id,date,quantity,amount\nA,1998-06-01,1,10\nA,1998-06-01,2,5\nA,1998-06-21,1,15\nB,1998-01-01,1,100\n");
        let (t, ids) = read(&path, "1998-07-01").expect("read");
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
            (
                "customer_id,date,amount\nA,1998-06-01,1\nB,1998-07-02,1\n",
                "line 3, column 'date': purchase on 1998-07-02, after the reference date 1998-07-01",
            ),
            ("", "no header"),
        ];
        for (text, expected) in cases {
            let (_d, path) = write(text);
            let err = read(&path, "1998-07-01").expect_err(expected);
            let message = err.to_string();
            assert!(
                message.contains("tx.csv") && message.contains(expected),
                "{message} / {expected}"
            );
        }
    }
}
