//! Connection events in the node (docs/protocol.md sections 5 to 7): a
//! client served by a worker opens, sends, waits for a full pipe and
//! closes; an upgrade asks the auth service; and a worker's death decides
//! what becomes of each of its connections.

use super::sessions::{ConnectInfo, Session, Waiting};
use super::{Delivery, Lost, Node, Time, Wire};
use crate::backend::message::{Auth, Data, Disconnect, Initiator, Message, Payload};
use crate::ws::CloseCode;

/// What became of a connection whose worker died.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Another worker has it (a fresh CONNECT, REASSIGNED).
    Moved,
    /// The client is to be closed with this code and reason.
    Close(CloseCode, &'static str),
    /// Its upgrade waited for the dead worker's verdict: 503.
    AuthLost,
}

/// One connection of a dead worker, and its outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Resolved {
    /// The connection.
    pub conn: u64,
    /// What becomes of it.
    pub outcome: Outcome,
}

impl Node {
    /// A client upgraded to a worker's service: a worker is chosen and
    /// told (CONNECT). False when none serves it (the client gets 1013).
    pub fn open(&mut self, wire: &mut impl Wire, conn: u64, info: ConnectInfo, time: Time) -> bool {
        let session = Session {
            info,
            worker: None,
            waiting: None,
            in_flight: 0,
        };
        self.sessions.insert(conn, session);
        self.attach(wire, conn, false, time)
    }

    /// Hands a client's message to its worker. False when the pipe did
    /// not take it: the node keeps it, the client's reading pauses, and
    /// [`Node::retry`] names the connection once it is out.
    pub fn message(
        &mut self,
        wire: &mut impl Wire,
        conn: u64,
        payload: Payload<'_>,
        time: Time,
    ) -> bool {
        // No worker left: the connection is closing (1013 or 1012).
        let Some(worker) = self.sessions.get(conn).and_then(|s| s.worker) else {
            return true;
        };
        let sent = self.send_client_message(wire, worker, conn, payload, time) == Delivery::Sent;
        if let Some(session) = self.sessions.get_mut(conn) {
            if sent {
                session.in_flight += 1;
            } else {
                // Gone: the worker's connections move, and this goes with.
                session.waiting = Some(Waiting::of(payload));
                self.sessions.block(conn);
            }
        }
        sent
    }

    /// Tries every waiting message again; the connections whose message
    /// went out, whose reading may resume.
    pub fn retry(&mut self, wire: &mut impl Wire, time: Time) -> Vec<u64> {
        let mut resumed = Vec::new();
        for conn in self.sessions.take_blocked() {
            let Some(session) = self.sessions.get_mut(conn) else {
                continue;
            };
            let (Some(worker), Some(waiting)) = (session.worker, session.waiting.take()) else {
                continue;
            };
            let payload = waiting.payload();
            let sent =
                self.send_client_message(wire, worker, conn, payload, time) == Delivery::Sent;
            let Some(session) = self.sessions.get_mut(conn) else {
                continue;
            };
            if sent {
                session.in_flight += 1;
                resumed.push(conn);
            } else {
                session.waiting = Some(waiting);
                self.sessions.block(conn);
            }
        }
        resumed
    }

    /// Connections whose message waits for a pipe.
    pub fn blocked(&self) -> usize {
        self.sessions.blocked()
    }

    /// The connection is gone: its worker gets the message that was still
    /// waiting, then DISCONNECT, and the node forgets it.
    pub fn close(
        &mut self,
        wire: &mut impl Wire,
        conn: u64,
        (code, initiator): (CloseCode, Initiator),
        time: Time,
    ) {
        self.auth_done(conn);
        self.channels.remove_conn(conn);
        let Some(session) = self.sessions.remove(conn) else {
            return;
        };
        let Some(worker) = session.worker else {
            return;
        };
        if let Some(waiting) = &session.waiting {
            let payload = waiting.payload();
            let data = Message::Message(Data { conn, payload });
            self.send_control(wire, worker, &data, time);
        }
        let disconnect = Disconnect {
            conn,
            code,
            initiator,
            reason: "",
        };
        self.send_control(wire, worker, &Message::Disconnect(disconnect), time);
        self.workers.release(worker, conn);
    }

