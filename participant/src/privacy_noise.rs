//! A participant's side of differential privacy (see `fedbank_common::job::privacy`): it adds its
//! share of each released quantity's Gaussian noise before encryption, and keeps its own
//! accountant so that a coordinator that ignores the budget gets nothing more.
//!
//! The noise of a round is drawn from a ChaCha stream keyed by a secret the node draws at
//! start and the round number, so a round asked again (a retry) gets the *same* noise: averaging
//! retries cannot shrink it. A round number asked again for a different computation is refused,
//! since the same noise on two different sums would cancel in their difference.

use fedbank_common::digest::Digest;
use fedbank_common::job::privacy::{Accountant, PrivacyPlan, RoundNoise};
use fedbank_common::job::propensity::PropensityRound;
use fedbank_common::job::RoundKind;
use fedbank_common::wire::{WireKind, WireMessage};
use rand::{RngCore, SeedableRng};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// What a participant keeps of its differential privacy across restarts.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub struct PrivacyState {
    /// The noise secret.
    secret: [u8; 32],
    /// Round number → digest of what it asked for.
    rounds: BTreeMap<u32, Digest>,
    /// Every release accounted, in order: round label and its noise.
    releases: Vec<(String, RoundNoise)>,
}

impl std::fmt::Debug for PrivacyState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PrivacyState")
            .field("secret", &"<redacted>")
            .field("rounds", &self.rounds.len())
            .field("releases", &self.releases.len())
            .finish()
    }
}

impl Drop for PrivacyState {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.secret);
    }
}

impl WireMessage for PrivacyState {
    const KIND: WireKind = WireKind::PrivacyState;
}

/// Why a round's noise cannot be added.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum NoiseError {
    /// The round could not be encoded to name it in the accountant.
    #[error(transparent)]
    Unencodable(#[from] fedbank_common::digest::EncodingFailed),
    /// The round would spend more than the job's budget.
    #[error(
        "the privacy budget does not allow round {round} ({label}): ε would reach {would_be:.4} (with the evaluation kept in reserve) of the budget {budget}"
    )]
    Budget {
        /// Round.
        round: u32,
        /// Round label.
        label: &'static str,
        /// ε after it.
        would_be: f64,
        /// ε budget.
        budget: f64,
    },
    /// The round releases something the accountant has no noise for (a round kind outside the
    /// job's private plan): it is refused rather than sent without noise.
    #[error("round {round} ('{label}') is not covered by this job's privacy accounting; nothing is released without noise")]
    Uncovered {
        /// Round.
        round: u32,
        /// Round label.
        label: &'static str,
    },
    /// The same round number was asked again for a different computation.
    #[error("round {0} was already asked for a different computation; the same noise cannot be used twice")]
    RoundReused(u32),
    /// The values do not match the round's quantities.
    #[error("round {round}: no values for the noised quantity '{name}'")]
    Shape {
        /// Round.
        round: u32,
        /// Quantity.
        name: String,
    },
}

/// A participant's noise source and accountant for one job.
#[derive(Debug)]
pub struct ParticipantPrivacy {
    plan: PrivacyPlan,
    min_participants: usize,
    secret: [u8; 32],
    accountant: Accountant,
    /// Round number → digest of what it asked for.
    rounds: BTreeMap<u32, Digest>,
    /// Every release accounted, for [`PrivacyState`].
    releases: Vec<(String, RoundNoise)>,
}

/// What was added to one contribution.
#[derive(Debug, Clone, PartialEq)]
pub struct NoiseAdded {
    /// The round's noise (aggregate σ per quantity) and cost.
    pub noise: RoundNoise,
    /// Each participant's share: σ/√m per quantity, in the same order.
    pub shares: Vec<f64>,
    /// This participant's own ε spent after the round.
    pub epsilon_spent: f64,
}

impl ParticipantPrivacy {
    /// For a job with `plan`, decrypted only with at least `min_participants` contributors.
    pub fn new(plan: PrivacyPlan, min_participants: usize) -> Self {
        let mut secret = [0u8; 32];
        rand::rng().fill_bytes(&mut secret);
        Self::with_secret(plan, min_participants, secret)
    }

    /// With a given noise secret (tests that need reproducible noise).
    pub fn with_secret(plan: PrivacyPlan, min_participants: usize, secret: [u8; 32]) -> Self {
        Self {
            accountant: Accountant::new(plan.clone()),
            plan,
            min_participants,
            secret,
            rounds: BTreeMap::new(),
            releases: Vec::new(),
        }
    }

