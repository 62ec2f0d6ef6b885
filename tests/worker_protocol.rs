//! The worker side of the backend protocol (docs/protocol.md), without a
//! node: each test binds a real ZeroMQ ROUTER on loopback and plays the
//! node with the codec, against `averyws_worker` (the library
//! the reference workers are built on, running the echo worker's own
//! handler) and against `examples/python/echo_worker.py`.
//!
//! Timing is checked against the rules the worker cannot beat (not dead
//! before liveness x heartbeat of silence, no new DEALER before the
//! backoff), exactly; what it should not exceed gets seconds of room, and
//! the backoff it chose is read from its own log, not from a stopwatch.

mod common;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, Once};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use averyws::backend::batch::BatchBuilder;
use averyws::backend::curve;
use averyws::backend::message::{
    Connect, Data, ErrorCode, ErrorReply, List, MessageType, Payload, Reactors, Welcome,
};
use averyws::backend::siblings::sibling;
use averyws::backend::{
    decode, encode, encode_in, Frames, KeyRing, Message, ReplayPolicy, Signer, Verifier, VERSION,
    VERSION_2, VERSION_3,
};
use averyws_worker::{self as worker, Config, Event, NodeId, Worker, WorkerError};
use common::procs::{join, python_with_zmq};

/// How long to wait for something that should happen.
const LIMIT: Duration = Duration::from_secs(5);
/// How long to watch for something that should not happen.
const QUIET: Duration = Duration::from_millis(400);
const KEYS: &[u8] = b"k1:0123456789abcdef0123456789abcdef\n";
/// Same key id, another secret: what a forger without the key has.
const FORGED_KEYS: &[u8] = b"k1:fedcba9876543210fedcba9876543210\n";
const BOOT: u64 = 0x0102_0304_0506_0708;
const OTHER_BOOT: u64 = 0x0a0b_0c0d_0e0f_1011;
const PYTHON_WORKER: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/examples/python/echo_worker.py"
);

#[test]
fn ready_names_the_services_and_heartbeats_follow_welcome() {
    let mut node = FakeNode::new(None, BOOT);
    let worker = Running::start(config(&node, &["alpha", "beta.v2"]), Box::new(worker::echo));
    let ready = node.wait_for(MessageType::Ready, LIMIT);
    ready.with(|message| {
        let Message::Ready(ready) = message else {
            unreachable!()
        };
        assert_eq!(ready.instance, worker.instance);
        assert_ne!(ready.instance, 0);
        assert_eq!(
            ready.services.iter().collect::<Vec<_>>(),
            ["alpha", "beta.v2"]
        );
        assert!(!ready.name.is_empty());
    });
    assert_eq!(ready.frames[0], [1, 0x10, 0], "unsigned READY header");
    assert_eq!(node.refused_versions, 1, "READY in version 3 first");
    // Heartbeats every 100 ms, and a liveness (50) that forgives this
    // test's thread seconds off the CPU.
    node.send(&ready.peer, &welcome_with(BOOT, 100, 50, 65536), 0);
    // The worker must heartbeat at that interval, to the same pipe,
    // carrying its instance id, and must not register again. Ten come
    // within LIMIT: on its own interval (2 s here, see `config`; 1 s by
    // default) it could send five at most.
    let heartbeats_in = |seen: &[Received]| {
        let heartbeats = seen.iter().filter(|r| r.kind == MessageType::Heartbeat);
        heartbeats.count()
    };
    let seen = node.keep_alive(&ready.peer, LIMIT, |seen| heartbeats_in(seen) >= 10);
    assert!(
        heartbeats_in(&seen) >= 10,
        "{} heartbeats in {LIMIT:?}",
        heartbeats_in(&seen)
    );
    for received in seen.iter().filter(|r| r.kind == MessageType::Heartbeat) {
        assert_eq!(received.peer, ready.peer);
        let boot = received.with(|message| match message {
            Message::Heartbeat { boot } => boot,
            _ => unreachable!(),
        });
        assert_eq!(boot, worker.instance);
    }
    assert!(
        !seen.iter().any(|r| r.kind == MessageType::Ready),
        "READY again"
    );
    // Kept alive all along: no NodeReset.
    assert_eq!(worker.next_event(Duration::ZERO), None);
}

#[test]
fn a_message_is_echoed_with_send() {
    let mut node = FakeNode::new(None, BOOT);
    let worker = Running::start(config(&node, &["worker-echo"]), Box::new(worker::echo));
    let peer = node.wait_for(MessageType::Ready, LIMIT).peer;
    node.welcome(&peer, BOOT, 1000, 65536);
    node.send(&peer, &connect(7, "room=blue&x"), worker.instance);
    let Some(Event::Connect(connected)) = worker.next_event(LIMIT) else {
        panic!("no CONNECT event")
    };
    assert_eq!((connected.node, connected.conn), (NodeId(0), 7));
    assert_eq!(connected.query_param("room"), Some("blue"));
    assert_eq!(connected.query_param("x"), Some(""));
    assert_eq!(connected.header("origin"), Some(&b"https://a.example"[..]));
    let cases = [
        (7, Payload::Text("hé")),
        (7, Payload::Binary(&[0, 255, 1])),
        (9, Payload::Text("")),
    ];
    for (conn, payload) in cases {
        node.send(
            &peer,
            &Message::Message(Data { conn, payload }),
            worker.instance,
        );
        let send = node.wait_for(MessageType::Send, LIMIT);
        send.with(|message| {
            let Message::Send(send) = message else {
                unreachable!()
            };
            assert_eq!(send.conns.iter().collect::<Vec<_>>(), [conn]);
            assert_eq!(send.payload, payload);
        });
    }
}

