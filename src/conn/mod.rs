//! One client connection, as an explicit state machine.
//!
//! # Lifecycle
//!
//! ```text
//! accept ─► Upgrading ─► Open ─► Closing ─► Draining ─► Done
//!              │          │                   ▲
//!              │          └── peer Close / ───┘
//!              │              protocol error
//!              └── HTTP error response ───────┘
//! ```
//!
//! - **Upgrading**: rustls runs the TLS handshake; the decrypted bytes are
//!   collected (bounded) until the HTTP upgrade request is complete. Bytes
//!   pipelined after the request are the first frame bytes.
//! - **Open**: frames are decoded and served by the route's service.
//! - **Closing**: we sent a Close (shutdown, idle timeout) and wait for the
//!   peer's Close, discarding data frames (RFC 6455 section 5.5.1).
//! - **Draining**: nothing more to say. Pending output is flushed, then
//!   TLS close_notify, then the write side is shut down; we read and
//!   discard until the peer hangs up so our last bytes are not lost to a
//!   TCP reset (RFC 6455 section 7.1.1: the server closes TCP first).
//! - **Done**: the reactor removes the connection.
//!
//! Alongside the phases, a [`Guard`] tracks what the client owes (the
//! first byte of a flight, the rest of a unit, by when) and whether our
//! output is draining: see [`crate::pace`] for the rules and
//! `docs/operations.md` for the knobs. A deadline never evicts on its own
//! word: the connection first reads what the kernel already holds, so a
//! busy reactor judges a client by when its bytes arrived.
//!
//! The connection never touches the poll or the timer heap: it reports the
//! interest and deadline it wants, and the reactor applies them.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

mod guard;

pub use guard::{Eviction, Guard};

use log::debug;
use mio::net::TcpStream;
use mio::Interest;
use rustls::{ServerConfig, ServerConnection};

use crate::config::{Config, Service};
use crate::ws::upgrade::{self, Rejection};
use crate::ws::{encoder, CloseCode, Decoder, Event, OpCode};

/// Plaintext rustls may hold unsent before we keep the rest ourselves and
/// stop reading from the client (TCP backpressure).
const TLS_BUFFER_LIMIT: usize = 256 << 10;

/// The unit size assumed for a client's TLS handshake flight, whose
/// length the record layer does not announce up front: one full record.
const TLS_FLIGHT_BYTES: u64 = 16 << 10;

/// Read/flush rounds per event, so one busy connection cannot stall the
/// reactor.
const MAX_ROUNDS_PER_EVENT: usize = 16;

/// Reactor-owned state a connection borrows while it handles an event.
pub struct Shared<'a> {
    /// The reactor's read buffer, reused by every connection.
    pub buf: &'a mut [u8],
    /// Output staged during this event; flushed into the connection's TLS
    /// session before the next connection runs.
    pub out: &'a mut Vec<u8>,
    /// Server configuration.
    pub config: &'a Config,
    /// The time of this event.
    pub now: Instant,
}

/// Who ended the WebSocket session, for the access log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Closer {
    /// The client sent Close or hung up.
    Client,
    /// The server sent Close, refused the upgrade or timed out.
    Server,
}

/// Counters for the access log.
#[derive(Debug, Default, Clone, Copy)]
pub struct Stats {
    /// TLS bytes received.
    pub bytes_in: u64,
    /// TLS bytes sent.
    pub bytes_out: u64,
    /// Data messages received.
    pub messages_in: u64,
    /// Data messages sent.
    pub messages_out: u64,
}

/// A client connection.
pub struct Conn {
    socket: TcpStream,
    peer: SocketAddr,
    tls: ServerConnection,
    phase: Phase,
    /// Plaintext rustls did not accept yet; reading pauses while non-empty.
    pending: Vec<u8>,
    /// Reading stopped before `WouldBlock`: the edge is still owed to us.
    read_stalled: bool,
    accepted_at: Instant,
    last_rx: Instant,
    pinged: bool,
    path: Option<String>,
    close: Option<(u16, Closer)>,
    eviction: Option<Eviction>,
    guard: Guard,
    /// Plaintext bytes served so far, to tell which input a batch held.
    plaintext_in: u64,
    stats: Stats,
}

