//! The worker's end of the backend link (docs/protocol.md): one DEALER per
//! node, READY and WELCOME, heartbeats both ways, node death and restart,
//! and signing, behind a small blocking API for application code.
//!
//! Workers are ordinary processes, not the reactor, so this client blocks:
//! [`Worker::poll`] waits (with `zmq::poll`) until the next event or the
//! timeout, and does the protocol's housekeeping meanwhile. Commands
//! ([`Worker::publish`], [`Worker::close`], ...) are sent at once; a
//! [`Worker::send`] to one connection of a version 2 node joins that
//! node's open batch (SENDS), which goes when full, before any other
//! command to that node, and before the worker reads or waits for more
//! input (docs/protocol.md section 13). A batch the node's pipe does not
//! take within [`Config::send_timeout`] is logged as lost, as a failed
//! [`Worker::send`] would have been reported to its caller.
//!
//! Each link starts in protocol version 3 and falls back to the highest
//! older version the node lists when it answers READY with ERROR
//! UNSUPPORTED_VERSION. A version 3 WELCOME names the node's place among
//! the reactors of its process: the worker opens a link to each sibling
//! it was not given (docs/protocol.md section 14), so one endpoint per
//! process is enough.
//!
//! ```no_run
//! use std::time::Duration;
//! use averyws_worker::{Config, Event, Worker};
//!
//! let config = Config::new(vec!["tcp://127.0.0.1:7100".into()], vec!["worker-echo".into()]);
//! let mut worker = Worker::new(config)?;
//! loop {
//!     if let Some(Event::Message { node, conn, payload }) = worker.poll(Duration::from_millis(250)) {
//!         worker.send(node, &[conn], payload.as_payload())?;
//!     }
//! }
//! # Ok::<(), averyws_worker::WorkerError>(())
//! ```
//!
//! A room: each client is subscribed to a channel at CONNECT, and what it
//! says is published there on every node, in its name, so every node
//! checks that it may `publish`; a signed link takes the nodes' key file.
//!
//! ```no_run
//! use std::collections::HashMap;
//! use std::time::Duration;
//! use averyws_worker::{CloseCode, Config, Connected, Event, KeyRing, NodeId, Worker};
//!
//! let mut config = Config::new(vec!["tcp://127.0.0.1:7100".into()], vec!["chat".into()]);
//! config.keys = Some(KeyRing::parse(&std::fs::read("backend.keys")?)?);
//! let mut worker = Worker::new(config)?;
//! let mut members: HashMap<(NodeId, u64), Connected> = HashMap::new();
//! loop {
//!     match worker.poll(Duration::from_millis(250)) {
//!         Some(Event::Connect(client)) if client.user.is_empty() => {
//!             worker.close(client.node, client.conn, CloseCode::POLICY_VIOLATION, "sign in")?;
//!         }
//!         Some(Event::Connect(client)) => {
//!             worker.subscribe(client.node, client.conn, "rooms/lobby")?;
//!             members.insert((client.node, client.conn), client);
//!         }
//!         Some(Event::Message { node, conn, payload }) => {
//!             if let Some(client) = members.get(&(node, conn)) {
//!                 worker.publish_as("rooms/lobby", client, payload.as_payload())?;
//!             }
//!         }
//!         Some(Event::Disconnect { node, conn, .. }) => {
//!             members.remove(&(node, conn));
//!         }
//!         Some(Event::NodeReset { node }) => members.retain(|(on, _), _| *on != node),
//!         _ => {}
//!     }
//! }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Lifecycle of one node
//!
//! ```text
//!            open DEALER, READY               WELCOME
//! Waiting ───────────────────► Registering ──────────► Welcomed
//!    ▲   (after the backoff)   (READY again every      │  events, commands,
//!    │                          heartbeat interval)    │  HEARTBEAT when idle
//!    │                              ▲                  │
//!    │                              └──────────────────┤ HEARTBEAT or WELCOME
//!    │                       NodeReset, READY again    │ with a new boot;
//!    │                                                 │ ERROR UNKNOWN_PEER
//!    └─────────────────────────────────────────────────┘
//!      silent for liveness x heartbeat, or BYE: NodeReset, close the
//!      DEALER (linger 0), wait 1 s, 2 s, ... 32 s while the node stays
//!      silent (Paranoid Pirate), then open a new one
//! ```
//!
//! Before WELCOME only READY is sent (section 4); it is repeated every
//! heartbeat interval, which keeps the node from expiring a worker whose
//! first READY was lost and needs no recipient id for signing.
//!
//! [`Event::NodeReset`] tells the application that every connection that
//! node had assigned is gone: drop whatever is keyed by them. The client
//! itself keeps no per-connection state: its memory is a few hundred bytes
//! per node plus the verifier's bounded replay table.
//!
//! Received messages that fail a check (size, signature, decoding,
//! direction, boot) are counted ([`Worker::dropped`]), logged at most once
//! per reason and node every 10 s, and dropped; the worker never answers
//! them (section 10).

