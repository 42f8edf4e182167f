//! Differential privacy for propensity jobs: what each released aggregate's Gaussian noise is,
//! what it costs in zero-concentrated DP (zCDP), and how that converts to (ε, δ).
//!
//! # The guarantee
//! With `[job.propensity.privacy]`, every aggregate a propensity job decrypts is
//! (ε, δ)-differentially private with respect to adding or removing **one customer** at any one
//! institution, with ε the reported spend (never above the job's budget) and the job's δ. The
//! released model, its evaluation and every intermediate aggregate are covered; the coordinator,
//! the committee and every other participant see only noisy aggregates.
//!
//! # The mechanism
//! - **Clipping.** Values are clipped to the job's feature bounds (moments); each training
//!   customer's design row is scaled down to L2 norm ≤ `clip_norm` (Newton); losses are not
//!   released.
//! - **Noise.** Every released quantity q with L2 sensitivity Δ_q gets Gaussian noise of standard
//!   deviation σ_q = z·Δ_q in the aggregate, z the job's noise multiplier (the moments, which
//!   only set the standardization, take √(3d) times more for a d-feature job). It is added
//!   *distributedly*: each participant adds N(0, σ_q²/m) to its own contribution before
//!   encryption, m = `min_participants`. An aggregate that may be decrypted sums at least m
//!   contributions, so it carries at least σ_q (σ_q·√(K/m) with K contributors). The accountant
//!   uses σ_q: the guarantee holds even if K − m contributors added no noise.
//! - **Accounting.** A Gaussian release with sensitivity Δ and noise σ is Δ²/(2σ²)-zCDP; a
//!   round's releases are one Gaussian mechanism on the concatenated vector, whose cost is
//!   sup ‖v‖²_Σ⁻¹/2 over one customer's possible contribution v (see [`RoundNoise::units`]);
//!   costs add up over rounds. ρ-zCDP gives (ε, δ)-DP with ε the smaller of Bun & Steinke's
//!   ρ + 2√(ρ ln(1/δ)) and Canonne, Kamath & Steinke's conversion (2020, Prop. 12/Cor. 13).
//! - **Budget.** The job refuses to start unless the moments, the class counts, one Newton round
//!   and the evaluation fit the budget; training stops early (and evaluates) when one more
//!   Newton round and the evaluation would not. Each participant keeps its own accountant and
//!   refuses a round that would overspend, so a coordinator that ignores the budget gets nothing.
//!
//! # What it does not claim
//! Noise is sampled as a continuous Gaussian in double precision and rounded to a fixed-point
//! grid at most σ/1000 wide; it is not an exact discrete Gaussian (Canonne, Kamath & Steinke
//! 2020) and floating-point sampling is known to leak in low-order bits (Mironov 2012). The grid
//! discards bits below σ/1000, a mitigation rather than a proof. The hold-out split and the
//! participants' own local figures are not noised: they never leave the participant.

use super::{PropensityRound, PropensitySpec};
use crate::job::{FeatureSpec, RoundKind};
use serde::{Deserialize, Serialize};

/// The `[job.propensity.privacy]` table.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrivacySpec {
    /// Budget ε: training stops before the spend would exceed it.
    pub epsilon: f64,
    /// δ of the (ε, δ) guarantee.
    pub delta: f64,
    /// z: every released quantity carries noise z × its sensitivity. When absent, z is the
    /// smallest that lets `max_rounds` Newton rounds (plus moments, class counts and the
    /// evaluation) fit the budget.
    #[serde(default)]
    pub noise_multiplier: Option<f64>,
    /// Each training customer's design row (intercept included, standardized units) is scaled
    /// down to this L2 norm before it enters the Newton sums.
    #[serde(default = "default_clip_norm")]
    pub clip_norm: f64,
    /// Participants that may collude with the coordinator (adding no noise, or knowing and
    /// subtracting their own): every other contributor adds σ/√(min_participants − this), so
    /// that the honest ones alone carry the accounted σ. Must be below `min_participants`.
    #[serde(default)]
    pub colluding_participants: usize,
}

fn default_clip_norm() -> f64 {
    4.0
}

/// κ = max over p ∈ [0, 1] of p²(1 + 16(1 − p)²): one customer's joint cost in a Newton round
/// (gradient and Hessian), in units of 1/(2z²). See [`RoundNoise::units`].
pub fn newton_kappa() -> f64 {
    static KAPPA: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *KAPPA.get_or_init(kappa_bound)
}

