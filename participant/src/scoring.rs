//! A participant's campaign target list: its own customers scored with an exported propensity
//! model, ranked, never sent anywhere.

use crate::customers::{CustomerError, ModelColumns};
use crate::local_table::{CsvFile, TableError};
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
    let columns = ModelColumns::locate(
        &file,
        model.numeric.iter().map(|n| n.name.clone()),
        model.categorical.clone(),
        ("level not in the model (levels: ", ")"),
    )?;
    let id = model
        .id_column
        .as_deref()
        .map(|c| file.index(c))
        .transpose()?;
    let mut scored = Vec::new();
    let mut record = csv::StringRecord::new();
    while file.next_record(&mut record)? {
        let line = record.position().map_or(0, |p| p.line());
        let (values, levels) = columns.read(&record, path, line)?;
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
