//! The backend node, sans-IO: the one owner of everything the node knows
//! about its workers (docs/protocol.md sections 4 to 8).
//!
//! [`Node`] keeps the registered and pending workers, service assignment,
//! the per-worker backlogs and each connection's waiting message, the
//! upgrades waiting for an auth worker, channels and subscriptions, the
//! signer and the replay windows, heartbeats and the drop and answer
//! budgets. Connections hold no backend state. It takes
//! what arrived from a worker (its routing id and frames), connection
//! events and the time; it sends through a [`Wire`] (the ZeroMQ ROUTER in
//! the server, a recorder in tests), reaches connections through an
//! [`Edge`], and returns what the caller must do to connections with the
//! node free again ([`Followup`]). Nothing here touches a socket or reads
//! a clock.
//!
//! - [`workers`]: the table of workers, their connections and assignment;
//! - [`sessions`]: each connection's side: its worker, its waiting
//!   message, what it handed over; upgrades waiting for a verdict;
//! - [`connections`]: connection events, and worker death's outcomes;
//! - [`channels`]: subscriptions both ways;
//! - [`backlogs`]: what waits for a full pipe, capped per worker;
//! - [`batching`]: client messages to a version 2 worker, one batch a
//!   turn;
//! - [`answers`]: drop counts and the budget of unasked ERRORs;
//! - [`dispatch`]: one worker message, checked and carried out;
//! - [`testing`]: a table [`Wire`] and [`Edge`] for tests and fuzzing.

pub mod answers;
pub mod backlogs;
pub mod batching;
pub mod channels;
pub mod connections;
pub mod dispatch;
pub mod sessions;
pub mod testing;
#[cfg(test)]
mod tests;
pub mod workers;

use std::time::{Duration, Instant};

use log::{info, warn};

use crate::backend::codec::{encode_in, Frames};
use crate::backend::message::{
    AclCommand, AuthReply, Author, Message, MessageType, Payload, Reactors, Welcome,
};
use crate::backend::signing::{KeyRing, ReplayPolicy, Signer, Verifier, VerifyError};
use crate::config::WorkerLoss;
use crate::logging::LogBudget;
use crate::ws::CloseCode;
use answers::{Answers, Drops};
use backlogs::{Backlogs, Queued};
use channels::Channels;
use connections::Resolved;
use sessions::Sessions;
use workers::{WorkerRef, Workers};

/// How the node is set up.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// The node's name in WELCOME and CONNECT.
    pub name: String,
    /// Keys that sign and verify every message; `None` for an unsigned
    /// link.
    pub keys: Option<KeyRing>,
    /// Key ids whose signed messages may administer the ACL.
    pub admin_keys: Vec<String>,
    /// Heartbeat interval, both ways.
    pub heartbeat: Duration,
    /// Intervals of silence after which a worker is dead.
    pub liveness: u8,
    /// Largest SEND/PUBLISH payload accepted.
    pub max_payload: u32,
    /// Most messages waiting for one worker whose pipe is full.
    pub worker_queue: usize,
    /// What happens to a dead worker's connections.
    pub worker_loss: WorkerLoss,
    /// Most workers registered at once, and most READYs waiting for
    /// their confirmation.
    pub max_workers: usize,
    /// Most channel subscriptions of one connection.
    pub max_channels_per_conn: usize,
    /// Which reactor of its process this node is (WELCOME, version 3).
    pub reactors: Reactors,
}

/// The time of an event: the monotonic clock for deadlines, the wall
/// clock for signature timestamps.
#[derive(Debug, Clone, Copy)]
pub struct Time {
    /// For deadlines and liveness.
    pub now: Instant,
    /// Milliseconds since the Unix epoch, for signatures.
    pub unix_ms: u64,
}

/// Why a pipe did not take a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// At its high-water mark: try again later.
    Full,
    /// The peer is gone.
    Gone,
}

