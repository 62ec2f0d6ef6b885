//! The reactor's side of ACL administration: an ACL_COMMAND from a worker
//! is refused unless an admin key signed it, carried out by
//! [`Access::administer`](crate::access::Access::administer) on the latest
//! ACL (one change at a time across reactors), put in force here and
//! published to the other reactors, answered with ACL_RESULT, and followed
//! by a re-check of every live connection (as after SIGHUP). A change to a
//! database store is handed to the `acl-admin` thread instead
//! (`control::store_changes`), and answered when it posts the outcome: the
//! reactor never waits for the database.

use std::time::Instant;

use log::{info, warn};

use super::Reactor;
use crate::backend::message::{
    AclCommand, AclOp, AclResult, AclStatus, ErrorCode, Message, MessageType,
};
use crate::control::store_changes::{Answer, Job};
use crate::node::dispatch::error;
use crate::node::workers::WorkerRef;

impl Reactor {
    /// Handles one ACL_COMMAND from `worker`; `admin` is true when the
    /// message was verified with a key id given to `--backend-admin-key`.
    pub(super) fn on_acl_command(
        &mut self,
        worker: WorkerRef,
        command: AclCommand<'_>,
        admin: bool,
        now: Instant,
    ) {
        if !admin {
            warn!(
                "backend: ACL {:?} refused: not signed with an admin key",
                command.op
            );
            let reply = error(
                ErrorCode::FORBIDDEN,
                MessageType::AclCommand as u8,
                "ACL_COMMAND needs an admin key",
                &[],
            );
            return self.send_to_worker(worker, &reply, now);
        }
        if let Some(store) = self
            .access
            .database()
            .filter(|_| command.op != AclOp::Explain)
        {
            let job = Job {
                reactor: self.index,
                worker,
                request: command.request,
                op: command.op,
                args: command
                    .args
                    .map(|list| list.iter().map(str::to_owned).collect()),
                store: store.clone(),
            };
            if let Err(answer) = self.control.store_change(job) {
                self.answer(&answer, now);
            }
            return;
        }
        let access = &self.access;
        let (outcome, published) = self
            .control
            .change_acl(|latest| access.administer(latest.unwrap_or(access.acl()), &command));
        match outcome.status {
            AclStatus::Ok if outcome.changed => {
                info!(
                    "backend: ACL {:?} by an admin worker, persisted",
                    command.op
                );
            }
            AclStatus::Ok => {}
            status => warn!(
                "backend: ACL {:?} {status:?}: {}",
                command.op, outcome.detail
            ),
        }
        if let Some((version, acl)) = published {
            // In force here before the answer; the other reactors take it
            // from the control state.
            self.access.put_acl(acl);
            self.seen.acl_in_force(version);
            self.recheck_access();
        }
        let reply = Message::AclResult(AclResult {
            request: command.request,
            status: outcome.status,
            decision: outcome.decision,
            detail: &outcome.detail,
            explanation: &outcome.explanation,
        });
        self.send_to_worker(worker, &reply, now);
    }

    /// Sends the ACL_RESULT of a change the `acl-admin` thread stored.
    pub(super) fn answer(&mut self, answer: &Answer, now: Instant) {
        let reply = Message::AclResult(AclResult {
            request: answer.request,
            status: answer.status,
            decision: None,
            detail: &answer.detail,
            explanation: "",
        });
        self.send_to_worker(answer.worker, &reply, now);
    }
}
