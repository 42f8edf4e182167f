//! The network shells around the coordinator and participant state machines.
//!
//! Each machine runs on its own OS thread (encryption, aggregation and partial decryption are
//! CPU-heavy and must not block the async executor); tokio tasks only move frames between QUIC
//! connections and the machine's channel. Time is the shell's: milliseconds since the node
//! started, passed into the machine with every input.

use crate::frame::{self, RawFrame};
use crate::pki::NodeCredentials;
use crate::{admit, connect, permanent_refusal, tls, AdmitError, ConnectError, CLOSE_DONE};
use fedbank_common::audit::{SigningIdentity, TrailError, TrailWriter};
use fedbank_common::ids::NodeId;
use fedbank_common::job::ValidJob;
use fedbank_common::policy::MemberRecord;
use fedbank_common::protocol::Inbound;
use fedbank_common::secagg::{RingScalar, SecretKeyShare};
use fedbank_common::storage::{self, StorageError};
use fedbank_coordinator::{Checkpoint, CoordinatorMachine, Input, Output, Status};
use fedbank_participant::propensity::LocalFigures;
use fedbank_participant::{
    CommitteeMember, LocalData, MemberError, MemberFiles, NodeOutput, NodeStatus,
    ParticipantMachine,
};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};
use tokio::sync::mpsc as tokio_mpsc;

