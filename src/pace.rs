//! Slow-client rules as pure arithmetic on times and byte counts.
//!
//! A client must start each unit of input (a TLS handshake flight, the
//! HTTP upgrade request, a WebSocket frame) within the first-byte time of
//! being asked for it, and deliver the rest of the unit at the minimum
//! rate or faster. Output it is sent must drain at the minimum rate too.
//! Where the network is slow rather than the client, the connection's
//! measured round-trip time is added on top, so distant but honest clients
//! pass.

use std::time::{Duration, Instant};

/// The configured pace a client must keep.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pace {
    /// Time allowed before the first byte of a unit. Default 25 ms.
    pub first_byte: Duration,
    /// Minimum transfer rate once a unit has started, bytes per second.
    /// Default 50,000.
    pub min_rate: u64,
}

impl Default for Pace {
    fn default() -> Self {
        Self {
            first_byte: Duration::from_millis(25),
            min_rate: 50_000,
        }
    }
}

impl Pace {
    /// Time `bytes` take at the minimum rate, rounded up to a whole
    /// millisecond (at least one).
    pub fn transfer_time(&self, bytes: u64) -> Duration {
        let rate = self.min_rate.max(1);
        let millis = bytes.saturating_mul(1000).div_ceil(rate).max(1);
        Duration::from_millis(millis)
    }

    /// When the first byte of a unit requested at `since` is due.
    pub fn first_byte_deadline(&self, since: Instant, rtt: Duration) -> Instant {
        since + self.first_byte + rtt
    }

    /// When a unit of `len` bytes whose first byte arrived at `started`
    /// must be complete.
    pub fn unit_deadline(&self, started: Instant, len: u64, rtt: Duration) -> Instant {
        started + rtt + self.transfer_time(len)
    }

    /// When `bytes` of output that stopped draining at `since` must have
    /// drained.
    pub fn drain_deadline(&self, since: Instant, bytes: u64, rtt: Duration) -> Instant {
        since + self.first_byte + rtt + self.transfer_time(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transfer_time_rounds_up_to_whole_milliseconds() {
        let pace = Pace::default();
        let table = [
            (0, 1),
            (1, 1),
            (50, 1),
            (51, 2),
            (50_000, 1000),
            (8192, 164),
            (16 << 20, 335_545),
        ];
        for (bytes, millis) in table {
            assert_eq!(
                pace.transfer_time(bytes),
                Duration::from_millis(millis),
                "{bytes} B"
            );
        }
    }

    #[test]
    fn deadlines_add_first_byte_time_and_round_trip_with_virtual_time() {
        let pace = Pace::default();
        let t0 = Instant::now();
        let rtt = Duration::from_millis(80);
        assert_eq!(
            pace.first_byte_deadline(t0, rtt),
            t0 + Duration::from_millis(105)
        );
        assert_eq!(
            pace.unit_deadline(t0, 8192, rtt),
            t0 + Duration::from_millis(244)
        );
        assert_eq!(
            pace.drain_deadline(t0, 50_000, Duration::ZERO),
            t0 + Duration::from_millis(1025)
        );
    }

    #[test]
    fn a_zero_rate_cannot_divide_by_zero() {
        let pace = Pace {
            min_rate: 0,
            ..Pace::default()
        };
        assert_eq!(pace.transfer_time(3), Duration::from_millis(3000));
    }
}