use std::collections::hash_map::RandomState;
use std::collections::VecDeque;
use std::hash::{BuildHasher, Hasher};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use log::{debug, info, warn};

use averyws_protocol::batch::{BatchBuilder, MAX_BATCHED_PAYLOAD};
use averyws_protocol::codec::{encode_in, DecodeError, Frames};
use averyws_protocol::curve::KeyPair;
use averyws_protocol::message::{
    AclCommand, AuthReply, Author, Close, List, Message, Publish, Reactors, Ready, SendTo,
    Subscription, MAX_CONN_IDS, VERSION_2, VERSION_3,
};
use averyws_protocol::siblings::siblings;
use averyws_protocol::signing::{Signer, Verifier};
// What the API below names, so a worker needs no other crate of ours; the
// rest of the protocol is `averyws_worker::protocol`.
pub use averyws_protocol as protocol;
pub use averyws_protocol::message::{AclOp, AclStatus, ErrorCode, Initiator, Payload};
pub use averyws_protocol::signing::{KeyRing, ReplayPolicy};
pub use averyws_protocol::CloseCode;

mod cli;
mod config;
mod drops;
mod event;
mod inbound;
mod liveness;

use config::check_config;
use drops::DropLog;
use liveness::{open, socket_error};

pub use cli::{cli_main, echo, run, Handler, WorkerArgs};
pub use config::{
    default_name, Config, DEFAULT_ENDPOINT, DEFAULT_HEARTBEAT, DEFAULT_LIVENESS, DEFAULT_MAX_FRAME,
    DEFAULT_MAX_NODES, RECONNECT_INITIAL, RECONNECT_MAX,
};
pub use event::{Connected, Event, NodeId, NodeInfo, OwnedPayload, WorkerError};

/// Shortest heartbeat interval taken from a WELCOME, so that a zero cannot
/// make the worker spin.
const MIN_HEARTBEAT: Duration = Duration::from_millis(10);
/// How long [`Worker::bye`] lets the BYE messages drain before closing.
const BYE_LINGER: Duration = Duration::from_secs(1);
/// Most messages handled in one round of [`Worker::poll`] before the
/// timers are looked at again.
const RECV_BUDGET: usize = 256;

/// A worker connected to every node of [`Config::endpoints`].
pub struct Worker {
    nodes: Vec<Node>,
    instance: u64,
    name: String,
    services: Vec<String>,
    signer: Option<Signer>,
    /// The CURVE client keypair each DEALER connects with, on a CURVE
    /// link.
    curve: Option<KeyPair>,
    verifier: Option<Verifier>,
    timing: Timing,
    /// [`Config::max_nodes`].
    max_nodes: usize,
    /// The outgoing message being sent, reused.
    out: Frames,
    /// The incoming message being handled, reused.
    inbox: Vec<zmq::Message>,
    /// Events not returned yet: the rest of a batch, and
    /// [`Event::NodeReset`]s (at most one per node).
    pending: VecDeque<Event>,
    /// The node whose socket is read first next time (fairness).
    next_node: usize,
    drops: DropLog,
    context: zmq::Context,
}

