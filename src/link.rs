//! The node's end of the backend link: one ROUTER socket bound on every
//! `--backend-bind` endpoint, the I/O shell around [`crate::node::Node`].
//! The reactor polls its `ZMQ_FD`; this module receives and sends
//! multipart messages and nothing else.
//!
//! `ZMQ_FD` is edge-triggered and a send can consume the edge, so the
//! reactor drains with [`Link::recv`] while `ZMQ_EVENTS` reports input and
//! asks again after every turn, whatever woke it (docs/protocol.md
//! section 7 and DESIGN.md section 2).

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::os::fd::RawFd;
use std::time::{SystemTime, UNIX_EPOCH};

use std::time::Instant;

use crate::backend::batch::MAX_BATCH_BYTES;
use crate::backend::message::{Auth, Initiator, Message, Payload, MAX_CONN_IDS, MAX_FRAMES};
use crate::backend::monitor::HandshakeMonitor;
use crate::node::sessions::ConnectInfo;
use crate::node::workers::WorkerRef;
use crate::node::{Dropped, Node, Refused, Time, Wire};
use crate::session::NodePort;
use crate::ws::CloseCode;

/// How the link is set up.
#[derive(Debug, Clone)]
pub struct LinkConfig {
    /// Endpoints the ROUTER binds (`tcp://` or `ipc://`).
    pub binds: Vec<String>,
    /// Largest SEND/PUBLISH payload accepted.
    pub max_payload: u32,
    /// ZAP domain to set on the ROUTER, when an allowlist handler runs.
    pub zap_domain: Option<String>,
    /// CURVE server with the node's key ([`crate::backend::curve`]), on a signed
    /// link; the ZAP handler then checks client keys.
    pub curve: bool,
    /// High-water mark of each pipe, both ways, in messages.
    pub pipe_hwm: i32,
}

/// The largest frame a worker sends other than a payload: a version 2
/// records frame (larger than SEND's list of [`MAX_CONN_IDS`] connection
/// ids). With the payload cap it bounds `ZMQ_MAXMSGSIZE`, so a peer
/// announcing a bigger frame is cut off before the node holds any of it.
const LARGEST_FIXED_FRAME: u32 = {
    let ids = 8 * MAX_CONN_IDS;
    let largest = if MAX_BATCH_BYTES > ids {
        MAX_BATCH_BYTES
    } else {
        ids
    };
    largest as u32
};

/// Could not set the link up.
#[derive(Debug)]
pub struct LinkError(pub String);

impl std::fmt::Display for LinkError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for LinkError {}

/// Where the ROUTER's monitor events go, within the link's context.
const MONITOR_ENDPOINT: &str = "inproc://averyws.handshakes";

/// The node's ROUTER.
pub struct Link {
    router: zmq::Socket,
    /// Handshakes that fail before ZAP is asked.
    monitor: HandshakeMonitor,
    /// The endpoints as bound (a `tcp://` port 0 resolved).
    bound: Vec<String>,
    fd: RawFd,
}

impl Link {
    /// Binds the ROUTER on every endpoint. `ctx` must be the context any
    /// ZAP handler lives in, created before this.
    pub fn bind(ctx: &zmq::Context, config: LinkConfig) -> Result<Link, LinkError> {
        let fail = |what: &str, e: zmq::Error| LinkError(format!("{what}: {e}"));
        let router = ctx
            .socket(zmq::ROUTER)
            .map_err(|e| fail("ROUTER socket", e))?;
        router
            .set_router_mandatory(true)
            .map_err(|e| fail("ROUTER_MANDATORY", e))?;
        // Unsent messages die with the process: workers learn of a node
        // restart from its new boot id anyway.
        router.set_linger(0).map_err(|e| fail("linger", e))?;
        if let Some(domain) = &config.zap_domain {
            router
                .set_zap_domain(domain)
                .map_err(|e| fail("ZAP domain", e))?;
        }
        if config.curve {
            crate::backend::curve::serve(&router).map_err(|e| fail("CURVE server", e))?;
        }
        // tcp://[::1]:PORT and other IPv6 endpoints bind only with this on.
        router.set_ipv6(true).map_err(|e| fail("IPv6", e))?;
        // Before any peer connects: libzmq applies these per pipe as it
        // is made. A frame over the limit disconnects its peer as soon as
        // its header is read, authenticated or not.
        let largest = config.max_payload.max(LARGEST_FIXED_FRAME);
        router
            .set_maxmsgsize(i64::from(largest))
            .map_err(|e| fail("ZMQ_MAXMSGSIZE", e))?;
        router
            .set_sndhwm(config.pipe_hwm)
            .map_err(|e| fail("ZMQ_SNDHWM", e))?;
        router
            .set_rcvhwm(config.pipe_hwm)
            .map_err(|e| fail("ZMQ_RCVHWM", e))?;
        let monitor = HandshakeMonitor::new(ctx, &router, MONITOR_ENDPOINT)
            .map_err(|e| fail("socket monitor", e))?;
        let mut bound = Vec::with_capacity(config.binds.len());
        for endpoint in &config.binds {
            router
                .bind(endpoint)
                .map_err(|e| fail(&format!("bind {endpoint}"), e))?;
            // What was bound, port 0 resolved, for the log and workers.
            let last = router
                .get_last_endpoint()
                .map_err(|e| fail("ZMQ_LAST_ENDPOINT", e))?;
            bound.push(last.unwrap_or_else(|_| endpoint.clone()));
        }
        let fd = router.get_fd().map_err(|e| fail("ZMQ_FD", e))?;
        Ok(Link {
            router,
            monitor,
            bound,
            fd,
        })
    }

