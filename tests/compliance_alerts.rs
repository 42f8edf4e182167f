//! Private alerts through the state machines, every message through its wire form: what each
//! role actually received. No participant receives anyone's rates, the coordinator decrypts only
//! the counts aggregate, and the auditor receives exactly one tally — one encrypted count per
//! rule over every contributor — and refuses any other.

use fedbank_auditor::{AuditorMachine, AuditorOutput, TallyRefusal};
use fedbank_common::alerts::AuditorKeys;
use fedbank_common::compliance_rules::rate_basis_points;
use fedbank_common::ids::NodeId;
use fedbank_common::job::compliance::{self, ComplianceResult};
use fedbank_common::job::{JobSpec, RoundKind, ValidJob};
use fedbank_common::protocol::{AlertContribution, AlertTally, Inbound, NoticeKind};
use fedbank_coordinator::{CoordinatorMachine, CoordinatorOutput, Input, Status, Violation};
use fedbank_participant::contact_log::read_contacts;
use fedbank_participant::synthetic::contacts;
use fedbank_participant::{LocalData, ParticipantMachine, ParticipantOutbound, ParticipantOutput};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;

type S = u64;

fn node(name: &str) -> NodeId {
    NodeId::new(name).expect("id")
}

/// The shipped compliance job, for four institutions on the fast profile.
/// The compliance result of a finished job.
fn finished(status: &Status) -> Option<ComplianceResult> {
    match status {
        Status::Finished(result) => result.released(compliance::KIND),
        _ => None,
    }
}

fn job() -> ValidJob {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/configs/compliance-synthetic.toml"
    ))
    .expect("job file");
    let mut file: toml::Value = toml::from_str(&text).expect("toml");
    let j = file["job"].as_table_mut().expect("job table");
    j.insert("profile".into(), "fast".into());
    j.insert(
        "participants".into(),
        toml::Value::Array(["a", "b", "c", "d"].map(toml::Value::from).to_vec()),
    );
    j.insert(
        "committee".into(),
        toml::Value::Array(["a", "b", "c"].map(toml::Value::from).to_vec()),
    );
    let spec: JobSpec = file["job"].clone().try_into().expect("job spec");
    spec.validate().expect("valid job")
}

/// What each role received, by message name.
#[derive(Default)]
struct Received {
    by: BTreeMap<NodeId, Vec<&'static str>>,
    tallies: Vec<AlertTally>,
}

struct Run {
    status: Status,
    received: Received,
    aggregates: Vec<RoundKind>,
    reports: BTreeMap<NodeId, serde_json::Value>,
    decrypted: Vec<Vec<(String, u16)>>,
    refused_garbage: Option<Violation>,
    refused_keys_from_participant: Option<Violation>,
    auditor: AuditorMachine,
}

