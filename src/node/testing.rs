//! A [`Wire`] and an [`Edge`] made of plain tables, to drive a [`Node`]
//! without sockets: the node's unit tests and its fuzz target use them.
//!
//! [`Node`]: super::Node

use std::collections::{HashMap, HashSet};

use super::{Edge, Refused, Wire};
use crate::backend::message::{Auth, Author, List, Payload};

/// Records what the node sends; refuses peers the test says are full or
/// gone.
#[derive(Debug, Default)]
pub struct RecordingWire {
    /// Every message sent, in order: routing id and frames.
    pub sent: Vec<(Vec<u8>, Vec<Vec<u8>>)>,
    /// Peers whose pipe is full.
    pub full: HashSet<Vec<u8>>,
    /// Peers that are gone.
    pub gone: HashSet<Vec<u8>>,
}

impl RecordingWire {
    /// The messages sent to `routing_id` so far, taken out.
    pub fn take(&mut self, routing_id: &[u8]) -> Vec<Vec<Vec<u8>>> {
        let (mine, others) = std::mem::take(&mut self.sent)
            .into_iter()
            .partition(|(to, _)| to == routing_id);
        self.sent = others;
        mine.into_iter().map(|(_, frames)| frames).collect()
    }
}

impl Wire for RecordingWire {
    fn send<'a>(
        &mut self,
        routing_id: &[u8],
        frames: impl ExactSizeIterator<Item = &'a [u8]>,
    ) -> Result<(), Refused> {
        if self.gone.contains(routing_id) {
            return Err(Refused::Gone);
        }
        if self.full.contains(routing_id) {
            return Err(Refused::Full);
        }
        let frames = frames.map(<[u8]>::to_vec).collect();
        self.sent.push((routing_id.to_vec(), frames));
        Ok(())
    }
}

/// One connection as [`TableEdge`] keeps it.
#[derive(Debug, Default, Clone)]
pub struct TableConn {
    /// Upgraded and not closing.
    pub open: bool,
    /// (resource, permission) pairs its user holds.
    pub grants: HashSet<(String, String)>,
    /// What workers delivered to it: text as is, binary as bytes.
    pub delivered: Vec<Vec<u8>>,
}

/// Connections by wire id.
#[derive(Debug, Default)]
pub struct TableEdge {
    /// The connections.
    pub conns: HashMap<u64, TableConn>,
    /// (user or role, resource, permission) the ACL grants to authors of
    /// version 2 PUBLISHes.
    pub author_grants: HashSet<(String, String, String)>,
}

impl TableEdge {
    /// Adds an open connection holding `grants`.
    pub fn open(&mut self, conn: u64, grants: &[(&str, &str)]) {
        let grants = grants
            .iter()
            .map(|&(resource, permission)| (resource.to_owned(), permission.to_owned()))
            .collect();
        let entry = TableConn {
            open: true,
            grants,
            ..TableConn::default()
        };
        self.conns.insert(conn, entry);
    }
}

impl Edge for TableEdge {
    fn deliver(&mut self, conn: u64, payload: Payload<'_>) -> bool {
        match self.conns.get_mut(&conn) {
            Some(c) if c.open => {
                c.delivered.push(payload.as_bytes().to_vec());
                true
            }
            _ => false,
        }
    }

    fn permits(&self, conn: u64, resource: &str, permission: &str) -> Option<bool> {
        let c = self.conns.get(&conn).filter(|c| c.open)?;
        let grant = (resource.to_owned(), permission.to_owned());
        Some(c.grants.contains(&grant))
    }

    fn is_open(&self, conn: u64) -> bool {
        self.conns.get(&conn).is_some_and(|c| c.open)
    }

    fn author_may(&self, author: &Author<'_>, resource: &str, permission: &str) -> bool {
        let granted = |holder: &str| {
            let grant = (
                holder.to_owned(),
                resource.to_owned(),
                permission.to_owned(),
            );
            self.author_grants.contains(&grant)
        };
        granted(author.user) || author.roles.iter().any(granted)
    }
}

/// The AUTH of upgrade `conn` (its request id): path `/`, nothing else.
pub fn upgrade(conn: u64) -> Auth<'static> {
    Auth {
        request: conn,
        peer: "",
        path: "/",
        query: "",
        headers: List::from(&[][..]),
    }
}
