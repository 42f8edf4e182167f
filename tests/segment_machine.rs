//! Federated Lloyd k-means through the protocol state machines (every message through its wire
//! encoding) equals centralized Lloyd on the pooled rows with the same initial centroids and the
//! same number of iterations, for 1, 3 and 8 participants with very different sizes and mixes;
//! a participant with no customers in some segments; the default reference date; splitting
//! initialization and the choice of k; segment tables that do not make a job.

mod fixture;

use fedbank_common::encoding::Combine;
use fedbank_common::ids::{JobId, NodeId};
use fedbank_common::job::segment::{
    nearest, standardize, table_round, Lloyd, SegmentResult, SegmentRound, LATEST_DAY, LATEST_MONTH,
};
use fedbank_common::job::stats::mean_std;
use fedbank_common::job::{
    ChooseK, FeatureSpec, JobKind, JobSpec, KCriterion, LocalColumns, RoundKind, SegmentSpec,
    TransactionColumns, ValidJob,
};
use fedbank_common::protocol::Inbound;
use fedbank_coordinator::{CoordinatorMachine, CoordinatorOutput, Input, Status};
use fedbank_participant::{rfm, LocalTable, ParticipantMachine, ParticipantOutput};
use fixture::drive::{run_to_end, Trail};

type S = u128;

fn id(s: &str) -> NodeId {
    NodeId::new(s).expect("id")
}

const FEATURES: [&str; 3] = ["log_recency", "log_frequency", "log_monetary"];

fn job(n: usize, k_anonymity: u64) -> ValidJob {
    spec(n, k_anonymity).validate().expect("valid job")
}

fn spec(n: usize, k_anonymity: u64) -> JobSpec {
    JobSpec {
        job: JobId::new("segment-test").expect("id"),
        kind: JobKind::SEGMENT,
        profile: fedbank_common::secagg::Profile::Strict,
        participants: (0..n).map(|i| id(&format!("p{i}"))).collect(),
        committee: (0..n.min(3)).map(|i| id(&format!("p{i}"))).collect(),
        min_participants: 1,
        max_rows: 1_000_000,
        features: FEATURES
            .iter()
            .map(|f| FeatureSpec {
                name: (*f).into(),
                bound: 30.0,
                min: Some(0.0),
                scale: 1e6,
            })
            .collect(),
        id_column: None,
        histogram_bins: 10,
        key_setup_timeout_ms: 1000,
        round_timeout_ms: 1000,
        decryption_timeout_ms: 1000,
        max_round_retries: 0,
        max_decryption_retries: 1,
        start_quorum: None,
        propensity: None,
        compliance: None,
        auditor: None,
        settings: None,
        segment: Some(SegmentSpec {
            transactions: None,
            reference_date: None,
            k: Some(4),
            initial_centroids: vec![
                vec![-1.0, 1.0, 1.0],
                vec![1.0, -1.0, -1.0],
                vec![0.0, 0.0, 0.0],
                vec![-0.5, -0.5, 0.5],
            ],
            choose_k: None,
            max_iterations: 60,
            tolerance: 1e-9,
            k_anonymity,
        }),
    }
}

/// Non-IID RFM rows: institution i has its own size and its own mix of customer types.
fn tables(n: usize) -> Vec<LocalTable> {
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut uniform = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state >> 11) as f64 / (1u64 << 53) as f64
    };
    (0..n)
        .map(|i| {
            let rows = [40, 900, 150, 2600, 75, 500, 1200, 30][i % 8];
            let mut cols: Vec<Vec<Option<f64>>> =
                (0..3).map(|_| Vec::with_capacity(rows)).collect();
            for _ in 0..rows {
                // Customer types: active big spenders, lapsed, new, average — weighted by institution.
                let t = ((uniform() + i as f64 * 0.37) * 4.0) as usize % 4;
                let (r, f, m) = match t {
                    0 => (
                        5.0 + 20.0 * uniform(),
                        20.0 + 30.0 * uniform(),
                        2000.0 + 3000.0 * uniform(),
                    ),
                    1 => (
                        300.0 + 200.0 * uniform(),
                        1.0 + 3.0 * uniform(),
                        20.0 + 80.0 * uniform(),
                    ),
                    2 => (
                        1.0 + 10.0 * uniform(),
                        1.0 + uniform(),
                        10.0 + 40.0 * uniform(),
                    ),
                    _ => (
                        60.0 + 60.0 * uniform(),
                        4.0 + 8.0 * uniform(),
                        200.0 + 400.0 * uniform(),
                    ),
                };
                for (c, v) in cols.iter_mut().zip([r, f, m]) {
                    c.push(Some(f64::ln_1p(v)));
                }
            }
            LocalTable {
                columns: FEATURES.iter().map(|f| (*f).to_owned()).zip(cols).collect(),
                rows,
            }
        })
        .collect()
}

