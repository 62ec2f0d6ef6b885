//! What the node counts and volunteers about messages it cannot use: the
//! drop counts behind `averyws_backend_dropped_total`, and the budget of
//! unasked ERROR answers (docs/protocol.md section 10).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use log::warn;

use crate::backend::message::ErrorCode;
use crate::logging::LogBudget;

/// Counts of dropped backend messages by reason, logged within a budget.
#[derive(Debug, Default)]
pub struct Drops {
    counts: HashMap<String, u64>,
    total: u64,
    budget: LogBudget,
}

impl Drops {
    /// Messages dropped so far, for any reason.
    pub fn total(&self) -> u64 {
        self.total
    }

    /// Counts one dropped message, logging it unless the budget is spent.
    pub fn count(&mut self, reason: String, now: Instant) {
        self.total += 1;
        let total = self.counts.entry(reason.clone()).or_default();
        *total += 1;
        let total = *total;
        if self.budget.allow(now) {
            warn!("backend: dropped a message: {reason} ({total} so far)");
        }
    }
}

/// Most (peer, code) pairs [`Answers`] remembers; beyond, a new pair gets
/// no answer until an entry is older than the interval.
pub const ANSWERS_KEPT: usize = 4096;

/// Errors the node volunteers for messages it cannot use (an unknown
/// version, an undecodable message from a worker, a message signed for a
/// previous boot), at most one per peer and code per heartbeat interval:
/// a peer, or a forger, cannot make the node send without bound.
#[derive(Debug, Default)]
pub struct Answers {
    last: HashMap<(Box<[u8]>, u16), Instant>,
}

impl Answers {
    /// Whether `peer` may be sent an answer with `code` at `now`; if so,
    /// that is recorded.
    pub fn allow(
        &mut self,
        peer: &[u8],
        code: ErrorCode,
        now: Instant,
        interval: Duration,
    ) -> bool {
        if self.last.len() >= ANSWERS_KEPT {
            self.last
                .retain(|_, at| now.saturating_duration_since(*at) < interval);
            if self.last.len() >= ANSWERS_KEPT {
                // Full of recent answers: a new peer waits for one to age
                // out rather than resetting everybody's budget.
                return false;
            }
        }
        let key = (Box::from(peer), code.0);
        match self.last.get(&key) {
            Some(at) if now.saturating_duration_since(*at) < interval => false,
            _ => {
                self.last.insert(key, now);
                true
            }
        }
    }

    /// Pairs remembered.
    pub fn len(&self) -> usize {
        self.last.len()
    }

    /// True when nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.last.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_answer_per_peer_and_code_per_interval() {
        let (t0, beat) = (Instant::now(), Duration::from_millis(100));
        let mut answers = Answers::default();
        assert!(answers.allow(b"peer-a", ErrorCode::MALFORMED, t0, beat));
        assert!(!answers.allow(b"peer-a", ErrorCode::MALFORMED, t0 + beat / 2, beat));
        assert!(answers.allow(b"peer-a", ErrorCode::UNKNOWN_PEER, t0, beat));
        assert!(answers.allow(b"peer-b", ErrorCode::MALFORMED, t0, beat));
        assert!(answers.allow(b"peer-a", ErrorCode::MALFORMED, t0 + beat, beat));
        // Many peers: what is kept stays bounded, and the peers already
        // answered keep their budget.
        for i in 0..(2 * ANSWERS_KEPT as u32) {
            answers.allow(&i.to_be_bytes(), ErrorCode::MALFORMED, t0, beat);
        }
        assert!(answers.len() <= ANSWERS_KEPT);
        assert!(!answers.allow(b"peer-b", ErrorCode::MALFORMED, t0, beat));
        // Once the interval has passed, room is made again.
        assert!(answers.allow(b"late", ErrorCode::MALFORMED, t0 + beat, beat));
    }
}
