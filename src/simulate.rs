//! `fedbank simulate`: a whole consortium on this machine — a development CA and certificates,
//! seeded synthetic data per institution, the coordinator and every participant (the committee
//! among them) as separate nodes talking real QUIC with mutual TLS over 127.0.0.1 — then the
//! result, every node's audit trail, their verification and cross-check, and a summary.

use crate::config::load_job;
use crate::nodes::{self, credentials, load_table, write_result, Progress};
use anyhow::{bail, Context, Result};
use clap::Args;
use fedbank_common::audit::{cross_check, verify};
use fedbank_common::ids::NodeId;
use fedbank_coordinator::{JobResult, Status};
use fedbank_participant::synthetic::{self, InstitutionKind};
use fedbank_participant::NodeStatus;
use fedbank_transport::nodes::{ParticipantSettings, TrailSettings};
use fedbank_transport::pki::ConsortiumCa;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

/// The job `fedbank simulate` runs when none is given.
pub const DEFAULT_JOB: &str = "configs/simulate-stats.toml";

/// Options of `fedbank simulate`.
#[derive(Args, Debug)]
pub struct SimulateArgs {
    /// Job file with a [simulation] table.
    #[arg(long, default_value = DEFAULT_JOB)]
    job: PathBuf,
    /// Output directory (default: runs/<job id>-<unix time>); must not exist yet.
    #[arg(long)]
    out: Option<PathBuf>,
}

