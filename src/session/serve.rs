//! What serves an open connection, the built-in echo or a backend worker,
//! and the loop that runs a batch of client frames through it.

use std::time::Instant;

use super::{Guard, NodePort, Stats};
use crate::access::Identity;
use crate::backend::message::Payload;
use crate::config;
use crate::node::sessions::ConnectInfo;
use crate::ws::deflate::codec::inflate_limit;
use crate::ws::deflate::{Codec, InflateError};
use crate::ws::upgrade::Request;
use crate::ws::{encoder, CloseCode, Decoder, Error, Event, OpCode};

/// The service behind an open connection.
pub enum Target {
    /// The built-in echo.
    Echo,
    /// A backend worker: the state the protocol needs for this connection.
    Worker(Box<WorkerSession>),
}

impl Target {
    /// The name of the service, the resource of the `send` permission.
    pub fn service(&self) -> &str {
        match self {
            Target::Echo => "echo",
            Target::Worker(session) => &session.service,
        }
    }
}

/// What a connection served by a worker keeps itself: the node holds the
/// rest ([`crate::node::sessions`]).
pub struct WorkerSession {
    /// The service its route names.
    pub service: String,
    /// A message waits in the node for the worker's pipe: reading from
    /// the client stops until the node says it is out.
    pub blocked: bool,
    /// Client bytes read but not yet served: the worker's pipe was full.
    /// Kept here, not in every connection: only a worker blocks.
    pub unread: Vec<u8>,
}

impl WorkerSession {
    /// The session of a client upgraded to `service`.
    pub fn new(service: &str) -> Self {
        Self {
            service: service.to_owned(),
            blocked: false,
            unread: Vec::new(),
        }
    }
}

/// What CONNECT tells the worker of a client upgraded on `request` to
/// `service`: the user and token roles of `identity` (none: anonymous).
pub fn connect_info(
    service: &str,
    peer: std::net::SocketAddr,
    request: &Request,
    identity: Option<&Identity>,
) -> ConnectInfo {
    let roles = identity.map(Identity::connect_roles).unwrap_or_default();
    ConnectInfo {
        service: service.to_owned(),
        peer: peer.to_string(),
        path: request.path.clone(),
        query: request.query.clone().unwrap_or_default(),
        subprotocol: request.subprotocol.clone().unwrap_or_default(),
        user: identity.map_or("", Identity::connect_user).to_owned(),
        roles: roles.iter().map(|role| role.to_string()).collect(),
        headers: forwarded_headers(request, false)
            .map(|(name, value)| (name, value.to_owned()))
            .collect(),
    }
}

/// The request headers workers are told, by lowercase name: `origin` and
/// `user-agent`, and `cookie` when `with_cookie` (AUTH carries it,
/// CONNECT does not).
pub fn forwarded_headers(
    request: &Request,
    with_cookie: bool,
) -> impl Iterator<Item = (&'static str, &str)> {
    let cookie = request.cookie.as_ref().filter(|_| with_cookie);
    [
        ("origin", request.origin.as_ref()),
        ("user-agent", request.user_agent.as_ref()),
        ("cookie", cookie),
    ]
    .into_iter()
    .filter_map(|(name, value)| Some((name, value?.as_str())))
}

/// The WebSocket opcode of a data message.
pub fn opcode_of(payload: Payload<'_>) -> OpCode {
    match payload {
        Payload::Text(_) => OpCode::Text,
        Payload::Binary(_) => OpCode::Binary,
    }
}

/// What the client's frames asked of the connection.
pub enum Next {
    /// Keep going.
    Stay,
    /// The client may not send on this service: the bytes from this
    /// offset on follow the refused message.
    Forbidden(usize),
    /// The client sent Close with this code (1005 when it had none).
    PeerClosed(u16),
    /// The client sent more messages than its budget.
    OverBudget,
    /// The worker's pipe is full: the bytes from this offset on were not
    /// served and wait until it drains.
    Blocked(usize),
}