fn kappa_bound() -> f64 {
    // f is smooth with one interior maximum near p = 0.58; a fine grid plus the grid's bound on
    // the error (|f'| ≤ 8 on [0, 1], step 1e-6) is an upper bound.
    let f = |p: f64| p * p * (1.0 + 16.0 * (1.0 - p) * (1.0 - p));
    let steps = 1_000_000;
    let max = (0..=steps)
        .map(|i| f(i as f64 / steps as f64))
        .fold(0.0f64, f64::max);
    max + 8.0 / steps as f64
}

/// ε of ρ-zCDP at δ: the smaller of Bun & Steinke (2016, Prop. 1.3) and Canonne, Kamath &
/// Steinke (2020, Cor. 13) minimized over the Rényi order α.
pub fn epsilon(rho: f64, delta: f64) -> f64 {
    if rho <= 0.0 {
        return 0.0;
    }
    let log_inv_delta = (1.0 / delta).ln();
    let bun_steinke = rho + 2.0 * (rho * log_inv_delta).sqrt();
    // ε(α) = αρ + (ln(1/δ) + (α − 1) ln(1 − 1/α) − ln α) / (α − 1), for α > 1.
    let at = |alpha: f64| {
        alpha * rho
            + (log_inv_delta + (alpha - 1.0) * (1.0 - 1.0 / alpha).ln() - alpha.ln())
                / (alpha - 1.0)
    };
    // ε(α) is quasi-convex in α: search ln(α − 1) on a grid, then refine around the best.
    let mut best = (f64::INFINITY, 0.0);
    for i in 0..=400 {
        let u = -10.0 + i as f64 * 0.06;
        let e = at(1.0 + u.exp());
        if e < best.0 {
            best = (e, u);
        }
    }
    let (mut lo, mut hi) = (best.1 - 0.06, best.1 + 0.06);
    for _ in 0..60 {
        let (a, b) = (lo + (hi - lo) / 3.0, hi - (hi - lo) / 3.0);
        if at(1.0 + a.exp()) < at(1.0 + b.exp()) {
            hi = b;
        } else {
            lo = a;
        }
    }
    let ckm = at(1.0 + ((lo + hi) / 2.0).exp()).min(best.0);
    bun_steinke.min(ckm).max(0.0)
}

/// The largest ρ whose ε at δ stays within `epsilon_budget`.
pub fn rho_within(epsilon_budget: f64, delta: f64) -> f64 {
    let (mut lo, mut hi) = (0.0f64, epsilon_budget.max(1e-12));
    // ε(ρ) ≥ ρ, so ρ = ε_budget is an upper end.
    for _ in 0..200 {
        let mid = (lo + hi) / 2.0;
        if epsilon(mid, delta) <= epsilon_budget {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    lo
}

/// Gaussian noise on one released quantity.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct QuantityNoise {
    /// Quantity name.
    pub name: String,
    /// L2 sensitivity to adding or removing one customer.
    pub sensitivity: f64,
    /// Standard deviation of the noise in the aggregate (at least; each participant adds σ/√m).
    pub sigma: f64,
}

/// The noise of one round's aggregate and its cost.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RoundNoise {
    /// Per quantity.
    pub quantities: Vec<QuantityNoise>,
    /// The cost in units of 1/(2z²): the round is ρ = units/(2z²)-zCDP.
    ///
    /// - moments: 1, with σ = z·√(3d)·Δ per quantity: a customer adds to the count, sum and sum
    ///   of squares of each of the d features it has, or to the missing count of one it lacks,
    ///   so at most 3d terms of (Δ/σ)² = 1/(3d z²) each;
    /// - classes: 1 (one customer changes two of the four counts by one: Δ = √2);
    /// - Newton: κ = max_p p²(1 + 16(1 − p)²) ≈ 1.287 ([`newton_kappa`]): with the row clipped
    ///   to norm C and weight ≤ w, the gradient changes by w|p − y|·C and the packed Hessian by
    ///   at most w·p(1 − p)·C², against σ = z·wC and z·wC²/4;
    /// - evaluation: 1 (one hold-out customer adds one to one bin of one of the histograms).
    pub units: f64,
    /// ρ of this round.
    pub rho: f64,
}

/// A propensity job's privacy plan: the same on the coordinator and on every participant,
/// because it is a function of the job file alone.
#[derive(Clone, Debug, PartialEq)]
pub struct PrivacyPlan {
    /// The job's privacy table.
    pub spec: PrivacySpec,
    /// The noise multiplier z in force (given, or calibrated to the budget).
    pub z: f64,
    features: Vec<FeatureSpec>,
}

