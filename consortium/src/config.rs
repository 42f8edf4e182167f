//! Job files and node configuration files (TOML), parsed into serde structs and then validated
//! into types the rest of the code can trust. Every error names the file and, where TOML can,
//! the line and column.

use anyhow::{bail, Context, Result};
use fedbank_common::ids::NodeId;
use fedbank_common::job::{JobSpec, ValidJob};
use fedbank_common::storage;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// Largest configuration file read.
const MAX_CONFIG_BYTES: usize = 1 << 20;

fn read_toml<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<T> {
    let bytes = storage::read_limited(path, MAX_CONFIG_BYTES)
        .with_context(|| format!("reading {}", path.display()))?;
    if bytes.len() > MAX_CONFIG_BYTES {
        bail!("{}: larger than {MAX_CONFIG_BYTES} bytes", path.display());
    }
    let text =
        std::str::from_utf8(&bytes).with_context(|| format!("{}: not UTF-8", path.display()))?;
    toml::from_str(text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
}

/// A job file: the job every node agrees to, and optionally how to simulate it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobFile {
    /// The job.
    pub job: JobSpec,
    /// How `fedbank simulate` runs it (ignored by real nodes).
    pub simulation: Option<SimulationSpec>,
}

/// The `[simulation]` table of a job file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SimulationSpec {
    /// Seed of the synthetic data.
    pub seed: u64,
    /// Id of the simulated coordinator.
    #[serde(default = "default_coordinator")]
    pub coordinator: NodeId,
    /// Customers per participant (synthetic data).
    #[serde(default)]
    pub customers: BTreeMap<String, usize>,
    /// A shared transaction log to split across the participants instead of synthetic data
    /// (relative to the job file).
    #[serde(default)]
    pub transactions: Option<PathBuf>,
    /// A shared customer table to split across the participants, a row per customer keyed by
    /// its first column (relative to the job file).
    #[serde(default)]
    pub customers_table: Option<PathBuf>,
    /// Relative weights of the split: customers are dealt to participants in these proportions.
    #[serde(default)]
    pub split: BTreeMap<String, u32>,
}

fn default_coordinator() -> NodeId {
    NodeId::new("coordinator").unwrap_or_else(|_| unreachable!("a valid literal id"))
}

/// Reads and validates a job file.
pub fn load_job(path: &Path) -> Result<(ValidJob, Option<SimulationSpec>)> {
    let mut file: JobFile = read_toml(path)?;
    if let Some(sim) = &mut file.simulation {
        for t in [&mut sim.transactions, &mut sim.customers_table]
            .into_iter()
            .flatten()
        {
            if t.is_relative() {
                *t = path.parent().unwrap_or(Path::new(".")).join(&*t);
            }
        }
    }
    let job = file
        .job
        .validate()
        .with_context(|| format!("{}: invalid job", path.display()))?;
    Ok((job, file.simulation))
}

/// `fedbank coordinator --config`: the coordinator node of one job.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CoordinatorConfig {
    /// The job file (the same file every participant has).
    pub job_file: PathBuf,
    /// This node's id (its certificate names it).
    pub id: NodeId,
    /// Address to listen on, e.g. "0.0.0.0:7400".
    pub listen: SocketAddr,
    /// Directory with ca.pem, <id>.pem and <id>.key (from `fedbank certs init`).
    pub certs_dir: PathBuf,
    /// Directory for the trail and the result.
    pub out_dir: PathBuf,
}

