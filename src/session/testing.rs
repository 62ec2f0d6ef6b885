//! A [`NodePort`] made of tables, the borrowed state of a reactor, and the
//! client's side of the wire, to drive a [`Session`] without sockets: the
//! session's unit tests and its fuzz target use them.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress};
use rustls::ServerConfig;

use super::{Ctx, NodePort, ReadReport, Session};
use crate::access::Access;
use crate::backend::message::{Auth, Payload};
use crate::config::{Config, TlsSource};
use crate::control::Control;
use crate::metrics::ReactorMetrics;
use crate::node::sessions::ConnectInfo;
use crate::outcome::Eviction;
use crate::pace::{Crowd, Path};
use crate::tls::TlsContext;
use crate::ws::deflate::Codec;
use crate::ws::frame::parse_header;
use crate::ws::mask::apply_mask;

/// What sessions asked of the node, and how it answers.
#[derive(Debug, Default)]
pub struct RecordingNode {
    /// CONNECTs: the session and the path it upgraded on.
    pub opened: Vec<(u64, String)>,
    /// Client messages the node took: the session and the payload.
    pub messages: Vec<(u64, Vec<u8>)>,
    /// AUTHs: the request id and the auth service.
    pub asked: Vec<(u64, String)>,
    /// Sessions that stopped waiting for an AUTH_REPLY.
    pub auth_done: Vec<u64>,
    /// The services have no worker: CONNECT and AUTH fail.
    pub no_workers: bool,
    /// Every worker's pipe is full: messages are refused.
    pub full: bool,
}

impl NodePort for RecordingNode {
    fn open(&mut self, conn: u64, info: ConnectInfo, _now: Instant) -> bool {
        self.opened.push((conn, info.path));
        !self.no_workers
    }

    fn message(&mut self, conn: u64, payload: Payload<'_>, _now: Instant) -> bool {
        if self.full {
            return false;
        }
        self.messages.push((conn, payload.as_bytes().to_vec()));
        true
    }

    fn ask_auth(&mut self, service: &str, auth: &Auth<'_>, _now: Instant) -> bool {
        self.asked.push((auth.request, service.to_owned()));
        !self.no_workers
    }

    fn auth_done(&mut self, conn: u64) {
        self.auth_done.push(conn);
    }
}

/// What a reactor lends its sessions, owned: configured from flags as the
/// command line would be.
pub struct Rig {
    /// The configuration the flags give.
    pub config: Config,
    /// Its tokens and ACL.
    pub access: Access,
    /// The reactor's metrics.
    pub metrics: ReactorMetrics,
    /// The process's control state.
    pub control: Arc<Control>,
    /// The node the sessions reach.
    pub node: RecordingNode,
    /// Output staged by the last calls, for the client.
    pub out: Vec<u8>,
    /// The clock.
    pub now: Instant,
    /// The reactor's permessage-deflate state.
    pub codec: Codec,
}

/// The client every rig's sessions come from.
pub const PEER: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 40000);

impl Rig {
    /// A rig for `averyws ARGS`; `None` when the flags are refused.
    pub fn new(args: &[&str]) -> Option<Rig> {
        let config = crate::cli::parse("averyws", args).ok()?.config;
        let access = Access::load(&config.auth, &config.routes).ok()?;
        Some(Rig {
            config,
            access,
            metrics: ReactorMetrics::default(),
            control: Control::new(tls_config()),
            node: RecordingNode::default(),
            out: Vec::new(),
            now: Instant::now(),
            codec: Codec::default(),
        })
    }

    /// A session accepted now, with id `id`.
    pub fn session(&self, id: u64) -> Session {
        let crowd = Crowd::default();
        Session::new(PEER, id, &self.config, crowd, Path::default(), self.now)
    }

    /// What a session borrows for one event at the rig's clock.
    pub fn ctx(&mut self) -> Ctx<'_> {
        Ctx {
            out: &mut self.out,
            config: &self.config,
            now: self.now,
            node: Some(&mut self.node),
            access: &self.access,
            metrics: &self.metrics,
            control: &self.control,
            codec: &mut self.codec,
        }
    }

    /// Output staged so far, taken.
    pub fn take_out(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.out)
    }
}

/// A session driven the way the I/O shell drives it, over a rig whose
/// socket takes every byte at once.
pub struct Driver {
    /// What the session borrows.
    pub rig: Rig,
    /// The session under test.
    pub session: Session,
    /// The TLS handshake is behind us: set by the first read.
    tls_done: bool,
    /// Bytes the client sent that the session has not read yet.
    pub kernel: Vec<u8>,
    /// The session asked the shell to end TLS and shut the write side.
    pub write_shut: bool,
}

