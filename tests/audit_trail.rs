//! The audit trail: any single changed byte, a removed, reordered or inserted event, and a trail
//! re-signed under another key are all detected; the cross-check finds contributions and
//! decryptions that the coordinator and a node record differently.

use fedbank_common::audit::{
    cross_check, verify, CrossCheckFinding, EventKind, SigningIdentity, TrailReport, TrailWriter,
    VerifyError,
};
use fedbank_common::ids::NodeId;
use proptest::prelude::*;
use serde_json::{json, Map, Value};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

fn fields(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

fn at(s: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_000_000 + s)
}

/// A coordinator trail and one participant trail of a two-round job. Returns the paths and the
/// coordinator's public key.
fn write_trails(dir: &Path, participant_digest_round2: &str) -> (PathBuf, PathBuf, String) {
    let coordinator = dir.join("coordinator.trail");
    let participant = dir.join("bank-a.trail");
    let (id, _) = SigningIdentity::generate().expect("key");
    let key = id.public_key_hex();
    let mut c = TrailWriter::create(
        &coordinator,
        &NodeId::new("coordinator").expect("id"),
        "coordinator",
        id,
        at(0),
    )
    .expect("create");
    let (pid, _) = SigningIdentity::generate().expect("key");
    let mut p = TrailWriter::create(
        &participant,
        &NodeId::new("bank-a").expect("id"),
        "participant",
        pid,
        at(0),
    )
    .expect("create");
    c.append(
        EventKind::JobStarted,
        fields(json!({"job": "stats-1", "config_digest": "ab12"})),
        at(1),
    )
    .expect("append");
    for (round, digest) in [(1, "d1"), (2, "d2")] {
        c.append(
            EventKind::RoundStarted,
            fields(json!({"job": "stats-1", "round": round})),
            at(2),
        )
        .expect("append");
        c.append(
            EventKind::RosterFixed,
            fields(
                json!({"job": "stats-1", "round": round, "attempt": 0, "quantity": "moments",
                "roster": format!("r{round}"), "participants": ["bank-a"]}),
            ),
            at(3),
        )
        .expect("append");
        c.append(
            EventKind::ContributionReceived,
            fields(json!({"job": "stats-1", "round": round, "quantity": "moments", "node": "bank-a", "digest": digest})),
            at(3),
        )
        .expect("append");
        let sent = if round == 2 {
            participant_digest_round2
        } else {
            digest
        };
        p.append(
            EventKind::ContributionSent,
            fields(
                json!({"job": "stats-1", "round": round, "attempt": 0, "quantity": "moments",
                    "digest": sent, "roster": format!("r{round}"), "clipped_values": 0}),
            ),
            at(3),
        )
        .expect("append");
    }
    c.append(
        EventKind::JobCompleted,
        fields(json!({"job": "stats-1", "result_digest": "ff"})),
        at(9),
    )
    .expect("append");
    (coordinator, participant, key)
}

fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .expect("read")
        .lines()
        .map(str::to_owned)
        .collect()
}

fn write_lines(path: &Path, lines: &[String]) {
    let mut text = lines.join("\n");
    text.push('\n');
    std::fs::write(path, text).expect("write");
}

#[test]
fn an_untouched_trail_verifies_and_can_be_continued() {
    let dir = tempfile::tempdir().expect("dir");
    let (coordinator, _, key) = write_trails(dir.path(), "d2");
    let report = verify(&coordinator, Some(&key)).expect("verifies");
    assert_eq!(report.events.len(), 9);
    assert_eq!(report.role, "coordinator");
    assert!(matches!(
        verify(&coordinator, Some("00")),
        Err(VerifyError::KeyMismatch { .. })
    ));
}

