//! What a round asks participants to compute ([`RoundKind`]) and the labels of its quantities.
//!
//! On the wire and in computation digests a round kind is a pair `(tag, parameters)` with an
//! explicit [`RoundTag`] per kind (`round_codec`), never the position of a variant in the enum:
//! a new kind takes a new tag and shifts no other kind's encoding.

mod round_codec;
pub use round_codec::{RoundTag, RETIRED_TAGS};

/// Round label of a moments round (the stats, segment and propensity jobs each have one).
pub const MOMENTS: &str = "moments";
/// Round label of the compliance round.
pub const COMPLIANCE: &str = "compliance";
/// Round label of a histogram round (stats and segment jobs).
pub const HISTOGRAM: &str = "histogram";

/// What a round asks participants to compute. Encoded as `(tag, parameters)`: see
/// [`RoundKind::tag`]. Every round is now a round of a job kind behind the `Job` trait; the
/// enum stays as the wire's round type (its former variants' tags are [`RETIRED_TAGS`]).
#[derive(Clone, Debug, PartialEq)]
pub enum RoundKind {
    /// A round of a job kind registered from its own folder (`super::registered`): its tag (from
    /// [`super::FIRST_REGISTERED_TAG`] up) and the job's own parameter record.
    Registered(super::JobRound),
}

impl RoundKind {
    /// Label used as the decryption slot's quantity.
    pub fn label(&self) -> &'static str {
        match self {
            RoundKind::Registered(round) => {
                super::registered_round(round.tag).map_or("unregistered", |d| d.label)
            }
        }
    }
}