struct Node {
    id: NodeId,
    endpoint: String,
    phase: Phase,
    /// When a valid message last came from the node (or the DEALER was
    /// opened).
    heard: Instant,
    /// When a message was last sent to it.
    sent: Instant,
    /// The wait before the next reconnect.
    backoff: Duration,
    /// The protocol version of this link: 3 until the node says it
    /// speaks only older ones.
    version: u8,
    /// Replies waiting for the end of the turn (version 2).
    batch: BatchBuilder,
}

enum Phase {
    /// No socket: the node is dead; a new DEALER opens at `retry_at`.
    Waiting { retry_at: Instant },
    /// A DEALER is connected; `welcome` is `None` until the node answers
    /// READY (and again after a node restart).
    Linked {
        socket: zmq::Socket,
        welcome: Option<NodeInfo>,
    },
}

#[derive(Debug, Clone, Copy)]
struct Timing {
    heartbeat: Duration,
    liveness: u8,
    reconnect_initial: Duration,
    reconnect_max: Duration,
    send_timeout: Duration,
    max_frame: u64,
}

impl Worker {
    /// Check `config`, open one DEALER per node and send each READY.
    pub fn new(config: Config) -> Result<Worker, WorkerError> {
        check_config(&config)?;
        let instance = random_instance();
        let timing = Timing {
            heartbeat: config.heartbeat.max(MIN_HEARTBEAT),
            liveness: config.liveness.max(1),
            reconnect_initial: config.reconnect_initial,
            reconnect_max: config.reconnect_max.max(config.reconnect_initial),
            send_timeout: config.send_timeout,
            max_frame: config.max_frame,
        };
        let now = Instant::now();
        let mut worker = Worker {
            nodes: Vec::with_capacity(config.endpoints.len()),
            instance,
            name: config.name,
            services: config.services,
            signer: config.keys.as_ref().map(|keys| keys.signer(instance)),
            curve: config
                .keys
                .as_ref()
                .filter(|_| config.curve)
                .map(KeyRing::curve_client),
            verifier: config
                .keys
                .map(|keys| Verifier::new(keys, instance, config.replay)),
            timing,
            max_nodes: config.max_nodes,
            out: Frames::new(),
            inbox: Vec::new(),
            pending: VecDeque::new(),
            next_node: 0,
            drops: DropLog::default(),
            context: zmq::Context::new(),
        };
        for endpoint in config.endpoints {
            worker.add_node(endpoint, now)?;
        }
        info!(
            "worker {:016x} ({}) serving {:?} on {} node(s){}",
            worker.instance,
            worker.name,
            worker.services,
            worker.nodes.len(),
            if worker.signer.is_some() {
                ", signed"
            } else {
                ""
            }
        );
        Ok(worker)
    }

    /// Open a DEALER to `endpoint` and send READY: a new node, with the
    /// next [`NodeId`].
    fn add_node(&mut self, endpoint: String, now: Instant) -> Result<(), WorkerError> {
        let socket = open(&self.context, &endpoint, &self.timing, self.curve.as_ref())?;
        let index = self.nodes.len();
        self.nodes.push(Node {
            id: NodeId(index),
            endpoint,
            phase: Phase::Linked {
                socket,
                welcome: None,
            },
            heard: now,
            sent: now,
            backoff: self.timing.reconnect_initial,
            version: VERSION_3,
            batch: BatchBuilder::default(),
        });
        self.send_ready(index);
        Ok(())
    }

