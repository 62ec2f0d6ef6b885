//! Encode and decode protocol v1 to v3 messages to and from ZeroMQ
//! frames, as `docs/protocol.md` lays them out.
//!
//! Sans-IO: [`decode`] takes the frames of one multipart message (the
//! ROUTER's routing-id frame already removed) and borrows from them;
//! [`encode`] fills a reusable [`Frames`] list. Both apply the same checks,
//! so `encode` refuses exactly the values `decode` would refuse, and what
//! `encode` writes always decodes to the value it was given.
//!
//! Decoding reads the header frame (version, type, flags), sets a trailing
//! signature frame aside when the SIGNED flag says there is one (checking
//! it is [`signing`](super::signing)'s job, and comes first), then reads the
//! body frames of the type in order: a fixed-size big-endian "meta" frame,
//! then strings, lists and the payload, each its own frame. Every count and
//! length is checked against its cap ([`Field::bounds`]) before it is used,
//! and nothing is allocated.

use super::batch::Batch;
use super::message::{
    is_name, is_spoken, AclCommand, AclOp, AclResult, AclStatus, Auth, AuthReply, Author, Close,
    Connect, Data, Disconnect, ErrorCode, ErrorReply, Field, HttpHeader, Initiator, List, Message,
    MessageType, Payload, Publish, Reactors, Ready, SendTo, Subscription, Welcome, ACL_ARGS,
    CONNECT_REASSIGNED, FLAG_SIGNED, MAX_FRAMES, PUBLISH_AUTHORED, VERSION, VERSION_2, VERSION_3,
};
use crate::close::CloseCode;

/// Frame buffers above this capacity are released by [`Frames::clear`], so
/// one large payload does not pin its memory.
const KEEP_CAPACITY: usize = 64 << 10;

/// Why frames are not a valid v1 message (from [`decode`]), or why a value
/// cannot be written as one (from [`encode`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecodeError {
    /// No frames, or a version 1 header frame that is not 3 bytes.
    Header,
    /// The header's version byte is not one [`is_spoken`] knows.
    UnknownVersion(u8),
    /// The header's type byte is not a [`MessageType`] of its version.
    UnknownType(u8),
    /// A flags byte (header or CONNECT) has a bit v1 does not define.
    UnknownFlags(u8),
    /// Too few or too many frames for the message type (and its counts).
    FrameCount,
    /// A fixed-size frame (meta, connection ids) has the wrong length.
    FrameLength,
    /// A string or list is longer or shorter than [`Field::bounds`].
    Length(Field),
    /// A string is not UTF-8 ([`Field::Payload`] for a text payload).
    InvalidUtf8(Field),
    /// A service name or header name has a character its syntax excludes.
    InvalidName(Field),
    /// A payload kind byte is neither 1 (text) nor 2 (binary).
    InvalidKind(u8),
    /// A DISCONNECT initiator byte is not 0, 1 or 2.
    InvalidInitiator(u8),
    /// A close code no Close frame may carry (DISCONNECT also allows 1005
    /// and 1006).
    InvalidCloseCode(u16),
    /// A connection id is 0, which names no connection.
    ZeroConnId,
    /// A version 3 WELCOME's reactor index is not below its count.
    InvalidReactor(Reactors),
    /// An ACL_COMMAND op byte is not one of [`AclOp`].
    InvalidOp(u8),
    /// An ACL_RESULT status or decision byte, or an AUTH_REPLY verdict
    /// byte, is not one v1 defines.
    InvalidStatus(u8),
}

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DecodeError::Header => f.write_str("missing or malformed header frame"),
            DecodeError::UnknownVersion(v) => write!(f, "unknown protocol version {v}"),
            DecodeError::UnknownType(t) => write!(f, "unknown message type {t:#04x}"),
            DecodeError::UnknownFlags(bits) => write!(f, "unknown flags {bits:#04x}"),
            DecodeError::FrameCount => f.write_str("wrong number of frames"),
            DecodeError::FrameLength => f.write_str("fixed-size frame of the wrong length"),
            DecodeError::Length(field) => write!(f, "{field:?} outside its length bounds"),
            DecodeError::InvalidUtf8(field) => write!(f, "{field:?} is not UTF-8"),
            DecodeError::InvalidName(field) => write!(f, "{field:?} has a forbidden character"),
            DecodeError::InvalidKind(kind) => write!(f, "unknown payload kind {kind}"),
            DecodeError::InvalidInitiator(who) => write!(f, "unknown initiator {who}"),
            DecodeError::InvalidCloseCode(code) => write!(f, "close code {code} not allowed"),
            DecodeError::ZeroConnId => f.write_str("connection id 0"),
            DecodeError::InvalidReactor(r) => {
                write!(f, "reactor {} of {} does not exist", r.index, r.count)
            }
            DecodeError::InvalidOp(op) => write!(f, "unknown ACL operation {op}"),
            DecodeError::InvalidStatus(byte) => write!(f, "unknown ACL status or decision {byte}"),
        }
    }
}

impl std::error::Error for DecodeError {}

/// What the header frame says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Head {
    /// The protocol version.
    pub version: u8,
    /// The message type.
    pub message_type: MessageType,
    /// The last frame is a signature frame.
    pub signed: bool,
}

/// Read the header frame of `frames`. The version is checked first: byte 0
/// of frame 0 is the version in every protocol version, while the rest of
/// the header may change with it.
pub fn parse_head(frames: &[&[u8]]) -> Result<Head, DecodeError> {
    let header = frames.first().ok_or(DecodeError::Header)?;
    match **header {
        [version, kind, flags] if is_spoken(version) => {
            let message_type =
                MessageType::from_u8(version, kind).ok_or(DecodeError::UnknownType(kind))?;
            if flags & !FLAG_SIGNED != 0 {
                return Err(DecodeError::UnknownFlags(flags));
            }
            Ok(Head {
                version,
                message_type,
                signed: flags & FLAG_SIGNED != 0,
            })
        }
        [version, ..] if !is_spoken(version) => Err(DecodeError::UnknownVersion(version)),
        _ => Err(DecodeError::Header),
    }
}

