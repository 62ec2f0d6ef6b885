//! The ZAP handler over real ZeroMQ sockets on loopback: a ROUTER with the
//! averyws ZAP domain, a DEALER worker, and the handler driven the way the
//! reactor drives it (poll its `ZMQ_FD`, then `handle_ready`). Then the
//! real binary with `--backend-allow`, and library workers connecting from
//! a chosen loopback source address (`tcp://SOURCE:0;NODE:PORT`).
//!
//! Every hand-driven test owns its context (inproc endpoints, the ZAP one
//! included, are per context), sets linger 0 everywhere, and is bounded in
//! time.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use averyws::backend::cidr::{Allowlist, Cidr};
use averyws::backend::zap::{self, Policy, ZapHandler, ZapStats};
use averyws_worker::{self as worker, Config, NodeId, Worker};
use common::clients::{closed, say};
use common::nodes::bound_endpoint;
use common::procs::{eventually, join};
use common::Server;

/// How long a test waits for something that should happen.
const PATIENCE: Duration = Duration::from_secs(3);
/// How long a test watches for something that should not happen.
const QUIET: Duration = Duration::from_millis(600);
/// How long a test of the real binary waits for something that should
/// happen: the node and its workers share two busy cores with other tests.
const LIMIT: Duration = Duration::from_secs(15);

/// Exactly these blocks, as `--backend-allow` gives them.
fn allowlist(entries: &[&str]) -> Allowlist {
    let entries = entries
        .iter()
        .map(|s| s.parse::<Cidr>().unwrap_or_else(|e| panic!("{s}: {e}")));
    Allowlist::new(entries)
}

fn socket(ctx: &zmq::Context, kind: zmq::SocketType, ipv6: bool) -> zmq::Socket {
    let socket = ctx.socket(kind).expect("socket");
    socket.set_linger(0).expect("linger");
    socket.set_ipv6(ipv6).expect("ipv6");
    socket
}

/// A node's side: the ZAP handler, created first, and one ROUTER.
struct Node {
    handler: Option<ZapHandler>,
    router: zmq::Socket,
    endpoint: String,
    received: Vec<Vec<Vec<u8>>>,
    // Declared last: dropped after the sockets.
    ctx: zmq::Context,
}

impl Node {
    /// `None` when `bind` is not possible here (no IPv6 loopback).
    fn start(bind: &str, ipv6: bool, zap_domain: bool, allow: Option<Allowlist>) -> Option<Node> {
        let ctx = zmq::Context::new();
        let handler = allow.map(|a| ZapHandler::new(&ctx, Policy::null(a)).expect("ZAP handler"));
        let router = socket(&ctx, zmq::ROUTER, ipv6);
        if zap_domain {
            router.set_zap_domain(zap::DOMAIN).expect("zap domain");
        }
        if let Err(e) = router.bind(bind) {
            eprintln!("skipping: cannot bind {bind}: {e}");
            return None;
        }
        let endpoint = router
            .get_last_endpoint()
            .expect("last endpoint")
            .expect("utf-8 endpoint");
        Some(Node {
            handler,
            router,
            endpoint,
            received: Vec::new(),
            ctx,
        })
    }

    fn dealer(&self, endpoint: &str, ipv6: bool) -> zmq::Socket {
        let dealer = socket(&self.ctx, zmq::DEALER, ipv6);
        dealer.connect(endpoint).expect("connect");
        dealer.send("hello", zmq::DONTWAIT).expect("queue hello");
        dealer
    }

    /// One reactor turn: wait up to 20 ms on the handler's fd and the
    /// ROUTER, then serve the handler and drain the ROUTER.
    fn turn(&mut self) -> ZapStats {
        let mut items = Vec::with_capacity(2);
        items.push(self.router.as_poll_item(zmq::POLLIN));
        if let Some(handler) = &self.handler {
            items.push(zmq::PollItem::from_fd(handler.fd(), zmq::POLLIN));
        }
        zmq::poll(&mut items, 20).expect("poll");
        drop(items);
        let mut stats = ZapStats::default();
        if let Some(handler) = &mut self.handler {
            loop {
                stats = handler.handle_ready();
                if !stats.more {
                    break;
                }
            }
        }
        while let Ok(parts) = self.router.recv_multipart(zmq::DONTWAIT) {
            self.received.push(parts);
        }
        stats
    }

