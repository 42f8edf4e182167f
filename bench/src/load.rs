//! `fedbank bench load`: a loopback load run of many participants against one coordinator
//! process, measuring what limits the coordinator — wall time per round, the coordinator's peak
//! memory, bytes received — with a smaller consortium in the same run as the baseline.
//!
//! The coordinator is a real `fedbank coordinator` child process (so that its peak memory is its
//! own); the participants run in this process, each a QUIC endpoint with its own certificate.
//! Jobs: a stats job whose histogram round carries features × (bins + 2) values per
//! contribution (10^5 by default), and a segmentation (k-means) job.

use anyhow::{bail, Context, Result};
use clap::Args;
use fedbank_common::ids::NodeId;
use fedbank_consortium::launch::{self, credentials, Progress};
use fedbank_participant::{LocalData, LocalTable};
use fedbank_transport::nodes::{LocalOutputs, ParticipantSettings, TrailSettings};
use fedbank_transport::pki::ConsortiumCa;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

/// Options of `fedbank bench load`.
#[derive(Args, Debug)]
pub struct LoadArgs {
    /// Participants of the load run.
    #[arg(long, default_value_t = 100)]
    participants: usize,
    /// Participants of the baseline run (same job, same sizes).
    #[arg(long, default_value_t = 10)]
    baseline: usize,
    /// Committee members.
    #[arg(long, default_value_t = 3)]
    committee: usize,
    /// Numeric features of the stats job.
    #[arg(long, default_value_t = 100)]
    features: usize,
    /// Histogram bins per feature (features × (bins + 2) values per contribution).
    #[arg(long, default_value_t = 998)]
    bins: usize,
    /// Customers per participant.
    #[arg(long, default_value_t = 200)]
    rows: usize,
    /// Crypto profile.
    #[arg(long, default_value = "strict")]
    profile: String,
    /// Working directory (default: a temporary one, removed afterwards).
    #[arg(long)]
    dir: Option<PathBuf>,
}

/// One job's figures.
struct Run {
    participants: usize,
    job: &'static str,
    rounds: Vec<(String, f64)>,
    values: usize,
    seconds: f64,
    peak_mb: Option<f64>,
    bytes_received: u64,
}

fn job_file(kind: &str, args: &LoadArgs, n: usize) -> String {
    let participants: Vec<String> = (0..n).map(|i| format!("\"p{i:03}\"")).collect();
    let committee: Vec<String> = (0..args.committee.min(n))
        .map(|i| format!("\"p{i:03}\""))
        .collect();
    let mut text = format!(
        "[job]\njob = \"load-{kind}\"\nkind = \"{kind}\"\nprofile = \"{}\"\nparticipants = [{}]\ncommittee = [{}]\n\
         min_participants = {}\nstart_quorum = {n}\nmax_rows = 1000000\nhistogram_bins = {}\nround_timeout_ms = 600000\n\
         key_setup_timeout_ms = 600000\ndecryption_timeout_ms = 600000\n",
        args.profile,
        participants.join(", "),
        committee.join(", "),
        (n / 2).max(1),
        if kind == "stats" { args.bins } else { 20 },
    );
    let features = if kind == "stats" { args.features } else { 4 };
    for f in 0..features {
        let _ = write!(
            text,
            "[[job.features]]\nname = \"f{f:03}\"\nmin = 0\nbound = 1000\nscale = 1\n"
        );
    }
    if kind == "segment" {
        text.push_str("[job.segment]\nk = 4\nmax_iterations = 20\n");
    }
    text
}

fn table(features: usize, rows: usize, seed: u64) -> LocalTable {
    let mut rng = StdRng::seed_from_u64(seed);
    let columns: BTreeMap<String, Vec<Option<f64>>> = (0..features)
        .map(|f| {
            let centre = 100.0 + 200.0 * (f % 4) as f64;
            let column = (0..rows)
                .map(|_| Some((centre + 80.0 * (rng.random::<f64>() - 0.5)).round()))
                .collect();
            (format!("f{f:03}"), column)
        })
        .collect();
    LocalTable { columns, rows }
}

