//! Test harness: the real `averyws` binary on an ephemeral loopback port,
//! and real TLS clients that trust its development certificate.
#![allow(dead_code)] // each test binary uses a different part of the harness

pub mod admin;
pub mod certs;
pub mod clients;
pub mod evictions;
pub mod nodes;
pub mod pg;
pub mod procs;
pub mod raw;
pub mod scrape;
pub mod tokens;
pub mod workers;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{
    ClientConfig, ClientConnection, RootCertStore, StreamOwned, SupportedProtocolVersion,
};

/// A TLS stream to the server.
pub type TlsStream = StreamOwned<ClientConnection, TcpStream>;
/// A tungstenite client over TLS.
pub type WebSocket = tungstenite::WebSocket<TlsStream>;

/// Frame opcodes (RFC 6455 section 5.2).
pub const CONTINUATION: u8 = 0x0;
pub const TEXT: u8 = 0x1;
pub const BINARY: u8 = 0x2;
pub const CLOSE: u8 = 0x8;
pub const PING: u8 = 0x9;
pub const PONG: u8 = 0xA;

/// An ACL that lets everyone do everything.
pub const OPEN_ACL: &str = "allow guest * *\n";

/// The pace flags at their defaults (docs/operations.md), for tests of
/// the rules as shipped: [`Server::start`] would relax them otherwise.
pub const PACE_DEFAULTS: [&str; 8] = [
    "--first-byte-timeout-ms",
    "25",
    "--hello-timeout-ms",
    "100",
    "--think-time-ms",
    "1000",
    "--min-rate",
    "50000",
];

/// How long a test client waits for any single read before failing.
pub const READ_TIMEOUT: Duration = Duration::from_secs(10);

/// A running server process, killed on drop.
pub struct Server {
    child: Child,
    pub addr: SocketAddr,
    pub dir: TempDir,
    pub cert: PathBuf,
    log: Arc<Mutex<Vec<String>>>,
}

impl Server {
    /// Starts the binary with `args` plus an ephemeral port and a development
    /// certificate written where the clients can trust it.
    ///
    /// With `--route` and no `--acl`, the server gets an ACL that allows
    /// everything ([`OPEN_ACL`]): the development ACL opens the routes but
    /// not `/metrics`, and tests of other routes are not about permissions.
    pub fn start(args: &[&str]) -> Server {
        let dir = TempDir::new();
        let cert = dir.path().join("dev-cert.pem");
        let mut all = vec!["--listen", "127.0.0.1:0"];
        let cert_str = cert.to_str().unwrap().to_owned();
        if !args.contains(&"--cert") {
            all.extend(["--dev-cert-out", &cert_str]);
        }
        let acl = dir.path().join("open.acl");
        let acl_str = acl.to_str().unwrap().to_owned();
        if args.contains(&"--route") && !args.contains(&"--acl") {
            std::fs::write(&acl, OPEN_ACL).expect("write the open ACL");
            all.extend(["--acl", &acl_str]);
        }
        all.extend_from_slice(args);
        Self::spawn(&all, dir, cert)
    }

    /// Starts the binary with exactly `args` (plus the ephemeral port), for
    /// tests that bring their own certificate files in `dir`.
    pub fn start_in(dir: TempDir, cert: PathBuf, args: &[&str]) -> Server {
        let mut all = vec!["--listen", "127.0.0.1:0"];
        all.extend_from_slice(args);
        Self::spawn(&all, dir, cert)
    }

