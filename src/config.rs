//! Validated server configuration: every limit and timeout in one place,
//! with its default and the reason for it.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::backend::message::Reactors;
use crate::pace::Pace;
use crate::ws::Limits;

/// Everything the reactor needs to run; built from the command line (the
/// `cli` module, a layer above), so every value here has already been
/// checked.
#[derive(Debug, Clone)]
pub struct Config {
    /// Address of the TLS listener. Default `127.0.0.1:8443`.
    pub listen: SocketAddr,
    /// Reactors, each on its own thread. Default: the number of CPUs.
    pub threads: usize,
    /// Where the certificate and key come from.
    pub tls: TlsSource,
    /// Path → service table. Never empty: `/echo` when none is configured.
    pub routes: Vec<Route>,
    /// Frame and message size caps.
    pub limits: Limits,
    /// Cap on the HTTP upgrade request head. Default 8 KiB, as most
    /// servers: larger heads get 431.
    pub max_header_bytes: usize,
    /// Subprotocols the server speaks; the client's order decides.
    pub subprotocols: Vec<String>,
    /// Allowed `Origin` values; empty allows any origin.
    pub allowed_origins: Vec<String>,
    /// Connection timers.
    pub timeouts: Timeouts,
    /// Slow-client eviction and connection limits.
    pub protection: Protection,
    /// The backend link, if any route targets workers.
    pub backend: Option<Backend>,
    /// Where tokens and the ACL come from.
    pub auth: Auth,
    /// permessage-deflate (RFC 7692).
    pub deflate: Deflate,
}

/// permessage-deflate: what the server accepts and when it compresses.
/// No compression context outlives a message, in either direction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deflate {
    /// Accept a client's offer. Default on.
    pub enabled: bool,
    /// The window sizes accepted. Default 15 and 15 (32 KiB each).
    pub policy: crate::ws::deflate::Policy,
    /// Messages shorter than this go out uncompressed. Default
    /// [`DEFAULT_DEFLATE_MIN_BYTES`].
    pub min_bytes: usize,
    /// A compressed message may inflate to this many times its size, and
    /// to 64 KiB whatever its size, never past the message size cap.
    /// Default [`DEFAULT_DEFLATE_MAX_RATIO`].
    pub max_ratio: usize,
    /// Route paths whose sessions never compress.
    pub uncompressed_routes: Vec<String>,
}

/// Below this, deflate's block overhead outweighs what it saves.
pub const DEFAULT_DEFLATE_MIN_BYTES: usize = 128;
/// Chat-like text compresses 3 to 10 times; 256 leaves room for
/// repetitive JSON and stops a bomb's CPU cost early.
pub const DEFAULT_DEFLATE_MAX_RATIO: usize = 256;

impl Default for Deflate {
    fn default() -> Self {
        Self {
            enabled: true,
            policy: crate::ws::deflate::Policy {
                server_max_window_bits: 15,
                client_max_window_bits: 15,
            },
            min_bytes: DEFAULT_DEFLATE_MIN_BYTES,
            max_ratio: DEFAULT_DEFLATE_MAX_RATIO,
            uncompressed_routes: Vec::new(),
        }
    }
}

impl Deflate {
    /// The policy for a session on `path`, if it may compress at all.
    pub fn policy_for(&self, path: &str) -> Option<&crate::ws::deflate::Policy> {
        let compresses = self.enabled && !self.uncompressed_routes.iter().any(|r| r == path);
        compresses.then_some(&self.policy)
    }
}

/// The source of the server certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TlsSource {
    /// PEM files, re-read on SIGHUP.
    Files {
        /// Full certificate chain, leaf first.
        cert: PathBuf,
        /// PKCS#8, PKCS#1 or SEC1 private key.
        key: PathBuf,
    },
    /// A self-signed development certificate generated at start, written
    /// as PEM to `out` when given so a client can trust it.
    Development {
        /// Where to write the certificate, if anywhere.
        out: Option<PathBuf>,
    },
}

/// One mounted path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// Exact request path, starting with `/`.
    pub path: String,
    /// What serves it.
    pub service: Service,
}

/// A route target.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Service {
    /// The built-in echo service: every message comes back unchanged.
    Echo,
    /// A service of backend workers, by the name they announce in READY.
    Worker(String),
}

impl Service {
    /// The service's name, the resource of the ACL's `send`.
    pub fn name(&self) -> &str {
        match self {
            Service::Echo => "echo",
            Service::Worker(name) => name,
        }
    }
}

