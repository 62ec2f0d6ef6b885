//! The process and connection lifecycle of the real binary: signals
//! (SIGTERM drain, SIGHUP certificate reload), keepalive and idle timeout,
//! the handshake deadline, the access log and the command line.

mod common;

use std::io::Write;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::certs::generate_pair;
use common::clients::{port, Tcp};
use common::evictions::{access_line, assert_evicted, assert_fired_at};
use common::{
    assert_echo, client_close, client_config_with, client_frame, close_code, expect_eof,
    next_close, raw_ws, read_frame, read_response_head, send, status, upgrade, upgrade_request,
    wait_dropped, Server, TempDir, TlsStream, PING, PONG, READ_TIMEOUT, TEXT,
};
use rustls::pki_types::CertificateDer;

/// How long to wait for the server to log or exit after an event.
const LIMIT: Duration = Duration::from_secs(15);

#[test]
fn sigterm_closes_with_1001_and_exits_0() {
    let mut server = Server::start(&[]);
    // What each client sends after the server's Close 1001. RFC 6455
    // section 5.5.1: after sending Close the server discards data, and it
    // never sends a second Close, even for a frame that breaks the rules.
    let rows: [(&str, Vec<u8>); 3] = [
        ("Close", client_close(1001, b"")),
        (
            "data, ping, then Close",
            [
                client_frame(true, TEXT, b"discarded"),
                client_frame(true, PING, b"unanswered"),
                client_close(1000, b""),
            ]
            .concat(),
        ),
        ("a protocol violation", vec![0x81, 0x00]),
    ];
    let mut clients: Vec<TlsStream> = rows.iter().map(|_| raw_ws(&server, "/echo")).collect();
    server.signal("TERM");
    for ((name, reply), ws) in rows.iter().zip(&mut clients) {
        assert_eq!(close_code(&next_close(ws)), Some(1001), "{name}");
        send(ws, reply);
        expect_eof(ws);
    }
    // The listener was gone before the goodbyes went out.
    assert!(TcpStream::connect(server.addr).is_err(), "still accepting");
    drop(clients);
    assert_eq!(server.wait_exit(LIMIT), Some(0));
    assert!(server
        .wait_log("0 connection(s) still open at exit", LIMIT)
        .is_some());
}

#[test]
fn drain_timeout_ends_a_close_handshake_that_never_finishes() {
    // The drain (1 s) is shorter than the closing-handshake timeout (5 s),
    // so only the drain deadline can end the process with the silent
    // client still connected.
    let mut server = Server::start(&["--drain-timeout-s", "1"]);
    let mut silent = raw_ws(&server, "/echo");
    let mut upgrading = TcpStream::connect(server.addr).unwrap();
    upgrading.set_read_timeout(Some(READ_TIMEOUT)).unwrap();
    server.signal("TERM");
    assert_eq!(close_code(&next_close(&mut silent)), Some(1001));
    // An upgrading connection has nothing to close: it is dropped.
    wait_dropped(&mut upgrading);
    assert_eq!(server.wait_exit(LIMIT), Some(0));
    assert!(
        server
            .wait_log("1 connection(s) still open at exit", LIMIT)
            .is_some(),
        "{:#?}",
        server.log()
    );
    wait_dropped(&mut silent);
}

/// Regression: a client's TLS close_notify made `Conn::read_all` loop
/// forever, stalling the reactor for every other client.
#[test]
fn client_close_notify_ends_only_its_own_connection() {
    let server = Server::start(&[]);
    let rows: [(&str, bool, &[u8]); 3] = [
        ("before the upgrade", false, b""),
        ("on an open session", true, b""),
        (
            "right after a Close frame",
            true,
            &[0x88, 0x82, 0, 0, 0, 0, 0x03, 0xE8],
        ),
    ];
    for (name, upgraded, before) in rows {
        let mut tls = server.tls();
        if upgraded {
            upgrade(&mut tls, "/echo");
        } else {
            while tls.conn.is_handshaking() {
                tls.conn.complete_io(&mut tls.sock).unwrap();
            }
        }
        tls.write_all(before).unwrap();
        tls.conn.send_close_notify();
        tls.conn.complete_io(&mut tls.sock).unwrap();
        if !before.is_empty() {
            assert_eq!(close_code(&next_close(&mut tls)), Some(1000), "{name}");
        }
        wait_dropped(&mut tls);
        let mut other = raw_ws(&server, "/echo");
        assert_echo(&mut other, TEXT, name.as_bytes());
    }
}

