//! Test harness: the real `averyws` binary on an ephemeral loopback port,
//! and real TLS clients that trust its development certificate.
#![allow(dead_code)] // each test binary uses a different part of the harness

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};

/// A TLS stream to the server.
pub type TlsStream = StreamOwned<ClientConnection, TcpStream>;
/// A tungstenite client over TLS.
pub type WebSocket = tungstenite::WebSocket<TlsStream>;

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
    pub fn start(args: &[&str]) -> Server {
        let dir = TempDir::new();
        let cert = dir.path().join("dev-cert.pem");
        let mut all = vec!["--listen", "127.0.0.1:0", "--log-level", "debug"];
        let cert_str = cert.to_str().unwrap().to_owned();
        if !args.contains(&"--cert") {
            all.extend(["--dev-cert-out", &cert_str]);
        }
        all.extend_from_slice(args);
        Self::spawn(&all, dir, cert)
    }

    /// Starts the binary with exactly `args` (plus the ephemeral port), for
    /// tests that bring their own certificate files in `dir`.
    pub fn start_in(dir: TempDir, cert: PathBuf, args: &[&str]) -> Server {
        let mut all = vec!["--listen", "127.0.0.1:0", "--log-level", "debug"];
        all.extend_from_slice(args);
        Self::spawn(&all, dir, cert)
    }

    fn spawn(args: &[&str], dir: TempDir, cert: PathBuf) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_averyws"))
            .args(args)
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

    /// Waits until a log line contains `needle`, returning it.
    pub fn wait_log(&self, needle: &str, limit: Duration) -> Option<String> {
        let start = Instant::now();
        while start.elapsed() < limit {
            if let Some(line) = self.log().into_iter().find(|l| l.contains(needle)) {
                return Some(line);
            }
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
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(cert).expect("read cert") {
        roots.add(cert.expect("parse cert")).expect("add root");
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Arc::new(config)
}

/// A TLS stream to `addr` for the name `localhost`.
pub fn tls_stream(addr: SocketAddr, config: Arc<ClientConfig>) -> TlsStream {
    let tcp = TcpStream::connect(addr).expect("connect");
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
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

/// Opens a raw WebSocket over TLS on `path` and checks the 101.
pub fn raw_ws(server: &Server, path: &str) -> TlsStream {
    let mut stream = server.tls();
    stream
        .write_all(upgrade_request(path, "").as_bytes())
        .unwrap();
    let head = read_response_head(&mut stream);
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    stream
}

/// A masked client frame.
pub fn client_frame(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
    client_frame_raw((fin as u8) << 7 | opcode, payload)
}

/// A masked client frame with a literal first byte (FIN, RSV, opcode).
pub fn client_frame_raw(first: u8, payload: &[u8]) -> Vec<u8> {
    let key = [0x37, 0xfa, 0x21, 0x3d];
    let mut frame = vec![first];
    match payload.len() {
        n if n < 126 => frame.push(0x80 | n as u8),
        n if n <= 0xFFFF => {
            frame.push(0x80 | 126);
            frame.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            frame.push(0x80 | 127);
            frame.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    frame.extend_from_slice(&key);
    frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
    frame
}

/// A server frame as read back: opcode and payload (server frames are
/// never masked; a masked one fails the test).
pub fn read_frame(stream: &mut impl Read) -> std::io::Result<(bool, u8, Vec<u8>)> {
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
    Ok((head[0] & 0x80 != 0, head[0] & 0x0F, payload))
}

/// Reads frames until a Close arrives; returns its code (None if empty).
pub fn read_close(stream: &mut impl Read) -> Option<u16> {
    loop {
        let (_, opcode, payload) = read_frame(stream).expect("a close frame");
        if opcode == 8 {
            return (payload.len() >= 2).then(|| u16::from_be_bytes([payload[0], payload[1]]));
        }
    }
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
