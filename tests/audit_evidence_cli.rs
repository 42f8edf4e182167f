//! `fedbank audit report` against a catalogue of tampering, through the real CLI: each edit of
//! a real run's evidence — its trails, certificates and the files bound to the trails — is
//! detected, the node or file is named, and the exit status is the documented one (3 changed,
//! 4 the trails disagree, 6 missing, cut or unreadable, 7 a guarantee did not hold); a property
//! test makes random edits of a whole run and never gets VERIFIED. And a node configured with
//! another node's certificate stops before it connects, saying which is which.
//!
//! The run is a `fedbank simulate` of the synthetic segment job, made once per test binary: it
//! has a coordinator, four participants (three on the committee), the kind's report files and
//! each institution's segment assignment.

use fedbank_common::audit::{AuditEvent, EventKind, SigningIdentity, TrailWriter};
use fedbank_common::ids::NodeId;
use fedbank_consortium::reports::audit::{audit_report, AuditVerdict};
use fedbank_transport::pki::{read_certificate, CredentialPaths, NodeCredentials};
use proptest::prelude::*;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::SystemTime;

fn fedbank() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_fedbank"));
    c.current_dir(env!("CARGO_MANIFEST_DIR"));
    c
}

/// The simulated run, made once.
fn base_run() -> &'static Path {
    static RUN: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
    &RUN.get_or_init(|| {
        let dir = tempfile::tempdir().expect("dir");
        let run = dir.path().join("run");
        let out = fedbank()
            .args([
                "simulate",
                "--job",
                "configs/segment-synthetic.toml",
                "--out",
            ])
            .arg(&run)
            .output()
            .expect("simulate");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        (dir, run)
    })
    .1
}

/// Copies the evidence of the run (all but the institutions' input data) to a fresh directory.
fn copy_run() -> (tempfile::TempDir, PathBuf) {
    fn copy(from: &Path, to: &Path) {
        std::fs::create_dir_all(to).expect("mkdir");
        for entry in std::fs::read_dir(from).expect("read dir") {
            let entry = entry.expect("entry");
            let (path, target) = (entry.path(), to.join(entry.file_name()));
            let name = entry.file_name().to_string_lossy().into_owned();
            if entry.file_type().expect("type").is_dir() {
                if name != "committee" {
                    copy(&path, &target);
                }
            } else if !name.ends_with(".csv") || name == "segments.csv" {
                std::fs::copy(&path, &target).expect("copy");
            }
        }
    }
    let dir = tempfile::tempdir().expect("dir");
    let run = dir.path().join("run");
    copy(base_run(), &run);
    (dir, run)
}

/// `fedbank audit report --json`: the exit status and the report.
fn report(run: &Path) -> (Option<i32>, Value) {
    let out = fedbank()
        .args(["audit", "report", "--json"])
        .arg(run)
        .output()
        .expect("audit report");
    let json = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{e}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.code(), json)
}

/// Everything the report names as wrong: failures, differences and violated guarantees.
fn named(report: &Value) -> String {
    let mut text = String::new();
    for key in ["failures", "findings", "guarantees"] {
        for item in report[key].as_array().into_iter().flatten() {
            if key != "guarantees" || item["state"] == "violated" {
                text.push_str(&item.to_string());
                text.push('\n');
            }
        }
    }
    text
}

fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .expect("trail")
        .lines()
        .map(str::to_owned)
        .collect()
}

fn write_lines(path: &Path, lines: &[String]) {
    std::fs::write(
        path,
        lines.iter().map(|l| format!("{l}\n")).collect::<String>(),
    )
    .expect("write");
}

fn events(path: &Path) -> Vec<AuditEvent> {
    lines(path)
        .iter()
        .map(|l| serde_json::from_str(l).expect("event"))
        .collect()
}

/// Writes the trail again from `events` (their kinds and fields, after `trail.opened`), signed
/// with `identity` and correctly chained: what someone holding that key could produce.
fn resign(path: &Path, writer: &str, role: &str, events: &[AuditEvent], identity: SigningIdentity) {
    std::fs::remove_file(path).expect("remove");
    let mut w = TrailWriter::create(
        path,
        &NodeId::new(writer).expect("id"),
        role,
        identity,
        SystemTime::now(),
    )
    .expect("create");
    for e in &events[1..] {
        let kind = EventKind::from_name(&e.event).expect("kind");
        w.append(kind, e.fields.clone(), SystemTime::now())
            .expect("append");
    }
}

