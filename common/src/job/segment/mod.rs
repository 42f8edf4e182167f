//! The segment job, in one folder behind [`Job`]: customer segments by federated Lloyd k-means
//! over a customer table or over RFM rows built from each participant's transaction log, with
//! a reference date found from presence rounds, consortium quintiles, splitting initialization,
//! the choice of k, k-anonymity and lifecycle stages.
//!
//! Its rounds and their wire tags (parameters in brackets):
//!
//! | tag      | round          | what each participant sends                                  |
//! |----------|----------------|--------------------------------------------------------------|
//! | `0x0210` | `latest_month` | presence per month up to its latest purchase                  |
//! | `0x0211` | `latest_day`   | presence per day of \[the month\] up to its latest purchase   |
//! | `0x0212` | `moments`      | per feature count, missing, sum, sum of squares              |
//! | `0x0213` | `histogram`    | per feature counts in \[edges\] (for the RFM quintiles)        |
//! | `0x0214` | `kmeans`       | per segment of \[centroids\]: count, sums, squares; inertia   |
//! | `0x0215` | `lifecycle`    | customers per lifecycle stage                                 |
//! | `0x0216` | `scores`       | per segment the sums of RFM 1–5 scores against \[quintiles\]  |
//!
//! (Tags `0x0201`–`0x0205` were the segment rounds of the protocol's round enum up to version
//! 7; they are retired, never reused.) Every round after the reference date carries it, so that the computation digest each
//! participant signs names the day its rows are counted to, and a participant refuses a round
//! counted to another day than the one it used before.
//!
//! - `spec`: the `[job.segment]` table and its checks;
//! - `rounds`: the rounds' parameter records ([`SegmentRound`]);
//! - `local`: a participant's step (presence, RFM rows from its log, Lloyd sums, scores, the
//!   local assignment of its customers to the released segments);
//! - `step`: the coordinator's step ([`SegmentJob`]) and the released [`SegmentResult`];
//! - `labels`: segment names a marketer reads;
//! - `report`: the human report (`report.md`, `segments.svg`).
//!
//! Reading a transaction log from a file is the participant's (a data source); this job reads it
//! through [`super::TransactionLog`].

mod labels;
mod local;
mod report;
mod rounds;
mod spec;
mod step;

pub use labels::{profile_label, rfm_label};
pub use local::{
    latest_purchase_presence, lifecycle_stage, nearest, nearest_two, rfm_score,
    simplified_silhouette, standardize, table_round, SegmentParticipant, LIFECYCLE_COLUMN,
};
pub use rounds::{Binned, Lloyd, Scoring, SegmentRelease, SegmentRound};
pub use spec::*;
pub use step::{
    choose_k, KCandidate, KSelection, Segment, SegmentError, SegmentJob, SegmentResult,
};

use super::{
    CoordinatorStep, Job, JobRound, JobSpec, ParticipantStep, RoundDecl, RoundTag, ValidJob,
    HISTOGRAM, MOMENTS, RFM_FEATURES, Z_BOUND, Z_SCALE,
};
use crate::encoding::QuantitySpec;
use serde::Deserialize;

/// The kind's name in job files.
pub const KIND: &str = "segment";

/// The first reference-date round.
pub const LATEST_MONTH_TAG: RoundTag = RoundTag(0x0210);
/// The second reference-date round.
pub const LATEST_DAY_TAG: RoundTag = RoundTag(0x0211);
/// The moments round (standardization).
pub const MOMENTS_TAG: RoundTag = RoundTag(0x0212);
/// The histogram round (RFM quintiles).
pub const HISTOGRAM_TAG: RoundTag = RoundTag(0x0213);
/// A Lloyd iteration.
pub const KMEANS_TAG: RoundTag = RoundTag(0x0214);
/// The lifecycle round.
pub const LIFECYCLE_TAG: RoundTag = RoundTag(0x0215);
/// The RFM-score round.
pub const SCORES_TAG: RoundTag = RoundTag(0x0216);

/// Round label of a Lloyd iteration.
pub const KMEANS: &str = "kmeans";
/// Round label of the RFM-score round.
pub const SCORES: &str = "scores";
/// Round label of the first reference-date round: in which months (since 1970-01) has anyone
/// bought on or after that month.
pub const LATEST_MONTH: &str = "latest_month";
/// Round label of the second reference-date round: on which days of the latest month has anyone
/// bought on or after that day.
pub const LATEST_DAY: &str = "latest_day";
/// Round label of the lifecycle round.
pub const LIFECYCLE: &str = "lifecycle";
/// Lifecycle stages, from a customer's first and last purchase and purchase days, relative to
/// the reference date: `new` (first purchase within 90 days), `active` (last purchase within
/// 90 days, fewer than 5 purchase days), `loyal` (last within 90 days, 5 or more purchase days),
/// `at risk` (last purchase 91 to 365 days ago), `churned` (more than 365 days ago).
pub const LIFECYCLE_STAGES: [&str; 5] = ["new", "active", "loyal", "at risk", "churned"];