    fn spawn(args: &[&str], dir: TempDir, cert: PathBuf) -> Server {
        // Test clients share two cores with parallel tests: a descheduled
        // client thread must not look like a slowloris, unless a test is
        // about exactly that and sets the pace itself.
        let mut args = args.to_vec();
        // One reactor unless a test asks for more: with several, a worker
        // would have to reach every node (tests/threads.rs does).
        for (flag, relaxed) in [
            ("--threads", "1"),
            ("--first-byte-timeout-ms", "5000"),
            ("--hello-timeout-ms", "5000"),
            ("--think-time-ms", "5000"),
            ("--min-rate", "1000"),
            ("--log-level", "debug"),
        ] {
            if !args.contains(&flag) {
                args.extend([flag, relaxed]);
            }
        }
        let mut child = Command::new(env!("CARGO_BIN_EXE_averyws"))
            .args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start averyws");
        let stderr = child.stderr.take().unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let sink = Arc::clone(&log);
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if let Some(rest) = line.split("listening on wss://").nth(1) {
                    let addr = rest.split_whitespace().next().unwrap_or_default();
                    let _ = tx.send(addr.parse::<SocketAddr>().ok());
                }
                sink.lock().unwrap().push(line);
            }
        });
        let addr = match rx.recv_timeout(Duration::from_secs(20)) {
            Ok(Some(addr)) => addr,
            _ => {
                let _ = child.kill();
                panic!("server did not start: {:#?}", log.lock().unwrap());
            }
        };
        Server {
            child,
            addr,
            dir,
            cert,
            log,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends a signal (by name, e.g. "TERM", "HUP") to the server.
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args([&format!("-{name}"), &self.pid().to_string()])
            .status()
            .expect("kill");
        assert!(status.success());
    }

    /// Waits for the process to exit and returns its exit code.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<i32> {
        let start = Instant::now();
        while start.elapsed() < limit {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// The log lines so far.
    pub fn log(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }

    /// How many log lines have been written so far: a mark for
    /// [`Server::wait_log_from`].
    pub fn log_len(&self) -> usize {
        self.log.lock().unwrap().len()
    }

    /// Waits until a log line contains `needle`, returning it.
    pub fn wait_log(&self, needle: &str, limit: Duration) -> Option<String> {
        self.wait_log_from(0, needle, limit)
    }

    /// Waits until a log line after the first `from` lines contains
    /// `needle`, returning it.
    pub fn wait_log_from(&self, from: usize, needle: &str, limit: Duration) -> Option<String> {
        let start = Instant::now();
        while start.elapsed() < limit {
            let log = self.log.lock().unwrap();
            if let Some(line) = log.iter().skip(from).find(|l| l.contains(needle)) {
                return Some(line.clone());
            }
            drop(log);
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// A client TLS config that trusts this server's certificate.
    pub fn client_config(&self) -> Arc<ClientConfig> {
        client_config(&self.cert, &[b"http/1.1"])
    }

    /// A raw TLS stream, handshake not yet driven.
    pub fn tls(&self) -> TlsStream {
        tls_stream(self.addr, self.client_config())
    }

    /// A raw TLS stream with the given client configuration.
    pub fn tls_with(&self, config: Arc<ClientConfig>) -> TlsStream {
        tls_stream(self.addr, config)
    }

    /// A WebSocket client (tungstenite) connected to `path`.
    pub fn ws(&self, path: &str) -> WebSocket {
        let url = format!("wss://localhost:{}{path}", self.addr.port());
        let (ws, _) = tungstenite::client::client(url, self.tls()).expect("websocket handshake");
        ws
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A client TLS configuration trusting the PEM certificate at `cert`.
pub fn client_config(cert: &Path, alpn: &[&[u8]]) -> Arc<ClientConfig> {
    client_config_with(&pem_certs(cert), alpn, rustls::DEFAULT_VERSIONS)
}

/// The certificates in the PEM file at `path`.
pub fn pem_certs(path: &Path) -> Vec<CertificateDer<'static>> {
    CertificateDer::pem_file_iter(path)
        .expect("read cert")
        .map(|cert| cert.expect("parse cert"))
        .collect()
}

/// A client TLS configuration trusting `roots`, offering `alpn` and only
/// the protocol `versions`. Each call has its own session cache, so its
/// first connection is a full handshake.
pub fn client_config_with(
    roots: &[CertificateDer<'static>],
    alpn: &[&[u8]],
    versions: &[&'static SupportedProtocolVersion],
) -> Arc<ClientConfig> {
    let mut store = RootCertStore::empty();
    for cert in roots {
        store.add(cert.clone()).expect("add root");
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .unwrap()
        .with_root_certificates(store)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Arc::new(config)
}

/// A TLS stream to `addr` for the name `localhost`.
pub fn tls_stream(addr: SocketAddr, config: Arc<ClientConfig>) -> TlsStream {
    let tcp = TcpStream::connect(addr).expect("connect");
    tcp.set_read_timeout(Some(READ_TIMEOUT)).unwrap();
    tcp.set_nodelay(true).unwrap();
    let name = ServerName::try_from("localhost").unwrap();
    let conn = ClientConnection::new(config, name).unwrap();
    StreamOwned::new(conn, tcp)
}

/// An upgrade request for `path` with extra header lines.
pub fn upgrade_request(path: &str, extra: &str) -> String {
    format!(
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n"
    )
}

/// Reads an HTTP response head (up to CRLFCRLF) from `stream`.
pub fn read_response_head(stream: &mut impl Read) -> String {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match stream.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            _ => break,
        }
    }
    String::from_utf8_lossy(&head).into_owned()
}

/// The value of the first header field `name` (ASCII case-insensitive) in
/// an HTTP response head.
pub fn header<'h>(head: &'h str, name: &str) -> Option<&'h str> {
    head.split("\r\n").skip(1).find_map(|line| {
        let (field, value) = line.split_once(':')?;
        field.eq_ignore_ascii_case(name).then(|| value.trim())
    })
}

/// The status code of an HTTP response head (0 if there is none).
pub fn status(head: &str) -> u16 {
    head.split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or(0)
}

/// Opens a raw WebSocket over TLS on `path` and checks the 101.
pub fn raw_ws(server: &Server, path: &str) -> TlsStream {
    let mut stream = server.tls();
    upgrade(&mut stream, path);
    stream
}

/// Sends the upgrade request for `path` on `stream` and checks the 101.
pub fn upgrade(stream: &mut TlsStream, path: &str) {
    send(stream, upgrade_request(path, "").as_bytes());
    let head = read_response_head(stream);
    assert_eq!(status(&head), 101, "{head}");
}

/// Writes all of `bytes` and flushes them to the socket.
pub fn send(stream: &mut impl Write, bytes: &[u8]) {
    stream.write_all(bytes).expect("write");
    stream.flush().expect("flush");
}

/// A masked client frame.
pub fn client_frame(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
    client_frame_raw((fin as u8) << 7 | opcode, payload)
}

/// The masking key of every client frame the harness builds.
const MASK_KEY: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

/// A masked client frame with a literal first byte (FIN, RSV, opcode).
pub fn client_frame_raw(first: u8, payload: &[u8]) -> Vec<u8> {
    let mut frame = client_header(first, payload.len() as u64);
    frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ MASK_KEY[i % 4]));
    frame
}

