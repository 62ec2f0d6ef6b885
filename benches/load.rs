//! Load benchmark: the real `averyws` binary against a pipelining TLS
//! WebSocket client on loopback.
//!
//! ```text
//! cargo bench --bench load -- echo --connections 100 --inflight 16 --size 32 --seconds 10
//! cargo bench --bench load -- compare --seconds 5            # built-in echo vs the Rust worker
//! cargo bench --bench load -- --python compare --seconds 5   # ... vs the Python worker
//! cargo bench --bench load -- --signed compare --seconds 5   # signed link, CURVE handshake
//! cargo bench --bench load -- --signed --no-curve compare    # signed link, NULL handshake
//! cargo bench --bench load -- handshake --count 2000
//! cargo bench --bench load -- idle --connections 10000
//! ```
//!
//! The server runs pinned to CPU 0 and the client to CPU 1 (when the machine
//! has two; `--unpinned` leaves placement to the kernel). Server CPU time comes from `/proc/PID/schedstat` (nanoseconds
//! on CPU), so "server CPU per message" does not depend on how fast the
//! client is. Every loop is bounded in count and time; all traffic stays on
//! 127.0.0.1.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use argh::FromArgs;
use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore};

use averyws::session::testing::ClientCodec;

/// averyws load benchmark.
#[derive(FromArgs)]
struct Args {
    #[argh(subcommand)]
    mode: Mode,
    /// connect to an already running server at this address instead of
    /// starting averyws (e.g. a peer server for comparison)
    #[argh(option)]
    target: Option<SocketAddr>,
    /// server certificate to trust with --target (PEM)
    #[argh(option)]
    cert: Option<String>,
    /// process id of the --target server, for its CPU time and memory
    #[argh(option)]
    pid: Option<u32>,
    /// path to upgrade (default /echo, or /worker-echo with --worker)
    #[argh(option)]
    path: Option<String>,
    /// route through a ZeroMQ echo worker (in this process, on the
    /// client's CPU) instead of the built-in echo
    #[argh(switch)]
    worker: bool,
    /// with --worker: link through an ipc:// endpoint (a Unix socket)
    /// instead of loopback tcp://
    #[argh(switch)]
    ipc: bool,
    /// the worker is examples/python/echo_worker.py (python3 with pyzmq,
    /// its own process on the client's CPU) instead of the Rust one;
    /// implies --worker
    #[argh(switch)]
    python: bool,
    /// sign the backend link (a generated key file), so its handshake is
    /// CURVE; implies --worker
    #[argh(switch)]
    signed: bool,
    /// with --signed: keep the handshake NULL (--backend-no-curve)
    #[argh(switch)]
    no_curve: bool,
    /// pin nothing: the kernel places the server, the client and the
    /// worker (and libzmq's I/O threads, which inherit their affinity)
    #[argh(switch)]
    unpinned: bool,
    /// offer permessage-deflate and send every message compressed (the
    /// server compresses its echoes of 128 bytes or more); in idle mode,
    /// each connection first echoes one compressed 512-byte message
    #[argh(switch)]
    deflate: bool,
}

/// The backend link of a worker-path run.
struct Link {
    endpoint: String,
    /// The key file, on a signed link.
    keys: Option<std::path::PathBuf>,
    curve: bool,
}

impl Link {
    /// The flags that give a node (`node`) or a reference worker this
    /// link's signing and handshake.
    fn signing_args(&self, node: bool) -> Vec<String> {
        let Some(keys) = &self.keys else {
            return Vec::new();
        };
        let flag = if node {
            "--backend-key-file"
        } else {
            "--key-file"
        };
        let mut args = vec![flag.to_owned(), keys.display().to_string()];
        if !self.curve {
            args.push(
                if node {
                    "--backend-no-curve"
                } else {
                    "--no-curve"
                }
                .to_owned(),
            );
        }
        args
    }
}

#[derive(FromArgs)]
#[argh(subcommand)]
enum Mode {
    Echo(EchoArgs),
    Compare(CompareArgs),
    Handshake(HandshakeArgs),
    Idle(IdleArgs),
}

