//! A round's roster: every contribution committed before any is revealed
//! (docs/threat-model.md §9, "Masks chosen after the honest ones").
//!
//! A contribution's mask is what a committee member multiplies its key share by. If a
//! participant colluding with the coordinator could choose its mask after seeing the honest
//! ones, it could make the summed mask anything it likes — a constant polynomial, say — and a
//! member's partial decryption of that sum would give its key share away. So each round runs
//! in two steps:
//!
//! ```text
//!   participant                                   coordinator
//!   signed ContributionStatement (digests only) ─▶ collects them
//!                                               ◀─ Roster {round, attempt, (participant, statement digest)…}
//!   its own statement listed? first roster for
//!   this contribution? ─▶ ciphertext + signed RevealStatement {statement digest, roster digest}
//! ```
//!
//! An honest participant reveals a contribution against one roster only, and only a roster that
//! lists its own commitment. A committee member decrypts only contributions revealed against
//! the same roster, each listed in it. Every mask in a decryption was therefore fixed (by its
//! signed digest) before any honest mask of that decryption was seen, and an honest mask is
//! uniformly random: the sum is as random as the honest part.
//!
//! What this does not do: stop a set of at least `min_participants` colluding participants,
//! with no honest contributor among them, from choosing every mask of a decryption (the
//! threat model states that bound).

use crate::digest::Digest;
use crate::endorsement::Statement;
use crate::ids::{JobId, NodeId};
use serde::{Deserialize, Serialize};

/// Label under which masks are digested (one contributor's, or the sum).
pub const MASK_DIGEST_LABEL: &str = "fedbank.aggregate-mask.v1";

/// What a participant signs with each contribution: exactly which slot it is for and which
/// ciphertext (and mask) it sent, and which computation produced it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContributionStatement {
    /// Job.
    pub job: JobId,
    /// Digest of the job file the participant runs.
    pub job_digest: Digest,
    /// Key epoch of the ciphertext.
    pub key_epoch: u32,
    /// Round.
    pub round: u32,
    /// Attempt of the round.
    pub attempt: u32,
    /// Quantity (the round kind's label).
    pub quantity: String,
    /// Number of encrypted values.
    pub value_count: u64,
    /// Digest of what was computed (round kind and its parameters): a participant's computation
    /// enters at most one decryption, whatever round number it is asked under.
    pub computation: Digest,
    /// Digest of the ciphertext's masks.
    pub mask_digest: Digest,
    /// Digest of the whole ciphertext.
    pub ciphertext_digest: Digest,
}

impl Statement for ContributionStatement {
    const KIND: &'static str = "contribution";
    fn digest(&self) -> Digest {
        Digest::builder("fedbank.contribution-statement.v1")
            .bytes(self.job.as_str().as_bytes())
            .bytes(&self.job_digest.0)
            .bytes(&self.key_epoch.to_le_bytes())
            .bytes(&self.round.to_le_bytes())
            .bytes(&self.attempt.to_le_bytes())
            .bytes(self.quantity.as_bytes())
            .bytes(&self.value_count.to_le_bytes())
            .bytes(&self.computation.0)
            .bytes(&self.mask_digest.0)
            .bytes(&self.ciphertext_digest.0)
            .finish()
    }
}

/// One committed contribution in a roster.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RosterEntry {
    /// The participant.
    pub participant: NodeId,
    /// Digest of its signed [`ContributionStatement`].
    pub statement: Digest,
}

/// The contributions of one round attempt, fixed before any is revealed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Roster {
    /// Job.
    pub job: JobId,
    /// Key epoch.
    pub key_epoch: u32,
    /// Round.
    pub round: u32,
    /// Attempt of the round.
    pub attempt: u32,
    /// Quantity (the round kind's label).
    pub quantity: String,
    /// The committed contributions, in participant order, one per participant.
    pub entries: Vec<RosterEntry>,
}

/// Why a roster is malformed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RosterError {
    /// Entries out of order or repeated.
    #[error("roster of round {round}: {participant} is listed out of order or twice")]
    Unordered {
        /// Round.
        round: u32,
        /// The entry.
        participant: NodeId,
    },
    /// No entries.
    #[error("roster of round {round} lists no contribution")]
    Empty {
        /// Round.
        round: u32,
    },
}

