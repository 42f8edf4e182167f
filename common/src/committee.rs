//! Messages between the coordinator and the key committee: the decryption request (the manifest
//! plus each contributor's signed statement and mask, never a body) and the member's partial
//! decryption.
//!
//! A member does not take the coordinator's word for what it decrypts: it checks every
//! contributor's signed [`ContributionStatement`] against the consortium CA and the manifest,
//! checks each mask against its statement, and sums the masks itself (see
//! [`DecryptionRequest::verify`]). A mask the coordinator chose, or one contribution listed
//! under many names, is therefore refused before any key share touches it. Every contribution
//! must also have been revealed against the request's [`Roster`], fixed before any mask was
//! seen, so that no listed mask was chosen after another (see [`crate::roster`]).

use crate::digest::Digest;
use crate::endorsement::{ConsortiumTrust, EndorsementError, Signed, Statement};
use crate::ids::{JobId, NodeId};
use crate::policy::Manifest;
use crate::roster::{RevealStatement, Roster, RosterError};
use crate::secagg::{chunk_count, CryptoError, RingScalar};
use serde::{Deserialize, Serialize};

pub use crate::roster::{ContributionStatement, MASK_DIGEST_LABEL};

/// One contributor's part of a decryption request: its signed statement, its signed reveal
/// against the request's roster, and its masks.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(bound = "")]
pub struct ContributedMask<S: RingScalar> {
    /// The participant's signed statement (its commitment).
    pub statement: Signed<ContributionStatement>,
    /// The participant's signed reveal: this statement, against this roster.
    pub reveal: Signed<RevealStatement>,
    /// The mask polynomials of its ciphertext.
    pub masks: Vec<S>,
}

/// What the coordinator sends a member: the manifest, the round's roster and, per listed
/// contributor, its signed statement, reveal and masks.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(bound = "")]
pub struct DecryptionRequest<S: RingScalar> {
    /// What the aggregate is and who contributed.
    pub manifest: Manifest,
    /// The contributions committed in the round before any was revealed.
    pub roster: Roster,
    /// One entry per contributor, in manifest order.
    pub contributions: Vec<ContributedMask<S>>,
}

/// Why a decryption request's evidence was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum EvidenceError {
    /// A contributor's signature or certificate did not verify.
    #[error("round {round}: the statement of contributor {contributor}: {source}")]
    Endorsement {
        /// Round.
        round: u32,
        /// Listed contributor.
        contributor: NodeId,
        /// What failed.
        #[source]
        source: EndorsementError,
    },
    /// A listed contributor is not an enrolled participant of the job.
    #[error("round {round}: {contributor} is listed as a contributor but is not an enrolled participant of job {job}")]
    NotEnrolled {
        /// Job.
        job: JobId,
        /// Round.
        round: u32,
        /// The node.
        contributor: NodeId,
    },
    /// The signed statement does not say what the manifest says.
    #[error("round {round}: the statement signed by {contributor} does not match the manifest ({field})")]
    StatementMismatch {
        /// Round.
        round: u32,
        /// Listed contributor.
        contributor: NodeId,
        /// Field that differs.
        field: &'static str,
    },
    /// Two listed contributions are the same ciphertext (one update under two names).
    #[error("round {round}: the ciphertext of {contributor} is listed twice in the manifest")]
    RepeatedCiphertext {
        /// Round.
        round: u32,
        /// Second contributor listing it.
        contributor: NodeId,
    },
    /// A mask is not the one its contributor signed.
    #[error("round {round}: the mask sent for {contributor} is not the one it signed")]
    MaskNotSigned {
        /// Round.
        round: u32,
        /// Contributor.
        contributor: NodeId,
    },
    /// The sum of the signed masks is not the aggregate mask the manifest names.
    #[error("round {round}: the signed masks sum to {computed}, the manifest names {declared}")]
    SumMismatch {
        /// Round.
        round: u32,
        /// Digest of the member's own sum.
        computed: Digest,
        /// Digest in the manifest.
        declared: Digest,
    },
    /// The roster is malformed.
    #[error(transparent)]
    Roster(#[from] RosterError),
    /// The roster is for another slot than the manifest.
    #[error("round {round}: the roster is for another slot than the manifest ({field})")]
    RosterMismatch {
        /// Round.
        round: u32,
        /// Field that differs.
        field: &'static str,
    },
    /// A contribution that the roster does not list as committed (a mask possibly chosen
    /// after the others were seen).
    #[error(
        "round {round}: the contribution of {contributor} is not committed in the round's roster"
    )]
    NotInRoster {
        /// Round.
        round: u32,
        /// Contributor.
        contributor: NodeId,
    },
    /// A contribution not revealed against this roster.
    #[error("round {round}: {contributor} did not reveal this contribution against this roster ({field})")]
    NotRevealed {
        /// Round.
        round: u32,
        /// Contributor.
        contributor: NodeId,
        /// What differs.
        field: &'static str,
    },
    /// Lengths do not fit the manifest.
    #[error(transparent)]
    Shape(#[from] CryptoError),
}

