//! `fedbank simulate` end to end as a user runs it: the shipped job file, a fresh output
//! directory, result.json per feature, every node's trail, and `fedbank audit verify` on them.

use std::process::Command;

fn fedbank(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_fedbank"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(args)
        .output()
        .expect("run fedbank")
}

/// Runs `fedbank simulate` on a shipped job file into a fresh directory, checks it succeeded,
/// and returns the directory (kept alive), the run's output directory, its stdout and its
/// `result.json`.
fn simulate_job(
    job: &str,
) -> (
    tempfile::TempDir,
    std::path::PathBuf,
    String,
    serde_json::Value,
) {
    let dir = tempfile::tempdir().expect("dir");
    let out = dir.path().join("run");
    let run = fedbank(&[
        "simulate",
        "--job",
        job,
        "--out",
        out.to_str().expect("path"),
    ]);
    let stdout = String::from_utf8_lossy(&run.stdout).into_owned();
    assert!(
        run.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let result =
        serde_json::from_str(&std::fs::read_to_string(out.join("result.json")).expect("result"))
            .expect("json");
    (dir, out, stdout, result)
}

#[test]
fn simulate_writes_results_and_verifiable_trails() {
    let (_dir, out, stdout, result) = simulate_job("configs/simulate-stats.toml");
    assert!(
        stdout.contains("round 1") && stdout.contains("contribution from"),
        "progress shown: {stdout}"
    );
    assert!(stdout.contains("5 trails verified"), "{stdout}");

    assert_eq!(result["job"], "stats-demo");
    for feature in [
        "age",
        "income",
        "balance",
        "tenure_months",
        "products_held",
        "transactions_12m",
        "spend_12m",
    ] {
        let f = &result["features"][feature];
        for field in ["count", "missing_rate", "mean", "std"] {
            assert!(f[field].is_number(), "{feature}.{field} in {f}");
        }
        assert!(f["quantiles"]["p50"].is_number(), "{feature} median");
    }
    // income has missing values by construction.
    assert!(
        result["features"]["income"]["missing_rate"]
            .as_f64()
            .expect("rate")
            > 0.01
    );
    assert!(out.join("summary.txt").exists());

    let trails = out.join("trails");
    let mut args = vec![
        "audit".to_owned(),
        "verify".to_owned(),
        trails.join("coordinator.trail").display().to_string(),
    ];
    for node in ["retail-bank", "insurer", "broker", "payments"] {
        args.push("--cross-check".into());
        args.push(trails.join(format!("{node}.trail")).display().to_string());
    }
    let verify = fedbank(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(
        verify.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&verify.stdout)
    );

    // A second run into the same directory is refused instead of mixing two runs.
    let again = fedbank(&["simulate", "--out", out.to_str().expect("path")]);
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("already exists"));
}

#[test]
fn a_bad_job_file_is_refused_with_file_and_field() {
    let dir = tempfile::tempdir().expect("dir");
    let job = dir.path().join("job.toml");
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/configs/simulate-stats.toml"
    ))
    .expect("job");
    std::fs::write(
        &job,
        text.replace("min_participants = 3", "min_participants = 9"),
    )
    .expect("write");
    let run = fedbank(&[
        "simulate",
        "--job",
        job.to_str().expect("path"),
        "--out",
        dir.path().join("o").to_str().expect("p"),
    ]);
    assert!(!run.status.success());
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(
        stderr.contains("job.toml") && stderr.contains("min_participants = 9"),
        "{stderr}"
    );
    std::fs::write(
        &job,
        text.replace("kind = \"stats\"", "kind = \"stats\"\nunknown_field = 1"),
    )
    .expect("write");
    let run = fedbank(&["simulate", "--job", job.to_str().expect("path")]);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(
        !run.status.success() && stderr.contains("unknown_field"),
        "{stderr}"
    );
}