/// Section 13: with a version 2 node the worker registers in version 2,
/// takes a MESSAGES batch as one event per record, in order, and answers
/// with one SENDS holding every reply, in the same order; a reply too
/// large for any batch goes as a v1-layout SEND.
#[test]
fn a_version_2_node_gets_batches_both_ways() {
    for keys in [None, Some(KeyRing::parse(KEYS).expect("keys"))] {
        let signed = keys.is_some();
        let mut node = FakeNode::v2(keys.as_ref(), BOOT);
        let mut config = config(&node, &["worker-echo"]);
        config.keys = keys.clone();
        let worker = Running::start(config, Box::new(worker::echo));
        let ready = node.wait_for(MessageType::Ready, LIMIT);
        assert_eq!(ready.frames[0], [2, 0x10, u8::from(signed)], "READY in v2");
        let peer = ready.peer;
        let instance = ready.sender.unwrap_or(0);
        node.send(&peer, &welcome(BOOT, 1000, 1 << 20), instance);
        let records = [
            (7, Payload::Text("hé")),
            (8, Payload::Binary(&[0, 255])),
            (7, Payload::Text("")),
        ];
        let mut batch = BatchBuilder::default();
        for (conn, payload) in records {
            batch.push(conn, payload);
        }
        node.send(&peer, &Message::Messages(batch.batch()), worker.instance);
        for (conn, payload) in records {
            let Some(Event::Message {
                conn: got,
                payload: got_payload,
                ..
            }) = worker.next_event(LIMIT)
            else {
                panic!("signed {signed}: no MESSAGE event for {conn}")
            };
            assert_eq!((got, got_payload.as_payload()), (conn, payload));
        }
        let sends = node.wait_for(MessageType::Sends, LIMIT);
        assert_eq!(sends.frames[0][0], 2, "signed {signed}: v2");
        sends.with(|message| {
            let Message::Sends(replies) = message else {
                unreachable!()
            };
            assert_eq!(replies.records().collect::<Vec<_>>(), records);
        });
        // Too large for any batch: a v1-layout MESSAGE, echoed as SEND.
        let huge = vec![b'y'; 70_000];
        let data = Message::Message(Data {
            conn: 9,
            payload: Payload::Binary(&huge),
        });
        node.send(&peer, &data, worker.instance);
        let send = node.wait_for(MessageType::Send, LIMIT);
        send.with(|message| {
            let Message::Send(send) = message else {
                unreachable!()
            };
            assert_eq!(send.payload, Payload::Binary(&huge));
        });
        assert_eq!(node.refused_versions, 1, "version 3 refused, 2 taken");
        drop(worker);
    }
}

#[test]
fn garbage_is_dropped_and_the_worker_keeps_serving() {
    let mut node = FakeNode::new(None, BOOT);
    let worker = Running::start(config(&node, &["worker-echo"]), Box::new(worker::echo));
    let peer = node.wait_for(MessageType::Ready, LIMIT).peer;
    // An event before WELCOME is dropped: connection ids need a boot.
    node.send(&peer, &text(3, "too early"), worker.instance);
    node.welcome(&peer, BOOT, 1000, 65536);
    let valid = node.frames(&text(5, "hi"), worker.instance);
    let mut signed_flag = valid.clone();
    signed_flag[0][2] = 1;
    let mut bad_kind = valid.clone();
    bad_kind[1][8] = 3;
    let wrong_direction = node.frames(
        &Message::Send(averyws::backend::message::SendTo {
            conns: List::from(&[5u64][..]),
            payload: Payload::Text("x"),
        }),
        0,
    );
    let garbage: Vec<Vec<Vec<u8>>> = vec![
        vec![vec![]],
        vec![vec![2, 0x21, 0], vec![0; 9], b"v2".to_vec()],
        vec![vec![1, 0x21]],
        vec![vec![1, 0x03, 0], vec![0; 8]],
        vec![vec![1, 0x02, 0]; 200],
        signed_flag,
        bad_kind,
        valid[..2].to_vec(),
        wrong_direction,
    ];
    let count = garbage.len() as u64;
    for frames in garbage {
        node.send_raw(&peer, frames);
    }
    node.send_raw(&peer, valid);
    let send = node.wait_for(MessageType::Send, LIMIT);
    send.with(|message| {
        let Message::Send(send) = message else {
            unreachable!()
        };
        assert_eq!(
            send.conns.iter().collect::<Vec<_>>(),
            [5],
            "not the early one"
        );
    });
    let sends = node.collect(QUIET);
    assert!(!sends.iter().any(|r| r.kind == MessageType::Send));
    assert_eq!(worker.stop(), count + 1, "each counted as dropped");
}

#[test]
fn signed_messages_verify_and_forgeries_are_ignored() {
    let keys = KeyRing::parse(KEYS).expect("keys");
    let mut node = FakeNode::new(Some(&keys), BOOT);
    let mut config = config(&node, &["worker-echo"]);
    config.keys = Some(keys.clone());
    let worker = Running::start(config, Box::new(worker::echo));
    let ready = node.wait_for(MessageType::Ready, LIMIT);
    assert_eq!(ready.frames[0], [1, 0x10, 1], "signed READY");
    assert_eq!(
        node.refused_versions, 1,
        "fell back on a refusal signed for recipient 0"
    );
    assert_eq!(ready.sender, Some(worker.instance));
    let peer = ready.peer;
    let me = worker.instance;
    // Forged WELCOMEs: another secret under the same key id, no
    // signature, signed for another worker, and a replay of a genuine
    // WELCOME from another boot's node.
    let welcome = welcome(BOOT, 1000, 65536);
    let mut forger = FakeNode::signer_for(FORGED_KEYS, BOOT);
    node.send_raw(&peer, sign(&mut forger, &welcome, me));
    node.send_raw(&peer, unsigned(&welcome));
    node.send(&peer, &welcome, me + 1);
    // A genuine MESSAGE: dropped, the worker is not registered.
    node.send(&peer, &text(7, "before"), me);
    let seen = node.collect(QUIET);
    assert!(
        !seen.iter().any(|r| r.kind == MessageType::Send),
        "SEND before WELCOME"
    );
    assert!(seen.iter().all(|r| r.kind == MessageType::Ready));
    // The genuine WELCOME; a MESSAGE comes back signed for this boot.
    node.send(&peer, &welcome, me);
    let echoed = node.send(&peer, &text(7, "after"), me);
    let send = node.wait_for(MessageType::Send, LIMIT);
    assert_eq!(send.sender, Some(me));
    assert_eq!(send.frames[0], [1, 0x30, 1]);
    // Replayed: no second SEND. A MESSAGE signed by another boot than the
    // node's: dropped too.
    node.send_raw(&peer, echoed);
    let mut impostor = FakeNode::signer_for(KEYS, OTHER_BOOT);
    node.send_raw(&peer, sign(&mut impostor, &text(7, "impostor"), me));
    let seen = node.collect(QUIET);
    assert!(
        !seen.iter().any(|r| r.kind == MessageType::Send),
        "replay echoed"
    );
    // Heartbeats are signed for the node's boot too (the FakeNode's
    // verifier checks the recipient of every message).
    node.wait_for(MessageType::Heartbeat, LIMIT);
    assert_eq!(
        worker.stop(),
        6,
        "3 forgeries, early event, replay, impostor"
    );
}

