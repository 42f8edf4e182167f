//! Federated Newton through the protocol state machines (every message through its wire
//! encoding and the strict profile's encryption) reaches the centralized optimum on the pooled
//! rows with the same penalty — coefficients within 1e-4 — for 1, 3 and 8 participants, IID and
//! non-IID; the AUC from encrypted score histograms matches the exact pooled AUC within the
//! histogram's resolution; bad customer tables are refused naming file, line and column; a
//! participant whose customers are all of one class and a constant column are handled and
//! reported.

mod fixture;

use fedbank_common::ids::NodeId;
use fedbank_common::job::propensity::LocalFigures;
use fedbank_common::job::propensity::PropensityResult;
use fedbank_common::job::stats::mean_std;
use fedbank_common::job::{Optimizer, ValidJob};
use fedbank_common::logistic::{self, exact_auc, sigmoid};
use fedbank_common::model::design_row;
use fedbank_common::model::PropensityModel;
use fedbank_common::protocol::{Inbound, JobReleased, NoticeKind};
use fedbank_coordinator::{CoordinatorMachine, Status};
use fedbank_participant::customers::CustomerRecords;
use fedbank_participant::{
    LocalData, NodeViolation, ParticipantMachine, ParticipantOutbound, ParticipantOutput,
};
use fixture::customers::{job, records, NUMERIC};
use fixture::drive::run_to_end_with;

type S = u128;

fn id(s: &str) -> NodeId {
    NodeId::new(s).expect("id")
}

fn federated(job: &ValidJob, data: Vec<CustomerRecords>) -> PropensityResult {
    federated_with_nodes(job, data).0
}

/// What one participant kept at the end: the released model and its own figures.
type Kept = (NodeId, PropensityModel, Option<LocalFigures>);

fn federated_with_nodes(
    job: &ValidJob,
    data: Vec<CustomerRecords>,
) -> (PropensityResult, Vec<Kept>) {
    let mut coordinator =
        CoordinatorMachine::<S>::new(job.clone(), 11, fedbank_transport::dev_pki::shared_trust());
    let mut nodes: Vec<ParticipantMachine<S>> = data
        .into_iter()
        .enumerate()
        .map(|(i, r)| {
            ParticipantMachine::with_data(
                fedbank_transport::dev_pki::shared_credentials(&id(&format!("p{i}")))
                    .expect("credentials"),
                job.clone(),
                LocalData::Customers(r),
            )
            .expect("machine")
        })
        .collect();
    let mut kept = Vec::new();
    let outcome = run_to_end_with(&mut coordinator, &mut nodes, |node, output| {
        if let ParticipantOutput::Model { model, figures } = output {
            kept.push((node.clone(), *model, figures));
        }
    });
    match outcome {
        (Status::Finished(result), _) => match result.released::<PropensityResult>("propensity") {
            Some(r) => (r, kept),
            None => panic!("job ended without a model: {result:?}"),
        },
        (other, _) => panic!("job ended without a model: {other:?}"),
    }
}

/// The pooled training rows' design vectors, standardized with the pooled training statistics.
fn pooled_design(job: &ValidJob, data: &[CustomerRecords], holdout: bool) -> Vec<(Vec<f64>, bool)> {
    let spec = job.spec();
    let p = job.propensity().expect("propensity");
    let train: Vec<(&CustomerRecords, usize)> = data
        .iter()
        .flat_map(|r| (0..r.label.len()).map(move |i| (r, i)))
        .filter(|(r, i)| !r.holdout[*i])
        .collect();
    let (mean, std): (Vec<f64>, Vec<f64>) = (0..NUMERIC.len())
        .map(|j| {
            let v: Vec<f64> = train.iter().filter_map(|(r, i)| r.numeric[*i][j]).collect();
            let (m, s) = mean_std(
                v.len() as f64,
                v.iter().sum(),
                v.iter().map(|x| x * x).sum(),
            );
            (m, s)
        })
        .unzip();
    let (numeric, categorical) = fedbank_common::model::PropensityModel::encodings(
        &spec.features,
        &mean,
        &std,
        &p.categorical,
        p.other_level,
    );
    data.iter()
        .flat_map(|r| (0..r.label.len()).map(move |i| (r, i)))
        .filter(|(r, i)| r.holdout[*i] == holdout)
        .map(|(r, i)| {
            (
                design_row(&numeric, &categorical, &r.numeric[i], &r.levels[i]),
                r.label[i],
            )
        })
        .collect()
}

