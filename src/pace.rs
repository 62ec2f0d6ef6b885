//! Slow-client rules as pure arithmetic on times and byte counts.
//!
//! A client must start each unit of input (a TLS handshake flight, the
//! HTTP upgrade request, a WebSocket frame) within an allowance of being
//! asked for it, and deliver the rest of the unit at the minimum rate or
//! faster. Output it is sent must drain at the minimum rate too.
//!
//! The allowances tell a slow sender from an honest client that is busy:
//!
//! - The connection's first byte (the ClientHello) costs an honest client
//!   little thought, so it gets the hello time (a script or scanner builds
//!   its hello after connecting), stretched for an address that opens many
//!   connections at once (one process handshaking them in turn) up to the
//!   think time.
//! - Every later unit (the client's next flight after ours, the upgrade
//!   request) gets the think time: the client verifies our certificate or
//!   builds its request first.
//! - Under pressure (pending handshakes at half their cap or more) every
//!   first byte gets only the first-byte time, the strict guideline.
//! - The rest of a unit may be held up by one TCP retransmission, so the
//!   retransmission timeout is added; a frame on an open connection, which
//!   costs no more than an idle one, may stall for the frame-stall time.
//!
//! Where the network is slow rather than the client, the connection's
//! measured round-trip time is added on top, so distant clients pass.

use std::time::{Duration, Instant};

/// The configured pace a client must keep.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pace {
    /// Time allowed before any first byte under pressure, and the least
    /// ever allowed. Default 25 ms.
    pub first_byte: Duration,
    /// Time allowed before a connection's first byte, per connection its
    /// address holds, when not under pressure. Default 100 ms.
    pub hello: Duration,
    /// Time allowed before the first byte of every later unit, and before
    /// blocked output starts to drain. Default 1 s.
    pub think: Duration,
    /// How long a frame on an open connection may stall, on top of its
    /// time at the minimum rate. Default 5 s.
    pub frame_stall: Duration,
    /// Minimum transfer rate once a unit has started, bytes per second.
    /// Default 50,000.
    pub min_rate: u64,
}

impl Default for Pace {
    fn default() -> Self {
        Self {
            first_byte: Duration::from_millis(25),
            hello: Duration::from_millis(100),
            think: Duration::from_secs(1),
            frame_stall: Duration::from_secs(5),
            min_rate: 50_000,
        }
    }
}

/// The least retransmission timeout assumed: Linux's `TCP_RTO_MIN`, for a
/// kernel that does not report the connection's own.
pub const RTO_FLOOR: Duration = Duration::from_millis(200);

/// What the kernel measured of a connection's path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Path {
    /// Smoothed round-trip time.
    pub rtt: Duration,
    /// Retransmission timeout.
    pub rto: Duration,
}

/// How crowded the server is when a connection arrives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Crowd {
    /// Connections the client's address holds, the new one included.
    pub held: usize,
    /// Pending handshakes are at half their cap or more.
    pub pressed: bool,
}

/// What kind of unit a deadline is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    /// A TLS flight or the upgrade request: the client is not yet known.
    Handshake,
    /// A WebSocket frame on an open connection.
    Frame,
}

impl Pace {
    /// Time `bytes` take at the minimum rate, rounded up to a whole
    /// millisecond (at least one).
    pub fn transfer_time(&self, bytes: u64) -> Duration {
        let rate = self.min_rate.max(1);
        let millis = bytes.saturating_mul(1000).div_ceil(rate).max(1);
        Duration::from_millis(millis)
    }

    /// When the first byte of a connection accepted at `accepted` into
    /// `crowd` is due.
    pub fn opening_deadline(&self, accepted: Instant, path: Path, crowd: Crowd) -> Instant {
        let stretched = if crowd.pressed {
            self.first_byte
        } else {
            let held = u32::try_from(crowd.held.max(1)).unwrap_or(u32::MAX);
            self.hello.saturating_mul(held).min(self.think)
        };
        accepted + path.rtt + stretched.max(self.first_byte)
    }

    /// When the first byte of a later unit, asked for at `since`, is due.
    pub fn first_byte_deadline(&self, since: Instant, path: Path, pressed: bool) -> Instant {
        let allowance = if pressed {
            self.first_byte
        } else {
            self.think.max(self.first_byte)
        };
        since + path.rtt + allowance
    }

