//! The node's table of registered workers, sans-IO: who serves which
//! service, who is alive, which connections each one holds, and which
//! worker a new connection goes to; and, on a signed link, the READYs that
//! wait for their sender's first message signed for this node's boot
//! (docs/protocol.md section 4).

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use slab::Slab;

use crate::backend::batch::BatchBuilder;

/// Default of [`crate::node::NodeConfig::max_workers`]: most workers one
/// node registers at once (a READY beyond it is ignored), and most READYs
/// waiting for their confirmation.
pub const MAX_WORKERS: usize = 4096;

/// A registered worker, as a connection refers to it: the slot plus the
/// instance id, so a reused slot is never mistaken for the old worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct WorkerRef {
    key: usize,
    /// The worker's instance id from READY.
    pub instance: u64,
}

/// One registered worker.
#[derive(Debug)]
pub struct Worker {
    /// The ROUTER routing id of its pipe.
    pub routing_id: Vec<u8>,
    /// The instance id from READY (the recipient of signed messages).
    pub instance: u64,
    /// Its name, for logs.
    pub name: String,
    /// The protocol version of its READY, which the node answers in.
    pub version: u8,
    /// Client messages waiting for the end of the turn (version 2).
    pub batch: BatchBuilder,
    services: Vec<String>,
    /// The client connections it holds (connection ids).
    pub conns: HashSet<u64>,
    heard: Instant,
    /// When the node last sent it anything (heartbeats are due after a
    /// quiet interval).
    sent: Instant,
    assigned_at: u64,
}

/// A READY that waits for its confirmation.
#[derive(Debug, PartialEq, Eq)]
pub struct Proposal {
    /// The instance id it named.
    pub instance: u64,
    /// The worker's name.
    pub name: String,
    /// The protocol version of the READY.
    pub version: u8,
    /// The services it offers.
    pub services: Vec<String>,
    since: Instant,
}

impl Proposal {
    /// What a READY from `instance` in `version` said at `now`.
    pub fn new(
        instance: u64,
        version: u8,
        name: &str,
        services: impl Iterator<Item = String>,
        now: Instant,
    ) -> Proposal {
        Proposal {
            instance,
            version,
            name: name.to_owned(),
            services: services.collect(),
            since: now,
        }
    }
}

/// The table.
#[derive(Debug)]
pub struct Workers {
    slots: Slab<Worker>,
    by_routing_id: HashMap<Vec<u8>, usize>,
    assignments: u64,
    /// Unconfirmed READYs by routing id, at most `cap`.
    pending: HashMap<Vec<u8>, Proposal>,
    /// Most workers registered, and most READYs pending.
    cap: usize,
}

impl Default for Workers {
    fn default() -> Self {
        Workers::with_cap(MAX_WORKERS)
    }
}

/// What a READY did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Registered {
    /// A new worker.
    New(WorkerRef),
    /// A known worker replaced its service list; its connections stay.
    Updated(WorkerRef),
    /// The pipe belongs to another instance of a worker (it restarted
    /// without a new pipe): remove that one first, then register again.
    Conflict(WorkerRef),
    /// The table is full.
    Full,
}

impl Workers {
    /// An empty table for at most `cap` workers (and `cap` pending READYs).
    pub fn with_cap(cap: usize) -> Workers {
        Workers {
            slots: Slab::new(),
            by_routing_id: HashMap::new(),
            assignments: 0,
            pending: HashMap::new(),
            cap,
        }
    }

    /// Registers the worker behind `routing_id` as its READY `proposal`
    /// said, or updates it.
    pub fn register(&mut self, routing_id: &[u8], proposal: &Proposal, now: Instant) -> Registered {
        let Proposal {
            instance,
            version,
            ref name,
            ref services,
            ..
        } = *proposal;
        if let Some(&key) = self.by_routing_id.get(routing_id) {
            let worker = &mut self.slots[key];
            if worker.instance == instance {
                worker.services.clone_from(services);
                worker.name.clone_from(name);
                worker.version = version;
                worker.heard = now;
                return Registered::Updated(WorkerRef { key, instance });
            }
            return Registered::Conflict(WorkerRef {
                key,
                instance: worker.instance,
            });
        }
        if self.slots.len() >= self.cap {
            return Registered::Full;
        }
        let key = self.slots.insert(Worker {
            routing_id: routing_id.to_vec(),
            instance,
            name: name.clone(),
            version,
            batch: BatchBuilder::default(),
            services: services.clone(),
            conns: HashSet::new(),
            heard: now,
            sent: now,
            assigned_at: 0,
        });
        self.by_routing_id.insert(routing_id.to_vec(), key);
        Registered::New(WorkerRef { key, instance })
    }

