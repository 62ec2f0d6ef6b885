//! Command line → [`Config`]. Bad flags or values give a one-line error and
//! exit status 2; `--help` documents every flag.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use argh::FromArgs;

use crate::acl_store;
use crate::backend::endpoint::is_local_endpoint;
use crate::backend::message::{is_reserved_service, is_service_name};
use crate::config::{
    AclSource, Auth, Backend, Config, Deflate, Protection, Route, Service, Timeouts, TlsSource,
    WorkerLoss,
};
use crate::logging::{AccessLog, Format, LevelSpec, Settings};
use crate::pace::Pace;
use crate::ws::deflate::Policy as DeflatePolicy;
use crate::ws::Limits;

/// averyws: a TLS-only WebSocket gateway. With no arguments it serves
/// wss://127.0.0.1:8443/echo with a generated development certificate.
#[derive(FromArgs, Debug)]
pub struct Args {
    /// address to listen on (default 127.0.0.1:8443)
    #[argh(option, default = "SocketAddr::from(([127, 0, 0, 1], 8443))")]
    pub listen: SocketAddr,

    /// reactors (threads) sharing the port with SO_REUSEPORT, each its
    /// own backend node (default: the number of CPUs)
    #[argh(option)]
    pub threads: Option<usize>,

    /// PEM certificate chain, leaf first (needs --key)
    #[argh(option)]
    pub cert: Option<PathBuf>,

    /// PEM private key: PKCS#8, PKCS#1 or SEC1 (needs --cert)
    #[argh(option)]
    pub key: Option<PathBuf>,

    /// write the generated development certificate (PEM) to this file
    #[argh(option)]
    pub dev_cert_out: Option<PathBuf>,

    /// mount a service at a path, as PATH=SERVICE (repeatable): `echo` is
    /// the built-in service, any other name is served by backend workers;
    /// default /echo=echo
    #[argh(option)]
    pub route: Vec<RouteArg>,

    /// largest message in bytes (default 16777216)
    #[argh(option, default = "16 << 20")]
    pub max_message_size: u64,

    /// largest frame payload in bytes (default 16777216)
    #[argh(option, default = "16 << 20")]
    pub max_frame_size: u64,

    /// largest HTTP upgrade request head in bytes (default 8192)
    #[argh(option, default = "8192")]
    pub max_header_bytes: usize,

    /// seconds without inbound traffic before the server pings (default 30)
    #[argh(option, default = "30")]
    pub ping_interval_s: u64,

    /// seconds without inbound traffic before the server closes (default 75)
    #[argh(option, default = "75")]
    pub idle_timeout_s: u64,

    /// milliseconds from accept to a completed upgrade (default 10000)
    #[argh(option, default = "10_000")]
    pub handshake_timeout_ms: u64,

    /// milliseconds a client gets for any first byte while pending
    /// handshakes are at half their cap (default 25; the measured round
    /// trip is added)
    #[argh(option, default = "25")]
    pub first_byte_timeout_ms: u64,

    /// milliseconds a new connection gets to send its first byte otherwise
    /// (default 100, times the connections its address holds, up to
    /// --think-time-ms)
    #[argh(option, default = "100")]
    pub hello_timeout_ms: u64,

    /// milliseconds a client may think before its next TLS flight or its
    /// upgrade request, and before its blocked output drains (default
    /// 1000; --first-byte-timeout-ms while pending handshakes are at half
    /// their cap)
    #[argh(option, default = "1000")]
    pub think_time_ms: u64,

    /// milliseconds a frame on an open connection may stall on top of its
    /// time at --min-rate (default 5000)
    #[argh(option, default = "5000")]
    pub frame_stall_ms: u64,

    /// bytes per second a client must keep up once a unit of input has
    /// started, and for draining its output (default 50000)
    #[argh(option, default = "50_000")]
    pub min_rate: u64,

