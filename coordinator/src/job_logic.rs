//! What the coordinator computes between rounds, per job kind.

use crate::segment::{SegmentJob, SegmentResult};
use crate::stats::{FeatureStats, StatsJob};
use fedbank_common::encoding::DecodedQuantity;
use fedbank_common::job::{JobKind, RoundKind, ValidJob};
use serde::Serialize;

/// A finished job's result.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(untagged)]
pub enum JobResult {
    /// Per-feature statistics.
    Stats(Vec<FeatureStats>),
    /// Segments.
    Segment(Box<SegmentResult>),
}

/// The job-kind-specific logic.
#[derive(Debug, Clone)]
pub enum JobLogic {
    /// The stats job.
    Stats(StatsJob),
    /// The segment job.
    Segment(Box<SegmentJob>),
}

impl JobLogic {
    /// The logic for `job`.
    pub fn new(job: &ValidJob) -> Self {
        let spec = job.spec();
        match (spec.kind, job.segment()) {
            (JobKind::Segment, Some(segment)) => JobLogic::Segment(Box::new(SegmentJob::new(
                spec.features.clone(),
                segment.clone(),
                spec.histogram_bins,
            ))),
            _ => JobLogic::Stats(StatsJob::new(spec.features.clone(), spec.histogram_bins)),
        }
    }

    /// The job's first round.
    pub fn first_round(&self) -> RoundKind {
        match self {
            JobLogic::Stats(j) => j.first_round(),
            JobLogic::Segment(j) => j.first_round(),
        }
    }

    /// Takes a round's aggregate; the next round, `None` when done, or why it cannot go on.
    pub fn apply(
        &mut self,
        kind: &RoundKind,
        decoded: &[DecodedQuantity],
    ) -> Result<Option<RoundKind>, String> {
        match self {
            JobLogic::Stats(j) => j.apply(kind, decoded).map_err(|e| e.to_string()),
            JobLogic::Segment(j) => j.apply(kind, decoded).map_err(|e| e.to_string()),
        }
    }

    /// The reference day participants count recency to, once the job has one.
    pub fn reference_day(&self) -> Option<i64> {
        match self {
            JobLogic::Stats(_) => None,
            JobLogic::Segment(j) => j.reference_day(),
        }
    }

    /// The result, once done.
    pub fn result(&self) -> Option<JobResult> {
        match self {
            JobLogic::Stats(j) => j.result().map(|r| JobResult::Stats(r.to_vec())),
            JobLogic::Segment(j) => j.result().cloned().map(|r| JobResult::Segment(Box::new(r))),
        }
    }
}
