//! A participant's campaign target list: its own customers scored with an exported propensity
//! model, ranked, never sent anywhere.

use crate::customers::CustomerError;
use crate::local_table::{numeric_cell, CsvFile, TableError};
use fedbank_common::model::PropensityModel;
use std::path::Path;

/// Scores every customer in the CSV at `path`: (id, probability of the positive class), highest
/// first (ties keep file order). Rows are named by the model's id column, or by their row
/// number when the model has none.
pub fn score_customers(
    model: &PropensityModel,
    path: &Path,
) -> Result<Vec<(String, f64)>, CustomerError> {
    let mut file = CsvFile::open(path)?;
    let numeric: Vec<usize> = model
        .numeric
        .iter()
        .map(|n| file.index(&n.name))
        .collect::<Result<_, _>>()?;
    let categorical: Vec<usize> = model
        .categorical
        .iter()
        .map(|c| file.index(&c.name))
        .collect::<Result<_, _>>()?;
    let id = model
        .id_column
        .as_deref()
        .map(|c| file.index(c))
        .transpose()?;
    let mut scored = Vec::new();
    let mut record = csv::StringRecord::new();
    while file
        .reader
        .read_record(&mut record)
        .map_err(|source| TableError::Io {
            path: path.to_path_buf(),
            source,
        })?
    {
        let line = record.position().map_or(0, |p| p.line());
        let bad = |column: &str, problem: String, value: &str| CustomerError::BadCell {
            path: path.to_path_buf(),
            line,
            column: column.to_owned(),
            problem,
            value: value.chars().take(40).collect(),
        };
        let mut values = Vec::with_capacity(numeric.len());
        for (n, &i) in model.numeric.iter().zip(&numeric) {
            let cell = record.get(i).unwrap_or("");
            values
                .push(numeric_cell(cell).map_err(|()| bad(&n.name, "not a number".into(), cell))?);
        }
        let mut levels = Vec::with_capacity(categorical.len());
        for (c, &i) in model.categorical.iter().zip(&categorical) {
            let cell = record.get(i).unwrap_or("");
            match c.levels.iter().position(|l| l == cell) {
                Some(level) => levels.push(level),
                None if c.other => levels.push(c.levels.len()),
                None => {
                    return Err(bad(
                        &c.name,
                        format!("level not in the model (levels: {})", c.levels.join(", ")),
                        cell,
                    ))
                }
            }
        }
        let name = match id {
            Some(i) => record.get(i).unwrap_or("").to_owned(),
            None => format!("{}", scored.len() + 1),
        };
        scored.push((name, model.score(&values, &levels)));
    }
    if scored.is_empty() {
        return Err(TableError::Empty {
            path: path.to_path_buf(),
            what: "no data rows",
        }
        .into());
    }
    scored.sort_by(|a, b| b.1.total_cmp(&a.1));
    Ok(scored)
}
