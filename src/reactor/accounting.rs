//! What the reactor counts about the clients it turns away or evicts, and
//! a log budget so that an attacker cannot flood the log.

use std::sync::Arc;
use std::time::Instant;

use log::warn;

use crate::logging::LogBudget;
use crate::metrics::ReactorMetrics;
use crate::outcome::{Eviction, Refusal};

/// Totals since start, by reason, kept in the reactor's metrics.
#[derive(Debug)]
pub struct Counters {
    metrics: Arc<ReactorMetrics>,
    budget: LogBudget,
}

impl Counters {
    /// Counts into `metrics`.
    pub fn new(metrics: Arc<ReactorMetrics>) -> Self {
        Counters {
            metrics,
            budget: LogBudget::default(),
        }
    }

    /// Counts an eviction and logs it within the budget.
    pub fn evicted(&mut self, reason: Eviction, peer: std::net::SocketAddr, now: Instant) {
        let total = &self.metrics.evictions[reason.index()];
        total.add(1);
        let total = total.get();
        if self.budget.allow(now) {
            warn!("evicted {peer}: {} ({total} so far)", reason.as_str());
        }
    }

    /// Counts a refusal and logs it within the budget.
    pub fn refused(&mut self, reason: Refusal, peer: std::net::SocketAddr, now: Instant) {
        let total = &self.metrics.refused[reason as usize];
        total.add(1);
        let total = total.get();
        if self.budget.allow(now) {
            warn!("refused {peer}: {} ({total} so far)", reason.as_str());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_count_by_reason() {
        let t0 = Instant::now();
        let peer = "127.0.0.1:1".parse().unwrap();
        let mut counters = Counters::new(Arc::default());
        counters.evicted(Eviction::SlowFrame, peer, t0);
        counters.evicted(Eviction::SlowFrame, peer, t0);
        counters.evicted(Eviction::Idle, peer, t0);
        assert_eq!(
            counters.metrics.evictions[Eviction::SlowFrame.index()].get(),
            2
        );
        assert_eq!(counters.metrics.evictions[Eviction::Idle.index()].get(), 1);
        assert_eq!(
            counters.metrics.evictions[Eviction::FirstByte.index()].get(),
            0
        );
    }
}