/// Where the node's messages go: one multipart message to the peer behind
/// a routing id, never blocking.
pub trait Wire {
    /// Sends `frames` to `routing_id`, whole or not at all.
    fn send<'a>(
        &mut self,
        routing_id: &[u8],
        frames: impl ExactSizeIterator<Item = &'a [u8]>,
    ) -> Result<(), Refused>;
}

/// The connections, as the node sees them while it handles a message.
/// Only what needs nothing of the node again: the rest is a [`Followup`].
pub trait Edge {
    /// Queues a worker's message on connection `conn`; false when it is
    /// not open on this node.
    fn deliver(&mut self, conn: u64, payload: Payload<'_>) -> bool;
    /// Whether the connection's user holds `permission` on `resource`;
    /// `None` for a connection not open here.
    fn permits(&self, conn: u64, resource: &str, permission: &str) -> Option<bool>;
    /// Whether a client holding `author`'s user and roles (a version 2
    /// PUBLISH names them) holds `permission` on `resource`.
    fn author_may(&self, author: &Author<'_>, resource: &str, permission: &str) -> bool;
    /// True while the connection is open (upgraded, not closing).
    fn is_open(&self, conn: u64) -> bool;
}

/// What the caller does to connections once [`Node::handle`] returned:
/// each of these may need the node again.
#[derive(Debug)]
pub enum Followup<'m> {
    /// Nothing.
    Done,
    /// A worker is gone: what becomes of its connections.
    Lost(Vec<Resolved>),
    /// A worker's CLOSE for an open connection.
    Close {
        /// The connection.
        conn: u64,
        /// Its close code.
        code: CloseCode,
        /// Its reason.
        reason: &'m str,
    },
    /// The verdict an upgrade waited for, from the worker it asked.
    AuthReply {
        /// The connection (the request id).
        conn: u64,
        /// The worker that judged.
        worker: WorkerRef,
        /// The verdict.
        reply: AuthReply<'m>,
    },
    /// An ACL change or question, to answer with
    /// [`Node::send_control`] (ACL_RESULT).
    AclCommand {
        /// Who asked.
        worker: WorkerRef,
        /// What.
        command: AclCommand<'m>,
        /// Signed with an admin key.
        admin: bool,
    },
}

/// A worker the node forgot, and the connections it held.
#[derive(Debug, PartialEq, Eq)]
struct Lost {
    worker: WorkerRef,
    conns: Vec<u64>,
    /// True: those with nothing in flight go to other workers.
    reassign: bool,
}

/// What happened to a data message for a worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// Handed to the wire.
    Sent,
    /// The worker's pipe is full (or earlier messages wait for it): the
    /// caller keeps the message and stops reading from its client.
    Blocked,
    /// The worker is gone.
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

impl std::fmt::Display for Dropped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Dropped::TooManyFrames => f.write_str("too many frames"),
            Dropped::SignedOnUnsignedLink => f.write_str("signed message on an unsigned link"),
            Dropped::Verify(e) => e.fmt(f),
        }
    }
}

/// The node.
#[derive(Debug)]
pub struct Node {
    config: NodeConfig,
    boot: u64,
    signer: Option<Signer>,
    verifier: Option<Verifier>,
    workers: Workers,
    sessions: Sessions,
    channels: Channels,
    backlogs: Backlogs,
    /// Client messages handed to workers that then died.
    lost_messages: u64,
    /// Workers found gone or not reading while sending, and why.
    lost: Vec<(WorkerRef, &'static str)>,
    out: Frames,
    /// Workers whose batch may hold client messages, for the end of turn.
    open_batches: Vec<WorkerRef>,
    answers: Answers,
    drops: Drops,
    /// Replies dropped because their worker's backlog was full.
    replies_dropped: u64,
    replies_budget: LogBudget,
}

impl Node {
    /// A node with boot id `boot` (random, non-zero, chosen at start).
    pub fn new(config: NodeConfig, boot: u64) -> Node {
        let (signer, verifier) = match &config.keys {
            Some(ring) => (
                Some(ring.signer(boot)),
                Some(Verifier::new(ring.clone(), boot, ReplayPolicy::default())),
            ),
            None => (None, None),
        };
        let (max_workers, max_channels) = (config.max_workers, config.max_channels_per_conn);
        Node {
            backlogs: Backlogs::new(config.worker_queue),
            config,
            boot,
            signer,
            verifier,
            workers: Workers::with_cap(max_workers),
            sessions: Sessions::default(),
            channels: Channels::with_cap(max_channels),
            lost_messages: 0,
            lost: Vec::new(),
            out: Frames::new(),
            open_batches: Vec::new(),
            answers: Answers::default(),
            drops: Drops::default(),
            replies_dropped: 0,
            replies_budget: LogBudget::default(),
        }
    }