/// Decode the frames of one message. Strings, lists and the payload borrow
/// from `frames`. A signature frame, when the header announces one, is
/// skipped, not checked: verify it first
/// ([`Verifier`](super::signing::Verifier)).
pub fn decode<'a>(frames: &'a [&'a [u8]]) -> Result<Message<'a>, DecodeError> {
    if frames.len() > MAX_FRAMES {
        return Err(DecodeError::FrameCount);
    }
    let head = parse_head(frames)?;
    let body = frames.get(1..).unwrap_or_default();
    let body = match (head.signed, body.split_last()) {
        (true, Some((_signature, body))) => body,
        (true, None) => return Err(DecodeError::FrameCount),
        (false, _) => body,
    };
    let mut body = Body { frames: body };
    let message = match head.message_type {
        MessageType::Heartbeat => {
            let mut meta = body.meta()?;
            let boot = meta.u64()?;
            meta.end()?;
            Message::Heartbeat { boot }
        }
        MessageType::Bye => Message::Bye,
        MessageType::Ready => Message::Ready(decode_ready(&mut body)?),
        MessageType::Welcome => Message::Welcome(decode_welcome(head.version, &mut body)?),
        MessageType::Error => Message::Error(decode_error(&mut body)?),
        MessageType::Connect => Message::Connect(decode_connect(&mut body)?),
        MessageType::Message => {
            let mut meta = body.meta()?;
            let conn = meta.u64()?;
            let kind = meta.u8()?;
            meta.end()?;
            let conn = conn_id(conn)?;
            let payload = body.payload(kind)?;
            Message::Message(Data { conn, payload })
        }
        MessageType::Messages => Message::Messages(Batch::parse(body.next()?)?),
        MessageType::Sends => Message::Sends(Batch::parse(body.next()?)?),
        MessageType::Disconnect => Message::Disconnect(decode_disconnect(&mut body)?),
        MessageType::Send => {
            let mut meta = body.meta()?;
            let kind = meta.u8()?;
            meta.end()?;
            let conns = body.conn_ids(Field::Targets)?;
            let payload = body.payload(kind)?;
            Message::Send(SendTo { conns, payload })
        }
        MessageType::Publish => Message::Publish(decode_publish(head.version, &mut body)?),
        MessageType::Subscribe => Message::Subscribe(decode_subscription(&mut body)?),
        MessageType::Unsubscribe => Message::Unsubscribe(decode_subscription(&mut body)?),
        MessageType::Close => {
            let mut meta = body.meta()?;
            let conn = meta.u64()?;
            let code = meta.u16()?;
            meta.end()?;
            Message::Close(Close {
                conn: conn_id(conn)?,
                code: close_code(CloseCode(code))?,
                reason: body.string(Field::Reason)?,
            })
        }
        MessageType::AclCommand => Message::AclCommand(decode_acl_command(&mut body)?),
        MessageType::AclResult => Message::AclResult(decode_acl_result(&mut body)?),
        MessageType::Auth => Message::Auth(decode_auth(&mut body)?),
        MessageType::AuthReply => Message::AuthReply(decode_auth_reply(&mut body)?),
    };
    body.end()?;
    Ok(message)
}

/// Encode `message` unsigned in version 1 into `out`, replacing what
/// `out` held. On error `out` holds a partial message: do not send it.
///
/// A text payload is not validated again: [`Payload::Text`] holds a `str`.
pub fn encode(message: &Message<'_>, out: &mut Frames) -> Result<(), DecodeError> {
    encode_in(VERSION, message, out)
}

/// [`encode`] in protocol `version`: a type that version lacks is refused.
pub fn encode_in(version: u8, message: &Message<'_>, out: &mut Frames) -> Result<(), DecodeError> {
    encode_with_flags(message, version, 0, out)
}

/// [`encode_in`] with header flags; signing sets [`FLAG_SIGNED`] this way
/// and then appends the signature frame.
pub(super) fn encode_with_flags(
    message: &Message<'_>,
    version: u8,
    flags: u8,
    out: &mut Frames,
) -> Result<(), DecodeError> {
    out.clear();
    let kind = message.message_type();
    if !is_spoken(version) {
        return Err(DecodeError::UnknownVersion(version));
    }
    if kind.since() > version {
        return Err(DecodeError::UnknownType(kind as u8));
    }
    out.push(&[version, kind as u8, flags]);
    match message {
        Message::Heartbeat { boot } => out.push(&boot.to_be_bytes()),
        Message::Bye => {}
        Message::Ready(ready) => {
            out.push(&ready.instance.to_be_bytes());
            put_string(out, Field::WorkerName, ready.name)?;
            check_len(Field::Services, ready.services.len())?;
            put_strings(out, Field::Service, &ready.services)?;
        }
        Message::Welcome(welcome) => {
            let reactors = welcome.reactors;
            if !reactors.is_valid() {
                return Err(DecodeError::InvalidReactor(reactors));
            }
            let ([i0, i1], [c0, c1]) = (reactors.index.to_be_bytes(), reactors.count.to_be_bytes());
            let place = [i0, i1, c0, c1];
            // Versions 1 and 2 cannot say it: their worker is told nothing.
            let place: &[u8] = if version >= VERSION_3 { &place } else { &[] };
            out.push_parts(&[
                &welcome.boot.to_be_bytes(),
                &welcome.heartbeat_ms.to_be_bytes(),
                &welcome.max_payload.to_be_bytes(),
                &[welcome.liveness],
                place,
            ]);
            put_string(out, Field::Node, welcome.node)?;
        }
        Message::Error(error) => {
            out.push_parts(&[&error.code.0.to_be_bytes(), &[error.about]]);
            put_string(out, Field::Detail, error.detail)?;
            put_conn_ids(out, Field::Affected, &error.conns)?;
        }
        Message::Connect(connect) => encode_connect(connect, out)?,
        Message::Message(data) => {
            let kind = kind_byte(&data.payload);
            out.push_parts(&[&conn_id(data.conn)?.to_be_bytes(), &[kind]]);
            put_payload(out, &data.payload)?;
        }
        Message::Messages(batch) | Message::Sends(batch) => out.push(batch.as_bytes()),
        Message::Disconnect(disconnect) => {
            let code = disconnect_code(disconnect.code)?;
            out.push_parts(&[
                &conn_id(disconnect.conn)?.to_be_bytes(),
                &code.0.to_be_bytes(),
                &[disconnect.initiator as u8],
            ]);
            put_string(out, Field::Reason, disconnect.reason)?;
        }
        Message::Send(send) => {
            out.push(&[kind_byte(&send.payload)]);
            put_conn_ids(out, Field::Targets, &send.conns)?;
            put_payload(out, &send.payload)?;
        }
        Message::Publish(publish) => encode_publish(version, publish, out)?,
        Message::Subscribe(subscription) | Message::Unsubscribe(subscription) => {
            out.push(&conn_id(subscription.conn)?.to_be_bytes());
            put_string(out, Field::Channel, subscription.channel)?;
        }
        Message::Close(close) => {
            let code = close_code(close.code)?;
            out.push_parts(&[&conn_id(close.conn)?.to_be_bytes(), &code.0.to_be_bytes()]);
            put_string(out, Field::Reason, close.reason)?;
        }
        Message::AclCommand(command) => encode_acl_command(command, out)?,
        Message::Auth(auth) => {
            let headers = count_byte(Field::Headers, auth.headers.len())?;
            out.push_parts(&[&conn_id(auth.request)?.to_be_bytes(), &[headers]]);
            put_string(out, Field::Peer, auth.peer)?;
            put_string(out, Field::Path, auth.path)?;
            put_string(out, Field::Query, auth.query)?;
            put_headers(out, &auth.headers)?;
        }
        Message::AuthReply(reply) => {
            let roles = count_byte(Field::Roles, reply.roles.len())?;
            let request = conn_id(reply.request)?.to_be_bytes();
            out.push_parts(&[&request, &[u8::from(reply.allow), roles]]);
            put_string(out, Field::User, reply.user)?;
            put_strings(out, Field::Role, &reply.roles)?;
        }
        Message::AclResult(result) => {
            out.push_parts(&[
                &result.request.to_be_bytes(),
                &[result.status as u8, decision_byte(result.decision)],
            ]);
            put_string(out, Field::Detail, result.detail)?;
            put_string(out, Field::Explanation, result.explanation)?;
        }
    }
    Ok(())
}

/// The frames of one outgoing message, reused from message to message so
/// encoding allocates only while the buffers grow.
#[derive(Debug, Default, Clone)]
pub struct Frames {
    bufs: Vec<Vec<u8>>,
    len: usize,
}

impl Frames {
    /// An empty list.
    pub fn new() -> Self {
        Self::default()
    }

    /// The number of frames.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether there are no frames.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The frames, in order: send each with `SNDMORE` but the last.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = &[u8]> {
        self.bufs.iter().take(self.len).map(Vec::as_slice)
    }

    /// Remove every frame, keeping buffers up to 64 KiB for reuse.
    pub fn clear(&mut self) {
        for buf in self.bufs.iter_mut().take(self.len) {
            if buf.capacity() > KEEP_CAPACITY {
                *buf = Vec::new();
            } else {
                buf.clear();
            }
        }
        self.len = 0;
    }

    /// Append a frame holding `bytes`.
    pub fn push(&mut self, bytes: &[u8]) {
        self.frame().extend_from_slice(bytes);
    }

    /// Append one frame holding `parts`, concatenated.
    pub fn push_parts(&mut self, parts: &[&[u8]]) {
        let buf = self.frame();
        for part in parts {
            buf.extend_from_slice(part);
        }
    }

    /// Append an empty frame and return it for writing.
    fn frame(&mut self) -> &mut Vec<u8> {
        if self.len == self.bufs.len() {
            self.bufs.push(Vec::new());
        }
        self.len += 1;
        // In bounds: `bufs` holds at least `len` buffers now.
        &mut self.bufs[self.len - 1]
    }
}

fn decode_ready<'a>(body: &mut Body<'a>) -> Result<Ready<'a>, DecodeError> {
    let mut meta = body.meta()?;
    let instance = meta.u64()?;
    meta.end()?;
    let name = body.string(Field::WorkerName)?;
    let services = body.take(body.frames.len())?;
    check_len(Field::Services, services.len())?;
    for &service in services {
        check_string(Field::Service, service)?;
    }
    Ok(Ready {
        instance,
        name,
        services: List::wire(services),
    })
}

/// WELCOME: version 3 adds the reactor index and count to the meta frame.
fn decode_welcome<'a>(version: u8, body: &mut Body<'a>) -> Result<Welcome<'a>, DecodeError> {
    let mut meta = body.meta()?;
    let boot = meta.u64()?;
    let heartbeat_ms = meta.u32()?;
    let max_payload = meta.u32()?;
    let liveness = meta.u8()?;
    let reactors = match version {
        VERSION | VERSION_2 => Reactors::ALONE,
        _ => Reactors {
            index: meta.u16()?,
            count: meta.u16()?,
        },
    };
    meta.end()?;
    if !reactors.is_valid() {
        return Err(DecodeError::InvalidReactor(reactors));
    }
    Ok(Welcome {
        boot,
        heartbeat_ms,
        liveness,
        max_payload,
        node: body.string(Field::Node)?,
        reactors,
    })
}

fn decode_error<'a>(body: &mut Body<'a>) -> Result<ErrorReply<'a>, DecodeError> {
    let mut meta = body.meta()?;
    let code = ErrorCode(meta.u16()?);
    let about = meta.u8()?;
    meta.end()?;
    Ok(ErrorReply {
        code,
        about,
        detail: body.string(Field::Detail)?,
        conns: body.conn_ids(Field::Affected)?,
    })
}

fn decode_connect<'a>(body: &mut Body<'a>) -> Result<Connect<'a>, DecodeError> {
    let mut meta = body.meta()?;
    let conn = meta.u64()?;
    let flags = meta.u8()?;
    let roles = usize::from(meta.u8()?);
    let headers = usize::from(meta.u8()?);
    meta.end()?;
    let conn = conn_id(conn)?;
    if flags & !CONNECT_REASSIGNED != 0 {
        return Err(DecodeError::UnknownFlags(flags));
    }
    check_len(Field::Roles, roles)?;
    check_len(Field::Headers, headers)?;
    // Seven strings, then the lists: check the count before reading any.
    if body.frames.len() != 7 + roles + 2 * headers {
        return Err(DecodeError::FrameCount);
    }
    let service = body.string(Field::Service)?;
    let node = body.string(Field::Node)?;
    let peer = body.string(Field::Peer)?;
    let path = body.string(Field::Path)?;
    let query = body.string(Field::Query)?;
    let subprotocol = body.string(Field::Subprotocol)?;
    let user = body.string(Field::User)?;
    let roles = body.strings(Field::Role, roles)?;
    let headers = body.headers(headers)?;
    Ok(Connect {
        conn,
        reassigned: flags & CONNECT_REASSIGNED != 0,
        service,
        node,
        peer,
        path,
        query,
        subprotocol,
        user,
        roles,
        headers,
    })
}