/// Runs the job through the machines with every message through the wire.
fn federated(job: &ValidJob, tables: Vec<LocalTable>) -> SegmentResult {
    let nodes = tables
        .into_iter()
        .enumerate()
        .map(|(i, t)| {
            ParticipantMachine::new(
                fedbank_transport::dev_pki::shared_credentials(&id(&format!("p{i}")))
                    .expect("credentials"),
                job.clone(),
                t,
            )
        })
        .collect();
    run(job, nodes).0
}

/// Runs the job with these participant machines; the result and the coordinator's trail.
fn run(job: &ValidJob, mut nodes: Vec<ParticipantMachine<S>>) -> (SegmentResult, Trail) {
    let mut coordinator =
        CoordinatorMachine::<S>::new(job.clone(), 7, fedbank_transport::dev_pki::shared_trust());
    match run_to_end(&mut coordinator, &mut nodes) {
        (Status::Finished(result), trail) => match result.released::<SegmentResult>("segment") {
            Some(r) => (r, trail),
            None => panic!("job ended without a segmentation: {result:?}"),
        },
        (other, _) => panic!("job ended without a segmentation: {other:?}"),
    }
}

/// Centralized Lloyd on the pooled rows, standardized with the pooled mean and std.
fn centralized(
    tables: &[LocalTable],
    init: &[Vec<f64>],
    iterations: u32,
) -> (Vec<Vec<f64>>, Vec<f64>, f64) {
    let rows: Vec<Vec<f64>> = tables
        .iter()
        .flat_map(|t| {
            (0..t.rows).map(|r| {
                FEATURES
                    .iter()
                    .map(|f| t.columns[*f][r].expect("value"))
                    .collect()
            })
        })
        .collect();
    let d = FEATURES.len();
    let (mean, std): (Vec<f64>, Vec<f64>) = (0..d)
        .map(|j| {
            let n = rows.len() as f64;
            mean_std(
                n,
                rows.iter().map(|r| r[j]).sum(),
                rows.iter().map(|r| r[j] * r[j]).sum(),
            )
        })
        .unzip();
    let z: Vec<Vec<f64>> = rows
        .iter()
        .map(|r| (0..d).map(|j| standardize(r[j], mean[j], std[j])).collect())
        .collect();
    let mut centroids = init.to_vec();
    let mut counts = vec![0.0; centroids.len()];
    let mut inertia = 0.0;
    for _ in 0..iterations {
        let mut sums = vec![vec![0.0; d]; centroids.len()];
        counts = vec![0.0; centroids.len()];
        inertia = 0.0;
        for row in &z {
            let (c, dist) = nearest(row, &centroids);
            counts[c] += 1.0;
            inertia += dist;
            for j in 0..d {
                sums[c][j] += row[j];
            }
        }
        for c in 0..centroids.len() {
            if counts[c] > 0.0 {
                centroids[c] = sums[c].iter().map(|s| s / counts[c]).collect();
            }
        }
    }
    (centroids, counts, inertia)
}

