//! The coordinator's shell: QUIC connections in, the machine on its own thread, frames out.

use super::key_epoch::key_epoch_to_run;
use super::{open_trail, NodeError, TrailSettings};
use crate::frame::{self, RawFrame};
use crate::pki::NodeCredentials;
use crate::{admit, tls, AdmitError, CLOSE_DONE};
use fedbank_common::audit::{TrailError, TrailWriter};
use fedbank_common::ids::NodeId;
use fedbank_common::job::ValidJob;
use fedbank_common::protocol::Inbound;
use fedbank_common::secagg::RingScalar;
use fedbank_coordinator::{
    Checkpoint, CoordinatorMachine, CoordinatorOutbound, CoordinatorOutput, Input, Status,
};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc, Mutex, Weak};
use std::time::{Duration, Instant, SystemTime};
use tokio::sync::mpsc as tokio_mpsc;

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

/// Every node's current connection, a wake-up for whoever waits for them to hang up, and how
/// the job ended once it has.
#[derive(Default)]
struct Connections {
    current: Mutex<HashMap<NodeId, Writer>>,
    hung_up: tokio::sync::Notify,
    /// The job's end as a node is told it (`job over: …`), set by the machine's thread before
    /// it stops reading: a connection that arrives or speaks after that is closed with it
    /// ([`CLOSE_DONE`]), so that a node back after the end learns the outcome instead of
    /// connecting again and again.
    ended: std::sync::OnceLock<String>,
}

impl Connections {
    /// Closes `conn` with the job's end (the job is over when the machine no longer reads).
    fn close_as_over(&self, conn: &quinn::Connection) {
        let outcome = self.ended.get().map_or("job over", String::as_str);
        conn.close(quinn::VarInt::from_u32(CLOSE_DONE), outcome.as_bytes());
    }

    fn lock(&self) -> std::sync::LockResult<std::sync::MutexGuard<'_, HashMap<NodeId, Writer>>> {
        self.current.lock()
    }

    /// Forgets `node`'s connection if it is the current one (`serial`, or any when `None`),
    /// and wakes the end-of-job flush.
    fn remove(&self, node: &NodeId, serial: Option<usize>) -> Option<Writer> {
        let removed = self
            .current
            .lock()
            .ok()
            .and_then(|mut m| match (m.get(node), serial) {
                (Some(w), Some(serial)) if w.serial != serial => None,
                _ => m.remove(node),
            });
        self.hung_up.notify_waiters();
        removed
    }
}

type Writers = Arc<Connections>;

/// Bytes of messages the coordinator has handed to QUIC and not yet seen acknowledged, across
/// all connections: what QUIC holds unsent or unacknowledged stays bounded, however many
/// participants receive the model. Within it, one connection's messages go back to back (a
/// node is not kept waiting a round trip per message), and a message larger than the budget
/// goes out alone.
pub const SEND_BUDGET_BYTES: usize = 32 << 20;

/// The unit of [`SEND_BUDGET_BYTES`] a permit stands for.
const SEND_PERMIT_BYTES: usize = 1 << 10;

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
    /// The operator's reason for opening a new key epoch of a job whose checkpoint is lost
    /// (`--new-key-epoch`); `None` to run or resume the job as its trail and checkpoint say.
    pub new_key_epoch: Option<String>,
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

/// Handshakes in progress the coordinator holds at once. They are not authenticated connections
/// and do not count against that limit: a peer without a certificate that starts handshakes and
/// never finishes them holds one of these for at most [`HANDSHAKE_PATIENCE`], and never keeps an
/// enrolled node out.
pub const MAX_HANDSHAKES: usize = 256;

/// Longest a handshake may take before the coordinator abandons it.
pub const HANDSHAKE_PATIENCE: Duration = Duration::from_secs(5);

/// At most one line per this long for each kind of refusal of a peer before it is admitted
/// (a flood of garbage handshakes is counted, not printed line by line).
pub const REFUSAL_LOG_EVERY: Duration = Duration::from_secs(10);

/// One kind of refusal, printed at most once per [`REFUSAL_LOG_EVERY`] with the count of those
/// not printed since.
struct RefusalLog {
    state: Mutex<(Option<Instant>, u64)>,
    progress: Arc<dyn Fn(String) + Send + Sync>,
}

