//! The I/O shell of one client connection: the TCP socket and its rustls
//! session around the sans-IO [`Session`], which decides everything the
//! bytes mean.
//!
//! On a readiness event the shell reads TLS records until `WouldBlock`,
//! hands the plaintext to the session, and writes the session's output
//! back through rustls until the socket would block. Output rustls cannot
//! take yet waits in `pending`, and while it does the shell stops reading,
//! so TCP pushes back on the client. A deadline never evicts on its own
//! word: the shell first reads what the kernel already holds, so a busy
//! reactor judges a client by when its bytes arrived.
//!
//! The connection never touches the poll or the timer heap: it reports the
//! interest and deadline it wants, and the reactor applies them.
//!
//! # Files
//!
//! - `mod.rs`: the shell, and what the reactor and the backend call.
//! - `transport.rs`: socket ↔ TLS ↔ plaintext, and the read pauses.
//! - `tls.rs`: the rustls session over buffers the reactor shares.
//! - `backlog.rs`: output waiting for rustls; `short_read.rs`: a socket
//!   that notices when a read emptied it.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

mod backlog;
mod short_read;
mod tls;
mod transport;

use backlog::Backlog;
use tls::Tls;
pub use tls::READ_SIZE;

use mio::net::TcpStream;
use mio::Interest;
use rustls::ServerConfig;

use crate::backend::message::{AuthReply, Payload};
use crate::config::Config;
use crate::node::connections::Outcome;
use crate::outcome::Eviction;
use crate::pace::Crowd;
use crate::session::{opcode_of, Ctx, ReadReport, Session};
use crate::ws::deflate::Codec;
use crate::ws::CloseCode;

/// Reactor-owned state a connection borrows while it handles an event.
pub struct Shared<'a> {
    /// The reactor's TLS read buffer ([`READ_SIZE`] bytes), reused by
    /// every connection.
    pub tls_in: &'a mut [u8],
    /// The reactor's buffer for decrypted input, reused likewise.
    pub plain: &'a mut Vec<u8>,
    /// What the session borrows; its `out` is flushed into the
    /// connection's TLS session before the next connection runs.
    pub ctx: Ctx<'a>,
}