    /// Signs and verifies with `keys` from now on (SIGHUP): the sequence
    /// counter and the replay windows carry on. An unsigned node stays
    /// unsigned: whether messages are signed is fixed at start.
    pub fn set_keys(&mut self, keys: KeyRing) {
        if let (Some(signer), Some(verifier)) = (&mut self.signer, &mut self.verifier) {
            signer.rekey(&keys);
            verifier.rekey(keys);
        }
    }

    /// This node's boot id.
    pub fn boot(&self) -> u64 {
        self.boot
    }

    /// The node's name.
    pub fn name(&self) -> &str {
        &self.config.name
    }

    /// True when every message is signed.
    pub fn is_signed(&self) -> bool {
        self.signer.is_some()
    }

    /// Heartbeat interval.
    pub fn heartbeat(&self) -> Duration {
        self.config.heartbeat
    }

    /// How long a worker may be silent before it is dead.
    pub fn liveness_timeout(&self) -> Duration {
        self.config.heartbeat * u32::from(self.config.liveness)
    }

    /// Largest SEND/PUBLISH payload accepted.
    pub fn max_payload(&self) -> u32 {
        self.config.max_payload
    }

    /// Registered workers.
    pub fn workers(&self) -> &Workers {
        &self.workers
    }

    /// The connections served by workers.
    pub fn sessions(&self) -> &Sessions {
        &self.sessions
    }

    /// The subscriptions.
    pub fn channels(&self) -> &Channels {
        &self.channels
    }

    /// Messages waiting in the per-worker backlogs.
    pub fn backlog_len(&self) -> usize {
        self.backlogs.len()
    }

    /// The per-worker backlogs, for invariant checks.
    pub fn backlogs(&self) -> &Backlogs {
        &self.backlogs
    }

    /// True while some worker has messages waiting for its pipe.
    pub fn has_backlog(&self) -> bool {
        !self.backlogs.is_empty()
    }

    /// Replies dropped so far because their worker's backlog was full.
    pub fn replies_dropped(&self) -> u64 {
        self.replies_dropped
    }

    /// Received messages dropped so far, for any reason.
    pub fn dropped(&self) -> u64 {
        self.drops.total()
    }

    /// Counts a message the shell dropped before the node saw it.
    pub fn drop_received(&mut self, dropped: Dropped, now: Instant) {
        self.drops.count(dropped.to_string(), now);
    }

    /// Sends a message to a worker, never queueing it: on
    /// [`Delivery::Blocked`] the caller keeps it. Messages already waiting
    /// for that worker, its open batch included, go first, so order holds.
    pub fn send_data(
        &mut self,
        wire: &mut impl Wire,
        worker: WorkerRef,
        message: &Message<'_>,
        time: Time,
    ) -> Delivery {
        if self.backlogs.waiting(worker) {
            return Delivery::Blocked;
        }
        let Some(version) = self.workers.get(worker).map(|w| w.version) else {
            return Delivery::Gone;
        };
        match self.seal(wire, worker, time) {
            Delivery::Sent => {}
            other => return other,
        }
        if self
            .encode_for((worker.instance, version), message, time)
            .is_err()
        {
            // Our own message out of its caps: a bug, not the worker's.
            log::error!("cannot encode {:?} for a worker", message.message_type());
            return Delivery::Sent;
        }
        self.transmit(wire, worker, time)
    }

