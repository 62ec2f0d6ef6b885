//! The values of backend protocol versions 1 to 3: one type per message,
//! the small enums of the wire format and the caps the codec enforces.
//!
//! `docs/protocol.md` is the normative description; every name here is the
//! name it uses. Strings and payloads borrow from the received frames, so a
//! decoded [`Message`] copies nothing.

mod field;
mod list;

pub use super::batch::Batch;
use crate::close::CloseCode;
pub use field::Field;
pub use list::{Item, List};

/// Protocol version 1, byte 0 of every header frame of a v1 link.
pub const VERSION: u8 = 1;

/// Protocol version 2: version 1 plus batches (docs/protocol.md section
/// 13), negotiated in READY.
pub const VERSION_2: u8 = 2;

/// Protocol version 3: version 2 plus the reactor index and count in
/// WELCOME (docs/protocol.md section 14).
pub const VERSION_3: u8 = 3;

/// The versions spoken, as UNSUPPORTED_VERSION lists them.
pub const VERSIONS_SPOKEN: &str = "1 2 3";

/// Whether `version` is one this codec speaks.
pub fn is_spoken(version: u8) -> bool {
    (VERSION..=VERSION_3).contains(&version)
}

/// Header flag: the last frame of the message is a signature frame.
pub const FLAG_SIGNED: u8 = 0x01;

/// CONNECT flag: the connection was moved here from a worker that died.
pub const CONNECT_REASSIGNED: u8 = 0x01;

/// Version 2 PUBLISH flag: author frames follow the payload.
pub const PUBLISH_AUTHORED: u8 = 0x01;

/// Service names a worker may not claim: the built-in routes.
pub const RESERVED_SERVICES: &[&str] = &["echo"];

/// Most frames one v1 message can have: a CONNECT with every role and
/// header pair, plus the signature frame. A multipart message with more
/// frames can be dropped before it is read further.
pub const MAX_FRAMES: usize = 9 + MAX_ROLES + 2 * MAX_HEADERS + 1;

/// Most services one READY may announce.
pub const MAX_SERVICES: usize = 32;
/// Most roles one CONNECT may carry.
pub const MAX_ROLES: usize = 32;
/// Most header pairs one CONNECT may carry.
pub const MAX_HEADERS: usize = 32;
/// Most connection ids one SEND (or ERROR) may carry.
pub const MAX_CONN_IDS: usize = 1024;
/// Most names in one argument list of an ACL_COMMAND.
pub const MAX_ACL_NAMES: usize = 32;
/// Number of argument lists of an ACL_COMMAND.
pub const ACL_ARGS: usize = 3;

/// The type byte of a message (byte 1 of the header frame).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MessageType {
    /// 0x01, both ways: "I am alive".
    Heartbeat = 0x01,
    /// 0x02, both ways: "I am leaving".
    Bye = 0x02,
    /// 0x10, worker to node: announce the services a worker serves.
    Ready = 0x10,
    /// 0x11, node to worker: accept a READY, state the node's parameters.
    Welcome = 0x11,
    /// 0x12, node to worker: a command could not be carried out.
    Error = 0x12,
    /// 0x20, node to worker: a client connection was assigned to the worker.
    Connect = 0x20,
    /// 0x21, node to worker: a client sent a message.
    Message = 0x21,
    /// 0x22, node to worker: a client connection ended.
    Disconnect = 0x22,
    /// 0x23, node to worker: judge an upgrade request (delegated
    /// authentication).
    Auth = 0x23,
    /// 0x24, node to worker, version 2: client messages, batched.
    Messages = 0x24,
    /// 0x30, worker to node: send a message to one or more connections.
    Send = 0x30,
    /// 0x31, worker to node: send a message to a channel's subscribers.
    Publish = 0x31,
    /// 0x32, worker to node: subscribe a connection to a channel.
    Subscribe = 0x32,
    /// 0x33, worker to node: unsubscribe a connection from a channel.
    Unsubscribe = 0x33,
    /// 0x34, worker to node: close a connection.
    Close = 0x34,
    /// 0x35, worker to node: the verdict on an AUTH.
    AuthReply = 0x35,
    /// 0x36, worker to node, version 2: messages to connections, batched.
    Sends = 0x36,
    /// 0x40, worker to node: change or query the ACL (admin keys only).
    AclCommand = 0x40,
    /// 0x41, node to worker: the outcome of an ACL_COMMAND.
    AclResult = 0x41,
}

