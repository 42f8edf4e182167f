//! The node commands `fedbank coordinator`, `fedbank participant` and `fedbank auditor`: one
//! node each (the shells themselves are `fedbank_transport::nodes`), for a real multi-machine
//! consortium; and the pieces `fedbank simulate` shares with them (profile dispatch, results).

use crate::config::{load_auditor, load_coordinator, load_job, load_participant};
use anyhow::{Context, Result};
use fedbank_auditor::AuditorStatus;
use fedbank_common::alerts::AuditorKeys;
use fedbank_common::audit::events::ArtifactWritten;
use fedbank_common::audit::{SigningIdentity, TrailWriter};
use fedbank_common::ids::NodeId;
use fedbank_common::job::ValidJob;
use fedbank_common::protocol::DataCommitment;
use fedbank_common::secagg::Profile;
use fedbank_coordinator::{Participation, ResultFile, Status};
use fedbank_participant::{LocalData, LocalTable, NodeStatus};
use fedbank_transport::auditor_shell::{self, AuditorOutcome, AuditorSettings};
use fedbank_transport::nodes::{
    self, CoordinatorSettings, LocalOutputs, ParticipantOutcome, ParticipantSettings, TrailSettings,
};
use fedbank_transport::pki::{CredentialPaths, NodeCredentials};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

/// A progress sink.
pub type Progress = Arc<dyn Fn(String) + Send + Sync>;

/// Loads a node's credentials and its audit signing identity (the certificate's key), and
/// checks before anything connects that the configured id, the certificate and the key are one
/// identity: a node holding another node's certificate stops here, saying which is which.
pub fn credentials(dir: &Path, id: &NodeId) -> Result<(NodeCredentials, SigningIdentity)> {
    let paths = CredentialPaths::in_dir(dir, id);
    let creds = NodeCredentials::load(&paths)
        .with_context(|| format!("loading the credentials of {id} from {}", dir.display()))?;
    creds.signer(id).with_context(|| {
        format!(
            "node {id}: certificate {} and key {}",
            paths.cert.display(),
            paths.key.display()
        )
    })?;
    let identity = SigningIdentity::from_pkcs8(creds.pkcs8()).context("audit signing key")?;
    Ok((creds, identity))
}

/// Runs the coordinator of a job with its profile's torus.
pub async fn coordinator(
    settings: CoordinatorSettings,
    ready: Option<tokio::sync::oneshot::Sender<SocketAddr>>,
    progress: Progress,
) -> Result<Status> {
    let status = match settings.job.spec().profile {
        Profile::Strict => nodes::run_coordinator::<u128>(settings, ready, progress).await,
        Profile::Fast => nodes::run_coordinator::<u64>(settings, ready, progress).await,
    }?;
    Ok(status)
}

/// The settings of a coordinator node, with a fresh random mask seed (a resumed job takes the
/// one in its checkpoint), its trail at `trail` and its checkpoint at `state`.
pub fn coordinator_settings(
    job: ValidJob,
    id: NodeId,
    creds: NodeCredentials,
    identity: SigningIdentity,
    listen: SocketAddr,
    (trail, state): (PathBuf, PathBuf),
) -> CoordinatorSettings {
    CoordinatorSettings {
        job,
        id,
        creds,
        listen,
        trail: TrailSettings {
            path: trail,
            identity,
        },
        mask_seed: rand::random(),
        state: Some(state),
        new_key_epoch: None,
    }
}

/// Runs a participant with the profile's torus.
pub async fn participant(
    settings: ParticipantSettings,
    progress: Progress,
) -> Result<ParticipantOutcome> {
    let outcome = match settings.job.spec().profile {
        Profile::Strict => nodes::run_participant::<u128>(settings, progress).await,
        Profile::Fast => nodes::run_participant::<u64>(settings, progress).await,
    }?;
    Ok(outcome)
}

