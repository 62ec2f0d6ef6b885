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

const A: Peer = Peer {
    pipe: b"pipe-a",
    instance: 0xA1,
    version: VERSION,
};
const B: Peer = Peer {
    pipe: b"pipe-b",
    instance: 0xB1,
    version: VERSION,
};
const C: Peer = Peer {
    pipe: b"pipe-c",
    instance: 0xC1,
    version: VERSION,
};
/// A's worker restarted as a new instance on the same pipe.
const A2: Peer = Peer {
    pipe: A.pipe,
    instance: 0xA2,
    version: VERSION,
};
/// A's instance, heard on another pipe.
const A_ELSEWHERE: Peer = Peer {
    pipe: b"pipe-x",
    instance: A.instance,
    version: VERSION,
};

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

/// Section 3 READY and WELCOME, section 4 step 3: on an unsigned link a
/// READY registers at once and WELCOME states the node's parameters.
#[test]
fn ready_registers_and_is_welcomed() {
    let mut h = Harness::new();
    assert_eq!(h.from(A, &ready(A.instance, &["chat"])), Outcome::Done);
    assert_eq!(h.addressed_replies(A), [(welcome(), None)]);
    let worker = h.worker(A).expect("registered at once");
    assert_eq!(worker.instance, A.instance);
    assert_eq!(h.open("chat", 1), Some(worker));
}

/// Section 3 READY: a READY from a known worker replaces its service list,
/// is welcomed again, and its connections stay.
#[test]
fn ready_again_updates_services_and_keeps_connections() {
    for (name, node) in NODES {
        let mut h = node();
        let worker = h.join(A, &["chat"]);
        h.serve("chat", 7);
        assert_eq!(
            h.from(A, &ready(A.instance, &["news"])),
            Outcome::Done,
            "{name}"
        );
        assert_eq!(h.replies(A), [welcome()], "{name}");
        assert_eq!(h.worker(A), Some(worker), "{name}: the same worker");
        assert_eq!(h.conns_of(worker), [7], "{name}: its connections stay");
        assert_eq!(h.open("chat", 8), None, "{name}: chat no longer served");
        assert_eq!(h.open("news", 9), Some(worker), "{name}");
    }
}

/// Section 4: a restarted worker is a new worker; the one it replaces on
/// its pipe is lost with its connections (section 6: one that never sent
/// moves to the new instance, CONNECT with REASSIGNED). Unsigned, at the
/// new instance's READY.
#[test]
fn a_new_instance_on_the_same_pipe_replaces_the_old() {
    replaced_on_the_same_pipe(Harness::new, true);
}

/// The same on a signed link, at the new instance's first message signed
/// for this boot (section 4 step 3): until then the old instance keeps
/// the pipe, and a message signed by another instance does not speak for
/// it.
#[test]
fn a_new_instance_on_the_same_pipe_replaces_the_old_once_confirmed() {
    replaced_on_the_same_pipe(Harness::signed, false);
}

/// A's worker restarts as A2 on A's pipe: READY, then HEARTBEAT. The old
/// worker is lost at the READY (`at_ready`) or else at the HEARTBEAT.
fn replaced_on_the_same_pipe(node: NewNode, at_ready: bool) {
    let mut h = node();
    let old = h.join(A, &["chat"]);
    h.serve("chat", 7);
    let lost = Outcome::Lost(vec![resolved(7, Fate::Moved)]);
    let on_ready = h.from(A2, &ready(A2.instance, &["chat"]));
    let on_confirm = h.from(A2, &heartbeat(A2));
    let expected = match at_ready {
        true => (lost, Outcome::Done),
        false => (Outcome::Done, lost),
    };
    assert_eq!((on_ready, on_confirm), expected);
    let new = h.worker(A2).expect("registered");
    assert_eq!(new.instance, A2.instance);
    assert_ne!(new, old);
    assert_eq!(h.holder(7), Some(new));
    assert_eq!(h.replies(A2), [welcome(), connect(7, "chat", true)]);
}

/// Section 3 READY: claiming the reserved `echo` gets ERROR
/// RESERVED_SERVICE and registers (or proposes) nothing.
#[test]
fn ready_claiming_echo_is_refused() {
    let claims: [&[&str]; 2] = [&["echo"], &["chat", "echo"]];
    for ((name, node), services) in NODES.into_iter().flat_map(|n| claims.map(|c| (n, c))) {
        let mut h = node();
        assert_eq!(h.from(A, &ready(A.instance, services)), Outcome::Done);
        let refused = err(ErrorCode::RESERVED_SERVICE, MessageType::Ready, "echo", &[]);
        assert_eq!(h.replies(A), [refused], "{name} {services:?}");
        assert!(h.node.workers().is_empty(), "{name} {services:?}");
        assert_eq!(h.node.workers().pending(), 0, "{name} {services:?}");
    }
}

/// The worker table holds at most MAX_WORKERS: one READY more is ignored,
/// unanswered (its worker repeats READY, section 4 step 2).
#[test]
fn a_full_worker_table_ignores_ready() {
    // The default cap, and one set in the configuration.
    for cap in [MAX_WORKERS, 3] {
        let mut h = Harness::with(|config| config.max_workers = cap);
        let services = ["chat"];
        for i in 1..=cap as u64 {
            h.raw(&i.to_be_bytes(), &unsigned(VERSION, &ready(i, &services)));
        }
        assert_eq!(h.node.workers().len(), cap);
        let late = unsigned(VERSION, &ready(A.instance, &services));
        assert_eq!(h.raw(A.pipe, &late), Outcome::Done);
        assert!(h.replies(A).is_empty(), "no WELCOME");
        assert_eq!(h.worker(A), None);
        assert_eq!(h.node.workers().len(), cap);
    }
}

/// Section 4 step 3, section 9: a signed READY is only proposed (WELCOME
/// signed for the instance, no clients) until a message its instance
/// signed for this boot comes on its pipe; that message is then carried
/// out. From another pipe or another instance it is UNKNOWN_PEER.
#[test]
fn a_signed_ready_registers_once_confirmed_on_its_pipe() {
    let unknown = err(ErrorCode::UNKNOWN_PEER, MessageType::Send, "", &[]);
    #[rustfmt::skip]
    let rows: [(&str, Peer, Ids, Replies); 3] = [
        ("its instance on its pipe",     A,           &[1], vec![]),
        ("its instance on another pipe", A_ELSEWHERE, &[],  vec![unknown.clone()]),
        ("another instance on its pipe", A2,          &[],  vec![unknown]),
    ];
    for (name, confirmer, received, replies) in rows {
        let mut h = Harness::signed();
        h.edge.open(1, &[]);
        assert_eq!(h.from(A, &ready(A.instance, &["chat"])), Outcome::Done);
        let welcomed = [(welcome(), Some(A.instance))];
        assert_eq!(h.addressed_replies(A), welcomed, "{name}");
        assert_eq!(h.worker(A), None, "{name}: only proposed");
        assert_eq!(h.open("chat", 2), None, "{name}: no clients yet");
        assert_eq!(h.from(confirmer, &hi()), Outcome::Done, "{name}");
        assert_eq!(
            h.worker(A).is_some(),
            replies.is_empty(),
            "{name}: registered"
        );
        assert_eq!(h.received(b"hi"), received, "{name}: the command in it");
        assert_eq!(h.replies(confirmer), replies, "{name}");
    }
}