impl MessageType {
    /// The type for a type byte in `version`, or `None` for a value that
    /// version does not define (0x42-0x4F stay reserved for ACL
    /// administration).
    pub fn from_u8(version: u8, byte: u8) -> Option<MessageType> {
        use MessageType::*;
        [
            Heartbeat,
            Bye,
            Ready,
            Welcome,
            Error,
            Connect,
            Message,
            Disconnect,
            Auth,
            Messages,
            Send,
            Publish,
            Subscribe,
            Unsubscribe,
            Close,
            AuthReply,
            Sends,
            AclCommand,
            AclResult,
        ]
        .into_iter()
        .find(|kind| *kind as u8 == byte && kind.since() <= version)
    }

    /// The first version that defines this type.
    pub fn since(self) -> u8 {
        match self {
            MessageType::Messages | MessageType::Sends => VERSION_2,
            _ => VERSION,
        }
    }

    /// Whether a node may send this type; a worker drops any other.
    pub fn sent_by_node(self) -> bool {
        use MessageType::*;
        matches!(
            self,
            Heartbeat
                | Bye
                | Welcome
                | Error
                | Connect
                | Message
                | Messages
                | Disconnect
                | Auth
                | AclResult
        )
    }

    /// Whether a worker may send this type; a node drops any other.
    pub fn sent_by_worker(self) -> bool {
        use MessageType::*;
        matches!(
            self,
            Heartbeat
                | Bye
                | Ready
                | Send
                | Sends
                | Publish
                | Subscribe
                | Unsubscribe
                | Close
                | AuthReply
                | AclCommand
        )
    }
}

