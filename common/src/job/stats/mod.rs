//! The stats job, in one folder behind [`Job`]: per feature the consortium's count, missing
//! rate, mean, standard deviation, histogram and approximate quantiles.
//!
//! Two rounds:
//!
//! - `moments` (tag 0x0101): per feature count, missing count, sum and sum of squares;
//! - `histogram` (tag 0x0102, parameters: the edges): per feature counts in fixed bins over the
//!   consortium mean ± [`EDGE_SIGMAS`] standard deviations.
//!
//! - this file: the kind, its rounds and quantities;
//! - `local`: a participant's step over its own table (also used by the segment and propensity
//!   jobs for their own moments and histogram rounds);
//! - `step`: the coordinator's step and the released [`StatsResult`].

mod local;
mod step;

pub use local::{histogram, moments, TableRoundError};
pub use step::{
    histogram_edges, mean_std, quantile, FeatureStats, StatsError, StatsJob, StatsResult,
    EDGE_SIGMAS, QUANTILES,
};

use super::{
    CoordinatorStep, Job, JobRound, JobSpec, LocalColumns, LocalValues, RoundDecl, RoundKind,
    RoundTag, ValidJob, HISTOGRAM, MOMENTS,
};
use crate::encoding::QuantitySpec;
use serde::{Deserialize, Serialize};

/// The kind's name in job files.
pub const KIND: &str = "stats";
/// The moments round.
pub const MOMENTS_TAG: RoundTag = RoundTag(0x0101);
/// The histogram round.
pub const HISTOGRAM_TAG: RoundTag = RoundTag(0x0102);

const ROUNDS: &[RoundDecl] = &[
    RoundDecl {
        tag: MOMENTS_TAG,
        label: MOMENTS,
    },
    RoundDecl {
        tag: HISTOGRAM_TAG,
        label: HISTOGRAM,
    },
];

/// Parameters of the histogram round.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Edges {
    /// Inner edges per feature, in feature order (bins + 1 each).
    pub edges: Vec<Vec<f64>>,
}

/// The stats job kind.
pub struct Stats;

/// The stats job's moments round.
pub fn moments_round() -> RoundKind {
    RoundKind::Registered(JobRound {
        tag: MOMENTS_TAG,
        parameters: Vec::new(),
    })
}

/// The stats job's histogram round with these edges.
pub fn histogram_round(edges: Vec<Vec<f64>>) -> Result<RoundKind, super::RoundParameterError> {
    JobRound::new(HISTOGRAM_TAG, &Edges { edges }).map(RoundKind::Registered)
}

impl Job for Stats {
    fn kind(&self) -> &'static str {
        KIND
    }

    fn rounds(&self) -> &'static [RoundDecl] {
        ROUNDS
    }

    /// The stats job has no section of its own: the shared checks (features, bounds, bins,
    /// other kinds' sections refused) are all it needs.
    fn validate(&self, _spec: &JobSpec) -> Result<(), String> {
        Ok(())
    }

    fn quantities(&self, job: &ValidJob, round: &JobRound) -> Result<Vec<QuantitySpec>, String> {
        match round.tag {
            MOMENTS_TAG => {
                round.parameters::<()>().map_err(|e| e.to_string())?;
                Ok(job.moments_quantities())
            }
            HISTOGRAM_TAG => {
                let Edges { edges } = round.parameters().map_err(|e| e.to_string())?;
                let features = job.spec().features.len();
                let bins = job.spec().histogram_bins + 1;
                if edges.len() != features || edges.iter().any(|e| e.len() != bins) {
                    return Err(format!(
                        "{} edge lists for {features} features of {bins} edges each",
                        edges.len()
                    ));
                }
                Ok(job.histogram_quantities())
            }
            other => Err(format!("tag {other} is not a round of a stats job")),
        }
    }

    fn widest_rounds(&self, job: &ValidJob) -> Vec<JobRound> {
        let spec = job.spec();
        let edges = vec![vec![0.0; spec.histogram_bins + 1]; spec.features.len()];
        [
            moments_round(),
            histogram_round(edges).unwrap_or_else(|_| moments_round()),
        ]
        .into_iter()
        .filter_map(|r| r.registered().cloned())
        .collect()
    }

    fn planned_rounds(&self, _: &ValidJob) -> u32 {
        2
    }

    fn coordinator(&self, job: &ValidJob) -> Box<dyn CoordinatorStep> {
        let spec = job.spec();
        Box::new(StatsJob::new(spec.features.clone(), spec.histogram_bins))
    }

    fn local_round(
        &self,
        job: &ValidJob,
        table: LocalColumns<'_>,
        round: &JobRound,
    ) -> Result<LocalValues, String> {
        let spec = job.spec();
        match round.tag {
            MOMENTS_TAG => moments(table, &spec.features),
            HISTOGRAM_TAG => {
                let Edges { edges } = round.parameters().map_err(|e| e.to_string())?;
                histogram(table, &spec.features, &edges)
            }
            other => return Err(format!("tag {other} is not a round of a stats job")),
        }
        .map_err(|e| e.to_string())
    }

    fn check_result(&self, result: &serde_json::Value) -> Result<(), String> {
        StatsResult::deserialize(result)
            .map(|_| ())
            .map_err(|e| e.to_string())
    }
}
