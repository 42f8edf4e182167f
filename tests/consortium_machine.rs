//! The round protocol without a network: a coordinator and many participants driven through
//! their state machines, every message going through its wire encoding, on a simulated clock.

use fedbank_common::ids::{JobId, NodeId};
use fedbank_common::job::stats::{self, mean_std, FeatureStats, StatsResult};
use fedbank_common::job::{FeatureSpec, JobKind, JobSpec, ValidJob};
use fedbank_common::protocol::{Inbound, Notice, NoticeKind, REFUSALS_TOLD};
use fedbank_coordinator::{
    CoordinatorMachine, CoordinatorOutput, CoordinatorProgress, Input, JobFailure, Status,
    Violation,
};
use fedbank_participant::{LocalTable, NodeStatus, ParticipantMachine, ParticipantOutput};
use std::collections::{BTreeMap, BTreeSet, VecDeque};

type S = u64;

fn id(s: &str) -> NodeId {
    NodeId::new(s).expect("id")
}

fn job(n: usize, committee: usize, min: usize) -> ValidJob {
    JobSpec {
        job: JobId::new("stats-test").expect("id"),
        kind: JobKind::STATS,
        profile: fedbank_common::secagg::Profile::Fast,
        participants: (0..n).map(|i| id(&format!("p{i:02}"))).collect(),
        committee: (0..committee).map(|i| id(&format!("p{i:02}"))).collect(),
        min_participants: min,
        max_rows: 100_000,
        features: vec![
            FeatureSpec {
                name: "age".into(),
                bound: 120.0,
                min: None,
                scale: 1000.0,
            },
            FeatureSpec {
                name: "balance".into(),
                bound: 1e6,
                min: Some(0.0),
                scale: 100.0,
            },
        ],
        id_column: None,
        histogram_bins: 10,
        key_setup_timeout_ms: 1000,
        round_timeout_ms: 5000,
        decryption_timeout_ms: 1000,
        max_round_retries: 1,
        max_decryption_retries: 1,
        start_quorum: None,
        propensity: None,
        compliance: None,
        auditor: None,
        settings: None,
        segment: None,
    }
    .validate()
    .expect("valid job")
}

/// Non-IID tables: each institution has its own size, age mix, balances and missing values.
fn table(i: usize) -> LocalTable {
    let rows = 50 + 37 * i;
    let mut age = Vec::with_capacity(rows);
    let mut balance = Vec::with_capacity(rows);
    for r in 0..rows {
        let x = ((r * 7919 + i * 104_729) % 1000) as f64 / 1000.0;
        age.push(if r % (5 + i) == 0 {
            None
        } else {
            Some(20.0 + 10.0 * i as f64 + 40.0 * x)
        });
        balance.push(Some(1000.0 * (i + 1) as f64 * x * x));
    }
    LocalTable {
        columns: [("age".to_owned(), age), ("balance".to_owned(), balance)]
            .into_iter()
            .collect(),
        rows,
    }
}

/// The same statistics computed on the pooled rows, clipped at the declared bound as the job
/// specifies.
fn pooled(tables: &[LocalTable], feature: &str, lower: f64, bound: f64) -> (f64, f64, f64, f64) {
    let values: Vec<f64> = tables
        .iter()
        .flat_map(|t| {
            t.columns[feature]
                .iter()
                .flatten()
                .map(|v| v.clamp(lower, bound))
        })
        .collect();
    let missing = tables
        .iter()
        .map(|t| t.columns[feature].iter().filter(|v| v.is_none()).count())
        .sum::<usize>();
    let n = values.len() as f64;
    let sum: f64 = values.iter().sum();
    let sumsq: f64 = values.iter().map(|v| v * v).sum();
    let (mean, std) = mean_std(n, sum, sumsq);
    (n, missing as f64, mean, std)
}

struct Consortium {
    now: u64,
    coordinator: CoordinatorMachine<S>,
    nodes: BTreeMap<NodeId, ParticipantMachine<S>>,
    to_coordinator: VecDeque<(NodeId, Vec<u8>)>,
    to_nodes: VecDeque<(NodeId, Vec<u8>)>,
    /// Nodes whose messages are dropped (crashed or cut off).
    silent: BTreeSet<NodeId>,
    violations: Vec<String>,
    trail: Vec<(String, serde_json::Map<String, serde_json::Value>)>,
    /// Every commitment and contribution sent, kept to replay later.
    sent: Vec<(NodeId, Vec<u8>)>,
    /// The job's cap on any message; every honest message must fit under it.
    cap: usize,
    /// The coordinator's progress, as typed events.
    progress: Vec<CoordinatorProgress>,
}