/// The coordinator's trail written again with its own key — what a coordinator can always do —
/// after setting `field` of its first `event` to `value`.
fn resign_coordinator(run: &Path, event: &str, field: &str, value: Value) {
    let path = run.join("trails/coordinator.trail");
    let mut ev = events(&path);
    let e = ev
        .iter_mut()
        .find(|e| e.event == event)
        .unwrap_or_else(|| panic!("no {event}"));
    e.fields.insert(field.into(), value);
    resign(
        &path,
        "coordinator",
        "coordinator",
        &ev,
        key_of("coordinator"),
    );
}

/// A node's certificate key (from the run's certificate directory), as its signing identity.
fn key_of(node: &str) -> SigningIdentity {
    let creds = NodeCredentials::load(&CredentialPaths::in_dir(
        &base_run().join("certs"),
        &NodeId::new(node).expect("id"),
    ))
    .expect("credentials");
    SigningIdentity::from_pkcs8(creds.pkcs8()).expect("identity")
}

struct Case {
    name: &'static str,
    edit: fn(&Path),
    exit: i32,
    names: &'static [&'static str],
}

const CASES: &[Case] = &[
    Case {
        name: "an event's field edited",
        edit: |run| {
            let path = run.join("trails/coordinator.trail");
            let mut l = lines(&path);
            l[3] = l[3].replacen("\"job\":\"", "\"job\":\"x", 1);
            write_lines(&path, &l);
        },
        exit: 3,
        names: &["trails/coordinator.trail", "line 4"],
    },
    Case {
        name: "an event deleted",
        edit: |run| {
            let path = run.join("trails/insurer.trail");
            let mut l = lines(&path);
            l.remove(2);
            write_lines(&path, &l);
        },
        exit: 3,
        names: &["trails/insurer.trail", "missing (removed)"],
    },
    Case {
        name: "two events reordered",
        edit: |run| {
            let path = run.join("trails/broker.trail");
            let mut l = lines(&path);
            l.swap(2, 3);
            write_lines(&path, &l);
        },
        exit: 3,
        names: &["trails/broker.trail", "reordered"],
    },
    Case {
        name: "a trail cut in the middle of an event",
        edit: |run| {
            let path = run.join("trails/broker.trail");
            let bytes = std::fs::read(&path).expect("read");
            std::fs::write(&path, &bytes[..bytes.len() - 20]).expect("write");
        },
        exit: 6,
        names: &["trails/broker.trail", "truncated"],
    },
    Case {
        name: "a participant's trail cut before the job's end",
        edit: |run| {
            let path = run.join("trails/payments.trail");
            let mut l = lines(&path);
            l.truncate(l.len() - 1);
            write_lines(&path, &l);
        },
        exit: 6,
        names: &["payments", "before the job's end"],
    },
    Case {
        name: "the coordinator's trail cut before the job's end",
        edit: |run| {
            let path = run.join("trails/coordinator.trail");
            let l = lines(&path);
            let end = l
                .iter()
                .position(|l| l.contains("\"job.completed\""))
                .expect("job.completed");
            write_lines(&path, &l[..end]);
        },
        // The participants' records of the release then have no counterpart: the trails
        // disagree (the more serious finding), and the cut is named as well.
        exit: 4,
        names: &[
            "coordinator",
            "before the job's end",
            "result.json",
            "release of job",
        ],
    },
    Case {
        name: "the coordinator's trail re-signed with its own key, a contribution's digest changed",
        edit: |run| {
            resign_coordinator(
                run,
                "contribution.received",
                "digest",
                Value::from("00".repeat(32)),
            )
        },
        exit: 4,
        names: &["contribution"],
    },
    Case {
        name: "the coordinator's trail re-signed with its own key, a decryption below the minimum",
        edit: |run| {
            resign_coordinator(
                run,
                "decryption.requested",
                "contributors",
                serde_json::json!(["broker", "insurer"]),
            )
        },
        exit: 7,
        names: &["Minimum contributors per aggregate", "2 < 3"],
    },
    Case {
        name: "the coordinator's trail re-signed with its own key, another count of clipped values",
        edit: |run| {
            resign_coordinator(
                run,
                "aggregate.decrypted",
                "clipped_values",
                Value::from(1_000_000),
            )
        },
        exit: 4,
        names: &["values clipped in job", "\"coordinator\":1000000"],
    },
    Case {
        name: "the coordinator's trail re-signed with its own key, another release recorded",
        edit: |run| {
            resign_coordinator(
                run,
                "job.completed",
                "release_digest",
                Value::from("00".repeat(32)),
            )
        },
        exit: 4,
        names: &["release of job"],
    },
    Case {
        name: "a trail re-signed with a key that is not its writer's certificate's",
        edit: |run| {
            let path = run.join("trails/payments.trail");
            let ev = events(&path);
            let (other, _) = SigningIdentity::generate().expect("key");
            resign(&path, "payments", "participant", &ev, other);
        },
        exit: 3,
        names: &["payments", "its trail is signed by key"],
    },
    Case {
        name: "a trail signed with another node's key",
        edit: |run| {
            let path = run.join("trails/payments.trail");
            let ev = events(&path);
            resign(&path, "payments", "participant", &ev, key_of("insurer"));
        },
        exit: 3,
        names: &["payments", "its trail is signed by key"],
    },
    Case {
        name: "certificates swapped",
        edit: |run| {
            std::fs::copy(
                run.join("certs/retail-bank.pem"),
                run.join("certs/insurer.pem"),
            )
            .expect("copy");
        },
        exit: 3,
        names: &["insurer", "is the certificate of retail-bank"],
    },
    Case {
        name: "a node's trail dropped",
        edit: |run| std::fs::remove_file(run.join("trails/insurer.trail")).expect("rm"),
        exit: 6,
        names: &["insurer", "no trail of insurer"],
    },
    Case {
        name: "a trail of a node that is not in the job added",
        edit: |run| {
            let (key, _) = SigningIdentity::generate().expect("key");
            TrailWriter::create(
                &run.join("trails/intruder.trail"),
                &NodeId::new("intruder").expect("id"),
                "participant",
                key,
                SystemTime::now(),
            )
            .expect("trail");
        },
        exit: 3,
        names: &["intruder", "not a node of job"],
    },
    Case {
        name: "result.json edited",
        edit: |run| {
            let path = run.join("result.json");
            let text = std::fs::read_to_string(&path).expect("result");
            std::fs::write(&path, text.replacen("\"size\": ", "\"size\": 1", 1)).expect("write");
        },
        exit: 3,
        names: &["result.json", "changed after it was written"],
    },
    Case {
        name: "result.json removed",
        edit: |run| std::fs::remove_file(run.join("result.json")).expect("rm"),
        exit: 6,
        names: &["result.json", "not in the run"],
    },
    Case {
        name: "the human report edited",
        edit: |run| {
            let path = run.join("report.md");
            let text = std::fs::read_to_string(&path).expect("report");
            std::fs::write(&path, format!("{text}\nAll figures approved.\n")).expect("write");
        },
        exit: 3,
        names: &["report.md", "changed after it was written"],
    },
    Case {
        name: "the chart edited",
        edit: |run| {
            let path = run.join("segments.svg");
            let text = std::fs::read_to_string(&path).expect("svg");
            std::fs::write(&path, text.replacen("<svg", "<svg data-x=\"1\"", 1)).expect("write");
        },
        exit: 3,
        names: &["segments.svg"],
    },
    Case {
        name: "an institution's local output edited",
        edit: |run| {
            let path = run.join("data/broker/segments.csv");
            let text = std::fs::read_to_string(&path).expect("segments");
            std::fs::write(&path, format!("{text}999999,0\n")).expect("write");
        },
        exit: 3,
        names: &["../data/broker/segments.csv of broker"],
    },
    Case {
        name: "the consortium CA certificate removed",
        edit: |run| std::fs::remove_file(run.join("certs/ca.pem")).expect("rm"),
        exit: 6,
        names: &["certs/ca.pem"],
    },
    Case {
        name: "a trail that cannot be read",
        edit: |run| {
            let path = run.join("trails/broker.trail");
            std::fs::remove_file(&path).expect("rm");
            std::fs::create_dir(&path).expect("a directory in its place");
        },
        exit: 6,
        names: &["trails/broker.trail"],
    },
];