    /// output bytes queued for one client beyond which it is a slow
    /// consumer and is closed (default 1048576)
    #[argh(option, default = "1 << 20")]
    pub max_outbound_bytes: usize,

    /// connections at once (default 100000)
    #[argh(option, default = "100_000")]
    pub max_connections: usize,

    /// connections at once from one IP address, 0 for no limit (default 1024)
    #[argh(option, default = "1024")]
    pub max_connections_per_ip: usize,

    /// connections in the TLS handshake or upgrade at once (default 10000)
    #[argh(option, default = "10_000")]
    pub max_pending_handshakes: usize,

    /// TLS handshake steps each reactor runs per loop turn; the rest wait
    /// for the next turn, so a connect storm cannot stall established
    /// connections (default 32)
    #[argh(option, default = "32")]
    pub handshakes_per_turn: usize,

    /// data messages per second per connection, 0 for no limit (default 0)
    #[argh(option, default = "0")]
    pub max_messages_per_s: u32,

    /// messages a connection may send in a burst above --max-messages-per-s
    /// (default: one second's worth)
    #[argh(option)]
    pub message_burst: Option<u32>,

    /// seconds to wait for closing handshakes on SIGTERM (default 10)
    #[argh(option, default = "10")]
    pub drain_timeout_s: u64,

    /// a subprotocol the server speaks (repeatable); the first one the
    /// client offers that is listed here is chosen
    #[argh(option)]
    pub subprotocol: Vec<String>,

    /// an allowed Origin (repeatable; none allows any origin)
    #[argh(option)]
    pub allowed_origin: Vec<String>,

    /// backend endpoint the node binds for workers, tcp:// or ipc://
    /// (repeatable; default tcp://127.0.0.1:7100 when a route targets
    /// workers)
    #[argh(option)]
    pub backend_bind: Vec<String>,

    /// file of KEYID:SECRET lines signing every backend message
    #[argh(option)]
    pub backend_key_file: Option<PathBuf>,

    /// key id whose signed messages may change the ACL at runtime
    /// (repeatable; needs --backend-key-file)
    #[argh(option)]
    pub backend_admin_key: Vec<String>,

    /// network allowed to connect to the backend endpoints, as CIDR
    /// (repeatable; once given, only the listed networks are, so add
    /// 127.0.0.1/32 for local workers; default loopback only; ipc://
    /// workers are not checked)
    #[argh(option)]
    pub backend_allow: Vec<String>,

    /// allow a non-loopback backend endpoint without --backend-key-file
    #[argh(switch)]
    pub backend_insecure: bool,

    /// keep a signed backend link's handshake NULL instead of CURVE, for
    /// workers that cannot do CURVE yet (a peer without a key can then
    /// hold the node's memory: docs/protocol.md section 2)
    #[argh(switch)]
    pub backend_no_curve: bool,

    /// what happens to a dead worker's connections: reassign (another
    /// worker gets them; none left: close 1013) or close (1012)
    #[argh(option, default = "String::from(\"reassign\")")]
    pub worker_loss: String,

    /// the node's name for workers (default averyws-PID)
    #[argh(option)]
    pub node_name: Option<String>,

    /// backend heartbeat interval in milliseconds (default 1000)
    #[argh(option, default = "1000")]
    pub backend_heartbeat_ms: u64,

    /// most messages waiting for one worker whose pipe is full; beyond,
    /// ERROR replies to it are dropped and other messages declare it dead
    /// (default 4096)
    #[argh(option, default = "crate::config::DEFAULT_WORKER_QUEUE")]
    pub backend_worker_queue: usize,

    /// file of KID:SECRET lines verifying client tokens (JWT, HS256); the
    /// token's kid picks the key
    #[argh(option)]
    pub jwt_secret_file: Option<PathBuf>,

    /// seconds of clock skew allowed on a token's exp and nbf (default 30)
    #[argh(option, default = "crate::auth::token::DEFAULT_LEEWAY_S")]
    pub jwt_leeway_s: u64,

