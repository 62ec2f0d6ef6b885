//! Fuzz the backend node core with arbitrary sequences of events: worker
//! messages (well-formed, signed or not, and garbage) from several peers,
//! clients that come and go, full and vanished pipes, and the clock.
//!
//! Checks after every step, as docs/protocol.md and issue 12 require:
//! - memory is bounded: no worker's backlog over its cap, the worker and
//!   pending tables within `MAX_WORKERS`, no connection over
//!   `MAX_CHANNELS_PER_CONN` subscriptions;
//! - no connection is held by two workers;
//! - every client has an outcome: a connection the node assigned is held
//!   by its worker until the node hands it back in a `Lost`.
//!
//! Input layout: byte 0 picks an unsigned (even) or a signed node; then
//! each step is an opcode byte and the parameter bytes it reads.
#![no_main]

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use averyws::backend::message::{
    AuthReply, Close, List, Message, Payload, Publish, Ready, SendTo, Subscription,
};
use averyws::backend::{encode, Frames, KeyRing, Signer};
use averyws::config::WorkerLoss;
use averyws::node::channels::MAX_CHANNELS_PER_CONN;
use averyws::node::testing::{RecordingWire, TableEdge};
use averyws::node::workers::{WorkerRef, MAX_WORKERS};
use averyws::node::{Followup, Lost, Node, NodeConfig, Time};
use averyws::ws::CloseCode;
use libfuzzer_sys::fuzz_target;

const KEYS: &[u8] = b"k1:0123456789abcdef0123456789abcdef";
const QUEUE: usize = 8;
const PEERS: u8 = 4;
const CONNS: u64 = 8;
const CHANNELS: [&str; 2] = ["a", "b"];
const SERVICES: [&str; 2] = ["svc", "other"];

/// The bytes left, read one at a time (zero once spent).
struct Input<'a>(&'a [u8]);

impl Input<'_> {
    fn byte(&mut self) -> u8 {
        let Some((&first, rest)) = self.0.split_first() else {
            return 0;
        };
        self.0 = rest;
        first
    }

    fn bytes(&mut self, most: usize) -> &[u8] {
        let n = usize::from(self.byte()).min(most).min(self.0.len());
        let (taken, rest) = self.0.split_at(n);
        self.0 = rest;
        taken
    }
}

/// The node under test and what the test knows about it.
struct World {
    node: Node,
    wire: RecordingWire,
    edge: TableEdge,
    time: Time,
    signers: HashMap<u8, Signer>,
    /// Connections the node assigned, and to whom.
    assigned: HashMap<u64, WorkerRef>,
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
        };
        let signers = (0..PEERS)
            .filter(|_| signed)
            .map(|p| (p, ring.signer(instance(p))))
            .collect();
        World {
            node: Node::new(config, 0x0b00_7000),
            wire: RecordingWire::default(),
            edge: TableEdge::default(),
            time: Time {
                now: Instant::now(),
                unix_ms: 1_700_000_000_000,
            },
            signers,
            assigned: HashMap::new(),
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
                signer.encode(message, to, self.time.unix_ms, &mut out)
            }
            None => encode(message, &mut out),
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
        if let Followup::Lost(lost) = followup {
            self.outcome(lost);
        }
    }

    /// A lost worker's connections: each had been assigned to it, and is
    /// moved to another worker if one serves.
    fn outcome(&mut self, lost: Lost) {
        for conn in lost.conns {
            let holder = self.assigned.remove(&conn);
            assert_eq!(holder, Some(lost.worker), "conn {conn} was not its");
            if let Some(worker) = self.node.assign("svc", conn) {
                self.assigned.insert(conn, worker);
            }
        }
    }

    fn step(&mut self, input: &mut Input<'_>) {
        let p = input.byte() % PEERS;
        let conn = u64::from(input.byte()) % CONNS + 1;
        let text = "hello";
        match input.byte() % 18 {
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
                let publish = Publish {
                    channel: CHANNELS[usize::from(input.byte() % 2)],
                    except: (except != 0).then_some(except),
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
            10 if !self.edge.conns.contains_key(&conn) => {
                let grants: &[(&str, &str)] = match input.byte() % 3 {
                    0 => &[],
                    1 => &[("a", "subscribe"), ("b", "subscribe")],
                    _ => &[("a", "subscribe"), ("a", "publish"), ("b", "publish")],
                };
                self.edge.open(conn, grants);
                if let Some(worker) = self.node.assign("svc", conn) {
                    self.assigned.insert(conn, worker);
                }
            }
            11 => {
                self.edge.conns.remove(&conn);
                if let Some(worker) = self.assigned.remove(&conn) {
                    self.node.release(worker, conn);
                }
                self.node.forget_conn(conn);
            }
            12 => {
                self.time.now += Duration::from_millis(u64::from(input.byte()) * 10);
                self.time.unix_ms += u64::from(input.byte()) * 10;
                for lost in self.node.tick(&mut self.wire, self.time) {
                    self.outcome(lost);
                }
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
            _ => {
                if let Some(&worker) = self.assigned.get(&conn) {
                    // As a connection's farewell would.
                    let bye = Message::Bye;
                    self.node
                        .send_control(&mut self.wire, worker, &bye, self.time);
                }
            }
        }
        for lost in self.node.take_lost() {
            self.outcome(lost);
        }
        // Only what the wire took is kept by the test.
        self.wire.sent.clear();
    }

    fn check(&self) {
        assert!(self.node.backlogs().longest() <= QUEUE, "a backlog over its cap");
        let workers = self.node.workers();
        assert!(workers.len() <= MAX_WORKERS && workers.pending() <= MAX_WORKERS);
        let mut held = HashSet::new();
        for worker in workers.all() {
            let conns = &workers.get(worker).expect("listed").conns;
            for &conn in conns {
                assert!(held.insert(conn), "conn {conn} held by two workers");
            }
        }
        for (&conn, &worker) in &self.assigned {
            let holds = workers.get(worker).is_some_and(|w| w.conns.contains(&conn));
            assert!(holds, "conn {conn} lost without an outcome");
        }
        let mut per_conn: HashMap<u64, usize> = HashMap::new();
        for (conn, _) in self.node.channels().all() {
            *per_conn.entry(conn).or_default() += 1;
        }
        assert!(per_conn.values().all(|&n| n <= MAX_CHANNELS_PER_CONN));
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
