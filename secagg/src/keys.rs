//! Committee key shares and the joint compact public key (docs/threat-model.md §3, step 1).
//!
//! ```text
//!   coordinator ── KeySetup { job, epoch, profile, mask seed, committee } ──▶ every member
//!   member j:  s_j ← binary (never leaves the member)
//!              b_j = a·rev(s_j) + e_j   with a regenerated from the mask seed
//!              (tfhe `generate_seeded_lwe_compact_public_key`)
//!   member j ── PublicKeyShare { b_j } ──▶ coordinator
//!   coordinator: joint key (a, Σ_j b_j); its secret is s = Σ_j s_j, which nobody holds
//! ```
//!
//! The threshold is n-of-n: every member's partial decryption is needed. A rogue share (b_j
//! chosen to cancel the others) is prevented by the commit-then-reveal ceremony of
//! `fedbank_common::key_ceremony`, which also signs every share; this module only does the arithmetic.

use super::params::{ParameterError, Profile, MAX_COMMITTEE};
use super::ring::RingScalar;
use crate::ids::{JobId, NodeId};
use serde::{Deserialize, Serialize};
use std::fmt;
use tfhe::core_crypto::commons::math::random::{CompressionSeed, Seed, Seeder};
use tfhe::core_crypto::prelude::{
    allocate_and_generate_new_binary_lwe_secret_key, generate_seeded_lwe_compact_public_key,
    new_seeder, CiphertextModulus, DefaultRandomGenerator, LweDimension, LweSecretKey,
    SecretRandomGenerator, SeededLweCompactPublicKey, TUniform,
};
use zeroize::Zeroize;

/// Why a key could not be made, combined or accepted.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum KeyError {
    /// The committee list is empty, too long, unsorted or repeats a member.
    #[error("key setup for job {job}: the committee must list 1..={MAX_COMMITTEE} distinct members in ascending order, got {got:?}")]
    BadCommittee {
        /// Job of the setup.
        job: JobId,
        /// The committee as given.
        got: Vec<NodeId>,
    },
    /// A node that is not on the committee tried to act as a member.
    #[error("node {member} is not on the key committee of job {job} (epoch {epoch})")]
    NotOnCommittee {
        /// The node.
        member: NodeId,
        /// Job.
        job: JobId,
        /// Key epoch.
        epoch: u32,
    },
    /// A public-key share was made for another setup.
    #[error("public-key share of {member} is for job {got_job} epoch {got_epoch}, expected job {job} epoch {epoch} with the same seed and profile")]
    SetupMismatch {
        /// Member that sent the share.
        member: NodeId,
        /// Expected job.
        job: JobId,
        /// Expected epoch.
        epoch: u32,
        /// Job of the share.
        got_job: JobId,
        /// Epoch of the share.
        got_epoch: u32,
    },
    /// The set of shares does not match the committee exactly.
    #[error("job {job}: public-key shares came from {got:?}, but the committee is {expected:?}")]
    CommitteeMismatch {
        /// Job.
        job: JobId,
        /// The committee.
        expected: Vec<NodeId>,
        /// Members whose shares were given.
        got: Vec<NodeId>,
    },
    /// A key or share has the wrong number of coefficients for its profile.
    #[error("{what} has {got} coefficients; profile {profile} needs {expected}")]
    WrongLength {
        /// What was checked.
        what: &'static str,
        /// Profile.
        profile: Profile,
        /// Ring dimension.
        expected: usize,
        /// Length found.
        got: usize,
    },
    /// A secret key share has a coefficient other than 0 or 1.
    #[error("secret key share of {member} is not binary (coefficient {index})")]
    NotBinary {
        /// Owner of the share.
        member: NodeId,
        /// First non-binary coefficient.
        index: usize,
    },
    /// The scalar type does not match the profile.
    #[error(transparent)]
    Parameters(#[from] ParameterError),
}