    /// Sends what `out` holds to a worker.
    fn transmit(&mut self, wire: &mut impl Wire, worker: WorkerRef, time: Time) -> Delivery {
        // The routing id is borrowed, not copied: this runs per message.
        let sent = match self.workers.get(worker) {
            Some(w) => wire.send(&w.routing_id, self.out.iter()),
            None => return Delivery::Gone,
        };
        match sent {
            Ok(()) => {
                self.workers.sent(worker, time.now);
                Delivery::Sent
            }
            Err(Refused::Full) => Delivery::Blocked,
            Err(Refused::Gone) => {
                log::debug!(
                    "backend: send to worker {:016x} failed: gone",
                    worker.instance
                );
                self.lost.push((worker, "is unreachable"));
                Delivery::Gone
            }
        }
    }

    /// Sends a control message (CONNECT, DISCONNECT, AUTH, ERROR, ...) to
    /// a worker, queueing it behind the worker's backlog when the pipe is
    /// full. Over the backlog's cap an ERROR or HEARTBEAT is dropped and
    /// counted (a worker that does not read has no use for it), and
    /// anything else declares the worker dead, since its clients would
    /// wait for ever.
    pub fn send_control(
        &mut self,
        wire: &mut impl Wire,
        worker: WorkerRef,
        message: &Message<'_>,
        time: Time,
    ) {
        if self.send_data(wire, worker, message, time) != Delivery::Blocked {
            return;
        }
        // `out` may hold the batch that went into the backlog before it.
        let Some(version) = self.workers.get(worker).map(|w| w.version) else {
            return;
        };
        if self
            .encode_for((worker.instance, version), message, time)
            .is_ok()
        {
            self.queue(worker, message.message_type(), time.now);
        }
    }

    /// Puts what `out` holds at the end of `worker`'s backlog.
    fn queue(&mut self, worker: WorkerRef, kind: MessageType, now: Instant) {
        let frames = self.out.iter().map(<[u8]>::to_vec);
        if self.backlogs.push(worker, frames) == Queued::Full {
            self.over_queue(worker, kind, now);
        }
    }

    /// Sends to a peer by routing id, registered or not, best effort:
    /// WELCOME to a pending worker, ERROR UNKNOWN_PEER and the like.
    /// `to` is the instance id the peer signed with (0 if unknown) and the
    /// protocol version to answer in.
    pub fn send_to_peer(
        &mut self,
        wire: &mut impl Wire,
        routing_id: &[u8],
        to: (u64, u8),
        message: &Message<'_>,
        time: Time,
    ) {
        if self.encode_for(to, message, time).is_ok() {
            let _ = wire.send(routing_id, self.out.iter());
        }
    }

    /// Retries every worker's backlog, oldest first; stops at a worker
    /// whose pipe is still full.
    pub fn flush_backlogs(&mut self, wire: &mut impl Wire, now: Instant) {
        for worker in self.backlogs.workers() {
            let Some(routing_id) = self.workers.get(worker).map(|w| w.routing_id.clone()) else {
                self.backlogs.forget(worker);
                continue;
            };
            while let Some(frames) = self.backlogs.pop(worker) {
                match wire.send(&routing_id, frames.iter().map(Vec::as_slice)) {
                    Ok(()) => self.workers.sent(worker, now),
                    Err(Refused::Full) => {
                        self.backlogs.unpop(worker, frames);
                        break;
                    }
                    Err(Refused::Gone) => {
                        self.lost.push((worker, "is unreachable"));
                        break;
                    }
                }
            }
        }
    }

    /// Sends HEARTBEAT to every worker the node has been quiet to for an
    /// interval, forgets READYs never confirmed, and declares dead the
    /// workers silent past the liveness timeout.
    pub fn tick(&mut self, wire: &mut impl Wire, time: Time) -> Vec<Resolved> {
        let timeout = self.liveness_timeout();
        self.workers.expire_pending(time.now, timeout);
        let silent = self.workers.silent(time.now, timeout);
        let heartbeat = Message::Heartbeat { boot: self.boot };
        for worker in self.workers.quiet(time.now, self.config.heartbeat) {
            // A full pipe: what waits for it goes first and counts as
            // sent; one more HEARTBEAT a tick would pile up.
            if !self.backlogs.waiting(worker) && !silent.contains(&worker) {
                self.send_control(wire, worker, &heartbeat, time);
            }
        }
        let silent = silent.into_iter().map(|w| (w, "silent past its liveness"));
        self.lost.splice(0..0, silent);
        self.take_lost(wire, time)
    }

