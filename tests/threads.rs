//! Several reactors in one process (`--threads 2`): both serve clients of
//! the one port, each is its own backend node, and SIGHUP and SIGTERM reach
//! every one of them, with clients on both.
//!
//! Which reactor the kernel gives a connection to is a hash of its address
//! and port, so the tests open clients until `GET /metrics` (which labels
//! every sample by reactor) shows each reactor has enough of them.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use common::certs::generate_pair;
use common::clients::{closed, next_chat, say, sync_room, try_read_text};
use common::procs::{
    eventually, install_python_package, port, python_with_zmq, wait_registered, Proc,
};
use common::scrape::{open_on_every_reactor, sample_sum, scrape};
use common::{Server, TempDir, WebSocket};
use tungstenite::Message as Ws;

/// How long to wait for something that should happen.
const LIMIT: Duration = Duration::from_secs(10);
const KEY_1: &str = "k1:0123456789abcdef0123456789abcdef\n";
const KEY_2: &str = "k2:fedcba9876543210fedcba9876543210\n";

/// One `--connect` is enough: the worker finds reactor 1 from reactor
/// 0's WELCOME (docs/protocol.md section 14).
#[test]
fn both_reactors_serve_and_a_publish_reaches_subscribers_on_both() {
    let (first, _) = common::two_reactor_endpoints();
    let server = Server::start(&[
        "--threads",
        "2",
        "--route",
        "/chat=chat",
        "--backend-bind",
        &first,
        "--backend-heartbeat-ms",
        "100",
    ]);
    let worker = Proc::example("chat_worker", &["--connect", &first, "--service", "chat"]);
    wait_registered(&server, &worker, 2);
    let mut members = open_on_every_reactor(&server, "/chat?room=lobby", 2);
    wait_joined(&worker, &members);
    sync_room(&mut members);
    // The worker publishes on every node: members on both reactors get
    // each line once, the sender none.
    let sent = || {
        let (_, _, body) = scrape(&server, None);
        sample_sum(&body, "averyws_messages_sent_total")
    };
    let sent_before = sent();
    for from in [0, members.len() - 1] {
        let text = format!("hello from member {from}");
        members[from].send(Ws::Text(text.clone())).expect("send");
        for (i, ws) in members.iter_mut().enumerate() {
            if i != from {
                assert_eq!(next_chat(ws), text, "member {i}");
            }
        }
    }
    // What workers send counts as sent, as echoes do.
    let published = 2 * (members.len() as u64 - 1);
    assert_eq!(sent() - sent_before, published);
}

#[test]
fn sighup_reloads_certificate_and_acl_on_every_reactor_under_traffic() {
    let (a, b) = (generate_pair(), generate_pair());
    let dir = TempDir::new();
    let [cert, key, acl] = ["cert.pem", "key.pem", "acl.conf"].map(|f| dir.path().join(f));
    std::fs::write(&cert, &a.cert).expect("write");
    std::fs::write(&key, &a.key).expect("write");
    let open =
        "allow guest /echo,/echo2 connect\nallow guest echo send\nallow guest metrics read\n";
    std::fs::write(&acl, open).expect("write");
    let [cert_s, key_s, acl_s] = [&cert, &key, &acl].map(|p| common::utf8(p));
    let args = [
        "--threads",
        "2",
        "--cert",
        &cert_s,
        "--key",
        &key_s,
        "--acl",
        &acl_s,
        "--route",
        "/echo=echo",
        "--route",
        "/echo2=echo",
    ];
    let server = Server::start_in(dir, cert.clone(), &args);
    let traffic = Traffic::start(open_on_every_reactor(&server, "/echo", 2));
    let mut doomed = open_on_every_reactor(&server, "/echo2", 2);

    // The certificate: connections on both reactors now trust only `b`.
    std::fs::write(&cert, &b.cert).expect("write");
    std::fs::write(&key, &b.key).expect("write");
    reload(&server, "certificate reloaded");
    let fresh = open_on_every_reactor(&server, "/echo", 2);
    for mut ws in fresh {
        let leaf = ws.get_ref().conn.peer_certificates().expect("certificate")[0].to_vec();
        assert_eq!(leaf, b.der.to_vec());
        assert_eq!(say(&mut ws, "new certificate"), "new certificate");
    }

    // The ACL: /echo2 is revoked on both reactors, /echo goes on.
    std::fs::write(&acl, open.replace("/echo,/echo2", "/echo")).expect("write");
    reload(&server, "ACL reloaded");
    for ws in &mut doomed {
        assert_eq!(closed(ws).0, 1008);
    }
    let traffic = traffic.stop();
    assert!(traffic.rounds > 0, "no traffic ran across the reloads");
    assert_eq!(traffic.failures, Vec::<String>::new());
}

