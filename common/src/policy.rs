//! The committee member's decryption policy (docs/threat-model.md §2), as a pure function of the request
//! and the member's own record.
//!
//! A member releases a partial decryption for an aggregate only if
//! 1. the job is one it agreed to serve, under the key epoch it holds;
//! 2. the manifest lists at least `min_participants` distinct contributors, each with one
//!    ciphertext digest;
//! 3. the slot (job, round, quantity) has not been decrypted before with a different manifest
//!    (two sums over different contributor sets would reveal their difference); the very same
//!    manifest may be served again, so that a retried request after a lost reply is harmless;
//! 4. the summed mask is the member's own sum of masks that each listed contributor signed for
//!    exactly this slot ([`crate::committee::DecryptionRequest::verify`] establishes this before
//!    [`check`] runs);
//! 5. no signed contribution listed was used in another decryption, ever;
//! 6. no listed participant's computation (round kind and parameters) entered a decryption
//!    over another contributor set: asking the same computation again under a new round number
//!    and decrypting it over a different set would reveal one participant's values by
//!    difference. The same set may be decrypted again (a round re-run after a member was lost
//!    during decryption): its sum is the same and reveals nothing new.
//!
//! A retried request for the very same manifest is served again (the answer is the same).
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
        let mut b = Digest::builder("fedbank.manifest.v2")
            .bytes(self.job.as_str().as_bytes())
            .bytes(&self.key_epoch.to_le_bytes())
            .bytes(self.profile.name().as_bytes())
            .bytes(&self.round.to_le_bytes())
            .bytes(self.quantity.as_bytes())
            .bytes(&self.value_count.to_le_bytes())
            .bytes(&(self.contributors.len() as u64).to_le_bytes());
        for (c, d) in self.contributors.iter().zip(&self.ciphertext_digests) {
            b = b.bytes(c.as_str().as_bytes()).bytes(&d.0);
        }
        b.bytes(&(self.ciphertext_digests.len() as u64).to_le_bytes())
            .bytes(&self.aggregate_mask_digest.0)
            .finish()
    }

    /// Digest of the contributor set alone.
    pub fn contributor_set(&self) -> Digest {
        let mut b = Digest::builder("fedbank.contributor-set.v1");
        for c in &self.contributors {
            b = b.bytes(c.as_str().as_bytes());
        }
        b.finish()
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
    /// The job's enrolled participants: only their signed contributions count.
    pub participants: Vec<NodeId>,
    /// Digest of the job file the member agreed to; contributions must name the same.
    pub job_digest: Digest,
}