impl Consortium {
    fn new(job: &ValidJob, tables: Vec<LocalTable>) -> Self {
        let mut nodes = BTreeMap::new();
        for (i, t) in tables.into_iter().enumerate() {
            let node = id(&format!("p{i:02}"));
            nodes.insert(
                node.clone(),
                ParticipantMachine::new(
                    fedbank_transport::dev_pki::shared_credentials(&node).expect("credentials"),
                    job.clone(),
                    t,
                ),
            );
        }
        let mut c = Self {
            now: 0,
            coordinator: CoordinatorMachine::new(
                job.clone(),
                0xfeed,
                fedbank_transport::dev_pki::shared_trust(),
            ),
            nodes,
            to_coordinator: VecDeque::new(),
            to_nodes: VecDeque::new(),
            silent: BTreeSet::new(),
            violations: Vec::new(),
            trail: Vec::new(),
            sent: Vec::new(),
            cap: job.max_message_bytes(),
            progress: Vec::new(),
        };
        for node in c.nodes.keys().cloned().collect::<Vec<_>>() {
            c.connect(&node);
        }
        c
    }

    fn connect(&mut self, node: &NodeId) {
        self.coordinator
            .handle(Input::Connected(node.clone()), self.now)
            .expect("connect");
        if let Some(m) = self.nodes.get_mut(node) {
            m.on_connected();
        }
        self.drain_node(node);
    }

    fn disconnect(&mut self, node: &NodeId) {
        self.coordinator
            .handle(Input::Disconnected(node.clone()), self.now)
            .expect("disconnect");
    }

    fn drain_node(&mut self, node: &NodeId) {
        let Some(m) = self.nodes.get_mut(node) else {
            return;
        };
        while let Some(out) = m.poll_output() {
            if let ParticipantOutput::Send(msg) = out {
                let bytes = msg.encode().expect("encode");
                assert!(
                    bytes.len() <= self.cap,
                    "{} bytes exceed the job's cap {}",
                    bytes.len(),
                    self.cap
                );
                if matches!(
                    msg,
                    fedbank_participant::ParticipantOutbound::Contribution(_)
                        | fedbank_participant::ParticipantOutbound::ContributionCommitment(_)
                ) {
                    self.sent.push((node.clone(), bytes.clone()));
                }
                if !self.silent.contains(node) {
                    self.to_coordinator.push_back((node.clone(), bytes));
                }
            }
        }
    }

    fn drain_coordinator(&mut self) {
        while let Some(out) = self.coordinator.poll_output() {
            match out {
                CoordinatorOutput::Send { to, message } => {
                    let bytes = message.encode().expect("encode");
                    assert!(bytes.len() <= self.cap, "coordinator message over the cap");
                    self.to_nodes.push_back((to, bytes));
                }
                CoordinatorOutput::Audit { kind, fields } => {
                    self.trail.push((kind.name().to_owned(), fields))
                }
                CoordinatorOutput::Progress(event) => self.progress.push(event),
                CoordinatorOutput::Disconnect { .. }
                | CoordinatorOutput::Aggregate { .. }
                | CoordinatorOutput::Checkpoint(_) => {}
            }
        }
    }

    /// The refusals the coordinator has sent `node` so far (texts, in order); the coordinator's
    /// pending outputs are drained first.
    fn refusals_told(&mut self, node: &NodeId) -> Vec<Notice> {
        self.drain_coordinator();
        self.to_nodes
            .iter()
            .filter(|(to, _)| to == node)
            .filter_map(|(_, bytes)| match Inbound::<S>::decode(bytes) {
                Ok(Inbound::Notice(n)) if n.kind == NoticeKind::MessageRefused => Some(n),
                _ => None,
            })
            .collect()
    }

    fn deliver_to_coordinator(&mut self, from: NodeId, bytes: &[u8]) {
        let message = Inbound::<S>::decode(bytes).expect("decode");
        if let Err(v) = self
            .coordinator
            .handle(Input::Message { from, message }, self.now)
        {
            self.violations.push(v.to_string());
        }
    }

    /// The rounds whose aggregate the coordinator decrypted, in order.
    fn decrypted_rounds(&self) -> Vec<u64> {
        self.trail
            .iter()
            .filter(|(k, _)| k == "aggregate.decrypted")
            .filter_map(|(_, f)| f["round"].as_u64())
            .collect()
    }

