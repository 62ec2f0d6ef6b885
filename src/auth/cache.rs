//! A bounded memo of ACL decisions. Keys hold strings the client chose
//! (token subject, request path), so the cache counts the bytes it keeps
//! and starts afresh when the budget is spent: a flood of distinct queries
//! costs recomputation, never memory.

use std::collections::HashMap;

/// Default byte budget of a decision cache: about 30,000 typical entries.
pub const DEFAULT_CACHE_BYTES: usize = 4 << 20;

/// What one entry costs besides its key bytes: the map slot, the box
/// header and allocator rounding, estimated.
const ENTRY_OVERHEAD: usize = 64;

/// Decisions made through a cache, and how it answered them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DecisionCounts {
    /// Decisions that allowed.
    pub allowed: u64,
    /// Decisions that denied.
    pub denied: u64,
    /// Decisions answered from the cache.
    pub hits: u64,
    /// Decisions computed.
    pub misses: u64,
}

impl DecisionCounts {
    /// Both counts together.
    pub fn plus(self, other: DecisionCounts) -> DecisionCounts {
        DecisionCounts {
            allowed: self.allowed + other.allowed,
            denied: self.denied + other.denied,
            hits: self.hits + other.hits,
            misses: self.misses + other.misses,
        }
    }
}

/// Decisions keyed by the whole query. The hasher is std's keyed SipHash,
/// so clients cannot aim collisions at one bucket.
#[derive(Debug)]
pub(crate) struct Cache {
    decisions: HashMap<Box<[u8]>, bool>,
    /// Bytes charged so far, keys plus [`ENTRY_OVERHEAD`] each.
    used: usize,
    budget: usize,
    /// The key of the current query, reused so a hit does not allocate.
    scratch: Vec<u8>,
    counts: DecisionCounts,
}

impl Cache {
    /// An empty cache that keeps at most `budget` bytes; 0 disables it.
    pub(crate) fn new(budget: usize) -> Self {
        Cache {
            decisions: HashMap::new(),
            used: 0,
            budget,
            scratch: Vec::new(),
            counts: DecisionCounts::default(),
        }
    }

    /// The byte budget given to [`Cache::new`].
    pub(crate) fn budget(&self) -> usize {
        self.budget
    }

    /// The cached decision for this query, or `decide()`'s, remembered.
    pub(crate) fn decision(
        &mut self,
        user: &str,
        extra_roles: &[&str],
        resource: &str,
        permissions: &[&str],
        decide: impl FnOnce() -> bool,
    ) -> bool {
        self.scratch.clear();
        // Each part is length-prefixed, so no two queries share a key
        // whatever bytes their names hold.
        push_list(&mut self.scratch, &[user]);
        push_list(&mut self.scratch, extra_roles);
        push_list(&mut self.scratch, &[resource]);
        push_list(&mut self.scratch, permissions);
        let cached = self.decisions.get(self.scratch.as_slice()).copied();
        let allowed = match cached {
            Some(allowed) => allowed,
            None => self.decide_and_keep(decide),
        };
        let counts = &mut self.counts;
        *if cached.is_some() {
            &mut counts.hits
        } else {
            &mut counts.misses
        } += 1;
        *if allowed {
            &mut counts.allowed
        } else {
            &mut counts.denied
        } += 1;
        allowed
    }

    /// Decisions made so far.
    pub(crate) fn counts(&self) -> DecisionCounts {
        self.counts
    }

    /// `decide()`'s answer for the query in `scratch`, remembered within
    /// the budget.
    fn decide_and_keep(&mut self, decide: impl FnOnce() -> bool) -> bool {
        let allowed = decide();
        let cost = self.scratch.len() + ENTRY_OVERHEAD;
        if cost <= self.budget {
            if self.used + cost > self.budget {
                self.clear();
            }
            self.used += cost;
            self.decisions
                .insert(self.scratch.as_slice().into(), allowed);
        }
        allowed
    }

    /// Forgets every decision (the ACL changed, or the budget is spent).
    pub(crate) fn clear(&mut self) {
        self.decisions.clear();
        self.used = 0;
    }

    /// How many decisions are cached.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.decisions.len()
    }
}

/// Appends a count, then each name as its length and its bytes.
fn push_list(key: &mut Vec<u8>, names: &[&str]) {
    key.extend_from_slice(&(names.len() as u64).to_le_bytes());
    for name in names {
        key.extend_from_slice(&(name.len() as u64).to_le_bytes());
        key.extend_from_slice(name.as_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hits_skip_the_decision() {
        let mut cache = Cache::new(DEFAULT_CACHE_BYTES);
        assert!(cache.decision("u", &[], "r", &["p"], || true));
        assert!(cache.decision("u", &[], "r", &["p"], || panic!("cached")));
        assert!(!cache.decision("u", &[], "r", &["q"], || false));
        assert_eq!(cache.len(), 2);
        let counts = DecisionCounts {
            allowed: 2,
            denied: 1,
            hits: 1,
            misses: 2,
        };
        assert_eq!(cache.counts(), counts);
    }

    #[test]
    fn keys_do_not_run_together() {
        let mut cache = Cache::new(DEFAULT_CACHE_BYTES);
        assert!(cache.decision("ab", &[], "c", &["p"], || true));
        assert!(!cache.decision("a", &[], "bc", &["p"], || false));
        assert!(!cache.decision("a", &["b"], "c", &["p"], || false));
        assert!(!cache.decision("ab", &[], "c", &["p", ""], || false));
        assert_eq!(cache.len(), 4);
    }

    #[test]
    fn budget_bounds_memory() {
        let mut cache = Cache::new(10 * (ENTRY_OVERHEAD + 64));
        for i in 0..1000 {
            cache.decision(&format!("user{i}"), &[], "r", &["p"], || true);
            assert!(cache.used <= cache.budget);
            assert!(cache.len() <= 10);
        }
        // A key larger than the whole budget is decided, never kept.
        let huge = "x".repeat(cache.budget);
        assert!(cache.decision(&huge, &[], "r", &["p"], || true));
        assert!(!cache.decision(&huge, &[], "r", &["p"], || false));
    }

    #[test]
    fn zero_budget_disables_caching() {
        let mut cache = Cache::new(0);
        assert!(cache.decision("u", &[], "r", &["p"], || true));
        assert!(!cache.decision("u", &[], "r", &["p"], || false));
        assert_eq!(cache.len(), 0);
    }
}