/// `size` bytes of chat-like JSON text: what permessage-deflate is for
/// (without it, the bytes' values cost the server nothing).
fn chat_text(size: usize) -> Vec<u8> {
    let line = br#"{"room":"lobby","user":"alice","text":"see you at the usual place at eight"},"#;
    line.iter().copied().cycle().take(size).collect()
}

/// Pipelined echo round trips.
#[derive(FromArgs)]
#[argh(subcommand, name = "echo")]
struct EchoArgs {
    /// concurrent connections (default 100)
    #[argh(option, default = "100")]
    connections: usize,
    /// messages in flight per connection (default 16)
    #[argh(option, default = "16")]
    inflight: usize,
    /// payload bytes per message, at least 8 (default 32)
    #[argh(option, default = "32")]
    size: usize,
    /// measured seconds after a one-second warm-up (default 10)
    #[argh(option, default = "10")]
    seconds: u64,
}

/// The built-in echo, then the worker path, on one server: both rates,
/// their ratio, and CPU per message of averyws and of the worker.
#[derive(FromArgs)]
#[argh(subcommand, name = "compare")]
struct CompareArgs {
    /// concurrent connections (default 100)
    #[argh(option, default = "100")]
    connections: usize,
    /// messages in flight per connection (default 16)
    #[argh(option, default = "16")]
    inflight: usize,
    /// payload bytes per message, at least 8 (default 32)
    #[argh(option, default = "32")]
    size: usize,
    /// measured seconds of each run after a one-second warm-up (default 10)
    #[argh(option, default = "10")]
    seconds: u64,
}

/// Full TLS + WebSocket handshakes, one connection at a time.
#[derive(FromArgs)]
#[argh(subcommand, name = "handshake")]
struct HandshakeArgs {
    /// handshakes to run (default 2000)
    #[argh(option, default = "2000")]
    count: usize,
}

/// Idle connections held open, for resident memory per connection.
#[derive(FromArgs)]
#[argh(subcommand, name = "idle")]
struct IdleArgs {
    /// connections to hold (default 10000)
    #[argh(option, default = "10000")]
    connections: usize,
}

fn main() {
    // `cargo bench` passes `--bench`; drop it before our own parsing.
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let strs: Vec<&str> = args.iter().map(String::as_str).collect();
    let args = match Args::from_args(&["load"], &strs) {
        Ok(args) => args,
        Err(early) => {
            println!("{}", early.output);
            std::process::exit(if early.status.is_ok() { 0 } else { 2 });
        }
    };
    let compare = matches!(args.mode, Mode::Compare(_));
    let worker_path = args.worker || args.python || args.signed || compare;
    let key_dir =
        TempPath(std::env::temp_dir().join(format!("averyws-load-keys-{}", std::process::id())));
    let keys = args.signed.then(|| {
        std::fs::create_dir_all(&key_dir.0).expect("temp dir");
        let path = key_dir.0.join("backend.keys");
        std::fs::write(&path, "load:0123456789abcdef0123456789abcdef\n").expect("key file");
        path
    });
    let endpoint = worker_path.then(|| {
        if args.ipc {
            let dir = std::env::temp_dir();
            format!(
                "ipc://{}/averyws-load-{}.sock",
                dir.display(),
                std::process::id()
            )
        } else {
            free_endpoint()
        }
    });
    let backend = endpoint.map(|endpoint| Link {
        endpoint,
        keys,
        curve: !args.no_curve,
    });
    let mut server = match args.target {
        Some(addr) => Target::external(addr, args.cert.as_deref().unwrap_or("cert.pem"), args.pid),
        None => Target::spawn(backend.as_ref(), !args.unpinned),
    };
    server.deflate = args.deflate;
    if !args.unpinned {
        pin_to_cpu(1);
    }
    let worker = backend.map(|link| EchoWorker::start(&link, args.python, !args.unpinned));
    let default_path = if worker_path { "/worker-echo" } else { "/echo" };
    let path = args.path.as_deref().unwrap_or(default_path);
    match args.mode {
        Mode::Echo(echo) => {
            run_echo(&server, worker.as_ref(), path, &echo);
        }
        Mode::Compare(c) => {
            let echo = EchoArgs {
                connections: c.connections,
                inflight: c.inflight,
                size: c.size,
                seconds: c.seconds,
            };
            println!("built-in /echo:");
            let edge = run_echo(&server, None, "/echo", &echo);
            println!(
                "through the {} worker:",
                if args.python { "Python" } else { "Rust" }
            );
            let relayed = run_echo(&server, worker.as_ref(), path, &echo);
            let per = |run: &EchoRun| run.server_cpu_ns.map(|ns| ns as f64 / run.messages as f64);
            println!(
                "compare: worker path {:.0} msg/s = {:.2}x the built-in echo's {:.0} msg/s",
                relayed.rate,
                relayed.rate / edge.rate,
                edge.rate
            );
            if let (Some(relay), Some(echoed)) = (per(&relayed), per(&edge)) {
                println!(
                    "compare: averyws CPU {:.3} µs per relayed message = {:.2}x its {:.3} µs per echoed one",
                    relay / 1000.0,
                    relay / echoed,
                    echoed / 1000.0
                );
            }
        }
        Mode::Handshake(hs) => run_handshakes(&server, path, &hs),
        Mode::Idle(idle) => run_idle(&server, path, &idle),
    }
}

