//! The backend link end to end (docs/protocol.md): the real binary on
//! loopback, real ZeroMQ workers and real TLS WebSocket clients. Workers
//! are the `averyws_worker` library on threads, the reference
//! example binaries (`echo_worker`, `chat_worker`), the Python worker, and
//! raw DEALER sockets for what no well-behaved worker sends.
//!
//! Every node binds its own `ipc://` endpoint ([`free_endpoint`]) and
//! heartbeats every [`HEARTBEAT`]: a dead worker is noticed within a
//! few heartbeats, and a node or worker thread descheduled for a second on
//! a busy machine is not taken for dead. Waits are bounded by deadlines and
//! wait for events (a log line, a message, a gauge); nothing asserts speed.

mod common;

use std::collections::{HashMap, HashSet};
use std::io::{ErrorKind, Read, Write};
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::mpsc::{self, Receiver};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use averyws::backend::message::{ErrorCode, Initiator, Payload};
use averyws::backend::{Frames, KeyRing, Message, MessageType, VERSION};
use averyws::ws::CloseCode;
use averyws_worker::{Connected, Event, OwnedPayload, Worker};
use common::clients::{assert_silent, closed, next_chat, read_text, say, sync_room, QUIET};
use common::nodes::{link_args, log_line, node, wait_ready, HEARTBEAT};
use common::procs::{eventually, join, port, proc_status_kib, python_with_zmq, Proc};
use common::raw::{
    error_of, owned, ready_message, send_to, sign_by_hand, signed, unix_ms, unsigned, Raw, KEYS,
};
use common::scrape::{sample_sum, scrape};
use common::workers::{tagging, wait_event, Lib, Tagged};
use common::{
    client_frame, free_endpoint, raw_ws, read_frame, Server, TempDir, TlsStream, WebSocket, BINARY,
};
use tungstenite::Message as Ws;

/// How long to wait for something that should happen.
const LIMIT: Duration = Duration::from_secs(8);
/// The same key id as [`KEYS`] with another secret: what a forger has.
const FORGED: &str = "k1:fedcba9876543210fedcba9876543210\n";
/// No extra node arguments.
const DEFAULTS: &[&str] = &[];

// ---------------------------------------------------------------- tests

#[test]
fn connections_stick_to_their_worker_and_spread_over_both() {
    let endpoint = free_endpoint();
    let server = node(&endpoint, &["--node-name", "node-a"]);
    let (_a, _b, seen) = tagged_pair(&server, &endpoint);

    let mut clients: Vec<WebSocket> = (0..6)
        .map(|i| server.ws(&format!("/w?client={i}")))
        .collect();
    let owners = connects(&seen, clients.len());
    for (i, ws) in clients.iter().enumerate() {
        let (worker, connected) = &owners[&port(ws)];
        assert_eq!(
            (connected.service.as_str(), connected.path.as_str()),
            ("svc", "/w"),
            "{worker}"
        );
        assert_eq!(connected.query, format!("client={i}"));
        assert_eq!(connected.node_name, "node-a");
        assert!(!connected.reassigned);
    }
    // Least loaded first, ties to the least recently assigned: 3 and 3.
    let on_a = owners.values().filter(|(w, _)| w == "wA").count();
    assert_eq!(on_a, 3, "{owners:?}");
    // Interleaved rounds: every reply comes from the worker that got the
    // client's CONNECT.
    for round in 0..5 {
        for ws in &mut clients {
            ws.send(Ws::Text(format!("m{round}"))).expect("send");
        }
        for ws in &mut clients {
            let worker = &owners[&port(ws)].0;
            assert_eq!(read_text(ws), format!("{worker}:m{round}"));
        }
    }
}

