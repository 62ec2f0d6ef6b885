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

use log::{debug, error, info, warn};

use averyws_protocol::batch::{BatchBuilder, MAX_BATCHED_PAYLOAD};
use averyws_protocol::codec::{decode, encode_in, parse_head, DecodeError, Frames};
use averyws_protocol::curve::{self, KeyPair};
use averyws_protocol::message::{
    is_reserved_service, is_service_name, AclCommand, AuthReply, Author, Close, HttpHeader, List,
    Message, MessageType, Publish, Reactors, Ready, SendTo, Subscription, MAX_CONN_IDS, MAX_FRAMES,
    MAX_SERVICES, VERSION, VERSION_2, VERSION_3,
};
use averyws_protocol::siblings::siblings;
use averyws_protocol::signing::{Signer, Verifier, VerifyError};
// What the API below names, so a worker needs no other crate of ours; the
// rest of the protocol is `averyws_worker::protocol`.
pub use averyws_protocol as protocol;
pub use averyws_protocol::message::{AclOp, AclStatus, ErrorCode, Initiator, Payload};
pub use averyws_protocol::signing::{KeyRing, ReplayPolicy};
pub use averyws_protocol::CloseCode;

mod cli;
pub use cli::{cli_main, echo, run, Handler, WorkerArgs};

/// The node endpoint used when none is given.
pub const DEFAULT_ENDPOINT: &str = "tcp://127.0.0.1:7100";
/// Heartbeat interval used until a node's WELCOME says otherwise.
pub const DEFAULT_HEARTBEAT: Duration = Duration::from_millis(1000);
/// Liveness used until a node's WELCOME says otherwise.
pub const DEFAULT_LIVENESS: u8 = 3;
/// First wait before reconnecting to a dead node (section 6).
pub const RECONNECT_INITIAL: Duration = Duration::from_secs(1);
/// Longest wait before reconnecting to a dead node (section 6).
pub const RECONNECT_MAX: Duration = Duration::from_secs(32);
/// Default largest frame accepted from a node (`ZMQ_MAXMSGSIZE`): four
/// times the node's default largest message. A node that sends a larger
/// frame is disconnected by ZeroMQ, which reconnects.
pub const DEFAULT_MAX_FRAME: u64 = 64 << 20;

/// Default [`Config::max_nodes`]: a server runs at most 256 reactors.
pub const DEFAULT_MAX_NODES: usize = 256;

/// Shortest heartbeat interval taken from a WELCOME, so that a zero cannot
/// make the worker spin.
const MIN_HEARTBEAT: Duration = Duration::from_millis(10);
/// How long [`Worker::bye`] lets the BYE messages drain before closing.
const BYE_LINGER: Duration = Duration::from_secs(1);
/// At most one log line per drop reason and node this often (section 10).
const DROP_LOG_EVERY: Duration = Duration::from_secs(10);
/// Most messages handled in one round of [`Worker::poll`] before the
/// timers are looked at again.
const RECV_BUDGET: usize = 256;

/// How a [`Worker`] is set up. [`Config::new`] fills in the defaults.
#[derive(Debug, Clone)]
pub struct Config {
    /// One endpoint per node (`tcp://host:port` or `ipc://path`); the
    /// worker connects one DEALER to each, and to each sibling reactor a
    /// version 3 node names, so one endpoint per averyws process is
    /// enough. A node's [`NodeId`] is its index here.
    pub endpoints: Vec<String>,
    /// The services announced in READY: 1-32 names of
    /// `A-Z a-z 0-9 . _ -`, none reserved (`echo`).
    pub services: Vec<String>,
    /// The worker's name in READY, for the node's logs: 1-64 bytes.
    pub name: String,
    /// Keys to sign and verify every message with, when the nodes have a
    /// key file; `None` for an unsigned link.
    pub keys: Option<KeyRing>,
    /// With keys, connect with CURVE as the signing key's client keypair
    /// (docs/protocol.md section 1). Default true; false only for nodes
    /// run with `--backend-no-curve`.
    pub curve: bool,
    /// Skew bound and replay-table size of the verifier.
    pub replay: ReplayPolicy,
    /// Heartbeat interval until a WELCOME gives the node's.
    pub heartbeat: Duration,
    /// Liveness until a WELCOME gives the node's.
    pub liveness: u8,
    /// First wait before reconnecting to a dead node; doubles while the
    /// node stays silent.
    pub reconnect_initial: Duration,
    /// Longest wait before reconnecting.
    pub reconnect_max: Duration,
    /// How long a command may wait for room in a full pipe to a node
    /// before it fails with [`WorkerError::Full`] (section 7).
    pub send_timeout: Duration,
    /// Largest frame accepted from a node, in bytes (`ZMQ_MAXMSGSIZE`).
    pub max_frame: u64,
    /// Most nodes linked at once, the configured endpoints and the
    /// sibling reactors found since (section 14) together, so that a
    /// WELCOME claiming 65,535 reactors cannot open as many sockets.
    /// Default [`DEFAULT_MAX_NODES`].
    pub max_nodes: usize,
}