/// Section 4 step 3: a READY not confirmed within the liveness timeout is
/// forgotten at `tick`.
#[test]
fn an_unconfirmed_ready_is_forgotten_after_the_liveness_timeout() {
    let unknown = err(ErrorCode::UNKNOWN_PEER, MessageType::Heartbeat, "", &[]);
    for (waited_ms, replies) in [(3000, vec![]), (3001, vec![unknown])] {
        let kept = replies.is_empty();
        let mut h = Harness::signed();
        h.from(A, &ready(A.instance, &["chat"]));
        h.replies(A);
        h.advance(ms(waited_ms));
        assert!(h.tick().is_empty());
        assert_eq!(
            h.node.workers().pending(),
            usize::from(kept),
            "{waited_ms} ms"
        );
        h.from(A, &heartbeat(A));
        assert_eq!(h.worker(A).is_some(), kept, "{waited_ms} ms");
        assert_eq!(h.replies(A), replies, "{waited_ms} ms");
    }
}

/// Section 6: any message proves a worker alive; one silent for longer
/// than heartbeat × liveness is lost at `tick`, with its connections
/// (here none other serves them: 1013).
#[test]
fn silence_past_the_liveness_timeout_loses_a_worker() {
    let beat = Some((2000, heartbeat(A)));
    #[rustfmt::skip]
    let rows = [
        ("silent for the timeout",             None,                                 3000, false),
        ("silent past it",                     None,                                 3001, true),
        ("a HEARTBEAT restarts the count",     beat,                                 5000, false),
        ("silent past it since the HEARTBEAT", beat,                                 5001, true),
        ("any message counts",                 Some((2000, unsubscribe(4, "room"))), 5000, false),
    ];
    for (name, heard, tick_at, lost) in rows {
        let mut h = Harness::new();
        h.join(A, &["chat"]);
        h.serve("chat", 4);
        let mut elapsed = 0;
        if let Some((at, message)) = heard {
            h.advance(ms(at));
            h.from(A, &message);
            elapsed = at;
        }
        h.advance(ms(tick_at - elapsed));
        let expected = match lost {
            true => vec![resolved(4, NO_WORKER)],
            false => vec![],
        };
        assert_eq!(h.tick(), expected, "{name}");
        assert_eq!(h.worker(A).is_some(), !lost, "{name}");
    }
}

/// Section 6 "Send", section 7: `tick` sends HEARTBEAT to a worker the
/// node sent nothing to for an interval, but not on top of a backlog.
#[test]
fn tick_heartbeats_quiet_workers() {
    let beat = Reply::Heartbeat { boot: BOOT };
    #[rustfmt::skip]
    let rows = [
        ("quiet for less than an interval", 999,  false, vec![]),
        ("quiet for an interval",           1000, false, vec![beat]),
        ("quiet, its backlog waiting",      1000, true,  vec![]),
    ];
    for (name, quiet_ms, backlog, expected) in rows {
        let mut h = Harness::new();
        h.join(A, &["chat"]);
        if backlog {
            h.wire.full.insert(A.pipe.to_vec());
            h.from(A, &send(&[9], b"x"));
        }
        h.advance(ms(quiet_ms));
        assert!(h.tick().is_empty(), "{name}");
        assert_eq!(h.replies(A), expected, "{name}");
        assert_eq!(
            h.node.backlog_len(),
            usize::from(backlog),
            "{name}: nothing piled up"
        );
    }
}

/// Section 3 BYE, section 6: a worker's BYE loses it at once, its
/// connections reassigned (a fresh CONNECT, REASSIGNED, to another
/// worker) or closed (1012) as configured.
#[test]
fn bye_loses_the_worker_with_its_connections() {
    let moved = [connect(1, "chat", true), connect(3, "chat", true)];
    #[rustfmt::skip]
    let rows = [
        (WorkerLoss::Reassign, Fate::Moved,  moved.to_vec()),
        (WorkerLoss::Close,    WORKER_LOST,  vec![]),
    ];
    for (loss, fate, connects) in rows {
        let mut h = Harness::with(|config| config.worker_loss = loss);
        h.join(A, &["chat"]);
        h.serve("chat", 3);
        h.serve("chat", 1);
        let other = h.join(B, &["chat"]);
        let lost = Outcome::Lost(vec![resolved(1, fate), resolved(3, fate)]);
        assert_eq!(h.from(A, &Message::Bye), lost, "{loss:?}");
        assert_eq!(h.worker(A), None, "{loss:?}");
        assert!(h.replies(A).is_empty(), "{loss:?}");
        assert_eq!(h.replies(B), connects, "{loss:?}");
        let held = [1, 3].repeat(usize::from(!connects.is_empty()));
        assert_eq!(h.conns_of(other), held, "{loss:?}");
    }
}

/// Section 3 SEND: delivered to each open connection listed (any worker's
/// or none's); the others get one NO_SUCH_CONNECTION listing them; over
/// `max_payload`, TOO_BIG and nothing delivered.
#[test]
fn send_delivers_to_open_connections() {
    let no_such = |conns: &[u64]| err(ErrorCode::NO_SUCH_CONNECTION, MessageType::Send, "", conns);
    let too_big = err(ErrorCode::TOO_BIG, MessageType::Send, "", &[]);
    #[rustfmt::skip]
    let rows: [(&str, Ids, Bytes, Ids, Replies); 5] = [
        ("all open",                 &[1, 2],     b"hi",        &[1, 2], vec![]),
        ("some not open",            &[1, 9, 10], b"hi",        &[1],    vec![no_such(&[9, 10])]),
        ("closing is not open",      &[3],        b"hi",        &[],     vec![no_such(&[3])]),
        ("payload at max_payload",   &[1],        b"12345678",  &[1],    vec![]),
        ("payload over max_payload", &[1, 9],     b"123456789", &[],     vec![too_big]),
    ];
    for (name, conns, payload, received, replies) in rows {
        let mut h = Harness::new();
        h.join(A, &["chat"]);
        h.edge.open(1, &[]);
        h.edge.open(2, &[]);
        h.edge.conns.insert(3, TableConn::default());
        assert_eq!(h.from(A, &send(conns, payload)), Outcome::Done, "{name}");
        assert_eq!(h.received(payload), received, "{name}");
        assert_eq!(h.replies(A), replies, "{name}");
    }
}

