//! Table-driven tests of the node core against docs/protocol.md: every
//! command and event a worker sends, as [`Node`] handles it, on a
//! [`RecordingWire`] and a [`TableEdge`], in virtual time (nothing sleeps).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use super::channels::MAX_CHANNELS_PER_CONN;
use super::connections::{Outcome as Fate, Resolved};
use super::dispatch::error;
use super::sessions::ConnectInfo;
use super::testing::{upgrade, RecordingWire, TableConn, TableEdge};
use super::workers::{WorkerRef, MAX_WORKERS};
use super::{Delivery, Followup, Node, NodeConfig, Time};
use crate::access::{PUBLISH, SUBSCRIBE};
use crate::backend::batch::{BatchBuilder, MAX_BATCHED_PAYLOAD};
use crate::backend::message::{
    AclCommand, AclOp, AuthReply, Author, Close, Data, Disconnect, ErrorCode, Initiator, List,
    MessageType, Payload, Publish, Reactors, Ready, SendTo, Subscription, Welcome,
};
use crate::backend::{
    decode, encode_in, Frames, KeyRing, Message, Signer, VERSION, VERSION_2, VERSION_3,
};
use crate::config::WorkerLoss;
use crate::ws::CloseCode;

mod authority;
mod batching;
mod commands;
mod pipes;
mod sessions;
mod workers;

/// The node's boot id.
const BOOT: u64 = 0xB007;
/// A boot id of the node before it restarted.
const OLD_BOOT: u64 = 0xB006;
/// `Time::unix_ms` when every test starts.
const EPOCH_MS: u64 = 1_700_000_000_000;
const BEAT: Duration = Duration::from_millis(1000);
const LIVENESS: u8 = 3;
const MAX_PAYLOAD: u32 = 8;
/// `worker_queue`: the most messages waiting for one worker.
const QUEUE: usize = 2;
/// The allowed clock skew of signed messages (the verifier's default).
const SKEW_MS: u64 = 30_000;

/// The node's key file: `k1` signs, both verify, `admin` administers.
const NODE_KEYS: &[u8] =
    b"k1:0123456789abcdef0123456789abcdef\nadmin:fedcba9876543210fedcba9876543210\n";
/// An ordinary worker's key file.
const WORKER_KEYS: &[u8] = b"k1:0123456789abcdef0123456789abcdef\n";
/// An admin worker's key file.
const ADMIN_KEYS: &[u8] = b"admin:fedcba9876543210fedcba9876543210\n";
/// A key the node does not know.
const STRANGER_KEYS: &[u8] = b"k9:0123456789abcdef0123456789abcdef\n";

/// A worker as the node sees it: the pipe its messages come on and the
/// instance id it signs as.
#[derive(Debug, Clone, Copy)]
struct Peer {
    pipe: &'static [u8],
    instance: u64,
    /// The protocol version it speaks.
    version: u8,
}

/// A version 1 worker on `pipe`, signing as `instance`.
const fn v1(pipe: &'static [u8], instance: u64) -> Peer {
    Peer {
        pipe,
        instance,
        version: VERSION,
    }
}

const A: Peer = v1(b"pipe-a", 0xA1);
const B: Peer = v1(b"pipe-b", 0xB1);
const C: Peer = v1(b"pipe-c", 0xC1);
/// A's worker restarted as a new instance on the same pipe.
const A2: Peer = v1(A.pipe, 0xA2);
/// A's instance, heard on another pipe.
const A_ELSEWHERE: Peer = v1(b"pipe-x", A.instance);
/// A version 2 worker (docs/protocol.md section 13).
const V2: Peer = Peer {
    pipe: b"pipe-v2",
    instance: 0xD1,
    version: VERSION_2,
};

/// What [`Node::handle`] asked of the caller, owned.
#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    Done,
    Lost(Vec<Resolved>),
    Close {
        conn: u64,
        code: u16,
        reason: String,
    },
    AuthReply {
        conn: u64,
        worker: WorkerRef,
        user: String,
    },
    AclCommand {
        worker: WorkerRef,
        request: u64,
        admin: bool,
    },
}

impl From<Followup<'_>> for Outcome {
    fn from(followup: Followup<'_>) -> Outcome {
        match followup {
            Followup::Done => Outcome::Done,
            Followup::Lost(lost) => Outcome::Lost(lost),
            Followup::Close { conn, code, reason } => Outcome::Close {
                conn,
                code: code.0,
                reason: reason.to_owned(),
            },
            Followup::AuthReply {
                conn,
                worker,
                reply,
            } => Outcome::AuthReply {
                conn,
                worker,
                user: reply.user.to_owned(),
            },
            Followup::AclCommand {
                worker,
                command,
                admin,
            } => Outcome::AclCommand {
                worker,
                request: command.request,
                admin,
            },
        }
    }
}

