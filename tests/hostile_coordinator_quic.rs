//! A deviating coordinator over real QUIC with mutual TLS on loopback, against two real
//! participant nodes (`run_participant`, one of them the committee): four attacks of
//! docs/threat-model.md §11 — a substituted joint key, a round kind the job never computes, a
//! decryption of a mask the coordinator chose, and a second roster after the masks were seen. Each is refused by the honest node, lands in its
//! own signed trail, and `fedbank audit report` names the coordinator (exit status 5).

use fedbank_common::audit::{verify, SigningIdentity, TrailWriter};
use fedbank_common::committee::MASK_DIGEST_LABEL;
use fedbank_common::digest::Digest;
use fedbank_common::ids::{JobId, NodeId};
use fedbank_common::job::{stats, FeatureSpec, JobKind, JobSpec, RoundKind, ValidJob};
use fedbank_common::key_ceremony::{CommitmentSet, KeyBundle};
use fedbank_common::protocol::{
    Inbound, Notice, NoticeKind, RevealRequest, RoundRequest, Welcome, PROTOCOL_VERSION,
};
use fedbank_common::secagg::{KeySetup, Profile};
use fedbank_common::wire::WireMessage;
use fedbank_participant::{LocalData, LocalTable, NodeStatus};
use fedbank_transport::nodes::{run_participant, ParticipantSettings, TrailSettings};
use fedbank_transport::pki::{ConsortiumCa, CredentialPaths, NodeCredentials};
use fedbank_transport::{frame, peer_id, tls};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::time::timeout;

type S = u64;

const WAIT: Duration = Duration::from_secs(60);

fn id(s: &str) -> NodeId {
    NodeId::new(s).expect("id")
}

fn job() -> ValidJob {
    JobSpec {
        job: JobId::new("hostile-quic").expect("id"),
        kind: JobKind::STATS,
        profile: Profile::Fast,
        participants: vec![id("bank"), id("insurer")],
        committee: vec![id("bank")],
        min_participants: 2,
        max_rows: 10_000,
        features: vec![FeatureSpec {
            name: "balance".into(),
            bound: 1000.0,
            min: Some(0.0),
            scale: 100.0,
        }],
        id_column: None,
        histogram_bins: 4,
        key_setup_timeout_ms: 20_000,
        round_timeout_ms: 20_000,
        decryption_timeout_ms: 20_000,
        max_round_retries: 0,
        max_decryption_retries: 0,
        start_quorum: None,
        propensity: None,
        compliance: None,
        auditor: None,
        settings: None,
        segment: None,
    }
    .validate()
    .expect("job")
}

fn creds(dir: &Path, node: &str) -> NodeCredentials {
    NodeCredentials::load(&CredentialPaths::in_dir(&dir.join("certs"), &id(node))).expect("creds")
}

fn trail(dir: &Path, node: &str) -> TrailSettings {
    TrailSettings {
        path: dir.join("trails").join(format!("{node}.trail")),
        identity: SigningIdentity::from_pkcs8(creds(dir, node).pkcs8()).expect("key"),
    }
}

fn table(i: usize) -> LocalTable {
    let balance = (0..30)
        .map(|r| Some(50.0 * (i + 1) as f64 + r as f64))
        .collect();
    LocalTable {
        columns: [("balance".to_owned(), balance)].into_iter().collect(),
        rows: 30,
    }
}

/// Waits for the next message from `conn`.
/// What the honest nodes told the coordinator they refused, in the order read.
static TOLD: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());

/// The next message from a node other than its telling of a refusal (kept in [`TOLD`]).
async fn next(conn: &quinn::Connection) -> Inbound<S> {
    loop {
        let f = timeout(WAIT, frame::recv(conn, Inbound::<S>::limit))
            .await
            .expect("in time")
            .expect("frame");
        match Inbound::<S>::decode(&f.bytes).expect("decode") {
            Inbound::Notice(n) if n.kind == NoticeKind::MessageRefused => {
                TOLD.lock().unwrap_or_else(|e| e.into_inner()).push(n.text)
            }
            message => return message,
        }
    }
}