    /// Runs until the job ends or nothing more can happen.
    fn run(&mut self) -> Status {
        for _ in 0..100_000 {
            self.drain_coordinator();
            if let Some((from, bytes)) = self.to_coordinator.pop_front() {
                self.deliver_to_coordinator(from, &bytes);
                continue;
            }
            if let Some((to, bytes)) = self.to_nodes.pop_front() {
                if !self.silent.contains(&to) {
                    let message = Inbound::<S>::decode(&bytes).expect("decode");
                    if let Some(m) = self.nodes.get_mut(&to) {
                        m.handle(message).expect("node handles");
                    }
                    self.drain_node(&to);
                }
                continue;
            }
            if *self.coordinator.status() != Status::Running {
                return self.coordinator.status().clone();
            }
            match self.coordinator.poll_timeout() {
                Some(t) => {
                    self.now = self.now.max(t);
                    self.coordinator
                        .handle(Input::Tick, self.now)
                        .expect("tick");
                }
                None => return self.coordinator.status().clone(),
            }
        }
        panic!("the job did not settle");
    }
}

/// The released statistics of two runs are the same, and both runs released some.
fn assert_same_statistics(job: &ValidJob, status: &Status, uninterrupted: &Status) {
    let (Some(got), Some(want)) = (
        stats_of(status, &job.spec().features),
        stats_of(uninterrupted, &job.spec().features),
    ) else {
        panic!("{status:?} / {uninterrupted:?}");
    };
    assert_eq!(got, want);
}

fn assert_matches_pooled(result: &[FeatureStats], tables: &[LocalTable]) {
    for f in result {
        let (lower, bound) = if f.name == "age" {
            (-120.0, 120.0)
        } else {
            (0.0, 1e6)
        };
        let (n, missing, mean, std) = pooled(tables, &f.name, lower, bound);
        assert_eq!(f.count, n, "{}", f.name);
        assert_eq!(f.missing, missing, "{}", f.name);
        // Each participant's sum is rounded at the feature's scale (≥ 100): mean within 1e-6 relative.
        assert!(
            (f.mean - mean).abs() <= 1e-6 * mean.abs().max(1.0),
            "{}: {} vs {mean}",
            f.name,
            f.mean
        );
        assert!(
            (f.std - std).abs() <= 1e-4 * std.max(1.0),
            "{}: {} vs {std}",
            f.name,
            f.std
        );
        assert_eq!(
            f.histogram.iter().sum::<f64>(),
            n,
            "{}: histogram covers every value",
            f.name
        );
    }
}

#[test]
fn eight_participants_compute_the_pooled_statistics() {
    let job = job(8, 3, 3);
    let tables: Vec<LocalTable> = (0..8).map(table).collect();
    let mut c = Consortium::new(&job, tables.clone());
    let Some(result) = stats_of(&c.run(), &job.spec().features) else {
        panic!("job failed: {:?}", c.coordinator.status())
    };
    assert_matches_pooled(&result, &tables);
    assert!(c.violations.is_empty(), "{:?}", c.violations);
    assert!(c
        .nodes
        .values()
        .all(|n| *n.status() == NodeStatus::Finished));
    // The coordinator's trail records every contribution of both rounds.
    let received = c
        .trail
        .iter()
        .filter(|(k, _)| k == "contribution.received")
        .count();
    assert_eq!(received, 16);
    // The operator's progress is typed: two rounds asked of all eight, sixteen contributions,
    // then the end.
    let started: Vec<(u32, &str, usize)> = c
        .progress
        .iter()
        .filter_map(|p| match p {
            CoordinatorProgress::RoundStarted {
                round,
                label,
                asked,
                ..
            } => Some((*round, *label, *asked)),
            _ => None,
        })
        .collect();
    assert_eq!(started, [(1, "moments", 8), (2, "histogram", 8)]);
    let contributed = c
        .progress
        .iter()
        .filter(|p| matches!(p, CoordinatorProgress::Contributed { .. }))
        .count();
    assert_eq!(contributed, 16);
    assert_eq!(c.progress.last(), Some(&CoordinatorProgress::Finished));
    assert_eq!(
        CoordinatorProgress::Finished.to_string(),
        "job finished",
        "the shell renders the event"
    );
}