/// A message the node sent a worker, owned.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Reply {
    Heartbeat {
        boot: u64,
    },
    Bye,
    Welcome {
        boot: u64,
        heartbeat_ms: u32,
        liveness: u8,
        max_payload: u32,
        node: String,
        reactors: Reactors,
    },
    Error {
        code: ErrorCode,
        about: u8,
        detail: String,
        conns: Vec<u64>,
    },
    Connect {
        conn: u64,
        service: String,
        reassigned: bool,
    },
    /// MESSAGE: a client's data.
    Data {
        conn: u64,
        payload: Vec<u8>,
    },
    /// MESSAGES: clients' data, batched (version 2).
    Batch(Vec<(u64, Vec<u8>)>),
    Disconnect {
        conn: u64,
        code: u16,
        initiator: Initiator,
    },
    Auth {
        request: u64,
    },
    /// Anything else, by type.
    Other(MessageType),
}

impl From<Message<'_>> for Reply {
    fn from(message: Message<'_>) -> Reply {
        match message {
            Message::Heartbeat { boot } => Reply::Heartbeat { boot },
            Message::Bye => Reply::Bye,
            Message::Welcome(w) => Reply::Welcome {
                boot: w.boot,
                heartbeat_ms: w.heartbeat_ms,
                liveness: w.liveness,
                max_payload: w.max_payload,
                node: w.node.to_owned(),
                reactors: w.reactors,
            },
            Message::Error(e) => Reply::Error {
                code: e.code,
                about: e.about,
                detail: e.detail.to_owned(),
                conns: e.conns.iter().collect(),
            },
            Message::Connect(c) => Reply::Connect {
                conn: c.conn,
                service: c.service.to_owned(),
                reassigned: c.reassigned,
            },
            Message::Message(d) => Reply::Data {
                conn: d.conn,
                payload: d.payload.as_bytes().to_vec(),
            },
            Message::Messages(batch) => Reply::Batch(
                batch
                    .records()
                    .map(|(conn, payload)| (conn, payload.as_bytes().to_vec()))
                    .collect(),
            ),
            Message::Disconnect(d) => Reply::Disconnect {
                conn: d.conn,
                code: d.code.0,
                initiator: d.initiator,
            },
            Message::Auth(a) => Reply::Auth { request: a.request },
            other => Reply::Other(other.message_type()),
        }
    }
}

/// The WELCOME this test node sends (section 3).
fn welcome() -> Reply {
    welcome_as(Reactors::ALONE)
}

/// The WELCOME this test node sends saying `reactors` (section 14).
fn welcome_as(reactors: Reactors) -> Reply {
    Reply::Welcome {
        boot: BOOT,
        heartbeat_ms: 1000,
        liveness: LIVENESS,
        max_payload: MAX_PAYLOAD,
        node: "node-1".to_owned(),
        reactors,
    }
}

/// An ERROR the node sends about a message of type `about`.
fn err(code: ErrorCode, about: MessageType, detail: &str, conns: &[u64]) -> Reply {
    Reply::Error {
        code,
        about: about as u8,
        detail: detail.to_owned(),
        conns: conns.to_vec(),
    }
}

/// The CONNECT for `conn` to `service` (section 5; REASSIGNED after a
/// worker died, section 6).
fn connect(conn: u64, service: &str, reassigned: bool) -> Reply {
    Reply::Connect {
        conn,
        service: service.to_owned(),
        reassigned,
    }
}

/// The MESSAGE carrying a client's `payload`.
fn carried(conn: u64, payload: &[u8]) -> Reply {
    Reply::Data {
        conn,
        payload: payload.to_vec(),
    }
}

/// What became of connection `conn` of a dead worker (section 6).
fn resolved(conn: u64, outcome: Fate) -> Resolved {
    Resolved { conn, outcome }
}

/// Closed with 1012: its worker died holding a message of it.
const IN_FLIGHT: Fate = Fate::Close(
    CloseCode::SERVICE_RESTART,
    "worker lost with messages in flight",
);
/// Closed with 1012 under worker-loss close, nothing in flight.
const WORKER_LOST: Fate = Fate::Close(CloseCode::SERVICE_RESTART, "worker lost");
/// Closed with 1013: no live worker serves its service.
const NO_WORKER: Fate = Fate::Close(CloseCode::TRY_AGAIN_LATER, "no worker for this service");