/// One protocol message, borrowing its strings and payload from the frames
/// it was decoded from (or from the caller's values, to encode it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Message<'a> {
    /// HEARTBEAT: the sender's boot id (a node) or instance id (a worker).
    Heartbeat {
        /// Changes when the sender restarts.
        boot: u64,
    },
    /// BYE: the sender is leaving; no body.
    Bye,
    /// READY.
    Ready(Ready<'a>),
    /// WELCOME.
    Welcome(Welcome<'a>),
    /// ERROR.
    Error(ErrorReply<'a>),
    /// CONNECT.
    Connect(Connect<'a>),
    /// MESSAGE.
    Message(Data<'a>),
    /// MESSAGES (version 2).
    Messages(Batch<'a>),
    /// DISCONNECT.
    Disconnect(Disconnect<'a>),
    /// AUTH.
    Auth(Auth<'a>),
    /// SEND.
    Send(SendTo<'a>),
    /// SENDS (version 2).
    Sends(Batch<'a>),
    /// PUBLISH.
    Publish(Publish<'a>),
    /// SUBSCRIBE.
    Subscribe(Subscription<'a>),
    /// UNSUBSCRIBE.
    Unsubscribe(Subscription<'a>),
    /// CLOSE.
    Close(Close<'a>),
    /// AUTH_REPLY.
    AuthReply(AuthReply<'a>),
    /// ACL_COMMAND.
    AclCommand(AclCommand<'a>),
    /// ACL_RESULT.
    AclResult(AclResult<'a>),
}

impl Message<'_> {
    /// The message's type byte.
    pub fn message_type(&self) -> MessageType {
        match self {
            Message::Heartbeat { .. } => MessageType::Heartbeat,
            Message::Bye => MessageType::Bye,
            Message::Ready(_) => MessageType::Ready,
            Message::Welcome(_) => MessageType::Welcome,
            Message::Error(_) => MessageType::Error,
            Message::Connect(_) => MessageType::Connect,
            Message::Message(_) => MessageType::Message,
            Message::Messages(_) => MessageType::Messages,
            Message::Disconnect(_) => MessageType::Disconnect,
            Message::Auth(_) => MessageType::Auth,
            Message::Send(_) => MessageType::Send,
            Message::Sends(_) => MessageType::Sends,
            Message::Publish(_) => MessageType::Publish,
            Message::Subscribe(_) => MessageType::Subscribe,
            Message::Unsubscribe(_) => MessageType::Unsubscribe,
            Message::Close(_) => MessageType::Close,
            Message::AuthReply(_) => MessageType::AuthReply,
            Message::AclCommand(_) => MessageType::AclCommand,
            Message::AclResult(_) => MessageType::AclResult,
        }
    }
}

/// READY: a worker announces itself and the services it serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ready<'a> {
    /// Random per worker process start; the node's replies are addressed
    /// to it when signing is on.
    pub instance: u64,
    /// A name for logs (host, process), 1-64 bytes of UTF-8.
    pub name: &'a str,
    /// 1-[`MAX_SERVICES`] service names (see [`is_service_name`]).
    pub services: List<'a, &'a str>,
}

/// WELCOME: the node took the worker on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Welcome<'a> {
    /// Random per node process start; a new value means every connection
    /// the worker knew from this node is gone.
    pub boot: u64,
    /// Both sides send something at least this often, in milliseconds.
    pub heartbeat_ms: u32,
    /// A peer is dead after this many intervals without a message.
    pub liveness: u8,
    /// The largest payload the node accepts in SEND and PUBLISH, in bytes.
    pub max_payload: u32,
    /// The node's name, 1-64 bytes of UTF-8.
    pub node: &'a str,
    /// Which node of its process this is (version 3; a version 1 or 2
    /// WELCOME carries none and reads as [`Reactors::ALONE`]).
    pub reactors: Reactors,
}

/// A node's place among the reactors of its process (docs/protocol.md
/// section 14).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reactors {
    /// This node's index, below `count`.
    pub index: u16,
    /// How many nodes the process runs, at least 1.
    pub count: u16,
}

impl Reactors {
    /// The only node of its process, or one that does not say.
    pub const ALONE: Reactors = Reactors { index: 0, count: 1 };

    /// Whether `index` names one of `count` reactors.
    pub fn is_valid(self) -> bool {
        self.index < self.count
    }
}

/// ERROR: why a worker's message was not carried out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ErrorReply<'a> {
    /// What went wrong.
    pub code: ErrorCode,
    /// The type byte of the message this answers; 0 when none.
    pub about: u8,
    /// Human-readable detail, 0-256 bytes of UTF-8.
    pub detail: &'a str,
    /// The connections concerned, 0-[`MAX_CONN_IDS`].
    pub conns: List<'a, u64>,
}

/// CONNECT: a client connection is now this worker's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Connect<'a> {
    /// The connection id, unique within the node's boot; never 0.
    pub conn: u64,
    /// The connection was moved here from a worker that died.
    pub reassigned: bool,
    /// The service the path was routed to.
    pub service: &'a str,
    /// The node's name.
    pub node: &'a str,
    /// The client's address as `ip:port`, 0-64 bytes.
    pub peer: &'a str,
    /// The request path, raw (not percent-decoded), 1-8192 bytes.
    pub path: &'a str,
    /// The query after `?`, raw; empty when there was none.
    pub query: &'a str,
    /// The negotiated subprotocol; empty when none.
    pub subprotocol: &'a str,
    /// The authenticated user; empty when anonymous.
    pub user: &'a str,
    /// The user's roles, 0-[`MAX_ROLES`].
    pub roles: List<'a, &'a str>,
    /// Selected request headers, lowercase names, 0-[`MAX_HEADERS`].
    pub headers: List<'a, HttpHeader<'a>>,
}

/// One request header: a lowercase field name and its raw value.
pub type HttpHeader<'a> = (&'a str, &'a [u8]);

/// MESSAGE: a data message from a client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Data<'a> {
    /// The connection it came from.
    pub conn: u64,
    /// The message.
    pub payload: Payload<'a>,
}

/// DISCONNECT: a client connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Disconnect<'a> {
    /// The connection.
    pub conn: u64,
    /// The close code: what was sent or received, 1005 when the Close had
    /// none, 1006 when the connection ended without one.
    pub code: CloseCode,
    /// Who ended it.
    pub initiator: Initiator,
    /// The close reason, 0-123 bytes of UTF-8.
    pub reason: &'a str,
}

/// SEND: deliver one message to one or more connections of this node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SendTo<'a> {
    /// 1-[`MAX_CONN_IDS`] connections.
    pub conns: List<'a, u64>,
    /// The message.
    pub payload: Payload<'a>,
}

/// PUBLISH: deliver one message to every subscriber of a channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Publish<'a> {
    /// The channel, 1-256 bytes of UTF-8.
    pub channel: &'a str,
    /// A connection to leave out (typically the one the message came from).
    pub except: Option<u64>,
    /// Whose message it is, for every node's `publish` check (version 2
    /// only; docs/protocol.md section 13).
    pub author: Option<Author<'a>>,
    /// The message.
    pub payload: Payload<'a>,
}

/// The client a version 2 PUBLISH is on behalf of, as its CONNECT named
/// it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Author<'a> {
    /// The user; empty for a guest.
    pub user: &'a str,
    /// The user's roles, at most [`MAX_ROLES`].
    pub roles: List<'a, &'a str>,
}

/// SUBSCRIBE and UNSUBSCRIBE.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Subscription<'a> {
    /// The connection.
    pub conn: u64,
    /// The channel, 1-256 bytes of UTF-8.
    pub channel: &'a str,
}

/// CLOSE: close a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Close<'a> {
    /// The connection.
    pub conn: u64,
    /// The close code; one a Close frame may carry
    /// ([`CloseCode::is_valid_on_wire`]).
    pub code: CloseCode,
    /// The close reason, 0-123 bytes of UTF-8.
    pub reason: &'a str,
}

/// AUTH: a client's upgrade request, for an auth worker to judge
/// (delegated authentication, docs/acl.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Auth<'a> {
    /// Chosen by the node (the connection id); never 0. The AUTH_REPLY
    /// carries it back.
    pub request: u64,
    /// The client's address as `ip:port`, 0-64 bytes.
    pub peer: &'a str,
    /// The request path, raw, 1-8192 bytes.
    pub path: &'a str,
    /// The query after `?`, raw; empty when there was none.
    pub query: &'a str,
    /// Selected request headers (`origin`, `user-agent`, `cookie`),
    /// lowercase names, 0-[`MAX_HEADERS`].
    pub headers: List<'a, HttpHeader<'a>>,
}

/// AUTH_REPLY: an auth worker's verdict on an AUTH.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuthReply<'a> {
    /// The AUTH's request id; never 0.
    pub request: u64,
    /// Whether the client is who it claims to be. An allow without a
    /// user counts as a deny.
    pub allow: bool,
    /// The user, 0-256 bytes; empty on a deny.
    pub user: &'a str,
    /// The user's roles, 0-[`MAX_ROLES`], each 1-64 bytes.
    pub roles: List<'a, &'a str>,
}

/// ACL_COMMAND: one change to the ACL, or one question about it, from a
/// worker whose key is an admin key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AclCommand<'a> {
    /// Chosen by the worker; the ACL_RESULT carries it back.
    pub request: u64,
    /// What to do.
    pub op: AclOp,
    /// The operation's arguments: three lists of names (users, roles,
    /// resources, permissions, as [`AclOp::arity`] says), each name
    /// 1-256 bytes of UTF-8.
    pub args: [List<'a, &'a str>; ACL_ARGS],
}

