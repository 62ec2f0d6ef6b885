//! Time and pace: the session's next deadline, what happens when it
//! passes (eviction, ping, the end of a close), and the slow-client
//! accounting of each read against [`crate::pace`]'s rules.

use std::time::Instant;

use log::debug;

use super::{Ctx, Phase, Session};
use crate::config::Config;
use crate::outcome::{Closer, Eviction};
use crate::pace::{Path, Unit};
use crate::ws::{encoder, CloseCode, OpCode};

/// The unit size assumed for a client's TLS handshake flight, whose
/// length the record layer does not announce up front: one full record.
const TLS_FLIGHT_BYTES: u64 = 16 << 10;

/// What one round of reading told the shell, for the slow-client rules.
#[derive(Debug, Clone, Copy)]
pub struct ReadReport {
    /// The TLS handshake ran before the read.
    pub was_handshaking: bool,
    /// The TLS handshake still runs.
    pub handshaking: bool,
    /// The client's handshake flight is complete and ours answers it:
    /// with the TCP path measured then, for the round trip to the next.
    pub flight_answered: Option<Option<Path>>,
    /// TLS bytes the read brought.
    pub tls_got: u64,
    /// Plaintext bytes the read brought.
    pub plaintext_got: u64,
    /// Our output is backed up, so reading stopped.
    pub output_paused: bool,
}

impl Session {
    /// When the session next needs [`Session::expire`], with `queued`
    /// bytes of output waiting in the shell.
    pub fn deadline(&self, config: &Config, queued: u64) -> Option<Instant> {
        let pace = &config.protection.pace;
        let input = match self.phase {
            Phase::Upgrading { .. } | Phase::Open(_) => self.guard.input_deadline(),
            _ => None,
        };
        let output = self.guard.output_deadline(pace, queued);
        [self.phase_deadline(config), input, output]
            .into_iter()
            .flatten()
            .min()
    }

