//! The node's end of the backend link: one ROUTER socket bound on every
//! `--backend-bind` endpoint. The reactor polls its `ZMQ_FD`; this module
//! does the sends and receives, the signing and the per-worker backlogs.
//!
//! `ZMQ_FD` is edge-triggered and a send can consume the edge, so the
//! reactor drains with [`Link::recv`] while `ZMQ_EVENTS` reports input and
//! asks again after every turn, whatever woke it (docs/protocol.md
//! section 7 and DESIGN.md section 2).

use std::collections::hash_map::RandomState;
use std::collections::{HashMap, VecDeque};
use std::hash::BuildHasher;
use std::os::fd::RawFd;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::codec::{encode, Frames};
use super::message::{Message, MessageType, MAX_CONN_IDS, MAX_FRAMES};
use super::signing::{KeyRing, ReplayPolicy, Signer, Verified, Verifier, VerifyError};
use super::workers::{WorkerRef, Workers};
use crate::logging::LogBudget;

/// How the link is set up.
#[derive(Debug, Clone)]
pub struct LinkConfig {
    /// Endpoints the ROUTER binds (`tcp://` or `ipc://`).
    pub binds: Vec<String>,
    /// Keys that sign and verify every message; `None` for an unsigned
    /// link (loopback or `--backend-insecure` only).
    pub keys: Option<KeyRing>,
    /// The node's name in WELCOME and CONNECT.
    pub node_name: String,
    /// Heartbeat interval, both ways.
    pub heartbeat: Duration,
    /// Intervals of silence after which a worker is dead.
    pub liveness: u8,
    /// Largest SEND/PUBLISH payload accepted.
    pub max_payload: u32,
    /// ZAP domain to set on the ROUTER, when an allowlist handler runs.
    pub zap_domain: Option<String>,
    /// Most messages waiting for one worker ([`Link::send_control`]).
    pub worker_queue: usize,
    /// High-water mark of each pipe, both ways, in messages.
    pub pipe_hwm: i32,
}

/// The largest frame a worker sends other than a payload: SEND's list of
/// [`MAX_CONN_IDS`] connection ids. With the payload cap it bounds
/// `ZMQ_MAXMSGSIZE`, so a peer announcing a bigger frame is cut off before
/// the node holds any of it.
const LARGEST_FIXED_FRAME: u32 = 8 * MAX_CONN_IDS as u32;

/// What happened to a message for a worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// Handed to ZeroMQ.
    Sent,
    /// The worker's pipe is full (or earlier messages wait for it): the
    /// caller keeps the message and stops reading from its client.
    Blocked,
    /// The worker is gone (unknown routing id or unregistered).
    Gone,
}

/// Why a received message was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dropped {
    /// More frames than any v1 message has.
    TooManyFrames,
    /// A signed message on an unsigned link (it cannot be checked).
    SignedOnUnsignedLink,
    /// Signature checks failed.
    Verify(VerifyError),
}

/// Could not set the link up.
#[derive(Debug)]
pub struct LinkError(pub String);

impl std::fmt::Display for LinkError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for LinkError {}

/// The node's ROUTER and everything about the workers behind it.
pub struct Link {
    router: zmq::Socket,
    /// The endpoints as bound (a `tcp://` port 0 resolved).
    bound: Vec<String>,
    fd: RawFd,
    boot: u64,
    /// The node's name.
    pub node_name: String,
    signer: Option<Signer>,
    verifier: Option<Verifier>,
    /// The registered workers.
    pub workers: Workers,
    /// Messages for a worker that its pipe did not take yet, in order.
    backlogs: HashMap<WorkerRef, VecDeque<Vec<Vec<u8>>>>,
    /// Workers found gone while sending, and why.
    gone: Vec<(WorkerRef, &'static str)>,
    out: Frames,
    heartbeat: Duration,
    liveness: u8,
    max_payload: u32,
    worker_queue: usize,
    /// Replies dropped because their worker's backlog was full.
    replies_dropped: u64,
    replies_budget: LogBudget,
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
        let boot = random_nonzero();
        let (signer, verifier) = match config.keys {
            Some(ring) => (
                Some(ring.signer(boot)),
                Some(Verifier::new(ring, boot, ReplayPolicy::default())),
            ),
            None => (None, None),
        };
        Ok(Link {
            router,
            bound,
            fd,
            boot,
            node_name: config.node_name,
            signer,
            verifier,
            workers: Workers::default(),
            backlogs: HashMap::new(),
            gone: Vec::new(),
            out: Frames::new(),
            heartbeat: config.heartbeat,
            liveness: config.liveness,
            max_payload: config.max_payload,
            worker_queue: config.worker_queue.max(1),
            replies_dropped: 0,
            replies_budget: LogBudget::default(),
        })
    }

