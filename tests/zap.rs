//! The ZAP handler over real ZeroMQ sockets on loopback: a ROUTER with the
//! averyws ZAP domain, a DEALER worker, and the handler driven the way the
//! reactor drives it (poll its `ZMQ_FD`, then `handle_ready`).
//!
//! Every test owns its context (inproc endpoints, the ZAP one included,
//! are per context), sets linger 0 everywhere, and is bounded in time.

use std::time::{Duration, Instant};

use averyws::backend::cidr::{Allowlist, Cidr};
use averyws::backend::zap::{self, ZapHandler, ZapStats};

/// How long a test waits for something that should happen.
const PATIENCE: Duration = Duration::from_secs(3);
/// How long a test watches for something that should not happen.
const QUIET: Duration = Duration::from_millis(600);

fn allowlist(entries: &[&str], include_loopback: bool) -> Allowlist {
    let entries = entries
        .iter()
        .map(|s| s.parse::<Cidr>().unwrap_or_else(|e| panic!("{s}: {e}")));
    Allowlist::new(entries, include_loopback)
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
        let handler = allow.map(|a| ZapHandler::new(&ctx, a).expect("ZAP handler"));
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
    let allow = allowlist(&["10.0.0.0/8", "2001:db8::/32"], false);
    let mut node = Node::start("tcp://127.0.0.1:*", false, true, Some(allow)).expect("bind");
    let _worker = node.dealer(&node.endpoint.clone(), false);
    assert_refused(&mut node);
    // libzmq ends a session refused by ZAP: no reconnect, no second request.
    assert_eq!(node.totals().denied, 1);
}

#[test]
fn loopback_admitted_when_the_allowlist_includes_it() {
    let allow = allowlist(&["127.0.0.0/8"], false);
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

/// A refused worker retries by connecting again; a new allowlist applies
/// to new connections.
#[test]
fn refused_worker_admitted_after_reconnect_with_a_new_allowlist() {
    let allow = allowlist(&[], false);
    let mut node = Node::start("tcp://127.0.0.1:*", false, true, Some(allow)).expect("bind");
    let endpoint = node.endpoint.clone();
    let worker = node.dealer(&endpoint, false);
    assert_refused(&mut node);
    if let Some(handler) = &mut node.handler {
        handler.set_allowlist(allowlist(&["127.0.0.1"], false));
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
    let Some(mut node) = Node::start(
        "tcp://[::1]:*",
        true,
        true,
        Some(allowlist(&["::1/128"], false)),
    ) else {
        return;
    };
    let _worker = node.dealer(&node.endpoint.clone(), true);
    assert_admitted(&mut node);

    let Some(mut node) = Node::start(
        "tcp://[::1]:*",
        true,
        true,
        Some(allowlist(&["127.0.0.0/8"], false)),
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
        Some(allowlist(&["127.0.0.0/8"], false)),
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
    let allow = allowlist(&[], false);
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
    let _first = ZapHandler::new(&ctx, Allowlist::default()).expect("first");
    let second = ZapHandler::new(&ctx, Allowlist::default());
    assert_eq!(second.err(), Some(zmq::Error::EADDRINUSE));
}

/// Requests libzmq never sends, from an inproc REQ socket in the same
/// context: each gets a 400 (with its request id when it has one) and the
/// handler keeps serving.
#[test]
fn malformed_requests_answered_400() {
    let ctx = zmq::Context::new();
    let mut handler = ZapHandler::new(&ctx, Allowlist::default()).expect("handler");
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
