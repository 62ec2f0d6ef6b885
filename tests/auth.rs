//! Authentication and ACL enforcement (docs/acl.md) against the real
//! binary: tokens from each source, refusals at the upgrade, `send` per
//! message, SIGHUP reloads that revoke, and what a worker is told.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use averyws::backend::message::{ErrorCode, Payload};
use averyws_worker::{Config, Connected, Event, Worker};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use common::tokens::{now, sign, token, SECRET};
use common::{
    assert_echo, client_frame, free_endpoint, header, read_close, read_response_head, send, status,
    upgrade_request, Server, TempDir, TlsStream, TEXT,
};

const LIMIT: Duration = Duration::from_secs(10);

/// Guests may echo on /echo; members may also open /members and /w, and
/// subscribe and publish to `allowed/*`.
const ACL: &str = "\
allow guest /echo connect
allow guest echo send
allow member /members,/w connect
allow member svc send
allow member allowed/* subscribe,publish
user bob roles member
";

/// A server with the test secret, [`ACL`] in `acl.conf` of its directory
/// (re-read on SIGHUP), and `extra` flags.
fn server(extra: &[&str]) -> Server {
    let dir = TempDir::new();
    let secrets = dir.path().join("jwt.keys");
    let acl = dir.path().join("acl.conf");
    let cert = dir.path().join("dev-cert.pem");
    std::fs::write(&secrets, format!("k1:{SECRET}\n")).expect("write secrets");
    std::fs::write(&acl, ACL).expect("write acl");
    let (secrets, acl, cert_out) = (path(&secrets), path(&acl), path(&cert));
    let mut args = vec!["--jwt-secret-file", &secrets, "--acl", &acl];
    args.extend(["--dev-cert-out", &cert_out]);
    args.extend(["--route", "/echo=echo", "--route", "/members=echo"]);
    args.extend_from_slice(extra);
    Server::start_in(dir, cert, &args)
}

fn path(p: &std::path::Path) -> String {
    p.to_str().expect("UTF-8 temp path").to_owned()
}

/// Sends an upgrade for `path` with `extra` header lines; the response
/// head and the stream.
fn try_upgrade(server: &Server, path: &str, extra: &str) -> (String, TlsStream) {
    let mut stream = server.tls();
    send(&mut stream, upgrade_request(path, extra).as_bytes());
    (read_response_head(&mut stream), stream)
}

fn bearer(token: &str) -> String {
    format!("Authorization: Bearer {token}\r\n")
}

#[test]
fn a_token_is_taken_from_each_source() {
    let server = server(&[
        "--token-query-param",
        "access_token",
        "--subprotocol",
        "chat",
    ]);
    let bob = token("bob", &[]);
    let (head, mut ws) = try_upgrade(&server, "/members", &bearer(&bob));
    assert_eq!(status(&head), 101, "{head}");
    assert_echo(&mut ws, TEXT, b"header");
    // Browsers: a subprotocol entry, never echoed back as the choice.
    let offer = format!("Sec-WebSocket-Protocol: bearer.{bob}, chat\r\n");
    let (head, mut ws) = try_upgrade(&server, "/members", &offer);
    assert_eq!(status(&head), 101, "{head}");
    assert_eq!(header(&head, "Sec-WebSocket-Protocol"), Some("chat"));
    assert_echo(&mut ws, TEXT, b"subprotocol");
    let offer = format!("Sec-WebSocket-Protocol: bearer.{bob}\r\n");
    let (head, _ws) = try_upgrade(&server, "/members", &offer);
    assert_eq!(status(&head), 101, "{head}");
    assert_eq!(header(&head, "Sec-WebSocket-Protocol"), None, "{head}");
    let (head, mut ws) = try_upgrade(&server, &format!("/members?a=1&access_token={bob}"), "");
    assert_eq!(status(&head), 101, "{head}");
    assert_echo(&mut ws, TEXT, b"query");
    drop(ws);
    let line = server.wait_log("path=/members user=bob", LIMIT);
    assert!(line.is_some(), "{:#?}", server.log());
}

/// Tokens and secrets never reach a log, even at `trace`: a good token
/// from every source, a forged one, and the key file's secret.
#[test]
fn no_token_or_secret_is_logged_at_trace_level() {
    let server = server(&[
        "--log-level",
        "trace",
        "--token-query-param",
        "access_token",
    ]);
    let bob = token("bob", &[]);
    let forged = sign(
        r#"{"alg":"HS256","kid":"k1"}"#,
        r#"{"sub":"bob"}"#,
        "not-the-secret-but-just-as-long-!!!",
    );
    let offer = format!("Sec-WebSocket-Protocol: bearer.{bob}\r\n");
    let query = format!("/members?access_token={bob}");
    let rows = [
        ("header", "/members", bearer(&bob), 101),
        ("subprotocol", "/members", offer, 101),
        ("query", query.as_str(), String::new(), 101),
        ("forged", "/members", bearer(&forged), 401),
    ];
    for (name, path, extra, expected) in &rows {
        let (head, ws) = try_upgrade(&server, path, extra);
        assert_eq!(status(&head), *expected, "{name}: {head}");
        drop(ws);
    }
    for user in ["user=bob", "user=-"] {
        let line = server.wait_log(user, LIMIT);
        assert!(line.is_some(), "{user}: {:#?}", server.log());
    }
    // Each token's signature is its secret part; the payload alone is
    // base64 of public claims, so the whole token is checked too.
    let signatures = [&bob, &forged].map(|t| t.rsplit('.').next().unwrap_or_default().to_owned());
    let log = server.log();
    assert!(
        log.iter().any(|line| line.contains("TRACE")),
        "not at trace"
    );
    for line in &log {
        for secret in [bob.as_str(), forged.as_str(), SECRET]
            .into_iter()
            .chain(signatures.iter().map(String::as_str))
        {
            assert!(!line.contains(secret), "`{secret}` logged: {line}");
        }
    }
}

#[test]
fn the_query_parameter_is_off_by_default() {
    let server = server(&[]);
    let path = format!("/members?access_token={}", token("bob", &[]));
    let (head, _) = try_upgrade(&server, &path, "");
    assert_eq!(status(&head), 401, "{head}");
}

#[test]
fn bad_tokens_get_401_without_detail() {
    let server = server(&[]);
    let expired = sign(
        r#"{"alg":"HS256","kid":"k1"}"#,
        &format!(r#"{{"sub":"bob","exp":{}}}"#, now() - 3600),
        SECRET,
    );
    let forged = sign(
        r#"{"alg":"HS256","kid":"k1"}"#,
        r#"{"sub":"bob"}"#,
        "not-the-secret-but-just-as-long-!!!",
    );
    let none = format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(r#"{"alg":"none","kid":"k1"}"#),
        URL_SAFE_NO_PAD.encode(r#"{"sub":"bob"}"#)
    );
    for (name, bad) in [("expired", expired), ("forged", forged), ("alg none", none)] {
        // Even where a guest may connect: a bad token is never a guest.
        let (head, _) = try_upgrade(&server, "/echo", &bearer(&bad));
        assert_eq!(status(&head), 401, "{name}: {head}");
        assert_eq!(header(&head, "WWW-Authenticate"), Some("Bearer"), "{name}");
        assert_eq!(header(&head, "Content-Length"), Some("0"), "{name}");
        assert_eq!(header(&head, "Connection"), Some("close"), "{name}");
    }
    let (head, _) = try_upgrade(&server, "/echo", "Authorization: Basic Ym9iOng=\r\n");
    assert_eq!(status(&head), 401, "{head}");
    assert!(server
        .wait_log("token refused: token expired", LIMIT)
        .is_some());
    assert!(server.wait_log("path=/echo user=- ", LIMIT).is_some());
}

#[test]
fn paths_are_401_for_guests_and_403_for_token_holders() {
    let server = server(&[]);
    let (head, _) = try_upgrade(&server, "/members", "");
    assert_eq!(status(&head), 401, "{head}");
    assert_eq!(header(&head, "WWW-Authenticate"), Some("Bearer"));
    let (head, _) = try_upgrade(&server, "/members", &bearer(&token("eve", &[])));
    assert_eq!(status(&head), 403, "{head}");
    assert_eq!(header(&head, "WWW-Authenticate"), None);
    assert!(server.wait_log("path=/members user=eve", LIMIT).is_some());
    // A role in the token grants what the stored roles do not.
    let (head, mut ws) = try_upgrade(&server, "/members", &bearer(&token("eve", &["member"])));
    assert_eq!(status(&head), 101, "{head}");
    assert_echo(&mut ws, TEXT, b"by role");
    // Every connection also holds guest: a token holder may echo.
    let (head, mut ws) = try_upgrade(&server, "/echo", &bearer(&token("eve", &[])));
    assert_eq!(status(&head), 101, "{head}");
    assert_echo(&mut ws, TEXT, b"as guest");
}

#[test]
fn the_development_acl_lets_guests_use_the_routes_given_and_nothing_else() {
    let dir = TempDir::new();
    let cert = dir.path().join("dev-cert.pem");
    let cert_out = path(&cert);
    let args = ["--dev-cert-out", &cert_out];
    let routes = ["--route", "/echo=echo", "--route", "/a=echo"];
    let server = Server::start_in(dir, cert, &[&args[..], &routes].concat());
    for route in ["/echo", "/a"] {
        let mut ws = common::raw_ws(&server, route);
        assert_echo(&mut ws, TEXT, route.as_bytes());
    }
    // Nothing beyond the routes: the metrics need `read`, which no guest has.
    let (code, head, _) = common::scrape::scrape(&server, None);
    assert_eq!(code, 401, "{head}");
    let warning = server.wait_log("NO --acl: USING THE DEVELOPMENT ACL", LIMIT);
    assert!(warning.is_some_and(|line| line.contains("(/echo, /a)")));
}

#[test]
fn a_message_the_acl_does_not_allow_closes_1008() {
    let server = server(&[]);
    let acl = server.dir.path().join("acl.conf");
    std::fs::write(&acl, "allow guest /echo connect\n").expect("write");
    server.signal("HUP");
    assert!(server.wait_log("ACL reloaded", LIMIT).is_some());
    let mut ws = common::raw_ws(&server, "/echo");
    send(&mut ws, &client_frame(true, TEXT, b"not allowed"));
    let payload = common::next_close(&mut ws);
    assert_eq!(common::close_code(&payload), Some(1008));
    assert_eq!(&payload[2..], b"forbidden");
    assert!(server.wait_log("may not send on echo", LIMIT).is_some());
    // A Close right behind the refused message is still read: the
    // closing handshake completes without waiting for a timeout.
    let mut ws = common::raw_ws(&server, "/echo");
    let batch = [
        client_frame(true, TEXT, b"no"),
        common::client_close(1000, b""),
    ]
    .concat();
    send(&mut ws, &batch);
    assert_eq!(read_close(&mut ws), Some(1008));
    common::expect_eof(&mut ws);
}

#[test]
fn sighup_reloads_the_acl_revoking_live_connections() {
    let server = server(&[]);
    let acl = server.dir.path().join("acl.conf");
    let mut guest = common::raw_ws(&server, "/echo");
    let (_, mut member) = try_upgrade(&server, "/members", &bearer(&token("bob", &[])));
    assert_echo(&mut guest, TEXT, b"before");
    // A broken file keeps the ACL in force, and says where it broke.
    let from = server.log_len();
    std::fs::write(&acl, "allow guest /echo connect\nallow nonsense\n").expect("write");
    server.signal("HUP");
    let line = server.wait_log_from(from, "keeping the current ACL", LIMIT);
    let needle = format!("{}:2:", acl.display());
    assert!(
        line.is_some_and(|l| l.contains(&needle)),
        "{:#?}",
        server.log()
    );
    assert_echo(&mut guest, TEXT, b"kept");
    // Revoke the guest's /echo; bob keeps /members.
    let from = server.log_len();
    std::fs::write(
        &acl,
        "allow member /members connect\nuser bob roles member\n",
    )
    .expect("write");
    server.signal("HUP");
    assert_eq!(read_close(&mut guest), Some(1008));
    assert!(server.wait_log_from(from, "ACL reloaded", LIMIT).is_some());
    let (head, _) = try_upgrade(&server, "/echo", "");
    assert_eq!(status(&head), 401, "{head}");
    // bob's connection survived: its Ping is answered.
    send(&mut member, &client_frame(true, common::PING, b"alive"));
    let (_, opcode, payload) = common::read_frame(&mut member).expect("pong");
    assert_eq!((opcode, payload.as_slice()), (common::PONG, &b"alive"[..]));
}

#[test]
fn sighup_rotates_the_token_keys() {
    let server = server(&[]);
    let secrets = server.dir.path().join("jwt.keys");
    let old = token("bob", &[]);
    let next_secret = "the-next-test-secret-of-32-bytes-or-more";
    let claims = format!(r#"{{"sub":"bob","exp":{}}}"#, now() + 3600);
    let new = sign(r#"{"alg":"HS256","kid":"k2"}"#, &claims, next_secret);
    let (head, mut kept) = try_upgrade(&server, "/members", &bearer(&old));
    assert_eq!(status(&head), 101, "{head}");
    assert_eq!(
        status(&try_upgrade(&server, "/members", &bearer(&new)).0),
        401
    );

    std::fs::write(&secrets, format!("k2:{next_secret}\n")).expect("write");
    let from = server.log_len();
    server.signal("HUP");
    assert!(server
        .wait_log_from(from, "token keys reloaded", LIMIT)
        .is_some());
    assert_eq!(
        status(&try_upgrade(&server, "/members", &bearer(&old)).0),
        401
    );
    assert_eq!(
        status(&try_upgrade(&server, "/members", &bearer(&new)).0),
        101
    );
    // A connection judged under the old key stays: tokens are checked at
    // the upgrade.
    assert_echo(&mut kept, TEXT, b"still bob");

    // A broken file keeps the keys in force, and says why.
    std::fs::write(&secrets, "k3:short\n").expect("write");
    let from = server.log_len();
    server.signal("HUP");
    let line = server.wait_log_from(from, "keeping the current token keys", LIMIT);
    assert!(
        line.is_some_and(|l| l.contains("jwt.keys: line 1")),
        "{:#?}",
        server.log()
    );
    assert_eq!(
        status(&try_upgrade(&server, "/members", &bearer(&new)).0),
        101
    );
}

#[test]
fn workers_learn_the_user_and_subscriptions_follow_the_acl() {
    let endpoint = free_endpoint();
    let server = server(&["--route", "/w=svc", "--backend-bind", &endpoint]);
    let (worker, events) = LibWorker::start(&endpoint);
    assert!(server.wait_log("ready for svc", LIMIT).is_some());
    let token = token("bob", &["extra", "member"]);
    let (head, _ws) = try_upgrade(&server, "/w?room=1&x=2", &bearer(&token));
    assert_eq!(status(&head), 101, "{head}");
    let connected = wait_for(&events, |event| match event {
        Event::Connect(connected) => Some(connected.clone()),
        _ => None,
    });
    assert_eq!(connected.user, "bob");
    assert_eq!(connected.roles, ["extra", "member"]);
    assert_eq!(connected.query, "room=1&x=2");
    // The worker subscribed it to allowed/1 and denied/1, then published
    // on its behalf to both: only denied/1 is refused, each time with
    // ERROR FORBIDDEN naming the channel and the connection.
    for (about, kind) in [(0x32, "SUBSCRIBE"), (0x31, "PUBLISH")] {
        let (code, detail, conns) = wait_for(&events, |event| match event {
            Event::Error {
                code,
                about: answered,
                detail,
                conns,
                ..
            } if *answered == about => Some((*code, detail.clone(), conns.clone())),
            _ => None,
        });
        assert_eq!(
            (code, detail.as_str()),
            (ErrorCode::FORBIDDEN, "denied/1"),
            "{kind}"
        );
        assert_eq!(conns, [connected.conn], "{kind}");
    }
    drop(worker);
}

/// Waits for the first event `pick` takes.
fn wait_for<T>(events: &Receiver<Event>, mut pick: impl FnMut(&Event) -> Option<T>) -> T {
    loop {
        let event = events
            .recv_timeout(LIMIT)
            .expect("an event from the worker");
        if let Some(picked) = pick(&event) {
            return picked;
        }
    }
}

/// A library worker for `svc` on a thread: it subscribes every new
/// connection to `allowed/1` and `denied/1`, publishes on its behalf to
/// both, and passes every event on.
struct LibWorker {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl LibWorker {
    fn start(endpoint: &str) -> (LibWorker, Receiver<Event>) {
        let config = Config::new(vec![endpoint.to_owned()], vec!["svc".to_owned()]);
        let (tx, rx) = mpsc::channel();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            let mut worker = Worker::new(config).expect("worker");
            while !flag.load(Ordering::Relaxed) {
                let Some(event) = worker.poll(Duration::from_millis(10)) else {
                    continue;
                };
                if let Event::Connect(Connected { node, conn, .. }) = &event {
                    for channel in ["allowed/1", "denied/1"] {
                        worker.subscribe(*node, *conn, channel).expect("subscribe");
                    }
                    for channel in ["allowed/1", "denied/1"] {
                        let payload = Payload::Text("hi");
                        worker
                            .publish(channel, Some((*node, *conn)), payload)
                            .expect("publish");
                    }
                }
                let _ = tx.send(event);
            }
            worker.bye();
        });
        let worker = LibWorker {
            stop,
            thread: Some(thread),
        };
        (worker, rx)
    }
}

impl Drop for LibWorker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            // A panic on the worker thread fails the test.
            common::procs::join(thread);
        }
    }
}

#[test]
fn bad_files_stop_the_start_with_file_and_line() {
    let dir = TempDir::new();
    let keys = dir.path().join("short.keys");
    let acl = dir.path().join("broken.acl");
    std::fs::write(&keys, "k1:short\n").expect("write");
    std::fs::write(&acl, "allow guest /echo connect\nallow x\n").expect("write");
    let (keys, acl) = (path(&keys), path(&acl));
    let rows: [(&[&str], String); 3] = [
        (&["--jwt-secret-file", &keys], format!("{keys}: line 1: ")),
        (&["--acl", &acl], format!("{acl}:2: ")),
        (
            &["--acl", "/nonexistent/acl"],
            "/nonexistent/acl: ".to_owned(),
        ),
    ];
    for (args, needle) in rows {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_averyws"))
            .args(["--listen", "127.0.0.1:0"])
            .args(args)
            .output()
            .expect("run averyws");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{args:?}: {stderr}");
        let last = stderr.lines().last().unwrap_or_default();
        assert!(last.contains(&format!("cannot start: {needle}")), "{last}");
    }
}

/// A token's `sub` is the client's own text: in the access log it is
/// escaped, so a line break or a space in it cannot forge a line or a
/// field.
#[test]
fn a_forged_sub_cannot_forge_access_log_lines() {
    let server = server(&[]);
    let sub = "eve\\nINFO averyws::access: peer=forged evicted=-";
    let (head, mut ws) = try_upgrade(&server, "/echo", &bearer(&token(sub, &[])));
    assert_eq!(status(&head), 101, "{head}");
    assert_echo(&mut ws, TEXT, b"as eve");
    let port = ws.sock.local_addr().unwrap().port();
    drop(ws);
    let line = common::evictions::access_line(&server, port);
    let escaped = "user=eve\\u{a}INFO\\u{20}averyws::access:\\u{20}peer=forged\\u{20}evicted=- ";
    assert!(line.contains(escaped), "{line}");
    let log = server.log();
    assert!(
        !log.iter()
            .any(|l| l.contains("peer=forged") && !l.contains("user=eve")),
        "{log:#?}"
    );
}
