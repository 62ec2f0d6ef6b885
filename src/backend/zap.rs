//! The ZAP handler (ZeroMQ RFC 27, ZeroMQ Authentication Protocol) that
//! enforces `--backend-allow` and, on a signed link, the key file: a worker
//! whose address is not in the [`Allowlist`], or whose CURVE key is derived
//! from no key of the file, is refused during the ZMTP handshake, before it
//! can send a single message.
//!
//! Two layers: a sans-IO core ([`parse_request`], [`decide`], [`reply`])
//! that turns the frames of one request into the frames of its reply, and
//! [`ZapHandler`], the REP socket at [`ENDPOINT`] that the reactor polls
//! like any other ZeroMQ socket.
//!
//! # What the node must do
//!
//! libzmq asks a ZAP handler about a connection only when the accepting
//! socket has a ZAP domain (with the NULL mechanism, an empty domain means
//! "no ZAP"), and it looks the handler up by name, per connection, when the
//! handshake starts. If nothing is bound at [`ENDPOINT`] then, the peer is
//! **admitted without asking**: libzmq 4.3 fails open unless the socket
//! sets `ZMQ_ZAP_ENFORCE_DOMAIN` (option 93: declared only in the draft
//! header and not wrapped by the `zmq` crate, but accepted by this build,
//! and then a missing handler refuses every peer). So, in this order, on
//! one [`zmq::Context`]:
//!
//! 1. [`ZapHandler::new`] (binds the REP socket at [`ENDPOINT`]), before any
//!    backend ROUTER binds, and kept alive as long as they are;
//! 2. on every ROUTER bound on a `tcp://` endpoint, before `bind`:
//!    `router.set_zap_domain(zap::DOMAIN)` (`"averyws"`);
//! 3. register [`ZapHandler::fd`] with mio for readable interest, and call
//!    [`ZapHandler::handle_ready`] on every event on it (and again, before
//!    sleeping, while it returns [`ZapStats::more`]).
//!
//! Serve it promptly: each handshake waits for its reply (for at most
//! `ZMQ_HANDSHAKE_IVL`, 30 s by default, after which libzmq drops the
//! connection). A refused peer receives a ZMTP ERROR with reason `"400"`;
//! libzmq (4.3) treats that as a protocol error and ends the session
//! without reconnecting, dropping what the DEALER had queued: the worker
//! sees nothing on its socket (a socket monitor shows
//! `ZMQ_EVENT_HANDSHAKE_FAILED_AUTH` with 400) and must `disconnect` and
//! `connect` again to retry. Every TCP connection costs one request, so
//! refusals are logged at most once a second.
//!
//! # What libzmq sends
//!
//! Per RFC 27 section "Request": version `"1.0"`, request id (libzmq
//! always uses `"1"` and rejects a reply with any other), domain, address,
//! identity, mechanism, then the mechanism's credentials (none for NULL,
//! two for PLAIN, one for CURVE and GSSAPI). The address is the peer's IP
//! from `getnameinfo(NI_NUMERICHOST)`, without port: `"127.0.0.1"`,
//! `"::1"`, `"::ffff:127.0.0.1"` for an IPv4 peer of a dual-stack socket,
//! `"fe80::1%eth0"` (with a zone) for a link-local one. The identity is the
//! accepting socket's own `ZMQ_ROUTING_ID` (usually empty), not the
//! peer's.
//!
//! # What this handler answers
//!
//! [`decide`]: 200 when the mechanism is the link's, the peer is an
//! `ipc://` one or its address, zone removed, is an IP the allowlist
//! allows, and, on a CURVE link (a signed one, docs/protocol.md section 1),
//! its public key is one the [`Policy`] holds; 400 otherwise. An unsigned
//! link is NULL: PLAIN and CURVE peers are refused there, because
//! approving them by address alone would let any password or key in.
//!
//! An `ipc://` peer's address is [`IPC_ADDRESS`], `"localhost"` (glibc's
//! `getnameinfo` for a Unix socket; this libzmq build appends no peer
//! credentials), never an IP: a TCP peer's address is always numeric. The
//! ZAP domain is a socket option, so the node's one ROUTER asks about its
//! `ipc://` peers too; they are admitted whatever the allowlist says,
//! because `--backend-allow` is about network addresses and a socket file
//! is guarded by its permissions. So listing blocks that leave out
//! loopback never locks out local `ipc://` workers.
//!
//! A malformed request is answered with a 400 carrying its request id; one
//! too short to have a request id is answered with an empty one (a REP
//! socket must answer every request before it can read the next one, and
//! libzmq fails the handshake on the mismatched id, so the effect is the
//! same as a refusal).