#[test]
fn sighup_rotates_backend_keys_on_every_reactor_and_keeps_them_on_a_broken_file() {
    let (first, second) = common::two_reactor_endpoints();
    let dir = TempDir::new();
    let [keys, old, new] = ["node.keys", "old.keys", "new.keys"].map(|f| dir.path().join(f));
    std::fs::write(&keys, KEY_1).expect("write");
    std::fs::write(&old, KEY_1).expect("write");
    std::fs::write(&new, KEY_2).expect("write");
    let [keys_s, old_s, new_s] = [&keys, &old, &new].map(|p| common::utf8(p));
    let server = Server::start(&[
        "--threads",
        "2",
        "--route",
        "/w=wecho",
        "--route",
        "/echo=echo",
        "--backend-bind",
        &first,
        "--backend-heartbeat-ms",
        "100",
        "--backend-key-file",
        &keys_s,
    ]);
    // Reactor 1's endpoint alone: the worker derives reactor 0's.
    let worker_args = |key_file: &str| {
        let args = ["--connect", &second, "--service", "wecho"];
        let mut args: Vec<String> = args.map(str::to_owned).to_vec();
        args.extend(["--key-file".to_owned(), key_file.to_owned()]);
        args
    };
    let traffic = Traffic::start(open_on_every_reactor(&server, "/echo", 2));
    let old_worker = Proc::example("echo_worker", &worker_args(&old_s));
    wait_registered(&server, &old_worker, 2);
    for mut ws in open_on_every_reactor(&server, "/w", 1) {
        assert_eq!(say(&mut ws, "signed with k1"), "signed with k1");
    }

    // A broken file is refused whole, its valid k2 line too: k1 stays in
    // force on both nodes, so the k1 worker's replies still verify.
    std::fs::write(&keys, format!("{KEY_2}not a key line\n")).expect("write");
    let mark = server.log_len();
    server.signal("HUP");
    let kept = server
        .wait_log_from(mark, "keeping the current backend keys", LIMIT)
        .unwrap_or_else(|| panic!("no refusal of the broken file: {:#?}", server.log()));
    assert!(
        kept.contains("node.keys: line 2: ") && kept.contains(" WARN "),
        "{kept}"
    );
    for mut ws in open_on_every_reactor(&server, "/w", 1) {
        assert_eq!(say(&mut ws, "still k1"), "still k1");
    }
    let log = server.log();
    let rejected = ["unknown key", "keys reloaded", "silent past its liveness"];
    assert!(
        !log.iter()
            .any(|line| rejected.iter().any(|r| line.contains(r))),
        "the broken file changed the keys: {log:#?}"
    );

    std::fs::write(&keys, KEY_2).expect("write");
    reload(&server, "backend keys reloaded");
    // Neither node takes k1 any more; both take k2.
    server
        .wait_log("unknown key", LIMIT)
        .unwrap_or_else(|| panic!("k1 still verifies: {:#?}", server.log()));
    let new_worker = Proc::example("echo_worker", &worker_args(&new_s));
    wait_registered(&server, &new_worker, 2);
    // The old worker falls silent (its heartbeats no longer verify) and is
    // buried; from then on every client is the new worker's.
    server
        .wait_log("silent past its liveness", LIMIT)
        .unwrap_or_else(|| panic!("the k1 worker lives on: {:#?}", server.log()));
    for mut ws in open_on_every_reactor(&server, "/w", 1) {
        assert_eq!(say(&mut ws, "signed with k2"), "signed with k2");
    }
    let traffic = traffic.stop();
    assert!(traffic.rounds > 0);
    assert_eq!(traffic.failures, Vec::<String>::new());
}