/// Section 3 PUBLISH: delivered to every subscriber but `except`; an
/// `except` open here publishes on its behalf and needs `publish` (else
/// FORBIDDEN, nothing delivered); `except` 0 or not open: no check.
#[test]
fn publish_reaches_the_subscribers_but_except() {
    let forbidden = err(ErrorCode::FORBIDDEN, MessageType::Publish, "room", &[2]);
    let too_big = err(ErrorCode::TOO_BIG, MessageType::Publish, "", &[]);
    #[rustfmt::skip]
    let rows: [(&str, &str, u64, Bytes, Ids, Replies); 6] = [
        ("except 0",                         "room", 0, b"hi",        &[1, 2, 3], vec![]),
        ("except an author who may publish", "room", 1, b"hi",        &[2, 3],    vec![]),
        ("except an author who may not",     "room", 2, b"hi",        &[],        vec![forbidden]),
        ("except a connection not open",     "room", 9, b"hi",        &[1, 2, 3], vec![]),
        ("a channel nobody is in",           "hall", 0, b"hi",        &[],        vec![]),
        ("payload over max_payload",         "room", 0, b"123456789", &[],        vec![too_big]),
    ];
    for (name, channel, except, payload, received, replies) in rows {
        let mut h = Harness::new();
        h.join(A, &["chat"]);
        h.edge.open(1, &[("room", SUBSCRIBE), ("room", PUBLISH)]);
        for conn in [2, 3] {
            h.edge.open(conn, &[("room", SUBSCRIBE)]);
        }
        for conn in [1, 2, 3] {
            h.from(A, &subscribe(conn, "room"));
        }
        let outcome = h.from(A, &publish(channel, except, payload));
        assert_eq!(outcome, Outcome::Done, "{name}");
        assert_eq!(h.received(payload), received, "{name}");
        assert_eq!(h.replies(A), replies, "{name}");
    }
}

/// Section 3 SUBSCRIBE, UNSUBSCRIBE: the `subscribe` grant is needed
/// (FORBIDDEN), the connection must be open (NO_SUCH_CONNECTION);
/// subscribing twice or unsubscribing when not in is no error.
#[test]
fn subscribe_checks_the_acl_and_unsubscribe_ends_it() {
    let forbidden = err(ErrorCode::FORBIDDEN, MessageType::Subscribe, "room", &[2]);
    let no_such = err(
        ErrorCode::NO_SUCH_CONNECTION,
        MessageType::Subscribe,
        "",
        &[3],
    );
    let (sub, unsub) = (
        |conn| subscribe(conn, "room"),
        |conn| unsubscribe(conn, "room"),
    );
    #[rustfmt::skip]
    let rows: [(&str, Vec<Message>, Ids, Replies); 6] = [
        ("granted",                vec![sub(1)],           &[1], vec![]),
        ("twice",                  vec![sub(1), sub(1)],   &[1], vec![]),
        ("not granted",            vec![sub(2)],           &[],  vec![forbidden]),
        ("not open",               vec![sub(3)],           &[],  vec![no_such]),
        ("then unsubscribed",      vec![sub(1), unsub(1)], &[],  vec![]),
        ("unsubscribed, never in", vec![unsub(1)],         &[],  vec![]),
    ];
    for (name, script, subscribers, replies) in rows {
        let mut h = Harness::new();
        h.join(A, &["chat"]);
        h.edge.open(1, &[("room", SUBSCRIBE)]);
        h.edge.open(2, &[("room", PUBLISH)]);
        for message in &script {
            assert_eq!(h.from(A, message), Outcome::Done, "{name}");
        }
        assert_eq!(h.subscribers("room"), subscribers, "{name}");
        assert_eq!(h.replies(A), replies, "{name}");
    }
}

/// A connection is in at most MAX_CHANNELS_PER_CONN channels: one more is
/// FORBIDDEN like a refused SUBSCRIBE (section 3).
#[test]
fn subscriptions_per_connection_are_capped() {
    // The default cap, and one set in the configuration.
    for cap in [MAX_CHANNELS_PER_CONN, 2] {
        let mut h = Harness::with(|config| config.max_channels_per_conn = cap);
        h.join(A, &["chat"]);
        let channels: Vec<String> = (0..=cap).map(|i| format!("c{i}")).collect();
        let grants: Vec<(&str, &str)> = channels.iter().map(|c| (c.as_str(), SUBSCRIBE)).collect();
        h.edge.open(1, &grants);
        let (allowed, over) = channels.split_at(cap);
        for channel in allowed {
            h.from(A, &subscribe(1, channel));
        }
        assert!(h.replies(A).is_empty());
        h.from(A, &subscribe(1, &over[0]));
        let refused = err(ErrorCode::FORBIDDEN, MessageType::Subscribe, &over[0], &[1]);
        assert_eq!(h.replies(A), [refused]);
        assert!(h.subscribers(&over[0]).is_empty());
        assert_eq!(h.subscribers(&allowed[0]), [1]);
    }
}

/// Section 3 SUBSCRIBE: when an ACL change takes `subscribe` away, the
/// subscription ends and the worker holding the connection (not the one
/// that subscribed it) gets FORBIDDEN about SUBSCRIBE, unasked.
#[test]
fn a_revoked_grant_ends_the_subscription_and_tells_the_holder() {
    let mut h = Harness::new();
    h.join(A, &["admin"]);
    let holder = h.join(B, &["chat"]);
    assert_eq!(h.serve("chat", 1), holder);
    for conn in [1, 2] {
        h.edge.open(conn, &[("room", SUBSCRIBE)]);
        h.from(A, &subscribe(conn, "room"));
    }
    h.edge.conns.get_mut(&1).expect("open").grants.clear();
    h.node.recheck_subscriptions(&mut h.wire, &h.edge, h.t);
    assert_eq!(h.subscribers("room"), [2]);
    let revoked = err(ErrorCode::FORBIDDEN, MessageType::Subscribe, "room", &[1]);
    assert_eq!(h.replies(B), [revoked]);
    assert!(h.replies(A).is_empty());
}

/// Subscriptions end with the connection (section 3 SUBSCRIBE, section
/// 5 DISCONNECT).
#[test]
fn close_ends_its_subscriptions() {
    let mut h = Harness::new();
    h.join(A, &["chat"]);
    for conn in [1, 2] {
        h.serve("chat", conn);
        h.edge
            .open(conn, &[("room", SUBSCRIBE), ("hall", SUBSCRIBE)]);
        h.from(A, &subscribe(conn, "room"));
        h.from(A, &subscribe(conn, "hall"));
    }
    h.close(1, (CloseCode::NORMAL, Initiator::Client));
    assert_eq!(h.subscribers("room"), [2]);
    assert_eq!(h.subscribers("hall"), [2]);
}

/// Section 3 CLOSE: an open connection is the caller's to close with the
/// code and reason; one not open gets NO_SUCH_CONNECTION.
#[test]
fn close_an_open_connection() {
    let reason = "done".to_owned();
    let closing = Outcome::Close {
        conn: 1,
        code: 4000,
        reason,
    };
    let no_such = err(ErrorCode::NO_SUCH_CONNECTION, MessageType::Close, "", &[9]);
    let rows = [
        ("open", 1, closing, vec![]),
        ("not open", 9, Outcome::Done, vec![no_such]),
    ];
    for (name, conn, outcome, replies) in rows {
        let mut h = Harness::new();
        h.join(A, &["chat"]);
        h.edge.open(1, &[]);
        let code = CloseCode(4000);
        let close = Message::Close(Close {
            conn,
            code,
            reason: "done",
        });
        assert_eq!(h.from(A, &close), outcome, "{name}");
        assert_eq!(h.replies(A), replies, "{name}");
    }
}