/// Reads a participant's data: its transaction log, summarized per customer, for a segment job
/// over transactions (checked against the job's reference date, if it gives one), otherwise the
/// job's feature columns from its customer table (with the customer ids of the rows when the job
/// names an id column).
pub fn load_data(job: &ValidJob, path: &Path, consent: Option<&Path>) -> Result<LocalData> {
    if let Some(compliance) = job.compliance() {
        let consent = consent.context(
            "a compliance job needs the consent table ('consent' in the participant configuration)",
        )?;
        let log = fedbank_participant::contact_log::read_contacts(
            path,
            consent,
            compliance,
            job.spec().max_rows,
        )?;
        return Ok(LocalData::Contacts(log));
    }
    if let Some(columns) = job.segment().and_then(|s| s.transactions.as_ref()) {
        let history = fedbank_participant::rfm::read_transactions(path, columns)?;
        if let Some(day) = job.segment().and_then(|s| s.reference_day()) {
            history.rfm_table(day)?;
        }
        return Ok(LocalData::Transactions(history));
    }
    let spec = job.spec();
    if let Some(propensity) = job.propensity() {
        let records = fedbank_participant::customers::read_customers(
            path,
            &spec.features,
            propensity,
            spec.id_column.as_deref(),
        )?;
        return Ok(LocalData::Customers(records));
    }
    let columns: Vec<String> = spec.features.iter().map(|f| f.name.clone()).collect();
    let (table, row_ids) =
        LocalTable::read_csv_with_ids(path, &columns, spec.id_column.as_deref())?;
    Ok(LocalData::Table { table, row_ids })
}

/// What a participant commits to in its Hello: the SHA-256 of its data file (and consent
/// table) as `sha256sum` prints it, and the rows it read from them.
pub fn data_commitment(
    path: &Path,
    consent: Option<&Path>,
    data: &LocalData,
) -> Result<DataCommitment> {
    let digest = |p: &Path| {
        fedbank_common::audit::file_sha256(p)
            .map(|(hex, _)| hex)
            .with_context(|| format!("reading {} for its digest", p.display()))
    };
    Ok(DataCommitment {
        rows: data.rows(),
        sha256: digest(path)?,
        consent_sha256: consent.map(digest).transpose()?,
    })
}

/// The rows a participant's data yields for an in-process run on pooled data, counted to
/// `reference_day` for transaction logs.
pub fn rows_for_pooling(data: &LocalData, reference_day: Option<i64>) -> Result<LocalTable> {
    Ok(match data {
        LocalData::Table { table, .. } => table.clone(),
        LocalData::Customers(_) | LocalData::Contacts(_) => {
            anyhow::bail!("a propensity or compliance job's rows are not pooled as a table")
        }
        LocalData::Transactions(history) => history.rfm_table(
            reference_day.context("a transaction log needs a reference day to give RFM rows")?,
        )?,
    })
}