fn check(n: usize, non_iid: bool) {
    let job = job(n);
    let data = records(n, non_iid);
    let result = federated(&job, data.clone());
    assert!(result.converged, "{n} participants: Newton converged");
    let p = job.propensity().expect("propensity");
    let rows: Vec<(Vec<f64>, bool, f64)> = pooled_design(&job, &data, false)
        .into_iter()
        .map(|(x, y)| (x, y, 1.0))
        .collect();
    let d = p.design_names(&job.spec().features).len();
    let (central, _) =
        logistic::fit_newton(&rows, d, p.l2, 100, 1e-12).expect("centralized Newton");
    for (c, b) in result.coefficients.iter().zip(&central) {
        assert!(
            (c.coefficient - b).abs() <= 1e-4,
            "{n} participants (non-IID {non_iid}): {} = {} vs centralized {b}",
            c.name,
            c.coefficient
        );
    }
    // Independently of any Newton code: the penalized gradient on the pooled rows vanishes at
    // the federated coefficients.
    let beta: Vec<f64> = result.coefficients.iter().map(|c| c.coefficient).collect();
    let mut gradient = vec![0.0; d];
    for (x, y, _) in &rows {
        let p = sigmoid(x.iter().zip(&beta).map(|(a, b)| a * b).sum());
        for (g, xi) in gradient.iter_mut().zip(x) {
            *g += (p - f64::from(u8::from(*y))) * xi;
        }
    }
    for (j, g) in gradient.iter_mut().enumerate().skip(1) {
        *g += p.l2 * beta[j];
    }
    let worst = gradient.iter().fold(0.0f64, |m, g| m.max(g.abs()));
    assert!(worst < 1e-3, "{n} participants: gradient {gradient:?}");
    // The AUC from the encrypted histograms is the exact pooled hold-out AUC within resolution.
    let scored: Vec<(f64, bool)> = pooled_design(&job, &data, true)
        .into_iter()
        .map(|(x, y)| (sigmoid(x.iter().zip(&beta).map(|(a, b)| a * b).sum()), y))
        .collect();
    let exact = exact_auc(&scored).expect("both classes held out");
    let auc = result.auc.expect("auc");
    assert!(
        (auc - exact).abs() <= result.auc_resolution + 1e-9,
        "AUC {auc} vs exact {exact} (resolution {})",
        result.auc_resolution
    );
    assert!(auc > 0.6, "the model learned something: {auc}");
    assert_eq!(
        result.holdout_customers as usize,
        scored.len(),
        "every hold-out customer was scored"
    );
}

#[test]
fn federated_newton_equals_centralized_for_1_participant() {
    check(1, false);
}

#[test]
fn federated_newton_equals_centralized_for_3_participants_iid_and_non_iid() {
    check(3, false);
    check(3, true);
}

#[test]
fn federated_newton_equals_centralized_for_8_participants_iid_and_non_iid() {
    check(8, false);
    check(8, true);
}