/// Runs the simulation and prints progress and a summary.
pub fn run(args: &SimulateArgs) -> Result<()> {
    let (job, simulation) = load_job(&args.job)?;
    let Some(sim) = simulation else {
        bail!(
            "{}: a job file for `fedbank simulate` needs a [simulation] table",
            args.job.display()
        );
    };
    let spec = job.spec().clone();
    let out = args.out.clone().unwrap_or_else(|| {
        let secs = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        PathBuf::from("runs").join(format!("{}-{secs}", spec.job))
    });
    if out.exists()
        && std::fs::read_dir(&out)
            .map(|mut d| d.next().is_some())
            .unwrap_or(true)
    {
        bail!(
            "{} already exists and is not empty; choose another --out",
            out.display()
        );
    }
    let started = Instant::now();
    let say = move |line: String| println!("[{:>6.2}s] {line}", started.elapsed().as_secs_f64());
    say(format!(
        "job {} ({}, profile {}): {} participants, committee {:?}, min {} per aggregate",
        spec.job,
        "stats",
        spec.profile,
        spec.participants.len(),
        spec.committee
            .iter()
            .map(|c| c.as_str())
            .collect::<Vec<_>>(),
        spec.min_participants
    ));

    // Certificates.
    let certs = out.join("certs");
    let ca = ConsortiumCa::create(&certs).context("creating the consortium CA")?;
    for node in std::iter::once(&sim.coordinator).chain(&spec.participants) {
        ca.issue(node, 30)
            .with_context(|| format!("certificate of {node}"))?;
    }
    say(format!("certificates: {}", certs.display()));

    // Data: a shared transaction log split across the institutions, or synthetic customers.
    let data = match &sim.transactions {
        Some(log) => split_transactions(log, &out, &spec.participants, &sim.split, &say)?,
        None => synthetic_data(&out, &spec.participants, &sim, &args.job, &say)?,
    };

    // Nodes.
    let trails = out.join("trails");
    std::fs::create_dir_all(&trails)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let progress: Progress = Arc::new(move |line: String| say(line));
    let job_started = Instant::now();
    let (status, node_results, pooled) = runtime.block_on(async {
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
        let (creds, identity) = credentials(&certs, &sim.coordinator)?;
        let settings = nodes::coordinator_settings(
            job.clone(),
            sim.coordinator.clone(),
            creds,
            identity,
            "127.0.0.1:0".parse()?,
            trails.join(format!("{}.trail", sim.coordinator)),
        );
        let coordinator = tokio::spawn(nodes::coordinator(
            settings,
            Some(ready_tx),
            progress.clone(),
        ));
        let addr = ready_rx.await.context("the coordinator did not start")?;
        progress(format!(
            "coordinator {} listening on {addr}",
            sim.coordinator
        ));
        let mut participants = Vec::new();
        let mut pooled = Vec::new();
        for (node, path) in spec.participants.iter().zip(&data) {
            let (creds, identity) = credentials(&certs, node)?;
            let (table, row_ids) = load_table(&job, path)?;
            pooled.push(table.clone());
            let settings = ParticipantSettings {
                id: node.clone(),
                job: job.clone(),
                table,
                creds,
                coordinator: (addr, sim.coordinator.clone()),
                trail: TrailSettings {
                    path: trails.join(format!("{node}.trail")),
                    identity,
                },
                connect_attempts: 50,
                assignments: Some(path.with_file_name("segments.csv")),
                row_ids,
            };
            participants.push((
                node.clone(),
                tokio::spawn(nodes::participant(settings, progress.clone())),
            ));
        }
        let status = coordinator.await.context("coordinator task")??;
        let mut results = Vec::new();
        for (node, handle) in participants {
            results.push((node, handle.await.context("participant task")?));
        }
        anyhow::Ok((status, results, pooled))
    })?;
    let federated_seconds = job_started.elapsed().as_secs_f64();

    // Results, trails, summary.
    let result = write_result(&out, &job, &status);
    let mut summary = String::new();
    let _ = writeln!(
        summary,
        "fedbank simulation of job {} ({} s)",
        spec.job,
        started.elapsed().as_secs()
    );
    for (node, r) in &node_results {
        let state = match r {
            Ok(NodeStatus::Finished) => "finished".to_owned(),
            Ok(NodeStatus::Aborted(reason)) => format!("aborted: {reason}"),
            Ok(NodeStatus::Running) => "disconnected".to_owned(),
            Err(e) => format!("error: {e:#}"),
        };
        let _ = writeln!(summary, "  {node}: {state}");
    }
    let coordinator_trail = trails.join(format!("{}.trail", sim.coordinator));
    let verification = verify_trails(&coordinator_trail, &trails);
    let _ = writeln!(summary, "audit: {verification}");
    if let Status::Finished(JobResult::Stats(features)) = &status {
        let _ = writeln!(
            summary,
            "{:<18} {:>10} {:>8} {:>14} {:>14} {:>12} {:>12} {:>12}",
            "feature", "count", "missing", "mean", "std", "p25", "p50", "p75"
        );
        for f in features {
            let _ = writeln!(
                summary,
                "{:<18} {:>10} {:>7.1}% {:>14.2} {:>14.2} {:>12.2} {:>12.2} {:>12.2}",
                f.name,
                f.count,
                100.0 * f.missing_rate,
                f.mean,
                f.std,
                f.quantiles["p25"],
                f.quantiles["p50"],
                f.quantiles["p75"]
            );
        }
    }
    if let Status::Finished(JobResult::Segment(r)) = &status {
        let _ = writeln!(
            summary,
            "k = {}, {} iterations, inertia {:.2}",
            r.k, r.iterations, r.inertia
        );
        for seg in &r.segments {
            let _ = writeln!(
                summary,
                "  {:<24} {:>8} customers  original {:?}",
                seg.label,
                seg.size,
                seg.centroid_original
                    .iter()
                    .map(|v| (v * 100.0).round() / 100.0)
                    .collect::<Vec<_>>()
            );
        }
        for note in &r.merged_for_k_anonymity {
            let _ = writeln!(summary, "  {note}");
        }
        if let Some(lifecycle) = &r.lifecycle {
            let stages: Vec<String> = lifecycle
                .iter()
                .map(|(s, n)| format!("{s} {}", n.map_or("withheld".to_owned(), |n| n.to_string())))
                .collect();
            let _ = writeln!(summary, "lifecycle: {}", stages.join(", "));
        }
        let clock = Instant::now();
        let (iterations, inertia) = centralized_lloyd(&pooled, &job);
        let central = clock.elapsed().as_secs_f64();
        let _ = writeln!(
            summary,
            "speed: federated over QUIC ({} profile, {} institutions, stats + {} Lloyd rounds) {federated_seconds:.2} s; \
             centralized in-process on the pooled rows (the limit) {central:.3} s, {iterations} iterations, inertia {inertia:.2}; \
             ratio {:.0}×",
            spec.profile,
            spec.participants.len(),
            r.iterations,
            federated_seconds / central.max(1e-9)
        );
    }
    let _ = writeln!(summary, "output: {}", out.display());
    std::fs::write(out.join("summary.txt"), &summary)?;
    println!("\n{summary}");
    result.map(|_| ())
}

fn verify_trails(coordinator: &Path, dir: &Path) -> String {
    let main = match verify(coordinator, None) {
        Ok(r) => r,
        Err(e) => return format!("coordinator trail FAILED verification: {e}"),
    };
    let mut others = Vec::new();
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    paths.sort();
    for path in paths.iter().filter(|p| p.as_path() != coordinator) {
        match verify(path, None) {
            Ok(r) => others.push(r),
            Err(e) => return format!("{} FAILED verification: {e}", path.display()),
        }
    }
    let findings = cross_check(&main, &others);
    if findings.is_empty() {
        format!(
            "{} trails verified; the coordinator's records agree with every node's own",
            others.len() + 1
        )
    } else {
        format!(
            "{} cross-check differences: {}",
            findings.len(),
            findings
                .iter()
                .map(|f| f.to_string())
                .collect::<Vec<_>>()
                .join("; ")
        )
    }
}

