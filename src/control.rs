//! What the process's reactors share: the state a reload, an admin
//! change or the ACL store's follower swaps (certificate, ACL, backend
//! keys, token keys), the shutdown request, and each reactor's metrics
//! (and the ACL store's health) for a scrape.
//!
//! Nothing here is on the data path. A change is published under a lock
//! with a new version and every reactor is woken through its `mio::Waker`;
//! on that wake the reactor takes what changed ([`Control::changes`]) and
//! says it has adopted the version ([`Control::adopted`]), so the thread
//! that published can report a change as in force only once every reactor
//! has it.

mod census;
pub mod follow;
pub mod signals;
pub mod store_changes;

use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use rustls::ServerConfig;

use crate::auth::acl::Acl;
use crate::auth::token::Verifier;
use crate::backend::signing::KeyRing;
use crate::config::Protection;
use crate::metrics::{ReactorMetrics, StoreHealth};
use crate::outcome::Refusal;
use crate::pace::Crowd;
use census::Census;

/// How long a publisher waits for every reactor to adopt a change: a
/// reactor takes it within one loop turn, so this is only reached when one
/// is stuck.
const ADOPTION_WAIT: Duration = Duration::from_secs(2);

/// What a reactor has seen of the published state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Seen {
    version: u64,
    tls: u64,
    acl: u64,
    keys: u64,
    tokens: u64,
}

impl Seen {
    /// Records that the ACL of `version` is in force already (the reactor
    /// made that change itself), so it is not taken again.
    pub fn acl_in_force(&mut self, version: u64) {
        self.acl = self.acl.max(version);
    }
}

/// What changed since a reactor last looked.
#[derive(Default)]
pub struct Changes {
    /// The TLS configuration for connections accepted from now on.
    pub tls: Option<Arc<ServerConfig>>,
    /// The ACL to put in force.
    pub acl: Option<Acl>,
    /// The keys that sign and verify backend messages from now on.
    pub keys: Option<KeyRing>,
    /// The keys that verify client tokens from now on.
    pub tokens: Option<Verifier>,
    /// The shutdown asked for.
    pub shutdown: Shutdown,
}

/// Where the process is in shutting down.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord)]
pub enum Shutdown {
    /// Serving.
    #[default]
    No,
    /// SIGTERM/SIGINT: stop accepting, close every connection with 1001,
    /// wait for the closing handshakes until the drain deadline.
    Drain,
    /// A second SIGTERM/SIGINT: exit at once.
    Now,
}

/// One reactor as the control side knows it.
struct Member {
    waker: mio::Waker,
    metrics: Arc<ReactorMetrics>,
    adopted: AtomicU64,
    /// False once the reactor's loop has ended: nobody waits for it.
    running: AtomicBool,
}

struct Published {
    version: u64,
    tls: (u64, Arc<ServerConfig>),
    acl: (u64, Option<Acl>),
    keys: (u64, Option<KeyRing>),
    tokens: (u64, Option<Verifier>),
    shutdown: Shutdown,
    /// The ACL store's version counter of the ACL published last from it.
    store_version: i64,
}

/// The shared control state; one per process, behind an `Arc`.
pub struct Control {
    members: Mutex<Vec<Arc<Member>>>,
    published: Mutex<Published>,
    /// Serialises ACL changes by admin workers on different reactors, so
    /// each is made on the latest ACL and none is lost.
    acl_change: Mutex<()>,
    /// Every reactor's connections, for the process-wide limits.
    census: Mutex<Census>,
    /// The ACL store's health, once a follower runs.
    store: OnceLock<Arc<StoreHealth>>,
    /// The queue of the `acl-admin` thread, once started.
    store_changes: Mutex<Option<std::sync::mpsc::SyncSender<store_changes::Job>>>,
    /// Its answers, with the reactor each goes to.
    posted: Mutex<Vec<(usize, store_changes::Answer)>>,
}

