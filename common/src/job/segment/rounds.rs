//! The segment job's rounds as typed records: [`SegmentRound`] is read from and written to a
//! [`JobRound`] (tag and canonical parameters), and [`SegmentRelease`] is what participants
//! receive at the end.

use super::{
    HISTOGRAM_TAG, KMEANS_TAG, LATEST_DAY_TAG, LATEST_MONTH_TAG, LIFECYCLE_TAG, MOMENTS_TAG,
    SCORES_TAG,
};
use crate::job::{JobRound, RoundParameterError};
use serde::{Deserialize, Serialize};

/// Parameters of the histogram round.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Binned {
    /// The day the rows are counted to (transaction-log jobs).
    pub reference_day: Option<i64>,
    /// Inner edges per feature, in feature order (bins + 1 each).
    pub edges: Vec<Vec<f64>>,
}

/// Parameters of a Lloyd iteration.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Lloyd {
    /// The day the rows are counted to (transaction-log jobs).
    pub reference_day: Option<i64>,
    /// Mean per feature, for standardization.
    pub mean: Vec<f64>,
    /// Standard deviation per feature.
    pub std: Vec<f64>,
    /// Current centroids, standardized.
    pub centroids: Vec<Vec<f64>>,
}

/// Parameters of the RFM-score round.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Scoring {
    /// The day the rows are counted to.
    pub reference_day: Option<i64>,
    /// Mean per feature, for standardization.
    pub mean: Vec<f64>,
    /// Standard deviation per feature.
    pub std: Vec<f64>,
    /// Final centroids, standardized.
    pub centroids: Vec<Vec<f64>>,
    /// Four quintile edges per feature (20, 40, 60 and 80 %).
    pub quintiles: Vec<Vec<f64>>,
}

#[derive(Serialize, Deserialize)]
struct Month {
    month: i64,
}

#[derive(Serialize, Deserialize)]
struct Reference {
    reference_day: Option<i64>,
}

/// A round of the segment job.
#[derive(Clone, Debug, PartialEq)]
pub enum SegmentRound {
    /// Presence per month since 1970-01 (1970-01 to 2099-12): set by a participant whose latest
    /// purchase is in that month or later. The aggregate reveals the consortium's latest month.
    LatestMonth,
    /// Presence per day of month `month` (months since 1970-01): set by a participant whose
    /// latest purchase is on that day or later.
    LatestDay {
        /// The consortium's latest month, from the previous round.
        month: i64,
    },
    /// Count, missing count, sum and sum of squares per feature.
    Moments {
        /// The day the rows are counted to (transaction-log jobs).
        reference_day: Option<i64>,
    },
    /// Counts per histogram bin.
    Histogram(Binned),
    /// One Lloyd iteration: assign each customer's standardized row to the nearest centroid and
    /// sum per segment (count, feature sums and squares, inertia, silhouettes).
    KMeans(Lloyd),
    /// Customers per lifecycle stage.
    Lifecycle {
        /// The day the rows are counted to.
        reference_day: Option<i64>,
    },
    /// Sum of each segment's RFM 1–5 scores against the consortium quintiles (recency
    /// reversed: recent is 5).
    Scores(Scoring),
}

impl SegmentRound {
    /// The round a [`JobRound`] carries; the problem otherwise.
    pub fn parse(round: &JobRound) -> Result<Self, String> {
        let text = |e: RoundParameterError| e.to_string();
        Ok(match round.tag {
            LATEST_MONTH_TAG => {
                round.parameters::<()>().map_err(text)?;
                SegmentRound::LatestMonth
            }
            LATEST_DAY_TAG => {
                let Month { month } = round.parameters().map_err(text)?;
                if !(0..crate::calendar::MONTHS as i64).contains(&month) {
                    return Err(format!("month {month} is outside 1970-01 to 2099-12"));
                }
                SegmentRound::LatestDay { month }
            }
            MOMENTS_TAG => {
                let Reference { reference_day } = round.parameters().map_err(text)?;
                SegmentRound::Moments { reference_day }
            }
            HISTOGRAM_TAG => SegmentRound::Histogram(round.parameters().map_err(text)?),
            KMEANS_TAG => SegmentRound::KMeans(round.parameters().map_err(text)?),
            LIFECYCLE_TAG => {
                let Reference { reference_day } = round.parameters().map_err(text)?;
                SegmentRound::Lifecycle { reference_day }
            }
            SCORES_TAG => SegmentRound::Scores(round.parameters().map_err(text)?),
            other => return Err(format!("tag {other} is not a round of a segment job")),
        })
    }