#[test]
fn a_silent_participant_is_left_out_and_the_job_finishes() {
    let job = job(6, 2, 3);
    let tables: Vec<LocalTable> = (0..6).map(table).collect();
    let mut c = Consortium::new(&job, tables.clone());
    c.silent.insert(id("p05"));
    let Some(result) = stats_of(&c.run(), &job.spec().features) else {
        panic!("job failed: {:?}", c.coordinator.status())
    };
    assert_matches_pooled(&result, &tables[..5]);
    let dropped: Vec<_> = c
        .trail
        .iter()
        .filter(|(k, f)| k == "participant.dropped" && f["node"] == "p05")
        .collect();
    assert_eq!(dropped.len(), 2, "dropped in both rounds: {:?}", c.trail);
}

#[test]
fn too_few_contributors_is_retried_then_stops_with_a_clear_error() {
    let job = job(4, 1, 3);
    let mut c = Consortium::new(&job, (0..4).map(table).collect());
    c.silent.insert(id("p02"));
    c.silent.insert(id("p03"));
    match c.run() {
        Status::Failed(JobFailure::TooFewContributors {
            round: 1,
            attempts: 2,
            got: 2,
            required: 3,
        }) => {}
        other => panic!("expected a too-few-contributors failure, got {other:?}"),
    }
    assert!(c
        .nodes
        .values()
        .take(2)
        .all(|n| matches!(n.status(), NodeStatus::Aborted(_))));
}

/// A round that everyone asked has answered, but with fewer than `min_participants`
/// contributors, waits for its deadline instead of retrying at once: participants that join
/// meanwhile (one still reading a large table) are asked in the next attempt, and the job's
/// retries are not burnt in milliseconds.
#[test]
fn a_round_short_of_contributors_waits_for_late_joiners_instead_of_burning_its_retries() {
    let job = job(4, 1, 3);
    let mut c = Consortium::new(&job, (0..4).map(table).collect());
    let late = [id("p02"), id("p03")];
    c.to_coordinator.retain(|(from, _)| !late.contains(from));
    for node in &late {
        c.disconnect(node);
    }
    // Deliver everything without letting time pass: p00 and p01 contribute to round 1.
    loop {
        c.drain_coordinator();
        if let Some((from, bytes)) = c.to_coordinator.pop_front() {
            c.deliver_to_coordinator(from, &bytes);
        } else if let Some((to, bytes)) = c.to_nodes.pop_front() {
            let message = Inbound::<S>::decode(&bytes).expect("decode");
            c.nodes
                .get_mut(&to)
                .expect("node")
                .handle(message)
                .expect("handles");
            c.drain_node(&to);
        } else {
            break;
        }
    }
    assert_eq!(*c.coordinator.status(), Status::Running);
    let attempts = c
        .trail
        .iter()
        .filter(|(k, f)| k == "round.started" && f["round"] == 1)
        .count();
    assert_eq!(attempts, 1, "round 1 was retried before its deadline");
    // Two commitments of at least three: the roster waits for the deadline too.
    assert!(c.trail.iter().all(|(k, _)| *k != "roster.fixed"));
    // The late participants join; the next attempt asks them and the job finishes.
    for node in &late {
        c.connect(node);
    }
    assert!(matches!(c.run(), Status::Finished(_)), "{:?}", c.violations);
    let decrypted: Vec<usize> = c
        .trail
        .iter()
        .filter(|(k, _)| k == "decryption.requested")
        .filter_map(|(_, f)| f["contributors"].as_array().map(Vec::len))
        .collect();
    assert_eq!(decrypted.first(), Some(&4), "{decrypted:?}");
}

#[test]
fn a_silent_committee_member_stops_the_round_naming_it() {
    let job = job(4, 2, 2);
    let mut c = Consortium::new(&job, (0..4).map(table).collect());
    // p01 takes part in key setup, then stops answering.
    c.drain_coordinator();
    for _ in 0..200 {
        if let Some((from, bytes)) = c.to_coordinator.pop_front() {
            c.deliver_to_coordinator(from, &bytes);
        }
        c.drain_coordinator();
        if let Some((to, bytes)) = c.to_nodes.pop_front() {
            let m = Inbound::<S>::decode(&bytes).expect("decode");
            let joint_key = matches!(m, Inbound::KeyBundle(_));
            c.nodes
                .get_mut(&to)
                .expect("node")
                .handle(m)
                .expect("handles");
            c.drain_node(&to);
            if joint_key && to == id("p01") {
                break;
            }
        }
    }
    c.silent.insert(id("p01"));
    // The round is run once more (max_decryption_retries = 1), then the job stops, naming it.
    match c.run() {
        Status::Failed(JobFailure::MemberTimeout { round: 2, members }) => {
            assert_eq!(members, vec![id("p01")])
        }
        other => panic!("expected a member timeout, got {other:?}"),
    }
    let retries = c
        .trail
        .iter()
        .filter(|(k, _)| k == "decryption.retried")
        .count();
    assert_eq!(retries, 1);
    assert!(!c.trail.iter().any(|(k, _)| k == "aggregate.decrypted"));
}

