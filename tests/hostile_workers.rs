//! Peers of the backend link that mean harm (docs/protocol.md sections 1,
//! 2, 6, 7, 9 and 10): a worker that never reads its replies, a peer that
//! announces a frame it could never be allowed to send, one that starts a
//! multipart message it never ends, a READY captured and replayed to
//! another node, a key holder who claims another worker's sender id, and
//! a live subscription that outlives the ACL grant behind it. Each test
//! runs the real binary on loopback against real ZeroMQ sockets (or, for
//! the oversized frame and the endless message, ZMTP written by hand on
//! TCP); floods are bounded in count and time, and memory is the node's
//! `VmRSS` read from /proc.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use averyws::backend::curve;
use averyws::backend::message::{ErrorCode, MessageType};
use averyws::backend::Message;
use averyws_worker::{Event, Worker};
use common::clients::{assert_silent, closed, read_text, say};
use common::nodes::{bound_endpoint, link_args, log_line, node, wait_ready};
use common::procs::proc_status_kib;
use common::raw::{error_of, ready_message, send_to, sign_with, unsigned, Raw, KEYS};
use common::scrape::{sample_sum, scrape};
use common::workers::{tagging, wait_event, Lib};
use common::{free_endpoint, utf8, Server, TempDir};

/// How long to wait for something that should happen.
const LIMIT: Duration = Duration::from_secs(8);
/// A MiB, in the KiB that /proc counts in.
const MIB: u64 = 1024;

// ---------------------------------------------------------------- tests

/// Attack: a worker registers, then never reads again and sends SENDs to
/// connections that do not exist as fast as it can; each draws an ERROR
/// NO_SUCH_CONNECTION that cannot be delivered. Expected: the node drops
/// those replies (counted, and a `does not read` warning) rather than
/// holding them: its memory grows by at most 64 MiB, and it serves on.
#[test]
fn a_worker_that_never_reads_cannot_grow_the_node() {
    const GROWTH: u64 = 64 * MIB;
    let endpoint = free_endpoint();
    let server = node(&endpoint, &["--route", "/echo=echo"]);
    let deaf = Raw::connect(&endpoint, None, 0xdeaf);
    deaf.send_raw(&unsigned(&ready_message(0xdeaf, "deaf", &["svc"])));
    deaf.welcomed();
    wait_ready(&server, 0, &["worker deaf"]);

    let before = rss(&server);
    let mut send = unsigned(&send_to(&[1], "x"));
    let (start, mut sent, mut peak, mut sampled) = (Instant::now(), 0u64, before, Instant::now());
    while start.elapsed() < Duration::from_secs(10) && sent < 3_000_000 {
        send[2] = ((1 << 40) + sent).to_be_bytes().to_vec();
        match deaf.socket.send_multipart(&send, zmq::DONTWAIT) {
            Ok(()) => sent += 1,
            Err(zmq::Error::EAGAIN) => {
                let _ = deaf.socket.poll(zmq::POLLOUT, 10);
            }
            Err(e) => panic!("send: {e}"),
        }
        if sampled.elapsed() >= Duration::from_millis(50) {
            (peak, sampled) = (peak.max(rss(&server)), Instant::now());
            if peak - before > GROWTH {
                break;
            }
        }
    }
    let peak = peak.max(rss(&server));
    assert!(
        peak - before <= GROWTH,
        "the node grew from {before} to {peak} KiB on {sent} unread replies in {:?}",
        start.elapsed()
    );
    let (_, _, metrics) = scrape(&server, None);
    let dropped = sample_sum(&metrics, "averyws_backend_replies_dropped_total");
    assert!(dropped > 0, "{sent} replies sent, none dropped");
    println!(
        "{sent} SENDs in {:?}: VmRSS {before} -> {peak} KiB",
        start.elapsed()
    );
    let warning = log_line(&server, 0, "worker deaf does not read");
    assert!(warning.contains(" WARN "), "{warning}");
    assert_eq!(say(&mut server.ws("/echo"), "still here"), "still here");
}