    /// Forgets the workers found gone, not reading or silent since the
    /// last call; what becomes of their connections.
    pub fn take_lost(&mut self, wire: &mut impl Wire, time: Time) -> Vec<Resolved> {
        let mut resolved = Vec::new();
        for (worker, why) in std::mem::take(&mut self.lost) {
            if let Some(lost) = self.forget_worker(worker, why) {
                resolved.extend(self.resolve(wire, lost, time));
            }
        }
        resolved
    }

    /// Says BYE to every worker, best effort: the node is leaving.
    pub fn bye(&mut self, wire: &mut impl Wire, time: Time) {
        for worker in self.workers.all() {
            self.send_control(wire, worker, &Message::Bye, time);
        }
    }

    /// Answers a READY from `instance` on `routing_id` with WELCOME: this
    /// node's boot id and parameters. Best effort: a worker repeats READY
    /// until WELCOME comes.
    fn welcome(&mut self, wire: &mut impl Wire, routing_id: &[u8], to: (u64, u8), time: Time) {
        let name = self.config.name.clone();
        let welcome = Message::Welcome(Welcome {
            boot: self.boot,
            heartbeat_ms: u32::try_from(self.config.heartbeat.as_millis()).unwrap_or(u32::MAX),
            liveness: self.config.liveness,
            max_payload: self.config.max_payload,
            node: &name,
            reactors: self.config.reactors,
        });
        self.send_to_peer(wire, routing_id, to, &welcome, time);
    }

    /// Removes a worker and drops what waited for it (docs/protocol.md
    /// section 6); `None` if it was gone already.
    fn forget_worker(&mut self, worker: WorkerRef, why: &str) -> Option<Lost> {
        self.backlogs.forget(worker);
        let removed = self.workers.remove(worker)?;
        let reassign = self.config.worker_loss == WorkerLoss::Reassign;
        info!(
            "backend: worker {} {why}; {} connection(s) lose it (worker-loss {})",
            removed.name,
            removed.conns.len(),
            if reassign { "reassign" } else { "close" }
        );
        let mut conns: Vec<u64> = removed.conns.into_iter().collect();
        conns.sort_unstable();
        Some(Lost {
            worker,
            conns,
            reassign,
        })
    }

    /// A message for a worker whose backlog is full.
    fn over_queue(&mut self, worker: WorkerRef, kind: MessageType, now: Instant) {
        let name = self.workers.get(worker).map_or("?", |w| w.name.as_str());
        if matches!(kind, MessageType::Error | MessageType::Heartbeat) {
            self.replies_dropped += 1;
            if self.replies_budget.allow(now) {
                warn!(
                    "backend: worker {name} does not read: dropped a {kind:?} for it ({} so far)",
                    self.replies_dropped
                );
            }
        } else if !self.lost.iter().any(|(lost, _)| *lost == worker) {
            warn!(
                "backend: worker {name} does not read: {} messages wait for it",
                self.backlogs.cap()
            );
            self.lost.push((worker, "does not read"));
        }
    }

    /// Encodes `message` into `out` for `to`: (recipient instance id,
    /// protocol version).
    fn encode_for(
        &mut self,
        (recipient, version): (u64, u8),
        message: &Message<'_>,
        time: Time,
    ) -> Result<(), ()> {
        self.out.clear();
        let encoded = match &mut self.signer {
            Some(signer) => signer.encode(version, message, recipient, time.unix_ms, &mut self.out),
            None => encode_in(version, message, &mut self.out),
        };
        encoded.map_err(|_| ())
    }
}