#[test]
fn the_untouched_run_verifies_with_every_file_bound_and_every_node_checked() {
    let (_dir, run) = copy_run();
    let (code, report) = report(&run);
    assert_eq!(code, Some(0), "{report:#}");
    assert_eq!(report["verdict"], "verified");
    let nodes = report["nodes"].as_array().expect("nodes");
    assert_eq!(nodes.len(), 5, "the coordinator and four participants");
    for n in nodes {
        assert_eq!(n["key_matches_certificate"], true, "{n}");
        assert!(n["certificate_sha256"].is_string(), "{n}");
    }
    let files: Vec<&str> = report["artifacts"]
        .as_array()
        .expect("artifacts")
        .iter()
        .map(|a| a["file"].as_str().expect("file"))
        .collect();
    for f in [
        "result.json",
        "report.md",
        "segments.svg",
        "../data/broker/segments.csv",
    ] {
        assert!(files.contains(&f), "{f} is not bound: {files:?}");
    }
    // A bound file's digest is what sha256sum prints.
    let result = report["artifacts"]
        .as_array()
        .expect("artifacts")
        .iter()
        .find(|a| a["file"] == "result.json")
        .expect("result");
    let (sha, _) = fedbank_common::audit::file_sha256(&run.join("result.json")).expect("sha");
    assert_eq!(result["sha256"], sha.as_str());
    assert!(report["job"]["software"]
        .as_str()
        .is_some_and(|s| s.starts_with("fedbank ")));
    // Clipped values are the counts decrypted with the aggregates, and they agree with the
    // participants' own trails (the cross-check found nothing).
    assert_eq!(
        report["data"]["clipped_decrypted"], true,
        "{:#}",
        report["data"]
    );
}

