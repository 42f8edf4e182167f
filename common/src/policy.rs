//! The committee member's decryption policy (DESIGN.md §2), as a pure function of the request
//! and the member's own record.
//!
//! A member releases a partial decryption for an aggregate only if
//! 1. the job is one it agreed to serve, under the key epoch it holds;
//! 2. the manifest lists at least `min_participants` distinct contributors, each with one
//!    ciphertext digest;
//! 3. the slot (job, round, quantity) has not been decrypted before with a different manifest
//!    (two sums over different contributor sets would reveal their difference); the very same
//!    manifest may be served again, so that a retried request after a lost reply is harmless;
//! 4. the summed mask it is asked to decrypt is the one the manifest names.
//!
//! [`check`] decides; [`MemberRecord::record`] remembers an approval. Neither does any I/O.

use crate::digest::Digest;
use crate::ids::{JobId, NodeId};
use crate::secagg::Profile;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// What a coordinator asks a member to decrypt, and from whom it was summed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// Job.
    pub job: JobId,
    /// Key epoch the aggregate is encrypted under.
    pub key_epoch: u32,
    /// Crypto profile.
    pub profile: Profile,
    /// Round of the job.
    pub round: u32,
    /// Quantity (or quantity group) the aggregate holds.
    pub quantity: String,
    /// Number of encrypted values.
    pub value_count: u64,
    /// Contributors, in ascending order.
    pub contributors: Vec<NodeId>,
    /// Digest of each contributor's ciphertext, in the same order.
    pub ciphertext_digests: Vec<Digest>,
    /// Digest of the summed masks sent with the request.
    pub aggregate_mask_digest: Digest,
}

impl Manifest {
    /// Digest of the manifest's canonical encoding; names the manifest in records and trails.
    pub fn digest(&self) -> Digest {
        // bincode cannot fail on this type (strings, integers, vectors, fixed arrays), so the
        // empty fallback is never taken.
        Digest::of(
            "fedbank.manifest.v1",
            &crate::wire::encode_body(self).unwrap_or_default(),
        )
    }

    /// The slot this manifest asks to decrypt.
    pub fn slot(&self) -> Slot {
        Slot {
            job: self.job.clone(),
            round: self.round,
            quantity: self.quantity.clone(),
        }
    }
}

/// One decryption slot: at most one manifest per (job, round, quantity).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Slot {
    /// Job.
    pub job: JobId,
    /// Round.
    pub round: u32,
    /// Quantity.
    pub quantity: String,
}

/// The terms under which a member serves a job.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobMandate {
    /// Key epoch the member holds for the job.
    pub key_epoch: u32,
    /// Crypto profile of the job.
    pub profile: Profile,
    /// Fewest distinct contributors an aggregate must have.
    pub min_participants: usize,
}

/// A member's own record: the jobs it serves and the slots it has decrypted.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberRecord {
    /// Jobs this member agreed to serve.
    pub mandates: BTreeMap<JobId, JobMandate>,
    /// Manifest digest approved for each decrypted slot.
    pub decrypted: BTreeMap<Slot, Digest>,
}