/// Authentication and access control (docs/acl.md). The files are read
/// when the reactor starts; the ACL file again on SIGHUP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Auth {
    /// `KID:SECRET` lines verifying client tokens. None: no token can be
    /// verified, so a client that presents one gets 401.
    pub jwt_secret_file: Option<PathBuf>,
    /// Clock-skew allowance for a token's `exp` and `nbf`, in seconds.
    /// Default 30.
    pub jwt_leeway_s: u64,
    /// A query parameter that may carry the token. Default none: tokens in
    /// URLs end up in logs, so it is opt-in.
    pub token_query_param: Option<String>,
    /// Where the ACL is kept. Default [`AclSource::Development`].
    pub acl: AclSource,
    /// The worker service that judges clients without a valid token
    /// (delegated authentication). None: no delegation.
    pub auth_service: Option<String>,
    /// How long an upgrade waits for the auth service's verdict before
    /// it is refused with 503. Default 2 s.
    pub auth_timeout: Duration,
    /// The routes (paths) whose clients are sent to the auth service;
    /// empty: every route.
    pub auth_routes: Vec<String>,
}

impl Auth {
    /// The auth service that judges a client without a token on `path`,
    /// if that route delegates.
    pub fn delegate_for(&self, path: &str) -> Option<&str> {
        let delegates = self.auth_routes.is_empty() || self.auth_routes.iter().any(|r| r == path);
        self.auth_service.as_deref().filter(|_| delegates)
    }
}

impl Default for Auth {
    fn default() -> Self {
        Self {
            jwt_secret_file: None,
            jwt_leeway_s: crate::auth::token::DEFAULT_LEEWAY_S,
            token_query_param: None,
            acl: AclSource::Development,
            auth_service: None,
            auth_timeout: Duration::from_millis(2000),
            auth_routes: Vec::new(),
        }
    }
}

/// Where the ACL is kept (docs/acl.md, "Where the ACL is kept").
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AclSource {
    /// No `--acl`: the development ACL (`access::development_acl`), in
    /// which guests may use every route; changes are refused.
    Development,
    /// An ACL file, read at start and on SIGHUP; an admin worker's change
    /// is written back to it.
    File(PathBuf),
    /// A PostgreSQL database that every node follows live.
    Postgres(PgStore),
}

/// The PostgreSQL ACL store (`--acl postgres://...`).
#[derive(Clone, PartialEq, Eq)]
pub struct PgStore {
    /// The connection URL as given. It may hold a password, so it is never
    /// logged: [`PgStore::describe`] is what logs and errors show.
    pub url: String,
    /// The password from `--acl-password-file` or `PGPASSWORD`, used when
    /// the URL has none.
    pub password: Option<String>,
    /// The CA certificates (PEM) that verify the database's certificate:
    /// with them the connection is TLS, required (unless the URL says
    /// `sslmode=disable`, which is refused). None: no TLS, and a URL that
    /// asks for `sslmode=require` is refused.
    pub ca_file: Option<PathBuf>,
    /// The schema of the store's tables. Default `averyws`; a lowercase
    /// SQL identifier, so it is safe to write into statements.
    pub schema: String,
    /// Where each snapshot loaded is also written (as an ACL file), and
    /// what a node starts from when the database is down at start. None:
    /// a database down at start is an error.
    pub cache_file: Option<PathBuf>,
    /// The cap on rows in the store: a larger snapshot is refused and the
    /// ACL in force kept. Default [`DEFAULT_MAX_ACL_ROWS`].
    pub max_rows: usize,
    /// How long a connection attempt may take. Default 3 s.
    pub connect_timeout: Duration,
    /// How long one statement may run (or wait for a lock) before the
    /// database cancels it: a change blocked by someone's lock fails
    /// instead of waiting forever. Default 5 s.
    pub statement_timeout: Duration,
    /// Admin workers' changes waiting for the one thread that stores
    /// them; one more is answered *not persisted* at once. Default 64.
    pub admin_queue: usize,
    /// The first wait before reconnecting to a lost database; doubled on
    /// each failure up to `reconnect_max`. Default 250 ms.
    pub reconnect_min: Duration,
    /// The longest wait between reconnection attempts. Default 5 s.
    pub reconnect_max: Duration,
    /// How often the version counter is read when no notification came:
    /// the safety net for a notification lost in transit. Default 5 s.
    pub check_interval: Duration,
}

