//! Fuzz the backend node core with arbitrary sequences of events: worker
//! messages (well-formed, signed or not, and garbage) from several peers,
//! clients that come and go, full and vanished pipes, and the clock.
//!
//! Checks after every step, as docs/protocol.md and issue 12 require:
//! - memory is bounded: no worker's backlog over its cap, the worker and
//!   pending tables within `MAX_WORKERS`, no connection over
//!   `MAX_CHANNELS_PER_CONN` subscriptions;
//! - no connection is held by two workers, and a worker holds only
//!   connections whose session (or wait for a verdict) names it;
//! - every client has an outcome: a session's worker is registered and
//!   holds it, and a dead worker's connections come back resolved: moved
//!   to a worker that holds them, or to be closed with no worker named.
//!
//! Peers 0 and 1 speak protocol version 1, peers 2 and 3 version 2
//! (batches both ways, flushed at the end of a "turn" step).
//!
//! Input layout: byte 0 picks an unsigned (even) or a signed node; then
//! each step is an opcode byte and the parameter bytes it reads.
#![no_main]

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use averyws::backend::message::{
    AuthReply, Author, Close, Initiator, List, Message, Payload, Publish, Reactors, Ready, SendTo, Subscription,
};
use averyws::backend::batch::BatchBuilder;
use averyws::backend::{encode_in, Frames, KeyRing, Signer, VERSION, VERSION_2, VERSION_3};
use averyws::config::WorkerLoss;
use averyws::node::channels::MAX_CHANNELS_PER_CONN;
use averyws::node::connections::{Outcome, Resolved};
use averyws::node::sessions::ConnectInfo;
use averyws::node::testing::{upgrade, RecordingWire, TableEdge};
use averyws::node::workers::MAX_WORKERS;
use averyws::node::{Followup, Node, NodeConfig, Time};
use averyws::ws::CloseCode;
use libfuzzer_sys::fuzz_target;

#[path = "shared/input.rs"]
mod input;
use input::Input;

const KEYS: &[u8] = b"k1:0123456789abcdef0123456789abcdef";
const QUEUE: usize = 8;
const PEERS: u8 = 4;
const CONNS: u64 = 8;
const CHANNELS: [&str; 2] = ["a", "b"];
const SERVICES: [&str; 2] = ["svc", "other"];

/// The node under test and what the test knows about it.
struct World {
    node: Node,
    wire: RecordingWire,
    edge: TableEdge,
    time: Time,
    signers: HashMap<u8, Signer>,
}

impl World {
    fn new(signed: bool) -> World {
        let ring = KeyRing::parse(KEYS).expect("valid key file");
        let config = NodeConfig {
            name: "fuzz".to_owned(),
            keys: signed.then(|| ring.clone()),
            admin_keys: vec!["k1".to_owned()],
            heartbeat: Duration::from_millis(100),
            liveness: 3,
            max_payload: 64,
            worker_queue: QUEUE,
            worker_loss: WorkerLoss::Reassign,
            max_workers: MAX_WORKERS,
            max_channels_per_conn: MAX_CHANNELS_PER_CONN,
            reactors: Reactors { index: 1, count: 2 },
        };
        let signers = (0..PEERS)
            .filter(|_| signed)
            .map(|p| (p, ring.signer(instance(p))))
            .collect();
        let mut edge = TableEdge::default();
        let grant = ("u".to_owned(), "a".to_owned(), "publish".to_owned());
        edge.author_grants.insert(grant);
        World {
            node: Node::new(config, 0x0b00_7000),
            wire: RecordingWire::default(),
            edge,
            time: Time {
                now: Instant::now(),
                unix_ms: 1_700_000_000_000,
            },
            signers,
        }
    }

    /// `message` from peer `p`, signed on a signed node.
    fn from(&mut self, p: u8, message: &Message<'_>) {
        let mut out = Frames::new();
        let encoded = match self.signers.get_mut(&p) {
            Some(signer) => {
                let to = match message {
                    Message::Ready(_) => 0,
                    _ => self.node.boot(),
                };
                signer.encode(version(p), message, to, self.time.unix_ms, &mut out)
            }
            None => encode_in(version(p), message, &mut out),
        };
        if encoded.is_ok() {
            let frames: Vec<Vec<u8>> = out.iter().map(<[u8]>::to_vec).collect();
            self.raw(p, &frames);
        }
    }

    fn raw(&mut self, p: u8, frames: &[Vec<u8>]) {
        let views: Vec<&[u8]> = frames.iter().map(Vec::as_slice).collect();
        let followup = self
            .node
            .handle(&mut self.wire, &mut self.edge, &[p], &views, self.time);
        if let Followup::Lost(resolved) = followup {
            self.outcome(&resolved);
        }
    }