    /// Turns until `done` or `limit` elapses; whether `done` became true.
    fn run_until(&mut self, limit: Duration, mut done: impl FnMut(&Node) -> bool) -> bool {
        let start = Instant::now();
        while start.elapsed() < limit {
            self.turn();
            if done(self) {
                return true;
            }
        }
        false
    }

    fn totals(&self) -> ZapStats {
        self.handler
            .as_ref()
            .map(ZapHandler::totals)
            .unwrap_or_default()
    }

    fn payloads(&self) -> Vec<&[u8]> {
        self.received
            .iter()
            .filter_map(|parts| parts.get(1).map(Vec::as_slice))
            .collect()
    }
}

/// The worker's message reaches the ROUTER, and the handler said 200 once.
fn assert_admitted(node: &mut Node) {
    let arrived = node.run_until(PATIENCE, |n| !n.received.is_empty());
    assert!(arrived, "message never arrived; totals {:?}", node.totals());
    assert_eq!(node.payloads(), [b"hello"]);
    let totals = node.totals();
    assert_eq!((totals.allowed, totals.denied, totals.malformed), (1, 0, 0));
}

/// The handler said 400, and the worker's message never reaches the
/// ROUTER.
fn assert_refused(node: &mut Node) {
    let asked = node.run_until(PATIENCE, |n| n.totals().denied > 0);
    assert!(asked, "handler never asked; totals {:?}", node.totals());
    node.run_until(QUIET, |n| !n.received.is_empty());
    assert!(node.received.is_empty(), "refused peer got through");
    let totals = node.totals();
    assert_eq!((totals.allowed, totals.malformed), (0, 0));
}

#[test]
fn loopback_refused_when_the_allowlist_excludes_it() {
    let allow = allowlist(&["10.0.0.0/8", "2001:db8::/32"]);
    let mut node = Node::start("tcp://127.0.0.1:*", false, true, Some(allow)).expect("bind");
    let _worker = node.dealer(&node.endpoint.clone(), false);
    assert_refused(&mut node);
    // libzmq ends a session refused by ZAP: no reconnect, no second request.
    assert_eq!(node.totals().denied, 1);
}

#[test]
fn loopback_admitted_when_the_allowlist_includes_it() {
    let allow = allowlist(&["127.0.0.0/8"]);
    let mut node = Node::start("tcp://127.0.0.1:*", false, true, Some(allow)).expect("bind");
    let _worker = node.dealer(&node.endpoint.clone(), false);
    assert_admitted(&mut node);
}

#[test]
fn loopback_admitted_by_default() {
    let mut node =
        Node::start("tcp://127.0.0.1:*", false, true, Some(Allowlist::default())).expect("bind");
    let _worker = node.dealer(&node.endpoint.clone(), false);
    assert_admitted(&mut node);
}

/// A DEALER connecting through `tcp://127.0.0.2:0;NODE` comes from
/// 127.0.0.2: in the loopback default, outside `127.0.0.1/32`.
#[test]
fn a_source_address_is_what_the_handler_checks() {
    for (allow, admitted) in [
        (Allowlist::default(), true),
        (allowlist(&["127.0.0.1/32"]), false),
    ] {
        let mut node = Node::start("tcp://127.0.0.1:*", false, true, Some(allow)).expect("bind");
        let _worker = node.dealer(&from_source("127.0.0.2", &node.endpoint), false);
        if admitted {
            assert_admitted(&mut node);
        } else {
            assert_refused(&mut node);
        }
    }
}

/// An `ipc://` peer's address is "localhost", not an IP: admitted even by
/// a list without loopback, or an empty one.
#[test]
fn ipc_peers_admitted_whatever_the_allowlist() {
    let dir = common::TempDir::new();
    for (i, allow) in [allowlist(&["10.0.0.0/8"]), allowlist(&[])]
        .into_iter()
        .enumerate()
    {
        let path = dir.path().join(format!("backend-{i}"));
        let bind = format!("ipc://{}", common::utf8(&path));
        let mut node = Node::start(&bind, false, true, Some(allow)).expect("bind");
        let _worker = node.dealer(&bind, false);
        assert_admitted(&mut node);
    }
}