#[test]
fn removed_reordered_inserted_and_truncated_events_are_named() {
    let dir = tempfile::tempdir().expect("dir");
    let (coordinator, _, _) = write_trails(dir.path(), "d2");
    let original = lines(&coordinator);
    let tampered = dir.path().join("tampered.trail");

    let mut removed = original.clone();
    removed.remove(3);
    write_lines(&tampered, &removed);
    assert!(matches!(
        verify(&tampered, None),
        Err(VerifyError::Removed {
            line: 4,
            expected: 3,
            found: 4,
            ..
        })
    ));

    let mut swapped = original.clone();
    swapped.swap(2, 4);
    write_lines(&tampered, &swapped);
    assert!(matches!(
        verify(&tampered, None),
        Err(VerifyError::Reordered {
            line: 3,
            expected: 2,
            found: 4,
            ..
        })
    ));

    let mut inserted = original.clone();
    inserted.insert(3, original[2].clone());
    write_lines(&tampered, &inserted);
    assert!(matches!(
        verify(&tampered, None),
        Err(VerifyError::InsertedOrReordered {
            line: 4,
            expected: 3,
            found: 2,
            ..
        })
    ));

    let mut text = original.join("\n");
    text.push('\n');
    std::fs::write(&tampered, &text[..text.len() - 10]).expect("write");
    assert!(matches!(
        verify(&tampered, None),
        Err(VerifyError::Truncated { line: 9 })
    ));
}

#[test]
fn a_trail_rewritten_under_another_key_fails_against_the_expected_key() {
    let dir = tempfile::tempdir().expect("dir");
    let (coordinator, _, key) = write_trails(dir.path(), "d2");
    let forged_dir = tempfile::tempdir().expect("dir");
    let (forged, _, forged_key) = write_trails(forged_dir.path(), "d2");
    assert_ne!(key, forged_key);
    assert!(
        verify(&forged, None).is_ok(),
        "a consistent forgery verifies on its own"
    );
    assert!(matches!(
        verify(&forged, Some(&key)),
        Err(VerifyError::KeyMismatch { .. })
    ));
    assert!(verify(&coordinator, Some(&key)).is_ok());
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn every_single_byte_change_is_detected(position in any::<usize>(), replacement in any::<u8>()) {
        let dir = tempfile::tempdir().expect("dir");
        let (coordinator, _, key) = write_trails(dir.path(), "d2");
        let mut bytes = std::fs::read(&coordinator).expect("read");
        let i = position % bytes.len();
        prop_assume!(bytes[i] != replacement);
        bytes[i] = replacement;
        std::fs::write(&coordinator, &bytes).expect("write");
        prop_assert!(verify(&coordinator, Some(&key)).is_err(), "byte {} changed, not detected", i);
    }
}

#[test]
fn cross_check_finds_what_the_two_sides_record_differently() {
    let dir = tempfile::tempdir().expect("dir");
    let (coordinator, participant, _) = write_trails(dir.path(), "d2");
    let c = verify(&coordinator, None).expect("c");
    let p = verify(&participant, None).expect("p");
    assert!(cross_check(&c, &[p]).is_empty());

    let other = tempfile::tempdir().expect("dir");
    let (coordinator, participant, _) = write_trails(other.path(), "something-else");
    let c = verify(&coordinator, None).expect("c");
    let p = verify(&participant, None).expect("p");
    let findings = cross_check(&c, &[p]);
    assert_eq!(findings.len(), 1, "{findings:?}");
    assert!(
        matches!(&findings[0], CrossCheckFinding::DigestDiffers { node, .. } if node == "bank-a")
    );
    assert!(findings[0].to_string().contains("round 2"));
}

/// One writer's verified trail of `events`.
fn trail_of(dir: &Path, writer: &str, role: &str, events: &[(EventKind, Value)]) -> TrailReport {
    let path = dir.join(format!("{writer}.trail"));
    let (key, _) = SigningIdentity::generate().expect("key");
    let mut t = TrailWriter::create(&path, &NodeId::new(writer).expect("id"), role, key, at(0))
        .expect("create");
    for (i, (kind, f)) in events.iter().enumerate() {
        t.append(*kind, fields(f.clone()), at(1 + i as u64))
            .expect("append");
    }
    verify(&path, None).expect("verifies")
}

#[test]
fn cross_check_finds_a_contribution_revealed_against_a_roster_the_coordinator_did_not_record() {
    let dir = tempfile::tempdir().expect("dir");
    let coordinator = trail_of(
        dir.path(),
        "coordinator",
        "coordinator",
        &[
            (
                EventKind::RosterFixed,
                json!({"job": "j", "round": 1, "attempt": 0, "quantity": "moments", "roster": "r1", "participants": ["bank-a"]}),
            ),
            (
                EventKind::ContributionReceived,
                json!({"job": "j", "round": 1, "quantity": "moments", "node": "bank-a", "digest": "d1"}),
            ),
        ],
    );
    let sent = |roster: &str| {
        [(
            EventKind::ContributionSent,
            json!({"job": "j", "round": 1, "attempt": 0, "quantity": "moments", "digest": "d1", "roster": roster, "clipped_values": 0}),
        )]
    };
    let agreeing = trail_of(dir.path(), "bank-a", "participant", &sent("r1"));
    assert!(cross_check(&coordinator, &[agreeing]).is_empty());
    let other = tempfile::tempdir().expect("dir");
    let shown_another = trail_of(other.path(), "bank-a", "participant", &sent("r2"));
    let findings = cross_check(&coordinator, &[shown_another]);
    assert_eq!(findings.len(), 1, "{findings:?}");
    assert!(
        matches!(&findings[0], CrossCheckFinding::DigestDiffers { node, what, .. }
            if node == "bank-a" && what.contains("roster of job j round 1")),
        "{findings:?}"
    );
}

