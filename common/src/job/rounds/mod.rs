//! What a round asks participants to compute ([`RoundKind`]) and the labels of its quantities.
//!
//! On the wire and in computation digests a round kind is a pair `(tag, parameters)` with an
//! explicit [`RoundTag`] per kind (`round_codec`), never the position of a variant in the enum:
//! a new kind takes a new tag and shifts no other kind's encoding.

mod round_codec;
pub use round_codec::RoundTag;

/// Round label of the moments round of the stats job.
pub const MOMENTS: &str = "moments";
/// Round label of the compliance round.
pub const COMPLIANCE: &str = "compliance";
/// Round label of the histogram round of the stats job.
pub const HISTOGRAM: &str = "histogram";
/// Round label of a Lloyd iteration of the segment job.
pub const KMEANS: &str = "kmeans";
/// Round label of the RFM-score round of a segment job over transactions.
pub const SCORES: &str = "scores";
/// Round label of the first reference-date round: in which months (since 1970-01) has anyone
/// bought on or after that month.
pub const LATEST_MONTH: &str = "latest_month";
/// Round label of the second reference-date round: on which days of the latest month has anyone
/// bought on or after that day.
pub const LATEST_DAY: &str = "latest_day";
/// Round label of the lifecycle round of a segment job over transactions.
pub const LIFECYCLE: &str = "lifecycle";
/// Lifecycle stages, from a customer's first and last purchase and purchase days, relative to
/// the reference date: `new` (first purchase within 90 days), `active` (last purchase within
/// 90 days, fewer than 5 purchase days), `loyal` (last within 90 days, 5 or more purchase days),
/// `at risk` (last purchase 91 to 365 days ago), `churned` (more than 365 days ago).
pub const LIFECYCLE_STAGES: [&str; 5] = ["new", "active", "loyal", "at risk", "churned"];

/// What a round asks participants to compute. Encoded as `(tag, parameters)`: see
/// [`RoundKind::tag`].
#[derive(Clone, Debug, PartialEq)]
pub enum RoundKind {
    /// Count, missing count, sum and sum of squares per feature.
    Moments,
    /// Presence per month since 1970-01 (1970-01 to 2099-12): set by a participant whose latest
    /// purchase is in that month or later. The aggregate reveals the consortium's latest month.
    LatestMonth,
    /// Presence per day of month `month` (months since 1970-01): set by a participant whose latest
    /// purchase is on that day or later. The aggregate reveals the consortium's latest day.
    LatestDay {
        /// The consortium's latest month, from the previous round.
        month: i64,
    },
    /// One Lloyd iteration: assign each customer's standardized row to the nearest centroid and
    /// sum per segment (count, feature sums, inertia).
    KMeans {
        /// Mean per feature, for standardization.
        mean: Vec<f64>,
        /// Standard deviation per feature.
        std: Vec<f64>,
        /// Current centroids, standardized.
        centroids: Vec<Vec<f64>>,
    },
    /// Customers per lifecycle stage (see [`LIFECYCLE_STAGES`]), from each participant's own
    /// transaction log.
    Lifecycle,
    /// Sum of each segment's RFM 1–5 scores: customers are assigned to the nearest centroid and
    /// scored against the consortium quintiles of each feature (recency reversed: recent is 5).
    Scores {
        /// Mean per feature, for standardization.
        mean: Vec<f64>,
        /// Standard deviation per feature.
        std: Vec<f64>,
        /// Final centroids, standardized.
        centroids: Vec<Vec<f64>>,
        /// Four quintile edges per feature (20, 40, 60 and 80 %).
        quintiles: Vec<Vec<f64>>,
    },
    /// Training and hold-out customers and positives (propensity jobs): four counts.
    Classes,
    /// One Newton step of a propensity model: over the training customers, Σ w(p − y)x, the
    /// packed Σ w p(1 − p) x xᵀ and the weighted log-loss at coefficients `beta`.
    Newton {
        /// Mean per numeric feature, for standardization and imputation.
        mean: Vec<f64>,
        /// Standard deviation per numeric feature.
        std: Vec<f64>,
        /// Current coefficients (intercept first).
        beta: Vec<f64>,
        /// Weights of positives and negatives.
        weights: [f64; 2],
    },
    /// One FedAvg round of a propensity model: each participant runs local mini-batch gradient
    /// descent from `beta` on its training customers and sends n_i·β_i, n_i and its weighted
    /// log-loss at `beta`.
    FedAvg {
        /// Mean per numeric feature.
        mean: Vec<f64>,
        /// Standard deviation per numeric feature.
        std: Vec<f64>,
        /// Current coefficients (intercept first).
        beta: Vec<f64>,
        /// Weights of positives and negatives.
        weights: [f64; 2],
        /// The consortium's training customers (to share the L2 penalty out by size).
        training_customers: f64,
    },
    /// Evaluation of the final model over the hold-out customers: score histograms of positives
    /// and negatives, log-loss and the number classified correctly at 0.5.
    Evaluate {
        /// Mean per numeric feature.
        mean: Vec<f64>,
        /// Standard deviation per numeric feature.
        std: Vec<f64>,
        /// Final coefficients.
        beta: Vec<f64>,
    },
    /// Counts per histogram bin, with these inner edges per feature (bins+1 edges each).
    Histogram {
        /// Edges per feature, in feature order.
        edges: Vec<Vec<f64>>,
    },
    /// Per compliance rule: violating contacts, customers affected and contacts examined.
    Compliance,
    /// A round of a job kind registered from its own folder (`super::registered`): its tag (from
    /// [`super::FIRST_REGISTERED_TAG`] up) and the job's own parameter record.
    Registered(super::JobRound),
}

impl RoundKind {
    /// Label used as the decryption slot's quantity.
    pub fn label(&self) -> &'static str {
        match self {
            RoundKind::Moments => MOMENTS,
            RoundKind::Histogram { .. } => HISTOGRAM,
            RoundKind::KMeans { .. } => KMEANS,
            RoundKind::Lifecycle => LIFECYCLE,
            RoundKind::LatestMonth => LATEST_MONTH,
            RoundKind::Classes => "classes",
            RoundKind::Newton { .. } => "newton",
            RoundKind::FedAvg { .. } => "fedavg",
            RoundKind::Evaluate { .. } => "evaluate",
            RoundKind::LatestDay { .. } => LATEST_DAY,
            RoundKind::Scores { .. } => SCORES,
            RoundKind::Compliance => COMPLIANCE,
            RoundKind::Registered(round) => {
                super::registered_round(round.tag).map_or("unregistered", |d| d.label)
            }
        }
    }
}
