//! Encryption of a vector under the joint key (docs/threat-model.md §3, step 2) and homomorphic aggregation
//! (step 3).
//!
//! The layout is tfhe's `LweCompactCiphertextList`: the values are cut into chunks of n; each
//! chunk has one mask polynomial (n coefficients) and one body per value. With r binary and e1, e2
//! fresh TUniform noise:
//!
//! ```text
//!   mask  = a·r + e1                         (n coefficients per chunk)
//!   body_i = (b·r)[n-1-i] + e2_i + Δ·m_i     (one per value)
//! ```
//!
//! which is what `encrypt_lwe_compact_ciphertext_list_with_compact_public_key` computes, using the
//! NTT products of [`super::ring`] instead of tfhe's generic convolution (a unit test decrypts
//! our lists with tfhe's own expansion and LWE decryption). Aggregation adds masks and bodies
//! coefficient by coefficient.

use super::keys::JointPublicKey;
use super::params::{ParameterError, Profile, SchemeParameters};
use super::ring::{add_assign, is_rounded_body, round_body, Ring, RingScalar};
use crate::digest::Digest;
use crate::ids::JobId;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use tfhe::core_crypto::commons::math::random::{RandomGenerator, Seed};
use tfhe::core_crypto::prelude::{new_seeder, DefaultRandomGenerator, TUniform};

/// Values per rayon task when adding ciphertexts.
const ADD_CHUNK: usize = 1 << 15;

/// Why an encryption, aggregation or decryption step was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CryptoError {
    /// Nothing to encrypt.
    #[error("cannot encrypt an empty vector")]
    Empty,
    /// A plaintext slot is too large for the message space.
    #[error("plaintext slot {index} holds {value}, outside ±2^{message_bits}; the encoding plan should have split it into limbs")]
    SlotOutOfRange {
        /// Slot index.
        index: usize,
        /// Its value.
        value: i128,
        /// Magnitude bits available.
        message_bits: u32,
    },
    /// Two ciphertexts (or a ciphertext and a key) do not belong together.
    #[error("ciphertext mismatch: {0}")]
    Mismatch(String),
    /// A ciphertext, mask or partial decryption has the wrong number of coefficients.
    #[error("{what} has {got} coefficients, expected {expected}")]
    WrongLength {
        /// What was checked.
        what: &'static str,
        /// Expected length.
        expected: usize,
        /// Length found.
        got: usize,
    },
    /// A body has low bits set, so it is not a ciphertext made by [`Encryptor`].
    #[error("ciphertext body {index} is not rounded to the profile's body precision")]
    UnroundedBody {
        /// Index of the body.
        index: usize,
    },
    /// The ring dimension is not supported by the NTT.
    #[error("ring dimension {0} is not supported by tfhe-ntt")]
    UnsupportedRing(usize),
    /// Parameters and scalar type disagree.
    #[error(transparent)]
    Parameters(#[from] ParameterError),
}

/// An encrypted vector: a compact ciphertext list under a job's joint key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(bound = "")]
pub struct Ciphertext<S: RingScalar> {
    /// Job of the key.
    pub job: JobId,
    /// Key epoch.
    pub key_epoch: u32,
    /// Crypto profile.
    pub profile: Profile,
    /// Number of encrypted values.
    pub value_count: u64,
    /// One mask polynomial of n coefficients per chunk of n values.
    pub masks: Vec<S>,
    /// One body per value, rounded to a multiple of 2^BODY_DROP_BITS; only the high bits are
    /// encoded.
    #[serde(with = "packed_bodies")]
    pub bodies: Vec<S>,
}

/// Number of chunks (mask polynomials) for `values` values in a ring of dimension `n`.
pub fn chunk_count(values: usize, n: usize) -> usize {
    values.div_ceil(n)
}

impl<S: RingScalar> Ciphertext<S> {
    /// Digest naming this ciphertext in manifests and audit events.
    pub fn digest(&self) -> Digest {
        Digest::builder("fedbank.ciphertext.v1")
            .bytes(self.job.as_str().as_bytes())
            .bytes(&self.key_epoch.to_le_bytes())
            .bytes(self.profile.name().as_bytes())
            .bytes(&self.value_count.to_le_bytes())
            .scalars(&self.masks)
            .scalars(&self.bodies)
            .finish()
    }

