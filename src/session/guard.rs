//! Slow-client bookkeeping for one connection: what the client owes us and
//! by when, whether its output is draining, and its message budget. The
//! rules themselves are in [`crate::pace`]; this keeps the state.

use std::time::{Duration, Instant};

use crate::pace::{Crowd, Pace, Path, Unit};

/// What the client owes the server next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Owed {
    /// Nothing: an open connection between frames (the idle rules apply).
    Nothing,
    /// The first byte of a unit, by `due`.
    FirstByte { due: Instant },
    /// The rest of a unit, by `deadline`.
    Rest { deadline: Instant },
}

/// A connection's slow-client state.
#[derive(Debug, Clone)]
pub struct Guard {
    owed: Owed,
    /// The smoothed round-trip time and the retransmission timeout in
    /// microseconds, as the kernel reports them (4 bytes each rather than
    /// a 16-byte `Duration`).
    rtt_us: u32,
    rto_us: u32,
    /// Output stopped draining at this time (socket full, bytes left).
    blocked_since: Option<Instant>,
    /// Boxed: off by default, and 8 bytes instead of 40 in every
    /// connection when it is.
    bucket: Option<Box<TokenBucket>>,
}

impl Guard {
    /// A guard for a connection accepted at `now` into `crowd`: it owes
    /// its first byte.
    pub fn new(
        now: Instant,
        pace: &Pace,
        path: Path,
        crowd: Crowd,
        messages_per_s: u32,
        burst: u32,
    ) -> Self {
        Self {
            owed: Owed::FirstByte {
                due: pace.opening_deadline(now, path, crowd),
            },
            rtt_us: micros(path.rtt),
            rto_us: micros(path.rto),
            blocked_since: None,
            bucket: (messages_per_s > 0)
                .then(|| Box::new(TokenBucket::new(now, messages_per_s, burst))),
        }
    }

    /// The server asked for a new unit (sent its TLS flight, finished the
    /// handshake): the first byte is due a think time from `since`, or a
    /// first-byte time when `pressed`.
    pub fn ask(&mut self, pace: &Pace, since: Instant, path: Option<Path>, pressed: bool) {
        self.refresh_path(path);
        self.owed = Owed::FirstByte {
            due: pace.first_byte_deadline(since, self.path(), pressed),
        };
    }

    /// A `unit` of `len` bytes is under way. If it started in this batch
    /// of input (`fresh`), its deadline runs from `now`; a unit already
    /// under way keeps the deadline it had.
    pub fn unit(&mut self, pace: &Pace, now: Instant, len: u64, fresh: bool, unit: Unit) {
        if fresh || !matches!(self.owed, Owed::Rest { .. }) {
            self.owed = Owed::Rest {
                deadline: pace.unit_deadline(now, len, self.path(), unit),
            };
        }
    }

    /// A connection accepted at `accepted` that has sent nothing is judged
    /// again by the `crowd` it is in now: its address may have opened more
    /// connections since (one process connecting many before it writes
    /// their hellos). True when that moves its first byte's due time past
    /// `now`.
    pub fn reopen(&mut self, pace: &Pace, accepted: Instant, crowd: Crowd, now: Instant) -> bool {
        let due = pace.opening_deadline(accepted, self.path(), crowd);
        let later = due > now;
        if later {
            self.owed = Owed::FirstByte { due };
        }
        later
    }

    /// The client owes nothing (between frames).
    pub fn settled(&mut self) {
        self.owed = Owed::Nothing;
    }

    /// True while a unit has been asked for but not a byte of it came.
    pub fn awaiting_first_byte(&self) -> bool {
        matches!(self.owed, Owed::FirstByte { .. })
    }

    /// Records whether output is still waiting after a flush.
    pub fn output_blocked(&mut self, now: Instant, blocked: bool) {
        match (blocked, self.blocked_since) {
            (true, None) => self.blocked_since = Some(now),
            (false, Some(_)) => self.blocked_since = None,
            _ => {}
        }
    }

    /// Takes one message from the budget; false when the client is over it.
    pub fn admit_message(&mut self, now: Instant) -> bool {
        self.bucket.as_mut().is_none_or(|bucket| bucket.take(now))
    }

    /// When the input owed is due.
    pub fn input_deadline(&self) -> Option<Instant> {
        match self.owed {
            Owed::Nothing => None,
            Owed::FirstByte { due } => Some(due),
            Owed::Rest { deadline } => Some(deadline),
        }
    }

    /// When `queued` bytes of blocked output must have drained.
    pub fn output_deadline(&self, pace: &Pace, queued: u64) -> Option<Instant> {
        self.blocked_since
            .map(|since| pace.drain_deadline(since, queued, self.path()))
    }

    fn refresh_path(&mut self, path: Option<Path>) {
        if let Some(path) = path {
            self.rtt_us = micros(path.rtt);
            self.rto_us = micros(path.rto);
        }
    }

    fn path(&self) -> Path {
        Path {
            rtt: Duration::from_micros(u64::from(self.rtt_us)),
            rto: Duration::from_micros(u64::from(self.rto_us)),
        }
    }
}

