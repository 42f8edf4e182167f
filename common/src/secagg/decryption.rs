//! Partial decryption by each committee member and the coordinator's combination
//! (DESIGN.md §3, step 4).
//!
//! For an aggregate with summed mask polynomial c (per chunk), member j returns
//! `P_j[i] = (c·rev(s_j))[n-1-i] + smudge_i`, which is tfhe's compact-list decryption term
//! `slice_binary_semi_reverse_negacyclic_convolution(c, s_j)` read in reverse, plus fresh
//! TUniform smudging noise of the size the noise budget fixes. The coordinator computes
//! `body_i − Σ_j P_j[i] = Δ·m_i + noise` and rounds to the nearest multiple of Δ.
//!
//! A member only ever sees the summed masks, never a body, so it learns nothing about the values.

use super::ciphertext::{chunk_count, ChunkScratch, CryptoError};
use super::keys::SecretKeyShare;
use super::params::SchemeParameters;
use super::ring::{Ring, RingScalar};
use rayon::prelude::*;
use tfhe::core_crypto::prelude::TUniform;

/// A member's decryption engine: its key share (pre-reversed for the product), the ring and the
/// smudging distribution. The reversed copy is wiped on drop.
pub struct PartialDecryptor<S: RingScalar> {
    reversed_key: Vec<S>,
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
        Ok(Self {
            reversed_key,
            params,
            ring,
        })
    }

    /// Partial decryption of `value_count` values from their summed masks, with fresh smudging.
    pub fn partial_decrypt(&self, masks: &[S], value_count: usize) -> Result<Vec<S>, CryptoError> {
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
            .for_each_init(
                || ChunkScratch::<S>::new(n),
                |scratch, (out, mask)| {
                    self.ring
                        .mul_binary(&mut scratch.product, mask, &self.reversed_key);
                    let smudge = &mut scratch.noise[..out.len()];
                    scratch
                        .generator
                        .fill_slice_with_random_from_distribution(smudge, smudging);
                    for (i, (o, s)) in out.iter_mut().zip(smudge.iter()).enumerate() {
                        *o = scratch.product[n - 1 - i].wrapping_add(*s);
                    }
                },
            );
        Ok(out)
    }
}

impl<S: RingScalar> Drop for PartialDecryptor<S> {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.reversed_key);
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
            let phase = partials
                .iter()
                .fold(body, |acc, p| acc.wrapping_sub(p[i]));
            phase.wrapping_add(half).to_i128_signed() >> delta
        })
        .collect()
}