    /// A participant restored from its saved `state`: the same secret, the rounds it answered
    /// and its accountant replayed from the releases.
    pub fn restore(plan: PrivacyPlan, min_participants: usize, state: &PrivacyState) -> Self {
        let mut restored = Self::with_secret(plan, min_participants, state.secret);
        restored.rounds = state.rounds.clone();
        for (label, noise) in &state.releases {
            restored.accountant.record(label, noise.clone());
        }
        restored.releases = state.releases.clone();
        restored
    }

    /// What to keep on disk so that a restart changes nothing.
    pub fn state(&self) -> PrivacyState {
        PrivacyState {
            secret: self.secret,
            rounds: self.rounds.clone(),
            releases: self.releases.clone(),
        }
    }

    /// Adds this participant's noise share to `values` (the round's quantities, `names` in the
    /// same order). Nothing is changed when the round cannot be afforded.
    pub fn add(
        &mut self,
        round: u32,
        kind: &RoundKind,
        names: &[&str],
        values: &mut [Vec<f64>],
    ) -> Result<Option<NoiseAdded>, NoiseError> {
        // Fail closed: a round this job's accountant does not cover releases nothing.
        let Some(noise) = self.plan.round_kind(kind) else {
            return Err(NoiseError::Uncovered {
                round,
                label: kind.label(),
            });
        };
        let what = Digest::of_encoded("fedbank.dp.round.v1", kind)?;
        match self.rounds.get(&round) {
            Some(d) if *d != what => return Err(NoiseError::RoundReused(round)),
            Some(_) => {}
            None => {
                let reserve = match PropensityRound::of_kind(kind) {
                    Some(PropensityRound::Evaluate { .. }) => 0.0,
                    _ => self.plan.evaluation_rho(),
                };
                if !self
                    .plan
                    .affords(self.accountant.rho(), noise.rho + reserve)
                {
                    return Err(NoiseError::Budget {
                        round,
                        label: kind.label(),
                        would_be: fedbank_common::job::privacy::epsilon(
                            self.accountant.rho() + noise.rho + reserve,
                            self.plan.spec.delta,
                        ),
                        budget: self.plan.spec.epsilon,
                    });
                }
            }
        }
        let mut indices = Vec::with_capacity(noise.quantities.len());
        for q in &noise.quantities {
            match names.iter().position(|n| *n == q.name) {
                Some(i) if i < values.len() => indices.push(i),
                _ => {
                    return Err(NoiseError::Shape {
                        round,
                        name: q.name.clone(),
                    })
                }
            }
        }
        let mut rng = rand::rngs::StdRng::from_seed(self.seed(round));
        let mut shares = Vec::with_capacity(indices.len());
        for (q, &i) in noise.quantities.iter().zip(&indices) {
            let share = PrivacyPlan::share(
                q.sigma,
                self.plan.honest_contributors(self.min_participants),
            );
            for v in values[i].iter_mut() {
                *v += share * standard_normal(&mut rng);
            }
            shares.push(share);
        }
        if let std::collections::btree_map::Entry::Vacant(first) = self.rounds.entry(round) {
            first.insert(what);
            self.accountant.record(kind.label(), noise.clone());
            self.releases.push((kind.label().to_owned(), noise.clone()));
        }
        Ok(Some(NoiseAdded {
            noise,
            shares,
            epsilon_spent: self.accountant.epsilon(),
        }))
    }

    fn seed(&self, round: u32) -> [u8; 32] {
        let mut material = Vec::with_capacity(36);
        material.extend_from_slice(&self.secret);
        material.extend_from_slice(&round.to_le_bytes());
        Digest::of("fedbank.dp.noise.v1", &material).0
    }

    /// ε this participant has spent.
    pub fn epsilon_spent(&self) -> f64 {
        self.accountant.epsilon()
    }
}

