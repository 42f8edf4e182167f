//! From real-valued (or integer) statistics to plaintext slots and back: declared bounds,
//! fixed-point scale, counted clipping, and limbs for quantities wider than the message space.
//!
//! A quantity is a named vector with a declared `bound` and `scale`: each value v is clipped to
//! [−bound, bound] (every clipped value is counted in the [`ClipReport`], never silently), then
//! encoded as the integer x = round(v·scale). If the sum of x over the maximum number of
//! contributors fits in the profile's message bits, x is one slot; otherwise |x| is cut into
//! limbs of L bits (x = Σ_i d_i·2^(L·i), each d_i carrying the sign of x) and the limbs are summed
//! separately and recombined exactly in i128 after decryption. L is chosen so that the sum of K
//! limbs cannot overflow: K·(2^L − 1) < 2^message_bits.
//!
//! [`EncodingPlan::new`] refuses, naming the quantity and the numbers, any quantity whose sum over
//! the maximum number of contributors could overflow within its `max_limbs`.
//!
//! A *presence* quantity ([`Combine::Presence`]) carries indicators and reveals only whether any
//! contributor set each one: a set indicator is encoded as a fresh uniformly random non-zero
//! element of the plaintext ring Z_(2^(message_bits+1)), an unset one as 0, and the sums wrap in
//! that ring. A sum of one or more such elements is uniform (or, for one, uniform over the
//! non-zero elements), so the decrypted slot says "someone set it" and nothing about how many.
//! It is wrong only when two or more set indicators sum to exactly 0, with probability
//! 2^−(message_bits+1) per slot.

use crate::SchemeParameters;
use serde::{Deserialize, Serialize};

/// Largest |bound·scale| accepted: keeps sums over [`crate::params::MAX_CONTRIBUTORS`]
/// contributors exact in i128 and well inside f64's range.
pub const MAX_ENCODED_MAGNITUDE_LOG2: u32 = 100;
/// Default limit on limbs per value.
pub const DEFAULT_MAX_LIMBS: u32 = 4;

/// A declared quantity: a named vector of values with a bound and a fixed-point scale.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct QuantitySpec {
    /// Name, as in the job configuration and the manifest.
    pub name: String,
    /// Number of values.
    pub len: usize,
    /// Values are clipped to [−bound, bound].
    pub bound: f64,
    /// Fixed-point scale: x = round(v·scale). 1 for integer counts.
    pub scale: f64,
    /// Most limbs one value may be split into.
    #[serde(default = "default_max_limbs")]
    pub max_limbs: u32,
    /// How contributions combine.
    #[serde(default)]
    pub combine: Combine,
}

/// How the contributions to a quantity combine in the aggregate.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Combine {
    /// Exact sums.
    #[default]
    Sum,
    /// Indicators (a value is set when it is non-zero): the aggregate reveals only whether any
    /// contributor set each one, not how many did.
    Presence,
}

fn default_max_limbs() -> u32 {
    DEFAULT_MAX_LIMBS
}

impl QuantitySpec {
    /// A quantity with the default limb limit.
    pub fn new(name: impl Into<String>, len: usize, bound: f64, scale: f64) -> Self {
        Self {
            name: name.into(),
            len,
            bound,
            scale,
            max_limbs: DEFAULT_MAX_LIMBS,
            combine: Combine::Sum,
        }
    }

    /// A presence quantity of `len` indicators (see [`Combine::Presence`]).
    pub fn presence(name: impl Into<String>, len: usize) -> Self {
        Self {
            combine: Combine::Presence,
            ..Self::new(name, len, 1.0, 1.0)
        }
    }
}