    /// The file descriptor to poll for readability (`ZMQ_FD`).
    pub fn fd(&self) -> RawFd {
        self.fd
    }

    /// The handshake monitor, whose fd the reactor polls too and which it
    /// drains every turn.
    pub fn monitor(&mut self) -> &mut HandshakeMonitor {
        &mut self.monitor
    }

    /// The endpoints as bound, a `tcp://` port 0 resolved to the port the
    /// kernel chose.
    pub fn bound(&self) -> &[String] {
        &self.bound
    }

    /// True while `ZMQ_EVENTS` reports a message to read.
    pub fn readable(&self) -> bool {
        self.router
            .get_events()
            .is_ok_and(|events| events.contains(zmq::POLLIN))
    }

    /// Receives one multipart message, without blocking, into `parts`
    /// (routing id first). Returns false when there is none. A message
    /// with more frames than any v1 message is read to its end and
    /// reported as dropped.
    pub fn recv(&mut self, parts: &mut Vec<zmq::Message>) -> Result<bool, Dropped> {
        parts.clear();
        loop {
            let mut part = zmq::Message::new();
            match self.router.recv(&mut part, zmq::DONTWAIT) {
                Ok(()) => {}
                Err(_) if parts.is_empty() => return Ok(false),
                Err(_) => break,
            }
            // Routing id + frames: keep at most one more than allowed, so
            // an oversized message is recognised without holding it all.
            if parts.len() <= MAX_FRAMES + 1 {
                parts.push(part);
            }
            if !self.router.get_rcvmore().unwrap_or(false) {
                break;
            }
        }
        if parts.len() > MAX_FRAMES + 1 {
            return Err(Dropped::TooManyFrames);
        }
        Ok(true)
    }
}

impl Wire for Link {
    /// With ROUTER_MANDATORY a full or unknown pipe is refused at the
    /// routing-id frame (EAGAIN, EHOSTUNREACH); once that frame is taken
    /// the rest of the message is too.
    fn send<'a>(
        &mut self,
        routing_id: &[u8],
        frames: impl ExactSizeIterator<Item = &'a [u8]>,
    ) -> Result<(), Refused> {
        let refused = |e| match e {
            zmq::Error::EAGAIN => Refused::Full,
            _ => Refused::Gone,
        };
        self.router
            .send(routing_id, zmq::SNDMORE | zmq::DONTWAIT)
            .map_err(refused)?;
        let last = frames.len().saturating_sub(1);
        for (i, frame) in frames.enumerate() {
            let more = if i < last { zmq::SNDMORE } else { 0 };
            self.router
                .send(frame, more | zmq::DONTWAIT)
                .map_err(refused)?;
        }
        Ok(())
    }
}

/// The node core joined to its ROUTER: what the reactor owns, and what a
/// connection borrows to reach its worker.
pub struct Backend {
    /// Everything the node knows.
    pub node: Node,
    /// The socket its messages travel on.
    pub link: Link,
}

impl Backend {
    /// The [`Time`] of an event at `now`. The wall clock is read only on
    /// a signed link: signatures are all it is for, and the worker path
    /// should not pay a clock read per message without them.
    pub fn at(&self, now: Instant) -> Time {
        let unix_ms = if self.node.is_signed() { unix_ms() } else { 0 };
        Time { now, unix_ms }
    }

    /// [`Node::send_control`] on this link at `now`.
    pub fn send_control(&mut self, worker: WorkerRef, message: &Message<'_>, now: Instant) {
        let time = self.at(now);
        self.node
            .send_control(&mut self.link, worker, message, time);
    }

    /// [`Node::close`] on this link at `now`.
    pub fn close(&mut self, conn: u64, why: (CloseCode, Initiator), now: Instant) {
        let time = self.at(now);
        self.node.close(&mut self.link, conn, why, time);
    }
}

/// A session's calls on the node go out on this link.
impl NodePort for Backend {
    fn open(&mut self, conn: u64, info: ConnectInfo, now: Instant) -> bool {
        let time = self.at(now);
        self.node.open(&mut self.link, conn, info, time)
    }

    fn message(&mut self, conn: u64, payload: Payload<'_>, now: Instant) -> bool {
        let time = self.at(now);
        self.node.message(&mut self.link, conn, payload, time)
    }

    fn ask_auth(&mut self, service: &str, auth: &Auth<'_>, now: Instant) -> bool {
        let time = self.at(now);
        self.node.ask_auth(&mut self.link, service, auth, time)
    }

    fn auth_done(&mut self, conn: u64) {
        self.node.auth_done(conn);
    }
}

/// Milliseconds since the Unix epoch.
fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// A random non-zero u64 (boot ids): std's per-process random hasher keys
/// come from the operating system.
pub fn random_nonzero() -> u64 {
    RandomState::new().hash_one(unix_ms()) | 1
}