    /// Section 14: link to every sibling of node `index` that no node of
    /// this worker is linked to yet.
    fn add_siblings(&mut self, index: usize, reactors: Reactors) {
        let endpoint = self.nodes[index].endpoint.clone();
        for sibling in siblings(&endpoint, reactors) {
            let sibling = match sibling {
                Ok(sibling) => sibling,
                Err(reactor) => {
                    warn!(
                        "{endpoint}: cannot derive the endpoint of reactor {reactor} of {}: \
                         give it with --connect",
                        reactors.count
                    );
                    continue;
                }
            };
            if self.nodes.iter().any(|node| node.endpoint == sibling) {
                continue;
            }
            if self.nodes.len() >= self.max_nodes {
                warn!(
                    "{sibling}: not linked: {} nodes is the most (max_nodes)",
                    self.max_nodes
                );
                break;
            }
            info!("{endpoint}: linking to sibling reactor {sibling}");
            if let Err(why) = self.add_node(sibling.clone(), Instant::now()) {
                warn!("{sibling}: cannot link to sibling reactor: {why}");
            }
        }
    }

    /// This process's instance id (READY's, random, never 0).
    pub fn instance(&self) -> u64 {
        self.instance
    }

    /// Every node: [`Config::endpoints`] in order, then the siblings
    /// found since (section 14).
    pub fn nodes(&self) -> impl ExactSizeIterator<Item = NodeId> + '_ {
        self.nodes.iter().map(|node| node.id)
    }

    /// The endpoint of `node`.
    pub fn endpoint(&self, node: NodeId) -> Option<&str> {
        self.nodes.get(node.0).map(|node| node.endpoint.as_str())
    }

    /// What `node`'s WELCOME said, while it has this worker registered.
    pub fn node_info(&self, node: NodeId) -> Option<&NodeInfo> {
        match &self.nodes.get(node.0)?.phase {
            Phase::Linked {
                welcome: Some(info),
                ..
            } => Some(info),
            _ => None,
        }
    }

    /// Received messages dropped so far (bad signature, malformed, ...).
    pub fn dropped(&self) -> u64 {
        self.drops.total
    }

    /// Wait up to `timeout` for the next event, keeping heartbeats,
    /// liveness and reconnects going meanwhile. `None` when the timeout
    /// passed, or early when a signal interrupted the wait (check your
    /// shutdown flag and call again).
    pub fn poll(&mut self, timeout: Duration) -> Option<Event> {
        let start = Instant::now();
        // An absurd timeout waits a day at a time.
        let deadline = start
            .checked_add(timeout)
            .unwrap_or(start + Duration::from_secs(86_400));
        loop {
            self.tick(Instant::now());
            if let Some(event) = self.pending.pop_front() {
                return Some(event);
            }
            if let Some(event) = self.receive() {
                return Some(event);
            }
            if let Some(event) = self.pending.pop_front() {
                return Some(event);
            }
            let now = Instant::now();
            if now >= deadline {
                return None;
            }
            let wake = self.next_deadline().min(deadline);
            if self.wait(wake.saturating_duration_since(now)) {
                return None;
            }
        }
    }

    /// SEND `payload` to connections `conns` of `node`, in messages of at
    /// most 1024 ids; nothing for an empty list. To one connection of a
    /// version 2 node it joins the node's open batch.
    pub fn send(
        &mut self,
        node: NodeId,
        conns: &[u64],
        payload: Payload<'_>,
    ) -> Result<(), WorkerError> {
        if let [conn] = *conns {
            if self.batches(node) && payload.as_bytes().len() <= MAX_BATCHED_PAYLOAD {
                return self.batch(node, conn, payload);
            }
        }
        for chunk in conns.chunks(MAX_CONN_IDS) {
            let message = Message::Send(SendTo {
                conns: List::from(chunk),
                payload,
            });
            self.command(node, &message, Some(payload))?;
        }
        Ok(())
    }

    /// PUBLISH `payload` on `channel` to every registered node (section
    /// 8) on the worker's own authority, leaving out connection `except.1`
    /// on node `except.0` only. Returns how many nodes it went to; a node
    /// that is down or full is logged and skipped, since it cannot reach
    /// its subscribers anyway.
    pub fn publish(
        &mut self,
        channel: &str,
        except: Option<(NodeId, u64)>,
        payload: Payload<'_>,
    ) -> Result<usize, WorkerError> {
        self.publish_to_all(channel, except, None, payload)
    }

    /// PUBLISH a message of client `from` on `channel`, leaving `from`
    /// out: every version 2 node checks that `from`'s user and roles may
    /// `publish` there (section 13); a v1 node only checks on the node
    /// holding `from`. Returns how many nodes it went to, as
    /// [`Worker::publish`] does.
    pub fn publish_as(
        &mut self,
        channel: &str,
        from: &Connected,
        payload: Payload<'_>,
    ) -> Result<usize, WorkerError> {
        let roles: Vec<&str> = from.roles.iter().map(String::as_str).collect();
        let author = Author {
            user: &from.user,
            roles: List::from(&roles[..]),
        };
        let except = Some((from.node, from.conn));
        self.publish_to_all(channel, except, Some(author), payload)
    }

    fn publish_to_all(
        &mut self,
        channel: &str,
        except: Option<(NodeId, u64)>,
        author: Option<Author<'_>>,
        payload: Payload<'_>,
    ) -> Result<usize, WorkerError> {
        let mut reached = 0;
        for index in 0..self.nodes.len() {
            let node = NodeId(index);
            // Version 1 has no author to carry.
            let v2 = self.nodes[index].version >= VERSION_2;
            let message = Message::Publish(Publish {
                channel,
                except: except.filter(|(on, _)| *on == node).map(|(_, conn)| conn),
                author: author.filter(|_| v2),
                payload,
            });
            match self.command(node, &message, Some(payload)) {
                Ok(()) => reached += 1,
                Err(WorkerError::Invalid(why)) => return Err(WorkerError::Invalid(why)),
                Err(WorkerError::NotReady(_)) => debug!("{node}: not registered, PUBLISH skipped"),
                Err(other) => warn!("PUBLISH to {channel:?} skipped: {other}"),
            }
        }
        Ok(reached)
    }

    /// SUBSCRIBE connection `conn` of `node` to `channel`; the node checks
    /// the ACL and answers ERROR FORBIDDEN if it refuses.
    pub fn subscribe(&mut self, node: NodeId, conn: u64, channel: &str) -> Result<(), WorkerError> {
        let message = Message::Subscribe(Subscription { conn, channel });
        self.command(node, &message, None)
    }

    /// UNSUBSCRIBE connection `conn` of `node` from `channel`.
    pub fn unsubscribe(
        &mut self,
        node: NodeId,
        conn: u64,
        channel: &str,
    ) -> Result<(), WorkerError> {
        let message = Message::Unsubscribe(Subscription { conn, channel });
        self.command(node, &message, None)
    }

    /// CLOSE connection `conn` of `node` with `code` (one a Close frame
    /// may carry) and `reason` (at most 123 bytes); a DISCONNECT follows.
    pub fn close(
        &mut self,
        node: NodeId,
        conn: u64,
        code: CloseCode,
        reason: &str,
    ) -> Result<(), WorkerError> {
        let message = Message::Close(Close { conn, code, reason });
        self.command(node, &message, None)
    }

    /// ACL_COMMAND `op` with its three argument lists (see
    /// [`AclOp::arity`]) to `node`, tagged `request`; the node answers with
    /// [`Event::AclResult`], or with ERROR FORBIDDEN unless this worker
    /// signs with one of the node's admin keys.
    pub fn acl_command(
        &mut self,
        node: NodeId,
        request: u64,
        op: AclOp,
        args: [&[&str]; 3],
    ) -> Result<(), WorkerError> {
        let message = Message::AclCommand(AclCommand {
            request,
            op,
            args: args.map(List::from),
        });
        self.command(node, &message, None)
    }

    /// AUTH_REPLY to `node`'s AUTH `request`: `allow` with the client's
    /// `user` (1-256 bytes) and `roles` (at most 32, each 1-64 bytes), or
    /// a refusal (`allow` false; user and roles are then ignored by the
    /// node, send them empty).
    pub fn auth_reply(
        &mut self,
        node: NodeId,
        request: u64,
        allow: bool,
        user: &str,
        roles: &[&str],
    ) -> Result<(), WorkerError> {
        let message = Message::AuthReply(AuthReply {
            request,
            allow,
            user,
            roles: List::from(roles),
        });
        self.command(node, &message, None)
    }

    /// Leave: BYE to every node that has this worker registered, then
    /// close the sockets, giving the BYEs up to a second to leave.
    pub fn bye(mut self) {
        for index in 0..self.nodes.len() {
            if self.node_info(NodeId(index)).is_none() {
                continue;
            }
            if let Err(why) = self.transmit(index, &Message::Bye, false) {
                warn!("{}: BYE not sent: {why}", self.nodes[index].endpoint);
            }
            if let Phase::Linked { socket, .. } = &self.nodes[index].phase {
                // Linger 0 would drop the BYE still queued (section 1).
                let _ = socket.set_linger(millis_i32(BYE_LINGER));
            }
        }
        info!("worker {:016x} leaving", self.instance);
        // Dropping the sockets, then the context, waits for the BYEs.
    }

    /// Whether `node` is registered on a version 2 link.
    fn batches(&self, node: NodeId) -> bool {
        self.node_info(node).is_some() && self.nodes[node.0].version >= VERSION_2
    }

    /// Appends a reply to `node`'s open batch, sending the batch first
    /// when the reply would not fit.
    fn batch(&mut self, node: NodeId, conn: u64, payload: Payload<'_>) -> Result<(), WorkerError> {
        let len = payload.as_bytes().len();
        let max = self.node_info(node).map_or(0, |info| info.max_payload);
        if len > max as usize {
            return Err(WorkerError::TooBig { node, len, max });
        }
        if conn == 0 {
            return Err(WorkerError::Invalid(DecodeError::ZeroConnId));
        }
        if !self.nodes[node.0].batch.fits(len) {
            self.flush(node.0)?;
        }
        self.nodes[node.0].batch.push(conn, payload);
        Ok(())
    }

    /// Sends node `index`'s open batch, if any, as one SENDS, waiting up
    /// to the send timeout for a full pipe as a [`Worker::send`] does,
    /// whatever the message that follows it: replies matter more than a
    /// heartbeat that would not wait. A batch that does not go is logged.
    fn flush(&mut self, index: usize) -> Result<(), WorkerError> {
        if self.nodes[index].batch.is_empty() {
            return Ok(());
        }
        let mut batch = std::mem::take(&mut self.nodes[index].batch);
        let sent = self.transmit_now(index, &Message::Sends(batch.batch()), true);
        if let Err(why) = &sent {
            warn!(
                "{}: a batch of replies lost: {why}",
                self.nodes[index].endpoint
            );
        }
        batch.clear();
        self.nodes[index].batch = batch;
        sent
    }

    /// Sends every node's open batch: the worker is about to read or wait.
    fn flush_all(&mut self) {
        for index in 0..self.nodes.len() {
            // A failure was logged by `flush`, and no caller waits for it.
            let _ = self.flush(index);
        }
    }

    /// Send a command to a registered node, checking the payload size.
    fn command(
        &mut self,
        node: NodeId,
        message: &Message<'_>,
        payload: Option<Payload<'_>>,
    ) -> Result<(), WorkerError> {
        let entry = self
            .nodes
            .get(node.0)
            .ok_or(WorkerError::UnknownNode(node))?;
        let Phase::Linked {
            welcome: Some(info),
            ..
        } = &entry.phase
        else {
            return Err(WorkerError::NotReady(node));
        };
        if let Some(payload) = payload {
            let len = payload.as_bytes().len();
            if len > info.max_payload as usize {
                let max = info.max_payload;
                return Err(WorkerError::TooBig { node, len, max });
            }
        }
        self.transmit(node.0, message, true)
    }

    /// Encode (and sign) `message` and send it to node `index` after the
    /// node's open batch; `wait` allows blocking up to the send timeout
    /// on a full pipe.
    fn transmit(
        &mut self,
        index: usize,
        message: &Message<'_>,
        wait: bool,
    ) -> Result<(), WorkerError> {
        self.flush(index)?;
        self.transmit_now(index, message, wait)
    }

    /// [`Worker::transmit`] without the batch.
    fn transmit_now(
        &mut self,
        index: usize,
        message: &Message<'_>,
        wait: bool,
    ) -> Result<(), WorkerError> {
        let node = &mut self.nodes[index];
        let Phase::Linked { socket, welcome } = &node.phase else {
            return Err(WorkerError::NotReady(node.id));
        };
        let recipient = match (message, welcome) {
            (Message::Ready(_), _) => 0,
            (_, Some(info)) => info.boot,
            (_, None) => return Err(WorkerError::NotReady(node.id)),
        };
        let version = node.version;
        match &mut self.signer {
            Some(signer) => signer.encode(version, message, recipient, unix_ms(), &mut self.out),
            None => encode_in(version, message, &mut self.out),
        }
        .map_err(WorkerError::Invalid)?;
        let flags = if wait { 0 } else { zmq::DONTWAIT };
        let last = self.out.len().saturating_sub(1);
        for (position, frame) in self.out.iter().enumerate() {
            let more = if position < last { zmq::SNDMORE } else { 0 };
            // Only the first frame can meet a full pipe: ZeroMQ takes
            // the rest of a multipart message once it took the first.
            socket
                .send(frame, flags | more)
                .map_err(|error| match error {
                    zmq::Error::EAGAIN => WorkerError::Full(node.id),
                    other => socket_error("send")(other),
                })?;
        }
        node.sent = Instant::now();
        Ok(())
    }

    fn send_ready(&mut self, index: usize) {
        // Lent out while `transmit` borrows the worker.
        let (name, services) = (
            std::mem::take(&mut self.name),
            std::mem::take(&mut self.services),
        );
        let list: Vec<&str> = services.iter().map(String::as_str).collect();
        let message = Message::Ready(Ready {
            instance: self.instance,
            name: &name,
            services: List::from(&list[..]),
        });
        let sent = self.transmit(index, &message, false);
        drop(list);
        (self.name, self.services) = (name, services);
        if let Err(why) = sent {
            warn!("{}: READY not sent: {why}", self.nodes[index].endpoint);
        }
    }
}

