//! A job kind added from its own folder (`tests/above_mean/`) with one `register_job!` line runs
//! through the real node machines — every message through its wire encoding, encrypted and
//! decrypted by the committee — and equals the figures of the pooled rows; its result file
//! carries its own record; participants refuse its rounds in another job and other rounds in
//! it; a job file names it by its kind.

mod above_mean;
mod fixture;

use above_mean::coordinator::AboveMeanResult;
use above_mean::{Means, ABOVE, KIND, TOTALS};
use fedbank_common::digest::Digest;
use fedbank_common::ids::NodeId;
use fedbank_common::job::{JobKind, JobRound, JobSpec, RoundKind, RoundTag, ValidJob};
use fedbank_common::round_plan::{PlanRefusal, RoundPlan};
use fedbank_coordinator::{CoordinatorMachine, JobResult, ResultFile, Status};
use fedbank_participant::{LocalTable, ParticipantMachine, ParticipantOutput};
use fixture::drive::run_to_end_with;

type S = u128;

fn id(s: &str) -> NodeId {
    NodeId::new(s).expect("id")
}

fn job_file(kind: &str, participants: usize) -> String {
    let nodes: Vec<String> = (0..participants).map(|i| format!("\"p{i}\"")).collect();
    format!(
        r#"
[job]
job = "above-mean-test"
kind = "{kind}"
profile = "strict"
participants = [{}]
committee = ["p0", "p1", "p2"]
min_participants = 2
max_rows = 100000
key_setup_timeout_ms = 1000
round_timeout_ms = 1000
decryption_timeout_ms = 1000

[[job.features]]
name = "balance"
bound = 50000.0
min = 0.0
scale = 100.0

[[job.features]]
name = "age"
bound = 100.0
min = 18.0
"#,
        nodes.join(", ")
    )
}

fn spec(kind: &str, participants: usize) -> Result<JobSpec, toml::de::Error> {
    #[derive(serde::Deserialize)]
    struct File {
        job: JobSpec,
    }
    toml::from_str::<File>(&job_file(kind, participants)).map(|f| f.job)
}

fn job(participants: usize) -> ValidJob {
    spec(KIND, participants)
        .expect("job file")
        .validate()
        .expect("valid job")
}

/// Institution i's customers: its own size and mix; some balances missing and some beyond the
/// declared bound (clipped).
fn tables(n: usize) -> Vec<LocalTable> {
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut uniform = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state >> 11) as f64 / (1u64 << 53) as f64
    };
    (0..n)
        .map(|i| {
            let rows = [120, 1500, 40, 800, 333][i % 5];
            let mut balance = Vec::with_capacity(rows);
            let mut age = Vec::with_capacity(rows);
            for r in 0..rows {
                let b = (uniform() * (2000.0 + 9000.0 * i as f64) * 100.0).round() / 100.0;
                balance.push(match r % 17 {
                    0 => None,
                    5 => Some(80_000.0),
                    _ => Some(b),
                });
                age.push(Some((18.0 + uniform() * (40.0 + 10.0 * i as f64)).floor()));
            }
            LocalTable {
                columns: [("balance".to_owned(), balance), ("age".to_owned(), age)]
                    .into_iter()
                    .collect(),
                rows,
            }
        })
        .collect()
}

/// The figures of the pooled rows, computed directly.
fn pooled(job: &ValidJob, tables: &[LocalTable]) -> Vec<(f64, f64, f64)> {
    job.spec()
        .features
        .iter()
        .map(|f| {
            let values: Vec<f64> = tables
                .iter()
                .flat_map(|t| t.columns[&f.name].iter().flatten())
                .map(|v| v.clamp(f.lower(), f.bound))
                .collect();
            let n = values.len() as f64;
            let mean = values.iter().sum::<f64>() / n;
            let above = values.iter().filter(|v| **v > mean).count() as f64;
            (n, mean, above)
        })
        .collect()
}

