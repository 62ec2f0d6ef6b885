//! How a worker is set up: [`Config`], its defaults and their checks.

use std::time::Duration;

use averyws_protocol::codec::{encode_in, Frames};
use averyws_protocol::message::{
    is_reserved_service, is_service_name, List, Message, Ready, MAX_SERVICES, VERSION,
};
use averyws_protocol::signing::{KeyRing, ReplayPolicy};

use crate::WorkerError;

/// The node endpoint used when none is given.
pub const DEFAULT_ENDPOINT: &str = "tcp://127.0.0.1:7100";

/// Heartbeat interval used until a node's WELCOME says otherwise.
pub const DEFAULT_HEARTBEAT: Duration = Duration::from_millis(1000);

/// Liveness used until a node's WELCOME says otherwise.
pub const DEFAULT_LIVENESS: u8 = 3;

/// First wait before reconnecting to a dead node (section 6).
pub const RECONNECT_INITIAL: Duration = Duration::from_secs(1);

/// Longest wait before reconnecting to a dead node (section 6).
pub const RECONNECT_MAX: Duration = Duration::from_secs(32);

/// Default largest frame accepted from a node (`ZMQ_MAXMSGSIZE`): four
/// times the node's default largest message. A node that sends a larger
/// frame is disconnected by ZeroMQ, which reconnects.
pub const DEFAULT_MAX_FRAME: u64 = 64 << 20;

/// Default [`Config::max_nodes`]: a server runs at most 256 reactors.
pub const DEFAULT_MAX_NODES: usize = 256;

/// How a [`Worker`] is set up. [`Config::new`] fills in the defaults.
#[derive(Debug, Clone)]
pub struct Config {
    /// One endpoint per node (`tcp://host:port` or `ipc://path`); the
    /// worker connects one DEALER to each, and to each sibling reactor a
    /// version 3 node names, so one endpoint per averyws process is
    /// enough. A node's [`NodeId`] is its index here.
    pub endpoints: Vec<String>,
    /// The services announced in READY: 1-32 names of
    /// `A-Z a-z 0-9 . _ -`, none reserved (`echo`).
    pub services: Vec<String>,
    /// The worker's name in READY, for the node's logs: 1-64 bytes.
    pub name: String,
    /// Keys to sign and verify every message with, when the nodes have a
    /// key file; `None` for an unsigned link.
    pub keys: Option<KeyRing>,
    /// With keys, connect with CURVE as the signing key's client keypair
    /// (docs/protocol.md section 1). Default true; false only for nodes
    /// run with `--backend-no-curve`.
    pub curve: bool,
    /// Skew bound and replay-table size of the verifier.
    pub replay: ReplayPolicy,
    /// Heartbeat interval until a WELCOME gives the node's.
    pub heartbeat: Duration,
    /// Liveness until a WELCOME gives the node's.
    pub liveness: u8,
    /// First wait before reconnecting to a dead node; doubles while the
    /// node stays silent.
    pub reconnect_initial: Duration,
    /// Longest wait before reconnecting.
    pub reconnect_max: Duration,
    /// How long a command may wait for room in a full pipe to a node
    /// before it fails with [`WorkerError::Full`] (section 7).
    pub send_timeout: Duration,
    /// Largest frame accepted from a node, in bytes (`ZMQ_MAXMSGSIZE`).
    pub max_frame: u64,
    /// Most nodes linked at once, the configured endpoints and the
    /// sibling reactors found since (section 14) together, so that a
    /// WELCOME claiming 65,535 reactors cannot open as many sockets.
    /// Default [`DEFAULT_MAX_NODES`].
    pub max_nodes: usize,
}

impl Config {
    /// A configuration with the defaults: the process's
    /// [`default_name`], no keys (CURVE once there are), heartbeat 1 s, liveness 3, reconnect
    /// after 1 s doubling to 32 s, send timeout 1 s.
    pub fn new(endpoints: Vec<String>, services: Vec<String>) -> Self {
        Config {
            endpoints,
            services,
            name: default_name("worker"),
            keys: None,
            curve: true,
            replay: ReplayPolicy::default(),
            heartbeat: DEFAULT_HEARTBEAT,
            liveness: DEFAULT_LIVENESS,
            reconnect_initial: RECONNECT_INITIAL,
            reconnect_max: RECONNECT_MAX,
            send_timeout: Duration::from_secs(1),
            max_frame: DEFAULT_MAX_FRAME,
            max_nodes: DEFAULT_MAX_NODES,
        }
    }
}

pub(crate) fn check_config(config: &Config) -> Result<(), WorkerError> {
    let fail = |why: String| Err(WorkerError::Config(why));
    if config.endpoints.is_empty() {
        return fail("no node endpoint".into());
    }
    for (index, endpoint) in config.endpoints.iter().enumerate() {
        if config.endpoints[..index].contains(endpoint) {
            return fail(format!("node {endpoint} listed twice"));
        }
    }
    if config.endpoints.len() > config.max_nodes {
        return fail(format!("more than {} node endpoints", config.max_nodes));
    }
    if !(1..=MAX_SERVICES).contains(&config.services.len()) {
        return fail(format!("1-{MAX_SERVICES} services needed"));
    }
    for service in &config.services {
        if !is_service_name(service.as_bytes()) {
            return fail(format!(
                "service {service:?}: 1-64 bytes of A-Z a-z 0-9 . _ -"
            ));
        }
        if is_reserved_service(service) {
            return fail(format!("service {service:?} is reserved"));
        }
    }
    // The READY must encode: this checks the name too.
    let services: Vec<&str> = config.services.iter().map(String::as_str).collect();
    let ready = Message::Ready(Ready {
        instance: 1,
        name: &config.name,
        services: List::from(&services[..]),
    });
    encode_in(VERSION, &ready, &mut Frames::new())
        .map_err(|why| WorkerError::Config(format!("worker name {:?}: {why}", config.name)))
}

/// A worker name for READY: `program@host/pid`, cut to 64 bytes.
pub fn default_name(program: &str) -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|host| host.trim().to_owned())
        .unwrap_or_default();
    let host = if host.is_empty() { "localhost" } else { &host };
    let mut name = format!("{program}@{host}/{}", std::process::id());
    let mut cut = name.len().min(64);
    while !name.is_char_boundary(cut) {
        cut -= 1;
    }
    name.truncate(cut);
    if name.is_empty() {
        name.push_str("worker");
    }
    name
}