use std::net::IpAddr;
use std::os::fd::RawFd;
use std::time::{Duration, Instant};

use log::warn;

use super::cidr::Allowlist;

/// Where libzmq looks for the ZAP handler (RFC 27 section "Overall
/// Design"): one per context.
pub const ENDPOINT: &str = "inproc://zeromq.zap.01";

/// The ZAP domain the node sets on its `tcp://` ROUTERs
/// (`router.set_zap_domain(DOMAIN)`).
pub const DOMAIN: &str = "averyws";

/// The only ZAP version (RFC 27): first frame of requests and replies.
pub const VERSION: &[u8] = b"1.0";

/// Frames of a request without credentials: version, request id, domain,
/// address, identity, mechanism.
pub const MIN_FRAMES: usize = 6;

/// Most credential frames a request may carry (PLAIN's two).
pub const MAX_CREDENTIALS: usize = 2;

/// Most frames a request may have; a longer one is malformed.
pub const MAX_FRAMES: usize = MIN_FRAMES + MAX_CREDENTIALS;

/// Longest frame a request may have (a numeric host with a zone is under
/// 64 bytes, a PLAIN user name or password at most 255); a longer one
/// makes the request malformed.
pub const MAX_FRAME_LEN: usize = 1024;

/// Most requests one [`ZapHandler::handle_ready`] call answers before it
/// returns with [`ZapStats::more`] set, so a burst of handshakes cannot
/// hold the reactor.
pub const MAX_REQUESTS_PER_CALL: usize = 256;

/// The mechanism of an unsigned link's peers (RFC 27 section "Request":
/// `"NULL"`, `"PLAIN"`, `"CURVE"`, `"GSSAPI"`).
pub const MECHANISM_NULL: &[u8] = b"NULL";

/// The mechanism of a signed link's peers (docs/protocol.md section 1).
pub const MECHANISM_CURVE: &[u8] = b"CURVE";

/// The address frame of an `ipc://` peer (see the module docs).
pub const IPC_ADDRESS: &[u8] = b"localhost";

/// One ZAP request, borrowed from its frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Request<'a> {
    /// Opaque; echoed in the reply (libzmq sends `"1"`).
    pub request_id: &'a [u8],
    /// The accepting socket's ZAP domain.
    pub domain: &'a [u8],
    /// The peer's IP address as text, no port (see the module docs).
    pub address: &'a [u8],
    /// The accepting socket's routing id (RFC 27 calls it identity).
    pub identity: &'a [u8],
    /// `NULL`, `PLAIN`, `CURVE` or `GSSAPI`.
    pub mechanism: &'a [u8],
    /// The mechanism's credential frames, at most [`MAX_CREDENTIALS`].
    pub credentials: &'a [&'a [u8]],
}

impl Request<'_> {
    /// Whether the peer came through an `ipc://` endpoint: its address
    /// frame is [`IPC_ADDRESS`].
    pub fn is_ipc(&self) -> bool {
        self.address == IPC_ADDRESS
    }

    /// The peer's address as an IP, its `%zone` suffix removed and an
    /// IPv4-mapped IPv6 address (how an IPv6-enabled socket sees IPv4
    /// peers) given as IPv4; `None` when the address frame is not one
    /// (empty, or an `ipc://` peer).
    pub fn peer_ip(&self) -> Option<IpAddr> {
        let text = std::str::from_utf8(self.address).ok()?;
        let host = text.split_once('%').map_or(text, |(host, _zone)| host);
        host.parse::<IpAddr>().ok().map(|ip| ip.to_canonical())
    }
}

/// Why frames are not a ZAP request.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ZapError {
    /// Fewer than [`MIN_FRAMES`] frames (the count).
    TooFewFrames(usize),
    /// More than [`MAX_FRAMES`] frames.
    TooManyFrames,
    /// The version frame is not `"1.0"`.
    UnknownVersion,
    /// The frame at this index is longer than [`MAX_FRAME_LEN`].
    FrameTooLong(usize),
}

