//! The congestion controller of every fedbank connection: quinn's BBR, with its window never
//! below the initial window.
//!
//! Why the floor: quinn's BBR (0.11) treats a connection that has never probed its minimum
//! round trip as overdue, so the first acknowledgement that is not application-limited — a
//! 267 KB decryption request, or a contribution with its parity datagrams ([`crate::fec`]) —
//! sends it into PROBE_RTT, where the window falls to ¾ of its bandwidth-delay estimate
//! (often the 4-packet minimum, since a consortium's bursty traffic gives small estimates) for
//! 200 ms. Measured with `fedbank bench wan` at 100 ms round trip and no loss, those stalls
//! cost 0.3 s in a third of the telco job's rounds (docs/scaling.md).
//!
//! With the floor, a connection may always have the initial window in flight — what every
//! connection may already send in its first round trip, paced over it — and BBR governs above
//! it. What it gives up: below the initial window, the connection does not yield to competing
//! traffic; for the handful of long-lived connections of a consortium, each carrying messages
//! of at most a few hundred KB at a time, that is the trade made here.

use quinn::congestion::{Controller, ControllerFactory, ControllerMetrics};
use std::any::Any;
use std::sync::Arc;
use std::time::Instant;

/// Builds [`FlooredWindow`] controllers around a BBR configuration.
#[derive(Debug)]
pub struct FlooredBbr {
    bbr: Arc<quinn::congestion::BbrConfig>,
    floor: u64,
}

impl FlooredBbr {
    /// BBR with `initial_window`, whose window never falls below it.
    pub fn new(initial_window: u64) -> Self {
        let mut bbr = quinn::congestion::BbrConfig::default();
        bbr.initial_window(initial_window);
        Self {
            bbr: Arc::new(bbr),
            floor: initial_window,
        }
    }
}

impl ControllerFactory for FlooredBbr {
    fn build(self: Arc<Self>, now: Instant, current_mtu: u16) -> Box<dyn Controller> {
        Box::new(FlooredWindow {
            inner: self.bbr.clone().build(now, current_mtu),
            floor: self.floor,
        })
    }
}

/// A controller whose window is its inner controller's, but at least `floor`.
pub struct FlooredWindow {
    inner: Box<dyn Controller>,
    floor: u64,
}

impl Controller for FlooredWindow {
    fn on_sent(&mut self, now: Instant, bytes: u64, last_packet_number: u64) {
        self.inner.on_sent(now, bytes, last_packet_number);
    }

    fn on_ack(
        &mut self,
        now: Instant,
        sent: Instant,
        bytes: u64,
        app_limited: bool,
        rtt: &quinn_proto::RttEstimator,
    ) {
        self.inner.on_ack(now, sent, bytes, app_limited, rtt);
    }

    fn on_end_acks(
        &mut self,
        now: Instant,
        in_flight: u64,
        app_limited: bool,
        largest_packet_num_acked: Option<u64>,
    ) {
        self.inner
            .on_end_acks(now, in_flight, app_limited, largest_packet_num_acked);
    }

    fn on_congestion_event(
        &mut self,
        now: Instant,
        sent: Instant,
        is_persistent_congestion: bool,
        lost_bytes: u64,
    ) {
        self.inner
            .on_congestion_event(now, sent, is_persistent_congestion, lost_bytes);
    }

    fn on_mtu_update(&mut self, new_mtu: u16) {
        self.inner.on_mtu_update(new_mtu);
    }

    fn window(&self) -> u64 {
        self.inner.window().max(self.floor)
    }

    fn metrics(&self) -> ControllerMetrics {
        let mut metrics = self.inner.metrics();
        metrics.congestion_window = self.window();
        metrics
    }

    fn clone_box(&self) -> Box<dyn Controller> {
        Box::new(Self {
            inner: self.inner.clone_box(),
            floor: self.floor,
        })
    }

    fn initial_window(&self) -> u64 {
        self.inner.initial_window()
    }

    fn into_any(self: Box<Self>) -> Box<dyn Any> {
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A controller whose window the test sets.
    #[derive(Clone)]
    struct Fixed(u64);

    impl Controller for Fixed {
        fn on_congestion_event(&mut self, _: Instant, _: Instant, _: bool, lost: u64) {
            self.0 = self.0.saturating_sub(lost);
        }
        fn on_mtu_update(&mut self, _: u16) {}
        fn window(&self) -> u64 {
            self.0
        }
        fn clone_box(&self) -> Box<dyn Controller> {
            Box::new(self.clone())
        }
        fn initial_window(&self) -> u64 {
            self.0
        }
        fn into_any(self: Box<Self>) -> Box<dyn Any> {
            self
        }
    }

    #[test]
    fn the_window_never_falls_below_the_floor_and_follows_the_inner_one_above_it() {
        let now = Instant::now();
        let mut floored = FlooredWindow {
            inner: Box::new(Fixed(100_000)),
            floor: 60_000,
        };
        assert_eq!(floored.window(), 100_000);
        floored.on_congestion_event(now, now, false, 30_000);
        assert_eq!(
            floored.window(),
            70_000,
            "above the floor the inner window shows"
        );
        floored.on_congestion_event(now, now, true, 60_000);
        assert_eq!(floored.window(), 60_000, "below it the floor holds");
        assert_eq!(floored.metrics().congestion_window, 60_000);
        assert_eq!(floored.clone_box().window(), 60_000);
    }

    #[test]
    fn a_connection_starts_with_bbr_at_the_initial_window() {
        let controller = Arc::new(FlooredBbr::new(512 << 10)).build(Instant::now(), 1200);
        assert_eq!(controller.window(), 512 << 10);
        assert_eq!(controller.initial_window(), 512 << 10);
        assert!(controller.into_any().downcast::<FlooredWindow>().is_ok());
    }
}