impl Roster {
    /// The digest a reveal binds.
    pub fn digest(&self) -> Digest {
        let mut b = Digest::builder("fedbank.roster.v1")
            .bytes(self.job.as_str().as_bytes())
            .bytes(&self.key_epoch.to_le_bytes())
            .bytes(&self.round.to_le_bytes())
            .bytes(&self.attempt.to_le_bytes())
            .bytes(self.quantity.as_bytes())
            .bytes(&(self.entries.len() as u64).to_le_bytes());
        for e in &self.entries {
            b = b
                .bytes(e.participant.as_str().as_bytes())
                .bytes(&e.statement.0);
        }
        b.finish()
    }

    /// Checks that the entries are non-empty, in strict participant order.
    pub fn validate(&self) -> Result<(), RosterError> {
        if self.entries.is_empty() {
            return Err(RosterError::Empty { round: self.round });
        }
        for pair in self.entries.windows(2) {
            if pair[0].participant >= pair[1].participant {
                return Err(RosterError::Unordered {
                    round: self.round,
                    participant: pair[1].participant.clone(),
                });
            }
        }
        Ok(())
    }

    /// The statement digest listed for `participant`, if any.
    pub fn statement_of(&self, participant: &NodeId) -> Option<Digest> {
        self.entries
            .binary_search_by(|e| e.participant.cmp(participant))
            .ok()
            .map(|i| self.entries[i].statement)
    }

    /// The listed participants.
    pub fn participants(&self) -> impl Iterator<Item = &NodeId> {
        self.entries.iter().map(|e| &e.participant)
    }
}

/// What a participant signs when it reveals a contribution: which committed statement, against
/// which roster.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevealStatement {
    /// Job.
    pub job: JobId,
    /// Round.
    pub round: u32,
    /// Attempt.
    pub attempt: u32,
    /// Digest of the contribution's signed statement.
    pub contribution: Digest,
    /// Digest of the roster it is revealed against.
    pub roster: Digest,
}

impl RevealStatement {
    /// The reveal of the contribution `statement` names, against `roster`.
    pub fn of(statement: &ContributionStatement, roster: &Roster) -> Self {
        Self {
            job: statement.job.clone(),
            round: statement.round,
            attempt: statement.attempt,
            contribution: statement.digest(),
            roster: roster.digest(),
        }
    }
}

impl Statement for RevealStatement {
    const KIND: &'static str = "contribution-reveal";
    fn digest(&self) -> Digest {
        Digest::builder("fedbank.reveal-statement.v1")
            .bytes(self.job.as_str().as_bytes())
            .bytes(&self.round.to_le_bytes())
            .bytes(&self.attempt.to_le_bytes())
            .bytes(&self.contribution.0)
            .bytes(&self.roster.0)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(s: &str) -> NodeId {
        NodeId::new(s).expect("id")
    }

    fn roster(names: &[&str]) -> Roster {
        Roster {
            job: JobId::new("j").expect("job"),
            key_epoch: 1,
            round: 3,
            attempt: 0,
            quantity: "moments".into(),
            entries: names
                .iter()
                .enumerate()
                .map(|(i, n)| RosterEntry {
                    participant: id(n),
                    statement: Digest::of("t", &[i as u8]),
                })
                .collect(),
        }
    }

    #[test]
    fn a_roster_is_ordered_without_repeats_and_its_digest_covers_every_entry() {
        let r = roster(&["a", "b", "c"]);
        r.validate().expect("ordered");
        assert_eq!(r.statement_of(&id("b")), Some(Digest::of("t", &[1])));
        assert_eq!(r.statement_of(&id("z")), None);
        assert!(matches!(
            roster(&["b", "a"]).validate(),
            Err(RosterError::Unordered { .. })
        ));
        assert!(matches!(
            roster(&["a", "a"]).validate(),
            Err(RosterError::Unordered { .. })
        ));
        assert!(matches!(
            roster(&[]).validate(),
            Err(RosterError::Empty { .. })
        ));
        let mut other = r.clone();
        other.entries[2].statement = Digest::of("t", &[9]);
        assert_ne!(r.digest(), other.digest());
        let mut attempt = r.clone();
        attempt.attempt = 1;
        assert_ne!(r.digest(), attempt.digest());
        let mut fewer = r.clone();
        fewer.entries.pop();
        assert_ne!(r.digest(), fewer.digest());
    }
}