/// A refused worker retries by connecting again; a new allowlist applies
/// to new connections.
#[test]
fn refused_worker_admitted_after_reconnect_with_a_new_allowlist() {
    let allow = allowlist(&[]);
    let mut node = Node::start("tcp://127.0.0.1:*", false, true, Some(allow)).expect("bind");
    let endpoint = node.endpoint.clone();
    let worker = node.dealer(&endpoint, false);
    assert_refused(&mut node);
    if let Some(handler) = &mut node.handler {
        handler.set_allowlist(allowlist(&["127.0.0.1"]));
    }
    // The refused session is gone; disconnect may or may not know it.
    let _ = worker.disconnect(&endpoint);
    worker.connect(&endpoint).expect("reconnect");
    worker.send("again", zmq::DONTWAIT).expect("queue again");
    let arrived = node.run_until(PATIENCE, |n| !n.received.is_empty());
    assert!(arrived, "totals {:?}", node.totals());
    // "hello" died with the refused session.
    assert_eq!(node.payloads(), [b"again"]);
    let totals = node.totals();
    assert_eq!((totals.allowed, totals.denied), (1, 1));
}

/// libzmq passes "::1": IPv6 blocks apply, IPv4 loopback does not.
#[test]
fn ipv6_loopback_checked_against_ipv6_blocks() {
    let Some(mut node) = Node::start("tcp://[::1]:*", true, true, Some(allowlist(&["::1/128"])))
    else {
        return;
    };
    let _worker = node.dealer(&node.endpoint.clone(), true);
    assert_admitted(&mut node);

    let Some(mut node) = Node::start(
        "tcp://[::1]:*",
        true,
        true,
        Some(allowlist(&["127.0.0.0/8"])),
    ) else {
        return;
    };
    let _worker = node.dealer(&node.endpoint.clone(), true);
    assert_refused(&mut node);
}

/// An IPv4 worker reaching an IPv6 socket shows up as "::ffff:127.0.0.1",
/// which the IPv4 block admits.
#[test]
fn ipv4_mapped_peer_matches_ipv4_blocks() {
    let Some(mut node) = Node::start(
        "tcp://[::ffff:127.0.0.1]:*",
        true,
        true,
        Some(allowlist(&["127.0.0.0/8"])),
    ) else {
        return;
    };
    let port = node.endpoint.rsplit(':').next().expect("port").to_owned();
    let _worker = node.dealer(&format!("tcp://127.0.0.1:{port}"), false);
    assert_admitted(&mut node);
}

/// Without a ZAP domain, libzmq never asks the handler (NULL mechanism):
/// the node must set it.
#[test]
fn no_zap_domain_means_no_check() {
    let allow = allowlist(&[]);
    let mut node = Node::start("tcp://127.0.0.1:*", false, false, Some(allow)).expect("bind");
    let _worker = node.dealer(&node.endpoint.clone(), false);
    let arrived = node.run_until(PATIENCE, |n| !n.received.is_empty());
    assert!(arrived);
    assert_eq!(node.totals(), ZapStats::default());
}

/// With a ZAP domain but nothing bound at the ZAP endpoint, libzmq 4.3
/// admits the peer unasked: the handler must exist before the ROUTER
/// accepts anyone.
#[test]
fn no_handler_fails_open() {
    let mut node = Node::start("tcp://127.0.0.1:*", false, true, None).expect("bind");
    let _worker = node.dealer(&node.endpoint.clone(), false);
    assert!(node.run_until(PATIENCE, |n| !n.received.is_empty()));
}

#[test]
fn one_handler_per_context() {
    let ctx = zmq::Context::new();
    let _first = ZapHandler::new(&ctx, Policy::default()).expect("first");
    let second = ZapHandler::new(&ctx, Policy::default());
    assert_eq!(second.err(), Some(zmq::Error::EADDRINUSE));
}

