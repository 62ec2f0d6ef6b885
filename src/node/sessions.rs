//! Each client connection's side of the backend protocol, as the node
//! keeps it (docs/protocol.md sections 5 to 7): what CONNECT tells a
//! worker (kept for a reassignment), the worker the connection sticks to,
//! the one message waiting for a full pipe, and how many messages that
//! worker was handed; and the upgrades waiting for an auth worker.

use std::collections::{HashMap, HashSet, VecDeque};

use super::workers::WorkerRef;
use crate::backend::message::{Connect, Message, Payload};

/// What CONNECT says about a connection, owned, as the node keeps it for
/// a reassignment. (The worker library's `Connected` is the same event
/// seen from the other side; issue 14's protocol crate is to share one
/// owned form.) Fields are CONNECT's frames 2 to the headers, in order,
/// but for the node name, which the node adds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConnectInfo {
    /// Frame 2: the route's service.
    pub service: String,
    /// Frame 4: `ip:port` of the client.
    pub peer: String,
    /// Frame 5, raw.
    pub path: String,
    /// Frame 6, raw, the token parameter left out.
    pub query: String,
    /// Frame 7, empty when none was negotiated.
    pub subprotocol: String,
    /// Frame 8, empty for a guest.
    pub user: String,
    /// The role frames: those of the token or auth service that fit.
    pub roles: Vec<String>,
    /// The header pairs forwarded, by lowercase name.
    pub headers: Vec<(&'static str, String)>,
}

impl ConnectInfo {
    /// Runs `f` on the CONNECT for connection `conn` of node `node`.
    pub fn with_connect<R>(
        &self,
        conn: u64,
        node: &str,
        reassigned: bool,
        f: impl FnOnce(&Message<'_>) -> R,
    ) -> R {
        let headers: Vec<(&str, &[u8])> = self
            .headers
            .iter()
            .map(|(name, value)| (*name, value.as_bytes()))
            .collect();
        let roles: Vec<&str> = self.roles.iter().map(String::as_str).collect();
        f(&Message::Connect(Connect {
            conn,
            reassigned,
            service: &self.service,
            node,
            peer: &self.peer,
            path: &self.path,
            query: &self.query,
            subprotocol: &self.subprotocol,
            user: &self.user,
            roles: roles.as_slice().into(),
            headers: headers.as_slice().into(),
        }))
    }
}

/// A client message kept until a worker's pipe takes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Waiting {
    text: bool,
    bytes: Vec<u8>,
}

impl Waiting {
    /// Keeps a copy of `payload`.
    pub fn of(payload: Payload<'_>) -> Waiting {
        Waiting {
            text: matches!(payload, Payload::Text(_)),
            bytes: payload.as_bytes().to_vec(),
        }
    }

    /// The message again. A text was valid UTF-8 when it was kept.
    pub fn payload(&self) -> Payload<'_> {
        match std::str::from_utf8(&self.bytes) {
            Ok(text) if self.text => Payload::Text(text),
            _ => Payload::Binary(&self.bytes),
        }
    }
}

/// One connection served by a worker.
#[derive(Debug)]
pub struct Session {
    /// For CONNECT, now and on a reassignment.
    pub info: ConnectInfo,
    /// The worker it sticks to; `None` once none is left.
    pub worker: Option<WorkerRef>,
    /// The message a full (or vanished) pipe did not take; reading from
    /// the client stops until it is sent.
    pub waiting: Option<Waiting>,
    /// Messages handed to the current worker: v1 has no acknowledgement,
    /// so each may die with it (docs/protocol.md section 6).
    pub in_flight: u64,
}

/// The sessions, the connections whose message waits, and the upgrades
/// waiting for an auth worker.
#[derive(Debug, Default)]
pub struct Sessions {
    by_conn: HashMap<u64, Session>,
    /// Connections with a waiting message, oldest first; an entry no
    /// longer in `waiting_set` is skipped.
    blocked: VecDeque<u64>,
    waiting_set: HashSet<u64>,
    /// Upgrades waiting for the AUTH_REPLY of a worker.
    auth: HashMap<u64, WorkerRef>,
}

impl Sessions {
    /// Starts serving `conn`.
    pub fn insert(&mut self, conn: u64, session: Session) {
        self.by_conn.insert(conn, session);
    }

    /// The session of `conn`.
    pub fn get(&self, conn: u64) -> Option<&Session> {
        self.by_conn.get(&conn)
    }

    /// The session of `conn`, to change.
    pub fn get_mut(&mut self, conn: u64) -> Option<&mut Session> {
        self.by_conn.get_mut(&conn)
    }

    /// Forgets `conn` (it is gone).
    pub fn remove(&mut self, conn: u64) -> Option<Session> {
        self.auth.remove(&conn);
        self.waiting_set.remove(&conn);
        self.by_conn.remove(&conn)
    }

    /// Notes that `conn`'s message waits for a pipe.
    pub fn block(&mut self, conn: u64) {
        if self.waiting_set.insert(conn) {
            self.blocked.push_back(conn);
        }
    }

    /// Notes that nothing of `conn`'s waits any more (it died with its
    /// worker).
    pub fn unblock(&mut self, conn: u64) {
        self.waiting_set.remove(&conn);
    }

    /// The connections whose message waits, oldest first, taken out: the
    /// caller blocks again those whose pipe is still full.
    pub fn take_blocked(&mut self) -> Vec<u64> {
        let waiting = std::mem::take(&mut self.waiting_set);
        std::mem::take(&mut self.blocked)
            .into_iter()
            .filter(|conn| waiting.contains(conn))
            .collect()
    }

    /// Connections whose message waits.
    pub fn blocked(&self) -> usize {
        self.waiting_set.len()
    }

    /// Sessions kept.
    pub fn len(&self) -> usize {
        self.by_conn.len()
    }

    /// True when no connection is served.
    pub fn is_empty(&self) -> bool {
        self.by_conn.is_empty()
    }

    /// Every session, for invariant checks.
    pub fn iter(&self) -> impl Iterator<Item = (u64, &Session)> {
        self.by_conn.iter().map(|(&conn, session)| (conn, session))
    }

    /// Notes that `conn`'s upgrade waits for `worker`'s verdict.
    pub fn await_auth(&mut self, conn: u64, worker: WorkerRef) {
        self.auth.insert(conn, worker);
    }

    /// The worker whose verdict `conn`'s upgrade waits for.
    pub fn auth_worker(&self, conn: u64) -> Option<WorkerRef> {
        self.auth.get(&conn).copied()
    }

    /// Ends `conn`'s wait for a verdict; the worker it waited for.
    pub fn end_auth(&mut self, conn: u64) -> Option<WorkerRef> {
        self.auth.remove(&conn)
    }

    /// Upgrades waiting for a verdict.
    pub fn auth_waits(&self) -> impl Iterator<Item = (u64, WorkerRef)> + '_ {
        self.auth.iter().map(|(&conn, &worker)| (conn, worker))
    }
}