#[test]
fn every_tampering_in_the_catalogue_is_detected_named_and_given_its_exit_status() {
    let mut wrong = Vec::new();
    for case in CASES {
        let (_dir, run) = copy_run();
        (case.edit)(&run);
        let (code, report) = report(&run);
        let text = named(&report);
        if code != Some(case.exit) {
            wrong.push(format!(
                "{}: exit {code:?}, expected {}: {}",
                case.name, case.exit, report["headline"]
            ));
        }
        for name in case.names {
            if !text.contains(name) {
                wrong.push(format!("{}: does not name {name:?}:\n{text}", case.name));
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn the_human_summary_names_what_failed_and_the_report_has_what_a_person_signs() {
    let (_dir, run) = copy_run();
    std::fs::remove_file(run.join("trails/insurer.trail")).expect("rm");
    let out = fedbank()
        .args(["audit", "report"])
        .arg(&run)
        .output()
        .expect("report");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(6), "{stdout}");
    assert!(stdout.starts_with("INCOMPLETE EVIDENCE"), "{stdout}");
    assert!(
        stdout.contains("MISSING insurer: no trail of insurer"),
        "{stdout}"
    );
    let md = std::fs::read_to_string(run.join("audit-report.md")).expect("report");
    for part in [
        "## For signature",
        "| job digest (configuration) | `",
        "| software that ran the job | fedbank ",
        "| consortium CA certificate (SHA-256) | `",
        "| period the data covers | ",
        "| insurer | participant, committee member | `",
        "| **none** |",
        "## Guarantees",
        "| k-anonymity | held |",
        "## What happened to the data",
        "## Sign-off",
        "| Signature | |",
    ] {
        assert!(md.contains(part), "the report lacks {part:?}");
    }
}

#[test]
fn audit_verify_tells_an_unreadable_trail_from_a_changed_one() {
    let (_dir, run) = copy_run();
    let out = fedbank()
        .args(["audit", "verify"])
        .arg(run.join("trails/no-such.trail"))
        .output()
        .expect("verify");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(6), "{stdout}");
    assert!(stdout.starts_with("UNREADABLE"), "{stdout}");
    let path = run.join("trails/broker.trail");
    let mut l = lines(&path);
    l[1] = l[1].replacen("\"seq\":1", "\"seq\":7", 1);
    write_lines(&path, &l);
    let out = fedbank()
        .args(["audit", "verify"])
        .arg(&path)
        .output()
        .expect("verify");
    assert_eq!(out.status.code(), Some(3));
}

#[test]
fn a_node_holding_another_nodes_certificate_stops_before_it_connects() {
    let dir = tempfile::tempdir().expect("dir");
    let certs = dir.path().join("certs");
    std::fs::create_dir_all(&certs).expect("certs");
    for f in [
        "ca.pem",
        "retail-bank.pem",
        "retail-bank.key",
        "insurer.key",
    ] {
        std::fs::copy(base_run().join("certs").join(f), certs.join(f)).expect("copy");
    }
    // `insurer` holds retail-bank's certificate.
    std::fs::copy(certs.join("retail-bank.pem"), certs.join("insurer.pem")).expect("copy");
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    // A port nothing answers on: the node must stop before it tries.
    let config = dir.path().join("insurer.toml");
    std::fs::write(
        &config,
        format!(
            "job_file = \"{}\"\nid = \"insurer\"\ndata = \"{}\"\ncoordinator_address = \"127.0.0.1:9\"\n\
             coordinator_id = \"coordinator\"\ncerts_dir = \"certs\"\ntrail = \"insurer.trail\"\nconnect_attempts = 1\n",
            root.join("configs/segment-synthetic.toml").display(),
            base_run().join("data/insurer/customers.csv").display()
        ),
    )
    .expect("config");
    let out = fedbank()
        .args(["participant", "--config"])
        .arg(&config)
        .output()
        .expect("participant");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("configured as insurer, but its certificate names [\"retail-bank\"]"),
        "{stderr}"
    );
    assert!(stderr.contains("insurer.pem"), "{stderr}");
    assert!(
        !dir.path().join("insurer.trail").exists(),
        "no trail was begun"
    );
}

/// Which file of a run an edit touches, where, and how.
#[derive(Clone, Debug)]
enum Edit {
    Flip(u8),
    Delete,
    Insert(u8),
    Truncate,
}

/// The evidence files of the run: trails, certificates, and the files bound to the trails.
fn evidence_files(run: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for dir in ["trails", "certs"] {
        for entry in std::fs::read_dir(run.join(dir)).expect("dir") {
            let path = entry.expect("entry").path();
            if path.extension().is_some_and(|x| x == "trail" || x == "pem") {
                files.push(path);
            }
        }
    }
    for f in [
        "result.json",
        "report.md",
        "segments.svg",
        "data/broker/segments.csv",
    ] {
        files.push(run.join(f));
    }
    files.sort();
    files
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// No edit of a run's evidence that changes what it says leaves the report VERIFIED.
    #[test]
    fn no_random_edit_of_the_evidence_verifies(
        file in any::<prop::sample::Index>(),
        at in any::<prop::sample::Index>(),
        edit in prop_oneof![
            (1u8..=255).prop_map(Edit::Flip),
            Just(Edit::Delete),
            any::<u8>().prop_map(Edit::Insert),
            Just(Edit::Truncate),
        ],
    ) {
        let (_dir, run) = copy_run();
        let files = evidence_files(&run);
        let path = file.get(&files).clone();
        let original = std::fs::read(&path).expect("read");
        let mut bytes = original.clone();
        let i = at.index(bytes.len().max(1)).min(bytes.len().saturating_sub(1));
        match edit {
            Edit::Flip(x) => bytes[i] ^= x,
            Edit::Delete => { bytes.remove(i); }
            Edit::Insert(b) => bytes.insert(i, b),
            Edit::Truncate => bytes.truncate(i),
        }
        // A PEM edit that leaves the certificate's DER as it was (base64 padding bits,
        // whitespace) changes nothing the report reads.
        std::fs::write(&path, &bytes).expect("write");
        if path.extension().is_some_and(|x| x == "pem") {
            let edited = read_certificate(&path).ok().map(|d| d.to_vec());
            let before = std::fs::read(base_run().join("certs").join(path.file_name().expect("name")))
                .map(|_| read_certificate(&base_run().join("certs").join(path.file_name().expect("name"))).ok().map(|d| d.to_vec()))
                .expect("original");
            prop_assume!(edited.is_none() || edited != before);
        }
        let report = audit_report(&run).expect("report");
        prop_assert_ne!(
            report.verdict,
            AuditVerdict::Verified,
            "{} edited ({:?} at {}) and still verified",
            path.display(),
            edit,
            i
        );
    }
}