/// A refused decryption request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyRefusal {
    /// The member does not serve this job.
    #[error("refused: job {job} is not a job this committee member serves")]
    UnknownJob {
        /// Job named in the manifest.
        job: JobId,
    },
    /// The manifest names a key epoch the member does not hold.
    #[error("refused: job {job} asks for key epoch {requested}, this member holds epoch {held}")]
    UnknownKeyEpoch {
        /// Job.
        job: JobId,
        /// Epoch in the manifest.
        requested: u32,
        /// Epoch the member holds.
        held: u32,
    },
    /// The manifest names another crypto profile than the job's.
    #[error("refused: job {job} runs profile {held}, the manifest says {requested}")]
    ProfileMismatch {
        /// Job.
        job: JobId,
        /// Profile in the manifest.
        requested: Profile,
        /// Profile of the job.
        held: Profile,
    },
    /// Too few distinct contributors.
    #[error("refused: job {job} round {round} quantity '{quantity}' sums {distinct} distinct contributors, the policy requires at least {required}")]
    TooFewContributors {
        /// Job.
        job: JobId,
        /// Round.
        round: u32,
        /// Quantity.
        quantity: String,
        /// Distinct contributors listed.
        distinct: usize,
        /// min_participants.
        required: usize,
    },
    /// The contributor list is not strictly ascending (a repeat, or not canonical).
    #[error("refused: contributor list of job {job} round {round} is not strictly ascending at {contributor} (a repeated or unordered contributor)")]
    ContributorsNotCanonical {
        /// Job.
        job: JobId,
        /// Round.
        round: u32,
        /// The offending entry.
        contributor: NodeId,
    },
    /// Contributors and ciphertext digests differ in number.
    #[error(
        "refused: the manifest lists {contributors} contributors but {digests} ciphertext digests"
    )]
    DigestCountMismatch {
        /// Contributors listed.
        contributors: usize,
        /// Digests listed.
        digests: usize,
    },
    /// The slot was decrypted before under another manifest.
    #[error("refused: job {job} round {round} quantity '{quantity}' was already decrypted under manifest {previous}; a second decryption with manifest {requested} would reveal the difference of two sums")]
    SlotAlreadyDecrypted {
        /// Job.
        job: JobId,
        /// Round.
        round: u32,
        /// Quantity.
        quantity: String,
        /// Manifest approved before.
        previous: Digest,
        /// Manifest now requested.
        requested: Digest,
    },
    /// The mask sent is not the one the manifest names.
    #[error("refused: the summed mask sent has digest {received}, the manifest names {declared}")]
    MaskDigestMismatch {
        /// Digest in the manifest.
        declared: Digest,
        /// Digest of the mask received.
        received: Digest,
    },
}

/// A decision to decrypt.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Approval {
    /// First decryption of this slot.
    First {
        /// The slot.
        slot: Slot,
        /// The manifest digest to record.
        manifest: Digest,
    },
    /// The same manifest was approved before (a retried request).
    Repeat {
        /// The slot.
        slot: Slot,
        /// The manifest digest.
        manifest: Digest,
    },
}

/// Decides whether a member may partially decrypt the aggregate described by `manifest`, whose
/// summed mask has digest `received_mask`. Pure: it reads the record and changes nothing.
pub fn check(
    record: &MemberRecord,
    manifest: &Manifest,
    received_mask: Digest,
) -> Result<Approval, PolicyRefusal> {
    let mandate = record
        .mandates
        .get(&manifest.job)
        .ok_or_else(|| PolicyRefusal::UnknownJob {
            job: manifest.job.clone(),
        })?;
    if mandate.key_epoch != manifest.key_epoch {
        return Err(PolicyRefusal::UnknownKeyEpoch {
            job: manifest.job.clone(),
            requested: manifest.key_epoch,
            held: mandate.key_epoch,
        });
    }
    if mandate.profile != manifest.profile {
        return Err(PolicyRefusal::ProfileMismatch {
            job: manifest.job.clone(),
            requested: manifest.profile,
            held: mandate.profile,
        });
    }
    if let Some(w) = manifest.contributors.windows(2).find(|w| w[0] >= w[1]) {
        return Err(PolicyRefusal::ContributorsNotCanonical {
            job: manifest.job.clone(),
            round: manifest.round,
            contributor: w[1].clone(),
        });
    }
    if manifest.contributors.len() != manifest.ciphertext_digests.len() {
        return Err(PolicyRefusal::DigestCountMismatch {
            contributors: manifest.contributors.len(),
            digests: manifest.ciphertext_digests.len(),
        });
    }
    // Strictly ascending, so every listed contributor is distinct.
    let distinct = manifest.contributors.len();
    if distinct < mandate.min_participants {
        return Err(PolicyRefusal::TooFewContributors {
            job: manifest.job.clone(),
            round: manifest.round,
            quantity: manifest.quantity.clone(),
            distinct,
            required: mandate.min_participants,
        });
    }
    if received_mask != manifest.aggregate_mask_digest {
        return Err(PolicyRefusal::MaskDigestMismatch {
            declared: manifest.aggregate_mask_digest,
            received: received_mask,
        });
    }
    let slot = manifest.slot();
    let digest = manifest.digest();
    match record.decrypted.get(&slot) {
        None => Ok(Approval::First {
            slot,
            manifest: digest,
        }),
        Some(previous) if *previous == digest => Ok(Approval::Repeat {
            slot,
            manifest: digest,
        }),
        Some(previous) => Err(PolicyRefusal::SlotAlreadyDecrypted {
            job: manifest.job.clone(),
            round: manifest.round,
            quantity: manifest.quantity.clone(),
            previous: *previous,
            requested: digest,
        }),
    }
}

