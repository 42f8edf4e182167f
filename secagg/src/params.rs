//! Crypto profiles and the noise budget that fixes each job's scaling factor Δ.
//!
//! # Where the parameters come from
//!
//! Both profiles take their ring dimension and fresh-noise distribution from tfhe's own
//! 128-bit-secure parameter sets (tfhe 1.8.2, pinned in the workspace manifest), read at compile
//! time from the constants themselves so that they cannot drift from what tfhe ships:
//!
//! | profile | torus | ring dimension n | fresh noise | tfhe parameter set |
//! |---|---|---|---|---|
//! | `strict` | u128 | 4096 | TUniform(30) | `V1_8_NOISE_SQUASHING_PARAM_MESSAGE_2_CARRY_2_KS_PBS_TUNIFORM_2M128` (GLWE 2 × 2048 = LWE dimension 4096, native 2^128 modulus) |
//! | `fast` | u64 | 2048 | TUniform(17) | `V1_8_PARAM_PKE_TO_SMALL_MESSAGE_2_CARRY_2_KS_PBS_TUNIFORM_2M128_ZKV2` (compact public-key encryption, native 2^64) |
//!
//! # Noise budget
//!
//! Notation: n ring dimension, B fresh-noise bound exponent (TUniform(B) is uniform on
//! [-2^B, 2^B]), M committee members, K contributors at most, w the torus width (64 or 128).
//!
//! 1. **Joint key.** Each member's public-key body carries its own noise e_j; the joint key's noise
//!    is e_pk = Σ_j e_j, every coefficient a sum of M independent TUniform(B) samples.
//! 2. **One contribution** (mask c = a·r + e1, body = b·r + e2 + Δm, r binary) decrypts under
//!    s = Σ s_j to Δm + e2 + (e_pk·r) − (e1·s). With the aggregate of K contributions the
//!    noise is Σ_k e2_k + e_pk·(Σ_k r_k) − Σ_k e1_k·s. The public-key term is shared by all
//!    contributions, so it grows with K, not √K.
//! 3. **Body rounding.** A participant rounds each body to a multiple of 2^d (d = 32 for
//!    `strict`, 16 for `fast`) and sends only the high bits, 12 and 6 bytes instead of 16 and 8.
//!    This adds at most 2^(d−1) per contribution, K·2^(d−1) in the aggregate, a worst-case term
//!    added to the bound below and covered by the smudging like the rest.
//! 4. **Bound.** Every coefficient of that noise is a sum of independent, zero-mean, bounded terms;
//!    Hoeffding's inequality with the worst-case coefficient sizes (|Σ r_k| ≤ K, |s| ≤ M) gives the
//!    variance proxy
//!    `V = 4^B · (n·M·K² + n·M²·K + K)` and the bound `t = sqrt(2·V·ln(2/p))` that holds except
//!    with probability p = 2^-128 per coefficient ([`DECRYPTION_FAILURE_LOG2`]).
//! 5. **Smudging.** Each member adds fresh uniform noise to its partial decryption so that the
//!    decrypted value hides the aggregate noise (which depends on every member's key share).
//!    `strict`: TUniform(⌈log2 t⌉ + 40): the statistical distance to a distribution that does not
//!    depend on the keys is at most t / 2^(⌈log2 t⌉+40) ≤ 2^-40 ([`STATISTICAL_SMUDGING_BITS`]).
//!    `fast`: TUniform(max(27, ⌈log2 t⌉ + 8)): the smudging always exceeds the aggregate noise
//!    bound 2^8-fold, a statistical distance of at most 2^-8 per coefficient. The u64 torus has
//!    no room for more; this is a heuristic, **not** a cryptographic guarantee, and `fast` is
//!    for consortia where no committee member colludes with the coordinator.
//! 6. **Scaling.** With t now including the rounding term, total noise ≤ t + M·2^smudge. Δ = 2^δ with δ = ⌈log2(total)⌉ + 1, so that the
//!    noise stays below Δ/2 and rounding recovers the exact sum. A sum is decoded exactly while
//!    |Σ m| < 2^(w−1−δ): that exponent is [`SchemeParameters::message_bits`].
//!
//! Worked examples (see the unit tests, which pin these numbers):
//! `strict`, M = 3, K = 10: t ≈ 2^44, smudging TUniform(85), δ = 88, 39 message bits.
//! `strict`, M = 7, K = 1000: t ≈ 2^51, smudging TUniform(92), δ = 96, 31 message bits.
//! `fast`, M = 3, K = 10: t ≈ 2^30.5, smudging TUniform(39), δ = 42, 21 message bits.
//! Quantities that need more bits are split into limbs by [`crate::encoding`].

