//! Operating the real binary: `--version`, JSON log lines, a separate
//! access log, and the second SIGTERM that ends a drain at once.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{
    assert_echo, client_close, close_code, expect_eof, next_close, read_response_head, send,
    status, upgrade_request, utf8, Server, TempDir, TlsStream, TEXT,
};

/// How long to wait for the server to log or exit after an event.
const LIMIT: Duration = Duration::from_secs(15);

#[test]
fn version_prints_the_name_and_version_and_exits_0() {
    let out = Command::new(env!("CARGO_BIN_EXE_averyws"))
        .arg("--version")
        .output()
        .expect("run averyws");
    assert_eq!(out.status.code(), Some(0));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        stdout.trim_end(),
        format!("averyws {}", env!("CARGO_PKG_VERSION"))
    );
    assert!(out.stderr.is_empty());
}

#[test]
fn json_log_lines_are_objects_with_time_level_target_and_message() {
    let server = Server::start(&["--log-format", "json"]);
    close_normally(&mut common::raw_ws(&server, "/echo"));
    assert!(server.wait_log("averyws::access", LIMIT).is_some());
    let log = server.log();
    assert!(log.len() >= 3, "{log:#?}");
    for line in &log {
        let value: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        for key in ["time", "level", "target", "message"] {
            assert!(value[key].is_string(), "no string `{key}`: {line}");
        }
    }
    let access = log
        .iter()
        .find(|line| line.contains("\"target\":\"averyws::access\""))
        .expect("an access line");
    assert!(access.contains("\"level\":\"INFO\""), "{access}");
}

#[test]
fn log_levels_can_differ_by_module() {
    // The default stays info (the address line), the access log is off,
    // and the session module says why it refused, at debug.
    let spec = "info,averyws::access=off,averyws::session=debug";
    let server = Server::start(&["--log-level", spec]);
    let mut refused = server.tls();
    send(&mut refused, upgrade_request("/nope", "").as_bytes());
    assert_eq!(status(&read_response_head(&mut refused)), 404);
    drop(refused);
    let line = server.wait_log("upgrade refused with 404", LIMIT);
    assert!(line.is_some_and(|l| l.contains("DEBUG averyws::session")));
    close_normally(&mut common::raw_ws(&server, "/echo"));
    // Both connections above have ended (their FINs went out before this
    // one's handshake), so their access lines would be written by now.
    let mut last = common::raw_ws(&server, "/echo");
    assert_echo(&mut last, TEXT, b"still serving");
    let log = server.log();
    assert!(
        !log.iter().any(|l| l.contains("averyws::access")),
        "{log:#?}"
    );
}

#[test]
fn a_bad_rust_log_stops_the_start_and_says_so() {
    let out = Command::new(env!("CARGO_BIN_EXE_averyws"))
        .env("RUST_LOG", "chat-ty")
        .output()
        .expect("run averyws");
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        stderr.trim_end(),
        "averyws: RUST_LOG: `chat-ty` is neither a log level (off, error, warn, info, debug, \
         trace) nor a module path"
    );
}

#[test]
fn the_access_log_goes_to_its_own_file_with_the_subprotocol() {
    let dir = TempDir::new();
    let file = dir.path().join("access.log");
    let file_arg = utf8(&file);
    let server = Server::start(&["--access-log", &file_arg, "--subprotocol", "chat"]);
    let mut tls = server.tls();
    let offer = upgrade_request("/echo", "Sec-WebSocket-Protocol: chat\r\n");
    send(&mut tls, offer.as_bytes());
    assert_eq!(status(&read_response_head(&mut tls)), 101);
    let port = tls.sock.local_addr().expect("local address").port();
    close_normally(&mut tls);
    // Hang up as a client does once the server is done, so the server
    // need not wait out its closing-handshake timeout before it logs.
    drop(tls);

    let line = wait_file_line(&file, &format!(":{port} "), LIMIT);
    assert!(line.contains(" averyws::access: "), "{line}");
    for field in [
        "path=/echo ",
        "user=guest ",
        "subprotocol=chat ",
        "duration_ms=",
        "messages_in=1 messages_out=1 close=1000 closed_by=client evicted=-",
    ] {
        assert!(line.contains(field), "no `{field}`: {line}");
    }
    // Everything else stays in the main log, and access lines leave it.
    assert!(server.wait_log("listening on wss://", LIMIT).is_some());
    assert!(
        server.log().iter().all(|l| !l.contains("averyws::access")),
        "{:#?}",
        server.log()
    );
}

#[test]
fn a_second_sigterm_ends_the_drain_at_once() {
    let mut server = Server::start(&["--drain-timeout-s", "600"]);
    // A client that never answers the server's Close holds the drain open.
    let mut silent = common::raw_ws(&server, "/echo");
    server.signal("TERM");
    assert_eq!(close_code(&next_close(&mut silent)), Some(1001));
    assert!(server.wait_log("shutting down", LIMIT).is_some());
    assert_eq!(server.wait_exit(Duration::from_millis(500)), None);
    let start = Instant::now();
    server.signal("TERM");
    assert_eq!(server.wait_exit(LIMIT), Some(0));
    assert!(start.elapsed() < Duration::from_secs(5));
    let line = server.wait_log("second shutdown signal", LIMIT);
    assert!(line.is_some(), "{:#?}", server.log());
    assert!(server
        .wait_log("1 connection(s) still open at exit", LIMIT)
        .is_some());
}

/// One echoed message, then a client-initiated Close 1000 handshake.
fn close_normally(tls: &mut TlsStream) {
    assert_echo(tls, TEXT, b"hi");
    send(tls, &client_close(1000, b""));
    assert_eq!(close_code(&next_close(tls)), Some(1000));
    expect_eof(tls);
}

/// Waits until a line of the file at `path` contains `needle`.
fn wait_file_line(path: &Path, needle: &str, limit: Duration) -> String {
    let start = Instant::now();
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        if let Some(line) = text.lines().find(|line| line.contains(needle)) {
            return line.to_owned();
        }
        assert!(start.elapsed() < limit, "no `{needle}` in {path:?}: {text}");
        std::thread::sleep(Duration::from_millis(20));
    }
}
