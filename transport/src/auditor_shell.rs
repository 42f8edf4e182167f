//! The network shell around the auditor's state machine: the same connection loop as a
//! participant's (backoff, reconnection, per-kind frame limits), its own trail, no data.

use crate::nodes::{
    client_endpoint, open_trail, talk_to_coordinator, NodeError, SessionEnd, TrailSettings,
};
use crate::pki::NodeCredentials;
use fedbank_auditor::{AuditorMachine, AuditorOutput, AuditorStatus};
use fedbank_common::alerts::AuditorKeys;
use fedbank_common::ids::NodeId;
use fedbank_common::job::ValidJob;
use fedbank_common::node_machine::Delivery;
use fedbank_common::protocol::Inbound;
use fedbank_common::secagg::RingScalar;
use std::net::SocketAddr;
use std::sync::{mpsc, Arc, Mutex};
use std::time::SystemTime;
use tokio::sync::mpsc as tokio_mpsc;

/// Institutions over the limit, per rule.
type RuleCounts = Vec<(String, u16)>;

/// Everything an auditor node needs.
pub struct AuditorSettings {
    /// This node.
    pub id: NodeId,
    /// The job it audits.
    pub job: ValidJob,
    /// Its alert keys (the client key never leaves this node).
    pub keys: Arc<AuditorKeys>,
    /// Its credentials.
    pub creds: NodeCredentials,
    /// The coordinator's address and id.
    pub coordinator: (SocketAddr, NodeId),
    /// Its own audit trail.
    pub trail: TrailSettings,
    /// Connection attempts before giving up (with backoff).
    pub connect_attempts: u32,
}

/// How the auditor's part went.
#[derive(Debug, Clone)]
pub struct AuditorOutcome {
    /// How it ended.
    pub status: AuditorStatus,
    /// The counts it decrypted, per rule.
    pub counts: Option<RuleCounts>,
    /// Bytes it sent, framed (the server key dominates).
    pub bytes_sent: u64,
}

/// Runs the auditor until the coordinator reports the job finished or aborted.
pub async fn run_auditor<S: RingScalar>(
    settings: AuditorSettings,
    progress: Arc<dyn Fn(String) + Send + Sync>,
) -> Result<AuditorOutcome, NodeError> {
    let AuditorSettings {
        id,
        job,
        keys,
        creds,
        coordinator: (addr, coordinator),
        trail,
        connect_attempts,
    } = settings;
    let endpoint = client_endpoint(addr, &creds)?;
    let trail = open_trail(trail, &id, "auditor")?;
    let cap = job.max_message_bytes();
    let mut machine = AuditorMachine::new(creds.signer(&id)?, job, keys);
    let (to_machine, inbox) = mpsc::channel::<(Delivery<Inbound<S>>, ())>();
    let (out_tx, mut out_rx) = tokio_mpsc::unbounded_channel::<Vec<u8>>();
    let (ended_tx, mut ended) = tokio::sync::watch::channel(false);
    let status = Arc::new(Mutex::new(AuditorStatus::Running));
    let counts: Arc<Mutex<Option<RuleCounts>>> = Arc::new(Mutex::new(None));
    let machine_status = status.clone();
    let mut effects = AuditorEffects {
        id: id.clone(),
        out: out_tx,
        trail,
        counts: counts.clone(),
        progress: progress.clone(),
    };
    let span = tracing::info_span!("auditor", node = %id);
    let thread = std::thread::spawn(move || -> Result<(), fedbank_common::audit::TrailError> {
        let _span = span.enter();
        let driven = crate::driver::drive::<Delivery<Inbound<S>>, _, _, _>(
            &mut machine,
            &inbox,
            &mut effects,
            std::time::Instant::now(),
        );
        if let (Ok(Some(ended)), Ok(mut s)) = (&driven, machine_status.lock()) {
            *s = ended.clone();
        }
        // Wakes the session at once: the auditor's part is over (or it stopped on an error).
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
    tokio::task::spawn_blocking(move || thread.join())
        .await
        .map_err(|_| NodeError::MachineStopped)?
        .map_err(|_| NodeError::MachineStopped)??;
    let sent = match session {
        Ok(sent) => sent,
        Err(SessionEnd::Refused(reason)) => {
            return Err(NodeError::Refused {
                coordinator,
                reason,
            })
        }
        Err(SessionEnd::JobOver(outcome)) => {
            return Err(NodeError::JobOver {
                coordinator,
                outcome,
            })
        }
        Err(SessionEnd::Unreachable(attempts)) => {
            return Err(NodeError::Unreachable {
                coordinator,
                addr,
                attempts,
            })
        }
    };
    let _ = tokio::time::timeout(std::time::Duration::from_secs(1), endpoint.wait_idle()).await;
    let final_status = status
        .lock()
        .map(|s| s.clone())
        .unwrap_or(AuditorStatus::Running);
    Ok(AuditorOutcome {
        status: final_status,
        counts: counts.lock().map(|mut c| c.take()).unwrap_or(None),
        bytes_sent: sent.bytes,
    })
}

/// What the auditor's shell does with its machine's outputs: send to the coordinator, append to
/// the trail, keep the decrypted counts.
struct AuditorEffects {
    id: NodeId,
    out: tokio_mpsc::UnboundedSender<Vec<u8>>,
    trail: fedbank_common::audit::TrailWriter,
    counts: Arc<Mutex<Option<RuleCounts>>>,
    progress: Arc<dyn Fn(String) + Send + Sync>,
}

impl<S: RingScalar> crate::driver::Effects<Delivery<Inbound<S>>, AuditorMachine>
    for AuditorEffects
{
    type Error = fedbank_common::audit::TrailError;

    fn carry_out(&mut self, output: AuditorOutput) -> Result<(), Self::Error> {
        match output {
            AuditorOutput::Send(message) => match message.encode() {
                Ok(bytes) => {
                    let _ = self.out.send(bytes);
                }
                Err(e) => tracing::error!(error = %e, "could not encode a message"),
            },
            AuditorOutput::Audit { kind, fields } => {
                self.trail.append(kind, fields, SystemTime::now())?;
            }
            AuditorOutput::Progress(event) => (self.progress)(event.to_string()),
            AuditorOutput::Counts(c) => {
                if let Ok(mut slot) = self.counts.lock() {
                    *slot = Some(c);
                }
            }
        }
        Ok(())
    }

    fn refused(&mut self, reason: &String) {
        tracing::warn!(%reason, "coordinator message refused");
        (self.progress)(format!("{}: refused: {reason}", self.id));
    }
}
