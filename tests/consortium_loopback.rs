//! The consortium over real QUIC with mutual TLS on 127.0.0.1: the stats job equals the pooled
//! computation, a participant killed mid-round is left out while the job finishes, and a hostile
//! enrolled node's malformed, early, wrong-job, duplicate and out-of-round messages are refused
//! without changing the result. Every wait is bounded.

use fedbank_common::audit::{cross_check, verify, SigningIdentity};
use fedbank_common::digest::Digest;
use fedbank_common::ids::{JobId, NodeId};
use fedbank_common::job::stats::{self, mean_std, FeatureStats, StatsResult};
use fedbank_common::job::{FeatureSpec, JobKind, JobSpec, ValidJob};
use fedbank_common::protocol::{
    Contribution, ContributionCommitment, Hello, Inbound, PROTOCOL_VERSION,
};
use fedbank_common::secagg::{Encryptor, Profile, RingScalar};
use fedbank_coordinator::{JobFailure, Status};
use fedbank_participant::synthetic::{self, InstitutionKind};
use fedbank_participant::{LocalData, LocalTable, NodeStatus};
use fedbank_transport::nodes::{
    run_coordinator, run_participant, CoordinatorSettings, ParticipantOutcome, ParticipantSettings,
    TrailSettings,
};
use fedbank_transport::pki::{ConsortiumCa, CredentialPaths, NodeCredentials};
use fedbank_transport::{connect, frame, tls};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::timeout;

const WAIT: Duration = Duration::from_secs(60);

fn id(s: &str) -> NodeId {
    NodeId::new(s).expect("id")
}

fn features() -> Vec<FeatureSpec> {
    vec![
        FeatureSpec {
            name: "age".into(),
            bound: 120.0,
            min: Some(0.0),
            scale: 1000.0,
        },
        FeatureSpec {
            name: "income".into(),
            bound: 5e6,
            min: Some(0.0),
            scale: 100.0,
        },
        FeatureSpec {
            name: "balance".into(),
            bound: 1e8,
            min: Some(0.0),
            scale: 100.0,
        },
    ]
}

struct Consortium {
    dir: tempfile::TempDir,
    job: ValidJob,
    tables: Vec<(NodeId, LocalTable)>,
    log: Arc<Mutex<Vec<String>>>,
}

impl Consortium {
    fn new(profile: Profile, participants: &[&str], committee: &[&str], min: usize) -> Self {
        Self::with_round_timeout(profile, participants, committee, min, 20_000)
    }

    fn with_round_timeout(
        profile: Profile,
        participants: &[&str],
        committee: &[&str],
        min: usize,
        round_timeout_ms: u64,
    ) -> Self {
        let dir = tempfile::tempdir().expect("dir");
        let job = JobSpec {
            job: JobId::new("loopback-stats").expect("id"),
            kind: JobKind::STATS,
            profile,
            participants: participants.iter().map(|p| id(p)).collect(),
            committee: committee.iter().map(|p| id(p)).collect(),
            min_participants: min,
            max_rows: 1_000_000,
            features: features(),
            id_column: None,
            histogram_bins: 12,
            key_setup_timeout_ms: 20_000,
            round_timeout_ms,
            decryption_timeout_ms: 20_000,
            max_round_retries: 0,
            max_decryption_retries: 1,
            start_quorum: None,
            propensity: None,
            compliance: None,
            auditor: None,
            settings: None,
            segment: None,
        }
        .validate()
        .expect("job");
        let ca = ConsortiumCa::create(&dir.path().join("certs")).expect("ca");
        ca.issue(&id("coordinator"), 1).expect("cert");
        let mut tables = Vec::new();
        let columns: Vec<String> = features().into_iter().map(|f| f.name).collect();
        for (i, p) in participants.iter().enumerate() {
            ca.issue(&id(p), 1).expect("cert");
            let files = synthetic::generate(
                &dir.path().join("data").join(p),
                p,
                InstitutionKind::nth(i),
                300 + 170 * i,
                11 + i as u64,
            )
            .expect("data");
            tables.push((
                id(p),
                LocalTable::read_csv(&files.customers, &columns).expect("table"),
            ));
        }
        Self {
            dir,
            job,
            tables,
            log: Arc::new(Mutex::new(Vec::new())),
        }
    }

    fn certs(&self) -> PathBuf {
        self.dir.path().join("certs")
    }

    fn creds(&self, node: &str) -> NodeCredentials {
        NodeCredentials::load(&CredentialPaths::in_dir(&self.certs(), &id(node))).expect("creds")
    }

    /// `node`'s signed commitment to `ciphertext` for round `r` (numbered `round`).
    fn commitment<S: RingScalar>(
        &self,
        node: &str,
        r: &fedbank_common::protocol::RoundRequest,
        round: u32,
        ciphertext: &fedbank_common::secagg::Ciphertext<S>,
    ) -> ContributionCommitment {
        use fedbank_common::committee::{ContributionStatement, MASK_DIGEST_LABEL};
        let signer = self.creds(node).signer(&id(node)).expect("signer");
        let statement = signer.sign(ContributionStatement {
            job: self.job.spec().job.clone(),
            job_digest: self.job.digest(),
            key_epoch: ciphertext.key_epoch,
            round,
            attempt: r.attempt,
            quantity: r.kind.label().to_owned(),
            value_count: ciphertext.value_count,
            computation: fedbank_common::round_plan::computation_digest(&self.job, &r.kind),
            mask_digest: Digest::of_scalars(MASK_DIGEST_LABEL, &ciphertext.masks),
            ciphertext_digest: ciphertext.digest(),
        });
        ContributionCommitment {
            round,
            attempt: r.attempt,
            statement,
        }
    }