fn check(n: usize) {
    let job = job(n, 1);
    let tables = tables(n);
    let result = federated(&job, tables.clone());
    let init = &job.segment().expect("segment").initial_centroids;
    let (centroids, counts, inertia) = centralized(&tables, init, result.iterations);
    assert_eq!(result.k, centroids.len());
    assert!(
        (result.inertia - inertia).abs() <= 1e-6 * inertia,
        "{n} participants: inertia {} vs {inertia}",
        result.inertia
    );
    for (segment, (c, count)) in result.segments.iter().zip(centroids.iter().zip(&counts)) {
        assert_eq!(segment.size, *count, "segment sizes, {n} participants");
        for (a, b) in segment.centroid_standardized.iter().zip(c) {
            assert!(
                (a - b).abs() <= 1e-6 * b.abs().max(1e-3),
                "{n} participants: {a} vs {b}"
            );
        }
    }
    assert!(
        result.iterations >= 2,
        "Lloyd ran: {} iterations",
        result.iterations
    );
}

#[test]
fn federated_lloyd_equals_centralized_for_1_participant() {
    check(1);
}

#[test]
fn federated_lloyd_equals_centralized_for_3_participants() {
    check(3);
}

#[test]
fn federated_lloyd_equals_centralized_for_8_participants() {
    check(8);
}

#[test]
fn small_segments_are_merged_not_released() {
    // k_anonymity above the smallest natural segment: it must be merged away and reported.
    let job = job(3, 700);
    let result = federated(&job, tables(3));
    assert!(
        result.segments.iter().all(|s| s.size >= 700.0),
        "{:?}",
        result.segments
    );
    assert!(!result.merged_for_k_anonymity.is_empty());
    assert!(result.k < 4);
}

#[test]
fn a_participant_dropping_out_mid_job_is_left_out_and_recorded() {
    // p3 (not on the committee) answers the moments round and the first Lloyd round, then goes
    // silent: the later rounds
    // close at their deadline with the others, the trail records the drop, the job finishes.
    let job = job(4, 1);
    let mut coordinator =
        CoordinatorMachine::<S>::new(job.clone(), 7, fedbank_transport::dev_pki::shared_trust());
    let mut nodes: Vec<ParticipantMachine<S>> = tables(4)
        .into_iter()
        .enumerate()
        .map(|(i, t)| {
            ParticipantMachine::new(
                fedbank_transport::dev_pki::shared_credentials(&id(&format!("p{i}")))
                    .expect("credentials"),
                job.clone(),
                t,
            )
        })
        .collect();
    for node in &mut nodes {
        coordinator
            .handle(Input::Connected(node.id().clone()), 0)
            .expect("connect");
        node.on_connected();
    }
    let (mut now, mut contributions_from_p3, mut trail) = (0u64, 0, Vec::new());
    for _ in 0..100_000 {
        let mut inbox = Vec::new();
        for node in &mut nodes {
            while let Some(out) = node.poll_output() {
                if let ParticipantOutput::Send(m) = out {
                    let silent = *node.id() == id("p3") && contributions_from_p3 >= 2;
                    if matches!(m, fedbank_participant::ParticipantOutbound::Contribution(_))
                        && *node.id() == id("p3")
                    {
                        contributions_from_p3 += 1;
                    }
                    if !silent {
                        inbox.push((node.id().clone(), m.encode().expect("encode")));
                    }
                }
            }
        }
        for (from, bytes) in inbox {
            let message = Inbound::<S>::decode(&bytes).expect("decode");
            let _ = coordinator.handle(Input::Message { from, message }, now);
        }
        let mut delivered = false;
        while let Some(out) = coordinator.poll_output() {
            match out {
                CoordinatorOutput::Send { to, message } => {
                    let m =
                        Inbound::<S>::decode(&message.encode().expect("encode")).expect("decode");
                    let node = nodes.iter_mut().find(|n| *n.id() == to).expect("node");
                    node.handle(m).expect("handles");
                    delivered = true;
                }
                CoordinatorOutput::Audit { kind, fields } => trail.push((kind.name(), fields)),
                _ => {}
            }
        }
        match coordinator.status() {
            Status::Finished(result) => {
                let r: SegmentResult = result.released("segment").expect("a segmentation");
                assert!(r.iterations >= 2);
                let drops = trail
                    .iter()
                    .filter(|(k, f)| *k == "participant.dropped" && f["node"] == "p3")
                    .count();
                assert!(drops >= 1, "the drop is in the trail");
                return;
            }
            Status::Running => {}
            other => panic!("{other:?}"),
        }
        if !delivered {
            now = coordinator.poll_timeout().expect("a deadline");
            coordinator.handle(Input::Tick, now).expect("tick");
        }
    }
    panic!("the job did not finish");
}