#[test]
fn welcome_or_heartbeat_with_a_new_boot_registers_again() {
    let mut node = FakeNode::new(None, BOOT);
    let worker = Running::start(config(&node, &["worker-echo"]), Box::new(worker::echo));
    let peer = node.wait_for(MessageType::Ready, LIMIT).peer;
    node.welcome(&peer, BOOT, 1000, 65536);
    node.welcome(&peer, BOOT, 1000, 65536);
    let seen = node.collect(QUIET);
    assert!(
        !seen.iter().any(|r| r.kind == MessageType::Ready),
        "same boot"
    );
    assert_eq!(worker.next_event(Duration::ZERO), None);

    node.welcome(&peer, OTHER_BOOT, 1000, 65536);
    node.wait_for(MessageType::Ready, LIMIT);
    assert_eq!(
        worker.next_event(LIMIT),
        Some(Event::NodeReset { node: NodeId(0) })
    );
    node.welcome(&peer, OTHER_BOOT, 1000, 65536);

    node.send(&peer, &Message::Heartbeat { boot: BOOT }, worker.instance);
    node.wait_for(MessageType::Ready, LIMIT);
    assert_eq!(
        worker.next_event(LIMIT),
        Some(Event::NodeReset { node: NodeId(0) })
    );
    node.welcome(&peer, BOOT, 1000, 65536);
    // Registered again: events flow.
    node.send(&peer, &text(4, "again"), worker.instance);
    node.wait_for(MessageType::Send, LIMIT);
}

#[test]
fn unknown_peer_registers_again() {
    let mut node = FakeNode::new(None, BOOT);
    let worker = Running::start(config(&node, &["worker-echo"]), Box::new(worker::echo));
    let peer = node.wait_for(MessageType::Ready, LIMIT).peer;
    node.welcome(&peer, BOOT, 1000, 65536);
    let unknown = Message::Error(ErrorReply {
        code: ErrorCode::UNKNOWN_PEER,
        about: MessageType::Heartbeat as u8,
        detail: "",
        conns: List::from(&[][..]),
    });
    node.send(&peer, &unknown, worker.instance);
    node.wait_for(MessageType::Ready, LIMIT);
    assert_eq!(
        worker.next_event(LIMIT),
        Some(Event::NodeReset { node: NodeId(0) })
    );
    // Other errors reach the application.
    node.welcome(&peer, BOOT, 1000, 65536);
    let gone = Message::Error(ErrorReply {
        code: ErrorCode::NO_SUCH_CONNECTION,
        about: MessageType::Send as u8,
        detail: "",
        conns: List::from(&[8u64, 9][..]),
    });
    node.send(&peer, &gone, worker.instance);
    let Some(Event::Error { code, conns, .. }) = worker.next_event(LIMIT) else {
        panic!("no ERROR event")
    };
    assert_eq!((code, conns), (ErrorCode::NO_SUCH_CONNECTION, vec![8, 9]));
}

#[test]
fn silence_or_bye_makes_the_worker_reconnect_after_a_second() {
    let mut node = FakeNode::new(None, BOOT);
    let worker = Running::start(config(&node, &["worker-echo"]), Box::new(worker::echo));
    let first = node.wait_for(MessageType::Ready, LIMIT).peer;
    node.welcome(&first, BOOT, 100, 65536);
    let silent_from = Instant::now();
    // Dead after 3 x 100 ms of silence, then a new DEALER after the first
    // backoff, 1 s: never sooner, the WELCOME came after `silent_from`.
    // Within 2.2 s more: a worker on any other interval than the WELCOME's
    // (its own 2 s, see `config`, or the default 1 s) would take 4 s at
    // least.
    let second = node.wait_for_new_pipe(&first, LIMIT);
    let waited = silent_from.elapsed();
    let window = Duration::from_millis(1300)..Duration::from_millis(3500);
    assert!(window.contains(&waited), "{waited:?}");
    assert_eq!(
        worker.next_event(LIMIT),
        Some(Event::NodeReset { node: NodeId(0) })
    );
    // A 10 s heartbeat: silence cannot end this link within LIMIT, BYE
    // must.
    node.welcome(&second, BOOT, 10_000, 65536);
    let bye_at = Instant::now();
    node.send(&second, &Message::Bye, worker.instance);
    let third = node.wait_for_new_pipe(&second, LIMIT);
    let waited = bye_at.elapsed();
    assert!(waited >= Duration::from_secs(1), "after BYE: {waited:?}");
    assert_ne!(third, first);
    assert_eq!(
        worker.next_event(LIMIT),
        Some(Event::NodeReset { node: NodeId(0) })
    );
    // The first backoff both times, in the worker's words: the second
    // link's WELCOME reset what the first death had doubled.
    let deaths = node.deaths();
    let waits: Vec<u64> = deaths.iter().map(|(_, ms)| *ms).collect();
    assert_eq!(waits, [1000, 1000], "{deaths:?}");
    assert!(deaths[0].0.starts_with("silent for "), "{deaths:?}");
    assert_eq!(deaths[1].0, "it said BYE");
}