/// Runs the job; with `auditor_reconnects`, the auditor's connection drops just as the tally is
/// sent, and it reconnects.
fn run_with(auditor_reconnects: bool) -> Run {
    let job = job();
    let dir = tempfile::tempdir().expect("dir");
    let mut participants: Vec<ParticipantMachine<S>> = job
        .spec()
        .participants
        .iter()
        .enumerate()
        .map(|(i, id)| {
            let d = dir.path().join(id.as_str());
            std::fs::create_dir_all(&d).expect("dir");
            let ids: Vec<String> = (0..800 + 300 * i).map(|c| format!("{id}-{c:05}")).collect();
            let files = contacts::generate(&d, &ids, 40 + i as u64).expect("generate");
            let log = read_contacts(
                &files.contacts,
                &files.consent,
                job.compliance().expect("compliance"),
                job.spec().max_rows,
            )
            .expect("log");
            ParticipantMachine::with_data(
                fedbank_transport::dev_pki::shared_credentials(&id.clone()).expect("credentials"),
                job.clone(),
                LocalData::Contacts(log),
            )
            .expect("machine")
        })
        .collect();
    let auditor_id = job.spec().auditor.clone().expect("auditor");
    let keys = Arc::new(AuditorKeys::generate().expect("keys"));
    let mut auditor = AuditorMachine::new(
        fedbank_transport::dev_pki::shared_credentials(&auditor_id)
            .expect("credentials")
            .signer,
        job.clone(),
        keys,
    );
    let mut coordinator =
        CoordinatorMachine::<S>::new(job.clone(), 7, fedbank_transport::dev_pki::shared_trust());

    let mut received = Received::default();
    let mut aggregates = Vec::new();
    let mut reports = BTreeMap::new();
    let mut decrypted = Vec::new();
    let mut refused_garbage = None;
    let mut refused_keys_from_participant = None;
    let mut to_coordinator: VecDeque<(NodeId, Vec<u8>)> = VecDeque::new();
    let mut dropped_tally = !auditor_reconnects;

    for p in &mut participants {
        coordinator
            .handle(Input::Connected(p.id().clone()), 0)
            .expect("connect");
        p.on_connected();
    }
    coordinator
        .handle(Input::Connected(auditor_id.clone()), 0)
        .expect("connect");
    auditor.on_connected();
    loop {
        let mut progressed = false;
        for p in &mut participants {
            while let Some(out) = p.poll_output() {
                match out {
                    ParticipantOutput::Send(m) => {
                        to_coordinator.push_back((p.id().clone(), m.encode().expect("encode")))
                    }
                    ParticipantOutput::LocalReport(r) => {
                        reports.insert(p.id().clone(), r);
                    }
                    _ => {}
                }
            }
        }
        while let Some(out) = auditor.poll_output() {
            match out {
                AuditorOutput::Send(m) => {
                    to_coordinator.push_back((auditor_id.clone(), m.encode().expect("encode")))
                }
                AuditorOutput::Counts(c) => decrypted.push(c),
                _ => {}
            }
        }
        while let Some((from, bytes)) = to_coordinator.pop_front() {
            let message = Inbound::<S>::decode(&bytes).expect("decode");
            if let (Inbound::AlertContribution(c), None) = (&message, &refused_garbage) {
                // A hostile list first: refused, and the real one is still taken afterwards.
                let garbage = Inbound::AlertContribution(AlertContribution {
                    rates: vec![7; 300],
                    ..c.clone()
                });
                refused_garbage = coordinator
                    .handle(
                        Input::Message {
                            from: from.clone(),
                            message: garbage,
                        },
                        0,
                    )
                    .err();
            }
            if let (Inbound::AlertKeys(k), None) = (&message, &refused_keys_from_participant) {
                refused_keys_from_participant = coordinator
                    .handle(
                        Input::Message {
                            from: node("a"),
                            message: Inbound::AlertKeys(k.clone()),
                        },
                        0,
                    )
                    .err();
            }
            coordinator
                .handle(Input::Message { from, message }, 0)
                .expect("accepted");
            progressed = true;
        }
        while let Some(out) = coordinator.poll_output() {
            match out {
                CoordinatorOutput::Send { to, message } => {
                    let m =
                        Inbound::<S>::decode(&message.encode().expect("encode")).expect("decode");
                    if to == auditor_id && matches!(m, Inbound::AlertTally(_)) && !dropped_tally {
                        // Lost with the connection; the auditor comes back and says Hello.
                        dropped_tally = true;
                        coordinator
                            .handle(Input::Disconnected(auditor_id.clone()), 0)
                            .expect("disconnect");
                        coordinator
                            .handle(Input::Connected(auditor_id.clone()), 0)
                            .expect("connect");
                        auditor.on_connected();
                        progressed = true;
                        continue;
                    }
                    received.by.entry(to.clone()).or_default().push(m.name());
                    if to == auditor_id {
                        if let Inbound::AlertTally(t) = &m {
                            received.tallies.push(t.clone());
                        }
                        auditor.handle(m).expect("auditor handles");
                    } else {
                        let p = participants
                            .iter_mut()
                            .find(|p| *p.id() == to)
                            .expect("participant");
                        p.handle(m).expect("participant handles");
                    }
                    progressed = true;
                }
                CoordinatorOutput::Aggregate { kind, .. } => aggregates.push(kind),
                _ => {}
            }
        }
        match coordinator.status() {
            Status::Running if progressed => {}
            Status::Running => panic!("the job stalled"),
            status => {
                return Run {
                    status: status.clone(),
                    received,
                    aggregates,
                    reports,
                    decrypted,
                    refused_garbage,
                    refused_keys_from_participant,
                    auditor,
                }
            }
        }
    }
}