#[test]
fn a_participant_with_no_customers_in_some_segments_is_counted_exactly() {
    // p3 holds only active big spenders: it has no customer in most segments, contributes zero
    // counts and sums there, and the result still equals centralized Lloyd.
    let mut tables = tables(3);
    let rows = 60;
    let champions: Vec<Vec<Option<f64>>> = (0..3)
        .map(|j| {
            (0..rows)
                .map(|r| Some(f64::ln_1p([10.0, 30.0, 3000.0][j] + r as f64)))
                .collect()
        })
        .collect();
    tables.push(LocalTable {
        columns: FEATURES
            .iter()
            .map(|f| (*f).to_owned())
            .zip(champions)
            .collect(),
        rows,
    });
    let job = job(4, 1);
    let result = federated(&job, tables.clone());
    let init = &job.segment().expect("segment").initial_centroids;
    let (centroids, counts, _) = centralized(&tables, init, result.iterations);
    for (segment, (c, count)) in result.segments.iter().zip(centroids.iter().zip(&counts)) {
        assert_eq!(segment.size, *count);
        for (a, b) in segment.centroid_standardized.iter().zip(c) {
            assert!((a - b).abs() <= 1e-6 * b.abs().max(1e-3), "{a} vs {b}");
        }
    }
    // What p3 contributed in the last Lloyd round: zero customers in at least two segments.
    let last = SegmentRound::KMeans(Lloyd {
        reference_day: None,
        mean: result.mean.clone(),
        std: result.std.clone(),
        centroids: result
            .segments
            .iter()
            .map(|s| s.centroid_standardized.clone())
            .collect(),
    });
    let rows = LocalColumns {
        rows: tables[3].rows,
        columns: &tables[3].columns,
    };
    let local = table_round(rows, &job.spec().features, 1_000_000, &last).expect("p3's round");
    let empty = local.values[0].iter().filter(|c| **c == 0.0).count();
    assert!(empty >= 2, "p3's counts per segment: {:?}", local.values[0]);
}

fn transaction_job(n: usize, reference_date: Option<&str>) -> ValidJob {
    let mut spec = spec(n, 1);
    let segment = spec.segment.as_mut().expect("segment");
    segment.transactions = Some(TransactionColumns {
        customer: "customer_id".into(),
        date: "date".into(),
        amount: "amount".into(),
    });
    segment.reference_date = reference_date.map(str::to_owned);
    segment.k = Some(2);
    segment.initial_centroids = vec![vec![-1.0, 1.0, 1.0], vec![1.0, -1.0, -1.0]];
    spec.validate().expect("valid job")
}

/// Three institutions' transaction logs whose latest purchases are 1997-12-31, 1998-03-14 and
/// 1998-06-29.
fn transaction_logs(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let latest = ["1997-12-31", "1998-03-14", "1998-06-29"];
    latest
        .iter()
        .enumerate()
        .map(|(i, last)| {
            let mut text = String::from("customer_id,date,amount\n");
            for c in 0..40 {
                let day = 1 + (c * 7 + i * 3) % 28;
                text.push_str(&format!(
                    "C{i}-{c},1997-{:02}-{day:02},{}\n",
                    1 + c % 12,
                    10 + c * i
                ));
                if c % 3 == 0 {
                    text.push_str(&format!("C{i}-{c},1997-11-{day:02},{}\n", 5 + c));
                }
            }
            text.push_str(&format!("C{i}-last,{last},25\n"));
            let path = dir.join(format!("p{i}.csv"));
            std::fs::write(&path, text).expect("write");
            path
        })
        .collect()
}