/// One draw of N(0, 1): Box–Muller on two uniforms with 53 random bits each, (0, 1] and [0, 1).
pub fn standard_normal(rng: &mut impl RngCore) -> f64 {
    let unit = |x: u64| (x >> 11) as f64 / (1u64 << 53) as f64;
    let u1 = 1.0 - unit(rng.next_u64());
    let u2 = unit(rng.next_u64());
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

#[cfg(test)]
mod tests {
    use super::*;
    use fedbank_common::job::privacy::PrivacySpec;
    use fedbank_common::job::{FeatureSpec, PropensitySpec};

    fn plan(epsilon: f64, z: Option<f64>) -> PrivacyPlan {
        let features = vec![FeatureSpec {
            name: "age".into(),
            bound: 100.0,
            min: Some(0.0),
            scale: 1.0,
        }];
        let spec = PropensitySpec {
            label: "y".into(),
            positive: "1".into(),
            negative: "0".into(),
            categorical: Vec::new(),
            other_level: false,
            l2: 1.0,
            max_rounds: 5,
            tolerance: 0.0,
            holdout: 0.2,
            holdout_seed: 0,
            class_weight: Default::default(),
            score_bins: 20,
            privacy: Some(PrivacySpec {
                epsilon,
                delta: 1e-6,
                noise_multiplier: z,
                clip_norm: 3.0,
                colluding_participants: 0,
            }),
            optimizer: Default::default(),
            local_epochs: 5,
            learning_rate: 0.1,
            batch_size: 64,
        };
        PrivacyPlan::of(&features, &spec).expect("plan")
    }

    fn newton(beta: f64) -> RoundKind {
        PropensityRound::Newton {
            mean: vec![0.0],
            std: vec![1.0],
            beta: vec![beta, 0.0],
            weights: [1.0, 1.0],
        }
        .to_kind()
        .expect("round")
    }

    /// m participants' shares of the same quantity sum to noise of the accountant's σ.
    #[test]
    fn the_sum_of_m_shares_has_the_accountants_sigma() {
        let plan = plan(4.0, Some(7.0));
        let m = 3;
        let kind = newton(0.0);
        let noise = plan.round_kind(&kind).expect("noised");
        let sigma = noise.quantities[0].sigma;
        assert_eq!(sigma, 7.0 * 3.0, "σ = z·w·C");
        let mut nodes: Vec<ParticipantPrivacy> = (0..m)
            .map(|i| ParticipantPrivacy::with_secret(plan.clone(), m, [i as u8; 32]))
            .collect();
        // 2 coefficients: gradient has 2 values, the packed Hessian 3; rounds 1..=2000 give
        // 4000 gradient draws of the aggregate noise.
        let mut draws = Vec::new();
        for round in 1..=2000u32 {
            let mut sum = [0.0f64; 2];
            for node in &mut nodes {
                // Fresh accountants: the test looks at the noise, not at the budget.
                node.accountant = Accountant::new(plan.clone());
                node.rounds.clear();
                let mut values = vec![vec![0.0; 2], vec![0.0; 3]];
                node.add(
                    round,
                    &kind,
                    &["newton.gradient", "newton.hessian"],
                    &mut values,
                )
                .expect("noise");
                sum[0] += values[0][0];
                sum[1] += values[0][1];
            }
            draws.extend(sum);
        }
        let n = draws.len() as f64;
        let mean = draws.iter().sum::<f64>() / n;
        let std = (draws.iter().map(|d| (d - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt();
        // Standard error of a std estimate from 4000 draws: σ/√(2n) ≈ 1.1 %.
        assert!((std / sigma - 1.0).abs() < 0.05, "std {std} vs σ {sigma}");
        assert!(mean.abs() < 4.0 * sigma / n.sqrt(), "mean {mean}");
    }

    #[test]
    fn a_retry_gets_the_same_noise_and_a_reused_round_number_is_refused() {
        let plan = plan(4.0, Some(7.0));
        let mut node = ParticipantPrivacy::new(plan, 1);
        let names = ["newton.gradient", "newton.hessian"];
        let mut a = vec![vec![0.0; 2], vec![0.0; 3]];
        let mut b = a.clone();
        node.add(4, &newton(0.0), &names, &mut a).expect("first");
        let spent = node.epsilon_spent();
        node.add(4, &newton(0.0), &names, &mut b).expect("retry");
        assert_eq!(a, b, "same round, same noise");
        assert_eq!(node.epsilon_spent(), spent, "a retry spends nothing more");
        let mut c = vec![vec![0.0; 2], vec![0.0; 3]];
        assert_eq!(
            node.add(4, &newton(0.5), &names, &mut c),
            Err(NoiseError::RoundReused(4))
        );
        assert_eq!(c, vec![vec![0.0; 2], vec![0.0; 3]], "nothing added");
    }

    #[test]
    fn a_participant_refuses_rounds_beyond_the_budget() {
        // z calibrated to exactly 5 Newton rounds plus the fixed rounds.
        let plan = plan(2.0, None);
        let mut node = ParticipantPrivacy::new(plan.clone(), 1);
        let mut values = vec![vec![0.0; 4]];
        let moments = ["age.count", "age.missing", "age.sum", "age.sumsq"];
        let mut m = vec![vec![0.0]; 4];
        node.add(
            1,
            &PropensityRound::Moments.to_kind().expect("round"),
            &moments,
            &mut m,
        )
        .expect("moments");
        node.add(
            2,
            &PropensityRound::Classes.to_kind().expect("round"),
            &["classes"],
            &mut values,
        )
        .expect("classes");
        let names = ["newton.gradient", "newton.hessian"];
        let mut accepted = 0;
        let mut refused = None;
        for round in 3..20u32 {
            let mut v = vec![vec![0.0; 2], vec![0.0; 3]];
            match node.add(round, &newton(round as f64), &names, &mut v) {
                Ok(_) => accepted += 1,
                Err(e) => {
                    assert_eq!(v, vec![vec![0.0; 2], vec![0.0; 3]], "nothing added");
                    refused = Some(e);
                    break;
                }
            }
        }
        assert_eq!(
            accepted, 5,
            "the calibrated budget pays for max_rounds Newton rounds"
        );
        assert!(
            matches!(refused, Some(NoiseError::Budget { .. })),
            "{refused:?}"
        );
        // The evaluation was kept in reserve and still fits; the spend stays within ε.
        let eval = PropensityRound::Evaluate {
            mean: vec![0.0],
            std: vec![1.0],
            beta: vec![0.0, 0.0],
        }
        .to_kind()
        .expect("round");
        let mut h = vec![vec![0.0; 20], vec![0.0; 20]];
        node.add(30, &eval, &["eval.positives", "eval.negatives"], &mut h)
            .expect("evaluation fits");
        assert!(
            node.epsilon_spent() <= 2.0 * (1.0 + 1e-9),
            "{}",
            node.epsilon_spent()
        );
        assert!(
            node.epsilon_spent() > 1.99,
            "the calibration uses the budget"
        );
    }

    /// A restarted participant takes back its state: the same noise for a round it answered,
    /// the same spend, and a budget that does not start again.
    #[test]
    fn a_restored_participant_keeps_its_noise_and_its_spend() {
        let plan = plan(2.0, None);
        let mut node = ParticipantPrivacy::new(plan.clone(), 3);
        let names = ["newton.gradient", "newton.hessian"];
        let mut first = vec![vec![0.0; 2], vec![0.0; 3]];
        node.add(1, &newton(0.0), &names, &mut first)
            .expect("round 1");
        let saved = node.state();
        let bytes = fedbank_common::wire::encode(&saved).expect("encode");
        let read: PrivacyState = fedbank_common::wire::decode(&bytes).expect("decode");
        assert_eq!(read, saved);
        assert!(format!("{read:?}").contains("<redacted>"));

        let mut restored = ParticipantPrivacy::restore(plan.clone(), 3, &read);
        assert_eq!(restored.epsilon_spent(), node.epsilon_spent());
        // The same round again gets the same noise, not a fresh sample to average.
        let mut again = vec![vec![0.0; 2], vec![0.0; 3]];
        restored
            .add(1, &newton(0.0), &names, &mut again)
            .expect("repeat");
        assert_eq!(again, first);
        // The same round number for another computation stays refused.
        let mut other = vec![vec![0.0; 2], vec![0.0; 3]];
        assert!(matches!(
            restored.add(1, &newton(1.0), &names, &mut other),
            Err(NoiseError::RoundReused(1))
        ));
        // A fresh node (what a restart without the state would be) spends from zero.
        assert!(ParticipantPrivacy::new(plan, 3).epsilon_spent() < restored.epsilon_spent());
    }

    /// A round the accountant does not cover is refused, not released without noise.
    #[test]
    fn an_uncovered_round_fails_closed() {
        let mut node = ParticipantPrivacy::new(plan(2.0, None), 3);
        let fedavg = PropensityRound::FedAvg {
            mean: vec![0.0],
            std: vec![1.0],
            beta: vec![0.0, 0.0],
            weights: [1.0, 1.0],
            training_customers: 10.0,
        }
        .to_kind()
        .expect("round");
        let mut values = vec![vec![1.0; 2]];
        let before = values.clone();
        assert!(matches!(
            node.add(1, &fedavg, &["fedavg.models"], &mut values),
            Err(NoiseError::Uncovered { round: 1, .. })
        ));
        assert_eq!(values, before);
        assert_eq!(node.epsilon_spent(), 0.0);
    }

    /// With c participants that may collude, each honest one adds σ/√(m − c): the m − c honest
    /// shares alone carry the accounted σ.
    #[test]
    fn noise_is_calibrated_to_the_stated_colluders() {
        let mut with_colluders = plan(4.0, Some(7.0));
        with_colluders.spec.colluding_participants = 2;
        let sigma = with_colluders
            .round_kind(&newton(0.0))
            .expect("noised")
            .quantities[0]
            .sigma;
        let honest = with_colluders.honest_contributors(5);
        assert_eq!(honest, 3);
        let share = PrivacyPlan::share(sigma, honest);
        assert!((share * (honest as f64).sqrt() - sigma).abs() < 1e-9);
        assert!(share > PrivacyPlan::share(sigma, 5));
    }
}
