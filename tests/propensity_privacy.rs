//! Differential privacy of a propensity job, through the protocol state machines (wire encoding,
//! strict encryption): the noise each decrypted aggregate actually carries has the standard
//! deviation the accountant charged for, the reported ε never exceeds the budget and is the
//! conversion of the recorded ρ, the budget stops training, each participant's own trail agrees,
//! and a budget too small for the job is refused before anything runs.

mod fixture;

use fedbank_common::encoding::DecodedQuantity;
use fedbank_common::ids::NodeId;
use fedbank_common::job::privacy::{self, newton_kappa, PrivacySpec};
use fedbank_common::job::propensity::{PropensityResult, PropensityRound};
use fedbank_common::job::{JobSpec, LocalColumns, LocalInput, RoundKind, ValidJob};
use fedbank_coordinator::{CoordinatorMachine, Status};
use fedbank_participant::customers::CustomerRecords;
use fedbank_participant::{LocalData, ParticipantMachine, ParticipantOutput};
use fixture::customers::{job_spec, records};
use fixture::drive::{run_to_end_observed, Trail};
use serde_json::Value;

type S = u128;

fn private_job(n: usize, epsilon: f64, z: Option<f64>, max_rounds: u32) -> JobSpec {
    let mut spec = job_spec(n);
    // Every contributor must be present, so the aggregate carries exactly the accounted σ.
    spec.min_participants = n;
    let p = spec.propensity.as_mut().expect("propensity");
    p.max_rounds = max_rounds;
    p.score_bins = 200;
    p.privacy = Some(PrivacySpec {
        epsilon,
        delta: 1e-6,
        noise_multiplier: z,
        clip_norm: 3.0,
        colluding_participants: 0,
    });
    spec
}

/// A decrypted aggregate: round, kind, values.
type Aggregate = (u32, RoundKind, Vec<DecodedQuantity>);
/// Node id, its trail events (type, fields) and the last privacy state it saved.
type NodeTrail = (
    NodeId,
    Vec<(String, Value)>,
    Option<fedbank_participant::privacy_noise::PrivacyState>,
);

fn run(
    job: &ValidJob,
    data: &[CustomerRecords],
) -> (PropensityResult, Trail, Vec<Aggregate>, Vec<NodeTrail>) {
    let mut coordinator =
        CoordinatorMachine::<S>::new(job.clone(), 5, fedbank_transport::dev_pki::shared_trust());
    let mut nodes: Vec<ParticipantMachine<S>> = data
        .iter()
        .enumerate()
        .map(|(i, r)| {
            ParticipantMachine::with_data(
                fedbank_transport::dev_pki::shared_credentials(
                    &NodeId::new(format!("p{i}")).expect("id"),
                )
                .expect("credentials"),
                job.clone(),
                LocalData::Customers(r.clone()),
            )
            .expect("machine")
            // Reproducible noise, so the statistical checks below are not flaky.
            .with_privacy_secret([i as u8 + 1; 32])
        })
        .collect();
    let mut aggregates = Vec::new();
    let mut node_trails: Vec<NodeTrail> = Vec::new();
    let (status, trail) = run_to_end_observed(
        &mut coordinator,
        &mut nodes,
        |node, out| {
            if !node_trails.iter().any(|(n, _, _)| n == node) {
                node_trails.push((node.clone(), Vec::new(), None));
            }
            let Some((_, events, saved)) = node_trails.iter_mut().find(|(n, _, _)| n == node)
            else {
                return;
            };
            match out {
                ParticipantOutput::Audit { kind, fields } => {
                    events.push((kind.name().to_owned(), fields.into()))
                }
                ParticipantOutput::SavePrivacy(state) => *saved = Some(*state),
                _ => {}
            }
        },
        |round, kind, values| aggregates.push((round, kind.clone(), values.to_vec())),
    );
    match status {
        Status::Finished(result) => match result.released::<PropensityResult>("propensity") {
            Some(r) => (r, trail, aggregates, node_trails),
            None => panic!("job ended without a model: {result:?}"),
        },
        other => panic!("job ended without a model: {other:?}"),
    }
}