    /// When a `unit` of `len` bytes whose first byte arrived at `started`
    /// must be complete.
    pub fn unit_deadline(&self, started: Instant, len: u64, path: Path, unit: Unit) -> Instant {
        let retransmission = path.rto.max(RTO_FLOOR);
        let stall = match unit {
            Unit::Handshake => retransmission,
            Unit::Frame => retransmission.max(self.frame_stall),
        };
        started + path.rtt + stall + self.transfer_time(len)
    }

    /// When `bytes` of output that stopped draining at `since` must have
    /// drained.
    pub fn drain_deadline(&self, since: Instant, bytes: u64, path: Path) -> Instant {
        since + self.think.max(self.first_byte) + path.rtt + self.transfer_time(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

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
            assert_eq!(pace.transfer_time(bytes), ms(millis), "{bytes} B");
        }
    }

    #[test]
    fn the_opening_byte_is_stretched_per_connection_held_up_to_the_think_time() {
        let pace = Pace::default();
        let t0 = Instant::now();
        let path = Path {
            rtt: ms(2),
            rto: ms(202),
        };
        // (connections the address holds, under pressure, allowance)
        let table = [
            (0, false, 100),
            (1, false, 100),
            (4, false, 400),
            (40, false, 1000),
            (1000, false, 1000),
            (usize::MAX, false, 1000),
            (1, true, 25),
            (40, true, 25),
        ];
        for (held, pressed, allowance) in table {
            assert_eq!(
                pace.opening_deadline(t0, path, Crowd { held, pressed }),
                t0 + ms(2 + allowance),
                "{held} held, pressed {pressed}"
            );
        }
    }

    #[test]
    fn later_units_get_the_think_time_unless_pressed() {
        let pace = Pace::default();
        let t0 = Instant::now();
        let path = Path {
            rtt: ms(80),
            rto: ms(280),
        };
        assert_eq!(pace.first_byte_deadline(t0, path, false), t0 + ms(1080));
        assert_eq!(pace.first_byte_deadline(t0, path, true), t0 + ms(105));
        // A think time set below the first-byte time never makes it stricter.
        let quick = Pace {
            think: ms(10),
            ..pace
        };
        assert_eq!(quick.first_byte_deadline(t0, path, false), t0 + ms(105));
    }

    #[test]
    fn a_unit_gets_its_transfer_time_a_retransmission_and_the_round_trip() {
        let pace = Pace::default();
        let t0 = Instant::now();
        let measured = Path {
            rtt: ms(80),
            rto: ms(300),
        };
        let unmeasured = Path::default();
        // (path, unit, bytes, deadline after t0)
        let table = [
            (measured, Unit::Handshake, 8192, 80 + 300 + 164),
            (unmeasured, Unit::Handshake, 8192, 200 + 164),
            (unmeasured, Unit::Handshake, 2, 200 + 1),
            (measured, Unit::Frame, 2, 80 + 5000 + 1),
            (unmeasured, Unit::Frame, 50_000, 5000 + 1000),
        ];
        for (path, unit, bytes, after) in table {
            assert_eq!(
                pace.unit_deadline(t0, bytes, path, unit),
                t0 + ms(after),
                "{unit:?} of {bytes} B on {path:?}"
            );
        }
        // An RTO longer than the frame stall is what a frame gets.
        let lossy = Path {
            rtt: ms(10),
            rto: ms(6000),
        };
        assert_eq!(
            pace.unit_deadline(t0, 2, lossy, Unit::Frame),
            t0 + ms(10 + 6000 + 1)
        );
    }

    #[test]
    fn blocked_output_gets_the_think_time_then_the_rate() {
        let pace = Pace::default();
        let t0 = Instant::now();
        assert_eq!(
            pace.drain_deadline(t0, 50_000, Path::default()),
            t0 + ms(2000)
        );
    }

    #[test]
    fn a_zero_rate_cannot_divide_by_zero() {
        let pace = Pace {
            min_rate: 0,
            ..Pace::default()
        };
        assert_eq!(pace.transfer_time(3), ms(3000));
    }
}