async fn send<M: WireMessage>(conn: &quinn::Connection, m: &M) {
    frame::send(conn, m).await.expect("send");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_attacks_over_quic_are_refused_recorded_and_reported() {
    let dir = tempfile::tempdir().expect("dir");
    let ca = ConsortiumCa::create(&dir.path().join("certs")).expect("ca");
    for n in ["coordinator", "bank", "insurer"] {
        ca.issue(&id(n), 1).expect("cert");
    }
    std::fs::create_dir_all(dir.path().join("trails")).expect("trails");
    let job = job();

    // The deviating coordinator: a real QUIC endpoint with the coordinator's certificate.
    let endpoint = quinn::Endpoint::server(
        tls::server_config(&creds(dir.path(), "coordinator")).expect("tls"),
        "127.0.0.1:0".parse().expect("addr"),
    )
    .expect("endpoint");
    let addr = endpoint.local_addr().expect("addr");
    let log: Arc<std::sync::Mutex<Vec<String>>> = Arc::default();
    let progress: Arc<dyn Fn(String) + Send + Sync> = {
        let log = log.clone();
        Arc::new(move |line| log.lock().expect("log").push(line))
    };
    let nodes: Vec<_> = ["bank", "insurer"]
        .iter()
        .enumerate()
        .map(|(i, n)| {
            let settings = ParticipantSettings {
                id: id(n),
                job: job.clone(),
                data: LocalData::Table {
                    table: table(i),
                    row_ids: None,
                },
                creds: creds(dir.path(), n),
                coordinator: (addr, id("coordinator")),
                trail: trail(dir.path(), n),
                connect_attempts: 20,
                local: Default::default(),
                data_commitment: None,
            };
            tokio::spawn(run_participant::<S>(settings, progress.clone()))
        })
        .collect();

    let mut conns: BTreeMap<NodeId, quinn::Connection> = BTreeMap::new();
    while conns.len() < 2 {
        let incoming = timeout(WAIT, endpoint.accept())
            .await
            .expect("in time")
            .expect("incoming");
        let conn = incoming.await.expect("handshake");
        let who = peer_id(&conn).expect("identity");
        assert!(matches!(next(&conn).await, Inbound::Hello(h) if h.protocol == PROTOCOL_VERSION));
        send(
            &conn,
            &Welcome {
                job: job.spec().job.clone(),
                profile: job.spec().profile,
                restart: 0,
            },
        )
        .await;
        conns.insert(who, conn);
    }
    let (bank, insurer) = (&conns[&id("bank")], &conns[&id("insurer")]);

    // The honest ceremony with the one member, so that there is a real key to deviate from.
    let setup = KeySetup {
        job: job.spec().job.clone(),
        key_epoch: 1,
        profile: job.spec().profile,
        mask_seed: 77,
        committee: vec![id("bank")],
    };
    send(bank, &setup).await;
    let Inbound::Commitment(c) = next(bank).await else {
        panic!("no commitment")
    };
    let set = CommitmentSet {
        setup: setup.clone(),
        commitments: vec![c],
    };
    send(bank, &set).await;
    let Inbound::KeyShare(share) = next(bank).await else {
        panic!("no share")
    };
    let honest = KeyBundle {
        commitments: set,
        shares: vec![share],
    };

    // Attack 1: the insurer is handed a key whose share the coordinator swapped for its own.
    let mut swapped = honest.clone();
    let own = fedbank_common::secagg::SecretKeyShare::<S>::generate(&setup, &id("bank"))
        .expect("share")
        .public_share();
    swapped.shares[0].share = own;
    send(insurer, &swapped).await;

    // Both take the honest key; then attack 2: a round kind a stats job never computes.
    send(bank, &honest).await;
    send(insurer, &honest).await;
    let request = |round, kind| RoundRequest {
        job: job.spec().job.clone(),
        round,
        attempt: 0,
        kind,
    };
    let lifecycle = fedbank_common::job::segment::SegmentRound::Lifecycle {
        reference_day: None,
    };
    let foreign = RoundKind::Registered(lifecycle.to_round().expect("a segment round"));
    send(insurer, &request(1, foreign)).await;

    // Attack 3: the bank (the committee) is asked to decrypt a mask of the coordinator's choice
    // listed under the insurer's genuine statement.
    send(bank, &request(2, stats::moments_round())).await;
    send(insurer, &request(2, stats::moments_round())).await;
    let mut aggregate = fedbank_coordinator::RoundAggregate::<S>::new(
        setup.clone(),
        2,
        stats::moments_round().label(),
        job.plan(&stats::moments_round())
            .expect("plan")
            .slot_count() as u64,
    );
    for (who, conn) in [(id("bank"), bank), (id("insurer"), insurer)] {
        match next(conn).await {
            Inbound::ContributionCommitment(c) => {
                aggregate.commit(who, c.statement).expect("commit");
            }
            other => panic!("{who} sent {}", other.name()),
        }
    }
    let roster = aggregate.fix_roster().cloned().expect("roster");
    for (who, conn) in [(id("bank"), bank), (id("insurer"), insurer)] {
        send(
            conn,
            &RevealRequest {
                roster: roster.clone(),
            },
        )
        .await;
        match next(conn).await {
            Inbound::Contribution(c) => {
                aggregate.add(who, c.ciphertext, c.reveal).expect("add");
            }
            other => panic!("{who} sent {}", other.name()),
        }
    }
    // Attack 4: with the masks seen, a second roster in which the bank's commitment is
    // replaced (by one a colluder would choose now); the insurer reveals against one only.
    let mut second = roster.clone();
    second.entries[0].statement = Digest::of("a mask chosen after the others", b"");
    send(insurer, &RevealRequest { roster: second }).await;
    let mut chosen = aggregate.decryption_request(2).expect("request");
    for c in chosen.contributions[1].masks.iter_mut() {
        *c = 1 << 40;
    }
    let mut sum = chosen.contributions[0].masks.clone();
    fedbank_common::secagg::add_assign(&mut sum, &chosen.contributions[1].masks);
    chosen.manifest.aggregate_mask_digest = Digest::of_scalars(MASK_DIGEST_LABEL, &sum);
    send(bank, &chosen).await;
    match next(bank).await {
        Inbound::Notice(n) => {
            assert_eq!(n.kind, NoticeKind::Refused);
            assert!(n.text.contains("is not the one it signed"), "{}", n.text);
        }
        other => panic!("the member answered {}", other.name()),
    }

    // The end: both nodes are told the job is over.
    for conn in [bank, insurer] {
        send(
            conn,
            &Notice {
                job: job.spec().job.clone(),
                round: None,
                kind: NoticeKind::Aborted,
                text: "the end of the hostile run".into(),
            },
        )
        .await;
    }
    for node in nodes {
        let outcome = timeout(WAIT, node)
            .await
            .expect("in time")
            .expect("task")
            .expect("participant");
        assert!(
            matches!(outcome.status, NodeStatus::Aborted(_)),
            "{outcome:?}"
        );
    }

    // Each refusal is in the honest node's own, verifying trail.
    let refused = |node: &str| -> Vec<String> {
        let t = verify(
            &dir.path().join("trails").join(format!("{node}.trail")),
            None,
        )
        .expect("trail verifies");
        t.events
            .iter()
            .filter(|e| e.event == "message.refused" || e.event == "decryption.refused")
            .map(|e| e.fields["reason"].as_str().unwrap_or_default().to_owned())
            .collect()
    };
    let insurer_refused = refused("insurer");
    // The coordinator was told of the first two before the insurer's commitment, in order.
    let told = TOLD.lock().unwrap_or_else(|e| e.into_inner()).clone();
    assert!(
        told.len() >= 2
            && told[0].starts_with("insurer refused KeyBundle")
            && told[0].contains("share reveal")
            && told[1].starts_with("insurer refused RoundRequest")
            && told[1].contains("never computes"),
        "{told:#?}"
    );
    assert!(
        insurer_refused.iter().any(|r| r.contains("share reveal")),
        "{insurer_refused:?}"
    );
    assert!(
        insurer_refused.iter().any(|r| r.contains("never computes")),
        "{insurer_refused:?}"
    );
    assert!(
        insurer_refused
            .iter()
            .any(|r| r.contains("revealed against one roster only")),
        "{insurer_refused:?}"
    );
    let bank_refused = refused("bank");
    assert!(
        bank_refused
            .iter()
            .any(|r| r.contains("is not the one it signed")),
        "{bank_refused:?}"
    );

    // A coordinator trail as the deviating coordinator would keep it: nothing about the attacks.
    let mut coordinator_trail = TrailWriter::create(
        &dir.path().join("trails").join("coordinator.trail"),
        &id("coordinator"),
        "coordinator",
        SigningIdentity::from_pkcs8(creds(dir.path(), "coordinator").pkcs8()).expect("key"),
        SystemTime::now(),
    )
    .expect("trail");
    let spec = job.spec();
    let started = fedbank_common::audit::events::JobStarted {
        job: spec.job.clone(),
        kind: spec.kind.name().to_owned(),
        config_digest: job.digest().to_hex(),
        profile: spec.profile.name().to_owned(),
        participants: spec.participants.clone(),
        committee: spec.committee.clone(),
        min_participants: spec.min_participants,
        k_anonymity: None,
        auditor: None,
        software: None,
    };
    coordinator_trail
        .record(&started, SystemTime::now())
        .expect("append");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_fedbank"))
        .args(["audit", "report"])
        .arg(dir.path())
        .output()
        .expect("fedbank audit report");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(5), "{stdout}");
    assert!(stdout.contains("COORDINATOR DEVIATED"), "{stdout}");
    assert!(stdout.contains("`coordinator`"), "{stdout}");
}