/// The node, its wire and connections, the time, and the workers' signers.
struct Harness {
    node: Node,
    wire: RecordingWire,
    edge: TableEdge,
    t: Time,
    /// Per instance id; made from [`WORKER_KEYS`] on first use.
    signers: HashMap<u64, Signer>,
}

impl Harness {
    /// An unsigned node.
    fn new() -> Harness {
        Harness::with(|_| {})
    }

    /// A node with [`NODE_KEYS`].
    fn signed() -> Harness {
        Harness::with(|config| config.keys = Some(ring(NODE_KEYS)))
    }

    /// An unsigned node, its configuration changed by `edit`.
    fn with(edit: impl FnOnce(&mut NodeConfig)) -> Harness {
        let mut config = NodeConfig {
            name: "node-1".to_owned(),
            keys: None,
            admin_keys: vec!["admin".to_owned()],
            heartbeat: BEAT,
            liveness: LIVENESS,
            max_payload: MAX_PAYLOAD,
            worker_queue: QUEUE,
            worker_loss: WorkerLoss::Reassign,
            max_workers: MAX_WORKERS,
            max_channels_per_conn: MAX_CHANNELS_PER_CONN,
            reactors: Reactors::ALONE,
        };
        edit(&mut config);
        Harness {
            node: Node::new(config, BOOT),
            wire: RecordingWire::default(),
            edge: TableEdge::default(),
            t: Time {
                now: Instant::now(),
                unix_ms: EPOCH_MS,
            },
            signers: HashMap::new(),
        }
    }

    fn advance(&mut self, by: Duration) {
        self.t.now += by;
        self.t.unix_ms += u64::try_from(by.as_millis()).expect("a test's duration");
    }

    /// From now on `peer` signs with the first key of `keys`.
    fn use_keys(&mut self, peer: Peer, keys: &[u8]) {
        let signer = ring(keys).signer(peer.instance);
        self.signers.insert(peer.instance, signer);
    }

    /// `message` signed by `peer` for `recipient`, stamped `late_ms` ago.
    fn sign(
        &mut self,
        peer: Peer,
        recipient: u64,
        late_ms: u64,
        message: &Message<'_>,
    ) -> Vec<Vec<u8>> {
        let at = self.t.unix_ms - late_ms;
        let signer = self
            .signers
            .entry(peer.instance)
            .or_insert_with(|| ring(WORKER_KEYS).signer(peer.instance));
        let mut out = Frames::new();
        signer
            .encode(peer.version, message, recipient, at, &mut out)
            .expect("encodes");
        owned(&out)
    }

    /// `message` as `peer` sends it: signed for this boot (READY for
    /// recipient 0) when the node is signed, unsigned otherwise.
    fn frames(&mut self, peer: Peer, message: &Message<'_>) -> Vec<Vec<u8>> {
        if !self.node.is_signed() {
            return unsigned(peer.version, message);
        }
        let recipient = match message {
            Message::Ready(_) => 0,
            _ => self.node.boot(),
        };
        self.sign(peer, recipient, 0, message)
    }

    /// `peer` sends `message`.
    fn from(&mut self, peer: Peer, message: &Message<'_>) -> Outcome {
        let frames = self.frames(peer, message);
        self.raw(peer.pipe, &frames)
    }

    /// These frames arrive on `pipe`.
    fn raw(&mut self, pipe: &[u8], frames: &[Vec<u8>]) -> Outcome {
        let frames: Vec<&[u8]> = frames.iter().map(Vec::as_slice).collect();
        let (wire, edge) = (&mut self.wire, &mut self.edge);
        self.node.handle(wire, edge, pipe, &frames, self.t).into()
    }

    /// `peer` registers for `services` (and, signed, confirms); what the
    /// node answered is taken out.
    fn join(&mut self, peer: Peer, services: &[&str]) -> WorkerRef {
        self.from(peer, &ready(peer.instance, services));
        if self.node.is_signed() {
            self.from(peer, &heartbeat(peer));
        }
        self.wire.take(peer.pipe);
        self.worker(peer).expect("registered")
    }

    /// The worker registered on `peer`'s pipe.
    fn worker(&self, peer: Peer) -> Option<WorkerRef> {
        self.node.workers().by_routing_id(peer.pipe)
    }

