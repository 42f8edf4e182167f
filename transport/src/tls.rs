//! rustls configurations for QUIC: TLS 1.3 only, ring provider, Ed25519 certificates from the
//! consortium CA, client authentication required on the coordinator, ALPN `fedbank/1`.

use crate::pki::NodeCredentials;
use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use rustls::pki_types::PrivateKeyDer;
use rustls::server::WebPkiClientVerifier;
use rustls::RootCertStore;
use std::sync::Arc;

/// The application protocol (and its version) negotiated at connect.
pub const ALPN: &[u8] = b"fedbank/1";

/// Why a TLS configuration could not be built.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// rustls refused the configuration.
    #[error("TLS configuration")]
    Rustls(#[from] rustls::Error),
    /// The client verifier could not be built.
    #[error("client certificate verifier")]
    Verifier(#[from] rustls::server::VerifierBuilderError),
    /// quinn refused the rustls configuration.
    #[error("QUIC crypto configuration")]
    Quic(#[from] quinn::crypto::rustls::NoInitialCipherSuite),
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn roots(creds: &NodeCredentials) -> Result<Arc<RootCertStore>, TlsError> {
    let mut roots = RootCertStore::empty();
    roots.add(creds.ca.clone())?;
    Ok(Arc::new(roots))
}

/// The coordinator's QUIC server configuration: every client must present a certificate
/// issued by the consortium CA.
pub fn server_config(creds: &NodeCredentials) -> Result<quinn::ServerConfig, TlsError> {
    let verifier =
        WebPkiClientVerifier::builder_with_provider(roots(creds)?, provider()).build()?;
    let mut tls = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_client_cert_verifier(verifier)
        .with_single_cert(
            vec![creds.cert.clone()],
            PrivateKeyDer::Pkcs8(creds.key.clone_key()),
        )?;
    tls.alpn_protocols = vec![ALPN.to_vec()];
    let mut config = quinn::ServerConfig::with_crypto(Arc::new(QuicServerConfig::try_from(tls)?));
    let mut transport = transport_config();
    // One message per unidirectional stream, read one at a time: a peer may open only a few
    // at once, and flow control holds back what the coordinator has not read yet, so what a
    // connection can make it buffer is bounded (about the largest message plus the window).
    transport.max_concurrent_uni_streams(quinn::VarInt::from_u32(MAX_STREAMS_PER_PEER));
    transport.max_concurrent_bidi_streams(quinn::VarInt::from_u32(0));
    transport.stream_receive_window(quinn::VarInt::from_u32(STREAM_WINDOW));
    transport.receive_window(quinn::VarInt::from_u32(STREAM_WINDOW * 2));
    config.transport_config(Arc::new(transport));
    Ok(config)
}

/// Unidirectional streams (messages) a peer may have open at once towards the coordinator.
pub const MAX_STREAMS_PER_PEER: u32 = 4;
/// Bytes a peer may have in flight per stream before the coordinator reads them.
pub const STREAM_WINDOW: u32 = 256 << 10;

/// A node's QUIC client configuration: it trusts only the consortium CA and presents its own
/// certificate.
pub fn client_config(creds: &NodeCredentials) -> Result<quinn::ClientConfig, TlsError> {
    let mut tls = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_root_certificates(roots(creds)?)
        .with_client_auth_cert(
            vec![creds.cert.clone()],
            PrivateKeyDer::Pkcs8(creds.key.clone_key()),
        )?;
    tls.alpn_protocols = vec![ALPN.to_vec()];
    let mut config = quinn::ClientConfig::new(Arc::new(QuicClientConfig::try_from(tls)?));
    config.transport_config(Arc::new(transport_config()));
    Ok(config)
}

/// Bytes a connection may send before its first acknowledgement: a round's contribution of a
/// few tens of KB leaves in the first round trip instead of over three or four of slow start.
pub const INITIAL_WINDOW: u64 = 512 << 10;

/// The round-trip time assumed before the first measurement (RFC 9002 says 333 ms): a
/// handshake packet lost on a 100 ms path is sent again after about 300 ms, not a second.
pub const INITIAL_RTT: std::time::Duration = std::time::Duration::from_millis(100);

/// The QUIC settings both ends share, tuned for a consortium on a wide-area network: few
/// connections, messages of tens to hundreds of KB, one to three round trips per step.
///
/// - BBR rather than CUBIC: BBR paces to the measured bandwidth and does not shrink its window
///   on every lost packet, so a link with 2% random loss is not throttled to a few packets per
///   round trip; its window never falls below the initial window ([`crate::congestion`]).
/// - A larger initial window ([`INITIAL_WINDOW`]), paced over the first round trip: a 200 KB
///   key bundle arrives in about one round trip instead of four.
/// - [`INITIAL_RTT`] of 100 ms.
/// - Keep-alive every 5 s and an idle timeout of 30 s.
/// - Datagrams on (quinn's default), which carry each message's parity ([`crate::fec`]).
///
/// Measured with `fedbank bench wan` (50 ± 10 ms one way, the telco propensity job): QUIC's
/// defaults (CUBIC, 14.7 KB) took 8.6 s and 5.3 round trips per round, 36 s and 29 with 2%
/// loss; these settings with parity take 5.5 s and 3.6–3.7 round trips per round, with or
/// without 2% loss (docs/scaling.md). At 10 Mbit/s the larger window costs nothing
/// measurable: a 1 MB message takes the link's 0.8 s plus a round trip either way.
fn transport_config() -> quinn::TransportConfig {
    let mut transport = quinn::TransportConfig::default();
    transport.max_idle_timeout(Some(
        std::time::Duration::from_secs(30)
            .try_into()
            .unwrap_or(quinn::IdleTimeout::from(quinn::VarInt::from_u32(30_000))),
    ));
    transport.keep_alive_interval(Some(std::time::Duration::from_secs(5)));
    transport.initial_rtt(INITIAL_RTT);
    transport.congestion_controller_factory(Arc::new(crate::congestion::FlooredBbr::new(
        INITIAL_WINDOW,
    )));
    transport
}
