//! What the reactor counts about the clients it turns away or evicts, and
//! a log budget so that an attacker cannot flood the log.

use std::time::Instant;

use log::warn;

use crate::conn::Eviction;
use crate::logging::LogBudget;

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
    /// Name for logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::MaxConnections => "max_connections",
            Refusal::MaxConnectionsPerIp => "max_connections_per_ip",
            Refusal::MaxPendingHandshakes => "max_pending_handshakes",
        }
    }
}

/// Totals since start, by reason.
#[derive(Debug, Default)]
pub struct Counters {
    evictions: [u64; Eviction::ALL.len()],
    refusals: [u64; 3],
    budget: LogBudget,
}

impl Counters {
    /// Counts an eviction and logs it within the budget.
    pub fn evicted(&mut self, reason: Eviction, peer: std::net::SocketAddr, now: Instant) {
        let total = &mut self.evictions[reason.index()];
        *total += 1;
        let total = *total;
        if self.budget.allow(now) {
            warn!("evicted {peer}: {} ({total} so far)", reason.as_str());
        }
    }

    /// Counts a refusal and logs it within the budget.
    pub fn refused(&mut self, reason: Refusal, peer: std::net::SocketAddr, now: Instant) {
        let total = &mut self.refusals[reason as usize];
        *total += 1;
        let total = *total;
        if self.budget.allow(now) {
            warn!("refused {peer}: {} ({total} so far)", reason.as_str());
        }
    }

    /// Evictions so far for `reason`.
    pub fn evictions(&self, reason: Eviction) -> u64 {
        self.evictions[reason.index()]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_count_by_reason() {
        let t0 = Instant::now();
        let peer = "127.0.0.1:1".parse().unwrap();
        let mut counters = Counters::default();
        counters.evicted(Eviction::SlowFrame, peer, t0);
        counters.evicted(Eviction::SlowFrame, peer, t0);
        counters.evicted(Eviction::Idle, peer, t0);
        assert_eq!(counters.evictions(Eviction::SlowFrame), 2);
        assert_eq!(counters.evictions(Eviction::Idle), 1);
        assert_eq!(counters.evictions(Eviction::FirstByte), 0);
    }
}