/// A request whose evidence checked out: the member's own sum of the signed masks and, per
/// contributor, what enters its record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifiedRequest<S: RingScalar> {
    /// The sum of the contributors' signed masks, computed by the member.
    pub summed_masks: Vec<S>,
    /// Per contributor: (participant, ciphertext digest, computation digest).
    pub uses: Vec<(NodeId, Digest, Digest)>,
}

impl<S: RingScalar> DecryptionRequest<S> {
    /// Checks lengths: one entry per listed contributor, each mask fitting the value count.
    pub fn validate(&self) -> Result<(), CryptoError> {
        self.manifest.profile.check_torus(S::BITS as u32)?;
        let ring = self.manifest.profile.ring();
        let values = usize::try_from(self.manifest.value_count).unwrap_or(usize::MAX);
        if values == 0 {
            return Err(CryptoError::Empty);
        }
        if self.contributions.len() != self.manifest.contributors.len() {
            return Err(CryptoError::WrongLength {
                what: "decryption request contributions",
                expected: self.manifest.contributors.len(),
                got: self.contributions.len(),
            });
        }
        let expected = chunk_count(values, ring.polynomial_size) * ring.polynomial_size;
        for c in &self.contributions {
            if c.masks.len() != expected {
                return Err(CryptoError::WrongLength {
                    what: "decryption request masks",
                    expected,
                    got: c.masks.len(),
                });
            }
        }
        Ok(())
    }

