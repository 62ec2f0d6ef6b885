//! Handshake failures on the node's ROUTER, from libzmq's socket monitor:
//! the node's only view of a worker whose ZMTP handshake fails before ZAP
//! is asked, such as one without CURVE on a signed link (docs/protocol.md
//! section 1). ZAP refusals are logged by the ZAP handler; this logs the
//! rest, rate-limited.
//!
//! A monitor event is two frames (zmq_socket_monitor(3)): 6 bytes, the
//! event (u16) and its value (u32) in native byte order, then the
//! endpoint. Only libzmq writes them, but a short or odd event is skipped,
//! not trusted.

use std::os::fd::RawFd;
use std::time::Instant;

use log::warn;

use crate::logging::LogBudget;

/// A handshake failed on a protocol error (`ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL`).
const FAILED_PROTOCOL: u16 = zmq::SocketEvent::HANDSHAKE_FAILED_PROTOCOL as u16;

/// A handshake failed without detail (`ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL`).
const FAILED_NO_DETAIL: u16 = zmq::SocketEvent::HANDSHAKE_FAILED_NO_DETAIL as u16;

/// `ZMQ_PROTOCOL_ERROR_ZMTP_MECHANISM_MISMATCH` (zmq.h; the `zmq` crate
/// does not export the protocol error codes).
const MECHANISM_MISMATCH: u32 = 0x1100_0002;

/// The events watched: handshakes that failed for a reason ZAP did not
/// give.
const EVENTS: u16 = FAILED_PROTOCOL | FAILED_NO_DETAIL;

/// Most events read per [`HandshakeMonitor::drain`], so a storm of failing
/// handshakes cannot hold the reactor; the fd keeps signalling the rest.
const EVENTS_PER_CALL: usize = 256;

/// What one handshake failure was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// The peer offered another mechanism: NULL against a signed node's
    /// CURVE, or CURVE against an unsigned one.
    MechanismMismatch,
    /// Another ZMTP or CURVE protocol error (the libzmq code).
    Protocol(u32),
    /// No detail (the peer went away mid-handshake, say).
    NoDetail,
}

impl Failure {
    /// Reads one event's first frame; `None` for one not watched.
    pub fn parse(frame: &[u8]) -> Option<Failure> {
        let event = u16::from_ne_bytes(frame.get(..2)?.try_into().ok()?);
        let value = u32::from_ne_bytes(frame.get(2..6)?.try_into().ok()?);
        match (event, value) {
            (FAILED_PROTOCOL, MECHANISM_MISMATCH) => Some(Failure::MechanismMismatch),
            (FAILED_PROTOCOL, code) => Some(Failure::Protocol(code)),
            (FAILED_NO_DETAIL, _) => Some(Failure::NoDetail),
            _ => None,
        }
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::MechanismMismatch => f.write_str(
                "the peer's security mechanism is not the node's (a worker without CURVE \
                 on a signed link, or with CURVE on an unsigned one: docs/protocol.md section 1)",
            ),
            Failure::Protocol(code) => write!(f, "protocol error 0x{code:08x}"),
            Failure::NoDetail => f.write_str("no detail"),
        }
    }
}

/// The PAIR socket that receives the ROUTER's monitor events.
pub struct HandshakeMonitor {
    socket: zmq::Socket,
    fd: RawFd,
    log: LogBudget,
}

impl std::fmt::Debug for HandshakeMonitor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HandshakeMonitor")
            .field("fd", &self.fd)
            .finish_non_exhaustive()
    }
}

impl HandshakeMonitor {
    /// Starts monitoring `router` at `endpoint` (an `inproc://` name unique
    /// in `ctx`); before `router` binds, so no handshake is missed.
    pub fn new(
        ctx: &zmq::Context,
        router: &zmq::Socket,
        endpoint: &str,
    ) -> zmq::Result<HandshakeMonitor> {
        router.monitor(endpoint, i32::from(EVENTS))?;
        let socket = ctx.socket(zmq::PAIR)?;
        socket.set_linger(0)?;
        socket.connect(endpoint)?;
        let fd = socket.get_fd()?;
        Ok(HandshakeMonitor {
            socket,
            fd,
            log: LogBudget::default(),
        })
    }

    /// The PAIR socket's `ZMQ_FD`, edge-triggered like every ZeroMQ fd.
    pub fn fd(&self) -> RawFd {
        self.fd
    }

    /// Reads and logs the queued events, up to `EVENTS_PER_CALL`; whether
    /// more are waiting. Reading `ZMQ_EVENTS` re-arms the fd.
    pub fn drain(&mut self, now: Instant) -> bool {
        for _ in 0..EVENTS_PER_CALL {
            let Ok(frames) = self.socket.recv_multipart(zmq::DONTWAIT) else {
                return false;
            };
            let Some(failure) = frames.first().and_then(|frame| Failure::parse(frame)) else {
                continue;
            };
            if self.log.allow(now) {
                let endpoint = frames.get(1).map(|e| e.escape_ascii().to_string());
                warn!(
                    "backend: a peer's handshake on {} failed: {failure}",
                    endpoint.as_deref().unwrap_or("?")
                );
            }
        }
        self.socket
            .get_events()
            .is_ok_and(|events| events.contains(zmq::POLLIN))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(kind: u16, value: u32) -> Vec<u8> {
        let mut frame = kind.to_ne_bytes().to_vec();
        frame.extend_from_slice(&value.to_ne_bytes());
        frame
    }

    #[test]
    fn reads_the_failures_it_watches_and_skips_the_rest() {
        let (failed, mismatch) = (FAILED_PROTOCOL, MECHANISM_MISMATCH);
        let table: &[(Vec<u8>, Option<Failure>)] = &[
            (event(failed, mismatch), Some(Failure::MechanismMismatch)),
            (
                event(failed, 0x1000_0000),
                Some(Failure::Protocol(0x1000_0000)),
            ),
            (event(FAILED_NO_DETAIL, 0), Some(Failure::NoDetail)),
            (event(zmq::SocketEvent::ACCEPTED as u16, 7), None),
            (event(failed, mismatch)[..5].to_vec(), None),
            (Vec::new(), None),
        ];
        for (frame, want) in table {
            assert_eq!(Failure::parse(frame), *want, "{frame:?}");
        }
    }
}
