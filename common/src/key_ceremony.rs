//! The key ceremony: committee members commit to their public-key shares, then reveal them
//! signed, and every participant checks the whole transcript and forms the joint key itself
//! (docs/threat-model.md, "Keys authenticated end to end").
//!
//! ```text
//!   coordinator ── KeySetup ─────────────────────────────▶ member j   (b_j fixed by s_j and the setup)
//!   member j    ── Signed(ShareCommitment{setup, j, H(b_j)}) ──▶ coordinator
//!   coordinator ── CommitmentSet{setup, all n signed commitments} ──▶ member j
//!   member j    checks every member's signature, then
//!               ── RevealedShare{b_j, Signed(ShareReveal{setup, j, H(b_j), H(set)})} ──▶ coordinator
//!   coordinator ── KeyBundle{set, all n revealed shares} ──▶ every participant
//!   participant checks every signature against the consortium CA, every share against its
//!               commitment and the one commitment set, and sums the shares itself
//! ```
//!
//! Why a commitment first: a member that saw the others' shares b_i before choosing its own
//! could publish `b* − Σ b_i` and alone hold the secret of the joint key (a rogue key). An
//! honest member reveals only after it holds every member's signed commitment, and signs the
//! digest of that set into its reveal; a participant accepts shares only if each matches its
//! commitment in that same set. So every share was fixed before any honest share was known.
//!
//! Why signatures: the coordinator relays everything. Without them it could hand participants
//! a key of its own and decrypt every contribution.

use crate::digest::Digest;
use crate::endorsement::{ConsortiumTrust, EndorsementError, Signed, Statement};
use crate::ids::NodeId;
use crate::secagg::{JointPublicKey, KeyError, KeySetup, PublicKeyShare, RingScalar};
use serde::{Deserialize, Serialize};

/// Why a step of the key ceremony was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CeremonyError {
    /// A signature or certificate did not verify.
    #[error("key ceremony of job {job}: {source}")]
    Endorsement {
        /// Job.
        job: String,
        /// What failed.
        #[source]
        source: EndorsementError,
    },
    /// The commitments or shares do not cover the committee exactly once each, in order.
    #[error(
        "key ceremony of job {job}: {what} came from {got:?}, but the committee is {committee:?}"
    )]
    NotTheCommittee {
        /// Job.
        job: String,
        /// What was counted.
        what: &'static str,
        /// Signers found, in order.
        got: Vec<NodeId>,
        /// The committee.
        committee: Vec<NodeId>,
    },
    /// A statement is about another setup, member, share or commitment set than it travels with.
    #[error("key ceremony of job {job}: the {what} signed by {member} does not match what it travels with ({detail})")]
    Mismatch {
        /// Job.
        job: String,
        /// What was checked.
        what: &'static str,
        /// Member concerned.
        member: NodeId,
        /// Which field differs.
        detail: &'static str,
    },
    /// The key material itself is malformed.
    #[error(transparent)]
    Key(#[from] KeyError),
}

/// A member's commitment to its public-key share, made before it sees any other share.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShareCommitment {
    /// Digest of the key setup.
    pub setup: Digest,
    /// The member.
    pub member: NodeId,
    /// Digest of its public-key share.
    pub share: Digest,
}

impl Statement for ShareCommitment {
    const KIND: &'static str = "key-share commitment";
    fn digest(&self) -> Digest {
        Digest::builder("fedbank.share-commitment.v1")
            .bytes(&self.setup.0)
            .bytes(self.member.as_str().as_bytes())
            .bytes(&self.share.0)
            .finish()
    }
}

/// A member's reveal of its share, bound to the commitment set it saw.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShareReveal {
    /// Digest of the key setup.
    pub setup: Digest,
    /// The member.
    pub member: NodeId,
    /// Digest of its public-key share.
    pub share: Digest,
    /// Digest of the commitment set it held when it revealed.
    pub commitments: Digest,
}

impl Statement for ShareReveal {
    const KIND: &'static str = "key-share reveal";
    fn digest(&self) -> Digest {
        Digest::builder("fedbank.share-reveal.v1")
            .bytes(&self.setup.0)
            .bytes(self.member.as_str().as_bytes())
            .bytes(&self.share.0)
            .bytes(&self.commitments.0)
            .finish()
    }
}

/// Every member's signed commitment, in committee order, as the coordinator collected them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommitmentSet {
    /// The key setup.
    pub setup: KeySetup,
    /// One signed commitment per member, in committee order.
    pub commitments: Vec<Signed<ShareCommitment>>,
}