    /// Checks internal consistency: lengths agree with the value count and profile.
    pub fn validate(&self) -> Result<(), CryptoError> {
        self.profile.check_torus(S::BITS as u32)?;
        let ring = self.profile.ring();
        let values = usize::try_from(self.value_count).unwrap_or(usize::MAX);
        if values == 0 {
            return Err(CryptoError::Empty);
        }
        if self.bodies.len() != values {
            return Err(CryptoError::WrongLength {
                what: "ciphertext bodies",
                expected: values,
                got: self.bodies.len(),
            });
        }
        if let Some(index) = self.bodies.iter().position(|&b| !is_rounded_body(b)) {
            return Err(CryptoError::UnroundedBody { index });
        }
        let masks = chunk_count(values, ring.polynomial_size) * ring.polynomial_size;
        if self.masks.len() != masks {
            return Err(CryptoError::WrongLength {
                what: "ciphertext masks",
                expected: masks,
                got: self.masks.len(),
            });
        }
        Ok(())
    }

    /// Adds another ciphertext of the same job, epoch, profile and length, homomorphically.
    pub fn add_assign(&mut self, other: &Ciphertext<S>) -> Result<(), CryptoError> {
        if self.job != other.job
            || self.key_epoch != other.key_epoch
            || self.profile != other.profile
            || self.value_count != other.value_count
        {
            return Err(CryptoError::Mismatch(format!(
                "cannot add a ciphertext of job {} epoch {} profile {} with {} values to one of job {} epoch {} profile {} with {} values",
                other.job, other.key_epoch, other.profile, other.value_count,
                self.job, self.key_epoch, self.profile, self.value_count
            )));
        }
        other.validate()?;
        self.validate()?;
        self.masks
            .par_chunks_mut(ADD_CHUNK)
            .zip(other.masks.par_chunks(ADD_CHUNK))
            .for_each(|(a, b)| add_assign(a, b));
        self.bodies
            .par_chunks_mut(ADD_CHUNK)
            .zip(other.bodies.par_chunks(ADD_CHUNK))
            .for_each(|(a, b)| add_assign(a, b));
        Ok(())
    }
}

/// A participant's encryptor: the joint key, the ring and the job's parameters, built once.
pub struct Encryptor<S: RingScalar> {
    key: JointPublicKey<S>,
    params: SchemeParameters,
    ring: Ring<S>,
}

impl<S: RingScalar> Encryptor<S> {
    /// Prepares encryption under `key` with `params`; they must be of the same profile.
    pub fn new(key: JointPublicKey<S>, params: SchemeParameters) -> Result<Self, CryptoError> {
        params.check_torus(S::BITS as u32)?;
        if key.setup().profile != params.profile() {
            return Err(CryptoError::Mismatch(format!(
                "joint key is for profile {}, parameters are for {}",
                key.setup().profile,
                params.profile()
            )));
        }
        let n = params.ring().polynomial_size;
        let ring = Ring::new(n).ok_or(CryptoError::UnsupportedRing(n))?;
        Ok(Self { key, params, ring })
    }

    /// The parameters in use.
    pub fn params(&self) -> &SchemeParameters {
        &self.params
    }

    /// Encrypts plaintext slots (signed integers below 2^message_bits in magnitude), chunks in
    /// parallel, each with its own generator seeded from the operating system.
    pub fn encrypt(&self, slots: &[i128]) -> Result<Ciphertext<S>, CryptoError> {
        if slots.is_empty() {
            return Err(CryptoError::Empty);
        }
        let message_bits = self.params.message_bits();
        let limit = 1i128 << message_bits;
        if let Some(index) = slots.iter().position(|m| m.abs() >= limit) {
            return Err(CryptoError::SlotOutOfRange {
                index,
                value: slots[index],
                message_bits,
            });
        }
        let n = self.ring.dimension();
        let delta = self.params.delta_log2() as usize;
        let noise = TUniform::<S>::new(self.params.ring().noise_log2);
        let mut masks = vec![S::ZERO; chunk_count(slots.len(), n) * n];
        let mut bodies = vec![S::ZERO; slots.len()];
        let (pk_mask, pk_body) = (self.key.mask(), self.key.body());
        masks
            .par_chunks_mut(n)
            .zip(bodies.par_chunks_mut(n))
            .zip(slots.par_chunks(n))
            .for_each_init(
                || ChunkScratch::<S>::new(n),
                |scratch, ((mask, body), messages)| {
                    let ChunkScratch {
                        generator,
                        binary,
                        noise: e,
                        product,
                    } = scratch;
                    generator.fill_slice_with_random_uniform_binary_bits(binary);
                    self.ring.mul_binary(mask, pk_mask, binary);
                    generator.fill_slice_with_random_from_distribution(e, noise);
                    add_assign(mask, e);
                    self.ring.mul_binary(product, pk_body, binary);
                    generator.fill_slice_with_random_from_distribution(e, noise);
                    for (i, (out, &m)) in body.iter_mut().zip(messages).enumerate() {
                        let plain = S::from_i128_wrapping(m) << delta;
                        *out =
                            round_body(product[n - 1 - i].wrapping_add(e[i]).wrapping_add(plain));
                    }
                },
            );
        let setup = self.key.setup();
        Ok(Ciphertext {
            job: setup.job.clone(),
            key_epoch: setup.key_epoch,
            profile: setup.profile,
            value_count: slots.len() as u64,
            masks,
            bodies,
        })
    }
}