fn transaction_nodes(job: &ValidJob, logs: &[std::path::PathBuf]) -> Vec<ParticipantMachine<S>> {
    let columns = job
        .segment()
        .and_then(|s| s.transactions.clone())
        .expect("columns");
    logs.iter()
        .enumerate()
        .map(|(i, path)| {
            let history = rfm::read_transactions(path, &columns).expect("log");
            ParticipantMachine::from_transactions(
                fedbank_transport::dev_pki::shared_credentials(&id(&format!("p{i}")))
                    .expect("credentials"),
                job.clone(),
                history,
            )
            .expect("machine")
        })
        .collect()
}

#[test]
fn the_default_reference_date_is_the_day_after_the_consortiums_latest_purchase() {
    let dir = tempfile::tempdir().expect("dir");
    let logs = transaction_logs(dir.path());
    let job = transaction_job(3, None);
    let (found, trail) = run(&job, transaction_nodes(&job, &logs));
    assert_eq!(
        found.reference_date.as_deref(),
        Some("1998-06-30 (the day after the consortium's latest purchase)")
    );
    // The two reference-date rounds ran, each decrypted as a presence aggregate of every
    // participant, and were the only rounds before the moments.
    let rounds: Vec<String> = trail
        .iter()
        .filter(|(k, _)| *k == "round.started")
        .map(|(_, f)| f["quantity"].as_str().unwrap_or("").to_owned())
        .collect();
    assert_eq!(rounds[..3], ["latest_month", "latest_day", "moments"]);
    for quantity in [LATEST_MONTH, LATEST_DAY] {
        let plan = job
            .plan(&RoundKind::Registered(
                if quantity == LATEST_MONTH {
                    SegmentRound::LatestMonth
                } else {
                    SegmentRound::LatestDay { month: 0 }
                }
                .to_round()
                .expect("round"),
            ))
            .expect("plan");
        assert!(plan
            .quantities()
            .iter()
            .all(|q| q.spec.combine == Combine::Presence));
    }
    // The same job with that date given segments identically.
    let job_given = transaction_job(3, Some("1998-06-30"));
    let (given, _) = run(&job_given, transaction_nodes(&job_given, &logs));
    assert_eq!(
        given.reference_date.as_deref(),
        Some("1998-06-30 (given by the job)")
    );
    assert_eq!(found.segments, given.segments);
    assert_eq!(found.lifecycle, given.lifecycle);
    // A reference date before a participant's latest purchase stops that participant before it
    // connects, naming the file, the line and the column.
    let early = transaction_job(3, Some("1998-06-01"));
    let columns = early
        .segment()
        .and_then(|s| s.transactions.clone())
        .expect("columns");
    let history = rfm::read_transactions(&logs[2], &columns).expect("log");
    let message = ParticipantMachine::<S>::from_transactions(
        fedbank_transport::dev_pki::shared_credentials(&id("p2")).expect("credentials"),
        early,
        history,
    )
    .err()
    .expect("refused")
    .to_string();
    assert!(
        message.contains("p2.csv, line 56, column 'date': purchase on 1998-06-29"),
        "{message}"
    );
}

/// Four well-separated groups of customers in two features, dealt unevenly to three
/// institutions.
fn blobs() -> (Vec<LocalTable>, [usize; 4]) {
    let centers = [(-6.0, -6.0), (6.0, -6.0), (-6.0, 6.0), (6.0, 6.0)];
    let sizes = [300, 200, 120, 80];
    let mut tables = vec![LocalTable::default(); 3];
    let mut noise = 0u32;
    for (g, (&(x, y), &size)) in centers.iter().zip(&sizes).enumerate() {
        for r in 0..size {
            noise = noise.wrapping_mul(1_103_515_245).wrapping_add(12_345);
            let e = f64::from(noise >> 16) / 65_536.0 - 0.5;
            let t = &mut tables[(g + r) % if g == 3 { 2 } else { 3 }];
            for (name, v) in [("x", x + e), ("y", y - e)] {
                t.columns.entry(name.to_owned()).or_default().push(Some(v));
            }
            t.rows += 1;
        }
    }
    (tables, sizes)
}