    /// Keeps a READY from `routing_id` until [`Workers::confirm`] (or
    /// [`Workers::expire_pending`]); a newer READY on the pipe replaces
    /// it. Full: the oldest waiting READY makes room.
    pub fn propose(&mut self, routing_id: &[u8], proposal: Proposal) {
        if self.pending.len() >= self.cap && !self.pending.contains_key(routing_id) {
            let oldest = self
                .pending
                .iter()
                .min_by_key(|(_, p)| p.since)
                .map(|(id, _)| id.clone());
            if let Some(oldest) = oldest {
                self.pending.remove(&oldest);
            }
        }
        self.pending.insert(routing_id.to_vec(), proposal);
    }

    /// Takes the READY waiting on `routing_id` if `sender` is the
    /// instance it named (the first message signed for this boot came),
    /// for the caller to [`Workers::register`].
    pub fn confirm(&mut self, routing_id: &[u8], sender: u64) -> Option<Proposal> {
        if self.pending.get(routing_id)?.instance != sender {
            return None;
        }
        self.pending.remove(routing_id)
    }

    /// Forgets the READYs older than `limit` at `now`.
    pub fn expire_pending(&mut self, now: Instant, limit: Duration) {
        self.pending
            .retain(|_, p| now.saturating_duration_since(p.since) <= limit);
    }

    /// The registered worker behind a routing id.
    pub fn by_routing_id(&self, routing_id: &[u8]) -> Option<WorkerRef> {
        let key = *self.by_routing_id.get(routing_id)?;
        let instance = self.slots.get(key)?.instance;
        Some(WorkerRef { key, instance })
    }

    /// The worker a reference names, if it is still registered.
    pub fn get(&self, worker: WorkerRef) -> Option<&Worker> {
        self.slots
            .get(worker.key)
            .filter(|w| w.instance == worker.instance)
    }

    /// Mutable access to a registered worker.
    pub(super) fn get_mut(&mut self, worker: WorkerRef) -> Option<&mut Worker> {
        self.slots
            .get_mut(worker.key)
            .filter(|w| w.instance == worker.instance)
    }

    /// Records that the node sent a worker something at `now`.
    pub fn sent(&mut self, worker: WorkerRef, now: Instant) {
        if let Some(w) = self.get_mut(worker) {
            w.sent = now;
        }
    }

    /// The worker holding connection `conn`, if any.
    pub fn holder(&self, conn: u64) -> Option<WorkerRef> {
        self.slots
            .iter()
            .find(|(_, w)| w.conns.contains(&conn))
            .map(|(key, w)| WorkerRef {
                key,
                instance: w.instance,
            })
    }

    /// Unconfirmed READYs waiting.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// Records that a worker proved itself alive.
    pub fn heard(&mut self, worker: WorkerRef, now: Instant) {
        if let Some(w) = self.get_mut(worker) {
            w.heard = now;
        }
    }

    /// The live worker a new connection to `service` goes to: the one with
    /// the fewest connections, ties to the one assigned least recently.
    /// The connection is counted as its.
    pub fn assign(&mut self, service: &str, conn: u64) -> Option<WorkerRef> {
        let (key, _) = self
            .slots
            .iter()
            .filter(|(_, w)| w.services.iter().any(|s| s == service))
            .min_by_key(|(_, w)| (w.conns.len(), w.assigned_at))?;
        self.assignments += 1;
        let worker = &mut self.slots[key];
        worker.assigned_at = self.assignments;
        worker.conns.insert(conn);
        Some(WorkerRef {
            key,
            instance: worker.instance,
        })
    }

    /// Forgets that `worker` holds `conn`.
    pub fn release(&mut self, worker: WorkerRef, conn: u64) {
        if let Some(w) = self.get_mut(worker) {
            w.conns.remove(&conn);
        }
    }

    /// Removes a worker (it left, died or its pipe is gone), returning it
    /// so the caller can move or close its connections.
    pub fn remove(&mut self, worker: WorkerRef) -> Option<Worker> {
        self.get(worker)?;
        let removed = self.slots.remove(worker.key);
        self.by_routing_id.remove(&removed.routing_id);
        Some(removed)
    }

    /// Workers silent for longer than `limit` at `now`.
    pub fn silent(&self, now: Instant, limit: Duration) -> Vec<WorkerRef> {
        self.slots
            .iter()
            .filter(|(_, w)| now.saturating_duration_since(w.heard) > limit)
            .map(|(key, w)| WorkerRef {
                key,
                instance: w.instance,
            })
            .collect()
    }

    /// Workers the node has sent nothing to for `interval` at `now`.
    pub fn quiet(&self, now: Instant, interval: Duration) -> Vec<WorkerRef> {
        self.slots
            .iter()
            .filter(|(_, w)| now.saturating_duration_since(w.sent) >= interval)
            .map(|(key, w)| WorkerRef {
                key,
                instance: w.instance,
            })
            .collect()
    }