fn federated(job: &ValidJob, tables: Vec<LocalTable>) -> (Status, Vec<String>) {
    let mut nodes: Vec<ParticipantMachine<S>> = tables
        .into_iter()
        .enumerate()
        .map(|(i, t)| {
            ParticipantMachine::new(
                fedbank_transport::dev_pki::shared_credentials(&id(&format!("p{i}")))
                    .expect("credentials"),
                job.clone(),
                t,
            )
        })
        .collect();
    let mut coordinator =
        CoordinatorMachine::<S>::new(job.clone(), 11, fedbank_transport::dev_pki::shared_trust());
    let mut progress = Vec::new();
    let (status, _) = run_to_end_with(&mut coordinator, &mut nodes, |node, out| {
        if let ParticipantOutput::Progress(line) = out {
            progress.push(format!("{node}: {line}"));
        }
    });
    (status, progress)
}

#[test]
fn a_registered_job_runs_through_the_machines_and_equals_the_pooled_figures() {
    let job = job(5);
    let tables = tables(5);
    let (status, progress) = federated(&job, tables.clone());
    let Status::Finished(JobResult { kind, released }) = status else {
        panic!("job did not finish: {status:?}; {progress:?}")
    };
    assert_eq!(kind, KIND);
    let result: AboveMeanResult = serde_json::from_value(released.clone()).expect("its record");
    let want = pooled(&job, &tables);
    assert_eq!(result.features.len(), want.len());
    for (got, (n, mean, above)) in result.features.iter().zip(want) {
        assert_eq!(got.customers, n, "{}", got.name);
        assert!(
            (got.mean - mean).abs() <= 1e-6 * mean.abs().max(1.0),
            "{}: {} vs {mean}",
            got.name,
            got.mean
        );
        assert_eq!(got.above, above, "{}", got.name);
        assert!(got.share_above > 0.0 && got.share_above < 1.0, "{got:?}");
    }
    // The result file carries the job's own record under its kind, and reads back.
    let file = ResultFile::new(&job, &JobResult { kind, released });
    let text = file.to_json().expect("json");
    assert!(text.contains("\"kind\": \"above-mean\""), "{text}");
    let back = ResultFile::from_json(&text).expect("reads back");
    let release = back.released;
    assert_eq!(release.kind, KIND);
    assert_eq!(
        serde_json::from_value::<AboveMeanResult>(serde_json::Value::Object(release.released))
            .expect("record"),
        result
    );
}

#[test]
fn participants_refuse_rounds_outside_their_jobs_plan() {
    let above = job(3);
    let stats = spec("stats", 3)
        .expect("file")
        .validate()
        .expect("stats job");
    let d = Digest::of("computation", b"x");
    let totals = RoundKind::Registered(JobRound::new(TOTALS, &()).expect("round"));
    // A stats job never computes the registered job's round ...
    let refused = RoundPlan::default().admit(&stats, 1, 0, &totals, d);
    assert!(
        matches!(refused, Err(PlanRefusal::ForeignKind { .. })),
        "{refused:?}"
    );
    // ... the registered job never computes a stats round, nor a tag no job declares.
    let refused = RoundPlan::default().admit(
        &above,
        1,
        0,
        &fedbank_common::job::stats::moments_round(),
        d,
    );
    assert!(
        matches!(refused, Err(PlanRefusal::ForeignKind { .. })),
        "{refused:?}"
    );
    let unknown = RoundKind::Registered(JobRound {
        tag: RoundTag(0x1fff),
        parameters: vec![],
    });
    let refused = RoundPlan::default().admit(&above, 1, 0, &unknown, d);
    assert!(
        matches!(refused, Err(PlanRefusal::ForeignKind { .. })),
        "{refused:?}"
    );
    assert!(RoundPlan::default().admit(&above, 1, 0, &totals, d).is_ok());
    // A round whose parameters are not the job's record has no plan, with the reason.
    let garbage = RoundKind::Registered(JobRound {
        tag: ABOVE,
        parameters: vec![1, 2, 3],
    });
    let err = above.plan(&garbage).expect_err("garbage parameters");
    assert!(err.to_string().contains("above_mean.above"), "{err}");
    let wrong =
        RoundKind::Registered(JobRound::new(ABOVE, &Means { means: vec![1.0] }).expect("round"));
    let err = above.plan(&wrong).expect_err("one mean for two features");
    assert!(err.to_string().contains("1 means for 2 features"), "{err}");
}