fn synthetic_data(
    out: &Path,
    participants: &[NodeId],
    sim: &crate::config::SimulationSpec,
    job_file: &Path,
    say: &dyn Fn(String),
) -> Result<Vec<PathBuf>> {
    let mut data = Vec::new();
    for (i, node) in participants.iter().enumerate() {
        let customers = *sim.customers.get(node.as_str()).with_context(|| {
            format!(
                "{}: [simulation.customers] has no entry for {node}",
                job_file.display()
            )
        })?;
        let kind = InstitutionKind::nth(i);
        let files = synthetic::generate(
            &out.join("data").join(node.as_str()),
            &node.as_str().to_uppercase(),
            kind,
            customers,
            sim.seed ^ (i as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15),
        )
        .with_context(|| format!("generating data for {node}"))?;
        say(format!(
            "{node}: {customers} synthetic customers ({kind:?}) in {}",
            files.customers.display()
        ));
        data.push(files.customers);
    }
    Ok(data)
}

/// Deals the customers of a shared transaction log to the participants in the `split`
/// proportions (whole customers, in order of first appearance), one file per participant.
fn split_transactions(
    log: &Path,
    out: &Path,
    participants: &[NodeId],
    split: &std::collections::BTreeMap<String, u32>,
    say: &dyn Fn(String),
) -> Result<Vec<PathBuf>> {
    let text =
        std::fs::read_to_string(log).with_context(|| format!("reading {}", log.display()))?;
    let mut lines = text.lines();
    let header = lines
        .next()
        .with_context(|| format!("{}: empty", log.display()))?;
    let weights: Vec<u32> = participants
        .iter()
        .map(|p| split.get(p.as_str()).copied().unwrap_or(1).max(1))
        .collect();
    let total: u32 = weights.iter().sum();
    let mut owner: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
    let mut files: Vec<String> = participants.iter().map(|_| format!("{header}\n")).collect();
    let mut customers = vec![0usize; participants.len()];
    for line in lines {
        let customer = line.split(',').next().unwrap_or("");
        let next = owner.len();
        let p = *owner.entry(customer).or_insert_with(|| {
            // Deal customer number `next` by its position within a cycle of `total` slots.
            let slot = (next as u32) % total;
            let mut acc = 0;
            weights
                .iter()
                .position(|w| {
                    acc += w;
                    slot < acc
                })
                .unwrap_or(0)
        });
        if owner.len() > next {
            customers[p] += 1;
        }
        files[p].push_str(line);
        files[p].push('\n');
    }
    let mut paths = Vec::new();
    for ((node, content), n) in participants.iter().zip(files).zip(customers) {
        let dir = out.join("data").join(node.as_str());
        std::fs::create_dir_all(&dir)?;
        let path = dir.join("transactions.csv");
        std::fs::write(&path, content)?;
        say(format!(
            "{node}: {n} customers of {} in {}",
            log.display(),
            path.display()
        ));
        paths.push(path);
    }
    Ok(paths)
}

/// The same segmentation done centralized on the pooled rows: standardize with the pooled mean
/// and standard deviation, then Lloyd from the job's initial centroids to its tolerance. Returns
/// the iterations and the last inertia.
fn centralized_lloyd(
    tables: &[fedbank_participant::LocalTable],
    job: &fedbank_common::job::ValidJob,
) -> (u32, f64) {
    use fedbank_participant::local_stats::{nearest, standardize};
    let Some(segment) = job.segment() else {
        return (0, 0.0);
    };
    let features = &job.spec().features;
    let rows: Vec<Vec<f64>> = tables
        .iter()
        .flat_map(|t| {
            (0..t.rows).filter_map(move |r| {
                features
                    .iter()
                    .map(|f| {
                        t.columns
                            .get(&f.name)
                            .and_then(|c| c[r])
                            .map(|v| v.clamp(f.lower(), f.bound))
                    })
                    .collect::<Option<Vec<f64>>>()
            })
        })
        .collect();
    let d = features.len();
    let n = rows.len() as f64;
    let (mean, std): (Vec<f64>, Vec<f64>) = (0..d)
        .map(|j| {
            fedbank_coordinator::stats::mean_std(
                n,
                rows.iter().map(|r| r[j]).sum(),
                rows.iter().map(|r| r[j] * r[j]).sum(),
            )
        })
        .unzip();
    let z: Vec<Vec<f64>> = rows
        .iter()
        .map(|r| (0..d).map(|j| standardize(r[j], mean[j], std[j])).collect())
        .collect();
    let mut centroids = segment.initial_centroids.clone();
    let mut iterations = 0;
    loop {
        let mut sums = vec![vec![0.0; d]; centroids.len()];
        let mut counts = vec![0.0; centroids.len()];
        let mut inertia = 0.0;
        for row in &z {
            let (c, dist) = nearest(row, &centroids);
            counts[c] += 1.0;
            inertia += dist;
            for j in 0..d {
                sums[c][j] += row[j];
            }
        }
        let mut shift: f64 = 0.0;
        for c in 0..centroids.len() {
            if counts[c] > 0.0 {
                for j in 0..d {
                    let v = sums[c][j] / counts[c];
                    shift = shift.max((v - centroids[c][j]).abs());
                    centroids[c][j] = v;
                }
            }
        }
        iterations += 1;
        if shift <= segment.tolerance || iterations >= segment.max_iterations {
            return (iterations, inertia);
        }
    }
}