/// Everything one batch of frames may touch.
pub struct Serving<'a> {
    /// Output for the client.
    pub out: &'a mut Vec<u8>,
    /// The backend node, when there is one.
    pub node: Option<&'a mut dyn NodePort>,
    /// The connection's budget of messages.
    pub guard: &'a mut Guard,
    /// The connection's counters.
    pub stats: &'a mut Stats,
    /// The time of this event.
    pub now: Instant,
    /// The connection's id on the backend link.
    pub conn: u64,
    /// Our Close is out: only the client's Close matters now.
    pub closing: bool,
    /// The ACL lets the client send on the service.
    pub may_send: bool,
    /// The reactor's compression state.
    pub codec: &'a mut Codec,
    /// The server's window, when permessage-deflate was agreed.
    pub deflate: Option<u8>,
    /// The permessage-deflate settings.
    pub deflate_config: &'a config::Deflate,
    /// The message size cap, which inflated messages keep too.
    pub max_message: usize,
}

impl Serving<'_> {
    /// Runs every complete frame in `bytes` through the decoder and the
    /// target, staging responses in `out`.
    pub fn frames(
        &mut self,
        decoder: &mut Decoder,
        target: &mut Target,
        bytes: &mut [u8],
    ) -> Result<Next, Error> {
        let mut pos = 0;
        while pos < bytes.len() {
            let (used, event) = decoder.decode(&mut bytes[pos..])?;
            pos += used;
            let Some(event) = event else { continue };
            let data = matches!(
                event,
                Event::Text(_) | Event::Binary(_) | Event::Compressed { .. }
            );
            let mut inflated = None;
            let payload = match event {
                // RFC 6455 section 5.5.1: after sending Close, data is
                // discarded.
                Event::Ping(_) if self.closing => continue,
                _ if data && self.closing => continue,
                _ if data && !self.may_send => return Ok(Next::Forbidden(pos)),
                _ if data && !self.guard.admit_message(self.now) => return Ok(Next::OverBudget),
                Event::Text(text) => Payload::Text(text),
                Event::Binary(data) => Payload::Binary(data),
                Event::Compressed { text, payload } => {
                    let whole = inflated.insert(self.inflate(payload)?);
                    if text {
                        let text = std::str::from_utf8(whole).map_err(|_| Error::InvalidUtf8)?;
                        Payload::Text(text)
                    } else {
                        Payload::Binary(whole)
                    }
                }
                // RFC 6455 section 5.5.3: a Pong carries the Ping's payload.
                Event::Ping(payload) => {
                    encoder::encode_frame(self.out, OpCode::Pong, payload);
                    continue;
                }
                // An unsolicited Pong is a heartbeat; nothing to answer.
                Event::Pong(_) => continue,
                Event::Close(close) => {
                    // RFC 6455 section 5.5.1: answer a Close with a Close,
                    // echoing the status code, unless we sent ours already.
                    if !self.closing {
                        encoder::encode_close(self.out, close.map(|(code, _)| (code, "")));
                    }
                    let code = close.map_or(CloseCode::NO_STATUS, |(code, _)| code);
                    return Ok(Next::PeerClosed(code.0));
                }
            };
            self.stats.messages_in += 1;
            let served = self.serve(target, payload);
            if let Some(buffer) = inflated {
                self.codec.recycle(buffer);
            }
            if !served {
                return Ok(Next::Blocked(pos));
            }
        }
        Ok(Next::Stay)
    }

    /// A compressed message's payload, inflated within the message size
    /// cap and the ratio cap (RFC 7692 section 7.2.2).
    fn inflate(&mut self, compressed: &[u8]) -> Result<Vec<u8>, Error> {
        let ratio = self.deflate_config.max_ratio;
        let limit = inflate_limit(compressed.len(), self.max_message, ratio);
        self.codec
            .inflate(compressed, limit)
            .map_err(|error| match error {
                InflateError::TooBig => Error::TooBig,
                InflateError::Corrupt => Error::BadCompression,
            })
    }

    /// Hands one message to the target; false when the worker's pipe did
    /// not take it (it is kept as the session's pending message).
    fn serve(&mut self, target: &mut Target, payload: Payload<'_>) -> bool {
        match target {
            Target::Echo => {
                let (opcode, bytes) = (opcode_of(payload), payload.as_bytes());
                let min_bytes = self.deflate_config.min_bytes;
                self.codec
                    .encode_message(self.out, opcode, bytes, self.deflate, min_bytes);
                self.stats.messages_out += 1;
                true
            }
            Target::Worker(session) => {
                let Some(node) = self.node.as_deref_mut() else {
                    return true;
                };
                // A refused message waits in the node, which says when
                // it is out (`Session::resume`).
                session.blocked = !node.message(self.conn, payload, self.now);
                !session.blocked
            }
        }
    }
}