/// What the coordinator publishes to start a key epoch: the job, the profile, the common mask
/// seed and the committee.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeySetup {
    /// Job the key is for.
    pub job: JobId,
    /// Key epoch; a new epoch means new keys (for example after a committee change).
    pub key_epoch: u32,
    /// Crypto profile.
    pub profile: Profile,
    /// Public random seed from which every member derives the same public-key mask.
    pub mask_seed: u128,
    /// The committee, in ascending order.
    pub committee: Vec<NodeId>,
}

impl KeySetup {
    /// Digest of every field of the setup; names it in signed statements and trails.
    pub fn digest(&self) -> crate::digest::Digest {
        let mut b = crate::digest::Digest::builder("fedbank.key-setup.v1")
            .bytes(self.job.as_str().as_bytes())
            .bytes(&self.key_epoch.to_le_bytes())
            .bytes(self.profile.name().as_bytes())
            .bytes(&self.mask_seed.to_le_bytes());
        for member in &self.committee {
            b = b.bytes(member.as_str().as_bytes());
        }
        b.finish()
    }

    /// Checks the committee list.
    pub fn validate(&self) -> Result<(), KeyError> {
        let ok = !self.committee.is_empty()
            && self.committee.len() <= MAX_COMMITTEE
            && self.committee.windows(2).all(|w| w[0] < w[1]);
        if ok {
            Ok(())
        } else {
            Err(KeyError::BadCommittee {
                job: self.job.clone(),
                got: self.committee.clone(),
            })
        }
    }

    fn check_torus<S: RingScalar>(&self) -> Result<(), KeyError> {
        Ok(self.profile.check_torus(S::BITS as u32)?)
    }

    fn check_len(&self, what: &'static str, got: usize) -> Result<(), KeyError> {
        let expected = self.profile.ring().polynomial_size;
        if got == expected {
            Ok(())
        } else {
            Err(KeyError::WrongLength {
                what,
                profile: self.profile,
                expected,
                got,
            })
        }
    }

    fn check_member(&self, member: &NodeId) -> Result<(), KeyError> {
        if self.committee.binary_search(member).is_ok() {
            Ok(())
        } else {
            Err(KeyError::NotOnCommittee {
                member: member.clone(),
                job: self.job.clone(),
                epoch: self.key_epoch,
            })
        }
    }
}

/// A committee member's secret key share s_j: binary, sampled locally, never sent anywhere.
/// Its coefficients are wiped from memory when it is dropped, and `Debug` does not print them.
#[derive(Clone, Serialize, Deserialize)]
#[serde(bound = "")]
pub struct SecretKeyShare<S: RingScalar> {
    setup: KeySetup,
    member: NodeId,
    coefficients: Vec<S>,
}

impl<S: RingScalar> SecretKeyShare<S> {
    /// Samples a fresh share for `member` from the operating system's entropy.
    pub fn generate(setup: &KeySetup, member: &NodeId) -> Result<Self, KeyError> {
        setup.validate()?;
        setup.check_torus::<S>()?;
        setup.check_member(member)?;
        let n = setup.profile.ring().polynomial_size;
        let mut seeder = new_seeder();
        let mut generator = SecretRandomGenerator::<DefaultRandomGenerator>::new(seeder.seed());
        let key: tfhe::core_crypto::prelude::LweSecretKeyOwned<S> =
            allocate_and_generate_new_binary_lwe_secret_key(LweDimension(n), &mut generator);
        Ok(Self {
            setup: setup.clone(),
            member: member.clone(),
            coefficients: key.into_container(),
        })
    }

    /// Checks a share read from disk: profile, length, binary coefficients, membership.
    pub fn validate(&self) -> Result<(), KeyError> {
        self.setup.validate()?;
        self.setup.check_torus::<S>()?;
        self.setup.check_member(&self.member)?;
        self.setup
            .check_len("secret key share", self.coefficients.len())?;
        if let Some(index) = self.coefficients.iter().position(|&c| c > S::ONE) {
            return Err(KeyError::NotBinary {
                member: self.member.clone(),
                index,
            });
        }
        Ok(())
    }