/// An ACL operation, with the semantics of the engine's method of the
/// same name (averyws's `auth::acl::Acl`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AclOp {
    /// 1: `allow(roles, resources, permissions)`.
    Allow = 1,
    /// 2: `remove_allow([role], resources, permissions)`; no permission
    /// means all of them.
    RemoveAllow = 2,
    /// 3: `remove_role([role])`.
    RemoveRole = 3,
    /// 4: `remove_resource([resource])`.
    RemoveResource = 4,
    /// 5: `add_user_roles([user], roles)`.
    AddUserRoles = 5,
    /// 6: `remove_user_roles([user], roles)`.
    RemoveUserRoles = 6,
    /// 7: `add_role_parents([role], parents)`.
    AddRoleParents = 7,
    /// 8: `remove_role_parents([role], parents)`; no parent means all of
    /// them.
    RemoveRoleParents = 8,
    /// 9: `explain([user], [resource], [permission])`: changes nothing.
    Explain = 9,
}

impl AclOp {
    /// The operation for an op byte, or `None`.
    pub fn from_u8(byte: u8) -> Option<AclOp> {
        use AclOp::*;
        [
            Allow,
            RemoveAllow,
            RemoveRole,
            RemoveResource,
            AddUserRoles,
            RemoveUserRoles,
            AddRoleParents,
            RemoveRoleParents,
            Explain,
        ]
        .into_iter()
        .find(|op| *op as u8 == byte)
    }