    /// Checks every contributor's evidence — its statement signed by its certified key, for
    /// exactly this job, key epoch, round, quantity and value count, naming the listed
    /// ciphertext and the mask sent — and sums the masks. `enrolled` are the job's participants
    /// and `job_digest` the member's own digest of the job file.
    pub fn verify(
        &self,
        trust: &ConsortiumTrust,
        enrolled: &[NodeId],
        job_digest: Digest,
    ) -> Result<VerifiedRequest<S>, EvidenceError> {
        self.validate()?;
        let m = &self.manifest;
        let roster = &self.roster;
        roster.validate()?;
        let roster_checks = [
            (roster.job == m.job, "job"),
            (roster.key_epoch == m.key_epoch, "key epoch"),
            (roster.round == m.round, "round"),
            (roster.quantity == m.quantity, "quantity"),
        ];
        if let Some((_, field)) = roster_checks.iter().find(|(ok, _)| !ok) {
            return Err(EvidenceError::RosterMismatch {
                round: m.round,
                field,
            });
        }
        let roster_digest = roster.digest();
        let mut uses: Vec<(NodeId, Digest, Digest)> = Vec::with_capacity(self.contributions.len());
        let mut summed: Option<Vec<S>> = None;
        for ((contributor, listed_digest), c) in m
            .contributors
            .iter()
            .zip(&m.ciphertext_digests)
            .zip(&self.contributions)
        {
            if !enrolled.contains(contributor) {
                return Err(EvidenceError::NotEnrolled {
                    job: m.job.clone(),
                    round: m.round,
                    contributor: contributor.clone(),
                });
            }
            let mismatch = |field| EvidenceError::StatementMismatch {
                round: m.round,
                contributor: contributor.clone(),
                field,
            };
            if &c.statement.signer != contributor {
                return Err(mismatch("signer"));
            }
            let s = trust
                .verify(&c.statement)
                .map_err(|source| EvidenceError::Endorsement {
                    round: m.round,
                    contributor: contributor.clone(),
                    source,
                })?;
            let checks = [
                (s.job == m.job, "job"),
                (s.job_digest == job_digest, "job file digest"),
                (s.key_epoch == m.key_epoch, "key epoch"),
                (s.round == m.round, "round"),
                (s.attempt == roster.attempt, "attempt"),
                (s.quantity == m.quantity, "quantity"),
                (s.value_count == m.value_count, "value count"),
                (&s.ciphertext_digest == listed_digest, "ciphertext digest"),
            ];
            if let Some((_, field)) = checks.iter().find(|(ok, _)| !ok) {
                return Err(mismatch(field));
            }
            let statement_digest = s.digest();
            if roster.statement_of(contributor) != Some(statement_digest) {
                return Err(EvidenceError::NotInRoster {
                    round: m.round,
                    contributor: contributor.clone(),
                });
            }
            let not_revealed = |field| EvidenceError::NotRevealed {
                round: m.round,
                contributor: contributor.clone(),
                field,
            };
            if &c.reveal.signer != contributor {
                return Err(not_revealed("signer"));
            }
            let r = trust
                .verify(&c.reveal)
                .map_err(|source| EvidenceError::Endorsement {
                    round: m.round,
                    contributor: contributor.clone(),
                    source,
                })?;
            let reveal_checks = [
                (r.job == m.job, "job"),
                (r.round == m.round, "round"),
                (r.attempt == roster.attempt, "attempt"),
                (r.contribution == statement_digest, "statement"),
                (r.roster == roster_digest, "roster"),
            ];
            if let Some((_, field)) = reveal_checks.iter().find(|(ok, _)| !ok) {
                return Err(not_revealed(field));
            }
            if uses.iter().any(|(_, d, _)| d == listed_digest) {
                return Err(EvidenceError::RepeatedCiphertext {
                    round: m.round,
                    contributor: contributor.clone(),
                });
            }
            if Digest::of_scalars(MASK_DIGEST_LABEL, &c.masks) != s.mask_digest {
                return Err(EvidenceError::MaskNotSigned {
                    round: m.round,
                    contributor: contributor.clone(),
                });
            }
            match &mut summed {
                None => summed = Some(c.masks.clone()),
                Some(sum) => crate::secagg::add_assign(sum, &c.masks),
            }
            uses.push((contributor.clone(), s.ciphertext_digest, s.computation));
        }
        let summed_masks = summed.ok_or(CryptoError::Empty)?;
        let computed = Digest::of_scalars(MASK_DIGEST_LABEL, &summed_masks);
        if computed != m.aggregate_mask_digest {
            return Err(EvidenceError::SumMismatch {
                round: m.round,
                computed,
                declared: m.aggregate_mask_digest,
            });
        }
        Ok(VerifiedRequest { summed_masks, uses })
    }
}

/// A member's answer: its partial decryption of the aggregate named by the manifest digest.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(bound = "")]
pub struct PartialDecryption<S: RingScalar> {
    /// The member.
    pub member: NodeId,
    /// Digest of the manifest it approved.
    pub manifest_digest: Digest,
    /// One value per encrypted value.
    pub values: Vec<S>,
}
