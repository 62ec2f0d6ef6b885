//! What [`crate::Worker::poll`] returns, and the worker's errors.

use std::time::Duration;

use averyws_protocol::codec::DecodeError;
use averyws_protocol::message::{
    AclStatus, ErrorCode, HttpHeader, Initiator, List, Payload, Reactors,
};
use averyws_protocol::CloseCode;

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

/// Header pairs, owned.
pub(crate) fn owned_headers(headers: &List<'_, HttpHeader<'_>>) -> Vec<(String, Vec<u8>)> {
    headers
        .iter()
        .map(|(name, value)| (name.to_owned(), value.to_vec()))
        .collect()
}