/// Why a privacy table cannot be used.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PrivacyError {
    /// A number is out of range.
    #[error("{field} = {value} is out of range ({expected})")]
    OutOfRange {
        /// Field.
        field: &'static str,
        /// Value.
        value: f64,
        /// What is expected.
        expected: &'static str,
    },
    /// The rounds every job needs do not fit the budget.
    #[error(
        "with noise_multiplier {z:.3}, the moments, class counts, one Newton round and the evaluation spend ε = {needed:.3} > budget {budget}; \
         raise noise_multiplier to at least {z_min:.3} or the budget"
    )]
    BudgetTooSmall {
        /// z given.
        z: f64,
        /// ε those rounds need.
        needed: f64,
        /// ε budget.
        budget: f64,
        /// Smallest z that fits.
        z_min: f64,
    },
}

impl PrivacyPlan {
    /// The plan of a propensity job, `None` when it asks for no privacy.
    pub fn of(features: &[FeatureSpec], spec: &PropensitySpec) -> Option<Self> {
        let p = spec.privacy.as_ref()?;
        let units = Self::fixed_units(features.len()) + newton_kappa() * f64::from(spec.max_rounds);
        // Calibrated with a hair of room, so rounding in the sum of the rounds' ρ never shows
        // as a spend above the budget.
        let z = p.noise_multiplier.unwrap_or_else(|| {
            (units / (2.0 * rho_within(p.epsilon, p.delta) * (1.0 - 1e-9))).sqrt()
        });
        Some(Self {
            spec: p.clone(),
            z,
            features: features.to_vec(),
        })
    }

    /// Checks the numbers and that the fixed rounds and one Newton round fit the budget.
    pub fn check(&self) -> Result<(), PrivacyError> {
        let s = &self.spec;
        let range = |field, value: f64, ok: bool, expected| {
            if ok {
                Ok(())
            } else {
                Err(PrivacyError::OutOfRange {
                    field,
                    value,
                    expected,
                })
            }
        };
        range(
            "epsilon",
            s.epsilon,
            s.epsilon.is_finite() && s.epsilon > 0.0 && s.epsilon <= 100.0,
            "above 0, at most 100",
        )?;
        range(
            "delta",
            s.delta,
            s.delta > 0.0 && s.delta < 1e-2,
            "above 0, below 0.01",
        )?;
        range(
            "noise_multiplier",
            self.z,
            self.z.is_finite() && self.z >= 0.1 && self.z <= 1e6,
            "0.1 to 10^6",
        )?;
        range(
            "clip_norm",
            s.clip_norm,
            s.clip_norm.is_finite() && s.clip_norm > 1.0 && s.clip_norm <= 1000.0,
            "above 1 (the intercept alone has norm 1), at most 1000",
        )?;
        let needed = self.rho_of_units(Self::fixed_units(self.features.len()) + newton_kappa());
        if epsilon(needed, s.delta) > s.epsilon {
            let rho = rho_within(s.epsilon, s.delta);
            return Err(PrivacyError::BudgetTooSmall {
                z: self.z,
                needed: epsilon(needed, s.delta),
                budget: s.epsilon,
                z_min: ((Self::fixed_units(self.features.len()) + newton_kappa()) / (2.0 * rho))
                    .sqrt(),
            });
        }
        Ok(())
    }

    /// Moments, class counts and the evaluation: one unit each.
    fn fixed_units(_features: usize) -> f64 {
        3.0
    }

    fn rho_of_units(&self, units: f64) -> f64 {
        units / (2.0 * self.z * self.z)
    }

    /// ρ of one Newton round.
    pub fn newton_rho(&self) -> f64 {
        self.rho_of_units(newton_kappa())
    }

    /// ρ of the evaluation round.
    pub fn evaluation_rho(&self) -> f64 {
        self.rho_of_units(1.0)
    }

    /// ρ the budget allows.
    pub fn rho_budget(&self) -> f64 {
        rho_within(self.spec.epsilon, self.spec.delta)
    }

    /// Whether spending `more` on top of `spent` keeps ε within the budget.
    pub fn affords(&self, spent: f64, more: f64) -> bool {
        epsilon(spent + more, self.spec.delta) <= self.spec.epsilon * (1.0 + 1e-12)
    }

    /// The noise of a round's aggregate, `None` for a round that releases nothing noised or is
    /// not a propensity round.
    pub fn round_kind(&self, round: &RoundKind) -> Option<RoundNoise> {
        PropensityRound::of_kind(round).and_then(|r| self.round(&r))
    }