/// A loopback ZeroMQ endpoint on a free port.
fn free_endpoint() -> String {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    format!("tcp://127.0.0.1:{port}")
}

/// The reference echo worker until dropped: the Rust one on a thread of
/// this process, or the Python one in a process of its own.
enum EchoWorker {
    Rust {
        stop: Arc<std::sync::atomic::AtomicBool>,
        thread: Option<std::thread::JoinHandle<()>>,
    },
    Python(Child),
}

impl EchoWorker {
    fn start(link: &Link, python: bool, pin: bool) -> EchoWorker {
        let worker = if python {
            Self::python(link, pin)
        } else {
            Self::rust(link)
        };
        // Let it register before clients arrive.
        std::thread::sleep(Duration::from_millis(500));
        worker
    }

    fn python(link: &Link, pin: bool) -> EchoWorker {
        let script = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/examples/python/echo_worker.py"
        );
        let child = on_cpu(pin.then_some(1), "python3")
            .args([script, "--connect", &link.endpoint])
            .args(link.signing_args(false))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .expect("start python3 examples/python/echo_worker.py");
        EchoWorker::Python(child)
    }

    /// Nanoseconds the worker has spent on a CPU: the Python process's
    /// threads, or every thread of this process but the client's (the
    /// main thread): the worker's and its ZeroMQ I/O thread.
    fn cpu_ns(&self) -> Option<u64> {
        let (pid, skip) = match self {
            EchoWorker::Python(child) => (child.id(), None),
            EchoWorker::Rust { .. } => (std::process::id(), Some(std::process::id())),
        };
        let mut total = 0;
        for task in std::fs::read_dir(format!("/proc/{pid}/task")).ok()? {
            let task = task.ok()?;
            if skip.is_some_and(|tid| task.file_name().to_str() == Some(&tid.to_string())) {
                continue;
            }
            let stat = std::fs::read_to_string(task.path().join("schedstat")).ok()?;
            total += stat.split_whitespace().next()?.parse::<u64>().ok()?;
        }
        Some(total)
    }

    fn rust(link: &Link) -> EchoWorker {
        use averyws::backend::KeyRing;
        use averyws_worker::{echo, Config, Worker};
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let mut config = Config::new(vec![link.endpoint.clone()], vec!["worker-echo".to_owned()]);
        config.keys = link.keys.as_ref().map(|path| {
            KeyRing::parse(&std::fs::read(path).expect("read the key file")).expect("key file")
        });
        config.curve = link.curve;
        let mut worker = Worker::new(config).expect("echo worker");
        let running = Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            while !running.load(std::sync::atomic::Ordering::Relaxed) {
                if let Some(event) = worker.poll(Duration::from_millis(100)) {
                    echo(&mut worker, event);
                }
            }
            worker.bye();
        });
        EchoWorker::Rust {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for EchoWorker {
    fn drop(&mut self) {
        match self {
            EchoWorker::Rust { stop, thread } => {
                stop.store(true, std::sync::atomic::Ordering::Relaxed);
                if let Some(thread) = thread.take() {
                    let _ = thread.join();
                }
            }
            EchoWorker::Python(child) => {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

/// The server under test.
struct Target {
    addr: SocketAddr,
    config: Arc<ClientConfig>,
    pid: Option<u32>,
    child: Option<Child>,
    _dir: Option<TempPath>,
    /// Clients offer permessage-deflate and compress what they send.
    deflate: bool,
}

impl Target {
    fn spawn(backend: Option<&Link>, pin: bool) -> Target {
        let dir =
            TempPath(std::env::temp_dir().join(format!("averyws-load-{}", std::process::id())));
        std::fs::create_dir_all(&dir.0).expect("temp dir");
        let cert = dir.0.join("cert.pem");
        // The embedded default ACL only opens /echo; this one opens both.
        let acl = dir.0.join("worker-echo.acl");
        std::fs::write(
            &acl,
            "allow guest /echo connect\nallow guest echo send\n\
             allow guest /worker-echo connect\nallow guest worker-echo send\n",
        )
        .expect("write the ACL");
        let mut child = on_cpu(pin.then_some(0), env!("CARGO_BIN_EXE_averyws"))
            .args(["--listen", "127.0.0.1:0", "--log-level", "info"])
            // Pinned to one CPU, as the peers are measured: one reactor.
            .args(["--threads", "1"])
            // Every connection comes from 127.0.0.1.
            .args(["--max-connections-per-ip", "0"])
            .args(["--dev-cert-out", cert.to_str().expect("utf-8 temp path")])
            .args(backend.map_or(Vec::new(), |link| {
                // A --route replaces the default /echo: keep it, for compare.
                let mut args: Vec<String> = [
                    "--route",
                    "/echo=echo",
                    "--route",
                    "/worker-echo=worker-echo",
                    "--backend-bind",
                    &link.endpoint,
                    "--acl",
                    acl.to_str().expect("utf-8 temp path"),
                ]
                .map(str::to_owned)
                .to_vec();
                args.extend(link.signing_args(true));
                args
            }))
            .stdin(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start averyws");
        let stderr = child.stderr.take().expect("stderr");
        let mut lines = BufReader::new(stderr).lines();
        let addr = loop {
            let line = lines
                .next()
                .and_then(Result::ok)
                .expect("server exited early");
            if let Some(rest) = line.split("listening on wss://").nth(1) {
                break rest
                    .split_whitespace()
                    .next()
                    .and_then(|a| a.parse().ok())
                    .expect("address");
            }
        };
        // Evictions and errors would skew the figures: show them.
        std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                if line.contains(" WARN ") || line.contains(" ERROR ") {
                    eprintln!("server: {line}");
                }
            }
        });
        Target {
            addr,
            config: client_config(cert.to_str().expect("utf-8")),
            pid: Some(child.id()),
            child: Some(child),
            _dir: Some(dir),
            deflate: false,
        }
    }

    fn external(addr: SocketAddr, cert: &str, pid: Option<u32>) -> Target {
        Target {
            addr,
            config: client_config(cert),
            pid,
            child: None,
            _dir: None,
            deflate: false,
        }
    }

    /// Nanoseconds the server process has spent on a CPU, all threads.
    fn cpu_ns(&self) -> Option<u64> {
        let pid = self.pid?;
        let mut total = 0;
        for task in std::fs::read_dir(format!("/proc/{pid}/task")).ok()? {
            let stat = std::fs::read_to_string(task.ok()?.path().join("schedstat")).ok()?;
            total += stat.split_whitespace().next()?.parse::<u64>().ok()?;
        }
        Some(total)
    }

    fn rss_kib(&self) -> Option<u64> {
        let pid = self.pid?;
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
        line.split_whitespace().nth(1)?.parse().ok()
    }
}

impl Drop for Target {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

struct TempPath(std::path::PathBuf);

impl Drop for TempPath {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn client_config(cert: &str) -> Arc<ClientConfig> {
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(cert).expect("read certificate") {
        roots
            .add(cert.expect("certificate"))
            .expect("trust certificate");
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .expect("TLS 1.3")
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    // Full handshakes only: resumption would flatter the handshake figure.
    config.resumption = rustls::client::Resumption::disabled();
    Arc::new(config)
}

/// `program` as a command, on CPU `cpu` when one is asked for and the
/// machine has it.
fn on_cpu(cpu: Option<usize>, program: &str) -> Command {
    match cpu.filter(|&cpu| cpus() > cpu) {
        Some(cpu) => {
            let mut command = Command::new("taskset");
            command.args(["-c", &cpu.to_string(), program]);
            command
        }
        None => Command::new(program),
    }
}

fn cpus() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

fn pin_to_cpu(cpu: usize) {
    if cpus() > cpu {
        let _ = Command::new("taskset")
            .args([
                "-p",
                "-c",
                &cpu.to_string(),
                &std::process::id().to_string(),
            ])
            .stdout(Stdio::null())
            .status();
    }
}

const UPGRADE_KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

/// One client connection driven by the benchmark's own mio loop.
struct Client {
    tcp: TcpStream,
    tls: ClientConnection,
    upgraded: bool,
    /// The server closed the connection (idle mode: it was evicted).
    closed: bool,
    inbox: Vec<u8>,
    sent: u64,
    received: u64,
    /// permessage-deflate was offered; once upgraded, agreed.
    deflate: bool,
}

impl Client {
    /// Connects and sends the ClientHello at once, as an honest client
    /// does (the server evicts clients that wait).
    fn connect(target: &Target, path: &str) -> io::Result<Client> {
        let std_tcp = std::net::TcpStream::connect(target.addr)?;
        std_tcp.set_nodelay(true)?;
        let name = ServerName::try_from("localhost").expect("name");
        let mut tls =
            ClientConnection::new(Arc::clone(&target.config), name).map_err(io::Error::other)?;
        // In-flight messages bound what is queued; rustls' default 64 KiB
        // cap would cut a frame in half.
        tls.set_buffer_limit(None);
        let offer = if target.deflate {
            "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n"
        } else {
            ""
        };
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: {UPGRADE_KEY}\r\nSec-WebSocket-Version: 13\r\n{offer}\r\n"
        );
        tls.writer().write_all(request.as_bytes())?;
        let mut std_tcp = std_tcp;
        while tls.wants_write() {
            tls.write_tls(&mut std_tcp)?;
        }
        std_tcp.set_nonblocking(true)?;
        Ok(Client {
            tcp: TcpStream::from_std(std_tcp),
            tls,
            upgraded: false,
            closed: false,
            inbox: Vec::new(),
            sent: 0,
            received: 0,
            deflate: target.deflate,
        })
    }

    /// Reads what the socket has; returns the echoed payloads' send times.
    fn read(&mut self, sent_at: &mut Vec<u64>) -> io::Result<bool> {
        let mut open = true;
        let mut chunk = [0u8; 16 << 10];
        loop {
            match self.tls.read_tls(&mut self.tcp) {
                Ok(0) => {
                    open = false;
                    break;
                }
                Ok(_) => {
                    self.tls.process_new_packets().map_err(io::Error::other)?;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => return Err(e),
            }
            // Take the plaintext now: rustls refuses more records while
            // its plaintext buffer is full.
            loop {
                match self.tls.reader().read(&mut chunk) {
                    Ok(0) => break,
                    Ok(n) => self.inbox.extend_from_slice(&chunk[..n]),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) => return Err(e),
                }
            }
        }
        if !self.upgraded {
            let Some(end) = self.inbox.windows(4).position(|w| w == b"\r\n\r\n") else {
                return Ok(open);
            };
            if !self.inbox.starts_with(b"HTTP/1.1 101") {
                return Err(io::Error::other("upgrade refused"));
            }
            let head = String::from_utf8_lossy(&self.inbox[..end]);
            if self.deflate && !head.contains("Sec-WebSocket-Extensions: permessage-deflate") {
                return Err(io::Error::other("permessage-deflate declined"));
            }
            self.inbox.drain(..end + 4);
            self.upgraded = true;
        }
        let mut pos = 0;
        while let Some((len, header)) = frame_len(&self.inbox[pos..]) {
            let payload = &self.inbox[pos + header..pos + header + len];
            let inflated;
            let payload = if self.inbox[pos] & 0x40 != 0 {
                inflated = CODEC
                    .with_borrow_mut(|codec| codec.inflate(payload))
                    .expect("the server's deflate stream");
                &inflated
            } else {
                payload
            };
            if payload.len() >= 8 {
                sent_at.push(u64::from_le_bytes(
                    payload[..8].try_into().expect("8 bytes"),
                ));
            }
            self.received += 1;
            pos += header + len;
        }
        self.inbox.drain(..pos);
        Ok(open)
    }

    fn send_message(&mut self, payload: &[u8]) {
        let compressed;
        let (first, payload) = if self.deflate {
            compressed = CODEC.with_borrow_mut(|codec| codec.deflate(payload));
            (0xc2, compressed.as_slice())
        } else {
            (0x82, payload)
        };
        let mut frame = Vec::with_capacity(payload.len() + 14);
        frame.push(first);
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
        // A zero mask key: masking is required, the key's value is not.
        frame.extend_from_slice(&[0; 4]);
        frame.extend_from_slice(payload);
        self.tls
            .writer()
            .write_all(&frame)
            .expect("unbounded buffer");
        self.sent += 1;
    }

    fn flush(&mut self) -> io::Result<()> {
        while self.tls.wants_write() {
            match self.tls.write_tls(&mut self.tcp) {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

thread_local! {
    /// The clients' permessage-deflate state: one for them all (they run
    /// on this one thread), at zlib's fastest level so the clients keep up.
    static CODEC: std::cell::RefCell<ClientCodec> =
        std::cell::RefCell::new(ClientCodec::new(flate2::Compression::fast()));
}

/// Payload length and header length of the complete server frame at the
/// front of `buf`, if there is one.
fn frame_len(buf: &[u8]) -> Option<(usize, usize)> {
    let (len, header) = match *buf.get(1)? & 0x7F {
        126 => (
            u16::from_be_bytes(buf.get(2..4)?.try_into().ok()?) as usize,
            4,
        ),
        127 => (
            u64::from_be_bytes(buf.get(2..10)?.try_into().ok()?) as usize,
            10,
        ),
        n => (n as usize, 2),
    };
    (buf.len() >= header + len).then_some((len, header))
}

/// What one echo run measured.
struct EchoRun {
    rate: f64,
    messages: u64,
    server_cpu_ns: Option<u64>,
}

fn run_echo(target: &Target, worker: Option<&EchoWorker>, path: &str, args: &EchoArgs) -> EchoRun {
    assert!(
        args.size >= 8,
        "--size must be at least 8 (the send timestamp)"
    );
    let mut poll = Poll::new().expect("poll");
    let mut events = Events::with_capacity(1024);
    let mut clients = Vec::with_capacity(args.connections);
    for _ in 0..args.connections {
        open_client(&poll, &mut clients, target, path);
        // Answer the handshakes under way between connects: the server
        // evicts clients that wait, and connecting them all first can
        // take longer than its first-byte deadline on a busy machine.
        serve_ready(&mut poll, &mut events, &mut clients, Duration::ZERO);
    }
    assert!(
        !clients.iter().any(|c| c.closed),
        "server closed a connection during setup"
    );
    let start = Instant::now();
    let mut payload = chat_text(args.size);
    // Readiness consumed during setup is not reported again (edge
    // triggered): start the clients that have already upgraded.
    for client in clients.iter_mut().filter(|c| c.upgraded) {
        while client.sent - client.received < args.inflight as u64 {
            let now = start.elapsed().as_nanos() as u64;
            payload[..8].copy_from_slice(&now.to_le_bytes());
            client.send_message(&payload);
        }
        client.flush().expect("write");
    }
    let mut sent_at = Vec::new();
    let mut latencies_ns: Vec<u64> = Vec::new();
    let warm_up = Duration::from_secs(1);
    let measured = Duration::from_secs(args.seconds);
    let deadline = warm_up + measured;
    let (mut measuring, mut cpu_start, mut wall_start, mut received_start) =
        (false, None, start, 0u64);
    let mut worker_cpu_start = None;
    loop {
        let elapsed = start.elapsed();
        if elapsed >= deadline {
            break;
        }
        if !measuring && elapsed >= warm_up {
            measuring = true;
            cpu_start = target.cpu_ns();
            worker_cpu_start = worker.and_then(EchoWorker::cpu_ns);
            wall_start = Instant::now();
            received_start = clients.iter().map(|c| c.received).sum();
            latencies_ns.clear();
        }
        poll.poll(&mut events, Some(Duration::from_millis(100)))
            .expect("poll");
        for event in events.iter() {
            let client = &mut clients[event.token().0];
            sent_at.clear();
            if !client.read(&mut sent_at).expect("read") {
                panic!("server closed a connection");
            }
            let now = start.elapsed().as_nanos() as u64;
            latencies_ns.extend(sent_at.iter().map(|t| now.saturating_sub(*t)));
            if client.upgraded {
                while client.sent - client.received < args.inflight as u64 {
                    let now = start.elapsed().as_nanos() as u64;
                    payload[..8].copy_from_slice(&now.to_le_bytes());
                    client.send_message(&payload);
                }
            }
            client.flush().expect("write");
        }
    }
    let wall = wall_start.elapsed();
    let messages: u64 = clients.iter().map(|c| c.received).sum::<u64>() - received_start;
    let cpu = match (cpu_start, target.cpu_ns()) {
        (Some(a), Some(b)) => Some(b - a),
        _ => None,
    };
    let worker_cpu = match (worker_cpu_start, worker.and_then(EchoWorker::cpu_ns)) {
        (Some(a), Some(b)) => Some(b - a),
        _ => None,
    };
    latencies_ns.sort_unstable();
    let pct = |p: f64| {
        latencies_ns
            .get(
                ((latencies_ns.len() as f64 * p) as usize)
                    .min(latencies_ns.len().saturating_sub(1)),
            )
            .map_or(0.0, |ns| *ns as f64 / 1000.0)
    };
    println!(
        "echo: {} connections, {} in flight, {} B: {:.0} msg/s over {:.1} s; latency µs p50 {:.0} p90 {:.0} p99 {:.0} p99.9 {:.0}",
        args.connections,
        args.inflight,
        args.size,
        messages as f64 / wall.as_secs_f64(),
        wall.as_secs_f64(),
        pct(0.5),
        pct(0.9),
        pct(0.99),
        pct(0.999),
    );
    if let Some(cpu) = cpu {
        println!(
            "echo: server CPU {:.3} µs per message ({:.0}% of one core)",
            cpu as f64 / 1000.0 / messages.max(1) as f64,
            cpu as f64 / wall.as_nanos() as f64 * 100.0
        );
    }
    if let Some(cpu) = worker_cpu {
        println!(
            "echo: worker CPU {:.3} µs per message ({:.0}% of one core)",
            cpu as f64 / 1000.0 / messages.max(1) as f64,
            cpu as f64 / wall.as_nanos() as f64 * 100.0
        );
    }
    EchoRun {
        rate: messages as f64 / wall.as_secs_f64(),
        messages: messages.max(1),
        server_cpu_ns: cpu,
    }
}

fn run_handshakes(target: &Target, path: &str, args: &HandshakeArgs) {
    let cpu_start = target.cpu_ns();
    let start = Instant::now();
    let limit = Duration::from_secs(120);
    let mut done = 0;
    while done < args.count && start.elapsed() < limit {
        let mut client = Client::connect(target, path).expect("connect");
        let mut poll = Poll::new().expect("poll");
        poll.registry()
            .register(
                &mut client.tcp,
                Token(0),
                Interest::READABLE | Interest::WRITABLE,
            )
            .expect("register");
        let mut events = Events::with_capacity(8);
        let mut sink = Vec::new();
        while !client.upgraded {
            poll.poll(&mut events, Some(Duration::from_secs(5)))
                .expect("poll");
            assert!(!events.is_empty(), "handshake stalled");
            client.read(&mut sink).expect("read");
            client.flush().expect("write");
        }
        done += 1;
    }
    let wall = start.elapsed();
    println!(
        "handshake: {done} full TLS 1.3 + WebSocket handshakes in {:.2} s ({:.0}/s, {:.0} µs each end to end)",
        wall.as_secs_f64(),
        done as f64 / wall.as_secs_f64(),
        wall.as_micros() as f64 / done.max(1) as f64
    );
    if let (Some(a), Some(b)) = (cpu_start, target.cpu_ns()) {
        println!(
            "handshake: server CPU {:.1} µs per handshake",
            (b - a) as f64 / 1000.0 / done.max(1) as f64
        );
    }
}

fn run_idle(target: &Target, path: &str, args: &IdleArgs) {
    let rss_before = target.rss_kib();
    let mut poll = Poll::new().expect("poll");
    let mut events = Events::with_capacity(1024);
    let mut clients: Vec<Client> = Vec::with_capacity(args.connections);
    let limit = Instant::now() + Duration::from_secs(300);
    // Serve the handshakes under way between connects, and keep only a
    // few in progress: real clients each have a CPU of their own and
    // answer at once, and the server evicts clients that wait.
    for _ in 0..args.connections {
        while clients
            .iter()
            .rev()
            .take(64)
            .filter(|c| !c.upgraded && !c.closed)
            .count()
            >= 16
        {
            serve_ready(
                &mut poll,
                &mut events,
                &mut clients,
                Duration::from_millis(1),
            );
        }
        open_client(&poll, &mut clients, target, path);
        serve_ready(&mut poll, &mut events, &mut clients, Duration::ZERO);
    }
    // A connection the server closed will never upgrade: do not wait for
    // it (the server's idle timeout would close all the others meanwhile).
    while clients.iter().any(|c| !c.upgraded && !c.closed) && Instant::now() < limit {
        serve_ready(
            &mut poll,
            &mut events,
            &mut clients,
            Duration::from_millis(100),
        );
    }
    if target.deflate {
        // One compressed exchange each: what is left of it on the server
        // is the memory a compressing idle connection costs.
        let message = chat_text(512);
        for client in clients.iter_mut().filter(|c| c.upgraded && !c.closed) {
            client.send_message(&message);
            client.flush().expect("write");
        }
        while clients
            .iter()
            .any(|c| c.upgraded && !c.closed && c.received < c.sent)
            && Instant::now() < limit
        {
            serve_ready(
                &mut poll,
                &mut events,
                &mut clients,
                Duration::from_millis(100),
            );
        }
    }
    std::thread::sleep(Duration::from_secs(1));
    let upgraded = clients.iter().filter(|c| c.upgraded && !c.closed).count();
    let closed = clients.iter().filter(|c| c.closed).count();
    if closed > 0 {
        println!("idle: {closed} connections closed by the server (see its log)");
    }
    if let (Some(before), Some(after)) = (rss_before, target.rss_kib()) {
        println!(
            "idle: {upgraded} upgraded connections held; server RSS {before} KiB -> {after} KiB: {:.2} KiB per connection",
            (after - before) as f64 / upgraded.max(1) as f64
        );
    }
}

/// Handles the readiness events of one poll: reads, then writes.
fn serve_ready(poll: &mut Poll, events: &mut Events, clients: &mut [Client], timeout: Duration) {
    poll.poll(events, Some(timeout)).expect("poll");
    let mut sink = Vec::new();
    for event in events.iter() {
        let client = &mut clients[event.token().0];
        if client.closed {
            continue;
        }
        // End of stream or a reset: the server evicted this client.
        if !client.read(&mut sink).unwrap_or(false) {
            client.closed = true;
            continue;
        }
        client.flush().expect("write");
    }
}

/// Connects one more client and registers it under its index.
fn open_client(poll: &Poll, clients: &mut Vec<Client>, target: &Target, path: &str) {
    let mut client = Client::connect(target, path).expect("connect (raise ulimit -n?)");
    poll.registry()
        .register(
            &mut client.tcp,
            Token(clients.len()),
            Interest::READABLE | Interest::WRITABLE,
        )
        .expect("register");
    clients.push(client);
}