/// Section 3 AUTH, AUTH_REPLY: the AUTH goes to a worker of the `auth`
/// service; only that worker's reply counts, once: it ends the wait and
/// releases the worker. From another worker, for no pending request or a
/// second time it is dropped and counted.
#[test]
fn auth_reply_counts_only_from_the_worker_asked() {
    #[rustfmt::skip]
    let rows: [(&str, AuthReplies, Counts); 5] = [
        ("from the worker asked",        &[(A, 5)],         &[true]),
        ("a second time",                &[(A, 5), (A, 5)], &[true, false]),
        ("from another worker",          &[(B, 5)],         &[false]),
        ("from another, then the asked", &[(B, 5), (A, 5)], &[false, true]),
        ("for no pending request",       &[(A, 6)],         &[false]),
    ];
    for (name, script, counted) in rows {
        let mut h = Harness::new();
        let asked = h.join(A, &["auth"]);
        assert_eq!(h.ask_auth(5), Some(asked), "{name}");
        h.join(B, &["auth"]);
        assert_eq!(h.replies(A), [Reply::Auth { request: 5 }], "{name}");
        assert_eq!(h.conns_of(asked), [5], "{name}: counted as its");
        for (&(from, request), &counts) in script.iter().zip(counted) {
            let dropped = h.node.dropped();
            let roles = List::from(&[][..]);
            let reply = AuthReply {
                request,
                allow: true,
                user: "alice",
                roles,
            };
            let expected = match counts {
                true => Outcome::AuthReply {
                    conn: 5,
                    worker: asked,
                    user: "alice".to_owned(),
                },
                false => Outcome::Done,
            };
            assert_eq!(h.from(from, &Message::AuthReply(reply)), expected, "{name}");
            assert_eq!(h.node.dropped() - dropped, u64::from(!counts), "{name}");
            assert!(h.replies(from).is_empty(), "{name}: never answered");
        }
        let done = counted.contains(&true);
        let waits = h.node.sessions().auth_worker(5);
        assert_eq!(waits, (!done).then_some(asked), "{name}");
        let held: &[u64] = if done { &[] } else { &[5] };
        assert_eq!(h.conns_of(asked), held, "{name}: released");
    }
}

/// Section 3 ACL_COMMAND, section 9 "Admin keys": the caller gets the
/// command, admin only when signed with a key of `admin_keys`.
#[test]
fn acl_command_is_admin_only_with_an_admin_key() {
    #[rustfmt::skip]
    let rows: [(&str, NewNode, Bytes, bool); 3] = [
        ("unsigned: nobody is admin", Harness::new,    WORKER_KEYS, false),
        ("signed with another key",   Harness::signed, WORKER_KEYS, false),
        ("signed with an admin key",  Harness::signed, ADMIN_KEYS,  true),
    ];
    for (name, node, keys, admin) in rows {
        let mut h = node();
        h.use_keys(A, keys);
        let worker = h.join(A, &["admin"]);
        let expected = Outcome::AclCommand {
            worker,
            request: 5,
            admin,
        };
        assert_eq!(h.from(A, &explain(5)), expected, "{name}");
    }
}

/// Section 10: UNSUPPORTED_VERSION (detail "1 2 3", signed for recipient 0),
/// MALFORMED (registered workers only) and UNKNOWN_PEER (signed for the
/// sender, even for a previous boot while fresh) are sent at most once per
/// peer and code per heartbeat interval.
#[test]
fn errors_are_answered_at_most_once_per_interval() {
    let unsupported = err(
        ErrorCode::UNSUPPORTED_VERSION,
        MessageType::Heartbeat,
        "1 2 3",
        &[],
    );
    let why = "fixed-size frame of the wrong length";
    let malformed = err(ErrorCode::MALFORMED, MessageType::Heartbeat, why, &[]);
    let unknown = err(ErrorCode::UNKNOWN_PEER, MessageType::Send, "", &[]);
    let unsigned = |reply: &Reply| Some((reply.clone(), None));
    let signed_for = |reply: &Reply, to| Some((reply.clone(), Some(to)));
    #[rustfmt::skip]
    let rows: [(&str, NewNode, bool, Build, Answer); 8] = [
        ("version 4, unregistered",   Harness::new,    false, |_| versioned(4),      unsigned(&unsupported)),
        ("version 0, registered",     Harness::new,    true,  |_| versioned(0),      unsigned(&unsupported)),
        ("undecodable, registered",   Harness::new,    true,  |_| short_heartbeat(), unsigned(&malformed)),
        ("undecodable, unregistered", Harness::new,    false, |_| short_heartbeat(), None),
        ("a command, unregistered",   Harness::new,    false, |h| h.frames(A, &hi()), unsigned(&unknown)),
        ("signed: version 4",         Harness::signed, false, |_| versioned(4),      signed_for(&unsupported, 0)),
        ("signed: a command, unregistered", Harness::signed, false,
            |h| h.frames(A, &hi()), signed_for(&unknown, A.instance)),
        ("signed: for a previous boot", Harness::signed, false,
            |h| h.sign(A, OLD_BOOT, 0, &hi()), signed_for(&unknown, A.instance)),
    ];
    for (name, node, registered, build, answer) in rows {
        let mut h = node();
        if registered {
            h.join(A, &["chat"]);
        }
        for (wait_ms, answered) in [(0, true), (999, false), (1, true)] {
            h.advance(ms(wait_ms));
            let frames = build(&mut h);
            assert_eq!(h.raw(A.pipe, &frames), Outcome::Done, "{name}");
            let expected: Vec<_> = answer.iter().filter(|_| answered).cloned().collect();
            assert_eq!(
                h.addressed_replies(A),
                expected,
                "{name} after {wait_ms} ms"
            );
        }
    }
}

/// Sections 2, 9 and 10: a type only a node sends, a signed message on an
/// unsigned node, and on a signed node anything unsigned, with a bad MAC,
/// an unknown key, a stale timestamp (or for a previous boot and stale)
/// is dropped: counted, not carried out, not answered.
#[test]
fn unverifiable_or_misdirected_messages_are_dropped_unanswered() {
    #[rustfmt::skip]
    let rows: [(&str, NewNode, Build); 7] = [
        ("WELCOME from a worker",       Harness::new,    |_| unsigned(VERSION, &node_welcome())),
        ("signed, to an unsigned node", Harness::new,    |h| h.sign(A, BOOT, 0, &hi())),
        ("unsigned, to a signed node",  Harness::signed, |_| unsigned(VERSION, &hi())),
        ("a bad MAC",                   Harness::signed, |h| forged(h.frames(A, &hi()))),
        ("an unknown key",              Harness::signed, |h| {
            h.use_keys(A, STRANGER_KEYS);
            h.frames(A, &hi())
        }),
        ("stale",                       Harness::signed, |h| h.sign(A, BOOT, SKEW_MS + 1, &hi())),
        ("for a previous boot, stale",  Harness::signed, |h| h.sign(A, OLD_BOOT, SKEW_MS + 1, &hi())),
    ];
    for (name, node, build) in rows {
        let mut h = node();
        h.join(A, &["chat"]);
        h.edge.open(1, &[]);
        let dropped = h.node.dropped();
        let frames = build(&mut h);
        assert_eq!(h.raw(A.pipe, &frames), Outcome::Done, "{name}");
        assert_eq!(h.node.dropped(), dropped + 1, "{name}: counted");
        assert!(h.received(b"hi").is_empty(), "{name}: not carried out");
        assert!(h.replies(A).is_empty(), "{name}: not answered");
    }
}