/// Why a quantity could not be planned, encoded or decoded.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum EncodingError {
    /// No quantities were declared.
    #[error("no quantities declared")]
    NoQuantities,
    /// The quantity has no name or a name used twice.
    #[error("quantity name '{0}' is empty or declared twice")]
    BadName(String),
    /// The quantity declares no values.
    #[error("quantity '{0}' declares zero values")]
    EmptyQuantity(String),
    /// Bound or scale is not a positive finite number, or their product is out of range.
    #[error("quantity '{quantity}': bound {bound} and scale {scale} must be positive and finite with 1 ≤ bound·scale ≤ 2^{MAX_ENCODED_MAGNITUDE_LOG2}")]
    BadBoundOrScale {
        /// Quantity.
        quantity: String,
        /// Declared bound.
        bound: f64,
        /// Declared scale.
        scale: f64,
    },
    /// The sum over the maximum number of contributors could overflow.
    #[error(
        "quantity '{quantity}': bound {bound} × scale {scale} needs {value_bits} bits per value; \
         a sum over {contributors} contributors needs {sum_bits} bits, but this profile carries \
         {limb_bits} bits per limb at that size, so {limbs_needed} limbs are needed and max_limbs \
         is {max_limbs}; raise max_limbs, lower the bound or the scale, or use the strict profile"
    )]
    Overflow {
        /// Quantity.
        quantity: String,
        /// Declared bound.
        bound: f64,
        /// Declared scale.
        scale: f64,
        /// Bits of bound·scale.
        value_bits: u32,
        /// Bits of the sum over the maximum contributors.
        sum_bits: u32,
        /// Maximum contributors.
        contributors: usize,
        /// Bits each limb can carry.
        limb_bits: u32,
        /// Limbs that would be needed.
        limbs_needed: u32,
        /// Limbs allowed.
        max_limbs: u32,
    },
    /// The profile cannot carry even one bit per limb for this many contributors.
    #[error("{contributors} contributors leave no room in {message_bits} message bits")]
    NoRoom {
        /// Maximum contributors.
        contributors: usize,
        /// Message bits of the profile.
        message_bits: u32,
    },
    /// Values given do not match the plan.
    #[error("quantity '{quantity}': expected {expected} values, got {got}")]
    LengthMismatch {
        /// Quantity.
        quantity: String,
        /// Declared length.
        expected: usize,
        /// Length given.
        got: usize,
    },
    /// Values were given for a different number of quantities than planned.
    #[error("expected values for {expected} quantities, got {got}")]
    QuantityCountMismatch {
        /// Planned quantities.
        expected: usize,
        /// Given.
        got: usize,
    },
    /// A value is NaN or infinite.
    #[error("quantity '{quantity}', value {index}: {value} is not a finite number")]
    NonFinite {
        /// Quantity.
        quantity: String,
        /// Index in the quantity.
        index: usize,
        /// The value.
        value: f64,
    },
    /// Integer values need an integral scale.
    #[error(
        "quantity '{quantity}' is given as integers but its scale {scale} is not a whole number"
    )]
    ScaleNotIntegral {
        /// Quantity.
        quantity: String,
        /// Declared scale.
        scale: f64,
    },
    /// The system's random number generator failed.
    #[error("the system random number generator failed")]
    Randomness,
    /// The decrypted slot vector does not have the plan's length.
    #[error("decrypted {got} slots, the plan has {expected}")]
    SlotCountMismatch {
        /// Planned slots.
        expected: usize,
        /// Slots given.
        got: usize,
    },
    /// A decrypted slot is larger than the contributions summed into it can honestly produce:
    /// some contributor encrypted a value outside its declared bound.
    #[error("quantity '{quantity}' slot {index} decrypted to {value}, but {contributors} honest contributions stay within ±{limit}: a contributor sent values outside the declared bounds, and nothing is released")]
    OutOfHonestRange {
        /// Quantity.
        quantity: String,
        /// Slot index within the contribution.
        index: usize,
        /// The decrypted slot.
        value: i128,
        /// Contributors summed.
        contributors: usize,
        /// K × the largest honest slot.
        limit: i128,
    },
}

/// A quantity with its slot layout.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PlannedQuantity {
    /// The declaration.
    pub spec: QuantitySpec,
    /// round(bound·scale): the largest |x|.
    pub max_abs: i128,
    /// Limbs per value (1: no splitting).
    pub limbs: u32,
    /// Bits per limb when limbs > 1.
    pub limb_bits: u32,
    /// First slot of this quantity.
    pub offset: usize,
}

impl PlannedQuantity {
    /// Number of slots: len × limbs, limb-major.
    pub fn slot_count(&self) -> usize {
        self.spec.len * self.limbs as usize
    }
}

/// The slot layout of a contribution, validated against a parameter set.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EncodingPlan {
    quantities: Vec<PlannedQuantity>,
    slot_count: usize,
    message_bits: u32,
}