impl CommitmentSet {
    /// Digest of the set (setup and every signed commitment).
    pub fn digest(&self) -> Digest {
        let mut b = Digest::builder("fedbank.commitment-set.v1").bytes(&self.setup.digest().0);
        for c in &self.commitments {
            b = b.bytes(&c.digest().0);
        }
        b.finish()
    }

    /// Checks that the set holds exactly one commitment per member, each about this setup and
    /// signed by that member's certified key.
    pub fn verify(&self, trust: &ConsortiumTrust) -> Result<(), CeremonyError> {
        self.setup.validate()?;
        let job = self.setup.job.to_string();
        let signers: Vec<NodeId> = self.commitments.iter().map(|c| c.signer.clone()).collect();
        if signers != self.setup.committee {
            return Err(CeremonyError::NotTheCommittee {
                job,
                what: "commitments",
                got: signers,
                committee: self.setup.committee.clone(),
            });
        }
        let setup = self.setup.digest();
        for c in &self.commitments {
            let statement = trust
                .verify(c)
                .map_err(|source| CeremonyError::Endorsement {
                    job: job.clone(),
                    source,
                })?;
            if statement.member != c.signer || statement.setup != setup {
                return Err(CeremonyError::Mismatch {
                    job,
                    what: "commitment",
                    member: c.signer.clone(),
                    detail: "member or key setup",
                });
            }
        }
        Ok(())
    }

    /// The committed share digest of `member`.
    pub fn committed_share(&self, member: &NodeId) -> Option<Digest> {
        self.commitments
            .iter()
            .find(|c| &c.signer == member)
            .map(|c| c.statement.share)
    }
}

/// A member's public-key share with its signed reveal.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(bound = "")]
pub struct RevealedShare<S: RingScalar> {
    /// The share.
    pub share: PublicKeyShare<S>,
    /// The member's signed reveal.
    pub reveal: Signed<ShareReveal>,
}

impl<S: RingScalar> RevealedShare<S> {
    /// Checks the share against its signed reveal and its commitment in `set`.
    pub fn verify(
        &self,
        trust: &ConsortiumTrust,
        set: &CommitmentSet,
        set_digest: Digest,
    ) -> Result<(), CeremonyError> {
        let job = set.setup.job.to_string();
        self.share.validate()?;
        let member = self.share.member().clone();
        let mismatch = |detail| CeremonyError::Mismatch {
            job: job.clone(),
            what: "share reveal",
            member: member.clone(),
            detail,
        };
        if self.share.setup() != &set.setup {
            return Err(mismatch("key setup of the share"));
        }
        if self.reveal.signer != member {
            return Err(mismatch("signer"));
        }
        let statement =
            trust
                .verify(&self.reveal)
                .map_err(|source| CeremonyError::Endorsement {
                    job: job.clone(),
                    source,
                })?;
        let share = self.share.digest();
        let expected = ShareReveal {
            setup: set.setup.digest(),
            member: member.clone(),
            share,
            commitments: set_digest,
        };
        if statement != &expected {
            return Err(mismatch("setup, share or commitment set"));
        }
        if set.committed_share(&member) != Some(share) {
            return Err(mismatch("the share is not the one committed to"));
        }
        Ok(())
    }
}

/// What a participant receives: the commitment set and every member's revealed share.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(bound = "")]
pub struct KeyBundle<S: RingScalar> {
    /// The commitments, as every member saw them before revealing.
    pub commitments: CommitmentSet,
    /// One revealed share per member, in committee order.
    pub shares: Vec<RevealedShare<S>>,
}

impl<S: RingScalar> KeyBundle<S> {
    /// The key setup.
    pub fn setup(&self) -> &KeySetup {
        &self.commitments.setup
    }

    /// Checks the whole transcript and forms the joint key from the verified shares.
    pub fn verify(&self, trust: &ConsortiumTrust) -> Result<JointPublicKey<S>, CeremonyError> {
        self.commitments.verify(trust)?;
        let setup = &self.commitments.setup;
        let members: Vec<NodeId> = self
            .shares
            .iter()
            .map(|s| s.share.member().clone())
            .collect();
        if members != setup.committee {
            return Err(CeremonyError::NotTheCommittee {
                job: setup.job.to_string(),
                what: "revealed shares",
                got: members,
                committee: setup.committee.clone(),
            });
        }
        let set_digest = self.commitments.digest();
        for share in &self.shares {
            share.verify(trust, &self.commitments, set_digest)?;
        }
        let shares: Vec<PublicKeyShare<S>> = self.shares.iter().map(|s| s.share.clone()).collect();
        Ok(JointPublicKey::combine(setup, &shares)?)
    }
}