#[test]
fn one_class_participants_and_constant_columns_are_handled_and_reported() {
    let job = job(3);
    let mut data = records(3, true);
    // p2's customers all churn; the flag column is constant everywhere.
    for y in data[2].label.iter_mut() {
        *y = true;
    }
    for r in &mut data {
        for row in r.numeric.iter_mut() {
            row[2] = Some(1.0);
        }
    }
    let (result, kept) = federated_with_nodes(&job, data.clone());
    assert_eq!(result.constant_features, vec!["flag".to_owned()]);
    let flag = result
        .coefficients
        .iter()
        .find(|c| c.name == "flag")
        .expect("flag");
    assert_eq!(flag.coefficient, 0.0, "a constant column gets no weight");
    assert!(result
        .imputed
        .iter()
        .any(|(f, n)| f == "balance" && *n > 0.0));
    // Every participant received exactly the coordinator's model and computed its own figures.
    assert_eq!(kept.len(), 3, "each participant kept the model once");
    for (node, model, figures) in &kept {
        assert_eq!(model, &result.model, "{node} kept the released model");
        let figures = figures.as_ref().expect("figures");
        let own = data[node.as_str()[1..].parse::<usize>().expect("index")]
            .holdout
            .iter()
            .filter(|h| **h)
            .count();
        assert_eq!(
            figures.holdout_customers, own,
            "{node} scored its own hold-out"
        );
    }
    // p2 cannot train a model of its own; it says so instead of inventing an AUC.
    let figures = kept
        .iter()
        .find(|(n, _, _)| n.as_str() == "p2")
        .and_then(|(_, _, f)| f.clone())
        .expect("p2's figures");
    assert_eq!(figures.local_only_auc, None);
    assert!(figures.note.expect("a note").contains("all of one class"));
    assert!(kept
        .iter()
        .filter(|(n, _, _)| n.as_str() != "p2")
        .all(|(_, _, f)| f
            .as_ref()
            .is_some_and(|f| f.local_only_auc.is_some() && f.federated_auc.is_some())));

    // A released model that does not fit the job is refused and changes nothing.
    let mut node = ParticipantMachine::<S>::with_data(
        fedbank_transport::dev_pki::shared_credentials(&id("p0")).expect("credentials"),
        job.clone(),
        LocalData::Customers(data[0].clone()),
    )
    .expect("machine");
    let mut wrong = result.model.clone();
    wrong.coefficients.pop();
    let refused = node.handle(Inbound::Released(JobReleased {
        job: job.spec().job.clone(),
        release: fedbank_common::canonical::encode_body(&wrong).expect("encode"),
    }));
    assert!(
        matches!(
            &refused,
            Err(NodeViolation::WrongJob {
                message: "JobReleased",
                what,
            }) if what.contains("the released model")
        ),
        "{refused:?}"
    );
    // Only the refusal itself is written, to the node's own trail, and told to the coordinator.
    while let Some(out) = node.poll_output() {
        assert!(
            matches!(&out, ParticipantOutput::Audit { kind, .. } if kind.name() == "message.refused")
                || matches!(&out, ParticipantOutput::Send(ParticipantOutbound::Notice(n))
                    if n.kind == NoticeKind::MessageRefused && n.text.contains("the released model")),
            "nothing kept, nothing else sent: {out:?}"
        );
    }
}

#[test]
fn bad_customer_tables_name_the_file_line_and_column() {
    let job = job(1);
    let spec = job.propensity().expect("propensity");
    let dir = tempfile::tempdir().expect("dir");
    let cases = [
        (
            "age,balance,flag,channel,y\n30,10,1,online,1\n31,12,0,online,maybe\n",
            "line 3, column 'y': label is neither '1' nor '0' ('maybe')",
        ),
        (
            "age,balance,flag,channel,y\n30,10,1,fax,1\n",
            "line 2, column 'channel': level not declared in the job",
        ),
        (
            "age,balance,flag,channel,y\n30,ten,1,online,1\n",
            "line 2, column 'balance': not a number ('ten')",
        ),
        (
            "age,balance,channel,y\n30,10,online,1\n",
            "no column 'flag'",
        ),
        ("age,balance,flag,channel,y\n", "no data rows"),
    ];
    for (i, (text, expected)) in cases.iter().enumerate() {
        let path = dir.path().join(format!("customers-{i}.csv"));
        std::fs::write(&path, text).expect("write");
        let message =
            fedbank_participant::customers::read_customers(&path, &job.spec().features, spec, None)
                .expect_err(expected)
                .to_string();
        assert!(
            message.contains(&format!("customers-{i}.csv")) && message.contains(expected),
            "{message} / {expected}"
        );
    }
}

/// The pooled penalized objective Σ ℓ + λ/2‖β′‖² at `beta`.
fn pooled_objective(rows: &[(Vec<f64>, bool, f64)], beta: &[f64], l2: f64) -> f64 {
    let loss: f64 = rows
        .iter()
        .map(|(x, y, _)| logistic::row_loss(x.iter().zip(beta).map(|(a, b)| a * b).sum(), *y))
        .sum();
    logistic::penalized(loss, beta, l2)
}