#[test]
fn simulate_segments_cdnow_with_result_report_and_chart() {
    let (_dir, out, stdout, result) = simulate_job("configs/segment-cdnow.toml");
    assert!(
        stdout.contains("in-process on the pooled rows") && stdout.contains("ratio"),
        "{stdout}"
    );
    assert_eq!(result["kind"], "segment");
    assert_eq!(result["k"], 5);
    // The job gives no reference date: the consortium found the day after its latest purchase
    // (CDNOW ends on 1998-06-30) from presence aggregates.
    assert_eq!(
        result["reference_date"],
        "1998-07-01 (the day after the consortium's latest purchase)"
    );
    assert!(result["iterations"].as_u64().expect("iterations") >= 2);
    assert!(result["inertia"].as_f64().expect("inertia") > 0.0);
    let segments = result["segments"].as_array().expect("segments");
    let total: f64 = segments
        .iter()
        .map(|s| s["size"].as_f64().expect("size"))
        .sum();
    assert_eq!(total, 23_570.0, "every CDNOW customer is in a segment");
    for s in segments {
        assert!(s["label"].is_string());
        assert_eq!(s["centroid_standardized"].as_array().expect("z").len(), 3);
        assert_eq!(s["centroid_original"].as_array().expect("x").len(), 3);
        assert!(s["size"].as_f64().expect("size") >= 50.0, "k-anonymity");
        let scores = s["rfm_scores"]
            .as_array()
            .expect("RFM scores from consortium quintiles");
        assert_eq!(scores.len(), 3);
        assert!(
            scores
                .iter()
                .all(|v| (1.0..=5.0).contains(&v.as_f64().expect("score"))),
            "{scores:?}"
        );
    }
    // Lifecycle counts come from the secure aggregate; released stages cover the customers.
    let lifecycle = result["lifecycle"].as_object().expect("lifecycle");
    assert_eq!(lifecycle.len(), 5);
    let released: f64 = lifecycle.values().filter_map(|v| v.as_f64()).sum();
    assert!(
        released > 0.9 * 23_570.0 && released <= 23_570.0,
        "{released}"
    );
    let report = std::fs::read_to_string(out.join("report.md")).expect("report");
    assert!(report.contains("Lifecycle stages"));
    assert!(report.contains("segments.svg") && report.contains("days since last purchase"));
    // Each institution's own assignment, local and owner-only, covers exactly its customers.
    let mut assigned = 0;
    for node in ["retail-bank", "insurer", "broker", "payments"] {
        let path = out.join("data").join(node).join("segments.csv");
        let text = std::fs::read_to_string(&path).expect("assignment file");
        assigned += text.lines().count() - 1;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).expect("meta").permissions().mode();
            assert_eq!(mode & 0o077, 0, "{} is owner-only", path.display());
        }
    }
    assert_eq!(assigned, 23_570);
    let svg = std::fs::read_to_string(out.join("segments.svg")).expect("svg");
    assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
}

#[test]
fn simulate_segments_customer_tables_choosing_k_from_aggregates() {
    let (_dir, out, _, result) = simulate_job("configs/segment-synthetic.toml");
    let selection = &result["k_selection"];
    let candidates = selection["candidates"].as_array().expect("candidates");
    assert_eq!(
        candidates.len(),
        6,
        "k = 1..=6 were each run to convergence"
    );
    let chosen = selection["chosen"].as_u64().expect("chosen");
    // The chosen k has the highest mean silhouette among k >= 2.
    let best = candidates
        .iter()
        .filter(|c| c["k"].as_u64() >= Some(2))
        .max_by(|a, b| {
            a["silhouette"]
                .as_f64()
                .partial_cmp(&b["silhouette"].as_f64())
                .expect("numbers")
        })
        .expect("a candidate");
    assert_eq!(best["k"].as_u64(), Some(chosen));
    assert_eq!(result["k"].as_u64(), Some(chosen));
    assert!(result["initialization"]
        .as_str()
        .expect("initialization")
        .starts_with("splitting"));
    let segments = result["segments"].as_array().expect("segments");
    let total: f64 = segments
        .iter()
        .map(|s| s["size"].as_f64().expect("size"))
        .sum();
    assert_eq!(total, 13_000.0);
    for s in segments {
        assert_eq!(s["centroid_original"].as_array().expect("x").len(), 4);
        assert!(s["label"].as_str().expect("label").contains(' '));
    }
    // Each participant's own file names its customers by the job's id column.
    let text = std::fs::read_to_string(out.join("data").join("broker").join("segments.csv"))
        .expect("assignment file");
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("customer_id,segment"));
    assert_eq!(lines.clone().count(), 1500);
    assert!(lines.all(|l| l.starts_with("BROKER-")));
    let report = std::fs::read_to_string(out.join("report.md")).expect("report");
    assert!(report.contains("How many segments"));
}