/// Attack: a peer on an unsigned (loopback) link does the ZMTP 3.0
/// handshake by hand, announces a 4 GiB frame and streams filler behind
/// it, up to 300 MiB within 20 s. Expected: the node cuts it off as soon
/// as it reads the frame's header (ZMQ_MAXMSGSIZE), so a write fails or
/// the stream ends long before 300 MiB, and the node's memory grows by at
/// most 32 MiB. (On a signed link the peer does not get this far: see
/// the next test.)
#[test]
fn an_oversized_frame_from_an_unauthenticated_peer_is_cut_off() {
    let dir = TempDir::new();
    let server = node("tcp://127.0.0.1:0", &link_args(&dir, "", false).0);
    let mut peer = zmtp_peer(&server);
    let (mechanism, _) = zmtp_handshake(&mut peer);
    assert_eq!(mechanism, "NULL");
    let mut header = vec![0x02];
    header.extend_from_slice(&(4u64 << 30).to_be_bytes());
    peer.write_all(&header).expect("frame header");
    stream_until_cut(&server, &mut peer, &[0x55; 64 << 10]);
}

/// Attack: a peer that holds no key sends a signed node one endless
/// multipart message: 64 KiB frames, each with MORE set, up to 300 MiB
/// within 20 s (libzmq would hold them all: docs/protocol.md section 2).
/// Expected: the node's greeting offers CURVE, so the peer's NULL
/// handshake fails and the node closes the connection before it holds a
/// frame; its memory grows by at most 32 MiB. A peer that does CURVE
/// with a key of its own is refused by ZAP (logged). Control: a worker
/// with the key file's CURVE key is welcomed.
#[test]
fn a_peer_without_a_key_cannot_start_an_endless_message() {
    let dir = TempDir::new();
    let server = node("tcp://127.0.0.1:0", &link_args(&dir, "", true).0);
    let endpoint = bound_endpoint(&server);
    let mut peer = zmtp_peer(&server);
    let (mechanism, _) = zmtp_handshake(&mut peer);
    assert_eq!(mechanism, "CURVE", "a signed node must offer CURVE");
    let failed = log_line(&server, 0, "a peer's handshake on ");
    assert!(
        failed.contains("security mechanism is not the node's") && failed.contains(" WARN "),
        "{failed}"
    );
    let mut frame = vec![0x03];
    frame.extend_from_slice(&(64u64 << 10).to_be_bytes());
    frame.resize(frame.len() + (64 << 10), 0x55);
    stream_until_cut(&server, &mut peer, &frame);

    let mark = server.log_len();
    let stranger = zmq::Context::new();
    let dealer = stranger.socket(zmq::DEALER).expect("dealer");
    dealer.set_linger(0).expect("linger");
    let own = zmq::CurveKeyPair::new().expect("keypair");
    curve::connect_as(
        &dealer,
        &curve::KeyPair {
            public: own.public_key,
            secret: own.secret_key,
        },
    )
    .expect("CURVE client");
    dealer.connect(&endpoint).expect("connect");
    dealer.send("hello", zmq::DONTWAIT).expect("queue");
    let refused = log_line(&server, mark, "ZAP: refused backend peer");
    assert!(
        refused.contains("CURVE key not in the key file"),
        "{refused}"
    );

    let mut worker = Raw::connect(&endpoint, Some(KEYS), 0x5afe);
    worker.send(&ready_message(0x5afe, "keyed", &["svc"]), 0);
    worker.welcomed();
}