/// The files of a finished job that [`write_result`] wrote: what each is, and where.
pub type WrittenFiles = Vec<(&'static str, PathBuf)>;

/// Writes `result.json` for a finished job and the kind's report files beside it, or returns
/// the failure. Who took part in each round is read from the coordinator's own trail
/// (`coordinator_trail`, restarts included) into the result and the kind's `report.md`.
/// [`bind_to_trail`] then records the files in that trail.
pub fn write_result(
    out: &Path,
    job: &ValidJob,
    status: &Status,
    coordinator_trail: &Path,
) -> Result<WrittenFiles> {
    let outcome = match status {
        Status::Finished(outcome) => outcome,
        Status::Failed(failure) => anyhow::bail!("job {} failed: {failure}", job.spec().job),
        Status::Running => anyhow::bail!("job {} did not finish", job.spec().job),
    };
    let trail = fedbank_common::audit::verify(coordinator_trail, None).with_context(|| {
        format!(
            "reading who took part from the coordinator's trail {}",
            coordinator_trail.display()
        )
    })?;
    let participation = Participation::from_trail(&trail.events);
    let mut written: WrittenFiles = Vec::new();
    // The kind's own report (a page, charts, an exported model) beside the result.
    if let Some(kind) = job.spec().kind.registered() {
        let enrolled = job.spec().participants.len();
        let who = fedbank_common::job::ReportedInstitutions {
            last_round: participation
                .rounds
                .last()
                .map_or(enrolled, |r| r.contributors.len()),
            enrolled,
        };
        let files = kind
            .report(job, &outcome.released, &who)
            .map_err(|problem| anyhow::anyhow!("the {} report: {problem}", outcome.kind))?;
        for file in files {
            let path = out.join(file.name);
            let mut text = file.text;
            if file.name == "report.md" {
                text.push_str(&participation.markdown(job.spec().participants.len()));
            }
            std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
            written.push(("report", path));
        }
    }
    let path = out.join("result.json");
    let mut result = ResultFile::new(job, outcome);
    result.participation = Some(participation);
    std::fs::write(&path, result.to_json()?)
        .with_context(|| format!("writing {}", path.display()))?;
    written.push(("result", path));
    Ok(written)
}

/// Binds each written file to the coordinator's trail (`trail`, continued as `writer`) by an
/// `artifact.written` event with its SHA-256 and its path relative to `out`, so that a file
/// changed afterwards fails the audit and is named.
pub fn bind_to_trail(
    out: &Path,
    job: &ValidJob,
    files: &WrittenFiles,
    (writer, trail): (&NodeId, TrailSettings),
) -> Result<()> {
    let mut trail_writer = TrailWriter::open(&trail.path, writer, trail.identity)
        .with_context(|| format!("continuing {} to record the result", trail.path.display()))?;
    for (what, file) in files {
        let record = ArtifactWritten::of_file(&job.spec().job, what, out, file)
            .with_context(|| format!("the digest of {}", file.display()))?;
        trail_writer
            .record(&record, SystemTime::now())
            .with_context(|| format!("recording {} in the trail", file.display()))?;
    }
    Ok(())
}

fn stdout_progress() -> Progress {
    Arc::new(|line: String| println!("{line}"))
}

/// `fedbank coordinator --config <file>`.
pub fn run_coordinator_command(config: &Path, new_key_epoch: Option<&str>) -> Result<()> {
    let c = load_coordinator(config)?;
    let (job, _) = load_job(&c.job_file)?;
    let (creds, identity) = credentials(&c.certs_dir, &c.id)?;
    std::fs::create_dir_all(&c.out_dir)
        .with_context(|| format!("creating {}", c.out_dir.display()))?;
    let runtime = tokio::runtime::Runtime::new()?;
    let trail = c.out_dir.join(format!("{}.trail", c.id));
    if trail.exists() {
        println!(
            "{} exists: resuming the job from its checkpoint if it has one",
            trail.display()
        );
    }
    println!(
        "coordinator {} listening on {} for job {}",
        c.id,
        c.listen,
        job.spec().job
    );
    let state = c.out_dir.join(format!("{}.checkpoint.json", c.id));
    let mut settings = coordinator_settings(
        job.clone(),
        c.id.clone(),
        creds,
        identity,
        c.listen,
        (trail, state),
    );
    if let Some(reason) = new_key_epoch {
        println!(
            "opening a new key epoch of job {}: {reason}",
            job.spec().job
        );
        settings.new_key_epoch = Some(reason.to_owned());
    }
    let status = runtime.block_on(coordinator(settings, None, stdout_progress()))?;
    let (_, identity) = credentials(&c.certs_dir, &c.id)?;
    let trail = TrailSettings {
        path: c.out_dir.join(format!("{}.trail", c.id)),
        identity,
    };
    let files = write_result(
        &c.out_dir,
        &job,
        &status,
        &c.out_dir.join(format!("{}.trail", c.id)),
    )?;
    bind_to_trail(&c.out_dir, &job, &files, (&c.id, trail))?;
    for (what, path) in &files {
        println!("{what}: {}", path.display());
    }
    if let Some(mb) = peak_memory_mb() {
        println!("coordinator peak memory: {mb:.1} MB (resident, VmHWM)");
    }
    Ok(())
}

/// This process's peak resident memory, where the system reports it (Linux `VmHWM`).
pub fn peak_memory_mb() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    Some(kb / 1024.0)
}

/// `fedbank participant --config <file>`.
pub fn run_participant_command(config: &Path) -> Result<()> {
    let c = load_participant(config)?;
    let (job, _) = load_job(&c.job_file)?;
    let (creds, identity) = credentials(&c.certs_dir, &c.id)?;
    let reading = std::time::Instant::now();
    let data = load_data(&job, &c.data, c.consent.as_deref())?;
    println!(
        "{}: read {} in {:.2} s",
        c.id,
        c.data.display(),
        reading.elapsed().as_secs_f64()
    );
    let beside_trail = |given: &Option<PathBuf>, name: &str| {
        given
            .clone()
            .unwrap_or_else(|| c.trail.with_file_name(format!("{}-{name}", c.id)))
    };
    let local = LocalOutputs {
        assignments: Some(beside_trail(&c.assignments, "segments.csv")),
        model: Some(beside_trail(&c.model, "model.json")),
        figures: Some(beside_trail(&c.local_figures, "local-figures.json")),
        compliance_report: Some(beside_trail(&c.compliance_report, "compliance-report.json")),
        member_state: Some(beside_trail(&c.member_state, "committee")),
    };
    let commitment = data_commitment(&c.data, c.consent.as_deref(), &data)?;
    println!("{}: joins with {commitment}", c.id);
    let settings = ParticipantSettings {
        id: c.id.clone(),
        job,
        data,
        creds,
        coordinator: (c.coordinator_address, c.coordinator_id),
        trail: TrailSettings {
            path: c.trail,
            identity,
        },
        connect_attempts: c.connect_attempts,
        local: local.clone(),
        data_commitment: Some(commitment),
    };
    let runtime = tokio::runtime::Runtime::new()?;
    let outcome = runtime.block_on(participant(settings, stdout_progress()))?;
    println!(
        "{}: sent {} messages, {} bytes framed ({} UDP bytes with QUIC and TLS)",
        c.id, outcome.messages_sent, outcome.bytes_sent, outcome.udp_bytes_sent
    );
    if outcome.figures.is_some() {
        for path in [&local.model, &local.figures].into_iter().flatten() {
            println!("{}: kept locally {}", c.id, path.display());
        }
    }
    if let Some(mb) = peak_memory_mb() {
        println!("{}: peak memory {mb:.1} MB (resident, VmHWM)", c.id);
    }
    match outcome.status {
        NodeStatus::Finished => println!("{}: job finished", c.id),
        NodeStatus::Aborted(reason) => {
            anyhow::bail!("{}: the coordinator aborted the job: {reason}", c.id)
        }
        NodeStatus::Running => anyhow::bail!("{}: disconnected before the job ended", c.id),
    }
    Ok(())
}