use serde::{Deserialize, Serialize};
use std::fmt;
use tfhe::core_crypto::prelude::DynamicDistribution;
use tfhe::shortint::parameters::v1_8::{
    V1_8_NOISE_SQUASHING_PARAM_MESSAGE_2_CARRY_2_KS_PBS_TUNIFORM_2M128,
    V1_8_PARAM_PKE_TO_SMALL_MESSAGE_2_CARRY_2_KS_PBS_TUNIFORM_2M128_ZKV2,
};
use tfhe::shortint::parameters::NoiseSquashingParameters;

/// Failure probability (log2) per decrypted coefficient used for the aggregate-noise bound.
pub const DECRYPTION_FAILURE_LOG2: f64 = -128.0;
/// Statistical security of the `strict` profile's smudging, in bits.
pub const STATISTICAL_SMUDGING_BITS: u32 = 40;
/// Smallest smudging noise exponent of the `fast` profile (heuristic, see the module docs).
pub const FAST_SMUDGING_LOG2: u32 = 27;
/// Bits by which the `fast` profile's smudging exceeds the aggregate-noise bound (heuristic:
/// a statistical distance of at most 2^-8 per coefficient, not a cryptographic one).
pub const FAST_SMUDGING_MARGIN_BITS: u32 = 8;
/// Largest committee the noise budget is written for.
pub const MAX_COMMITTEE: usize = 16;
/// Largest number of contributors to one aggregate.
pub const MAX_CONTRIBUTORS: usize = 1 << 20;
/// Fewest message bits a usable parameter set must leave.
pub const MIN_MESSAGE_BITS: u32 = 8;

const fn t_uniform_log2_u64(d: DynamicDistribution<u64>) -> u32 {
    match d {
        DynamicDistribution::TUniform(t) => t.bound_log2(),
        DynamicDistribution::Gaussian(_) => panic!("the fast profile's tfhe set must be TUniform"),
    }
}

const fn t_uniform_log2_u128(d: DynamicDistribution<u128>) -> u32 {
    match d {
        DynamicDistribution::TUniform(t) => t.bound_log2(),
        DynamicDistribution::Gaussian(_) => {
            panic!("the strict profile's tfhe set must be TUniform")
        }
    }
}

// Evaluated at compile time: a tfhe upgrade that changed the shape of these sets fails the build.
const FAST_RING: RingParameters = RingParameters {
    polynomial_size: V1_8_PARAM_PKE_TO_SMALL_MESSAGE_2_CARRY_2_KS_PBS_TUNIFORM_2M128_ZKV2
        .encryption_lwe_dimension
        .0,
    noise_log2: t_uniform_log2_u64(
        V1_8_PARAM_PKE_TO_SMALL_MESSAGE_2_CARRY_2_KS_PBS_TUNIFORM_2M128_ZKV2
            .encryption_noise_distribution,
    ),
    torus_bits: 64,
    body_drop_bits: 16,
    tfhe_parameter_set: "V1_8_PARAM_PKE_TO_SMALL_MESSAGE_2_CARRY_2_KS_PBS_TUNIFORM_2M128_ZKV2",
};

const STRICT_RING: RingParameters =
    match V1_8_NOISE_SQUASHING_PARAM_MESSAGE_2_CARRY_2_KS_PBS_TUNIFORM_2M128 {
        NoiseSquashingParameters::Classic(p) => RingParameters {
            polynomial_size: p.glwe_dimension.0 * p.polynomial_size.0,
            noise_log2: t_uniform_log2_u128(p.glwe_noise_distribution),
            torus_bits: 128,
            body_drop_bits: 32,
            tfhe_parameter_set:
                "V1_8_NOISE_SQUASHING_PARAM_MESSAGE_2_CARRY_2_KS_PBS_TUNIFORM_2M128",
        },
        _ => panic!("the strict profile's tfhe set must be a classic noise-squashing set"),
    };

/// A crypto profile: which torus, ring and noise the secure aggregation uses.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Profile {
    /// u128 torus, n = 4096, statistical smudging. The default.
    #[default]
    Strict,
    /// u64 torus, n = 2048, heuristic smudging.
    Fast,
}

impl Profile {
    /// Both profiles, strict first.
    pub const ALL: [Profile; 2] = [Profile::Strict, Profile::Fast];

    /// The ring parameters this profile takes from tfhe.
    pub const fn ring(self) -> RingParameters {
        match self {
            Profile::Strict => STRICT_RING,
            Profile::Fast => FAST_RING,
        }
    }

    /// Checks that a scalar type of `bits` bits is this profile's torus.
    pub fn check_torus(self, bits: u32) -> Result<(), ParameterError> {
        let expected = self.ring().torus_bits;
        if expected == bits {
            Ok(())
        } else {
            Err(ParameterError::TorusMismatch {
                profile: self,
                expected,
                actual: bits,
            })
        }
    }