/// Attack: a READY signed for recipient 0 (any node) is captured on its
/// way to node 0, and an observer who holds no key replays it, unchanged,
/// to node 1 (same key file). Expected: node 1 registers nothing (it may
/// WELCOME the observer, but sends it no CONNECT, logs no `ready for`,
/// and its client gets 1013). Control: the real worker, whose HEARTBEAT
/// is signed for node 0's boot, is registered there and gets its client.
#[test]
fn a_ready_replayed_to_another_node_registers_nothing() {
    let dir = TempDir::new();
    let (ep0, ep1) = (free_endpoint(), free_endpoint());
    let node0 = node(&ep0, &link_args(&dir, &ep0, true).0);
    // Node 1 keeps a NULL handshake, so the keyless observer gets in
    // (CURVE would stop it sooner): the recipient in the signature must
    // stop the replay on its own.
    let mut args1 = link_args(&dir, &ep1, true).0;
    args1.push("--backend-no-curve".to_owned());
    let node1 = node(&ep1, &args1);
    let mut real = Raw::connect(&ep0, Some(KEYS), 0x7ea1);
    let captured = real.send(&ready_message(0x7ea1, "real", &["svc"]), 0);
    let boot0 = real.welcomed();
    real.heartbeat(boot0);
    wait_ready(&node0, 0, &["worker real"]);
    let _client0 = node0.ws("/w");
    real.expect(MessageType::Connect);

    let observer = Raw::connect(&ep1, None, 0);
    observer.send_raw(&captured);
    // A WELCOME, if one comes, says node 1 has handled the READY.
    observer.wait(MessageType::Welcome, Duration::from_secs(1));
    let mut client1 = node1.ws("/w");
    let connect = observer.wait(MessageType::Connect, Duration::from_secs(1));
    assert!(
        connect.is_none(),
        "node 1 registered the replayed READY: it sent the observer a CONNECT"
    );
    let no_worker = (1013, "no worker for this service".to_owned());
    assert_eq!(closed(&mut client1), no_worker);
    let log = node1.log();
    let ready = log.iter().find(|line| line.contains("ready for"));
    assert!(ready.is_none(), "node 1: {ready:?}");
}

/// Attack: the node's key file has two keys; the victim signs with k1
/// only, the attacker holds k2 only. The attacker signs with k2 a
/// HEARTBEAT claiming the victim's instance id as sender, sequence
/// 2^64 - 1. Expected: the victim's replay window does not move, so the
/// victim, heartbeating every 200 ms, stays registered (no `silent past
/// its liveness` for 3 s) and gets the next client's CONNECT.
#[test]
fn a_key_holder_cannot_poison_another_workers_replay_window() {
    const K1: &str = "k1:0123456789abcdef0123456789abcdef";
    const K2: &str = "k2:00112233445566778899aabbccddeeff";
    let dir = TempDir::new();
    let keys = dir.path().join("two.keys");
    std::fs::write(&keys, format!("{K1}\n{K2}\n")).expect("key file");
    let endpoint = free_endpoint();
    let server = node(&endpoint, &["--backend-key-file", &utf8(&keys)]);
    let mut victim = Raw::connect(&endpoint, Some(K1), 0x71c7);
    victim.send(&ready_message(0x71c7, "victim", &["svc"]), 0);
    let boot = victim.welcomed();
    victim.heartbeat(boot);
    wait_ready(&server, 0, &["worker victim"]);

    // K2's CURVE key gets the attacker through the handshake.
    let attacker = Raw::connect(&endpoint, Some(K2), 0);
    let heartbeat = unsigned(&Message::Heartbeat { boot: 0x71c7 });
    let mark = server.log_len();
    attacker.send_raw(&sign_with(heartbeat, K2, 0x71c7, boot, u64::MAX));
    // Authentic, from a peer the node does not know: the node has taken it.
    let answer = attacker.expect(MessageType::Error);
    assert_eq!(error_of(&answer).0, ErrorCode::UNKNOWN_PEER);
    beating(
        &mut victim,
        boot,
        Duration::from_secs(3),
        MessageType::Connect,
    );
    let log = server.log();
    let dead = log[mark..]
        .iter()
        .find(|l| l.contains("silent past its liveness"));
    assert!(dead.is_none(), "the victim's window was poisoned: {dead:?}");
    let _client = server.ws("/w");
    let connect = beating(&mut victim, boot, LIMIT, MessageType::Connect);
    assert!(
        connect.is_some(),
        "no CONNECT for the victim: {:#?}",
        server.log()
    );
}