/// `fedbank participant --config`: one participant institution's node.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ParticipantConfig {
    /// The job file this institution agreed to.
    pub job_file: PathBuf,
    /// This node's id (its certificate names it).
    pub id: NodeId,
    /// The institution's customer table (CSV with the job's feature columns); for a compliance
    /// job its marketing-contact log.
    pub data: PathBuf,
    /// A compliance job's consent table (CSV with the columns the job maps).
    #[serde(default)]
    pub consent: Option<PathBuf>,
    /// Where a compliance job writes this institution's own report: its counts per rule and
    /// example customers (default: `<id>-compliance-report.json` next to the trail). It never
    /// leaves this machine.
    #[serde(default)]
    pub compliance_report: Option<PathBuf>,
    /// The coordinator's address, e.g. "10.0.0.5:7400".
    pub coordinator_address: SocketAddr,
    /// The coordinator's id, as named by its certificate.
    pub coordinator_id: NodeId,
    /// Directory with ca.pem, <id>.pem and <id>.key.
    pub certs_dir: PathBuf,
    /// This node's own audit trail.
    pub trail: PathBuf,
    /// Connection attempts (with backoff) before giving up.
    #[serde(default = "default_attempts")]
    pub connect_attempts: u32,
    /// Where a segment job writes this institution's own customer-to-segment assignment
    /// (default: `<id>-segments.csv` next to the trail). It never leaves this machine.
    #[serde(default)]
    pub assignments: Option<PathBuf>,
    /// Where a propensity job writes the released model (default: `<id>-model.json` next to
    /// the trail), for `fedbank score`.
    #[serde(default)]
    pub model: Option<PathBuf>,
    /// Where a propensity job writes this institution's own figures on its hold-out customers
    /// (default: `<id>-local-figures.json` next to the trail). They never leave this machine.
    #[serde(default)]
    pub local_figures: Option<PathBuf>,
    /// Where a committee member keeps its secret key share and its record of decrypted slots
    /// (default: the directory `<id>-committee` next to the trail), so that after a crash it
    /// can serve the job again without decrypting any slot twice. Owner-only; never sent.
    #[serde(default)]
    pub member_state: Option<PathBuf>,
}

fn default_attempts() -> u32 {
    60
}

/// Reads a coordinator configuration; relative paths are taken from the file's directory.
pub fn load_coordinator(path: &Path) -> Result<CoordinatorConfig> {
    let mut c: CoordinatorConfig = read_toml(path)?;
    let base = path.parent().unwrap_or(Path::new("."));
    for p in [&mut c.job_file, &mut c.certs_dir, &mut c.out_dir] {
        if p.is_relative() {
            *p = base.join(&*p);
        }
    }
    Ok(c)
}

/// Reads a participant configuration; relative paths are taken from the file's directory.
pub fn load_participant(path: &Path) -> Result<ParticipantConfig> {
    let mut c: ParticipantConfig = read_toml(path)?;
    let base = path.parent().unwrap_or(Path::new("."));
    for a in [
        &mut c.assignments,
        &mut c.model,
        &mut c.local_figures,
        &mut c.consent,
        &mut c.compliance_report,
        &mut c.member_state,
    ]
    .into_iter()
    .flatten()
    {
        if a.is_relative() {
            *a = base.join(&*a);
        }
    }
    for p in [&mut c.job_file, &mut c.data, &mut c.certs_dir, &mut c.trail] {
        if p.is_relative() {
            *p = base.join(&*p);
        }
    }
    if c.connect_attempts == 0 {
        bail!("{}: connect_attempts must be at least 1", path.display());
    }
    Ok(c)
}

/// `fedbank auditor --config`: the auditor node of a compliance job with alerts.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditorConfig {
    /// The job file (the same file every node has).
    pub job_file: PathBuf,
    /// This node's id (its certificate names it; the job's `auditor`).
    pub id: NodeId,
    /// The coordinator's address.
    pub coordinator_address: SocketAddr,
    /// The coordinator's id.
    pub coordinator_id: NodeId,
    /// Directory with ca.pem, <id>.pem and <id>.key.
    pub certs_dir: PathBuf,
    /// This node's own audit trail.
    pub trail: PathBuf,
    /// Where the decrypted alert counts are written (default: `<id>-alerts.json` next to the
    /// trail).
    #[serde(default)]
    pub alerts: Option<PathBuf>,
    /// Connection attempts (with backoff) before giving up.
    #[serde(default = "default_attempts")]
    pub connect_attempts: u32,
}

/// Reads an auditor configuration; relative paths are taken from the file's directory.
pub fn load_auditor(path: &Path) -> Result<AuditorConfig> {
    let mut c: AuditorConfig = read_toml(path)?;
    let base = path.parent().unwrap_or(Path::new("."));
    for p in [&mut c.job_file, &mut c.certs_dir, &mut c.trail]
        .into_iter()
        .chain(c.alerts.as_mut())
    {
        if p.is_relative() {
            *p = base.join(&*p);
        }
    }
    if c.connect_attempts == 0 {
        bail!("{}: connect_attempts must be at least 1", path.display());
    }
    Ok(c)
}