/// A WELCOME, which only a node may send.
fn node_welcome() -> Message<'static> {
    Message::Welcome(Welcome {
        boot: 1,
        heartbeat_ms: 1000,
        liveness: LIVENESS,
        max_payload: MAX_PAYLOAD,
        node: "node-0",
        reactors: Reactors::ALONE,
    })
}

/// `frames` with one bit of the MAC flipped.
fn forged(mut frames: Vec<Vec<u8>>) -> Vec<Vec<u8>> {
    let signature = frames.last_mut().expect("signed");
    *signature.last_mut().expect("a MAC") ^= 1;
    frames
}

/// Section 7: control messages that meet a full pipe wait in order; data
/// waits behind them (Blocked) until `flush_backlogs` has sent them.
#[test]
fn a_full_pipe_queues_control_messages_in_order() {
    let mut h = Harness::new();
    let worker = h.join(A, &["chat"]);
    h.wire.full.insert(A.pipe.to_vec());
    h.from(A, &send(&[8], b"x"));
    h.from(A, &send(&[9], b"x"));
    assert_eq!(h.node.backlog_len(), 2);
    assert_eq!(h.data(worker), Delivery::Blocked, "the pipe is full");
    h.flush();
    assert_eq!(h.node.backlog_len(), 2, "still full");
    h.wire.full.clear();
    assert_eq!(h.data(worker), Delivery::Blocked, "the backlog goes first");
    assert!(h.replies(A).is_empty());
    h.flush();
    let no_such = |conn| {
        err(
            ErrorCode::NO_SUCH_CONNECTION,
            MessageType::Send,
            "",
            &[conn],
        )
    };
    assert_eq!(h.replies(A), [no_such(8), no_such(9)]);
    assert!(!h.node.has_backlog());
    assert_eq!(h.data(worker), Delivery::Sent);
    assert_eq!(h.replies(A), [carried(1, b"event")]);
}

/// Section 7: past `worker_queue` messages an ERROR or HEARTBEAT for the
/// worker is dropped and counted, anything else loses the worker (and its
/// connection, none other serving it, section 6: 1013).
#[test]
fn over_the_backlog_cap_replies_drop_and_events_lose_the_worker() {
    let no_such = error(
        ErrorCode::NO_SUCH_CONNECTION,
        MessageType::Send as u8,
        "",
        &[9],
    );
    #[rustfmt::skip]
    let rows = [
        ("an ERROR",     no_such,                          1, false),
        ("a HEARTBEAT",  Message::Heartbeat { boot: BOOT }, 1, false),
        ("a DISCONNECT", disconnect(7),                    0, true),
    ];
    for (name, message, replies_dropped, lost) in rows {
        let mut h = Harness::new();
        let worker = h.join(A, &["chat"]);
        h.serve("chat", 7);
        h.wire.full.insert(A.pipe.to_vec());
        for _ in 0..QUEUE {
            h.from(A, &send(&[9], b"x"));
        }
        assert!(
            h.take_lost().is_empty(),
            "{name}: a full backlog is no loss"
        );
        h.control(worker, &message);
        assert_eq!(h.node.replies_dropped(), replies_dropped, "{name}");
        let expected = match lost {
            true => vec![resolved(7, NO_WORKER)],
            false => vec![],
        };
        assert_eq!(h.take_lost(), expected, "{name}");
        let waiting = if lost { 0 } else { QUEUE };
        assert_eq!(h.node.backlog_len(), waiting, "{name}");
    }
}

/// Section 6: a send to a worker whose pipe is gone (EHOSTUNREACH)
/// declares it dead, whatever sent it; its connection, none other
/// serving it, is closed with 1013.
#[test]
fn a_gone_pipe_loses_the_worker() {
    let rows: [(&str, Act); 5] = [
        ("send_data", |h, worker| {
            assert_eq!(h.data(worker), Delivery::Gone);
            h.take_lost()
        }),
        ("send_control", |h, worker| {
            h.control(worker, &disconnect(7));
            h.take_lost()
        }),
        ("a command's ERROR", |h, _| {
            h.from(A, &send(&[9], b"x"));
            h.take_lost()
        }),
        ("tick's HEARTBEAT", |h, _| {
            h.advance(BEAT);
            h.tick()
        }),
        ("flush_backlogs", |h, worker| {
            let gone = std::mem::take(&mut h.wire.gone);
            h.wire.full.insert(A.pipe.to_vec());
            h.control(worker, &disconnect(7));
            h.wire.full.clear();
            h.wire.gone = gone;
            h.flush();
            h.take_lost()
        }),
    ];
    for (name, act) in rows {
        let mut h = Harness::new();
        let worker = h.join(A, &["chat"]);
        h.serve("chat", 7);
        h.wire.gone.insert(A.pipe.to_vec());
        assert_eq!(act(&mut h, worker), [resolved(7, NO_WORKER)], "{name}");
        assert_eq!(h.worker(A), None, "{name}");
        assert!(!h.node.has_backlog(), "{name}");
    }
}

/// Section 3 BYE: a leaving node says BYE to every worker.
#[test]
fn bye_is_said_to_every_worker() {
    let mut h = Harness::new();
    h.join(A, &["chat"]);
    h.join(B, &["news"]);
    h.node.bye(&mut h.wire, h.t);
    for peer in [A, B] {
        assert_eq!(h.replies(peer), [Reply::Bye], "{peer:?}");
    }
}

