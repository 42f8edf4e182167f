//! A participant's shell: one connection to the coordinator with reconnection, the machine on
//! its own thread, local files and the member state on disk.

use super::{open_trail, NodeError, TrailSettings};
use crate::frame::{self, RawFrame};
use crate::pki::NodeCredentials;
use crate::{connect, permanent_refusal, tls, ConnectError, CLOSE_DONE};
use fedbank_common::audit::events::ArtifactWritten;
use fedbank_common::ids::NodeId;
use fedbank_common::job::propensity::LocalFigures;
use fedbank_common::job::ValidJob;
use fedbank_common::node_machine::Delivery;
use fedbank_common::policy::MemberRecord;
use fedbank_common::protocol::{DataCommitment, Inbound};
use fedbank_common::secagg::{RingScalar, SecretKeyShare};
use fedbank_common::storage::{self, StorageError};
use fedbank_participant::{
    CommitteeMember, LocalData, MemberError, MemberFiles, NodeStatus, ParticipantMachine,
    ParticipantOutput,
};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};
use tokio::sync::mpsc as tokio_mpsc;

/// Everything a participant node needs.
pub struct ParticipantSettings {
    /// This node.
    pub id: NodeId,
    /// The job it agreed to.
    pub job: ValidJob,
    /// Its local data.
    pub data: LocalData,
    /// Its credentials.
    pub creds: NodeCredentials,
    /// The coordinator's address and id.
    pub coordinator: (SocketAddr, NodeId),
    /// Its own audit trail.
    pub trail: TrailSettings,
    /// Connection attempts before giving up (with backoff).
    pub connect_attempts: u32,
    /// Files the participant writes for itself (owner-only; never sent).
    pub local: LocalOutputs,
    /// The data it runs the job on, told in every Hello (the coordinator refuses a rejoin with
    /// other data); `None` commits to nothing.
    pub data_commitment: Option<DataCommitment>,
}

/// Files a participant writes for itself. None of them leaves the institution.
#[derive(Debug, Clone, Default)]
pub struct LocalOutputs {
    /// The customer-to-segment assignment of a segment job (CSV).
    pub assignments: Option<PathBuf>,
    /// The released propensity model (`model.json` format), for `fedbank score`.
    pub model: Option<PathBuf>,
    /// This participant's own figures on its hold-out customers (JSON).
    pub figures: Option<PathBuf>,
    /// A compliance job's local report: its own counts per rule and example customers (JSON).
    pub compliance_report: Option<PathBuf>,
    /// A committee member's state directory: its secret key share and its record of decrypted
    /// slots, so that a member restarted after a crash can serve the job again (see
    /// [`fedbank_participant::MemberFiles`]). Without it a restarted member cannot decrypt.
    pub member_state: Option<PathBuf>,
}

/// How a participant's part of the job went.
#[derive(Debug, Clone)]
pub struct ParticipantOutcome {
    /// How it ended.
    pub status: NodeStatus,
    /// Messages it sent to the coordinator.
    pub messages_sent: u64,
    /// Their bytes as framed by fedbank (header, length and body).
    pub bytes_sent: u64,
    /// UDP payload bytes its QUIC connections sent (fedbank frames plus QUIC and TLS overhead,
    /// handshakes and retransmissions).
    pub udp_bytes_sent: u64,
    /// Its own figures on its hold-out customers (propensity jobs).
    pub figures: Option<LocalFigures>,
}

/// Writes a member's state durably: the share (owner-only) when new, then the record.
fn save_member<S: RingScalar>(
    dir: &Path,
    files: &MemberFiles,
    share: Option<&SecretKeyShare<S>>,
    record: &MemberRecord,
) -> Result<(), MemberError> {
    std::fs::create_dir_all(dir).map_err(|source| {
        MemberError::Storage(StorageError::Io {
            action: "creating",
            path: dir.to_path_buf(),
            source,
        })
    })?;
    if let Some(share) = share {
        storage::save(&files.share, share, true)?;
    }
    storage::save(&files.record, record, false)?;
    Ok(())
}