    /// a query parameter that may carry the token (default: none, tokens
    /// only from Authorization or the bearer. subprotocol entry)
    #[argh(option)]
    pub token_query_param: Option<String>,

    /// the ACL: a file, re-read on SIGHUP, or a PostgreSQL store
    /// (postgres://USER@HOST[:PORT]/DB) every node follows live (default:
    /// the development ACL, which lets guests use every route given here,
    /// with a warning at start)
    #[argh(option)]
    pub acl: Option<String>,

    /// a file holding the ACL store's password, when the URL has none
    /// (default: PGPASSWORD, else none)
    #[argh(option)]
    pub acl_password_file: Option<PathBuf>,

    /// CA certificates (PEM) verifying the ACL store's database: the
    /// connection is then TLS, required (default: no TLS)
    #[argh(option)]
    pub acl_ca_file: Option<PathBuf>,

    /// the schema of the ACL store's tables (default averyws)
    #[argh(option, default = "crate::config::DEFAULT_ACL_SCHEMA.to_owned()")]
    pub acl_schema: String,

    /// a file the ACL store's last snapshot is copied to, and started from
    /// when the database is down at start (default: none; down at start is
    /// an error)
    #[argh(option)]
    pub acl_cache: Option<PathBuf>,

    /// the most rows an ACL store may hold (default 1000000)
    #[argh(option, default = "crate::config::DEFAULT_MAX_ACL_ROWS")]
    pub acl_max_rows: usize,

    /// a worker service that authenticates clients that present no token
    /// (delegated authentication; docs/acl.md)
    #[argh(option)]
    pub auth_service: Option<String>,

    /// a route path whose clients go to --auth-service (repeatable;
    /// default: every route)
    #[argh(option)]
    pub auth_route: Vec<String>,

    /// how long an upgrade waits for the auth service, in milliseconds;
    /// no verdict in time: 503 (default 2000)
    #[argh(option, default = "2000")]
    pub auth_timeout_ms: u64,

    /// permessage-deflate when a client offers it: on or off (default on)
    #[argh(option, default = "Switch::On")]
    pub permessage_deflate: Switch,

    /// the largest compression window the server uses, 9 to 15 bits
    /// (default 15)
    #[argh(option, default = "15")]
    pub deflate_server_window_bits: u8,

    /// the largest compression window a client may use, 8 to 15 bits; below
    /// 15, offers that cannot be limited are declined (default 15)
    #[argh(option, default = "15")]
    pub deflate_client_window_bits: u8,

    /// messages shorter than this many bytes are sent uncompressed
    /// (default 128)
    #[argh(option, default = "crate::config::DEFAULT_DEFLATE_MIN_BYTES")]
    pub deflate_min_bytes: usize,

    /// a compressed message may inflate to this many times its size (and
    /// to 64 KiB whatever its size) before it is closed with 1009
    /// (default 256)
    #[argh(option, default = "crate::config::DEFAULT_DEFLATE_MAX_RATIO")]
    pub deflate_max_ratio: usize,

    /// a route path whose sessions never compress (repeatable)
    #[argh(option)]
    pub uncompressed_route: Vec<String>,

    /// log level: off, error, warn, info, debug or trace, optionally with
    /// per-module levels as RUST_LOG has them, e.g.
    /// `warn,averyws::backend=debug` (default: RUST_LOG, else info)
    #[argh(option)]
    pub log_level: Option<LevelSpec>,

    /// log line format: text or json (one object per line with time,
    /// level, target and message; default text)
    #[argh(option, default = "Format::Text")]
    pub log_format: Format,

    /// write the access log (one line per connection) to this file,
    /// appending, or to stdout with - (default: in the main log)
    #[argh(option)]
    pub access_log: Option<AccessLog>,

    /// print the version and exit
    #[argh(switch)]
    pub version: bool,
}