impl MemberRecord {
    /// Remembers an approval, so that the slot cannot be decrypted under another manifest.
    pub fn record(&mut self, approval: &Approval) {
        if let Approval::First { slot, manifest } = approval {
            self.decrypted.insert(slot.clone(), *manifest);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(s: &str) -> NodeId {
        NodeId::new(s).unwrap()
    }

    fn setup() -> (MemberRecord, Manifest) {
        let job = JobId::new("job-1").unwrap();
        let mut record = MemberRecord::default();
        record.mandates.insert(
            job.clone(),
            JobMandate {
                key_epoch: 2,
                profile: Profile::Strict,
                min_participants: 3,
            },
        );
        let manifest = Manifest {
            job,
            key_epoch: 2,
            profile: Profile::Strict,
            round: 1,
            quantity: "sums".into(),
            value_count: 10,
            contributors: vec![id("a"), id("b"), id("c")],
            ciphertext_digests: vec![
                Digest::of("t", b"a"),
                Digest::of("t", b"b"),
                Digest::of("t", b"c"),
            ],
            aggregate_mask_digest: Digest::of("mask", b"m"),
        };
        (record, manifest)
    }

    #[test]
    fn approves_then_allows_only_the_same_manifest_again() {
        let (mut record, manifest) = setup();
        let mask = manifest.aggregate_mask_digest;
        let approval = check(&record, &manifest, mask).unwrap();
        assert!(matches!(approval, Approval::First { .. }));
        record.record(&approval);
        assert!(matches!(
            check(&record, &manifest, mask),
            Ok(Approval::Repeat { .. })
        ));
        let mut other = manifest.clone();
        other.contributors = vec![id("a"), id("b"), id("d")];
        assert!(matches!(
            check(&record, &other, mask),
            Err(PolicyRefusal::SlotAlreadyDecrypted { round: 1, .. })
        ));
        // Another round is another slot.
        other.round = 2;
        assert!(check(&record, &other, mask).is_ok());
    }

    #[test]
    fn each_refusal() {
        let (record, manifest) = setup();
        let mask = manifest.aggregate_mask_digest;
        let mut m = manifest.clone();
        m.job = JobId::new("job-2").unwrap();
        assert!(matches!(
            check(&record, &m, mask),
            Err(PolicyRefusal::UnknownJob { .. })
        ));
        let mut m = manifest.clone();
        m.key_epoch = 1;
        assert!(matches!(
            check(&record, &m, mask),
            Err(PolicyRefusal::UnknownKeyEpoch {
                requested: 1,
                held: 2,
                ..
            })
        ));
        let mut m = manifest.clone();
        m.profile = Profile::Fast;
        assert!(matches!(
            check(&record, &m, mask),
            Err(PolicyRefusal::ProfileMismatch { .. })
        ));
        let mut m = manifest.clone();
        m.contributors.pop();
        m.ciphertext_digests.pop();
        let err = check(&record, &m, mask).unwrap_err();
        assert!(matches!(
            err,
            PolicyRefusal::TooFewContributors {
                distinct: 2,
                required: 3,
                ..
            }
        ));
        assert!(err.to_string().contains("at least 3"));
        let mut m = manifest.clone();
        m.contributors = vec![id("a"), id("a"), id("b")];
        assert!(matches!(
            check(&record, &m, mask),
            Err(PolicyRefusal::ContributorsNotCanonical { .. })
        ));
        let mut m = manifest.clone();
        m.ciphertext_digests.pop();
        assert!(matches!(
            check(&record, &m, mask),
            Err(PolicyRefusal::DigestCountMismatch { .. })
        ));
        assert!(matches!(
            check(&record, &manifest, Digest::of("mask", b"other")),
            Err(PolicyRefusal::MaskDigestMismatch { .. })
        ));
    }
}