/// Why a node stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// TLS configuration.
    #[error("TLS configuration")]
    Tls(#[from] tls::TlsError),
    /// The endpoint could not be bound.
    #[error("binding {addr}")]
    Bind {
        /// Address.
        addr: SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The audit trail could not be written.
    #[error("audit trail")]
    Trail(#[from] TrailError),
    /// The coordinator could not be reached in time.
    #[error("could not reach the coordinator {coordinator} at {addr} after {attempts} attempts")]
    Unreachable {
        /// Coordinator id.
        coordinator: NodeId,
        /// Address.
        addr: SocketAddr,
        /// Attempts made.
        attempts: u32,
    },
    /// The coordinator refused this node's identity, or this node refused the coordinator's.
    #[error("connection to the coordinator {coordinator} refused: {reason}")]
    Refused {
        /// Coordinator id.
        coordinator: NodeId,
        /// Why, as reported by TLS or by the coordinator.
        reason: String,
    },
    /// The node's configured id, its certificate and its key do not agree, or the CA
    /// certificate is unusable; the node stops before it connects.
    #[error("node identity")]
    Identity(#[from] fedbank_common::endorsement::EndorsementError),
    /// The node's local data cannot be used for this job.
    #[error("local data: {0}")]
    LocalData(String),
    /// The checkpoint cannot be resumed.
    #[error("checkpoint {path}: {reason}")]
    Checkpoint {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The committee member's saved state cannot be read, or its new state cannot be written
    /// (the node then stops before anything that state covers leaves it).
    #[error("committee member state in {dir}")]
    MemberState {
        /// The member's state directory.
        dir: PathBuf,
        /// Why.
        #[source]
        source: fedbank_participant::MemberError,
    },
    /// The machine's thread ended unexpectedly.
    #[error("the node's protocol thread stopped unexpectedly")]
    MachineStopped,
}

/// Where a node writes its audit trail and with which key.
pub struct TrailSettings {
    /// Trail file (created, or continued if it exists).
    pub path: PathBuf,
    /// The node's signing key (its certificate key).
    pub identity: SigningIdentity,
}

pub(crate) fn open_trail(
    settings: TrailSettings,
    node: &NodeId,
    role: &str,
) -> Result<TrailWriter, TrailError> {
    if settings.path.exists() {
        TrailWriter::open(&settings.path, settings.identity)
    } else {
        TrailWriter::create(
            &settings.path,
            node,
            role,
            settings.identity,
            SystemTime::now(),
        )
    }
}

/// An encoded message, shared by every recipient of a broadcast.
type Encoded = Arc<Vec<u8>>;

/// A connected node's current connection: its serial number, the queue of what to send it, and
/// the connection itself (closed when the node connects again or the machine disconnects it).
#[derive(Clone)]
struct Writer {
    serial: usize,
    messages: tokio_mpsc::UnboundedSender<Encoded>,
    conn: quinn::Connection,
}

type Writers = Arc<Mutex<HashMap<NodeId, Writer>>>;

/// Messages the coordinator writes at once across all connections: what QUIC holds unsent or
/// unacknowledged stays a few messages, however many participants receive the model.
pub const MESSAGES_BEING_SENT: usize = 4;

/// Everything a coordinator node needs.
pub struct CoordinatorSettings {
    /// The job.
    pub job: ValidJob,
    /// This node's id.
    pub id: NodeId,
    /// Its credentials.
    pub creds: NodeCredentials,
    /// Address to listen on.
    pub listen: SocketAddr,
    /// Its audit trail.
    pub trail: TrailSettings,
    /// Public seed of the joint key's mask.
    pub mask_seed: u128,
    /// The job's checkpoint file: written atomically after every round; if it exists at start,
    /// the job resumes from it.
    pub state: Option<PathBuf>,
}

/// An input for the coordinator's machine, with the permit its message holds (released once
/// the machine has handled it).
type Event<S> = (Input<S>, Option<tokio::sync::OwnedSemaphorePermit>);

/// Messages the coordinator holds at once, read but not yet handled: what it buffers does not
/// grow with the number of participants.
pub const MESSAGES_IN_FLIGHT: usize = 2;

/// Longest wait, at the end of a job, for the last messages to reach the nodes.
pub const FINAL_FLUSH: Duration = Duration::from_secs(3);

/// How long a started message may take to arrive before it is abandoned as a stalled upload.
pub const UPLOAD_PATIENCE: Duration = Duration::from_secs(60);

/// Connections the coordinator accepts beyond one per enrolled node (a reconnecting node's old
/// connection may linger until its idle timeout).
pub const RECONNECT_ROOM: usize = 4;

/// One open connection, counted while it lives.
struct ConnectionSlot(Arc<std::sync::atomic::AtomicUsize>);

impl ConnectionSlot {
    fn take(active: &Arc<std::sync::atomic::AtomicUsize>) -> Self {
        active.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Self(active.clone())
    }
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    }
}

/// Largest checkpoint read back.
const MAX_CHECKPOINT_BYTES: usize = 1 << 30;

/// The coordinator's machine: resumed from the checkpoint at `state` if there is one (checked
/// against the job and the trail), new otherwise.
fn coordinator_machine<S: RingScalar>(
    job: ValidJob,
    mask_seed: u128,
    state: Option<&Path>,
    (trail, trust): (&TrailWriter, fedbank_common::endorsement::ConsortiumTrust),
) -> Result<CoordinatorMachine<S>, NodeError> {
    let Some(path) = state.filter(|p| p.exists()) else {
        return Ok(CoordinatorMachine::new(job, mask_seed, trust));
    };
    let bad = |reason: String| NodeError::Checkpoint {
        path: path.to_path_buf(),
        reason,
    };
    let bytes = fedbank_common::storage::read_limited(path, MAX_CHECKPOINT_BYTES)
        .map_err(|e| bad(e.to_string()))?;
    let checkpoint: Checkpoint =
        serde_json::from_slice(&bytes).map_err(|e| bad(format!("not a checkpoint: {e}")))?;
    if checkpoint.trail_events > trail.events() {
        return Err(bad(format!(
            "it was written when the trail had {} events, the trail now has {} (shortened?)",
            checkpoint.trail_events,
            trail.events()
        )));
    }
    CoordinatorMachine::resume(job, &checkpoint, trust).map_err(|e| bad(e.to_string()))
}

/// Runs a coordinator until its job finishes or fails. `ready` receives the bound address;
/// `progress` receives one line per notable step.
pub async fn run_coordinator<S: RingScalar>(
    settings: CoordinatorSettings,
    ready: Option<tokio::sync::oneshot::Sender<SocketAddr>>,
    progress: Arc<dyn Fn(String) + Send + Sync>,
) -> Result<Status, NodeError> {
    let CoordinatorSettings {
        job,
        id,
        creds,
        listen,
        trail,
        mask_seed,
        state,
    } = settings;
    // The coordinator is a node like any other: its id must be its certificate's.
    creds.signer(&id)?;
    let trust = creds.trust()?;
    let endpoint =
        quinn::Endpoint::server(tls::server_config(&creds)?, listen).map_err(|source| {
            NodeError::Bind {
                addr: listen,
                source,
            }
        })?;
    let addr = endpoint.local_addr().map_err(|source| NodeError::Bind {
        addr: listen,
        source,
    })?;
    if let Some(ready) = ready {
        let _ = ready.send(addr);
    }
    let mut trail = open_trail(trail, &id, "coordinator")?;
    let (events, inbox) = mpsc::channel::<Event<S>>();
    // Messages read and not yet handled by the machine: at most this many at once.
    let gate = Arc::new(tokio::sync::Semaphore::new(MESSAGES_IN_FLIGHT));
    let sending = Arc::new(tokio::sync::Semaphore::new(MESSAGES_BEING_SENT));
    let writers: Writers = Arc::new(Mutex::new(HashMap::new()));
    // Participants and, for a compliance job with alerts, the auditor.
    let enrolled: Arc<Vec<NodeId>> = Arc::new(
        job.spec()
            .participants
            .iter()
            .chain(job.spec().auditor.as_ref())
            .cloned()
            .collect(),
    );
    let cap = job.max_message_bytes();
    let max_connections = enrolled.len() + RECONNECT_ROOM;

    // Accept loop: admit by certificate, then one reader task per connection.
    let accept = {
        let endpoint = endpoint.clone();
        let writers = writers.clone();
        let events = events.clone();
        let progress = progress.clone();
        let (gate, sending) = (gate.clone(), sending.clone());
        tokio::spawn(async move {
            let mut next_connection = 0usize;
            let active = Arc::new(std::sync::atomic::AtomicUsize::new(0));
            while let Some(incoming) = endpoint.accept().await {
                // Connections beyond every enrolled node (plus room for reconnections) are refused
                // before the handshake: a peer cannot make the coordinator hold more.
                if active.load(std::sync::atomic::Ordering::SeqCst) >= max_connections {
                    let remote = incoming.remote_address();
                    incoming.refuse();
                    tracing::warn!(%remote, max_connections, "connection refused: connection limit");
                    progress(format!(
                        "refused a connection from {remote}: {max_connections} connections are open, the limit"
                    ));
                    continue;
                }
                let slot = ConnectionSlot::take(&active);
                next_connection += 1;
                let serial = next_connection;
                let (gate, sending) = (gate.clone(), sending.clone());
                let (writers, events, enrolled, progress) = (
                    writers.clone(),
                    events.clone(),
                    enrolled.clone(),
                    progress.clone(),
                );
                tokio::spawn(async move {
                    let _slot = slot;
                    match admit(incoming, |n| enrolled.contains(n)).await {
                        Ok((node, conn)) => {
                            serve_connection::<S>(
                                node,
                                serial,
                                conn,
                                writers,
                                events,
                                progress,
                                (cap, gate, sending),
                            )
                            .await
                        }
                        Err(e @ AdmitError::NotEnrolled { .. }) => {
                            tracing::warn!(error = %e, "connection refused");
                            progress(format!("refused: {e}"));
                        }
                        Err(e) => {
                            let detail = std::error::Error::source(&e)
                                .map(|s| s.to_string())
                                .unwrap_or_default();
                            tracing::warn!(error = %e, detail, "connection refused");
                            progress(format!("refused: {e}: {detail}"));
                        }
                    }
                });
            }
        })
    };

    // The machine, on its own thread.
    let machine_writers = writers.clone();
    let machine_progress = progress.clone();
    let job_span = tracing::info_span!("job", job = %job.spec().job);
    let machine = std::thread::spawn(move || -> Result<Result<Status, NodeError>, TrailError> {
        let _span = job_span.enter();
        let start = Instant::now();
        let now = || start.elapsed().as_millis() as u64;
        let mut machine =
            match coordinator_machine::<S>(job, mask_seed, state.as_deref(), (&trail, trust)) {
                Ok(m) => m,
                Err(e) => return Ok(Err(e)),
            };
        // A broadcast (the same round request to every participant) is encoded once and shared.
        let mut last: Option<Encoded> = None;
        loop {
            while let Some(output) = machine.poll_output() {
                match output {
                    Output::Send { to, message } => match message.encode() {
                        Ok(bytes) => {
                            let bytes = match &last {
                                Some(previous) if **previous == bytes => previous.clone(),
                                _ => {
                                    let shared = Arc::new(bytes);
                                    last = Some(shared.clone());
                                    shared
                                }
                            };
                            if let Some(w) = machine_writers
                                .lock()
                                .ok()
                                .and_then(|m| m.get(&to).cloned())
                            {
                                let _ = w.messages.send(bytes);
                            }
                        }
                        Err(e) => {
                            tracing::error!(node = %to, error = %e, "could not encode a message")
                        }
                    },
                    Output::Audit { kind, fields } => {
                        trail.append(kind, fields, SystemTime::now())?;
                    }
                    Output::Progress(line) => machine_progress(line),
                    Output::Checkpoint(mut checkpoint) => {
                        checkpoint.trail_events = trail.events();
                        if let Some(path) = &state {
                            let written = serde_json::to_vec(&checkpoint)
                                .map_err(|e| e.to_string())
                                .and_then(|bytes| {
                                    fedbank_common::storage::write_atomic(path, &bytes, false)
                                        .map_err(|e| e.to_string())
                                });
                            if let Err(e) = written {
                                tracing::error!(error = %e, "could not write the checkpoint");
                                machine_progress(format!(
                                    "could not write the checkpoint {}: {e}",
                                    path.display()
                                ));
                            }
                        }
                    }
                    Output::Aggregate {
                        round,
                        kind,
                        values,
                    } => {
                        tracing::debug!(
                            round,
                            quantity = kind.label(),
                            quantities = values.len(),
                            "aggregate decrypted"
                        );
                    }
                    Output::Disconnect { node, reason } => {
                        tracing::info!(node = %node, reason, "disconnecting");
                        if let Some(w) = machine_writers
                            .lock()
                            .ok()
                            .and_then(|mut m| m.remove(&node))
                        {
                            w.conn.close(
                                quinn::VarInt::from_u32(crate::CLOSE_PROTOCOL),
                                reason.as_bytes(),
                            );
                        }
                    }
                }
            }
            if *machine.status() != Status::Running {
                return Ok(Ok(machine.status().clone()));
            }
            let input = match machine.poll_timeout() {
                Some(deadline) => {
                    let wait = deadline.saturating_sub(now());
                    match inbox.recv_timeout(Duration::from_millis(wait)) {
                        Ok(event) => event,
                        Err(mpsc::RecvTimeoutError::Timeout) => (Input::Tick, None),
                        Err(mpsc::RecvTimeoutError::Disconnected) => (Input::Tick, None),
                    }
                }
                None => match inbox.recv() {
                    Ok(event) => event,
                    Err(_) => return Ok(Ok(machine.status().clone())),
                },
            };
            let (input, permit) = input;
            if let Err(violation) = machine.handle(input, now()) {
                // The whole chain: "contribution … rejected: expected … got …".
                let mut text = violation.to_string();
                let mut source = std::error::Error::source(&violation);
                while let Some(cause) = source {
                    text.push_str(&format!(": {cause}"));
                    source = cause.source();
                }
                tracing::warn!(violation = %text, "message refused");
                machine_progress(format!("refused a message: {text}"));
            }
            // The message is handled: the next one may be read.
            drop(permit);
        }
    });
    drop(events);
    let status = tokio::task::spawn_blocking(move || machine.join())
        .await
        .map_err(|_| NodeError::MachineStopped)?
        .map_err(|_| NodeError::MachineStopped)??;
    let status = match status {
        Ok(status) => status,
        Err(e) => {
            endpoint.close(quinn::VarInt::from_u32(CLOSE_DONE), b"cannot resume");
            accept.abort();
            return Err(e);
        }
    };
    // Let the final notices (and released segments or models) reach the nodes, then close.
    // Every node hangs up once it has the job's end; wait for that, within FINAL_FLUSH.
    let flushing = Instant::now();
    let connected = || writers.lock().map(|m| !m.is_empty()).unwrap_or(false);
    while connected() && flushing.elapsed() < FINAL_FLUSH {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    endpoint.close(quinn::VarInt::from_u32(CLOSE_DONE), b"job over");
    accept.abort();
    let _ = tokio::time::timeout(Duration::from_secs(2), endpoint.wait_idle()).await;
    Ok(status)
}

async fn serve_connection<S: RingScalar>(
    node: NodeId,
    serial: usize,
    conn: quinn::Connection,
    writers: Writers,
    events: mpsc::Sender<Event<S>>,
    progress: Arc<dyn Fn(String) + Send + Sync>,
    (cap, gate, sending): (
        usize,
        Arc<tokio::sync::Semaphore>,
        Arc<tokio::sync::Semaphore>,
    ),
) {
    let span = tracing::info_span!("participant", node = %node);
    let _guard = span.enter();
    let (tx, mut rx) = tokio_mpsc::unbounded_channel::<Encoded>();
    let current = Writer {
        serial,
        messages: tx,
        conn: conn.clone(),
    };
    if let Some(older) = writers
        .lock()
        .ok()
        .and_then(|mut m| m.insert(node.clone(), current))
    {
        // One connection per node: an insider cannot hold several stalled uploads (and with
        // them every receive permit) through several connections of its own.
        older.conn.close(
            quinn::VarInt::from_u32(crate::CLOSE_REPLACED),
            b"replaced by a newer connection of the same node",
        );
        // The older connection's Hello belonged to it: the machine hears it go before the newer
        // one arrives, so that a restarted node's Hello is a first Hello again (its task, no
        // longer the current writer, reports nothing when it ends).
        let _ = events.send((Input::Disconnected(node.clone()), None));
    }
    let _ = events.send((Input::Connected(node.clone()), None));
    let writer_conn = conn.clone();
    let writer = tokio::spawn(async move {
        while let Some(bytes) = rx.recv().await {
            let delivered = match sending.clone().acquire_owned().await {
                Ok(_permit) => frame::send_raw_delivered(&writer_conn, &bytes).await,
                Err(_) => Ok(()),
            };
            if let Err(e) = delivered {
                tracing::warn!(error = %e, "sending failed");
                break;
            }
        }
    });
    loop {
        let limit = |kind| Inbound::<S>::limit(kind).min(cap);
        match frame::recv_gated(&conn, limit, &gate, UPLOAD_PATIENCE).await {
            Ok((RawFrame { bytes, .. }, permit)) => match Inbound::<S>::decode(&bytes) {
                Ok(message) => {
                    drop(bytes);
                    let input = Input::Message {
                        from: node.clone(),
                        message,
                    };
                    if events.send((input, Some(permit))).is_err() {
                        break;
                    }
                }
                Err(e) => {
                    let detail = std::error::Error::source(&e)
                        .map(|s| s.to_string())
                        .unwrap_or_default();
                    tracing::warn!(node = %node, error = %e, detail, "malformed message refused");
                    progress(format!(
                        "refused a malformed message from {node}: {e}: {detail}"
                    ));
                }
            },
            Err(frame::FrameError::Connection(_)) => break,
            Err(e) => {
                tracing::warn!(node = %node, error = %e, "frame refused");
                progress(format!("refused a frame from {node}: {e}"));
            }
        }
    }
    writer.abort();
    let current = writers
        .lock()
        .map(|mut m| {
            if m.get(&node).is_some_and(|w| w.serial == serial) {
                m.remove(&node);
                true
            } else {
                false
            }
        })
        .unwrap_or(false);
    if current {
        let _ = events.send((Input::Disconnected(node), None));
    }
}

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

fn write_local(path: &Path, bytes: &[u8], what: &str, progress: &(dyn Fn(String) + Send + Sync)) {
    if let Err(e) = fedbank_common::storage::write_atomic(path, bytes, true) {
        tracing::error!(error = %e, "could not write the local {what}");
        progress(format!("could not write {} ({what}): {e}", path.display()));
    }
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
    } = settings;
    let credentials = creds.consortium(&id)?;
    let trust = credentials.trust.clone();
    let mut machine = ParticipantMachine::<S>::with_data(credentials, job.clone(), data)
        .map_err(|e| NodeError::LocalData(e.to_string()))?;
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
    let mut trail = open_trail(trail, &id, "participant")?;
    let cap = job.max_message_bytes();

    // The machine on its own thread: messages in, frames and audit events out.
    let (to_machine, inbox) = mpsc::channel::<Option<Inbound<S>>>();
    let (out_tx, mut out_rx) = tokio_mpsc::unbounded_channel::<Vec<u8>>();
    let status = Arc::new(Mutex::new(NodeStatus::Running));
    let machine_status = status.clone();
    let machine_progress = progress.clone();
    let figures: Arc<Mutex<Option<LocalFigures>>> = Arc::new(Mutex::new(None));
    let machine_figures = figures.clone();
    let span = tracing::info_span!("participant", node = %id);
    let machine = std::thread::spawn(move || -> Result<(), NodeError> {
        let _span = span.enter();
        // `None` means "connected": say Hello.
        while let Ok(message) = inbox.recv() {
            match message {
                None => machine.on_connected(),
                Some(message) => {
                    // A round's local computation and encryption, timed for the node's log.
                    let round = match &message {
                        Inbound::Round(r) => Some((r.round, r.kind.label(), Instant::now())),
                        _ => None,
                    };
                    let handled = machine.handle(message);
                    if let Some((number, label, started)) = round {
                        machine_progress(format!(
                            "{}: round {number} ({label}) computed and encrypted in {:.2} s",
                            machine.id(),
                            started.elapsed().as_secs_f64()
                        ));
                    }
                    if let Err(v) = handled {
                        tracing::warn!(violation = %v, "coordinator message refused");
                        machine_progress(format!(
                            "{}: refused a coordinator message: {v}",
                            machine.id()
                        ));
                    }
                }
            }
            while let Some(output) = machine.poll_output() {
                match output {
                    NodeOutput::Send(message) => match message.encode() {
                        Ok(bytes) => {
                            let _ = out_tx.send(bytes);
                        }
                        Err(e) => tracing::error!(error = %e, "could not encode a message"),
                    },
                    NodeOutput::Audit { kind, fields } => {
                        trail.append(kind, fields, SystemTime::now())?;
                    }
                    NodeOutput::Progress(line) => machine_progress(line),
                    NodeOutput::Assignments(rows) => match &local.assignments {
                        Some(path) => {
                            let mut csv = String::from("customer_id,segment\n");
                            for (customer, segment) in rows {
                                csv.push_str(&format!("{customer},{segment}\n"));
                            }
                            write_local(
                                path,
                                csv.as_bytes(),
                                "segment assignment",
                                &*machine_progress,
                            );
                        }
                        None => tracing::info!("segment assignment computed; no file configured"),
                    },
                    NodeOutput::Model { model, figures } => {
                        for (path, value, what) in [
                            (&local.model, serde_json::to_vec_pretty(&model), "model"),
                            (
                                &local.figures,
                                serde_json::to_vec_pretty(&figures),
                                "local figures",
                            ),
                        ] {
                            match (path, value) {
                                (Some(path), Ok(bytes)) => {
                                    write_local(path, &bytes, what, &*machine_progress)
                                }
                                (None, _) => tracing::info!("{what} received; no file configured"),
                                (_, Err(e)) => {
                                    tracing::error!(error = %e, "could not encode the {what}")
                                }
                            }
                        }
                        if let Ok(mut f) = machine_figures.lock() {
                            *f = figures;
                        }
                    }
                    NodeOutput::SaveMember { share, record } => {
                        // Nothing after this output is carried out unless it is on disk.
                        let Some((dir, files)) = &member_files else {
                            tracing::warn!(
                                "committee member state not kept: no directory configured"
                            );
                            continue;
                        };
                        save_member(dir, files, share.as_deref(), &record).map_err(|source| {
                            machine_progress(format!(
                                "{}: could not save its committee member state in {}; stopping",
                                machine.id(),
                                dir.display()
                            ));
                            NodeError::MemberState {
                                dir: dir.clone(),
                                source,
                            }
                        })?;
                    }
                    NodeOutput::SavePrivacy(state) => {
                        // Nothing after this output (the noised contribution) leaves unless the
                        // spend is on disk.
                        let Some(path) = &privacy_file else {
                            tracing::warn!("privacy state not kept: no state directory configured");
                            continue;
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
                            machine_progress(format!(
                                "{}: could not save its privacy state to {}; stopping",
                                machine.id(),
                                path.display()
                            ));
                            return Err(NodeError::LocalData(format!(
                                "{}: privacy state not saved: {reason}",
                                path.display()
                            )));
                        }
                    }
                    NodeOutput::ComplianceReport(report) => {
                        match (&local.compliance_report, serde_json::to_vec_pretty(&report)) {
                            (Some(path), Ok(bytes)) => {
                                write_local(path, &bytes, "compliance report", &*machine_progress)
                            }
                            (None, _) => {
                                tracing::info!("compliance report computed; no file configured")
                            }
                            (_, Err(e)) => {
                                tracing::error!(error = %e, "could not encode the report")
                            }
                        }
                    }
                }
            }
            if *machine.status() != NodeStatus::Running {
                if let Ok(mut s) = machine_status.lock() {
                    *s = machine.status().clone();
                }
                break;
            }
        }
        Ok(())
    });

    let done = || {
        status
            .lock()
            .map(|s| *s != NodeStatus::Running)
            .unwrap_or(true)
    };
    let session = talk_to_coordinator(
        &endpoint,
        (addr, &coordinator),
        connect_attempts,
        &to_machine,
        &mut out_rx,
        &done,
        cap,
    )
    .await;
    drop(to_machine);
    let (sent, refused) = match session {
        Ok(sent) => (sent, None),
        Err(SessionEnd::Refused(reason)) => (SentCounter::default(), Some(reason)),
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

/// How a session with the coordinator ended early.
pub(crate) enum SessionEnd {
    /// The coordinator refused this node (or this node the coordinator) for good.
    Refused(String),
    /// The coordinator could not be reached after this many attempts.
    Unreachable(u32),
}

/// Connects to the coordinator (with backoff, reconnecting after a dropped connection), tells
/// the machine of each connection (`None`), forwards the coordinator's messages to it and sends
/// what it produces, until `done` says the node's part is over.
pub(crate) async fn talk_to_coordinator<S: RingScalar>(
    endpoint: &quinn::Endpoint,
    (addr, coordinator): (SocketAddr, &NodeId),
    connect_attempts: u32,
    to_machine: &mpsc::Sender<Option<Inbound<S>>>,
    out_rx: &mut tokio_mpsc::UnboundedReceiver<Vec<u8>>,
    done: &(dyn Fn() -> bool + Sync),
    cap: usize,
) -> Result<SentCounter, SessionEnd> {
    let mut failures = 0u32;
    let mut sent = SentCounter::default();
    while !done() {
        let conn = match connect(endpoint, addr, coordinator).await {
            Ok(conn) => {
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
                tokio::time::sleep(Duration::from_millis(100 * u64::from(failures.min(20)))).await;
                continue;
            }
        };
        if to_machine.send(None).is_err() {
            break;
        }
        let mut refused = None;
        // Frames are read by their own task, so that sending or looking at the machine's status
        // never interrupts a message half received.
        let (frames_tx, mut frames) = tokio_mpsc::channel::<Result<RawFrame, frame::FrameError>>(4);
        let reader_conn = conn.clone();
        let reader = tokio::spawn(async move {
            loop {
                let frame =
                    frame::recv(&reader_conn, |kind| Inbound::<S>::limit(kind).min(cap)).await;
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
                            if to_machine.send(Some(message)).is_err() {
                                break;
                            }
                        }
                        Err(e) => tracing::warn!(error = %e, "malformed message from the coordinator"),
                    },
                    Err(frame::FrameError::Connection(e)) => {
                        if let Some(reason) = permanent_refusal(&e) {
                            tracing::debug!(%reason, "the coordinator refused this node");
                            refused = Some(reason);
                        } else {
                            tracing::info!(error = %e, "connection to the coordinator ended");
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
                // The machine may have seen the job's end: look again shortly, and hang up.
                _ = tokio::time::sleep(Duration::from_millis(50)) => {}
            }
            if done() {
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
        if done() {
            conn.close(quinn::VarInt::from_u32(CLOSE_DONE), b"done");
        }
        sent.udp_bytes += conn.stats().udp_tx.bytes;
        if let Some(reason) = refused {
            return Err(SessionEnd::Refused(reason));
        }
    }
    Ok(sent)
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