/// The Python package, installed with pip into a fresh virtual
/// environment, serves a two-reactor server through one `--connect`: its
/// echo worker answers clients of both reactors, and its chat worker
/// relays between room members on different reactors (docs/protocol.md
/// section 14).
#[test]
fn the_installed_python_package_serves_both_reactors_through_one_connect() {
    if !python_with_zmq() {
        return;
    }
    let venv = TempDir::new();
    let package = concat!(env!("CARGO_MANIFEST_DIR"), "/python/averyws-worker");
    let python = install_python_package(venv.path(), package.as_ref());
    let (first, second) = common::two_reactor_endpoints();
    let server = Server::start(&[
        "--threads",
        "2",
        "--route",
        "/py=pyecho",
        "--route",
        "/chat=pychat",
        "--backend-bind",
        &first,
        "--backend-heartbeat-ms",
        "100",
    ]);
    let worker = |module: &str, service: &str| {
        let args = ["-m", module, "--connect", &first, "--service", service];
        Proc::spawn(std::process::Command::new(&python).args(args))
    };
    let (echo, chat) = (
        worker("averyws_worker.echo", "pyecho"),
        worker("averyws_worker.chat", "pychat"),
    );
    let linked = format!("linking to sibling reactor {second}");
    for worker in [&echo, &chat] {
        wait_registered(&server, worker, 2);
        eventually(LIMIT, || worker.line(&linked))
            .unwrap_or_else(|| panic!("no {linked:?}: {}", worker.log()));
    }
    for (i, mut ws) in open_on_every_reactor(&server, "/py", 2)
        .into_iter()
        .enumerate()
    {
        let text = format!("client {i}");
        assert_eq!(say(&mut ws, &text), text, "client {i}: {}", echo.log());
    }
    let mut members = open_on_every_reactor(&server, "/chat?room=lobby", 1);
    wait_joined(&chat, &members);
    sync_room(&mut members);
    members[0]
        .send(Ws::Text("hello, room".into()))
        .expect("send");
    for (i, ws) in members.iter_mut().enumerate().skip(1) {
        assert_eq!(next_chat(ws), "hello, room", "member {i}: {}", chat.log());
    }
    // A room whose channel name would pass 256 bytes: the package's
    // close() ends the client with the chat worker's code and reason.
    let mut refused = server.ws(&format!("/chat?room={}", "r".repeat(300)));
    let expected = (1008, "invalid room name".to_owned());
    assert_eq!(closed(&mut refused), expected, "{}", chat.log());
}

#[test]
fn sigterm_drains_clients_on_every_reactor() {
    // A route makes the harness open the ACL, metrics included.
    let mut server = Server::start(&["--threads", "2", "--route", "/echo=echo"]);
    let clients = open_on_every_reactor(&server, "/echo", 2);
    server.signal("TERM");
    for mut ws in clients {
        assert_eq!(closed(&mut ws).0, 1001);
    }
    assert_eq!(server.wait_exit(LIMIT), Some(0), "{:#?}", server.log());
    let drained = server
        .log()
        .iter()
        .filter(|line| line.contains("shutting down"))
        .count();
    assert_eq!(drained, 2, "each reactor drains: {:#?}", server.log());
}

#[test]
fn connection_limits_hold_for_the_process_not_per_reactor() {
    let server = Server::start(&["--threads", "2", "--max-connections-per-ip", "3"]);
    let mut held: Vec<WebSocket> = (0..3).map(|_| server.ws("/echo")).collect();
    // Shares of the limit per reactor would let a fourth in on whichever
    // reactor holds fewer; the process-wide count refuses it on both.
    let url = format!("wss://localhost:{}/echo", server.addr.port());
    for attempt in 0..6 {
        let refused = tungstenite::client::client(url.as_str(), server.tls()).is_err();
        assert!(refused, "attempt {attempt} got in past the per-IP limit");
    }
    held.pop();
    let again = eventually(LIMIT, || {
        tungstenite::client::client(url.as_str(), server.tls()).ok()
    });
    assert!(again.is_some(), "a freed place is taken again");
}

// ------------------------------------------------------------- helpers

/// Waits until the chat `worker` has logged each member's join.
fn wait_joined(worker: &Proc, members: &[WebSocket]) {
    for ws in members {
        let joined = format!("(127.0.0.1:{}) joins", port(ws));
        eventually(LIMIT, || worker.line(&joined))
            .unwrap_or_else(|| panic!("nobody subscribed {joined}: {}", worker.log()));
    }
}

/// Sends SIGHUP and waits for `answer`, which is logged once every
/// reactor has the new state.
fn reload(server: &Server, answer: &str) {
    let mark = server.log_len();
    server.signal("HUP");
    let line = server
        .wait_log_from(mark, answer, LIMIT)
        .unwrap_or_else(|| panic!("no `{answer}` after SIGHUP: {:#?}", server.log()));
    assert!(line.contains("in force on 2 reactor(s)"), "{line}");
}

/// Echo round trips on every client, over and over, until stopped.
struct Traffic {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<Outcome>,
}

/// What a [`Traffic`] run saw.
struct Outcome {
    rounds: u64,
    failures: Vec<String>,
}

impl Traffic {
    fn start(mut clients: Vec<WebSocket>) -> Traffic {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            let mut outcome = Outcome {
                rounds: 0,
                failures: Vec::new(),
            };
            while !flag.load(Ordering::Relaxed) && outcome.failures.is_empty() {
                for (i, ws) in clients.iter_mut().enumerate() {
                    let text = format!("client {i} round {}", outcome.rounds);
                    let got = ws
                        .send(Ws::Text(text.clone()))
                        .map_err(|e| e.to_string())
                        .and_then(|()| try_read_text(ws));
                    if got.as_ref() != Ok(&text) {
                        outcome.failures.push(format!("{text}: {got:?}"));
                    }
                }
                outcome.rounds += 1;
            }
            outcome
        });
        Traffic { stop, thread }
    }

    fn stop(self) -> Outcome {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().expect("traffic thread")
    }
}