impl Config {
    /// A configuration with the defaults: the process's
    /// [`default_name`], no keys (CURVE once there are), heartbeat 1 s, liveness 3, reconnect
    /// after 1 s doubling to 32 s, send timeout 1 s.
    pub fn new(endpoints: Vec<String>, services: Vec<String>) -> Self {
        Config {
            endpoints,
            services,
            name: default_name("worker"),
            keys: None,
            curve: true,
            replay: ReplayPolicy::default(),
            heartbeat: DEFAULT_HEARTBEAT,
            liveness: DEFAULT_LIVENESS,
            reconnect_initial: RECONNECT_INITIAL,
            reconnect_max: RECONNECT_MAX,
            send_timeout: Duration::from_secs(1),
            max_frame: DEFAULT_MAX_FRAME,
            max_nodes: DEFAULT_MAX_NODES,
        }
    }
}

/// A node, by the index of its endpoint in [`Config::endpoints`] (siblings
/// found later come after them, in the order found). It stays
/// the same across reconnects and node restarts; connection ids do not.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId(pub usize);

impl std::fmt::Display for NodeId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "node {}", self.0)
    }
}

/// What a node's WELCOME said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeInfo {
    /// The node's boot id: connection ids belong to it.
    pub boot: u64,
    /// Heartbeat interval, both ways (at least 10 ms).
    pub heartbeat: Duration,
    /// Intervals of silence after which either side is dead (at least 1).
    pub liveness: u8,
    /// Largest SEND or PUBLISH payload the node accepts, in bytes.
    pub max_payload: u32,
    /// The node's name.
    pub name: String,
    /// Which reactor of its process the node is ([`Reactors::ALONE`]
    /// from a node older than version 3).
    pub reactors: Reactors,
}

/// What [`Worker::poll`] returns: the node's events, owned.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// CONNECT: a client connection is now this worker's.
    Connect(Connected),
    /// MESSAGE: a client sent a data message.
    Message {
        /// The node holding the connection.
        node: NodeId,
        /// The connection.
        conn: u64,
        /// The whole message.
        payload: OwnedPayload,
    },
    /// DISCONNECT: a client connection ended; its id is dead.
    Disconnect {
        /// The node that held the connection.
        node: NodeId,
        /// The connection.
        conn: u64,
        /// The close code (1005: none, 1006: no Close at all).
        code: CloseCode,
        /// Who ended it.
        initiator: Initiator,
        /// The close reason.
        reason: String,
    },
    /// ERROR: a command was not carried out (UNKNOWN_PEER is handled
    /// here and shows as [`Event::NodeReset`] instead).
    Error {
        /// The node that answered.
        node: NodeId,
        /// What went wrong; treat unknown codes as generic failures.
        code: ErrorCode,
        /// The type byte of the message it answers, 0 if none.
        about: u8,
        /// For humans.
        detail: String,
        /// The connections concerned.
        conns: Vec<u64>,
    },
    /// ACL_RESULT: the answer to [`Worker::acl_command`].
    AclResult {
        /// The node that answered.
        node: NodeId,
        /// The request id the command carried.
        request: u64,
        /// Done, refused, or not persisted (and so not done).
        status: AclStatus,
        /// For EXPLAIN, whether the permission is granted.
        decision: Option<bool>,
        /// Why it was not done; empty when done.
        detail: String,
        /// For EXPLAIN, the explanation for people.
        explanation: String,
    },
    /// AUTH: judge a client's upgrade request (this worker serves the
    /// node's `--auth-service`); answer with [`Worker::auth_reply`].
    Auth {
        /// The node asking.
        node: NodeId,
        /// The request id, for the reply.
        request: u64,
        /// The request path, raw.
        path: String,
        /// The query after `?`, raw; empty if none.
        query: String,
        /// The client's address, `ip:port`.
        peer: String,
        /// The forwarded headers (`origin`, `user-agent`, `cookie`, when
        /// sent): lowercase name, raw value.
        headers: Vec<(String, Vec<u8>)>,
    },
    /// The node restarted, forgot this worker, left or went silent: every
    /// connection it had assigned is gone and no event about them will
    /// come. Drop all state keyed by that node's connections. The worker
    /// registers again by itself.
    NodeReset {
        /// The node.
        node: NodeId,
    },
}