    /// Inclusive bounds of the number of names in each argument list.
    pub fn arity(self) -> [(usize, usize); ACL_ARGS] {
        const ONE: (usize, usize) = (1, 1);
        const NONE: (usize, usize) = (0, 0);
        const SOME: (usize, usize) = (1, MAX_ACL_NAMES);
        const ANY: (usize, usize) = (0, MAX_ACL_NAMES);
        match self {
            AclOp::Allow => [SOME, SOME, SOME],
            AclOp::RemoveAllow => [ONE, SOME, ANY],
            AclOp::RemoveRole | AclOp::RemoveResource => [ONE, NONE, NONE],
            AclOp::AddUserRoles | AclOp::RemoveUserRoles | AclOp::AddRoleParents => {
                [ONE, SOME, NONE]
            }
            AclOp::RemoveRoleParents => [ONE, ANY, NONE],
            AclOp::Explain => [ONE, ONE, ONE],
        }
    }
}

/// ACL_RESULT: what became of an ACL_COMMAND.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AclResult<'a> {
    /// The ACL_COMMAND's request id.
    pub request: u64,
    /// Whether it was carried out.
    pub status: AclStatus,
    /// For EXPLAIN: whether the permission is granted; `None` otherwise.
    pub decision: Option<bool>,
    /// Why it was refused or not persisted; empty when OK. 0-256 bytes.
    pub detail: &'a str,
    /// For EXPLAIN: the explanation for people; empty otherwise.
    /// 0-16384 bytes.
    pub explanation: &'a str,
}

/// The status of an [`AclResult`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AclStatus {
    /// 0: done (a change is in force and persisted).
    Ok = 0,
    /// 1: refused (an invalid name, a cycle, no ACL file): nothing changed.
    Refused = 1,
    /// 2: the change could not be stored (the ACL file or database) and
    /// was undone: nothing changed.
    NotPersisted = 2,
}

/// A WebSocket data message; the kind byte on the wire is the RFC 6455
/// opcode (1 text, 2 binary).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Payload<'a> {
    /// A text message, valid UTF-8.
    Text(&'a str),
    /// A binary message.
    Binary(&'a [u8]),
}

impl<'a> Payload<'a> {
    /// The payload's bytes.
    pub fn as_bytes(&self) -> &'a [u8] {
        match *self {
            Payload::Text(text) => text.as_bytes(),
            Payload::Binary(bytes) => bytes,
        }
    }
}

/// Who ended a connection (DISCONNECT).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Initiator {
    /// 0: the client closed or went away.
    Client = 0,
    /// 1: the node closed it (timeout, policy, shutdown, eviction).
    Node = 1,
    /// 2: a worker's CLOSE.
    Worker = 2,
}

/// An ERROR code. Receivers treat a code they do not know like any other
/// failure: v1 may add codes without a new version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ErrorCode(pub u16);