impl RefusalLog {
    fn new(progress: Arc<dyn Fn(String) + Send + Sync>) -> Arc<Self> {
        Arc::new(Self {
            state: Mutex::new((None, 0)),
            progress,
        })
    }

    fn note(&self, line: impl FnOnce() -> String) {
        let now = Instant::now();
        let suppressed = {
            let Ok(mut state) = self.state.lock() else {
                return;
            };
            if state
                .0
                .is_some_and(|t| now.duration_since(t) < REFUSAL_LOG_EVERY)
            {
                state.1 += 1;
                return;
            }
            state.0 = Some(now);
            std::mem::take(&mut state.1)
        };
        let mut text = line();
        if suppressed > 0 {
            text.push_str(&format!(
                " ({suppressed} more like it in the last {} s, not shown)",
                REFUSAL_LOG_EVERY.as_secs()
            ));
        }
        tracing::warn!("{text}");
        (self.progress)(text);
    }
}

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
    (trail, trust): (
        &mut TrailWriter,
        fedbank_common::endorsement::ConsortiumTrust,
    ),
    new_key_epoch: Option<&str>,
) -> Result<CoordinatorMachine<S>, NodeError> {
    let Some(path) = state.filter(|p| p.exists() && new_key_epoch.is_none()) else {
        let epoch = key_epoch_to_run(&job, trail, state, new_key_epoch)?;
        return Ok(CoordinatorMachine::new(job, mask_seed, trust)
            .in_key_epoch(epoch.key_epoch, epoch.first_round)
            .with_data_commitments(epoch.data)
            .with_stopwatch(monotonic));
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
    CoordinatorMachine::resume(job, &checkpoint, trust)
        .map(|m| m.with_stopwatch(monotonic))
        .map_err(|e| bad(e.to_string()))
}

/// Time since this process first asked: the coordinator machine's stopwatch.
fn monotonic() -> Duration {
    static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    START.get_or_init(Instant::now).elapsed()
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
        new_key_epoch,
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
    let trail = open_trail(trail, &id, "coordinator")?;
    let (events, inbox) = mpsc::channel::<Event<S>>();
    // Messages read and not yet handled by the machine: at most this many at once.
    let gate = Arc::new(tokio::sync::Semaphore::new(MESSAGES_IN_FLIGHT));
    let sending = Arc::new(tokio::sync::Semaphore::new(
        SEND_BUDGET_BYTES / SEND_PERMIT_BYTES,
    ));
    let writers: Writers = Arc::new(Connections::default());
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
            let handshaking = Arc::new(std::sync::atomic::AtomicUsize::new(0));
            let busy = RefusalLog::new(progress.clone());
            let full = RefusalLog::new(progress.clone());
            let slow = RefusalLog::new(progress.clone());
            let failed = RefusalLog::new(progress.clone());
            let foreign = RefusalLog::new(progress.clone());
            while let Some(incoming) = endpoint.accept().await {
                // Handshakes beyond MAX_HANDSHAKES at once are refused before any handshake
                // work; they never count against the authenticated connections.
                if handshaking.load(std::sync::atomic::Ordering::SeqCst) >= MAX_HANDSHAKES {
                    let remote = incoming.remote_address();
                    incoming.refuse();
                    busy.note(|| {
                        format!(
                            "refused a handshake from {remote}: {MAX_HANDSHAKES} handshakes are in progress, the limit"
                        )
                    });
                    continue;
                }
                let handshake = ConnectionSlot::take(&handshaking);
                next_connection += 1;
                let serial = next_connection;
                let (gate, sending) = (gate.clone(), sending.clone());
                let (writers, events, enrolled, active) = (
                    writers.clone(),
                    events.clone(),
                    enrolled.clone(),
                    active.clone(),
                );
                let (full, slow, failed, foreign) =
                    (full.clone(), slow.clone(), failed.clone(), foreign.clone());
                tokio::spawn(async move {
                    let remote = incoming.remote_address();
                    let admitted = tokio::time::timeout(
                        HANDSHAKE_PATIENCE,
                        admit(incoming, |n| enrolled.contains(n)),
                    )
                    .await;
                    drop(handshake);
                    match admitted {
                        Ok(Ok((node, conn))) => {
                            // Authenticated connections beyond every enrolled node (plus room for
                            // reconnections) are closed with the reason.
                            if active.load(std::sync::atomic::Ordering::SeqCst) >= max_connections {
                                conn.close(
                                    quinn::VarInt::from_u32(crate::CLOSE_LIMIT),
                                    b"connection limit: try again later",
                                );
                                full.note(|| {
                                    format!(
                                        "refused a connection of {node} from {remote}: {max_connections} connections are open, the limit"
                                    )
                                });
                                return;
                            }
                            let _slot = ConnectionSlot::take(&active);
                            serve_connection::<S>(
                                node,
                                serial,
                                conn,
                                writers,
                                events,
                                (cap, gate, sending),
                            )
                            .await
                        }
                        Err(_) => slow.note(|| {
                            format!(
                                "abandoned a handshake from {remote}: not complete within {} s",
                                HANDSHAKE_PATIENCE.as_secs()
                            )
                        }),
                        Ok(Err(e @ AdmitError::NotEnrolled { .. })) => {
                            foreign.note(|| format!("refused: {e}"))
                        }
                        Ok(Err(e)) => {
                            let detail = std::error::Error::source(&e)
                                .map(|s| s.to_string())
                                .unwrap_or_default();
                            failed.note(|| format!("refused: {e}: {detail}"));
                        }
                    }
                });
            }
        })
    };

    // The machine, on its own thread, driven by the one node driver.
    let mut effects = CoordinatorEffects {
        writers: writers.clone(),
        trail,
        state: state.clone(),
        progress: progress.clone(),
        last: None,
        last_request: None,
    };
    let job_span = tracing::info_span!("job", job = %job.spec().job);
    let machine = std::thread::spawn(move || -> Result<Result<Status, NodeError>, TrailError> {
        let _span = job_span.enter();
        let start = Instant::now();
        let mut machine = match coordinator_machine::<S>(
            job,
            mask_seed,
            state.as_deref(),
            (&mut effects.trail, trust),
            new_key_epoch.as_deref(),
        ) {
            Ok(m) => m,
            Err(e) => return Ok(Err(e)),
        };
        let ended = crate::driver::drive(&mut machine, &inbox, &mut effects, start);
        let status = ended.as_ref().ok().and_then(Clone::clone);
        let status = status.unwrap_or_else(|| machine.status().clone());
        let told = match &ended {
            Ok(_) => job_over(&status),
            Err(e) => stopped_on(e),
        };
        let _ = effects.writers.ended.set(told);
        ended?;
        Ok(Ok(status))
    });
    drop(events);
    let outcome = tokio::task::spawn_blocking(move || machine.join())
        .await
        .map_err(|_| NodeError::MachineStopped)?
        .map_err(|_| NodeError::MachineStopped)?;
    let status = match outcome {
        Ok(Ok(status)) => status,
        Ok(Err(e)) => {
            // It cannot start the job (a bad checkpoint, a job set up before without one):
            // every node that reached it is told why, and stops instead of waiting.
            let told = cannot_start(&e);
            endpoint.close(quinn::VarInt::from_u32(CLOSE_DONE), told.as_bytes());
            accept.abort();
            return Err(e);
        }
        Err(e) => {
            // The coordinator cannot keep its evidence (a full disk, a trail removed or
            // replaced): it stops, and every node still connected is told why, so that none
            // waits for a job that is over.
            endpoint.close(
                quinn::VarInt::from_u32(CLOSE_DONE),
                stopped_on(&e).as_bytes(),
            );
            accept.abort();
            let _ = tokio::time::timeout(Duration::from_secs(2), endpoint.wait_idle()).await;
            return Err(e.into());
        }
    };
    // Let the final notices (and released segments or models) reach the nodes, then close.
    // Every node hangs up once it has the job's end; wait for that, within FINAL_FLUSH.
    let flush_until = tokio::time::Instant::now() + FINAL_FLUSH;
    let everyone_hung_up = loop {
        // Registered before looking, so that a hang-up in between still wakes it.
        let hung_up = writers.hung_up.notified();
        if writers.lock().map(|m| m.is_empty()).unwrap_or(true) {
            break true;
        }
        if tokio::time::timeout_at(flush_until, hung_up).await.is_err() {
            break false;
        }
    };
    // The close says how the job ended, so that a node that did not get the last notice still
    // learns it.
    endpoint.close(
        quinn::VarInt::from_u32(CLOSE_DONE),
        job_over(&status).as_bytes(),
    );
    accept.abort();
    // A node still connected is sent the close; when every node has hung up there is nothing
    // left to send, and the draining of their closed connections need not be waited for.
    if !everyone_hung_up {
        let _ = tokio::time::timeout(Duration::from_secs(2), endpoint.wait_idle()).await;
    }
    Ok(status)
}