impl std::fmt::Debug for Worker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Worker")
            .field("instance", &format_args!("{:016x}", self.instance))
            .field("name", &self.name)
            .field("services", &self.services)
            .field(
                "endpoints",
                &self.nodes.iter().map(|n| &n.endpoint).collect::<Vec<_>>(),
            )
            .field("signed", &self.signer.is_some())
            .finish()
    }
}

impl Node {
    /// Heartbeat interval and liveness: the node's, once it said them.
    fn timing(&self, defaults: &Timing) -> (Duration, u8) {
        match &self.phase {
            Phase::Linked {
                welcome: Some(info),
                ..
            } => (info.heartbeat, info.liveness),
            _ => (defaults.heartbeat, defaults.liveness),
        }
    }
}

pub(crate) fn millis_i32(duration: Duration) -> i32 {
    i32::try_from(duration.as_millis()).unwrap_or(i32::MAX)
}

/// Milliseconds since the Unix epoch, for signatures.
pub(crate) fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| {
            u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
        })
}

/// A random instance id, never 0: the standard library's randomly keyed
/// SipHash over the clock and the process id.
fn random_instance() -> u64 {
    let state = RandomState::new();
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_nanos());
    (0u64..)
        .map(|salt| {
            let mut hasher = state.build_hasher();
            hasher.write_u128(nanos);
            hasher.write_u32(std::process::id());
            hasher.write_u64(salt);
            hasher.finish()
        })
        .find(|&id| id != 0)
        .unwrap_or(1)
}