#[test]
fn simulate_propensity_telco_then_score_a_target_list() {
    let (dir, out, stdout, result) = simulate_job("configs/propensity-telco.toml");
    assert!(
        stdout.contains("centralized Newton") && stdout.contains("ratio"),
        "{stdout}"
    );
    assert_eq!(result["kind"], "propensity");
    let auc = result["auc"].as_f64().expect("auc");
    assert!((0.75..0.95).contains(&auc), "telco churn AUC {auc}");
    assert!(result["log_loss"].as_f64().expect("log_loss") > 0.0);
    assert!(result["accuracy"].as_f64().expect("accuracy") > 0.7);
    assert!(result["rounds"].as_u64().expect("rounds") >= 2);
    let per = result["per_participant"]
        .as_object()
        .expect("per participant");
    assert_eq!(per.len(), 4);
    let released = std::fs::read_to_string(out.join("model.json")).expect("model");
    let released: serde_json::Value = serde_json::from_str(&released).expect("json");
    for (node, figures) in per {
        assert!(figures["federated_auc"].as_f64().is_some());
        assert!(figures["local_only_auc"].as_f64().is_some());
        assert!(
            figures["bytes_sent"].as_u64().is_some_and(|b| b > 0),
            "{figures}"
        );
        // Each institution kept the released model and its own figures in its own directory.
        let dir = out.join("data").join(node);
        let kept: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(dir.join("model.json")).expect("kept model"),
        )
        .expect("json");
        assert_eq!(kept, released, "{node} kept the released model");
        let own: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(dir.join("local-figures.json")).expect("kept figures"),
        )
        .expect("json");
        assert_eq!(own["federated_auc"], figures["federated_auc"], "{node}");
    }
    let report = std::fs::read_to_string(out.join("report.md")).expect("report");
    assert!(report.contains("odds ratio") && report.contains("lift.svg"));
    for svg in ["lift.svg", "training.svg"] {
        let text = std::fs::read_to_string(out.join(svg)).expect("svg");
        assert!(text.starts_with("<svg") && text.trim_end().ends_with("</svg>"));
    }
    // A participant ranks its own customers with the exported model.
    let targets = dir.path().join("targets.csv");
    let data = out.join("data").join("broker").join("telco_churn.csv");
    let score = fedbank(&[
        "score",
        "--model",
        out.join("model.json").to_str().expect("path"),
        "--data",
        data.to_str().expect("path"),
        "--out",
        targets.to_str().expect("path"),
        "--top",
        "50",
    ]);
    assert!(
        score.status.success(),
        "{}",
        String::from_utf8_lossy(&score.stderr)
    );
    let text = std::fs::read_to_string(&targets).expect("targets");
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("rownames,score"));
    let scores: Vec<f64> = lines
        .map(|l| l.split(',').nth(1).expect("score").parse().expect("number"))
        .collect();
    assert_eq!(scores.len(), 50);
    assert!(scores.windows(2).all(|w| w[0] >= w[1]), "ranked");
    assert!(scores.iter().all(|s| (0.0..=1.0).contains(s)));
    // A table with an undeclared level is refused, naming the file, line and column.
    let bad = dir.path().join("bad.csv");
    let original = std::fs::read_to_string(&data).expect("data");
    std::fs::write(&bad, original.replacen("Month-to-month", "Weekly", 1)).expect("write");
    let refused = fedbank(&[
        "score",
        "--model",
        out.join("model.json").to_str().expect("path"),
        "--data",
        bad.to_str().expect("path"),
        "--out",
        dir.path().join("t2.csv").to_str().expect("path"),
    ]);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        !refused.status.success()
            && stderr.contains("bad.csv, line")
            && stderr.contains("column 'contract'"),
        "{stderr}"
    );
}