/// The exact (noise-free) aggregate of a round: every participant's own values, summed.
fn exact(job: &ValidJob, data: &[CustomerRecords], kind: &RoundKind) -> Vec<Vec<f64>> {
    let kind_of_job = job.spec().kind.registered().expect("a registered kind");
    let round = kind.registered().expect("a registered round");
    let empty = std::collections::BTreeMap::new();
    let mut sum: Vec<Vec<f64>> = Vec::new();
    for r in data {
        // Each participant's own step, on its own labeled customers.
        let input = LocalInput {
            table: LocalColumns {
                rows: 0,
                columns: &empty,
            },
            row_ids: None,
            transactions: None,
            customers: Some(r),
            contacts: None,
        };
        let values = kind_of_job
            .participant(job)
            .local_round(input, round)
            .expect("values")
            .values;
        if sum.is_empty() {
            sum = values;
        } else {
            for (s, v) in sum.iter_mut().zip(values) {
                s.iter_mut().zip(v).for_each(|(a, b)| *a += b);
            }
        }
    }
    sum
}

fn events<'a>(trail: &'a Trail, kind: &str) -> Vec<&'a serde_json::Map<String, Value>> {
    trail
        .iter()
        .filter(|(k, _)| *k == kind)
        .map(|(_, f)| f)
        .collect()
}

#[test]
fn the_noise_in_every_aggregate_matches_the_accountant_and_epsilon_stays_within_budget() {
    let n = 3;
    let job = private_job(n, 4.0, None, 8).validate().expect("valid job");
    let data = records(n, true);
    let (result, trail, aggregates, node_trails) = run(&job, &data);
    let report = result.privacy.clone().expect("a privacy report");
    let z = report.noise_multiplier;

    // ε: never above the budget, and the conversion of the ρ the rounds recorded.
    let spent = events(&trail, "privacy.spent");
    assert_eq!(
        spent.len(),
        aggregates.len(),
        "every aggregate is accounted for"
    );
    let rho: f64 = spent.iter().map(|e| e["rho"].as_f64().expect("rho")).sum();
    assert!((rho - report.rho_spent).abs() <= 1e-12 * rho.max(1.0));
    assert!((report.epsilon_spent - privacy::epsilon(rho, 1e-6)).abs() < 1e-9);
    assert!(report.epsilon_spent <= report.epsilon_budget, "{report:?}");
    // z was calibrated so that the full plan (3 features, 8 Newton rounds) spends the budget.
    let units = 3.0 + newton_kappa() * 8.0;
    assert!((units / (2.0 * z * z) - privacy::rho_within(4.0, 1e-6)).abs() < 1e-8);
    assert!(
        report.epsilon_spent > 3.999,
        "the calibration uses the budget"
    );

    // The noise: each decrypted value minus the exact sum, over the σ the trail says it
    // carries (here all of min_participants = 3 contributed, so carried = accounted).
    let mut standardized = Vec::new();
    for ((round, kind, values), event) in aggregates.iter().zip(&spent) {
        assert_eq!(event["round"].as_u64(), Some(u64::from(*round)));
        let truth = exact(&job, &data, kind);
        let plan = job.plan(kind).expect("plan");
        let noise = event["noise"].as_array().expect("noise");
        for q in noise {
            let name = q["name"].as_str().expect("name");
            let sigma = q["sigma_accounted"].as_f64().expect("sigma");
            let sensitivity = q["sensitivity"].as_f64().expect("sensitivity");
            // σ = z·Δ, and √(3d) times that for the moments (d = 3 features).
            let multiplier = if PropensityRound::of_kind(kind) == Some(PropensityRound::Moments) {
                z * 3.0
            } else {
                z
            };
            assert!(
                (sigma - multiplier * sensitivity).abs() <= 1e-9 * sigma,
                "σ for {name}"
            );
            assert_eq!(q["sigma_carried"].as_f64(), Some(sigma));
            let at = plan
                .quantities()
                .iter()
                .position(|p| p.spec.name == name)
                .expect("planned");
            let got = DecodedQuantity::find(values, name).expect("decrypted");
            for (g, t) in got.iter().zip(&truth[at]) {
                standardized.push((g - t) / sigma);
            }
        }
    }
    let count = standardized.len() as f64;
    eprintln!("noise check over {count} values");
    assert!(count > 200.0, "{count} noised values");
    let mean = standardized.iter().sum::<f64>() / count;
    let std = (standardized.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (count - 1.0)).sqrt();
    // A std estimated from N standard normals has standard error 1/√(2N) (≤ 5 % here).
    eprintln!("standardized noise: mean {mean:.4}, std {std:.4}");
    assert!(
        (std - 1.0).abs() < 4.0 / (2.0 * count).sqrt(),
        "std {std} over {count} values"
    );
    assert!(mean.abs() < 4.0 / count.sqrt(), "mean {mean}");

    // Every participant's own trail shows the same spend, within the budget.
    assert_eq!(node_trails.len(), n);
    for (node, events, saved) in &node_trails {
        // What the node saved before its last noised contribution left restores its spend.
        let state = saved.as_ref().expect("the node saved its privacy state");
        let plan = job.privacy().expect("plan");
        let restored = fedbank_participant::privacy_noise::ParticipantPrivacy::restore(
            plan,
            job.spec().min_participants,
            state,
        );
        assert!((restored.epsilon_spent() - report.epsilon_spent).abs() < 1e-9);
        let own: Vec<f64> = events
            .iter()
            .filter(|(k, _)| k == "privacy.spent")
            .map(|(_, f)| f["epsilon_spent"].as_f64().expect("ε"))
            .collect();
        assert_eq!(
            own.len(),
            aggregates.len(),
            "{node} added noise to every contribution"
        );
        assert!((own.last().copied().unwrap_or(0.0) - report.epsilon_spent).abs() < 1e-9);
        assert!(own.windows(2).all(|w| w[0] <= w[1]));
    }
    // No loss was released, and the report says how the figures were obtained.
    assert!(result.objective_per_round.is_empty());
    assert!(result
        .notes
        .iter()
        .any(|n| n.contains("noisy score histograms")));
    assert!(result.auc.is_some());
}