/// The header of a masked client frame (first byte, minimal length
/// encoding, masking key) announcing `len` payload bytes.
pub fn client_header(first: u8, len: u64) -> Vec<u8> {
    let mut header = vec![first];
    match len {
        n if n < 126 => header.push(0x80 | n as u8),
        n if n <= 0xFFFF => {
            header.push(0x80 | 126);
            header.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            header.push(0x80 | 127);
            header.extend_from_slice(&n.to_be_bytes());
        }
    }
    header.extend_from_slice(&MASK_KEY);
    header
}

/// A masked Close frame with `code` and `reason`.
pub fn client_close(code: u16, reason: &[u8]) -> Vec<u8> {
    client_frame(true, CLOSE, &[&code.to_be_bytes()[..], reason].concat())
}

/// A server frame as read back: opcode and payload (server frames are
/// never masked; a masked one fails the test).
pub fn read_frame(stream: &mut impl Read) -> std::io::Result<(bool, u8, Vec<u8>)> {
    let (first, payload) = read_frame_raw(stream)?;
    Ok((first & 0x80 != 0, first & 0x0F, payload))
}

/// A server frame as read back: its first byte (FIN, RSV, opcode) and
/// payload.
pub fn read_frame_raw(stream: &mut impl Read) -> std::io::Result<(u8, Vec<u8>)> {
    let mut head = [0u8; 2];
    stream.read_exact(&mut head)?;
    assert_eq!(head[1] & 0x80, 0, "server frames must not be masked");
    let len = match head[1] & 0x7F {
        126 => {
            let mut b = [0u8; 2];
            stream.read_exact(&mut b)?;
            u16::from_be_bytes(b) as usize
        }
        127 => {
            let mut b = [0u8; 8];
            stream.read_exact(&mut b)?;
            u64::from_be_bytes(b) as usize
        }
        n => n as usize,
    };
    let mut payload = vec![0u8; len];
    stream.read_exact(&mut payload)?;
    Ok((head[0], payload))
}