fn run() -> Run {
    run_with(false)
}

#[test]
fn an_auditor_that_reconnects_gets_the_same_tally_and_decrypts_once() {
    let run = run_with(true);
    assert!(
        matches!(&run.status, Status::Finished(r) if r.kind == compliance::KIND),
        "{:?}",
        run.status
    );
    assert_eq!(
        run.received.by[&node("auditor")],
        vec!["Welcome", "Welcome", "AlertTally", "Notice"]
    );
    assert_eq!(run.decrypted.len(), 1);
}

#[test]
fn each_role_receives_only_what_the_trust_model_allows() {
    let run = run();
    let Some(result) = finished(&run.status) else {
        panic!("job did not finish: {:?}", run.status);
    };

    // The alert counts equal the institutions over each limit, from their own local reports.
    let spec = job();
    for (rule, limit) in spec.compliance().expect("compliance").alert_rules() {
        let over = run
            .reports
            .values()
            .filter(|r| {
                let c = r["rules"]
                    .as_array()
                    .and_then(|a| a.iter().find(|x| x["rule"] == rule.name.as_str()))
                    .expect("rule in report");
                let (v, n) = (
                    c["counts"]["violations"].as_u64().expect("v"),
                    c["counts"]["contacts_examined"].as_u64().expect("n"),
                );
                rate_basis_points(v, n) > limit
            })
            .count() as u16;
        let got = result
            .rules
            .iter()
            .find(|r| r.rule == rule.name)
            .and_then(|r| r.institutions_over_limit);
        assert_eq!(got, Some(over), "rule {}", rule.name);
        // The auditor's tally, from programmable bootstrapping, agrees with the verified count.
        let auditor = result
            .rules
            .iter()
            .find(|r| r.rule == rule.name)
            .and_then(|r| r.auditor_count);
        assert_eq!(auditor, Some(over), "rule {}", rule.name);
    }

    // The auditor: a welcome, exactly one tally of one count per rule over all four
    // contributors, and the end of the job. It decrypted that one tally, nothing else.
    let auditor = &run.received.by[&node("auditor")];
    assert_eq!(auditor, &vec!["Welcome", "AlertTally", "Notice"]);
    let tally = &run.received.tallies[0];
    assert_eq!(tally.counts.len(), 5);
    assert_eq!(tally.manifest.contributors.len(), 4);
    assert_eq!(run.decrypted.len(), 1);

    // Participants: never another's rates, never a tally.
    let allowed: BTreeSet<&str> = [
        "Welcome",
        "KeySetup",
        "CommitmentSet",
        "KeyBundle",
        "RoundRequest",
        "RevealRequest",
        "DecryptionRequest",
        "AlertRequest",
        "Notice",
    ]
    .into();
    for p in ["a", "b", "c", "d"] {
        let got: BTreeSet<&str> = run.received.by[&node(p)].iter().copied().collect();
        assert!(got.is_subset(&allowed), "{p} received {got:?}");
        assert!(got.contains("AlertRequest"));
    }
    // The coordinator decrypted one aggregate: the consortium counts.
    assert_eq!(
        run.aggregates,
        vec![RoundKind::Registered(
            compliance::compliance_round().expect("round")
        )]
    );

    // Hostile material changed nothing.
    assert!(
        matches!(run.refused_garbage, Some(Violation::BadAlert { .. })),
        "{:?}",
        run.refused_garbage
    );
    assert!(
        matches!(
            run.refused_keys_from_participant,
            Some(Violation::NotTheAuditor { .. })
        ),
        "{:?}",
        run.refused_keys_from_participant
    );
}