/// Runs an auditor with the profile's torus.
pub async fn auditor(settings: AuditorSettings, progress: Progress) -> Result<AuditorOutcome> {
    let outcome = match settings.job.spec().profile {
        Profile::Strict => auditor_shell::run_auditor::<u128>(settings, progress).await,
        Profile::Fast => auditor_shell::run_auditor::<u64>(settings, progress).await,
    }?;
    Ok(outcome)
}

/// Generates the auditor's alert keys off the async executor (about two seconds).
pub async fn auditor_keys() -> Result<Arc<AuditorKeys>> {
    let keys = tokio::task::spawn_blocking(AuditorKeys::generate)
        .await
        .context("generating the auditor's keys")??;
    Ok(Arc::new(keys))
}

/// `fedbank auditor --config <file>`.
pub fn run_auditor_command(config: &Path) -> Result<()> {
    let c = load_auditor(config)?;
    let (job, _) = load_job(&c.job_file)?;
    if job.spec().auditor.as_ref() != Some(&c.id) {
        anyhow::bail!(
            "{}: this node is {}, but the job's auditor is {:?}",
            config.display(),
            c.id,
            job.spec().auditor
        );
    }
    let (creds, identity) = credentials(&c.certs_dir, &c.id)?;
    let runtime = tokio::runtime::Runtime::new()?;
    let alerts = c
        .alerts
        .clone()
        .unwrap_or_else(|| c.trail.with_file_name(format!("{}-alerts.json", c.id)));
    let outcome = runtime.block_on(async {
        let keys = auditor_keys().await?;
        println!("{}: alert keys generated", c.id);
        let settings = AuditorSettings {
            id: c.id.clone(),
            job: job.clone(),
            keys,
            creds,
            coordinator: (c.coordinator_address, c.coordinator_id.clone()),
            trail: TrailSettings {
                path: c.trail.clone(),
                identity,
            },
            connect_attempts: c.connect_attempts,
        };
        auditor(settings, stdout_progress()).await
    })?;
    if let Some(counts) = &outcome.counts {
        let value: serde_json::Map<String, serde_json::Value> = counts
            .iter()
            .map(|(r, n)| (r.clone(), serde_json::json!({"institutions_over_limit": n})))
            .collect();
        std::fs::write(&alerts, serde_json::to_string_pretty(&value)?)
            .with_context(|| format!("writing {}", alerts.display()))?;
        // Bound to the auditor's own trail, by its path relative to the trail's directory.
        let (_, identity) = credentials(&c.certs_dir, &c.id)?;
        let trail_dir = c
            .trail
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let trail = TrailSettings {
            path: c.trail.clone(),
            identity,
        };
        bind_to_trail(
            trail_dir,
            &job,
            &vec![("alert counts", alerts.clone())],
            (&c.id, trail),
        )?;
        println!("{}: alert counts in {}", c.id, alerts.display());
    }
    match outcome.status {
        AuditorStatus::Finished => println!("{}: job finished", c.id),
        AuditorStatus::Aborted(reason) => {
            anyhow::bail!("{}: the coordinator aborted the job: {reason}", c.id)
        }
        AuditorStatus::Running => anyhow::bail!("{}: disconnected before the job ended", c.id),
    }
    Ok(())
}