impl std::fmt::Display for ZapError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ZapError::TooFewFrames(n) => write!(f, "{n} frames, fewer than {MIN_FRAMES}"),
            ZapError::TooManyFrames => write!(f, "more than {MAX_FRAMES} frames"),
            ZapError::UnknownVersion => f.write_str("version frame is not \"1.0\""),
            ZapError::FrameTooLong(i) => write!(f, "frame {i} longer than {MAX_FRAME_LEN} bytes"),
        }
    }
}

impl std::error::Error for ZapError {}

/// Reads one request: its frames in RFC 27 order, bounded by
/// [`MAX_FRAMES`] and [`MAX_FRAME_LEN`]. Copies nothing.
pub fn parse_request<'a>(frames: &'a [&'a [u8]]) -> Result<Request<'a>, ZapError> {
    if frames.len() > MAX_FRAMES {
        return Err(ZapError::TooManyFrames);
    }
    if let Some(i) = frames.iter().position(|f| f.len() > MAX_FRAME_LEN) {
        return Err(ZapError::FrameTooLong(i));
    }
    let [version, request_id, domain, address, identity, mechanism, credentials @ ..] = frames
    else {
        return Err(ZapError::TooFewFrames(frames.len()));
    };
    if *version != VERSION {
        return Err(ZapError::UnknownVersion);
    }
    Ok(Request {
        request_id,
        domain,
        address,
        identity,
        mechanism,
        credentials,
    })
}

/// The request id of frames that may not parse as a request, for a reply
/// to a malformed one: frame 1, if present and at most [`MAX_FRAME_LEN`]
/// long.
pub fn request_id<'a>(frames: &[&'a [u8]]) -> Option<&'a [u8]> {
    frames
        .get(1)
        .copied()
        .filter(|id| id.len() <= MAX_FRAME_LEN)
}

/// The handler's answer to one request.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// 200: the peer may connect.
    Allow,
    /// 400: the address is an IP the allowlist does not allow.
    AddressNotAllowed,
    /// 400: the address frame is neither an IP nor [`IPC_ADDRESS`].
    NotAnIp,
    /// 400: a mechanism other than the link's (NULL unsigned, CURVE
    /// signed).
    Mechanism,
    /// 400: a CURVE public key derived from no key of the key file.
    UnknownKey,
    /// 400: the request is malformed.
    Malformed,
}

impl Verdict {
    /// Whether the peer is admitted.
    pub fn is_allowed(self) -> bool {
        self == Verdict::Allow
    }

    /// The RFC 27 status code frame.
    pub fn status_code(self) -> &'static [u8] {
        match self {
            Verdict::Allow => b"200",
            _ => b"400",
        }
    }

    /// The status text frame (and the reason in logs).
    pub fn status_text(self) -> &'static str {
        match self {
            Verdict::Allow => "OK",
            Verdict::AddressNotAllowed => "address not allowed",
            Verdict::NotAnIp => "address is not an IP",
            Verdict::Mechanism => "mechanism not supported",
            Verdict::UnknownKey => "CURVE key not in the key file",
            Verdict::Malformed => "malformed request",
        }
    }
}

/// Who a handler admits: peers from where the allowlist allows (or
/// `ipc://`), and on a signed link only those whose CURVE public key is
/// in `curve_clients`.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    /// Where peers may connect from.
    pub allowlist: Allowlist,
    /// `Some` on a CURVE link: the client public keys admitted.
    pub curve_clients: Option<Vec<[u8; 32]>>,
}

impl Policy {
    /// A NULL-mechanism link admitting by address only.
    pub fn null(allowlist: Allowlist) -> Policy {
        Policy {
            allowlist,
            curve_clients: None,
        }
    }
}

/// The verdict on a well-formed request: the link's mechanism, an
/// `ipc://` peer or an IP the allowlist allows, and on a CURVE link a
/// client key the policy holds.
pub fn decide(policy: &Policy, request: &Request<'_>) -> Verdict {
    let mechanism = match policy.curve_clients {
        Some(_) => MECHANISM_CURVE,
        None => MECHANISM_NULL,
    };
    if request.mechanism != mechanism {
        return Verdict::Mechanism;
    }
    if !request.is_ipc() {
        match request.peer_ip() {
            Some(ip) if policy.allowlist.allows(ip) => {}
            Some(_) => return Verdict::AddressNotAllowed,
            None => return Verdict::NotAnIp,
        }
    }
    match (&policy.curve_clients, request.credentials) {
        (None, _) => Verdict::Allow,
        (Some(keys), [key]) if keys.iter().any(|known| known[..] == **key) => Verdict::Allow,
        (Some(_), _) => Verdict::UnknownKey,
    }
}