impl Driver {
    /// A session of `averyws ARGS`, just accepted.
    pub fn new(args: &[&str]) -> Option<Driver> {
        let rig = Rig::new(args)?;
        let session = rig.session(1);
        Some(Driver {
            rig,
            session,
            tls_done: false,
            kernel: Vec::new(),
            write_shut: false,
        })
    }

    /// A session of `averyws --acl FILE ARGS`, FILE holding `acl`.
    pub fn with_acl(acl: &str, args: &[&str]) -> Option<Driver> {
        static FILES: AtomicU32 = AtomicU32::new(0);
        let n = FILES.fetch_add(1, Ordering::Relaxed);
        let name = format!("averyws-session-{}-{n}.acl", std::process::id());
        let file = std::env::temp_dir().join(name);
        std::fs::write(&file, acl).ok()?;
        let mut with_acl = vec!["--acl", file.to_str()?];
        with_acl.extend_from_slice(args);
        let driver = Driver::new(&with_acl);
        let _ = std::fs::remove_file(&file);
        driver
    }

    /// Plaintext arrives now: the kernel holds it until the session reads
    /// (the first bytes complete the TLS handshake).
    pub fn feed(&mut self, bytes: &[u8]) {
        self.kernel.extend_from_slice(bytes);
        self.read();
    }

    /// The message that waited for a full pipe is out: reading resumes.
    pub fn resume(&mut self) {
        if self.session.resume() {
            self.read();
        }
    }

    /// One round of reading as the shell does it: what the session held
    /// back is served first, nothing is read while it holds its input,
    /// then all the kernel holds is read at once.
    fn read(&mut self) {
        let was_handshaking = !std::mem::replace(&mut self.tls_done, true);
        let before = (self.session.stats().bytes_in, self.session.plaintext_in());
        let mut ctx = self.rig.ctx();
        while !self.session.is_done() && !self.session.peer_done() && !self.session.holds_input() {
            if let Some(mut unread) = self.session.take_unread() {
                self.session.on_input(&mut unread, &mut ctx);
            } else if self.kernel.is_empty() {
                break;
            } else {
                let mut bytes = std::mem::take(&mut self.kernel);
                self.session.received(bytes.len(), ctx.now);
                self.session.on_input(&mut bytes, &mut ctx);
            }
        }
        let read = ReadReport {
            was_handshaking,
            handshaking: false,
            flight_answered: None,
            tls_got: self.session.stats().bytes_in - before.0,
            plaintext_got: self.session.plaintext_in() - before.1,
            output_paused: false,
        };
        self.session.account(&ctx, read);
        self.flushed();
    }

    /// The client hangs up.
    pub fn hang_up(&mut self) {
        self.session.peer_gone();
        self.flushed();
    }

    /// The clock moves on by `step` and the session handles what is due;
    /// returns the eviction carried out, if any.
    pub fn advance(&mut self, step: Duration) -> Option<Eviction> {
        self.rig.now += step;
        let mut ctx = self.rig.ctx();
        let evicted = self.session.expire(&mut ctx, 0, false);
        if let Some(reason) = evicted {
            self.session.evict(ctx.out, ctx.now, reason);
        }
        self.flushed();
        evicted
    }

    /// The clock moves to the session's deadline; `None` when it has none.
    pub fn to_deadline(&mut self) -> Option<Option<Eviction>> {
        let at = self.session.deadline(&self.rig.config, 0)?;
        Some(self.advance(at.saturating_duration_since(self.rig.now)))
    }

    /// Output staged so far, taken, and parsed as [`server_output`] does.
    pub fn take_output(&mut self) -> ServerOutput {
        server_output(&self.rig.take_out()).expect("the server's output parses")
    }

    /// Everything staged went out at once.
    fn flushed(&mut self) {
        self.write_shut |= self.session.flushed(self.rig.now, true);
    }
}

/// One development certificate for every rig of the process: only a TLS
/// reload would read it, and none runs here.
fn tls_config() -> Arc<ServerConfig> {
    static CONFIG: OnceLock<Arc<ServerConfig>> = OnceLock::new();
    CONFIG
        .get_or_init(|| {
            TlsContext::new(TlsSource::Development { out: None })
                .expect("development certificate")
                .config()
        })
        .clone()
}

/// A client's upgrade request for `path`, with `extra` header lines.
pub fn upgrade_request(path: &str, extra: &str) -> Vec<u8> {
    format!(
        "GET {path} HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n"
    )
    .into_bytes()
}

/// A permessage-deflate client without context takeover, on flate2
/// directly rather than the server's codec: raw DEFLATE, a sync flush per
/// message with its empty block's 4 bytes removed, both sides reset for
/// every message.
pub struct ClientCodec {
    deflater: Compress,
    inflater: Decompress,
}