fn decode_disconnect<'a>(body: &mut Body<'a>) -> Result<Disconnect<'a>, DecodeError> {
    let mut meta = body.meta()?;
    let conn = meta.u64()?;
    let code = meta.u16()?;
    let who = meta.u8()?;
    meta.end()?;
    Ok(Disconnect {
        conn: conn_id(conn)?,
        code: disconnect_code(CloseCode(code))?,
        initiator: initiator(who)?,
        reason: body.string(Field::Reason)?,
    })
}

fn decode_subscription<'a>(body: &mut Body<'a>) -> Result<Subscription<'a>, DecodeError> {
    let mut meta = body.meta()?;
    let conn = meta.u64()?;
    meta.end()?;
    Ok(Subscription {
        conn: conn_id(conn)?,
        channel: body.string(Field::Channel)?,
    })
}

fn decode_acl_command<'a>(body: &mut Body<'a>) -> Result<AclCommand<'a>, DecodeError> {
    let mut meta = body.meta()?;
    let request = meta.u64()?;
    let op = meta.u8()?;
    let counts = [meta.u8()?, meta.u8()?, meta.u8()?].map(usize::from);
    meta.end()?;
    let op = AclOp::from_u8(op).ok_or(DecodeError::InvalidOp(op))?;
    check_arity(op, counts)?;
    if body.frames.len() != counts.iter().sum::<usize>() {
        return Err(DecodeError::FrameCount);
    }
    let mut lists = [List::wire(&[]); ACL_ARGS];
    for (list, count) in lists.iter_mut().zip(counts) {
        let frames = body.take(count)?;
        for &name in frames {
            check_string(Field::AclName, name)?;
        }
        *list = List::wire(frames);
    }
    Ok(AclCommand {
        request,
        op,
        args: lists,
    })
}

fn decode_acl_result<'a>(body: &mut Body<'a>) -> Result<AclResult<'a>, DecodeError> {
    let mut meta = body.meta()?;
    let request = meta.u64()?;
    let status = meta.u8()?;
    let decision = meta.u8()?;
    meta.end()?;
    let status = match status {
        0 => AclStatus::Ok,
        1 => AclStatus::Refused,
        2 => AclStatus::NotPersisted,
        _ => return Err(DecodeError::InvalidStatus(status)),
    };
    let decision = match decision {
        0 => None,
        1 => Some(true),
        2 => Some(false),
        _ => return Err(DecodeError::InvalidStatus(decision)),
    };
    Ok(AclResult {
        request,
        status,
        decision,
        detail: body.string(Field::Detail)?,
        explanation: body.string(Field::Explanation)?,
    })
}

fn decode_auth<'a>(body: &mut Body<'a>) -> Result<Auth<'a>, DecodeError> {
    let mut meta = body.meta()?;
    let request = meta.u64()?;
    let headers = usize::from(meta.u8()?);
    meta.end()?;
    let request = conn_id(request)?;
    check_len(Field::Headers, headers)?;
    // Three strings, then the header pairs: check the count before reading.
    if body.frames.len() != 3 + 2 * headers {
        return Err(DecodeError::FrameCount);
    }
    Ok(Auth {
        request,
        peer: body.string(Field::Peer)?,
        path: body.string(Field::Path)?,
        query: body.string(Field::Query)?,
        headers: body.headers(headers)?,
    })
}

/// PUBLISH: v1's meta is kind and except; version 2's adds the author's
/// flags and role count, and the author's frames after the payload.
fn decode_publish<'a>(version: u8, body: &mut Body<'a>) -> Result<Publish<'a>, DecodeError> {
    let mut meta = body.meta()?;
    let kind = meta.u8()?;
    let except = meta.u64()?;
    let (flags, roles) = match version {
        VERSION => (0, 0),
        _ => (meta.u8()?, usize::from(meta.u8()?)),
    };
    meta.end()?;
    if flags & !PUBLISH_AUTHORED != 0 {
        return Err(DecodeError::UnknownFlags(flags));
    }
    let authored = flags & PUBLISH_AUTHORED != 0;
    check_len(Field::Roles, roles)?;
    if !authored && roles != 0 {
        return Err(DecodeError::FrameCount);
    }
    let channel = body.string(Field::Channel)?;
    let payload = body.payload(kind)?;
    let author = if authored {
        Some(Author {
            user: body.string(Field::User)?,
            roles: body.strings(Field::Role, roles)?,
        })
    } else {
        None
    };
    Ok(Publish {
        channel,
        except: (except != 0).then_some(except),
        author,
        payload,
    })
}

fn encode_publish(version: u8, publish: &Publish<'_>, out: &mut Frames) -> Result<(), DecodeError> {
    let except = publish.except.map(conn_id).transpose()?.unwrap_or(0);
    let kind = kind_byte(&publish.payload);
    match (version, &publish.author) {
        // v1 cannot carry an author: decode would never give one.
        (VERSION, Some(_)) => return Err(DecodeError::UnknownFlags(PUBLISH_AUTHORED)),
        (VERSION, None) => out.push_parts(&[&[kind], &except.to_be_bytes()]),
        (_, author) => {
            let flags = if author.is_some() {
                PUBLISH_AUTHORED
            } else {
                0
            };
            let roles = author.map_or(Ok(0), |a| count_byte(Field::Roles, a.roles.len()))?;
            out.push_parts(&[&[kind], &except.to_be_bytes(), &[flags, roles]]);
        }
    }
    put_string(out, Field::Channel, publish.channel)?;
    put_payload(out, &publish.payload)?;
    if let Some(author) = &publish.author {
        put_string(out, Field::User, author.user)?;
        put_strings(out, Field::Role, &author.roles)?;
    }
    Ok(())
}

fn decode_auth_reply<'a>(body: &mut Body<'a>) -> Result<AuthReply<'a>, DecodeError> {
    let mut meta = body.meta()?;
    let request = meta.u64()?;
    let verdict = meta.u8()?;
    let roles = usize::from(meta.u8()?);
    meta.end()?;
    let request = conn_id(request)?;
    let allow = match verdict {
        0 => false,
        1 => true,
        _ => return Err(DecodeError::InvalidStatus(verdict)),
    };
    check_len(Field::Roles, roles)?;
    if body.frames.len() != 1 + roles {
        return Err(DecodeError::FrameCount);
    }
    Ok(AuthReply {
        request,
        allow,
        user: body.string(Field::User)?,
        roles: body.strings(Field::Role, roles)?,
    })
}

fn encode_acl_command(command: &AclCommand<'_>, out: &mut Frames) -> Result<(), DecodeError> {
    let counts = command.args.map(|list| list.len());
    check_arity(command.op, counts)?;
    // Within the arity, every count fits a byte.
    let bytes = counts.map(|count| u8::try_from(count).unwrap_or(u8::MAX));
    out.push_parts(&[&command.request.to_be_bytes(), &[command.op as u8], &bytes]);
    for list in &command.args {
        put_strings(out, Field::AclName, list)?;
    }
    Ok(())
}

/// The op's bounds on each argument list's length.
fn check_arity(op: AclOp, counts: [usize; ACL_ARGS]) -> Result<(), DecodeError> {
    let fits = op
        .arity()
        .iter()
        .zip(counts)
        .all(|(&(min, max), count)| (min..=max).contains(&count));
    if fits {
        Ok(())
    } else {
        Err(DecodeError::Length(Field::AclArgs))
    }
}

/// ACL_RESULT's decision byte: 0 none, 1 allowed, 2 denied.
fn decision_byte(decision: Option<bool>) -> u8 {
    match decision {
        None => 0,
        Some(true) => 1,
        Some(false) => 2,
    }
}

fn encode_connect(connect: &Connect<'_>, out: &mut Frames) -> Result<(), DecodeError> {
    let flags = if connect.reassigned {
        CONNECT_REASSIGNED
    } else {
        0
    };
    // The counts travel as bytes: check them before narrowing.
    let roles = count_byte(Field::Roles, connect.roles.len())?;
    let headers = count_byte(Field::Headers, connect.headers.len())?;
    out.push_parts(&[
        &conn_id(connect.conn)?.to_be_bytes(),
        &[flags, roles, headers],
    ]);
    put_string(out, Field::Service, connect.service)?;
    put_string(out, Field::Node, connect.node)?;
    put_string(out, Field::Peer, connect.peer)?;
    put_string(out, Field::Path, connect.path)?;
    put_string(out, Field::Query, connect.query)?;
    put_string(out, Field::Subprotocol, connect.subprotocol)?;
    put_string(out, Field::User, connect.user)?;
    put_strings(out, Field::Role, &connect.roles)?;
    put_headers(out, &connect.headers)
}