/// Runs until the first decryption request reaches p01, which then crashes before answering;
/// it comes back (with its key share) after `away` ms and says Hello. The job's status.
fn member_away_during_decryption(c: &mut Consortium, away: u64) -> Status {
    c.drain_coordinator();
    loop {
        if let Some((from, bytes)) = c.to_coordinator.pop_front() {
            c.deliver_to_coordinator(from, &bytes);
        }
        c.drain_coordinator();
        let Some((to, bytes)) = c.to_nodes.pop_front() else {
            continue;
        };
        let m = Inbound::<S>::decode(&bytes).expect("decode");
        if to == id("p01") && matches!(m, Inbound::Decrypt(_)) {
            break;
        }
        c.nodes
            .get_mut(&to)
            .expect("node")
            .handle(m)
            .expect("handles");
        c.drain_node(&to);
    }
    c.disconnect(&id("p01"));
    c.drain_coordinator();
    c.now += away;
    c.coordinator.handle(Input::Tick, c.now).expect("tick");
    c.drain_coordinator();
    c.connect(&id("p01"));
    c.run()
}

/// Back before the decryption's deadline (1000 ms here): it is sent the same request on its
/// Hello, and the round is decrypted under its own number, with no retry.
#[test]
fn a_member_that_goes_away_during_decryption_and_is_back_in_time_answers_the_same_request() {
    let job = job(4, 2, 2);
    let tables: Vec<LocalTable> = (0..4).map(table).collect();
    let uninterrupted = Consortium::new(&job, tables.clone()).run();
    let mut c = Consortium::new(&job, tables.clone());
    let status = member_away_during_decryption(&mut c, 500);
    assert_same_statistics(&job, &status, &uninterrupted);
    assert!(!c.trail.iter().any(|(k, _)| k == "decryption.retried"));
    assert_eq!(c.decrypted_rounds(), vec![1, 2]);
}

/// Back after the deadline: nothing of the round was released, and it runs again under a new
/// number once the committee is back; it costs a retry, not the job.
#[test]
fn a_member_that_goes_away_during_decryption_and_returns_late_costs_a_retry_not_the_job() {
    let job = job(4, 2, 2);
    let tables: Vec<LocalTable> = (0..4).map(table).collect();
    let uninterrupted = Consortium::new(&job, tables.clone()).run();
    let mut c = Consortium::new(&job, tables.clone());
    let status = member_away_during_decryption(&mut c, 1500);
    assert_same_statistics(&job, &status, &uninterrupted);
    let kinds: Vec<&str> = c.trail.iter().map(|(k, _)| k.as_str()).collect();
    let retried = kinds
        .iter()
        .position(|k| *k == "decryption.retried")
        .expect("retry");
    // Nothing of round 1 was decrypted: the first aggregate comes after the retry.
    let first_decrypted = kinds
        .iter()
        .position(|k| *k == "aggregate.decrypted")
        .expect("decrypted");
    assert!(first_decrypted > retried);
    assert_eq!(c.decrypted_rounds(), vec![2, 3]);
}

