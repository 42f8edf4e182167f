//! # fedbank-transport
//!
//! The network shell of a fedbank node, and nothing more: it moves messages between nodes and
//! tells each side who the other is. Protocol decisions live in the state machines of
//! `fedbank-common`, `fedbank-coordinator` and `fedbank-participant`.
//!
//! - [`pki`]: the consortium CA and per-node certificates (`fedbank certs init`).
//! - [`tls`]: QUIC (quinn) over rustls, TLS 1.3 only, mutual authentication, ALPN `fedbank/1`.
//! - [`identity`]: the node id comes from the verified certificate, never from message content.
//! - [`frame`]: one message per stream, header and length checked against per-kind limits as
//!   soon as they are in; the stream is read out of order ([`assembly`]) and completed from
//!   Reed–Solomon parity datagrams sent beside it ([`fec`]) when packets were lost.
//! - [`congestion`]: quinn's BBR with its window never below the initial window.
//! - [`nodes`]: the coordinator and participant shells around the protocol state machines;
//!   [`auditor_shell`]: the auditor's.

pub mod assembly;
pub mod auditor_shell;
pub mod congestion;
pub mod dev_pki;
mod driver;
pub mod fec;
pub mod frame;
pub mod identity;
pub mod nodes;
pub mod pki;
pub mod tls;

use fedbank_common::ids::NodeId;

/// The verified node id of the peer of an established connection.
pub fn peer_id(conn: &quinn::Connection) -> Result<NodeId, identity::IdentityError> {
    let certs = conn
        .peer_identity()
        .and_then(|any| {
            any.downcast::<Vec<rustls::pki_types::CertificateDer<'static>>>()
                .ok()
        })
        .ok_or(identity::IdentityError::NoCertificate)?;
    let leaf = certs
        .first()
        .ok_or(identity::IdentityError::NoCertificate)?;
    identity::node_id(leaf)
}

/// Application close code: the peer's certificate is valid but its id is not enrolled.
pub const CLOSE_NOT_ENROLLED: u32 = 0x10;
/// Application close code: the peer broke the protocol.
pub const CLOSE_PROTOCOL: u32 = 0x11;
/// Application close code: the job is over.
pub const CLOSE_DONE: u32 = 0x12;
/// Application close code: the same node connected again; this older connection is closed, so
/// that a node holds one connection (and at most one message being received) at a time.
pub const CLOSE_REPLACED: u32 = 0x13;
/// Application close code: the coordinator holds as many authenticated connections as it
/// admits; the node tries again later.
pub const CLOSE_LIMIT: u32 = 0x14;

/// Why an incoming connection was not admitted.
#[derive(Debug, thiserror::Error)]
pub enum AdmitError {
    /// The QUIC or TLS handshake failed (certificate from another CA, expired, no certificate…).
    #[error("handshake with {remote} failed")]
    Handshake {
        /// Remote address.
        remote: std::net::SocketAddr,
        /// quinn's error, which carries the TLS alert or rustls error.
        #[source]
        source: quinn::ConnectionError,
    },
    /// The certificate does not name a node.
    #[error("certificate of {remote} names no node")]
    Identity {
        /// Remote address.
        remote: std::net::SocketAddr,
        /// What was wrong.
        #[source]
        source: identity::IdentityError,
    },
    /// The node is not enrolled in this job.
    #[error("node {id} at {remote} is not enrolled; connection closed")]
    NotEnrolled {
        /// The node.
        id: NodeId,
        /// Remote address.
        remote: std::net::SocketAddr,
    },
}

/// Completes an incoming connection and admits it if the certificate's node id is enrolled;
/// otherwise closes it with [`CLOSE_NOT_ENROLLED`] and a reason the peer can log.
pub async fn admit(
    incoming: quinn::Incoming,
    enrolled: impl Fn(&NodeId) -> bool,
) -> Result<(NodeId, quinn::Connection), AdmitError> {
    let remote = incoming.remote_address();
    let conn = incoming
        .await
        .map_err(|source| AdmitError::Handshake { remote, source })?;
    let id = match peer_id(&conn) {
        Ok(id) => id,
        Err(source) => {
            conn.close(
                quinn::VarInt::from_u32(CLOSE_PROTOCOL),
                b"certificate names no node",
            );
            return Err(AdmitError::Identity { remote, source });
        }
    };
    if !enrolled(&id) {
        let reason = format!("node {id} is not enrolled in this consortium job");
        conn.close(
            quinn::VarInt::from_u32(CLOSE_NOT_ENROLLED),
            reason.as_bytes(),
        );
        return Err(AdmitError::NotEnrolled { id, remote });
    }
    Ok((id, conn))
}

/// Connects to the coordinator `server` at `addr`; its certificate must name `server`.
pub async fn connect(
    endpoint: &quinn::Endpoint,
    addr: std::net::SocketAddr,
    server: &NodeId,
) -> Result<quinn::Connection, ConnectError> {
    let connecting = endpoint.connect(addr, server.as_str())?;
    Ok(connecting.await?)
}

/// Why a connection to the coordinator failed.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// The connection could not be started.
    #[error("starting the connection")]
    Start(#[from] quinn::ConnectError),
    /// The handshake failed or the coordinator closed the connection (see the reason).
    #[error("connection refused or lost")]
    Connection(#[from] quinn::ConnectionError),
    /// No answer within this long.
    #[error("no answer within {} s", .0.as_secs())]
    TimedOut(std::time::Duration),
}

/// If a connection error means an identity was refused (a TLS alert in either direction, or the
/// coordinator closing with [`CLOSE_NOT_ENROLLED`]), the reason: retrying cannot help.
pub fn permanent_refusal(error: &quinn::ConnectionError) -> Option<String> {
    let is_crypto = |code: quinn::TransportErrorCode| (0x100..0x200).contains(&u64::from(code));
    match error {
        quinn::ConnectionError::TransportError(e) if is_crypto(e.code) => {
            Some(format!("TLS handshake failed here: {}", e.reason))
        }
        quinn::ConnectionError::ConnectionClosed(c) if is_crypto(c.error_code) => Some(format!(
            "the peer refused the TLS handshake ({:?}: {})",
            c.error_code,
            String::from_utf8_lossy(&c.reason)
        )),
        quinn::ConnectionError::ApplicationClosed(c)
            if c.error_code == quinn::VarInt::from_u32(CLOSE_NOT_ENROLLED) =>
        {
            Some(String::from_utf8_lossy(&c.reason).into_owned())
        }
        _ => None,
    }
}
