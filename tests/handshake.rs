//! The opening handshake (RFC 6455 section 4) and the TLS layer under it,
//! over real sockets against the real binary.

mod common;

use std::io::Write;
use std::net::TcpStream;
use std::sync::Arc;

use common::{
    assert_echo, client_config_with, client_frame, expect_eof, header, pem_certs, read_frame,
    read_response_head, send, status, upgrade, upgrade_request, wait_dropped, Server, TlsStream,
    PING, PONG, READ_TIMEOUT, TEXT,
};
use rustls::{ClientConfig, HandshakeKind, ProtocolVersion, SupportedProtocolVersion};

/// The accept value for the harness key `dGhlIHNhbXBsZSBub25jZQ==`
/// (RFC 6455 section 1.3).
const ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

/// An upgrade request built field by field, so each row changes one thing.
#[derive(Clone)]
struct Request {
    line: String,
    fields: Vec<(String, String)>,
}

impl Request {
    /// A valid handshake for `/echo`.
    fn valid() -> Request {
        let fields = [
            ("Host", "localhost"),
            ("Upgrade", "websocket"),
            ("Connection", "Upgrade"),
            ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
            ("Sec-WebSocket-Version", "13"),
        ];
        Request {
            line: "GET /echo HTTP/1.1".into(),
            fields: fields
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect(),
        }
    }

    fn line(mut self, line: &str) -> Request {
        self.line = line.into();
        self
    }

    /// Replaces the value of `name`.
    fn set(mut self, name: &str, value: &str) -> Request {
        let field = self.fields.iter_mut().find(|(n, _)| n == name);
        field.expect("a base field").1 = value.into();
        self
    }

    fn without(mut self, name: &str) -> Request {
        self.fields.retain(|(n, _)| n != name);
        self
    }

    /// Adds a field line, even if `name` is already there.
    fn with(mut self, name: &str, value: &str) -> Request {
        self.fields.push((name.into(), value.into()));
        self
    }

    /// Adds an `X-Pad` field so the head is exactly `total` bytes.
    fn padded_to(self, total: usize) -> Request {
        let pad = total - self.bytes().len() - "X-Pad: \r\n".len();
        self.with("X-Pad", &"a".repeat(pad))
    }