    /// Lower-case name, as in configuration files.
    pub const fn name(self) -> &'static str {
        match self {
            Profile::Strict => "strict",
            Profile::Fast => "fast",
        }
    }
}

impl fmt::Display for Profile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Profile {
    type Err = ParameterError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "strict" => Ok(Profile::Strict),
            "fast" => Ok(Profile::Fast),
            other => Err(ParameterError::UnknownProfile(other.to_owned())),
        }
    }
}

/// Ring dimension and fresh noise of a profile, as read from tfhe's parameter set.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RingParameters {
    /// Ring dimension n (number of values per compact-list chunk).
    pub polynomial_size: usize,
    /// TUniform bound exponent B of key and encryption noise.
    pub noise_log2: u32,
    /// Torus width in bits (64 or 128).
    pub torus_bits: u32,
    /// Low bits of every ciphertext body rounded away at encryption and not sent
    /// (module docs, step 3).
    pub body_drop_bits: u32,
    /// Name of the tfhe parameter set these values come from.
    pub tfhe_parameter_set: &'static str,
}

/// Why a parameter set could not be built.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ParameterError {
    /// The committee size is outside 1..=[`MAX_COMMITTEE`].
    #[error("committee size {0} is outside the supported range 1..={MAX_COMMITTEE}")]
    CommitteeSize(usize),
    /// The contributor count is outside 1..=[`MAX_CONTRIBUTORS`].
    #[error("maximum contributor count {0} is outside the supported range 1..={MAX_CONTRIBUTORS}")]
    ContributorCount(usize),
    /// The noise would leave too few message bits.
    #[error(
        "profile {profile} with {committee} committee members and up to {contributors} contributors \
         leaves only {message_bits} message bits (at least {MIN_MESSAGE_BITS} are needed); \
         use the strict profile or fewer contributors per aggregate"
    )]
    TooNoisy {
        /// The profile.
        profile: Profile,
        /// Committee size.
        committee: usize,
        /// Maximum contributors.
        contributors: usize,
        /// Message bits that would remain.
        message_bits: i64,
    },
    /// A profile name that is neither `strict` nor `fast`.
    #[error("unknown crypto profile '{0}'; expected 'strict' or 'fast'")]
    UnknownProfile(String),
    /// The scalar type used does not match the profile's torus.
    #[error("profile {profile} uses a {expected}-bit torus, not {actual}-bit")]
    TorusMismatch {
        /// The profile.
        profile: Profile,
        /// Torus width of the profile.
        expected: u32,
        /// Torus width of the type used.
        actual: u32,
    },
}

/// Validated parameters of one secure-aggregation setting: profile, committee size and the
/// largest number of contributors, with the noise budget derived from them.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SchemeParameters {
    profile: Profile,
    committee_size: usize,
    max_contributors: usize,
    aggregate_noise_log2: f64,
    smudging_log2: u32,
    delta_log2: u32,
    message_bits: u32,
}

impl SchemeParameters {
    /// Derives the noise budget; fails if the setting would leave too few message bits.
    pub fn new(
        profile: Profile,
        committee_size: usize,
        max_contributors: usize,
    ) -> Result<Self, ParameterError> {
        if !(1..=MAX_COMMITTEE).contains(&committee_size) {
            return Err(ParameterError::CommitteeSize(committee_size));
        }
        if !(1..=MAX_CONTRIBUTORS).contains(&max_contributors) {
            return Err(ParameterError::ContributorCount(max_contributors));
        }
        let ring = profile.ring();
        let (n, m, k) = (
            ring.polynomial_size as f64,
            committee_size as f64,
            max_contributors as f64,
        );
        let b = f64::from(ring.noise_log2);
        // Hoeffding variance proxy in log2, see the module docs, step 4.
        let v_log2 = 2.0 * b + (n * m * k * k + n * m * m * k + k).log2();
        let tail_log2 =
            0.5 * (2.0 * (1.0 - DECRYPTION_FAILURE_LOG2) * std::f64::consts::LN_2).log2();
        let rounding = k * f64::from(ring.body_drop_bits - 1).exp2();
        let aggregate_noise_log2 = ((0.5 * v_log2 + tail_log2).exp2() + rounding).log2();
        let smudging_log2 = match profile {
            Profile::Strict => aggregate_noise_log2.ceil() as u32 + STATISTICAL_SMUDGING_BITS,
            Profile::Fast => FAST_SMUDGING_LOG2
                .max(aggregate_noise_log2.ceil() as u32 + FAST_SMUDGING_MARGIN_BITS),
        };
        let total = aggregate_noise_log2.exp2() + m * f64::from(smudging_log2).exp2();
        let delta_log2 = total.log2().ceil() as u32 + 1;
        let message_bits = i64::from(ring.torus_bits) - 1 - i64::from(delta_log2);
        // TUniform(b) needs b ≤ torus bits − 2.
        if message_bits < i64::from(MIN_MESSAGE_BITS) || smudging_log2 + 2 > ring.torus_bits {
            return Err(ParameterError::TooNoisy {
                profile,
                committee: committee_size,
                contributors: max_contributors,
                message_bits,
            });
        }
        Ok(Self {
            profile,
            committee_size,
            max_contributors,
            aggregate_noise_log2,
            smudging_log2,
            delta_log2,
            message_bits: message_bits as u32,
        })
    }