    /// The noise of a propensity round's aggregate, `None` for a round that releases nothing
    /// noised.
    pub fn round(&self, round: &PropensityRound) -> Option<RoundNoise> {
        let z = self.z;
        let q = |name: String, sensitivity: f64| QuantityNoise {
            name,
            sensitivity,
            sigma: z * sensitivity,
        };
        let (quantities, units) = match round {
            PropensityRound::Moments => {
                // Standardization needs only rough moments (the optimum moves little with
                // them), so this round takes √(3d) times the noise and costs one unit in all.
                let spread = (3.0 * self.features.len() as f64).sqrt();
                let q = |name: String, sensitivity: f64| QuantityNoise {
                    name,
                    sensitivity,
                    sigma: z * spread * sensitivity,
                };
                let mut quantities = Vec::new();
                for f in &self.features {
                    let largest = f.lower().abs().max(f.bound.abs());
                    quantities.push(q(format!("{}.count", f.name), 1.0));
                    quantities.push(q(format!("{}.missing", f.name), 1.0));
                    quantities.push(q(format!("{}.sum", f.name), largest));
                    quantities.push(q(format!("{}.sumsq", f.name), largest * largest));
                }
                (quantities, 1.0)
            }
            PropensityRound::Classes => (vec![q("classes".into(), 2f64.sqrt())], 1.0),
            PropensityRound::Newton { weights, .. } => {
                let w = weights[0].abs().max(weights[1].abs());
                let c = self.spec.clip_norm;
                (
                    vec![
                        q("newton.gradient".into(), w * c),
                        q("newton.hessian".into(), w * c * c / 4.0),
                    ],
                    newton_kappa(),
                )
            }
            PropensityRound::Evaluate { .. } => (
                vec![
                    q("eval.positives".into(), 1.0),
                    q("eval.negatives".into(), 1.0),
                ],
                1.0,
            ),
            PropensityRound::FedAvg { .. } => return None,
        };
        Some(RoundNoise {
            quantities,
            units,
            rho: self.rho_of_units(units),
        })
    }

    /// The noise each of at least `honest` contributors adds: σ/√honest.
    pub fn share(sigma: f64, honest: usize) -> f64 {
        sigma / (honest.max(1) as f64).sqrt()
    }

    /// Contributors whose noise a decryptable aggregate is sure to carry: `min_participants`
    /// less the participants that may collude with the coordinator.
    pub fn honest_contributors(&self, min_participants: usize) -> usize {
        min_participants
            .saturating_sub(self.spec.colluding_participants)
            .max(1)
    }

    /// The fixed-point scale of a noised quantity: fine enough that the grid is at most 1/1000
    /// of a participant's noise share, a power of ten, and never coarser than `scale`.
    pub fn noised_scale(scale: f64, share: f64) -> f64 {
        let needed = 10f64.powf((1000.0 / share).log10().ceil());
        scale.max(needed)
    }
}

/// The spend so far, as the coordinator reports it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PrivacyReport {
    /// ε budget.
    pub epsilon_budget: f64,
    /// δ.
    pub delta: f64,
    /// Noise multiplier z.
    pub noise_multiplier: f64,
    /// Clip norm of design rows.
    pub clip_norm: f64,
    /// ρ spent (zCDP).
    pub rho_spent: f64,
    /// ε spent at δ.
    pub epsilon_spent: f64,
    /// Whether the budget stopped training before max_rounds or convergence.
    pub stopped_by_budget: bool,
    /// Every noised release.
    pub releases: Vec<Release>,
}

/// One noised release.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Release {
    /// Round label.
    pub round: String,
    /// Its noise.
    pub noise: RoundNoise,
    /// ε spent after it.
    pub epsilon_after: f64,
}

/// The coordinator's (and each participant's) running spend.
#[derive(Clone, Debug, PartialEq)]
pub struct Accountant {
    plan: PrivacyPlan,
    rho: f64,
    releases: Vec<Release>,
    stopped_by_budget: bool,
}

impl Accountant {
    /// Nothing spent yet.
    pub fn new(plan: PrivacyPlan) -> Self {
        Self {
            plan,
            rho: 0.0,
            releases: Vec::new(),
            stopped_by_budget: false,
        }
    }

    /// The plan.
    pub fn plan(&self) -> &PrivacyPlan {
        &self.plan
    }

    /// ρ spent.
    pub fn rho(&self) -> f64 {
        self.rho
    }

