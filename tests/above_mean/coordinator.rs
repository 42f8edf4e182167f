//! The coordinator's step: the means from the totals, then the shares from the counts above.

use super::{Means, ABOVE, KIND, TOTALS};
use fedbank_common::encoding::DecodedQuantity;
use fedbank_common::job::{CoordinatorStep, FeatureSpec, JobRound};
use serde::{Deserialize, Serialize};

/// One feature's released figures.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AboveMeanFeature {
    /// Feature.
    pub name: String,
    /// Customers with a value.
    pub customers: f64,
    /// Their mean (after clipping to the declared range).
    pub mean: f64,
    /// Customers above the mean.
    pub above: f64,
    /// above / customers.
    pub share_above: f64,
}

/// The released result.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AboveMeanResult {
    /// Per feature, in feature order.
    pub features: Vec<AboveMeanFeature>,
}

/// The step's state between rounds.
#[derive(Clone, Debug)]
pub struct AboveMeanStep {
    features: Vec<FeatureSpec>,
    totals: Vec<(f64, f64)>,
    result: Option<AboveMeanResult>,
}

impl AboveMeanStep {
    /// A fresh step over `features`.
    pub fn new(features: Vec<FeatureSpec>) -> Self {
        AboveMeanStep {
            features,
            totals: Vec::new(),
            result: None,
        }
    }
}

fn find<'a>(decoded: &'a [DecodedQuantity], name: &str) -> Result<f64, String> {
    DecodedQuantity::find(decoded, name)
        .and_then(|v| v.first().copied())
        .ok_or_else(|| format!("the aggregate has no quantity '{name}'"))
}

impl CoordinatorStep for AboveMeanStep {
    fn first_round(&self) -> Result<JobRound, String> {
        JobRound::new(TOTALS, &()).map_err(|e| e.to_string())
    }

    fn apply(
        &mut self,
        round: &JobRound,
        decoded: &[DecodedQuantity],
        _contributors: usize,
    ) -> Result<Option<JobRound>, String> {
        match round.tag {
            TOTALS => {
                self.totals = self
                    .features
                    .iter()
                    .map(|f| {
                        Ok((
                            find(decoded, &format!("{}.n", f.name))?,
                            find(decoded, &format!("{}.sum", f.name))?,
                        ))
                    })
                    .collect::<Result<_, String>>()?;
                if let Some((f, _)) = self
                    .features
                    .iter()
                    .zip(&self.totals)
                    .find(|(_, t)| t.0 < 1.0)
                {
                    return Err(format!("feature {}: no customer has a value", f.name));
                }
                let means = self.totals.iter().map(|(n, sum)| sum / n).collect();
                JobRound::new(ABOVE, &Means { means })
                    .map(Some)
                    .map_err(|e| e.to_string())
            }
            ABOVE => {
                let Means { means } = round.parameters().map_err(|e| e.to_string())?;
                let features = self
                    .features
                    .iter()
                    .zip(&self.totals)
                    .zip(means)
                    .map(|((f, &(customers, _)), mean)| {
                        let above = find(decoded, &format!("{}.above", f.name))?;
                        Ok(AboveMeanFeature {
                            name: f.name.clone(),
                            customers,
                            mean,
                            above,
                            share_above: above / customers,
                        })
                    })
                    .collect::<Result<_, String>>()?;
                self.result = Some(AboveMeanResult { features });
                Ok(None)
            }
            other => Err(format!("tag {other} is not a round of an {KIND} job")),
        }
    }

    fn result(&self) -> Option<serde_json::Value> {
        self.result
            .as_ref()
            .and_then(|r| serde_json::to_value(r).ok())
    }

    fn boxed_clone(&self) -> Box<dyn CoordinatorStep> {
        Box::new(self.clone())
    }
}
