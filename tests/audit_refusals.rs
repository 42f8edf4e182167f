//! `fedbank audit report` names the coordinator when honest nodes' own signed trails record
//! refusals of its messages (docs/threat-model.md §11), and says so in its exit status.

use anyhow::Result;
use fedbank_common::audit::{EventKind, SigningIdentity, TrailWriter};
use fedbank_common::ids::NodeId;
use serde_json::{json, Map, Value};
use std::path::Path;
use std::process::Command;
use std::time::SystemTime;

fn fields(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

fn trail(dir: &Path, node: &str, role: &str, events: &[(EventKind, Value)]) -> Result<()> {
    let (identity, _) = SigningIdentity::generate()?;
    let mut writer = TrailWriter::create(
        &dir.join(format!("{node}.trail")),
        &NodeId::new(node)?,
        role,
        identity,
        SystemTime::now(),
    )?;
    for (kind, f) in events {
        writer.append(*kind, fields(f.clone()), SystemTime::now())?;
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
    let job = json!({"job": "hostile", "config_digest": "00"});
    trail(
        &trails,
        "hub",
        "coordinator",
        &[(EventKind::JobStarted, job.clone())],
    )?;
    trail(
        &trails,
        "bank",
        "participant",
        &[(EventKind::JobStarted, job.clone())],
    )?;
    // Without refusals the run verifies.
    let (code, stdout, _) = report(run.path())?;
    assert_eq!(code, Some(0), "{stdout}");

    std::fs::remove_file(trails.join("bank.trail"))?;
    trail(
        &trails,
        "bank",
        "participant",
        &[
            (EventKind::JobStarted, job),
            (
                EventKind::MessageRefused,
                json!({"job": "hostile", "message": "KeyBundle",
                    "reason": "key ceremony refused: the share reveal signed by insurer does not match"}),
            ),
        ],
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
    for (accepted, expected_exit) in [("aa11", 0), ("bb22", 4)] {
        let run = tempfile::tempdir()?;
        let trails = run.path().join("trails");
        std::fs::create_dir_all(&trails)?;
        trail(
            &trails,
            "hub",
            "coordinator",
            &[(
                EventKind::KeySetup,
                json!({"job": "j", "key_epoch": 1, "stage": "joint key formed", "joint_key_digest": "aa11"}),
            )],
        )?;
        trail(
            &trails,
            "bank",
            "participant",
            &[(
                EventKind::KeyAccepted,
                json!({"job": "j", "key_epoch": 1, "joint_key_digest": accepted}),
            )],
        )?;
        let (code, stdout, _) = report(run.path())?;
        assert_eq!(code, Some(expected_exit), "{stdout}");
        if expected_exit == 4 {
            assert!(stdout.contains("joint public key"), "{stdout}");
        }
    }
    Ok(())
}