impl ClientCodec {
    /// A client compressing at `level`.
    pub fn new(level: Compression) -> Self {
        Self {
            deflater: Compress::new(level, false),
            inflater: Decompress::new(false),
        }
    }

    /// `payload` compressed as one message.
    pub fn deflate(&mut self, payload: &[u8]) -> Vec<u8> {
        self.deflater.reset();
        let deflater = &mut self.deflater;
        let mut out = stream(payload, |input, out| {
            let before = deflater.total_in();
            deflater
                .compress_vec(input, out, FlushCompress::Sync)
                .expect("deflate");
            (deflater.total_in() - before) as usize
        });
        out.truncate(out.len().saturating_sub(SYNC_TAIL.len()));
        out
    }

    /// A server's compressed payload inflated; `None` when it is not
    /// DEFLATE.
    pub fn inflate(&mut self, compressed: &[u8]) -> Option<Vec<u8>> {
        self.inflater.reset(false);
        let input = [compressed, &SYNC_TAIL[..]].concat();
        let inflater = &mut self.inflater;
        let mut corrupt = false;
        let out = stream(&input, |input, out| {
            let before = inflater.total_in();
            corrupt |= inflater
                .decompress_vec(input, out, FlushDecompress::Sync)
                .is_err();
            // A corrupt stream takes nothing more: stop there.
            if corrupt {
                input.len()
            } else {
                (inflater.total_in() - before) as usize
            }
        });
        (!corrupt).then_some(out)
    }
}

/// The empty stored block a sync flush ends with (RFC 7692 section 7.2).
const SYNC_TAIL: [u8; 4] = [0, 0, 0xff, 0xff];

/// Runs `step` (which writes into the spare capacity of its output and
/// says how much input it used) until all of `input` is used and the
/// output has room left: zlib then has nothing more pending.
fn stream(input: &[u8], mut step: impl FnMut(&[u8], &mut Vec<u8>) -> usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(input.len() + 64);
    let mut used = 0;
    loop {
        used += step(&input[used..], &mut out);
        if used == input.len() && out.len() < out.capacity() {
            return out;
        }
        out.reserve(out.capacity());
    }
}

/// `payload` compressed as a client at zlib's default level sends it.
pub fn client_deflate(payload: &[u8]) -> Vec<u8> {
    ClientCodec::new(Compression::default()).deflate(payload)
}

/// A server's compressed payload, inflated as a client does it.
pub fn client_inflate(compressed: &[u8]) -> Vec<u8> {
    ClientCodec::new(Compression::default())
        .inflate(compressed)
        .expect("the server's payload is DEFLATE")
}

/// A frame as a client sends it: masked, with `first` as its first byte
/// (FIN, RSV and opcode).
pub fn client_frame(first: u8, payload: &[u8]) -> Vec<u8> {
    const KEY: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];
    let mut frame = vec![first];
    match payload.len() {
        n @ 0..=125 => frame.push(0x80 | n as u8),
        n @ 126..=0xffff => {
            frame.push(0x80 | 126);
            frame.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            frame.push(0x80 | 127);
            frame.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    frame.extend_from_slice(&KEY);
    let start = frame.len();
    frame.extend_from_slice(payload);
    apply_mask(&mut frame[start..], KEY, 0);
    frame
}

/// The server's HTTP head, if any, and its frames as (first byte,
/// payload).
pub type ServerOutput = (Option<String>, Vec<(u8, Vec<u8>)>);

/// What the server sent: the HTTP head, if any, and then its frames as
/// (first byte, payload); `None` when the bytes do not parse that way.
pub fn server_output(bytes: &[u8]) -> Option<ServerOutput> {
    let (head, mut rest) = match bytes.windows(4).position(|w| w == b"\r\n\r\n") {
        Some(end) if bytes.starts_with(b"HTTP/") => {
            let head = String::from_utf8(bytes[..end].to_vec()).ok()?;
            (Some(head), &bytes[end + 4..])
        }
        _ => (None, bytes),
    };
    if head
        .as_deref()
        .is_some_and(|h| !h.starts_with("HTTP/1.1 101"))
    {
        // A refusal's body is not frames.
        return Some((head, Vec::new()));
    }
    let mut frames = Vec::new();
    while !rest.is_empty() {
        let (header, len) = parse_header(rest).ok()??;
        let end = len.checked_add(usize::try_from(header.payload_len).ok()?)?;
        let payload = rest.get(len..end)?.to_vec();
        frames.push((rest[0], payload));
        rest = &rest[end..];
    }
    Some((head, frames))
}
