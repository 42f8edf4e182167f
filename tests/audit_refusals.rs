//! `fedbank audit report` names the coordinator when honest nodes' own signed trails record
//! refusals of its messages (docs/threat-model.md §11), and says so in its exit status.

use anyhow::Result;
use fedbank_common::audit::events::{self as trail, TrailEntry};
use fedbank_common::audit::{SigningIdentity, TrailWriter};
use fedbank_common::ids::{JobId, NodeId};
use std::path::Path;
use std::process::Command;
use std::time::SystemTime;

fn trail(dir: &Path, node: &str, role: &str, events: &[TrailEntry]) -> Result<()> {
    let (identity, _) = SigningIdentity::generate()?;
    let mut writer = TrailWriter::create(
        &dir.join(format!("{node}.trail")),
        &NodeId::new(node)?,
        role,
        identity,
        SystemTime::now(),
    )?;
    for e in events {
        writer.append(e.kind, e.fields.clone(), SystemTime::now())?;
    }
    Ok(())
}

fn report(run: &Path) -> Result<(Option<i32>, String, String)> {
    let out = Command::new(env!("CARGO_BIN_EXE_fedbank"))
        .args(["audit", "report"])
        .arg(run)
        .output()?;
    let md = std::fs::read_to_string(run.join("audit-report.md")).unwrap_or_default();
    Ok((
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        md,
    ))
}

#[test]
fn a_report_names_the_coordinator_whose_messages_honest_nodes_refused() -> Result<()> {
    let run = tempfile::tempdir()?;
    let trails = run.path().join("trails");
    std::fs::create_dir_all(&trails)?;
    let job = TrailEntry::of(&trail::JobStarted {
        job: JobId::new("hostile")?,
        kind: "stats".into(),
        config_digest: "00".into(),
        profile: "strict".into(),
        participants: vec![NodeId::new("bank")?],
        committee: vec![NodeId::new("bank")?],
        min_participants: 1,
        k_anonymity: None,
        auditor: None,
        software: None,
    });
    trail(&trails, "hub", "coordinator", std::slice::from_ref(&job))?;
    trail(&trails, "bank", "participant", &[])?;
    // Without refusals the coordinator is not called deviated (the run is incomplete: these
    // trails have no certificates and no end).
    let (code, stdout, _) = report(run.path())?;
    assert_eq!(code, Some(6), "{stdout}");
    assert!(!stdout.contains("COORDINATOR DEVIATED"), "{stdout}");

    std::fs::remove_file(trails.join("bank.trail"))?;
    trail(
        &trails,
        "bank",
        "participant",
        &[TrailEntry::of(&trail::MessageRefused {
            job: JobId::new("hostile")?,
            message: "KeyBundle".into(),
            reason: "key ceremony refused: the share reveal signed by insurer does not match"
                .into(),
        })],
    )?;
    let (code, stdout, md) = report(run.path())?;
    assert_eq!(code, Some(5), "{stdout}");
    assert!(stdout.contains("COORDINATOR DEVIATED"), "{stdout}");
    assert!(
        stdout.contains("`hub`"),
        "the coordinator is named: {stdout}"
    );
    assert!(
        md.contains("| bank | KeyBundle | key ceremony refused"),
        "{md}"
    );
    Ok(())
}

/// The joint key a participant accepted must be the one the coordinator recorded forming: a
/// coordinator that handed a participant another key is caught by the cross-check.
#[test]
fn the_cross_check_compares_the_joint_key_each_participant_accepted() -> Result<()> {
    // The same key: no difference (the run is only incomplete: no certificates, no job);
    // another key: the trails disagree.
    for (accepted, expected_exit) in [("aa11", 6), ("bb22", 4)] {
        let run = tempfile::tempdir()?;
        let trails = run.path().join("trails");
        std::fs::create_dir_all(&trails)?;
        trail(
            &trails,
            "hub",
            "coordinator",
            &[TrailEntry::of(&trail::KeySetup::JointKeyFormed {
                job: JobId::new("j")?,
                key_epoch: 1,
                members: vec![NodeId::new("bank")?],
                joint_key_digest: "aa11".into(),
            })],
        )?;
        trail(
            &trails,
            "bank",
            "participant",
            &[TrailEntry::of(&trail::KeyAccepted {
                job: JobId::new("j")?,
                key_epoch: 1,
                setup_digest: "01".into(),
                commitments_digest: "02".into(),
                shares: vec![],
                joint_key_digest: accepted.into(),
            })],
        )?;
        let (code, stdout, _) = report(run.path())?;
        assert_eq!(code, Some(expected_exit), "{stdout}");
        assert_eq!(
            stdout.contains("joint public key"),
            expected_exit == 4,
            "{stdout}"
        );
    }
    Ok(())
}

/// A signed event whose fields are not those of its kind (here a contribution without the
/// roster it was revealed against) would drop out of the typed cross-check; the report fails
/// the trail instead and names the event.
#[test]
fn a_signed_event_without_its_kinds_fields_fails_the_report() -> Result<()> {
    let run = tempfile::tempdir()?;
    let trails = run.path().join("trails");
    std::fs::create_dir_all(&trails)?;
    trail(&trails, "hub", "coordinator", &[])?;
    let mut sent = TrailEntry::of(&trail::ContributionSent {
        job: JobId::new("j")?,
        round: 1,
        attempt: 0,
        quantity: "moments".into(),
        digest: "d1".into(),
        roster: "r1".into(),
        clipped_values: 0,
    });
    sent.fields.remove("roster");
    trail(&trails, "bank", "participant", &[sent])?;
    let (code, stdout, _) = report(run.path())?;
    assert_eq!(code, Some(3), "{stdout}");
    assert!(stdout.contains("FAILED VERIFICATION"), "{stdout}");
    assert!(
        stdout.contains("event 1 (contribution.sent) of bank"),
        "the event is named: {stdout}"
    );
    Ok(())
}
