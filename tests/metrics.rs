//! `GET /metrics` against the real binary: exact counts after known
//! traffic, the Prometheus text format, the `read` permission on
//! `metrics` it needs, and a WebSocket route at `/metrics` that stays one.

mod common;

use std::collections::HashSet;
use std::io::{ErrorKind, Read};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::scrape::{parse_sample, read_to_end, sample_sum, scrape};
use common::tokens::{sign, token};
use common::{
    assert_echo, client_frame, header, raw_ws, read_frame, read_response_head, send, status,
    upgrade_request, utf8, Server, TempDir, TlsStream, READ_TIMEOUT, TEXT,
};

/// Guests may echo on /echo; `prom` (role `scraper`) may read the metrics;
/// anyone else (`bob`) holds only `guest`.
const ACL: &str = "\
allow guest /echo connect
allow guest echo send
allow scraper metrics read
user prom roles scraper
";

/// The content type of the Prometheus text format, version 0.0.4.
const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Every metric family the server exposes.
const FAMILIES: [&str; 26] = [
    "averyws_connections_accepted_total",
    "averyws_connections_refused_total",
    "averyws_connections_open",
    "averyws_handshakes_pending",
    "averyws_tls_handshakes_total",
    "averyws_handshakes_deferred_total",
    "averyws_handshake_failures_total",
    "averyws_upgrade_responses_total",
    "averyws_tokens_total",
    "averyws_messages_received_total",
    "averyws_messages_sent_total",
    "averyws_deflate_sessions_total",
    "averyws_deflate_messages_total",
    "averyws_bytes_received_total",
    "averyws_bytes_sent_total",
    "averyws_evictions_total",
    "averyws_backend_workers",
    "averyws_backend_queued_messages",
    "averyws_backend_blocked_connections",
    "averyws_backend_dropped_total",
    "averyws_backend_replies_dropped_total",
    "averyws_backend_lost_messages_total",
    "averyws_acl_decisions_total",
    "averyws_acl_cache_lookups_total",
    "averyws_metrics_scrapes_total",
    "averyws_loop_turn_seconds",
];

/// A server with the test secret, `acl` and `extra` flags, routing /echo
/// to the echo service.
fn start(acl: &str, extra: &[&str]) -> Server {
    let dir = TempDir::new();
    let secrets = dir.path().join("jwt.keys");
    let acl_path = dir.path().join("acl.conf");
    let cert = dir.path().join("dev-cert.pem");
    std::fs::write(&secrets, common::tokens::secrets_file()).expect("write secrets");
    std::fs::write(&acl_path, acl).expect("write acl");
    let (secrets, acl_path, cert_out) = (utf8(&secrets), utf8(&acl_path), utf8(&cert));
    let mut args = vec!["--jwt-secret-file", &secrets, "--acl", &acl_path];
    args.extend(["--dev-cert-out", &cert_out]);
    args.extend(["--route", "/echo=echo"]);
    args.extend_from_slice(extra);
    Server::start_in(dir, cert, &args)
}

/// Checks the exposition format of `body`: every sample line parses, is
/// labelled `reactor` first, belongs to a family with one `# TYPE` line
/// that comes before it, and every family is there.
fn check_format(body: &str, reactors: usize) {
    assert!(body.ends_with('\n'), "the body must end with a newline");
    let mut typed = HashSet::new();
    let mut helped = HashSet::new();
    let mut seen_reactors = HashSet::new();
    for line in body.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (family, kind) = rest.split_once(' ').expect("# TYPE name kind");
            assert!(
                ["counter", "gauge", "histogram"].contains(&kind),
                "{line:?}"
            );
            assert!(typed.insert(family), "# TYPE {family} twice");
            continue;
        }
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (family, _) = rest.split_once(' ').expect("# HELP name text");
            assert!(helped.insert(family), "# HELP {family} twice");
            continue;
        }
        assert!(!line.starts_with('#'), "unknown comment {line:?}");
        let sample = parse_sample(line);
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|suffix| {
                let base = sample.name.strip_suffix(suffix)?;
                typed.contains(base).then_some(base)
            })
            .unwrap_or(sample.name);
        assert!(typed.contains(family), "no # TYPE before {line:?}");
        let (first, reactor) = sample.labels.first().copied().unwrap_or_default();
        assert_eq!(first, "reactor", "reactor is the first label: {line:?}");
        let index: usize = reactor.parse().expect("a reactor index");
        assert!(index < reactors, "{line:?}");
        seen_reactors.insert(index);
        assert!(sample.labels.len() <= 2, "{line:?}");
    }
    assert_eq!(seen_reactors.len(), reactors, "a reactor is missing");
    let families: HashSet<&str> = FAMILIES.into_iter().collect();
    assert_eq!(typed, families, "the families with a # TYPE");
    assert_eq!(helped, families, "the families with a # HELP");
}

