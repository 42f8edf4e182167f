//! Federated Lloyd k-means through the protocol state machines (every message through its wire
//! encoding) equals centralized Lloyd on the pooled rows with the same initial centroids and the
//! same number of iterations, for 1, 3 and 8 participants with very different sizes and mixes.

use fedbank_common::ids::{JobId, NodeId};
use fedbank_common::job::{FeatureSpec, JobKind, JobSpec, SegmentSpec, ValidJob};
use fedbank_common::protocol::Inbound;
use fedbank_coordinator::segment::SegmentResult;
use fedbank_coordinator::stats::mean_std;
use fedbank_coordinator::{CoordinatorMachine, Input, JobResult, Output, Status};
use fedbank_participant::local_stats::{nearest, standardize};
use fedbank_participant::{LocalTable, NodeOutput, ParticipantMachine};
use std::collections::VecDeque;

type S = u128;

fn id(s: &str) -> NodeId {
    NodeId::new(s).expect("id")
}

const FEATURES: [&str; 3] = ["log_recency", "log_frequency", "log_monetary"];

fn job(n: usize, k_anonymity: u64) -> ValidJob {
    JobSpec {
        job: JobId::new("segment-test").expect("id"),
        kind: JobKind::Segment,
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
        histogram_bins: 10,
        key_setup_timeout_ms: 1000,
        round_timeout_ms: 1000,
        decryption_timeout_ms: 1000,
        max_round_retries: 0,
        segment: Some(SegmentSpec {
            transactions: None,
            reference_date: None,
            k: 4,
            initial_centroids: vec![
                vec![-1.0, 1.0, 1.0],
                vec![1.0, -1.0, -1.0],
                vec![0.0, 0.0, 0.0],
                vec![-0.5, -0.5, 0.5],
            ],
            max_iterations: 60,
            tolerance: 1e-9,
            k_anonymity,
        }),
    }
    .validate()
    .expect("valid job")
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
    let mut coordinator = CoordinatorMachine::<S>::new(job.clone(), 7);
    let mut nodes: Vec<ParticipantMachine<S>> = tables
        .into_iter()
        .enumerate()
        .map(|(i, t)| ParticipantMachine::new(id(&format!("p{i}")), job.clone(), t))
        .collect();
    let mut to_coordinator: VecDeque<(NodeId, Vec<u8>)> = VecDeque::new();
    for node in &mut nodes {
        coordinator
            .handle(Input::Connected(node.id().clone()), 0)
            .expect("connect");
        node.on_connected();
    }
    for _ in 0..1_000_000 {
        for node in &mut nodes {
            while let Some(out) = node.poll_output() {
                if let NodeOutput::Send(m) = out {
                    to_coordinator.push_back((node.id().clone(), m.encode().expect("encode")));
                }
            }
        }
        let mut progressed = false;
        while let Some((from, bytes)) = to_coordinator.pop_front() {
            let message = Inbound::<S>::decode(&bytes).expect("decode");
            coordinator
                .handle(Input::Message { from, message }, 0)
                .expect("accepted");
            progressed = true;
        }
        while let Some(out) = coordinator.poll_output() {
            if let Output::Send { to, message } = out {
                let m = Inbound::<S>::decode(&message.encode().expect("encode")).expect("decode");
                let node = nodes.iter_mut().find(|n| *n.id() == to).expect("node");
                node.handle(m).expect("node handles");
                progressed = true;
            }
        }
        match coordinator.status() {
            Status::Finished(JobResult::Segment(r)) => return r.clone(),
            Status::Running if progressed => {}
            other => panic!("job ended without a segmentation: {other:?}"),
        }
    }
    panic!("did not converge");
}

/// Centralized Lloyd on the pooled rows, standardized with the pooled mean and std.
fn centralized(
    tables: &[LocalTable],
    init: &[Vec<f64>],
    iterations: u32,
) -> (Vec<Vec<f64>>, Vec<f64>) {
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
    for _ in 0..iterations {
        let mut sums = vec![vec![0.0; d]; centroids.len()];
        counts = vec![0.0; centroids.len()];
        for row in &z {
            let (c, _) = nearest(row, &centroids);
            counts[c] += 1.0;
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
    (centroids, counts)
}

fn check(n: usize) {
    let job = job(n, 1);
    let tables = tables(n);
    let result = federated(&job, tables.clone());
    let init = &job.segment().expect("segment").initial_centroids;
    let (centroids, counts) = centralized(&tables, init, result.iterations);
    assert_eq!(result.k, centroids.len());
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
    let mut coordinator = CoordinatorMachine::<S>::new(job.clone(), 7);
    let mut nodes: Vec<ParticipantMachine<S>> = tables(4)
        .into_iter()
        .enumerate()
        .map(|(i, t)| ParticipantMachine::new(id(&format!("p{i}")), job.clone(), t))
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
                if let NodeOutput::Send(m) = out {
                    let silent = *node.id() == id("p3") && contributions_from_p3 >= 2;
                    if matches!(m, fedbank_participant::NodeOutbound::Contribution(_))
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
                Output::Send { to, message } => {
                    let m =
                        Inbound::<S>::decode(&message.encode().expect("encode")).expect("decode");
                    let node = nodes.iter_mut().find(|n| *n.id() == to).expect("node");
                    node.handle(m).expect("handles");
                    delivered = true;
                }
                Output::Audit { kind, fields } => trail.push((kind.name(), fields)),
                _ => {}
            }
        }
        match coordinator.status() {
            Status::Finished(JobResult::Segment(r)) => {
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