enum Phase {
    Upgrading {
        head: Vec<u8>,
    },
    Open(Session),
    Closing {
        session: Session,
        since: Instant,
    },
    /// `peer_done`: the client has ended its side; once our last bytes
    /// are out there is nobody left to wait for.
    Draining {
        since: Instant,
        write_shut: bool,
        peer_done: bool,
    },
    Done,
}

struct Session {
    decoder: Decoder,
    service: Service,
}

/// What the peer's frames asked of the connection.
enum Next {
    Stay,
    /// The peer sent Close with this code (1005 when it had none).
    PeerClosed(u16),
    /// The peer sent more messages than its budget.
    OverBudget,
}

impl Conn {
    /// A freshly accepted connection; nothing is read until the first event.
    pub fn new(
        socket: TcpStream,
        peer: SocketAddr,
        tls_config: Arc<ServerConfig>,
        config: &Config,
        now: Instant,
    ) -> Result<Self, rustls::Error> {
        let mut tls = ServerConnection::new(tls_config)?;
        tls.set_buffer_limit(Some(TLS_BUFFER_LIMIT));
        let protection = &config.protection;
        let rtt = crate::sys::tcp_rtt(&socket).unwrap_or_default();
        let guard = Guard::new(
            now,
            rtt,
            protection.max_messages_per_s,
            protection.message_burst,
        );
        Ok(Self {
            socket,
            peer,
            tls,
            phase: Phase::Upgrading { head: Vec::new() },
            pending: Vec::new(),
            read_stalled: false,
            accepted_at: now,
            last_rx: now,
            pinged: false,
            path: None,
            close: None,
            eviction: None,
            guard,
            plaintext_in: 0,
            stats: Stats::default(),
        })
    }

    /// The socket, for (de)registration with the poll.
    pub fn socket(&mut self) -> &mut TcpStream {
        &mut self.socket
    }

    /// The client's address.
    pub fn peer(&self) -> SocketAddr {
        self.peer
    }

    /// The upgraded path, once the upgrade request was parsed.
    pub fn path(&self) -> Option<&str> {
        self.path.as_deref()
    }

    /// The close code and who closed, once known.
    pub fn close(&self) -> Option<(u16, Closer)> {
        self.close
    }

    /// Why the server evicted the connection, if it did.
    pub fn eviction(&self) -> Option<Eviction> {
        self.eviction
    }

    /// True until the upgrade completes: counted against the pending
    /// handshake limit.
    pub fn is_upgrading(&self) -> bool {
        matches!(self.phase, Phase::Upgrading { .. })
    }

    /// Traffic counters.
    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// How long the connection has lived at `now`.
    pub fn age(&self, now: Instant) -> Duration {
        now.saturating_duration_since(self.accepted_at)
    }

    /// True once the reactor should drop the connection.
    pub fn is_done(&self) -> bool {
        matches!(self.phase, Phase::Done)
    }

    /// The readiness the connection needs: readable always (edge-triggered,
    /// so it costs nothing while idle), writable only while output waits.
    pub fn interest(&self) -> Interest {
        if self.tls.wants_write() || !self.pending.is_empty() {
            Interest::READABLE | Interest::WRITABLE
        } else {
            Interest::READABLE
        }
    }

    /// When the connection next needs [`Conn::on_timeout`].
    pub fn deadline(&self, config: &Config) -> Option<Instant> {
        let pace = &config.protection.pace;
        let input = match self.phase {
            Phase::Upgrading { .. } | Phase::Open(_) => self.guard.input_deadline(pace),
            _ => None,
        };
        let output = self.guard.output_deadline(pace, self.queued());
        [self.phase_deadline(config), input, output]
            .into_iter()
            .flatten()
            .min()
    }