/// Runs a participant until the coordinator reports the job finished or aborted.
pub async fn run_participant<S: RingScalar>(
    settings: ParticipantSettings,
    progress: Arc<dyn Fn(String) + Send + Sync>,
) -> Result<ParticipantOutcome, NodeError> {
    let ParticipantSettings {
        id,
        job,
        data,
        creds,
        coordinator: (addr, coordinator),
        trail,
        connect_attempts,
        local,
        data_commitment,
    } = settings;
    let credentials = creds.consortium(&id)?;
    let trust = credentials.trust.clone();
    let mut machine = ParticipantMachine::<S>::with_data(credentials, job.clone(), data)
        .map_err(|e| NodeError::LocalData(e.to_string()))?;
    if let Some(data) = data_commitment {
        machine = machine.with_data_commitment(data);
    }
    let member_files = local
        .member_state
        .as_ref()
        .map(|dir| (dir.clone(), MemberFiles::in_dir(dir, &job.spec().job)));
    if let Some((dir, files)) = &member_files {
        let state_error = |source| NodeError::MemberState {
            dir: dir.clone(),
            source,
        };
        let restored = CommitteeMember::<S>::restore(
            files,
            (&job.spec().job, &id),
            job.params().clone(),
            &fedbank_participant::MemberTerms::of(&job, trust),
        )
        .map_err(state_error)?;
        if let Some(member) = restored {
            progress(format!(
                "{id}: restored its committee key share and {} decrypted slots from {}",
                member.record().decrypted.len(),
                dir.display()
            ));
            machine = machine.with_member(member);
        }
    }
    // The differential-privacy state kept next to the member state: a restart neither resets
    // the budget nor draws fresh noise for a round already answered.
    let privacy_file = member_files
        .as_ref()
        .filter(|_| job.privacy().is_some())
        .map(|(dir, _)| dir.join(format!("{}.privacy", job.spec().job)));
    if let Some(path) = privacy_file.as_ref().filter(|p| p.exists()) {
        let state: fedbank_participant::privacy_noise::PrivacyState =
            fedbank_common::storage::load(path, true).map_err(|e| {
                NodeError::LocalData(format!(
                    "{}: the saved privacy state cannot be read: {e}",
                    path.display()
                ))
            })?;
        progress(format!(
            "{id}: restored its privacy budget and noise secret from {}",
            path.display()
        ));
        machine = machine.with_privacy_state(&state);
    }
    let endpoint = client_endpoint(addr, &creds)?;
    let trail = open_trail(trail, &id, "participant")?;
    let cap = job.max_message_bytes();

    // The machine on its own thread, driven by the one node driver: messages in, frames, audit
    // events and local files out.
    let (to_machine, inbox) = mpsc::channel::<(Delivery<Inbound<S>>, ())>();
    let (out_tx, mut out_rx) = tokio_mpsc::unbounded_channel::<Vec<u8>>();
    let (ended_tx, mut ended) = tokio::sync::watch::channel(false);
    let status = Arc::new(Mutex::new(NodeStatus::Running));
    let machine_status = status.clone();
    let figures: Arc<Mutex<Option<LocalFigures>>> = Arc::new(Mutex::new(None));
    let mut effects = ParticipantEffects {
        id: id.clone(),
        job: job.spec().job.clone(),
        out: out_tx,
        trail,
        local,
        member_files,
        privacy_file,
        figures: figures.clone(),
        progress: progress.clone(),
        round: None,
    };
    let span = tracing::info_span!("participant", node = %id);
    let machine = std::thread::spawn(move || -> Result<(), NodeError> {
        let _span = span.enter();
        let driven = crate::driver::drive(&mut machine, &inbox, &mut effects, Instant::now());
        if let (Ok(Some(ended)), Ok(mut s)) = (&driven, machine_status.lock()) {
            *s = ended.clone();
        }
        // Wakes the session at once: the node's part is over (or it stopped on an error).
        let _ = ended_tx.send(true);
        driven.map(|_| ())
    });

    let session = talk_to_coordinator(
        &endpoint,
        (addr, &coordinator),
        connect_attempts,
        &to_machine,
        &mut out_rx,
        &mut ended,
        cap,
        &*progress,
    )
    .await;
    drop(to_machine);
    let (sent, refused) = match session {
        Ok(sent) => (sent, None),
        Err(SessionEnd::Refused(reason)) => (SentCounter::default(), Some(reason)),
        Err(SessionEnd::JobOver(outcome)) => {
            let _ = tokio::task::spawn_blocking(move || machine.join()).await;
            return Err(NodeError::JobOver {
                coordinator,
                outcome,
            });
        }
        Err(SessionEnd::Unreachable(attempts)) => {
            let _ = tokio::task::spawn_blocking(move || machine.join()).await;
            return Err(NodeError::Unreachable {
                coordinator,
                addr,
                attempts,
            });
        }
    };
    if let Some(reason) = refused {
        let _ = tokio::task::spawn_blocking(move || machine.join()).await;
        return Err(NodeError::Refused {
            coordinator,
            reason,
        });
    }
    tokio::task::spawn_blocking(move || machine.join())
        .await
        .map_err(|_| NodeError::MachineStopped)?
        .map_err(|_| NodeError::MachineStopped)??;
    let _ = tokio::time::timeout(Duration::from_secs(1), endpoint.wait_idle()).await;
    let final_status = status
        .lock()
        .map(|s| s.clone())
        .unwrap_or(NodeStatus::Running);
    let figures = figures.lock().map(|mut f| f.take()).unwrap_or(None);
    Ok(ParticipantOutcome {
        status: final_status,
        messages_sent: sent.messages,
        bytes_sent: sent.bytes,
        udp_bytes_sent: sent.udp_bytes,
        figures,
    })
}