/// Section 5: a new connection goes to a live worker of its service with
/// the fewest connections, ties to the one assigned least recently, which
/// alone gets its CONNECT; with none, `open` is false and nobody is told.
/// A close gives the connection back (DISCONNECT to its worker).
#[test]
fn open_picks_the_least_loaded_then_least_recent_worker() {
    enum Step {
        Join(Peer, &'static str),
        Open(&'static str, u64, Option<Peer>),
        Close(Peer, u64),
    }
    use Step::{Close, Join, Open};
    let steps = [
        Join(A, "chat"),
        Open("chat", 1, Some(A)),
        Join(B, "chat"),
        Join(C, "other"),
        Open("chat", 2, Some(B)), // the fewest
        Open("chat", 3, Some(A)), // a tie: A was assigned less recently
        Open("chat", 4, Some(B)),
        Open("chat", 5, Some(A)),
        Close(A, 1),
        Close(A, 3),
        Open("chat", 6, Some(A)),
        Open("other", 7, Some(C)),
        Open("nobody", 8, None),
    ];
    let mut h = Harness::new();
    for step in steps {
        match step {
            Join(peer, service) => {
                h.join(peer, &[service]);
            }
            Open(service, conn, to) => {
                let expected = to.map(|peer| h.worker(peer).expect("joined"));
                assert_eq!(h.open(service, conn), expected, "connection {conn}");
                for peer in [A, B, C] {
                    let told = match to {
                        Some(to) if to.pipe == peer.pipe => vec![connect(conn, service, false)],
                        _ => vec![],
                    };
                    assert_eq!(h.replies(peer), told, "connection {conn}, {peer:?}");
                }
            }
            Close(peer, conn) => {
                h.close(conn, (CloseCode::NORMAL, Initiator::Client));
                let told = h.replies(peer);
                assert!(
                    matches!(told[..], [Reply::Disconnect { conn: c, .. }] if c == conn),
                    "connection {conn}: {told:?}"
                );
            }
        }
    }
    let held = [A, B, C].map(|peer| h.conns_of(h.worker(peer).expect("joined")));
    assert_eq!(held, [vec![5, 6], vec![2, 4], vec![7]]);
}

/// Section 5 stickiness, section 6: a client's message goes as MESSAGE to
/// the worker that got its CONNECT and no other, and counts as in flight
/// there; one for a connection no worker serves (it is closing, 1013) is
/// taken and goes nowhere.
#[test]
fn a_message_goes_to_its_worker_and_counts_in_flight() {
    #[rustfmt::skip]
    let steps: [(u64, Bytes, Option<Peer>); 4] = [
        (1, b"one",   Some(A)),
        (2, b"two",   Some(B)),
        (1, b"three", Some(A)),
        (3, b"four",  None),
    ];
    let mut h = Harness::new();
    h.join(A, &["chat"]);
    h.serve("chat", 1);
    h.join(B, &["chat"]);
    h.serve("chat", 2);
    assert_eq!(h.open("news", 3), None);
    for (conn, payload, to) in steps {
        assert!(h.message(conn, payload), "{conn}: taken");
        for peer in [A, B] {
            let told = match to {
                Some(to) if to.pipe == peer.pipe => vec![carried(conn, payload)],
                _ => vec![],
            };
            assert_eq!(h.replies(peer), told, "{conn} {payload:?}, {peer:?}");
        }
    }
    let in_flight = [1, 2, 3].map(|conn| h.node.sessions().get(conn).map(|s| s.in_flight));
    assert_eq!(in_flight, [Some(2), Some(1), Some(0)]);
    assert_eq!(h.node.blocked(), 0);
}

/// Section 7: a message the pipe does not take (it is full, or control
/// messages wait for it) is kept, one per connection, and `message` is
/// false; `retry` sends it once the pipe drains, exactly once, after what
/// waited before it, and names the connection, whose reading resumes.
#[test]
fn a_full_pipe_keeps_the_message_until_retry() {
    let no_such = err(ErrorCode::NO_SUCH_CONNECTION, MessageType::Send, "", &[9]);
    #[rustfmt::skip]
    let rows: [(&str, bool, Replies); 2] = [
        ("the pipe is full",           false, vec![carried(1, b"m")]),
        ("control messages wait",      true,  vec![no_such, carried(1, b"m")]),
    ];
    for (name, backlog, drained) in rows {
        let mut h = Harness::new();
        h.join(A, &["chat"]);
        h.serve("chat", 1);
        h.wire.full.insert(A.pipe.to_vec());
        if backlog {
            h.from(A, &send(&[9], b"x"));
            h.wire.full.clear();
        }
        assert!(!h.message(1, b"m"), "{name}: not taken");
        assert_eq!(h.node.blocked(), 1, "{name}");
        assert_eq!(h.retry(), [0; 0], "{name}: still full");
        assert_eq!(h.node.blocked(), 1, "{name}: still kept");
        assert!(h.replies(A).is_empty(), "{name}");
        let session = h.node.sessions().get(1).expect("served");
        assert_eq!(session.in_flight, 0, "{name}: not handed over yet");
        h.wire.full.clear();
        h.flush();
        assert_eq!(h.retry(), [1], "{name}: sent, reading resumes");
        assert_eq!(h.replies(A), drained, "{name}");
        assert_eq!(h.node.blocked(), 0, "{name}");
        let session = h.node.sessions().get(1).expect("served");
        assert_eq!(session.in_flight, 1, "{name}");
        assert!(h.retry().is_empty(), "{name}: once");
        assert!(h.replies(A).is_empty(), "{name}: once");
    }
}

/// Sections 5 and 7: a closed connection's worker gets the message that
/// still waited for its pipe, then DISCONNECT with the close code and who
/// closed (queued in order behind a full pipe); the worker no longer
/// holds it and the node forgets it.
#[test]
fn close_sends_the_waiting_message_then_disconnect() {
    let why = (CloseCode(4000), Initiator::Node);
    let disconnected = Reply::Disconnect {
        conn: 1,
        code: 4000,
        initiator: Initiator::Node,
    };
    let both = vec![carried(1, b"m"), disconnected.clone()];
    #[rustfmt::skip]
    let rows: [(&str, bool, bool, Replies); 3] = [
        ("nothing waiting",     false, false, vec![disconnected]),
        ("a message waiting",   true,  false, both.clone()),
        ("the pipe still full", true,  true,  both),
    ];
    for (name, waiting, still_full, replies) in rows {
        let mut h = Harness::new();
        let worker = h.join(A, &["chat"]);
        h.serve("chat", 1);
        if waiting {
            h.wire.full.insert(A.pipe.to_vec());
            assert!(!h.message(1, b"m"), "{name}");
        }
        if !still_full {
            h.wire.full.clear();
        }
        h.close(1, why);
        assert_eq!(h.conns_of(worker), [0; 0], "{name}: released");
        assert!(h.node.sessions().is_empty(), "{name}: forgotten");
        assert_eq!(h.node.blocked(), 0, "{name}: nothing waits");
        assert_eq!(h.node.backlog_len(), usize::from(still_full) * 2, "{name}");
        h.wire.full.clear();
        h.flush();
        assert_eq!(h.replies(A), replies, "{name}");
        assert!(h.retry().is_empty(), "{name}: nothing sent again");
        assert!(h.replies(A).is_empty(), "{name}: nothing sent again");
    }
}

/// Where connection 1 stands when its worker dies.
#[derive(Debug, Clone, Copy)]
enum Stand {
    /// Served, it never sent.
    Idle,
    /// It handed the worker two messages.
    Sent,
    /// Its one message waits for the worker's full pipe.
    Waiting,
    /// It handed the worker a message, and another waits.
    SentAndWaiting,
    /// Its upgrade waits for the worker's AUTH_REPLY.
    Upgrading,
}

/// The ways worker A dies (section 6): it says BYE, falls silent past its
/// liveness (while B speaks), or a send finds its pipe gone.
const DEATHS: [(&str, Act); 3] = [
    ("BYE", |h, _| match h.from(A, &Message::Bye) {
        Outcome::Lost(resolved) => resolved,
        other => panic!("BYE: {other:?}"),
    }),
    ("silence", |h, _| {
        h.advance(ms(2000));
        h.from(B, &heartbeat(B));
        h.advance(ms(1001));
        h.tick()
    }),
    ("a gone pipe", |h, worker| {
        h.wire.gone.insert(A.pipe.to_vec());
        h.control(worker, &Message::Heartbeat { boot: BOOT });
        h.take_lost()
    }),
];

/// Section 6: when A, holding connection 1, dies, however it dies: under
/// worker-loss reassign, a connection that never handed it a message
/// moves to B (CONNECT with REASSIGNED, then its waiting message at
/// `retry`), or is closed with 1013 when B does not serve it; one that
/// did is closed with 1012 "worker lost with messages in flight", each
/// message counted lost. Under worker-loss close it is 1012 "worker lost"
/// (or with messages in flight). An upgrade waiting for A's verdict is
/// AuthLost. Nothing is left waiting, and a later close tells only a
/// worker that holds the connection.
#[test]
fn a_lost_workers_connections_are_moved_or_closed() {
    use Stand::{Idle, Sent, SentAndWaiting, Upgrading, Waiting};
    use WorkerLoss::{Close, Reassign};
    let (chat, news): (Services, Services) = (&["chat"], &["news"]);
    let reconnect = || connect(1, "chat", true);
    #[rustfmt::skip]
    let rows: [(&str, WorkerLoss, Services, Stand, Fate, u64, Replies); 10] = [
        ("never sent: moved",         Reassign, chat, Idle,           Fate::Moved,   0, vec![reconnect()]),
        ("waiting: moved with it",    Reassign, chat, Waiting,        Fate::Moved,   0, vec![reconnect(), carried(1, b"w")]),
        ("sent: 1012",                Reassign, chat, Sent,           IN_FLIGHT,     2, vec![]),
        ("sent and waiting: 1012",    Reassign, chat, SentAndWaiting, IN_FLIGHT,     1, vec![]),
        ("none other serves: 1013",   Reassign, news, Idle,           NO_WORKER,     0, vec![]),
        ("waiting, none other: 1013", Reassign, news, Waiting,        NO_WORKER,     0, vec![]),
        ("close, never sent",         Close,    chat, Idle,           WORKER_LOST,   0, vec![]),
        ("close, waiting",            Close,    chat, Waiting,        WORKER_LOST,   0, vec![]),
        ("close, sent",               Close,    chat, Sent,           IN_FLIGHT,     2, vec![]),
        ("upgrading",                 Reassign, chat, Upgrading,      Fate::AuthLost, 0, vec![]),
    ];
    for ((name, loss, services, stand, fate, lost, told), (death, die)) in rows
        .into_iter()
        .flat_map(|row| DEATHS.map(|death| (row.clone(), death)))
    {
        let mut h = Harness::with(|config| config.worker_loss = loss);
        let worker = h.join(A, &["chat", "auth"]);
        match stand {
            Upgrading => assert_eq!(h.ask_auth(1), Some(worker)),
            _ => assert_eq!(h.open("chat", 1), Some(worker)),
        }
        if matches!(stand, Sent | SentAndWaiting) {
            assert!(h.message(1, b"m"), "{name}");
        }
        if matches!(stand, Sent) {
            assert!(h.message(1, b"m"), "{name}");
        }
        if matches!(stand, Waiting | SentAndWaiting) {
            h.wire.full.insert(A.pipe.to_vec());
            assert!(!h.message(1, b"w"), "{name}");
        }
        let other = h.join(B, services);
        let name = format!("{name}, {death}");
        assert_eq!(die(&mut h, worker), [resolved(1, fate)], "{name}");
        assert_eq!(h.worker(A), None, "{name}");
        assert_eq!(h.node.lost_messages(), lost, "{name}");
        let moved = fate == Fate::Moved;
        assert_eq!(h.holder(1), moved.then_some(other), "{name}");
        let resumed = [1].repeat(usize::from(moved && matches!(stand, Waiting)));
        let waits = h.node.blocked();
        assert_eq!(waits, resumed.len(), "{name}: only a moved message waits");
        assert_eq!(h.retry(), resumed, "{name}");
        assert_eq!(h.node.blocked(), 0, "{name}: nothing waits");
        let heard: Vec<Reply> = h
            .replies(B)
            .into_iter()
            .filter(|reply| !matches!(reply, Reply::Heartbeat { .. }))
            .collect();
        assert_eq!(heard, told, "{name}: B");
        assert_eq!(h.node.sessions().auth_worker(1), None, "{name}");
        h.close(1, (CloseCode::NORMAL, Initiator::Client));
        let disconnected = h
            .replies(B)
            .iter()
            .any(|reply| matches!(reply, Reply::Disconnect { conn: 1, .. }));
        assert_eq!(disconnected, moved, "{name}: B told of the close");
        assert_eq!(h.conns_of(other), [0; 0], "{name}");
        assert!(h.node.sessions().is_empty(), "{name}");
    }
}

/// An author's user and roles.
type Claim = (&'static str, &'static [&'static str]);

/// Section 13 PUBLISH: an authored copy whose client is on another node
/// (`except` not open here) is checked against the author's user and
/// roles; a client open here is judged by its own identity, whatever the
/// author frames claim.
#[test]
fn an_authored_publish_is_checked_on_every_node() {
    let forbidden = |conns: &[u64]| err(ErrorCode::FORBIDDEN, MessageType::Publish, "room", conns);
    #[rustfmt::skip]
    let rows: [(&str, u64, Claim, Ids, Replies); 6] = [
        ("a user granted",                  9, ("alice", &[]),       &[2, 3], vec![]),
        ("a role granted",                  9, ("bob",   &["ops"]),  &[2, 3], vec![]),
        ("neither",                         9, ("bob",   &["dev"]),  &[],     vec![forbidden(&[9])]),
        ("a guest, except 0",               0, ("",      &[]),       &[],     vec![forbidden(&[])]),
        ("the client here may not",         2, ("alice", &["ops"]),  &[],     vec![forbidden(&[2])]),
        ("the client here may, author not", 1, ("bob",   &[]),       &[2, 3], vec![]),
    ];
    for (name, except, (user, roles), received, replies) in rows {
        let mut h = Harness::new();
        h.join(V2, &["chat"]);
        h.edge.open(1, &[("room", SUBSCRIBE), ("room", PUBLISH)]);
        for conn in [2, 3] {
            h.edge.open(conn, &[("room", SUBSCRIBE)]);
        }
        for conn in [2, 3] {
            h.from(V2, &subscribe(conn, "room"));
        }
        for holder in ["alice", "ops"] {
            let grant = (holder.to_owned(), "room".to_owned(), PUBLISH.to_owned());
            h.edge.author_grants.insert(grant);
        }
        let message = Message::Publish(Publish {
            channel: "room",
            except: (except != 0).then_some(except),
            author: Some(Author {
                user,
                roles: List::from(roles),
            }),
            payload: Payload::Binary(b"hi"),
        });
        assert_eq!(h.from(V2, &message), Outcome::Done, "{name}");
        assert_eq!(h.received(b"hi"), received, "{name}");
        assert_eq!(h.replies(V2), replies, "{name}");
    }
}

/// Section 13: a version 2 worker is welcomed in version 2, and the
/// client messages of a turn reach it as one MESSAGES at the end of the
/// turn, in order; a v1 worker on the same node gets one MESSAGE each.
#[test]
fn a_version_2_worker_gets_a_turn_of_messages_as_one_batch() {
    let mut h = Harness::new();
    h.from(V2, &ready(V2.instance, &["chat"]));
    let sent = h.wire.take(V2.pipe);
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0][0], [2, 0x11, 0], "WELCOME in version 2");
    h.serve("chat", 1);
    h.serve("chat", 2);
    assert!(h.message(1, b"a") && h.message(2, b"b") && h.message(1, b"c"));
    assert!(
        h.replies(V2).is_empty(),
        "nothing before the end of the turn"
    );
    h.node.flush_batches(&mut h.wire, h.t);
    let batch = [(1, b"a".to_vec()), (2, b"b".to_vec()), (1, b"c".to_vec())];
    assert_eq!(h.replies(V2), [Reply::Batch(batch.to_vec())]);
    h.node.flush_batches(&mut h.wire, h.t);
    assert!(h.replies(V2).is_empty(), "each batch once");
    let in_flight = h.node.sessions().get(1).expect("served").in_flight;
    assert_eq!(in_flight, 2, "batched messages count as handed over");
}

/// Section 13: a batch goes before any other message to its worker, so
/// CONNECT, the client's messages and DISCONNECT keep their order; one
/// that would overflow 64 KiB goes first, and a payload too large for
/// any batch travels as a v1-layout MESSAGE after the batch before it.
#[test]
fn a_batch_goes_before_anything_else_and_when_full() {
    let mut h = Harness::with(|config| config.max_payload = 1 << 20);
    h.join(V2, &["chat"]);
    h.serve("chat", 1);
    assert!(h.message(1, b"first"));
    h.open("chat", 2);
    h.close(1, (CloseCode::NORMAL, Initiator::Client));
    let replies = h.replies(V2);
    assert!(
        matches!(
            &replies[..],
            [Reply::Batch(b), Reply::Connect { conn: 2, .. }, Reply::Disconnect { conn: 1, .. }]
                if *b == [(1, b"first".to_vec())]
        ),
        "{replies:?}"
    );
    let big = vec![7u8; MAX_BATCHED_PAYLOAD];
    assert!(h.message(2, b"x") && h.message(2, &big));
    assert_eq!(h.replies(V2), [Reply::Batch(vec![(2, b"x".to_vec())])]);
    let huge = vec![8u8; MAX_BATCHED_PAYLOAD + 1];
    assert!(h.message(2, &huge));
    let replies = h.replies(V2);
    assert_eq!(
        replies,
        [
            Reply::Batch(vec![(2, big.clone())]),
            Reply::Data {
                conn: 2,
                payload: huge
            }
        ]
    );
}

/// Sections 7 and 13: a batch that meets a full pipe waits first in the
/// worker's backlog; later client messages are not taken (their clients
/// stop reading) until it went, then `retry` sends them, in order.
#[test]
fn a_batch_meeting_a_full_pipe_waits_and_holds_back_the_rest() {
    let mut h = Harness::new();
    h.join(V2, &["chat"]);
    h.serve("chat", 1);
    assert!(h.message(1, b"a"));
    h.wire.full.insert(V2.pipe.to_vec());
    h.node.flush_batches(&mut h.wire, h.t);
    assert_eq!(h.node.backlog_len(), 1, "the batch waits");
    assert!(!h.message(1, b"b"), "behind it: not taken");
    h.wire.full.clear();
    h.flush();
    assert_eq!(h.replies(V2), [Reply::Batch(vec![(1, b"a".to_vec())])]);
    assert_eq!(h.retry(), [1], "reading resumes");
    h.node.flush_batches(&mut h.wire, h.t);
    assert_eq!(h.replies(V2), [Reply::Batch(vec![(1, b"b".to_vec())])]);
}

/// Section 13 SENDS: each record to its connection; records over the
/// payload cap draw one TOO_BIG and connections not open one
/// NO_SUCH_CONNECTION, both about 0x36, naming the connections; the rest
/// are delivered, in order.
#[test]
fn sends_delivers_each_record_and_names_what_it_could_not() {
    let mut h = Harness::new();
    h.join(V2, &["chat"]);
    h.edge.open(1, &[]);
    h.edge.open(2, &[]);
    let mut batch = BatchBuilder::default();
    batch.push(1, Payload::Binary(b"one"));
    batch.push(9, Payload::Binary(b"lost"));
    batch.push(2, Payload::Binary(&[0; MAX_PAYLOAD as usize + 1]));
    batch.push(2, Payload::Text("two"));
    batch.push(1, Payload::Binary(b"three"));
    assert_eq!(h.from(V2, &Message::Sends(batch.batch())), Outcome::Done);
    assert_eq!(
        h.edge.conns[&1].delivered,
        [b"one".to_vec(), b"three".to_vec()]
    );
    assert_eq!(h.edge.conns[&2].delivered, [b"two".to_vec()]);
    let too_big = err(ErrorCode::TOO_BIG, MessageType::Sends, "", &[2]);
    let missing = err(ErrorCode::NO_SUCH_CONNECTION, MessageType::Sends, "", &[9]);
    assert_eq!(h.replies(V2), [too_big, missing]);
}

/// A version 3 worker (docs/protocol.md section 14).
const V3: Peer = Peer {
    pipe: b"pipe-v3",
    instance: 0xD3,
    version: VERSION_3,
};

/// Section 14: a version 3 READY is welcomed in version 3 with the node's
/// place among its process's reactors; a version 1 or 2 READY to the same
/// node gets the WELCOME of its version, which cannot carry it.
#[test]
fn a_version_3_welcome_says_which_reactor_of_how_many() {
    let place = Reactors { index: 1, count: 2 };
    let mut h = Harness::with(|config| config.reactors = place);
    for (peer, version, reactors) in [
        (V3, VERSION_3, place),
        (V2, VERSION_2, Reactors::ALONE),
        (A, VERSION, Reactors::ALONE),
    ] {
        h.from(peer, &ready(peer.instance, &["chat"]));
        let sent = h.wire.take(peer.pipe);
        assert_eq!(sent.len(), 1, "v{version}");
        assert_eq!(sent[0][0], [version, 0x11, 0], "WELCOME in v{version}");
        let frames: Vec<&[u8]> = sent[0].iter().map(Vec::as_slice).collect();
        let welcome = decode(&frames).map(Reply::from);
        assert_eq!(welcome, Ok(welcome_as(reactors)), "v{version}");
    }
}