/// Docs/protocol.md section 6: a dead worker's connections that never
/// handed it a message move to another worker (REASSIGNED); those that
/// did may have lost one and are closed with 1012; with no worker left,
/// the rest get 1013.
#[test]
fn a_dead_workers_idle_clients_move_to_another_and_its_busy_ones_get_1012() {
    let endpoint = free_endpoint();
    let server = node(&endpoint, &["--route", "/e=echo"]);
    let (a, b, seen) = tagged_pair(&server, &endpoint);
    // Four that talk and two that stay idle.
    let mut clients: Vec<WebSocket> = (0..6).map(|_| server.ws("/w")).collect();
    let owners = connects(&seen, clients.len());
    for ws in &mut clients[..4] {
        let worker = &owners[&port(ws)].0;
        assert_eq!(say(ws, "before"), format!("{worker}:before"));
    }
    let of_a = |ws: &WebSocket| owners[&port(ws)].0 == "wA";
    let idle_of_a: HashSet<u64> = clients[4..]
        .iter()
        .filter(|ws| of_a(ws))
        .map(|ws| owners[&port(ws)].1.conn)
        .collect();
    assert_eq!(clients.iter().filter(|ws| of_a(ws)).count(), 3);

    let mark = server.log_len();
    a.vanish();
    // Unreachable (a heartbeat found its pipe gone) or silent.
    let line = log_line(
        &server,
        mark,
        "3 connection(s) lose it (worker-loss reassign)",
    );
    assert!(line.contains("worker wA "), "{line}");
    let mut reassigned = HashSet::new();
    while reassigned.len() < idle_of_a.len() {
        let connected = wait_event(&seen, "a reassigned CONNECT", |_, event| match event {
            Event::Connect(c) => Some(c.clone()),
            _ => None,
        });
        assert!(connected.reassigned, "REASSIGNED flag: {connected:?}");
        assert!(
            idle_of_a.contains(&connected.conn),
            "{connected:?} was not an idle client of wA"
        );
        reassigned.insert(connected.conn);
    }
    let (busy_of_a, others): (Vec<_>, Vec<_>) = clients
        .into_iter()
        .enumerate()
        .partition(|(i, ws)| *i < 4 && of_a(ws));
    for (_, mut ws) in busy_of_a {
        let reason = "worker lost with messages in flight".to_owned();
        assert_eq!(closed(&mut ws), (1012, reason));
    }
    let mut clients: Vec<WebSocket> = others.into_iter().map(|(_, ws)| ws).collect();
    for ws in &mut clients {
        assert_eq!(say(ws, "after"), "wB:after");
    }
    // wB's own clients were not touched: no second CONNECT for them.
    assert_no_event(&seen, |_, event| matches!(event, Event::Connect(_)));
    let (_, _, metrics) = scrape(&server, None);
    assert_eq!(
        sample_sum(&metrics, "averyws_backend_lost_messages_total"),
        2
    );

    // None left: 1013 for one that never talked, 1012 for those that
    // talked to wB. A client of the built-in echo watches: nothing meant
    // for the others may reach it.
    let mut quiet = server.ws("/w");
    connects(&seen, 1);
    let mut bystander = server.ws("/e");
    let mark = server.log_len();
    b.vanish();
    log_line(
        &server,
        mark,
        "5 connection(s) lose it (worker-loss reassign)",
    );
    assert_eq!(say(&mut bystander, "mine"), "mine");
    assert_eq!(
        closed(&mut quiet),
        (1013, "no worker for this service".to_owned())
    );
    for ws in &mut clients {
        assert_eq!(closed(ws).0, 1012);
    }
}

#[test]
fn with_worker_loss_close_a_killed_workers_clients_get_1012() {
    let endpoint = free_endpoint();
    let server = node(&endpoint, &["--worker-loss", "close"]);
    let args = ["--connect", &endpoint, "--service", "svc"];
    let mut doomed = Proc::example("echo_worker", &args);
    let survivor = Proc::example("echo_worker", &args);
    wait_ready(&server, 0, &[&doomed.ready_tag(), &survivor.ready_tag()]);
    let mut clients: Vec<WebSocket> = (0..4).map(|_| server.ws("/w")).collect();
    for ws in &mut clients {
        assert_eq!(say(ws, "hi"), "hi");
    }
    // The echo worker logs each CONNECT with the client's address.
    let (mut gone, mut kept): (Vec<WebSocket>, Vec<WebSocket>) = clients
        .into_iter()
        .partition(|ws| doomed.saw_client(ws, &survivor));
    assert_eq!((gone.len(), kept.len()), (2, 2));

    doomed.end("KILL");
    for ws in &mut gone {
        let reason = "worker lost with messages in flight".to_owned();
        assert_eq!(closed(ws), (1012, reason));
    }
    for ws in &mut kept {
        assert_eq!(say(ws, "still here"), "still here");
    }
}