#[test]
fn the_auditor_refuses_a_single_institution_and_a_second_manifest() {
    let run = run();
    let tally = run.received.tallies[0].clone();

    // One institution's bits alone would be its own comparison result.
    let mut single = tally.clone();
    single.manifest.contributors.truncate(1);
    single.manifest.digests.truncate(1);
    assert_eq!(
        run.auditor.check(&single),
        Err(TallyRefusal::TooFew { got: 1, min: 3 })
    );

    // Another manifest over three of the four (enough contributors) after the first was
    // decrypted: the difference of the two would single one institution out.
    let mut other = tally.clone();
    other.manifest.contributors.truncate(3);
    other.manifest.digests.truncate(3);
    assert!(matches!(
        run.auditor.check(&other),
        Err(TallyRefusal::AlreadyDecided { .. })
    ));

    // A tally under another key, or with rules other than the job's.
    let mut key = tally.clone();
    key.manifest.public_key = fedbank_common::digest::Digest::of("x", b"another key");
    assert!(matches!(
        run.auditor.check(&key),
        Err(TallyRefusal::WrongKey(_))
    ));
    let mut rules = tally.clone();
    rules.manifest.rules[0].limit_basis_points += 1;
    assert!(matches!(
        run.auditor.check(&rules),
        Err(TallyRefusal::WrongJob(_))
    ));

    // The same manifest again (a retry) is answered, from the decision already made.
    assert_eq!(run.auditor.check(&tally), Ok(()));
}

mod hostile_bytes {
    use super::*;
    use fedbank_common::alerts::{AlertEvaluator, RatePublicKey};
    use fedbank_common::protocol::{AlertCounts, AlertManifest, AlertRule};
    use proptest::prelude::*;
    use std::sync::OnceLock;

    struct Material {
        keys: AuditorKeys,
        evaluator: AlertEvaluator,
        rates: Vec<u8>,
        count: Vec<u8>,
    }

    fn material() -> &'static Material {
        static M: OnceLock<Material> = OnceLock::new();
        M.get_or_init(|| {
            let keys = AuditorKeys::generate().expect("keys");
            let evaluator = AlertEvaluator::from_bytes(keys.server_key_bytes()).expect("server");
            let public = RatePublicKey::from_bytes(keys.public_key_bytes()).expect("public");
            let rates = public.encrypt_rates(&[12, 9000]).expect("rates");
            let bits = evaluator.over_limit(&rates, &[10, 10]).expect("bits");
            let count = evaluator.tally(&[&bits], 2).expect("tally").remove(0);
            Material {
                keys,
                evaluator,
                rates,
                count,
            }
        })
    }

    fn corrupt(original: &[u8], flips: &[(usize, u8)], cut: usize) -> Vec<u8> {
        let mut bytes = original.to_vec();
        for (at, value) in flips {
            let i = at % bytes.len();
            bytes[i] ^= value | 1;
        }
        bytes.truncate(bytes.len() - cut % bytes.len().min(64));
        bytes
    }

    #[test]
    fn alert_messages_round_trip_through_the_wire() {
        let m = material();
        let manifest = AlertManifest {
            job: fedbank_common::ids::JobId::new("j").expect("job"),
            round: 2,
            rules: vec![AlertRule {
                rule: "quiet-hours".into(),
                limit_basis_points: 25,
            }],
            contributors: vec![node("a"), node("b")],
            digests: vec![
                fedbank_common::alerts::digest(b"a"),
                fedbank_common::alerts::digest(b"b"),
            ],
            public_key: fedbank_common::alerts::digest(m.keys.public_key_bytes()),
        };
        let tally = AlertTally {
            manifest: manifest.clone(),
            counts: vec![m.count.clone()],
        };
        let bytes = fedbank_common::wire::encode(&tally).expect("encode");
        let Inbound::<S>::AlertTally(back) = Inbound::<S>::decode(&bytes).expect("decode") else {
            panic!("kind");
        };
        assert_eq!(back, tally);
        let counts = AlertCounts {
            job: manifest.job.clone(),
            manifest: manifest.digest(),
            counts: vec![1],
        };
        let bytes = fedbank_common::wire::encode(&counts).expect("encode");
        assert!(matches!(Inbound::<S>::decode(&bytes), Ok(Inbound::AlertCounts(c)) if c == counts));
        // The manifest digest binds every field.
        let mut other = manifest.clone();
        other.digests.swap(0, 1);
        assert_ne!(other.digest(), manifest.digest());
        assert_eq!(m.keys.decrypt_count(&m.count), Ok(1));
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

        /// Corrupted rates, counts and public keys are refused with an error; nothing panics.
        #[test]
        fn corrupted_alert_material_never_panics(
            flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..6),
            cut in any::<usize>(),
        ) {
            let m = material();
            let rates = corrupt(&m.rates, &flips, cut);
            if rates != m.rates {
                prop_assert!(m.evaluator.over_limit(&rates, &[10, 10]).is_err() || rates.len() == m.rates.len());
            }
            let count = corrupt(&m.count, &flips, cut);
            let _ = m.keys.decrypt_count(&count);
            let public = corrupt(m.keys.public_key_bytes(), &flips, cut);
            let _ = RatePublicKey::from_bytes(&public);
            for source in [&rates, &count] {
                let mut framed = fedbank_common::wire::encode(&AlertContribution {
                    job: fedbank_common::ids::JobId::new("j").expect("job"),
                    round: 1,
                    rates: source.clone(),
                })
                .expect("encode");
                let i = flips[0].0 % framed.len();
                framed[i] ^= flips[0].1 | 1;
                let _ = Inbound::<S>::decode(&framed);
            }
        }
    }
}