/// `on` or `off`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Switch {
    /// On.
    On,
    /// Off.
    Off,
}

impl FromStr for Switch {
    type Err = String;

    fn from_str(value: &str) -> Result<Self, String> {
        match value {
            "on" => Ok(Switch::On),
            "off" => Ok(Switch::Off),
            _ => Err(format!("`{value}` is not on or off")),
        }
    }
}

/// A `PATH=SERVICE` pair from `--route`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteArg(pub Route);

impl argh::FromArgValue for RouteArg {
    fn from_arg_value(value: &str) -> Result<Self, String> {
        let (path, service) = value
            .split_once('=')
            .ok_or_else(|| format!("route `{value}` is not PATH=SERVICE"))?;
        if !path.starts_with('/') || path.contains(['?', '#', ' ']) {
            return Err(format!(
                "route path `{path}` must start with / and have no query"
            ));
        }
        let service = match service {
            "echo" => Service::Echo,
            name if is_service_name(name.as_bytes()) => Service::Worker(name.to_owned()),
            other => {
                return Err(format!(
                    "service `{other}` is not 1-64 characters of A-Z a-z 0-9 . _ -"
                ))
            }
        };
        Ok(RouteArg(Route {
            path: path.to_owned(),
            service,
        }))
    }
}

/// Why the command line did not yield a [`Config`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Exit {
    /// `--help` or `--version`: print to stdout, exit 0.
    Info(String),
    /// A bad flag or value: print the one-line error to stderr, exit 2.
    Usage(String),
}

/// Most reactors a process runs: far above any core count a single
/// listener address serves well, low enough to catch a typo.
const MAX_THREADS: usize = 256;

/// What the command line asks for: the server's configuration, and how
/// to log (kept apart so that the configuration holds no logging types).
#[derive(Debug)]
pub struct Launch {
    /// The validated server configuration.
    pub config: Config,
    /// Log level, line format and where the access log goes.
    pub logging: Settings,
}

/// Parses `args` (without the program name) into a validated [`Launch`].
pub fn parse(program: &str, args: &[&str]) -> Result<Launch, Exit> {
    let parsed = Args::from_args(&[program], args).map_err(|early| match early.status {
        Ok(()) => Exit::Info(early.output),
        Err(()) => Exit::Usage(first_line(&early.output)),
    })?;
    if parsed.version {
        return Err(Exit::Info(version()));
    }
    parsed.into_launch().map_err(Exit::Usage)
}

/// What `--version` prints: `averyws <version>`.
pub fn version() -> String {
    format!("averyws {}", env!("CARGO_PKG_VERSION"))
}

fn first_line(text: &str) -> String {
    text.lines().next().unwrap_or_default().trim().to_owned()
}

impl Args {
    /// Checks the combination of flags and builds the [`Launch`].
    pub fn into_launch(mut self) -> Result<Launch, String> {
        let logging = self.logging()?;
        Ok(Launch {
            config: self.into_config()?,
            logging,
        })
    }

    /// Log settings: `--log-level`, else `RUST_LOG`, else info.
    fn logging(&mut self) -> Result<Settings, String> {
        Ok(Settings {
            level: match (self.log_level.take(), std::env::var("RUST_LOG")) {
                (Some(spec), _) => spec,
                (None, Ok(text)) => {
                    LevelSpec::from_env(&text).map_err(|e| format!("RUST_LOG: {e}"))?
                }
                (None, Err(_)) => LevelSpec::new(log::LevelFilter::Info),
            },
            format: self.log_format,
            access: self.access_log.take().unwrap_or_default(),
        })
    }

