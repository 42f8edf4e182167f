//! An impaired link on loopback: a UDP relay between one node and the coordinator that delays,
//! jitters, drops and rate-limits packets in both directions, standing in for a wide-area
//! network where the kernel has no netem (`fedbank bench wan`, the fault tests).
//!
//! The node sends to the relay's address instead of the coordinator's; the relay forwards from
//! a socket of its own, so each node needs its own relay (the coordinator sees one peer address
//! per relay). A packet is dropped with probability `loss`; one that is kept leaves after its
//! serialization time at `rate` (a router queue of [`QUEUE_BYTES`] beyond which packets are
//! dropped at the tail) plus the one-way `delay` and a uniform jitter of ± `jitter`. Packets
//! keep their order (a jittered packet never overtakes an earlier one), as on one path.
//!
//! What it does not do: reorder, duplicate or corrupt packets, or change the path MTU.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, Mutex};
use tokio::time::Instant;

/// Bytes a rate-limited direction queues before it drops at the tail (a router buffer).
pub const QUEUE_BYTES: usize = 1 << 20;

/// Largest UDP payload relayed.
const DATAGRAM: usize = 65_535;

/// How one direction of the link (and, with the same figures, the other) is impaired.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LinkProfile {
    /// One-way propagation delay.
    pub delay: Duration,
    /// Uniform jitter added to `delay`, between −jitter and +jitter (clamped at zero delay).
    pub jitter: Duration,
    /// Probability that a packet is dropped, in [0, 1).
    pub loss: f64,
    /// Link rate in bits per second; `None` for no limit.
    pub rate_bits_per_second: Option<u64>,
    /// Seed of the loss and jitter draws, so that a run can be repeated.
    pub seed: u64,
}

impl LinkProfile {
    /// Loopback as it is: no delay, no loss, no limit.
    pub fn none() -> Self {
        Self {
            delay: Duration::ZERO,
            jitter: Duration::ZERO,
            loss: 0.0,
            rate_bits_per_second: None,
            seed: 0,
        }
    }

    /// The round-trip time the link adds (twice the one-way delay).
    pub fn round_trip(&self) -> Duration {
        self.delay * 2
    }

    /// Checks the figures, saying which is wrong.
    pub fn validate(&self) -> Result<(), String> {
        if !(0.0..1.0).contains(&self.loss) {
            return Err(format!("loss {} is not a probability below 1", self.loss));
        }
        if self.rate_bits_per_second == Some(0) {
            return Err("a rate of 0 bits per second carries nothing".to_owned());
        }
        if self.delay > Duration::from_secs(10) || self.jitter > Duration::from_secs(10) {
            return Err("delay and jitter are at most 10 s".to_owned());
        }
        Ok(())
    }
}

impl std::fmt::Display for LinkProfile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} ± {} ms one way, {}% loss",
            self.delay.as_millis(),
            self.jitter.as_millis(),
            self.loss * 100.0
        )?;
        match self.rate_bits_per_second {
            Some(rate) => write!(f, ", {} Mbit/s", rate as f64 / 1e6),
            None => write!(f, ", no rate limit"),
        }
    }
}

/// A running relay; dropping it stops it.
pub struct ImpairedLink {
    addr: SocketAddr,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    counters: Arc<Counters>,
}

/// Packets seen by a relay.
#[derive(Debug, Default)]
struct Counters {
    forwarded: std::sync::atomic::AtomicU64,
    dropped: std::sync::atomic::AtomicU64,
}