#[test]
fn reopening_continues_the_chain_and_refuses_a_broken_trail() {
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("member.trail");
    let (id, der) = SigningIdentity::generate().expect("key");
    let mut w = TrailWriter::create(
        &path,
        &NodeId::new("member-1").expect("id"),
        "committee",
        id,
        at(0),
    )
    .expect("create");
    w.append(
        EventKind::DecryptionReleased,
        fields(json!({"job": "j", "round": 1})),
        at(1),
    )
    .expect("append");
    drop(w);
    assert!(matches!(
        TrailWriter::create(
            &path,
            &NodeId::new("member-1").expect("id"),
            "committee",
            SigningIdentity::from_pkcs8(&der).expect("key"),
            at(2)
        ),
        Err(fedbank_common::audit::TrailError::Exists(_))
    ));
    let member = NodeId::new("member-1").expect("id");
    // Another node cannot continue it, even with the right key: one identity per trail.
    assert!(matches!(
        TrailWriter::open(
            &path,
            &NodeId::new("member-2").expect("id"),
            SigningIdentity::from_pkcs8(&der).expect("key")
        ),
        Err(fedbank_common::audit::TrailError::WrongWriter { .. })
    ));
    let mut w = TrailWriter::open(
        &path,
        &member,
        SigningIdentity::from_pkcs8(&der).expect("key"),
    )
    .expect("open");
    let e = w
        .append(
            EventKind::DecryptionReleased,
            fields(json!({"job": "j", "round": 2})),
            at(3),
        )
        .expect("append");
    assert_eq!(e.seq, 2);
    assert_eq!(verify(&path, None).expect("verifies").events.len(), 3);
    // A trail opened with the wrong key is refused and left untouched.
    let before = std::fs::read(&path).expect("read");
    let (other, _) = SigningIdentity::generate().expect("key");
    assert!(TrailWriter::open(&path, &member, other).is_err());
    assert_eq!(std::fs::read(&path).expect("read"), before);
}

#[test]
fn audit_verify_command_reports_and_exits_by_outcome() {
    use std::process::Command;
    let dir = tempfile::tempdir().expect("dir");
    let (coordinator, participant, key) = write_trails(dir.path(), "d2");
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_fedbank"))
            .args(args)
            .output()
            .expect("run fedbank")
    };
    let c = coordinator.to_str().expect("path");
    let p = participant.to_str().expect("path");
    let ok = run(&[
        "audit",
        "verify",
        c,
        "--cross-check",
        p,
        "--expect-key",
        &key,
    ]);
    assert_eq!(
        ok.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&ok.stdout)
    );
    assert!(String::from_utf8_lossy(&ok.stdout).contains("agree"));

    let mut lines = lines(&coordinator);
    lines.remove(2);
    write_lines(&coordinator, &lines);
    let bad = run(&["audit", "verify", c]);
    assert_eq!(bad.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&bad.stdout).contains("missing (removed)"));

    let other = tempfile::tempdir().expect("dir");
    let (coordinator, participant, _) = write_trails(other.path(), "not-d2");
    let differs = run(&[
        "audit",
        "verify",
        coordinator.to_str().expect("path"),
        "--cross-check",
        participant.to_str().expect("path"),
    ]);
    assert_eq!(differs.status.code(), Some(4));
    assert!(String::from_utf8_lossy(&differs.stdout).contains("DIFFERS"));
}