    /// The connections `worker` holds, sorted.
    fn conns_of(&self, worker: WorkerRef) -> Vec<u64> {
        let mut conns: Vec<u64> = self
            .node
            .workers()
            .get(worker)
            .expect("registered")
            .conns
            .iter()
            .copied()
            .collect();
        conns.sort_unstable();
        conns
    }

    /// What the node sent on `peer`'s pipe, taken out, each with the
    /// recipient it is signed for (`None`: unsigned).
    fn addressed_replies(&mut self, peer: Peer) -> Vec<(Reply, Option<u64>)> {
        let sent = self.wire.take(peer.pipe);
        sent.iter()
            .map(|frames| {
                let frames: Vec<&[u8]> = frames.iter().map(Vec::as_slice).collect();
                let reply = Reply::from(decode(&frames).expect("the node sends valid v1"));
                (reply, recipient(&frames))
            })
            .collect()
    }

    /// What the node sent on `peer`'s pipe, taken out.
    fn replies(&mut self, peer: Peer) -> Vec<Reply> {
        let replies = self.addressed_replies(peer);
        replies.into_iter().map(|(reply, _)| reply).collect()
    }

    /// The connections that got `payload`, exactly once, sorted.
    fn received(&self, payload: &[u8]) -> Vec<u64> {
        let mut conns: Vec<u64> = self
            .edge
            .conns
            .iter()
            .filter(|(_, c)| c.delivered == [payload])
            .map(|(&conn, _)| conn)
            .collect();
        conns.sort_unstable();
        conns
    }

    /// The subscribers of `channel`, sorted.
    fn subscribers(&self, channel: &str) -> Vec<u64> {
        let mut conns = self.node.channels().subscribers(channel);
        conns.sort_unstable();
        conns
    }

    fn tick(&mut self) -> Vec<Resolved> {
        self.node.tick(&mut self.wire, self.t)
    }

    fn take_lost(&mut self) -> Vec<Resolved> {
        self.node.take_lost(&mut self.wire, self.t)
    }

    /// Client `conn` upgrades to `service`: the worker that got its
    /// CONNECT, `None` when none serves it.
    fn open(&mut self, service: &str, conn: u64) -> Option<WorkerRef> {
        let info = ConnectInfo {
            service: service.to_owned(),
            path: "/".to_owned(),
            ..ConnectInfo::default()
        };
        let opened = self.node.open(&mut self.wire, conn, info, self.t);
        let worker = self.holder(conn);
        assert_eq!(opened, worker.is_some(), "open of {conn}");
        worker
    }

    /// [`Harness::open`], the CONNECT taken out: the worker serving `conn`.
    fn serve(&mut self, service: &str, conn: u64) -> WorkerRef {
        let worker = self.open(service, conn).expect("a worker serves");
        let pipe = &self.node.workers().get(worker).expect("live").routing_id;
        self.wire.take(&pipe.clone());
        worker
    }

    /// The worker connection `conn` sticks to.
    fn holder(&self, conn: u64) -> Option<WorkerRef> {
        self.node.sessions().get(conn).and_then(|s| s.worker)
    }

    /// Client `conn` sends `payload`: false when the pipe did not take it.
    fn message(&mut self, conn: u64, payload: &[u8]) -> bool {
        let payload = Payload::Binary(payload);
        self.node.message(&mut self.wire, conn, payload, self.t)
    }

    /// Connection `conn` closes.
    fn close(&mut self, conn: u64, why: (CloseCode, Initiator)) {
        self.node.close(&mut self.wire, conn, why, self.t);
    }

    fn retry(&mut self) -> Vec<u64> {
        self.node.retry(&mut self.wire, self.t)
    }

    /// Upgrade `conn` asks the `auth` service: the worker asked.
    fn ask_auth(&mut self, conn: u64) -> Option<WorkerRef> {
        let auth = upgrade(conn);
        let asked = self.node.ask_auth(&mut self.wire, "auth", &auth, self.t);
        let worker = self.node.sessions().auth_worker(conn);
        assert_eq!(asked, worker.is_some(), "ask_auth of {conn}");
        worker
    }

    fn control(&mut self, worker: WorkerRef, message: &Message<'_>) {
        self.node
            .send_control(&mut self.wire, worker, message, self.t);
    }

    /// A MESSAGE event for `worker`, as a client's data goes.
    fn data(&mut self, worker: WorkerRef) -> Delivery {
        let event = Message::Message(Data {
            conn: 1,
            payload: Payload::Binary(b"event"),
        });
        self.node.send_data(&mut self.wire, worker, &event, self.t)
    }

    fn flush(&mut self) {
        self.node.flush_backlogs(&mut self.wire, self.t.now);
    }
}