const ROUNDS: &[RoundDecl] = &[
    RoundDecl {
        tag: LATEST_MONTH_TAG,
        label: LATEST_MONTH,
    },
    RoundDecl {
        tag: LATEST_DAY_TAG,
        label: LATEST_DAY,
    },
    RoundDecl {
        tag: MOMENTS_TAG,
        label: MOMENTS,
    },
    RoundDecl {
        tag: HISTOGRAM_TAG,
        label: HISTOGRAM,
    },
    RoundDecl {
        tag: KMEANS_TAG,
        label: KMEANS,
    },
    RoundDecl {
        tag: LIFECYCLE_TAG,
        label: LIFECYCLE,
    },
    RoundDecl {
        tag: SCORES_TAG,
        label: SCORES,
    },
];

/// The segment job kind.
pub struct SegmentKind;

/// The segment table of a job that validated as a segment job.
fn section(job: &ValidJob) -> Result<&SegmentSpec, String> {
    job.segment()
        .ok_or_else(|| "a segment job needs a [job.segment] table".to_owned())
}

impl Job for SegmentKind {
    fn kind(&self) -> &'static str {
        KIND
    }

    fn rounds(&self) -> &'static [RoundDecl] {
        ROUNDS
    }

    /// A job over customer tables never computes the transaction-log rounds (reference date,
    /// lifecycle, RFM scores).
    fn computes(&self, job: &ValidJob, tag: RoundTag) -> bool {
        let transactions = job.segment().is_some_and(|s| s.transactions.is_some());
        match tag {
            LATEST_MONTH_TAG | LATEST_DAY_TAG | LIFECYCLE_TAG | SCORES_TAG => transactions,
            other => ROUNDS.iter().any(|d| d.tag == other),
        }
    }

    fn validate(&self, spec: &JobSpec) -> Result<(), String> {
        let segment = spec
            .segment
            .as_ref()
            .ok_or_else(|| "a segment job needs a [job.segment] table".to_owned())?;
        segment
            .check(&spec.features)
            .map_err(|problem| format!("[job.segment]: {problem}"))
    }

    fn quantities(&self, job: &ValidJob, round: &JobRound) -> Result<Vec<QuantitySpec>, String> {
        let round = SegmentRound::parse(round)?;
        let spec = job.spec();
        let segment = section(job)?;
        let d = spec.features.len();
        let rows = spec.max_rows as f64;
        let check = |mean: &[f64], std: &[f64], centroids: &[Vec<f64>]| {
            let fits = mean.len() == d
                && std.len() == d
                && !centroids.is_empty()
                && centroids.len() <= segment.max_k()
                && centroids.iter().all(|c| c.len() == d);
            match fits {
                true => Ok(()),
                false => Err(format!(
                    "{} centroids with {} means for {d} features (at most {} segments)",
                    centroids.len(),
                    mean.len(),
                    segment.max_k()
                )),
            }
        };
        if round.reference_day().is_some() != segment.transactions.is_some()
            && !matches!(
                round,
                SegmentRound::LatestMonth | SegmentRound::LatestDay { .. }
            )
        {
            return Err(
                "a round is counted to a reference day exactly when the job reads transaction logs"
                    .to_owned(),
            );
        }
        Ok(match round {
            SegmentRound::LatestMonth | SegmentRound::LatestDay { .. }
                if segment.transactions.is_none() =>
            {
                return Err("a segment job over a customer table has no reference date".to_owned())
            }
            SegmentRound::LatestMonth => {
                vec![QuantitySpec::presence(
                    LATEST_MONTH,
                    crate::calendar::MONTHS,
                )]
            }
            SegmentRound::LatestDay { .. } => {
                vec![QuantitySpec::presence(
                    LATEST_DAY,
                    crate::calendar::MONTH_DAYS,
                )]
            }
            SegmentRound::Moments { .. } => job.moments_quantities(),
            SegmentRound::Histogram(Binned { edges, .. }) => {
                let bins = spec.histogram_bins + 1;
                if edges.len() != d || edges.iter().any(|e| e.len() != bins) {
                    return Err(format!(
                        "{} edge lists for {d} features of {bins} edges each",
                        edges.len()
                    ));
                }
                job.histogram_quantities()
            }
            SegmentRound::KMeans(Lloyd {
                mean,
                std,
                centroids,
                ..
            }) => {
                check(&mean, &std, &centroids)?;
                kmeans_quantities(job, centroids.len())
            }
            SegmentRound::Lifecycle { .. } => vec![QuantitySpec::new(
                "lifecycle.count",
                LIFECYCLE_STAGES.len(),
                rows,
                1.0,
            )],
            SegmentRound::Scores(Scoring {
                mean,
                std,
                centroids,
                quintiles,
                ..
            }) => {
                check(&mean, &std, &centroids)?;
                if quintiles.len() != d || quintiles.iter().any(|q| q.len() != 4) {
                    return Err(format!(
                        "{} quintile lists for {d} features",
                        quintiles.len()
                    ));
                }
                spec.features
                    .iter()
                    .map(|f| {
                        QuantitySpec::new(
                            format!("scores.{}", f.name),
                            centroids.len(),
                            rows * 5.0,
                            1.0,
                        )
                    })
                    .collect()
            }
        })
    }

    fn widest_rounds(&self, job: &ValidJob) -> Vec<JobRound> {
        let spec = job.spec();
        let Ok(segment) = section(job) else {
            return Vec::new();
        };
        let d = spec.features.len();
        let day = segment.transactions.as_ref().map(|_| 0);
        let zeros = vec![0.0; d];
        let centroids = vec![zeros.clone(); segment.max_k()];
        let mut rounds = vec![
            SegmentRound::Moments { reference_day: day },
            SegmentRound::Histogram(Binned {
                reference_day: day,
                edges: vec![vec![0.0; spec.histogram_bins + 1]; d],
            }),
            SegmentRound::KMeans(Lloyd {
                reference_day: day,
                mean: zeros.clone(),
                std: zeros.clone(),
                centroids: centroids.clone(),
            }),
        ];
        if day.is_some() {
            rounds.extend([
                SegmentRound::LatestMonth,
                SegmentRound::LatestDay { month: 0 },
                SegmentRound::Lifecycle { reference_day: day },
                SegmentRound::Scores(Scoring {
                    reference_day: day,
                    mean: zeros.clone(),
                    std: zeros,
                    centroids,
                    quintiles: vec![vec![0.0; 4]; d],
                }),
            ]);
        }
        rounds.iter().filter_map(|r| r.to_round().ok()).collect()
    }

    fn planned_rounds(&self, job: &ValidJob) -> u32 {
        let (iterations, ks) = job
            .segment()
            .map_or((0, 1), |s| (u64::from(s.max_iterations), s.max_k() as u64));
        // presence (2), moments, histogram, lifecycle, scores, and Lloyd rounds per k
        u32::try_from(6 + iterations * ks.max(1)).unwrap_or(u32::MAX)
    }

    fn coordinator(&self, job: &ValidJob) -> Box<dyn CoordinatorStep> {
        let spec = job.spec();
        let segment = job.segment().cloned().unwrap_or_else(SegmentSpec::empty);
        Box::new(SegmentJob::new(
            spec.features.clone(),
            segment,
            spec.histogram_bins,
        ))
    }

    fn participant(&self, job: &ValidJob) -> Box<dyn ParticipantStep> {
        Box::new(SegmentParticipant::new(job.clone()))
    }

    fn check_result(&self, result: &serde_json::Value) -> Result<(), String> {
        SegmentResult::deserialize(result)
            .map(|_| ())
            .map_err(|e| e.to_string())
    }

    fn report(
        &self,
        job: &ValidJob,
        result: &serde_json::Value,
        who: &super::ReportedInstitutions,
    ) -> Result<Vec<super::ReportFile>, String> {
        let result = SegmentResult::deserialize(result).map_err(|e| e.to_string())?;
        Ok(report::segment_report(job, &result, who))
    }
}