/// Writes the six reply frames for `allowed` (200 `"OK"`) or not (400
/// `"address not allowed"`) into `out`; see [`reply_verdict`].
pub fn reply(request_id: &[u8], allowed: bool, out: &mut Vec<Vec<u8>>) {
    let verdict = if allowed {
        Verdict::Allow
    } else {
        Verdict::AddressNotAllowed
    };
    reply_verdict(request_id, verdict, out);
}

/// Writes the six reply frames (RFC 27 section "Reply") into `out`,
/// reusing its buffers: version `"1.0"`, `request_id`, status code, status
/// text, user id (empty), metadata (empty).
pub fn reply_verdict(request_id: &[u8], verdict: Verdict, out: &mut Vec<Vec<u8>>) {
    let frames: [&[u8]; 6] = [
        VERSION,
        request_id,
        verdict.status_code(),
        verdict.status_text().as_bytes(),
        b"",
        b"",
    ];
    out.resize_with(frames.len(), Vec::new);
    for (buf, frame) in out.iter_mut().zip(frames) {
        buf.clear();
        buf.extend_from_slice(frame);
    }
}

/// Requests answered by one [`ZapHandler::handle_ready`] call, or since
/// the start ([`ZapHandler::totals`]).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ZapStats {
    /// Answered 200.
    pub allowed: u64,
    /// Well-formed, answered 400.
    pub denied: u64,
    /// Malformed, answered 400.
    pub malformed: u64,
    /// The call stopped at [`MAX_REQUESTS_PER_CALL`] with requests still
    /// queued: call again (the fd will not signal them again).
    pub more: bool,
}

impl ZapStats {
    fn add(&mut self, other: ZapStats) {
        self.allowed += other.allowed;
        self.denied += other.denied;
        self.malformed += other.malformed;
    }
}

/// The ZAP handler's REP socket, answering from a [`Policy`].
///
/// Never blocks (every call uses `ZMQ_DONTWAIT`) and never panics on what
/// it receives. Follows the edge-triggered `ZMQ_FD` rule: the fd signals
/// "something changed", and [`ZapHandler::handle_ready`] reads
/// `ZMQ_EVENTS` again before every receive, after every send, until it no
/// longer reports `POLLIN`.
pub struct ZapHandler {
    socket: zmq::Socket,
    fd: RawFd,
    policy: Policy,
    /// One slot per frame up to [`MAX_FRAMES`], plus one that takes every
    /// frame past it.
    frames: Vec<zmq::Message>,
    reply: Vec<Vec<u8>>,
    /// `reply` holds an answer the socket would not take yet.
    unsent: bool,
    totals: ZapStats,
    log: LogBudget,
}

impl std::fmt::Debug for ZapHandler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ZapHandler")
            .field("fd", &self.fd)
            .field("policy", &self.policy)
            .field("totals", &self.totals)
            .finish_non_exhaustive()
    }
}

impl ZapHandler {
    /// Binds a REP socket at [`ENDPOINT`] on `ctx`.
    ///
    /// Create it before any ROUTER with a ZAP domain binds (see the module
    /// docs: libzmq admits peers unasked while nothing is bound there).
    /// Fails with `EADDRINUSE` when `ctx` already has a ZAP handler.
    pub fn new(ctx: &zmq::Context, policy: Policy) -> Result<ZapHandler, zmq::Error> {
        let socket = ctx.socket(zmq::REP)?;
        socket.set_linger(0)?;
        socket.bind(ENDPOINT)?;
        let fd = socket.get_fd()?;
        Ok(ZapHandler {
            socket,
            fd,
            policy,
            frames: (0..=MAX_FRAMES).map(|_| zmq::Message::new()).collect(),
            reply: Vec::with_capacity(6),
            unsent: false,
            totals: ZapStats::default(),
            log: LogBudget::default(),
        })
    }

    /// The socket's `ZMQ_FD`, to register with mio (`SourceFd`) for
    /// readable interest. Edge-triggered: see [`ZapHandler::handle_ready`].
    pub fn fd(&self) -> RawFd {
        self.fd
    }

    /// The policy in force.
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// Replaces the allowlist; connections already admitted stay.
    pub fn set_allowlist(&mut self, allowlist: Allowlist) {
        self.policy.allowlist = allowlist;
    }