/// Why the coordinator stopped when it could not write its trail, as a node is told it.
fn stopped_on(e: &TrailError) -> String {
    format!("job over: the coordinator stopped: {e}")
        .chars()
        .take(900)
        .collect()
}

/// Why the coordinator cannot start the job, as a closing connection tells a node.
fn cannot_start(e: &NodeError) -> String {
    format!("job over: the coordinator cannot start the job: {e}")
        .chars()
        .take(900)
        .collect()
}

/// How the job ended, as a closing connection tells a node (a close reason is short).
fn job_over(status: &Status) -> String {
    let outcome = match status {
        Status::Finished(_) => "job over: finished".to_owned(),
        Status::Failed(f) => format!("job over: failed: {f}"),
        Status::Running => "job over".to_owned(),
    };
    outcome.chars().take(900).collect()
}

async fn serve_connection<S: RingScalar>(
    node: NodeId,
    serial: usize,
    conn: quinn::Connection,
    writers: Writers,
    events: mpsc::Sender<Event<S>>,
    (cap, gate, sending): (
        usize,
        Arc<tokio::sync::Semaphore>,
        Arc<tokio::sync::Semaphore>,
    ),
) {
    let span = tracing::info_span!("participant", node = %node);
    let _guard = span.enter();
    if writers.ended.get().is_some() {
        // Back after the job's end: told the outcome, not admitted to a job that is over.
        writers.close_as_over(&conn);
        return;
    }
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
            // A share of the budget by size, held until the peer has acknowledged the whole
            // message (or the connection is gone), while the next message starts at once.
            let units = bytes
                .len()
                .div_ceil(SEND_PERMIT_BYTES)
                .clamp(1, SEND_BUDGET_BYTES / SEND_PERMIT_BYTES);
            let Ok(permit) = sending
                .clone()
                .acquire_many_owned(u32::try_from(units).unwrap_or(u32::MAX))
                .await
            else {
                break;
            };
            match frame::send_raw_stream(&writer_conn, &bytes).await {
                Ok(stream) => {
                    tokio::spawn(async move {
                        let _ = stream.stopped().await;
                        drop(permit);
                    });
                }
                Err(e) => {
                    tracing::warn!(error = %e, "sending failed");
                    break;
                }
            }
        }
    });
    let receiver = frame::Receiver::new(&conn);
    loop {
        let limit = |kind| Inbound::<S>::limit(kind).min(cap);
        // What cannot be read goes to the machine too, which tells the node (and the shell
        // prints it as a refusal).
        let event: Event<S> = match receiver.recv_gated(limit, &gate, UPLOAD_PATIENCE).await {
            Ok((RawFrame { bytes, .. }, permit)) => match Inbound::<S>::decode(&bytes) {
                Ok(message) => (
                    Input::Message {
                        from: node.clone(),
                        message,
                    },
                    Some(permit),
                ),
                Err(e) => {
                    let detail = std::error::Error::source(&e)
                        .map(|s| format!(": {s}"))
                        .unwrap_or_default();
                    let reason = format!("a malformed message: {e}{detail}");
                    (
                        Input::Unreadable {
                            from: node.clone(),
                            reason,
                        },
                        None,
                    )
                }
            },
            Err(frame::FrameError::Connection(_)) => break,
            Err(e) => (
                Input::Unreadable {
                    from: node.clone(),
                    reason: format!("a frame refused: {e}"),
                },
                None,
            ),
        };
        // The machine no longer reads once the job is over: the node is told the outcome.
        if events.send(event).is_err() {
            writers.close_as_over(&conn);
            break;
        }
    }
    writer.abort();
    // Only this connection's entry: a newer connection of the same node stays.
    if writers.remove(&node, Some(serial)).is_some() {
        let _ = events.send((Input::Disconnected(node), None));
    }
}