/// A member's own record: the jobs it serves and the slots it has decrypted.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberRecord {
    /// Jobs this member agreed to serve.
    pub mandates: BTreeMap<JobId, JobMandate>,
    /// Manifest digest approved for each decrypted slot.
    pub decrypted: BTreeMap<Slot, Digest>,
    /// Manifest digest each signed contribution (by ciphertext digest) was decrypted under.
    #[serde(default)]
    pub contributions: BTreeMap<Digest, Digest>,
    /// Contributor set (its digest) each participant's computation was decrypted over.
    #[serde(default)]
    pub computations: BTreeMap<(NodeId, Digest), Digest>,
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
    /// A signed contribution was already used in another decryption.
    #[error("refused: the contribution of {contributor} to round {round} (ciphertext {ciphertext}) was already decrypted under manifest {previous}; each contribution enters one decryption only")]
    ContributionReused {
        /// Round of the request.
        round: u32,
        /// The contributor.
        contributor: NodeId,
        /// Its ciphertext digest.
        ciphertext: Digest,
        /// Manifest it was used under.
        previous: Digest,
    },
    /// A participant's computation was already decrypted over another contributor set.
    #[error("refused: {contributor}'s computation for round {round} ('{quantity}') was already decrypted over another contributor set; decrypting it over this one would reveal the difference of two sums")]
    ComputationReused {
        /// Round of the request.
        round: u32,
        /// Quantity.
        quantity: String,
        /// The contributor.
        contributor: NodeId,
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

/// What a verified request contributes to a member's record: per contributor, (participant,
/// ciphertext digest, computation digest).
pub type Uses = [(NodeId, Digest, Digest)];

/// Decides whether a member may partially decrypt the aggregate described by `manifest`, whose
/// contributions' evidence was verified into `uses`. Pure: it reads the record and changes
/// nothing.
pub fn check(
    record: &MemberRecord,
    manifest: &Manifest,
    uses: &Uses,
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
    let slot = manifest.slot();
    let digest = manifest.digest();
    let set = manifest.contributor_set();
    let approval = match record.decrypted.get(&slot) {
        None => Approval::First {
            slot,
            manifest: digest,
        },
        Some(previous) if *previous == digest => Approval::Repeat {
            slot,
            manifest: digest,
        },
        Some(previous) => {
            return Err(PolicyRefusal::SlotAlreadyDecrypted {
                job: manifest.job.clone(),
                round: manifest.round,
                quantity: manifest.quantity.clone(),
                previous: *previous,
                requested: digest,
            })
        }
    };
    for (contributor, ciphertext, computation) in uses {
        if let Some(previous) = record
            .contributions
            .get(ciphertext)
            .filter(|p| **p != digest)
        {
            return Err(PolicyRefusal::ContributionReused {
                round: manifest.round,
                contributor: contributor.clone(),
                ciphertext: *ciphertext,
                previous: *previous,
            });
        }
        let earlier = record
            .computations
            .get(&(contributor.clone(), *computation));
        if earlier.is_some_and(|p| *p != set) {
            return Err(PolicyRefusal::ComputationReused {
                round: manifest.round,
                quantity: manifest.quantity.clone(),
                contributor: contributor.clone(),
            });
        }
    }
    Ok(approval)
}

impl MemberRecord {
    /// Remembers an approval, so that neither the slot nor any of its contributions or
    /// computations can be decrypted under another manifest.
    pub fn record(&mut self, approval: &Approval, manifest: &Manifest, uses: &Uses) {
        if let Approval::First {
            slot,
            manifest: digest,
        } = approval
        {
            self.decrypted.insert(slot.clone(), *digest);
            let set = manifest.contributor_set();
            for (contributor, ciphertext, computation) in uses {
                self.contributions.insert(*ciphertext, *digest);
                self.computations
                    .insert((contributor.clone(), *computation), set);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(s: &str) -> NodeId {
        NodeId::new(s).unwrap()
    }

    fn setup() -> (MemberRecord, Manifest, Vec<(NodeId, Digest, Digest)>) {
        let job = JobId::new("job-1").unwrap();
        let mut record = MemberRecord::default();
        record.mandates.insert(
            job.clone(),
            JobMandate {
                key_epoch: 2,
                profile: Profile::Strict,
                min_participants: 3,
                participants: vec![id("a"), id("b"), id("c"), id("d")],
                job_digest: Digest::of("job", b"1"),
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
        let uses = uses_of(&manifest, b"sums at beta 0");
        (record, manifest, uses)
    }

    fn uses_of(manifest: &Manifest, computation: &[u8]) -> Vec<(NodeId, Digest, Digest)> {
        manifest
            .contributors
            .iter()
            .zip(&manifest.ciphertext_digests)
            .map(|(c, d)| (c.clone(), *d, Digest::of("computation", computation)))
            .collect()
    }

    #[test]
    fn approves_then_allows_only_the_same_manifest_again() {
        let (mut record, manifest, uses) = setup();
        let approval = check(&record, &manifest, &uses).unwrap();
        assert!(matches!(approval, Approval::First { .. }));
        record.record(&approval, &manifest, &uses);
        assert!(matches!(
            check(&record, &manifest, &uses),
            Ok(Approval::Repeat { .. })
        ));
        let mut other = manifest.clone();
        other.contributors = vec![id("a"), id("b"), id("d")];
        other.ciphertext_digests[2] = Digest::of("t", b"d");
        let other_uses = uses_of(&other, b"next round");
        assert!(matches!(
            check(&record, &other, &other_uses),
            Err(PolicyRefusal::SlotAlreadyDecrypted { round: 1, .. })
        ));
        // Another round is another slot, but a and b's ciphertexts were used already.
        other.round = 2;
        assert!(matches!(
            check(&record, &other, &other_uses),
            Err(PolicyRefusal::ContributionReused { .. })
        ));
        // Fresh ciphertexts of the same computation are refused as well: a difference of two
        // sums of one computation would single out d against c.
        other.ciphertext_digests = vec![
            Digest::of("t", b"a2"),
            Digest::of("t", b"b2"),
            Digest::of("t", b"d2"),
        ];
        let same_computation = uses_of(&other, b"sums at beta 0");
        assert!(matches!(
            check(&record, &other, &same_computation),
            Err(PolicyRefusal::ComputationReused { .. })
        ));
        // Fresh ciphertexts of a new computation in a new slot are fine, and so is the same
        // computation over the same set (a round re-run after a member was lost).
        assert!(check(&record, &other, &uses_of(&other, b"sums at beta 1")).is_ok());
        let mut rerun = manifest.clone();
        rerun.round = 3;
        rerun.ciphertext_digests = vec![
            Digest::of("t", b"a3"),
            Digest::of("t", b"b3"),
            Digest::of("t", b"c3"),
        ];
        assert!(check(&record, &rerun, &uses_of(&rerun, b"sums at beta 0")).is_ok());
    }

    #[test]
    fn each_refusal() {
        let (record, manifest, uses) = setup();
        let mut m = manifest.clone();
        m.job = JobId::new("job-2").unwrap();
        assert!(matches!(
            check(&record, &m, &uses),
            Err(PolicyRefusal::UnknownJob { .. })
        ));
        let mut m = manifest.clone();
        m.key_epoch = 1;
        assert!(matches!(
            check(&record, &m, &uses),
            Err(PolicyRefusal::UnknownKeyEpoch {
                requested: 1,
                held: 2,
                ..
            })
        ));
        let mut m = manifest.clone();
        m.profile = Profile::Fast;
        assert!(matches!(
            check(&record, &m, &uses),
            Err(PolicyRefusal::ProfileMismatch { .. })
        ));
        let mut m = manifest.clone();
        m.contributors.pop();
        m.ciphertext_digests.pop();
        let err = check(&record, &m, &uses).unwrap_err();
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
            check(&record, &m, &uses),
            Err(PolicyRefusal::ContributorsNotCanonical { .. })
        ));
        let mut m = manifest.clone();
        m.ciphertext_digests.pop();
        assert!(matches!(
            check(&record, &m, &uses),
            Err(PolicyRefusal::DigestCountMismatch { .. })
        ));
    }
}