#[test]
fn simulate_propensity_telco_with_differential_privacy_reports_its_spend() {
    let (_dir, out, stdout, result) = simulate_job("configs/propensity-telco-dp.toml");
    // Every trail, with its privacy events, verifies and agrees.
    assert!(stdout.contains("5 trails verified"), "{stdout}");
    let dp = &result["privacy"];
    let spent = dp["epsilon_spent"].as_f64().expect("ε spent");
    let budget = dp["epsilon_budget"].as_f64().expect("budget");
    assert_eq!(budget, 4.0);
    assert!(spent <= budget && spent > 0.99 * budget, "{dp}");
    assert_eq!(
        dp["releases"].as_array().expect("releases").len(),
        3 + result["rounds"].as_u64().expect("rounds") as usize,
        "moments, classes, each Newton round and the evaluation"
    );
    // The coordinator's trail records each spend.
    let trail =
        std::fs::read_to_string(out.join("trails").join("coordinator.trail")).expect("trail");
    assert_eq!(
        trail.matches("\"privacy.spent\"").count(),
        3 + result["rounds"].as_u64().expect("rounds") as usize
    );
    let report = std::fs::read_to_string(out.join("report.md")).expect("report");
    assert!(
        report.contains("## Differential privacy") && report.contains("ε"),
        "{report}"
    );
    // No exact count of clipped values is released: it would spend privacy the budget does not
    // account for.
    for round in result["participation"]["rounds"]
        .as_array()
        .expect("rounds")
    {
        assert!(round.get("clipped_values").is_none(), "{round}");
    }
    assert!(trail.contains("\"aggregate.decrypted\""));
    assert!(
        !trail.contains("\"clipped_values\""),
        "a count in the trail"
    );
    assert!(
        report.contains("No count of values clipped to a declared bound is released"),
        "{report}"
    );
    // Still a useful model: the per-institution AUC of the federated model, computed locally.
    for (node, figures) in result["per_participant"]
        .as_object()
        .expect("per participant")
    {
        let auc = figures["federated_auc"].as_f64().expect("auc");
        assert!(auc > 0.7, "{node}: {auc}");
    }
}

#[test]
fn simulate_propensity_on_the_synthetic_consortium_imputes_and_weights_classes() {
    let (_dir, _, _, result) = simulate_job("configs/propensity-synthetic.toml");
    assert_eq!(result["optimizer"], "newton");
    assert!(result["converged"].as_bool().expect("converged"));
    assert!(result["auc"].as_f64().expect("auc") > 0.55);
    // The generator leaves ~5 % of incomes empty: imputed with the consortium mean, counted.
    let income_missing = result["imputed"]
        .as_array()
        .expect("imputed")
        .iter()
        .find(|p| p[0] == "income")
        .and_then(|p| p[1].as_f64())
        .expect("income");
    assert!(income_missing > 100.0, "{income_missing}");
    // Balanced weights: responders are the minority, so they weigh more.
    let w = result["class_weights"].as_array().expect("weights");
    assert!(w[0].as_f64() > w[1].as_f64(), "{w:?}");
    assert_eq!(result["per_participant"].as_object().expect("per").len(), 4);
}

/// The same simulation through the library the CLI calls (`fedbank_consortium::simulate`), in
/// this process: the stats job's result file reads back through its typed schema, with the
/// figures of every feature of the job file, and every trail verifies.
#[test]
fn the_consortium_library_runs_a_simulation_in_process() {
    let dir = tempfile::tempdir().expect("dir");
    let out = dir.path().join("run");
    let job = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join(fedbank_consortium::simulate::DEFAULT_JOB);
    fedbank_consortium::simulate::run(&fedbank_consortium::simulate::SimulateOptions::new(
        job.clone(),
        Some(out.clone()),
    ))
    .expect("simulation");
    let text = std::fs::read_to_string(out.join("result.json")).expect("result.json");
    let file = fedbank_coordinator::ResultFile::from_json(&text).expect("a typed result file");
    let release = file.released;
    assert_eq!(release.kind, "stats");
    let (valid, _) = fedbank_consortium::config::load_job(&job).expect("job file");
    let features = release.released["features"]
        .as_object()
        .expect("features by name");
    assert_eq!(features.len(), valid.spec().features.len());
    for f in &valid.spec().features {
        let count = features[&f.name]["count"].as_f64().expect("count");
        assert!(count > 0.0, "{}: {count}", f.name);
    }
    let trails: Vec<_> = std::fs::read_dir(out.join("trails"))
        .expect("trails")
        .map(|e| e.expect("entry").path())
        .collect();
    assert_eq!(trails.len(), valid.spec().participants.len() + 1);
    for trail in &trails {
        fedbank_common::audit::verify(trail, None).expect("the trail verifies");
    }
}