impl Control {
    /// Control state whose first TLS configuration is `tls`; the ACL and
    /// keys are those each reactor loaded at start until one is published.
    pub fn new(tls: Arc<ServerConfig>) -> Arc<Control> {
        Arc::new(Control {
            members: Mutex::new(Vec::new()),
            published: Mutex::new(Published {
                version: 0,
                tls: (0, tls),
                acl: (0, None),
                keys: (0, None),
                tokens: (0, None),
                shutdown: Shutdown::No,
                store_version: i64::MIN,
            }),
            acl_change: Mutex::new(()),
            census: Mutex::new(Census::default()),
            store: OnceLock::new(),
            store_changes: Mutex::new(None),
            posted: Mutex::new(Vec::new()),
        })
    }

    /// Adds a reactor: its waker and its metrics. Returns its index.
    pub fn join(&self, waker: mio::Waker, metrics: Arc<ReactorMetrics>) -> usize {
        let mut members = lock(&self.members);
        members.push(Arc::new(Member {
            waker,
            metrics,
            adopted: AtomicU64::new(0),
            running: AtomicBool::new(true),
        }));
        members.len() - 1
    }

    /// Counts a connection a reactor accepted from `ip` and says how
    /// crowded it found the process, or says which of the process-wide
    /// `limits` it would break.
    pub fn admit(&self, ip: IpAddr, limits: &Protection) -> Result<Crowd, Refusal> {
        lock(&self.census).admit(ip, limits)
    }

    /// Whether pending handshakes are at half their cap or more (once or
    /// twice per handshake, never per message).
    pub fn pressed(&self, limits: &Protection) -> bool {
        lock(&self.census).pressed(limits)
    }

    /// How crowded the process is now for a connection from `ip` it
    /// counts (when a silent connection's first byte is overdue).
    pub fn crowd(&self, ip: IpAddr, limits: &Protection) -> Crowd {
        lock(&self.census).crowd(ip, limits)
    }

    /// A connection's upgrade ended.
    pub fn upgraded(&self) {
        lock(&self.census).upgraded();
    }

    /// A connection from `ip` is gone; `upgrading` if its upgrade never
    /// ended.
    pub fn closed(&self, ip: IpAddr, upgrading: bool) {
        lock(&self.census).closed(ip, upgrading);
    }

    /// The number of reactors.
    pub fn reactors(&self) -> usize {
        lock(&self.members).len()
    }

    /// Every reactor's metrics, in reactor order.
    pub fn metrics(&self) -> Vec<Arc<ReactorMetrics>> {
        lock(&self.members)
            .iter()
            .map(|m| Arc::clone(&m.metrics))
            .collect()
    }

    /// The ACL store's health, for its follower to write.
    pub fn follow_store(&self) -> Arc<StoreHealth> {
        Arc::clone(self.store.get_or_init(Arc::default))
    }

    /// The ACL store's health, for a scrape; `None` without a store.
    pub fn store_health(&self) -> Option<Arc<StoreHealth>> {
        self.store.get().cloned()
    }

    /// The TLS configuration in force.
    pub fn tls(&self) -> Arc<ServerConfig> {
        Arc::clone(&lock(&self.published).tls.1)
    }

    /// Puts a new TLS configuration in force for new connections.
    pub fn publish_tls(&self, tls: Arc<ServerConfig>) -> u64 {
        self.publish(|p, version| p.tls = (version, tls))
    }

    /// Puts a new ACL in force on every reactor; see also
    /// [`Control::change_acl`].
    fn publish_acl(&self, acl: Acl) -> u64 {
        self.publish(|p, version| p.acl = (version, Some(acl)))
    }

    /// Puts new backend keys in force on every reactor.
    pub fn publish_keys(&self, keys: KeyRing) -> u64 {
        self.publish(|p, version| p.keys = (version, Some(keys)))
    }

    /// Verifies client tokens with `verifier` on every reactor.
    pub fn publish_tokens(&self, verifier: Verifier) -> u64 {
        self.publish(|p, version| p.tokens = (version, Some(verifier)))
    }

    /// Asks every reactor to drain, unless a shutdown is under way (a
    /// reactor failed: the others finish their work and the process ends).
    pub fn drain(&self) {
        self.publish(|p, _| p.shutdown = p.shutdown.max(Shutdown::Drain));
    }