    /// Replaces the CURVE client keys of a CURVE link (a key file
    /// reloaded); connections already admitted stay. A NULL link stays
    /// NULL: the mechanism is fixed when the ROUTER binds.
    pub fn set_curve_clients(&mut self, keys: Vec<[u8; 32]>) {
        if let Some(clients) = &mut self.policy.curve_clients {
            *clients = keys;
        }
    }

    /// Requests answered since the handler was created.
    pub fn totals(&self) -> ZapStats {
        self.totals
    }

    /// Answers every queued request, up to [`MAX_REQUESTS_PER_CALL`]:
    /// reads `ZMQ_EVENTS` and, while it reports `POLLIN`, receives one
    /// request, answers it and reads `ZMQ_EVENTS` again. Refusals and
    /// malformed requests are logged, at most one line a second. Socket
    /// errors (context terminated) are logged and end the call.
    pub fn handle_ready(&mut self) -> ZapStats {
        let mut stats = ZapStats::default();
        let now = Instant::now();
        if self.unsent && !self.send_reply() {
            return stats;
        }
        for _ in 0..MAX_REQUESTS_PER_CALL {
            if !self.readable() {
                self.totals.add(stats);
                return stats;
            }
            let count = match self.receive() {
                Ok(count) => count,
                Err(zmq::Error::EAGAIN) => break,
                Err(e) => {
                    warn!("ZAP handler: receive failed: {e}");
                    break;
                }
            };
            let verdict = self.answer(count, now);
            match verdict {
                Verdict::Allow => stats.allowed += 1,
                Verdict::Malformed => stats.malformed += 1,
                _ => stats.denied += 1,
            }
            if !self.send_reply() {
                break;
            }
        }
        stats.more = self.readable();
        if stats.more {
            if let Some(suppressed) = self.log.take(now) {
                warn!(
                    "ZAP handler: {MAX_REQUESTS_PER_CALL} requests in one call, yielding{}",
                    Suppressed(suppressed)
                );
            }
        }
        self.totals.add(stats);
        stats
    }

    /// `ZMQ_EVENTS` has `POLLIN`, and nothing is waiting to be sent (REP
    /// alternates strictly). Reading it also re-arms the edge-triggered fd.
    fn readable(&self) -> bool {
        if self.unsent {
            return false;
        }
        match self.socket.get_events() {
            Ok(events) => events.contains(zmq::POLLIN),
            Err(e) => {
                warn!("ZAP handler: reading ZMQ_EVENTS failed: {e}");
                false
            }
        }
    }

    /// Receives every part of one request; frames past [`MAX_FRAMES`] all
    /// land in the last slot, so the count says how many there were.
    fn receive(&mut self) -> Result<usize, zmq::Error> {
        let mut count = 0;
        loop {
            let slot = count.min(MAX_FRAMES);
            let Some(msg) = self.frames.get_mut(slot) else {
                return Ok(count);
            };
            self.socket.recv(msg, zmq::DONTWAIT)?;
            count += 1;
            if !msg.get_more() {
                return Ok(count);
            }
        }
    }

    /// Decides on the `count` frames received and writes the reply.
    fn answer(&mut self, count: usize, now: Instant) -> Verdict {
        let mut views: [&[u8]; MAX_FRAMES + 1] = [&[]; MAX_FRAMES + 1];
        let kept = count.min(views.len());
        for (view, msg) in views.iter_mut().zip(&self.frames[..kept]) {
            *view = msg;
        }
        let frames = &views[..kept];
        match parse_request(frames) {
            Ok(request) => {
                let verdict = decide(&self.policy, &request);
                reply_verdict(request.request_id, verdict, &mut self.reply);
                if !verdict.is_allowed() {
                    if let Some(suppressed) = self.log.take(now) {
                        let peer = request.peer_ip().map_or_else(
                            || request.address.escape_ascii().to_string(),
                            |ip| ip.to_string(),
                        );
                        warn!(
                            "ZAP: refused backend peer \"{}\" (domain \"{}\", mechanism \"{}\"): {}{}",
                            peer,
                            request.domain.escape_ascii(),
                            request.mechanism.escape_ascii(),
                            verdict.status_text(),
                            Suppressed(suppressed),
                        );
                    }
                }
                verdict
            }
            Err(e) => {
                let id = request_id(frames);
                reply_verdict(id.unwrap_or(b""), Verdict::Malformed, &mut self.reply);
                if let Some(suppressed) = self.log.take(now) {
                    let how = if id.is_some() {
                        "answered 400"
                    } else {
                        "no request id, answered 400 with an empty one"
                    };
                    warn!(
                        "ZAP: malformed request ({e}), {how}{}",
                        Suppressed(suppressed)
                    );
                }
                Verdict::Malformed
            }
        }
    }