/// Attack: a worker subscribes its client to `chat/room` while the ACL
/// lets guests subscribe on `chat/*`; then the grant is taken away (the
/// ACL file rewritten, SIGHUP). Expected: the live subscription ends with
/// the grant: the next publish does not reach the client, which stays
/// connected (`connect` was not revoked), and the worker gets ERROR
/// FORBIDDEN about its SUBSCRIBE (0x32) naming the channel and the client.
#[test]
fn revoking_subscribe_ends_live_subscriptions() {
    let dir = TempDir::new();
    let acl = dir.path().join("chat.acl");
    let base = "allow guest /w connect\nallow guest svc send\n";
    std::fs::write(
        &acl,
        format!("{base}allow guest chat/* subscribe,publish\n"),
    )
    .expect("ACL");
    let endpoint = free_endpoint();
    let server = node(&endpoint, &["--acl", &utf8(&acl)]);
    let (events, seen) = mpsc::channel();
    let _worker = Lib::start("room", &[&endpoint], None, &events, room());
    wait_ready(&server, 0, &["worker room"]);
    let mut ws = server.ws("/w");
    let conn = wait_event(&seen, "CONNECT", |_, event| match event {
        Event::Connect(connected) => Some(connected.conn),
        _ => None,
    });
    assert_eq!(say(&mut ws, "one"), "one", "the publish");
    assert_eq!(read_text(&mut ws), "ack:one");

    std::fs::write(&acl, format!("{base}allow guest chat/* publish\n")).expect("ACL");
    let mark = server.log_len();
    server.signal("HUP");
    log_line(&server, mark, "ACL reloaded");
    // The publish goes before the ack: had it been delivered, it would
    // have come first.
    assert_eq!(
        say(&mut ws, "two"),
        "ack:two",
        "the client still subscribed"
    );
    assert_silent(&mut ws);
    let error = wait_event(&seen, "ERROR", |_, event| match event {
        Event::Error {
            code,
            about,
            detail,
            conns,
            ..
        } => Some((*code, *about, detail.clone(), conns.clone())),
        _ => None,
    });
    let subscribe = MessageType::Subscribe as u8;
    let forbidden = (
        ErrorCode::FORBIDDEN,
        subscribe,
        "chat/room".into(),
        vec![conn],
    );
    assert_eq!(error, forbidden);
}

// ---------------------------------------------------------- the helpers

/// The server's resident memory (`VmRSS`), in KiB.
fn rss(server: &Server) -> u64 {
    proc_status_kib(server.pid(), "VmRSS")
}

/// A TCP connection to the node's one `tcp://` endpoint, for ZMTP by hand.
fn zmtp_peer(server: &Server) -> TcpStream {
    let endpoint = bound_endpoint(server);
    let peer = TcpStream::connect(endpoint.strip_prefix("tcp://").unwrap()).expect("connect");
    peer.set_read_timeout(Some(LIMIT)).unwrap();
    peer.set_write_timeout(Some(Duration::from_secs(1)))
        .unwrap();
    peer
}

/// Sends a NULL DEALER's greeting and READY; returns the mechanism the
/// node's greeting names and, when it is NULL, the node's READY command.
fn zmtp_handshake(peer: &mut TcpStream) -> (String, Option<Vec<u8>>) {
    // Signature and major version first: libzmq answers them with its
    // whole greeting, before it reads (and may refuse) our mechanism.
    let ours = zmtp_greeting();
    peer.write_all(&ours[..11]).expect("greeting");
    let mut greeting = [0u8; 64];
    peer.read_exact(&mut greeting).expect("the node's greeting");
    assert_eq!((greeting[0], greeting[9], greeting[10]), (0xFF, 0x7F, 3));
    let mechanism = String::from_utf8_lossy(&greeting[12..32])
        .trim_end_matches('\0')
        .to_owned();
    if mechanism != "NULL" {
        // The rest of ours may meet a connection already closed.
        let _ = peer.write_all(&ours[11..]);
        return (mechanism, None);
    }
    peer.write_all(&ours[11..]).expect("greeting");
    peer.write_all(&zmtp_ready()).expect("READY");
    // The node's READY: the handshake (and ZAP) let us in.
    let (flags, command) = zmtp_frame(peer);
    assert!(
        flags & 0x04 != 0 && command.starts_with(b"\x05READY"),
        "{command:?}"
    );
    (mechanism, Some(command))
}