/// A member that went away after contributing misses the decryption request sent while it was
/// gone; when it says Hello again it gets the request at once, and the round is decrypted
/// under its own number, with no retry and no deadline waited out.
#[test]
fn a_member_back_during_decryption_gets_the_request_it_missed() {
    let job = job(4, 2, 2);
    let tables: Vec<LocalTable> = (0..4).map(table).collect();
    let uninterrupted = Consortium::new(&job, tables.clone()).run();
    let mut c = Consortium::new(&job, tables.clone());
    let member = id("p01");
    let mut missed = false;
    for _ in 0..100_000 {
        c.drain_coordinator();
        if let Some((from, bytes)) = c.to_coordinator.pop_front() {
            let contributed = from == member
                && matches!(Inbound::<S>::decode(&bytes), Ok(Inbound::Contribution(_)));
            c.deliver_to_coordinator(from, &bytes);
            if contributed {
                // Its contribution is in; then its connection drops.
                c.silent.insert(member.clone());
                c.disconnect(&member);
            }
            continue;
        }
        let Some((to, bytes)) = c.to_nodes.pop_front() else {
            break;
        };
        let message = Inbound::<S>::decode(&bytes).expect("decode");
        if c.silent.contains(&to) {
            missed |= matches!(message, Inbound::Decrypt(_));
            if missed {
                break;
            }
            continue;
        }
        c.nodes
            .get_mut(&to)
            .expect("node")
            .handle(message)
            .expect("handles");
        c.drain_node(&to);
    }
    assert!(missed, "the request was not sent while the member was away");
    let deadline = c.coordinator.poll_timeout().expect("a decryption deadline");
    c.silent.remove(&member);
    c.connect(&member);
    let status = c.run();
    assert_same_statistics(&job, &status, &uninterrupted);
    let kinds: Vec<&str> = c.trail.iter().map(|(k, _)| k.as_str()).collect();
    assert!(!kinds.contains(&"decryption.retried"), "{kinds:?}");
    assert_eq!(c.decrypted_rounds(), vec![1, 2]);
    // Round 1 was decrypted before its deadline: nobody waited it out.
    assert!(c.now < deadline, "{} ≥ {deadline}", c.now);
}

#[test]
fn late_duplicate_and_replayed_messages_are_refused_and_change_nothing() {
    let job = job(3, 1, 2);
    let tables: Vec<LocalTable> = (0..3).map(table).collect();
    let mut c = Consortium::new(&job, tables.clone());
    let status = c.run();
    let Some(result) = stats_of(&status, &job.spec().features) else {
        panic!("{status:?}")
    };
    // Replay every recorded contribution after the fact: late and out of round.
    for (from, bytes) in c.sent.clone() {
        c.deliver_to_coordinator(from, &bytes);
    }
    assert_eq!(c.violations.len(), c.sent.len());
    assert!(
        c.violations
            .iter()
            .all(|v| v.contains("unexpected while finished")),
        "{:?}",
        c.violations
    );
    assert_eq!(
        stats_of(c.coordinator.status(), &job.spec().features),
        Some(result)
    );
}

#[test]
fn duplicate_and_foreign_messages_during_a_round_are_refused() {
    let job = job(3, 1, 3);
    let tables: Vec<LocalTable> = (0..3).map(table).collect();
    let mut c = Consortium::new(&job, tables.clone());
    // Hold p02 back so round 1 stays open, run until p00 and p01 have contributed.
    c.silent.insert(id("p02"));
    for _ in 0..1000 {
        c.drain_coordinator();
        if let Some((from, bytes)) = c.to_coordinator.pop_front() {
            c.deliver_to_coordinator(from, &bytes);
            continue;
        }
        if let Some((to, bytes)) = c.to_nodes.pop_front() {
            if !c.silent.contains(&to) {
                let m = Inbound::<S>::decode(&bytes).expect("decode");
                c.nodes
                    .get_mut(&to)
                    .expect("node")
                    .handle(m)
                    .expect("handles");
                c.drain_node(&to);
            }
            continue;
        }
        break;
    }
    assert_eq!(c.sent.len(), 2, "p00 and p01 committed");
    let (from, bytes) = c.sent[0].clone();
    c.deliver_to_coordinator(from.clone(), &bytes);
    assert!(
        c.violations
            .last()
            .expect("refused")
            .contains("already contributed"),
        "{:?}",
        c.violations
    );
    // p00 is told, with what to do, and prints it; it goes on.
    let told = c.refusals_told(&from);
    assert_eq!(told.len(), 1, "{told:?}");
    assert!(told[0].text.contains("already contributed"), "{told:?}");
    assert!(
        told[0].text.contains("nothing to do unless it repeats"),
        "{told:?}"
    );
    let node = c.nodes.get_mut(&from).expect("p00");
    node.handle(Inbound::Notice(told[0].clone()))
        .expect("a refusal is handled");
    let printed: Vec<String> = std::iter::from_fn(|| node.poll_output())
        .filter_map(|o| match o {
            ParticipantOutput::Progress(p) => Some(p.to_string()),
            _ => None,
        })
        .collect();
    assert_eq!(printed.len(), 1, "{printed:?}");
    assert!(
        printed[0].starts_with("p00: the coordinator refused a message of this node: ")
            && printed[0].contains("already contributed"),
        "{printed:?}"
    );
    assert_eq!(node.status(), &NodeStatus::Running);
    // A node that keeps sending what is refused is told REFUSALS_TOLD times per connection;
    // the last says so. Every refusal is still refused and changes nothing.
    for _ in 0..REFUSALS_TOLD + 3 {
        c.deliver_to_coordinator(from.clone(), &bytes);
    }
    let told = c.refusals_told(&from);
    assert_eq!(told.len(), REFUSALS_TOLD as usize, "{told:?}");
    assert!(
        told.last()
            .expect("told")
            .text
            .contains("further refusals on this connection"),
        "{told:?}"
    );
    // The same bytes from a node that never said Hello on its connection are refused.
    let message = Inbound::<S>::decode(&bytes).expect("decode");
    let err = c
        .coordinator
        .handle(
            Input::Message {
                from: id("outsider"),
                message,
            },
            c.now,
        )
        .expect_err("refused");
    assert!(matches!(err, Violation::BeforeHello { .. }), "{err}");
    // p02 comes back: the round completes and the job finishes with all three.
    c.silent.remove(&id("p02"));
    c.disconnect(&id("p02"));
    c.connect(&id("p02"));
    let Some(result) = stats_of(&c.run(), &job.spec().features) else {
        panic!("{:?}", c.coordinator.status())
    };
    assert_matches_pooled(&result, &tables);
}