#[test]
fn reconnect_backoff_doubles_while_the_node_stays_silent() {
    // A version 3 node does not refuse the READY, so it stays silent.
    let mut node = FakeNode::v3(None, BOOT);
    let mut config = config(&node, &["worker-echo"]);
    config.heartbeat = Duration::from_millis(100);
    config.reconnect_initial = Duration::from_millis(200);
    config.reconnect_max = Duration::from_millis(800);
    // Nobody WELCOMEs: each DEALER is dead after 300 ms of silence
    // (3 x 100 ms), then the worker waits 200, 400, 800, 800 ms.
    const WAITS: [u64; 4] = [200, 400, 800, 800];
    let started = Instant::now();
    let _worker = Running::start(config, Box::new(worker::echo));
    let mut pipes: Vec<(Vec<u8>, Duration)> = Vec::new();
    let total: u64 = WAITS.iter().map(|wait| 300 + wait).sum();
    let deadline = started + Duration::from_millis(total) + LIMIT;
    while pipes.len() <= WAITS.len() && Instant::now() < deadline {
        if let Some(received) = node.recv(Duration::from_millis(50)) {
            if !pipes.iter().any(|(peer, _)| *peer == received.peer) {
                pipes.push((received.peer, started.elapsed()));
            }
        }
    }
    let arrivals: Vec<Duration> = pipes.iter().map(|(_, at)| *at).collect();
    assert_eq!(arrivals.len(), 5, "a new DEALER after each death");
    // None sooner than the deaths and waits before it allow: a worker
    // that did not double would bring the third 200 ms early, the fifth
    // 1.4 s early.
    let mut earliest = 0;
    for (pipe, wait) in arrivals[1..].iter().zip(WAITS) {
        earliest += 300 + wait;
        let earliest = Duration::from_millis(earliest);
        assert!(*pipe >= earliest, "{arrivals:?}: one before {earliest:?}");
    }
    // And the waits it chose, doubling up to the cap, in its own words.
    let deaths = node.deaths();
    let waits: Vec<u64> = deaths.iter().map(|(_, ms)| *ms).collect();
    assert!(waits.starts_with(&WAITS), "{deaths:?}");
}

/// Section 14: a version 3 WELCOME that names sibling reactors makes the
/// worker link to each, once, and to no more than `max_nodes` nodes in
/// all: a WELCOME claiming 65,535 reactors opens three sockets here.
#[test]
fn a_version_3_welcome_links_siblings_up_to_max_nodes() {
    let mut node = FakeNode::v3(None, BOOT);
    let mut config = config(&node, &["worker-echo"]);
    config.max_nodes = 4;
    let _worker = Running::start(config, Box::new(worker::echo));
    let ready = node.wait_for(MessageType::Ready, LIMIT);
    assert_eq!(ready.frames[0][0], VERSION_3, "READY in version 3");
    assert_eq!(node.refused_versions, 0);
    let welcome = Message::Welcome(Welcome {
        reactors: Reactors {
            index: 0,
            count: u16::MAX,
        },
        ..welcome_fields(BOOT)
    });
    let fifth = sibling(&node.endpoint, 0, 4).expect("a port above");
    let capped = format!("{fifth}: not linked: 4 nodes is the most");
    let from = node.log_from;
    let lines = |needle: &str| -> Vec<String> {
        let log = WORKER_LOG.lock().expect("worker log");
        log[from..]
            .iter()
            .filter(|l| l.contains(needle))
            .cloned()
            .collect()
    };
    for round in 1..=2 {
        node.send(&ready.peer, &welcome, 0);
        let deadline = Instant::now() + LIMIT;
        while lines(&capped).len() < round && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(lines(&capped).len(), round, "WELCOME {round} hit the cap");
    }
    let linked = lines(&format!("{}: linking to sibling reactor", node.endpoint));
    let expected: Vec<String> = (1..4)
        .map(|j| sibling(&node.endpoint, 0, j).expect("a port above"))
        .map(|ep| format!("{}: linking to sibling reactor {ep}", node.endpoint))
        .collect();
    assert_eq!(linked, expected, "each sibling once, the cap respected");
}

#[test]
fn publish_goes_to_every_node_and_leaves_the_sender_out_on_its_own() {
    let mut a = FakeNode::new(None, BOOT);
    let mut b = FakeNode::new(None, OTHER_BOOT);
    let config = Config::new(
        vec![a.endpoint.clone(), b.endpoint.clone()],
        vec!["chat".to_owned()],
    );
    // The chat worker's logic, cut down: subscribe on CONNECT, publish
    // on MESSAGE.
    let chat = |worker: &mut Worker, event: Event| match event {
        Event::Connect(connect) => worker
            .subscribe(connect.node, connect.conn, "rooms/lobby")
            .expect("subscribe"),
        Event::Message {
            node,
            conn,
            payload,
        } => {
            let reached = worker
                .publish("rooms/lobby", Some((node, conn)), payload.as_payload())
                .expect("publish");
            assert_eq!(reached, 2);
        }
        _ => {}
    };
    let worker = Running::start(config, Box::new(chat));
    let peer_a = a.wait_for(MessageType::Ready, LIMIT).peer;
    let peer_b = b.wait_for(MessageType::Ready, LIMIT).peer;
    a.welcome(&peer_a, BOOT, 1000, 65536);
    b.welcome(&peer_b, OTHER_BOOT, 1000, 65536);
    // The two nodes' sockets are not ordered with each other: make sure
    // the worker has B's WELCOME (it subscribes B's client only after it)
    // before A's message asks it to publish to both.
    b.send(&peer_b, &connect(8, ""), worker.instance);
    let _ = b.wait_for(MessageType::Subscribe, LIMIT);
    a.send(&peer_a, &connect(7, ""), worker.instance);
    a.wait_for(MessageType::Subscribe, LIMIT).with(|message| {
        assert_eq!(
            format!("{message:?}"),
            r#"Subscribe(Subscription { conn: 7, channel: "rooms/lobby" })"#
        );
    });
    a.send(&peer_a, &text(7, "hello room"), worker.instance);
    for (node, except) in [(&mut a, Some(7)), (&mut b, None)] {
        node.wait_for(MessageType::Publish, LIMIT).with(|message| {
            let Message::Publish(publish) = message else {
                unreachable!()
            };
            assert_eq!(publish.channel, "rooms/lobby");
            assert_eq!(publish.except, except);
            assert_eq!(publish.payload, Payload::Text("hello room"));
        });
    }
}

