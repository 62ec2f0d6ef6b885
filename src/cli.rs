//! Command line → [`Config`]. Bad flags or values give a one-line error and
//! exit status 2; `--help` documents every flag.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use argh::FromArgs;

use crate::config::{Config, Protection, Route, Service, Timeouts, TlsSource};
use crate::pace::Pace;
use crate::ws::Limits;

/// averyws: a TLS-only WebSocket gateway. With no arguments it serves
/// wss://127.0.0.1:8443/echo with a generated development certificate.
#[derive(FromArgs, Debug)]
pub struct Args {
    /// address to listen on (default 127.0.0.1:8443)
    #[argh(option, default = "SocketAddr::from(([127, 0, 0, 1], 8443))")]
    pub listen: SocketAddr,

    /// PEM certificate chain, leaf first (needs --key)
    #[argh(option)]
    pub cert: Option<PathBuf>,

    /// PEM private key: PKCS#8, PKCS#1 or SEC1 (needs --cert)
    #[argh(option)]
    pub key: Option<PathBuf>,

    /// write the generated development certificate (PEM) to this file
    #[argh(option)]
    pub dev_cert_out: Option<PathBuf>,

    /// mount a service at a path, as PATH=SERVICE (repeatable); the
    /// built-in service is `echo`; default /echo=echo
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

    /// milliseconds a client gets to send the first byte of a TLS flight or
    /// the upgrade request (default 25; the measured round trip is added)
    #[argh(option, default = "25")]
    pub first_byte_timeout_ms: u64,

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

    /// log level: off, error, warn, info, debug or trace (default info)
    #[argh(option, default = "log::LevelFilter::Info")]
    pub log_level: log::LevelFilter,
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
            other => return Err(format!("unknown service `{other}` (built-in: echo)")),
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

/// Parses `args` (without the program name) into a validated [`Config`].
pub fn parse(program: &str, args: &[&str]) -> Result<Config, Exit> {
    let parsed = Args::from_args(&[program], args).map_err(|early| match early.status {
        Ok(()) => Exit::Info(early.output),
        Err(()) => Exit::Usage(first_line(&early.output)),
    })?;
    parsed.into_config().map_err(Exit::Usage)
}

fn first_line(text: &str) -> String {
    text.lines().next().unwrap_or_default().trim().to_owned()
}

impl Args {
    /// Checks the combination of flags and builds the [`Config`].
    pub fn into_config(self) -> Result<Config, String> {
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
        let mut routes: Vec<Route> = self.route.into_iter().map(|r| r.0).collect();
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
        for (name, value) in [
            ("--max-message-size", self.max_message_size),
            ("--max-frame-size", self.max_frame_size),
            ("--max-header-bytes", self.max_header_bytes as u64),
            ("--ping-interval-s", self.ping_interval_s),
            ("--idle-timeout-s", self.idle_timeout_s),
            ("--handshake-timeout-ms", self.handshake_timeout_ms),
            ("--first-byte-timeout-ms", self.first_byte_timeout_ms),
            ("--min-rate", self.min_rate),
            ("--max-outbound-bytes", self.max_outbound_bytes as u64),
            ("--max-connections", self.max_connections as u64),
            (
                "--max-pending-handshakes",
                self.max_pending_handshakes as u64,
            ),
        ] {
            if value == 0 {
                return Err(format!("{name} must be greater than 0"));
            }
        }
        if self.max_header_bytes < 512 {
            return Err("--max-header-bytes must be at least 512".into());
        }
        Ok(Config {
            listen: self.listen,
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
                    min_rate: self.min_rate,
                },
                max_outbound_bytes: self.max_outbound_bytes,
                max_connections: self.max_connections,
                max_connections_per_ip: self.max_connections_per_ip,
                max_pending_handshakes: self.max_pending_handshakes,
                max_messages_per_s: self.max_messages_per_s,
                message_burst: self.message_burst.unwrap_or(self.max_messages_per_s),
            },
            log_level: self.log_level,
        })
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
        let config = parse("averyws", &[]).expect("defaults are valid");
        assert_eq!(config.listen, "127.0.0.1:8443".parse().unwrap());
        assert_eq!(config.tls, TlsSource::Development { out: None });
        assert_eq!(
            config.route("/echo").map(|r| r.service),
            Some(Service::Echo)
        );
        assert_eq!(config.limits, Limits::default());
    }

    #[test]
    fn routes_replace_the_default() {
        let config = parse("averyws", &["--route", "/a=echo", "--route", "/b=echo"]).unwrap();
        assert!(config.route("/echo").is_none());
        assert!(config.route("/a").is_some() && config.route("/b").is_some());
    }

    #[test]
    fn bad_values_are_one_line_errors() {
        let table: &[(&[&str], &str)] = &[
            (&["--route", "echo"], "PATH=SERVICE"),
            (&["--route", "/x=nope"], "unknown service"),
            (&["--route", "x=echo"], "must start with /"),
            (&["--route", "/a=echo", "--route", "/a=echo"], "twice"),
            (&["--cert", "c.pem"], "go together"),
            (&["--max-message-size", "0"], "greater than 0"),
            (&["--max-header-bytes", "100"], "at least 512"),
            (&["--listen", "nowhere"], "listen"),
            (&["--bogus"], "bogus"),
            (&["--log-level", "loud"], "log"),
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
    }
}
