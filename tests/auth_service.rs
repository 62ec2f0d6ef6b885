//! Delegated authentication (docs/acl.md, docs/protocol.md AUTH and
//! AUTH_REPLY) against the real binary: library workers on threads serve
//! the `--auth-service` and the route's service, and clients without a
//! token are let in, refused, or failed closed as the auth worker decides,
//! stays silent, dies or is missing.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use averyws_worker::{Config, Connected, Event, NodeId, Worker};
use common::{
    client_frame, free_endpoint, read_response_head, send, status, upgrade_request, utf8, Server,
    TempDir, TEXT,
};

const LIMIT: Duration = Duration::from_secs(10);
/// Members may use /w and its service; guests nothing.
const ACL: &str = "allow member /w connect\nallow member svc send\n\
allow guest /open connect\nallow guest echo send\n";
/// The headers a browser would send, with the cookie the auth worker reads.
const BROWSER: &str =
    "Origin: https://app.example\r\nUser-Agent: t/1\r\nCookie: sid=abc\r\nCookie: theme=dark\r\n";

// ---------------------------------------------------------------- tests

#[test]
fn an_allowed_client_connects_as_the_user_the_auth_worker_names() {
    let (server, endpoint) = node(5000);
    let from = server.log_len();
    let auth = Lib::start(&endpoint, "auth", Verdict::Allow(&["member", "beta"]));
    let svc = Lib::start(&endpoint, "svc", Verdict::Silent);
    wait_ready(&server, from, &["auth", "svc"]);

    // A frame pipelined behind the head waits with it for the verdict.
    let mut stream = server.tls();
    let mut bytes = upgrade_request("/w?room=1", BROWSER).into_bytes();
    bytes.extend(client_frame(true, TEXT, b"early"));
    send(&mut stream, &bytes);
    let head = read_response_head(&mut stream);
    assert_eq!(status(&head), 101, "{head}");

    let Event::Auth {
        path,
        query,
        peer,
        headers,
        ..
    } = auth.next(|e| matches!(e, Event::Auth { .. }))
    else {
        unreachable!()
    };
    assert_eq!((path.as_str(), query.as_str()), ("/w", "room=1"));
    assert!(peer.starts_with("127.0.0.1:"), "{peer}");
    let header = |name: &str| {
        headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, value)| String::from_utf8_lossy(value).into_owned())
    };
    assert_eq!(header("cookie").as_deref(), Some("sid=abc; theme=dark"));
    assert_eq!(header("origin").as_deref(), Some("https://app.example"));
    assert_eq!(header("user-agent").as_deref(), Some("t/1"));

    let Event::Connect(Connected {
        user,
        roles,
        headers,
        ..
    }) = svc.next(|e| matches!(e, Event::Connect(_)))
    else {
        unreachable!()
    };
    assert_eq!(user, "alice");
    assert_eq!(roles, ["member", "beta"]);
    assert!(
        headers.iter().all(|(name, _)| name != "cookie"),
        "CONNECT does not carry the cookie"
    );
    let Event::Message { payload, .. } = svc.next(|e| matches!(e, Event::Message { .. })) else {
        unreachable!()
    };
    assert_eq!(payload.as_bytes(), b"early");
}

#[test]
fn an_allowed_user_the_acl_refuses_gets_403() {
    let (server, endpoint) = node(5000);
    let from = server.log_len();
    let _auth = Lib::start(&endpoint, "auth", Verdict::Allow(&[]));
    wait_ready(&server, from, &["auth"]);
    assert_eq!(upgrade_status(&server, ""), 403);
}

#[test]
fn a_denied_client_gets_401() {
    let (server, endpoint) = node(5000);
    let from = server.log_len();
    let auth = Lib::start(&endpoint, "auth", Verdict::Deny);
    wait_ready(&server, from, &["auth"]);
    assert_eq!(upgrade_status(&server, BROWSER), 401);
    auth.next(|e| matches!(e, Event::Auth { .. }));
}