/// What the coordinator's shell does with its machine's outputs: send to a node's current
/// connection (a broadcast encoded once), append to the trail, write the checkpoint, close a
/// connection.
struct CoordinatorEffects {
    writers: Writers,
    trail: TrailWriter,
    state: Option<PathBuf>,
    progress: Arc<dyn Fn(String) + Send + Sync>,
    /// The last message encoded: a broadcast (the same round request to every participant) is
    /// encoded once and shared.
    last: Option<Encoded>,
    /// The last decryption request encoded, known by identity (the same shared request goes to
    /// every member; at 100 contributors it is 160 MB, so it is neither encoded nor compared
    /// again). A `Weak` frees the request with the round yet keeps its address from being
    /// reused by another.
    last_request: Option<(Weak<dyn std::any::Any + Send + Sync>, Encoded)>,
}

impl CoordinatorEffects {
    /// `bytes` as shared with the last message when they are the same.
    fn shared(&mut self, bytes: Vec<u8>) -> Encoded {
        match &self.last {
            Some(previous) if **previous == bytes => previous.clone(),
            _ => {
                let shared = Arc::new(bytes);
                self.last = Some(shared.clone());
                shared
            }
        }
    }

    /// The encoding of `message`, the last decryption request's bytes when it is that request.
    fn encoded<S: RingScalar>(
        &mut self,
        message: &CoordinatorOutbound<S>,
    ) -> Result<Encoded, fedbank_common::wire::WireError> {
        let CoordinatorOutbound::Decrypt(request) = message else {
            return message.encode().map(|bytes| self.shared(bytes));
        };
        if let Some((held, bytes)) = &self.last_request {
            if std::ptr::addr_eq(held.as_ptr(), Arc::as_ptr(request)) {
                return Ok(bytes.clone());
            }
        }
        let bytes = self.shared(message.encode()?);
        let weak = Arc::downgrade(request);
        let held: Weak<dyn std::any::Any + Send + Sync> = weak;
        self.last_request = Some((held, bytes.clone()));
        Ok(bytes)
    }
}