/// Peak resident memory of a finished coordinator, from the line it prints.
fn peak_from(stdout: &str) -> Option<f64> {
    stdout
        .lines()
        .find_map(|l| l.strip_prefix("coordinator peak memory: "))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|mb| mb.parse().ok())
}

fn run_job(
    fedbank: &Path,
    kind: &'static str,
    args: &LoadArgs,
    n: usize,
    dir: &Path,
) -> Result<Run> {
    let dir = dir.join(format!("{kind}-{n}"));
    std::fs::create_dir_all(&dir)?;
    let certs = dir.join("certs");
    let ca = ConsortiumCa::create(&certs).context("consortium CA")?;
    let coordinator_id = NodeId::new("coordinator")?;
    let ids: Vec<NodeId> = (0..n)
        .map(|i| NodeId::new(format!("p{i:03}")))
        .collect::<Result<_, _>>()?;
    for node in std::iter::once(&coordinator_id).chain(&ids) {
        ca.issue(node, 1)?;
    }
    let job_path = dir.join("job.toml");
    std::fs::write(&job_path, job_file(kind, args, n))?;
    let (job, _) = fedbank_consortium::config::load_job(&job_path)?;
    let port = std::net::UdpSocket::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    std::fs::write(
        dir.join("coordinator.toml"),
        format!(
            "job_file = \"job.toml\"\nid = \"coordinator\"\nlisten = \"127.0.0.1:{port}\"\ncerts_dir = \"certs\"\nout_dir = \"out\"\n"
        ),
    )?;
    let started = Instant::now();
    // Its output goes to files: a pipe nobody reads until the end would fill and stop it.
    let log = dir.join("coordinator.log");
    let coordinator = std::process::Command::new(fedbank)
        .args(["coordinator", "--config"])
        .arg(dir.join("coordinator.toml"))
        .stdout(std::fs::File::create(&log)?)
        .stderr(std::fs::File::create(dir.join("coordinator.err"))?)
        .spawn()
        .context("starting the coordinator process")?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let quiet: Progress = Arc::new(|_| {});
    let features = job.spec().features.len();
    let outcomes = runtime.block_on(async {
        let mut handles = Vec::new();
        for (i, node) in ids.iter().enumerate() {
            let (creds, identity) = credentials(&certs, node)?;
            let settings = ParticipantSettings {
                id: node.clone(),
                job: job.clone(),
                data: LocalData::Table {
                    table: table(features, args.rows, i as u64),
                    row_ids: None,
                },
                creds,
                coordinator: (format!("127.0.0.1:{port}").parse()?, coordinator_id.clone()),
                trail: TrailSettings {
                    path: dir.join(format!("{node}.trail")),
                    identity,
                },
                connect_attempts: 200,
                local: LocalOutputs::default(),
                data_commitment: None,
            };
            handles.push(tokio::spawn(launch::participant(settings, quiet.clone())));
        }
        let mut outcomes = Vec::new();
        for h in handles {
            outcomes.push(h.await.context("participant task")??);
        }
        anyhow::Ok(outcomes)
    })?;
    let mut coordinator = coordinator;
    let status = coordinator.wait()?;
    let stdout = std::fs::read_to_string(&log).unwrap_or_default();
    if !status.success() {
        bail!(
            "the coordinator failed: {}\n{}",
            stdout.lines().rev().take(5).collect::<Vec<_>>().join("\n"),
            std::fs::read_to_string(dir.join("coordinator.err")).unwrap_or_default()
        );
    }
    let seconds = started.elapsed().as_secs_f64();
    // Wall time per round from the coordinator's trail: round.started to round.completed.
    let trail = std::fs::read_to_string(dir.join("out/coordinator.trail"))?;
    let mut open: BTreeMap<u64, (String, f64)> = BTreeMap::new();
    let mut rounds = Vec::new();
    for line in trail.lines() {
        let e: serde_json::Value = serde_json::from_str(line)?;
        let at = time::OffsetDateTime::parse(
            e["time"].as_str().unwrap_or(""),
            &time::format_description::well_known::Rfc3339,
        )
        .map(|t| t.unix_timestamp_nanos() as f64 / 1e9)
        .unwrap_or(0.0);
        let round = e["fields"]["round"].as_u64().unwrap_or(0);
        match e["event"].as_str() {
            Some("round.started") => {
                let label = e["fields"]["quantity"].as_str().unwrap_or("").to_owned();
                open.insert(round, (label, at));
            }
            Some("round.completed") => {
                if let Some((label, start)) = open.remove(&round) {
                    rounds.push((label, at - start));
                }
            }
            _ => {}
        }
    }
    // The widest round of the job's kind.
    let values = job
        .spec()
        .kind
        .registered()
        .map(|registered| registered.widest_rounds(&job))
        .unwrap_or_default()
        .into_iter()
        .filter_map(|round| {
            job.plan(&fedbank_common::job::RoundKind::Registered(round))
                .ok()
        })
        .map(|p| p.slot_count())
        .max()
        .unwrap_or(0);
    Ok(Run {
        participants: n,
        job: kind,
        rounds,
        values,
        seconds,
        peak_mb: peak_from(&stdout),
        bytes_received: outcomes.iter().map(|o| o.bytes_sent).sum(),
    })
}