/// A CONNECT, owned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connected {
    /// The node holding the connection.
    pub node: NodeId,
    /// The connection id, unique within the node's boot.
    pub conn: u64,
    /// The connection comes from a worker that died: application state
    /// for it may be lost.
    pub reassigned: bool,
    /// The service its path was routed to.
    pub service: String,
    /// The node's name.
    pub node_name: String,
    /// The client's address, `ip:port`.
    pub peer: String,
    /// The request path, raw.
    pub path: String,
    /// The query after `?`, raw (not percent-decoded); empty if none.
    pub query: String,
    /// The negotiated subprotocol; empty if none.
    pub subprotocol: String,
    /// The authenticated user; empty if anonymous.
    pub user: String,
    /// The user's roles.
    pub roles: Vec<String>,
    /// The forwarded request headers: lowercase name, raw value.
    pub headers: Vec<(String, Vec<u8>)>,
}

impl Connected {
    /// The raw value of the first query parameter called `key` (`a=1&b=2`),
    /// not percent-decoded; `Some("")` for a bare `key` or `key=`.
    pub fn query_param(&self, key: &str) -> Option<&str> {
        self.query.split('&').find_map(|pair| {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            (name == key).then_some(value)
        })
    }

    /// The value of the forwarded header `name` (lowercase), if any.
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers
            .iter()
            .find(|(header, _)| header == name)
            .map(|(_, value)| value.as_slice())
    }
}

/// A data message, owned: text (valid UTF-8) or binary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OwnedPayload {
    /// A text message.
    Text(String),
    /// A binary message.
    Binary(Vec<u8>),
}

impl OwnedPayload {
    /// Borrowed, as the commands take it.
    pub fn as_payload(&self) -> Payload<'_> {
        match self {
            OwnedPayload::Text(text) => Payload::Text(text),
            OwnedPayload::Binary(bytes) => Payload::Binary(bytes),
        }
    }

    /// The payload's bytes.
    pub fn as_bytes(&self) -> &[u8] {
        self.as_payload().as_bytes()
    }
}

impl From<Payload<'_>> for OwnedPayload {
    fn from(payload: Payload<'_>) -> Self {
        match payload {
            Payload::Text(text) => OwnedPayload::Text(text.to_owned()),
            Payload::Binary(bytes) => OwnedPayload::Binary(bytes.to_vec()),
        }
    }
}

/// Why a worker could not start, or a command was not sent.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WorkerError {
    /// The configuration cannot work (the text says why).
    Config(String),
    /// The key file could not be read or parsed.
    KeyFile(String),
    /// Signal handlers could not be installed.
    Signal(String),
    /// A ZeroMQ call failed.
    Socket {
        /// The call.
        op: &'static str,
        /// libzmq's description of the error.
        reason: &'static str,
    },
    /// No such node: the id is not an index of [`Config::endpoints`].
    UnknownNode(NodeId),
    /// The node has not welcomed this worker (yet, or any more): nothing
    /// was sent (section 4: only READY and HEARTBEAT go before WELCOME).
    NotReady(NodeId),
    /// The pipe to the node stayed full for [`Config::send_timeout`]:
    /// nothing was sent (section 7).
    Full(NodeId),
    /// The payload is larger than the node's `max_payload`: nothing was
    /// sent.
    TooBig {
        /// The node.
        node: NodeId,
        /// The payload's length.
        len: usize,
        /// The node's limit.
        max: u32,
    },
    /// The command breaks a cap of the protocol (channel, reason, close
    /// code, connection id 0, ...).
    Invalid(DecodeError),
}