impl ImpairedLink {
    /// Starts a relay on 127.0.0.1 towards `target` (an address on loopback).
    pub async fn start(target: SocketAddr, profile: LinkProfile) -> std::io::Result<Self> {
        profile
            .validate()
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
        let front = Arc::new(UdpSocket::bind("127.0.0.1:0").await?);
        let back = Arc::new(UdpSocket::bind("127.0.0.1:0").await?);
        back.connect(target).await?;
        let addr = front.local_addr()?;
        let client: Arc<Mutex<Option<SocketAddr>>> = Arc::default();
        let counters = Arc::new(Counters::default());
        let (up_tx, up_rx) = mpsc::unbounded_channel();
        let (down_tx, down_rx) = mpsc::unbounded_channel();
        let mut tasks = Vec::new();
        // Node → coordinator.
        {
            let (front, client, counters) = (front.clone(), client.clone(), counters.clone());
            let mut shaper = Shaper::new(profile, profile.seed);
            tasks.push(tokio::spawn(async move {
                let mut buf = vec![0u8; DATAGRAM];
                while let Ok((n, from)) = front.recv_from(&mut buf).await {
                    // The newest sender is the node (a restarted node has a new port).
                    *client.lock().await = Some(from);
                    shaper.admit(&buf[..n], &up_tx, &counters);
                }
            }));
        }
        {
            let back = back.clone();
            tasks.push(tokio::spawn(deliver(up_rx, move |bytes| {
                let back = back.clone();
                async move {
                    let _ = back.send(&bytes).await;
                }
            })));
        }
        // Coordinator → node.
        {
            let counters = counters.clone();
            let mut shaper = Shaper::new(profile, profile.seed ^ 0x9e37_79b9_7f4a_7c15);
            let back = back.clone();
            tasks.push(tokio::spawn(async move {
                let mut buf = vec![0u8; DATAGRAM];
                loop {
                    match back.recv(&mut buf).await {
                        Ok(n) => shaper.admit(&buf[..n], &down_tx, &counters),
                        // A connected UDP socket reports an ICMP "port unreachable" from an
                        // earlier send as an error here: the coordinator is gone for now.
                        Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
                    }
                }
            }));
        }
        tasks.push(tokio::spawn(deliver(down_rx, move |bytes| {
            let (front, client) = (front.clone(), client.clone());
            async move {
                if let Some(to) = *client.lock().await {
                    let _ = front.send_to(&bytes, to).await;
                }
            }
        })));
        Ok(Self {
            addr,
            tasks,
            counters,
        })
    }

    /// The address a node sends to instead of the coordinator's.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Packets forwarded and packets dropped so far, both directions.
    pub fn packets(&self) -> (u64, u64) {
        use std::sync::atomic::Ordering::Relaxed;
        (
            self.counters.forwarded.load(Relaxed),
            self.counters.dropped.load(Relaxed),
        )
    }
}

impl Drop for ImpairedLink {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// A packet with the time it reaches the far end.
struct InFlight {
    at: Instant,
    bytes: Vec<u8>,
}

/// One direction's loss, queue and delay.
struct Shaper {
    profile: LinkProfile,
    rng: StdRng,
    /// When the link finishes serializing what it has been given.
    busy_until: Instant,
    /// When the last kept packet arrives (no overtaking).
    last_arrival: Instant,
    /// Packets admitted and not yet serialized, with their sizes (for the queue limit).
    queued: VecDeque<(Instant, usize)>,
    queued_bytes: usize,
}

impl Shaper {
    fn new(profile: LinkProfile, seed: u64) -> Self {
        let now = Instant::now();
        Self {
            profile,
            rng: StdRng::seed_from_u64(seed),
            busy_until: now,
            last_arrival: now,
            queued: VecDeque::new(),
            queued_bytes: 0,
        }
    }

