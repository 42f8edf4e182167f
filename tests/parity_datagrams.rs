//! Parity datagrams beside each message's stream (transport/src/fec.rs), over real QUIC with
//! mutual TLS on loopback: through a lossy relay every message arrives intact and in order, and
//! parity completes some of them before QUIC's retransmission; a peer whose parity lies, or who
//! floods garbage datagrams, changes no message and holds no more than the cap.

use fedbank_common::ids::NodeId;
use fedbank_consortium::impaired_link::{ImpairedLink, LinkProfile};
use fedbank_transport::frame::{self, Receiver};
use fedbank_transport::pki::{ConsortiumCa, CredentialPaths, NodeCredentials};
use fedbank_transport::{connect, fec, tls};
use std::path::Path;
use std::time::Duration;
use tokio::time::timeout;

const WAIT: Duration = Duration::from_secs(60);

/// Any kind may carry up to 1 MiB in these tests.
fn limit(_: u8) -> usize {
    1 << 20
}

fn id(s: &str) -> NodeId {
    NodeId::new(s).expect("id")
}

fn creds(dir: &Path, node: &str) -> NodeCredentials {
    NodeCredentials::load(&CredentialPaths::in_dir(&dir.join("certs"), &id(node))).expect("creds")
}

/// A frame's wire bytes: an 8-byte header (kind at byte 4) and a body.
fn message(kind: u8, len: usize, seed: u64) -> Vec<u8> {
    let mut bytes = vec![b'F', b'B', b'W', b'1', kind, 0, 0, 1];
    bytes.extend((0..len).map(|i| ((i as u64 * 2_654_435_761 + seed) >> 7) as u8));
    bytes
}