/// Runs the load benchmark and prints its table; `fedbank` is the `fedbank` binary whose
/// `coordinator` subcommand runs the coordinator.
pub fn run(args: &LoadArgs, fedbank: &Path) -> Result<()> {
    let work = WorkingDir::new(args.dir.as_deref(), "load")?;
    let temp = work.path();
    let mut runs = Vec::new();
    for (kind, n) in [
        ("stats", args.baseline),
        ("stats", args.participants),
        ("segment", args.participants),
    ] {
        println!("running the {kind} job with {n} participants…");
        runs.push(run_job(fedbank, kind, args, n, temp)?);
    }
    println!(
        "\nfedbank load run — profile {}, {} committee members, loopback on this machine (every participant in one process, the coordinator in its own)",
        args.profile, args.committee
    );
    println!(
        "{:<8} {:>12} {:>22} {:>12} {:>16} {:>14}  per round (s)",
        "job", "participants", "largest update (slots)", "job (s)", "coordinator MB", "bytes in"
    );
    for r in &runs {
        let per_round: Vec<String> = r
            .rounds
            .iter()
            .map(|(l, s)| format!("{l} {s:.2}"))
            .collect();
        println!(
            "{:<8} {:>12} {:>22} {:>12.2} {:>16} {:>14}  {}",
            r.job,
            r.participants,
            r.values,
            r.seconds,
            r.peak_mb.map_or("n/a".into(), |m| format!("{m:.0}")),
            r.bytes_received,
            if per_round.len() > 6 {
                format!(
                    "{} … ({} rounds)",
                    per_round[..6].join(", "),
                    per_round.len()
                )
            } else {
                per_round.join(", ")
            }
        );
    }
    if let (Some(a), Some(b)) = (runs[0].peak_mb, runs[1].peak_mb) {
        println!(
            "coordinator memory: {b:.0} MB with {} participants against {a:.0} MB with {} (×{:.2} for ×{:.0} participants): a running sum per round, not one ciphertext per participant",
            runs[1].participants,
            runs[0].participants,
            b / a,
            runs[1].participants as f64 / runs[0].participants as f64
        );
    }
    Ok(())
}

/// A benchmark's working directory: the given one (kept), or a temporary one named after the
/// benchmark, removed when this is dropped.
pub(crate) struct WorkingDir {
    path: PathBuf,
    temporary: bool,
}

impl WorkingDir {
    pub(crate) fn new(given: Option<&Path>, bench: &str) -> Result<Self> {
        let (path, temporary) = match given {
            Some(d) => (d.to_path_buf(), false),
            None => (
                std::env::temp_dir().join(format!("fedbank-{bench}-{}", std::process::id())),
                true,
            ),
        };
        std::fs::create_dir_all(&path)?;
        Ok(Self { path, temporary })
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for WorkingDir {
    fn drop(&mut self) {
        if self.temporary {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}