#[test]
fn every_byte_position_flipped_is_detected() {
    // Exhaustive over positions: flipping the ASCII case bit (a → A in hex, signatures included)
    // and the lowest bit of every byte of a trail must each fail verification.
    let dir = tempfile::tempdir().expect("dir");
    let (coordinator, _, key) = write_trails(dir.path(), "d2");
    let original = std::fs::read(&coordinator).expect("read");
    let tampered = dir.path().join("flipped.trail");
    for i in 0..original.len() {
        for mask in [0x20u8, 0x01] {
            let mut bytes = original.clone();
            bytes[i] ^= mask;
            std::fs::write(&tampered, &bytes).expect("write");
            assert!(
                verify(&tampered, Some(&key)).is_err(),
                "byte {i} ({:?}) ^ {mask:#04x} not detected",
                original[i] as char
            );
        }
    }
}

proptest! {
    /// Any finite number an event records (noise scales, ε spent) survives the trail's canonical
    /// form: verification re-reads it bit for bit. (serde_json needs `float_roundtrip` for this;
    /// without it a σ such as 5849.785228129198 re-reads as a neighbouring double.)
    #[test]
    fn events_with_any_finite_numbers_verify(values in proptest::collection::vec(any::<f64>().prop_filter("finite", |v| v.is_finite()), 1..20)) {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("c.trail");
        let (id, _) = SigningIdentity::generate().expect("key");
        let key = id.public_key_hex();
        let mut c = TrailWriter::create(&path, &NodeId::new("coordinator").expect("id"), "coordinator", id, at(0))
            .expect("create");
        c.append(EventKind::PrivacySpent, fields(json!({"sigma": values, "rho": values[0]})), at(1))
            .expect("append");
        drop(c);
        prop_assert!(verify(&path, Some(&key)).is_ok(), "{:?}", verify(&path, Some(&key)).err());
    }
}

#[test]
fn cross_check_holds_a_decrypted_count_of_clipped_values_to_the_contributors_trails() {
    let coordinator = |clipped: u64| {
        let d = tempfile::tempdir().expect("dir");
        let c = trail_of(
            d.path(),
            "coordinator",
            "coordinator",
            &[
                (
                    EventKind::DecryptionRequested,
                    json!({"job": "j", "round": 1, "quantity": "moments", "manifest": "m1", "contributors": ["bank-a", "bank-b"], "min_participants": 2}),
                ),
                (
                    EventKind::AggregateDecrypted,
                    json!({"job": "j", "round": 1, "quantity": "moments", "manifest": "m1", "contributors": 2, "clipped_values": clipped}),
                ),
            ],
        );
        (d, c)
    };
    let sent = |writer: &str, attempt: u32, clipped: u64| {
        let d = tempfile::tempdir().expect("dir");
        let events: Vec<(EventKind, Value)> = (0..=attempt)
            .map(|a| {
                (
                    EventKind::ContributionSent,
                    // An earlier attempt's count is not the decrypted one.
                    json!({"job": "j", "round": 1, "attempt": a, "quantity": "moments", "digest": "d", "roster": "r", "clipped_values": if a == attempt { clipped } else { 1000 }}),
                )
            })
            .collect();
        trail_of(d.path(), writer, "participant", &events)
    };
    let counts = |c: &TrailReport, nodes: &[TrailReport]| -> Vec<CrossCheckFinding> {
        cross_check(c, nodes)
            .into_iter()
            .filter(|f| matches!(f, CrossCheckFinding::CountDiffers { .. }))
            .collect()
    };
    let nodes = [sent("bank-a", 1, 3), sent("bank-b", 0, 4)];
    let (_d, honest) = coordinator(7);
    assert!(counts(&honest, &nodes).is_empty());
    let (_d, lying) = coordinator(8);
    let findings = counts(&lying, &nodes);
    assert_eq!(findings.len(), 1, "{findings:?}");
    let text = findings[0].to_string();
    assert!(
        text.contains("values clipped in job j round 1")
            && text.contains("decrypting 8")
            && text.contains("sum to 7")
            && text.contains("bank-a, bank-b"),
        "{text}"
    );
    // With a contributor's trail missing the sum cannot be formed, and nothing is claimed.
    assert!(counts(&lying, &nodes[..1]).is_empty());
}

