//! One client's WebSocket session, sans-IO: plaintext, node answers and
//! clock readings in; output bytes, calls on the node and its next
//! deadline out. It never touches a socket, rustls or the backend link:
//! the I/O shell (the `conn` module) moves its bytes, and the backend node
//! is reached through a [`NodePort`] the shell lends it.
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
//! - **Upgrading**: the decrypted bytes are collected (bounded) until the
//!   HTTP upgrade request is complete, then judged (`head.rs`): the route
//!   (404), the token (401) and `connect` on the path (401 without a
//!   token, 403 with one; see [`crate::access`]). Bytes pipelined after
//!   the request are the first frame bytes. With an `--auth-service`, a
//!   client without a token first waits (reading nothing more) for the
//!   auth service's verdict (`delegate.rs`).
//! - **Open**: frames are decoded and served by the route's service
//!   (`serve.rs`); each data message needs `send` on the service
//!   (refused: Close 1008), and after an ACL change the session needs
//!   `connect` again.
//! - **Closing**: we sent a Close (shutdown, idle timeout) and wait for
//!   the peer's Close, discarding data frames (RFC 6455 section 5.5.1).
//! - **Draining**: nothing more to say. The shell flushes what is
//!   pending, ends TLS and shuts the write side; input is read and
//!   discarded until the peer hangs up, so our last bytes are not lost to
//!   a TCP reset (RFC 6455 section 7.1.1: the server closes TCP first).
//! - **Done**: the reactor removes the connection.
//!
//! Alongside the phases, a [`Guard`] tracks what the client owes (the
//! first byte of a flight, the rest of a unit, by when) and whether our
//! output is draining: see [`crate::pace`] for the rules, `pacing.rs` for
//! the deadlines, and `docs/operations.md` for the knobs.
//!
//! # Files
//!
//! - `mod.rs`: the state, the phases and their transitions.
//! - `head.rs` and `opening.rs`: the upgrade head, judged and answered;
//!   `delegate.rs`: a wait for the `--auth-service`'s verdict;
//!   `scrape.rs`: `GET /metrics`.
//! - `serve.rs`: frames of an open session, to echo or to a worker.
//! - `pacing.rs` and `guard.rs`: deadlines, timeouts and evictions.
//! - [`testing`]: a table [`NodePort`] and a client's side of the wire,
//!   for tests and fuzzing.

use std::net::SocketAddr;
use std::time::Instant;

mod delegate;
mod guard;
mod head;
mod opening;
mod pacing;
mod scrape;
mod serve;
pub mod testing;
#[cfg(test)]
mod tests;

use delegate::AuthWait;
pub use guard::Guard;
pub use pacing::ReadReport;
pub use serve::{opcode_of, Target, WorkerSession};
use serve::{Next, Serving};

use log::debug;

use crate::access::{self, Access, Identity};
use crate::backend::message::{Auth, Initiator, Payload};
use crate::config::Config;
use crate::control::Control;
use crate::metrics::ReactorMetrics;
use crate::node::connections::Outcome;
use crate::node::sessions::ConnectInfo;
use crate::outcome::{AccessRecord, Closer, Eviction, Stats};
use crate::pace::{Crowd, Path};
use crate::ws::deflate::Codec;
use crate::ws::{encoder, CloseCode, Decoder};