    /// A dead worker's connections: a moved one is held by its new
    /// worker; one to close names none (the client's close follows).
    fn outcome(&mut self, resolved: &[Resolved]) {
        for (i, &Resolved { conn, outcome }) in resolved.iter().enumerate() {
            // Moved to a worker that died next: the later entry counts.
            if resolved[i + 1..].iter().any(|later| later.conn == conn) {
                continue;
            }
            let workers = self.node.workers();
            let session = self.node.sessions().get(conn);
            let worker = session.and_then(|s| s.worker);
            match outcome {
                Outcome::Moved => {
                    let held = worker.and_then(|w| workers.get(w));
                    assert!(held.is_some_and(|w| w.conns.contains(&conn)), "{conn} moved nowhere");
                }
                Outcome::Close(..) => assert_eq!(worker, None, "{conn} closed but served"),
                Outcome::AuthLost => {
                    assert_eq!(self.node.sessions().auth_worker(conn), None);
                }
            }
            if !matches!(outcome, Outcome::Moved) {
                self.gone(conn);
            }
        }
    }

    /// True while the node or the edge knows the connection.
    fn known(&self, conn: u64) -> bool {
        let sessions = self.node.sessions();
        self.edge.conns.contains_key(&conn)
            || sessions.get(conn).is_some()
            || sessions.auth_worker(conn).is_some()
    }

    /// The client leaves (or is closed): the node is told.
    fn gone(&mut self, conn: u64) {
        self.edge.conns.remove(&conn);
        let why = (CloseCode(1000), Initiator::Client);
        self.node.close(&mut self.wire, conn, why, self.time);
    }