/// Per-worker buffers and random generator for encrypting or decrypting chunks.
pub(crate) struct ChunkScratch<S: RingScalar> {
    pub(crate) generator: RandomGenerator<DefaultRandomGenerator>,
    pub(crate) binary: Vec<S>,
    pub(crate) noise: Vec<S>,
    pub(crate) product: Vec<S>,
}

impl<S: RingScalar> ChunkScratch<S> {
    /// Buffers with a generator seeded from the operating system's entropy.
    pub(crate) fn new(n: usize) -> Self {
        let mut seeder = new_seeder();
        Self::with_seed(n, seeder.seed())
    }

    /// Buffers with a generator seeded explicitly.
    pub(crate) fn with_seed(n: usize, seed: Seed) -> Self {
        Self {
            generator: RandomGenerator::new(seed),
            binary: vec![S::ZERO; n],
            noise: vec![S::ZERO; n],
            product: vec![S::ZERO; n],
        }
    }
}

/// Wire form of ciphertext bodies: one byte string of BODY_WIRE_BYTES per body (the low
/// BODY_DROP_BITS are zero and not sent).
mod packed_bodies {
    use super::{is_rounded_body, RingScalar};
    use serde::de::{self, Deserializer, Visitor};
    use serde::ser::{self, Serializer};
    use std::fmt;
    use std::marker::PhantomData;

    pub fn serialize<S: RingScalar, Ser: Serializer>(
        bodies: &[S],
        serializer: Ser,
    ) -> Result<Ser::Ok, Ser::Error> {
        if bodies.iter().any(|&b| !is_rounded_body(b)) {
            return Err(ser::Error::custom(
                "ciphertext body not rounded to the profile's body precision",
            ));
        }
        let mut packed = Vec::with_capacity(bodies.len() * S::BODY_WIRE_BYTES);
        for &b in bodies {
            b.pack_body(&mut packed);
        }
        serializer.serialize_bytes(&packed)
    }

    pub fn deserialize<'de, S: RingScalar, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Vec<S>, D::Error> {
        deserializer.deserialize_byte_buf(PackedVisitor(PhantomData))
    }

    struct PackedVisitor<S>(PhantomData<S>);

    impl<S: RingScalar> PackedVisitor<S> {
        fn unpack<E: de::Error>(bytes: &[u8]) -> Result<Vec<S>, E> {
            if !bytes.len().is_multiple_of(S::BODY_WIRE_BYTES) {
                return Err(E::custom(format!(
                    "{} body bytes is not a multiple of {}",
                    bytes.len(),
                    S::BODY_WIRE_BYTES
                )));
            }
            Ok(bytes
                .chunks_exact(S::BODY_WIRE_BYTES)
                .map(S::unpack_body)
                .collect())
        }
    }

    impl<S: RingScalar> Visitor<'_> for PackedVisitor<S> {
        type Value = Vec<S>;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write!(
                f,
                "packed ciphertext bodies of {} bytes each",
                S::BODY_WIRE_BYTES
            )
        }

        fn visit_bytes<E: de::Error>(self, bytes: &[u8]) -> Result<Vec<S>, E> {
            Self::unpack(bytes)
        }

        fn visit_byte_buf<E: de::Error>(self, bytes: Vec<u8>) -> Result<Vec<S>, E> {
            Self::unpack(&bytes)
        }
    }
}