    /// Signs and verifies with `keys` from now on (SIGHUP): the sequence
    /// counter and the replay windows carry on. An unsigned link stays
    /// unsigned: whether messages are signed is fixed at start.
    pub fn set_keys(&mut self, keys: KeyRing) {
        if let (Some(signer), Some(verifier)) = (&mut self.signer, &mut self.verifier) {
            signer.rekey(&keys);
            verifier.rekey(keys);
        }
    }

    /// Messages waiting in the per-worker backlogs.
    pub fn backlog_len(&self) -> usize {
        self.backlogs.values().map(VecDeque::len).sum()
    }

    /// The file descriptor to poll for readability (`ZMQ_FD`).
    pub fn fd(&self) -> RawFd {
        self.fd
    }

    /// This process's boot id.
    pub fn boot(&self) -> u64 {
        self.boot
    }

    /// The endpoints as bound, a `tcp://` port 0 resolved to the port the
    /// kernel chose.
    pub fn bound(&self) -> &[String] {
        &self.bound
    }

    /// Heartbeat interval.
    pub fn heartbeat(&self) -> Duration {
        self.heartbeat
    }

    /// How long a worker may be silent before it is dead.
    pub fn liveness_timeout(&self) -> Duration {
        self.heartbeat * u32::from(self.liveness)
    }

    /// Answers a READY from `instance` on `routing_id` with WELCOME: this
    /// node's boot id and parameters. Best effort: a worker repeats READY
    /// until WELCOME comes.
    pub fn welcome(&mut self, routing_id: &[u8], instance: u64) {
        let node = self.node_name.clone();
        let welcome = Message::Welcome(super::message::Welcome {
            boot: self.boot,
            heartbeat_ms: u32::try_from(self.heartbeat.as_millis()).unwrap_or(u32::MAX),
            liveness: self.liveness,
            max_payload: self.max_payload,
            node: &node,
        });
        self.send_to_peer(routing_id, instance, &welcome);
    }

    /// True when every message is signed (a key file was given).
    pub fn is_signed(&self) -> bool {
        self.signer.is_some()
    }