fn choose_k_job(criterion: KCriterion) -> ValidJob {
    let mut spec = spec(3, 10);
    spec.features = ["x", "y"]
        .iter()
        .map(|f| FeatureSpec {
            name: (*f).into(),
            bound: 100.0,
            min: None,
            scale: 1e6,
        })
        .collect();
    let segment = spec.segment.as_mut().expect("segment");
    segment.k = None;
    segment.initial_centroids = Vec::new();
    segment.choose_k = Some(ChooseK {
        max_k: 6,
        criterion,
    });
    spec.validate().expect("valid job")
}

#[test]
fn splitting_from_aggregates_and_choosing_k_find_separated_groups() {
    for criterion in [KCriterion::Silhouette, KCriterion::Elbow] {
        let (tables, sizes) = blobs();
        let job = choose_k_job(criterion);
        let result = federated(&job, tables);
        let selection = result.k_selection.as_ref().expect("k was chosen");
        assert_eq!(selection.chosen, 4, "{criterion:?}: {selection:?}");
        assert_eq!(
            selection.candidates.iter().map(|c| c.k).collect::<Vec<_>>(),
            (1..=6).collect::<Vec<_>>()
        );
        assert_eq!(result.k, 4);
        let mut found: Vec<usize> = result.segments.iter().map(|s| s.size as usize).collect();
        found.sort_unstable();
        let mut expected = sizes.to_vec();
        expected.sort_unstable();
        assert_eq!(
            found, expected,
            "{criterion:?}: the groups are recovered exactly"
        );
        assert!(result.initialization.starts_with("splitting"));
    }
}

/// Every k tried has its own `max_iterations`: a k that comes after others is not cut short by
/// the iterations they used (they once shared one counter, so later k ran a single iteration).
#[test]
fn each_k_has_its_own_iteration_budget() {
    let (tables, _) = blobs();
    let mut spec = choose_k_job(KCriterion::Silhouette).spec().clone();
    let segment = spec.segment.as_mut().expect("segment");
    segment.max_iterations = 3;
    segment.tolerance = 1e-12;
    let job = spec.validate().expect("valid job");
    let result = federated(&job, tables);
    let selection = result.k_selection.as_ref().expect("k was chosen");
    assert_eq!(selection.candidates.len(), 6);
    for c in &selection.candidates {
        assert!(
            c.converged || c.iterations == 3,
            "k = {} stopped after {} iterations without converging",
            c.k,
            c.iterations
        );
        assert!((1..=3).contains(&c.iterations), "{c:?}");
    }
    assert!(
        selection.candidates.iter().any(|c| c.iterations > 1),
        "{selection:?}"
    );
}

#[test]
fn segment_tables_that_do_not_make_a_job_are_refused_with_the_reason() {
    type Edit = fn(&mut JobSpec);
    let cases: [(&str, Edit); 5] = [
        ("give either k", |s| {
            s.segment.as_mut().expect("segment").choose_k = Some(ChooseK {
                max_k: 4,
                criterion: KCriterion::Elbow,
            })
        }),
        ("k = 3 but initial_centroids lists 4", |s| {
            s.segment.as_mut().expect("segment").k = Some(3)
        }),
        ("initial centroid 2 must have 3 finite values", |s| {
            s.segment.as_mut().expect("segment").initial_centroids[1] = vec![0.0, f64::NAN, 1.0]
        }),
        ("reference_date applies only to transaction logs", |s| {
            s.segment.as_mut().expect("segment").reference_date = Some("1998-07-01".into())
        }),
        ("needs a [job.segment] table", |s| s.segment = None),
    ];
    for (expected, edit) in cases {
        let mut spec = spec(3, 1);
        edit(&mut spec);
        let message = spec.validate().expect_err(expected).to_string();
        assert!(message.contains(expected), "{message} / {expected}");
    }
}
