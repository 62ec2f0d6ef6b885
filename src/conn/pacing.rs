//! Time and pace: the connection's next deadline, what happens when it
//! passes (eviction, ping, the end of a close), and the slow-client
//! accounting of each read against [`crate::pace`]'s rules.

use std::time::Instant;

use log::debug;

use super::{Conn, Phase, Shared};
use crate::config::Config;
use crate::outcome::{Closer, Eviction};
use crate::pace::Unit;
use crate::ws::{encoder, CloseCode, OpCode};

/// The unit size assumed for a client's TLS handshake flight, whose
/// length the record layer does not announce up front: one full record.
const TLS_FLIGHT_BYTES: u64 = 16 << 10;

impl Conn {
    /// When the connection next needs [`Conn::on_timeout`].
    pub fn deadline(&self, config: &Config) -> Option<Instant> {
        let pace = &config.protection.pace;
        let input = match self.phase {
            Phase::Upgrading { .. } | Phase::Open(_) => self.guard.input_deadline(),
            _ => None,
        };
        let output = self.guard.output_deadline(pace, self.queued(config));
        [self.phase_deadline(config), input, output]
            .into_iter()
            .flatten()
            .min()
    }

    pub(super) fn phase_deadline(&self, config: &Config) -> Option<Instant> {
        let timeouts = &config.timeouts;
        match &self.phase {
            // The client owes nothing while the auth service decides.
            Phase::Upgrading { .. } => match &self.auth {
                Some(wait) => Some(wait.until),
                None => Some(self.accepted_at + timeouts.handshake),
            },
            Phase::Open(_) => {
                let idle = self.last_rx + timeouts.idle;
                if self.pinged {
                    Some(idle)
                } else {
                    Some(idle.min(self.last_rx + timeouts.ping_interval))
                }
            }
            Phase::Closing { since, .. } | Phase::Draining { since, .. } => {
                Some(*since + timeouts.close)
            }
            Phase::Done => None,
        }
    }

    /// Handles the connection's deadline. What the kernel already holds is
    /// read first: a client is judged by when its bytes arrived, not by
    /// when a busy reactor got to them.
    pub fn on_timeout(&mut self, sh: &mut Shared<'_>) {
        if !self.is_done() && self.pending.is_empty() {
            self.read_and_account(sh);
        }
        self.flush(sh);
        let config = sh.config;
        let (timeouts, pace, now) = (&config.timeouts, &config.protection.pace, sh.now);
        let mut input_overdue = matches!(self.phase, Phase::Upgrading { .. } | Phase::Open(_))
            && self.guard.input_deadline().is_some_and(|at| now >= at);
        if input_overdue && self.stats.bytes_in == 0 {
            input_overdue = !self.restretched(sh);
        }
        let output_overdue = self
            .guard
            .output_deadline(pace, self.queued(config))
            .is_some_and(|at| now >= at);
        match &self.phase {
            _ if self.is_done() => {}
            _ if input_overdue => {
                let reason = self.slow_input_reason();
                self.evict(sh.out, now, reason);
            }
            _ if output_overdue => self.evict(sh.out, now, Eviction::SlowConsumer),
            Phase::Upgrading { .. } if self.auth.as_ref().is_some_and(|w| now >= w.until) => {
                self.auth_unavailable(sh, "auth service timed out");
            }
            Phase::Upgrading { .. }
                if self.auth.is_none() && now >= self.accepted_at + timeouts.handshake =>
            {
                self.evict(sh.out, now, Eviction::HandshakeTimeout);
            }
            Phase::Open(_) if now >= self.last_rx + timeouts.idle => {
                self.evict(sh.out, now, Eviction::Idle);
            }
            Phase::Open(_) if !self.pinged && now >= self.last_rx + timeouts.ping_interval => {
                encoder::encode_frame(sh.out, OpCode::Ping, b"");
                self.pinged = true;
            }
            Phase::Closing { since, .. } | Phase::Draining { since, .. }
                if now >= *since + timeouts.close =>
            {
                self.phase = Phase::Done;
            }
            _ => {}
        }
        self.flush(sh);
    }

    /// A connection that has sent nothing is judged by how many its
    /// address holds now, not only at accept; true if that gives it longer.
    pub(super) fn restretched(&mut self, sh: &Shared<'_>) -> bool {
        let protection = &sh.config.protection;
        let crowd = sh.control.crowd(self.peer.ip(), protection);
        self.guard
            .reopen(&protection.pace, self.accepted_at, crowd, sh.now)
    }

    /// Which slow-input eviction an overdue input deadline means now.
    pub(super) fn slow_input_reason(&self) -> Eviction {
        match self.phase {
            _ if self.guard.awaiting_first_byte() => Eviction::FirstByte,
            Phase::Upgrading { .. } if self.tls.is_handshaking() => Eviction::SlowHandshake,
            Phase::Upgrading { .. } => Eviction::SlowUpgrade,
            _ => Eviction::SlowFrame,
        }
    }