/// `d` in whole microseconds, saturating (over an hour is no RTT).
fn micros(d: Duration) -> u32 {
    u32::try_from(d.as_micros()).unwrap_or(u32::MAX)
}

/// A token bucket: `rate` tokens a second, holding at most `burst`.
#[derive(Debug, Clone)]
struct TokenBucket {
    tokens: f64,
    burst: f64,
    rate: f64,
    last: Instant,
}

impl TokenBucket {
    fn new(now: Instant, rate: u32, burst: u32) -> Self {
        let burst = f64::from(burst.max(1));
        Self {
            tokens: burst,
            burst,
            rate: f64::from(rate),
            last: now,
        }
    }

    fn take(&mut self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// A path with a 2 ms round trip and Linux's least RTO.
    fn loopback() -> Path {
        Path {
            rtt: ms(2),
            rto: ms(200),
        }
    }

    fn guard(t0: Instant, messages_per_s: u32, burst: u32) -> Guard {
        let pace = Pace::default();
        let crowd = Crowd {
            held: 1,
            pressed: false,
        };
        Guard::new(t0, &pace, loopback(), crowd, messages_per_s, burst)
    }

    #[test]
    fn first_byte_then_unit_then_settled_with_virtual_time() {
        let pace = Pace::default();
        let t0 = Instant::now();
        let mut guard = guard(t0, 0, 0);
        assert!(guard.awaiting_first_byte());
        assert_eq!(guard.input_deadline(), Some(t0 + ms(102)));
        // 8 KiB unit starting at t0+10ms: 164 ms at 50 kB/s, plus the RTT
        // and a retransmission.
        guard.unit(&pace, t0 + ms(10), 8192, true, Unit::Handshake);
        assert_eq!(guard.input_deadline(), Some(t0 + ms(376)));
        // More bytes of the same unit do not move its deadline.
        guard.unit(&pace, t0 + ms(100), 8192, false, Unit::Handshake);
        assert_eq!(guard.input_deadline(), Some(t0 + ms(376)));
        guard.settled();
        assert_eq!(guard.input_deadline(), None);
        // A later unit gets the think time, from a fresh measure of the path.
        let far = Path {
            rtt: ms(40),
            rto: ms(250),
        };
        guard.ask(&pace, t0 + ms(400), Some(far), false);
        assert!(guard.awaiting_first_byte());
        assert_eq!(guard.input_deadline(), Some(t0 + ms(1440)));
        guard.ask(&pace, t0 + ms(400), None, true);
        assert_eq!(guard.input_deadline(), Some(t0 + ms(465)));
        guard.unit(&pace, t0 + ms(450), 2, true, Unit::Frame);
        assert_eq!(guard.input_deadline(), Some(t0 + ms(450 + 40 + 5000 + 1)));
    }

    #[test]
    fn a_silent_connection_is_judged_again_by_the_crowd_it_is_in_now() {
        let pace = Pace::default();
        let t0 = Instant::now();
        let mut guard = guard(t0, 0, 0);
        assert_eq!(guard.input_deadline(), Some(t0 + ms(102)));
        let crowd = |held, pressed| Crowd { held, pressed };
        // Its address opened three more meanwhile: 4 x 100 ms from accept.
        assert!(guard.reopen(&pace, t0, crowd(4, false), t0 + ms(102)));
        assert_eq!(guard.input_deadline(), Some(t0 + ms(402)));
        // Still alone, or under pressure: no more time.
        assert!(!guard.reopen(&pace, t0, crowd(1, false), t0 + ms(402)));
        assert!(!guard.reopen(&pace, t0, crowd(40, true), t0 + ms(402)));
        assert_eq!(guard.input_deadline(), Some(t0 + ms(402)));
    }

    #[test]
    fn output_deadline_runs_from_when_output_stopped_draining() {
        let pace = Pace::default();
        let t0 = Instant::now();
        let mut guard = guard(t0, 0, 0);
        assert_eq!(guard.output_deadline(&pace, 50_000), None);
        guard.output_blocked(t0, true);
        guard.output_blocked(t0 + ms(50), true);
        assert_eq!(guard.output_deadline(&pace, 50_000), Some(t0 + ms(2002)));
        guard.output_blocked(t0 + ms(60), false);
        assert_eq!(guard.output_deadline(&pace, 50_000), None);
    }

    #[test]
    fn token_bucket_allows_the_burst_then_the_rate() {
        let t0 = Instant::now();
        let mut guard = guard(t0, 10, 3);
        assert!((0..3).all(|_| guard.admit_message(t0)));
        assert!(!guard.admit_message(t0));
        // 100 ms at 10/s refills one token.
        assert!(guard.admit_message(t0 + ms(100)));
        assert!(!guard.admit_message(t0 + ms(100)));
    }

    #[test]
    fn no_limit_admits_everything() {
        let t0 = Instant::now();
        let mut guard = guard(t0, 0, 0);
        assert!((0..10_000).all(|_| guard.admit_message(t0)));
    }
}