/// A coordinator endpoint and a connected client, the client's packets through `link` if any.
async fn pair(
    dir: &Path,
    link: Option<LinkProfile>,
) -> (
    quinn::Endpoint,
    quinn::Endpoint,
    quinn::Connection,
    quinn::Connection,
    Option<ImpairedLink>,
) {
    let ca = ConsortiumCa::create(&dir.join("certs")).expect("ca");
    for n in ["coordinator", "bank"] {
        ca.issue(&id(n), 1).expect("cert");
    }
    let server = quinn::Endpoint::server(
        tls::server_config(&creds(dir, "coordinator")).expect("tls"),
        "127.0.0.1:0".parse().expect("addr"),
    )
    .expect("server");
    let addr = server.local_addr().expect("addr");
    let relay = match link {
        Some(profile) => Some(ImpairedLink::start(addr, profile).await.expect("relay")),
        None => None,
    };
    let target = relay.as_ref().map_or(addr, ImpairedLink::addr);
    let mut client = quinn::Endpoint::client("127.0.0.1:0".parse().expect("addr")).expect("client");
    client.set_default_client_config(tls::client_config(&creds(dir, "bank")).expect("tls"));
    let accepted = {
        let server = server.clone();
        tokio::spawn(async move {
            let incoming = server.accept().await.expect("incoming");
            incoming.await.expect("handshake")
        })
    };
    let outgoing = timeout(WAIT, connect(&client, target, &id("coordinator")))
        .await
        .expect("in time")
        .expect("connected");
    let incoming = timeout(WAIT, accepted)
        .await
        .expect("in time")
        .expect("accepted");
    (server, client, outgoing, incoming, relay)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_over_a_lossy_link_arrive_intact_and_in_order_and_parity_completes_some() {
    let dir = tempfile::tempdir().expect("dir");
    let profile = LinkProfile {
        delay: Duration::from_millis(20),
        jitter: Duration::from_millis(2),
        loss: 0.05,
        rate_bits_per_second: None,
        seed: 7,
    };
    let (_server, _client, out, inc, _relay) = pair(dir.path(), Some(profile)).await;
    // One-packet notices, a few-shard commitment, contributions and a key bundle's size.
    let sizes = [200, 1_500, 4_000, 80_000, 200_000];
    let sent: Vec<Vec<u8>> = (0..40)
        .map(|i| message(i as u8, sizes[i % sizes.len()], i as u64))
        .collect();
    let sender = {
        let sent = sent.clone();
        tokio::spawn(async move {
            for m in &sent {
                frame::send_raw(&out, m).await.expect("sent");
                // A request-and-answer pace: each message has the link to itself for a while.
                tokio::time::sleep(Duration::from_millis(30)).await;
            }
            out
        })
    };
    let receiver = Receiver::new(&inc);
    for (i, expected) in sent.iter().enumerate() {
        let got = timeout(WAIT, receiver.recv(limit))
            .await
            .expect("in time")
            .unwrap_or_else(|e| panic!("message {i}: {e}"));
        assert_eq!(got.kind, i as u8, "message {i} in order");
        assert!(got.bytes == *expected, "message {i} arrived intact");
    }
    let out = sender.await.expect("sender");
    let lost = inc.stats().path.lost_packets + out.stats().path.lost_packets;
    assert!(lost > 0, "the link lost packets ({lost})");
    assert!(
        receiver.rebuilt() > 0,
        "parity completed no message of 40 at 5% loss"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lying_parity_and_garbage_datagrams_change_no_message() {
    let dir = tempfile::tempdir().expect("dir");
    let (_server, _client, out, inc, _relay) = pair(dir.path(), None).await;
    let receiver = Receiver::new(&inc);
    let real = message(3, 3_000, 1);
    let mut stream_bytes = real[..8].to_vec();
    stream_bytes.extend_from_slice(&((real.len() - 8) as u64).to_le_bytes());
    stream_bytes.extend_from_slice(&real[8..]);
    // Parity announcing the real message's layout and digest, with shards of another message:
    // enough of it to rebuild on its own, sent before the stream.
    let mut other = stream_bytes.clone();
    other[100] ^= 0xff;
    let stream_number = 2; // the client's first unidirectional stream
    let lying = fec::parity_datagrams(stream_number, &other, 1000, 4).expect("parity");
    let real_parity = fec::parity_datagrams(stream_number, &stream_bytes, 1000, 4).expect("parity");
    let digest_of_real = fec::ParityShard::parse(real_parity[0].clone())
        .expect("parsed")
        .layout
        .digest;
    for d in &lying {
        let mut forged = fec::ParityShard::parse(d.clone()).expect("parsed");
        forged.layout.digest = digest_of_real;
        out.send_datagram(forged.encode()).expect("datagram");
    }
    // Garbage, and parity for streams far ahead, beyond what a connection may hold.
    for i in 0..50u8 {
        out.send_datagram(vec![i; 700].into()).expect("datagram");
    }
    let far = message(9, 900_000, 2);
    let mut far_stream = far[..8].to_vec();
    far_stream.extend_from_slice(&((far.len() - 8) as u64).to_le_bytes());
    far_stream.extend_from_slice(&far[8..]);
    let flood = fec::parity_datagrams(4 * 1000 + 2, &far_stream, 1000, 1000).expect("parity");
    let mut flooded = 0;
    for d in flood
        .iter()
        .chain(&flood)
        .chain(&flood)
        .chain(&flood)
        .chain(&flood)
    {
        if out.send_datagram(d.clone()).is_ok() {
            flooded += 1;
        }
        if flooded % 100 == 0 {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Then the real stream.
    frame::send_raw(&out, &real).await.expect("sent");
    let got = timeout(WAIT, receiver.recv(limit))
        .await
        .expect("in time")
        .expect("frame");
    assert!(got.bytes == real, "the stream's message, not the parity's");
    assert_eq!(
        receiver.rebuilt(),
        0,
        "no message came from the lying parity"
    );
    // Every garbage datagram was dropped, and of the flood (5 MB of parity for a stream far
    // ahead) no more than the cap is held.
    let dropped = receiver.parity_dropped();
    assert!(dropped >= 50, "garbage dropped: {dropped}");
    let held = receiver.parity_held_bytes();
    assert!(
        held <= frame::PARITY_HELD_BYTES,
        "{held} bytes of parity held after {flooded} flood datagrams"
    );
    assert!(
        held > 0,
        "the flood's first datagrams are held (for a stream to come)"
    );
}