    /// The round as a [`JobRound`].
    pub fn to_round(&self) -> Result<JobRound, RoundParameterError> {
        match self {
            SegmentRound::LatestMonth => JobRound::new(LATEST_MONTH_TAG, &()),
            SegmentRound::LatestDay { month } => {
                JobRound::new(LATEST_DAY_TAG, &Month { month: *month })
            }
            SegmentRound::Moments { reference_day } => JobRound::new(
                MOMENTS_TAG,
                &Reference {
                    reference_day: *reference_day,
                },
            ),
            SegmentRound::Histogram(p) => JobRound::new(HISTOGRAM_TAG, p),
            SegmentRound::KMeans(p) => JobRound::new(KMEANS_TAG, p),
            SegmentRound::Lifecycle { reference_day } => JobRound::new(
                LIFECYCLE_TAG,
                &Reference {
                    reference_day: *reference_day,
                },
            ),
            SegmentRound::Scores(p) => JobRound::new(SCORES_TAG, p),
        }
    }

    /// The day the round's rows are counted to, if it names one.
    pub fn reference_day(&self) -> Option<i64> {
        match self {
            SegmentRound::LatestMonth | SegmentRound::LatestDay { .. } => None,
            SegmentRound::Moments { reference_day } | SegmentRound::Lifecycle { reference_day } => {
                *reference_day
            }
            SegmentRound::Histogram(p) => p.reference_day,
            SegmentRound::KMeans(p) => p.reference_day,
            SegmentRound::Scores(p) => p.reference_day,
        }
    }
}

/// What participants receive at the end of a segment job: enough to assign their own customers
/// to the released segments, locally.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SegmentRelease {
    /// The day the rows are counted to (transaction-log jobs).
    pub reference_day: Option<i64>,
    /// Standardization mean per feature.
    pub mean: Vec<f64>,
    /// Standardization deviation per feature.
    pub std: Vec<f64>,
    /// Released centroids, standardized.
    pub centroids: Vec<Vec<f64>>,
    /// Their labels.
    pub labels: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_round_reads_back_as_written() {
        let rounds = [
            SegmentRound::LatestMonth,
            SegmentRound::LatestDay { month: 340 },
            SegmentRound::Moments {
                reference_day: Some(10_000),
            },
            SegmentRound::Histogram(Binned {
                reference_day: None,
                edges: vec![vec![1.0, 2.0]],
            }),
            SegmentRound::KMeans(Lloyd {
                reference_day: Some(3),
                mean: vec![1.0],
                std: vec![2.0],
                centroids: vec![vec![0.5], vec![-0.5]],
            }),
            SegmentRound::Lifecycle {
                reference_day: Some(4),
            },
            SegmentRound::Scores(Scoring {
                reference_day: Some(4),
                mean: vec![1.0],
                std: vec![2.0],
                centroids: vec![vec![0.5]],
                quintiles: vec![vec![1.0, 2.0, 3.0, 4.0]],
            }),
        ];
        for round in rounds {
            let wire = round.to_round().expect("encode");
            assert_eq!(SegmentRound::parse(&wire).expect("decode"), round);
        }
    }

    #[test]
    fn a_month_outside_the_calendar_and_a_foreign_tag_are_refused() {
        let far = JobRound::new(LATEST_DAY_TAG, &Month { month: 5000 }).expect("encode");
        assert!(SegmentRound::parse(&far)
            .expect_err("month")
            .contains("outside"));
        let foreign = JobRound::new(crate::job::RoundTag(0x0101), &()).expect("encode");
        assert!(SegmentRound::parse(&foreign)
            .expect_err("tag")
            .contains("not a round of a segment job"));
    }
}