/// A client connection.
pub struct Conn {
    socket: TcpStream,
    tls: Tls,
    /// Plaintext rustls did not accept yet; reading pauses while non-empty.
    pending: Backlog,
    /// A worker's message came for a client already over its output cap.
    over_cap: bool,
    /// Reading stopped before `WouldBlock`: the edge is still owed to us.
    read_stalled: bool,
    session: Session,
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
        let tls = Tls::new(tls_config, config.protection.tls_backlog_bytes)?;
        let path = crate::sys::tcp_path(&socket).unwrap_or_default();
        Ok(Self {
            socket,
            tls,
            pending: Backlog::default(),
            over_cap: false,
            read_stalled: false,
            session: Session::new(peer, id, config, crowd, path, now),
        })
    }

    /// The socket, for (de)registration with the poll.
    pub fn socket(&mut self) -> &mut TcpStream {
        &mut self.socket
    }

    /// The session the connection carries.
    pub fn session(&self) -> &Session {
        &self.session
    }

    /// True while the TLS handshake runs.
    pub fn is_tls_handshaking(&self) -> bool {
        self.tls.is_handshaking()
    }

    /// The ACL changed: see [`Session::recheck_access`].
    pub fn recheck_access(&mut self, sh: &mut Shared<'_>) {
        self.session.recheck_access(&mut sh.ctx);
        self.flush(sh);
    }

    /// Its message waited for a worker's pipe and is out now: reading
    /// from the client resumes where it stopped.
    pub fn resume(&mut self, sh: &mut Shared<'_>) {
        if self.session.resume() {
            self.on_ready(sh, false);
        }
    }

    /// Writes a worker's message to the client; false when the session is
    /// not open (closing or gone).
    ///
    /// The frame is queued behind what is already pending: the reactor
    /// calls [`Conn::flush_queued`] once after a batch of worker messages,
    /// so they leave in as few TLS records and writes as possible. More
    /// output for a client already over `cap` evicts it instead. A
    /// session that agreed to permessage-deflate gets it compressed when
    /// it has `deflate_min_bytes` or more.
    pub fn queue(
        &mut self,
        payload: Payload<'_>,
        cap: usize,
        codec: &mut Codec,
        deflate_min_bytes: usize,
    ) -> bool {
        if !self.session.is_open() {
            return false;
        }
        if self.pending.len() > cap {
            self.over_cap = true;
        } else {
            let (opcode, bytes) = (opcode_of(payload), payload.as_bytes());
            let out = self.pending.vec_mut();
            let deflate = self.session.deflate();
            codec.encode_message(out, opcode, bytes, deflate, deflate_min_bytes);
            self.session.message_queued();
        }
        true
    }

    /// Sends what [`Conn::queue`] gathered, or evicts a slow consumer.
    pub fn flush_queued(&mut self, sh: &mut Shared<'_>) {
        if std::mem::take(&mut self.over_cap) {
            self.evict(sh, Eviction::SlowConsumer);
        }
        self.flush(sh);
    }

    /// A worker's CLOSE: see [`Session::close_by_worker`].
    pub fn close_by_worker(&mut self, sh: &mut Shared<'_>, code: CloseCode, reason: &str) {
        self.session.close_by_worker(&mut sh.ctx, code, reason);
        self.flush(sh);
    }

    /// The node's decision on a lost worker: see [`Session::worker_lost`].
    pub fn worker_lost(&mut self, sh: &mut Shared<'_>, outcome: Outcome) {
        if self.session.worker_lost(&mut sh.ctx, outcome) {
            self.flush(sh);
        }
    }

    /// The auth service's verdict: see [`Session::on_auth_reply`]. Reading
    /// resumes: the bytes behind the head were kept, more may wait.
    pub fn on_auth_reply(&mut self, sh: &mut Shared<'_>, reply: &AuthReply<'_>) {
        if self.session.on_auth_reply(&mut sh.ctx, reply) {
            self.on_ready(sh, false);
        }
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
        self.session.deadline(config, self.queued(config))
    }

    /// Handles a readiness event: reads until `WouldBlock` (or until output
    /// backs up), serves what arrived, and flushes.
    pub fn on_ready(&mut self, sh: &mut Shared<'_>, readable: bool) {
        let mut read = readable || self.read_stalled;
        for _ in 0..sh.ctx.config.protection.rounds_per_event {
            if read && !self.session.is_done() {
                self.read_and_account(sh);
            }
            self.flush(sh);
            // Output drained while reading was paused: the readable edge we
            // skipped will not come again, so read now.
            read = self.read_stalled && self.pending.is_empty() && !self.session.is_done();
            if !read {
                return;
            }
        }
        log::debug!("{}: round cap reached in one event", self.session.peer());
    }

    /// Handles the connection's deadline, after reading what the kernel
    /// already holds.
    pub fn on_timeout(&mut self, sh: &mut Shared<'_>) {
        if !self.session.is_done() && self.pending.is_empty() {
            self.read_and_account(sh);
        }
        self.flush(sh);
        let queued = self.queued(sh.ctx.config);
        let handshaking = self.tls.is_handshaking();
        if let Some(reason) = self.session.expire(&mut sh.ctx, queued, handshaking) {
            self.evict(sh, reason);
        }
        self.flush(sh);
    }

    /// Server shutdown: see [`Session::on_shutdown`].
    pub fn on_shutdown(&mut self, sh: &mut Shared<'_>) {
        self.session.on_shutdown(&mut sh.ctx);
        self.flush(sh);
    }

    /// Evicts the client. A slow consumer's queued output is dropped: its
    /// Close goes out only if rustls can still take it, else TCP is dropped.
    fn evict(&mut self, sh: &mut Shared<'_>, reason: Eviction) {
        let out = &mut *sh.ctx.out;
        if self.session.evict(out, sh.ctx.now, reason) {
            self.pending.clear();
            let accepted = self.tls.write_plaintext(out) == out.len();
            out.clear();
            if !accepted {
                self.session.broken(crate::outcome::Closer::Server);
            }
        }
    }

    /// Reads what there is, then tells the session what the round brought.
    fn read_and_account(&mut self, sh: &mut Shared<'_>) {
        let was_handshaking = self.tls.is_handshaking();
        let before = self.session.stats().bytes_in;
        let plaintext_before = self.session.plaintext_in();
        self.read_all(sh);
        let tls_got = self.session.stats().bytes_in - before;
        let handshaking = self.tls.is_handshaking();
        let flight_answered = (handshaking && tls_got > 0 && self.tls.wants_write())
            .then(|| crate::sys::tcp_path(&self.socket));
        let read = ReadReport {
            was_handshaking,
            handshaking,
            flight_answered,
            tls_got,
            plaintext_got: self.session.plaintext_in() - plaintext_before,
            output_paused: !self.pending.is_empty(),
        };
        self.session.account(&sh.ctx, read);
    }

    /// Output queued for the client: ours, plus at most what the TLS
    /// backlog holds.
    fn queued(&self, config: &Config) -> u64 {
        let in_tls = if self.tls.wants_write() {
            config.protection.tls_backlog_bytes
        } else {
            0
        };
        (self.pending.len() + in_tls) as u64
    }
}