    /// Checks the combination of flags and builds the [`Config`].
    fn into_config(mut self) -> Result<Config, String> {
        let acl = self.acl_source()?;
        let mut routes: Vec<Route> = std::mem::take(&mut self.route)
            .into_iter()
            .map(|r| r.0)
            .collect();
        if let Some(dup) = routes
            .iter()
            .enumerate()
            .find(|(i, r)| routes[..*i].iter().any(|o| o.path == r.path))
        {
            return Err(format!("route path `{}` is given twice", dup.1.path));
        }
        if routes.is_empty() {
            routes.push(Route {
                path: "/echo".into(),
                service: Service::Echo,
            });
        }
        let backend = self.backend(&routes)?;
        let deflate = self.deflate(&routes)?;
        let tls = match (self.cert, self.key) {
            (Some(cert), Some(key)) if self.dev_cert_out.is_none() => {
                TlsSource::Files { cert, key }
            }
            (Some(_), Some(_)) => {
                return Err("--dev-cert-out only applies without --cert/--key".into())
            }
            (None, None) => TlsSource::Development {
                out: self.dev_cert_out,
            },
            _ => return Err("--cert and --key go together".into()),
        };
        for (name, value) in [
            ("--max-message-size", self.max_message_size),
            ("--max-frame-size", self.max_frame_size),
            ("--max-header-bytes", self.max_header_bytes as u64),
            ("--ping-interval-s", self.ping_interval_s),
            ("--idle-timeout-s", self.idle_timeout_s),
            ("--handshake-timeout-ms", self.handshake_timeout_ms),
            ("--first-byte-timeout-ms", self.first_byte_timeout_ms),
            ("--hello-timeout-ms", self.hello_timeout_ms),
            ("--think-time-ms", self.think_time_ms),
            ("--frame-stall-ms", self.frame_stall_ms),
            ("--min-rate", self.min_rate),
            ("--auth-timeout-ms", self.auth_timeout_ms),
            ("--max-outbound-bytes", self.max_outbound_bytes as u64),
            ("--max-connections", self.max_connections as u64),
            (
                "--max-pending-handshakes",
                self.max_pending_handshakes as u64,
            ),
            ("--handshakes-per-turn", self.handshakes_per_turn as u64),
        ] {
            if value == 0 {
                return Err(format!("{name} must be greater than 0"));
            }
        }
        if let Some(name) = &self.auth_service {
            if !is_service_name(name.as_bytes()) || is_reserved_service(name) {
                return Err(format!(
                    "--auth-service `{name}` is not a worker service name (not echo)"
                ));
            }
        }
        if !self.auth_route.is_empty() && self.auth_service.is_none() {
            return Err("--auth-route needs --auth-service".into());
        }
        if let Some(path) = self
            .auth_route
            .iter()
            .find(|path| !routes.iter().any(|r| &r.path == *path))
        {
            return Err(format!("--auth-route `{path}` is not a --route path"));
        }
        let threads = self.threads.unwrap_or_else(|| {
            std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
        });
        if !(1..=MAX_THREADS).contains(&threads) {
            return Err(format!("--threads must be 1 to {MAX_THREADS}"));
        }
        if let Some(backend) = &backend {
            // Reactor N binds every endpoint with the port moved by N.
            for endpoint in &backend.binds {
                crate::config::reactor_endpoint(endpoint, threads - 1)?;
            }
        }
        if self.max_header_bytes < 512 {
            return Err("--max-header-bytes must be at least 512".into());
        }
        if let Some(name) = &self.token_query_param {
            if name.is_empty() || name.contains(['&', '=', '#', '?', ' ']) {
                return Err(format!(
                    "--token-query-param `{name}` must be a non-empty name without & = # ? or space"
                ));
            }
        }
        Ok(Config {
            listen: self.listen,
            threads,
            tls,
            routes,
            limits: Limits {
                max_frame_size: self.max_frame_size,
                max_message_size: self.max_message_size,
            },
            max_header_bytes: self.max_header_bytes,
            subprotocols: self.subprotocol,
            allowed_origins: self.allowed_origin,
            timeouts: Timeouts {
                handshake: Duration::from_millis(self.handshake_timeout_ms),
                ping_interval: Duration::from_secs(self.ping_interval_s),
                idle: Duration::from_secs(self.idle_timeout_s),
                drain: Duration::from_secs(self.drain_timeout_s),
                ..Timeouts::default()
            },
            protection: Protection {
                pace: Pace {
                    first_byte: Duration::from_millis(self.first_byte_timeout_ms),
                    hello: Duration::from_millis(self.hello_timeout_ms),
                    think: Duration::from_millis(self.think_time_ms),
                    frame_stall: Duration::from_millis(self.frame_stall_ms),
                    min_rate: self.min_rate,
                },
                max_outbound_bytes: self.max_outbound_bytes,
                max_connections: self.max_connections,
                max_connections_per_ip: self.max_connections_per_ip,
                max_pending_handshakes: self.max_pending_handshakes,
                handshakes_per_turn: self.handshakes_per_turn,
                max_messages_per_s: self.max_messages_per_s,
                message_burst: self.message_burst.unwrap_or(self.max_messages_per_s),
                tls_backlog_bytes: crate::config::DEFAULT_TLS_BACKLOG_BYTES,
                max_partial_tls_bytes: crate::config::DEFAULT_MAX_PARTIAL_TLS_BYTES,
                accepts_per_event: crate::config::DEFAULT_ACCEPTS_PER_EVENT,
                rounds_per_event: crate::config::DEFAULT_ROUNDS_PER_EVENT,
                out_buffer_keep: crate::config::DEFAULT_OUT_BUFFER_KEEP,
            },
            deflate,
            backend,
            auth: Auth {
                jwt_secret_file: self.jwt_secret_file,
                jwt_leeway_s: self.jwt_leeway_s,
                token_query_param: self.token_query_param,
                acl,
                auth_service: self.auth_service,
                auth_timeout: Duration::from_millis(self.auth_timeout_ms),
                auth_routes: self.auth_route,
            },
        })
    }