fn fedavg(batch_size: usize, non_iid: bool) -> (f64, f64, PropensityResult) {
    let mut spec = fixture::customers::job_spec(3);
    let p = spec.propensity.as_mut().expect("propensity");
    p.optimizer = Optimizer::FedAvg;
    p.local_epochs = 5;
    p.learning_rate = 0.5;
    p.batch_size = batch_size;
    p.max_rounds = 60;
    p.tolerance = 1e-9;
    let job = spec.validate().expect("valid job");
    let data = records(3, non_iid);
    let result = federated(&job, data.clone());
    let p = job.propensity().expect("propensity");
    let rows: Vec<(Vec<f64>, bool, f64)> = pooled_design(&job, &data, false)
        .into_iter()
        .map(|(x, y)| (x, y, 1.0))
        .collect();
    let d = p.design_names(&job.spec().features).len();
    let (optimum, _) = logistic::fit_newton(&rows, d, p.l2, 100, 1e-12).expect("Newton");
    let beta: Vec<f64> = result.coefficients.iter().map(|c| c.coefficient).collect();
    eprintln!(
        "FedAvg (batch {batch_size}, non-IID {non_iid}): {} rounds, objective {:.6} vs optimum {:.6}",
        result.rounds,
        pooled_objective(&rows, &beta, p.l2),
        pooled_objective(&rows, &optimum, p.l2)
    );
    (
        pooled_objective(&rows, &beta, p.l2),
        pooled_objective(&rows, &optimum, p.l2),
        result,
    )
}

#[test]
fn fedavg_approaches_the_centralized_optimum_and_sends_no_hessian() {
    // Full-batch local steps on IID institutions: within 0.1 % of the optimal objective.
    let (objective, optimum, result) = fedavg(1_000_000, false);
    assert!(
        objective - optimum <= 1e-3 * optimum,
        "FedAvg {objective} vs optimum {optimum}"
    );
    assert!(
        objective >= optimum - 1e-9 * optimum,
        "nothing beats the optimum"
    );
    // The training curve falls.
    let curve = &result.objective_per_round;
    assert!(
        curve.len() >= 2 && curve.last() < curve.first(),
        "{curve:?}"
    );
    assert!(result.auc.expect("auc") > 0.6);
    // Mini-batches on non-IID institutions: close, not exact (local drift).
    let (objective, optimum, _) = fedavg(32, true);
    assert!(
        objective - optimum <= 5e-3 * optimum,
        "FedAvg {objective} vs optimum {optimum}"
    );
}

#[test]
fn fedavg_rounds_carry_d_values_not_a_hessian() {
    let mut spec = fixture::customers::job_spec(3);
    spec.propensity.as_mut().expect("p").optimizer = Optimizer::FedAvg;
    let job = spec.validate().expect("valid job");
    let d = job.coefficients();
    let round = fedbank_common::job::propensity::PropensityRound::FedAvg {
        mean: vec![0.0; 3],
        std: vec![1.0; 3],
        beta: vec![0.0; d],
        weights: [1.0, 1.0],
        training_customers: 100.0,
    }
    .to_kind()
    .expect("round");
    let plan = job.plan(&round).expect("plan");
    let values: usize = plan
        .quantities()
        .iter()
        .filter(|q| q.spec.name != fedbank_common::job::CLIPPED_VALUES)
        .map(|q| q.spec.len)
        .sum();
    assert_eq!(values, d + 2, "n·β, n and the loss");
    assert_eq!(
        plan.quantities().last().map(|q| q.spec.name.as_str()),
        Some(fedbank_common::job::CLIPPED_VALUES),
        "a job without differential privacy counts clipped values with every round"
    );
    // Differential privacy is accounted for Newton only: refused with FedAvg, with the reason.
    let mut spec = fixture::customers::job_spec(3);
    let p = spec.propensity.as_mut().expect("p");
    p.optimizer = Optimizer::FedAvg;
    p.privacy = Some(fedbank_common::job::privacy::PrivacySpec {
        epsilon: 4.0,
        delta: 1e-6,
        noise_multiplier: None,
        clip_norm: 3.0,
        colluding_participants: 0,
    });
    let err = spec.validate().expect_err("refused").to_string();
    assert!(err.contains("federated Newton only"), "{err}");
}