/// The default cap on an ACL store's rows: one million grants, parents
/// and user roles together, tens of MiB in memory.
pub const DEFAULT_MAX_ACL_ROWS: usize = 1_000_000;

/// The default schema of the PostgreSQL ACL store.
pub const DEFAULT_ACL_SCHEMA: &str = "averyws";

impl PgStore {
    /// A store at `url` with every other setting at its default.
    pub fn new(url: &str) -> Self {
        PgStore {
            url: url.to_owned(),
            password: None,
            ca_file: None,
            schema: DEFAULT_ACL_SCHEMA.to_owned(),
            cache_file: None,
            max_rows: DEFAULT_MAX_ACL_ROWS,
            connect_timeout: Duration::from_secs(3),
            statement_timeout: Duration::from_secs(5),
            admin_queue: 64,
            reconnect_min: Duration::from_millis(250),
            reconnect_max: Duration::from_secs(5),
            check_interval: Duration::from_secs(5),
        }
    }

    /// Whether `text` names a PostgreSQL store rather than a file.
    pub fn is_url(text: &str) -> bool {
        ["postgres://", "postgresql://"]
            .iter()
            .any(|scheme| text.starts_with(scheme))
    }

    /// The client configuration: the URL, with the password given apart
    /// when the URL has none, TLS required with a CA file, and the
    /// connect and statement timeouts.
    pub fn client_config(&self) -> Result<postgres::Config, String> {
        let mut config: postgres::Config = self
            .url
            .parse()
            .map_err(|e| format!("--acl: not a PostgreSQL URL: {e}"))?;
        if config.get_password().is_none() {
            if let Some(password) = &self.password {
                config.password(password);
            }
        }
        if self.ca_file.is_some() {
            config.ssl_mode(postgres::config::SslMode::Require);
        }
        let options = format!(
            "{} -c statement_timeout={}",
            config.get_options().unwrap_or_default(),
            self.statement_timeout.as_millis()
        );
        config.options(options.trim_start());
        config
            .connect_timeout(self.connect_timeout)
            .tcp_user_timeout(self.connect_timeout.max(Duration::from_secs(10)))
            .application_name("averyws");
        Ok(config)
    }

    /// The store as logs and errors name it: user, hosts, database and
    /// schema, never the password.
    pub fn describe(&self) -> String {
        let Ok(config) = self.url.parse::<postgres::Config>() else {
            return "postgres://(unparseable URL)".to_owned();
        };
        let hosts: Vec<String> = config
            .get_hosts()
            .iter()
            .enumerate()
            .map(|(index, host)| {
                let name = match host {
                    postgres::config::Host::Tcp(name) => name.clone(),
                    postgres::config::Host::Unix(path) => path.display().to_string(),
                };
                match config.get_ports().get(index).or(config.get_ports().first()) {
                    Some(port) => format!("{name}:{port}"),
                    None => name,
                }
            })
            .collect();
        format!(
            "postgres://{}@{}/{} (schema {})",
            config.get_user().unwrap_or_default(),
            hosts.join(","),
            config.get_dbname().unwrap_or_default(),
            self.schema
        )
    }
}

impl std::fmt::Debug for PgStore {
    /// [`PgStore::describe`]: the URL and password stay out of debug
    /// output too.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.describe())
    }
}