    fn phase_deadline(&self, config: &Config) -> Option<Instant> {
        let timeouts = &config.timeouts;
        match &self.phase {
            Phase::Upgrading { .. } => Some(self.accepted_at + timeouts.handshake),
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

    /// Handles a readiness event: reads until `WouldBlock` (or until output
    /// backs up), serves what arrived, and flushes.
    pub fn on_ready(&mut self, sh: &mut Shared<'_>, readable: bool) {
        let mut read = readable || self.read_stalled;
        for _ in 0..MAX_ROUNDS_PER_EVENT {
            if read && !self.is_done() {
                self.read_and_account(sh);
            }
            self.flush(sh);
            // Output drained while reading was paused: the readable edge we
            // skipped will not come again, so read now.
            read = self.read_stalled && self.pending.is_empty() && !self.is_done();
            if !read {
                return;
            }
        }
        debug!("{}: round cap reached in one event", self.peer);
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
        let input_overdue = matches!(self.phase, Phase::Upgrading { .. } | Phase::Open(_))
            && self.guard.input_deadline(pace).is_some_and(|at| now >= at);
        let output_overdue = self
            .guard
            .output_deadline(pace, self.queued())
            .is_some_and(|at| now >= at);
        match &self.phase {
            _ if self.is_done() => {}
            _ if input_overdue => {
                let reason = self.slow_input_reason();
                self.evict(sh.out, now, reason);
            }
            _ if output_overdue => self.evict(sh.out, now, Eviction::SlowConsumer),
            Phase::Upgrading { .. } if now >= self.accepted_at + timeouts.handshake => {
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

    /// Server shutdown: Close 1001 to an open session; a connection that is
    /// still upgrading is dropped.
    pub fn on_shutdown(&mut self, sh: &mut Shared<'_>) {
        match self.phase {
            Phase::Open(_) => self.start_close(
                sh.out,
                sh.now,
                CloseCode::GOING_AWAY,
                "server shutting down",
            ),
            Phase::Upgrading { .. } => self.phase = Phase::Done,
            _ => {}
        }
        self.flush(sh);
    }

    /// Which slow-input eviction an overdue input deadline means now.
    fn slow_input_reason(&self) -> Eviction {
        match self.phase {
            _ if self.guard.awaiting_first_byte() => Eviction::FirstByte,
            Phase::Upgrading { .. } if self.tls.is_handshaking() => Eviction::SlowHandshake,
            Phase::Upgrading { .. } => Eviction::SlowUpgrade,
            _ => Eviction::SlowFrame,
        }
    }

    /// Ends a connection that is too slow or too greedy. Before the upgrade
    /// it is simply dropped: a slowloris gets no response to wait for.
    fn evict(&mut self, out: &mut Vec<u8>, now: Instant, reason: Eviction) {
        debug!("{}: evicted: {}", self.peer, reason.as_str());
        self.eviction = Some(reason);
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
                let accepted = write_plaintext(&mut self.tls, out) == out.len();
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

    /// Output queued for the client: ours, plus at most what rustls holds.
    fn queued(&self) -> u64 {
        let in_tls = if self.tls.wants_write() {
            TLS_BUFFER_LIMIT
        } else {
            0
        };
        (self.pending.len() + in_tls) as u64
    }

    /// Sends our Close and waits for the peer's.
    fn start_close(&mut self, out: &mut Vec<u8>, now: Instant, code: CloseCode, reason: &str) {
        if let Phase::Open(session) = std::mem::replace(&mut self.phase, Phase::Done) {
            encoder::encode_close(out, Some((code, reason)));
            self.close = Some((code.0, Closer::Server));
            self.phase = Phase::Closing {
                session,
                since: now,
            };
        }
    }

    fn drain(&mut self, now: Instant) {
        self.phase = Phase::Draining {
            since: now,
            write_shut: false,
            peer_done: false,
        };
    }

    /// Reads what there is, then brings the guard up to date with what the
    /// client sent (and is still sending).
    fn read_and_account(&mut self, sh: &mut Shared<'_>) {
        let was_handshaking = self.tls.is_handshaking();
        let (tls_before, plaintext_before) = (self.stats.bytes_in, self.plaintext_in);
        self.read_all(sh);
        let tls_got = self.stats.bytes_in - tls_before;
        let plaintext_got = self.plaintext_in - plaintext_before;
        self.account(sh, was_handshaking, tls_got, plaintext_got);
    }

    fn account(
        &mut self,
        sh: &Shared<'_>,
        was_handshaking: bool,
        tls_got: u64,
        plaintext_got: u64,
    ) {
        let (pace, now) = (&sh.config.protection.pace, sh.now);
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
                    self.guard.ask(now, crate::sys::tcp_rtt(&self.socket));
                } else {
                    let fresh = self.guard.awaiting_first_byte();
                    self.guard.unit(pace, now, TLS_FLIGHT_BYTES, fresh, None);
                }
            }
            Phase::Upgrading { head } => {
                let request_len = sh.config.max_header_bytes as u64;
                if was_handshaking && head.is_empty() {
                    self.guard.ask(now, None);
                } else if !head.is_empty() && (was_handshaking || plaintext_got > 0) {
                    let fresh = was_handshaking || self.guard.awaiting_first_byte();
                    self.guard.unit(pace, now, request_len, fresh, None);
                }
            }
            Phase::Open(session) | Phase::Closing { session, .. } => {
                match session.decoder.frame_progress() {
                    None => self.guard.settled(),
                    Some((received, total)) => {
                        let fresh = received <= plaintext_got;
                        self.guard.unit(pace, now, total, fresh, None);
                    }
                }
            }
            _ => self.guard.settled(),
        }
    }

    fn read_all(&mut self, sh: &mut Shared<'_>) {
        loop {
            if !self.pending.is_empty() {
                self.read_stalled = true;
                return;
            }
            self.read_plaintext(sh);
            // Done here (the peer's close_notify, a reader error) must
            // return: `read_plaintext` does nothing once done, so looping
            // would spin forever and stall the reactor.
            if self.is_done() || self.peer_done() {
                return;
            }
            if !self.pending.is_empty() {
                continue;
            }
            match self.tls.read_tls(&mut self.socket) {
                Ok(0) => return self.peer_gone(),
                Ok(n) => {
                    self.stats.bytes_in += n as u64;
                    self.last_rx = sh.now;
                    self.pinged = false;
                    if let Err(e) = self.tls.process_new_packets() {
                        debug!("{}: TLS error: {e}", self.peer);
                        return self.last_gasp();
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.read_stalled = false;
                    return;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return self.peer_gone(),
            }
        }
    }

    /// Serves the plaintext rustls holds, until it is empty or output backs up.
    fn read_plaintext(&mut self, sh: &mut Shared<'_>) {
        while !self.is_done() && self.pending.is_empty() {
            let n = match self.tls.reader().read(sh.buf) {
                Ok(0) => return self.peer_gone(),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(_) => return self.peer_gone(),
            };
            self.plaintext_in += n as u64;
            let (buf, out) = (&mut sh.buf[..n], &mut *sh.out);
            self.on_plaintext(buf, out, sh.config, sh.now);
            self.flush_plaintext(sh.out);
        }
    }

    fn on_plaintext(&mut self, bytes: &mut [u8], out: &mut Vec<u8>, config: &Config, now: Instant) {
        match &mut self.phase {
            Phase::Upgrading { head } => {
                let cap = config.max_header_bytes;
                let taken = bytes.len().min(cap.saturating_sub(head.len()));
                let seen = head.len();
                head.extend_from_slice(&bytes[..taken]);
                // httparse re-parses from the start: only try once the
                // head can have ended, so a byte-at-a-time client costs
                // one scan per byte, not one parse.
                let fresh = &head[seen.saturating_sub(2)..];
                let may_be_complete = head.len() >= cap
                    || fresh.windows(2).any(|w| w == b"\n\n")
                    || fresh.windows(3).any(|w| w == b"\n\r\n");
                if !may_be_complete {
                    return;
                }
                let policy = upgrade::Policy {
                    max_header_bytes: cap,
                    allowed_origins: &config.allowed_origins,
                    subprotocols: &config.subprotocols,
                };
                let request = match upgrade::parse(head, &policy) {
                    Ok(None) => return,
                    Ok(Some(request)) => request,
                    Err(rejection) => return self.refuse(rejection, out, now),
                };
                let Some(route) = config.route(&request.path) else {
                    return self.refuse(Rejection::NotFound, out, now);
                };
                upgrade::write_accept(out, &request);
                let mut early = head.split_off(request.head_len);
                self.path = Some(request.path);
                self.phase = Phase::Open(Session {
                    decoder: Decoder::new(config.limits),
                    service: route.service,
                });
                // Frames pipelined behind the request head.
                self.on_plaintext(&mut early, out, config, now);
                if !self.is_done() {
                    self.on_plaintext(&mut bytes[taken..], out, config, now);
                }
            }
            Phase::Open(session) | Phase::Closing { session, .. } => {
                // Once our Close is out, only the peer's Close matters.
                let closing = self.close.is_some();
                let (guard, stats) = (&mut self.guard, &mut self.stats);
                match serve_frames(session, bytes, out, closing, guard, stats, now) {
                    Ok(Next::Stay) => {
                        if session.decoder.buffered() == 0 {
                            session.decoder.release_memory();
                        }
                    }
                    Ok(Next::PeerClosed(code)) => {
                        self.close.get_or_insert((code, Closer::Client));
                        self.drain(now);
                    }
                    Ok(Next::OverBudget) => self.evict(out, now, Eviction::RateLimited),
                    Err(error) => {
                        debug!("{}: {error}", self.peer);
                        // One Close per side (RFC 6455 section 5.5.1): if
                        // ours is out already, just end the session.
                        if !closing {
                            let close = (error.close_code(), error.reason());
                            encoder::encode_close(out, Some(close));
                            self.close = Some((error.close_code().0, Closer::Server));
                        }
                        self.drain(now);
                    }
                }
            }
            // After our last word, input is read only to reach EOF.
            Phase::Draining { .. } | Phase::Done => {}
        }
    }

    fn refuse(&mut self, rejection: Rejection, out: &mut Vec<u8>, now: Instant) {
        debug!("{}: upgrade refused with {}", self.peer, rejection.status());
        rejection.write_response(out);
        self.close = Some((rejection.status(), Closer::Server));
        self.drain(now);
    }

    /// Moves staged output into rustls; what it cannot take waits in
    /// `pending`, which pauses reading.
    fn flush_plaintext(&mut self, out: &mut Vec<u8>) {
        if !self.pending.is_empty() {
            let n = write_plaintext(&mut self.tls, &self.pending);
            self.pending.drain(..n);
        }
        if !out.is_empty() {
            let n = if self.pending.is_empty() {
                write_plaintext(&mut self.tls, out)
            } else {
                0
            };
            self.pending.extend_from_slice(&out[n..]);
            out.clear();
        }
    }

    /// Writes TLS records until the socket would block, then, once a
    /// draining connection has said everything, ends the TLS session and
    /// the write side of TCP.
    fn flush(&mut self, sh: &mut Shared<'_>) {
        // More output for a client that already has more than its cap
        // queued: it is not reading, and nothing more is buffered for it.
        let over_cap = self.pending.len() > sh.config.protection.max_outbound_bytes;
        if over_cap && !sh.out.is_empty() {
            self.evict(sh.out, sh.now, Eviction::SlowConsumer);
        }
        self.flush_plaintext(sh.out);
        while self.tls.wants_write() {
            match self.tls.write_tls(&mut self.socket) {
                Ok(n) => self.stats.bytes_out += n as u64,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => {
                    // A socket that cannot be written is gone for good.
                    self.close
                        .get_or_insert((CloseCode::ABNORMAL.0, Closer::Client));
                    self.phase = Phase::Done;
                    return;
                }
            }
            self.flush_plaintext(sh.out);
        }
        if self.pending.is_empty() && self.pending.capacity() > 0 {
            // An idle connection keeps no output buffer.
            self.pending = Vec::new();
        }
        let all_sent = self.pending.is_empty() && !self.tls.wants_write();
        self.guard.output_blocked(sh.now, !all_sent);
        if let Phase::Draining {
            write_shut,
            peer_done,
            ..
        } = &mut self.phase
        {
            if all_sent && !*write_shut {
                *write_shut = true;
                self.tls.send_close_notify();
                let _ = self.tls.write_tls(&mut self.socket);
                let _ = self.socket.shutdown(Shutdown::Write);
            }
            if *write_shut && *peer_done {
                self.phase = Phase::Done;
            }
        }
    }

    /// After a TLS error rustls has queued an alert: send it if the socket
    /// takes it at once, then drop the connection.
    fn last_gasp(&mut self) {
        let _ = self.tls.write_tls(&mut self.socket);
        self.close
            .get_or_insert((CloseCode::ABNORMAL.0, Closer::Server));
        self.phase = Phase::Done;
    }

    /// The client ended its side (EOF, close_notify, an error). A draining
    /// connection still flushes its last words; any other is done.
    fn peer_gone(&mut self) {
        self.close
            .get_or_insert((CloseCode::ABNORMAL.0, Closer::Client));
        match &mut self.phase {
            Phase::Draining { peer_done, .. } => *peer_done = true,
            _ => self.phase = Phase::Done,
        }
    }

    fn peer_done(&self) -> bool {
        matches!(
            self.phase,
            Phase::Draining {
                peer_done: true,
                ..
            }
        )
    }
}

/// Runs every complete frame in `bytes` through the decoder and the route's
/// service, staging responses in `out`.
fn serve_frames(
    session: &mut Session,
    bytes: &mut [u8],
    out: &mut Vec<u8>,
    closing: bool,
    guard: &mut Guard,
    stats: &mut Stats,
    now: Instant,
) -> Result<Next, crate::ws::Error> {
    let mut pos = 0;
    while pos < bytes.len() {
        let (used, event) = session.decoder.decode(&mut bytes[pos..])?;
        pos += used;
        let Some(event) = event else { continue };
        match event {
            // RFC 6455 section 5.5.1: after sending Close, data is discarded.
            Event::Text(_) | Event::Binary(_) | Event::Ping(_) if closing => {}
            Event::Text(_) | Event::Binary(_) if !guard.admit_message(now) => {
                return Ok(Next::OverBudget)
            }
            Event::Text(text) => {
                stats.messages_in += 1;
                serve(session.service, OpCode::Text, text.as_bytes(), out, stats);
            }
            Event::Binary(data) => {
                stats.messages_in += 1;
                serve(session.service, OpCode::Binary, data, out, stats);
            }
            // RFC 6455 section 5.5.3: a Pong carries the Ping's payload.
            Event::Ping(payload) => encoder::encode_frame(out, OpCode::Pong, payload),
            // An unsolicited Pong is a heartbeat; nothing to answer.
            Event::Pong(_) => {}
            Event::Close(close) => {
                // RFC 6455 section 5.5.1: answer a Close with a Close,
                // echoing the status code, unless we sent ours already.
                if !closing {
                    encoder::encode_close(out, close.map(|(code, _)| (code, "")));
                }
                let code = close.map_or(CloseCode::NO_STATUS, |(code, _)| code);
                return Ok(Next::PeerClosed(code.0));
            }
        }
    }
    Ok(Next::Stay)
}

fn serve(service: Service, opcode: OpCode, payload: &[u8], out: &mut Vec<u8>, stats: &mut Stats) {
    match service {
        Service::Echo => {
            encoder::encode_frame(out, opcode, payload);
            stats.messages_out += 1;
        }
    }
}

/// Writes as much of `data` into rustls as its buffer limit allows.
fn write_plaintext(tls: &mut ServerConnection, data: &[u8]) -> usize {
    let mut written = 0;
    while written < data.len() {
        match tls.writer().write(&data[written..]) {
            Ok(0) | Err(_) => break,
            Ok(n) => written += n,
        }
    }
    written
}