/// Quantities of a Lloyd iteration with `k` centroids: count per segment, sum and sum of
/// squares of each standardized feature per segment (the squares let the coordinator split the
/// widest segment), the total inertia, and the sum of the customers' simplified silhouettes.
pub fn kmeans_quantities(job: &ValidJob, k: usize) -> Vec<QuantitySpec> {
    let spec = job.spec();
    let rows = spec.max_rows as f64;
    let d = spec.features.len() as f64;
    let mut q = vec![QuantitySpec::new("kmeans.count", k, rows, 1.0)];
    for f in &spec.features {
        q.push(QuantitySpec::new(
            format!("kmeans.sum.{}", f.name),
            k,
            rows * Z_BOUND,
            Z_SCALE,
        ));
    }
    for f in &spec.features {
        q.push(QuantitySpec::new(
            format!("kmeans.sumsq.{}", f.name),
            k,
            rows * Z_BOUND * Z_BOUND,
            Z_SCALE,
        ));
    }
    q.push(QuantitySpec::new(
        "kmeans.inertia",
        1,
        rows * d * 4.0 * Z_BOUND * Z_BOUND,
        Z_SCALE,
    ));
    q.push(QuantitySpec::new("kmeans.silhouette", 1, rows, 1e9));
    q
}

/// Whether `features` are the RFM features, in order.
pub fn is_rfm(features: &[super::FeatureSpec]) -> bool {
    features.iter().map(|f| f.name.as_str()).eq(RFM_FEATURES)
}