    /// `node`'s ciphertext of `commitment`, revealed against `roster`.
    fn reveal<S: RingScalar>(
        &self,
        node: &str,
        commitment: &ContributionCommitment,
        ciphertext: fedbank_common::secagg::Ciphertext<S>,
        roster: &fedbank_common::roster::Roster,
    ) -> Contribution<S> {
        let signer = self.creds(node).signer(&id(node)).expect("signer");
        Contribution {
            round: commitment.round,
            attempt: commitment.attempt,
            ciphertext,
            reveal: signer.sign(fedbank_common::roster::RevealStatement::of(
                &commitment.statement.statement,
                roster,
            )),
        }
    }

    /// The joint key a participant forms from a key bundle it checked.
    fn verified_key<S: RingScalar>(
        &self,
        node: &str,
        bundle: &fedbank_common::key_ceremony::KeyBundle<S>,
    ) -> fedbank_common::secagg::JointPublicKey<S> {
        bundle
            .verify(&self.creds(node).trust().expect("trust"))
            .expect("the key bundle verifies")
    }

    fn trail(&self, node: &str) -> TrailSettings {
        let creds = self.creds(node);
        TrailSettings {
            path: self.dir.path().join(format!("{node}.trail")),
            identity: SigningIdentity::from_pkcs8(creds.pkcs8()).expect("key"),
        }
    }

    fn progress(&self) -> Arc<dyn Fn(String) + Send + Sync> {
        let log = self.log.clone();
        Arc::new(move |line| {
            if let Ok(mut l) = log.lock() {
                l.push(line);
            }
        })
    }

    /// `node` running `job` on the first table, against the coordinator at `addr`.
    fn settings_with(
        &self,
        node: &str,
        job: &ValidJob,
        addr: SocketAddr,
        connect_attempts: u32,
    ) -> ParticipantSettings {
        ParticipantSettings {
            id: id(node),
            job: job.clone(),
            data: LocalData::Table {
                table: self.tables[0].1.clone(),
                row_ids: None,
            },
            creds: self.creds(node),
            coordinator: (addr, id("coordinator")),
            trail: self.trail(node),
            connect_attempts,
            local: Default::default(),
            data_commitment: None,
        }
    }

    async fn start_coordinator<S: RingScalar>(
        &self,
    ) -> (
        SocketAddr,
        tokio::task::JoinHandle<Result<Status, fedbank_transport::nodes::NodeError>>,
    ) {
        let (ready, addr) = tokio::sync::oneshot::channel();
        let settings = CoordinatorSettings {
            state: None,
            job: self.job.clone(),
            id: id("coordinator"),
            creds: self.creds("coordinator"),
            listen: "127.0.0.1:0".parse().expect("addr"),
            trail: self.trail("coordinator"),
            mask_seed: 42,
            new_key_epoch: None,
        };
        let handle = tokio::spawn(run_coordinator::<S>(settings, Some(ready), self.progress()));
        (
            timeout(WAIT, addr).await.expect("ready").expect("addr"),
            handle,
        )
    }

    fn start_participant<S: RingScalar>(
        &self,
        node: &NodeId,
        addr: SocketAddr,
    ) -> tokio::task::JoinHandle<Result<ParticipantOutcome, fedbank_transport::nodes::NodeError>>
    {
        let table = self
            .tables
            .iter()
            .find(|(n, _)| n == node)
            .expect("table")
            .1
            .clone();
        let settings = ParticipantSettings {
            id: node.clone(),
            job: self.job.clone(),
            data: LocalData::Table {
                table,
                row_ids: None,
            },
            creds: self.creds(node.as_str()),
            coordinator: (addr, id("coordinator")),
            trail: self.trail(node.as_str()),
            connect_attempts: 20,
            local: Default::default(),
            data_commitment: None,
        };
        tokio::spawn(run_participant::<S>(settings, self.progress()))
    }