/// A client endpoint for reaching the coordinator at `addr`: bound to the unspecified address of
/// the same family (so that it can reach another machine, not only this one), with this node's
/// certificate.
pub(crate) fn client_endpoint(
    addr: SocketAddr,
    creds: &NodeCredentials,
) -> Result<quinn::Endpoint, NodeError> {
    let any: SocketAddr = if addr.is_ipv6() {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    } else {
        (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
    };
    let mut endpoint =
        quinn::Endpoint::client(any).map_err(|source| NodeError::Bind { addr: any, source })?;
    endpoint.set_default_client_config(tls::client_config(creds)?);
    Ok(endpoint)
}

/// Longest one connection attempt may take (a coordinator that does not answer at all).
pub const CONNECT_PATIENCE: Duration = Duration::from_secs(10);

/// The pause after the `failures`-th failed attempt: 0.1 s more after each, at most 2 s.
fn retry_pause(failures: u32) -> Duration {
    Duration::from_millis(100 * u64::from(failures.min(20)))
}

/// The longest the attempts after the `failures`-th can take before the node gives up.
fn retry_budget(failures: u32, connect_attempts: u32) -> Duration {
    (failures..connect_attempts)
        .map(|f| retry_pause(f) + CONNECT_PATIENCE)
        .sum()
}

/// How a session with the coordinator ended early.
pub(crate) enum SessionEnd {
    /// The coordinator refused this node (or this node the coordinator) for good.
    Refused(String),
    /// The coordinator ended the job before the node was told how; its close says how.
    JobOver(String),
    /// The coordinator could not be reached after this many attempts.
    Unreachable(u32),
}

/// Connects to the coordinator (with backoff, reconnecting after a dropped connection), tells
/// the machine of each connection (`None`), forwards the coordinator's messages to it and sends
/// what it produces, until `ended` says the machine's part is over (the machine's thread sets
/// it when it stops, which wakes this loop at once).
#[allow(clippy::too_many_arguments)]
pub(crate) async fn talk_to_coordinator<S: RingScalar>(
    endpoint: &quinn::Endpoint,
    (addr, coordinator): (SocketAddr, &NodeId),
    connect_attempts: u32,
    to_machine: &mpsc::Sender<(Delivery<Inbound<S>>, ())>,
    out_rx: &mut tokio_mpsc::UnboundedReceiver<Vec<u8>>,
    ended: &mut tokio::sync::watch::Receiver<bool>,
    cap: usize,
    progress: &(dyn Fn(String) + Send + Sync),
) -> Result<SentCounter, SessionEnd> {
    // Over when the machine says so, or when its thread is gone.
    let done = |ended: &tokio::sync::watch::Receiver<bool>| {
        *ended.borrow() || ended.has_changed().is_err()
    };
    let mut failures = 0u32;
    let mut sent = SentCounter::default();
    while !done(ended) {
        let attempt = tokio::time::timeout(CONNECT_PATIENCE, connect(endpoint, addr, coordinator))
            .await
            .unwrap_or_else(|_| Err(ConnectError::TimedOut(CONNECT_PATIENCE)));
        let conn = match attempt {
            Ok(conn) => {
                if failures > 0 {
                    progress(format!(
                        "reached the coordinator {coordinator} at {addr} after {failures} failed attempts"
                    ));
                }
                failures = 0;
                conn
            }
            Err(e) => {
                failures += 1;
                if let ConnectError::Connection(c) = &e {
                    if let Some(reason) = permanent_refusal(c) {
                        // Returned, and printed once by the binary: not logged as well.
                        tracing::debug!(%reason, "the coordinator connection was refused");
                        return Err(SessionEnd::Refused(reason));
                    }
                }
                tracing::info!(error = %e, attempt = failures, "coordinator not reachable yet");
                if failures >= connect_attempts {
                    return Err(SessionEnd::Unreachable(failures));
                }
                let pause = retry_pause(failures);
                // Said at the first failure and every tenth, with the schedule and the end.
                if failures == 1 || failures.is_multiple_of(10) {
                    let left = retry_budget(failures, connect_attempts);
                    let cause = std::error::Error::source(&e)
                        .map(|s| format!(": {s}"))
                        .unwrap_or_default();
                    progress(format!(
                        "the coordinator {coordinator} at {addr} is not reachable ({e}{cause}); attempt {failures} of {connect_attempts}, the next in {:.1} s; giving up in at most {} s (connect_attempts)",
                        pause.as_secs_f64(),
                        left.as_secs()
                    ));
                }
                tokio::time::sleep(pause).await;
                continue;
            }
        };
        if to_machine.send((Delivery::Connected, ())).is_err() {
            break;
        }
        let mut refused = None;
        let mut over = None;
        // Frames are read by their own task, so that sending or looking at the machine's status
        // never interrupts a message half received.
        let (frames_tx, mut frames) = tokio_mpsc::channel::<Result<RawFrame, frame::FrameError>>(4);
        let reader_conn = conn.clone();
        let reader = tokio::spawn(async move {
            let receiver = frame::Receiver::new(&reader_conn);
            loop {
                let frame = receiver
                    .recv(|kind| Inbound::<S>::limit(kind).min(cap))
                    .await;
                let end = matches!(frame, Err(frame::FrameError::Connection(_)));
                if frames_tx.send(frame).await.is_err() || end {
                    break;
                }
            }
        });
        loop {
            tokio::select! {
                Some(frame) = frames.recv() => match frame {
                    Ok(RawFrame { bytes, .. }) => match Inbound::<S>::decode(&bytes) {
                        Ok(message) => {
                            if to_machine.send((Delivery::Message(message), ())).is_err() {
                                break;
                            }
                        }
                        Err(e) => tracing::warn!(error = %e, "malformed message from the coordinator"),
                    },
                    Err(frame::FrameError::Connection(e)) => {
                        if let Some(reason) = permanent_refusal(&e) {
                            tracing::debug!(%reason, "the coordinator refused this node");
                            refused = Some(reason);
                        } else if let Some(outcome) = job_over(&e) {
                            // The job ended before this node heard how: the close says it.
                            over = Some(outcome);
                        } else {
                            tracing::info!(error = %e, "connection to the coordinator ended");
                            if !done(ended) {
                                progress(format!(
                                    "the connection to the coordinator {coordinator} ended ({e}); connecting again"
                                ));
                            }
                        }
                        break;
                    }
                    Err(e) => tracing::warn!(error = %e, "frame refused"),
                },
                Some(bytes) = out_rx.recv() => {
                    if let Err(e) = frame::send_raw(&conn, &bytes).await {
                        tracing::warn!(error = %e, "sending failed");
                        break;
                    }
                    sent.count(&bytes);
                }
                // The machine's part may be over: look, and hang up.
                _ = ended.changed() => {}
            }
            if done(ended) {
                break;
            }
        }
        reader.abort();
        // Flush what the machine produced last (e.g. a final contribution) before leaving.
        while let Ok(bytes) = out_rx.try_recv() {
            if frame::send_raw(&conn, &bytes).await.is_ok() {
                sent.count(&bytes);
            }
        }
        if done(ended) {
            conn.close(quinn::VarInt::from_u32(CLOSE_DONE), b"done");
        }
        sent.udp_bytes += conn.stats().udp_tx.bytes;
        if let Some(reason) = refused {
            return Err(SessionEnd::Refused(reason));
        }
        if let Some(outcome) = over.filter(|_| !done(ended)) {
            return Err(SessionEnd::JobOver(outcome));
        }
    }
    Ok(sent)
}

/// The coordinator's word on how the job ended, when it closed the connection at the job's end.
fn job_over(error: &quinn::ConnectionError) -> Option<String> {
    match error {
        quinn::ConnectionError::ApplicationClosed(c)
            if c.error_code == quinn::VarInt::from_u32(CLOSE_DONE) =>
        {
            Some(String::from_utf8_lossy(&c.reason).into_owned())
        }
        _ => None,
    }
}

/// What a participant's shell put on its connections.
#[derive(Default)]
pub(crate) struct SentCounter {
    pub(crate) messages: u64,
    pub(crate) bytes: u64,
    pub(crate) udp_bytes: u64,
}

impl SentCounter {
    fn count(&mut self, message: &[u8]) {
        self.messages += 1;
        // The frame: the message (wire header and body) after an 8-byte length.
        self.bytes += message.len() as u64 + 8;
    }
}

/// What a participant's shell does with its machine's outputs: send to the coordinator, append
/// to the trail, write its local files (assignments, model, figures, compliance report) and,
/// before anything after them, its committee member and privacy state.
struct ParticipantEffects {
    id: NodeId,
    job: fedbank_common::ids::JobId,
    out: tokio_mpsc::UnboundedSender<Vec<u8>>,
    trail: fedbank_common::audit::TrailWriter,
    local: LocalOutputs,
    member_files: Option<(PathBuf, MemberFiles)>,
    privacy_file: Option<PathBuf>,
    figures: Arc<Mutex<Option<LocalFigures>>>,
    progress: Arc<dyn Fn(String) + Send + Sync>,
    /// The round being computed (number, label, start), for the node's log.
    round: Option<(u32, &'static str, Instant)>,
}

impl ParticipantEffects {
    /// Writes a local output and binds it to the trail (`artifact.written`, its path relative to
    /// the trail's directory and its SHA-256). A file that cannot be written is reported and the
    /// job goes on (the output stays computable from the trail's inputs); a record that cannot
    /// be appended stops the node, like every trail failure.
    fn write_local(&mut self, path: &Path, bytes: &[u8], what: &str) -> Result<(), NodeError> {
        if let Err(e) = fedbank_common::storage::write_atomic(path, bytes, true) {
            tracing::error!(error = %e, "could not write the local {what}");
            (self.progress)(format!("could not write {} ({what}): {e}", path.display()));
            return Ok(());
        }
        let base = self
            .trail
            .path()
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."))
            .to_path_buf();
        match ArtifactWritten::of_file(&self.job, what, &base, path) {
            Ok(record) => {
                self.trail.record(&record, SystemTime::now())?;
            }
            Err(e) => {
                tracing::error!(error = %e, "could not digest the local {what}");
                (self.progress)(format!(
                    "{}: {} ({what}) was written but could not be read back to bind it to the trail: {e}",
                    self.id,
                    path.display()
                ));
            }
        }
        Ok(())
    }
}

impl<S: RingScalar> crate::driver::Effects<Delivery<Inbound<S>>, ParticipantMachine<S>>
    for ParticipantEffects
{
    type Error = NodeError;

    fn before(&mut self, input: &Delivery<Inbound<S>>) {
        self.round = match input {
            Delivery::Message(Inbound::Round(r)) => Some((r.round, r.kind.label(), Instant::now())),
            _ => None,
        };
    }

    fn after(&mut self) {
        // A round's local computation and encryption, timed for the node's log.
        if let Some((number, label, started)) = self.round.take() {
            (self.progress)(format!(
                "{}: round {number} ({label}) computed and encrypted in {:.2} s",
                self.id,
                started.elapsed().as_secs_f64()
            ));
        }
    }

    fn refused(&mut self, violation: &fedbank_participant::NodeViolation) {
        tracing::warn!(violation = %violation, "coordinator message refused");
        (self.progress)(format!(
            "{}: refused a coordinator message: {violation}",
            self.id
        ));
    }

    fn carry_out(&mut self, output: ParticipantOutput<S>) -> Result<(), NodeError> {
        let progress = &*self.progress;
        match output {
            ParticipantOutput::Send(message) => match message.encode() {
                Ok(bytes) => {
                    let _ = self.out.send(bytes);
                }
                Err(e) => tracing::error!(error = %e, "could not encode a message"),
            },
            ParticipantOutput::Audit { kind, fields } => {
                self.trail.append(kind, fields, SystemTime::now())?;
            }
            ParticipantOutput::Progress(event) => progress(event.to_string()),
            ParticipantOutput::Assignments(rows) => match &self.local.assignments {
                Some(path) => {
                    let mut csv = String::from("customer_id,segment\n");
                    for (customer, segment) in rows {
                        csv.push_str(&format!("{customer},{segment}\n"));
                    }
                    let path = path.clone();
                    self.write_local(&path, csv.as_bytes(), "segment assignment")?;
                }
                None => tracing::info!("segment assignment computed; no file configured"),
            },
            ParticipantOutput::Model { model, figures } => {
                for (path, value, what) in [
                    (
                        self.local.model.clone(),
                        serde_json::to_vec_pretty(&model),
                        "model",
                    ),
                    (
                        self.local.figures.clone(),
                        serde_json::to_vec_pretty(&figures),
                        "local figures",
                    ),
                ] {
                    match (path, value) {
                        (Some(path), Ok(bytes)) => self.write_local(&path, &bytes, what)?,
                        (None, _) => tracing::info!("{what} received; no file configured"),
                        (_, Err(e)) => tracing::error!(error = %e, "could not encode the {what}"),
                    }
                }
                if let Ok(mut f) = self.figures.lock() {
                    *f = figures;
                }
            }
            ParticipantOutput::SaveMember { share, record } => {
                // Nothing after this output is carried out unless it is on disk.
                let Some((dir, files)) = &self.member_files else {
                    tracing::warn!("committee member state not kept: no directory configured");
                    return Ok(());
                };
                save_member(dir, files, share.as_deref(), &record).map_err(|source| {
                    progress(format!(
                        "{}: could not save its committee member state in {}; stopping",
                        self.id,
                        dir.display()
                    ));
                    NodeError::MemberState {
                        dir: dir.clone(),
                        source,
                    }
                })?;
            }
            ParticipantOutput::SavePrivacy(state) => {
                // Nothing after this output (the noised contribution) leaves unless the spend
                // is on disk.
                let Some(path) = &self.privacy_file else {
                    tracing::warn!("privacy state not kept: no state directory configured");
                    return Ok(());
                };
                let saved = path
                    .parent()
                    .map_or(Ok(()), std::fs::create_dir_all)
                    .map_err(|e| e.to_string())
                    .and_then(|()| {
                        fedbank_common::storage::save(path, &*state, true)
                            .map_err(|e| e.to_string())
                    });
                if let Err(reason) = saved {
                    progress(format!(
                        "{}: could not save its privacy state to {}; stopping",
                        self.id,
                        path.display()
                    ));
                    return Err(NodeError::LocalData(format!(
                        "{}: privacy state not saved: {reason}",
                        path.display()
                    )));
                }
            }
            ParticipantOutput::LocalReport(report) => {
                match (
                    self.local.compliance_report.clone(),
                    serde_json::to_vec_pretty(&report),
                ) {
                    (Some(path), Ok(bytes)) => {
                        self.write_local(&path, &bytes, "compliance report")?
                    }
                    (None, _) => tracing::info!("compliance report computed; no file configured"),
                    (_, Err(e)) => tracing::error!(error = %e, "could not encode the report"),
                }
            }
        }
        Ok(())
    }
}
