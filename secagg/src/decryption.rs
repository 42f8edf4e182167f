//! Partial decryption by each committee member and the coordinator's combination
//! (docs/threat-model.md §3, step 4).
//!
//! For an aggregate with summed mask polynomial c (per chunk), member j returns
//! `P_j[i] = (c·rev(s_j))[n-1-i] + smudge_i`, which is tfhe's compact-list decryption term
//! `slice_binary_semi_reverse_negacyclic_convolution(c, s_j)` read in reverse, plus fresh
//! TUniform smudging noise of the size the noise budget fixes. The coordinator computes
//! `body_i − Σ_j P_j[i] = Δ·m_i + noise` and rounds to the nearest multiple of Δ.
//!
//! A member only ever sees the summed masks, never a body, so it learns nothing about the values.
//!
//! The smudging noise is pseudo-random, derived from a key only the member holds and from the
//! manifest digest. Answering the same request twice therefore returns the same partial
//! decryption: fresh noise on every retry would let a coordinator average the noise away and
//! recover c·s_j, and with it the member's key share.

use super::ciphertext::{chunk_count, ChunkScratch, CryptoError};
use super::keys::SecretKeyShare;
use super::params::SchemeParameters;
use super::ring::{Ring, RingScalar};
use crate::digest::Digest;
use rayon::prelude::*;
use tfhe::core_crypto::commons::math::random::Seed;
use tfhe::core_crypto::prelude::TUniform;

/// A member's decryption engine: its key share (pre-reversed for the product), the ring and the
/// smudging distribution. The reversed copy is wiped on drop.
pub struct PartialDecryptor<S: RingScalar> {
    reversed_key: Vec<S>,
    smudging_key: [u8; 32],
    params: SchemeParameters,
    ring: Ring<S>,
}

impl<S: RingScalar> PartialDecryptor<S> {
    /// Prepares partial decryption with `share` under `params`.
    pub fn new(share: &SecretKeyShare<S>, params: SchemeParameters) -> Result<Self, CryptoError> {
        params.check_torus(S::BITS as u32)?;
        if share.setup().profile != params.profile() {
            return Err(CryptoError::Mismatch(format!(
                "key share is for profile {}, parameters are for {}",
                share.setup().profile,
                params.profile()
            )));
        }
        let n = params.ring().polynomial_size;
        let ring = Ring::new(n).ok_or(CryptoError::UnsupportedRing(n))?;
        let mut reversed_key = share.coefficients().to_vec();
        reversed_key.reverse();
        let smudging_key = Digest::builder("fedbank.smudging-key.v1")
            .scalars(share.coefficients())
            .finish()
            .0;
        Ok(Self {
            reversed_key,
            smudging_key,
            params,
            ring,
        })
    }

    /// Partial decryption of `value_count` values from their summed masks, smudged with noise
    /// derived from the member's key and `context` (the manifest digest): the same context and
    /// masks always give the same answer.
    pub fn partial_decrypt(
        &self,
        masks: &[S],
        value_count: usize,
        context: &Digest,
    ) -> Result<Vec<S>, CryptoError> {
        if value_count == 0 {
            return Err(CryptoError::Empty);
        }
        let n = self.ring.dimension();
        let expected = chunk_count(value_count, n) * n;
        if masks.len() != expected {
            return Err(CryptoError::WrongLength {
                what: "aggregate masks",
                expected,
                got: masks.len(),
            });
        }
        let smudging = TUniform::<S>::new(self.params.smudging_log2());
        let mut out = vec![S::ZERO; value_count];
        out.par_chunks_mut(n)
            .zip(masks.par_chunks(n))
            .enumerate()
            .for_each(|(chunk, (out, mask))| {
                let scratch = &mut ChunkScratch::<S>::with_seed(n, self.chunk_seed(context, chunk));
                self.ring
                    .mul_binary(&mut scratch.product, mask, &self.reversed_key);
                let smudge = &mut scratch.noise[..out.len()];
                scratch
                    .generator
                    .fill_slice_with_random_from_distribution(smudge, smudging);
                for (i, (o, s)) in out.iter_mut().zip(smudge.iter()).enumerate() {
                    *o = scratch.product[n - 1 - i].wrapping_add(*s);
                }
            });
        Ok(out)
    }

    fn chunk_seed(&self, context: &Digest, chunk: usize) -> Seed {
        let d = Digest::builder("fedbank.smudging.v1")
            .bytes(&self.smudging_key)
            .bytes(&context.0)
            .bytes(&(chunk as u64).to_le_bytes())
            .finish();
        let mut seed = [0u8; 16];
        seed.copy_from_slice(&d.0[..16]);
        Seed(u128::from_le_bytes(seed))
    }
}

impl<S: RingScalar> Drop for PartialDecryptor<S> {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.reversed_key);
        zeroize::Zeroize::zeroize(&mut self.smudging_key);
    }
}

/// Subtracts every member's partial decryption from the summed bodies and rounds to the message:
/// `m_i = round((body_i − Σ_j P_j[i]) / Δ)`, read as a signed integer.
pub fn combine<S: RingScalar>(
    params: &SchemeParameters,
    bodies: &[S],
    partials: &[&[S]],
) -> Result<Vec<i128>, CryptoError> {
    params.check_torus(S::BITS as u32)?;
    if partials.len() != params.committee_size() {
        return Err(CryptoError::Mismatch(format!(
            "{} partial decryptions given, the committee has {} members",
            partials.len(),
            params.committee_size()
        )));
    }
    for p in partials {
        if p.len() != bodies.len() {
            return Err(CryptoError::WrongLength {
                what: "partial decryption",
                expected: bodies.len(),
                got: p.len(),
            });
        }
    }
    Ok(round_messages(params, bodies, partials))
}

/// The rounding step alone, for any subset of partial decryptions (used by tests to show that a
/// subset reveals nothing).
pub fn round_messages<S: RingScalar>(
    params: &SchemeParameters,
    bodies: &[S],
    partials: &[&[S]],
) -> Vec<i128> {
    let delta = params.delta_log2() as usize;
    let half = S::ONE << (delta - 1);
    bodies
        .par_iter()
        .enumerate()
        .map(|(i, &body)| {
            let phase = partials.iter().fold(body, |acc, p| acc.wrapping_sub(p[i]));
            phase.wrapping_add(half).to_i128_signed() >> delta
        })
        .collect()
}