    /// Asks a worker of `service` to judge an upgrade (AUTH; the request
    /// id is the connection id). False when the service has no worker.
    pub fn ask_auth(
        &mut self,
        wire: &mut impl Wire,
        service: &str,
        auth: &Auth<'_>,
        time: Time,
    ) -> bool {
        let conn = auth.request;
        let Some(worker) = self.workers.assign(service, conn) else {
            return false;
        };
        self.sessions.await_auth(conn, worker);
        self.send_control(wire, worker, &Message::Auth(*auth), time);
        true
    }

    /// The upgrade no longer waits for a verdict (it came, timed out, or
    /// the client left).
    pub fn auth_done(&mut self, conn: u64) {
        if let Some(worker) = self.sessions.end_auth(conn) {
            self.workers.release(worker, conn);
        }
    }

    /// Client messages handed to workers that then died.
    pub fn lost_messages(&self) -> u64 {
        self.lost_messages
    }

    /// What becomes of each connection of a dead worker (docs/protocol.md
    /// section 6). With `reassign`, one that never handed it a message
    /// goes to another worker (none left: 1013); any other is closed with
    /// 1012, its messages counted as lost: v1 has no acknowledgement.
    pub(super) fn resolve(
        &mut self,
        wire: &mut impl Wire,
        lost: Lost,
        time: Time,
    ) -> Vec<Resolved> {
        let mut resolved = Vec::with_capacity(lost.conns.len());
        for conn in lost.conns {
            if self.sessions.auth_worker(conn) == Some(lost.worker) {
                self.sessions.end_auth(conn);
                resolved.push(Resolved {
                    conn,
                    outcome: Outcome::AuthLost,
                });
                continue;
            }
            let Some(session) = self.sessions.get_mut(conn) else {
                continue;
            };
            if session.worker != Some(lost.worker) {
                continue;
            }
            session.worker = None;
            let in_flight = std::mem::take(&mut session.in_flight);
            self.lost_messages += in_flight;
            let outcome = if lost.reassign && in_flight == 0 {
                self.reattach(wire, conn, time)
            } else {
                session.waiting = None;
                self.sessions.unblock(conn);
                let reason = if in_flight == 0 {
                    "worker lost"
                } else {
                    "worker lost with messages in flight"
                };
                Outcome::Close(CloseCode::SERVICE_RESTART, reason)
            };
            resolved.push(Resolved { conn, outcome });
        }
        resolved
    }

    /// Gives a connection with nothing in flight another worker; its
    /// waiting message, if any, goes there at the next [`Node::retry`].
    fn reattach(&mut self, wire: &mut impl Wire, conn: u64, time: Time) -> Outcome {
        if self.attach(wire, conn, true, time) {
            if self.sessions.get(conn).is_some_and(|s| s.waiting.is_some()) {
                self.sessions.block(conn);
            }
            return Outcome::Moved;
        }
        if let Some(session) = self.sessions.get_mut(conn) {
            session.waiting = None;
        }
        self.sessions.unblock(conn);
        Outcome::Close(CloseCode::TRY_AGAIN_LATER, "no worker for this service")
    }

    /// Assigns the session a worker of its service and sends it CONNECT;
    /// false when none serves the service.
    fn attach(&mut self, wire: &mut impl Wire, conn: u64, reassigned: bool, time: Time) -> bool {
        // CONNECT borrows the session's details while sending needs the
        // node: they are taken out for the while.
        let Some(info) = self
            .sessions
            .get_mut(conn)
            .map(|s| std::mem::take(&mut s.info))
        else {
            return false;
        };
        let worker = self.workers.assign(&info.service, conn);
        if let Some(worker) = worker {
            let name = self.config.name.clone();
            info.with_connect(conn, &name, reassigned, |connect| {
                self.send_control(wire, worker, connect, time);
            });
        }
        if let Some(session) = self.sessions.get_mut(conn) {
            session.info = info;
            session.worker = worker;
        }
        worker.is_some()
    }
}