    /// The seeded compact public-key share b_j = a·rev(s_j) + e_j (tfhe's
    /// `generate_seeded_lwe_compact_public_key` with the common mask seed).
    ///
    /// The noise e_j is drawn from a generator seeded by a hash of the share itself, so every
    /// call gives the same b_j. With fresh noise each time, a coordinator that sends the same
    /// key setup again and again (or a member restarted from disk) would hand out many samples
    /// b_j⁽ⁱ⁾ with the same a and s_j: their differences e_j⁽ⁱ⁾ − e_j⁽¹⁾ are public, their mean
    /// converges to −e_j⁽¹⁾, and s_j follows from b_j⁽¹⁾.
    pub fn public_share(&self) -> PublicKeyShare<S> {
        let ring = self.setup.profile.ring();
        let mut pk = SeededLweCompactPublicKey::new(
            S::ZERO,
            LweDimension(ring.polynomial_size),
            CompressionSeed::from(Seed(self.setup.mask_seed)),
            CiphertextModulus::new_native(),
        );
        let mut seeder = ShareNoiseSeeder {
            share: self,
            counter: 0,
        };
        generate_seeded_lwe_compact_public_key(
            &LweSecretKey::from_container(self.coefficients.as_slice()),
            &mut pk,
            TUniform::<S>::new(ring.noise_log2),
            &mut seeder,
        );
        PublicKeyShare {
            setup: self.setup.clone(),
            member: self.member.clone(),
            body: pk.into_container(),
        }
    }

    /// The setup this share belongs to.
    pub fn setup(&self) -> &KeySetup {
        &self.setup
    }

    /// The member holding it.
    pub fn member(&self) -> &NodeId {
        &self.member
    }

    pub(crate) fn coefficients(&self) -> &[S] {
        &self.coefficients
    }
}

/// Seeds of a share's public-key noise: SHA-256 over a domain tag, the setup, the member, the
/// secret coefficients and a counter (a PRF of the secret, as deterministic signatures derive
/// their nonce). Anyone without the secret cannot tell the noise from fresh noise.
struct ShareNoiseSeeder<'a, S: RingScalar> {
    share: &'a SecretKeyShare<S>,
    counter: u64,
}

impl<S: RingScalar> Seeder for ShareNoiseSeeder<'_, S> {
    fn seed(&mut self) -> Seed {
        use sha2::{Digest as _, Sha256};
        let mut h = Sha256::new();
        h.update(b"fedbank public-key share noise v1");
        h.update(self.share.setup.job.as_str().as_bytes());
        h.update([0]);
        h.update(self.share.setup.key_epoch.to_le_bytes());
        h.update(self.share.setup.mask_seed.to_le_bytes());
        h.update(self.share.member.as_str().as_bytes());
        h.update([0]);
        h.update(bytemuck::cast_slice::<S, u8>(&self.share.coefficients));
        h.update(self.counter.to_le_bytes());
        self.counter += 1;
        let mut digest = h.finalize();
        let mut first = [0u8; 16];
        first.copy_from_slice(&digest[..16]);
        digest.as_mut_slice().zeroize();
        let seed = Seed(u128::from_le_bytes(first));
        first.zeroize();
        seed
    }

    fn is_available() -> bool {
        true
    }
}

impl<S: RingScalar> Drop for SecretKeyShare<S> {
    fn drop(&mut self) {
        self.coefficients.zeroize();
    }
}

impl<S: RingScalar> fmt::Debug for SecretKeyShare<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecretKeyShare")
            .field("job", &self.setup.job)
            .field("key_epoch", &self.setup.key_epoch)
            .field("member", &self.member)
            .field("coefficients", &"<redacted>")
            .finish()
    }
}