/// Checks the head of a 200 scrape answer for `body`.
fn check_head(head: &str, body: &str) {
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    assert_eq!(header(head, "Content-Type"), Some(CONTENT_TYPE), "{head}");
    let length: usize = header(head, "Content-Length")
        .and_then(|l| l.parse().ok())
        .unwrap_or_else(|| panic!("no Content-Length: {head}"));
    assert_eq!(length, body.len(), "Content-Length");
    assert_eq!(header(head, "Connection"), Some("close"), "{head}");
}

/// Sends an upgrade for `path` with `extra` header lines and returns the
/// status of the answer, read to the end of the connection.
fn refused_upgrade(server: &Server, path: &str, extra: &str) -> u16 {
    let mut stream = server.tls();
    send(&mut stream, upgrade_request(path, extra).as_bytes());
    let head = read_response_head(&mut stream);
    read_to_end(&mut stream);
    status(&head)
}

#[test]
fn counts_match_known_traffic() {
    let server = start(ACL, &["--handshake-timeout-ms", "1000"]);
    // A client that connects and never says anything: the handshake
    // timeout evicts it while the rest of the traffic runs.
    let mut silent = TcpStream::connect(server.addr).expect("connect");
    silent.set_read_timeout(Some(READ_TIMEOUT)).unwrap();
    let silent_since = Instant::now();

    const PAYLOAD: &[u8] = b"a message of known size";
    let mut clients: Vec<TlsStream> = (0..3).map(|_| raw_ws(&server, "/echo")).collect();
    for client in &mut clients {
        for _ in 0..5 {
            assert_echo(client, TEXT, PAYLOAD);
        }
    }
    assert_eq!(refused_upgrade(&server, "/nowhere", ""), 404);
    let forged = sign(
        r#"{"alg":"HS256","kid":"k1"}"#,
        r#"{"sub":"prom"}"#,
        "not-the-secret-but-just-as-long-!!!",
    );
    let bad = format!("Authorization: Bearer {forged}\r\n");
    assert_eq!(refused_upgrade(&server, "/echo", &bad), 401);

    let mut byte = [0u8; 1];
    match silent.read(&mut byte) {
        Ok(0) => {}
        Err(e) if !matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
        other => panic!("the silent client was not dropped: {other:?}"),
    }
    assert!(
        silent_since.elapsed() >= Duration::from_millis(900),
        "dropped before the handshake timeout: {:?}",
        silent_since.elapsed()
    );

    let prom = token("prom", &[]);
    let (code, head, body) = scrape(&server, Some(&prom));
    assert_eq!(code, 200, "{head}{body}");
    check_head(&head, &body);
    check_format(&body, 1);

    let exact = [
        ("averyws_connections_accepted_total", 7),
        ("averyws_upgrade_responses_total{status=\"101\"}", 3),
        ("averyws_upgrade_responses_total{status=\"404\"}", 1),
        ("averyws_upgrade_responses_total{status=\"401\"}", 1),
        ("averyws_upgrade_responses_total{status=\"403\"}", 0),
        ("averyws_upgrade_responses_total{status=\"400\"}", 0),
        ("averyws_messages_received_total", 15),
        ("averyws_messages_sent_total", 15),
        ("averyws_tokens_total{result=\"valid\"}", 1),
        ("averyws_tokens_total{result=\"invalid\"}", 1),
        ("averyws_evictions_total{reason=\"handshake_timeout\"}", 1),
        ("averyws_evictions_total", 1),
        ("averyws_metrics_scrapes_total", 1),
        ("averyws_connections_refused_total", 0),
    ];
    for (query, expected) in exact {
        assert_eq!(sample_sum(&body, query), expected, "{query}:\n{body}");
    }
    let at_least = [
        ("averyws_tls_handshakes_total", 5),
        (
            "averyws_bytes_received_total",
            15 * PAYLOAD.len() as u64 + 1,
        ),
        ("averyws_bytes_sent_total", 1),
        ("averyws_connections_open", 4),
        ("averyws_acl_decisions_total{result=\"allow\"}", 1),
        ("averyws_loop_turn_seconds_count", 1),
    ];
    for (query, minimum) in at_least {
        let value = sample_sum(&body, query);
        assert!(value >= minimum, "{query} = {value} < {minimum}:\n{body}");
    }
    assert_eq!(
        sample_sum(&body, "averyws_loop_turn_seconds_bucket{le=\"+Inf\"}"),
        sample_sum(&body, "averyws_loop_turn_seconds_count"),
        "+Inf bucket and count:\n{body}"
    );
    // Buckets are cumulative.
    let buckets: Vec<u64> = body
        .lines()
        .filter(|l| l.starts_with("averyws_loop_turn_seconds_bucket{"))
        .map(|l| parse_sample(l).value.parse().expect("an integer bucket"))
        .collect();
    assert_eq!(buckets.len(), 11, "{body}");
    assert!(buckets.windows(2).all(|w| w[0] <= w[1]), "{buckets:?}");

    // The clients are still open and still echo.
    for client in &mut clients {
        assert_echo(client, TEXT, PAYLOAD);
    }
}