    /// Sends `reply`; false when it has to wait (kept for the next call,
    /// when the fd signals the pipe has room) or failed (logged, dropped).
    fn send_reply(&mut self) -> bool {
        let result = self
            .socket
            .send_multipart(self.reply.iter().map(|f| &f[..]), zmq::DONTWAIT);
        match result {
            Ok(()) => {
                self.unsent = false;
                true
            }
            Err(zmq::Error::EAGAIN) => {
                self.unsent = true;
                false
            }
            Err(e) => {
                warn!("ZAP handler: sending a reply failed: {e}");
                self.unsent = false;
                false
            }
        }
    }
}

/// ", N similar lines suppressed" when N > 0.
struct Suppressed(u64);

impl std::fmt::Display for Suppressed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            0 => Ok(()),
            n => write!(f, " ({n} similar lines suppressed)"),
        }
    }
}

/// At most one line per [`LogBudget::INTERVAL`]; the next line allowed
/// carries the count of those suppressed in between.
#[derive(Debug, Default)]
struct LogBudget {
    last: Option<Instant>,
    suppressed: u64,
}

impl LogBudget {
    const INTERVAL: Duration = Duration::from_secs(1);

    /// `Some(suppressed since the last line)` when a line may be written
    /// at `now`; `None` (and one more suppressed) otherwise.
    fn take(&mut self, now: Instant) -> Option<u64> {
        let recent = self
            .last
            .is_some_and(|last| now.saturating_duration_since(last) < Self::INTERVAL);
        if recent {
            self.suppressed += 1;
            return None;
        }
        self.last = Some(now);
        Some(std::mem::take(&mut self.suppressed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::cidr::Cidr;

    const NULL_REQUEST: [&[u8]; 6] = [b"1.0", b"1", b"averyws", b"127.0.0.1", b"", b"NULL"];

    fn with(index: usize, value: &'static [u8]) -> Vec<&'static [u8]> {
        let mut frames = NULL_REQUEST.to_vec();
        frames[index] = value;
        frames
    }

    #[test]
    fn parses_rfc27_requests() {
        let plain: Vec<&[u8]> = "1.0 42 d 10.0.0.1 id PLAIN user pass"
            .split(' ')
            .map(str::as_bytes)
            .collect();
        let req = parse_request(&plain).expect("PLAIN request");
        assert_eq!(req.request_id, b"42");
        assert_eq!(req.domain, b"d");
        assert_eq!(req.address, b"10.0.0.1");
        assert_eq!(req.identity, b"id");
        assert_eq!(req.mechanism, b"PLAIN");
        assert_eq!(req.credentials, &[&b"user"[..], &b"pass"[..]]);

        let req = parse_request(&NULL_REQUEST).expect("NULL request");
        assert_eq!(req.request_id, b"1");
        assert!(req.credentials.is_empty());
    }

    #[test]
    fn rejects_malformed_requests() {
        let long = [b'x'; MAX_FRAME_LEN + 1];
        let long: &'static [u8] = Box::leak(Box::new(long));
        let mut too_many = NULL_REQUEST.to_vec();
        too_many.extend([&b"c"[..]; MAX_CREDENTIALS + 1]);
        /// (name, frames, error, request id for the reply)
        type Case = (
            &'static str,
            Vec<&'static [u8]>,
            ZapError,
            Option<&'static [u8]>,
        );
        let table: &[Case] = &[
            ("empty", vec![], ZapError::TooFewFrames(0), None),
            (
                "version only",
                vec![b"1.0"],
                ZapError::TooFewFrames(1),
                None,
            ),
            (
                "no mechanism",
                NULL_REQUEST[..5].to_vec(),
                ZapError::TooFewFrames(5),
                Some(b"1"),
            ),
            (
                "version 2.0",
                with(0, b"2.0"),
                ZapError::UnknownVersion,
                Some(b"1"),
            ),
            (
                "empty version",
                with(0, b""),
                ZapError::UnknownVersion,
                Some(b"1"),
            ),
            (
                "long address",
                with(3, long),
                ZapError::FrameTooLong(3),
                Some(b"1"),
            ),
            (
                "long request id",
                with(1, long),
                ZapError::FrameTooLong(1),
                None,
            ),
            ("too many", too_many, ZapError::TooManyFrames, Some(b"1")),
        ];
        for (name, frames, want, id) in table {
            assert_eq!(parse_request(frames), Err(*want), "{name}");
            assert_eq!(request_id(frames), *id, "{name}");
            assert!(!want.to_string().contains('\n'));
        }
    }

    #[test]
    fn peer_ip_from_the_address_frame() {
        let table: &[(&[u8], Option<&str>)] = &[
            (b"127.0.0.1", Some("127.0.0.1")),
            (b"::1", Some("::1")),
            // How an IPv6-enabled ROUTER sees an IPv4 peer.
            (b"::ffff:127.0.0.1", Some("127.0.0.1")),
            (b"fe80::1%eth0", Some("fe80::1")),
            (b"fe80::1%", Some("fe80::1")),
            (b"", None),
            (b"127.0.0.1:5555", None),
            (b"[::1]", None),
            // An ipc:// peer has no IP (decide admits it by is_ipc).
            (b"localhost", None),
            (b":1000:1000:42", None),
            (b"\xff\xfe", None),
        ];
        for &(address, want) in table {
            let frames = with(3, address);
            let req = parse_request(&frames).expect("request");
            let want: Option<IpAddr> = want.map(|s| s.parse().expect("test ip"));
            assert_eq!(req.peer_ip(), want, "{}", address.escape_ascii());
            assert_eq!(req.is_ipc(), address == b"localhost");
        }
    }

    #[test]
    fn decides_by_mechanism_then_address() {
        use Verdict::{AddressNotAllowed as Refused, Allow, Mechanism, NotAnIp};
        let cidr = |s: &str| s.parse::<Cidr>().expect("cidr");
        // What the node builds without --backend-allow, with
        // `--backend-allow 10.0.0.0/8`, and with `--backend-allow 127.0.0.1/32`.
        let unset = Policy::null(Allowlist::from_config([]));
        let ten = Policy::null(Allowlist::from_config([cidr("10.0.0.0/8")]));
        let one = Policy::null(Allowlist::from_config([cidr("127.0.0.1/32")]));
        /// (address, mechanism, unset, 10.0.0.0/8, 127.0.0.1/32)
        type Case = (&'static [u8], &'static [u8], Verdict, Verdict, Verdict);
        let table: &[Case] = &[
            (b"127.0.0.1", b"NULL", Allow, Refused, Allow),
            (b"127.0.0.2", b"NULL", Allow, Refused, Refused),
            (b"::1", b"NULL", Allow, Refused, Refused),
            (b"::ffff:127.0.0.1", b"NULL", Allow, Refused, Allow),
            (b"::ffff:127.0.0.2", b"NULL", Allow, Refused, Refused),
            (b"10.2.3.4", b"NULL", Refused, Allow, Refused),
            (b"::ffff:10.2.3.4", b"NULL", Refused, Allow, Refused),
            (b"192.0.2.1", b"NULL", Refused, Refused, Refused),
            (b"", b"NULL", NotAnIp, NotAnIp, NotAnIp),
            // ipc:// peers are admitted whatever the list says...
            (b"localhost", b"NULL", Allow, Allow, Allow),
            // ... but only as themselves.
            (b"LOCALHOST", b"NULL", NotAnIp, NotAnIp, NotAnIp),
            (
                b"localhost:1000:1000:42",
                b"NULL",
                NotAnIp,
                NotAnIp,
                NotAnIp,
            ),
            (b"127.0.0.1", b"PLAIN", Mechanism, Mechanism, Mechanism),
            (b"10.2.3.4", b"CURVE", Mechanism, Mechanism, Mechanism),
            (b"localhost", b"PLAIN", Mechanism, Mechanism, Mechanism),
            (b"127.0.0.1", b"null", Mechanism, Mechanism, Mechanism),
        ];
        for &(address, mechanism, a, b, c) in table {
            let mut frames = with(3, address);
            frames[5] = mechanism;
            let req = parse_request(&frames).expect("request");
            let label = address.escape_ascii();
            assert_eq!(decide(&unset, &req), a, "{label} without --backend-allow");
            assert_eq!(decide(&ten, &req), b, "{label} with 10.0.0.0/8");
            assert_eq!(decide(&one, &req), c, "{label} with 127.0.0.1/32");
        }
    }

    #[test]
    fn a_curve_link_admits_known_keys_from_allowed_addresses() {
        use Verdict::{AddressNotAllowed as Refused, Allow, Mechanism, UnknownKey};
        const KNOWN: [u8; 32] = [7; 32];
        const OTHER: [u8; 32] = [8; 32];
        let (known, other): (&'static [u8; 32], &'static [u8; 32]) = (&KNOWN, &OTHER);
        let policy = Policy {
            allowlist: Allowlist::default(),
            curve_clients: Some(vec![[1u8; 32], KNOWN]),
        };
        /// (address, mechanism, credentials, verdict)
        type Case = (&'static [u8], &'static [u8], Vec<&'static [u8]>, Verdict);
        let table: Vec<Case> = vec![
            (b"127.0.0.1", b"CURVE", vec![known], Allow),
            (b"localhost", b"CURVE", vec![known], Allow),
            (b"127.0.0.1", b"CURVE", vec![other], UnknownKey),
            (b"localhost", b"CURVE", vec![other], UnknownKey),
            (b"127.0.0.1", b"CURVE", vec![&known[..31]], UnknownKey),
            (b"127.0.0.1", b"CURVE", vec![], UnknownKey),
            (b"127.0.0.1", b"CURVE", vec![known, known], UnknownKey),
            // The address is checked whatever the key.
            (b"10.2.3.4", b"CURVE", vec![known], Refused),
            // A NULL peer never reaches ZAP on a CURVE socket; were it
            // asked about one, it refuses.
            (b"127.0.0.1", b"NULL", vec![], Mechanism),
            (b"127.0.0.1", b"PLAIN", vec![known, known], Mechanism),
        ];
        for (address, mechanism, credentials, want) in table {
            let mut frames = with(3, address);
            frames[5] = mechanism;
            frames.extend(&credentials);
            let req = parse_request(&frames).expect("request");
            let label = format!("{} {:?}", address.escape_ascii(), credentials.len());
            assert_eq!(decide(&policy, &req), want, "{label}");
        }
    }

    #[test]
    fn replies_have_six_frames() {
        let mut out = vec![vec![9; 100]; 9];
        reply(b"1", true, &mut out);
        let want: [&[u8]; 6] = [b"1.0", b"1", b"200", b"OK", b"", b""];
        assert_eq!(out, want.map(<[u8]>::to_vec));
        reply(b"7", false, &mut out);
        let want: [&[u8]; 6] = [b"1.0", b"7", b"400", b"address not allowed", b"", b""];
        assert_eq!(out, want.map(<[u8]>::to_vec));
        reply_verdict(b"", Verdict::Malformed, &mut out);
        let want: [&[u8]; 6] = [b"1.0", b"", b"400", b"malformed request", b"", b""];
        assert_eq!(out, want.map(<[u8]>::to_vec));
        for verdict in [
            Verdict::Allow,
            Verdict::AddressNotAllowed,
            Verdict::NotAnIp,
            Verdict::Mechanism,
            Verdict::UnknownKey,
            Verdict::Malformed,
        ] {
            // libzmq accepts exactly [2-5]00.
            let code = verdict.status_code();
            assert_eq!(code.len(), 3);
            assert_eq!(&code[1..], b"00");
            assert_eq!(verdict.is_allowed(), code == b"200");
        }
    }

    #[test]
    fn log_budget_one_line_a_second_with_virtual_time() {
        let t0 = Instant::now();
        let ms = |n| t0 + Duration::from_millis(n);
        let mut budget = LogBudget::default();
        assert_eq!(budget.take(t0), Some(0));
        assert_eq!(budget.take(ms(1)), None);
        assert_eq!(budget.take(ms(999)), None);
        assert_eq!(budget.take(ms(1000)), Some(2));
        assert_eq!(budget.take(ms(1500)), None);
        assert_eq!(budget.take(ms(5000)), Some(1));
        assert_eq!(budget.take(ms(6000)), Some(0));
        assert_eq!(Suppressed(0).to_string(), "");
        assert_eq!(Suppressed(3).to_string(), " (3 similar lines suppressed)");
    }
}
