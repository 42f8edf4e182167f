//! What a round asks participants to compute ([`RoundKind`]) and the labels of its quantities.
//!
//! On the wire and in computation digests a round kind is a pair `(tag, parameters)` with an
//! explicit [`RoundTag`] per kind (`round_codec`), never the position of a variant in the enum:
//! a new kind takes a new tag and shifts no other kind's encoding.

mod round_codec;
pub use round_codec::RoundTag;

/// Round label of a moments round (stats, segment and propensity jobs).
pub const MOMENTS: &str = "moments";
/// Round label of the compliance round.
pub const COMPLIANCE: &str = "compliance";
/// Round label of a histogram round (stats and segment jobs).
pub const HISTOGRAM: &str = "histogram";

/// What a round asks participants to compute. Encoded as `(tag, parameters)`: see
/// [`RoundKind::tag`].
#[derive(Clone, Debug, PartialEq)]
pub enum RoundKind {
    /// Count, missing count, sum and sum of squares per feature.
    Moments,
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
            RoundKind::Classes => "classes",
            RoundKind::Newton { .. } => "newton",
            RoundKind::FedAvg { .. } => "fedavg",
            RoundKind::Evaluate { .. } => "evaluate",
            RoundKind::Compliance => COMPLIANCE,
            RoundKind::Registered(round) => {
                super::registered_round(round.tag).map_or("unregistered", |d| d.label)
            }
        }
    }
}
