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
//!   collected (bounded) until the HTTP upgrade request is complete, then
//!   judged: the route (404), the token (401) and `connect` on the path
//!   (401 without a token, 403 with one; see [`crate::access`]). Bytes
//!   pipelined after the request are the first frame bytes. With an
//!   `--auth-service`, a client without a token first waits (reading
//!   nothing more) for the auth service's verdict (`conn/delegate.rs`).
//! - **Open**: frames are decoded and served by the route's service; each
//!   data message needs `send` on the service (refused: Close 1008), and
//!   after an ACL change the connection needs `connect` again.
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
use std::time::Instant;

mod backlog;
mod delegate;
mod guard;
mod scrape;
mod serve;
mod short_read;

use backlog::Backlog;
use delegate::AuthWait;
pub use guard::Guard;
use serve::{Next, Serving};
pub use serve::{Target, WorkerSession};
use short_read::ShortRead;

use log::debug;
use mio::net::TcpStream;
use mio::Interest;
use rustls::{ServerConfig, ServerConnection};

use crate::access::{self, Access, Identity};
use crate::auth::token::TokenError;
use crate::backend::message::{AuthReply, Initiator, Payload};
use crate::config::{Config, Service};
use crate::link::Backend;
use crate::metrics::{scrape_request, ReactorMetrics, TokenOutcome};
use crate::node::connections::Outcome;
use crate::outcome::{AccessRecord, Closer, Eviction, Stats};
use crate::pace::{Crowd, Unit};
use crate::ws::upgrade::{self, Rejection};
use crate::ws::{encoder, CloseCode, Decoder, OpCode};

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
    /// The backend node and its link, when there is one.
    pub backend: Option<&'a mut Backend>,
    /// Token verification and the ACL.
    pub access: &'a Access,
    /// The reactor's metrics.
    pub metrics: &'a ReactorMetrics,
    /// The process's control state, for every reactor's metrics.
    pub control: &'a crate::control::Control,
}

/// A client connection.
pub struct Conn {
    socket: TcpStream,
    peer: SocketAddr,
    tls: ServerConnection,
    phase: Phase,
    /// The connection's id on the backend link (never 0).
    id: u64,
    /// What serves the connection, from the upgrade on.
    target: Option<Target>,
    /// Plaintext rustls did not accept yet; reading pauses while non-empty.
    pending: Backlog,
    /// A worker's message came for a client already over its output cap.
    over_cap: bool,
    /// Reading stopped before `WouldBlock`: the edge is still owed to us.
    read_stalled: bool,
    accepted_at: Instant,
    last_rx: Instant,
    pinged: bool,
    /// `Box<str>`, not `String`: 16 bytes, set once (as `subprotocol`).
    path: Option<Box<str>>,
    /// The negotiated subprotocol, once the upgrade request was parsed.
    subprotocol: Option<Box<str>>,
    /// Who the client is, once its upgrade request was judged.
    identity: Option<Identity>,
    /// A sub-state of [`Phase::Upgrading`]: the request waits for the
    /// auth service's verdict, and reading is paused.
    auth: Option<Box<AuthWait>>,
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
}