    fn bytes(&self) -> Vec<u8> {
        let mut head = format!("{}\r\n", self.line);
        for (name, value) in &self.fields {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        head.push_str("\r\n");
        head.into_bytes()
    }
}

/// Sends `request` on a fresh TLS connection; returns the response head.
fn exchange(server: &Server, request: &Request) -> (String, TlsStream) {
    let mut stream = server.tls();
    send(&mut stream, &request.bytes());
    let head = read_response_head(&mut stream);
    (head, stream)
}

/// Checks a 101 for the harness key, then that the socket echoes.
fn assert_switched(head: &str, stream: &mut TlsStream, row: &str) {
    assert_eq!(status(head), 101, "{row}: {head}");
    assert!(
        header(head, "upgrade").is_some_and(|v| v.eq_ignore_ascii_case("websocket")),
        "{row}: {head}"
    );
    assert!(
        header(head, "connection").is_some_and(|v| v.eq_ignore_ascii_case("upgrade")),
        "{row}: {head}"
    );
    assert_eq!(header(head, "sec-websocket-accept"), Some(ACCEPT), "{row}");
    assert_echo(stream, TEXT, row.as_bytes());
}

/// Each row's request gets the row's status; a refusal carries no body
/// and is followed by the end of TLS and TCP.
fn assert_statuses(server: &Server, rows: &[(&str, Request, u16)]) {
    for (name, request, want) in rows {
        let (head, mut stream) = exchange(server, request);
        if *want == 101 {
            assert_switched(&head, &mut stream, name);
            continue;
        }
        assert_eq!(status(&head), *want, "{name}: {head}");
        assert!(head.starts_with("HTTP/1.1 "), "{name}: {head}");
        assert_eq!(header(&head, "content-length"), Some("0"), "{name}: {head}");
        assert_eq!(header(&head, "sec-websocket-accept"), None, "{name}");
        if *want == 426 {
            assert_eq!(
                header(&head, "sec-websocket-version"),
                Some("13"),
                "{name}: {head}"
            );
        }
        expect_eof(&mut stream);
    }
}

#[test]
fn malformed_requests_get_their_status() {
    let server = Server::start(&[]);
    let valid = Request::valid;
    let key = |key: &str| valid().set("Sec-WebSocket-Key", key);
    let many_fields = (0..70).fold(valid(), |r, i| r.with(&format!("X-F{i}"), "v"));
    let rows = [
        ("valid", valid(), 101),
        ("missing Host", valid().without("Host"), 400),
        ("empty Host", valid().set("Host", ""), 400),
        ("missing Upgrade", valid().without("Upgrade"), 400),
        ("Upgrade: h2c", valid().set("Upgrade", "h2c"), 400),
        ("missing Connection", valid().without("Connection"), 400),
        (
            "Connection: keep-alive",
            valid().set("Connection", "keep-alive"),
            400,
        ),
        ("missing key", valid().without("Sec-WebSocket-Key"), 400),
        ("key of 10 bytes", key("dGhlIHNhbXBsZQ=="), 400),
        ("key of 17 bytes", key("AAAAAAAAAAAAAAAAAAAAAAA="), 400),
        ("key not base64", key("!!!!!!!!!!!!!!!!!!!!!!=="), 400),
        (
            "key twice",
            valid().with("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
            400,
        ),
        ("version 8", valid().set("Sec-WebSocket-Version", "8"), 426),
        (
            "missing version",
            valid().without("Sec-WebSocket-Version"),
            426,
        ),
        // src/ws/upgrade.rs: any method but GET is 400, not 405.
        ("POST", valid().line("POST /echo HTTP/1.1"), 400),
        ("HTTP/1.0", valid().line("GET /echo HTTP/1.0"), 400),
        (
            "absolute-form target",
            valid().line("GET https://localhost/echo HTTP/1.1"),
            400,
        ),
        ("not HTTP", valid().line("HELLO"), 400),
        (
            "request with a body",
            valid().with("Content-Length", "5"),
            400,
        ),
        ("unknown path", valid().line("GET /nope HTTP/1.1"), 404),
        ("head of exactly 8192 bytes", valid().padded_to(8192), 101),
        ("head of 8193 bytes", valid().padded_to(8193), 431),
        (
            "head of 20 KiB",
            valid().with("X-Pad", &"a".repeat(20 << 10)),
            431,
        ),
        ("70 header lines", many_fields, 431),
    ];
    assert_statuses(&server, &rows);
}

#[test]
fn origin_allow_list() {
    let server = Server::start(&["--allowed-origin", "https://good.example"]);
    let with_origin = |origin: &str| Request::valid().with("Origin", origin);
    let rows = [
        ("allowed origin", with_origin("https://good.example"), 101),
        (
            "allowed origin, other case",
            with_origin("HTTPS://GOOD.EXAMPLE"),
            101,
        ),
        ("other origin", with_origin("https://evil.example"), 403),
        (
            "allowed origin as a prefix",
            with_origin("https://good.example.evil"),
            403,
        ),
        ("no origin", Request::valid(), 403),
    ];
    assert_statuses(&server, &rows);
}

#[test]
fn subprotocol_is_the_clients_first_supported_choice() {
    let server = Server::start(&["--subprotocol", "chat", "--subprotocol", "superchat"]);
    // src/ws/upgrade.rs: the client's order decides; the server's list only
    // says what it speaks.
    let rows: &[(&str, &[&str], Option<&str>)] = &[
        ("superchat first", &["superchat, chat"], Some("superchat")),
        ("chat first", &["chat, superchat"], Some("chat")),
        ("unknown then chat", &["v2.other, chat"], Some("chat")),
        (
            "across two lines",
            &["other", "superchat"],
            Some("superchat"),
        ),
        ("case matters", &["Chat"], None),
        ("nothing we speak", &["other"], None),
        ("none offered", &[], None),
    ];
    for (name, lines, want) in rows {
        let request = lines.iter().fold(Request::valid(), |r, line| {
            r.with("Sec-WebSocket-Protocol", line)
        });
        let (head, mut stream) = exchange(&server, &request);
        assert_switched(&head, &mut stream, name);
        assert_eq!(
            header(&head, "sec-websocket-protocol"),
            *want,
            "{name}: {head}"
        );
    }
}

#[test]
fn frames_pipelined_behind_the_request_are_served() {
    let server = Server::start(&[]);
    let rows = [
        ("short head", Request::valid()),
        (
            "head of exactly 8192 bytes",
            Request::valid().padded_to(8192),
        ),
    ];
    for (name, request) in rows {
        let mut stream = server.tls();
        let mut bytes = request.bytes();
        bytes.extend(client_frame(true, TEXT, b"pipelined"));
        bytes.extend(client_frame(true, PING, b"p"));
        send(&mut stream, &bytes);
        let head = read_response_head(&mut stream);
        assert_eq!(status(&head), 101, "{name}: {head}");
        let replies: Vec<_> = (0..2).map(|_| read_frame(&mut stream).unwrap()).collect();
        assert_eq!(
            replies,
            [
                (true, TEXT, b"pipelined".to_vec()),
                (true, PONG, b"p".to_vec())
            ],
            "{name}"
        );
    }
}

#[test]
fn request_written_one_byte_at_a_time_is_accepted() {
    let server = Server::start(&[]);
    let mut stream = server.tls();
    for byte in upgrade_request("/echo", "").as_bytes() {
        send(&mut stream, &[*byte]);
    }
    let head = read_response_head(&mut stream);
    assert_switched(&head, &mut stream, "one byte at a time");
}

#[test]
fn plaintext_http_is_dropped() {
    let server = Server::start(&[]);
    let mut tcp = TcpStream::connect(server.addr).unwrap();
    tcp.set_read_timeout(Some(READ_TIMEOUT)).unwrap();
    tcp.write_all(upgrade_request("/echo", "").as_bytes())
        .unwrap();
    let got = wait_dropped(&mut tcp);
    // A TLS record, not HTTP: a fatal decode_error alert (RFC 8446
    // section 6), then the connection ends.
    assert_eq!(
        got,
        [0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x32],
        "plaintext got {:?}",
        String::from_utf8_lossy(&got)
    );
    let port = tcp.local_addr().unwrap().port();
    let failure = format!("127.0.0.1:{port}: TLS error: received corrupt message");
    assert!(
        server.wait_log(&failure, READ_TIMEOUT).is_some(),
        "no `{failure}`: {:#?}",
        server.log()
    );
}

/// A client configuration trusting the server, with these ALPN protocols
/// and TLS versions.
fn config(
    server: &Server,
    alpn: &[&[u8]],
    versions: &[&'static SupportedProtocolVersion],
) -> Arc<ClientConfig> {
    client_config_with(&pem_certs(&server.cert), alpn, versions)
}

/// Drives the TLS handshake to its end.
fn handshake(stream: &mut TlsStream) -> std::io::Result<()> {
    while stream.conn.is_handshaking() {
        stream.conn.complete_io(&mut stream.sock)?;
    }
    Ok(())
}

#[test]
fn alpn_http11_or_none_is_served_and_h2_alone_is_refused() {
    let server = Server::start(&[]);
    type Alpn<'a> = &'a [&'a [u8]];
    let rows: &[(&str, Alpn, Option<&[u8]>)] = &[
        ("http/1.1", &[b"http/1.1"], Some(b"http/1.1")),
        ("h2 then http/1.1", &[b"h2", b"http/1.1"], Some(b"http/1.1")),
        ("no ALPN", &[], None),
    ];
    for (name, alpn, want) in rows {
        let mut stream = server.tls_with(config(&server, alpn, rustls::DEFAULT_VERSIONS));
        handshake(&mut stream).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(stream.conn.alpn_protocol(), *want, "{name}");
        upgrade(&mut stream, "/echo");
        assert_echo(&mut stream, TEXT, name.as_bytes());
    }

    let mut stream = server.tls_with(config(&server, &[b"h2"], rustls::DEFAULT_VERSIONS));
    let error = handshake(&mut stream).expect_err("h2-only handshake must fail");
    let tls_error = error
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>());
    assert_eq!(
        tls_error,
        Some(&rustls::Error::AlertReceived(
            rustls::AlertDescription::NoApplicationProtocol
        )),
        "{error}"
    );
}

#[test]
fn tls12_and_tls13_clients_are_served_and_resume() {
    let server = Server::start(&[]);
    let rows = [
        (&rustls::version::TLS12, ProtocolVersion::TLSv1_2),
        (&rustls::version::TLS13, ProtocolVersion::TLSv1_3),
    ];
    for (version, want) in rows {
        // One configuration, so the second connection can resume the first.
        let config = config(&server, &[b"http/1.1"], &[version]);
        for kind in [HandshakeKind::Full, HandshakeKind::Resumed] {
            let mut stream = server.tls_with(Arc::clone(&config));
            // The 101 comes after any TLS 1.3 session ticket.
            upgrade(&mut stream, "/echo");
            assert_eq!(stream.conn.protocol_version(), Some(want));
            assert_eq!(stream.conn.handshake_kind(), Some(kind), "{want:?}");
            assert_echo(&mut stream, TEXT, b"over TLS");
        }
    }
}

/// The server's cipher-suite preference wins over the client's: a client
/// that lists the suites weakest first still gets AES-256-GCM, on TLS 1.3
/// and on TLS 1.2. A TLS 1.2 client that thinks between its flights on
/// the resumed handshake too (as a scanner's probe does) still resumes.
#[test]
fn the_servers_cipher_order_wins_and_a_slow_tls12_client_resumes() {
    use rustls::crypto::ring::{cipher_suite, default_provider};
    use rustls::CipherSuite;
    let server = Server::start(&["--first-byte-timeout-ms", "25", "--think-time-ms", "1000"]);
    let rows = [
        (
            &rustls::version::TLS13,
            vec![
                cipher_suite::TLS13_CHACHA20_POLY1305_SHA256,
                cipher_suite::TLS13_AES_128_GCM_SHA256,
                cipher_suite::TLS13_AES_256_GCM_SHA384,
            ],
            CipherSuite::TLS13_AES_256_GCM_SHA384,
        ),
        (
            &rustls::version::TLS12,
            vec![
                cipher_suite::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
                cipher_suite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
                cipher_suite::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
            ],
            CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
        ),
    ];
    for (version, weakest_first, want) in rows {
        let provider = rustls::crypto::CryptoProvider {
            cipher_suites: weakest_first,
            ..default_provider()
        };
        let mut roots = rustls::RootCertStore::empty();
        for cert in pem_certs(&server.cert) {
            roots.add(cert).unwrap();
        }
        let mut config = ClientConfig::builder_with_provider(Arc::new(provider))
            .with_protocol_versions(&[version])
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let config = Arc::new(config);
        for kind in [HandshakeKind::Full, HandshakeKind::Resumed] {
            let mut stream = server.tls_with(Arc::clone(&config));
            // The ClientHello at once, then 300 ms of thought before each
            // later flight.
            stream.conn.write_tls(&mut stream.sock).unwrap();
            while stream.conn.is_handshaking() || stream.conn.wants_write() {
                if stream.conn.wants_write() {
                    std::thread::sleep(std::time::Duration::from_millis(300));
                    while stream.conn.wants_write() {
                        stream.conn.write_tls(&mut stream.sock).unwrap();
                    }
                } else {
                    let read = stream.conn.read_tls(&mut stream.sock).unwrap();
                    assert!(read > 0, "{version:?} {kind:?}: the server hung up");
                    stream.conn.process_new_packets().unwrap();
                }
            }
            let suite = stream.conn.negotiated_cipher_suite().unwrap().suite();
            assert_eq!(suite, want, "{version:?} {kind:?}");
            upgrade(&mut stream, "/echo");
            assert_eq!(stream.conn.handshake_kind(), Some(kind), "{version:?}");
            assert_echo(&mut stream, TEXT, b"strongest first");
        }
    }
    let log = server.log();
    assert!(
        !log.iter().any(|l| l.contains("evicted 127.0.0.1")),
        "{log:#?}"
    );
}