    /// The crypto profile.
    pub fn profile(&self) -> Profile {
        self.profile
    }
    /// Ring parameters of the profile.
    pub fn ring(&self) -> RingParameters {
        self.profile.ring()
    }
    /// Number of committee members (all of them must take part in a decryption).
    pub fn committee_size(&self) -> usize {
        self.committee_size
    }
    /// Largest number of contributions one aggregate may sum.
    pub fn max_contributors(&self) -> usize {
        self.max_contributors
    }
    /// log2 of the high-probability bound on the aggregate's noise before smudging.
    pub fn aggregate_noise_log2(&self) -> f64 {
        self.aggregate_noise_log2
    }
    /// Exponent of each member's smudging noise, TUniform(this).
    pub fn smudging_log2(&self) -> u32 {
        self.smudging_log2
    }
    /// Δ = 2^delta_log2.
    pub fn delta_log2(&self) -> u32 {
        self.delta_log2
    }
    /// A decrypted sum is exact while its magnitude is below 2^message_bits.
    pub fn message_bits(&self) -> u32 {
        self.message_bits
    }

    /// Checks that a scalar type of `bits` bits is this profile's torus.
    pub fn check_torus(&self, bits: u32) -> Result<(), ParameterError> {
        self.profile.check_torus(bits)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn profiles_come_from_tfhe_parameter_sets() {
        assert_eq!(Profile::Strict.ring().polynomial_size, 4096);
        assert_eq!(Profile::Strict.ring().noise_log2, 30);
        assert_eq!(Profile::Strict.ring().torus_bits, 128);
        assert_eq!(Profile::Fast.ring().polynomial_size, 2048);
        assert_eq!(Profile::Fast.ring().noise_log2, 17);
        assert_eq!(Profile::Fast.ring().torus_bits, 64);
        assert_eq!(
            Profile::Strict.ring().body_drop_bits,
            <u128 as crate::RingScalar>::BODY_DROP_BITS
        );
        assert_eq!(
            Profile::Fast.ring().body_drop_bits,
            <u64 as crate::RingScalar>::BODY_DROP_BITS
        );
    }

    #[test]
    fn documented_budgets_hold() {
        let p = SchemeParameters::new(Profile::Strict, 3, 10).unwrap();
        assert_eq!(
            (p.smudging_log2(), p.delta_log2(), p.message_bits()),
            (85, 88, 39)
        );
        let p = SchemeParameters::new(Profile::Strict, 7, 1000).unwrap();
        assert_eq!(
            (p.smudging_log2(), p.delta_log2(), p.message_bits()),
            (92, 96, 31)
        );
        let p = SchemeParameters::new(Profile::Fast, 3, 10).unwrap();
        assert_eq!(
            (p.smudging_log2(), p.delta_log2(), p.message_bits()),
            (39, 42, 21)
        );
        // The fast profile's smudging always exceeds the aggregate noise bound 2^8-fold.
        for (m, k) in [(1, 2), (3, 10), (7, 1000)] {
            let p = SchemeParameters::new(Profile::Fast, m, k).unwrap();
            assert!(f64::from(p.smudging_log2()) >= p.aggregate_noise_log2() + 8.0);
        }
    }

    #[test]
    fn refuses_out_of_range_settings() {
        assert_eq!(
            SchemeParameters::new(Profile::Strict, 0, 10),
            Err(ParameterError::CommitteeSize(0))
        );
        assert_eq!(
            SchemeParameters::new(Profile::Fast, 3, 0),
            Err(ParameterError::ContributorCount(0))
        );
        // The largest setting is still usable under strict, with few bits left: limbs carry
        // the rest. Under fast the smudging it needs leaves no message bits: refused.
        let widest =
            SchemeParameters::new(Profile::Strict, MAX_COMMITTEE, MAX_CONTRIBUTORS).unwrap();
        assert!(widest.message_bits() >= MIN_MESSAGE_BITS);
        assert!(matches!(
            SchemeParameters::new(Profile::Fast, MAX_COMMITTEE, MAX_CONTRIBUTORS),
            Err(ParameterError::TooNoisy { .. })
        ));
    }
}