fn put_headers(out: &mut Frames, headers: &List<'_, HttpHeader<'_>>) -> Result<(), DecodeError> {
    for (name, value) in headers.iter() {
        put_string(out, Field::HeaderName, name)?;
        check_len(Field::HeaderValue, value.len())?;
        out.push(value);
    }
    Ok(())
}

fn put_string(out: &mut Frames, field: Field, value: &str) -> Result<(), DecodeError> {
    check_string(field, value.as_bytes())?;
    out.push(value.as_bytes());
    Ok(())
}

fn put_strings(out: &mut Frames, field: Field, list: &List<'_, &str>) -> Result<(), DecodeError> {
    list.iter()
        .try_for_each(|value| put_string(out, field, value))
}

fn put_conn_ids(out: &mut Frames, field: Field, conns: &List<'_, u64>) -> Result<(), DecodeError> {
    check_len(field, conns.len())?;
    let buf = out.frame();
    for id in conns.iter() {
        buf.extend_from_slice(&conn_id(id)?.to_be_bytes());
    }
    Ok(())
}

fn put_payload(out: &mut Frames, payload: &Payload<'_>) -> Result<(), DecodeError> {
    let bytes = payload.as_bytes();
    check_len(Field::Payload, bytes.len())?;
    out.push(bytes);
    Ok(())
}

fn kind_byte(payload: &Payload<'_>) -> u8 {
    match payload {
        Payload::Text(_) => 1,
        Payload::Binary(_) => 2,
    }
}

/// The body frames of a message not read yet.
struct Body<'a> {
    frames: &'a [&'a [u8]],
}

impl<'a> Body<'a> {
    fn next(&mut self) -> Result<&'a [u8], DecodeError> {
        let (&frame, rest) = self.frames.split_first().ok_or(DecodeError::FrameCount)?;
        self.frames = rest;
        Ok(frame)
    }

    /// The next `n` frames.
    fn take(&mut self, n: usize) -> Result<&'a [&'a [u8]], DecodeError> {
        if n > self.frames.len() {
            return Err(DecodeError::FrameCount);
        }
        let (taken, rest) = self.frames.split_at(n);
        self.frames = rest;
        Ok(taken)
    }

    /// The next `n` frames, each a `field` string.
    fn strings(&mut self, field: Field, n: usize) -> Result<List<'a, &'a str>, DecodeError> {
        let frames = self.take(n)?;
        for &frame in frames {
            check_string(field, frame)?;
        }
        Ok(List::wire(frames))
    }

    /// The next `n` header pairs (name, value).
    fn headers(&mut self, n: usize) -> Result<List<'a, HttpHeader<'a>>, DecodeError> {
        let frames = self.take(2 * n)?;
        for pair in frames.chunks_exact(2) {
            if let [name, value] = *pair {
                check_string(Field::HeaderName, name)?;
                check_len(Field::HeaderValue, value.len())?;
            }
        }
        Ok(List::wire(frames))
    }

    fn meta(&mut self) -> Result<Meta<'a>, DecodeError> {
        self.next().map(|rest| Meta { rest })
    }

    fn string(&mut self, field: Field) -> Result<&'a str, DecodeError> {
        check_string(field, self.next()?)
    }

    fn conn_ids(&mut self, field: Field) -> Result<List<'a, u64>, DecodeError> {
        let frame = self.take(1)?;
        let len = frame.first().map_or(0, |bytes| bytes.len());
        if len % 8 != 0 {
            return Err(DecodeError::FrameLength);
        }
        check_len(field, len / 8)?;
        let ids = List::<u64>::wire(frame);
        ids.iter().try_for_each(|id| conn_id(id).map(drop))?;
        Ok(ids)
    }

    fn payload(&mut self, kind: u8) -> Result<Payload<'a>, DecodeError> {
        let bytes = self.next()?;
        check_len(Field::Payload, bytes.len())?;
        match kind {
            1 => std::str::from_utf8(bytes)
                .map(Payload::Text)
                .map_err(|_| DecodeError::InvalidUtf8(Field::Payload)),
            2 => Ok(Payload::Binary(bytes)),
            _ => Err(DecodeError::InvalidKind(kind)),
        }
    }

    fn end(&self) -> Result<(), DecodeError> {
        match self.frames {
            [] => Ok(()),
            _ => Err(DecodeError::FrameCount),
        }
    }
}

/// A fixed-size meta frame, read field by field (big-endian).
struct Meta<'a> {
    rest: &'a [u8],
}

impl Meta<'_> {
    fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let (head, rest) = self
            .rest
            .split_first_chunk::<N>()
            .ok_or(DecodeError::FrameLength)?;
        self.rest = rest;
        Ok(*head)
    }

    fn u8(&mut self) -> Result<u8, DecodeError> {
        self.array::<1>().map(|[byte]| byte)
    }

    fn u16(&mut self) -> Result<u16, DecodeError> {
        self.array().map(u16::from_be_bytes)
    }

    fn u32(&mut self) -> Result<u32, DecodeError> {
        self.array().map(u32::from_be_bytes)
    }

    fn u64(&mut self) -> Result<u64, DecodeError> {
        self.array().map(u64::from_be_bytes)
    }

    fn end(self) -> Result<(), DecodeError> {
        match self.rest {
            [] => Ok(()),
            _ => Err(DecodeError::FrameLength),
        }
    }
}

/// The one check of a string field, for decode and encode alike: length,
/// then syntax (service and header names), then UTF-8.
fn check_string(field: Field, bytes: &[u8]) -> Result<&str, DecodeError> {
    check_len(field, bytes.len())?;
    let syntax_ok = match field {
        Field::Service => is_name(bytes),
        Field::HeaderName => bytes.iter().all(|&byte| is_lowercase_tchar(byte)),
        _ => true,
    };
    if !syntax_ok {
        return Err(DecodeError::InvalidName(field));
    }
    std::str::from_utf8(bytes).map_err(|_| DecodeError::InvalidUtf8(field))
}

/// RFC 9110 section 5.6.2 `tchar`, letters lowercase only: header names
/// travel lowercased, so each field has one spelling.
fn is_lowercase_tchar(byte: u8) -> bool {
    byte.is_ascii_lowercase() || byte.is_ascii_digit() || b"!#$%&'*+-.^_`|~".contains(&byte)
}

fn check_len(field: Field, len: usize) -> Result<(), DecodeError> {
    if field.fits(len) {
        Ok(())
    } else {
        Err(DecodeError::Length(field))
    }
}

/// A list length, checked, as the byte CONNECT carries it.
fn count_byte(field: Field, len: usize) -> Result<u8, DecodeError> {
    check_len(field, len)?;
    u8::try_from(len).map_err(|_| DecodeError::Length(field))
}

fn conn_id(id: u64) -> Result<u64, DecodeError> {
    if id == 0 {
        Err(DecodeError::ZeroConnId)
    } else {
        Ok(id)
    }
}

/// A CLOSE code: one a Close frame may carry.
fn close_code(code: CloseCode) -> Result<CloseCode, DecodeError> {
    if code.is_valid_on_wire() {
        Ok(code)
    } else {
        Err(DecodeError::InvalidCloseCode(code.0))
    }
}

/// A DISCONNECT code: a CLOSE code, or one of the two codes that report a
/// Close without a code (1005) and no Close at all (1006).
fn disconnect_code(code: CloseCode) -> Result<CloseCode, DecodeError> {
    match code {
        CloseCode::NO_STATUS | CloseCode::ABNORMAL => Ok(code),
        _ => close_code(code),
    }
}

