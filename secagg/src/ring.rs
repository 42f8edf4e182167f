//! The torus scalars (u64 for `fast`, u128 for `strict`) and the ring arithmetic on them.
//!
//! Every product the scheme needs has a binary right-hand side (the encryption randomness r and
//! the members' secret key shares are binary), so it uses tfhe-ntt's exact binary negacyclic
//! products modulo 2^64 and 2^128, the same ones tfhe's own
//! `slice_binary_semi_reverse_negacyclic_convolution` uses.

use serde::{de::DeserializeOwned, Serialize};
use tfhe::core_crypto::commons::math::random::{RandomGenerable, TUniform, Uniform, UniformBinary};
use tfhe::core_crypto::commons::numeric::UnsignedInteger;
use tfhe::core_crypto::commons::traits::UnsignedTorus;
use tfhe::core_crypto::prelude::Encryptable;
use zeroize::Zeroize;

/// A torus scalar the scheme runs on: u64 (`fast`) or u128 (`strict`).
pub trait RingScalar:
    UnsignedInteger
    + UnsignedTorus
    + Encryptable<Uniform, TUniform<Self>>
    + Encryptable<TUniform<Self>, TUniform<Self>>
    + RandomGenerable<UniformBinary>
    + Zeroize
    + bytemuck::Pod
    + Serialize
    + DeserializeOwned
    + Send
    + Sync
    + 'static
{
    /// Low bits of a ciphertext body that are rounded away and not sent.
    const BODY_DROP_BITS: u32;
    /// Bytes one body takes on the wire: (torus bits − BODY_DROP_BITS) / 8.
    const BODY_WIRE_BYTES: usize;

    /// The tfhe-ntt plan for binary negacyclic products of this width.
    type Plan: Send + Sync;

    /// Builds the plan for ring dimension `n` (a power of two the NTT supports).
    fn plan(n: usize) -> Option<Self::Plan>;

    /// `out = lhs · rhs mod (X^n + 1)` with wrapping coefficients; `rhs` must be binary.
    fn binary_negacyclic_product(plan: &Self::Plan, out: &mut [Self], lhs: &[Self], rhs: &[Self]);

    /// Two's-complement embedding of a signed integer (wrapping to the torus width).
    fn from_i128_wrapping(value: i128) -> Self;

    /// The scalar read as a signed integer of the torus width, widened to i128.
    fn to_i128_signed(self) -> i128;

    /// Appends the little-endian bytes of the scalar.
    fn extend_le_bytes(&self, out: &mut Vec<u8>);

    /// Appends the BODY_WIRE_BYTES high bytes of a rounded body.
    fn pack_body(self, out: &mut Vec<u8>);

    /// Reads a body from its BODY_WIRE_BYTES wire bytes.
    fn unpack_body(bytes: &[u8]) -> Self;
}

impl RingScalar for u64 {
    const BODY_DROP_BITS: u32 = 16;
    const BODY_WIRE_BYTES: usize = 6;
    type Plan = tfhe_ntt::native_binary64::Plan32;

    fn plan(n: usize) -> Option<Self::Plan> {
        tfhe_ntt::native_binary64::Plan32::try_new(n)
    }

    fn binary_negacyclic_product(plan: &Self::Plan, out: &mut [u64], lhs: &[u64], rhs: &[u64]) {
        plan.negacyclic_polymul(out, lhs, rhs);
    }

    fn from_i128_wrapping(value: i128) -> Self {
        value as u64
    }

    fn to_i128_signed(self) -> i128 {
        i128::from(self as i64)
    }

    fn extend_le_bytes(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.to_le_bytes());
    }

    fn pack_body(self, out: &mut Vec<u8>) {
        out.extend_from_slice(
            &(self >> Self::BODY_DROP_BITS).to_le_bytes()[..Self::BODY_WIRE_BYTES],
        );
    }

    fn unpack_body(bytes: &[u8]) -> Self {
        let mut le = [0u8; 8];
        le[..Self::BODY_WIRE_BYTES].copy_from_slice(bytes);
        u64::from_le_bytes(le) << Self::BODY_DROP_BITS
    }
}

impl RingScalar for u128 {
    const BODY_DROP_BITS: u32 = 32;
    const BODY_WIRE_BYTES: usize = 12;
    type Plan = tfhe_ntt::native_binary128::Plan32;

