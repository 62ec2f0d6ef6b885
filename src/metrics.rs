//! What each reactor counts for `GET /metrics`.
//!
//! Every reactor owns one [`ReactorMetrics`] and is its only writer, so an
//! update is a plain load and store (no locked instruction on the data
//! path); a scrape, on whichever reactor it lands, reads every reactor's
//! values with relaxed loads and renders them ([`render`]) labelled by
//! reactor. A value read mid-update is at most one event old.

pub mod render;
pub mod scrape_request;

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use crate::outcome::{Eviction, Refusal, Stats};

/// A monotonic count written by one thread.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    /// Adds `n`. Only the owning reactor calls this.
    pub fn add(&self, n: u64) {
        self.0.store(self.0.load(Relaxed).wrapping_add(n), Relaxed);
    }

    /// Sets the count to `total`, a count kept elsewhere that only grows
    /// (the ACL's decisions, the backend's drops). Only the owning reactor
    /// calls this.
    pub fn mirror(&self, total: u64) {
        self.0.store(total, Relaxed);
    }

    /// The count so far.
    pub fn get(&self) -> u64 {
        self.0.load(Relaxed)
    }
}

/// A value that goes up and down, written by one thread.
#[derive(Debug, Default)]
pub struct Gauge(AtomicU64);

impl Gauge {
    /// Sets the value. Only the owning reactor calls this.
    pub fn set(&self, value: u64) {
        self.0.store(value, Relaxed);
    }

    /// The current value.
    pub fn get(&self) -> u64 {
        self.0.load(Relaxed)
    }
}

/// The PostgreSQL ACL store as its follower thread (the only writer)
/// reports it; process-wide, not per reactor.
#[derive(Debug, Default)]
pub struct StoreHealth {
    /// 1 while connected to the database, 0 while it is lost.
    pub up: Gauge,
    /// The store's version counter for the ACL in force.
    pub version: Gauge,
    /// Snapshots loaded and put in force.
    pub loads: Counter,
    /// Connections lost or refused.
    pub failures: Counter,
    /// Snapshots refused by the engine (a bad row): the ACL in force kept.
    pub rejected: Counter,
}

/// Upper bounds of the loop-turn histogram buckets, in microseconds; the
/// last bucket (`+Inf`) is implicit.
pub const TURN_BUCKETS_US: [u64; 10] =
    [10, 50, 100, 250, 500, 1_000, 5_000, 10_000, 50_000, 250_000];

/// How long reactor loop turns took: the time from `epoll_wait` returning
/// to the next call, which is the latency every event of the turn waited.
#[derive(Debug, Default)]
pub struct TurnHistogram {
    /// Per bucket (not cumulative), `+Inf` last.
    buckets: [Counter; TURN_BUCKETS_US.len() + 1],
    sum_us: Counter,
}

impl TurnHistogram {
    /// Records one turn.
    pub fn observe(&self, took: Duration) {
        let us = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        let bucket = TURN_BUCKETS_US
            .iter()
            .position(|&bound| us <= bound)
            .unwrap_or(TURN_BUCKETS_US.len());
        self.buckets[bucket].add(1);
        self.sum_us.add(us);
    }
}

/// How an upgrade request was answered: the statuses the server sends.
pub const UPGRADE_STATUSES: [u16; 8] = [101, 400, 401, 403, 404, 426, 431, 503];

/// Where a connection that never got an HTTP answer gave up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HandshakeFailure {
    /// Before the TLS handshake completed (TLS error, hang-up, eviction).
    Tls,
    /// After TLS, before the upgrade was answered.
    Upgrade,
}

/// How a client's token, if it sent one, was judged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenOutcome {
    /// Verified: the client is the token's subject.
    Valid,
    /// Refused: 401.
    Invalid,
}

/// One reactor's counters and gauges.
#[derive(Debug, Default)]
pub struct ReactorMetrics {
    /// Connections accepted (admitted to a TLS handshake).
    pub accepted: Counter,
    /// Connections refused at accept, by [`Refusal`] index.
    pub refused: [Counter; Refusal::ALL.len()],
    /// Connections in the table.
    pub open: Gauge,
    /// Connections still in the TLS handshake or upgrade.
    pub pending_handshakes: Gauge,
    /// TLS handshakes completed.
    pub tls_handshakes: Counter,
    /// Handshake steps put off to a later turn (`--handshakes-per-turn`).
    pub deferred_handshakes: Counter,
    /// Connections that ended before their upgrade was answered, by stage.
    pub handshake_failures: [Counter; 2],
    /// Upgrade responses, by [`UPGRADE_STATUSES`] index.
    pub upgrades: [Counter; UPGRADE_STATUSES.len()],
    /// Tokens judged, valid then invalid.
    pub tokens: [Counter; 2],
    /// WebSocket data messages received from clients.
    pub messages_in: Counter,
    /// WebSocket data messages sent to clients.
    pub messages_out: Counter,
    /// TLS bytes received.
    pub bytes_in: Counter,
    /// TLS bytes sent.
    pub bytes_out: Counter,
    /// Evictions by [`Eviction`] index.
    pub evictions: [Counter; Eviction::ALL.len()],
    /// Workers registered on this reactor's backend node.
    pub workers: Gauge,
    /// Messages waiting in the per-worker backlogs.
    pub backend_queued: Gauge,
    /// Connections whose reading waits for a full worker pipe.
    pub backend_blocked: Gauge,
    /// Messages from workers dropped (bad signature, malformed, ...).
    pub backend_dropped: Counter,
    /// Replies to workers dropped because the worker's backlog was full.
    pub backend_replies_dropped: Counter,
    /// Client messages handed to workers that then died: each may be lost
    /// (their clients were closed with 1012).
    pub backend_lost_messages: Counter,
    /// ACL decisions that allowed, then that denied.
    pub acl_decisions: [Counter; 2],
    /// ACL decisions answered from the cache, then computed.
    pub acl_cache: [Counter; 2],
    /// `GET /metrics` requests served.
    pub scrapes: Counter,
    /// Sessions that agreed to permessage-deflate.
    pub deflate_sessions: Counter,
    /// Messages inflated from clients, then compressed for them.
    pub deflate_messages: [Counter; 2],
    /// Loop turn durations.
    pub turns: TurnHistogram,
}

impl ReactorMetrics {
    /// Counts what a connection sent and received between two readings of
    /// its counters.
    pub fn traffic(&self, before: &Stats, after: &Stats) {
        self.messages_in.add(after.messages_in - before.messages_in);
        self.messages_out
            .add(after.messages_out - before.messages_out);
        self.bytes_in.add(after.bytes_in - before.bytes_in);
        self.bytes_out.add(after.bytes_out - before.bytes_out);
    }

    /// Counts the answer to an upgrade request.
    pub fn upgrade_answered(&self, status: u16) {
        if let Some(index) = UPGRADE_STATUSES.iter().position(|&s| s == status) {
            self.upgrades[index].add(1);
        }
    }

    /// Counts a connection that ended before its upgrade was answered.
    pub fn handshake_failed(&self, stage: HandshakeFailure) {
        self.handshake_failures[stage as usize].add(1);
    }

    /// Counts a judged token.
    pub fn token(&self, outcome: TokenOutcome) {
        self.tokens[outcome as usize].add(1);
    }
}