/// The backend link, present when a route targets workers or an endpoint
/// is bound.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backend {
    /// Endpoints the ROUTER binds. Default `tcp://127.0.0.1:7100`.
    pub binds: Vec<String>,
    /// `KEYID:SECRET` lines that sign every message; none = unsigned.
    pub key_file: Option<PathBuf>,
    /// Key ids whose signed messages may administer the ACL.
    pub admin_keys: Vec<String>,
    /// With a key file, the link's handshake is CURVE with keys derived
    /// from it (docs/protocol.md section 1), so a peer without a key
    /// never sends a frame. Default true; false (`--backend-no-curve`)
    /// keeps NULL for workers that cannot do CURVE yet. Unused unsigned.
    pub curve: bool,
    /// Peer networks allowed to connect to `tcp://` endpoints; none =
    /// loopback only (`Allowlist::from_config`).
    pub allow: Vec<crate::backend::cidr::Cidr>,
    /// What happens to a dead worker's connections.
    pub worker_loss: WorkerLoss,
    /// The node's name in WELCOME and CONNECT.
    pub node_name: String,
    /// Heartbeat interval, both ways. Default 1 s.
    pub heartbeat: Duration,
    /// Heartbeat intervals of silence after which a worker is dead.
    /// Default 3.
    pub liveness: u8,
    /// Most messages waiting in the node for one worker whose pipe is
    /// full. Beyond it an ERROR reply or HEARTBEAT to that worker is
    /// dropped and counted, and any other message declares the worker
    /// dead (it does not read). Default [`DEFAULT_WORKER_QUEUE`].
    pub worker_queue: usize,
    /// High-water mark of each worker's pipe, both ways, in messages: the
    /// window of docs/protocol.md section 7. Default [`DEFAULT_PIPE_HWM`].
    pub pipe_hwm: i32,
    /// Most workers registered at once, and most READYs waiting for
    /// their confirmation. Default 4096 (`node::workers::MAX_WORKERS`).
    pub max_workers: usize,
    /// Most channel subscriptions of one connection. Default 256
    /// (`node::channels::MAX_CHANNELS_PER_CONN`).
    pub max_channels_per_conn: usize,
    /// Worker messages a reactor handles per loop turn, so a flood from
    /// workers cannot starve the clients; the rest wait for the next turn.
    /// Default [`DEFAULT_MESSAGES_PER_TURN`].
    pub messages_per_turn: usize,
    /// This node's place among the reactors of the process, told to
    /// version 3 workers in WELCOME: set by [`Config::for_reactor`],
    /// [`Reactors::ALONE`] until then.
    pub reactors: Reactors,
}

/// Default [`Backend::worker_queue`]: far above the CONNECTs and
/// DISCONNECTs a burst of clients queues for a briefly slow worker.
pub const DEFAULT_WORKER_QUEUE: usize = 4096;

/// Default [`Backend::messages_per_turn`].
pub const DEFAULT_MESSAGES_PER_TURN: usize = 1024;

/// Default [`Backend::pipe_hwm`]: libzmq's own default, set on purpose.
pub const DEFAULT_PIPE_HWM: i32 = 1000;

/// What happens to the connections of a worker that died.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WorkerLoss {
    /// Another worker gets a fresh CONNECT; none left: close 1013.
    Reassign,
    /// Close with 1012 (service restart).
    Close,
}

/// Connection deadlines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// Accept to completed upgrade, whatever the pace. Default 10 s.
    pub handshake: Duration,
    /// Ping a connection after this long without inbound traffic.
    /// Default 30 s: under the 60 s idle cut-off of most proxies.
    pub ping_interval: Duration,
    /// Close a connection after this long without inbound traffic.
    /// Default 75 s: two missed pings and some slack.
    pub idle: Duration,
    /// How long to wait for the peer's Close after ours, and for the peer
    /// to hang up after the final flush. Default 5 s.
    pub close: Duration,
    /// On SIGTERM/SIGINT, how long to wait for closing handshakes before
    /// exiting. Default 10 s.
    pub drain: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            handshake: Duration::from_secs(10),
            ping_interval: Duration::from_secs(30),
            idle: Duration::from_secs(75),
            close: Duration::from_secs(5),
            drain: Duration::from_secs(10),
        }
    }
}

/// What protects the server and its honest clients from slow, greedy or
/// hostile ones. See `docs/operations.md` for the reasoning behind each
/// default.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Protection {
    /// First-byte time and minimum rate for every unit of input and for
    /// draining output.
    pub pace: Pace,
    /// A client with more than this much output queued when more is due
    /// is a slow consumer. Default 1 MiB.
    pub max_outbound_bytes: usize,
    /// Connections at once, all clients together. Default 100,000.
    pub max_connections: usize,
    /// Connections at once from one IP address; 0 = no limit. Default 1024.
    pub max_connections_per_ip: usize,
    /// Connections still in the TLS handshake or upgrade at once.
    /// Default 10,000.
    pub max_pending_handshakes: usize,
    /// TLS handshake steps a reactor runs per loop turn; the rest wait for
    /// the next turn. Default 32: about 5 ms of handshake crypto, so a
    /// connect storm adds at most that much to every turn.
    pub handshakes_per_turn: usize,
    /// Data messages a client may send per second, sustained; 0 = no
    /// limit (the default).
    pub max_messages_per_s: u32,
    /// Messages a client may send in a burst above the sustained rate.
    /// Default: one second's worth.
    pub message_burst: u32,
    /// Encrypted records a connection keeps waiting for its socket; past
    /// this, output waits as plaintext and reading pauses (TCP
    /// backpressure). Default [`DEFAULT_TLS_BACKLOG_BYTES`] (256 KiB).
    pub tls_backlog_bytes: usize,
    /// Received TLS bytes a connection keeps between reads: the start of a
    /// record, or of a handshake message rustls joins across records (it
    /// allows 64 KiB). More is a TLS error. Default
    /// [`DEFAULT_MAX_PARTIAL_TLS_BYTES`]
    /// (82 KiB: that handshake message and one full record).
    pub max_partial_tls_bytes: usize,
    /// Connections accepted per listener event, so a connect flood cannot
    /// starve established connections. Default 256.
    pub accepts_per_event: usize,
    /// Read/flush rounds one connection gets per readiness event, so one
    /// busy connection cannot stall the reactor. Default 16.
    pub rounds_per_event: usize,
    /// Output staged for one event above this capacity is released after
    /// it, so one large burst does not pin its memory. Default 1 MiB.
    pub out_buffer_keep: usize,
}

