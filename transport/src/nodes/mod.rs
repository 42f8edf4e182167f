//! The network shells around the coordinator and participant state machines.
//!
//! Each machine runs on its own OS thread (encryption, aggregation and partial decryption are
//! CPU-heavy and must not block the async executor); tokio tasks only move frames between QUIC
//! connections and the machine's channel. Time is the shell's: milliseconds since the node
//! started, passed into the machine with every input.

use crate::tls;
use fedbank_common::audit::{SigningIdentity, TrailError, TrailWriter};
use fedbank_common::ids::NodeId;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::SystemTime;

mod coordinator;
mod key_epoch;
mod participant;

pub use coordinator::{
    run_coordinator, CoordinatorSettings, FINAL_FLUSH, HANDSHAKE_PATIENCE, MAX_HANDSHAKES,
    MESSAGES_IN_FLIGHT, RECONNECT_ROOM, REFUSAL_LOG_EVERY, SEND_BUDGET_BYTES, UPLOAD_PATIENCE,
};
pub(crate) use participant::{client_endpoint, talk_to_coordinator, SessionEnd};
pub use participant::{
    run_participant, LocalOutputs, ParticipantOutcome, ParticipantSettings, CONNECT_PATIENCE,
};

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
    /// The coordinator closed the connection at the job's end before this node got the job's
    /// last notice; the close says how the job ended.
    #[error(
        "the coordinator {coordinator} ended the job before this node was told how: {outcome}"
    )]
    JobOver {
        /// Coordinator id.
        coordinator: NodeId,
        /// The coordinator's word (`job over: finished`, `job over: failed: …`).
        outcome: String,
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
        TrailWriter::open(&settings.path, node, settings.identity)
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