#[test]
fn cross_check_finds_a_restart_of_the_coordinator_in_both_trails_or_names_the_gap() {
    let dir = tempfile::tempdir().expect("dir");
    let coordinator = trail_of(
        dir.path(),
        "coordinator",
        "coordinator",
        &[
            (
                EventKind::Joined,
                json!({"job": "j", "node": "bank-a", "committee": false}),
            ),
            (
                EventKind::JobResumed,
                json!({"job": "j", "config_digest": "c", "completed_rounds": [1], "next_round": 2, "key_epoch": 1, "trail_events_at_checkpoint": 2, "restart": 1}),
            ),
            (
                EventKind::Joined,
                json!({"job": "j", "node": "bank-a", "committee": false}),
            ),
        ],
    );
    let node = |restarts: &[u32]| {
        let d = tempfile::tempdir().expect("dir");
        let events: Vec<(EventKind, Value)> = restarts
            .iter()
            .map(|n| {
                (
                    EventKind::CoordinatorRestarted,
                    json!({"job": "j", "restart": n}),
                )
            })
            .collect();
        (trail_of(d.path(), "bank-a", "participant", &events), d)
    };
    let (saw_it, _d1) = node(&[1]);
    assert!(cross_check(&coordinator, &[saw_it]).is_empty());
    let (did_not, _d2) = node(&[]);
    let findings = cross_check(&coordinator, &[did_not]);
    assert!(
        matches!(&findings[..], [CrossCheckFinding::MissingAtNode { node, what }]
            if node == "bank-a" && what.contains("restart 1 of the coordinator of job j")),
        "{findings:?}"
    );
    // A restart the coordinator's trail does not have (a coordinator hiding one).
    let (saw_another, _d3) = node(&[1, 2]);
    let findings = cross_check(&coordinator, &[saw_another]);
    assert!(
        matches!(&findings[..], [CrossCheckFinding::MissingAtCoordinator { node, what }]
            if node == "bank-a" && what.contains("restart 2")),
        "{findings:?}"
    );
}

/// A member's trail with `events` released decryptions, and the key that signs it.
fn member_trail(path: &Path, events: u32) -> (NodeId, Vec<u8>) {
    let (key, der) = SigningIdentity::generate().expect("key");
    let member = NodeId::new("member-1").expect("id");
    let mut w = TrailWriter::create(path, &member, "committee", key, at(0)).expect("create");
    for round in 1..=events {
        w.append(
            EventKind::DecryptionReleased,
            fields(json!({"job": "j", "round": round})),
            at(u64::from(round)),
        )
        .expect("append");
    }
    (member, der)
}

#[test]
fn a_partial_last_line_is_kept_beside_the_trail_recorded_and_the_trail_goes_on() {
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("member.trail");
    let (member, der) = member_trail(&path, 2);
    let complete = std::fs::read(&path).expect("read");
    // The machine stopped in the middle of writing the next event.
    let partial = br#"{"seq":3,"time":"2026-12-02T06:00:00Z","writer":"memb"#;
    let mut cut = complete.clone();
    cut.extend_from_slice(partial);
    std::fs::write(&path, &cut).expect("write");
    assert!(matches!(
        verify(&path, None),
        Err(VerifyError::Truncated { line: 4 })
    ));

    let key = || SigningIdentity::from_pkcs8(&der).expect("key");
    let mut w = TrailWriter::open(&path, &member, key()).expect("repaired and opened");
    w.append(
        EventKind::DecryptionReleased,
        fields(json!({"job": "j", "round": 3})),
        at(9),
    )
    .expect("goes on");
    drop(w);
    let report = verify(&path, None).expect("verifies after the repair");
    let kinds: Vec<&str> = report.events.iter().map(|e| e.event.as_str()).collect();
    assert_eq!(
        kinds,
        [
            "trail.opened",
            "decryption.released",
            "decryption.released",
            "trail.repaired",
            "decryption.released"
        ]
    );
    // The complete events are untouched, and the partial bytes are kept with their digest.
    assert!(std::fs::read(&path).expect("read").starts_with(&complete));
    let repaired = &report.events[3].fields;
    let side = dir
        .path()
        .join(repaired["partial_file"].as_str().expect("file"));
    assert_eq!(std::fs::read(&side).expect("side file"), partial);
    assert_eq!(repaired["bytes"], partial.len());
    assert_eq!(
        repaired["sha256"],
        fedbank_common::audit::sha256_hex(partial).as_str()
    );
    // Opened again, there is nothing to repair.
    drop(TrailWriter::open(&path, &member, key()).expect("open"));
    assert_eq!(verify(&path, None).expect("verifies").events.len(), 5);
}