    fn plan(n: usize) -> Option<Self::Plan> {
        tfhe_ntt::native_binary128::Plan32::try_new(n)
    }

    fn binary_negacyclic_product(plan: &Self::Plan, out: &mut [u128], lhs: &[u128], rhs: &[u128]) {
        plan.negacyclic_polymul(out, lhs, rhs);
    }

    fn from_i128_wrapping(value: i128) -> Self {
        value as u128
    }

    fn to_i128_signed(self) -> i128 {
        self as i128
    }

    fn extend_le_bytes(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.to_le_bytes());
    }

    fn pack_body(self, out: &mut Vec<u8>) {
        out.extend_from_slice(
            &(self >> Self::BODY_DROP_BITS).to_le_bytes()[..Self::BODY_WIRE_BYTES],
        );
    }

    fn unpack_body(bytes: &[u8]) -> Self {
        let mut le = [0u8; 16];
        le[..Self::BODY_WIRE_BYTES].copy_from_slice(bytes);
        u128::from_le_bytes(le) << Self::BODY_DROP_BITS
    }
}

/// Ring dimension and NTT plan of one profile, built once and shared.
pub struct Ring<S: RingScalar> {
    n: usize,
    plan: S::Plan,
}

impl<S: RingScalar> Ring<S> {
    /// Builds the ring of dimension `n`; `None` if the NTT does not support `n`.
    pub fn new(n: usize) -> Option<Self> {
        Some(Self {
            n,
            plan: S::plan(n)?,
        })
    }

    /// Ring dimension.
    pub fn dimension(&self) -> usize {
        self.n
    }

    /// `out = lhs · rhs` in Z_{2^w}[X]/(X^n + 1), `rhs` binary.
    pub fn mul_binary(&self, out: &mut [S], lhs: &[S], rhs: &[S]) {
        S::binary_negacyclic_product(&self.plan, out, lhs, rhs);
    }
}

/// Rounds a body to the nearest multiple of 2^BODY_DROP_BITS (wrapping).
pub fn round_body<S: RingScalar>(body: S) -> S {
    let d = S::BODY_DROP_BITS as usize;
    let half = S::ONE << (d - 1);
    let low = (S::ONE << d).wrapping_sub(S::ONE);
    body.wrapping_add(half) & !low
}

/// Whether a body has no bits below 2^BODY_DROP_BITS (so it can be sent without loss).
pub fn is_rounded_body<S: RingScalar>(body: S) -> bool {
    let low = (S::ONE << S::BODY_DROP_BITS as usize).wrapping_sub(S::ONE);
    body & low == S::ZERO
}

/// Coefficient-wise wrapping addition `acc += other`.
pub fn add_assign<S: RingScalar>(acc: &mut [S], other: &[S]) {
    for (a, b) in acc.iter_mut().zip(other) {
        *a = a.wrapping_add(*b);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tfhe::core_crypto::algorithms::slice_algorithms::slice_semi_reverse_negacyclic_convolution;

    fn check_against_tfhe<S: RingScalar>(n: usize, seed: u64) {
        // Deterministic pseudo-random inputs; the reference is tfhe's generic convolution.
        let mut x = seed;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let lhs: Vec<S> = (0..n)
            .map(|_| S::from_i128_wrapping((i128::from(next()) << 64) | i128::from(next())))
            .collect();
        let rhs: Vec<S> = (0..n)
            .map(|_| if next() & 1 == 1 { S::ONE } else { S::ZERO })
            .collect();
        let ring = Ring::<S>::new(n).unwrap();
        // tfhe's semi-reverse convolution is lhs · reverse(rhs).
        let mut reversed = rhs.clone();
        reversed.reverse();
        let mut ours = vec![S::ZERO; n];
        ring.mul_binary(&mut ours, &lhs, &reversed);
        let mut theirs = vec![S::ZERO; n];
        slice_semi_reverse_negacyclic_convolution(&mut theirs, &lhs, &rhs);
        assert_eq!(ours, theirs);
    }

    #[test]
    fn binary_products_match_tfhe_convolution() {
        check_against_tfhe::<u64>(2048, 7);
        check_against_tfhe::<u128>(4096, 11);
    }
}
