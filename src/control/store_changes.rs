//! Admin workers' changes to a PostgreSQL ACL store, made off the
//! reactors: a reactor hands an ACL_COMMAND to the one `acl-admin`
//! thread of the process and goes on serving; the thread stores the
//! change in one transaction, puts the new ACL in force on every reactor,
//! and posts the answer back to the reactor that received the command,
//! which sends the ACL_RESULT. A database that is slow, locked or gone
//! holds that thread, never a reactor. The new ACL is put in force by
//! the follower (`control::follow`), as every other change to the
//! database is: the thread waits for it before it answers.

use std::sync::mpsc::{self, Receiver, TrySendError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use log::{info, warn};

use super::{lock, Control};
use crate::access::admin::clip;
use crate::acl_store::{self, Refusal, Store, Stored};
use crate::backend::message::{AclOp, AclStatus, Field};
use crate::config::PgStore;
use crate::node::workers::WorkerRef;

/// One admin worker's change, as the reactor hands it over.
pub struct Job {
    /// The reactor that received it, which answers.
    pub reactor: usize,
    /// The worker to answer.
    pub worker: WorkerRef,
    /// The ACL_COMMAND's request id.
    pub request: u64,
    /// The change.
    pub op: AclOp,
    /// Its three lists of names.
    pub args: [Vec<String>; 3],
    /// The store to change.
    pub store: PgStore,
}

/// What became of a [`Job`]: the fields of its ACL_RESULT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// The worker to answer.
    pub worker: WorkerRef,
    /// The ACL_COMMAND's request id.
    pub request: u64,
    /// Done, refused or not persisted.
    pub status: AclStatus,
    /// Why not done; empty when done.
    pub detail: String,
}

impl Control {
    /// Hands `job` to the `acl-admin` thread, started on first use; the
    /// answer comes back through [`Control::answers`]. A full queue (or a
    /// thread that cannot start) is answered at once, *not persisted*.
    pub fn store_change(self: &Arc<Self>, mut job: Job) -> Result<(), Answer> {
        let mut queue = lock(&self.store_changes);
        // Twice: a thread that ended (it never should) is started again.
        for _ in 0..2 {
            let sender = match queue.as_ref() {
                Some(sender) => sender,
                None => {
                    let (sender, receiver) = mpsc::sync_channel(job.store.admin_queue);
                    let control = Arc::clone(self);
                    let started = std::thread::Builder::new()
                        .name("acl-admin".into())
                        .spawn(move || control.serve_changes(&receiver));
                    if let Err(e) = started {
                        return Err(answer(&job, AclStatus::NotPersisted, &e.to_string()));
                    }
                    queue.insert(sender)
                }
            };
            match sender.try_send(job) {
                Ok(()) => return Ok(()),
                Err(TrySendError::Full(job)) => {
                    let why = "too many ACL changes waiting for the database";
                    return Err(answer(&job, AclStatus::NotPersisted, why));
                }
                Err(TrySendError::Disconnected(again)) => {
                    warn!("the acl-admin thread has ended: starting it again");
                    *queue = None;
                    job = again;
                }
            }
        }
        Err(answer(
            &job,
            AclStatus::NotPersisted,
            "the acl-admin thread ended",
        ))
    }

    /// Takes the answers posted for reactor `index`.
    pub fn answers(&self, index: usize) -> Vec<Answer> {
        let mut posted = lock(&self.posted);
        let (mine, others) = std::mem::take(&mut *posted)
            .into_iter()
            .partition(|(reactor, _)| *reactor == index);
        *posted = others;
        mine.into_iter().map(|(_, answer)| answer).collect()
    }

    /// The `acl-admin` thread: one change at a time, for as long as the
    /// process runs.
    fn serve_changes(&self, jobs: &Receiver<Job>) {
        for job in jobs {
            let answer = self.store_one(&job);
            lock(&self.posted).push((job.reactor, answer));
            if let Some(member) = lock(&self.members).get(job.reactor) {
                if let Err(e) = member.waker.wake() {
                    warn!("cannot wake a reactor: {e}");
                }
            }
        }
    }

    /// Stores one change and, when it changed the ACL, waits until it is
    /// in force on every reactor before the answer goes back.
    fn store_one(&self, job: &Job) -> Answer {
        let [first, second, third] = job
            .args
            .each_ref()
            .map(|list| list.iter().map(String::as_str).collect::<Vec<_>>());
        let store = Store::Postgres(&job.store);
        let changed = store.change(None, |acl| {
            acl_store::apply(acl, job.op, &first, &second, &third)
        });
        match changed {
            Ok(stored) => {
                if let Some(stored) = stored {
                    self.in_force_everywhere(stored);
                    info!("backend: ACL {:?} by an admin worker, stored", job.op);
                }
                answer(job, AclStatus::Ok, "")
            }
            Err(refusal) => {
                let status = match refusal {
                    Refusal::Invalid(_) => AclStatus::Refused,
                    Refusal::Unavailable(_) => AclStatus::NotPersisted,
                };
                warn!("backend: ACL {:?} {status:?}: {refusal}", job.op);
                answer(job, status, &refusal.to_string())
            }
        }
    }
}

impl Control {
    /// Waits until the follower has put the stored version in force on
    /// every reactor: it is the one publisher of a database's ACL, so
    /// versions are put in force in order and each once. A follower that
    /// is cut off from the database cannot; after [`FOLLOWER_WAIT`] the
    /// stored ACL is put in force from here.
    fn in_force_everywhere(&self, stored: Stored) {
        let Some(version) = stored.version else {
            return;
        };
        let health = self.follow_store();
        let wanted = u64::try_from(version).unwrap_or(0);
        let deadline = Instant::now() + FOLLOWER_WAIT;
        while Instant::now() < deadline {
            if health.version.get() >= wanted {
                return;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        // Unless the follower has published a newer version meanwhile.
        if let Some(published) = self.publish_stored_acl(version, stored.acl, true) {
            warn!("ACL store: the follower has not loaded version {version}; put in force");
            self.wait_adopted(published);
        }
    }
}

/// How long the `acl-admin` thread waits for the follower to load a
/// change it stored: a notification takes milliseconds.
const FOLLOWER_WAIT: Duration = Duration::from_secs(2);

/// The answer to `job` with `status` and why, within the detail's cap.
fn answer(job: &Job, status: AclStatus, detail: &str) -> Answer {
    Answer {
        worker: job.worker,
        request: job.request,
        status,
        detail: clip(detail, Field::Detail).to_owned(),
    }
}
