//! Messages for workers whose pipe was full when they were sent, in order,
//! at most a configured number per worker (docs/protocol.md section 7).

use std::collections::{HashMap, VecDeque};

use super::workers::WorkerRef;

/// One encoded multipart message.
pub type Encoded = Vec<Vec<u8>>;

/// What [`Backlogs::push`] did with a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Queued {
    /// It waits behind the others.
    Yes,
    /// The worker's backlog is full.
    Full,
}

/// The per-worker queues.
#[derive(Debug)]
pub struct Backlogs {
    queues: HashMap<WorkerRef, VecDeque<Encoded>>,
    cap: usize,
}

impl Backlogs {
    /// Queues of at most `cap` messages (at least 1).
    pub fn new(cap: usize) -> Backlogs {
        Backlogs {
            queues: HashMap::new(),
            cap: cap.max(1),
        }
    }

    /// The most messages that wait for one worker.
    pub fn cap(&self) -> usize {
        self.cap
    }

    /// True while messages wait for `worker`.
    pub fn waiting(&self, worker: WorkerRef) -> bool {
        self.queues.get(&worker).is_some_and(|q| !q.is_empty())
    }

    /// Appends a message for `worker`, unless its queue is full.
    pub fn push(&mut self, worker: WorkerRef, frames: impl Iterator<Item = Vec<u8>>) -> Queued {
        let queue = self.queues.entry(worker).or_default();
        if queue.len() >= self.cap {
            return Queued::Full;
        }
        queue.push_back(frames.collect());
        Queued::Yes
    }

    /// The oldest message for `worker`, taken out.
    pub fn pop(&mut self, worker: WorkerRef) -> Option<Encoded> {
        let queue = self.queues.get_mut(&worker)?;
        let frames = queue.pop_front();
        if queue.is_empty() {
            self.queues.remove(&worker);
        }
        frames
    }

    /// Puts back a message [`Backlogs::pop`] took that the pipe refused.
    pub fn unpop(&mut self, worker: WorkerRef, frames: Encoded) {
        self.queues.entry(worker).or_default().push_front(frames);
    }

    /// The workers with messages waiting.
    pub fn workers(&self) -> Vec<WorkerRef> {
        self.queues.keys().copied().collect()
    }

    /// Forgets what waits for `worker` (it is gone: docs/protocol.md
    /// section 6).
    pub fn forget(&mut self, worker: WorkerRef) {
        self.queues.remove(&worker);
    }

    /// Messages waiting, for every worker.
    pub fn len(&self) -> usize {
        self.queues.values().map(VecDeque::len).sum()
    }

    /// True when nothing waits.
    pub fn is_empty(&self) -> bool {
        self.queues.is_empty()
    }

    /// The longest queue, for invariant checks.
    pub fn longest(&self) -> usize {
        self.queues.values().map(VecDeque::len).max().unwrap_or(0)
    }
}
