//! The wire form of a [`RoundKind`]: an explicit tag, then that kind's parameters.
//!
//! Tags are grouped by the job that introduced the round: `0x01__` stats, `0x02__` segment,
//! `0x03__` propensity (whose rounds are their own behind the `Job` trait), `0x04__` compliance.
//! A tag is never reused or renumbered: the enum's shared table rounds (`0x0001`, `0x0002`),
//! segment rounds (`0x0201`–`0x0205`) and propensity rounds (`0x0301`–`0x0304`) of protocol
//! version 7 are retired. Every tag that is not one of this enum's variants is a round of a job kind behind
//! the `Job` trait (`job::registered`; from `0x1000` up for kinds registered from outside
//! fedbank): its parameters travel as the job's own bytes, and the participant's round plan
//! refuses a tag its job does not declare.

use super::RoundKind;
use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::ser::{SerializeTuple, Serializer};
use serde::{Deserialize, Serialize};
use std::fmt;

/// The explicit wire tag of a round kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct RoundTag(pub u16);

impl RoundTag {
    /// [`RoundKind::Compliance`].
    pub const COMPLIANCE: RoundTag = RoundTag(0x0401);
}

impl fmt::Display for RoundTag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#06x}", self.0)
    }
}

impl RoundKind {
    /// Whether `tag` is the tag of one of this enum's own variants (not a registered round).
    pub fn is_variant_tag(tag: RoundTag) -> bool {
        tag == RoundTag::COMPLIANCE
    }

    /// This kind's wire tag.
    pub fn tag(&self) -> RoundTag {
        match self {
            RoundKind::Compliance => RoundTag::COMPLIANCE,
            RoundKind::Registered(round) => round.tag,
        }
    }
}

impl Serialize for RoundKind {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut t = serializer.serialize_tuple(2)?;
        t.serialize_element(&self.tag())?;
        match self {
            RoundKind::Compliance => t.serialize_element(&())?,
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
        let kind = match tag {
            RoundTag::COMPLIANCE => {
                parameters::<_, ()>(&mut seq, tag).map(|()| RoundKind::Compliance)?
            }
            // Any other tag is a round of a job kind behind the `Job` trait, with its own bytes;
            // the participant's round plan refuses a tag its job does not declare.
            registered => {
                let parameters: Vec<u8> = parameters(&mut seq, tag)?;
                RoundKind::Registered(super::super::JobRound {
                    tag: registered,
                    parameters,
                })
            }
        };
        Ok(kind)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::canonical::{config, encode_body};

    fn every_kind() -> Vec<RoundKind> {
        vec![
            RoundKind::Compliance,
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
        assert_eq!(pinned, [0x0401, 0x0312]);
        for retired in [0x0001, 0x0002, 0x0201, 0x0205, 0x0301, 0x0304] {
            assert!(!RoundKind::is_variant_tag(RoundTag(retired)));
        }
    }

    #[test]
    fn a_tag_without_its_parameters_is_a_named_error() {
        let unknown = serde_json::from_str::<RoundKind>("[1911]").expect_err("no parameters");
        assert!(unknown.to_string().contains("0x0777"), "{unknown}");
        assert!(decode(&0x0777u16.to_le_bytes()).is_err());
        let json = serde_json::from_str::<RoundKind>("[1025]").expect_err("no parameters");
        assert!(json.to_string().contains("0x0401"), "{json}");
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
        // A variant's tag with a registered round's bytes is that variant, never a registered
        // round (its bytes are left over, which the wire decoder refuses).
        let mut variant = bytes.clone();
        variant[..2].copy_from_slice(&RoundTag::COMPLIANCE.0.to_le_bytes());
        let (kind, read): (RoundKind, usize) =
            bincode::serde::decode_from_slice(&variant, config()).expect("decodes");
        assert_eq!(kind, RoundKind::Compliance);
        assert!(read < variant.len());
    }
}