/// Issue 12, docs/protocol.md section 6: a worker that dies holding its
/// clients' messages loses none of them without a word. It reads and never
/// answers, then vanishes as if killed; each of its clients is closed with
/// 1012 (before the fix they were moved on silently and waited for echoes
/// that had died), the other worker's clients get every echo in order, and
/// the lost messages are counted.
#[test]
fn a_dead_worker_loses_no_message_without_a_word() {
    let endpoint = free_endpoint();
    let server = node(&endpoint, DEFAULTS);
    let (events, _seen) = mpsc::channel();
    let hole = Lib::start("hole", &[&endpoint], None, &events, |_, _| {});
    let args = ["--connect", &endpoint, "--service", "svc"];
    let survivor = Proc::example("echo_worker", &args);
    wait_ready(&server, 0, &["worker hole", &survivor.ready_tag()]);
    let stop = Arc::new(AtomicBool::new(false));
    let streams: Vec<JoinHandle<Option<(u16, String)>>> = (0..8)
        .map(|_| {
            let (ws, stop) = (server.ws("/w"), Arc::clone(&stop));
            std::thread::spawn(move || stream_until_stopped(ws, &stop))
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    hole.vanish();
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::Relaxed);
    let outcomes: Vec<_> = streams.into_iter().filter_map(join).collect();
    let cut = outcomes.iter().flatten().count();
    for outcome in outcomes.iter().flatten() {
        let reason = "worker lost with messages in flight".to_owned();
        assert_eq!(outcome, &(1012, reason));
    }
    assert_eq!((cut, outcomes.len() - cut), (4, 4), "{outcomes:?}");
    let (_, _, metrics) = scrape(&server, None);
    let lost = sample_sum(&metrics, "averyws_backend_lost_messages_total");
    assert_eq!(lost, 4 * 16, "16 in flight on each of the hole's clients");
}

/// Streams numbered texts, at most 16 unanswered, and checks each echo;
/// once `stop` is set, waits for the echoes still due. `None` when every
/// message came back, the Close code and reason when the server closed.
fn stream_until_stopped(mut ws: WebSocket, stop: &AtomicBool) -> Option<(u16, String)> {
    let (mut sent, mut echoed) = (0u64, 0u64);
    let deadline = Instant::now() + LIMIT;
    loop {
        let stopping = stop.load(Ordering::Relaxed) || Instant::now() > deadline;
        if stopping && echoed == sent {
            return None;
        }
        while !stopping && sent < echoed + 16 {
            if ws.send(Ws::text(format!("m{sent}"))).is_err() {
                break; // closed meanwhile: its Close is there to read
            }
            sent += 1;
        }
        match ws.read() {
            Ok(Ws::Text(text)) => {
                assert_eq!(text.as_str(), format!("m{echoed}"), "out of order");
                echoed += 1;
            }
            Ok(Ws::Close(frame)) => {
                let frame = frame.expect("a close code");
                return Some((frame.code.into(), frame.reason.to_string()));
            }
            Ok(_) => {}
            Err(e) => panic!("m{echoed} of {sent} lost without a word: {e}"),
        }
    }
}

#[test]
fn a_client_of_a_service_nobody_serves_gets_1013_after_the_101() {
    let endpoint = free_endpoint();
    let server = node(&endpoint, DEFAULTS);
    let mut ws = raw_ws(&server, "/w");
    let close = common::next_close(&mut ws);
    assert_eq!(common::close_code(&close), Some(1013));
    assert_eq!(&close[2..], b"no worker for this service");
}

#[test]
fn a_restarted_worker_registers_again_and_serves_new_clients() {
    let endpoint = free_endpoint();
    let server = node(&endpoint, DEFAULTS);
    let args = ["--connect", &endpoint, "--service", "svc"];
    let mut worker = Proc::example("echo_worker", &args);
    wait_ready(&server, 0, &[&worker.ready_tag()]);
    let mut first = server.ws("/w");
    assert_eq!(say(&mut first, "first"), "first");
    // The first process leaves with BYE, the next one dies without a word;
    // each time a new process is a new worker and serves new clients.
    for signal in ["TERM", "KILL"] {
        worker.end(signal);
        if signal == "TERM" {
            // Its client is closed at once: it had talked to the worker.
            assert_eq!(closed(&mut first).0, 1012);
        }
        let mark = server.log_len();
        worker = Proc::example("echo_worker", &args);
        wait_ready(&server, mark, &[&worker.ready_tag()]);
        let mut ws = server.ws("/w");
        assert_eq!(say(&mut ws, signal), signal);
    }
}

#[test]
fn workers_register_again_with_a_restarted_node() {
    restart_the_node(false);
}

#[test]
fn signed_workers_register_again_with_a_restarted_node() {
    restart_the_node(true);
}

/// A library worker and an `echo_worker` process stay up while the node
/// is killed (no BYE: UNKNOWN_PEER or silence tells them) and started
/// again, then terminated (BYE tells them) and started again.
fn restart_the_node(signed: bool) {
    let dir = TempDir::new();
    let endpoint = free_endpoint();
    let (node_args, worker_args) = link_args(&dir, &endpoint, signed);
    let keys = signed.then_some(KEYS);
    let (events, seen) = mpsc::channel();
    let mut server = node(&endpoint, &node_args);
    let _lib = Lib::start("wA", &[&endpoint], keys, &events, tagging("wA"));
    let process = Proc::example("echo_worker", &worker_args);
    let both = ["wA".to_owned(), process.ready_tag()];
    wait_ready(&server, 0, &both);
    assert_both_serve(&server);
    for how in ["KILL", "TERM"] {
        server.signal(how);
        if how == "TERM" {
            assert_eq!(server.wait_exit(LIMIT), Some(0));
        }
        drop(server);
        server = node(&endpoint, &node_args);
        wait_event(&seen, "NodeReset", |_, event| {
            matches!(event, Event::NodeReset { .. }).then_some(())
        });
        wait_ready(&server, 0, &both);
        assert_both_serve(&server);
    }
}

#[test]
fn a_publish_reaches_subscribers_on_both_nodes_once() {
    let (ep_a, ep_b) = (free_endpoint(), free_endpoint());
    let route = ["--route", "/chat=chat"];
    let (node_a, node_b) = (node(&ep_a, &route), node(&ep_b, &route));
    let args = ["--connect", &ep_a, "--connect", &ep_b, "--service", "chat"];
    let workers = [
        Proc::example("chat_worker", &args),
        Proc::example("chat_worker", &args),
    ];
    let tags: Vec<String> = workers.iter().map(Proc::ready_tag).collect();
    wait_ready(&node_a, 0, &tags);
    wait_ready(&node_b, 0, &tags);
    // Two lobby members on each node, and one in another room.
    let mut lobby = [
        node_a.ws("/chat?room=lobby"),
        node_a.ws("/chat"),
        node_b.ws("/chat?room=lobby"),
        node_b.ws("/chat?room=lobby"),
    ];
    let mut elsewhere = node_b.ws("/chat?room=other");
    // Each worker logs the SUBSCRIBE it sends; once the last is logged,
    // one probe that reaches everyone shows every node applied them.
    for ws in lobby.iter().chain([&elsewhere]) {
        let peer = format!("(127.0.0.1:{}) joins", port(ws));
        eventually(LIMIT, || workers.iter().find_map(|w| w.line(&peer)))
            .unwrap_or_else(|| panic!("nobody subscribed {peer}"));
    }
    sync_room(&mut lobby);
    for (from, text) in [(0, "hello from A"), (3, "hello from B")] {
        lobby[from].send(Ws::Text(text.into())).expect("send");
        for (i, ws) in lobby.iter_mut().enumerate() {
            if i != from {
                assert_eq!(next_chat(ws), text, "member {i}");
            }
        }
    }
    // Once each, and not to the sender nor to the other room.
    for ws in lobby.iter_mut().chain([&mut elsewhere]) {
        assert_silent(ws);
    }
}

/// docs/protocol.md section 13: every copy of a client's publish names
/// its author, so a node whose ACL does not let that user publish on the
/// channel delivers none of it and says so (ERROR FORBIDDEN, which the chat
/// worker logs); under v1 that copy was delivered unchecked.
#[test]
fn a_node_whose_acl_refuses_the_author_delivers_no_copy() {
    let dir = TempDir::new();
    let strict = dir.path().join("no-publish.acl");
    std::fs::write(&strict, "allow guest * connect,send,subscribe\n").expect("ACL file");
    let strict = strict.to_str().expect("UTF-8 path");
    let (ep_a, ep_b) = (free_endpoint(), free_endpoint());
    let node_a = node(&ep_a, &["--route", "/chat=chat"]);
    let node_b = node(&ep_b, &["--route", "/chat=chat", "--acl", strict]);
    let args = ["--connect", &ep_a, "--connect", &ep_b, "--service", "chat"];
    let worker = Proc::example("chat_worker", &args);
    let tag = [worker.ready_tag()];
    wait_ready(&node_a, 0, &tag);
    wait_ready(&node_b, 0, &tag);
    let mut on_a = [node_a.ws("/chat"), node_a.ws("/chat")];
    let mut bob = node_b.ws("/chat");
    for ws in on_a.iter().chain([&bob]) {
        let peer = format!("(127.0.0.1:{}) joins", port(ws));
        eventually(LIMIT, || worker.line(&peer)).unwrap_or_else(|| panic!("{peer}"));
    }
    sync_room(&mut on_a);
    on_a[0].send(Ws::Text("from A".into())).expect("send");
    assert_eq!(
        next_chat(&mut on_a[1]),
        "from A",
        "node A lets guests publish"
    );
    let refused = "not allowed into rooms/lobby: []";
    eventually(LIMIT, || worker.line(refused)).expect("node B refused the copy");
    assert_silent(&mut bob);
}

#[test]
fn a_stalled_worker_pauses_its_client_and_loses_nothing() {
    const SIZE: usize = 1024;
    const MIB: usize = 1 << 20;
    let endpoint = free_endpoint();
    // The echo burst after the stall may queue up at the client: this
    // test is about the other direction, not slow consumers.
    let server = node(&endpoint, &["--max-outbound-bytes", "268435456"]);
    let stalled = Stalled::start(&endpoint);
    wait_ready(&server, 0, &["stalled"]);
    let mut client = Pump::new(raw_ws(&server, "/w"));
    let rss_before = proc_status_kib(server.pid(), "VmRSS");

    // Push until the node says the client's reading waits for the
    // worker's full pipe (its blocked-connections gauge) and the socket
    // has taken nothing for a second of tries: a node or a client that
    // was merely descheduled is not taken for a pause. A node that kept
    // reading would take all 96 MiB, or show it in its memory.
    let (mut frames, mut last_progress, mut tries) = (0u64, Instant::now(), 0);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        assert!(
            Instant::now() < deadline && client.sent < 96 * MIB,
            "never paused after {} bytes",
            client.sent
        );
        if client.queued.is_empty() {
            client.queue(&numbered(frames, SIZE));
            frames += 1;
        }
        if client.step().0 > 0 {
            (last_progress, tries) = (Instant::now(), 0);
            continue;
        }
        tries += 1;
        if tries >= 100 && last_progress.elapsed() >= Duration::from_secs(1) {
            if blocked_connections(&server) == 1 {
                break;
            }
            tries = 0;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let paused_at = client.sent;
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(client.step().0, 0, "the server read again while stalled");
    assert_eq!(blocked_connections(&server), 1, "unblocked while stalled");
    let rss_stalled = proc_status_kib(server.pid(), "VmRSS");
    println!(
        "paused after {paused_at} B, {frames} messages; VmRSS {rss_before} -> {rss_stalled} KiB"
    );
    assert!(
        rss_stalled.saturating_sub(rss_before) < 64 * 1024,
        "server grew from {rss_before} to {rss_stalled} KiB; client paused after {paused_at} B"
    );
    assert!(client.inbox.is_empty(), "echo from a stalled worker");

    // Resumed: every message comes back, in order (thousands of them,
    // through TLS and the link, in a debug build: a generous bound).
    stalled.resume();
    let mut next = 0;
    let deadline = Instant::now() + 4 * LIMIT;
    while next < frames {
        assert!(Instant::now() < deadline, "{next} of {frames} echoed");
        let (_, read) = client.step();
        while let Some((opcode, payload)) = client.frame() {
            assert_eq!(opcode, BINARY);
            assert!(payload == numbered(next, SIZE), "message {next}");
            next += 1;
        }
        if read == 0 {
            std::thread::sleep(Duration::from_millis(2));
        }
    }
    let (echoed, heartbeats) = stalled.stop();
    assert_eq!(echoed, frames);
    // A full pipe holds back heartbeats too; they must not pile up.
    assert!(
        heartbeats <= 10,
        "{heartbeats} heartbeats queued during the stall"
    );
}

#[test]
fn forged_and_broken_messages_are_dropped_and_logged_and_serving_goes_on() {
    let dir = TempDir::new();
    let endpoint = free_endpoint();
    let server = node(&endpoint, &link_args(&dir, &endpoint, true).0);
    let mut raw = Raw::connect(&endpoint, Some(KEYS), 0x5151);
    let ready = ready_message(0x5151, "raw", &["raw"]);
    let genuine_ready = raw.send(&ready, 0);
    let boot = raw.welcomed();

    let heartbeat = Message::Heartbeat { boot: 0x5151 };
    let mut forger = KeyRing::parse(FORGED.as_bytes()).unwrap().signer(0x5151);
    let mut truncated = raw.frames(&heartbeat, boot);
    truncated.last_mut().unwrap().truncate(40);
    let mut stale = Frames::new();
    raw.signer
        .as_mut()
        .unwrap()
        .encode(VERSION, &heartbeat, boot, unix_ms() - 60_000, &mut stale)
        .unwrap();
    // Authentic but undecodable: a 7-byte connection id.
    let mut bad_conn = unsigned(&send_to(&[7], "x"));
    bad_conn[2].pop();
    let bad_conn = sign_by_hand(bad_conn, 0x5152, boot);
    // What each case is dropped as, and the ERROR the node volunteers
    // (docs/protocol.md section 10): nothing for what may be forged.
    type Case<'a> = (&'a str, Vec<Vec<u8>>, Option<ErrorCode>);
    let cases: Vec<Case> = vec![
        (
            "bad header",
            vec![b"\xde\xad\xbe\xef".to_vec(), vec![0; 8]],
            Some(ErrorCode::UNSUPPORTED_VERSION),
        ),
        ("malformed signature frame", truncated, None),
        ("unsigned message", unsigned(&heartbeat), None),
        ("bad signature", signed(&mut forger, &heartbeat, boot), None),
        ("replayed sequence number", genuine_ready, None),
        ("timestamp outside the skew bound", owned(&stale), None),
        (
            "signed for another recipient",
            raw.frames(&heartbeat, boot ^ 1),
            Some(ErrorCode::UNKNOWN_PEER),
        ),
        ("too many frames", vec![vec![1, 1, 1]; 200], None),
        ("malformed: ", bad_conn, Some(ErrorCode::MALFORMED)),
    ];
    for (reason, frames, answer) in cases {
        // None of the cases counts as hearing from the raw worker: a
        // HEARTBEAT before each keeps it registered however long they take.
        raw.send(&heartbeat, boot);
        let mark = server.log_len();
        raw.send_raw(&frames);
        let line = log_line(
            &server,
            mark,
            &format!("backend: dropped a message: {reason}"),
        );
        assert!(line.ends_with("(1 so far)"), "counted: {line}");
        if let Some(code) = answer {
            let error = raw.expect(MessageType::Error);
            assert_eq!(error_of(&error).0, code, "{reason}");
        }
    }
    // An old capture signed for another boot draws no UNKNOWN_PEER (past
    // the answer budget's interval, one heartbeat, so only its age keeps
    // it silent): the next ERROR is the answer to the command below.
    // Heartbeats keep the raw worker alive meanwhile.
    raw.send(&heartbeat, boot);
    std::thread::sleep(HEARTBEAT + Duration::from_millis(10));
    raw.send(&heartbeat, boot);
    let mut old_capture = Frames::new();
    let signer = raw.signer.as_mut().unwrap();
    signer
        .encode(
            VERSION,
            &heartbeat,
            boot ^ 1,
            unix_ms() - 60_000,
            &mut old_capture,
        )
        .unwrap();
    let mark = server.log_len();
    raw.send_raw(&owned(&old_capture));
    log_line(&server, mark, "signed for another recipient (2 so far)");
    // The peer was not cut off: a genuine command still gets its answer.
    raw.send(&send_to(&[7], "anyone?"), boot);
    let error = raw.expect(MessageType::Error);
    assert_eq!(
        error_of(&error),
        (ErrorCode::NO_SUCH_CONNECTION, "".into(), vec![7])
    );
    // And a signed library worker serves a client.
    let (events, _seen) = mpsc::channel();
    let _lib = Lib::start("wA", &[&endpoint], Some(KEYS), &events, tagging("wA"));
    wait_ready(&server, 0, &["wA"]);
    // The raw peer serves "raw" only: the client goes to wA.
    let mut ws = server.ws("/w");
    assert_eq!(say(&mut ws, "signed"), "wA:signed");
}

#[test]
fn the_python_worker_echoes_text_and_binary() {
    if !python_with_zmq() {
        return;
    }
    for signed in [false, true] {
        let dir = TempDir::new();
        let endpoint = free_endpoint();
        let (node_args, worker_args) = link_args(&dir, &endpoint, signed);
        let server = node(&endpoint, &node_args);
        let python = Proc::python(&worker_args);
        wait_ready(&server, 0, &[&python.ready_tag()]);
        let mut ws = server.ws("/w");
        assert_eq!(say(&mut ws, "hé from tungstenite"), "hé from tungstenite");
        ws.send(Ws::Binary(vec![0, 255, 1, 2])).expect("send");
        match ws.read().expect("binary echo") {
            Ws::Binary(data) => assert_eq!(data, [0, 255, 1, 2]),
            other => panic!("signed={signed}: {other:?}\n{}", python.log()),
        }
        ws.close(None).expect("close");
    }
}

/// `--backend-no-curve`, for migrating workers that cannot do CURVE: a
/// signed link on the NULL handshake serves the reference workers run with
/// `--no-curve` (Rust, and Python where pyzmq is), while a CURVE worker's
/// handshake cannot succeed there: it is never registered.
#[test]
fn a_signed_node_without_curve_serves_workers_without_it() {
    let dir = TempDir::new();
    let endpoint = free_endpoint();
    let (mut node_args, worker_args) = link_args(&dir, &endpoint, true);
    node_args.push("--backend-no-curve".to_owned());
    let server = node(&endpoint, &node_args);
    let warning = log_line(&server, 0, "--backend-no-curve: the handshake is NULL");
    assert!(warning.contains(" WARN "), "{warning}");
    log_line(&server, 0, "messages signed, handshake NULL");
    let curve_worker = Proc::example("echo_worker", &worker_args);
    let mut null_args = worker_args.clone();
    null_args.push("--no-curve".to_owned());
    let mut workers = vec![Proc::example("echo_worker", &null_args)];
    if python_with_zmq() {
        workers.push(Proc::python(&null_args));
    }
    for worker in &workers {
        wait_ready(&server, 0, &[&worker.ready_tag()]);
    }
    for round in 0..2 * workers.len() {
        let mut ws = server.ws("/w");
        let text = format!("unsigned handshake {round}");
        assert_eq!(say(&mut ws, &text), text);
    }
    // The CURVE worker's handshake fails on the mechanism (a loaded
    // machine may log a NO_DETAIL failure of the same peer first).
    let failed = log_line(&server, 0, "security mechanism is not the node's");
    assert!(failed.contains("a peer's handshake on "), "{failed}");
    let log = server.log();
    let tag = curve_worker.ready_tag();
    assert!(
        !log.iter().any(|line| line.contains(&tag)),
        "a CURVE worker registered with a NULL node: {log:#?}"
    );
}

#[test]
fn close_unknown_connections_and_reserved_services_answer_as_documented() {
    let endpoint = free_endpoint();
    let server = node(&endpoint, DEFAULTS);
    let (events, seen) = mpsc::channel();
    // "close" closes the client with 4001; "ghost" sends to a connection
    // that does not exist; DISCONNECT is answered by a SEND to the dead id.
    let handler = |worker: &mut Worker, event: &Event| match event {
        Event::Message {
            node,
            conn,
            payload: OwnedPayload::Text(text),
        } => {
            let result = match text.as_str() {
                "close" => worker.close(*node, *conn, CloseCode(4001), "worker says bye"),
                _ => worker.send(*node, &[*conn + 1000], Payload::Text("boo")),
            };
            result.expect("command");
        }
        Event::Disconnect { node, conn, .. } => worker
            .send(*node, &[*conn], Payload::Text("too late"))
            .expect("send"),
        _ => {}
    };
    let _lib = Lib::start("wA", &[&endpoint], None, &events, handler);
    wait_ready(&server, 0, &["wA"]);
    let mut ws = server.ws("/w");
    let conn = connects(&seen, 1)[&port(&ws)].1.conn;

    ws.send(Ws::Text("ghost".into())).expect("send");
    let missing = |seen: &Receiver<Tagged>| {
        wait_event(seen, "ERROR", |_, event| match event {
            Event::Error {
                code, about, conns, ..
            } => Some((*code, *about, conns.clone())),
            _ => None,
        })
    };
    // The library batches a SEND to one connection (SENDS, protocol v2).
    let expected = (ErrorCode::NO_SUCH_CONNECTION, 0x36, vec![conn + 1000]);
    assert_eq!(missing(&seen), expected);

    ws.send(Ws::Text("close".into())).expect("send");
    assert_eq!(closed(&mut ws), (4001, "worker says bye".to_owned()));
    // Hang up as a client does, so the node need not wait out the
    // closing-handshake timeout before its DISCONNECT.
    drop(ws);
    let disconnect = wait_event(&seen, "DISCONNECT", |_, event| match event {
        Event::Disconnect {
            conn: c,
            code,
            initiator,
            ..
        } => Some((*c, *code, *initiator)),
        _ => None,
    });
    assert_eq!(disconnect, (conn, CloseCode(4001), Initiator::Worker));
    assert_eq!(
        missing(&seen),
        (ErrorCode::NO_SUCH_CONNECTION, 0x36, vec![conn])
    );

    // READY claiming the built-in service: refused, nothing registered.
    let mut raw = Raw::connect(&endpoint, None, 0x7777);
    raw.send(&ready_message(0x7777, "greedy", &["svc", "echo"]), 0);
    let error = raw.expect(MessageType::Error);
    assert_eq!(
        error_of(&error),
        (ErrorCode::RESERVED_SERVICE, "echo".into(), vec![])
    );
    raw.send(&Message::Heartbeat { boot: 0x7777 }, 0);
    let error = raw.expect(MessageType::Error);
    assert_eq!(error_of(&error).0, ErrorCode::UNKNOWN_PEER);
}

// ------------------------------------------------------------ the nodes

/// How many connections the node says wait for a full worker pipe.
fn blocked_connections(server: &Server) -> u64 {
    let (status, _, body) = scrape(server, None);
    assert_eq!(status, 200, "{body}");
    sample_sum(&body, "averyws_backend_blocked_connections")
}

// ---------------------------------------------------------- the clients

/// Two clients, one on each worker, both echo.
fn assert_both_serve(server: &Server) {
    let mut replies: Vec<String> = (0..2).map(|_| say(&mut server.ws("/w"), "up")).collect();
    replies.sort();
    assert_eq!(replies, ["up", "wA:up"]);
}

/// The payload of message `n`, `size` bytes: the number, then filler.
fn numbered(n: u64, size: usize) -> Vec<u8> {
    let mut payload = n.to_be_bytes().to_vec();
    payload.resize(size, (n % 251) as u8);
    payload
}

/// A raw client on a non-blocking socket: it writes what the socket
/// takes and reads what has come, never waiting, so it can push until the
/// server stops reading and still read echoes while it writes.
struct Pump {
    tls: TlsStream,
    /// Client frames not yet taken by rustls.
    queued: Vec<u8>,
    /// Plaintext from the server not yet parsed.
    inbox: Vec<u8>,
    /// TLS bytes written to the socket.
    sent: usize,
}

impl Pump {
    fn new(tls: TlsStream) -> Pump {
        tls.sock.set_nonblocking(true).expect("non-blocking");
        Pump {
            tls,
            queued: Vec::new(),
            inbox: Vec::new(),
            sent: 0,
        }
    }

    /// Queues `payload` as one masked binary frame.
    fn queue(&mut self, payload: &[u8]) {
        self.queued
            .extend_from_slice(&client_frame(true, BINARY, payload));
    }

    /// One round of writing and reading: (TLS bytes written, plaintext
    /// bytes read).
    fn step(&mut self) -> (usize, usize) {
        let tls = &mut self.tls;
        while !self.queued.is_empty() {
            let taken = tls.conn.writer().write(&self.queued).expect("write");
            if taken == 0 {
                break;
            }
            self.queued.drain(..taken);
        }
        let mut written = 0;
        while tls.conn.wants_write() {
            match tls.conn.write_tls(&mut tls.sock) {
                Ok(n) => written += n,
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) => panic!("write: {e}"),
            }
        }
        self.sent += written;
        let before = self.inbox.len();
        loop {
            match tls.conn.read_tls(&mut tls.sock) {
                Ok(0) => panic!("the server hung up"),
                Ok(_) => {
                    tls.conn.process_new_packets().expect("TLS");
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) => panic!("read: {e}"),
            }
            // rustls holds at most so much plaintext: take it each time.
            let _ = tls.conn.reader().read_to_end(&mut self.inbox);
        }
        (written, self.inbox.len() - before)
    }

    /// The next whole server frame in the inbox, if there is one.
    fn frame(&mut self) -> Option<(u8, Vec<u8>)> {
        let mut rest = &self.inbox[..];
        let (_, opcode, payload) = read_frame(&mut rest).ok()?;
        let used = self.inbox.len() - rest.len();
        self.inbox.drain(..used);
        Some((opcode, payload))
    }
}