    /// Asks every reactor to drain (first call) or to exit now (later
    /// calls): SIGTERM and SIGINT.
    pub fn shut_down(&self) {
        self.publish(|p, _| {
            p.shutdown = match p.shutdown {
                Shutdown::No => Shutdown::Drain,
                _ => Shutdown::Now,
            };
        });
    }

    /// Runs an ACL change alone: no other change of the ACL (an admin
    /// worker's on another reactor, a SIGHUP reload) runs meanwhile.
    /// `change` gets the latest published ACL (`None` while none was
    /// published: the one every reactor loaded at start is in force) and
    /// returns the new one to publish, if any, with its version.
    pub fn change_acl<R>(
        &self,
        change: impl FnOnce(Option<&Acl>) -> (R, Option<Acl>),
    ) -> (R, Option<(u64, Acl)>) {
        let _alone = lock(&self.acl_change);
        let latest = lock(&self.published).acl.1.clone();
        let (result, changed) = change(latest.as_ref());
        let published = changed.map(|acl| (self.publish_acl(acl.clone()), acl));
        (result, published)
    }

    /// Puts `acl`, version `version` of the ACL store, in force on every
    /// reactor, as [`Control::change_acl`] does; with `only_if_newer`, not
    /// when the version published last from the store is as new (so a
    /// late publisher cannot put an older ACL back). Returns the publish
    /// version, if published.
    pub fn publish_stored_acl(&self, version: i64, acl: Acl, only_if_newer: bool) -> Option<u64> {
        let ((), published) = self.change_acl(|_| {
            let mut published = lock(&self.published);
            if only_if_newer && version <= published.store_version {
                return ((), None);
            }
            published.store_version = version;
            ((), Some(acl))
        });
        published.map(|(version, _)| version)
    }

    /// What changed since `seen`, which is brought up to date.
    pub fn changes(&self, seen: &mut Seen) -> Changes {
        let published = lock(&self.published);
        let mut changes = Changes {
            shutdown: published.shutdown,
            ..Changes::default()
        };
        if published.tls.0 != seen.tls {
            changes.tls = Some(Arc::clone(&published.tls.1));
        }
        if published.acl.0 != seen.acl {
            changes.acl = published.acl.1.clone();
        }
        if published.keys.0 != seen.keys {
            changes.keys = published.keys.1.clone();
        }
        if published.tokens.0 != seen.tokens {
            changes.tokens = published.tokens.1.clone();
        }
        *seen = Seen {
            version: published.version,
            tls: published.tls.0,
            acl: published.acl.0,
            keys: published.keys.0,
            tokens: published.tokens.0,
        };
        changes
    }

    /// Marks `seen` as what reactor `index` now has in force.
    pub fn adopted(&self, index: usize, seen: &Seen) {
        if let Some(member) = lock(&self.members).get(index) {
            member.adopted.fetch_max(seen.version, Ordering::Release);
        }
    }

    /// Marks reactor `index` as stopped: its loop has ended.
    pub fn stopped(&self, index: usize) {
        if let Some(member) = lock(&self.members).get(index) {
            member.running.store(false, Ordering::Release);
        }
    }

    /// Waits (up to a few seconds) until every running reactor has
    /// adopted `version`; false if one has not.
    pub fn wait_adopted(&self, version: u64) -> bool {
        let members: Vec<Arc<Member>> = lock(&self.members).clone();
        let deadline = Instant::now() + ADOPTION_WAIT;
        loop {
            let behind = members.iter().any(|m| {
                m.running.load(Ordering::Acquire) && m.adopted.load(Ordering::Acquire) < version
            });
            if !behind {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// Applies `update` under the lock with the next version, then wakes
    /// every reactor. Returns the version.
    fn publish(&self, update: impl FnOnce(&mut Published, u64)) -> u64 {
        let version = {
            let mut published = lock(&self.published);
            published.version += 1;
            let version = published.version;
            update(&mut published, version);
            version
        };
        for member in lock(&self.members).iter() {
            if let Err(e) = member.waker.wake() {
                log::warn!("cannot wake a reactor: {e}");
            }
        }
        version
    }
}

/// Locks `mutex`, taking the data even if a thread panicked holding it:
/// every update here is a single assignment, never half done.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}