/// Connects with a fresh client (no session to resume) trusting `roots`,
/// upgrades, and returns the stream and the leaf certificate it was shown.
fn connect(server: &Server, roots: &[CertificateDer<'static>]) -> (TlsStream, Vec<u8>) {
    let config = client_config_with(roots, &[b"http/1.1"], rustls::DEFAULT_VERSIONS);
    let mut stream = server.tls_with(config);
    upgrade(&mut stream, "/echo");
    let leaf = stream.conn.peer_certificates().expect("a peer certificate")[0].to_vec();
    (stream, leaf)
}

/// Writes the files, sends SIGHUP and returns the log line that answers it.
fn reload(server: &Server, files: &[(&Path, &str)], answer: &str) -> String {
    for (path, contents) in files {
        std::fs::write(path, contents).unwrap();
    }
    let mark = server.log_len();
    server.signal("HUP");
    server
        .wait_log_from(mark, answer, LIMIT)
        .unwrap_or_else(|| panic!("no `{answer}` after SIGHUP: {:#?}", server.log()))
}

#[test]
fn sighup_swaps_the_certificate_and_keeps_it_when_files_are_broken() {
    let [a, b, c] = [generate_pair(), generate_pair(), generate_pair()];
    let roots = [a.der.clone(), b.der.clone(), c.der.clone()];
    let dir = TempDir::new();
    let cert: PathBuf = dir.path().join("cert.pem");
    let key: PathBuf = dir.path().join("key.pem");
    std::fs::write(&cert, &a.cert).unwrap();
    std::fs::write(&key, &a.key).unwrap();
    let args = [
        "--cert",
        cert.to_str().unwrap(),
        "--key",
        key.to_str().unwrap(),
    ];
    let server = Server::start_in(dir, cert.clone(), &args);

    let (mut old, leaf) = connect(&server, &roots);
    assert_eq!(leaf, a.der.to_vec());

    reload(
        &server,
        &[(&cert, &b.cert), (&key, &b.key)],
        "certificate reloaded",
    );
    let (mut new, leaf) = connect(&server, &roots);
    assert_eq!(
        leaf,
        b.der.to_vec(),
        "new connections see the new certificate"
    );
    assert_echo(&mut new, TEXT, b"new");
    assert_echo(&mut old, TEXT, b"old connection lives on");

    type Files<'a> = &'a [(&'a Path, &'a str)];
    let rows: &[(&str, Files, &str)] = &[
        (
            "garbage certificate",
            &[(&cert, "not a PEM file")],
            "no certificate found",
        ),
        ("empty certificate", &[(&cert, "")], "no certificate found"),
        (
            "garbage key",
            &[(&cert, &b.cert), (&key, "not a key")],
            "key.pem",
        ),
        (
            "key of another certificate",
            &[(&key, &c.key)],
            "do not form a usable pair",
        ),
    ];
    for (name, files, why) in rows {
        let line = reload(&server, files, "keeping the current certificate");
        assert!(line.contains(why), "{name}: `{line}` does not say `{why}`");
        let (mut stream, leaf) = connect(&server, &roots);
        assert_eq!(leaf, b.der.to_vec(), "{name}: the certificate changed");
        assert_echo(&mut stream, TEXT, name.as_bytes());
    }
    std::fs::remove_file(&cert).unwrap();
    let line = reload(&server, &[], "keeping the current certificate");
    assert!(line.contains("cert.pem"), "missing file: `{line}`");

    // A good pair again is taken.
    reload(
        &server,
        &[(&cert, &c.cert), (&key, &c.key)],
        "certificate reloaded",
    );
    let (_, leaf) = connect(&server, &roots);
    assert_eq!(leaf, c.der.to_vec());
    assert_echo(&mut old, TEXT, b"still the first certificate's connection");
}

/// Keepalive flags: ping after 1 s without inbound bytes, close after 3 s.
const KEEPALIVE: [&str; 4] = ["--ping-interval-s", "1", "--idle-timeout-s", "3"];

#[test]
fn a_client_that_answers_pings_outlives_the_idle_timeout() {
    let server = Server::start(&KEEPALIVE);
    let mut ws = raw_ws(&server, "/echo");
    // Each ping follows a second without inbound bytes, so four pings
    // span more than the three-second idle timeout.
    for n in 0..4 {
        let (fin, opcode, payload) = read_frame(&mut ws).unwrap();
        assert!(fin && opcode == PING, "frame {n}: {opcode:#x} {payload:?}");
        send(&mut ws, &client_frame(true, PONG, &payload));
    }
    assert_echo(&mut ws, TEXT, b"still open");
}

#[test]
fn a_silent_client_is_pinged_then_closed_with_1001() {
    let server = Server::start(&KEEPALIVE);
    let mut ws = raw_ws(&server, "/echo");
    // The upgrade request was the last inbound byte.
    let upgraded = Instant::now();
    let port = port(&ws);
    let (fin, opcode, _) = read_frame(&mut ws).unwrap();
    assert!(fin && opcode == PING, "first frame: {opcode:#x}");
    assert_fired_at(upgraded.elapsed(), Duration::from_secs(1), "ping interval");
    let close = next_close(&mut ws);
    assert_fired_at(upgraded.elapsed(), Duration::from_secs(3), "idle timeout");
    assert_eq!(close_code(&close), Some(1001));
    assert_eq!(&close[2..], b"idle timeout");
    send(&mut ws, &client_close(1001, b""));
    expect_eof(&mut ws);
    // Hang up as a client does once the server is done, so the server
    // need not wait out its closing-handshake timeout before it logs.
    drop(ws);
    let line = assert_evicted(&server, port, "idle_timeout");
    assert!(line.contains(" close=1001 closed_by=server "), "{line}");
}

/// How long the server waits for the client's part of the closing
/// handshake (`Timeouts::close`, not a flag).
const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

/// After the server's Close, a client that neither answers with its own
/// Close nor hangs up is dropped at the closing-handshake timeout, whether
/// the server waits for the client's Close (a refused message) or only for
/// its hang-up (a protocol violation, after which the server ends TLS).
#[test]
fn an_unanswered_server_close_ends_at_the_close_timeout() {
    let acl_dir = TempDir::new();
    let acl = acl_dir.path().join("no-send.acl");
    std::fs::write(&acl, "allow guest /echo connect\n").expect("write the ACL");
    let acl = common::utf8(&acl);
    let rows: [(&str, &[&str], Vec<u8>, u16); 2] = [
        (
            "a message the ACL refuses",
            &["--acl", &acl],
            client_frame(true, TEXT, b"refused"),
            1008,
        ),
        ("an unmasked frame", &[], vec![0x81, 0x00], 1002),
    ];
    std::thread::scope(|scope| {
        for (name, args, bytes, code) in rows {
            scope.spawn(move || {
                let server = Server::start(args);
                let mut ws = raw_ws(&server, "/echo");
                let port = port(&ws);
                send(&mut ws, &bytes);
                assert_eq!(close_code(&next_close(&mut ws)), Some(code), "{name}");
                let closed = Instant::now();
                // Silent from here on: no Close, no close_notify, no FIN.
                let line = access_line(&server, port);
                assert_fired_at(closed.elapsed(), CLOSE_TIMEOUT, name);
                let end = format!(" close={code} closed_by=server evicted=-");
                assert!(line.ends_with(&end), "{name}: {line}");
                wait_dropped(&mut ws);
            });
        }
    });
}

#[test]
fn access_log_line_per_connection() {
    let server = Server::start(&[]);

    let mut normal = raw_ws(&server, "/echo");
    let normal_port = port(&normal);
    assert_echo(&mut normal, TEXT, b"hi");
    send(&mut normal, &client_close(1000, b""));
    assert_eq!(close_code(&next_close(&mut normal)), Some(1000));
    expect_eof(&mut normal);
    drop(normal);

    let mut faulty = raw_ws(&server, "/echo");
    let faulty_port = port(&faulty);
    send(&mut faulty, &[0x81, 0x00]); // unmasked
    assert_eq!(close_code(&next_close(&mut faulty)), Some(1002));
    drop(faulty);

    let mut refused = server.tls();
    let refused_port = port(&refused);
    send(&mut refused, upgrade_request("/nope", "").as_bytes());
    assert_eq!(status(&read_response_head(&mut refused)), 404);
    drop(refused);

    let rows = [
        (
            normal_port,
            "path=/echo",
            "messages_in=1 messages_out=1 close=1000 closed_by=client evicted=-",
        ),
        (
            faulty_port,
            "path=/echo",
            "close=1002 closed_by=server evicted=-",
        ),
        (
            refused_port,
            "path=-",
            "close=404 closed_by=server evicted=-",
        ),
    ];
    for (port, path, end) in rows {
        let peer = format!("peer=127.0.0.1:{port} ");
        let line = server
            .wait_log(&peer, LIMIT)
            .unwrap_or_else(|| panic!("no access line for {peer}: {:#?}", server.log()));
        assert!(line.contains(" averyws::access: "), "{line}");
        assert!(line.contains(&format!(" {path} ")), "{line}");
        assert!(line.ends_with(end), "`{line}` does not end with `{end}`");
    }
}

/// The handshake timeout of [`handshake_deadline_drops_clients_that_never_upgrade`].
const HANDSHAKE_TIMEOUT: Duration = Duration::from_millis(1000);

#[test]
fn handshake_deadline_drops_clients_that_never_upgrade() {
    // The pace rules are set out of the way (a minute for each first byte,
    // one byte a second), so only the handshake deadline can end these.
    let server = Server::start(&[
        "--handshake-timeout-ms",
        "1000",
        "--first-byte-timeout-ms",
        "60000",
        "--think-time-ms",
        "60000",
        "--min-rate",
        "1",
    ]);
    type Open = fn(&Server) -> Box<dyn Tcp>;
    let rows: [(&str, Open); 3] = [
        ("a silent TCP client", |server| {
            Box::new(TcpStream::connect(server.addr).unwrap())
        }),
        ("TLS done, no request", |server| {
            let mut tls = server.tls();
            while tls.conn.is_handshaking() {
                tls.conn.complete_io(&mut tls.sock).unwrap();
            }
            Box::new(tls)
        }),
        ("half a request head", |server| {
            let mut tls = server.tls();
            send(&mut tls, b"GET /echo HTTP/1.1\r\nHost: localhost\r\n");
            Box::new(tls)
        }),
    ];
    std::thread::scope(|scope| {
        for (name, open) in rows {
            let server = &server;
            scope.spawn(move || {
                let connected = Instant::now();
                let mut client = open(server);
                let port = port(&*client);
                client.tcp().set_read_timeout(Some(READ_TIMEOUT)).unwrap();
                let got = wait_dropped(&mut client);
                assert!(got.is_empty(), "{name}: got an answer: {got:?}");
                assert_fired_at(connected.elapsed(), HANDSHAKE_TIMEOUT, name);
                let line = assert_evicted(server, port, "handshake_timeout");
                assert!(line.contains(" path=- "), "{name}: {line}");
            });
        }
    });
}

/// Runs the binary with `args` to completion.
fn run(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_averyws"))
        .args(args)
        .output()
        .expect("run averyws")
}

#[test]
fn help_exits_0_and_bad_flags_exit_2_with_one_line() {
    let help = run(&["--help"]);
    assert_eq!(help.status.code(), Some(0));
    let text = String::from_utf8_lossy(&help.stdout);
    for flag in [
        "--listen",
        "--ping-interval-s",
        "--drain-timeout-s",
        "--cert",
    ] {
        assert!(text.contains(flag), "--help lacks {flag}: {text}");
    }

    let rows: &[(&[&str], &str)] = &[
        (&["--bogus"], "bogus"),
        (&["--max-message-size", "0"], "--max-message-size"),
        (&["--ping-interval-s", "soon"], "ping"),
        (&["--listen", "nowhere"], "listen"),
        (&["--cert", "c.pem"], "--key"),
        (&["--route", "/x=no pe"], "is not 1-64 characters"),
    ];
    for (args, needle) in rows {
        let output = run(args);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{args:?}: {stderr}");
        assert!(stderr.starts_with("averyws: "), "{args:?}: {stderr}");
        assert!(
            stderr.contains(needle),
            "{args:?}: `{stderr}` lacks `{needle}`"
        );
        assert!(output.stdout.is_empty(), "{args:?}");
    }
}
