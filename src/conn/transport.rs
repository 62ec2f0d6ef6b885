//! Moving bytes: TLS records from the socket into rustls and plaintext
//! out of it to the phase at hand, and staged output back through rustls
//! to the socket, with the pauses that make TCP push back.

use std::io;
use std::net::Shutdown;

use log::debug;

use super::short_read::ShortRead;
use super::tls::ReceiveError;
use super::{Conn, Phase, Shared, Target};
use crate::outcome::{Closer, Eviction};
use crate::ws::CloseCode;

impl Conn {
    /// Reading stops while output backs up or a worker's pipe is full:
    /// TCP pushes back to the client.
    pub(super) fn must_pause(&self) -> bool {
        !self.pending.is_empty()
            || self.auth.is_some()
            || matches!(&self.target, Some(Target::Worker(session)) if session.blocked)
    }

    pub(super) fn read_all(&mut self, sh: &mut Shared<'_>) {
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
            // Done here (the peer's close_notify, a reader error) must
            // return: nothing more is read once done, so looping would
            // spin forever and stall the reactor.
            if self.is_done() || self.peer_done() {
                return;
            }
            if drained {
                self.read_stalled = false;
                return;
            }
            let mut socket = ShortRead::new(&mut self.socket);
            let mut plain = std::mem::take(sh.plain);
            plain.clear();
            let max_kept = sh.config.protection.max_partial_tls_bytes;
            let received = self
                .tls
                .receive(&mut socket, sh.tls_in, &mut plain, max_kept);
            drained = socket.drained;
            match received {
                Ok(0) => {
                    *sh.plain = plain;
                    return self.peer_gone();
                }
                Ok(n) => {
                    self.stats.bytes_in += n as u64;
                    self.last_rx = sh.now;
                    self.pinged = false;
                }
                Err(ReceiveError::Tls(e)) => {
                    *sh.plain = plain;
                    debug!("{}: TLS error: {e}", self.peer);
                    return self.last_gasp();
                }
                Err(ReceiveError::Io(e)) => {
                    *sh.plain = plain;
                    match e.kind() {
                        io::ErrorKind::WouldBlock => {
                            self.read_stalled = false;
                            return;
                        }
                        io::ErrorKind::Interrupted => continue,
                        _ => return self.peer_gone(),
                    }
                }
            }
            if !plain.is_empty() {
                self.plaintext_in += plain.len() as u64;
                self.on_plaintext(&mut plain, sh);
                self.flush_plaintext(sh.out);
            }
            *sh.plain = plain;
            if self.tls.peer_closed() {
                return self.peer_gone();
            }
        }
    }

    /// Client bytes read but not yet served, taken out of the worker
    /// session that holds them.
    pub(super) fn take_unread(&mut self) -> Option<Vec<u8>> {
        match &mut self.target {
            Some(Target::Worker(session)) if !session.unread.is_empty() => {
                Some(std::mem::take(&mut session.unread))
            }
            _ => None,
        }
    }

    /// Moves staged output into rustls; what it cannot take waits in
    /// `pending`, which pauses reading.
    pub(super) fn flush_plaintext(&mut self, out: &mut Vec<u8>) {
        if !self.pending.is_empty() {
            let n = self.tls.write_plaintext(&self.pending);
            self.pending.consume(n);
        }
        if !out.is_empty() {
            let n = if self.pending.is_empty() {
                self.tls.write_plaintext(out)
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
    pub(super) fn flush(&mut self, sh: &mut Shared<'_>) {
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
    pub(super) fn last_gasp(&mut self) {
        self.tls.encode_alert();
        let _ = self.tls.write_tls(&mut self.socket);
        self.close
            .get_or_insert((CloseCode::ABNORMAL.0, Closer::Server));
        self.phase = Phase::Done;
    }

    /// The client ended its side (EOF, close_notify, an error). A draining
    /// connection still flushes its last words; any other is done.
    pub(super) fn peer_gone(&mut self) {
        self.close
            .get_or_insert((CloseCode::ABNORMAL.0, Closer::Client));
        match &mut self.phase {
            Phase::Draining { peer_done, .. } => *peer_done = true,
            _ => self.phase = Phase::Done,
        }
    }

    pub(super) fn peer_done(&self) -> bool {
        matches!(
            self.phase,
            Phase::Draining {
                peer_done: true,
                ..
            }
        )
    }
}