    /// Largest SEND/PUBLISH payload accepted.
    pub fn max_payload(&self) -> u32 {
        self.max_payload
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

    /// Signature checks for one received message (frames after the
    /// routing id): on a signed link every check of docs/protocol.md
    /// section 9; on an unsigned one, signed messages are refused.
    /// Returns what the signature said (sender, key id), `None` when the
    /// link is unsigned.
    pub fn verify(&mut self, frames: &[&[u8]]) -> Result<Option<Verified>, Dropped> {
        match &mut self.verifier {
            Some(verifier) => verifier
                .verify(frames, unix_ms())
                .map(Some)
                .map_err(Dropped::Verify),
            None => {
                let signed = frames
                    .first()
                    .and_then(|header| header.get(2))
                    .is_some_and(|flags| flags & super::message::FLAG_SIGNED != 0);
                if signed {
                    Err(Dropped::SignedOnUnsignedLink)
                } else {
                    Ok(None)
                }
            }
        }
    }

    /// Sends a data message (MESSAGE) to a worker, never queueing it: on
    /// [`Delivery::Blocked`] the caller keeps it. Messages already waiting
    /// for that worker go first, so order holds.
    pub fn send_data(
        &mut self,
        worker: WorkerRef,
        message: &Message<'_>,
        now: Instant,
    ) -> Delivery {
        if self.backlogs.get(&worker).is_some_and(|q| !q.is_empty()) {
            return Delivery::Blocked;
        }
        self.send_now(worker, message, now)
    }

    /// Sends a control message (CONNECT, DISCONNECT, WELCOME, HEARTBEAT,
    /// ERROR, ...) to a worker, queueing it behind the worker's backlog
    /// when the pipe is full. The backlog holds at most `worker_queue`
    /// messages: beyond, an ERROR or HEARTBEAT is dropped and counted (a
    /// worker that does not read has no use for it), and anything else
    /// declares the worker dead, since its clients would wait for ever.
    pub fn send_control(&mut self, worker: WorkerRef, message: &Message<'_>, now: Instant) {
        let waiting = self.backlogs.get(&worker).map_or(0, VecDeque::len);
        if waiting == 0 {
            if self.send_now(worker, message, now) != Delivery::Blocked {
                return;
            }
        } else if waiting >= self.worker_queue {
            return self.over_queue(worker, message.message_type(), now);
        } else if self.encode_for(worker, message).is_err() {
            return;
        }
        // `out` holds the encoded message either way.
        let frames = self.out.iter().map(<[u8]>::to_vec).collect();
        self.backlogs.entry(worker).or_default().push_back(frames);
    }

    /// A message for a worker whose backlog is full.
    fn over_queue(&mut self, worker: WorkerRef, kind: MessageType, now: Instant) {
        let name = self.workers.get(worker).map_or("?", |w| w.name.as_str());
        if matches!(kind, MessageType::Error | MessageType::Heartbeat) {
            self.replies_dropped += 1;
            if self.replies_budget.allow(now) {
                log::warn!(
                    "backend: worker {name} does not read: dropped a {kind:?} for it \
                     ({} so far)",
                    self.replies_dropped
                );
            }
        } else if !self.gone.iter().any(|(gone, _)| *gone == worker) {
            log::warn!(
                "backend: worker {name} does not read: {} messages wait for it",
                self.worker_queue
            );
            self.gone.push((worker, "does not read"));
        }
    }

    /// Replies dropped so far because their worker's backlog was full.
    pub fn replies_dropped(&self) -> u64 {
        self.replies_dropped
    }

    /// Sends to a peer that is not (or no longer) registered, by routing
    /// id, best effort: ERROR UNKNOWN_PEER and the like. `recipient` is the
    /// instance id the peer signed with (0 if unknown).
    pub fn send_to_peer(&mut self, routing_id: &[u8], recipient: u64, message: &Message<'_>) {
        if self.encode_with(recipient, message).is_ok() {
            let _ = self.transmit(routing_id);
        }
    }

    /// Retries every worker's backlog, oldest first; stops at a worker
    /// whose pipe is still full.
    pub fn flush_backlogs(&mut self, now: Instant) {
        let workers: Vec<WorkerRef> = self.backlogs.keys().copied().collect();
        for worker in workers {
            let Some(routing_id) = self.workers.get(worker).map(|w| w.routing_id.clone()) else {
                self.backlogs.remove(&worker);
                continue;
            };
            while let Some(frames) = self.backlogs.get_mut(&worker).and_then(VecDeque::pop_front) {
                match transmit_frames(&self.router, &routing_id, frames.iter().map(Vec::as_slice)) {
                    Ok(()) => {
                        if let Some(w) = self.workers.get_mut(worker) {
                            w.sent = now;
                        }
                    }
                    Err(zmq::Error::EAGAIN) => {
                        if let Some(queue) = self.backlogs.get_mut(&worker) {
                            queue.push_front(frames);
                        }
                        break;
                    }
                    Err(_) => {
                        self.gone.push((worker, "is unreachable"));
                        break;
                    }
                }
            }
            if self.backlogs.get(&worker).is_some_and(VecDeque::is_empty) {
                self.backlogs.remove(&worker);
            }
        }
    }

    /// True while some worker has messages waiting for its pipe.
    pub fn has_backlog(&self) -> bool {
        !self.backlogs.is_empty()
    }

    /// Workers found gone or not reading while sending, since the last
    /// call, and why.
    pub fn take_gone(&mut self) -> Vec<(WorkerRef, &'static str)> {
        std::mem::take(&mut self.gone)
    }

    /// Forgets a worker's backlog (it is gone: what waited for it died
    /// with it, docs/protocol.md section 6).
    pub fn drop_backlog(&mut self, worker: WorkerRef) {
        self.backlogs.remove(&worker);
    }

    /// Sends HEARTBEAT to every worker the node has been quiet to for an
    /// interval; returns the workers silent past the liveness timeout.
    pub fn tick(&mut self, now: Instant) -> Vec<WorkerRef> {
        self.workers.expire_pending(now, self.liveness_timeout());
        let heartbeat = Message::Heartbeat { boot: self.boot };
        for worker in self.workers.quiet(now, self.heartbeat) {
            // A full pipe: what waits for it goes first and counts as
            // sent; one more HEARTBEAT a tick would pile up without bound.
            if self.backlogs.get(&worker).is_some_and(|q| !q.is_empty()) {
                continue;
            }
            self.send_control(worker, &heartbeat, now);
        }
        self.workers.silent(now, self.liveness_timeout())
    }

    /// Says BYE to every worker, best effort: the node is leaving.
    pub fn bye(&mut self, now: Instant) {
        for worker in self.workers.all() {
            self.send_control(worker, &Message::Bye, now);
        }
    }

    fn send_now(&mut self, worker: WorkerRef, message: &Message<'_>, now: Instant) -> Delivery {
        let Some(routing_id) = self.workers.get(worker).map(|w| w.routing_id.clone()) else {
            return Delivery::Gone;
        };
        if self.encode_for(worker, message).is_err() {
            // Our own message out of its caps: a bug, not the worker's.
            log::error!("cannot encode {:?} for a worker", message.message_type());
            return Delivery::Sent;
        }
        match self.transmit(&routing_id) {
            Ok(()) => {
                if let Some(w) = self.workers.get_mut(worker) {
                    w.sent = now;
                }
                Delivery::Sent
            }
            Err(zmq::Error::EAGAIN) => Delivery::Blocked,
            Err(e) => {
                log::debug!(
                    "backend: send to worker {:016x} failed: {e}",
                    worker.instance
                );
                self.gone.push((worker, "is unreachable"));
                Delivery::Gone
            }
        }
    }

    fn encode_for(&mut self, worker: WorkerRef, message: &Message<'_>) -> Result<(), ()> {
        self.encode_with(worker.instance, message)
    }

    fn encode_with(&mut self, recipient: u64, message: &Message<'_>) -> Result<(), ()> {
        self.out.clear();
        let encoded = match &mut self.signer {
            Some(signer) => signer.encode(message, recipient, unix_ms(), &mut self.out),
            None => encode(message, &mut self.out),
        };
        encoded.map_err(|_| ())
    }

    fn transmit(&self, routing_id: &[u8]) -> Result<(), zmq::Error> {
        transmit_frames(&self.router, routing_id, self.out.iter())
    }
}

/// Sends one multipart message without blocking. With ROUTER_MANDATORY a
/// full or unknown pipe is refused at the routing-id frame (EAGAIN,
/// EHOSTUNREACH); once that frame is taken the rest of the message is too.
fn transmit_frames<'a>(
    router: &zmq::Socket,
    routing_id: &[u8],
    frames: impl ExactSizeIterator<Item = &'a [u8]>,
) -> Result<(), zmq::Error> {
    router.send(routing_id, zmq::SNDMORE | zmq::DONTWAIT)?;
    let last = frames.len().saturating_sub(1);
    for (i, frame) in frames.enumerate() {
        let more = if i < last { zmq::SNDMORE } else { 0 };
        router.send(frame, more | zmq::DONTWAIT)?;
    }
    Ok(())
}

/// Milliseconds since the Unix epoch, for signature timestamps.
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