    fn phase_deadline(&self, config: &Config) -> Option<Instant> {
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

    /// Handles what is due at `ctx.now`, with `queued` bytes of output
    /// waiting in the shell and the TLS handshake still running or not.
    /// The shell first reads what the kernel already holds: a client is
    /// judged by when its bytes arrived, not by when a busy reactor got to
    /// them. Returns the eviction the shell carries out, if one is due.
    pub fn expire(
        &mut self,
        ctx: &mut Ctx<'_>,
        queued: u64,
        handshaking: bool,
    ) -> Option<Eviction> {
        let config = ctx.config;
        let (timeouts, pace, now) = (&config.timeouts, &config.protection.pace, ctx.now);
        let mut input_overdue = matches!(self.phase, Phase::Upgrading { .. } | Phase::Open(_))
            && self.guard.input_deadline().is_some_and(|at| now >= at);
        if input_overdue && self.stats.bytes_in == 0 {
            input_overdue = !self.restretched(ctx);
        }
        let output_overdue = self
            .guard
            .output_deadline(pace, queued)
            .is_some_and(|at| now >= at);
        match &self.phase {
            Phase::Done => {}
            _ if input_overdue => return Some(self.slow_input_reason(handshaking)),
            _ if output_overdue => return Some(Eviction::SlowConsumer),
            Phase::Upgrading { .. } if self.auth.as_ref().is_some_and(|w| now >= w.until) => {
                self.auth_unavailable(ctx, "auth service timed out");
            }
            Phase::Upgrading { .. }
                if self.auth.is_none() && now >= self.accepted_at + timeouts.handshake =>
            {
                return Some(Eviction::HandshakeTimeout);
            }
            Phase::Open(_) if now >= self.last_rx + timeouts.idle => return Some(Eviction::Idle),
            Phase::Open(_) if !self.pinged && now >= self.last_rx + timeouts.ping_interval => {
                encoder::encode_frame(ctx.out, OpCode::Ping, b"");
                self.pinged = true;
            }
            Phase::Closing { since, .. } | Phase::Draining { since, .. }
                if now >= *since + timeouts.close =>
            {
                self.phase = Phase::Done;
            }
            _ => {}
        }
        None
    }

    /// A client that has sent nothing is judged by how many its address
    /// holds now, not only at accept; true if that gives it longer.
    fn restretched(&mut self, ctx: &Ctx<'_>) -> bool {
        let protection = &ctx.config.protection;
        let crowd = ctx.control.crowd(self.peer.ip(), protection);
        self.guard
            .reopen(&protection.pace, self.accepted_at, crowd, ctx.now)
    }

    /// Which slow-input eviction an overdue input deadline means now.
    fn slow_input_reason(&self, handshaking: bool) -> Eviction {
        match self.phase {
            _ if self.guard.awaiting_first_byte() => Eviction::FirstByte,
            Phase::Upgrading { .. } if handshaking => Eviction::SlowHandshake,
            Phase::Upgrading { .. } => Eviction::SlowUpgrade,
            _ => Eviction::SlowFrame,
        }
    }

    /// Ends a session that is too slow or too greedy. Before the upgrade
    /// it is simply dropped: a slowloris gets no response to wait for.
    ///
    /// True for a slow consumer with a session to close: `out` then holds
    /// only our Close, and the shell drops every byte it still holds for
    /// the client, offers TLS the Close alone, and calls
    /// [`Session::broken`] if TLS cannot take it.
    pub fn evict(&mut self, out: &mut Vec<u8>, now: Instant, reason: Eviction) -> bool {
        debug!("{}: evicted: {}", self.peer, reason.as_str());
        // The first reason is the one that counts: a client closed for its
        // message rate that then stops reading is not also a slow consumer.
        self.eviction.get_or_insert(reason);
        match (&self.phase, reason) {
            (Phase::Open(_), Eviction::Idle) => {
                self.start_close(out, now, CloseCode::GOING_AWAY, "idle timeout");
            }
            (Phase::Open(_) | Phase::Closing { .. }, Eviction::SlowConsumer) => {
                out.clear();
                encoder::encode_close(out, Some((CloseCode::POLICY_VIOLATION, "slow consumer")));
                self.close = Some((CloseCode::POLICY_VIOLATION.0, Closer::Server));
                self.drain(now);
                return true;
            }
            (Phase::Open(_), _) => {
                encoder::encode_close(out, Some((CloseCode::POLICY_VIOLATION, reason.as_str())));
                self.close = Some((CloseCode::POLICY_VIOLATION.0, Closer::Server));
                self.drain(now);
            }
            _ => self.broken(Closer::Server),
        }
        false
    }

    /// Brings the guard up to date with what one round of reading brought
    /// (and what the client is still sending).
    pub fn account(&mut self, ctx: &Ctx<'_>, read: ReadReport) {
        let protection = &ctx.config.protection;
        let (pace, now) = (&protection.pace, ctx.now);
        let pressed = || ctx.control.pressed(protection);
        if read.output_paused {
            // We stopped reading (backpressure): the client owes nothing
            // while we are not listening, and a unit it is in the middle
            // of gets a fresh deadline once we read again.
            return self.guard.settled();
        }
        match &self.phase {
            Phase::Upgrading { .. } if read.handshaking => {
                if read.tls_got == 0 {
                    return;
                }
                if let Some(path) = read.flight_answered {
                    // Their flight is complete: ours answers it, and the
                    // next one is owed, a round trip away.
                    self.guard.ask(pace, now, path, pressed());
                } else {
                    let fresh = self.guard.awaiting_first_byte();
                    self.guard
                        .unit(pace, now, TLS_FLIGHT_BYTES, fresh, Unit::Handshake);
                }
            }
            Phase::Upgrading { .. } if self.auth.is_some() => self.guard.settled(),
            Phase::Upgrading { head } => {
                let request_len = ctx.config.max_header_bytes as u64;
                if read.was_handshaking && head.is_empty() {
                    self.guard.ask(pace, now, None, pressed());
                } else if !head.is_empty() && (read.was_handshaking || read.plaintext_got > 0) {
                    let fresh = read.was_handshaking || self.guard.awaiting_first_byte();
                    self.guard
                        .unit(pace, now, request_len, fresh, Unit::Handshake);
                }
            }
            Phase::Open(frames) | Phase::Closing { frames, .. } => {
                match frames.decoder.frame_progress() {
                    None => self.guard.settled(),
                    Some((received, total)) => {
                        let fresh = received <= read.plaintext_got;
                        self.guard.unit(pace, now, total, fresh, Unit::Frame);
                    }
                }
            }
            _ => self.guard.settled(),
        }
    }
}
