//! Deadlines as data: a min-heap with lazy cancellation. Arming is
//! O(log n); a moved or cancelled deadline is simply skipped when its old
//! entry surfaces, so nothing ever scans all connections.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::Instant;

use super::token::ConnId;

/// What a deadline belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Timer {
    /// A connection's own deadline; the connection decides what it means.
    Conn(ConnId),
    /// Accepting was paused after EMFILE/ENFILE; try again.
    ResumeAccept,
    /// The shutdown drain period is over.
    DrainOver,
    /// Backend heartbeats and liveness, and a retry of full pipes.
    Backend,
}

/// The reactor's deadline heap.
#[derive(Debug, Default)]
pub struct Timers {
    heap: BinaryHeap<Reverse<(Instant, Timer)>>,
}

impl Timers {
    /// Arms `timer` at `at`. An earlier entry for the same timer stays in
    /// the heap; the owner ignores it when it fires early.
    pub fn arm(&mut self, at: Instant, timer: Timer) {
        self.heap.push(Reverse((at, timer)));
    }

    /// The earliest armed deadline, for the poll timeout.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.heap.peek().map(|Reverse((at, _))| *at)
    }

    /// Removes and returns the next timer due at or before `now`.
    pub fn pop_due(&mut self, now: Instant) -> Option<(Instant, Timer)> {
        match self.heap.peek() {
            Some(Reverse((at, _))) if *at <= now => self.heap.pop().map(|Reverse(entry)| entry),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn due_timers_come_out_in_deadline_order_with_virtual_time() {
        let start = Instant::now();
        let at = |ms| start + Duration::from_millis(ms);
        let conn = |key| Timer::Conn(ConnId { key, generation: 0 });
        let mut timers = Timers::default();
        timers.arm(at(30), conn(3));
        timers.arm(at(10), conn(1));
        timers.arm(at(20), Timer::ResumeAccept);
        assert_eq!(timers.next_deadline(), Some(at(10)));
        assert_eq!(timers.pop_due(at(5)), None);
        assert_eq!(timers.pop_due(at(25)), Some((at(10), conn(1))));
        assert_eq!(timers.pop_due(at(25)), Some((at(20), Timer::ResumeAccept)));
        assert_eq!(timers.pop_due(at(25)), None);
        assert_eq!(timers.pop_due(at(30)), Some((at(30), conn(3))));
    }
}