/// Writes `chunk` again and again, up to 300 MiB within 20 s; asserts
/// the node cut the stream off (a write failed) and grew by at most
/// 32 MiB meanwhile.
fn stream_until_cut(server: &Server, peer: &mut TcpStream, chunk: &[u8]) {
    const GROWTH: u64 = 32 * MIB;
    const MOST: u64 = 300 << 20;
    let (before, start) = (rss(server), Instant::now());
    let (mut peak, mut written) = (before, 0u64);
    let cut = loop {
        if written >= MOST || start.elapsed() > Duration::from_secs(20) || peak - before > GROWTH {
            break None;
        }
        match peer.write(chunk) {
            Ok(n) => written += n as u64,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => break Some(e),
        }
        peak = peak.max(rss(server));
    };
    let peak = peak.max(rss(server));
    assert!(
        cut.is_some(),
        "not cut off: {written} bytes taken in {:?}; the node grew from {before} to {peak} KiB",
        start.elapsed()
    );
    println!("cut off after {written} bytes: {cut:?}");
    assert!(
        peak - before <= GROWTH,
        "the node grew from {before} to {peak} KiB"
    );
}

/// Heartbeats (signed for the node's `boot`) every 200 ms until a message
/// of type `kind` comes, or `limit` passes.
fn beating(raw: &mut Raw, boot: u64, limit: Duration, kind: MessageType) -> Option<Vec<Vec<u8>>> {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        raw.heartbeat(boot);
        let left = deadline.saturating_duration_since(Instant::now());
        if let Some(frames) = raw.wait(kind, left.min(Duration::from_millis(200))) {
            return Some(frames);
        }
    }
    None
}

/// A handler that subscribes every client it is given to `chat/room`,
/// publishes each client message there, then acknowledges it to its
/// sender (`ack:TEXT`).
fn room() -> impl FnMut(&mut Worker, &Event) + Send {
    let mut ack = tagging("ack");
    move |worker, event| {
        match event {
            Event::Connect(c) => worker.subscribe(c.node, c.conn, "chat/room"),
            Event::Message { payload, .. } => worker
                .publish("chat/room", None, payload.as_payload())
                .map(drop),
            _ => Ok(()),
        }
        .expect("command");
        ack(worker, event);
    }
}

/// A ZMTP 3.0 greeting (RFC 23): signature, version 3.0, mechanism NULL,
/// as-server 0, filler.
fn zmtp_greeting() -> Vec<u8> {
    let mut greeting = vec![0xFF, 0, 0, 0, 0, 0, 0, 0, 0, 0x7F, 3, 0];
    let mut mechanism = b"NULL".to_vec();
    mechanism.resize(20, 0);
    greeting.extend_from_slice(&mechanism);
    greeting.push(0);
    greeting.resize(64, 0);
    greeting
}

/// The NULL mechanism's READY command of a DEALER.
fn zmtp_ready() -> Vec<u8> {
    let mut body = b"\x05READY".to_vec();
    body.push(b"Socket-Type".len() as u8);
    body.extend_from_slice(b"Socket-Type");
    body.extend_from_slice(&(b"DEALER".len() as u32).to_be_bytes());
    body.extend_from_slice(b"DEALER");
    let mut frame = vec![0x04, body.len() as u8];
    frame.extend_from_slice(&body);
    frame
}

/// One ZMTP frame as read: its flags and body.
fn zmtp_frame(stream: &mut TcpStream) -> (u8, Vec<u8>) {
    let mut flags = [0u8; 1];
    stream.read_exact(&mut flags).expect("frame flags");
    let size = if flags[0] & 0x02 != 0 {
        let mut size = [0u8; 8];
        stream.read_exact(&mut size).expect("frame size");
        u64::from_be_bytes(size)
    } else {
        let mut size = [0u8; 1];
        stream.read_exact(&mut size).expect("frame size");
        u64::from(size[0])
    };
    let mut body = vec![0u8; size as usize];
    stream.read_exact(&mut body).expect("frame body");
    (flags[0], body)
}