    /// Runs every participant but the `outsiders` as an honest node while `outsider_run`
    /// plays the outsider, and checks that the job finishes with the pooled result of the others.
    async fn finish_without<S: RingScalar>(
        &self,
        outsiders: &[&str],
        addr: SocketAddr,
        coordinator: tokio::task::JoinHandle<Result<Status, fedbank_transport::nodes::NodeError>>,
        outsider_run: impl std::future::Future<Output = ()>,
    ) {
        let honest: Vec<_> = self
            .tables
            .iter()
            .filter(|(n, _)| !outsiders.contains(&n.as_str()))
            .map(|(n, _)| self.start_participant::<S>(n, addr))
            .collect();
        timeout(WAIT, outsider_run).await.expect("outsider in time");
        let status = timeout(WAIT, coordinator)
            .await
            .expect("in time")
            .expect("task")
            .expect("coordinator");
        let Some(result) = stats_of(&status, &features()) else {
            panic!("{status:?}\n{}", self.log())
        };
        for node in honest {
            let outcome = timeout(WAIT, node)
                .await
                .expect("in time")
                .expect("task")
                .expect("ok");
            assert_eq!(outcome.status, NodeStatus::Finished);
            // Hello and one contribution per round (moments, histogram) at least; UDP carries
            // the frames and QUIC's own overhead on top.
            assert!(outcome.messages_sent >= 3, "{outcome:?}");
            assert!(outcome.bytes_sent > 0, "{outcome:?}");
            assert!(outcome.udp_bytes_sent > outcome.bytes_sent, "{outcome:?}");
        }
        let others: Vec<&LocalTable> = self
            .tables
            .iter()
            .filter(|(n, _)| !outsiders.contains(&n.as_str()))
            .map(|(_, t)| t)
            .collect();
        assert_pooled(&result, &others);
    }

    fn log_contains(&self, needle: &str) -> bool {
        self.log
            .lock()
            .map(|l| l.iter().any(|line| line.contains(needle)))
            .unwrap_or(false)
    }

    fn log(&self) -> String {
        self.log.lock().map(|l| l.join("\n")).unwrap_or_default()
    }
}