// ---------------------------------------------------------- the workers

/// Workers `wA` and `wB` (tagging their replies) registered with
/// `server`, and their events.
fn tagged_pair(server: &Server, endpoint: &str) -> (Lib, Lib, Receiver<Tagged>) {
    let (events, seen) = mpsc::channel();
    let a = Lib::start("wA", &[endpoint], None, &events, tagging("wA"));
    let b = Lib::start("wB", &[endpoint], None, &events, tagging("wB"));
    wait_ready(server, 0, &["wA", "wB"]);
    (a, b, seen)
}

/// Fails if an event `bad` accepts comes within [`QUIET`].
fn assert_no_event(events: &Receiver<Tagged>, bad: impl Fn(&str, &Event) -> bool) {
    let deadline = Instant::now() + QUIET;
    while let Ok((name, event)) = events.recv_timeout(deadline - Instant::now().min(deadline)) {
        assert!(!bad(&name, &event), "{name}: unexpected {event:?}");
    }
}

/// The next `n` CONNECTs, by client port: the worker and the event.
fn connects(events: &Receiver<Tagged>, n: usize) -> HashMap<u16, (String, Connected)> {
    (0..n)
        .map(|_| {
            wait_event(events, "CONNECT", |name, event| match event {
                Event::Connect(c) => {
                    let port = c.peer.strip_prefix("127.0.0.1:")?.parse().ok()?;
                    Some((port, (name.to_owned(), c.clone())))
                }
                _ => None,
            })
        })
        .collect()
}