#[test]
fn commands_check_registration_and_caps_and_bye_reaches_the_node() {
    let mut node = FakeNode::new(None, BOOT);
    let (result_tx, results) = mpsc::channel();
    let probe = move |worker: &mut Worker, event: Event| {
        if let Event::Message { node, conn, .. } = event {
            let big = vec![0; 101];
            let outcomes = [
                worker.send(node, &[conn], Payload::Binary(&big)),
                worker.send(NodeId(5), &[conn], Payload::Text("x")),
                worker.subscribe(node, conn, ""),
                worker.close(node, conn, averyws::ws::CloseCode(1005), ""),
                worker.close(node, 0, averyws::ws::CloseCode::NORMAL, ""),
                worker.send(node, &[], Payload::Text("nobody")),
                worker.close(node, conn, averyws::ws::CloseCode(4000), "done"),
            ];
            let _ = result_tx.send(outcomes.map(|outcome| outcome.map_err(|e| e.to_string())));
        }
    };
    let worker = Running::start(config(&node, &["worker-echo"]), Box::new(probe));
    let peer = node.wait_for(MessageType::Ready, LIMIT).peer;
    node.welcome(&peer, BOOT, 1000, 100);
    node.send(&peer, &text(3, "go"), worker.instance);
    let outcomes = results.recv_timeout(LIMIT).expect("handler ran");
    let expected: [Result<(), String>; 7] = [
        Err(WorkerError::TooBig {
            node: NodeId(0),
            len: 101,
            max: 100,
        }
        .to_string()),
        Err(WorkerError::UnknownNode(NodeId(5)).to_string()),
        Err("invalid command: Channel outside its length bounds".into()),
        Err("invalid command: close code 1005 not allowed".into()),
        Err("invalid command: connection id 0".into()),
        Ok(()),
        Ok(()),
    ];
    assert_eq!(outcomes, expected);
    node.wait_for(MessageType::Close, LIMIT).with(|message| {
        assert_eq!(
            format!("{message:?}"),
            r#"Close(Close { conn: 3, code: CloseCode(4000), reason: "done" })"#
        );
    });
    assert_eq!(worker.stop(), 0);
    node.wait_for(MessageType::Bye, LIMIT);
}

#[test]
fn a_bad_configuration_is_refused() {
    let table: [(Vec<&str>, Vec<&str>, &str); 5] = [
        (vec![], vec!["a"], "no node endpoint"),
        (vec!["tcp://127.0.0.1:1"], vec!["echo"], "reserved"),
        (vec!["tcp://127.0.0.1:1"], vec!["a/b"], "A-Z a-z"),
        (vec!["tcp://127.0.0.1:1"], vec![], "services"),
        (vec!["nope://x"], vec!["a"], "cannot connect"),
    ];
    for (endpoints, services, expected) in table {
        let config = Config::new(
            endpoints.iter().map(|e| e.to_string()).collect(),
            services.iter().map(|s| s.to_string()).collect(),
        );
        match Worker::new(config) {
            Err(WorkerError::Config(why)) => assert!(why.contains(expected), "{why}"),
            other => panic!("{endpoints:?} {services:?}: {other:?}"),
        }
    }
}

#[test]
fn python_worker_echoes_and_says_bye() {
    python_worker(None);
}

#[test]
fn python_worker_signs_verifies_and_ignores_forgeries() {
    python_worker(Some(KEYS));
}

/// Section 13 in Python: against a version 2 node the worker registers in
/// version 2 and echoes a MESSAGES batch as one SENDS, records in order;
/// signed and unsigned.
#[test]
fn python_worker_echoes_a_batch_in_one_sends() {
    if !python_with_zmq() {
        return;
    }
    for keys in [None, Some(KEYS)] {
        let ring = keys.map(|text| KeyRing::parse(text).expect("keys"));
        let mut node = FakeNode::v2(ring.as_ref(), BOOT);
        let key_file = keys.map(TempFile::new);
        let mut args = vec![
            PYTHON_WORKER.to_owned(),
            "--connect".into(),
            node.endpoint.clone(),
        ];
        if let Some(file) = &key_file {
            args.extend(["--key-file".into(), file.0.display().to_string()]);
        }
        let python = Python::spawn(&args);
        let ready = node.wait_for(MessageType::Ready, LIMIT);
        assert_eq!(ready.frames[0][0], 2, "READY in v2");
        let me = ready.with(|message| match message {
            Message::Ready(ready) => ready.instance,
            _ => unreachable!(),
        });
        node.send(&ready.peer, &welcome_with(BOOT, 200, 25, 65536), me);
        let records = [
            (7, Payload::Text("hé")),
            (8, Payload::Binary(&[0, 255])),
            (7, Payload::Text("")),
        ];
        let mut batch = BatchBuilder::default();
        for (conn, payload) in records {
            batch.push(conn, payload);
        }
        node.send(&ready.peer, &Message::Messages(batch.batch()), me);
        let sends = node.wait_for(MessageType::Sends, LIMIT);
        assert_eq!(sends.frames[0][0], 2);
        sends.with(|message| {
            let Message::Sends(replies) = message else {
                unreachable!()
            };
            let replies: Vec<_> = replies.records().collect();
            assert_eq!(replies, records, "{}", python.log());
        });
        assert_eq!(node.refused_versions, 1, "version 3 refused, 2 taken");
    }
}