    fn step(&mut self, input: &mut Input<'_>) {
        let p = input.byte() % PEERS;
        let conn = u64::from(input.byte()) % CONNS + 1;
        let text = "hello";
        match input.byte() % 20 {
            0 => {
                let bits = input.byte();
                let services: Vec<&str> = SERVICES
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| bits & (1 << i) != 0)
                    .map(|(_, s)| *s)
                    .collect();
                let services = if services.is_empty() {
                    vec!["svc"]
                } else {
                    services
                };
                // Bit 4: another instance on the same pipe (a restart).
                let ready = Ready {
                    instance: instance(p) ^ u64::from(bits & 0x10) << 4,
                    name: "w",
                    services: List::from(services.as_slice()),
                };
                self.from(p, &Message::Ready(ready));
            }
            1 => self.from(p, &Message::Heartbeat { boot: instance(p) }),
            2 => self.from(p, &Message::Bye),
            3 => {
                let conns: Vec<u64> = (0..input.byte() % 4 + 1)
                    .map(|_| u64::from(input.byte()) % CONNS + 1)
                    .collect();
                let payload = Payload::Text(text);
                let send = SendTo {
                    conns: List::from(conns.as_slice()),
                    payload,
                };
                self.from(p, &Message::Send(send));
            }
            4 => {
                let except = u64::from(input.byte()) % (CONNS + 1);
                // Version 2 peers may name an author (v1 cannot carry one).
                let roles = ["r"];
                let author = (version(p) >= VERSION_2 && input.byte() % 2 == 0).then(|| Author {
                    user: ["", "u"][usize::from(input.byte() % 2)],
                    roles: List::from(&roles[..usize::from(input.byte() % 2)]),
                });
                let publish = Publish {
                    channel: CHANNELS[usize::from(input.byte() % 2)],
                    except: (except != 0).then_some(except),
                    author,
                    payload: Payload::Binary(input.bytes(80)),
                };
                self.from(p, &Message::Publish(publish));
            }
            5 | 6 => {
                let sub = Subscription {
                    conn,
                    channel: CHANNELS[usize::from(input.byte() % 2)],
                };
                let message = if input.byte() % 2 == 0 {
                    Message::Subscribe(sub)
                } else {
                    Message::Unsubscribe(sub)
                };
                self.from(p, &message);
            }
            7 => {
                let close = Close {
                    conn,
                    code: CloseCode(1000),
                    reason: "bye",
                };
                self.from(p, &Message::Close(close));
            }
            8 => {
                let reply = AuthReply {
                    request: conn,
                    allow: true,
                    user: "u",
                    roles: List::from(&[][..]),
                };
                self.from(p, &Message::AuthReply(reply));
            }
            9 => {
                let frames: Vec<Vec<u8>> = (0..input.byte() % 5)
                    .map(|_| input.bytes(24).to_vec())
                    .collect();
                self.raw(p, &frames);
            }
            10 if !self.known(conn) => {
                let grants: &[(&str, &str)] = match input.byte() % 3 {
                    0 => &[],
                    1 => &[("a", "subscribe"), ("b", "subscribe")],
                    _ => &[("a", "subscribe"), ("a", "publish"), ("b", "publish")],
                };
                let info = ConnectInfo {
                    service: "svc".to_owned(),
                    path: "/w".to_owned(),
                    ..ConnectInfo::default()
                };
                if input.byte() % 4 == 0 {
                    // An upgrade asking the auth service instead.
                    let auth = upgrade(conn);
                    self.node.ask_auth(&mut self.wire, "svc", &auth, self.time);
                } else if self.node.open(&mut self.wire, conn, info, self.time) {
                    self.edge.open(conn, grants);
                } else {
                    self.gone(conn);
                }
            }
            11 => self.gone(conn),
            12 => {
                self.time.now += Duration::from_millis(u64::from(input.byte()) * 10);
                self.time.unix_ms += u64::from(input.byte()) * 10;
                let resolved = self.node.tick(&mut self.wire, self.time);
                self.outcome(&resolved);
            }
            13 => toggle(&mut self.wire.full, p),
            14 => toggle(&mut self.wire.gone, p),
            15 => self.node.flush_backlogs(&mut self.wire, self.time.now),
            16 => {
                if let Some(c) = self.edge.conns.get_mut(&conn) {
                    c.grants.clear();
                }
                self.node
                    .recheck_subscriptions(&mut self.wire, &self.edge, self.time);
            }
            17 => {
                let mut batch = BatchBuilder::default();
                for _ in 0..input.byte() % 4 + 1 {
                    let to = u64::from(input.byte()) % CONNS + 1;
                    batch.push(to, Payload::Binary(input.bytes(80)));
                }
                self.from(p, &Message::Sends(batch.batch()));
            }
            18 => self.node.flush_batches(&mut self.wire, self.time),
            _ => {
                let payload = Payload::Binary(input.bytes(16));
                let _ = self.node.message(&mut self.wire, conn, payload, self.time);
                for conn in self.node.retry(&mut self.wire, self.time) {
                    assert!(self.node.sessions().get(conn).is_some(), "{conn} resumed");
                }
            }
        }
        let resolved = self.node.take_lost(&mut self.wire, self.time);
        self.outcome(&resolved);
        // Only what the wire took is kept by the test.
        self.wire.sent.clear();
    }

    fn check(&self) {
        assert!(self.node.backlogs().longest() <= QUEUE, "a backlog over its cap");
        let workers = self.node.workers();
        assert!(workers.len() <= MAX_WORKERS && workers.pending() <= MAX_WORKERS);
        let sessions = self.node.sessions();
        let mut held = HashSet::new();
        for worker in workers.all() {
            let conns = &workers.get(worker).expect("listed").conns;
            for &conn in conns {
                assert!(held.insert(conn), "conn {conn} held by two workers");
                let named = sessions.get(conn).and_then(|s| s.worker) == Some(worker)
                    || sessions.auth_worker(conn) == Some(worker);
                assert!(named, "conn {conn} held by a worker it does not know");
            }
        }
        for (conn, session) in sessions.iter() {
            if let Some(worker) = session.worker {
                let holds = workers.get(worker).is_some_and(|w| w.conns.contains(&conn));
                assert!(holds, "conn {conn} lost without an outcome");
            }
        }
        assert!(sessions.blocked() <= sessions.len());
        let mut per_conn: HashMap<u64, usize> = HashMap::new();
        for (conn, _) in self.node.channels().all() {
            *per_conn.entry(conn).or_default() += 1;
        }
        assert!(per_conn.values().all(|&n| n <= MAX_CHANNELS_PER_CONN));
    }
}

/// The protocol version peer `p` speaks.
fn version(p: u8) -> u8 {
    match p {
        0 | 1 => VERSION,
        2 => VERSION_2,
        _ => VERSION_3,
    }
}

/// Peer `p`'s instance id.
fn instance(p: u8) -> u64 {
    0x1000 + u64::from(p)
}

fn toggle(set: &mut HashSet<Vec<u8>>, p: u8) {
    if !set.remove(&[p][..]) {
        set.insert(vec![p]);
    }
}

fuzz_target!(|data: &[u8]| {
    let mut input = Input(data);
    let mut world = World::new(input.byte() % 2 == 1);
    // Bounded work per input, whatever its length.
    for _ in 0..512 {
        if input.0.is_empty() {
            break;
        }
        world.step(&mut input);
        world.check();
    }
});