/// Ages above a declared bound of 50: every round's contributors encrypt how many values they
/// clipped with their values, and the decrypted counts reach result.json, the human report and
/// the audit report, equal to what the institutions' own trails record.
#[test]
fn clipped_values_are_counted_securely_into_the_result_and_the_reports() {
    let dir = tempfile::tempdir().expect("dir");
    let job = dir.path().join("clipping.toml");
    let text = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("configs/segment-synthetic.toml"),
    )
    .expect("job");
    assert!(text.contains("\nbound = 120\n"), "the age bound moved");
    std::fs::write(&job, text.replace("\nbound = 120\n", "\nbound = 50\n")).expect("write");
    let (_keep, out, _, result) = simulate_job(job.to_str().expect("path"));
    let rounds = result["participation"]["rounds"]
        .as_array()
        .expect("rounds");
    let decrypted: std::collections::BTreeMap<u64, u64> = rounds
        .iter()
        .map(|r| {
            (
                r["round"].as_u64().expect("round"),
                r["clipped_values"].as_u64().expect("every round counts"),
            )
        })
        .collect();
    assert!(decrypted.values().all(|&n| n > 0), "{decrypted:?}");
    // Each decrypted count is the sum of the institutions' own counts of that round.
    let mut own: std::collections::BTreeMap<u64, u64> = Default::default();
    for node in ["retail-bank", "insurer", "broker", "payments"] {
        let trail =
            std::fs::read_to_string(out.join(format!("trails/{node}.trail"))).expect("trail");
        for line in trail.lines() {
            let e: serde_json::Value = serde_json::from_str(line).expect("event");
            if e["event"] == "contribution.sent" {
                *own.entry(e["fields"]["round"].as_u64().expect("round"))
                    .or_default() += e["fields"]["clipped_values"].as_u64().expect("count");
            }
        }
    }
    assert_eq!(decrypted, own);
    let report = std::fs::read_to_string(out.join("report.md")).expect("report");
    let most = decrypted.values().max().expect("rounds");
    assert!(
        report.contains(&format!("up to {most} in one round")),
        "{report}"
    );
    // The audit report shows the decrypted counts, and the run verifies.
    let audit = fedbank(&["audit", "report", "--json", out.to_str().expect("path")]);
    let audit: serde_json::Value = serde_json::from_slice(&audit.stdout).expect("json");
    assert_eq!(audit["verdict"], "verified", "{audit:#}");
    assert_eq!(audit["data"]["clipped_decrypted"], true);
    let shown: std::collections::BTreeMap<u64, u64> = audit["data"]["clipped_by_round"]
        .as_object()
        .expect("by round")
        .iter()
        .map(|(r, n)| (r.parse().expect("round"), n.as_u64().expect("count")))
        .collect();
    assert_eq!(shown, decrypted);
}

/// The stats job with every node behind a delaying, jittering, lossy link (20 ± 5 ms one way,
/// 3% of packets dropped each way) releases exactly what it releases on plain loopback, and
/// every trail verifies: loss and delay cost time, never a value.
#[test]
fn an_impaired_link_changes_no_released_value() {
    use fedbank_consortium::impaired_link::LinkProfile;
    use fedbank_consortium::simulate::{run, SimulateOptions};
    let dir = tempfile::tempdir().expect("dir");
    let job = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join(fedbank_consortium::simulate::DEFAULT_JOB);
    let released = |name: &str, link: Option<LinkProfile>| {
        let mut options = SimulateOptions::new(job.clone(), Some(dir.path().join(name)));
        options.link = link;
        options.quiet = true;
        let run = run(&options).expect("simulation");
        assert!(run.finished, "{name}: the job did not finish");
        let text = std::fs::read_to_string(run.out.join("result.json")).expect("result.json");
        let file = fedbank_coordinator::ResultFile::from_json(&text).expect("result");
        for entry in std::fs::read_dir(run.out.join("trails")).expect("trails") {
            let trail = entry.expect("entry").path();
            fedbank_common::audit::verify(&trail, None).expect("the trail verifies");
        }
        (file.released.released, run.federated_seconds)
    };
    let (plain, _) = released("loopback", None);
    let lossy = LinkProfile {
        delay: std::time::Duration::from_millis(20),
        jitter: std::time::Duration::from_millis(5),
        loss: 0.03,
        seed: 11,
        ..LinkProfile::none()
    };
    let (impaired, seconds) = released("impaired", Some(lossy));
    assert_eq!(plain, impaired);
    // Three round trips at the least per round, two rounds: the link was really in the path.
    assert!(seconds > 0.24, "{seconds} s");
}