    /// Where the ACL is kept: `--acl` and the store's flags, checked.
    fn acl_source(&mut self) -> Result<AclSource, String> {
        let flags = acl_store::StoreFlags {
            password_file: self.acl_password_file.as_deref(),
            ca_file: self.acl_ca_file.as_deref(),
            schema: &self.acl_schema,
            max_rows: self.acl_max_rows,
        };
        let mut source = acl_store::source(self.acl.take(), flags)?;
        match &mut source {
            AclSource::Postgres(store) => {
                store.cache_file = self.acl_cache.take();
            }
            _ if self.acl_cache.is_some()
                || self.acl_schema != crate::config::DEFAULT_ACL_SCHEMA
                || self.acl_max_rows != crate::config::DEFAULT_MAX_ACL_ROWS =>
            {
                return Err(
                    "--acl-cache, --acl-schema and --acl-max-rows need --acl postgres://...".into(),
                )
            }
            _ => {}
        }
        Ok(source)
    }

    /// The permessage-deflate settings, checked.
    fn deflate(&mut self, routes: &[Route]) -> Result<Deflate, String> {
        if !(9..=15).contains(&self.deflate_server_window_bits) {
            return Err("--deflate-server-window-bits must be 9 to 15".into());
        }
        if !(8..=15).contains(&self.deflate_client_window_bits) {
            return Err("--deflate-client-window-bits must be 8 to 15".into());
        }
        if self.deflate_max_ratio == 0 {
            return Err("--deflate-max-ratio must be greater than 0".into());
        }
        let uncompressed_routes = std::mem::take(&mut self.uncompressed_route);
        if let Some(path) = uncompressed_routes
            .iter()
            .find(|path| !routes.iter().any(|r| &r.path == *path))
        {
            return Err(format!(
                "--uncompressed-route `{path}` is not a --route path"
            ));
        }
        Ok(Deflate {
            enabled: self.permessage_deflate == Switch::On,
            policy: DeflatePolicy {
                server_max_window_bits: self.deflate_server_window_bits,
                client_max_window_bits: self.deflate_client_window_bits,
            },
            min_bytes: self.deflate_min_bytes,
            max_ratio: self.deflate_max_ratio,
            uncompressed_routes,
        })
    }