/// What a session asks of the backend node. The reactor implements it
/// over the node core and its link; a session never sees either.
pub trait NodePort {
    /// CONNECT for session `conn`; false when the service has no worker.
    fn open(&mut self, conn: u64, info: ConnectInfo, now: Instant) -> bool;
    /// A client's message; false when the worker's pipe did not take it:
    /// it waits in the node, which says when it is out
    /// ([`Session::resume`]).
    fn message(&mut self, conn: u64, payload: Payload<'_>, now: Instant) -> bool;
    /// AUTH to a worker of `service`; false when it has none.
    fn ask_auth(&mut self, service: &str, auth: &Auth<'_>, now: Instant) -> bool;
    /// Session `conn` no longer waits for an AUTH_REPLY.
    fn auth_done(&mut self, conn: u64);
}

/// What a session borrows while it handles an event.
pub struct Ctx<'a> {
    /// Output staged during this event: the shell hands it to TLS.
    pub out: &'a mut Vec<u8>,
    /// Server configuration.
    pub config: &'a Config,
    /// The time of this event.
    pub now: Instant,
    /// The backend node, when a route targets workers.
    pub node: Option<&'a mut dyn NodePort>,
    /// Token verification and the ACL.
    pub access: &'a Access,
    /// The reactor's metrics.
    pub metrics: &'a ReactorMetrics,
    /// The process's control state: every reactor's metrics, the crowds.
    pub control: &'a Control,
    /// The reactor's permessage-deflate state, shared by its sessions.
    pub codec: &'a mut Codec,
}

/// A client's session.
pub struct Session {
    peer: SocketAddr,
    phase: Phase,
    /// The session's id on the backend link (never 0).
    id: u64,
    /// What serves the session, from the upgrade on.
    target: Option<Target>,
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
    /// The server's compression window, once permessage-deflate was
    /// agreed.
    deflate: Option<u8>,
}

enum Phase {
    Upgrading {
        head: Vec<u8>,
    },
    Open(Frames),
    Closing {
        frames: Frames,
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

/// The client's frames, once upgraded.
struct Frames {
    decoder: Decoder,
}

impl Session {
    /// The session of a client accepted at `now` from `peer` into `crowd`,
    /// over a TCP path of `path`: it owes its first byte.
    pub fn new(
        peer: SocketAddr,
        id: u64,
        config: &Config,
        crowd: Crowd,
        path: Path,
        now: Instant,
    ) -> Self {
        let protection = &config.protection;
        let guard = Guard::new(
            now,
            &protection.pace,
            path,
            crowd,
            protection.max_messages_per_s,
            protection.message_burst,
        );
        Self {
            peer,
            phase: Phase::Upgrading { head: Vec::new() },
            id,
            target: None,
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
            deflate: None,
        }
    }

    /// The client's address.
    pub fn peer(&self) -> SocketAddr {
        self.peer
    }

    /// The session's id on the backend link.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The upgraded path, once the upgrade request was parsed.
    pub fn path(&self) -> Option<&str> {
        self.path.as_deref()
    }

    /// Who the client is, once its upgrade request was judged.
    pub fn identity(&self) -> Option<&Identity> {
        self.identity.as_ref()
    }

    /// The server's compression window, when permessage-deflate was
    /// agreed: what goes out to the client is compressed with it.
    pub fn deflate(&self) -> Option<u8> {
        self.deflate
    }

    /// True while the WebSocket session is open (upgraded, not closing).
    pub fn is_open(&self) -> bool {
        matches!(self.phase, Phase::Open(_))
    }

    /// True until the upgrade completes: counted against the pending
    /// handshake limit.
    pub fn is_upgrading(&self) -> bool {
        matches!(self.phase, Phase::Upgrading { .. })
    }

    /// True once the reactor should drop the connection.
    pub fn is_done(&self) -> bool {
        matches!(self.phase, Phase::Done)
    }

    /// Why the server evicted the client, if it did.
    pub fn eviction(&self) -> Option<Eviction> {
        self.eviction
    }

    /// Traffic counters.
    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// Plaintext bytes handed to [`Session::on_input`] so far.
    pub fn plaintext_in(&self) -> u64 {
        self.plaintext_in
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

    /// What the access log records about the session at `now`.
    pub fn record(&self, now: Instant) -> AccessRecord<'_> {
        AccessRecord {
            peer: self.peer,
            path: self.path.as_deref(),
            user: self.identity.as_ref().map(Identity::user),
            subprotocol: self.subprotocol.as_deref(),
            duration: now.saturating_duration_since(self.accepted_at),
            stats: self.stats,
            close: self.close,
            eviction: self.eviction,
        }
    }

    /// What the node tells the worker when the connection is gone: the
    /// close code and who closed. An HTTP status is not a close code: an
    /// upgrade that never completed ended abnormally.
    pub fn farewell(&self) -> (CloseCode, Initiator) {
        let (code, initiator) = match self.close {
            Some((code, Closer::Client)) => (code, Initiator::Client),
            Some((code, Closer::Server)) => (code, Initiator::Node),
            Some((code, Closer::Worker)) => (code, Initiator::Worker),
            None => (CloseCode::ABNORMAL.0, Initiator::Client),
        };
        let code = if code < 1000 {
            CloseCode::ABNORMAL.0
        } else {
            code
        };
        (CloseCode(code), initiator)
    }

    /// True while the session takes no input: a worker's pipe is full, or
    /// the auth service has not decided yet. TCP pushes back meanwhile.
    pub fn holds_input(&self) -> bool {
        self.auth.is_some()
            || matches!(&self.target, Some(Target::Worker(session)) if session.blocked)
    }

    /// Client bytes read but not yet served (a worker's pipe was full),
    /// taken out to be served now.
    pub fn take_unread(&mut self) -> Option<Vec<u8>> {
        match &mut self.target {
            Some(Target::Worker(session)) if !session.unread.is_empty() => {
                Some(std::mem::take(&mut session.unread))
            }
            _ => None,
        }
    }

    /// The shell read `n` TLS bytes from the client at `now`.
    pub fn received(&mut self, n: usize, now: Instant) {
        self.stats.bytes_in += n as u64;
        self.last_rx = now;
        self.pinged = false;
    }

    /// The shell wrote `n` TLS bytes to the client.
    pub fn sent(&mut self, n: usize) {
        self.stats.bytes_out += n as u64;
    }

    /// The shell queued a worker's message for the client.
    pub fn message_queued(&mut self) {
        self.stats.messages_out += 1;
    }

    /// The message that waited for a worker's pipe is out: the shell may
    /// read from the client again.
    pub fn resume(&mut self) -> bool {
        match &mut self.target {
            Some(Target::Worker(session)) => {
                session.blocked = false;
                true
            }
            _ => false,
        }
    }

    /// Decrypted client bytes.
    pub fn on_input(&mut self, bytes: &mut [u8], ctx: &mut Ctx<'_>) {
        self.plaintext_in += bytes.len() as u64;
        self.on_plaintext(bytes, ctx);
    }

    /// The ACL changed: an open session whose user may no longer
    /// `connect` to its path is closed with 1008.
    pub fn recheck_access(&mut self, ctx: &mut Ctx<'_>) {
        let (Some(identity), Some(path)) = (&self.identity, &self.path) else {
            return;
        };
        if self.is_open() && !identity.may(ctx.access.acl(), path, access::CONNECT) {
            debug!(
                "{}: {} may no longer connect to {path}",
                self.peer,
                identity.user()
            );
            self.start_close(ctx.out, ctx.now, CloseCode::POLICY_VIOLATION, "forbidden");
        }
    }

    /// A worker's CLOSE: the closing handshake with its code and reason.
    pub fn close_by_worker(&mut self, ctx: &mut Ctx<'_>, code: CloseCode, reason: &str) {
        if self.is_open() {
            self.start_close(ctx.out, ctx.now, code, reason);
            self.close = Some((code.0, Closer::Worker));
        }
    }

    /// What the node decided when its worker died (docs/protocol.md
    /// section 6): moved on, closed (1012, or 1013 with no worker left),
    /// or, for an upgrade waiting for the auth worker, refused with 503.
    /// False when nothing changed here.
    pub fn worker_lost(&mut self, ctx: &mut Ctx<'_>, outcome: Outcome) -> bool {
        match outcome {
            Outcome::Moved => return false,
            Outcome::AuthLost => self.auth_unavailable(ctx, "auth worker lost"),
            Outcome::Close(code, reason) => {
                if let Some(Target::Worker(session)) = &mut self.target {
                    // The waiting message died with the worker.
                    session.blocked = false;
                }
                self.start_close(ctx.out, ctx.now, code, reason);
            }
        }
        true
    }

    /// Server shutdown: Close 1001 to an open session; a session still
    /// upgrading is dropped.
    pub fn on_shutdown(&mut self, ctx: &mut Ctx<'_>) {
        match self.phase {
            Phase::Open(_) => self.start_close(
                ctx.out,
                ctx.now,
                CloseCode::GOING_AWAY,
                "server shutting down",
            ),
            Phase::Upgrading { .. } => self.phase = Phase::Done,
            _ => {}
        }
    }

    /// The shell's output state after a flush at `now`: true when a
    /// draining session has just said everything, and the shell should end
    /// TLS and shut the write side of TCP.
    pub fn flushed(&mut self, now: Instant, all_sent: bool) -> bool {
        self.guard.output_blocked(now, !all_sent);
        let Phase::Draining {
            write_shut,
            peer_done,
            ..
        } = &mut self.phase
        else {
            return false;
        };
        let shut_now = all_sent && !*write_shut;
        *write_shut |= shut_now;
        if *write_shut && *peer_done {
            self.phase = Phase::Done;
        }
        shut_now
    }

    /// The client ended its side (EOF, close_notify, a read error). A
    /// draining session still flushes its last words; any other is done.
    pub fn peer_gone(&mut self) {
        self.close
            .get_or_insert((CloseCode::ABNORMAL.0, Closer::Client));
        match &mut self.phase {
            Phase::Draining { peer_done, .. } => *peer_done = true,
            _ => self.phase = Phase::Done,
        }
    }

    /// True once the client has ended its side of a draining session.
    pub fn peer_done(&self) -> bool {
        matches!(
            self.phase,
            Phase::Draining {
                peer_done: true,
                ..
            }
        )
    }

    /// The connection broke under us: `closer` ended it, abnormally.
    pub fn broken(&mut self, closer: Closer) {
        self.close.get_or_insert((CloseCode::ABNORMAL.0, closer));
        self.phase = Phase::Done;
    }

    /// Sends our Close and waits for the peer's; a session that is not
    /// open has nothing to close (found by fuzzing: a worker lost while its
    /// session was closing once dropped the connection at once).
    fn start_close(&mut self, out: &mut Vec<u8>, now: Instant, code: CloseCode, reason: &str) {
        if !self.is_open() {
            return;
        }
        if let Phase::Open(frames) = std::mem::replace(&mut self.phase, Phase::Done) {
            encoder::encode_close(out, Some((code, reason)));
            self.close = Some((code.0, Closer::Server));
            self.phase = Phase::Closing { frames, since: now };
        }
    }

    fn drain(&mut self, now: Instant) {
        self.phase = Phase::Draining {
            since: now,
            write_shut: false,
            peer_done: false,
        };
    }

    fn on_plaintext(&mut self, bytes: &mut [u8], ctx: &mut Ctx<'_>) {
        let now = ctx.now;
        match &mut self.phase {
            // Reading pauses while the auth service decides; should bytes
            // come anyway, they wait behind the head.
            Phase::Upgrading { head } if self.auth.is_some() => head.extend_from_slice(bytes),
            Phase::Upgrading { .. } => self.on_head_bytes(bytes, ctx),
            Phase::Open(frames) | Phase::Closing { frames, .. } => {
                let Some(target) = self.target.as_mut() else {
                    return;
                };
                let may_send = self
                    .identity
                    .as_mut()
                    .is_some_and(|identity| identity.may_send(ctx.access, target.service()));
                let mut serving = Serving {
                    out: &mut *ctx.out,
                    node: ctx
                        .node
                        .as_mut()
                        .map(|node| &mut **node as &mut dyn NodePort),
                    guard: &mut self.guard,
                    stats: &mut self.stats,
                    now,
                    conn: self.id,
                    // Once our Close is out, only the peer's Close matters.
                    closing: self.close.is_some(),
                    may_send,
                    codec: &mut *ctx.codec,
                    deflate: self.deflate,
                    deflate_config: &ctx.config.deflate,
                    max_message: usize::try_from(ctx.config.limits.max_message_size)
                        .unwrap_or(usize::MAX),
                };
                let closing = serving.closing;
                let served = serving.frames(&mut frames.decoder, target, bytes);
                let out = &mut *ctx.out;
                match served {
                    Ok(Next::Stay) => {
                        if frames.decoder.buffered() == 0 {
                            frames.decoder.release_memory();
                        }
                    }
                    Ok(Next::PeerClosed(code)) => {
                        self.close.get_or_insert((code, Closer::Client));
                        self.drain(now);
                    }
                    Ok(Next::OverBudget) => {
                        self.evict(out, now, Eviction::RateLimited);
                    }
                    Ok(Next::Forbidden(served)) => {
                        debug!("{}: may not send on {}", self.peer, target.service());
                        self.start_close(out, now, CloseCode::POLICY_VIOLATION, "forbidden");
                        // What followed the message, the client's Close
                        // perhaps, is read as a closing session reads.
                        let rest = bytes.get_mut(served..).unwrap_or_default();
                        self.on_plaintext(rest, ctx);
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
