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
//!
//! # Files
//!
//! - `mod.rs`: the state, the phases, and what the reactor and the
//!   backend call (queue, close, worker lost, ACL re-check).
//! - `transport.rs`: socket ↔ TLS ↔ plaintext, and the read pauses;
//!   `tls.rs`: the rustls session over buffers the reactor shares.
//! - `opening.rs`: the upgrade head, judged and answered.
//! - `delegate.rs`: a wait for the `--auth-service`'s verdict.
//! - `serve.rs`: frames of an open session, to echo or to a worker.
//! - `pacing.rs` and `guard.rs`: deadlines, timeouts and evictions.
//! - `scrape.rs`: `GET /metrics`; `backlog.rs`: output waiting for rustls.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

mod backlog;
mod delegate;
mod guard;
mod head;
mod opening;
mod pacing;
mod scrape;
mod serve;
mod short_read;
mod tls;
mod transport;

use backlog::Backlog;
use delegate::AuthWait;
pub use guard::Guard;
use serve::{Next, Serving};
pub use serve::{Target, WorkerSession};
use tls::Tls;
pub use tls::READ_SIZE;

use log::debug;
use mio::net::TcpStream;
use mio::Interest;
use rustls::ServerConfig;

use crate::access::{self, Access, Identity};
use crate::backend::message::{Initiator, Payload};
use crate::config::Config;
use crate::link::Backend;
use crate::metrics::ReactorMetrics;
use crate::node::connections::Outcome;
use crate::outcome::{AccessRecord, Closer, Eviction, Stats};
use crate::pace::Crowd;
use crate::ws::{encoder, CloseCode, Decoder};

/// Reactor-owned state a connection borrows while it handles an event.
pub struct Shared<'a> {
    /// The reactor's TLS read buffer ([`READ_SIZE`] bytes), reused by
    /// every connection.
    pub tls_in: &'a mut [u8],
    /// The reactor's buffer for decrypted input, reused likewise.
    pub plain: &'a mut Vec<u8>,
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
    tls: Tls,
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
        let protection = &config.protection;
        let tls = Tls::new(tls_config, protection.tls_backlog_bytes)?;
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

    /// Handles a readiness event: reads until `WouldBlock` (or until output
    /// backs up), serves what arrived, and flushes.
    pub fn on_ready(&mut self, sh: &mut Shared<'_>, readable: bool) {
        let mut read = readable || self.read_stalled;
        for _ in 0..sh.config.protection.rounds_per_event {
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

    fn on_plaintext(&mut self, bytes: &mut [u8], sh: &mut Shared<'_>) {
        let now = sh.now;
        match &mut self.phase {
            // Reading pauses while the auth service decides; should bytes
            // come anyway, they wait behind the head.
            Phase::Upgrading { head } if self.auth.is_some() => head.extend_from_slice(bytes),
            Phase::Upgrading { .. } => self.on_head_bytes(bytes, sh),
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
}
