//! The wire form of a [`RoundKind`]: an explicit tag, then that kind's parameters.
//!
//! Tags are grouped by the job that introduced the round: `0x01__` stats, `0x02__` segment,
//! `0x03__` propensity, `0x04__` compliance, each declared in its job's folder behind the `Job`
//! trait (`job::registered`; from `0x1000` up for kinds registered from outside fedbank). A
//! round's parameters travel as the job's own bytes, and the participant's round plan refuses a
//! tag its job does not declare.
//!
//! A tag is never reused or renumbered: the tags of the round enum's former variants
//! ([`RETIRED_TAGS`]: the shared table rounds `0x0001`, `0x0002`, segment `0x0201`–`0x0205`,
//! propensity `0x0301`–`0x0304`, compliance `0x0401`) are refused to any job kind.

use super::RoundKind;
use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::ser::{SerializeTuple, Serializer};
use serde::{Deserialize, Serialize};
use std::fmt;

/// The explicit wire tag of a round kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct RoundTag(pub u16);

/// Tags of rounds retired with the round enum's variants (protocol versions up to 8): no job
/// kind may declare one.
pub const RETIRED_TAGS: [RoundTag; 12] = [
    RoundTag(0x0001),
    RoundTag(0x0002),
    RoundTag(0x0201),
    RoundTag(0x0202),
    RoundTag(0x0203),
    RoundTag(0x0204),
    RoundTag(0x0205),
    RoundTag(0x0301),
    RoundTag(0x0302),
    RoundTag(0x0303),
    RoundTag(0x0304),
    RoundTag(0x0401),
];

impl fmt::Display for RoundTag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#06x}", self.0)
    }
}

impl RoundTag {
    /// Whether this is the tag of a retired round ([`RETIRED_TAGS`]).
    pub fn is_retired(self) -> bool {
        RETIRED_TAGS.contains(&self)
    }
}

impl RoundKind {
    /// This kind's wire tag.
    pub fn tag(&self) -> RoundTag {
        match self {
            RoundKind::Registered(round) => round.tag,
        }
    }
}

impl Serialize for RoundKind {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut t = serializer.serialize_tuple(2)?;
        t.serialize_element(&self.tag())?;
        match self {
            RoundKind::Registered(round) => t.serialize_element(&round.parameters)?,
        }
        t.end()
    }
}

impl<'de> Deserialize<'de> for RoundKind {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_tuple(2, TaggedRound)
    }
}

struct TaggedRound;

fn parameters<'de, A: SeqAccess<'de>, T: Deserialize<'de>>(
    seq: &mut A,
    tag: RoundTag,
) -> Result<T, A::Error> {
    seq.next_element()?
        .ok_or_else(|| de::Error::custom(format!("round tag {tag} without its parameters")))
}

impl<'de> Visitor<'de> for TaggedRound {
    type Value = RoundKind;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a round kind as (tag, parameters)")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<RoundKind, A::Error> {
        let tag: RoundTag = seq
            .next_element()?
            .ok_or_else(|| de::Error::custom("a round kind without its tag"))?;
        // Every tag is a round of a job kind behind the `Job` trait, with its own bytes; the
        // participant's round plan refuses a tag its job does not declare.
        let parameters: Vec<u8> = parameters(&mut seq, tag)?;
        Ok(RoundKind::Registered(super::super::JobRound {
            tag,
            parameters,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::canonical::{config, encode_body};

    fn every_kind() -> Vec<RoundKind> {
        vec![
            RoundKind::Registered(crate::job::JobRound {
                tag: RoundTag(0x0410),
                parameters: vec![],
            }),
            RoundKind::Registered(crate::job::JobRound {
                tag: RoundTag(0x0312),
                parameters: vec![1, 2, 3],
            }),
        ]
    }

    fn decode(bytes: &[u8]) -> Result<RoundKind, bincode::error::DecodeError> {
        bincode::serde::decode_from_slice(bytes, config()).map(|(k, _)| k)
    }

    #[test]
    fn every_kind_round_trips_in_bincode_and_json_and_tags_are_distinct() {
        let kinds = every_kind();
        for kind in &kinds {
            let bytes = encode_body(kind).expect("encodes");
            assert_eq!(bytes[..2], kind.tag().0.to_le_bytes(), "{kind:?}");
            assert_eq!(&decode(&bytes).expect("decodes"), kind);
            let json = serde_json::to_string(kind).expect("json");
            assert_eq!(
                &serde_json::from_str::<RoundKind>(&json).expect("json"),
                kind
            );
        }
        let mut tags: Vec<RoundTag> = kinds.iter().map(RoundKind::tag).collect();
        tags.sort();
        tags.dedup();
        assert_eq!(tags.len(), kinds.len());
    }

    /// The pinned tags: changing one would silently change what an older node reads.
    #[test]
    fn tags_are_the_documented_numbers() {
        let pinned: Vec<u16> = every_kind().iter().map(|k| k.tag().0).collect();
        assert_eq!(pinned, [0x0410, 0x0312]);
        let declared: Vec<RoundTag> = crate::job::all_jobs()
            .flat_map(|j| j.rounds())
            .map(|d| d.tag)
            .collect();
        for retired in RETIRED_TAGS {
            assert!(retired.is_retired());
            assert!(!declared.contains(&retired), "{retired} is retired");
        }
        assert!(!RoundTag(0x0410).is_retired());
    }

    #[test]
    fn a_tag_without_its_parameters_is_a_named_error() {
        let unknown = serde_json::from_str::<RoundKind>("[1911]").expect_err("no parameters");
        assert!(unknown.to_string().contains("0x0777"), "{unknown}");
        assert!(decode(&0x0777u16.to_le_bytes()).is_err());
        let json = serde_json::from_str::<RoundKind>("[1040]").expect_err("no parameters");
        assert!(json.to_string().contains("0x0410"), "{json}");
        let truncated = decode(&0x0312u16.to_le_bytes()).expect_err("truncated");
        assert!(!truncated.to_string().is_empty());
    }

    #[test]
    fn a_registered_round_travels_as_its_tag_and_the_jobs_bytes() {
        let round = RoundKind::Registered(crate::job::JobRound {
            tag: RoundTag(0x1234),
            parameters: vec![7, 0, 9],
        });
        let bytes = encode_body(&round).expect("encodes");
        assert_eq!(bytes[..2], 0x1234u16.to_le_bytes());
        assert_eq!(decode(&bytes).expect("decodes"), round);
        let json = serde_json::to_string(&round).expect("json");
        assert_eq!(
            serde_json::from_str::<RoundKind>(&json).expect("json"),
            round
        );
    }
}