/// Reads frames until a Close arrives; returns its code (None if empty).
pub fn read_close(stream: &mut impl Read) -> Option<u16> {
    loop {
        let (_, opcode, payload) = read_frame(stream).expect("a close frame");
        if opcode == CLOSE {
            return close_code(&payload);
        }
    }
}

/// Reads the next frame, which must be a Close, and returns its payload.
pub fn next_close(stream: &mut impl Read) -> Vec<u8> {
    let (fin, opcode, payload) = read_frame(stream).expect("a close frame");
    assert!(
        fin && opcode == CLOSE,
        "expected Close, got opcode {opcode:#x} {payload:?}"
    );
    assert!(payload.len() != 1, "a one-byte close payload");
    payload
}

/// The status code of a Close payload (None if it is empty).
pub fn close_code(payload: &[u8]) -> Option<u16> {
    (payload.len() >= 2).then(|| u16::from_be_bytes([payload[0], payload[1]]))
}

/// Sends one frame and checks that the next frame back is the same
/// message, unfragmented.
pub fn assert_echo(stream: &mut TlsStream, opcode: u8, payload: &[u8]) {
    send(stream, &client_frame(true, opcode, payload));
    let (fin, got_opcode, got) = read_frame(stream).expect("echo");
    assert!(fin, "echo of {} bytes is fragmented", payload.len());
    assert_eq!(
        got_opcode,
        opcode,
        "echo opcode for {} bytes",
        payload.len()
    );
    assert!(got == payload, "echo of {} bytes differs", payload.len());
}

/// Checks the end of the connection after the server's last word: TLS
/// close_notify (a clean EOF from rustls), then a TCP FIN.
pub fn expect_eof(stream: &mut TlsStream) {
    let mut byte = [0u8; 1];
    match stream.read(&mut byte) {
        Ok(0) => {}
        other => panic!("expected TLS close_notify, got {other:?} {byte:?}"),
    }
    match stream.sock.read(&mut byte) {
        Ok(0) => {}
        other => panic!("expected TCP EOF after close_notify, got {other:?}"),
    }
}

/// Reads until the server drops the connection (EOF or a reset, with or
/// without close_notify) and returns what arrived; fails if the read
/// timeout passes first.
pub fn wait_dropped(stream: &mut impl Read) -> Vec<u8> {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return got,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                panic!("the server kept the connection open; got {got:?}")
            }
            Err(_) => return got,
        }
    }
}

/// The status of an upgrade to `path` without a token.
pub fn upgrade_status(server: &Server, path: &str) -> u16 {
    let mut stream = server.tls();
    send(&mut stream, upgrade_request(path, "").as_bytes());
    status(&read_response_head(&mut stream))
}

/// A temporary directory removed on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new() -> TempDir {
        static COUNTER: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let path = std::env::temp_dir().join(format!("averyws-test-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&path).unwrap();
        TempDir(path)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A backend endpoint no other test can take: an `ipc://` socket in the
/// Linux abstract namespace (`@`), named after this process and a
/// counter. Nothing is reserved and released first (a free loopback port
/// can be taken by a parallel test before the node binds it), and no
/// file is left behind by a killed node. With `--threads N`, reactor `i`
/// binds the name + `.i` (`config::reactor_endpoint`), just as unique.
pub fn free_endpoint() -> String {
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("ipc://@averyws-test-{}-{n}", std::process::id())
}

/// Backend endpoints for two reactors: one from [`free_endpoint`] for
/// reactor 0, and the name reactor 1 binds beside it (`NAME.1`).
pub fn two_reactor_endpoints() -> (String, String) {
    let first = free_endpoint();
    let second = format!("{first}.1");
    (first, second)
}

/// A temp path as the UTF-8 string a command line takes.
pub fn utf8(path: &Path) -> String {
    path.to_str().expect("UTF-8 temp path").to_owned()
}