/// Run `examples/python/echo_worker.py` against a ROUTER: READY, WELCOME,
/// echo, heartbeats, UNKNOWN_PEER, and BYE on SIGTERM; with `keys`,
/// everything signed and a forged WELCOME ignored.
fn python_worker(keys: Option<&[u8]>) {
    if !python_with_zmq() {
        return;
    }
    let ring = keys.map(|text| KeyRing::parse(text).expect("keys"));
    let mut node = FakeNode::new(ring.as_ref(), BOOT);
    let key_file = keys.map(TempFile::new);
    let mut args = vec![
        PYTHON_WORKER.to_owned(),
        "--connect".into(),
        node.endpoint.clone(),
        "--service".into(),
        "py-echo".into(),
    ];
    if let Some(file) = &key_file {
        args.extend(["--key-file".into(), file.0.display().to_string()]);
    }
    let mut python = Python::spawn(&args);
    let ready = node.wait_for(MessageType::Ready, LIMIT);
    let (peer, me) = (
        ready.peer.clone(),
        ready.with(|message| match message {
            Message::Ready(ready) => {
                assert_eq!(ready.services.iter().collect::<Vec<_>>(), ["py-echo"]);
                ready.instance
            }
            _ => unreachable!(),
        }),
    );
    assert_ne!(me, 0);
    assert_eq!(ready.frames[0][2], u8::from(keys.is_some()), "SIGNED flag");
    assert_eq!(
        (ready.frames[0][0], node.refused_versions),
        (1, 1),
        "READY in v1 after the v1-only node refused v3"
    );
    // Heartbeats every 200 ms; liveness 25 forgives this test's thread
    // seconds off the CPU between the messages it sends.
    let welcome = welcome_with(BOOT, 200, 25, 65536);
    if keys.is_some() {
        assert_eq!(ready.sender, Some(me));
        let mut forger = FakeNode::signer_for(FORGED_KEYS, BOOT);
        node.send_raw(&peer, sign(&mut forger, &welcome, me));
        node.send_raw(&peer, unsigned(&welcome));
        node.send(&peer, &text(7, "before"), me);
        let seen = node.collect(QUIET);
        assert!(
            !seen.iter().any(|r| r.kind == MessageType::Send),
            "{}",
            python.log()
        );
    }
    node.send(&peer, &welcome, me);
    for payload in [Payload::Text("hé"), Payload::Binary(&[0, 255])] {
        node.send(&peer, &Message::Message(Data { conn: 7, payload }), me);
        let send = node.wait_for(MessageType::Send, LIMIT);
        send.with(|message| {
            let Message::Send(send) = message else {
                unreachable!()
            };
            assert_eq!(send.conns.iter().collect::<Vec<_>>(), [7]);
            assert_eq!(send.payload, payload);
        });
    }
    let heartbeat = node.wait_for(MessageType::Heartbeat, LIMIT);
    assert_eq!(
        heartbeat.with(|m| format!("{m:?}")),
        format!("Heartbeat {{ boot: {me} }}")
    );
    let unknown = Message::Error(ErrorReply {
        code: ErrorCode::UNKNOWN_PEER,
        about: 0x01,
        detail: "",
        conns: List::from(&[][..]),
    });
    node.send(&peer, &unknown, me);
    node.wait_for(MessageType::Ready, LIMIT);
    node.send(&peer, &welcome, me);
    // A heartbeat proves the WELCOME arrived: BYE goes to registered nodes.
    node.wait_for(MessageType::Heartbeat, LIMIT);
    python.signal("TERM");
    node.wait_for(MessageType::Bye, LIMIT);
    assert_eq!(python.wait(LIMIT), Some(0), "{}", python.log());
}

/// A node's ROUTER, bound on an ephemeral loopback port, speaking the
/// protocol through the codec; with keys, it signs what it sends and
/// verifies (asserting) everything it receives.
struct FakeNode {
    /// The highest protocol version it speaks: 1, unless made by
    /// [`FakeNode::v2`] or [`FakeNode::v3`].
    speaks: u8,
    /// READYs answered with UNSUPPORTED_VERSION, as a v1-only node does.
    refused_versions: usize,
    router: zmq::Socket,
    endpoint: String,
    signer: Option<Signer>,
    verifier: Option<Verifier>,
    out: Frames,
    /// Where this node's part of [`WORKER_LOG`] starts.
    log_from: usize,
    _context: zmq::Context,
}

/// One message from the worker: its pipe's routing id and its frames.
struct Received {
    peer: Vec<u8>,
    kind: MessageType,
    frames: Vec<Vec<u8>>,
    /// The signature's sender, on a signed link.
    sender: Option<u64>,
}

impl FakeNode {
    fn new(keys: Option<&KeyRing>, boot: u64) -> FakeNode {
        let log_from = keep_worker_log();
        let context = zmq::Context::new();
        let router = context.socket(zmq::ROUTER).expect("router");
        router.set_linger(0).expect("linger");
        router.set_router_mandatory(true).expect("mandatory");
        if keys.is_some() {
            // A signed link is CURVE (docs/protocol.md section 1); with no
            // ZAP handler in this context libzmq takes any client key.
            curve::serve(&router).expect("CURVE server");
        }
        router.bind("tcp://127.0.0.1:*").expect("bind");
        let endpoint = router
            .get_last_endpoint()
            .expect("endpoint")
            .expect("utf-8");
        FakeNode {
            speaks: VERSION,
            refused_versions: 0,
            router,
            endpoint,
            signer: keys.map(|keys| keys.signer(boot)),
            verifier: keys.map(|keys| Verifier::new(keys.clone(), boot, ReplayPolicy::default())),
            out: Frames::new(),
            log_from,
            _context: context,
        }
    }

    /// A node that speaks version 2 (docs/protocol.md section 13).
    fn v2(keys: Option<&KeyRing>, boot: u64) -> FakeNode {
        FakeNode {
            speaks: VERSION_2,
            ..FakeNode::new(keys, boot)
        }
    }

    /// A node that speaks version 3 (docs/protocol.md section 14).
    fn v3(keys: Option<&KeyRing>, boot: u64) -> FakeNode {
        FakeNode {
            speaks: VERSION_3,
            ..FakeNode::new(keys, boot)
        }
    }

    fn signer_for(keys: &[u8], boot: u64) -> Signer {
        KeyRing::parse(keys).expect("keys").signer(boot)
    }