// ------------------------------------------------------- raw DEALERs

/// A worker that registers, then stops reading (heartbeating all along,
/// so it stays alive) until resumed; then it echoes every MESSAGE.
struct Stalled {
    phase: Arc<AtomicU8>,
    thread: Option<JoinHandle<(u64, usize)>>,
}

const STALL: u8 = 0;
const ECHO: u8 = 1;
const DONE: u8 = 2;

impl Stalled {
    fn start(endpoint: &str) -> Stalled {
        let mut raw = Raw::connect(endpoint, None, 0x57a11);
        let phase = Arc::new(AtomicU8::new(STALL));
        let now = Arc::clone(&phase);
        let thread = std::thread::spawn(move || {
            raw.send(&ready_message(0x57a11, "stalled", &["svc"]), 0);
            let (mut echoed, mut heartbeats, mut between) = (0, 0, 0);
            while now.load(Ordering::Relaxed) != DONE {
                raw.send(&Message::Heartbeat { boot: 0x57a11 }, 0);
                if now.load(Ordering::Relaxed) == STALL {
                    std::thread::sleep(Duration::from_millis(50));
                    continue;
                }
                while raw.socket.poll(zmq::POLLIN, 20) == Ok(1) {
                    let frames = raw.socket.recv_multipart(0).expect("recv");
                    match frames[0][1] {
                        // Those before the first message and after the
                        // last one were due: the node was idle.
                        0x01 if echoed > 0 => between += 1,
                        0x21 => {
                            heartbeats += std::mem::take(&mut between);
                            let conn = frames[1][..8].to_vec();
                            let send = [vec![1, 0x30, 0], vec![2], conn, frames[2].clone()];
                            raw.send_raw(&send);
                            echoed += 1;
                        }
                        _ => {}
                    }
                }
            }
            (echoed, heartbeats)
        });
        Stalled {
            phase,
            thread: Some(thread),
        }
    }

    fn resume(&self) {
        self.phase.store(ECHO, Ordering::Relaxed);
    }

    /// Stops: how many messages it echoed, and how many HEARTBEATs it
    /// found among them (queued while its pipe was full).
    fn stop(mut self) -> (u64, usize) {
        self.halt().expect("stalled worker")
    }

    fn halt(&mut self) -> Option<(u64, usize)> {
        self.phase.store(DONE, Ordering::Relaxed);
        join(self.thread.take()?)
    }
}

impl Drop for Stalled {
    fn drop(&mut self) {
        self.halt();
    }
}