fn ring(keys: &[u8]) -> KeyRing {
    KeyRing::parse(keys).expect("a test key file")
}

fn owned(frames: &Frames) -> Vec<Vec<u8>> {
    frames.iter().map(<[u8]>::to_vec).collect()
}

fn unsigned(version: u8, message: &Message<'_>) -> Vec<Vec<u8>> {
    let mut out = Frames::new();
    encode_in(version, message, &mut out).expect("encodes");
    owned(&out)
}

/// The recipient field of a signed message's signature frame (section 9).
fn recipient(frames: &[&[u8]]) -> Option<u64> {
    let signed = frames.first()?.get(2)? & 1 == 1;
    let signature = frames.last().filter(|_| signed)?;
    let start = 1 + usize::from(*signature.first()?) + 8;
    Some(u64::from_be_bytes(
        signature.get(start..start + 8)?.try_into().ok()?,
    ))
}

/// A header of `version` and a HEARTBEAT body.
fn versioned(version: u8) -> Vec<Vec<u8>> {
    vec![
        vec![version, MessageType::Heartbeat as u8, 0],
        BOOT.to_be_bytes().to_vec(),
    ]
}

/// A HEARTBEAT whose meta frame is a byte short.
fn short_heartbeat() -> Vec<Vec<u8>> {
    vec![vec![1, MessageType::Heartbeat as u8, 0], vec![0; 7]]
}

fn ms(millis: u64) -> Duration {
    Duration::from_millis(millis)
}

fn ready<'a>(instance: u64, services: &'a [&'a str]) -> Message<'a> {
    Message::Ready(Ready {
        instance,
        name: "worker",
        services: List::from(services),
    })
}

fn heartbeat(peer: Peer) -> Message<'static> {
    Message::Heartbeat {
        boot: peer.instance,
    }
}

fn send<'a>(conns: &'a [u64], payload: &'a [u8]) -> Message<'a> {
    Message::Send(SendTo {
        conns: List::from(conns),
        payload: Payload::Binary(payload),
    })
}

/// SEND "hi" to connection 1.
fn hi() -> Message<'static> {
    send(&[1], b"hi")
}

fn publish<'a>(channel: &'a str, except: u64, payload: &'a [u8]) -> Message<'a> {
    Message::Publish(Publish {
        channel,
        except: (except != 0).then_some(except),
        author: None,
        payload: Payload::Binary(payload),
    })
}

fn subscribe(conn: u64, channel: &str) -> Message<'_> {
    Message::Subscribe(Subscription { conn, channel })
}

fn unsubscribe(conn: u64, channel: &str) -> Message<'_> {
    Message::Unsubscribe(Subscription { conn, channel })
}

fn disconnect(conn: u64) -> Message<'static> {
    Message::Disconnect(Disconnect {
        conn,
        code: CloseCode::NORMAL,
        initiator: Initiator::Client,
        reason: "",
    })
}

const ALICE: &[&str] = &["alice"];
const ROOM: &[&str] = &["room"];
const SUBSCRIBE_PERMISSION: &[&str] = &[SUBSCRIBE];

/// ACL_COMMAND explain(alice, room, subscribe).
fn explain(request: u64) -> Message<'static> {
    Message::AclCommand(AclCommand {
        request,
        op: AclOp::Explain,
        args: [ALICE.into(), ROOM.into(), SUBSCRIBE_PERMISSION.into()],
    })
}

/// Makes a node: [`Harness::new`] or [`Harness::signed`].
type NewNode = fn() -> Harness;
/// Builds the frames of one message a worker sends.
type Build = fn(&mut Harness) -> Vec<Vec<u8>>;
/// Connection ids in a table.
type Ids = &'static [u64];
/// A payload in a table.
type Bytes = &'static [u8];
/// What the node sends a worker, in a table.
type Replies = Vec<Reply>;
/// An expected answer, with the recipient it is signed for (`None`:
/// unsigned).
type Answer = Option<(Reply, Option<u64>)>;
/// Something that sends to a worker, and the workers it found lost.
type Act = fn(&mut Harness, WorkerRef) -> Vec<Resolved>;
/// AUTH_REPLYs in a table: who sends one, for which request.
type AuthReplies = &'static [(Peer, u64)];
/// Whether each counts, in a table.
type Counts = &'static [bool];
/// The services a worker announces, in a table.
type Services = &'static [&'static str];

/// Both kinds of node.
const NODES: [(&str, NewNode); 2] = [("unsigned", Harness::new), ("signed", Harness::signed)];