/// A coordinator that substitutes its own key for the auditor's gets no rates: a participant
/// encrypts only under a key the job's certified auditor signed for this job.
#[test]
fn a_participant_encrypts_rates_only_under_the_auditors_signed_key() {
    use fedbank_common::protocol::{AlertKeyStatement, AlertRequest};
    use fedbank_transport::dev_pki::shared_credentials;
    let job = job();
    let dir = tempfile::tempdir().expect("dir");
    let ids: Vec<String> = (0..50).map(|c| format!("a-{c:05}")).collect();
    let files = contacts::generate(dir.path(), &ids, 7).expect("generate");
    let log = read_contacts(
        &files.contacts,
        &files.consent,
        job.compliance().expect("compliance"),
        job.spec().max_rows,
    )
    .expect("log");
    let mut p = ParticipantMachine::<S>::with_data(
        shared_credentials(&node("a")).expect("credentials"),
        job.clone(),
        LocalData::Contacts(log),
    )
    .expect("machine");
    let key = b"the coordinator's own compact public key".to_vec();
    let statement = AlertKeyStatement {
        job: job.spec().job.clone(),
        job_digest: job.digest(),
        public_key: fedbank_common::alerts::digest(&key),
    };
    let request = |endorsement| AlertRequest {
        job: job.spec().job.clone(),
        round: 2,
        public_key: key.clone(),
        rules: job.alert_limits(),
        endorsement,
    };
    let coordinator = shared_credentials(&node("coordinator")).expect("credentials");
    let auditor = shared_credentials(job.spec().auditor.as_ref().expect("auditor")).expect("c");
    // Signed by the coordinator; signed by the auditor for another key.
    let by_coordinator = request(coordinator.signer.sign(statement.clone()));
    let other_key = request(auditor.signer.sign(AlertKeyStatement {
        public_key: fedbank_common::alerts::digest(b"the auditor's real key"),
        ..statement
    }));
    for bad in [by_coordinator, other_key] {
        let bytes = fedbank_common::wire::encode(&bad).expect("encode");
        let message = Inbound::<S>::decode(&bytes).expect("decode");
        let err = p.handle(message).expect_err("refused");
        assert!(err.to_string().contains("AlertRequest"), "{err}");
        let mut refused_in_trail = false;
        while let Some(out) = p.poll_output() {
            match out {
                // Only the telling of the refusal to the coordinator.
                ParticipantOutput::Send(ParticipantOutbound::Notice(n))
                    if n.kind == NoticeKind::MessageRefused && n.text.contains("AlertRequest") => {}
                ParticipantOutput::Send(m) => panic!("nothing else is sent: {m:?}"),
                ParticipantOutput::Audit { kind, .. } => {
                    refused_in_trail |= kind.name() == "message.refused"
                }
                _ => {}
            }
        }
        assert!(refused_in_trail);
    }
}