/// Values of one quantity, as real numbers or integers.
#[derive(Clone, Debug, PartialEq)]
pub enum QuantityValues<'a> {
    /// Real values, scaled by the quantity's scale.
    F64(&'a [f64]),
    /// Integer values, multiplied by the (integral) scale.
    I64(&'a [i64]),
}

impl QuantityValues<'_> {
    fn len(&self) -> usize {
        match self {
            QuantityValues::F64(v) => v.len(),
            QuantityValues::I64(v) => v.len(),
        }
    }
}

/// Clipping counts of one quantity.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClipCount {
    /// Quantity name.
    pub quantity: String,
    /// Values below −bound, raised to −bound.
    pub below: u64,
    /// Values above bound, lowered to bound.
    pub above: u64,
}

/// What encoding changed: clipping per quantity.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClipReport {
    /// One entry per quantity, in plan order.
    pub quantities: Vec<ClipCount>,
}

impl ClipReport {
    /// Total number of clipped values.
    pub fn total(&self) -> u64 {
        self.quantities.iter().map(|q| q.below + q.above).sum()
    }
}

/// An exactly decoded aggregate quantity.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DecodedQuantity {
    /// Quantity name.
    pub name: String,
    /// Exact integer sums Σ x.
    pub exact: Vec<i128>,
    /// The sums in the quantity's units, Σ x / scale.
    pub values: Vec<f64>,
}

impl DecodedQuantity {
    /// The values of the quantity called `name` among `decoded`.
    pub fn find<'a>(decoded: &'a [DecodedQuantity], name: &str) -> Option<&'a [f64]> {
        decoded
            .iter()
            .find(|q| q.name == name)
            .map(|q| q.values.as_slice())
    }
}

fn bits_of(x: u128) -> u32 {
    128 - x.leading_zeros()
}

impl EncodingPlan {
    /// Lays out `specs` for `params`, refusing any quantity that could overflow.
    pub fn new(specs: &[QuantitySpec], params: &SchemeParameters) -> Result<Self, EncodingError> {
        if specs.is_empty() {
            return Err(EncodingError::NoQuantities);
        }
        let k = params.max_contributors();
        let message_bits = params.message_bits();
        // Largest L with K·(2^L − 1) < 2^message_bits.
        let room = ((1u128 << message_bits) - 1) / k as u128;
        let limb_bits = bits_of(room + 1) - 1;
        if limb_bits == 0 {
            return Err(EncodingError::NoRoom {
                contributors: k,
                message_bits,
            });
        }
        let mut quantities = Vec::with_capacity(specs.len());
        let mut offset = 0;
        for (i, spec) in specs.iter().enumerate() {
            if spec.name.is_empty() || specs[..i].iter().any(|s| s.name == spec.name) {
                return Err(EncodingError::BadName(spec.name.clone()));
            }
            if spec.len == 0 {
                return Err(EncodingError::EmptyQuantity(spec.name.clone()));
            }
            if spec.combine == Combine::Presence {
                let planned = PlannedQuantity {
                    spec: spec.clone(),
                    max_abs: 1,
                    limbs: 1,
                    limb_bits: message_bits,
                    offset,
                };
                offset += planned.slot_count();
                quantities.push(planned);
                continue;
            }
            let product = spec.bound * spec.scale;
            let valid = spec.bound.is_finite()
                && spec.scale.is_finite()
                && spec.bound > 0.0
                && spec.scale > 0.0
                && product >= 1.0
                && product <= f64::from(MAX_ENCODED_MAGNITUDE_LOG2).exp2();
            if !valid {
                return Err(EncodingError::BadBoundOrScale {
                    quantity: spec.name.clone(),
                    bound: spec.bound,
                    scale: spec.scale,
                });
            }
            let max_abs = product.round() as i128;
            let value_bits = bits_of(max_abs as u128);
            let sum = max_abs as u128 * k as u128;
            let (limbs, bits) = if sum < (1u128 << message_bits) {
                (1, value_bits)
            } else {
                (value_bits.div_ceil(limb_bits), limb_bits)
            };
            if limbs > spec.max_limbs {
                return Err(EncodingError::Overflow {
                    quantity: spec.name.clone(),
                    bound: spec.bound,
                    scale: spec.scale,
                    value_bits,
                    sum_bits: bits_of(sum),
                    contributors: k,
                    limb_bits,
                    limbs_needed: limbs,
                    max_limbs: spec.max_limbs,
                });
            }
            let planned = PlannedQuantity {
                spec: spec.clone(),
                max_abs,
                limbs,
                limb_bits: bits,
                offset,
            };
            offset += planned.slot_count();
            quantities.push(planned);
        }
        Ok(Self {
            quantities,
            slot_count: offset,
            message_bits,
        })
    }

