//! The exported propensity model (`model.json`): a documented JSON format other tools can read.
//!
//! ```json
//! { "format": "fedbank.propensity.v1", "job": "...", "label": "churn", "positive": "Yes",
//!   "negative": "No", "id_column": "rownames",
//!   "numeric": [{"name": "tenure", "min": 0, "max": 100, "mean": 32.4, "std": 24.6}],
//!   "categorical": [{"name": "contract", "levels": ["Month-to-month", "One year", "Two year"],
//!                    "other": false}],
//!   "coefficients": [{"name": "intercept", "value": -1.2}, {"name": "tenure", "value": -0.9},
//!                    {"name": "contract=One year", "value": -0.7}, ...] }
//! ```
//!
//! A customer's score is σ(Σ value·x) with x = 1 for the intercept; for a numeric feature
//! x = (clamp(v, min, max) − mean) / std, clamped to ±[`Z_BOUND`] (0 when the value is missing:
//! missing values are imputed with the consortium mean); for a categorical column x = 1 on the
//! coefficient of the customer's level (the first level is the reference and has none; a level
//! not in the list uses `other` when enabled and is an error otherwise).

use super::CategoricalSpec;
use crate::job::{FeatureSpec, Z_BOUND};
use crate::logistic::sigmoid;
use serde::{Deserialize, Serialize};

/// Identifies the format.
pub const MODEL_FORMAT: &str = "fedbank.propensity.v1";

/// A numeric feature's encoding.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NumericEncoding {
    /// Column.
    pub name: String,
    /// Values below are raised to this.
    pub min: f64,
    /// Values above are lowered to this.
    pub max: f64,
    /// Consortium mean (also the imputed value).
    pub mean: f64,
    /// Consortium standard deviation (0: the feature is constant and contributes nothing).
    pub std: f64,
}

/// A categorical column's encoding.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CategoricalEncoding {
    /// Column.
    pub name: String,
    /// Levels; the first is the reference.
    pub levels: Vec<String>,
    /// Whether unlisted levels map to an `other` coefficient.
    pub other: bool,
}

/// One coefficient.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Coefficient {
    /// `intercept`, a numeric feature, or `column=level`.
    pub name: String,
    /// The coefficient on the log-odds scale.
    pub value: f64,
}

/// The model file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PropensityModel {
    /// [`MODEL_FORMAT`].
    pub format: String,
    /// The job that trained it.
    pub job: String,
    /// Label column.
    pub label: String,
    /// Positive label value.
    pub positive: String,
    /// Negative label value.
    pub negative: String,
    /// Customer id column, kept in target lists.
    pub id_column: Option<String>,
    /// Numeric features, in coefficient order.
    pub numeric: Vec<NumericEncoding>,
    /// Categorical columns, in coefficient order.
    pub categorical: Vec<CategoricalEncoding>,
    /// Coefficients: intercept, numeric, then categorical levels.
    pub coefficients: Vec<Coefficient>,
}

/// Why a model file cannot be used.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ModelError {
    /// Another format.
    #[error("format '{0}' is not {MODEL_FORMAT}")]
    Format(String),
    /// The coefficients do not match the encodings.
    #[error("{got} coefficients, the encodings need {expected}")]
    Shape {
        /// Needed.
        expected: usize,
        /// Given.
        got: usize,
    },
    /// A number is not finite or a std is negative.
    #[error("'{0}' is not a finite number (or a negative std)")]
    NotFinite(String),
}

impl PropensityModel {
    /// Checks the format, the shapes and the numbers.
    pub fn validate(&self) -> Result<(), ModelError> {
        if self.format != MODEL_FORMAT {
            return Err(ModelError::Format(self.format.clone()));
        }
        let expected = 1
            + self.numeric.len()
            + self
                .categorical
                .iter()
                .map(|c| c.levels.len().saturating_sub(1) + usize::from(c.other))
                .sum::<usize>();
        if self.coefficients.len() != expected {
            return Err(ModelError::Shape {
                expected,
                got: self.coefficients.len(),
            });
        }
        for n in &self.numeric {
            if ![n.min, n.max, n.mean, n.std].iter().all(|v| v.is_finite()) || n.std < 0.0 {
                return Err(ModelError::NotFinite(n.name.clone()));
            }
        }
        if let Some(c) = self.coefficients.iter().find(|c| !c.value.is_finite()) {
            return Err(ModelError::NotFinite(c.name.clone()));
        }
        Ok(())
    }

    /// The encodings of a job's features and categorical columns with these statistics.
    pub fn encodings(
        features: &[FeatureSpec],
        mean: &[f64],
        std: &[f64],
        categorical: &[CategoricalSpec],
        other: bool,
    ) -> (Vec<NumericEncoding>, Vec<CategoricalEncoding>) {
        (
            features
                .iter()
                .zip(mean.iter().zip(std))
                .map(|(f, (&mean, &std))| NumericEncoding {
                    name: f.name.clone(),
                    min: f.lower(),
                    max: f.bound,
                    mean,
                    std,
                })
                .collect(),
            categorical
                .iter()
                .map(|c| CategoricalEncoding {
                    name: c.name.clone(),
                    levels: c.levels.clone(),
                    other,
                })
                .collect(),
        )
    }

    /// The coefficient values, intercept first.
    pub fn beta(&self) -> Vec<f64> {
        self.coefficients.iter().map(|c| c.value).collect()
    }

    /// The probability of the positive class for a customer.
    pub fn score(&self, numeric: &[Option<f64>], levels: &[usize]) -> f64 {
        let x = design_row(&self.numeric, &self.categorical, numeric, levels);
        sigmoid(
            x.iter()
                .zip(&self.coefficients)
                .map(|(a, c)| a * c.value)
                .sum(),
        )
    }
}

/// The design vector of a customer: 1, standardized numeric values (0 when missing), one-hot
/// categorical levels. `levels[c]` is the index of the customer's level in column c's list, or
/// the list's length for `other`.
pub fn design_row(
    numeric: &[NumericEncoding],
    categorical: &[CategoricalEncoding],
    values: &[Option<f64>],
    levels: &[usize],
) -> Vec<f64> {
    let mut x = Vec::with_capacity(1 + numeric.len() + 4 * categorical.len());
    x.push(1.0);
    for (n, v) in numeric.iter().zip(values) {
        x.push(match v {
            Some(v) if n.std > 0.0 => {
                ((v.clamp(n.min, n.max) - n.mean) / n.std).clamp(-Z_BOUND, Z_BOUND)
            }
            _ => 0.0,
        });
    }
    for (c, &level) in categorical.iter().zip(levels) {
        let width = c.levels.len().saturating_sub(1) + usize::from(c.other);
        let start = x.len();
        x.resize(start + width, 0.0);
        // Level 0 is the reference; level i ≥ 1 sits at i − 1; `other` is last.
        if level >= 1 && level - 1 < width {
            x[start + level - 1] = 1.0;
        }
    }
    x
}