fn assert_pooled(result: &[FeatureStats], tables: &[&LocalTable]) {
    for (f, spec) in result.iter().zip(features()) {
        let values: Vec<f64> = tables
            .iter()
            .flat_map(|t| {
                t.columns[&f.name]
                    .iter()
                    .flatten()
                    .map(|v| v.clamp(spec.lower(), spec.bound))
            })
            .collect();
        let missing: usize = tables
            .iter()
            .map(|t| t.columns[&f.name].iter().filter(|v| v.is_none()).count())
            .sum();
        let n = values.len() as f64;
        let (mean, std) = mean_std(n, values.iter().sum(), values.iter().map(|v| v * v).sum());
        assert_eq!(f.count, n, "{}", f.name);
        assert_eq!(f.missing, missing as f64, "{}", f.name);
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
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_over_quic_equal_the_pooled_computation_and_trails_agree() {
    let c = Consortium::new(
        Profile::Strict,
        &["bank-a", "insurer-b", "broker-c", "pay-d"],
        &["bank-a", "broker-c", "insurer-b"],
        3,
    );
    let (addr, coordinator) = c.start_coordinator::<u128>().await;
    c.finish_without::<u128>(&[], addr, coordinator, async {})
        .await;
    let main = verify(&c.dir.path().join("coordinator.trail"), None).expect("coordinator trail");
    let others: Vec<_> = c
        .tables
        .iter()
        .map(|(n, _)| verify(&c.dir.path().join(format!("{n}.trail")), None).expect("node trail"))
        .collect();
    assert!(cross_check(&main, &others).is_empty());
    let received = main
        .events
        .iter()
        .filter(|e| e.event == "contribution.received")
        .count();
    assert_eq!(received, 8, "4 participants × 2 rounds");
}

/// A participant that connects, says Hello and vanishes as soon as a round asks it to contribute.
async fn killed_on_first_round<S: RingScalar>(c: &Consortium, node: &str, addr: SocketAddr) {
    let mut endpoint =
        quinn::Endpoint::client("127.0.0.1:0".parse().expect("addr")).expect("endpoint");
    endpoint.set_default_client_config(tls::client_config(&c.creds(node)).expect("tls"));
    let conn = timeout(WAIT, connect(&endpoint, addr, &id("coordinator")))
        .await
        .expect("in time")
        .expect("connect");
    let hello = Hello {
        protocol: PROTOCOL_VERSION,
        job: c.job.spec().job.clone(),
        job_digest: c.job.digest(),
        data: None,
    };
    frame::send(&conn, &hello).await.expect("hello");
    loop {
        let f = timeout(WAIT, frame::recv(&conn, Inbound::<S>::limit))
            .await
            .expect("in time")
            .expect("frame");
        if let Ok(Inbound::Round(_)) = Inbound::<S>::decode(&f.bytes) {
            conn.close(quinn::VarInt::from_u32(0), b"killed");
            endpoint.close(quinn::VarInt::from_u32(0), b"killed");
            return;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_participant_killed_mid_round_is_left_out_and_the_job_finishes() {
    let c = Consortium::new(
        Profile::Fast,
        &["bank-a", "insurer-b", "broker-c", "pay-d"],
        &["bank-a", "insurer-b"],
        3,
    );
    let (addr, coordinator) = c.start_coordinator::<u64>().await;
    let victim = killed_on_first_round::<u64>(&c, "pay-d", addr);
    c.finish_without::<u64>(&["pay-d"], addr, coordinator, victim)
        .await;
    let trail = verify(&c.dir.path().join("coordinator.trail"), None).expect("trail");
    assert!(
        trail.events.iter().any(|e| e.event == "participant.dropped"
            && e.fields["node"] == "pay-d"
            && e.fields["round"] == 1),
        "the trail records the drop:\n{}",
        c.log()
    );
}

/// An enrolled node that breaks the protocol in every way it can, then leaves.
async fn hostile<S: RingScalar>(c: &Consortium, node: &str, addr: SocketAddr) {
    let mut endpoint =
        quinn::Endpoint::client("127.0.0.1:0".parse().expect("addr")).expect("endpoint");
    endpoint.set_default_client_config(tls::client_config(&c.creds(node)).expect("tls"));
    let conn = timeout(WAIT, connect(&endpoint, addr, &id("coordinator")))
        .await
        .expect("in time")
        .expect("connect");
    // A malformed frame: a Contribution header with a garbage body.
    let mut garbage = b"FDBK".to_vec();
    garbage.extend_from_slice(&[13, S::BITS as u8, 1, 0]);
    garbage.extend_from_slice(&[0xde; 40]);
    frame::send_raw(&conn, &garbage).await.expect("send");
    // A message before Hello.
    let notice = fedbank_common::protocol::Notice {
        job: c.job.spec().job.clone(),
        round: None,
        kind: fedbank_common::protocol::NoticeKind::CannotContribute,
        text: "early".into(),
    };
    frame::send(&conn, &notice).await.expect("send");
    // A Hello for another version of the job.
    let wrong = Hello {
        protocol: PROTOCOL_VERSION,
        job: c.job.spec().job.clone(),
        job_digest: Digest::of("x", b"other job file"),
        data: None,
    };
    frame::send(&conn, &wrong).await.expect("send");
    // The right Hello, twice.
    let hello = Hello {
        protocol: PROTOCOL_VERSION,
        job: c.job.spec().job.clone(),
        job_digest: c.job.digest(),
        data: None,
    };
    frame::send(&conn, &hello).await.expect("send");
    frame::send(&conn, &hello).await.expect("send");
    // Wait for the joint key and the first round, then commit to a contribution for another
    // round and to one of the wrong size for this round, and reveal one under another profile.
    let mut key = None;
    let mut pending = None;
    // What the coordinator told this node of its refusals.
    let mut told = Vec::new();
    loop {
        let f = timeout(WAIT, frame::recv(&conn, Inbound::<S>::limit))
            .await
            .expect("in time")
            .expect("frame");
        match Inbound::<S>::decode(&f.bytes).expect("decode") {
            Inbound::Notice(n) => told.push(format!("{:?}: {}", n.kind, n.text)),
            Inbound::KeyBundle(b) => key = Some(c.verified_key(node, &b)),
            Inbound::Round(r) => {
                let encryptor =
                    Encryptor::new(key.clone().expect("key first"), c.job.params().clone())
                        .expect("enc");
                let slots = c
                    .job
                    .plan(&stats::moments_round())
                    .expect("plan")
                    .slot_count();
                let ct = encryptor.encrypt(&vec![1; slots]).expect("encrypt");
                let early = c.commitment(node, &r, r.round + 5, &ct);
                frame::send(&conn, &early).await.expect("send");
                let short = encryptor.encrypt(&[1, 2, 3]).expect("encrypt");
                let short = c.commitment(node, &r, r.round, &short);
                frame::send(&conn, &short).await.expect("send");
                // The right length under another crypto profile: committed, then revealed.
                let mut other_profile = encryptor.encrypt(&vec![1; slots]).expect("encrypt");
                other_profile.profile = Profile::Strict;
                let commitment = c.commitment(node, &r, r.round, &other_profile);
                frame::send(&conn, &commitment).await.expect("send");
                pending = Some((commitment, other_profile));
            }
            Inbound::RevealRequest(request) => {
                let (commitment, ct) = pending.take().expect("a commitment first");
                let revealed = c.reveal(node, &commitment, ct, &request.roster);
                frame::send(&conn, &revealed).await.expect("send");
                break;
            }
            _ => {}
        }
    }
    // Every refusal so far reached this node with its reason and what to do: each was read
    // before the commitment that let the round's roster (and the reveal request) go out.
    for (expected, advice) in [
        (
            "MessageRefused: mallory sent an unreadable message: a malformed message",
            "run the same fedbank version",
        ),
        (
            "MessageRefused: mallory sent Notice before Hello",
            "says Hello first",
        ),
        (
            "NotAdmitted: mallory asked for job loopback-stats with digest",
            "compare the job file",
        ),
        (
            "MessageRefused: mallory sent Hello twice",
            "nothing to do unless it repeats",
        ),
        (
            "MessageRefused: mallory sent ContributionCommitment for round 6",
            "the node answers the current request",
        ),
        ("(value count)", "it is not counted"),
    ] {
        assert!(
            told.iter()
                .any(|t| t.contains(expected) && t.contains(advice)),
            "'{expected}' with '{advice}' was not told: {told:#?}"
        );
    }
    // A second connection of the same node replaces the first: the coordinator closes the older
    // one, so one node holds one connection (and at most one upload in reception). First let
    // the coordinator read what the first one sent.
    let read = std::time::Instant::now();
    while !c.log_contains("profile strict") {
        assert!(
            read.elapsed() < WAIT,
            "the coordinator did not read mallory's messages"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let second = timeout(WAIT, connect(&endpoint, addr, &id("coordinator")))
        .await
        .expect("in time")
        .expect("second connection");
    frame::send(&second, &hello).await.expect("hello");
    let closed = timeout(WAIT, conn.closed())
        .await
        .expect("the older connection is closed");
    assert!(
        matches!(&closed, quinn::ConnectionError::ApplicationClosed(c)
            if c.error_code == quinn::VarInt::from_u32(fedbank_transport::CLOSE_REPLACED)),
        "{closed:?}"
    );
    // More authenticated connections at once than the coordinator holds (enrolled nodes plus
    // room for reconnections): the excess is closed with the reason, and the node may try later.
    let mut attempts = tokio::task::JoinSet::new();
    for _ in 0..3 * (fedbank_transport::nodes::RECONNECT_ROOM + c.job.spec().participants.len()) {
        let endpoint = endpoint.clone();
        attempts.spawn(
            async move { timeout(WAIT, connect(&endpoint, addr, &id("coordinator"))).await },
        );
    }
    let mut extra = Vec::new();
    while let Some(done) = attempts.join_next().await {
        if let Ok(Ok(conn)) = done.expect("task") {
            extra.push(conn);
        }
    }
    let mut refused = 0;
    for conn in &extra {
        if let Ok(quinn::ConnectionError::ApplicationClosed(c)) =
            timeout(Duration::from_millis(500), conn.closed()).await
        {
            refused += usize::from(
                c.error_code == quinn::VarInt::from_u32(fedbank_transport::CLOSE_LIMIT),
            );
        }
    }
    assert!(refused > 0, "the connection limit refused none");
    tokio::time::sleep(Duration::from_millis(300)).await;
    for conn in extra {
        conn.close(quinn::VarInt::from_u32(0), b"done");
    }
    second.close(quinn::VarInt::from_u32(0), b"done");
    conn.close(quinn::VarInt::from_u32(0), b"done");
    endpoint.close(quinn::VarInt::from_u32(0), b"done");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_messages_are_refused_and_the_job_is_unchanged() {
    let c = Consortium::new(
        Profile::Fast,
        &["bank-a", "insurer-b", "broker-c", "mallory"],
        &["bank-a", "insurer-b"],
        3,
    );
    let (addr, coordinator) = c.start_coordinator::<u64>().await;
    let attack = hostile::<u64>(&c, "mallory", addr);
    c.finish_without::<u64>(&["mallory"], addr, coordinator, attack)
        .await;
    for refusal in [
        "mallory sent an unreadable message: a malformed message",
        "mallory sent Notice before Hello",
        "mallory asked for job loopback-stats with digest",
        "mallory sent Hello twice",
        "mallory sent ContributionCommitment for round 6",
        "contribution from mallory to job loopback-stats round 1",
        "(value count)",
        "profile strict",
        "connections are open, the limit",
    ] {
        assert!(
            c.log_contains(refusal),
            "missing refusal '{refusal}' in:\n{}",
            c.log()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_nodes_stop_at_once_with_the_reason() {
    let c = Consortium::new(
        Profile::Fast,
        &["bank-a", "insurer-b", "broker-c"],
        &["bank-a"],
        2,
    );
    let ca = ConsortiumCa::load(&c.certs()).expect("ca");
    // A valid certificate for a node that is not enrolled in this job.
    ca.issue(&id("intruder"), 1).expect("cert");
    // broker-c's certificate replaced by an expired one.
    let now = time::OffsetDateTime::now_utc();
    ca.issue_with_validity(
        &id("broker-c"),
        now - time::Duration::days(9),
        now - time::Duration::days(2),
    )
    .expect("expired cert");
    let (addr, coordinator) = c.start_coordinator::<u64>().await;
    let run =
        |node: &str| run_participant::<u64>(c.settings_with(node, &c.job, addr, 50), c.progress());
    let intruder = timeout(Duration::from_secs(20), run("intruder"))
        .await
        .expect("stops, does not retry forever");
    let err = intruder.expect_err("an un-enrolled node is refused");
    assert!(err.to_string().contains("not enrolled"), "{err}");
    let expired = timeout(Duration::from_secs(20), run("broker-c"))
        .await
        .expect("stops, does not retry forever");
    let err = expired.expect_err("an expired certificate is refused");
    assert!(err.to_string().contains("refused"), "{err}");
    // The coordinator logged both refusals.
    assert!(
        c.log_contains("intruder") && c.log_contains("not enrolled"),
        "{}",
        c.log()
    );
    assert!(c.log().to_lowercase().contains("expired"), "{}", c.log());
    coordinator.abort();
}

/// A participant that starts its contribution and stalls halfway, holding its stream open.
async fn stalled_upload<S: RingScalar>(c: &Consortium, node: &str, addr: SocketAddr) {
    let mut endpoint =
        quinn::Endpoint::client("127.0.0.1:0".parse().expect("addr")).expect("endpoint");
    endpoint.set_default_client_config(tls::client_config(&c.creds(node)).expect("tls"));
    let conn = timeout(WAIT, connect(&endpoint, addr, &id("coordinator")))
        .await
        .expect("in time")
        .expect("connect");
    let hello = Hello {
        protocol: PROTOCOL_VERSION,
        job: c.job.spec().job.clone(),
        job_digest: c.job.digest(),
        data: None,
    };
    frame::send(&conn, &hello).await.expect("send");
    let mut key = None;
    let mut pending = None;
    let mut held = Vec::new();
    loop {
        let f = timeout(WAIT, frame::recv(&conn, Inbound::<S>::limit))
            .await
            .expect("in time")
            .expect("frame");
        match Inbound::<S>::decode(&f.bytes).expect("decode") {
            Inbound::KeyBundle(b) => key = Some(c.verified_key(node, &b)),
            Inbound::Round(r) => {
                let encryptor =
                    Encryptor::new(key.clone().expect("key first"), c.job.params().clone())
                        .expect("enc");
                let slots = c.job.plan(&r.kind).expect("plan").slot_count();
                let ct = encryptor.encrypt(&vec![1; slots]).expect("encrypt");
                let commitment = c.commitment(node, &r, r.round, &ct);
                frame::send(&conn, &commitment).await.expect("send");
                pending = Some((commitment, ct));
            }
            Inbound::RevealRequest(request) => {
                let (commitment, ct) = pending.take().expect("a commitment first");
                let round = commitment.round;
                let bytes =
                    fedbank_common::wire::encode(&c.reveal(node, &commitment, ct, &request.roster))
                        .expect("encode");
                // The header and length, then half of the body, and nothing more.
                let (header, body) = bytes.split_at(fedbank_common::wire::HEADER_LEN);
                let mut stream = conn.open_uni().await.expect("stream");
                stream.write_all(header).await.expect("write");
                stream
                    .write_all(&(body.len() as u64).to_le_bytes())
                    .await
                    .expect("write");
                stream
                    .write_all(&body[..body.len() / 2])
                    .await
                    .expect("write");
                held.push(stream);
                if round >= 2 {
                    break;
                }
            }
            Inbound::Notice(_) => break,
            _ => {}
        }
    }
    // Hold the half-sent streams past the deadlines, then leave.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    drop(held);
    conn.close(quinn::VarInt::from_u32(0), b"done");
    endpoint.close(quinn::VarInt::from_u32(0), b"done");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_upload_does_not_hold_the_round_past_its_deadline_nor_touch_the_aggregate() {
    let c = Consortium::with_round_timeout(
        Profile::Fast,
        &["bank-a", "insurer-b", "broker-c", "stalling"],
        &["bank-a", "insurer-b"],
        3,
        1500,
    );
    let (addr, coordinator) = c.start_coordinator::<u64>().await;
    let started = std::time::Instant::now();
    let stall = stalled_upload::<u64>(&c, "stalling", addr);
    // The job finishes with exactly the others' pooled statistics.
    c.finish_without::<u64>(&["stalling"], addr, coordinator, stall)
        .await;
    assert!(started.elapsed() < WAIT);
    assert!(
        c.log_contains("round 1: 3 contributions, asking the committee to decrypt"),
        "{}",
        c.log()
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

/// A relay that carries a client's UDP packets to `server` and drops every packet back: each
/// QUIC handshake started through it stays half-open at the server until the server gives up.
async fn black_hole(server: SocketAddr) -> SocketAddr {
    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0")
        .await
        .expect("relay");
    let addr = socket.local_addr().expect("addr");
    tokio::spawn(async move {
        let mut buf = vec![0u8; 65_536];
        while let Ok((n, from)) = socket.recv_from(&mut buf).await {
            if from != server {
                let _ = socket.send_to(&buf[..n], server).await;
            }
        }
    });
    addr
}

/// Someone without a certificate floods the coordinator with handshakes it never finishes —
/// 40 at once, then 10 more every second for the whole job — while the real participants join:
/// half-open handshakes do not count against the authenticated connections and are abandoned
/// after HANDSHAKE_PATIENCE, so the job runs as it would without them (the pooled result), and
/// the coordinator prints a line per REFUSAL_LOG_EVERY about them, not one per handshake.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_half_open_handshakes_leaves_the_participants_unaffected() {
    let c = Consortium::new(
        Profile::Fast,
        &["bank-a", "insurer-b", "broker-c", "pay-d"],
        &["bank-a", "insurer-b"],
        3,
    );
    let (addr, coordinator) = c.start_coordinator::<u64>().await;
    let relay = black_hole(addr).await;
    let mut endpoint =
        quinn::Endpoint::client("127.0.0.1:0".parse().expect("addr")).expect("endpoint");
    endpoint.set_default_client_config(tls::client_config(&c.creds("pay-d")).expect("tls"));
    let started = std::time::Instant::now();
    let handshakes = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let flood = {
        let (endpoint, handshakes) = (endpoint.clone(), handshakes.clone());
        tokio::spawn(async move {
            let mut pending = Vec::new();
            for wave in 0.. {
                for _ in 0..if wave == 0 { 40 } else { 10 } {
                    if let Ok(connecting) = endpoint.connect(relay, "coordinator") {
                        // Kept (never finishing) so that the client keeps resending its Initial.
                        pending.push(tokio::spawn(async move {
                            let _ = timeout(Duration::from_secs(60), connecting).await;
                        }));
                        handshakes.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    }
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        })
    };
    // Let the first wave reach the coordinator before anyone real connects.
    tokio::time::sleep(Duration::from_millis(300)).await;
    c.finish_without::<u64>(&[], addr, coordinator, async {})
        .await;
    flood.abort();
    let elapsed = started.elapsed();
    let sent = handshakes.load(std::sync::atomic::Ordering::SeqCst);
    assert!(sent >= 40, "{sent} handshakes");
    endpoint.close(quinn::VarInt::from_u32(0), b"done");
    // Abandoned handshakes are reported, at most once per REFUSAL_LOG_EVERY (plus the first).
    let abandoned = c
        .log
        .lock()
        .map(|l| {
            l.iter()
                .filter(|line| line.contains("abandoned a handshake"))
                .count()
        })
        .unwrap_or(0);
    let most =
        1 + (elapsed.as_secs() / fedbank_transport::nodes::REFUSAL_LOG_EVERY.as_secs()) as usize;
    assert!(
        abandoned <= most,
        "{abandoned} lines for {sent} handshakes in {elapsed:?}:\n{}",
        c.log()
    );
    assert!(
        !c.log_contains("connections are open, the limit"),
        "{}",
        c.log()
    );
}

/// A node whose job file differs by one value is told at once that it was not admitted, why
/// and what to do, and stops; when that node is a committee member the job cannot go on, so the
/// coordinator fails it at once naming the member, and every other node is told.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_with_another_job_file_is_told_and_a_member_fails_the_job_at_once() {
    let c = Consortium::new(
        Profile::Fast,
        &["bank-a", "insurer-b", "broker-c", "pay-d"],
        &["bank-a", "insurer-b"],
        3,
    );
    let mut other = c.job.spec().clone();
    other.round_timeout_ms += 1;
    let other = other.validate().expect("job");
    assert_ne!(other.digest(), c.job.digest());
    let (addr, coordinator) = c.start_coordinator::<u64>().await;
    let run = |node: &str, job: &ValidJob| {
        tokio::spawn(run_participant::<u64>(
            c.settings_with(node, job, addr, 20),
            c.progress(),
        ))
    };
    // A participant: told, and it stops well before any round deadline.
    let outcome = timeout(Duration::from_secs(10), run("pay-d", &other))
        .await
        .expect("stops at once")
        .expect("task")
        .expect("outcome");
    let NodeStatus::Aborted(reason) = &outcome.status else {
        panic!("{:?}", outcome.status)
    };
    for part in [
        "not admitted",
        "pay-d asked for job loopback-stats with digest",
        "sha256sum",
    ] {
        assert!(reason.contains(part), "'{part}' missing from: {reason}");
    }
    // The others join; then a committee member with the other file fails the job.
    let honest: Vec<_> = ["bank-a", "broker-c"]
        .into_iter()
        .map(|n| run(n, &c.job))
        .collect();
    let joined = std::time::Instant::now();
    while !(c.log_contains("bank-a joined") && c.log_contains("broker-c joined")) {
        assert!(joined.elapsed() < WAIT, "{}", c.log());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let member = run("insurer-b", &other);
    let status = timeout(Duration::from_secs(10), coordinator)
        .await
        .expect("fails at once")
        .expect("task")
        .expect("status");
    assert!(
        matches!(&status, Status::Failed(JobFailure::MemberNotAdmitted { member, .. }) if member.as_str() == "insurer-b"),
        "{status:?}"
    );
    let member = timeout(WAIT, member)
        .await
        .expect("in time")
        .expect("task")
        .expect("outcome");
    assert!(
        matches!(&member.status, NodeStatus::Aborted(r) if r.contains("not admitted")),
        "{:?}",
        member.status
    );
    // Every other node learns why: from the coordinator's notice, or, had that not reached
    // it, from the close of its connection.
    for node in honest {
        let told = match timeout(WAIT, node).await.expect("in time").expect("task") {
            Ok(outcome) => match outcome.status {
                NodeStatus::Aborted(reason) => reason,
                other => panic!("{other:?}"),
            },
            Err(e) => e.to_string(),
        };
        assert!(
            told.contains("committee member insurer-b was not admitted"),
            "{told}"
        );
    }
}

/// A coordinator address where nothing answers: the participant says so at the first failure,
/// with the attempt, the pause and the most it will still wait, and gives up after
/// `connect_attempts` attempts of at most CONNECT_PATIENCE each, naming the address.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_coordinator_is_reported_with_its_schedule_and_given_up_on() {
    let c = Consortium::new(
        Profile::Fast,
        &["bank-a", "insurer-b", "broker-c"],
        &["bank-a"],
        2,
    );
    // Bound, so that no ICMP error ends an attempt early, and never read.
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").expect("silent");
    let addr = silent.local_addr().expect("addr");
    let settings = c.settings_with("bank-a", &c.job, addr, 2);
    let started = std::time::Instant::now();
    let patience = fedbank_transport::nodes::CONNECT_PATIENCE;
    let err = timeout(3 * patience, run_participant::<u64>(settings, c.progress()))
        .await
        .expect("gives up within its schedule")
        .expect_err("unreachable");
    assert!(started.elapsed() >= 2 * patience, "{:?}", started.elapsed());
    assert!(err.to_string().contains(&addr.to_string()), "{err}");
    assert!(
        c.log_contains(&format!(
            "the coordinator coordinator at {addr} is not reachable (no answer within {} s); attempt 1 of 2, the next in 0.1 s; giving up in at most",
            patience.as_secs()
        )),
        "{}",
        c.log()
    );
    drop(silent);
}

/// A node that comes back after the job's end — here while the coordinator still waits for a
/// connection that never hangs up — is told how the job ended and stops, instead of connecting
/// again and again to a job that is over.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_back_after_the_jobs_end_is_told_the_outcome_and_stops() {
    let c = Consortium::new(
        Profile::Fast,
        &["bank-a", "insurer-b", "broker-c", "pay-d"],
        &["bank-a", "insurer-b"],
        3,
    );
    let (addr, coordinator) = c.start_coordinator::<u64>().await;
    let late = async {
        // pay-d connects and never says Hello (so it is asked nothing) nor hangs up: the
        // coordinator waits for it after the job's end.
        let mut endpoint =
            quinn::Endpoint::client("127.0.0.1:0".parse().expect("addr")).expect("endpoint");
        endpoint.set_default_client_config(tls::client_config(&c.creds("pay-d")).expect("tls"));
        let holder = timeout(WAIT, connect(&endpoint, addr, &id("coordinator")))
            .await
            .expect("in time")
            .expect("connect");
        let started = std::time::Instant::now();
        while !c.log_contains("job finished") {
            assert!(started.elapsed() < WAIT, "{}", c.log());
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        // bank-a, started again after the end (as after a lost connection), is told the outcome
        // and gives up at once.
        let ended = || {
            std::fs::read_to_string(c.dir.path().join("bank-a.trail"))
                .is_ok_and(|t| t.contains("\"job.ended\""))
        };
        while !ended() {
            assert!(started.elapsed() < WAIT, "{}", c.log());
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let settings = c.settings_with("bank-a", &c.job, addr, 50);
        let err = timeout(
            Duration::from_secs(15),
            run_participant::<u64>(settings, c.progress()),
        )
        .await
        .expect("stops, does not retry")
        .expect_err("the job is over");
        assert!(
            matches!(&err, fedbank_transport::nodes::NodeError::JobOver { outcome, .. }
                if outcome == "job over: finished"),
            "{err}"
        );
        // On its first connection: it was never taken in and dropped to connect again.
        assert!(!c.log_contains("connecting again"), "{}", c.log());
        drop(holder);
        endpoint.close(quinn::VarInt::from_u32(0), b"done");
    };
    c.finish_without::<u64>(&["pay-d"], addr, coordinator, late)
        .await;
}

/// The coordinator's trail removed under it mid-job: at its next append it stops rather than
/// sign events into a file that is not its trail, and every node still connected is told why
/// and stops, instead of waiting for rounds that will never come.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_coordinator_that_cannot_keep_its_trail_stops_and_every_node_is_told_why() {
    let c = Consortium::new(
        Profile::Fast,
        &["bank-a", "insurer-b", "broker-c", "pay-d"],
        &["bank-a", "insurer-b"],
        3,
    );
    let (addr, coordinator) = c.start_coordinator::<u64>().await;
    // pay-d says Hello and never contributes: round 1 stays open for its deadline (20 s).
    let mut endpoint =
        quinn::Endpoint::client("127.0.0.1:0".parse().expect("addr")).expect("endpoint");
    endpoint.set_default_client_config(tls::client_config(&c.creds("pay-d")).expect("tls"));
    let hello = Hello {
        protocol: PROTOCOL_VERSION,
        job: c.job.spec().job.clone(),
        job_digest: c.job.digest(),
        data: None,
    };
    let first = timeout(WAIT, connect(&endpoint, addr, &id("coordinator")))
        .await
        .expect("in time")
        .expect("connect");
    frame::send(&first, &hello).await.expect("hello");
    let honest: Vec<_> = ["bank-a", "insurer-b", "broker-c"]
        .iter()
        .map(|n| c.start_participant::<u64>(&id(n), addr))
        .collect();
    let started = std::time::Instant::now();
    while !["bank-a", "insurer-b", "broker-c"]
        .iter()
        .all(|n| c.log_contains(&format!("round 1: commitment from {n}")))
    {
        assert!(started.elapsed() < WAIT, "{}", c.log());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    std::fs::remove_file(c.dir.path().join("coordinator.trail")).expect("remove the trail");
    // pay-d comes back: its node.joined is the coordinator's next append.
    let second = timeout(WAIT, connect(&endpoint, addr, &id("coordinator")))
        .await
        .expect("in time")
        .expect("connect");
    frame::send(&second, &hello).await.expect("hello");
    let err = timeout(WAIT, coordinator)
        .await
        .expect("in time")
        .expect("task")
        .expect_err("the coordinator stops");
    let cause = std::error::Error::source(&err).map(ToString::to_string);
    assert!(
        cause
            .as_deref()
            .is_some_and(|c| c.contains("the trail file was removed")),
        "{err}: {cause:?}"
    );
    for node in honest {
        let err = timeout(WAIT, node)
            .await
            .expect("told at once, not left to wait out the round")
            .expect("task")
            .expect_err("the job is over");
        assert!(
            matches!(&err, fedbank_transport::nodes::NodeError::JobOver { outcome, .. }
                if outcome.starts_with("job over: the coordinator stopped")
                    && outcome.contains("the trail file was removed")),
            "{err}"
        );
    }
    endpoint.close(quinn::VarInt::from_u32(0), b"done");
}