#[test]
fn a_job_file_names_the_registered_kind_and_an_unknown_kind_is_refused_by_name() {
    let spec = spec(KIND, 3).expect("job file");
    assert_eq!(spec.kind, JobKind::Registered(KIND));
    assert_eq!(spec.kind.name(), KIND);
    let err = self::spec("above-median", 3).expect_err("unknown kind");
    let text = err.to_string();
    assert!(text.contains("unknown job kind 'above-median'"), "{text}");
    assert!(
        text.contains(KIND),
        "the message lists the registered kinds: {text}"
    );
    // The kind's own checks run at validation, after the shared ones, and their refusal names
    // the kind.
    let mut alone = self::spec(KIND, 3).expect("job file");
    alone.min_participants = 1;
    let text = alone.validate().expect_err("one contributor").to_string();
    assert!(
        text.contains("kind 'above-mean'") && text.contains("set at least 2"),
        "{text}"
    );
    #[derive(serde::Deserialize)]
    struct File {
        job: JobSpec,
    }
    let with_segment = format!("{}\n[job.segment]\nk = 2\n", job_file(KIND, 3));
    let text = toml::from_str::<File>(&with_segment)
        .expect("job file")
        .job
        .validate()
        .expect_err("a segment table in an above-mean job")
        .to_string();
    assert!(text.contains("this job's kind is \"above-mean\""), "{text}");
    // Its rounds' quantities are checked under the profile when the job is validated, and
    // its widest round counts in the job's message limit.
    let job = job(3);
    assert!(job.max_message_bytes() > 0);
    assert!(job
        .plan(&RoundKind::Registered(
            JobRound::new(TOTALS, &()).expect("round")
        ))
        .is_ok());
}

/// The kind's own `[job.settings]` table reaches its participants' step and is part of the job's
/// digest; a table that is not the kind's shape, or one given to a kind that reads none, is
/// refused with the table named.
#[test]
fn a_kinds_own_settings_reach_its_step_and_its_digest() {
    #[derive(serde::Deserialize)]
    struct File {
        job: JobSpec,
    }
    let parse = |text: &str| {
        toml::from_str::<File>(text)
            .map(|f| f.job)
            .expect("job file")
    };
    let with =
        |kind: &str, settings: &str| format!("{}\n[job.settings]\n{settings}\n", job_file(kind, 3));
    let inclusive = parse(&with(KIND, "inclusive = true"))
        .validate()
        .expect("valid");
    let strict = job(3);
    assert_ne!(inclusive.digest(), strict.digest());
    // Every customer is 30: none is above the mean age, and every one is at it.
    let mut tables = tables(3);
    for t in &mut tables {
        t.columns.insert("age".to_owned(), vec![Some(30.0); t.rows]);
    }
    let customers: f64 = tables.iter().map(|t| t.rows as f64).sum();
    for (job, want) in [(&strict, 0.0), (&inclusive, customers)] {
        let (status, progress) = federated(job, tables.clone());
        let Status::Finished(result) = status else {
            panic!("job did not finish: {status:?}; {progress:?}")
        };
        let result: AboveMeanResult = result.released(KIND).expect("its record");
        let age = &result.features[1];
        assert_eq!((age.name.as_str(), age.mean), ("age", 30.0));
        assert_eq!(age.above, want);
    }
    let typo = parse(&with(KIND, "inclusiv = true"))
        .validate()
        .expect_err("an unknown setting");
    assert!(typo.to_string().contains("[job.settings]"), "{typo}");
    let stats = parse(&with("stats", "inclusive = true"))
        .validate()
        .expect_err("a stats job reads no settings");
    assert!(
        stats.to_string().contains("takes no [job.settings] table"),
        "{stats}"
    );
}
