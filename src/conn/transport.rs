//! Moving bytes: TLS records from the socket into rustls and plaintext
//! out of it to the phase at hand, and staged output back through rustls
//! to the socket, with the pauses that make TCP push back.

use std::io;
use std::net::Shutdown;

use log::debug;

use super::short_read::ShortRead;
use super::tls::ReceiveError;
use super::{Conn, Shared};
use crate::outcome::{Closer, Eviction};

impl Conn {
    /// Reading stops while output backs up or a worker's pipe is full:
    /// TCP pushes back to the client.
    pub(super) fn must_pause(&self) -> bool {
        !self.pending.is_empty() || self.session.holds_input()
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
            if let Some(mut unread) = self.session.take_unread() {
                self.session.on_input(&mut unread, &mut sh.ctx);
                self.flush_plaintext(sh.ctx.out);
                continue;
            }
            // Done here (the peer's close_notify, a reader error) must
            // return: nothing more is read once done, so looping would
            // spin forever and stall the reactor.
            if self.session.is_done() || self.session.peer_done() {
                return;
            }
            if drained {
                self.read_stalled = false;
                return;
            }
            let mut socket = ShortRead::new(&mut self.socket);
            let mut plain = std::mem::take(sh.plain);
            plain.clear();
            let max_kept = sh.ctx.config.protection.max_partial_tls_bytes;
            let received = self
                .tls
                .receive(&mut socket, sh.tls_in, &mut plain, max_kept);
            drained = socket.drained;
            match received {
                Ok(0) => {
                    *sh.plain = plain;
                    return self.session.peer_gone();
                }
                Ok(n) => self.session.received(n, sh.ctx.now),
                Err(ReceiveError::Tls(e)) => {
                    *sh.plain = plain;
                    debug!("{}: TLS error: {e}", self.session.peer());
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
                        _ => return self.session.peer_gone(),
                    }
                }
            }
            if !plain.is_empty() {
                self.session.on_input(&mut plain, &mut sh.ctx);
                self.flush_plaintext(sh.ctx.out);
            }
            *sh.plain = plain;
            if self.tls.peer_closed() {
                return self.session.peer_gone();
            }
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
    /// draining session has said everything, ends the TLS session and
    /// the write side of TCP.
    pub(super) fn flush(&mut self, sh: &mut Shared<'_>) {
        // More output for a client that already has more than its cap
        // queued: it is not reading, and nothing more is buffered for it.
        let over_cap = self.pending.len() > sh.ctx.config.protection.max_outbound_bytes;
        if over_cap && !sh.ctx.out.is_empty() {
            self.evict(sh, Eviction::SlowConsumer);
        }
        self.flush_plaintext(sh.ctx.out);
        while self.tls.wants_write() {
            match self.tls.write_tls(&mut self.socket) {
                Ok(n) => self.session.sent(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => {
                    // A socket that cannot be written is gone for good.
                    return self.session.broken(Closer::Client);
                }
            }
            self.flush_plaintext(sh.ctx.out);
        }
        // An idle connection keeps no output buffer.
        self.pending.release_if_empty();
        let all_sent = self.pending.is_empty() && !self.tls.wants_write();
        if self.session.flushed(sh.ctx.now, all_sent) {
            self.tls.send_close_notify();
            let _ = self.tls.write_tls(&mut self.socket);
            let _ = self.socket.shutdown(Shutdown::Write);
        }
    }

    /// After a TLS error rustls has queued an alert: send it if the socket
    /// takes it at once, then drop the connection.
    pub(super) fn last_gasp(&mut self) {
        self.tls.encode_alert();
        let _ = self.tls.write_tls(&mut self.socket);
        self.session.broken(Closer::Server);
    }
}
