//! Replay protection for signed messages: a sliding window over each
//! sender's sequence numbers, and the bounded table of windows a receiver
//! keeps.
//!
//! The table is keyed by what identifies a sender; the verifier uses the
//! key id with the sender id, so a holder of one key who claims another's
//! sender id gets a window of its own and cannot push the other's forward
//! (docs/protocol.md section 9).
//!
//! The window is the anti-replay window of IPsec (RFC 4303 section 3.4.3)
//! and DTLS: a sequence number is accepted once, if it is above the highest
//! seen so far or at most [`WINDOW`] - 1 below it. Within one ZeroMQ pipe
//! messages arrive in order, so the window only matters for a sender that
//! signs on one thread and sends on another; it costs 16 bytes either way.
//! Sequence 0 is never accepted: senders start at 1.

use std::collections::HashMap;
use std::hash::Hash;

/// How far below the highest sequence a late message is still accepted
/// (once), in sequence numbers.
pub const WINDOW: u64 = 64;

/// The sequence numbers one sender has used, as far back as [`WINDOW`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReplayWindow {
    /// The highest sequence accepted; 0 before the first.
    highest: u64,
    /// Bit `i` set: `highest - i` was accepted.
    seen: u64,
}

impl ReplayWindow {
    /// Record `sequence` and say whether it is new: `false` for 0, for a
    /// number already accepted, and for one [`WINDOW`] or more below the
    /// highest (it may or may not have been seen; refusing is safe).
    pub fn accept(&mut self, sequence: u64) -> bool {
        if sequence > self.highest {
            let shift = sequence - self.highest;
            self.seen = if shift >= WINDOW {
                0
            } else {
                self.seen << shift
            };
            self.seen |= 1;
            self.highest = sequence;
            return true;
        }
        let behind = self.highest - sequence;
        if sequence == 0 || behind >= WINDOW || self.seen & (1 << behind) != 0 {
            return false;
        }
        self.seen |= 1 << behind;
        true
    }
}

/// One [`ReplayWindow`] per sender `K`, at most `max_peers` of them.
///
/// A window may be dropped only once its sender's timestamps can no longer
/// pass the skew check: a message replayed after that is refused as stale.
/// So a full table first drops windows idle for more than twice the skew
/// bound (`keep_ms`); only if none is that old does it drop the least
/// recently used one, which reopens a replay chance for at most the skew
/// bound. Entries are only created for messages whose signature verified,
/// so only holders of a key can fill the table.
#[derive(Debug, Clone)]
pub struct ReplayTable<K> {
    peers: HashMap<K, Peer>,
    max_peers: usize,
    keep_ms: u64,
}

#[derive(Debug, Clone, Copy)]
struct Peer {
    window: ReplayWindow,
    last_ms: u64,
}

impl<K: Hash + Eq + Copy> ReplayTable<K> {
    /// An empty table for at most `max_peers` senders (at least 1), keeping
    /// an idle sender's window for at least `keep_ms`.
    pub fn new(max_peers: usize, keep_ms: u64) -> Self {
        ReplayTable {
            peers: HashMap::new(),
            max_peers: max_peers.max(1),
            keep_ms,
        }
    }

    /// The number of senders tracked.
    pub fn len(&self) -> usize {
        self.peers.len()
    }

    /// Whether no sender is tracked.
    pub fn is_empty(&self) -> bool {
        self.peers.is_empty()
    }

    /// Record `sequence` from `sender` at `now_ms`; whether it is new.
    pub fn accept(&mut self, sender: K, sequence: u64, now_ms: u64) -> bool {
        if !self.peers.contains_key(&sender) && self.peers.len() >= self.max_peers {
            self.make_room(now_ms);
        }
        let peer = self.peers.entry(sender).or_insert(Peer {
            window: ReplayWindow::default(),
            last_ms: now_ms,
        });
        let fresh = peer.window.accept(sequence);
        if fresh {
            peer.last_ms = peer.last_ms.max(now_ms);
        }
        fresh
    }

    fn make_room(&mut self, now_ms: u64) {
        let keep_ms = self.keep_ms;
        self.peers
            .retain(|_, peer| now_ms.saturating_sub(peer.last_ms) <= keep_ms);
        if self.peers.len() >= self.max_peers {
            let oldest = self
                .peers
                .iter()
                .min_by_key(|(_, peer)| peer.last_ms)
                .map(|(&sender, _)| sender);
            if let Some(sender) = oldest {
                self.peers.remove(&sender);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feed `sequences` in order; what `accept` said to each.
    fn run(sequences: &[u64]) -> Vec<bool> {
        let mut window = ReplayWindow::default();
        sequences.iter().map(|&seq| window.accept(seq)).collect()
    }

    #[test]
    fn window_rules() {
        let table: &[(&str, &[u64], &[bool])] = &[
            ("in order", &[1, 2, 3], &[true, true, true]),
            ("gaps are fine", &[1, 5, 100], &[true, true, true]),
            ("zero is never valid", &[0, 1, 0], &[false, true, false]),
            ("duplicate", &[1, 2, 2], &[true, true, false]),
            (
                "reordered within window",
                &[10, 8, 9, 8],
                &[true, true, true, false],
            ),
            ("edge of window", &[64, 1, 1], &[true, true, false]),
            ("just past the window", &[65, 1], &[true, false]),
            (
                "big jump clears the bitmap",
                &[1, 1000, 999, 1],
                &[true, true, true, false],
            ),
            (
                "duplicate found after a shift",
                &[5, 6, 5, 60, 6],
                &[true, true, false, true, false],
            ),
        ];
        for (name, sequences, expected) in table {
            assert_eq!(run(sequences), *expected, "{name}");
        }
    }

    #[test]
    fn top_of_range() {
        assert_eq!(
            run(&[u64::MAX, u64::MAX, u64::MAX - 63]),
            [true, false, true]
        );
        assert_eq!(run(&[u64::MAX, u64::MAX - 64]), [true, false]);
    }

    #[test]
    fn table_keeps_one_window_per_sender() {
        let mut table = ReplayTable::new(8, 60_000);
        assert!(table.accept(1, 1, 0));
        assert!(table.accept(2, 1, 0), "another sender's sequence 1");
        assert!(!table.accept(1, 1, 0));
        assert_eq!(table.len(), 2);
    }

    #[test]
    fn full_table_drops_expired_windows_first_then_least_recent() {
        let mut table = ReplayTable::new(2, 1_000);
        assert!(table.accept(1, 1, 0));
        assert!(table.accept(2, 1, 1_500));
        // Sender 1 idle for 2000 ms > 1000 ms: its window goes.
        assert!(table.accept(3, 1, 2_000));
        assert_eq!(table.len(), 2);
        assert!(
            table.accept(1, 1, 2_000),
            "forgotten: relies on the skew check"
        );
        // Nothing expired now: the least recently used (2, at 1500) goes.
        assert_eq!(table.len(), 2);
        assert!(!table.accept(3, 1, 2_000), "3 was kept");
        assert!(!table.accept(1, 1, 2_000), "1 was kept");
    }
}
