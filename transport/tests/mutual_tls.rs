//! Identity over real QUIC on loopback: only certificates from the consortium CA, in date and
//! naming an enrolled node, get in; frames above their kind's limit are refused.

use anyhow::{Context, Result};
use fedbank_common::ids::NodeId;
use fedbank_common::secagg::KeySetup;
use fedbank_transport::pki::{ConsortiumCa, CredentialPaths, NodeCredentials};
use fedbank_transport::{admit, connect, frame, tls, AdmitError, CLOSE_NOT_ENROLLED};
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;
use time::OffsetDateTime;
use tokio::time::timeout;

const WAIT: Duration = Duration::from_secs(10);

fn id(s: &str) -> NodeId {
    NodeId::new(s).expect("id")
}

fn creds(dir: &Path, node: &str) -> NodeCredentials {
    NodeCredentials::load(&CredentialPaths::in_dir(dir, &id(node))).expect("credentials")
}

struct Server {
    addr: SocketAddr,
    endpoint: quinn::Endpoint,
}

fn server(dir: &Path) -> Server {
    let config = tls::server_config(&creds(dir, "coordinator")).expect("server config");
    let endpoint =
        quinn::Endpoint::server(config, "127.0.0.1:0".parse().expect("addr")).expect("bind");
    Server {
        addr: endpoint.local_addr().expect("addr"),
        endpoint,
    }
}

async fn client(creds: &NodeCredentials, server: &Server) -> Result<quinn::Connection> {
    let mut endpoint = quinn::Endpoint::client("127.0.0.1:0".parse()?)?;
    endpoint.set_default_client_config(tls::client_config(creds)?);
    let conn = timeout(WAIT, connect(&endpoint, server.addr, &id("coordinator"))).await??;
    Ok(conn)
}

/// Runs one admission on the server side and one connection attempt on the client side.
async fn attempt(
    server: &Server,
    client_creds: &NodeCredentials,
) -> (Result<NodeId, AdmitError>, Result<quinn::Connection>) {
    let enrolled = [id("bank-a"), id("bank-b")];
    let accept = async {
        let incoming = server.endpoint.accept().await.context("endpoint closed")?;
        Ok::<_, anyhow::Error>(admit(incoming, |n| enrolled.contains(n)).await)
    };
    let (admitted, connected) = tokio::join!(timeout(WAIT, accept), client(client_creds, server));
    let admitted = admitted.expect("server wait").expect("accept");
    // Give the client time to see a close sent right after the handshake.
    if let Ok(conn) = &connected {
        let _ = timeout(Duration::from_millis(500), conn.closed()).await;
    }
    (admitted.map(|(id, _)| id), connected)
}

fn setup() -> (tempfile::TempDir, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("dir");
    let ca = ConsortiumCa::create(dir.path()).expect("ca");
    for node in ["coordinator", "bank-a", "bank-x"] {
        ca.issue(&id(node), 30).expect("issue");
    }
    let now = OffsetDateTime::now_utc();
    ca.issue_with_validity(
        &id("bank-b"),
        now - time::Duration::days(10),
        now - time::Duration::days(1),
    )
    .expect("expired");
    let other = tempfile::tempdir().expect("dir");
    let rogue = ConsortiumCa::create(other.path()).expect("rogue ca");
    rogue.issue(&id("bank-a"), 30).expect("issue");
    (dir, other)
}

#[tokio::test]
async fn identities_are_checked_at_connect() {
    let (dir, other) = setup();
    let server = server(dir.path());

    // Enrolled, valid: admitted under the certificate's id.
    let (admitted, connected) = attempt(&server, &creds(dir.path(), "bank-a")).await;
    assert_eq!(admitted.expect("admitted"), id("bank-a"));
    assert!(connected.expect("connected").close_reason().is_none());

    // A certificate from another CA for the same id: refused in the handshake.
    let mut rogue = creds(other.path(), "bank-a");
    rogue.ca = creds(dir.path(), "bank-a").ca; // it trusts the real CA, but is signed by another
    let (admitted, connected) = attempt(&server, &rogue).await;
    let err = admitted.expect_err("rogue certificate admitted");
    assert!(matches!(err, AdmitError::Handshake { .. }), "{err}");
    // Both CAs carry the same name, so rustls finds the issuer by name and the signature fails.
    let text = format!("{err:?}");
    assert!(
        text.contains("invalid peer certificate")
            && (text.contains("BadSignature") || text.contains("UnknownIssuer")),
        "{text}"
    );
    assert!(connected.is_err() || connected.as_ref().is_ok_and(|c| c.close_reason().is_some()));

    // An expired certificate: refused in the handshake.
    let (admitted, _) = attempt(&server, &creds(dir.path(), "bank-b")).await;
    let err = admitted.expect_err("expired certificate admitted");
    assert!(
        format!("{err:?}").to_lowercase().contains("expired"),
        "{err:?}"
    );

    // A valid certificate for a node that is not enrolled: closed with a reason it can log.
    let (admitted, connected) = attempt(&server, &creds(dir.path(), "bank-x")).await;
    assert!(
        matches!(admitted, Err(AdmitError::NotEnrolled { ref id, .. }) if id.as_str() == "bank-x")
    );
    let reason = match connected {
        Ok(conn) => conn.close_reason(),
        Err(e) => e.downcast::<quinn::ConnectionError>().ok(),
    };
    match reason {
        Some(quinn::ConnectionError::ApplicationClosed(close)) => {
            assert_eq!(
                close.error_code,
                quinn::VarInt::from_u32(CLOSE_NOT_ENROLLED)
            );
            assert!(String::from_utf8_lossy(&close.reason).contains("not enrolled"));
        }
        other => panic!("expected an application close, got {other:?}"),
    }
}

#[tokio::test]
async fn frames_over_their_limit_are_refused_before_the_body_is_read() {
    let (dir, _other) = setup();
    let server = server(dir.path());
    let setup_msg = KeySetup {
        job: fedbank_common::ids::JobId::new("job").expect("id"),
        key_epoch: 1,
        profile: fedbank_common::secagg::Profile::Fast,
        mask_seed: 7,
        committee: vec![id("bank-a")],
    };
    let accept = async {
        let incoming = server.endpoint.accept().await.expect("incoming");
        let (_, conn) = admit(incoming, |_| true).await.expect("admitted");
        let ok = frame::recv(&conn, |_| 1 << 20).await.expect("first frame");
        let decoded: KeySetup = ok.decode().expect("decodes");
        let refused = frame::recv(&conn, |_| 16).await;
        (decoded, refused)
    };
    let send = async {
        let conn = client(&creds(dir.path(), "bank-a"), &server)
            .await
            .expect("connect");
        frame::send(&conn, &setup_msg).await.expect("send");
        frame::send(&conn, &setup_msg).await.expect("send");
        conn
    };
    let ((decoded, refused), _conn) = timeout(WAIT, async { tokio::join!(accept, send) })
        .await
        .expect("in time");
    assert_eq!(decoded, setup_msg);
    assert!(
        matches!(refused, Err(frame::FrameError::TooLarge { limit: 16, .. })),
        "{refused:?}"
    );
}