#[test]
fn a_scrape_needs_read_on_metrics() {
    let server = start(ACL, &[]);
    let (code, head, body) = scrape(&server, None);
    assert_eq!(code, 401, "{head}{body}");
    assert_eq!(header(&head, "WWW-Authenticate"), Some("Bearer"), "{head}");
    assert!(!body.contains("averyws_"), "{body}");

    let bob = token("bob", &[]);
    let (code, head, body) = scrape(&server, Some(&bob));
    assert_eq!(code, 403, "{head}{body}");
    assert!(!body.contains("averyws_"), "{body}");

    let (code, head, _) = scrape(&server, Some("not.a-valid.token"));
    assert_eq!(code, 401, "{head}");
    assert_eq!(header(&head, "WWW-Authenticate"), Some("Bearer"), "{head}");

    // A token's roles count as the user's stored ones do.
    let carol = token("carol", &["scraper"]);
    let (code, head, body) = scrape(&server, Some(&carol));
    assert_eq!(code, 200, "{head}{body}");

    let prom = token("prom", &[]);
    let (code, head, body) = scrape(&server, Some(&prom));
    assert_eq!(code, 200, "{head}{body}");
    check_head(&head, &body);
    // Only the two permitted scrapes were served; the refusals were
    // answered as refused upgrades, and every token was judged.
    assert_eq!(sample_sum(&body, "averyws_metrics_scrapes_total"), 2);
    let tokens = [("valid", 3), ("invalid", 1)];
    for (result, expected) in tokens {
        let query = format!("averyws_tokens_total{{result=\"{result}\"}}");
        assert_eq!(sample_sum(&body, &query), expected, "{query}:\n{body}");
    }
    let refusals = [("401", 2), ("403", 1)];
    for (code, expected) in refusals {
        let query = format!("averyws_upgrade_responses_total{{status=\"{code}\"}}");
        assert_eq!(sample_sum(&body, &query), expected, "{query}:\n{body}");
    }

    // Guests may read when the ACL says so, and a token-less scrape is
    // then served.
    let open = start(
        "allow guest /echo connect\nallow guest echo send\nallow guest metrics read\n",
        &[],
    );
    let (code, head, body) = scrape(&open, None);
    assert_eq!(code, 200, "{head}{body}");
    check_head(&head, &body);
    check_format(&body, 1);
    assert_eq!(sample_sum(&body, "averyws_metrics_scrapes_total"), 1);
}

#[test]
fn a_websocket_route_at_metrics_is_still_a_websocket() {
    let server = start(
        "allow guest /metrics connect\nallow guest echo send\n",
        &["--route", "/metrics=echo"],
    );
    let mut ws = server.tls();
    send(&mut ws, upgrade_request("/metrics", "").as_bytes());
    let head = read_response_head(&mut ws);
    assert_eq!(status(&head), 101, "{head}");
    assert_eq!(header(&head, "Upgrade"), Some("websocket"), "{head}");
    assert_echo(&mut ws, TEXT, b"not a scrape");
    send(&mut ws, &client_frame(true, TEXT, b"again"));
    let (fin, opcode, payload) = read_frame(&mut ws).expect("echo");
    assert!(fin && opcode == TEXT && payload == b"again");

    // A plain GET of the same path is still a scrape, which guests may
    // not make here.
    let (code, head, _) = scrape(&server, None);
    assert_eq!(code, 401, "{head}");
    // And the WebSocket is unaffected.
    assert_echo(&mut ws, TEXT, b"still open");
}