/// Requests libzmq never sends, from an inproc REQ socket in the same
/// context: each gets a 400 (with its request id when it has one) and the
/// handler keeps serving.
#[test]
fn malformed_requests_answered_400() {
    let ctx = zmq::Context::new();
    let mut handler = ZapHandler::new(&ctx, Policy::default()).expect("handler");
    let client = socket(&ctx, zmq::REQ, false);
    client.connect(zap::ENDPOINT).expect("connect");
    let long = vec![b'x'; zap::MAX_FRAME_LEN + 1];
    /// (request frames, expected request id, expected status code)
    type Case<'a> = (Vec<&'a [u8]>, &'a [u8], &'a [u8]);
    let cases: Vec<Case> = vec![
        (vec![b"1.0", b"7", b"averyws"], b"7", b"400"),
        (
            vec![b"2.0", b"8", b"d", b"127.0.0.1", b"", b"NULL"],
            b"8",
            b"400",
        ),
        (vec![b"garbage"], b"", b"400"),
        (vec![b"1.0", b"9", b"d", &long, b"", b"NULL"], b"9", b"400"),
        (vec![&b"1.0"[..]; 40], b"1.0", b"400"),
        // An ipc:// peer ("localhost") is a local process.
        (
            vec![b"1.0", b"10", b"d", b"localhost", b"", b"NULL"],
            b"10",
            b"200",
        ),
        (
            vec![b"1.0", b"11", b"d", b"127.0.0.1", b"", b"PLAIN", b"u", b"p"],
            b"11",
            b"400",
        ),
        (
            vec![b"1.0", b"12", b"d", b"127.0.0.1", b"", b"NULL"],
            b"12",
            b"200",
        ),
    ];
    let mut totals = ZapStats::default();
    for (request, id, code) in &cases {
        client.send_multipart(request, 0).expect("send request");
        let start = Instant::now();
        let reply = loop {
            assert!(start.elapsed() < PATIENCE, "no reply to {request:?}");
            let mut items = [zmq::PollItem::from_fd(handler.fd(), zmq::POLLIN)];
            zmq::poll(&mut items, 20).expect("poll");
            let stats = handler.handle_ready();
            totals.allowed += stats.allowed;
            totals.denied += stats.denied;
            totals.malformed += stats.malformed;
            if let Ok(reply) = client.recv_multipart(zmq::DONTWAIT) {
                break reply;
            }
        };
        assert_eq!(reply.len(), 6, "{request:?}");
        assert_eq!(reply[0], b"1.0");
        assert_eq!(reply[1], *id);
        assert_eq!(reply[2], *code);
    }
    assert_eq!((totals.allowed, totals.denied, totals.malformed), (2, 1, 5));
    assert_eq!(handler.totals().malformed, 5);
}

// ------------------------------------------------------ the real binary

/// `--backend-allow 127.0.0.1/32` means that host only, not the rest of
/// loopback: a worker from 127.0.0.2 is refused in its handshake (no
/// WELCOME, the node logs it, clients find no worker), one from 127.0.0.1
/// registers and serves.
#[test]
fn backend_allow_admits_exactly_the_listed_blocks() {
    let (server, endpoint) = node(&["--backend-allow", "127.0.0.1/32"]);

    let outsider = Lib::start("outsider", &from_source("127.0.0.2", &endpoint));
    // Whichever comes first: the refusal, or the outsider registering.
    let verdict = eventually(LIMIT, || {
        let log = server.log();
        log.into_iter()
            .find(|line| line.contains("ZAP: refused") || line.contains("worker outsider ready"))
    });
    let verdict = verdict.unwrap_or_else(|| panic!("no verdict logged: {:#?}", server.log()));
    let refusal = "ZAP: refused backend peer \"127.0.0.2\" (domain \"averyws\", \
                   mechanism \"NULL\"): address not allowed";
    assert!(verdict.contains(refusal), "expected the refusal: {verdict}");
    let no_worker = (1013, "no worker for this service".to_owned());
    assert_eq!(closed(&mut server.ws("/w")), no_worker);

    let insider = Lib::start("insider", &from_source("127.0.0.1", &endpoint));
    insider.wait_welcome();
    wait_ready(&server, "insider");
    assert_eq!(say(&mut server.ws("/w"), "hello"), "hello");

    // Refused, not delayed: the insider came later and is welcomed; the
    // outsider still is not.
    assert!(!outsider.welcomed(), "the outsider was welcomed");
    let log = server.log();
    assert!(
        !log.iter()
            .any(|line| line.contains("worker outsider ready")),
        "{log:#?}"
    );
}

/// Without `--backend-allow`, all of loopback is admitted, 127.0.0.2
/// included.
#[test]
fn without_backend_allow_all_of_loopback_is_admitted() {
    let (server, endpoint) = node(&[]);
    let local = Lib::start("local", &from_source("127.0.0.2", &endpoint));
    local.wait_welcome();
    wait_ready(&server, "local");
    assert_eq!(say(&mut server.ws("/w"), "hello"), "hello");
    let log = server.log();
    assert!(!log.iter().any(|line| line.contains("ZAP:")), "{log:#?}");
}