#[test]
fn a_hello_from_another_protocol_version_is_refused_and_changes_nothing() {
    use fedbank_common::protocol::{Hello, PROTOCOL_VERSION};
    let job = job(3, 3, 3);
    let mut coordinator =
        CoordinatorMachine::<u64>::new(job.clone(), 7, fedbank_transport::dev_pki::shared_trust());
    coordinator
        .handle(Input::Connected(id("p00")), 0)
        .expect("connect");
    let old = Hello {
        protocol: PROTOCOL_VERSION - 1,
        job: job.spec().job.clone(),
        job_digest: job.digest(),
        data: None,
    };
    let err = coordinator
        .handle(
            Input::Message {
                from: id("p00"),
                message: Inbound::Hello(old),
            },
            0,
        )
        .expect_err("refused");
    let text = err.to_string();
    assert!(
        text.contains(&format!("protocol version {}", PROTOCOL_VERSION - 1)),
        "{text}"
    );
    assert_eq!(coordinator.present().count(), 0, "not admitted");
}

/// A participant that joined with one data file and comes back with another (704 rows, then
/// 299) is refused with both named and told why, and is not counted; back with the data it
/// joined with, it is admitted. A coordinator resumed from its checkpoint still remembers.
#[test]
fn a_participant_back_with_other_data_is_refused_and_told_why() {
    use fedbank_common::protocol::{DataCommitment, Hello, NoticeKind, PROTOCOL_VERSION};
    use fedbank_coordinator::CoordinatorOutbound;
    let job = job(3, 1, 2);
    let trust = fedbank_transport::dev_pki::shared_trust;
    let commitment = |rows: u64, byte: &str| DataCommitment {
        rows,
        sha256: byte.repeat(32),
        consent_sha256: None,
    };
    let (first, other) = (commitment(704, "aa"), commitment(299, "bb"));
    let hello = |data: &DataCommitment| Input::Message {
        from: id("p01"),
        message: Inbound::Hello(Hello {
            protocol: PROTOCOL_VERSION,
            job: job.spec().job.clone(),
            job_digest: job.digest(),
            data: Some(data.clone()),
        }),
    };
    // What the coordinator sent p01 and wrote in its trail since the last look.
    let drain = |c: &mut CoordinatorMachine<S>| {
        let (mut notices, mut joined) = (Vec::new(), Vec::new());
        while let Some(out) = c.poll_output() {
            match out {
                CoordinatorOutput::Send {
                    message: CoordinatorOutbound::Notice(n),
                    ..
                } => notices.push(n),
                CoordinatorOutput::Audit { kind, fields } if kind.name() == "node.joined" => {
                    joined.push(fields)
                }
                _ => {}
            }
        }
        (notices, joined)
    };
    let mut coordinator = CoordinatorMachine::<S>::new(job.clone(), 7, trust());
    coordinator
        .handle(Input::Connected(id("p01")), 0)
        .expect("connect");
    coordinator.handle(hello(&first), 0).expect("admitted");
    let (_, joined) = drain(&mut coordinator);
    assert_eq!(joined.len(), 1);
    assert_eq!(joined[0]["data_rows"], 704);
    assert_eq!(joined[0]["data_sha256"], "aa".repeat(32));
    // Restarted on another file.
    let back_with_other = |c: &mut CoordinatorMachine<S>| {
        c.handle(Input::Disconnected(id("p01")), 1).expect("gone");
        c.handle(Input::Connected(id("p01")), 2).expect("back");
        let refused = c.handle(hello(&other), 2).expect_err("other data refused");
        assert!(matches!(refused, Violation::OtherData { .. }), "{refused}");
        let (notices, joined) = drain(c);
        assert!(joined.is_empty(), "not recorded as joined");
        assert_eq!(notices.len(), 1, "{notices:?}");
        assert_eq!(notices[0].kind, NoticeKind::NotAdmitted);
        for says in ["704 rows", "299 rows", "new job id"] {
            assert!(
                notices[0].text.contains(says),
                "{says}: {}",
                notices[0].text
            );
        }
        assert_eq!(c.present().count(), 0, "not counted");
    };
    back_with_other(&mut coordinator);
    // With the data it joined with, it is admitted again.
    coordinator
        .handle(hello(&first), 3)
        .expect("admitted again");
    assert_eq!(coordinator.present().count(), 1);
    // A coordinator resumed from its checkpoint still refuses the other data.
    let checkpoint = coordinator.checkpoint();
    let mut resumed =
        CoordinatorMachine::<S>::resume(job.clone(), &checkpoint, trust()).expect("resumes");
    resumed
        .handle(Input::Connected(id("p01")), 0)
        .expect("connect");
    resumed.handle(hello(&first), 0).expect("admitted");
    drain(&mut resumed);
    back_with_other(&mut resumed);
}