#[test]
fn the_budget_stops_training_and_the_evaluation_still_fits() {
    let n = 3;
    let data = records(n, false);
    // z fixed: the fixed rounds plus exactly two Newton rounds fit an ε of ...
    let z = 6.0;
    let rho_two = (3.0 + 2.0 * newton_kappa()) / (2.0 * z * z);
    let budget = privacy::epsilon(rho_two, 1e-6) * 1.0001;
    let job = private_job(n, budget, Some(z), 10)
        .validate()
        .expect("valid job");
    let (result, trail, _, _) = run(&job, &data);
    let report = result.privacy.expect("report");
    assert_eq!(result.rounds, 2, "two Newton rounds, then the budget");
    assert!(report.stopped_by_budget);
    assert!(report.epsilon_spent <= budget);
    assert!(result
        .notes
        .iter()
        .any(|n| n.contains("budget stopped training after 2")));
    let kinds: Vec<&str> = events(&trail, "privacy.spent")
        .iter()
        .map(|e| e["quantity"].as_str().expect("quantity"))
        .collect();
    assert_eq!(
        kinds,
        ["moments", "classes", "newton", "newton", "evaluate"]
    );
}

#[test]
fn a_budget_too_small_for_the_job_is_refused_before_it_starts() {
    let err = private_job(3, 0.05, Some(2.0), 5)
        .validate()
        .expect_err("refused");
    let text = err.to_string();
    assert!(
        text.contains("privacy") && text.contains("raise noise_multiplier to at least"),
        "{text}"
    );
    let mut odd = private_job(3, 4.0, None, 5);
    odd.propensity.as_mut().expect("p").score_bins = 21;
    assert!(odd
        .validate()
        .expect_err("odd bins")
        .to_string()
        .contains("even"));
}