    /// ε spent.
    pub fn epsilon(&self) -> f64 {
        epsilon(self.rho, self.plan.spec.delta)
    }

    /// Records a round's release.
    pub fn record(&mut self, round: &str, noise: RoundNoise) {
        self.rho += noise.rho;
        let epsilon_after = self.epsilon();
        self.releases.push(Release {
            round: round.to_owned(),
            noise,
            epsilon_after,
        });
    }

    /// Whether one more Newton round and the evaluation fit the budget.
    pub fn affords_newton(&self) -> bool {
        self.plan.affords(
            self.rho,
            self.plan.newton_rho() + self.plan.evaluation_rho(),
        )
    }

    /// Notes that the budget ended training.
    pub fn stop_for_budget(&mut self) {
        self.stopped_by_budget = true;
    }

    /// The report.
    pub fn report(&self) -> PrivacyReport {
        PrivacyReport {
            epsilon_budget: self.plan.spec.epsilon,
            delta: self.plan.spec.delta,
            noise_multiplier: self.plan.z,
            clip_norm: self.plan.spec.clip_norm,
            rho_spent: self.rho,
            epsilon_spent: self.epsilon(),
            stopped_by_budget: self.stopped_by_budget,
            releases: self.releases.clone(),
        }
    }
}

/// Scales a design row down to L2 norm ≤ `c` (in place).
pub fn clip_row(x: &mut [f64], c: f64) {
    let norm = x.iter().map(|v| v * v).sum::<f64>().sqrt();
    if norm > c {
        let s = c / norm;
        x.iter_mut().for_each(|v| *v *= s);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn conversion_matches_known_values_and_is_never_worse_than_bun_steinke() {
        // ρ = 0.5, δ = 1e-5: Bun & Steinke give 0.5 + 2√(0.5·ln 1e5) = 5.2985.
        let bs = 0.5 + 2.0 * (0.5 * (1e5f64).ln()).sqrt();
        let e = epsilon(0.5, 1e-5);
        assert!(e <= bs + 1e-12, "{e} vs {bs}");
        // The CKS conversion is strictly tighter here (about 4.9).
        assert!(e < bs - 0.2 && e > 4.0, "{e}");
        assert_eq!(epsilon(0.0, 1e-6), 0.0);
    }

    #[test]
    fn kappa_bounds_the_joint_newton_cost() {
        let k = newton_kappa();
        assert!((1.28..1.30).contains(&k), "{k}");
        // Brute force over p, y and row norms ≤ C: ‖Δg‖²/σ_g² + ‖ΔH‖²/σ_H² ≤ κ/z² (z = 1).
        let (c, w) = (3.0f64, 2.0f64);
        let (sg, sh) = (w * c, w * c * c / 4.0);
        for i in 0..=1000 {
            let p = i as f64 / 1000.0;
            for y in [0.0, 1.0] {
                for norm in [0.5, 1.0, 2.0, 3.0] {
                    let g = w * (p - y).abs() * norm;
                    let h = w * p * (1.0 - p) * norm * norm;
                    let cost = (g / sg).powi(2) + (h / sh).powi(2);
                    assert!(cost <= k + 1e-12, "p {p} y {y} norm {norm}: {cost}");
                }
            }
        }
    }

    proptest! {
        #[test]
        fn epsilon_is_monotone_and_rho_within_inverts_it(
            rho in 1e-4f64..5.0, delta_exp in 3i32..12, eps in 0.05f64..20.0
        ) {
            let delta = 10f64.powi(-delta_exp);
            prop_assert!(epsilon(rho, delta) <= epsilon(rho * 1.1, delta));
            prop_assert!(epsilon(rho, delta) >= rho);
            let r = rho_within(eps, delta);
            prop_assert!(epsilon(r, delta) <= eps * (1.0 + 1e-9));
            prop_assert!(epsilon(r * 1.001 + 1e-12, delta) > eps * (1.0 - 1e-9));
        }

        #[test]
        fn a_clipped_row_has_norm_at_most_c(row in proptest::collection::vec(-50f64..50.0, 1..40), c in 1.01f64..10.0) {
            let mut x = row.clone();
            clip_row(&mut x, c);
            let norm = x.iter().map(|v| v * v).sum::<f64>().sqrt();
            prop_assert!(norm <= c * (1.0 + 1e-12));
            // Direction is kept.
            let n0 = row.iter().map(|v| v * v).sum::<f64>().sqrt();
            if n0 <= c { prop_assert_eq!(&x, &row); }
        }
    }
}