    fn recv(&mut self, timeout: Duration) -> Option<Received> {
        let millis = i64::try_from(timeout.as_millis()).unwrap_or(i64::MAX);
        if self.router.poll(zmq::POLLIN, millis).expect("poll") == 0 {
            return None;
        }
        let mut frames = self.router.recv_multipart(0).expect("recv");
        let peer = frames.remove(0);
        if frames[0]
            .first()
            .is_some_and(|&version| version > self.speaks)
        {
            // Section 10, as an older node answers: v1 format, the
            // versions it speaks, signed for recipient 0 (the sender is
            // unverifiable).
            self.refused_versions += 1;
            let about = frames[0].get(1).copied().unwrap_or(0);
            let spoken: Vec<String> = (VERSION..=self.speaks).map(|v| v.to_string()).collect();
            let spoken = spoken.join(" ");
            let refusal = Message::Error(ErrorReply {
                code: ErrorCode::UNSUPPORTED_VERSION,
                about,
                detail: &spoken,
                conns: List::from(&[][..]),
            });
            self.send(&peer, &refusal, 0);
            return None;
        }
        let views: Vec<&[u8]> = frames.iter().map(Vec::as_slice).collect();
        let sender = self.verifier.as_mut().map(|verifier| {
            let verified = verifier.verify(&views, unix_ms());
            verified
                .unwrap_or_else(|why| panic!("{why}: {frames:?}"))
                .sender
        });
        if sender.is_none() {
            assert_eq!(frames[0].get(2), Some(&0), "signed on an unsigned link");
        }
        let message = decode(&views).unwrap_or_else(|why| panic!("{why}: {frames:?}"));
        let kind = message.message_type();
        assert!(kind.sent_by_worker(), "{kind:?}");
        Some(Received {
            peer,
            kind,
            frames,
            sender,
        })
    }

    /// The next message of type `kind`, skipping others (heartbeats,
    /// READY repeats).
    fn wait_for(&mut self, kind: MessageType, within: Duration) -> Received {
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(!left.is_zero(), "no {kind:?} within {within:?}");
            if let Some(received) = self.recv(left) {
                if received.kind == kind {
                    return received;
                }
            }
        }
    }

    /// The routing id of the first READY from a pipe other than `old`.
    fn wait_for_new_pipe(&mut self, old: &[u8], within: Duration) -> Vec<u8> {
        let deadline = Instant::now() + within;
        loop {
            let received = self.wait_for(
                MessageType::Ready,
                deadline.saturating_duration_since(Instant::now()),
            );
            if received.peer != old {
                return received.peer;
            }
        }
    }

    /// Everything the worker sends for `span`.
    fn collect(&mut self, span: Duration) -> Vec<Received> {
        let deadline = Instant::now() + span;
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return seen;
            }
            seen.extend(self.recv(left));
        }
    }

    /// Everything the worker sends until what came is `enough` or
    /// `within` passed, sending HEARTBEAT to `peer` every 100 ms.
    fn keep_alive(
        &mut self,
        peer: &[u8],
        within: Duration,
        enough: impl Fn(&[Received]) -> bool,
    ) -> Vec<Received> {
        let deadline = Instant::now() + within;
        let mut seen = Vec::new();
        while Instant::now() < deadline && !enough(&seen) {
            self.send(peer, &Message::Heartbeat { boot: BOOT }, 0);
            seen.extend(self.collect(Duration::from_millis(100)));
        }
        seen
    }

    /// Each time the worker took this node for dead since the node was
    /// made: why, and the wait before reconnecting it announced (ms), from
    /// the log line `ENDPOINT: node dead (WHY); reconnecting in N ms`.
    fn deaths(&self) -> Vec<(String, u64)> {
        let prefix = format!("{}: node dead (", self.endpoint);
        let log = WORKER_LOG.lock().expect("worker log");
        log[self.log_from..]
            .iter()
            .filter_map(|line| {
                let (why, wait) = line
                    .strip_prefix(&prefix)?
                    .split_once("); reconnecting in ")?;
                let ms = wait.strip_suffix(" ms")?.parse().ok()?;
                Some((why.to_owned(), ms))
            })
            .collect()
    }

    /// `message` as this node sends it to the worker `recipient`.
    fn frames(&mut self, message: &Message<'_>, recipient: u64) -> Vec<Vec<u8>> {
        // Answers to a READY it refused go in v1, as everything else a
        // v1-only node sends.
        let version = match message {
            Message::Error(e) if e.code == ErrorCode::UNSUPPORTED_VERSION => VERSION,
            _ => self.speaks,
        };
        match &mut self.signer {
            Some(signer) => signer
                .encode(version, message, recipient, unix_ms(), &mut self.out)
                .expect("encode"),
            None => encode_in(version, message, &mut self.out).expect("encode"),
        }
        self.out.iter().map(<[u8]>::to_vec).collect()
    }

    /// Send `message` to `peer`; the frames sent, for replaying.
    fn send(&mut self, peer: &[u8], message: &Message<'_>, recipient: u64) -> Vec<Vec<u8>> {
        let frames = self.frames(message, recipient);
        self.send_raw(peer, frames.clone());
        frames
    }

    fn send_raw(&self, peer: &[u8], frames: Vec<Vec<u8>>) {
        let all = std::iter::once(peer.to_vec()).chain(frames);
        self.router.send_multipart(all, 0).expect("send");
    }

    fn welcome(&mut self, peer: &[u8], boot: u64, heartbeat_ms: u32, max_payload: u32) {
        // The recipient only matters on a signed link, which these tests
        // welcome by hand.
        self.send(peer, &welcome(boot, heartbeat_ms, max_payload), 0);
    }
}

impl Received {
    /// Decode the frames again for `check`.
    fn with<R>(&self, check: impl for<'a> FnOnce(Message<'a>) -> R) -> R {
        let views: Vec<&[u8]> = self.frames.iter().map(Vec::as_slice).collect();
        check(decode(&views).expect("checked in recv"))
    }
}

/// A [`Worker`] on its own thread, handing each event to a handler and
/// reporting it to the test.
struct Running {
    instance: u64,
    stop: Arc<AtomicBool>,
    events: mpsc::Receiver<Event>,
    thread: Option<JoinHandle<u64>>,
}

type BoxedHandler = Box<dyn FnMut(&mut Worker, Event) + Send>;