impl std::fmt::Display for WorkerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WorkerError::Config(why) => write!(f, "invalid configuration: {why}"),
            WorkerError::KeyFile(why) => write!(f, "key file: {why}"),
            WorkerError::Signal(why) => write!(f, "signal handlers: {why}"),
            WorkerError::Socket { op, reason } => write!(f, "zmq {op}: {reason}"),
            WorkerError::UnknownNode(node) => write!(f, "{node}: no such node"),
            WorkerError::NotReady(node) => write!(f, "{node}: not registered"),
            WorkerError::Full(node) => write!(f, "{node}: pipe full"),
            WorkerError::TooBig { node, len, max } => {
                write!(f, "{node}: payload of {len} bytes over its limit of {max}")
            }
            WorkerError::Invalid(why) => write!(f, "invalid command: {why}"),
        }
    }
}

impl std::error::Error for WorkerError {}

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

    /// Heartbeats, liveness and reconnects, for every node.
    fn tick(&mut self, now: Instant) {
        for index in 0..self.nodes.len() {
            let node = &mut self.nodes[index];
            let (interval, liveness) = node.timing(&self.timing);
            let silent = now.saturating_duration_since(node.heard);
            match &node.phase {
                Phase::Waiting { retry_at } if now >= *retry_at => self.reconnect(index, now),
                Phase::Waiting { .. } => {}
                Phase::Linked { .. } if silent > interval * u32::from(liveness) => {
                    let why = format!("silent for {} ms", silent.as_millis());
                    self.lose(index, now, &why);
                }
                Phase::Linked { welcome, .. } => {
                    if now.saturating_duration_since(node.sent) < interval {
                        continue;
                    }
                    let welcomed = welcome.is_some();
                    // Count the attempt even if the pipe is full, so a
                    // stuck node does not make this loop spin.
                    node.sent = now;
                    if !welcomed {
                        self.send_ready(index);
                        continue;
                    }
                    let heartbeat = Message::Heartbeat {
                        boot: self.instance,
                    };
                    if let Err(why) = self.transmit(index, &heartbeat, false) {
                        debug!("{}: HEARTBEAT not sent: {why}", self.nodes[index].endpoint);
                    }
                }
            }
        }
    }

    /// Open a new DEALER to a node whose backoff ran out.
    fn reconnect(&mut self, index: usize, now: Instant) {
        let timing = self.timing;
        let node = &mut self.nodes[index];
        match open(&self.context, &node.endpoint, &timing, self.curve.as_ref()) {
            Ok(socket) => {
                info!("{}: reconnecting", node.endpoint);
                node.phase = Phase::Linked {
                    socket,
                    welcome: None,
                };
                node.heard = now;
                node.sent = now;
                // The node may have been upgraded meanwhile.
                node.version = VERSION_3;
                self.send_ready(index);
            }
            Err(why) => {
                warn!("{}: cannot reconnect: {why}", node.endpoint);
                node.phase = Phase::Waiting {
                    retry_at: now + node.backoff,
                };
                node.backoff = (node.backoff * 2).min(timing.reconnect_max);
            }
        }
    }

    /// The node is dead (silence or BYE): drop its state and its socket,
    /// and reconnect after the backoff, which doubles for next time.
    fn lose(&mut self, index: usize, now: Instant, why: &str) {
        self.reset(index);
        let max = self.timing.reconnect_max;
        let node = &mut self.nodes[index];
        warn!(
            "{}: node dead ({why}); reconnecting in {} ms",
            node.endpoint,
            node.backoff.as_millis()
        );
        // Dropping the socket closes it (linger 0).
        node.phase = Phase::Waiting {
            retry_at: now + node.backoff,
        };
        node.backoff = (node.backoff * 2).min(max);
    }

    /// Forget node `index`'s registration; if it had one, queue
    /// [`Event::NodeReset`]. Returns whether it had one.
    fn reset(&mut self, index: usize) -> bool {
        let node = &mut self.nodes[index];
        let Phase::Linked { welcome, .. } = &mut node.phase else {
            return false;
        };
        if welcome.take().is_none() {
            return false;
        }
        node.batch.clear();
        let id = node.id;
        let queued = self
            .pending
            .iter()
            .any(|event| matches!(event, Event::NodeReset { node } if *node == id));
        if !queued {
            self.pending.push_back(Event::NodeReset { node: id });
        }
        true
    }

    /// The node restarted or forgot this worker: drop its state and
    /// register again.
    fn restart(&mut self, index: usize, why: &str) {
        info!("{}: {why}: registering again", self.nodes[index].endpoint);
        self.reset(index);
        self.send_ready(index);
    }

    /// Read and handle messages until one makes an event, none is left,
    /// or the budget is spent.
    fn receive(&mut self) -> Option<Event> {
        // The end of the worker's turn: its replies go before it reads on.
        self.flush_all();
        let count = self.nodes.len();
        let mut frames = std::mem::take(&mut self.inbox);
        let mut event = None;
        'budget: for _ in 0..RECV_BUDGET {
            for step in 0..count {
                let index = (self.next_node + step) % count;
                let Some(too_many) = self.recv_one(index, &mut frames) else {
                    continue;
                };
                self.next_node = (index + 1) % count;
                event = self.handle(index, &frames, too_many);
                frames.clear();
                if event.is_some() || !self.pending.is_empty() {
                    break 'budget;
                }
                continue 'budget;
            }
            break;
        }
        self.inbox = frames;
        event
    }

    /// One message from node `index` into `frames`, keeping at most
    /// [`MAX_FRAMES`] of them: `Some(true)` when there were more.
    fn recv_one(&mut self, index: usize, frames: &mut Vec<zmq::Message>) -> Option<bool> {
        let Phase::Linked { socket, .. } = &self.nodes[index].phase else {
            return None;
        };
        frames.clear();
        let mut too_many = false;
        loop {
            let part = match socket.recv_msg(zmq::DONTWAIT) {
                Ok(part) => part,
                Err(zmq::Error::EAGAIN) if frames.is_empty() && !too_many => return None,
                Err(why) => {
                    warn!("{}: receive failed: {why}", self.nodes[index].endpoint);
                    return None;
                }
            };
            let more = part.get_more();
            if frames.len() < MAX_FRAMES {
                frames.push(part);
            } else {
                too_many = true;
            }
            if !more {
                return Some(too_many);
            }
        }
    }

    /// Check one message from node `index` (section 9's order, then the
    /// direction) and act on it.
    fn handle(&mut self, index: usize, frames: &[zmq::Message], too_many: bool) -> Option<Event> {
        if too_many {
            self.drop_message(index, "too many frames", "");
            return None;
        }
        let views: Vec<&[u8]> = frames.iter().map(|frame| &frame[..]).collect();
        let verdict = self
            .verifier
            .as_mut()
            .map(|verifier| verifier.verify(&views, unix_ms()));
        let sender = match verdict {
            Some(Ok(verified)) => Some(verified.sender),
            Some(Err(why)) => {
                self.drop_message(index, verify_reason(why), &why.to_string());
                return None;
            }
            None => {
                if parse_head(&views).is_ok_and(|head| head.signed) {
                    self.drop_message(index, "signed on an unsigned link", "");
                    return None;
                }
                None
            }
        };
        let message = match decode(&views) {
            Ok(message) => message,
            Err(why) => {
                self.drop_message(index, "malformed", &why.to_string());
                return None;
            }
        };
        if !message.message_type().sent_by_node() {
            let kind = format!("{:?}", message.message_type());
            self.drop_message(index, "type a node may not send", &kind);
            return None;
        }
        self.on_message(index, message, sender)
    }

    /// Act on an authentic, well-formed message from node `index`.
    /// `sender` is the signature's sender id, on a signed link.
    fn on_message(
        &mut self,
        index: usize,
        message: Message<'_>,
        sender: Option<u64>,
    ) -> Option<Event> {
        let node = &self.nodes[index];
        let Phase::Linked { welcome, .. } = &node.phase else {
            return None;
        };
        let known = welcome.as_ref().map(|info| info.boot);
        let id = node.id;
        // A signature binds the message to the sender's boot: it must be
        // the boot the message states, or the one this worker knows.
        let boot_ok = match (&message, sender) {
            (_, None) => true,
            (Message::Heartbeat { boot }, Some(sender)) => sender == *boot,
            (Message::Welcome(welcome), Some(sender)) => sender == welcome.boot,
            (Message::Error(error), _) if error.code == ErrorCode::UNKNOWN_PEER => true,
            (_, Some(sender)) => known.is_none_or(|boot| boot == sender),
        };
        if !boot_ok {
            self.drop_message(index, "signed by another boot", "");
            return None;
        }
        let node = &mut self.nodes[index];
        node.heard = Instant::now();
        node.backoff = self.timing.reconnect_initial;
        match message {
            Message::Heartbeat { boot } => {
                if known.is_some_and(|known| known != boot) {
                    self.restart(index, "HEARTBEAT from a new boot");
                }
                None
            }
            Message::Bye => {
                self.lose(index, Instant::now(), "it said BYE");
                None
            }
            Message::Welcome(welcome_message) => {
                let info = NodeInfo {
                    boot: welcome_message.boot,
                    heartbeat: Duration::from_millis(welcome_message.heartbeat_ms.into())
                        .max(MIN_HEARTBEAT),
                    liveness: welcome_message.liveness.max(1),
                    max_payload: welcome_message.max_payload,
                    name: welcome_message.node.to_owned(),
                    reactors: welcome_message.reactors,
                };
                let new_boot = known.is_some_and(|known| known != info.boot);
                if known.is_none() {
                    info!(
                        "{}: registered with node {:?} (boot {:016x}, heartbeat {} ms, liveness {}, max payload {})",
                        self.nodes[index].endpoint,
                        info.name,
                        info.boot,
                        info.heartbeat.as_millis(),
                        info.liveness,
                        info.max_payload
                    );
                }
                if new_boot {
                    // Section 4: drop the old boot's state and READY again
                    // (the new boot's WELCOME answers it, and changes
                    // nothing then).
                    self.restart(index, "WELCOME from a new boot");
                }
                let reactors = info.reactors;
                if let Phase::Linked { welcome, .. } = &mut self.nodes[index].phase {
                    *welcome = Some(info);
                }
                self.add_siblings(index, reactors);
                // Section 4: a signed node registers this worker once it has
                // a message signed for its boot; this HEARTBEAT is it.
                let heartbeat = Message::Heartbeat {
                    boot: self.instance,
                };
                if let Err(why) = self.transmit(index, &heartbeat, false) {
                    debug!("{}: HEARTBEAT not sent: {why}", self.nodes[index].endpoint);
                }
                None
            }
            Message::Error(error)
                if error.code == ErrorCode::UNSUPPORTED_VERSION
                    && error.about == MessageType::Ready as u8
                    && known.is_none() =>
            {
                self.downgrade(index, error.detail);
                None
            }
            Message::Error(error) if error.code == ErrorCode::UNKNOWN_PEER => {
                // Not registered yet: the READY repeated every heartbeat
                // interval is on its way, do not add to it.
                if known.is_some() {
                    self.restart(index, "ERROR UNKNOWN_PEER");
                }
                None
            }
            Message::Error(error) => {
                if error.code == ErrorCode::RESERVED_SERVICE {
                    error!(
                        "{}: READY refused, reserved service {:?}",
                        self.nodes[index].endpoint, error.detail
                    );
                }
                Some(Event::Error {
                    node: id,
                    code: error.code,
                    about: error.about,
                    detail: error.detail.to_owned(),
                    conns: error.conns.iter().collect(),
                })
            }
            _ if known.is_none() => {
                self.drop_message(index, "event before WELCOME", "");
                None
            }
            Message::Connect(connect) => Some(Event::Connect(Connected {
                node: id,
                conn: connect.conn,
                reassigned: connect.reassigned,
                service: connect.service.to_owned(),
                node_name: connect.node.to_owned(),
                peer: connect.peer.to_owned(),
                path: connect.path.to_owned(),
                query: connect.query.to_owned(),
                subprotocol: connect.subprotocol.to_owned(),
                user: connect.user.to_owned(),
                roles: connect.roles.iter().map(str::to_owned).collect(),
                headers: owned_headers(&connect.headers),
            })),
            Message::Message(data) => Some(Event::Message {
                node: id,
                conn: data.conn,
                payload: data.payload.into(),
            }),
            Message::Messages(batch) => {
                let events = batch.records().map(|(conn, payload)| Event::Message {
                    node: id,
                    conn,
                    payload: payload.into(),
                });
                self.pending.extend(events);
                self.pending.pop_front()
            }
            Message::Disconnect(disconnect) => Some(Event::Disconnect {
                node: id,
                conn: disconnect.conn,
                code: disconnect.code,
                initiator: disconnect.initiator,
                reason: disconnect.reason.to_owned(),
            }),
            Message::Auth(auth) => Some(Event::Auth {
                node: id,
                request: auth.request,
                path: auth.path.to_owned(),
                query: auth.query.to_owned(),
                peer: auth.peer.to_owned(),
                headers: owned_headers(&auth.headers),
            }),
            Message::AclResult(result) => Some(Event::AclResult {
                node: id,
                request: result.request,
                status: result.status,
                decision: result.decision,
                detail: result.detail.to_owned(),
                explanation: result.explanation.to_owned(),
            }),
            // `handle` let only node-sent types through.
            _ => None,
        }
    }

    /// The node speaks an older version than this link's READY (section
    /// 11): READY again in the highest older one it lists.
    fn downgrade(&mut self, index: usize, spoken: &str) {
        let node = &mut self.nodes[index];
        let older = spoken
            .split(' ')
            .filter_map(|version| version.parse::<u8>().ok())
            .filter(|&version| (VERSION..node.version).contains(&version))
            .max();
        let Some(version) = older else {
            warn!("{}: node speaks protocol {spoken:?} only", node.endpoint);
            return;
        };
        let without = match version {
            VERSION => "no batches, no siblings",
            _ => "no siblings: give every reactor's endpoint",
        };
        info!(
            "{}: node speaks protocol {spoken}: using {version}, {without}",
            node.endpoint
        );
        node.version = version;
        self.send_ready(index);
    }

    fn drop_message(&mut self, index: usize, reason: &'static str, detail: &str) {
        let endpoint = &self.nodes[index].endpoint;
        self.drops.record(index, endpoint, reason, detail);
    }

    /// The earliest timer of any node.
    fn next_deadline(&self) -> Instant {
        let far = Instant::now() + Duration::from_secs(3600);
        self.nodes
            .iter()
            .map(|node| match node.phase {
                Phase::Waiting { retry_at } => retry_at,
                Phase::Linked { .. } => {
                    let (interval, liveness) = node.timing(&self.timing);
                    let dead =
                        node.heard + interval * u32::from(liveness) + Duration::from_millis(1);
                    dead.min(node.sent + interval)
                }
            })
            .fold(far, Instant::min)
    }

    /// Block until a socket is readable or `timeout` passed. Whether a
    /// signal interrupted the wait.
    fn wait(&self, timeout: Duration) -> bool {
        let mut items: Vec<zmq::PollItem<'_>> = self
            .nodes
            .iter()
            .filter_map(|node| match &node.phase {
                Phase::Linked { socket, .. } => Some(socket.as_poll_item(zmq::POLLIN)),
                Phase::Waiting { .. } => None,
            })
            .collect();
        // Round up, so a sub-millisecond wait does not spin.
        let millis = timeout.as_micros().div_ceil(1000);
        match zmq::poll(&mut items, i64::try_from(millis).unwrap_or(i64::MAX)) {
            Ok(_) => false,
            Err(zmq::Error::EINTR) => true,
            Err(why) => {
                warn!("zmq poll failed: {why}");
                std::thread::sleep(timeout);
                false
            }
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

/// Counts dropped messages and logs each reason and node at most once per
/// [`DROP_LOG_EVERY`], with the count since the last line. Reasons are a
/// fixed set of strings, so the table stays small.
#[derive(Default)]
struct DropLog {
    total: u64,
    lines: Vec<DropLine>,
}

struct DropLine {
    node: usize,
    reason: &'static str,
    unlogged: u64,
    logged: Option<Instant>,
}

impl DropLog {
    fn record(&mut self, node: usize, endpoint: &str, reason: &'static str, detail: &str) {
        self.total += 1;
        let position = self
            .lines
            .iter()
            .position(|line| line.node == node && line.reason == reason);
        let line = match position {
            Some(position) => &mut self.lines[position],
            None => {
                self.lines.push(DropLine {
                    node,
                    reason,
                    unlogged: 0,
                    logged: None,
                });
                let last = self.lines.len() - 1;
                &mut self.lines[last]
            }
        };
        line.unlogged += 1;
        let now = Instant::now();
        if line
            .logged
            .is_none_or(|at| now.saturating_duration_since(at) >= DROP_LOG_EVERY)
        {
            warn!(
                "{endpoint}: dropped {} message(s): {reason}{}{detail}",
                line.unlogged,
                if detail.is_empty() { "" } else { ": " }
            );
            line.unlogged = 0;
            line.logged = Some(now);
        }
    }
}

fn verify_reason(error: VerifyError) -> &'static str {
    match error {
        VerifyError::Header(_) => "bad header",
        VerifyError::Unsigned => "unsigned",
        VerifyError::SignatureFrame => "malformed signature frame",
        VerifyError::UnknownKey => "unknown key id",
        VerifyError::BadSignature => "bad signature",
        VerifyError::WrongRecipient { .. } => "wrong recipient",
        VerifyError::Stale => "stale timestamp",
        VerifyError::Replayed => "replayed",
    }
}

fn check_config(config: &Config) -> Result<(), WorkerError> {
    let fail = |why: String| Err(WorkerError::Config(why));
    if config.endpoints.is_empty() {
        return fail("no node endpoint".into());
    }
    for (index, endpoint) in config.endpoints.iter().enumerate() {
        if config.endpoints[..index].contains(endpoint) {
            return fail(format!("node {endpoint} listed twice"));
        }
    }
    if config.endpoints.len() > config.max_nodes {
        return fail(format!("more than {} node endpoints", config.max_nodes));
    }
    if !(1..=MAX_SERVICES).contains(&config.services.len()) {
        return fail(format!("1-{MAX_SERVICES} services needed"));
    }
    for service in &config.services {
        if !is_service_name(service.as_bytes()) {
            return fail(format!(
                "service {service:?}: 1-64 bytes of A-Z a-z 0-9 . _ -"
            ));
        }
        if is_reserved_service(service) {
            return fail(format!("service {service:?} is reserved"));
        }
    }
    // The READY must encode: this checks the name too.
    let services: Vec<&str> = config.services.iter().map(String::as_str).collect();
    let ready = Message::Ready(Ready {
        instance: 1,
        name: &config.name,
        services: List::from(&services[..]),
    });
    encode_in(VERSION, &ready, &mut Frames::new())
        .map_err(|why| WorkerError::Config(format!("worker name {:?}: {why}", config.name)))
}

/// A DEALER for `endpoint`, set up as section 1 says (no routing id,
/// linger 0, CURVE as `curve` on a signed link) and connected.
fn open(
    context: &zmq::Context,
    endpoint: &str,
    timing: &Timing,
    curve: Option<&KeyPair>,
) -> Result<zmq::Socket, WorkerError> {
    let socket = context
        .socket(zmq::DEALER)
        .map_err(socket_error("socket"))?;
    if let Some(client) = curve {
        curve::connect_as(&socket, client).map_err(socket_error("curve"))?;
    }
    socket.set_linger(0).map_err(socket_error("linger"))?;
    // tcp://[::1]:PORT and other IPv6 endpoints connect only with this on.
    socket.set_ipv6(true).map_err(socket_error("ipv6"))?;
    socket
        .set_sndtimeo(millis_i32(timing.send_timeout))
        .map_err(socket_error("sndtimeo"))?;
    socket
        .set_maxmsgsize(i64::try_from(timing.max_frame).unwrap_or(i64::MAX))
        .map_err(socket_error("maxmsgsize"))?;
    socket.connect(endpoint).map_err(|why| {
        WorkerError::Config(format!("cannot connect to {endpoint:?}: {}", why.message()))
    })?;
    Ok(socket)
}

fn socket_error(op: &'static str) -> impl Fn(zmq::Error) -> WorkerError {
    move |error| WorkerError::Socket {
        op,
        reason: error.message(),
    }
}

fn millis_i32(duration: Duration) -> i32 {
    i32::try_from(duration.as_millis()).unwrap_or(i32::MAX)
}

/// Milliseconds since the Unix epoch, for signatures.
fn unix_ms() -> u64 {
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

/// Header pairs, owned.
fn owned_headers(headers: &List<'_, HttpHeader<'_>>) -> Vec<(String, Vec<u8>)> {
    headers
        .iter()
        .map(|(name, value)| (name.to_owned(), value.to_vec()))
        .collect()
}

/// A worker name for READY: `program@host/pid`, cut to 64 bytes.
pub fn default_name(program: &str) -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|host| host.trim().to_owned())
        .unwrap_or_default();
    let host = if host.is_empty() { "localhost" } else { &host };
    let mut name = format!("{program}@{host}/{}", std::process::id());
    let mut cut = name.len().min(64);
    while !name.is_char_boundary(cut) {
        cut -= 1;
    }
    name.truncate(cut);
    if name.is_empty() {
        name.push_str("worker");
    }
    name
}
