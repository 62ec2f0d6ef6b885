//! How connections end and what is recorded about them: the reasons the
//! server evicts or refuses a client, who closed a session, and the
//! access-log record. A leaf: every layer (connections, the reactor,
//! metrics, logging) may import it, and it imports none of them.

use std::net::SocketAddr;
use std::time::Duration;

/// Why the server ended a connection to protect itself or other clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Eviction {
    /// No first byte of a TLS flight or of the upgrade request in time.
    FirstByte,
    /// A TLS handshake flight arrived below the minimum rate.
    SlowHandshake,
    /// The upgrade request arrived below the minimum rate.
    SlowUpgrade,
    /// A WebSocket frame arrived below the minimum rate.
    SlowFrame,
    /// No completed upgrade within the handshake timeout.
    HandshakeTimeout,
    /// Output queued beyond the cap, or not draining at the minimum rate.
    SlowConsumer,
    /// More messages than the per-connection rate limit.
    RateLimited,
    /// No inbound traffic within the idle timeout.
    Idle,
}

impl Eviction {
    /// Every reason, for counters indexed by [`Eviction::index`].
    pub const ALL: [Eviction; 8] = [
        Eviction::FirstByte,
        Eviction::SlowHandshake,
        Eviction::SlowUpgrade,
        Eviction::SlowFrame,
        Eviction::HandshakeTimeout,
        Eviction::SlowConsumer,
        Eviction::RateLimited,
        Eviction::Idle,
    ];

    /// Position in [`Eviction::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }

    /// Name for logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Eviction::FirstByte => "first_byte_timeout",
            Eviction::SlowHandshake => "slow_tls_handshake",
            Eviction::SlowUpgrade => "slow_upgrade_request",
            Eviction::SlowFrame => "slow_frame",
            Eviction::HandshakeTimeout => "handshake_timeout",
            Eviction::SlowConsumer => "slow_consumer",
            Eviction::RateLimited => "message_rate",
            Eviction::Idle => "idle_timeout",
        }
    }
}

/// Why a connection was refused at accept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// `--max-connections` reached.
    MaxConnections,
    /// `--max-connections-per-ip` reached for the client's address.
    MaxConnectionsPerIp,
    /// `--max-pending-handshakes` reached.
    MaxPendingHandshakes,
}

impl Refusal {
    /// Every reason, for counters indexed by `reason as usize`.
    pub const ALL: [Refusal; 3] = [
        Refusal::MaxConnections,
        Refusal::MaxConnectionsPerIp,
        Refusal::MaxPendingHandshakes,
    ];

    /// Name for logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::MaxConnections => "max_connections",
            Refusal::MaxConnectionsPerIp => "max_connections_per_ip",
            Refusal::MaxPendingHandshakes => "max_pending_handshakes",
        }
    }
}

/// Who ended the WebSocket session, for the access log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Closer {
    /// The client sent Close or hung up.
    Client,
    /// The server sent Close, refused the upgrade or timed out.
    Server,
    /// A backend worker's CLOSE.
    Worker,
}

/// Counters for the access log.
#[derive(Debug, Default, Clone, Copy)]
pub struct Stats {
    /// TLS bytes received.
    pub bytes_in: u64,
    /// TLS bytes sent.
    pub bytes_out: u64,
    /// Data messages received.
    pub messages_in: u64,
    /// Data messages sent.
    pub messages_out: u64,
}

/// What the access log says about a connection that has ended.
#[derive(Debug, Clone, Copy)]
pub struct AccessRecord<'a> {
    /// The client's address.
    pub peer: SocketAddr,
    /// The upgrade's path, if the request got that far.
    pub path: Option<&'a str>,
    /// The authenticated user, if a token was verified.
    pub user: Option<&'a str>,
    /// The negotiated subprotocol.
    pub subprotocol: Option<&'a str>,
    /// From accept to the end.
    pub duration: Duration,
    /// Traffic counters.
    pub stats: Stats,
    /// The close code and who sent it; `None` when the connection ended
    /// without a Close (logged as 1006 by the client).
    pub close: Option<(u16, Closer)>,
    /// Why the server evicted the client, if it did.
    pub eviction: Option<Eviction>,
}