impl Running {
    fn start(config: Config, mut handler: BoxedHandler) -> Running {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let (event_tx, events) = mpsc::channel();
        let (id_tx, id_rx) = mpsc::channel();
        let thread = std::thread::spawn(move || {
            let mut worker = Worker::new(config).expect("worker starts");
            id_tx.send(worker.instance()).expect("test waits");
            while !flag.load(Ordering::Relaxed) {
                if let Some(event) = worker.poll(Duration::from_millis(20)) {
                    let _ = event_tx.send(event.clone());
                    handler(&mut worker, event);
                }
            }
            let dropped = worker.dropped();
            worker.bye();
            dropped
        });
        let instance = id_rx.recv_timeout(LIMIT).expect("worker started");
        Running {
            instance,
            stop,
            events,
            thread: Some(thread),
        }
    }

    /// The next event, if one comes within `within`.
    fn next_event(&self, within: Duration) -> Option<Event> {
        self.events.recv_timeout(within).ok()
    }

    /// Stop the worker (it sends BYE); how many messages it dropped.
    fn stop(mut self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        let thread = self.thread.take().expect("running");
        join(thread).expect("worker thread")
    }
}

impl Drop for Running {
    /// Stops the worker; a panic on its thread (the handler's) fails the
    /// test here, unless the test is failing already.
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            join(thread);
        }
    }
}

/// What `averyws_worker` logged in this test binary, a line a
/// record: the worker's own account of what it decided (the backoff it
/// waits), which no stopwatch on a busy machine can tell exactly.
static WORKER_LOG: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// The logger that fills [`WORKER_LOG`].
struct WorkerLog;

impl log::Log for WorkerLog {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        metadata.target().starts_with("averyws_worker")
    }

    fn log(&self, record: &log::Record<'_>) {
        if self.enabled(record.metadata()) {
            let line = record.args().to_string();
            WORKER_LOG.lock().expect("worker log").push(line);
        }
    }

    fn flush(&self) {}
}

/// Installs [`WorkerLog`] (once) and returns how long [`WORKER_LOG`] is.
fn keep_worker_log() -> usize {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        log::set_logger(&WorkerLog).expect("the only logger");
        log::set_max_level(log::LevelFilter::Info);
    });
    WORKER_LOG.lock().expect("worker log").len()
}

/// The Python worker process, its stderr kept for failure messages.
struct Python {
    child: Child,
    log: Arc<Mutex<String>>,
}

impl Python {
    fn spawn(args: &[String]) -> Python {
        let mut child = Command::new("python3")
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start python3");
        let log = Arc::new(Mutex::new(String::new()));
        let sink = Arc::clone(&log);
        let mut stderr = child.stderr.take().expect("stderr");
        std::thread::spawn(move || {
            let mut text = String::new();
            let _ = std::io::Read::read_to_string(&mut stderr, &mut text);
            if let Ok(mut log) = sink.lock() {
                log.push_str(&text);
            }
        });
        Python { child, log }
    }

    fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args([format!("-{name}"), self.child.id().to_string()])
            .status()
            .expect("kill");
        assert!(status.success());
    }

    fn wait(&mut self, limit: Duration) -> Option<i32> {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                // Let the stderr reader finish.
                std::thread::sleep(Duration::from_millis(50));
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    fn log(&self) -> String {
        self.log.lock().map(|log| log.clone()).unwrap_or_default()
    }
}

impl Drop for Python {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        println!("python worker log:\n{}", self.log());
    }
}

/// A key file, removed on drop.
struct TempFile(PathBuf);

impl TempFile {
    fn new(contents: &[u8]) -> TempFile {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let path = std::env::temp_dir().join(format!(
            "averyws-worker-protocol-{}-{}.keys",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::write(&path, contents).expect("write key file");
        TempFile(path)
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// A worker of `services` for `node`. Until a WELCOME it heartbeats
/// (READY) every 2 s and takes the node for dead after 6 s of silence:
/// room for a slow test thread before the WELCOME, and far from the
/// WELCOMEd timing the tests check. Tests of the worker's own timing set
/// theirs.
fn config(node: &FakeNode, services: &[&str]) -> Config {
    let mut config = Config::new(
        vec![node.endpoint.clone()],
        services.iter().map(|s| s.to_string()).collect(),
    );
    config.name = "worker-protocol-test".into();
    config.heartbeat = Duration::from_secs(2);
    config
}

fn welcome(boot: u64, heartbeat_ms: u32, max_payload: u32) -> Message<'static> {
    welcome_with(boot, heartbeat_ms, 3, max_payload)
}

fn welcome_with(boot: u64, heartbeat_ms: u32, liveness: u8, max_payload: u32) -> Message<'static> {
    Message::Welcome(Welcome {
        boot,
        heartbeat_ms,
        liveness,
        max_payload,
        ..welcome_fields(boot)
    })
}

/// A WELCOME's fields: heartbeat 2 s, liveness 3, 64 KiB payloads, the
/// only reactor of its process.
fn welcome_fields(boot: u64) -> Welcome<'static> {
    Welcome {
        boot,
        heartbeat_ms: 2000,
        liveness: 3,
        max_payload: 65536,
        node: "test-node",
        reactors: Reactors::ALONE,
    }
}

fn text(conn: u64, text: &'static str) -> Message<'static> {
    Message::Message(Data {
        conn,
        payload: Payload::Text(text),
    })
}

fn connect(conn: u64, query: &'static str) -> Message<'static> {
    const ROLES: &[&str] = &["member"];
    const HEADERS: &[(&str, &[u8])] = &[("origin", b"https://a.example")];
    Message::Connect(Connect {
        conn,
        reassigned: false,
        service: "worker-echo",
        node: "test-node",
        peer: "127.0.0.1:5555",
        path: "/chat",
        query,
        subprotocol: "",
        user: "alice",
        roles: List::from(ROLES),
        headers: List::from(HEADERS),
    })
}

fn sign(signer: &mut Signer, message: &Message<'_>, recipient: u64) -> Vec<Vec<u8>> {
    let mut out = Frames::new();
    signer
        .encode(VERSION, message, recipient, unix_ms(), &mut out)
        .expect("encode");
    out.iter().map(<[u8]>::to_vec).collect()
}

fn unsigned(message: &Message<'_>) -> Vec<Vec<u8>> {
    let mut out = Frames::new();
    encode(message, &mut out).expect("encode");
    out.iter().map(<[u8]>::to_vec).collect()
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_millis() as u64
}
