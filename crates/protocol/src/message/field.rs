//! The strings and lists of a message, named for errors, with their
//! length bounds.

use super::{MAX_ACL_NAMES, MAX_CONN_IDS, MAX_HEADERS, MAX_ROLES, MAX_SERVICES};
use crate::batch::MAX_BATCH_BYTES;

/// A string or list of a message, named for errors, with its length bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Field {
    /// READY's worker name: 1-64 bytes.
    WorkerName,
    /// A service name: 1-64 bytes of `A-Z a-z 0-9 . _ -`.
    Service,
    /// READY's list of services: 1-32 entries.
    Services,
    /// A node name: 1-64 bytes.
    Node,
    /// CONNECT's client address: 0-64 bytes.
    Peer,
    /// CONNECT's path: 1-8192 bytes.
    Path,
    /// CONNECT's query: 0-8192 bytes.
    Query,
    /// CONNECT's subprotocol: 0-256 bytes.
    Subprotocol,
    /// CONNECT's user: 0-256 bytes.
    User,
    /// One role: 1-64 bytes.
    Role,
    /// CONNECT's list of roles: 0-32 entries.
    Roles,
    /// A header name: 1-64 bytes, lowercase RFC 9110 token.
    HeaderName,
    /// A header value: 0-8192 bytes, any octets.
    HeaderValue,
    /// CONNECT's list of header pairs: 0-32 entries.
    Headers,
    /// A channel name: 1-256 bytes.
    Channel,
    /// A close reason: 0-123 bytes (a Close frame's 125 less the code).
    Reason,
    /// ERROR's detail: 0-256 bytes.
    Detail,
    /// SEND's connection ids: 1-1024 entries.
    Targets,
    /// ERROR's connection ids: 0-1024 entries.
    Affected,
    /// A payload: at most 2^32 - 1 bytes (the node's own cap is lower, see
    /// [`Welcome::max_payload`](super::Welcome::max_payload)).
    Payload,
    /// A name in an ACL_COMMAND: 1-256 bytes.
    AclName,
    /// An ACL_COMMAND argument list: as its
    /// [`AclOp::arity`](super::AclOp::arity) says, at most 32 entries.
    AclArgs,
    /// ACL_RESULT's explanation: 0-16384 bytes.
    Explanation,
    /// A version 2 records frame: 1-65536 bytes.
    Records,
}

impl Field {
    /// Inclusive bounds, in bytes for strings and entries for lists.
    pub fn bounds(self) -> (usize, usize) {
        match self {
            Field::WorkerName | Field::Service | Field::Node | Field::Role | Field::HeaderName => {
                (1, 64)
            }
            Field::Services => (1, MAX_SERVICES),
            Field::Peer => (0, 64),
            Field::Path => (1, 8192),
            Field::Query | Field::HeaderValue => (0, 8192),
            Field::Subprotocol | Field::User | Field::Detail => (0, 256),
            Field::Roles => (0, MAX_ROLES),
            Field::Headers => (0, MAX_HEADERS),
            Field::Channel => (1, 256),
            Field::Reason => (0, 123),
            Field::Targets => (1, MAX_CONN_IDS),
            Field::Affected => (0, MAX_CONN_IDS),
            Field::Payload => (0, u32::MAX as usize),
            Field::AclName => (1, 256),
            Field::AclArgs => (0, MAX_ACL_NAMES),
            Field::Explanation => (0, 16384),
            Field::Records => (1, MAX_BATCH_BYTES),
        }
    }

    /// Whether `len` is within [`Field::bounds`].
    pub fn fits(self, len: usize) -> bool {
        let (min, max) = self.bounds();
        (min..=max).contains(&len)
    }
}
