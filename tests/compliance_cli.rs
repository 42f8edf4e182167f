//! The compliance job end to end: `fedbank simulate` runs eight institutions, their committee,
//! the coordinator and the auditor over QUIC on loopback; the totals must equal the generator's
//! seeded ground truth exactly, the alert counts the number of institutions truly over each
//! limit; `fedbank audit report` verifies the run, and reports edited trails as failed, naming
//! the event.

use fedbank_common::compliance_rules::rate_basis_points;
use fedbank_participant::synthetic::contacts::read_truth;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

const JOB: &str = "configs/compliance-synthetic.toml";

fn fedbank(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_fedbank"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("run fedbank")
}

/// One simulated run per test binary (about ten seconds).
fn run_dir() -> &'static Path {
    static RUN: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
    let (_, out) = RUN.get_or_init(|| {
        let dir = tempfile::tempdir().expect("dir");
        let out = dir.path().join("run");
        let run = fedbank(&[
            "simulate",
            "--job",
            JOB,
            "--out",
            out.to_str().expect("path"),
        ]);
        assert!(
            run.status.success(),
            "{}\n{}",
            String::from_utf8_lossy(&run.stdout),
            String::from_utf8_lossy(&run.stderr)
        );
        (dir, out)
    });
    out
}

fn json(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).expect("read")).expect("json")
}

#[test]
fn consortium_totals_and_alert_counts_equal_the_seeded_ground_truth() {
    let out = run_dir();
    let result = json(&out.join("result.json"));
    let rules = result["rules"].as_array().expect("rules");
    assert_eq!(rules.len(), 5);
    let participants: Vec<String> = result["participants"]
        .as_array()
        .expect("participants")
        .iter()
        .map(|p| p.as_str().expect("id").to_owned())
        .collect();
    assert_eq!(participants.len(), 8);
    let truths: Vec<_> = participants
        .iter()
        .map(|p| {
            read_truth(&out.join("data").join(p).join("compliance-truth.json")).expect("truth")
        })
        .collect();
    let mut some_over = false;
    let mut some_under = false;
    for rule in rules {
        let name = rule["rule"].as_str().expect("name");
        let sum = |f: &dyn Fn(&fedbank_participant::synthetic::contacts::RuleTruth) -> u64| {
            truths.iter().map(|t| f(&t[name])).sum::<u64>()
        };
        assert_eq!(
            rule["violations"].as_u64(),
            Some(sum(&|t| t.violations)),
            "{name}"
        );
        assert_eq!(
            rule["customers_affected"].as_u64(),
            Some(sum(&|t| t.customers_affected)),
            "{name}"
        );
        assert_eq!(
            rule["contacts_examined"].as_u64(),
            Some(sum(&|t| t.contacts_examined)),
            "{name}"
        );
        // The institutions truly over the limit, from the ground truth at the same resolution.
        let limit = (rule["max_violation_rate"].as_f64().expect("limit") * 10_000.0).round() as u16;
        let over = truths
            .iter()
            .filter(|t| rate_basis_points(t[name].violations, t[name].contacts_examined) > limit)
            .count() as u64;
        assert_eq!(
            rule["institutions_over_limit"].as_u64(),
            Some(over),
            "{name}"
        );
        some_over |= over > 0;
        some_under |= over < 8;
    }
    assert!(
        some_over && some_under,
        "the seed puts institutions on both sides of the limits"
    );
    assert_eq!(result["alerts"]["comparisons"].as_u64(), Some(40));

    // Each institution keeps its own counts locally, and they are its ground truth.
    for (p, truth) in participants.iter().zip(&truths) {
        let report = json(&out.join("data").join(p).join("compliance-report.json"));
        for rule in report["rules"].as_array().expect("rules") {
            let name = rule["rule"].as_str().expect("name");
            assert_eq!(
                rule["counts"]["violations"].as_u64(),
                Some(truth[name].violations)
            );
        }
    }
}

#[test]
fn no_trail_and_no_result_holds_an_institution_s_counts_or_rate() {
    let out = run_dir();
    // The coordinator's trail, result and the auditor's trail name contributors and digests;
    // none carries a per-institution count or rate.
    let forbidden = ["rate_basis_points", "example_customers", "\"violations\""];
    for file in ["trails/coordinator.trail", "trails/auditor.trail"] {
        let text = std::fs::read_to_string(out.join(file)).expect("trail");
        for word in forbidden {
            assert!(!text.contains(word), "{file} contains {word}");
        }
    }
    let auditor = std::fs::read_to_string(out.join("trails/auditor.trail")).expect("trail");
    let decrypted: Vec<&str> = auditor
        .lines()
        .filter(|l| l.contains("\"alert.decrypted\""))
        .collect();
    assert_eq!(decrypted.len(), 1, "the auditor decrypted one tally");
    let event: serde_json::Value = serde_json::from_str(decrypted[0]).expect("event");
    assert_eq!(
        event["fields"]["contributors"].as_array().map(Vec::len),
        Some(8)
    );
}