#[test]
fn a_bad_token_is_401_without_asking_the_auth_worker() {
    let (server, endpoint) = node(5000);
    let from = server.log_len();
    let auth = Lib::start(&endpoint, "auth", Verdict::Allow(&["member"]));
    wait_ready(&server, from, &["auth"]);
    assert_eq!(
        upgrade_status(&server, "Authorization: Bearer a.b.c\r\n"),
        401
    );
    assert_eq!(upgrade_status(&server, ""), 101, "the worker is there");
    assert_eq!(auth.auths(), 1, "only the client without a token was asked");
}

#[test]
fn a_silent_auth_worker_fails_closed_with_503_at_the_timeout() {
    let (server, endpoint) = node(300);
    let from = server.log_len();
    let _auth = Lib::start(&endpoint, "auth", Verdict::Silent);
    wait_ready(&server, from, &["auth"]);
    let started = Instant::now();
    assert_eq!(upgrade_status(&server, ""), 503);
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(300) && waited < LIMIT,
        "{waited:?}"
    );
    assert!(server.wait_log("auth service timed out", LIMIT).is_some());
}

#[test]
fn replies_from_another_worker_or_too_late_are_dropped_and_counted() {
    let (server, endpoint) = node(300);
    let from = server.log_len();
    let auth = Lib::start(&endpoint, "auth", Verdict::Silent);
    let svc = Lib::start(&endpoint, "svc", Verdict::Silent);
    wait_ready(&server, from, &["auth", "svc"]);
    let mut stream = server.tls();
    send(&mut stream, upgrade_request("/w", "").as_bytes());
    let Event::Auth { node, request, .. } = auth.next(|e| matches!(e, Event::Auth { .. })) else {
        unreachable!()
    };
    // A worker of another service cannot let the client in.
    svc.allow(node, request);
    let dropped = "AUTH_REPLY for no request pending at that worker (1 so far)";
    assert!(server.wait_log(dropped, LIMIT).is_some());
    let head = read_response_head(&mut stream);
    assert_eq!(status(&head), 503, "{head}");
    // After the timeout, the asked worker's verdict is too late.
    auth.allow(node, request);
    let dropped = "AUTH_REPLY for no request pending at that worker (2 so far)";
    assert!(server.wait_log(dropped, LIMIT).is_some());
}

#[test]
fn only_the_auth_routes_ask_the_auth_worker() {
    let extra = ["--route", "/open=echo", "--auth-route", "/w"];
    let (server, endpoint) = node_with(5000, &extra);
    let from = server.log_len();
    let auth = Lib::start(&endpoint, "auth", Verdict::Allow(&["member"]));
    wait_ready(&server, from, &["auth"]);
    let mut open = server.tls();
    send(&mut open, upgrade_request("/open", "").as_bytes());
    assert_eq!(status(&read_response_head(&mut open)), 101);
    assert_eq!(auth.auths(), 0, "/open is not an auth route: a guest");
    assert_eq!(upgrade_status(&server, ""), 101);
    assert_eq!(auth.auths(), 1, "/w is");
}

