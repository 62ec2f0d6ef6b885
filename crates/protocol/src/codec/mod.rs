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
    is_spoken, Close, Data, Field, List, Message, MessageType, Payload, Reactors, SendTo,
    FLAG_SIGNED, MAX_FRAMES, VERSION, VERSION_3,
};
use crate::close::CloseCode;

mod bodies;
mod reader;

use bodies::{
    decode_acl_command, decode_acl_result, decode_auth, decode_auth_reply, decode_connect,
    decode_disconnect, decode_error, decode_publish, decode_ready, decode_subscription,
    decode_welcome, encode_acl_command, encode_connect, encode_publish, put_headers,
};
use reader::{check_len, check_string, close_code, conn_id, count_byte, disconnect_code, Body};

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
    /// An ACL_COMMAND op byte is not one of [`AclOp`](crate::message::AclOp).
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

/// ACL_RESULT's decision byte: 0 none, 1 allowed, 2 denied.
fn decision_byte(decision: Option<bool>) -> u8 {
    match decision {
        None => 0,
        Some(true) => 1,
        Some(false) => 2,
    }
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

#[cfg(test)]
mod tests;