fn report(run: &Path) -> (Option<i32>, String, String) {
    let out = fedbank(&["audit", "report", run.to_str().expect("path")]);
    let report = std::fs::read_to_string(run.join("audit-report.md")).unwrap_or_default();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        report,
    )
}

#[test]
fn the_audit_report_verifies_the_run_and_says_what_no_party_saw() {
    let dir = tempfile::tempdir().expect("dir");
    let run = dir.path().join("run");
    copy_dir(run_dir(), &run);
    let (code, stdout, md) = report(&run);
    assert_eq!(code, Some(0), "{stdout}");
    assert!(stdout.starts_with("VERIFIED"), "{stdout}");
    for section in [
        "## Who took part in each round",
        "## Every decryption",
        "## For signature",
        "| period the data covers | contacts from 2026-",
        "| time basis of time-based rules | timestamps as written",
        "| software that ran the job | fedbank ",
        "## Nodes, certificates and trails",
        "| auditor | auditor | `",
        "## Files bound to the trails",
        "| `result.json` | result | coordinator seq ",
        "## Guarantees",
        "| Minimum contributors per aggregate | held | 8 ≥ 3",
        "## What happened to the data",
        "## Sign-off",
        "## What no party saw",
        "No institution's violation rate was decrypted",
        "| weekly-contact-cap |",
        "configuration digest",
    ] {
        assert!(md.contains(section), "the report lacks {section}");
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read dir") {
        let entry = entry.expect("entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("type").is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copy");
        }
    }
}

/// Copies the run, edits the coordinator's trail lines with `edit`, and reports it.
fn tampered(edit: impl Fn(&mut Vec<String>)) -> (Option<i32>, String, String) {
    let dir = tempfile::tempdir().expect("dir");
    let run = dir.path().join("run");
    copy_dir(run_dir(), &run);
    let trail = run.join("trails/coordinator.trail");
    let mut lines: Vec<String> = std::fs::read_to_string(&trail)
        .expect("trail")
        .lines()
        .map(str::to_owned)
        .collect();
    edit(&mut lines);
    std::fs::write(&trail, lines.join("\n") + "\n").expect("write");
    let (code, stdout, md) = report(&run);
    drop(dir);
    (code, stdout, md)
}

fn line_of(lines: &[String], event: &str) -> usize {
    lines
        .iter()
        .position(|l| l.contains(&format!("\"event\":\"{event}\"")))
        .unwrap_or_else(|| panic!("no {event} in the trail"))
}

#[test]
fn an_edited_trail_fails_verification_naming_the_event() {
    // An event removed: the first contribution the coordinator received.
    let (code, stdout, md) = tampered(|lines| {
        let i = line_of(lines, "contribution.received");
        lines.remove(i);
    });
    assert_eq!(code, Some(3), "{stdout}");
    assert!(md.contains("FAILED VERIFICATION"), "{md}");
    assert!(stdout.contains("is missing (removed)"), "{stdout}");

    // A contribution's digest changed.
    let (code, stdout, md) = tampered(|lines| {
        let i = line_of(lines, "contribution.received");
        let event: serde_json::Value = serde_json::from_str(&lines[i]).expect("event");
        let digest = event["fields"]["digest"]
            .as_str()
            .expect("digest")
            .to_owned();
        lines[i] = lines[i].replace(&digest, &"0".repeat(digest.len()));
    });
    assert_eq!(code, Some(3), "{stdout}");
    assert!(
        stdout.contains("contribution.received): the event was changed"),
        "{stdout}"
    );
    assert!(md.contains("contribution.received"), "{md}");

    // A round reordered: the alert round's start moved before the counts round's.
    let (code, stdout, _) = tampered(|lines| {
        let first = line_of(lines, "round.started");
        let last = lines
            .iter()
            .rposition(|l| l.contains("\"event\":\"round.started\""))
            .expect("second round");
        let moved = lines.remove(last);
        lines.insert(first, moved);
    });
    assert_eq!(code, Some(3), "{stdout}");
    assert!(
        stdout.contains("(round.started) appears before seq") && stdout.contains("reordered"),
        "{stdout}"
    );
}