#[test]
fn no_auth_worker_is_503_at_once() {
    let (server, _endpoint) = node(5000);
    let started = Instant::now();
    assert_eq!(upgrade_status(&server, ""), 503);
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[test]
fn an_auth_worker_that_dies_before_its_verdict_fails_closed_with_503() {
    let (server, endpoint) = node(5000);
    let from = server.log_len();
    let auth = Lib::start(&endpoint, "auth", Verdict::Silent);
    wait_ready(&server, from, &["auth"]);
    let mut stream = server.tls();
    send(&mut stream, upgrade_request("/w", "").as_bytes());
    auth.next(|e| matches!(e, Event::Auth { .. }));
    let started = Instant::now();
    drop(auth); // BYE
    let head = read_response_head(&mut stream);
    assert_eq!(status(&head), 503, "{head}");
    assert!(started.elapsed() < Duration::from_secs(5));
}

// ------------------------------------------------------------- harness

/// A node routing /w to `svc`, delegating to `auth` with a timeout of
/// `timeout_ms`, with [`ACL`], and its backend endpoint.
fn node(timeout_ms: u64) -> (Server, String) {
    node_with(timeout_ms, &[])
}

/// [`node`] with `extra` arguments.
fn node_with(timeout_ms: u64, extra: &[&str]) -> (Server, String) {
    let endpoint = free_endpoint();
    let dir = TempDir::new();
    let acl = dir.path().join("acl.conf");
    std::fs::write(&acl, ACL).expect("write the ACL");
    let cert = dir.path().join("dev-cert.pem");
    let (acl, cert_out) = (utf8(&acl), utf8(&cert));
    let timeout_ms = timeout_ms.to_string();
    let args = [
        "--dev-cert-out",
        &cert_out,
        "--acl",
        &acl,
        "--route",
        "/w=svc",
        "--backend-bind",
        &endpoint,
        "--auth-service",
        "auth",
        "--auth-timeout-ms",
        &timeout_ms,
    ];
    let args = [&args[..], extra].concat();
    (Server::start_in(dir, cert, &args), endpoint)
}

/// Waits until a worker for each service registered after log line `from`.
fn wait_ready(server: &Server, from: usize, services: &[&str]) {
    for service in services {
        let needle = format!("ready for {service}");
        server
            .wait_log_from(from, &needle, LIMIT)
            .unwrap_or_else(|| panic!("no {needle:?} in the log: {:#?}", server.log()));
    }
}

/// The status of an upgrade to /w with `extra` header lines.
fn upgrade_status(server: &Server, extra: &str) -> u16 {
    let mut stream = server.tls();
    send(&mut stream, upgrade_request("/w", extra).as_bytes());
    status(&read_response_head(&mut stream))
}

/// How a [`Lib`] worker answers AUTH.
#[derive(Clone, Copy)]
enum Verdict {
    /// Allow as `alice` with these roles.
    Allow(&'static [&'static str]),
    Deny,
    /// Never answer.
    Silent,
}

/// A library worker on a thread serving one service: it answers AUTH as
/// its [`Verdict`] says and passes every event to the test.
struct Lib {
    events: Receiver<Event>,
    /// Allows to send on the test's say: node and request id.
    allows: Sender<(NodeId, u64)>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Lib {
    fn start(endpoint: &str, service: &str, verdict: Verdict) -> Lib {
        let mut config = Config::new(vec![endpoint.to_owned()], vec![service.to_owned()]);
        config.heartbeat = Duration::from_millis(100);
        let (outbox, events) = mpsc::channel();
        let (allows, inbox) = mpsc::channel::<(NodeId, u64)>();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            let mut worker = Worker::new(config).expect("worker");
            while !flag.load(Ordering::Relaxed) {
                for (node, request) in inbox.try_iter() {
                    let roles = ["member"];
                    let sent = worker.auth_reply(node, request, true, "mallory", &roles);
                    sent.expect("AUTH_REPLY");
                }
                let Some(event) = worker.poll(Duration::from_millis(10)) else {
                    continue;
                };
                let asked = match &event {
                    Event::Auth { node, request, .. } => Some((*node, *request)),
                    _ => None,
                };
                // The test sees the event before the client sees the verdict.
                let _ = outbox.send(event);
                let Some((node, request)) = asked else {
                    continue;
                };
                let sent = match verdict {
                    Verdict::Allow(roles) => worker.auth_reply(node, request, true, "alice", roles),
                    Verdict::Deny => worker.auth_reply(node, request, false, "", &[]),
                    Verdict::Silent => Ok(()),
                };
                sent.expect("AUTH_REPLY");
            }
            worker.bye();
        });
        Lib {
            events,
            allows,
            stop,
            thread: Some(thread),
        }
    }

    /// The first event that `wanted` accepts, within [`LIMIT`].
    fn next(&self, wanted: impl Fn(&Event) -> bool) -> Event {
        let deadline = Instant::now() + LIMIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let event = self
                .events
                .recv_timeout(left)
                .unwrap_or_else(|_| panic!("no such event within {LIMIT:?}"));
            if wanted(&event) {
                return event;
            }
        }
    }

    /// Sends AUTH_REPLY allow for `request` of `node`, asked or not.
    fn allow(&self, node: NodeId, request: u64) {
        self.allows.send((node, request)).expect("worker thread");
    }

    /// How many AUTH events came so far.
    fn auths(&self) -> usize {
        self.events
            .try_iter()
            .filter(|e| matches!(e, Event::Auth { .. }))
            .count()
    }
}

impl Drop for Lib {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            // A panic on the worker thread fails the test.
            common::procs::join(thread);
        }
    }
}
