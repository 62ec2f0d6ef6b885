//! Validated server configuration: every limit and timeout in one place,
//! with its default and the reason for it.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::ws::Limits;

/// Everything the reactor needs to run; built from the command line by
/// [`crate::cli`], so every value here has already been checked.
#[derive(Debug, Clone)]
pub struct Config {
    /// Address of the TLS listener. Default `127.0.0.1:8443`.
    pub listen: SocketAddr,
    /// Where the certificate and key come from.
    pub tls: TlsSource,
    /// Path → service table. Never empty: `/echo` when none is configured.
    pub routes: Vec<Route>,
    /// Frame and message size caps.
    pub limits: Limits,
    /// Cap on the HTTP upgrade request head. Default 8 KiB, as most
    /// servers: larger heads get 431.
    pub max_header_bytes: usize,
    /// Subprotocols the server speaks, in preference order.
    pub subprotocols: Vec<String>,
    /// Allowed `Origin` values; empty allows any origin.
    pub allowed_origins: Vec<String>,
    /// Connection timers.
    pub timeouts: Timeouts,
    /// Log level for the `log` facade.
    pub log_level: log::LevelFilter,
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
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    /// The built-in echo service: every message comes back unchanged.
    Echo,
}

/// Connection deadlines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// Accept to completed upgrade. Default 10 s.
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

impl Config {
    /// The route mounted at `path`, if any.
    pub fn route(&self, path: &str) -> Option<&Route> {
        self.routes.iter().find(|route| route.path == path)
    }
}