#[test]
fn a_partial_line_after_a_broken_trail_is_not_repaired_and_nothing_is_changed() {
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("member.trail");
    let (member, der) = member_trail(&path, 2);
    let mut bytes = std::fs::read(&path).expect("read");
    // An edited event, then a partial line: the trail is refused as it is.
    let at_round = bytes
        .windows(9)
        .position(|w| w == b"\"round\":1")
        .expect("round 1");
    bytes[at_round + 8] = b'7';
    bytes.extend_from_slice(b"{\"seq\":3");
    std::fs::write(&path, &bytes).expect("write");
    let err = TrailWriter::open(
        &path,
        &member,
        SigningIdentity::from_pkcs8(&der).expect("key"),
    )
    .err()
    .expect("refused");
    assert!(
        matches!(err, fedbank_common::audit::TrailError::Invalid { .. }),
        "{err}"
    );
    assert_eq!(std::fs::read(&path).expect("read"), bytes);
    assert_eq!(std::fs::read_dir(dir.path()).expect("dir").count(), 1);
}

#[test]
fn a_trail_removed_replaced_or_written_by_another_under_a_running_node_stops_its_next_append() {
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("member.trail");
    let (member, der) = member_trail(&path, 1);
    let open = || {
        TrailWriter::open(
            &path,
            &member,
            SigningIdentity::from_pkcs8(&der).expect("key"),
        )
        .expect("open")
    };
    let append = |w: &mut TrailWriter| {
        w.append(
            EventKind::DecryptionReleased,
            fields(json!({"job": "j", "round": 2})),
            at(5),
        )
        .expect_err("refused")
        .to_string()
    };
    let original = std::fs::read(&path).expect("read");

    // Removed.
    let mut w = open();
    std::fs::remove_file(&path).expect("remove");
    assert!(append(&mut w).contains("was removed"));
    assert!(!path.exists(), "nothing written in its place");

    // Replaced by another file with the same bytes.
    std::fs::write(&path, &original).expect("restore");
    let mut w = open();
    let other = dir.path().join("other");
    std::fs::write(&other, &original).expect("copy");
    std::fs::rename(&other, &path).expect("replace");
    assert!(append(&mut w).contains("was replaced"));
    assert_eq!(std::fs::read(&path).expect("read"), original);

    // Written by someone else.
    let mut w = open();
    let mut extra = std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .expect("open");
    std::io::Write::write_all(&mut extra, b"{}\n").expect("write");
    let err = append(&mut w);
    assert!(
        err.contains(&format!("holds {} bytes", original.len() + 3)),
        "{err}"
    );
}

/// Unmounts its tmpfs when dropped, also when the test fails.
struct SmallDisk(PathBuf);

impl SmallDisk {
    /// A tmpfs of `bytes` mounted at `dir` (the tests run as root on CI).
    fn mount(dir: &Path, bytes: usize) -> Self {
        let out = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={bytes}"), "tmpfs"])
            .arg(dir)
            .output()
            .expect("mount");
        assert!(
            out.status.success(),
            "mounting a small tmpfs needs root: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Self(dir.to_owned())
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn an_append_on_a_full_disk_is_all_or_nothing() {
    let dir = tempfile::tempdir().expect("dir");
    let disk = SmallDisk::mount(dir.path(), 16 << 10);
    let path = disk.0.join("coordinator.trail");
    let (key, _) = SigningIdentity::generate().expect("key");
    let mut w = TrailWriter::create(
        &path,
        &NodeId::new("coordinator").expect("id"),
        "coordinator",
        key,
        at(0),
    )
    .expect("create");
    // Events of ~1.5 KB until the disk is full.
    let padding = "x".repeat(1500);
    let mut written = 1;
    let err = loop {
        match w.append(
            EventKind::JobFailed,
            fields(json!({"job": "j", "reason": padding})),
            at(written),
        ) {
            Ok(_) => written += 1,
            Err(e) => break e,
        }
        assert!(written < 100, "a 16 KiB disk never filled");
    };
    assert!(
        matches!(err, fedbank_common::audit::TrailError::Io { .. }),
        "{err}"
    );
    assert!(
        err.to_string().contains("the event was not recorded"),
        "{err}"
    );
    // No partial line: the trail verifies with every event that was acknowledged.
    let report = verify(&path, None).expect("verifies");
    assert_eq!(report.events.len() as u64, written);
    drop(w);
    drop(disk);
}