    /// Every registered worker.
    pub fn all(&self) -> Vec<WorkerRef> {
        self.slots
            .iter()
            .map(|(key, w)| WorkerRef {
                key,
                instance: w.instance,
            })
            .collect()
    }

    /// Registered workers.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// True when no worker is registered.
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::message::VERSION;

    fn ready(instance: u64, name: &str, services: &[&str], now: Instant) -> Proposal {
        let services = services.iter().map(|s| s.to_string());
        Proposal::new(instance, VERSION, name, services, now)
    }

    #[test]
    fn assigns_to_the_least_loaded_then_least_recent_worker() {
        let now = Instant::now();
        let mut table = Workers::default();
        let a = table.register(b"a", &ready(1, "a", &["chat"], now), now);
        let b = table.register(b"b", &ready(2, "b", &["chat", "other"], now), now);
        let (Registered::New(a), Registered::New(b)) = (a, b) else {
            panic!()
        };
        let first = table.assign("chat", 10).unwrap();
        let second = table.assign("chat", 11).unwrap();
        assert_ne!(first, second);
        // Both hold one: the least recently assigned gets the next.
        assert_eq!(table.assign("chat", 12), Some(first));
        assert_eq!(table.assign("other", 13), Some(b));
        assert_eq!(table.assign("nobody", 14), None);
        table.release(a, 10);
        table.release(a, 12);
        assert_eq!(table.assign("chat", 15), Some(a));
    }

    #[test]
    fn a_removed_worker_is_never_confused_with_its_slot_successor() {
        let now = Instant::now();
        let mut table = Workers::default();
        let Registered::New(old) = table.register(b"x", &ready(7, "x", &["s"], now), now) else {
            panic!()
        };
        assert!(table.remove(old).is_some());
        let Registered::New(new) = table.register(b"y", &ready(8, "y", &["s"], now), now) else {
            panic!()
        };
        assert!(table.get(old).is_none());
        assert!(table.get(new).is_some());
        assert!(table.by_routing_id(b"x").is_none());
    }

    #[test]
    fn ready_again_updates_services_and_keeps_connections() {
        let now = Instant::now();
        let mut table = Workers::default();
        table.register(b"w", &ready(1, "w", &["a"], now), now);
        let worker = table.assign("a", 5).unwrap();
        assert_eq!(
            table.register(b"w", &ready(1, "w", &["b"], now), now),
            Registered::Updated(worker)
        );
        assert!(table.get(worker).unwrap().conns.contains(&5));
        assert_eq!(table.assign("a", 6), None);
    }

    #[test]
    fn a_proposed_worker_registers_only_when_its_instance_confirms() {
        let now = Instant::now();
        let mut table = Workers::default();
        table.propose(b"p", ready(7, "p", &["s"], now));
        assert_eq!(table.assign("s", 1), None, "pending gets no clients");
        assert_eq!(table.confirm(b"p", 8), None, "another sender");
        assert_eq!(table.confirm(b"q", 7), None, "another pipe");
        let proposal = table.confirm(b"p", 7).expect("confirmed");
        assert_eq!(
            (proposal.instance, proposal.services),
            (7, vec!["s".into()])
        );
        assert_eq!(table.confirm(b"p", 7), None, "confirmed once");
    }

    #[test]
    fn unconfirmed_readys_expire_and_stay_bounded() {
        let t0 = Instant::now();
        let mut table = Workers::default();
        table.propose(b"old", ready(1, "old", &["s"], t0));
        let later = t0 + Duration::from_secs(5);
        table.expire_pending(later, Duration::from_secs(3));
        assert_eq!(table.confirm(b"old", 1), None);
        for i in 0..(MAX_WORKERS as u64 + 10) {
            let at = t0 + Duration::from_millis(i);
            let proposal = ready(i + 1, "w", &["s"], at);
            table.propose(&i.to_be_bytes(), proposal);
        }
        assert_eq!(table.pending(), MAX_WORKERS);
        assert_eq!(table.confirm(&0u64.to_be_bytes(), 1), None, "oldest went");
        let last = MAX_WORKERS as u64 + 9;
        assert!(table.confirm(&last.to_be_bytes(), last + 1).is_some());
    }

    #[test]
    fn silence_and_quiet_with_virtual_time() {
        let t0 = Instant::now();
        let mut table = Workers::default();
        let Registered::New(w) = table.register(b"w", &ready(1, "w", &["a"], t0), t0) else {
            panic!()
        };
        let second = Duration::from_secs(1);
        assert!(table.silent(t0 + second, 3 * second).is_empty());
        assert_eq!(table.silent(t0 + 4 * second, 3 * second), vec![w]);
        table.heard(w, t0 + 4 * second);
        assert!(table.silent(t0 + 4 * second, 3 * second).is_empty());
        assert_eq!(table.quiet(t0 + second, second), vec![w]);
    }
}
