//! `fedbank simulate`: a whole consortium on this machine — a development CA and certificates,
//! seeded synthetic data per institution, the coordinator and every participant (the committee
//! among them) as separate nodes talking real QUIC with mutual TLS over 127.0.0.1 — then the
//! result, every node's audit trail, their verification and cross-check, and a summary.

use crate::config::load_job;
use crate::impaired_link::{ImpairedLink, LinkProfile};
use crate::launch::{self, credentials, load_data, write_result, Progress};
use anyhow::{bail, Context, Result};
use fedbank_common::audit::{cross_check, verify};
use fedbank_common::ids::NodeId;
use fedbank_common::job::compliance::{self, ComplianceResult};
use fedbank_common::job::propensity::{self, PropensityResult};
use fedbank_common::job::segment::{self, SegmentResult};
use fedbank_common::job::stats::{self, StatsResult};
use fedbank_common::job::Optimizer;
use fedbank_coordinator::{ResultFile, Status};
use fedbank_participant::synthetic::{self, InstitutionKind};
use fedbank_participant::NodeStatus;
use fedbank_transport::auditor_shell::AuditorSettings;
use fedbank_transport::nodes::{LocalOutputs, ParticipantSettings, TrailSettings};
use fedbank_transport::pki::ConsortiumCa;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

/// The job `fedbank simulate` runs when none is given.
pub const DEFAULT_JOB: &str = "configs/simulate-stats.toml";

/// What to simulate.
#[derive(Clone, Debug)]
pub struct SimulateOptions {
    /// Job file with a [simulation] table.
    pub job: PathBuf,
    /// Output directory (default: runs/<job id>-<unix time>); must not exist yet.
    pub out: Option<PathBuf>,
    /// Every node (participant, auditor) reaches the coordinator through its own impaired link
    /// with these figures; `None` for plain loopback.
    pub link: Option<LinkProfile>,
    /// Print only the summary, not every node's progress.
    pub quiet: bool,
}

impl SimulateOptions {
    /// A simulation of `job` into `out` on plain loopback, printing progress.
    pub fn new(job: PathBuf, out: Option<PathBuf>) -> Self {
        Self {
            job,
            out,
            link: None,
            quiet: false,
        }
    }
}

/// What a finished simulation measured.
#[derive(Clone, Debug)]
pub struct SimulationRun {
    /// Where its files are.
    pub out: PathBuf,
    /// Wall time from the first node's start to the last node's end.
    pub federated_seconds: f64,
    /// Whether the job finished (rather than failed).
    pub finished: bool,
}