/// An IPv6 endpoint binds, and its allowlist takes IPv6 blocks: a worker
/// from ::1 is admitted by `::1/128` and serves.
#[test]
fn an_ipv6_endpoint_binds_and_its_allowlist_takes_ipv6_blocks() {
    let (server, endpoint) = node_on("tcp://[::1]:0", &["--backend-allow", "::1/128"]);
    assert!(endpoint.starts_with("tcp://[::1]:"), "{endpoint}");
    let local = Lib::start("local6", &endpoint);
    local.wait_welcome();
    wait_ready(&server, "local6");
    assert_eq!(say(&mut server.ws("/w"), "over ::1"), "over ::1");
    let log = server.log();
    assert!(!log.iter().any(|line| line.contains("ZAP:")), "{log:#?}");
}

/// A node routing `/w` to `svc` (with the harness's open ACL), its ROUTER
/// on a loopback port the kernel picks, and that endpoint.
///
/// ZAP sees only TCP peers' addresses, so this is TCP, not the harness's
/// ipc:// [`common::free_endpoint`]; port 0 leaves no window for a
/// parallel test to take the port first. The heartbeat is a minute, so no
/// backend timer wakes the reactor while a test waits: ZAP requests are
/// answered only if the handler's own fd event gets them served, as it
/// must (a handshake waits for its answer).
fn node(extra: &[&str]) -> (Server, String) {
    node_on("tcp://127.0.0.1:0", extra)
}

/// [`node`] bound on `bind`.
fn node_on(bind: &str, extra: &[&str]) -> (Server, String) {
    let mut args = vec!["--route", "/w=svc", "--backend-bind", bind];
    args.extend(["--backend-heartbeat-ms", "60000"]);
    args.extend_from_slice(extra);
    let server = Server::start(&args);
    let endpoint = bound_endpoint(&server);
    (server, endpoint)
}

/// Waits until the node logged the worker `name` registering.
fn wait_ready(server: &Server, name: &str) {
    let needle = format!("worker {name} ready for svc");
    server
        .wait_log(&needle, LIMIT)
        .unwrap_or_else(|| panic!("no {needle:?} in the log: {:#?}", server.log()));
}

/// `endpoint` (`tcp://HOST:PORT`) reached from `source` on an ephemeral
/// port: libzmq's `tcp://SOURCE:PORT;HOST:PORT` form.
fn from_source(source: &str, endpoint: &str) -> String {
    let node = endpoint.strip_prefix("tcp://").expect("a tcp:// endpoint");
    format!("tcp://{source}:0;{node}")
}

/// A library echo worker ([`worker::echo`]) for `svc` on a thread; it
/// says once when the node's WELCOME has come.
struct Lib {
    welcome: Receiver<()>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Lib {
    fn start(name: &str, endpoint: &str) -> Lib {
        let mut config = Config::new(vec![endpoint.to_owned()], vec!["svc".to_owned()]);
        config.name = name.to_owned();
        let (said, welcome) = mpsc::channel();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            let mut worker = Worker::new(config).expect("worker");
            let mut welcomed = false;
            while !flag.load(Ordering::Relaxed) {
                if let Some(event) = worker.poll(Duration::from_millis(10)) {
                    worker::echo(&mut worker, event);
                }
                if !welcomed && worker.node_info(NodeId(0)).is_some() {
                    welcomed = true;
                    let _ = said.send(());
                }
            }
            worker.bye();
        });
        Lib {
            welcome,
            stop,
            thread: Some(thread),
        }
    }

    fn wait_welcome(&self) {
        match self.welcome.recv_timeout(LIMIT) {
            Ok(()) => {}
            Err(RecvTimeoutError::Timeout) => panic!("no WELCOME within {LIMIT:?}"),
            Err(RecvTimeoutError::Disconnected) => panic!("the worker thread ended"),
        }
    }

    /// Whether WELCOME has come so far.
    fn welcomed(&self) -> bool {
        self.welcome.try_recv().is_ok()
    }
}

impl Drop for Lib {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            join(thread);
        }
    }
}