    fn admit(&mut self, bytes: &[u8], out: &mpsc::UnboundedSender<InFlight>, counters: &Counters) {
        use std::sync::atomic::Ordering::Relaxed;
        let now = Instant::now();
        while self.queued.front().is_some_and(|(done, _)| *done <= now) {
            if let Some((_, n)) = self.queued.pop_front() {
                self.queued_bytes -= n;
            }
        }
        let lost = self.profile.loss > 0.0 && self.rng.random_bool(self.profile.loss);
        let overflow = self.profile.rate_bits_per_second.is_some()
            && self.queued_bytes + bytes.len() > QUEUE_BYTES;
        if lost || overflow {
            counters.dropped.fetch_add(1, Relaxed);
            return;
        }
        let sent = match self.profile.rate_bits_per_second {
            Some(rate) => {
                let serialize = Duration::from_secs_f64(bytes.len() as f64 * 8.0 / rate as f64);
                self.busy_until = self.busy_until.max(now) + serialize;
                self.queued.push_back((self.busy_until, bytes.len()));
                self.queued_bytes += bytes.len();
                self.busy_until
            }
            None => now,
        };
        let jitter = self.profile.jitter.as_secs_f64();
        let delay = if jitter > 0.0 {
            (self.profile.delay.as_secs_f64() + self.rng.random_range(-jitter..=jitter)).max(0.0)
        } else {
            self.profile.delay.as_secs_f64()
        };
        let at = (sent + Duration::from_secs_f64(delay)).max(self.last_arrival);
        self.last_arrival = at;
        counters.forwarded.fetch_add(1, Relaxed);
        let _ = out.send(InFlight {
            at,
            bytes: bytes.to_vec(),
        });
    }
}

/// Sends each packet when it is due, in order.
async fn deliver<F, Fut>(mut packets: mpsc::UnboundedReceiver<InFlight>, send: F)
where
    F: Fn(Vec<u8>) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    while let Some(packet) = packets.recv().await {
        tokio::time::sleep_until(packet.at).await;
        send(packet.bytes).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn echo_server() -> (SocketAddr, tokio::task::JoinHandle<()>) {
        let socket = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
        let addr = socket.local_addr().expect("addr");
        let task = tokio::spawn(async move {
            let mut buf = vec![0u8; DATAGRAM];
            while let Ok((n, from)) = socket.recv_from(&mut buf).await {
                let _ = socket.send_to(&buf[..n], from).await;
            }
        });
        (addr, task)
    }

    /// A packet through the relay and back takes twice the one-way delay, and no less.
    #[tokio::test]
    async fn a_round_trip_takes_twice_the_delay() {
        let (server, _echo) = echo_server().await;
        let profile = LinkProfile {
            delay: Duration::from_millis(40),
            ..LinkProfile::none()
        };
        let link = ImpairedLink::start(server, profile).await.expect("relay");
        let client = UdpSocket::bind("127.0.0.1:0").await.expect("client");
        let mut buf = [0u8; 16];
        for i in 0..3u8 {
            let sent = Instant::now();
            client.send_to(&[i], link.addr()).await.expect("send");
            let n = tokio::time::timeout(Duration::from_secs(5), client.recv(&mut buf))
                .await
                .expect("an answer within 5 s")
                .expect("recv");
            let took = sent.elapsed();
            assert_eq!(&buf[..n], &[i]);
            assert!(took >= Duration::from_millis(80), "{took:?}");
            assert!(took < Duration::from_millis(400), "{took:?}");
        }
        assert_eq!(link.packets(), (6, 0));
    }

    /// With 30% loss, about 30% of packets are dropped (each direction draws apart), and the
    /// rest arrive in the order they were sent.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn loss_drops_about_its_share_and_keeps_order() {
        let socket = UdpSocket::bind("127.0.0.1:0").await.expect("sink");
        let profile = LinkProfile {
            delay: Duration::from_millis(5),
            jitter: Duration::from_millis(4),
            loss: 0.3,
            seed: 7,
            ..LinkProfile::none()
        };
        let link = ImpairedLink::start(socket.local_addr().expect("addr"), profile)
            .await
            .expect("relay");
        // Received while sending, so that no socket buffer overflows: only the relay drops.
        let receiver = tokio::spawn(async move {
            let mut got = Vec::new();
            let mut buf = [0u8; 16];
            while let Ok(Ok(n)) =
                tokio::time::timeout(Duration::from_millis(500), socket.recv(&mut buf)).await
            {
                assert_eq!(n, 2);
                got.push(u16::from_le_bytes([buf[0], buf[1]]));
            }
            got
        });
        let client = UdpSocket::bind("127.0.0.1:0").await.expect("client");
        for i in 0..1000u16 {
            client
                .send_to(&i.to_le_bytes(), link.addr())
                .await
                .expect("send");
            if i % 20 == 19 {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
        let got = receiver.await.expect("receiver");
        assert!((600..800).contains(&got.len()), "{} arrived", got.len());
        assert!(got.windows(2).all(|w| w[0] < w[1]), "reordered");
        let (forwarded, dropped) = link.packets();
        assert_eq!(forwarded as usize, got.len());
        assert_eq!(forwarded + dropped, 1000);
    }

    /// At 8 Mbit/s, 100 packets of 1000 bytes take about 100 ms to go through.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn rate_spaces_packets_by_their_size() {
        let socket = UdpSocket::bind("127.0.0.1:0").await.expect("sink");
        let profile = LinkProfile {
            rate_bits_per_second: Some(8_000_000),
            ..LinkProfile::none()
        };
        let link = ImpairedLink::start(socket.local_addr().expect("addr"), profile)
            .await
            .expect("relay");
        let client = UdpSocket::bind("127.0.0.1:0").await.expect("client");
        let started = Instant::now();
        for i in 0..100 {
            client
                .send_to(&[0u8; 1000], link.addr())
                .await
                .expect("send");
            if i % 20 == 19 {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
        let mut buf = vec![0u8; 2000];
        for _ in 0..100 {
            tokio::time::timeout(Duration::from_secs(5), socket.recv(&mut buf))
                .await
                .expect("within 5 s")
                .expect("recv");
        }
        let took = started.elapsed();
        assert!(took >= Duration::from_millis(95), "{took:?}");
        assert!(took < Duration::from_millis(600), "{took:?}");
    }

    #[test]
    fn a_profile_says_what_is_wrong() {
        let bad = LinkProfile {
            loss: 1.0,
            ..LinkProfile::none()
        };
        assert!(bad.validate().expect_err("loss 1").contains("loss"));
        let bad = LinkProfile {
            rate_bits_per_second: Some(0),
            ..LinkProfile::none()
        };
        assert!(bad.validate().expect_err("rate 0").contains("rate"));
        assert!(LinkProfile::none().validate().is_ok());
    }
}