    /// The backend link's settings; `None` when nothing needs one.
    fn backend(&self, routes: &[Route]) -> Result<Option<Backend>, String> {
        // Only a signature can say a message comes from an admin.
        if !self.backend_admin_key.is_empty() && self.backend_key_file.is_none() {
            return Err("--backend-admin-key needs --backend-key-file".into());
        }
        if self.backend_no_curve && self.backend_key_file.is_none() {
            return Err(
                "--backend-no-curve needs --backend-key-file (unsigned links are NULL)".into(),
            );
        }
        let wants_workers = routes
            .iter()
            .any(|r| matches!(r.service, Service::Worker(_)))
            || self.auth_service.is_some();
        if !wants_workers && self.backend_bind.is_empty() {
            return Ok(None);
        }
        let binds = if self.backend_bind.is_empty() {
            vec!["tcp://127.0.0.1:7100".to_owned()]
        } else {
            self.backend_bind.clone()
        };
        for endpoint in &binds {
            if !(endpoint.starts_with("tcp://") || endpoint.starts_with("ipc://")) {
                return Err(format!(
                    "backend endpoint `{endpoint}` is not tcp:// or ipc://"
                ));
            }
            if !is_local_endpoint(endpoint)
                && self.backend_key_file.is_none()
                && !self.backend_insecure
            {
                return Err(format!(
                    "backend endpoint `{endpoint}` is not loopback: give --backend-key-file \
                     (or --backend-insecure to run unsigned)"
                ));
            }
        }
        let worker_loss = match self.worker_loss.as_str() {
            "reassign" => WorkerLoss::Reassign,
            "close" => WorkerLoss::Close,
            other => return Err(format!("--worker-loss `{other}` is not reassign or close")),
        };
        let node_name = self
            .node_name
            .clone()
            .unwrap_or_else(|| format!("averyws-{}", std::process::id()));
        if node_name.is_empty() || node_name.len() > 64 {
            return Err("--node-name must be 1-64 bytes".into());
        }
        if !(10..=60_000).contains(&self.backend_heartbeat_ms) {
            return Err("--backend-heartbeat-ms must be 10 to 60000".into());
        }
        if self.backend_worker_queue == 0 {
            return Err("--backend-worker-queue must be at least 1".into());
        }
        let allow = self
            .backend_allow
            .iter()
            .map(|cidr| {
                cidr.parse()
                    .map_err(|e| format!("--backend-allow `{cidr}`: {e}"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Some(Backend {
            binds,
            key_file: self.backend_key_file.clone(),
            admin_keys: self.backend_admin_key.clone(),
            curve: !self.backend_no_curve,
            allow,
            worker_loss,
            node_name,
            heartbeat: Duration::from_millis(self.backend_heartbeat_ms),
            liveness: 3,
            worker_queue: self.backend_worker_queue,
            pipe_hwm: crate::config::DEFAULT_PIPE_HWM,
            max_workers: crate::node::workers::MAX_WORKERS,
            max_channels_per_conn: crate::node::channels::MAX_CHANNELS_PER_CONN,
            messages_per_turn: crate::config::DEFAULT_MESSAGES_PER_TURN,
            reactors: crate::backend::message::Reactors::ALONE,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usage(args: &[&str]) -> String {
        match parse("averyws", args) {
            Err(Exit::Usage(line)) => line,
            other => panic!("expected a usage error for {args:?}, got {other:?}"),
        }
    }

    #[test]
    fn no_arguments_serve_echo_with_a_development_certificate() {
        let config = parse("averyws", &[]).expect("defaults are valid").config;
        assert_eq!(config.listen, "127.0.0.1:8443".parse().unwrap());
        assert_eq!(config.tls, TlsSource::Development { out: None });
        assert_eq!(
            config.route("/echo").map(|r| r.service.clone()),
            Some(Service::Echo)
        );
        assert_eq!(config.limits, Limits::default());
    }

    #[test]
    fn routes_replace_the_default() {
        let config = parse("averyws", &["--route", "/a=echo", "--route", "/b=echo"])
            .unwrap()
            .config;
        assert!(config.route("/echo").is_none());
        assert!(config.route("/a").is_some() && config.route("/b").is_some());
    }

    #[test]
    fn bad_values_are_one_line_errors() {
        let table: &[(&[&str], &str)] = &[
            (&["--route", "echo"], "PATH=SERVICE"),
            (&["--route", "/x=no pe"], "is not 1-64 characters"),
            (&["--backend-bind", "tcp://0.0.0.0:7100"], "not loopback"),
            (
                &["--backend-bind", "udp://127.0.0.1:1"],
                "not tcp:// or ipc://",
            ),
            (
                &["--route", "/c=chat", "--worker-loss", "maybe"],
                "reassign or close",
            ),
            (
                &["--route", "/c=chat", "--backend-allow", "10.0.0.1/8"],
                "--backend-allow",
            ),
            (&["--auth-route", "/echo"], "needs --auth-service"),
            (&["--threads", "0"], "--threads must be 1 to 256"),
            (
                &["--threads", "2", "--backend-bind", "tcp://127.0.0.1:65535"],
                "needs a fixed port with room for 1 more reactor(s)",
            ),
            (
                &["--auth-service", "auth", "--auth-route", "/nope"],
                "not a --route path",
            ),
            (&["--route", "x=echo"], "must start with /"),
            (&["--route", "/a=echo", "--route", "/a=echo"], "twice"),
            (&["--cert", "c.pem"], "go together"),
            (&["--max-message-size", "0"], "greater than 0"),
            (&["--max-header-bytes", "100"], "at least 512"),
            (&["--listen", "nowhere"], "listen"),
            (&["--bogus"], "bogus"),
            (&["--log-level", "loud"], "log"),
            (&["--log-format", "xml"], "not text or json"),
            (&["--access-log", ""], "a path or -"),
            (&["--token-query-param", "a&b"], "--token-query-param"),
            (&["--jwt-leeway-s", "-1"], "jwt-leeway-s"),
            (&["--backend-admin-key", "k1"], "needs --backend-key-file"),
            (
                &["--route", "/c=chat", "--backend-no-curve"],
                "--backend-no-curve needs --backend-key-file",
            ),
        ];
        for (args, needle) in table {
            let line = usage(args);
            assert!(!line.contains('\n'));
            assert!(line.contains(needle), "{args:?}: `{line}` lacks `{needle}`");
        }
    }

    #[test]
    fn help_is_information_not_an_error() {
        match parse("averyws", &["--help"]) {
            Err(Exit::Info(text)) => assert!(text.contains("--max-message-size")),
            other => panic!("{other:?}"),
        }
        match parse("averyws", &["--version"]) {
            Err(Exit::Info(text)) => assert_eq!(text, version()),
            other => panic!("{other:?}"),
        }
        assert_eq!(version(), format!("averyws {}", env!("CARGO_PKG_VERSION")));
    }

    #[test]
    fn log_settings_default_to_text_in_the_main_log() {
        let launch = parse("averyws", &[]).expect("defaults are valid");
        assert_eq!(launch.logging.format, Format::Text);
        assert_eq!(launch.logging.access, AccessLog::Main);
        let launch = parse("averyws", &["--log-format", "json", "--access-log", "-"]).unwrap();
        assert_eq!(launch.logging.format, Format::Json);
        assert_eq!(launch.logging.access, AccessLog::Stdout);
    }
}