/// Default [`Protection::tls_backlog_bytes`]: what rustls' buffered API
/// held before refusing more plaintext.
pub const DEFAULT_TLS_BACKLOG_BYTES: usize = 256 << 10;

/// Default [`Protection::accepts_per_event`].
pub const DEFAULT_ACCEPTS_PER_EVENT: usize = 256;

/// Default [`Protection::rounds_per_event`].
pub const DEFAULT_ROUNDS_PER_EVENT: usize = 16;

/// Default [`Protection::out_buffer_keep`].
pub const DEFAULT_OUT_BUFFER_KEEP: usize = 1 << 20;

/// Default [`Protection::max_partial_tls_bytes`].
pub const DEFAULT_MAX_PARTIAL_TLS_BYTES: usize = (64 << 10) + (18 << 10);

impl Default for Protection {
    fn default() -> Self {
        Self {
            pace: Pace::default(),
            max_outbound_bytes: 1 << 20,
            max_connections: 100_000,
            max_connections_per_ip: 1024,
            max_pending_handshakes: 10_000,
            handshakes_per_turn: 32,
            max_messages_per_s: 0,
            message_burst: 0,
            tls_backlog_bytes: DEFAULT_TLS_BACKLOG_BYTES,
            max_partial_tls_bytes: DEFAULT_MAX_PARTIAL_TLS_BYTES,
            accepts_per_event: DEFAULT_ACCEPTS_PER_EVENT,
            rounds_per_event: DEFAULT_ROUNDS_PER_EVENT,
            out_buffer_keep: DEFAULT_OUT_BUFFER_KEEP,
        }
    }
}

impl Config {
    /// The route mounted at `path`, if any.
    pub fn route(&self, path: &str) -> Option<&Route> {
        self.routes.iter().find(|route| route.path == path)
    }

    /// The configuration of reactor `index`: its backend node binds every
    /// endpoint as [`reactor_endpoint`] says and is named `NAME.index`;
    /// reactor 0 keeps both as given (docs/protocol.md section 2).
    pub fn for_reactor(&self, index: usize) -> Result<Config, String> {
        let mut config = self.clone();
        let place = |n: usize| u16::try_from(n).map_err(|_| format!("{n} reactors are too many"));
        if let Some(backend) = config.backend.as_mut() {
            backend.reactors = Reactors {
                index: place(index)?,
                count: place(self.threads.max(index + 1))?,
            };
        }
        if let Some(backend) = config.backend.as_mut().filter(|_| index > 0) {
            backend.binds = backend
                .binds
                .iter()
                .map(|endpoint| reactor_endpoint(endpoint, index))
                .collect::<Result<_, _>>()?;
            backend.node_name = format!("{}.{index}", backend.node_name);
        }
        Ok(config)
    }
}

/// The endpoint reactor `index` binds for a `--backend-bind` endpoint:
/// `tcp://HOST:PORT` becomes `tcp://HOST:PORT+index`, `ipc://PATH` becomes
/// `ipc://PATH.index`; reactor 0 binds it as given. A TCP endpoint needs a
/// fixed port (not 0 or `*`) for the others to be found.
pub fn reactor_endpoint(endpoint: &str, index: usize) -> Result<String, String> {
    crate::backend::siblings::sibling(endpoint, 0, index).ok_or_else(|| {
        format!(
            "backend endpoint `{endpoint}` needs a fixed port with room for {index} more reactor(s) \
             (reactor N binds port+N)"
        )
    })
}