    /// Ends a connection that is too slow or too greedy. Before the upgrade
    /// it is simply dropped: a slowloris gets no response to wait for.
    pub(super) fn evict(&mut self, out: &mut Vec<u8>, now: Instant, reason: Eviction) {
        debug!("{}: evicted: {}", self.peer, reason.as_str());
        // The first reason is the one that counts: a client closed for its
        // message rate that then stops reading is not also a slow consumer.
        self.eviction.get_or_insert(reason);
        match (&self.phase, reason) {
            (Phase::Open(_), Eviction::Idle) => {
                self.start_close(out, now, CloseCode::GOING_AWAY, "idle timeout")
            }
            (Phase::Open(_) | Phase::Closing { .. }, Eviction::SlowConsumer) => {
                // What never reached rustls is dropped; the Close goes out
                // only if rustls can still take it, else TCP is dropped.
                self.pending.clear();
                out.clear();
                encoder::encode_close(out, Some((CloseCode::POLICY_VIOLATION, "slow consumer")));
                let accepted = self.tls.write_plaintext(out) == out.len();
                out.clear();
                self.close = Some((CloseCode::POLICY_VIOLATION.0, Closer::Server));
                if accepted {
                    self.drain(now);
                } else {
                    self.phase = Phase::Done;
                }
            }
            (Phase::Open(_), _) => {
                encoder::encode_close(out, Some((CloseCode::POLICY_VIOLATION, reason.as_str())));
                self.close = Some((CloseCode::POLICY_VIOLATION.0, Closer::Server));
                self.drain(now);
            }
            _ => {
                self.close
                    .get_or_insert((CloseCode::ABNORMAL.0, Closer::Server));
                self.phase = Phase::Done;
            }
        }
    }

    /// Reads what there is, then brings the guard up to date with what the
    /// client sent (and is still sending).
    pub(super) fn read_and_account(&mut self, sh: &mut Shared<'_>) {
        let was_handshaking = self.tls.is_handshaking();
        let (tls_before, plaintext_before) = (self.stats.bytes_in, self.plaintext_in);
        self.read_all(sh);
        let tls_got = self.stats.bytes_in - tls_before;
        let plaintext_got = self.plaintext_in - plaintext_before;
        self.account(sh, was_handshaking, tls_got, plaintext_got);
    }

    pub(super) fn account(
        &mut self,
        sh: &Shared<'_>,
        was_handshaking: bool,
        tls_got: u64,
        plaintext_got: u64,
    ) {
        let protection = &sh.config.protection;
        let (pace, now) = (&protection.pace, sh.now);
        let pressed = || sh.control.pressed(protection);
        if !self.pending.is_empty() {
            // We stopped reading (backpressure): the client owes nothing
            // while we are not listening, and a unit it is in the middle
            // of gets a fresh deadline once we read again.
            return self.guard.settled();
        }
        match &self.phase {
            Phase::Upgrading { .. } if self.tls.is_handshaking() => {
                if tls_got == 0 {
                    return;
                }
                if self.tls.wants_write() {
                    // Their flight is complete: ours answers it, and the
                    // next one is owed, a round trip away.
                    let path = crate::sys::tcp_path(&self.socket);
                    self.guard.ask(pace, now, path, pressed());
                } else {
                    let fresh = self.guard.awaiting_first_byte();
                    self.guard
                        .unit(pace, now, TLS_FLIGHT_BYTES, fresh, Unit::Handshake);
                }
            }
            Phase::Upgrading { .. } if self.auth.is_some() => self.guard.settled(),
            Phase::Upgrading { head } => {
                let request_len = sh.config.max_header_bytes as u64;
                if was_handshaking && head.is_empty() {
                    self.guard.ask(pace, now, None, pressed());
                } else if !head.is_empty() && (was_handshaking || plaintext_got > 0) {
                    let fresh = was_handshaking || self.guard.awaiting_first_byte();
                    self.guard
                        .unit(pace, now, request_len, fresh, Unit::Handshake);
                }
            }
            Phase::Open(session) | Phase::Closing { session, .. } => {
                match session.decoder.frame_progress() {
                    None => self.guard.settled(),
                    Some((received, total)) => {
                        let fresh = received <= plaintext_got;
                        self.guard.unit(pace, now, total, fresh, Unit::Frame);
                    }
                }
            }
            _ => self.guard.settled(),
        }
    }

    /// Output queued for the client: ours, plus at most what the TLS
    /// backlog holds.
    pub(super) fn queued(&self, config: &Config) -> u64 {
        let in_tls = if self.tls.wants_write() {
            config.protection.tls_backlog_bytes
        } else {
            0
        };
        (self.pending.len() + in_tls) as u64
    }
}