    /// The planned quantities.
    pub fn quantities(&self) -> &[PlannedQuantity] {
        &self.quantities
    }

    /// Total plaintext slots of one contribution.
    pub fn slot_count(&self) -> usize {
        self.slot_count
    }

    /// Encodes one contribution: clips (counting), scales, rounds and splits into limbs.
    /// Fails, changing nothing, on a length mismatch or a non-finite value.
    pub fn encode(
        &self,
        values: &[QuantityValues<'_>],
    ) -> Result<(Vec<i128>, ClipReport), EncodingError> {
        if values.len() != self.quantities.len() {
            return Err(EncodingError::QuantityCountMismatch {
                expected: self.quantities.len(),
                got: values.len(),
            });
        }
        let mut slots = vec![0i128; self.slot_count];
        let mut report = ClipReport::default();
        for (q, given) in self.quantities.iter().zip(values) {
            let name = &q.spec.name;
            if given.len() != q.spec.len {
                return Err(EncodingError::LengthMismatch {
                    quantity: name.clone(),
                    expected: q.spec.len,
                    got: given.len(),
                });
            }
            let mut clip = ClipCount {
                quantity: name.clone(),
                ..ClipCount::default()
            };
            if q.spec.combine == Combine::Presence {
                let set: Vec<bool> = match given {
                    QuantityValues::F64(v) => v.iter().map(|x| *x != 0.0 && !x.is_nan()).collect(),
                    QuantityValues::I64(v) => v.iter().map(|x| *x != 0).collect(),
                };
                for (j, set) in set.into_iter().enumerate() {
                    if set {
                        slots[q.offset + j] = random_ring_element(self.message_bits)?;
                    }
                }
                report.quantities.push(clip);
                continue;
            }
            let mut put = |j: usize, x: i128, clip: &mut ClipCount| {
                let x = if x > q.max_abs {
                    clip.above += 1;
                    q.max_abs
                } else if x < -q.max_abs {
                    clip.below += 1;
                    -q.max_abs
                } else {
                    x
                };
                write_limbs(&mut slots, q, j, x);
            };
            match given {
                QuantityValues::F64(v) => {
                    for (j, &value) in v.iter().enumerate() {
                        if !value.is_finite() {
                            return Err(EncodingError::NonFinite {
                                quantity: name.clone(),
                                index: j,
                                value,
                            });
                        }
                        // Clip in value space first so huge values cannot overflow the cast.
                        let clipped = value.clamp(-q.spec.bound, q.spec.bound);
                        if clipped != value {
                            if value > 0.0 {
                                clip.above += 1;
                            } else {
                                clip.below += 1;
                            }
                        }
                        put(j, (clipped * q.spec.scale).round() as i128, &mut clip);
                    }
                }
                QuantityValues::I64(v) => {
                    if q.spec.scale.fract() != 0.0 {
                        return Err(EncodingError::ScaleNotIntegral {
                            quantity: name.clone(),
                            scale: q.spec.scale,
                        });
                    }
                    let scale = q.spec.scale as i128;
                    for (j, &value) in v.iter().enumerate() {
                        put(j, i128::from(value).saturating_mul(scale), &mut clip);
                    }
                }
            }
            report.quantities.push(clip);
        }
        Ok((slots, report))
    }

    /// Recombines decrypted slot sums into exact per-quantity sums.
    /// Checks that every decrypted slot of an aggregate of `contributors` contributions is one
    /// that honest contributions can produce: within ±K·max_abs for a one-limb value and
    /// ±K·(2^L − 1) for each limb (presence slots are random ring elements and are not checked).
    /// A dishonest contributor can still move a slot anywhere inside that range, no further.
    pub fn check_honest_range(
        &self,
        slots: &[i128],
        contributors: usize,
    ) -> Result<(), EncodingError> {
        if slots.len() != self.slot_count {
            return Err(EncodingError::SlotCountMismatch {
                expected: self.slot_count,
                got: slots.len(),
            });
        }
        let k = contributors as i128;
        for q in self
            .quantities
            .iter()
            .filter(|q| q.spec.combine != Combine::Presence)
        {
            let per_slot = if q.limbs == 1 {
                q.max_abs
            } else {
                (1i128 << q.limb_bits) - 1
            };
            let limit = per_slot.saturating_mul(k);
            let range = q.offset..q.offset + q.slot_count();
            if let Some((i, &value)) = slots[range]
                .iter()
                .enumerate()
                .find(|(_, v)| v.abs() > limit)
            {
                return Err(EncodingError::OutOfHonestRange {
                    quantity: q.spec.name.clone(),
                    index: q.offset + i,
                    value,
                    contributors,
                    limit,
                });
            }
        }
        Ok(())
    }

    /// Decodes the summed slots into each quantity's values.
    pub fn decode(&self, slots: &[i128]) -> Result<Vec<DecodedQuantity>, EncodingError> {
        if slots.len() != self.slot_count {
            return Err(EncodingError::SlotCountMismatch {
                expected: self.slot_count,
                got: slots.len(),
            });
        }
        Ok(self
            .quantities
            .iter()
            .map(|q| {
                if q.spec.combine == Combine::Presence {
                    let exact: Vec<i128> = slots[q.offset..q.offset + q.spec.len]
                        .iter()
                        .map(|&s| i128::from(s != 0))
                        .collect();
                    return DecodedQuantity {
                        name: q.spec.name.clone(),
                        values: exact.iter().map(|&x| x as f64).collect(),
                        exact,
                    };
                }
                let exact: Vec<i128> = (0..q.spec.len)
                    .map(|j| {
                        (0..q.limbs)
                            .map(|i| {
                                let slot = slots[q.offset + i as usize * q.spec.len + j];
                                slot << (q.limb_bits * i)
                            })
                            .sum()
                    })
                    .collect();
                let values = exact.iter().map(|&x| x as f64 / q.spec.scale).collect();
                DecodedQuantity {
                    name: q.spec.name.clone(),
                    exact,
                    values,
                }
            })
            .collect())
    }
}

/// A uniformly random non-zero element of Z_(2^(bits+1)), as a signed value of magnitude below
/// 2^bits (the one element −2^bits is left out so that it passes the encryptor's range check).
fn random_ring_element(bits: u32) -> Result<i128, EncodingError> {
    use ::ring::rand::SecureRandom;
    let rng = ::ring::rand::SystemRandom::new();
    let half = 1i128 << bits;
    loop {
        let mut bytes = [0u8; 16];
        rng.fill(&mut bytes)
            .map_err(|_| EncodingError::Randomness)?;
        let u = (u128::from_le_bytes(bytes) & ((1u128 << (bits + 1)) - 1)) as i128;
        let x = u - half;
        if x != 0 && x != -half {
            return Ok(x);
        }
    }
}

fn write_limbs(slots: &mut [i128], q: &PlannedQuantity, j: usize, x: i128) {
    if q.limbs == 1 {
        slots[q.offset + j] = x;
        return;
    }
    let sign = x.signum();
    let mut magnitude = x.unsigned_abs();
    let mask = (1u128 << q.limb_bits) - 1;
    for i in 0..q.limbs as usize {
        slots[q.offset + i * q.spec.len + j] = sign * (magnitude & mask) as i128;
        magnitude >>= q.limb_bits;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Profile, SchemeParameters};

    fn fast(k: usize) -> SchemeParameters {
        SchemeParameters::new(Profile::Fast, 3, k).unwrap()
    }

    #[test]
    fn small_quantities_take_one_slot_and_round_trip() {
        let plan =
            EncodingPlan::new(&[QuantitySpec::new("x", 3, 100.0, 1000.0)], &fast(10)).unwrap();
        assert_eq!(plan.quantities()[0].limbs, 1);
        let (slots, report) = plan
            .encode(&[QuantityValues::F64(&[1.5, -2.25, 0.0004])])
            .unwrap();
        assert_eq!(slots, vec![1500, -2250, 0]);
        assert_eq!(report.total(), 0);
        let decoded = plan.decode(&slots).unwrap();
        assert_eq!(decoded[0].values, vec![1.5, -2.25, 0.0]);
    }

    #[test]
    fn clipping_is_counted() {
        let plan = EncodingPlan::new(&[QuantitySpec::new("x", 4, 10.0, 1.0)], &fast(10)).unwrap();
        let (slots, report) = plan
            .encode(&[QuantityValues::F64(&[11.0, -1e300, 10.0, 3.0])])
            .unwrap();
        assert_eq!(slots, vec![10, -10, 10, 3]);
        assert_eq!(
            (report.quantities[0].below, report.quantities[0].above),
            (1, 1)
        );
        let (_, report) = plan
            .encode(&[QuantityValues::I64(&[i64::MAX, 0, -11, 10])])
            .unwrap();
        assert_eq!(
            (report.quantities[0].below, report.quantities[0].above),
            (1, 1)
        );
    }

    #[test]
    fn wide_quantities_are_split_into_limbs_and_recombined_exactly() {
        let params = fast(10);
        // 2^40 per value, ×10 contributors: more than the fast profile's 31 message bits.
        let plan = EncodingPlan::new(
            &[QuantitySpec::new("money", 2, 2f64.powi(40), 1.0)],
            &params,
        )
        .unwrap();
        let q = &plan.quantities()[0];
        assert!(q.limbs > 1, "expected limbs, got {q:?}");
        let a = [(1i64 << 40) - 3, -(1i64 << 39) - 12345];
        let b = [-(1i64 << 40) + 1, -(1i64 << 40)];
        let (sa, _) = plan.encode(&[QuantityValues::I64(&a)]).unwrap();
        let (sb, _) = plan.encode(&[QuantityValues::I64(&b)]).unwrap();
        let limit = 1i128 << params.message_bits();
        assert!(sa.iter().chain(&sb).all(|s| s.abs() < limit));
        let summed: Vec<i128> = sa.iter().zip(&sb).map(|(x, y)| x + y).collect();
        let decoded = plan.decode(&summed).unwrap();
        assert_eq!(
            decoded[0].exact,
            vec![
                i128::from(a[0]) + i128::from(b[0]),
                i128::from(a[1]) + i128::from(b[1])
            ]
        );
    }

    #[test]
    fn overflowing_configuration_is_refused_with_the_numbers() {
        let mut spec = QuantitySpec::new("monetary_total", 1, 1e12, 1e6);
        spec.max_limbs = 1;
        let err = EncodingPlan::new(&[spec], &fast(1000)).unwrap_err();
        let text = err.to_string();
        assert!(matches!(err, EncodingError::Overflow { .. }), "{err:?}");
        assert!(
            text.contains("monetary_total") && text.contains("1000 contributors"),
            "{text}"
        );
    }

    #[test]
    fn bad_declarations_are_refused() {
        let p = fast(10);
        assert!(matches!(
            EncodingPlan::new(&[QuantitySpec::new("x", 1, f64::NAN, 1.0)], &p),
            Err(EncodingError::BadBoundOrScale { .. })
        ));
        assert!(matches!(
            EncodingPlan::new(&[QuantitySpec::new("x", 0, 1.0, 1.0)], &p),
            Err(EncodingError::EmptyQuantity(_))
        ));
        assert!(matches!(
            EncodingPlan::new(
                &[
                    QuantitySpec::new("x", 1, 1.0, 1.0),
                    QuantitySpec::new("x", 1, 1.0, 1.0)
                ],
                &p
            ),
            Err(EncodingError::BadName(_))
        ));
        let plan = EncodingPlan::new(&[QuantitySpec::new("x", 2, 1.0, 1.0)], &p).unwrap();
        assert!(matches!(
            plan.encode(&[QuantityValues::F64(&[1.0, f64::NAN])]),
            Err(EncodingError::NonFinite { index: 1, .. })
        ));
        assert!(matches!(
            plan.encode(&[QuantityValues::F64(&[1.0])]),
            Err(EncodingError::LengthMismatch { .. })
        ));
    }
}