/// Runs the simulation and prints progress and a summary.
pub fn run(args: &SimulateOptions) -> Result<SimulationRun> {
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
    let quiet = args.quiet;
    let say = move |line: String| {
        if !quiet {
            println!("[{:>6.2}s] {line}", started.elapsed().as_secs_f64());
        }
    };
    say(format!(
        "job {} ({}, profile {}): {} participants, committee {:?}, min {} per aggregate",
        spec.job,
        spec.kind.name(),
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
    for node in std::iter::once(&sim.coordinator)
        .chain(&spec.participants)
        .chain(spec.auditor.as_ref())
    {
        ca.issue(node, 30)
            .with_context(|| format!("certificate of {node}"))?;
    }
    say(format!("certificates: {}", certs.display()));

    // Data: a shared transaction log split across the institutions, or synthetic customers.
    let data = match sim.transactions.as_ref().or(sim.customers_table.as_ref()) {
        Some(log) => split_transactions(log, &out, &spec.participants, &sim.split, &say)?
            .into_iter()
            .map(|p| (p, None))
            .collect(),
        None => synthetic_data(
            &out,
            &spec.participants,
            &sim,
            &args.job,
            SyntheticInput::of(&job),
            &say,
        )?,
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
    let (status, node_results, pooled, auditor) = runtime.block_on(async {
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
        let (creds, identity) = credentials(&certs, &sim.coordinator)?;
        let settings = launch::coordinator_settings(
            job.clone(),
            sim.coordinator.clone(),
            creds,
            identity,
            "127.0.0.1:0".parse()?,
            (
                trails.join(format!("{}.trail", sim.coordinator)),
                out.join(format!("{}.checkpoint.json", sim.coordinator)),
            ),
        );
        let coordinator = tokio::spawn(launch::coordinator(
            settings,
            Some(ready_tx),
            progress.clone(),
        ));
        let addr = ready_rx.await.context("the coordinator did not start")?;
        progress(format!(
            "coordinator {} listening on {addr}",
            sim.coordinator
        ));
        // Each node's own impaired link to the coordinator, held until the job ends.
        let mut links = Vec::new();
        let mut route = async |_node: &NodeId| -> Result<std::net::SocketAddr> {
            let Some(profile) = args.link else {
                return Ok(addr);
            };
            let link = ImpairedLink::start(addr, profile)
                .await
                .context("starting an impaired link")?;
            let relay = link.addr();
            links.push(link);
            Ok(relay)
        };
        let auditor = match &spec.auditor {
            Some(id) => {
                let (creds, identity) = credentials(&certs, id)?;
                let clock = Instant::now();
                let keys = launch::auditor_keys().await?;
                progress(format!(
                    "auditor {id}: alert keys generated in {:.2} s",
                    clock.elapsed().as_secs_f64()
                ));
                let settings = AuditorSettings {
                    id: id.clone(),
                    job: job.clone(),
                    keys,
                    creds,
                    coordinator: (route(id).await?, sim.coordinator.clone()),
                    trail: TrailSettings {
                        path: trails.join(format!("{id}.trail")),
                        identity,
                    },
                    connect_attempts: 50,
                };
                Some(tokio::spawn(launch::auditor(settings, progress.clone())))
            }
            None => None,
        };
        let mut participants = Vec::new();
        let mut pooled = Vec::new();
        for (node, (path, consent)) in spec.participants.iter().zip(&data) {
            let (creds, identity) = credentials(&certs, node)?;
            let data = load_data(&job, path, consent.as_deref())?;
            let commitment = launch::data_commitment(path, consent.as_deref(), &data)?;
            pooled.push(data.clone());
            let settings = ParticipantSettings {
                id: node.clone(),
                job: job.clone(),
                data,
                creds,
                coordinator: (route(node).await?, sim.coordinator.clone()),
                trail: TrailSettings {
                    path: trails.join(format!("{node}.trail")),
                    identity,
                },
                connect_attempts: 50,
                local: LocalOutputs {
                    assignments: Some(path.with_file_name("segments.csv")),
                    model: Some(path.with_file_name("model.json")),
                    figures: Some(path.with_file_name("local-figures.json")),
                    compliance_report: Some(path.with_file_name("compliance-report.json")),
                    member_state: Some(path.with_file_name("committee")),
                },
                data_commitment: Some(commitment),
            };
            participants.push((
                node.clone(),
                tokio::spawn(launch::participant(settings, progress.clone())),
            ));
        }
        let status = coordinator.await.context("coordinator task")??;
        let mut results = Vec::new();
        for (node, handle) in participants {
            results.push((node, handle.await.context("participant task")?));
        }
        let auditor = match auditor {
            Some(handle) => Some(handle.await.context("auditor task")?),
            None => None,
        };
        drop(links);
        anyhow::Ok((status, results, pooled, auditor))
    })?;
    let federated_seconds = job_started.elapsed().as_secs_f64();

    // Results, trails, summary.
    let result = write_result(
        &out,
        &job,
        &status,
        &trails.join(format!("{}.trail", sim.coordinator)),
    );
    let mut summary = String::new();
    let _ = writeln!(
        summary,
        "fedbank simulation of job {} ({} s)",
        spec.job,
        started.elapsed().as_secs()
    );
    for (node, r) in &node_results {
        let state = match r {
            Ok(outcome) => {
                let state = match &outcome.status {
                    NodeStatus::Finished => "finished".to_owned(),
                    NodeStatus::Aborted(reason) => format!("aborted: {reason}"),
                    NodeStatus::Running => "disconnected".to_owned(),
                };
                format!(
                    "{state}; sent {} messages, {} bytes framed, {} UDP bytes with QUIC and TLS",
                    outcome.messages_sent, outcome.bytes_sent, outcome.udp_bytes_sent
                )
            }
            Err(e) => format!("error: {e:#}"),
        };
        let _ = writeln!(summary, "  {node}: {state}");
    }
    match &auditor {
        Some(Ok(outcome)) => {
            let _ = writeln!(
                summary,
                "  auditor: {:?}; sent {} bytes framed (its evaluation key); decrypted {}",
                outcome.status,
                outcome.bytes_sent,
                outcome
                    .counts
                    .as_ref()
                    .map_or("nothing".to_owned(), |c| format!(
                        "{} per-rule counts",
                        c.len()
                    ))
            );
        }
        Some(Err(e)) => {
            let _ = writeln!(summary, "  auditor: error: {e:#}");
        }
        None => {}
    }
    let coordinator_trail = trails.join(format!("{}.trail", sim.coordinator));
    let verification = verify_trails(&coordinator_trail, &trails);
    let _ = writeln!(summary, "audit: {verification}");
    let stats = match &status {
        Status::Finished(result) => result.released::<StatsResult>(stats::KIND),
        _ => None,
    };
    if let Some(stats) = stats {
        let _ = writeln!(
            summary,
            "{:<18} {:>10} {:>8} {:>14} {:>14} {:>12} {:>12} {:>12}",
            "feature", "count", "missing", "mean", "std", "p25", "p50", "p75"
        );
        // In the job file's feature order.
        let features = job
            .spec()
            .features
            .iter()
            .filter_map(|f| stats.features.get(&f.name));
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
    let segments = match &status {
        Status::Finished(result) => result.released::<SegmentResult>(segment::KIND),
        _ => None,
    };
    if let Some(r) = &segments {
        let _ = writeln!(
            summary,
            "k = {}, {} iterations, inertia {:.2}; initialization: {}",
            r.k, r.iterations, r.inertia, r.initialization
        );
        if let Some(reference) = &r.reference_date {
            let _ = writeln!(summary, "recency counted to {reference}");
        }
        if let Some(selection) = &r.k_selection {
            let figures: Vec<String> = selection
                .candidates
                .iter()
                .map(|c| {
                    format!(
                        "k={} inertia {:.1} silhouette {:.3}",
                        c.k, c.inertia, c.silhouette
                    )
                })
                .collect();
            let _ = writeln!(
                summary,
                "k chosen by {:?}: {} ({})",
                selection.criterion,
                selection.chosen,
                figures.join("; ")
            );
        }
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
        let pooled = crate::pooled::segment(&job, &pooled);
        let central = clock.elapsed().as_secs_f64();
        match pooled {
            Ok(p) => {
                let _ = writeln!(
                    summary,
                    "speed: federated over QUIC ({} profile, {} institutions, every round of the job, {} Lloyd rounds) {federated_seconds:.2} s; \
                     the same job logic in-process on the pooled rows with plaintext sums (the limit) {central:.3} s, {} Lloyd rounds, inertia {:.2} (federated {:.2}); \
                     ratio {:.0}×",
                    spec.profile,
                    spec.participants.len(),
                    r.iterations,
                    p.iterations,
                    p.inertia,
                    r.inertia,
                    federated_seconds / central.max(1e-9)
                );
            }
            Err(e) => {
                let _ = writeln!(summary, "speed: the pooled baseline failed: {e:#}");
            }
        }
    }
    let propensity = match &status {
        Status::Finished(result) => result.released::<PropensityResult>(propensity::KIND),
        _ => None,
    };
    if let Some(r) = &propensity {
        let _ = writeln!(
            summary,
            "propensity: {} {} rounds ({}), hold-out AUC {} (± {:.4}), log-loss {:.4}, accuracy {:.1}%, top-decile lift {:.2}",
            r.rounds,
            optimizer_name(r.optimizer),
            if r.converged { "converged" } else { "max_rounds" },
            r.auc.map_or("n/a".to_owned(), |a| format!("{a:.4}")),
            r.auc_resolution,
            r.log_loss,
            100.0 * r.accuracy,
            r.deciles.first().map_or(0.0, |d| d.lift)
        );
        if let Some(dp) = &r.privacy {
            let _ = writeln!(
                summary,
                "differential privacy: ε = {:.4} spent of the budget {} (δ = {:e}, ρ = {:.5}), noise multiplier {:.3}, rows clipped to norm {}{}",
                dp.epsilon_spent,
                dp.epsilon_budget,
                dp.delta,
                dp.rho_spent,
                dp.noise_multiplier,
                dp.clip_norm,
                if dp.stopped_by_budget { "; the budget stopped training" } else { "" }
            );
        }
        let clock = Instant::now();
        match crate::pooled::propensity(&job, &pooled) {
            Ok((rounds, auc)) => {
                let central = clock.elapsed().as_secs_f64();
                let job_rounds = r.rounds + 3;
                let _ = writeln!(
                    summary,
                    "speed: federated over QUIC ({} profile, {} institutions) {federated_seconds:.2} s for {job_rounds} rounds \
                     ({:.3} s per round: moments, classes, {} {}, evaluation); centralized Newton in-process on the pooled rows \
                     (the limit) {central:.3} s, {rounds} rounds, hold-out AUC {}; ratio {:.0}×",
                    spec.profile,
                    spec.participants.len(),
                    federated_seconds / f64::from(job_rounds),
                    r.rounds,
                    optimizer_name(r.optimizer),
                    auc.map_or("n/a".to_owned(), |a| format!("{a:.4}")),
                    federated_seconds / central.max(1e-9)
                );
            }
            Err(e) => {
                let _ = writeln!(summary, "speed: the pooled baseline failed: {e:#}");
            }
        }
        // Each institution's own figures, as its node computed them from the released model on
        // its own hold-out customers (and kept in its own local-figures.json).
        let mut figures = std::collections::BTreeMap::new();
        for (node, outcome) in &node_results {
            let Ok(outcome) = outcome else { continue };
            let mut entry = serde_json::json!({
                "messages_sent": outcome.messages_sent,
                "bytes_sent": outcome.bytes_sent,
                "udp_bytes_sent": outcome.udp_bytes_sent,
            });
            if let Some(f) = &outcome.figures {
                let show = |a: Option<f64>| a.map_or("n/a".to_owned(), |a| format!("{a:.4}"));
                let _ = writeln!(
                    summary,
                    "  {node}: {} hold-out customers, AUC of its own model {} vs the federated model {}",
                    f.holdout_customers,
                    show(f.local_only_auc),
                    show(f.federated_auc)
                );
                if let (serde_json::Value::Object(e), serde_json::Value::Object(more)) =
                    (&mut entry, serde_json::to_value(f)?)
                {
                    e.extend(more);
                }
            }
            if let serde_json::Value::Object(entry) = entry {
                figures.insert(node.to_string(), entry.into_iter().collect());
            }
        }
        let path = out.join("result.json");
        if let Ok(text) = std::fs::read_to_string(&path) {
            let mut file = ResultFile::from_json(&text)
                .with_context(|| format!("reading {}", path.display()))?;
            file.per_participant = Some(figures);
            std::fs::write(&path, file.to_json()?)
                .with_context(|| format!("writing {}", path.display()))?;
        }
    }
    let compliance = match &status {
        Status::Finished(result) => result.released::<ComplianceResult>(compliance::KIND),
        _ => None,
    };
    if let Some(c) = compliance {
        crate::reports::compliance::write(&mut summary, &c, federated_seconds);
    }
    let _ = writeln!(summary, "output: {}", out.display());
    std::fs::write(out.join("summary.txt"), &summary)?;
    if !args.quiet {
        println!("\n{summary}");
    }
    let finished = matches!(status, Status::Finished(_));
    // The files as they stay (with the simulation's per-institution figures) are bound to the
    // coordinator's trail.
    let files = result?;
    let (_, identity) = credentials(&certs, &sim.coordinator)?;
    let trail = TrailSettings {
        path: trails.join(format!("{}.trail", sim.coordinator)),
        identity,
    };
    launch::bind_to_trail(&out, &job, &files, (&sim.coordinator, trail))?;
    Ok(SimulationRun {
        out,
        federated_seconds,
        finished,
    })
}

/// How the summary names a training round of `optimizer`.
fn optimizer_name(optimizer: Optimizer) -> &'static str {
    match optimizer {
        Optimizer::FedAvg => "FedAvg",
        Optimizer::Newton => "Newton",
    }
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
    let findings: Vec<_> = cross_check(&main, &others)
        .into_iter()
        .filter(|f| f.disagrees())
        .collect();
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

/// Which generated file a job reads.
#[derive(Clone, Copy, PartialEq, Eq)]
enum SyntheticInput {
    Customers,
    Transactions,
    ContactsAndConsent,
}

impl SyntheticInput {
    fn of(job: &fedbank_common::job::ValidJob) -> Self {
        if job.compliance().is_some() {
            Self::ContactsAndConsent
        } else if job.segment().is_some_and(|s| s.transactions.is_some()) {
            Self::Transactions
        } else {
            Self::Customers
        }
    }
}

/// Generates each participant's synthetic files; the data file each reads, with its consent
/// table for a compliance job.
fn synthetic_data(
    out: &Path,
    participants: &[NodeId],
    sim: &crate::config::SimulationSpec,
    job_file: &Path,
    input: SyntheticInput,
    say: &dyn Fn(String),
) -> Result<Vec<(PathBuf, Option<PathBuf>)>> {
    let mut data = Vec::new();
    for (i, node) in participants.iter().enumerate() {
        let customers = *sim.customers.get(node.as_str()).with_context(|| {
            format!(
                "{}: [simulation.customers] has no entry for {node}",
                job_file.display()
            )
        })?;
        let kind = InstitutionKind::for_name(node.as_str(), i);
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
        data.push(match input {
            SyntheticInput::Transactions => (files.transactions, None),
            SyntheticInput::Customers => (files.customers, None),
            SyntheticInput::ContactsAndConsent => (files.contacts, Some(files.consent)),
        });
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
        let path = dir.join(log.file_name().unwrap_or(std::ffi::OsStr::new("data.csv")));
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