impl ErrorCode {
    /// 1: the message's protocol version is not spoken here.
    pub const UNSUPPORTED_VERSION: ErrorCode = ErrorCode(1);
    /// 2: the sender is not a registered worker: send READY.
    pub const UNKNOWN_PEER: ErrorCode = ErrorCode(2);
    /// 3: READY claimed a reserved service name; not registered.
    pub const RESERVED_SERVICE: ErrorCode = ErrorCode(3);
    /// 4: the listed connections are not open on this node.
    pub const NO_SUCH_CONNECTION: ErrorCode = ErrorCode(4);
    /// 5: the ACL refused the SUBSCRIBE for the listed connection, or an
    /// ACL_COMMAND was not signed with an admin key.
    pub const FORBIDDEN: ErrorCode = ErrorCode(5);
    /// 6: the payload is larger than WELCOME's `max_payload`.
    pub const TOO_BIG: ErrorCode = ErrorCode(6);
    /// 7: the message did not decode (sent only to an authenticated,
    /// registered worker, at most once per heartbeat interval).
    pub const MALFORMED: ErrorCode = ErrorCode(7);
}

/// Whether `name` is a valid service name: 1-64 bytes of
/// `A-Z a-z 0-9 . _ -`.
pub fn is_service_name(name: &[u8]) -> bool {
    Field::Service.fits(name.len()) && is_name(name)
}

/// Whether a worker may not claim `service` (see [`RESERVED_SERVICES`]).
pub fn is_reserved_service(service: &str) -> bool {
    RESERVED_SERVICES.contains(&service)
}

/// Whether every byte is one of `A-Z a-z 0-9 . _ -` (service names, key
/// ids).
pub(super) fn is_name(bytes: &[u8]) -> bool {
    bytes
        .iter()
        .all(|&byte| byte.is_ascii_alphanumeric() || b"._-".contains(&byte))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn type_bytes_round_trip_and_directions_cover_every_type() {
        for (version, types) in [(VERSION, 17), (VERSION_2, 19)] {
            let mut known = 0;
            for byte in 0..=u8::MAX {
                let Some(kind) = MessageType::from_u8(version, byte) else {
                    continue;
                };
                known += 1;
                assert_eq!(kind as u8, byte);
                assert!(kind.since() <= version, "{kind:?}");
                assert!(kind.sent_by_node() || kind.sent_by_worker(), "{kind:?}");
            }
            assert_eq!(known, types, "version {version}");
        }
        assert_eq!(MessageType::from_u8(VERSION, 0x24), None, "MESSAGES is v2");
        assert_eq!(
            MessageType::from_u8(VERSION_2, 0x42),
            None,
            "reserved for ACL admin"
        );
        for byte in 0..=u8::MAX {
            if let Some(op) = AclOp::from_u8(byte) {
                assert_eq!(op as u8, byte);
            }
        }
        assert_eq!(AclOp::from_u8(0), None);
        assert_eq!(AclOp::from_u8(10), None);
    }

    #[test]
    fn service_names() {
        assert!(is_service_name(b"chat"));
        assert!(is_service_name(b"Chat-2.v1_x"));
        assert!(is_service_name(&[b'a'; 64]));
        assert!(!is_service_name(&[b'a'; 65]));
        assert!(!is_service_name(b""));
        assert!(!is_service_name(b"chat/room"));
        assert!(!is_service_name(b"caf\xc3\xa9"));
        assert!(is_reserved_service("echo"));
        assert!(!is_reserved_service("Echo"));
    }

    #[test]
    fn lists_compare_by_entries_across_forms() {
        let frame: &[u8] = &[0, 0, 0, 0, 0, 0, 0, 7, 0, 0, 0, 0, 0, 0, 1, 0];
        let wire = [frame];
        let ids = [7, 256];
        let decoded = List::<u64>::wire(&wire);
        assert_eq!(decoded, List::from(&ids[..]));
        assert_eq!(decoded.len(), 2);
        assert_eq!(format!("{decoded:?}"), "[7, 256]");
        let frames: [&[u8]; 4] = [b"origin", b"https://a", b"x-id", b"\xff"];
        let headers = List::<HttpHeader>::wire(&frames);
        let pairs: [HttpHeader; 2] = [("origin", b"https://a"), ("x-id", b"\xff")];
        assert_eq!(headers, List::from(&pairs[..]));
        assert_ne!(headers, List::from(&pairs[..1]));
    }
}