impl Conn {
    /// A freshly accepted connection; nothing is read until the first event.
    pub fn new(
        socket: TcpStream,
        peer: SocketAddr,
        id: u64,
        tls_config: Arc<ServerConfig>,
        config: &Config,
        crowd: Crowd,
        now: Instant,
    ) -> Result<Self, rustls::Error> {
        let mut tls = ServerConnection::new(tls_config)?;
        tls.set_buffer_limit(Some(TLS_BUFFER_LIMIT));
        let protection = &config.protection;
        let path = crate::sys::tcp_path(&socket).unwrap_or_default();
        let guard = Guard::new(
            now,
            &protection.pace,
            path,
            crowd,
            protection.max_messages_per_s,
            protection.message_burst,
        );
        Ok(Self {
            socket,
            peer,
            tls,
            phase: Phase::Upgrading { head: Vec::new() },
            id,
            target: None,
            pending: Backlog::default(),
            over_cap: false,
            read_stalled: false,
            accepted_at: now,
            last_rx: now,
            pinged: false,
            path: None,
            subprotocol: None,
            identity: None,
            auth: None,
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

    /// The negotiated subprotocol, once the upgrade request was parsed.
    pub fn subprotocol(&self) -> Option<&str> {
        self.subprotocol.as_deref()
    }

    /// Who the client is, once its upgrade request was judged.
    pub fn identity(&self) -> Option<&Identity> {
        self.identity.as_ref()
    }

    /// The ACL changed: an open connection whose user may no longer
    /// `connect` to its path is closed with 1008.
    pub fn recheck_access(&mut self, sh: &mut Shared<'_>) {
        let (Some(identity), Some(path)) = (&self.identity, &self.path) else {
            return;
        };
        if self.is_open() && !identity.may(sh.access.acl(), path, access::CONNECT) {
            debug!(
                "{}: {} may no longer connect to {path}",
                self.peer,
                identity.user()
            );
            self.start_close(sh.out, sh.now, CloseCode::POLICY_VIOLATION, "forbidden");
            self.flush(sh);
        }
    }

    /// The connection's id on the backend link.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// True while the WebSocket session is open (upgraded, not closing).
    pub fn is_open(&self) -> bool {
        matches!(self.phase, Phase::Open(_))
    }

    /// Its message waited for a worker's pipe and is out now: reading
    /// from the client resumes where it stopped.
    pub fn resume(&mut self, sh: &mut Shared<'_>) {
        if let Some(Target::Worker(session)) = &mut self.target {
            session.blocked = false;
            self.on_ready(sh, false);
        }
    }

    /// Writes a worker's message to the client; false when the connection
    /// is not open (closing or gone).
    ///
    /// The frame is queued behind what is already pending: the reactor
    /// calls [`Conn::flush_queued`] once after a batch of worker messages,
    /// so they leave in as few TLS records and writes as possible. More
    /// output for a client already over `cap` evicts it instead.
    pub fn queue(&mut self, payload: Payload<'_>, cap: usize) -> bool {
        if !matches!(self.phase, Phase::Open(_)) {
            return false;
        }
        if self.pending.len() > cap {
            self.over_cap = true;
        } else {
            encoder::encode_frame(
                self.pending.vec_mut(),
                serve::opcode_of(payload),
                payload.as_bytes(),
            );
            self.stats.messages_out += 1;
        }
        true
    }

    /// Sends what [`Conn::queue`] gathered, or evicts a slow consumer.
    pub fn flush_queued(&mut self, sh: &mut Shared<'_>) {
        if std::mem::take(&mut self.over_cap) {
            self.evict(sh.out, sh.now, Eviction::SlowConsumer);
        }
        self.flush(sh);
    }

    /// A worker's CLOSE: the closing handshake with its code and reason.
    pub fn close_by_worker(&mut self, sh: &mut Shared<'_>, code: CloseCode, reason: &str) {
        if matches!(self.phase, Phase::Open(_)) {
            self.start_close(sh.out, sh.now, code, reason);
            self.close = Some((code.0, Closer::Worker));
            self.flush(sh);
        }
    }

    /// What the node decided when its worker died (docs/protocol.md
    /// section 6): moved on, closed (1012, or 1013 with no worker left),
    /// or, for an upgrade waiting for the auth worker, refused with 503.
    pub fn worker_lost(&mut self, sh: &mut Shared<'_>, outcome: Outcome) {
        match outcome {
            Outcome::Moved => return,
            Outcome::AuthLost => self.auth_unavailable(sh, "auth worker lost"),
            Outcome::Close(code, reason) => {
                if let Some(Target::Worker(session)) = &mut self.target {
                    // The waiting message died with the worker.
                    session.blocked = false;
                }
                self.start_close(sh.out, sh.now, code, reason);
            }
        }
        self.flush(sh);
    }

    /// The connection is gone: the node tells its worker (the message
    /// still waiting, then DISCONNECT) and forgets it.
    pub fn farewell(&self, backend: &mut Backend, now: Instant) {
        let (code, initiator) = match self.close {
            Some((code, Closer::Client)) => (code, Initiator::Client),
            Some((code, Closer::Server)) => (code, Initiator::Node),
            Some((code, Closer::Worker)) => (code, Initiator::Worker),
            None => (CloseCode::ABNORMAL.0, Initiator::Client),
        };
        // An HTTP status is not a close code: the upgrade never completed.
        let code = if code < 1000 {
            CloseCode::ABNORMAL.0
        } else {
            code
        };
        backend.close(self.id, (CloseCode(code), initiator), now);
    }

    /// Why the server evicted the connection, if it did.
    pub fn eviction(&self) -> Option<Eviction> {
        self.eviction
    }

    /// True while the TLS handshake runs.
    pub fn is_tls_handshaking(&self) -> bool {
        self.tls.is_handshaking()
    }

    /// The HTTP status the upgrade request was answered with: 101 once a
    /// session was opened, the refusal's status, or `None` when no answer
    /// was sent (the client gave up, was evicted, or TLS failed). A scrape
    /// is answered 200.
    pub fn upgrade_answer(&self) -> Option<u16> {
        match self.close {
            Some((status, Closer::Server)) if status < 1000 => Some(status),
            _ if self.target.is_some() => Some(101),
            _ => None,
        }
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

    /// What the access log records about the connection at `now`.
    pub fn record(&self, now: Instant) -> AccessRecord<'_> {
        AccessRecord {
            peer: self.peer,
            path: self.path.as_deref(),
            user: self.identity.as_ref().map(Identity::user),
            subprotocol: self.subprotocol.as_deref(),
            duration: now.saturating_duration_since(self.accepted_at),
            stats: self.stats,
            close: self.close,
            eviction: self.eviction(),
        }
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
            Phase::Upgrading { .. } | Phase::Open(_) => self.guard.input_deadline(),
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
        let mut input_overdue = matches!(self.phase, Phase::Upgrading { .. } | Phase::Open(_))
            && self.guard.input_deadline().is_some_and(|at| now >= at);
        if input_overdue && self.stats.bytes_in == 0 {
            input_overdue = !self.restretched(sh);
        }
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

    /// A connection that has sent nothing is judged by how many its
    /// address holds now, not only at accept; true if that gives it longer.
    fn restretched(&mut self, sh: &Shared<'_>) -> bool {
        let protection = &sh.config.protection;
        let crowd = sh.control.crowd(self.peer.ip(), protection);
        self.guard
            .reopen(&protection.pace, self.accepted_at, crowd, sh.now)
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

    /// Reading stops while output backs up or a worker's pipe is full:
    /// TCP pushes back to the client.
    fn must_pause(&self) -> bool {
        !self.pending.is_empty()
            || self.auth.is_some()
            || matches!(&self.target, Some(Target::Worker(session)) if session.blocked)
    }

    fn read_all(&mut self, sh: &mut Shared<'_>) {
        // A read that filled less than it asked for emptied the socket: on
        // epoll, edge-triggered, data arriving after it raises a new edge,
        // so reading again would only return `WouldBlock` (tokio skips it
        // too, tokio-rs/tokio#5866). One system call less per message.
        let mut drained = false;
        loop {
            if self.must_pause() {
                self.read_stalled = true;
                return;
            }
            if let Some(mut unread) = self.take_unread() {
                self.on_plaintext(&mut unread, sh);
                self.flush_plaintext(sh.out);
                continue;
            }
            self.read_plaintext(sh);
            // Done here (the peer's close_notify, a reader error) must
            // return: `read_plaintext` does nothing once done, so looping
            // would spin forever and stall the reactor.
            if self.is_done() || self.peer_done() {
                return;
            }
            if self.must_pause() {
                continue;
            }
            if drained {
                self.read_stalled = false;
                return;
            }
            let mut socket = ShortRead::new(&mut self.socket);
            let read = self.tls.read_tls(&mut socket);
            drained = socket.drained;
            match read {
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

    /// Client bytes read but not yet served, taken out of the worker
    /// session that holds them.
    fn take_unread(&mut self) -> Option<Vec<u8>> {
        match &mut self.target {
            Some(Target::Worker(session)) if !session.unread.is_empty() => {
                Some(std::mem::take(&mut session.unread))
            }
            _ => None,
        }
    }

    /// Serves the plaintext rustls holds, until it is empty or output backs up.
    fn read_plaintext(&mut self, sh: &mut Shared<'_>) {
        while !self.is_done() && !self.must_pause() {
            let n = match self.tls.reader().read(sh.buf) {
                Ok(0) => return self.peer_gone(),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(_) => return self.peer_gone(),
            };
            self.plaintext_in += n as u64;
            let buf = std::mem::take(&mut sh.buf);
            self.on_plaintext(&mut buf[..n], sh);
            sh.buf = buf;
            self.flush_plaintext(sh.out);
        }
    }

    fn on_plaintext(&mut self, bytes: &mut [u8], sh: &mut Shared<'_>) {
        let (config, now) = (sh.config, sh.now);
        match &mut self.phase {
            // Reading pauses while the auth service decides; should bytes
            // come anyway, they wait behind the head.
            Phase::Upgrading { head } if self.auth.is_some() => head.extend_from_slice(bytes),
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
                if let Some(scrape) = scrape_request::parse_scrape(head, cap) {
                    return self.scrape(&scrape, sh);
                }
                let mut request = match upgrade::parse(head, &policy) {
                    Ok(None) => return,
                    Ok(Some(request)) => request,
                    Err(rejection) => return self.refuse(rejection, sh.out, now),
                };
                let Some(route) = config.route(&request.path) else {
                    return self.refuse(Rejection::NotFound, sh.out, now);
                };
                self.path = Some(request.path.as_str().into());
                self.subprotocol = request.subprotocol.as_deref().map(Box::from);
                let identified = sh.access.identify(&request, access::unix_now());
                count_token(sh.metrics, &identified);
                let identity = match identified {
                    Ok(identity) => identity,
                    Err(e) => {
                        debug!("{}: token refused: {e}", self.peer);
                        return self.refuse(Rejection::Unauthorized, sh.out, now);
                    }
                };
                request.query = request.query.map(|q| sh.access.forwarded_query(&q));
                let rest = &mut bytes[taken..];
                let delegate = config.auth.delegate_for(&request.path);
                if let (false, Some(service)) = (identity.is_authenticated(), delegate) {
                    // What followed the head waits with it for the verdict.
                    head.extend_from_slice(rest);
                    return self.delegate(request, service, sh);
                }
                self.open_session(request, identity, &route.service, sh, rest);
            }
            Phase::Open(session) | Phase::Closing { session, .. } => {
                let Some(target) = self.target.as_mut() else {
                    return;
                };
                let may_send = self
                    .identity
                    .as_mut()
                    .is_some_and(|identity| identity.may_send(sh.access, target.service()));
                let mut serving = Serving {
                    out: sh.out,
                    backend: sh.backend.as_deref_mut(),
                    guard: &mut self.guard,
                    stats: &mut self.stats,
                    now,
                    conn: self.id,
                    // Once our Close is out, only the peer's Close matters.
                    closing: self.close.is_some(),
                    may_send,
                };
                let closing = serving.closing;
                let served = serving.frames(&mut session.decoder, target, bytes);
                let out = &mut *sh.out;
                match served {
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
                    Ok(Next::Forbidden(served)) => {
                        debug!("{}: may not send on {}", self.peer, target.service());
                        self.start_close(out, now, CloseCode::POLICY_VIOLATION, "forbidden");
                        // What followed the message, the client's Close
                        // perhaps, is read as a closing connection reads.
                        let rest = bytes.get_mut(served..).unwrap_or_default();
                        self.on_plaintext(rest, sh);
                    }
                    Ok(Next::Blocked(served)) => {
                        // Only a worker's pipe blocks (`Serving::serve`).
                        if let Target::Worker(session) = target {
                            session.unread = bytes.get(served..).unwrap_or_default().to_vec();
                        }
                    }
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

    /// Admits `identity` to the request's path (`connect`), then answers
    /// 101 and opens the session. `rest` is what followed the head in the
    /// read that completed it.
    fn open_session(
        &mut self,
        request: upgrade::Request,
        identity: Identity,
        service: &Service,
        sh: &mut Shared<'_>,
        rest: &mut [u8],
    ) {
        let now = sh.now;
        let admitted = sh.access.admit(&identity, &request.path);
        self.identity = Some(identity);
        if let Err(rejection) = admitted {
            return self.refuse(rejection, sh.out, now);
        }
        upgrade::write_accept(sh.out, &request);
        let mut early = match &mut self.phase {
            Phase::Upgrading { head } => head.split_off(request.head_len),
            _ => Vec::new(),
        };
        self.phase = Phase::Open(Session {
            decoder: Decoder::new(sh.config.limits),
        });
        self.target = Some(match service {
            Service::Echo => Target::Echo,
            Service::Worker(name) => {
                let identity = self.identity.as_ref();
                let info = serve::connect_info(name, self.peer, &request, identity);
                let served = sh
                    .backend
                    .as_deref_mut()
                    .is_some_and(|backend| backend.open(self.id, info, now));
                if !served {
                    let reason = "no worker for this service";
                    self.start_close(sh.out, now, CloseCode::TRY_AGAIN_LATER, reason);
                }
                Target::Worker(Box::new(WorkerSession::new(name)))
            }
        });
        // Frames pipelined behind the request head.
        self.on_plaintext(&mut early, sh);
        if !self.is_done() {
            self.on_plaintext(rest, sh);
        }
    }

    /// A client without a token: a worker of the auth service judges its
    /// request, and reading pauses until the verdict. No worker: 503.
    fn delegate(&mut self, request: upgrade::Request, service: &str, sh: &mut Shared<'_>) {
        let now = sh.now;
        let asked = sh.backend.as_deref_mut().is_some_and(|backend| {
            delegate::ask(backend, service, self.id, self.peer, &request, now)
        });
        if !asked {
            debug!("{}: no worker for auth service {service}", self.peer);
            return self.refuse(Rejection::ServiceUnavailable, sh.out, now);
        }
        self.auth = Some(Box::new(AuthWait {
            request,
            until: now + sh.config.auth.auth_timeout,
        }));
        self.guard.settled();
    }

    /// The auth service's verdict on this connection's upgrade (the node
    /// checked it came from the worker asked): an allow goes on to the
    /// `connect` check (101 or 403), a deny is 401.
    pub fn on_auth_reply(&mut self, sh: &mut Shared<'_>, reply: &AuthReply<'_>) {
        if !self.is_upgrading() {
            return;
        }
        let Some(wait) = self.auth.take() else {
            return;
        };
        let config = sh.config;
        match (delegate::verdict(reply), config.route(&wait.request.path)) {
            (Ok(identity), Some(route)) => {
                debug!(
                    "{}: auth service vouches for {}",
                    self.peer,
                    identity.user()
                );
                self.open_session(wait.request, identity, &route.service, sh, &mut []);
            }
            (Err(rejection), _) => {
                debug!("{}: auth service refused", self.peer);
                self.refuse(rejection, sh.out, sh.now);
            }
            (Ok(_), None) => self.refuse(Rejection::NotFound, sh.out, sh.now),
        }
        // Resume reading: the bytes behind the head were kept, more may wait.
        self.on_ready(sh, false);
    }

    /// No verdict will come (timeout, the auth worker died): 503, fail
    /// closed.
    fn auth_unavailable(&mut self, sh: &mut Shared<'_>, why: &str) {
        if self.auth.take().is_none() {
            return;
        }
        debug!("{}: {why}", self.peer);
        if let Some(backend) = sh.backend.as_deref_mut() {
            backend.node.auth_done(self.id);
        }
        self.refuse(Rejection::ServiceUnavailable, sh.out, sh.now);
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
            self.pending.consume(n);
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
        // An idle connection keeps no output buffer.
        self.pending.release_if_empty();
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

/// Counts the verdict on a client's token, if it presented one.
fn count_token(metrics: &ReactorMetrics, identified: &Result<Identity, TokenError>) {
    match identified {
        Ok(identity) if identity.is_authenticated() => metrics.token(TokenOutcome::Valid),
        Ok(_) => {}
        Err(_) => metrics.token(TokenOutcome::Invalid),
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