/// A member's public-key share: the body b_j of its seeded compact public key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(bound = "")]
pub struct PublicKeyShare<S: RingScalar> {
    setup: KeySetup,
    member: NodeId,
    body: Vec<S>,
}

impl<S: RingScalar> PublicKeyShare<S> {
    /// Digest of the share (its setup, member and body), as committed to and signed.
    pub fn digest(&self) -> crate::digest::Digest {
        crate::digest::Digest::builder("fedbank.public-key-share.v1")
            .bytes(&self.setup.digest().0)
            .bytes(self.member.as_str().as_bytes())
            .scalars(&self.body)
            .finish()
    }

    /// The member that made it.
    pub fn member(&self) -> &NodeId {
        &self.member
    }

    /// The setup it was made for.
    pub fn setup(&self) -> &KeySetup {
        &self.setup
    }

    /// Checks a share received from the network.
    pub fn validate(&self) -> Result<(), KeyError> {
        self.setup.validate()?;
        self.setup.check_torus::<S>()?;
        self.setup.check_member(&self.member)?;
        self.setup.check_len("public-key share", self.body.len())
    }
}

/// The joint compact public key (a, Σ_j b_j) that participants encrypt under.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(bound = "")]
pub struct JointPublicKey<S: RingScalar> {
    setup: KeySetup,
    mask: Vec<S>,
    body: Vec<S>,
}

impl<S: RingScalar> JointPublicKey<S> {
    /// Sums the committee's shares; refuses shares for another setup, a missing or extra member,
    /// or a share of the wrong size.
    pub fn combine(setup: &KeySetup, shares: &[PublicKeyShare<S>]) -> Result<Self, KeyError> {
        setup.validate()?;
        setup.check_torus::<S>()?;
        let mut members: Vec<NodeId> = shares.iter().map(|s| s.member.clone()).collect();
        members.sort();
        if members != setup.committee {
            return Err(KeyError::CommitteeMismatch {
                job: setup.job.clone(),
                expected: setup.committee.clone(),
                got: members,
            });
        }
        let n = setup.profile.ring().polynomial_size;
        let mut body = vec![S::ZERO; n];
        for share in shares {
            if &share.setup != setup {
                return Err(KeyError::SetupMismatch {
                    member: share.member.clone(),
                    job: setup.job.clone(),
                    epoch: setup.key_epoch,
                    got_job: share.setup.job.clone(),
                    got_epoch: share.setup.key_epoch,
                });
            }
            share.validate()?;
            super::ring::add_assign(&mut body, &share.body);
        }
        // Regenerate the common mask a from the seed with tfhe's own decompression.
        let seeded = SeededLweCompactPublicKey::from_container(
            body,
            CompressionSeed::from(Seed(setup.mask_seed)),
            CiphertextModulus::new_native(),
        );
        let full = seeded.decompress_into_lwe_compact_public_key();
        let (mask, body) = full.get_mask_and_body();
        Ok(Self {
            setup: setup.clone(),
            mask: mask.as_ref().to_vec(),
            body: body.as_ref().to_vec(),
        })
    }

    /// Digest of the joint key (setup, mask and body), recorded in every node's trail.
    pub fn digest(&self) -> crate::digest::Digest {
        crate::digest::Digest::builder("fedbank.joint-public-key.v1")
            .bytes(&self.setup.digest().0)
            .scalars(&self.mask)
            .scalars(&self.body)
            .finish()
    }

    /// Checks a joint key received from the network.
    pub fn validate(&self) -> Result<(), KeyError> {
        self.setup.validate()?;
        self.setup.check_torus::<S>()?;
        self.setup
            .check_len("joint public-key mask", self.mask.len())?;
        self.setup
            .check_len("joint public-key body", self.body.len())
    }

    /// The setup of this key.
    pub fn setup(&self) -> &KeySetup {
        &self.setup
    }

    pub(crate) fn mask(&self) -> &[S] {
        &self.mask
    }

    pub(crate) fn body(&self) -> &[S] {
        &self.body
    }
}