#[test]
fn a_participant_restarted_mid_round_rejoins_and_is_never_counted_twice() {
    let job = job(4, 2, 2);
    let tables: Vec<LocalTable> = (0..4).map(table).collect();
    let uninterrupted = Consortium::new(&job, tables.clone()).run();
    let mut c = Consortium::new(&job, tables.clone());
    let restarted = id("p02");
    // Run until the coordinator has p02's round-1 contribution; p03's messages are held back
    // meanwhile so that round 1 is still open.
    let mut held = Vec::new();
    let counted = |c: &Consortium| {
        c.trail
            .iter()
            .any(|(k, f)| k == "contribution.received" && f["node"] == "p02" && f["round"] == 1)
    };
    while !counted(&c) {
        c.drain_coordinator();
        if let Some((from, bytes)) = c.to_coordinator.pop_front() {
            let contribution = matches!(Inbound::<S>::decode(&bytes), Ok(Inbound::Contribution(_)));
            if from == id("p03") && contribution {
                held.push((from, bytes));
            } else {
                c.deliver_to_coordinator(from, &bytes);
            }
            continue;
        }
        if let Some((to, bytes)) = c.to_nodes.pop_front() {
            let m = Inbound::<S>::decode(&bytes).expect("decode");
            c.nodes
                .get_mut(&to)
                .expect("node")
                .handle(m)
                .expect("handles");
            c.drain_node(&to);
        }
    }
    // The process dies and a fresh one, with the same data, connects and says Hello. Round 1's
    // roster is fixed and p02's contribution is in: it is not asked for round 1 again.
    c.disconnect(&restarted);
    c.nodes.insert(
        restarted.clone(),
        ParticipantMachine::new(
            fedbank_transport::dev_pki::shared_credentials(&restarted.clone())
                .expect("credentials"),
            job.clone(),
            tables[2].clone(),
        ),
    );
    held.extend(c.to_coordinator.drain(..));
    c.connect(&restarted);
    c.to_coordinator.extend(held);
    let status = c.run();
    assert_eq!(
        status, uninterrupted,
        "the same statistics as without the restart"
    );
    let p02_in = |round: u32| {
        c.trail
            .iter()
            .filter(|(k, f)| {
                k == "contribution.received" && f["node"] == "p02" && f["round"] == round
            })
            .count()
    };
    assert_eq!(p02_in(1), 1, "counted once");
    assert_eq!(
        p02_in(2),
        1,
        "the restarted node contributes to the next round"
    );
}

/// The stats job's released figures in the job file's feature order, if the job finished.
fn stats_of(status: &Status, features: &[FeatureSpec]) -> Option<Vec<FeatureStats>> {
    match status {
        Status::Finished(result) => result
            .released::<StatsResult>(stats::KIND)
            .map(|r| r.in_feature_order(features)),
        _ => None,
    }
}