fn initiator(byte: u8) -> Result<Initiator, DecodeError> {
    match byte {
        0 => Ok(Initiator::Client),
        1 => Ok(Initiator::Node),
        2 => Ok(Initiator::Worker),
        _ => Err(DecodeError::InvalidInitiator(byte)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::{
        HttpHeader, MAX_ACL_NAMES, MAX_CONN_IDS, MAX_HEADERS, MAX_ROLES, MAX_SERVICES,
    };

    const SERVICES: &[&str] = &["chat", "rooms.v2"];
    const ROLES: &[&str] = &["admin", "user"];
    const HEADERS: &[HttpHeader<'static>] = &[
        ("origin", b"https://example.com"),
        ("cookie", b"sid=\xff\x00"),
        ("x-empty", b""),
    ];
    const IDS: &[u64] = &[1, 2, u64::MAX];

    fn connect() -> Connect<'static> {
        Connect {
            conn: 42,
            reassigned: false,
            service: "chat",
            node: "node-a",
            peer: "203.0.113.7:51234",
            path: "/chat/lobby",
            query: "v=2&x=%20",
            subprotocol: "chat.v1",
            user: "alice",
            roles: List::from(ROLES),
            headers: List::from(HEADERS),
        }
    }

    /// At least one of every type, and the edge of every optional field.
    fn samples() -> Vec<Message<'static>> {
        vec![
            Message::Heartbeat { boot: 0 },
            Message::Heartbeat { boot: u64::MAX },
            Message::Bye,
            Message::Ready(Ready {
                instance: 0x0123_4567_89ab_cdef,
                name: "worker-1@host",
                services: List::from(SERVICES),
            }),
            Message::Welcome(Welcome {
                boot: 7,
                heartbeat_ms: 1000,
                liveness: 3,
                max_payload: 16 << 20,
                node: "node-a",
                reactors: Reactors::ALONE,
            }),
            Message::Error(ErrorReply {
                code: ErrorCode::NO_SUCH_CONNECTION,
                about: MessageType::Send as u8,
                detail: "not open here",
                conns: List::from(IDS),
            }),
            Message::Error(ErrorReply {
                code: ErrorCode(999),
                about: 0,
                detail: "",
                conns: List::from(&[][..]),
            }),
            Message::Connect(connect()),
            Message::Connect(Connect {
                reassigned: true,
                peer: "",
                query: "",
                subprotocol: "",
                user: "",
                roles: List::from(&[][..]),
                headers: List::from(&[][..]),
                ..connect()
            }),
            Message::Message(Data {
                conn: 1,
                payload: Payload::Text("h\u{e9}llo"),
            }),
            Message::Message(Data {
                conn: u64::MAX,
                payload: Payload::Binary(b"\x00\xff"),
            }),
            Message::Message(Data {
                conn: 3,
                payload: Payload::Text(""),
            }),
            Message::Disconnect(Disconnect {
                conn: 42,
                code: CloseCode::NORMAL,
                initiator: Initiator::Client,
                reason: "bye",
            }),
            Message::Disconnect(Disconnect {
                conn: 42,
                code: CloseCode::ABNORMAL,
                initiator: Initiator::Node,
                reason: "",
            }),
            Message::Disconnect(Disconnect {
                conn: 42,
                code: CloseCode::NO_STATUS,
                initiator: Initiator::Worker,
                reason: "",
            }),
            Message::Send(SendTo {
                conns: List::from(IDS),
                payload: Payload::Binary(b"blob"),
            }),
            Message::Send(SendTo {
                conns: List::from(&[9][..]),
                payload: Payload::Text("hi"),
            }),
            Message::Publish(Publish {
                channel: "rooms/lobby",
                except: Some(42),
                author: None,
                payload: Payload::Text("hi all"),
            }),
            Message::Publish(Publish {
                channel: "t",
                except: None,
                author: None,
                payload: Payload::Binary(b""),
            }),
            Message::Subscribe(Subscription {
                conn: 42,
                channel: "rooms/lobby",
            }),
            Message::Unsubscribe(Subscription {
                conn: 42,
                channel: "rooms/lobby",
            }),
            Message::Close(Close {
                conn: 42,
                code: CloseCode::TRY_AGAIN_LATER,
                reason: "overloaded",
            }),
            Message::Close(Close {
                conn: 42,
                code: CloseCode(4000),
                reason: "",
            }),
            acl_allow(),
            Message::AclCommand(AclCommand {
                request: u64::MAX,
                op: AclOp::RemoveRoleParents,
                args: [
                    List::from(&ROLES[..1]),
                    List::from(&[][..]),
                    List::from(&[][..]),
                ],
            }),
            Message::AclResult(AclResult {
                request: 7,
                status: AclStatus::Ok,
                decision: Some(true),
                detail: "",
                explanation: "user alice\nallowed",
            }),
            Message::AclResult(AclResult {
                request: 8,
                status: AclStatus::NotPersisted,
                decision: None,
                detail: "acl.conf: read-only file system",
                explanation: "",
            }),
            Message::AclResult(AclResult {
                request: 9,
                status: AclStatus::Refused,
                decision: Some(false),
                detail: "",
                explanation: "",
            }),
            auth(),
            Message::Auth(Auth {
                request: u64::MAX,
                peer: "",
                path: "/",
                query: "",
                headers: List::from(&[][..]),
            }),
            auth_reply(),
            Message::AuthReply(AuthReply {
                request: u64::MAX,
                allow: false,
                user: "",
                roles: List::from(&[][..]),
            }),
        ]
    }

    fn auth() -> Message<'static> {
        Message::Auth(Auth {
            request: 42,
            peer: "203.0.113.7:51234",
            path: "/chat",
            query: "v=2",
            headers: List::from(HEADERS),
        })
    }

    fn auth_reply_fields() -> AuthReply<'static> {
        AuthReply {
            request: 42,
            allow: true,
            user: "alice",
            roles: List::from(ROLES),
        }
    }

    fn auth_reply() -> Message<'static> {
        Message::AuthReply(auth_reply_fields())
    }

    /// ALLOW [admin, user] [chat/*] [publish, subscribe], request 5.
    fn acl_allow() -> Message<'static> {
        const RESOURCES: &[&str] = &["chat/*"];
        const PERMISSIONS: &[&str] = &["publish", "subscribe"];
        Message::AclCommand(AclCommand {
            request: 5,
            op: AclOp::Allow,
            args: [
                List::from(ROLES),
                List::from(RESOURCES),
                List::from(PERMISSIONS),
            ],
        })
    }

    fn acl_result() -> Message<'static> {
        Message::AclResult(AclResult {
            request: 1,
            status: AclStatus::Ok,
            decision: None,
            detail: "",
            explanation: "",
        })
    }

    /// The frames `encode` writes for `message`.
    fn encoded(message: &Message<'_>) -> Vec<Vec<u8>> {
        let mut out = Frames::new();
        encode(message, &mut out).expect("encodable");
        out.iter().map(<[u8]>::to_vec).collect()
    }

    fn decode_owned(frames: &[Vec<u8>]) -> Result<String, DecodeError> {
        let refs: Vec<&[u8]> = frames.iter().map(Vec::as_slice).collect();
        decode(&refs).map(|message| format!("{message:?}"))
    }

    #[test]
    fn every_sample_round_trips() {
        let mut out = Frames::new();
        let mut types = std::collections::HashSet::new();
        for message in samples() {
            types.insert(message.message_type());
            encode(&message, &mut out).expect("encodable");
            let frames: Vec<&[u8]> = out.iter().collect();
            assert_eq!(decode(&frames), Ok(message));
            // Re-encoding the borrowed (wire-form) value gives the same bytes.
            let decoded = decode(&frames).expect("decodes");
            let again = encoded(&decoded);
            assert_eq!(again, frames, "{message:?}");
        }
        assert_eq!(types.len(), 17, "every message type is sampled");
    }

    /// Version 2: every v1 sample (PUBLISH with or without an author),
    /// MESSAGES and SENDS round-trip; v1 refuses what it cannot carry.
    #[test]
    fn version_2_round_trips_and_v1_refuses_its_additions() {
        let mut batch = crate::batch::BatchBuilder::default();
        batch.push(7, Payload::Text("hi"));
        let roles = ["admin", "ops"];
        let authored = Message::Publish(Publish {
            channel: "rooms/lobby",
            except: None,
            author: Some(Author {
                user: "alice",
                roles: List::from(&roles[..]),
            }),
            payload: Payload::Text("hi all"),
        });
        let guest = Message::Publish(Publish {
            channel: "t",
            except: Some(3),
            author: Some(Author {
                user: "",
                roles: List::from(&[][..]),
            }),
            payload: Payload::Binary(b""),
        });
        let v2_only = [
            Message::Messages(batch.batch()),
            Message::Sends(batch.batch()),
            authored,
            guest,
        ];
        let mut out = Frames::new();
        for message in samples().into_iter().chain(v2_only) {
            encode_in(VERSION_2, &message, &mut out).expect("encodable in v2");
            let frames: Vec<&[u8]> = out.iter().collect();
            assert_eq!(frames[0][0], VERSION_2);
            assert_eq!(decode(&frames), Ok(message), "{message:?}");
        }
        for message in v2_only {
            assert!(
                encode_in(VERSION, &message, &mut out).is_err(),
                "{message:?}"
            );
        }
        encode_in(VERSION_2, &authored, &mut out).expect("encodable");
        let frames: Vec<Vec<u8>> = out.iter().map(<[u8]>::to_vec).collect();
        assert_eq!(frames[1][9..], [PUBLISH_AUTHORED, 2], "flags and roles");
        assert_eq!(frames.len(), 1 + 3 + 1 + 2);
        let bad = |edit: fn(&mut Vec<Vec<u8>>)| {
            let mut frames = frames.clone();
            edit(&mut frames);
            decode_owned(&frames)
        };
        assert_eq!(bad(|f| f[1][9] = 2), Err(DecodeError::UnknownFlags(2)));
        assert_eq!(
            bad(|f| f[1][10] = 33),
            Err(DecodeError::Length(Field::Roles))
        );
        assert_eq!(bad(|f| f[1][10] = 3), Err(DecodeError::FrameCount));
        assert_eq!(
            bad(|f| f[1][9] = 0),
            Err(DecodeError::FrameCount),
            "roles without the flag"
        );
    }

    /// Version 3 (section 14): every v1 and v2 message round-trips with
    /// version byte 3 and v2's body; WELCOME carries the reactors, which
    /// v1 and v2 leave out; the document's example.
    #[test]
    fn version_3_is_version_2_with_the_reactors_in_welcome() {
        let mut batch = crate::batch::BatchBuilder::default();
        batch.push(7, Payload::Text("hi"));
        let mut out = Frames::new();
        for message in samples().into_iter().chain([Message::Sends(batch.batch())]) {
            encode_in(VERSION_2, &message, &mut out).expect("encodable in v2");
            let v2: Vec<Vec<u8>> = out.iter().map(<[u8]>::to_vec).collect();
            encode_in(VERSION_3, &message, &mut out).expect("encodable in v3");
            let frames: Vec<&[u8]> = out.iter().collect();
            assert_eq!(frames[0], [VERSION_3, v2[0][1], v2[0][2]]);
            if !matches!(message, Message::Welcome(_)) {
                assert_eq!(frames[1..], v2[1..], "v2's body: {message:?}");
            }
            assert_eq!(decode(&frames), Ok(message), "{message:?}");
        }
        let second = Welcome {
            boot: 1,
            heartbeat_ms: 1000,
            liveness: 3,
            max_payload: 65536,
            node: "node.1",
            reactors: Reactors { index: 1, count: 2 },
        };
        let welcome = Message::Welcome(second);
        encode_in(VERSION_3, &welcome, &mut out).expect("encodable");
        let frames: Vec<&[u8]> = out.iter().collect();
        let meta = b"\0\0\0\0\0\0\0\x01\0\0\x03\xe8\0\x01\0\0\x03\0\x01\0\x02";
        assert_eq!(frames, [&[3, 0x11, 0][..], meta, b"node.1"]);
        assert_eq!(decode(&frames), Ok(welcome));
        for version in [VERSION, VERSION_2] {
            encode_in(version, &welcome, &mut out).expect("encodable");
            let frames: Vec<&[u8]> = out.iter().collect();
            assert_eq!(frames[1].len(), 17, "v{version} cannot say it");
            let Ok(Message::Welcome(decoded)) = decode(&frames) else {
                panic!("v{version} WELCOME decodes");
            };
            assert_eq!(decoded.reactors, Reactors::ALONE);
        }
        let nowhere = Message::Welcome(Welcome {
            reactors: Reactors { index: 2, count: 2 },
            ..second
        });
        let refused = encode_in(VERSION_3, &nowhere, &mut out);
        assert_eq!(
            refused,
            Err(DecodeError::InvalidReactor(Reactors { index: 2, count: 2 }))
        );
    }

    #[test]
    fn layouts_match_the_protocol_document() {
        let hex = |frames: Vec<Vec<u8>>| -> Vec<String> {
            frames
                .iter()
                .map(|frame| frame.iter().map(|byte| format!("{byte:02x}")).collect())
                .collect()
        };
        assert_eq!(
            hex(encoded(&Message::Heartbeat { boot: 0x1122 })),
            ["010100", "0000000000001122"]
        );
        assert_eq!(hex(encoded(&Message::Bye)), ["010200"]);
        assert_eq!(
            hex(encoded(&Message::Message(Data {
                conn: 7,
                payload: Payload::Text("hi"),
            }))),
            ["012100", "000000000000000701", "6869"]
        );
        assert_eq!(
            hex(encoded(&Message::Send(SendTo {
                conns: List::from(&[7, 8][..]),
                payload: Payload::Binary(b"\x01"),
            }))),
            ["013000", "02", "00000000000000070000000000000008", "01"]
        );
        assert_eq!(
            hex(encoded(&Message::Welcome(Welcome {
                boot: 1,
                heartbeat_ms: 1000,
                liveness: 3,
                max_payload: 65536,
                node: "n",
                reactors: Reactors::ALONE,
            }))),
            ["011100", "0000000000000001000003e80001000003", "6e"]
        );
        let connect = encoded(&Message::Connect(connect()));
        assert_eq!(connect.len(), 9 + ROLES.len() + 2 * HEADERS.len());
        assert_eq!(hex(connect)[1], "000000000000002a000203");
        assert_eq!(
            hex(encoded(&acl_allow())),
            [
                "014000",
                "000000000000000501020102",
                "61646d696e",
                "75736572",
                "636861742f2a",
                "7075626c697368",
                "737562736372696265"
            ]
        );
        assert_eq!(
            hex(encoded(&Message::AclResult(AclResult {
                request: 5,
                status: AclStatus::Ok,
                decision: Some(false),
                detail: "",
                explanation: "no",
            }))),
            ["014100", "00000000000000050002", "", "6e6f"]
        );
        let origin: &[HttpHeader] = &[("origin", b"o")];
        assert_eq!(
            hex(encoded(&Message::Auth(Auth {
                request: 7,
                peer: "p",
                path: "/a",
                query: "",
                headers: List::from(origin),
            }))),
            [
                "012300",
                "000000000000000701",
                "70",
                "2f61",
                "",
                "6f726967696e",
                "6f"
            ]
        );
        assert_eq!(
            hex(encoded(&Message::AuthReply(AuthReply {
                request: 7,
                allow: true,
                user: "u",
                roles: List::from(&ROLES[..1]),
            }))),
            ["013500", "00000000000000070101", "75", "61646d696e"]
        );
    }

    #[test]
    fn every_acl_op_round_trips_at_its_widest() {
        let names: Vec<&str> = (0..MAX_ACL_NAMES).map(|_| "n").collect();
        let long = "x".repeat(256);
        for byte in 1..=9 {
            let op = AclOp::from_u8(byte).expect("op");
            let lists = op.arity().map(|(_, max)| {
                let list: &[&str] = if max == 1 {
                    &[long.as_str()][..]
                } else {
                    &names[..max]
                };
                list.to_vec()
            });
            let message = Message::AclCommand(AclCommand {
                request: 1,
                op,
                args: [0, 1, 2].map(|i| List::from(&lists[i][..])),
            });
            let frames = encoded(&message);
            assert!(frames.len() < MAX_FRAMES);
            assert_eq!(decode_owned(&frames), Ok(format!("{message:?}")), "{op:?}");
        }
    }

    #[test]
    fn caps_are_inclusive() {
        let services: Vec<&str> = (0..MAX_SERVICES).map(|_| "s").collect();
        let roles: Vec<&str> = (0..MAX_ROLES).map(|_| "r").collect();
        let headers: Vec<HttpHeader> = (0..MAX_HEADERS).map(|_| ("h", &b"v"[..])).collect();
        let ids: Vec<u64> = (1..=MAX_CONN_IDS as u64).collect();
        let long_path = "/".repeat(8192);
        let reason = "r".repeat(123);
        let big = [
            Message::Ready(Ready {
                instance: 1,
                name: &"n".repeat(64),
                services: List::from(&services[..]),
            }),
            Message::Connect(Connect {
                path: &long_path,
                roles: List::from(&roles[..]),
                headers: List::from(&headers[..]),
                ..connect()
            }),
            Message::Send(SendTo {
                conns: List::from(&ids[..]),
                payload: Payload::Binary(b""),
            }),
            Message::Close(Close {
                conn: 1,
                code: CloseCode::NORMAL,
                reason: &reason,
            }),
            Message::Auth(Auth {
                request: 1,
                peer: &"p".repeat(64),
                path: &long_path,
                query: &long_path,
                headers: List::from(&headers[..]),
            }),
            Message::AuthReply(AuthReply {
                request: 1,
                allow: true,
                user: &"u".repeat(256),
                roles: List::from(&roles[..]),
            }),
        ];
        for message in big {
            let frames = encoded(&message);
            assert!(frames.len() <= MAX_FRAMES);
            assert_eq!(decode_owned(&frames), Ok(format!("{message:?}")));
        }
    }

    /// `sample`'s frames with frame `index` replaced by `edit` of it.
    fn edit(sample: &Message<'_>, index: usize, change: impl FnOnce(&mut Vec<u8>)) -> Vec<Vec<u8>> {
        let mut frames = encoded(sample);
        change(&mut frames[index]);
        frames
    }

    /// `sample`'s frames with `extra` appended (or, for `None`, the last one
    /// removed).
    fn resize(sample: &Message<'_>, extra: Option<&[u8]>) -> Vec<Vec<u8>> {
        let mut frames = encoded(sample);
        match extra {
            Some(frame) => frames.push(frame.to_vec()),
            None => drop(frames.pop()),
        }
        frames
    }

    fn heartbeat() -> Message<'static> {
        Message::Heartbeat { boot: 5 }
    }

    fn text(conn: u64) -> Message<'static> {
        Message::Message(Data {
            conn,
            payload: Payload::Text("hi"),
        })
    }

    fn ready() -> Message<'static> {
        Message::Ready(Ready {
            instance: 1,
            name: "w",
            services: List::from(SERVICES),
        })
    }

    fn send() -> Message<'static> {
        Message::Send(SendTo {
            conns: List::from(IDS),
            payload: Payload::Binary(b"x"),
        })
    }

    fn disconnect() -> Message<'static> {
        Message::Disconnect(Disconnect {
            conn: 1,
            code: CloseCode::NORMAL,
            initiator: Initiator::Client,
            reason: "",
        })
    }

    fn close() -> Message<'static> {
        Message::Close(Close {
            conn: 1,
            code: CloseCode::NORMAL,
            reason: "",
        })
    }

    fn publish() -> Message<'static> {
        Message::Publish(Publish {
            channel: "c",
            except: None,
            author: None,
            payload: Payload::Text("x"),
        })
    }

    fn connect_message() -> Message<'static> {
        Message::Connect(connect())
    }

    /// Byte offsets in CONNECT's meta frame.
    const CONNECT_FLAGS: usize = 8;
    const CONNECT_ROLES: usize = 9;
    const CONNECT_HEADERS: usize = 10;
    /// Frame indexes in CONNECT: header, meta, service, node, peer, path,
    /// query, subprotocol, user, roles..., headers...
    const PATH: usize = 5;
    const FIRST_ROLE: usize = 9;
    const FIRST_HEADER: usize = FIRST_ROLE + ROLES.len();

    /// One test per row: `name: frames => error;`.
    macro_rules! rejects {
        ($($name:ident: $frames:expr => $expected:expr;)*) => {$(
            #[test]
            fn $name() {
                let frames: Vec<Vec<u8>> = $frames;
                assert_eq!(decode_owned(&frames), Err($expected));
            }
        )*};
    }

    use DecodeError::*;

    rejects! {
        auth_request_0: edit(&auth(), 1, |m| m[..8].fill(0)) => ZeroConnId;
        auth_meta_short: edit(&auth(), 1, |m| m.truncate(8)) => FrameLength;
        auth_header_count_above_frames: edit(&auth(), 1, |m| m[8] = 4) => FrameCount;
        auth_header_count_over_cap: edit(&auth(), 1, |m| m[8] = 33) => Length(Field::Headers);
        auth_without_query: resize(&auth(), None) => FrameCount;
        auth_empty_path: edit(&auth(), 3, Vec::clear) => Length(Field::Path);
        auth_peer_too_long: edit(&auth(), 2, |p| p.resize(65, b'p')) => Length(Field::Peer);
        auth_header_name_uppercase: edit(&auth(), 5, |n| n[0] = b'O') => InvalidName(Field::HeaderName);
        auth_header_value_too_long: edit(&auth(), 6, |v| v.resize(8193, b'v')) => Length(Field::HeaderValue);
        auth_reply_verdict_2: edit(&auth_reply(), 1, |m| m[8] = 2) => InvalidStatus(2);
        auth_reply_request_0: edit(&auth_reply(), 1, |m| m[..8].fill(0)) => ZeroConnId;
        auth_reply_role_count_over_cap: edit(&auth_reply(), 1, |m| m[9] = 33) => Length(Field::Roles);
        auth_reply_role_count_below_frames: edit(&auth_reply(), 1, |m| m[9] = 1) => FrameCount;
        auth_reply_extra_frame: resize(&auth_reply(), Some(b"r")) => FrameCount;
        auth_reply_empty_role: edit(&auth_reply(), 3, Vec::clear) => Length(Field::Role);
        auth_reply_user_too_long: edit(&auth_reply(), 2, |u| u.resize(257, b'u')) => Length(Field::User);
        auth_reply_user_not_utf8: edit(&auth_reply(), 2, |u| u[0] = 0xff) => InvalidUtf8(Field::User);
        no_frames: vec![] => Header;
        header_too_short: vec![vec![1, 1]] => Header;
        header_too_long: vec![vec![1, 1, 0, 0], vec![0; 8]] => Header;
        empty_header: vec![vec![]] => Header;
        version_0: edit(&heartbeat(), 0, |h| h[0] = 0) => UnknownVersion(0);
        version_4_any_header_length: vec![vec![4]] => UnknownVersion(4);
        version_3_welcome_short: vec![vec![3, 0x11, 0], vec![0; 17], b"n".to_vec()] => FrameLength;
        version_3_welcome_no_reactors: vec![vec![3, 0x11, 0], [vec![0; 17], vec![0, 0, 0, 0]].concat(), b"n".to_vec()] => InvalidReactor(Reactors { index: 0, count: 0 });
        version_3_welcome_reactor_past_count: vec![vec![3, 0x11, 0], [vec![0; 17], vec![0, 2, 0, 2]].concat(), b"n".to_vec()] => InvalidReactor(Reactors { index: 2, count: 2 });
        version_2_header_too_short: vec![vec![2, 0x24]] => Header;
        version_1_has_no_batches: vec![vec![1, 0x24, 0], vec![0; 14]] => UnknownType(0x24);
        unknown_type: edit(&heartbeat(), 0, |h| h[1] = 0x03) => UnknownType(0x03);
        acl_admin_reserved: edit(&heartbeat(), 0, |h| h[1] = 0x42) => UnknownType(0x42);
        acl_command_op_0: edit(&acl_allow(), 1, |m| m[8] = 0) => InvalidOp(0);
        acl_command_op_10: edit(&acl_allow(), 1, |m| m[8] = 10) => InvalidOp(10);
        acl_command_count_above_frames: edit(&acl_allow(), 1, |m| m[11] = 3) => FrameCount;
        acl_command_count_below_frames: edit(&acl_allow(), 1, |m| m[11] = 1) => FrameCount;
        acl_command_empty_list: edit(&acl_allow(), 1, |m| m[10] = 0) => Length(Field::AclArgs);
        acl_command_over_cap: edit(&acl_allow(), 1, |m| m[9] = MAX_ACL_NAMES as u8 + 1) => Length(Field::AclArgs);
        acl_command_arity: edit(&acl_allow(), 1, |m| m[8] = AclOp::Explain as u8) => Length(Field::AclArgs);
        acl_command_meta_short: edit(&acl_allow(), 1, |m| { m.pop(); }) => FrameLength;
        acl_command_empty_name: edit(&acl_allow(), 2, Vec::clear) => Length(Field::AclName);
        acl_command_name_too_long: edit(&acl_allow(), 2, |n| n.resize(257, b'n')) => Length(Field::AclName);
        acl_command_name_not_utf8: edit(&acl_allow(), 4, |n| n.push(0xff)) => InvalidUtf8(Field::AclName);
        acl_result_status_3: edit(&acl_result(), 1, |m| m[8] = 3) => InvalidStatus(3);
        acl_result_decision_3: edit(&acl_result(), 1, |m| m[9] = 3) => InvalidStatus(3);
        acl_result_meta_long: edit(&acl_result(), 1, |m| m.push(0)) => FrameLength;
        acl_result_explanation_too_long: edit(&acl_result(), 3, |e| e.resize(16385, b'e')) => Length(Field::Explanation);
        acl_result_without_explanation: resize(&acl_result(), None) => FrameCount;
        unknown_header_flag: edit(&heartbeat(), 0, |h| h[2] = 0x02) => UnknownFlags(0x02);
        too_many_frames: vec![vec![1, 2, 0]; MAX_FRAMES + 1] => FrameCount;
        heartbeat_without_body: resize(&heartbeat(), None) => FrameCount;
        heartbeat_extra_frame: resize(&heartbeat(), Some(b"")) => FrameCount;
        heartbeat_meta_short: edit(&heartbeat(), 1, |m| { m.pop(); }) => FrameLength;
        heartbeat_meta_long: edit(&heartbeat(), 1, |m| m.push(0)) => FrameLength;
        bye_with_body: resize(&Message::Bye, Some(b"")) => FrameCount;
        signed_flag_without_signature_frame: vec![vec![1, 2, FLAG_SIGNED]] => FrameCount;
        signed_flag_takes_the_last_frame: edit(&heartbeat(), 0, |h| h[2] = FLAG_SIGNED) => FrameCount;
        ready_without_services: resize(&Message::Ready(Ready { instance: 1, name: "w", services: List::from(&SERVICES[..1]) }), None) => Length(Field::Services);
        ready_over_cap: (0..=MAX_SERVICES).fold(encoded(&ready()), |mut f, _| { f.push(b"s".to_vec()); f }) => Length(Field::Services);
        ready_service_with_slash: edit(&ready(), 3, |s| s.push(b'/')) => InvalidName(Field::Service);
        ready_service_too_long: edit(&ready(), 3, |s| s.resize(65, b'a')) => Length(Field::Service);
        ready_empty_service: edit(&ready(), 3, Vec::clear) => Length(Field::Service);
        ready_empty_name: edit(&ready(), 2, Vec::clear) => Length(Field::WorkerName);
        ready_name_not_utf8: edit(&ready(), 2, |n| *n = b"\xc3".to_vec()) => InvalidUtf8(Field::WorkerName);
        ready_meta_short: edit(&ready(), 1, |m| { m.pop(); }) => FrameLength;
        welcome_meta_short: edit(&Message::Welcome(Welcome { boot: 1, heartbeat_ms: 1, liveness: 1, max_payload: 1, node: "n", reactors: Reactors::ALONE }), 1, |m| { m.pop(); }) => FrameLength;
        welcome_empty_node: edit(&Message::Welcome(Welcome { boot: 1, heartbeat_ms: 1, liveness: 1, max_payload: 1, node: "n", reactors: Reactors::ALONE }), 2, Vec::clear) => Length(Field::Node);
        error_detail_too_long: edit(&Message::Error(ErrorReply { code: ErrorCode(1), about: 0, detail: "", conns: List::from(IDS) }), 2, |d| d.resize(257, b'd')) => Length(Field::Detail);
        error_ids_over_cap: edit(&Message::Error(ErrorReply { code: ErrorCode(1), about: 0, detail: "", conns: List::from(IDS) }), 3, |i| i.resize(8 * (MAX_CONN_IDS + 1), 1)) => Length(Field::Affected);
        error_without_ids_frame: resize(&Message::Error(ErrorReply { code: ErrorCode(1), about: 0, detail: "", conns: List::from(IDS) }), None) => FrameCount;
        connect_zero_id: edit(&connect_message(), 1, |m| m[..8].fill(0)) => ZeroConnId;
        connect_unknown_flag: edit(&connect_message(), 1, |m| m[CONNECT_FLAGS] = 0x02) => UnknownFlags(0x02);
        connect_roles_over_cap: edit(&connect_message(), 1, |m| m[CONNECT_ROLES] = MAX_ROLES as u8 + 1) => Length(Field::Roles);
        connect_headers_over_cap: edit(&connect_message(), 1, |m| m[CONNECT_HEADERS] = MAX_HEADERS as u8 + 1) => Length(Field::Headers);
        connect_count_above_frames: edit(&connect_message(), 1, |m| m[CONNECT_ROLES] += 1) => FrameCount;
        connect_count_below_frames: edit(&connect_message(), 1, |m| m[CONNECT_HEADERS] -= 1) => FrameCount;
        connect_meta_long: edit(&connect_message(), 1, |m| m.push(0)) => FrameLength;
        connect_empty_path: edit(&connect_message(), PATH, Vec::clear) => Length(Field::Path);
        connect_path_too_long: edit(&connect_message(), PATH, |p| p.resize(8193, b'a')) => Length(Field::Path);
        connect_path_not_utf8: edit(&connect_message(), PATH, |p| p.push(0xff)) => InvalidUtf8(Field::Path);
        connect_service_reserved_chars: edit(&connect_message(), 2, |s| s.push(b' ')) => InvalidName(Field::Service);
        connect_role_not_utf8: edit(&connect_message(), FIRST_ROLE, |r| r.push(0x80)) => InvalidUtf8(Field::Role);
        connect_empty_role: edit(&connect_message(), FIRST_ROLE, Vec::clear) => Length(Field::Role);
        connect_header_name_uppercase: edit(&connect_message(), FIRST_HEADER, |n| n[0] = b'O') => InvalidName(Field::HeaderName);
        connect_header_name_with_colon: edit(&connect_message(), FIRST_HEADER, |n| n.push(b':')) => InvalidName(Field::HeaderName);
        connect_header_value_too_long: edit(&connect_message(), FIRST_HEADER + 1, |v| v.resize(8193, b'v')) => Length(Field::HeaderValue);
        message_zero_conn: encoded(&text(1)).into_iter().enumerate().map(|(i, mut f)| { if i == 1 { f[7] = 0; } f }).collect() => ZeroConnId;
        message_kind_3: edit(&text(1), 1, |m| m[8] = 3) => InvalidKind(3);
        message_kind_0: edit(&text(1), 1, |m| m[8] = 0) => InvalidKind(0);
        message_text_not_utf8: edit(&text(1), 2, |p| p.push(0xc0)) => InvalidUtf8(Field::Payload);
        message_without_payload: resize(&text(1), None) => FrameCount;
        message_meta_short: edit(&text(1), 1, |m| { m.pop(); }) => FrameLength;
        disconnect_code_1004: edit(&disconnect(), 1, |m| m[8..10].copy_from_slice(&1004u16.to_be_bytes())) => InvalidCloseCode(1004);
        disconnect_code_1015: edit(&disconnect(), 1, |m| m[8..10].copy_from_slice(&1015u16.to_be_bytes())) => InvalidCloseCode(1015);
        disconnect_initiator_3: edit(&disconnect(), 1, |m| m[10] = 3) => InvalidInitiator(3);
        disconnect_reason_too_long: edit(&disconnect(), 2, |r| r.resize(124, b'r')) => Length(Field::Reason);
        send_no_ids: edit(&send(), 2, Vec::clear) => Length(Field::Targets);
        send_ids_over_cap: edit(&send(), 2, |i| i.resize(8 * (MAX_CONN_IDS + 1), 1)) => Length(Field::Targets);
        send_ids_not_multiple_of_8: edit(&send(), 2, |i| i.push(1)) => FrameLength;
        send_zero_id_in_list: edit(&send(), 2, |i| i[8..16].fill(0)) => ZeroConnId;
        send_without_payload: resize(&send(), None) => FrameCount;
        send_kind_9: edit(&send(), 1, |m| m[0] = 9) => InvalidKind(9);
        publish_empty_channel: edit(&publish(), 2, Vec::clear) => Length(Field::Channel);
        publish_channel_too_long: edit(&publish(), 2, |c| c.resize(257, b'c')) => Length(Field::Channel);
        publish_meta_short: edit(&publish(), 1, |m| { m.pop(); }) => FrameLength;
        subscribe_channel_not_utf8: edit(&Message::Subscribe(Subscription { conn: 1, channel: "c" }), 2, |c| c.push(0xfe)) => InvalidUtf8(Field::Channel);
        unsubscribe_zero_conn: edit(&Message::Unsubscribe(Subscription { conn: 1, channel: "c" }), 1, |m| m.fill(0)) => ZeroConnId;
        close_code_1005: edit(&close(), 1, |m| m[8..10].copy_from_slice(&1005u16.to_be_bytes())) => InvalidCloseCode(1005);
        close_code_999: edit(&close(), 1, |m| m[8..10].copy_from_slice(&999u16.to_be_bytes())) => InvalidCloseCode(999);
        close_without_reason: resize(&close(), None) => FrameCount;
    }

    #[test]
    fn encode_refuses_what_decode_refuses() {
        let too_many_roles: Vec<&str> = (0..=MAX_ROLES).map(|_| "r").collect();
        let uppercase: [HttpHeader; 1] = [("Origin", b"")];
        let table: Vec<(Message, DecodeError)> = vec![
            (
                Message::Connect(Connect {
                    roles: List::from(&too_many_roles[..]),
                    ..connect()
                }),
                Length(Field::Roles),
            ),
            (
                Message::Connect(Connect {
                    service: "echo/x",
                    ..connect()
                }),
                InvalidName(Field::Service),
            ),
            (
                Message::Connect(Connect {
                    headers: List::from(&uppercase[..]),
                    ..connect()
                }),
                InvalidName(Field::HeaderName),
            ),
            (
                Message::Connect(Connect {
                    conn: 0,
                    ..connect()
                }),
                ZeroConnId,
            ),
            (
                Message::Close(Close {
                    conn: 1,
                    code: CloseCode::NO_STATUS,
                    reason: "",
                }),
                InvalidCloseCode(1005),
            ),
            (
                Message::Publish(Publish {
                    channel: "c",
                    except: Some(0),
                    author: None,
                    payload: Payload::Text(""),
                }),
                ZeroConnId,
            ),
            (
                Message::Send(SendTo {
                    conns: List::from(&[][..]),
                    payload: Payload::Text(""),
                }),
                Length(Field::Targets),
            ),
            (
                Message::Send(SendTo {
                    conns: List::from(&[1, 0][..]),
                    payload: Payload::Text(""),
                }),
                ZeroConnId,
            ),
            (
                Message::Ready(Ready {
                    instance: 1,
                    name: "",
                    services: List::from(SERVICES),
                }),
                Length(Field::WorkerName),
            ),
            (
                Message::Disconnect(Disconnect {
                    conn: 1,
                    code: CloseCode(1016),
                    initiator: Initiator::Node,
                    reason: "",
                }),
                InvalidCloseCode(1016),
            ),
            (
                Message::AclCommand(AclCommand {
                    request: 1,
                    op: AclOp::RemoveRole,
                    args: [List::from(ROLES), List::from(&[][..]), List::from(&[][..])],
                }),
                Length(Field::AclArgs),
            ),
            (
                Message::AclCommand(AclCommand {
                    request: 1,
                    op: AclOp::RemoveRole,
                    args: [
                        List::from(&[""][..]),
                        List::from(&[][..]),
                        List::from(&[][..]),
                    ],
                }),
                Length(Field::AclName),
            ),
            (
                Message::AuthReply(AuthReply {
                    roles: List::from(&too_many_roles[..]),
                    ..auth_reply_fields()
                }),
                Length(Field::Roles),
            ),
            (
                Message::AuthReply(AuthReply {
                    request: 0,
                    ..auth_reply_fields()
                }),
                ZeroConnId,
            ),
            (
                Message::Auth(Auth {
                    request: 1,
                    peer: "",
                    path: "/",
                    query: "",
                    headers: List::from(&uppercase[..]),
                }),
                InvalidName(Field::HeaderName),
            ),
        ];
        let mut out = Frames::new();
        for (message, expected) in table {
            assert_eq!(encode(&message, &mut out), Err(expected), "{message:?}");
        }
    }

    #[test]
    fn frames_reuse_small_buffers_and_release_large_ones() {
        let mut out = Frames::new();
        let big = vec![7u8; KEEP_CAPACITY + 1];
        let message = Message::Message(Data {
            conn: 1,
            payload: Payload::Binary(&big),
        });
        encode(&message, &mut out).expect("encodable");
        assert_eq!(out.len(), 3);
        out.clear();
        assert!(out.is_empty());
        assert!(out.bufs.iter().all(|buf| buf.capacity() <= KEEP_CAPACITY));
        encode(&Message::Bye, &mut out).expect("encodable");
        assert_eq!(out.iter().collect::<Vec<_>>(), [&[1, 2, 0][..]]);
    }

    #[test]
    fn head_reports_type_and_signed_flag() {
        let frames: [&[u8]; 1] = [&[1, 0x34, FLAG_SIGNED]];
        assert_eq!(
            parse_head(&frames),
            Ok(Head {
                version: 1,
                message_type: MessageType::Close,
                signed: true
            })
        );
    }
}