impl<S: RingScalar> crate::driver::Effects<Input<S>, CoordinatorMachine<S>> for CoordinatorEffects {
    type Error = TrailError;

    fn carry_out(&mut self, output: CoordinatorOutput<S>) -> Result<(), TrailError> {
        match output {
            CoordinatorOutput::Send { to, message } => match self.encoded(&message) {
                Ok(bytes) => {
                    drop(message);
                    if let Some(w) = self.writers.lock().ok().and_then(|m| m.get(&to).cloned()) {
                        let _ = w.messages.send(bytes);
                    }
                }
                Err(e) => tracing::error!(node = %to, error = %e, "could not encode a message"),
            },
            CoordinatorOutput::Audit { kind, fields } => {
                self.trail.append(kind, fields, SystemTime::now())?;
            }
            CoordinatorOutput::Progress(event) => (self.progress)(event.to_string()),
            CoordinatorOutput::Checkpoint(mut checkpoint) => {
                checkpoint.trail_events = self.trail.events();
                if let Some(path) = &self.state {
                    let written = serde_json::to_vec(&checkpoint)
                        .map_err(|e| e.to_string())
                        .and_then(|bytes| {
                            fedbank_common::storage::write_atomic(path, &bytes, false)
                                .map_err(|e| e.to_string())
                        });
                    if let Err(e) = written {
                        tracing::error!(error = %e, "could not write the checkpoint");
                        (self.progress)(format!(
                            "could not write the checkpoint {}: {e}",
                            path.display()
                        ));
                    }
                }
            }
            CoordinatorOutput::Aggregate {
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
            CoordinatorOutput::Disconnect { node, reason } => {
                tracing::info!(node = %node, reason, "disconnecting");
                if let Some(w) = self.writers.remove(&node, None) {
                    w.conn.close(
                        quinn::VarInt::from_u32(crate::CLOSE_PROTOCOL),
                        reason.as_bytes(),
                    );
                }
            }
        }
        Ok(())
    }

    fn refused(&mut self, violation: &fedbank_coordinator::Violation) {
        let text = violation.with_causes();
        tracing::warn!(violation = %text, "message refused");
        (self.progress)(format!("refused a message: {text}"));
    }
}
