//! Slow-client eviction and resource limits of the real binary: the
//! first-byte and minimum-rate rules for TLS flights, the upgrade request
//! and frames; slow consumers; connection, handshake and message-rate
//! limits; and an honest client among a thousand slowloris connections.
//!
//! Each eviction is checked in the access log (`evicted=REASON`) and in the
//! operator's `WARN evicted PEER: REASON` line. An eviction's time is held
//! to its rule: never before the deadline the configured values give, and
//! within a generous slack after it (`common::evictions::SLACK`), never a
//! measure of speed.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use averyws::pace::RTO_FLOOR;
use common::clients::{port, Tcp};
use common::evictions::{access_line, assert_evicted, assert_fired_at};
use common::procs::{open_fds, proc_status_kib};
use common::{
    assert_echo, client_close, client_frame, client_header, close_code, next_close, raw_ws,
    read_frame, send, upgrade, upgrade_request, wait_dropped, Server, TlsStream, BINARY, CLOSE,
    READ_TIMEOUT, TEXT,
};
use rustls::pki_types::ServerName;
use rustls::ClientConnection;
use tungstenite::Message;

/// How long to wait for the server to log or drop a connection.
const LIMIT: Duration = Duration::from_secs(15);

/// The pause between the bytes of a dribbling client.
const GAP: Duration = Duration::from_millis(20);

/// The minimum rate of the dribble tests: a 16 KiB TLS flight gets 820 ms,
/// an 8 KiB upgrade request 410 ms, a 10,000-byte frame about 500 ms, while
/// a client sending one byte per [`GAP`] manages 50 B/s.
const RATE: u64 = 20_000;
const RATE_FLAGS: [&str; 2] = ["--min-rate", "20000"];

/// Time `bytes` take at [`RATE`], rounded up like the server rounds it.
fn at_rate(bytes: u64) -> Duration {
    Duration::from_millis((bytes * 1000).div_ceil(RATE))
}

/// The least a unit of `bytes` gets: its time at [`RATE`] and one TCP
/// retransmission (Linux never reports an RTO below the floor).
fn unit_time(bytes: u64) -> Duration {
    at_rate(bytes) + RTO_FLOOR
}

/// How a dribble ended.
struct Dribble {
    /// Bytes written before the server ended the connection.
    sent: usize,
    /// What the server sent meanwhile.
    got: Vec<u8>,
    /// The server ended the connection (EOF, reset or a failed write).
    dropped: bool,
}

/// Writes `bytes` one at a time, [`GAP`] apart, until the server ends the
/// connection. The pause is a read with a timeout, so whatever the server
/// says on the way is collected.
fn dribble(stream: &mut impl Tcp, bytes: &[u8]) -> Dribble {
    stream.tcp().set_read_timeout(Some(GAP)).unwrap();
    let mut dribble = Dribble {
        sent: 0,
        got: Vec::new(),
        dropped: false,
    };
    let mut buf = [0u8; 4096];
    'bytes: for byte in bytes {
        if stream
            .write_all(&[*byte])
            .and_then(|()| stream.flush())
            .is_err()
        {
            dribble.dropped = true;
            break;
        }
        dribble.sent += 1;
        loop {
            match stream.read(&mut buf) {
                Ok(0) => {
                    dribble.dropped = true;
                    break 'bytes;
                }
                Ok(n) => dribble.got.extend_from_slice(&buf[..n]),
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => {
                    dribble.dropped = true;
                    break 'bytes;
                }
            }
        }
    }
    stream.tcp().set_read_timeout(Some(READ_TIMEOUT)).unwrap();
    dribble
}

/// Dribbles `bytes` and checks that the server ended the connection
/// part-way, at the unit's deadline at the minimum rate (`unit` after
/// `started`, which precedes the unit's first byte); returns what the
/// server said.
fn dribble_until_dropped(
    stream: &mut impl Tcp,
    bytes: &[u8],
    started: Instant,
    unit: Duration,
) -> Vec<u8> {
    let dribble = dribble(stream, bytes);
    assert!(
        dribble.dropped,
        "all {} bytes were let through",
        bytes.len()
    );
    assert!(
        dribble.sent < bytes.len(),
        "evicted only after the last byte"
    );
    assert_fired_at(started.elapsed(), unit, "the unit's minimum rate");
    dribble.got
}

/// Checks that nothing arrives on `stream` for `quiet`, the connection
/// staying open.
fn expect_silence(stream: &mut impl Tcp, quiet: Duration) {
    stream.tcp().set_read_timeout(Some(quiet)).unwrap();
    let mut byte = [0u8; 1];
    match stream.read(&mut byte) {
        Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
        other => panic!("expected silence for {quiet:?}, got {other:?} {byte:?}"),
    }
    stream.tcp().set_read_timeout(Some(READ_TIMEOUT)).unwrap();
}

/// The bytes of a TLS ClientHello for this server, from a real rustls
/// client, to be written over a raw socket.
fn client_hello(server: &Server) -> Vec<u8> {
    let name = ServerName::try_from("localhost").unwrap();
    let mut conn = ClientConnection::new(server.client_config(), name).unwrap();
    let mut hello = Vec::new();
    while conn.wants_write() {
        conn.write_tls(&mut hello).unwrap();
    }
    hello
}

/// A raw TCP connection with the test read timeout.
fn tcp(server: &Server) -> TcpStream {
    let tcp = TcpStream::connect(server.addr).unwrap();
    tcp.set_read_timeout(Some(READ_TIMEOUT)).unwrap();
    tcp
}

/// A TLS stream whose handshake is complete, nothing sent on it yet.
fn handshaken(server: &Server) -> TlsStream {
    let mut tls = server.tls();
    while tls.conn.is_handshaking() {
        tls.conn.complete_io(&mut tls.sock).unwrap();
    }
    tls
}

#[test]
fn silent_tcp_client_is_dropped_after_the_first_byte_timeout() {
    let server = Server::start(&["--first-byte-timeout-ms", "50", "--hello-timeout-ms", "50"]);
    let connected = Instant::now();
    let mut silent = tcp(&server);
    let silent_port = port(&silent);
    let got = wait_dropped(&mut silent);
    assert!(got.is_empty(), "a silent client got {got:?}");
    assert_fired_at(
        connected.elapsed(),
        Duration::from_millis(50),
        "first-byte timeout",
    );
    let line = assert_evicted(&server, silent_port, "first_byte_timeout");
    assert!(
        line.contains(" path=- ") && line.contains(" bytes_in=0 "),
        "{line}"
    );

    // One that sends its ClientHello at once is answered and upgrades.
    let mut prompt = raw_ws(&server, "/echo");
    assert_echo(&mut prompt, TEXT, b"prompt");
    let evicted = server
        .log()
        .iter()
        .filter(|l| l.contains("evicted="))
        .count();
    assert_eq!(evicted, 1, "{:#?}", server.log());
}

#[test]
fn client_hello_dribbled_byte_by_byte_is_evicted() {
    let server = Server::start(&RATE_FLAGS);
    let hello = client_hello(&server);
    let mut raw = tcp(&server);
    let raw_port = port(&raw);
    // A flight is assumed to be one full record, 16 KiB.
    let got = dribble_until_dropped(&mut raw, &hello, Instant::now(), unit_time(16 << 10));
    assert!(got.is_empty(), "the server answered: {got:?}");
    assert_evicted(&server, raw_port, "slow_tls_handshake");
}

#[test]
fn upgrade_request_dribbled_byte_by_byte_is_evicted_and_sent_whole_upgrades() {
    let server = Server::start(&RATE_FLAGS);
    let request = upgrade_request("/echo", "");

    let mut slow = handshaken(&server);
    let slow_port = port(&slow);
    // The request is held to the header-size limit, 8 KiB.
    let got = dribble_until_dropped(
        &mut slow,
        request.as_bytes(),
        Instant::now(),
        unit_time(8192),
    );
    assert!(got.is_empty(), "the server answered: {got:?}");
    assert_evicted(&server, slow_port, "slow_upgrade_request");

    let mut whole = handshaken(&server);
    upgrade(&mut whole, "/echo");
    assert_echo(&mut whole, TEXT, b"whole");
}

/// Flags for the frame pace tests: frames must keep [`RATE`] with a short
/// stall allowance, and the first-byte time is far shorter than the idle
/// gap between frames.
const FRAME_FLAGS: [&str; 6] = [
    RATE_FLAGS[0],
    RATE_FLAGS[1],
    "--first-byte-timeout-ms",
    "200",
    "--frame-stall-ms",
    "100",
];

#[test]
fn frame_payload_dribbled_below_the_rate_is_closed_with_1008() {
    let server = Server::start(&FRAME_FLAGS);
    let mut ws = raw_ws(&server, "/echo");
    let ws_port = port(&ws);
    let header = client_header(0x80 | BINARY, 10_000);
    let started = Instant::now();
    send(&mut ws, &header);
    let unit = unit_time(header.len() as u64 + 10_000);
    let got = dribble_until_dropped(&mut ws, &[0u8; 10_000], started, unit);
    let (fin, opcode, payload) = read_frame(&mut &got[..]).expect("a Close frame");
    assert!(fin && opcode == CLOSE, "opcode {opcode:#x}");
    assert_eq!(close_code(&payload), Some(1008));
    assert_eq!(&payload[2..], b"slow_frame");
    // Hang up as a client does once the server is done, so the server
    // need not wait out its closing-handshake timeout before it logs.
    drop(ws);
    let line = assert_evicted(&server, ws_port, "slow_frame");
    assert!(line.contains(" close=1008 closed_by=server "), "{line}");
}

#[test]
fn idle_between_frames_is_not_a_slow_frame() {
    let server = Server::start(&FRAME_FLAGS);
    let mut ws = raw_ws(&server, "/echo");
    let payload = vec![7u8; 10_000];
    assert_echo(&mut ws, BINARY, &payload);
    // Longer than the frame's unit time and the first-byte time: only
    // the idle timeout (75 s) governs a connection between frames.
    expect_silence(&mut ws, 3 * at_rate(10_000));
    assert_echo(&mut ws, BINARY, &payload);
    assert!(!server.log().iter().any(|l| l.contains("evicted 127.0.0.1")));
}

/// Also a regression test: a frame left half-read because the server had
/// stopped reading (its output to the client backed up) was judged as the
/// client's slow frame, and evicted `slow_frame` before `slow_consumer`.
#[test]
fn client_that_never_reads_is_evicted_and_memory_stays_bounded() {
    const MIB: u64 = 1 << 20;
    // Output must drain at 1 MB/s after the think time: the drain
    // deadline (about 2 s) falls well after a 200 kB frame's (200 ms and
    // a 100 ms stall), so a frame the server's own stall left half-read
    // would be judged first.
    let server = Server::start(&[
        "--min-rate",
        "1000000",
        "--think-time-ms",
        "1500",
        "--frame-stall-ms",
        "100",
        "--max-outbound-bytes",
        "262144",
    ]);
    let mut ws = raw_ws(&server, "/echo");
    let ws_port = port(&ws);
    let rss_before = proc_status_kib(server.pid(), "VmRSS");
    // Writes block once the server stops reading; the timeout lets the
    // loop look at the log and the deadline.
    ws.sock
        .set_write_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    // Three messages a write, so frames straddle TLS records and the
    // server stops reading in the middle of one: a stall that is ours, not
    // the client's. The client's TLS buffer takes each write whole.
    ws.conn.set_buffer_limit(None);
    let frame = client_frame(true, BINARY, &vec![0x5a; 200_000]).repeat(3);
    let deadline = Instant::now() + Duration::from_secs(20);
    let (mut pushed, mut write_failed) = (0u64, false);
    // The connection's debug line says it was evicted, before it is gone.
    let evicted = format!(" averyws::session::pacing: 127.0.0.1:{ws_port}: evicted: ");
    while pushed < 256 * MIB && Instant::now() < deadline {
        match ws.write_all(&frame).and_then(|()| ws.flush()) {
            Ok(()) => pushed += frame.len() as u64,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                if server.log().iter().any(|line| line.contains(&evicted)) {
                    break;
                }
            }
            Err(_) => {
                write_failed = true;
                break;
            }
        }
    }
    // The connection is gone: what is left to read ends in EOF or a reset.
    if !write_failed {
        wait_dropped(&mut ws.sock);
    }
    drop(ws);
    let line = assert_evicted(&server, ws_port, "slow_consumer");
    assert!(
        pushed < 256 * MIB,
        "the server took all {pushed} B without evicting"
    );
    // The server's peak resident memory is its own business, not the
    // flood's: it stopped reading instead of buffering.
    let peak = proc_status_kib(server.pid(), "VmHWM");
    assert!(
        peak.saturating_sub(rss_before) < 64 * 1024,
        "server grew from {rss_before} KiB to a peak of {peak} KiB; {line}"
    );
}

/// A connection that occupies one unit of a limit.
enum Holder {
    /// An upgraded WebSocket that has echoed.
    WebSocket,
    /// A TCP connection that has sent nothing (still handshaking).
    Silent,
}

/// Opens a connection that holds one unit of a limit.
fn hold(server: &Server, holder: &Holder) -> Box<dyn Tcp> {
    match holder {
        Holder::WebSocket => {
            let mut ws = raw_ws(server, "/echo");
            assert_echo(&mut ws, TEXT, b"holding a slot");
            Box::new(ws)
        }
        Holder::Silent => Box::new(tcp(server)),
    }
}

#[test]
fn connection_limits_refuse_at_accept_and_free_slots_on_close() {
    let rows: [(&[&str], usize, Holder, &str); 3] = [
        (
            &["--max-connections-per-ip", "3"],
            3,
            Holder::WebSocket,
            "max_connections_per_ip",
        ),
        (
            &["--max-connections", "2"],
            2,
            Holder::WebSocket,
            "max_connections",
        ),
        (
            &[
                "--max-pending-handshakes",
                "2",
                "--first-byte-timeout-ms",
                "5000",
            ],
            2,
            Holder::Silent,
            "max_pending_handshakes",
        ),
    ];
    for (flags, limit, holder, reason) in rows {
        let server = Server::start(flags);
        let mut held: Vec<Box<dyn Tcp>> = (0..limit).map(|_| hold(&server, &holder)).collect();

        // One more is dropped at accept: its ClientHello gets no answer.
        let mut refused = tcp(&server);
        let refused_port = port(&refused);
        let _ = refused.write_all(&client_hello(&server));
        let got = wait_dropped(&mut refused);
        assert!(got.is_empty(), "{reason}: the refused client got {got:?}");
        let warning = format!("refused 127.0.0.1:{refused_port}: {reason} (");
        assert!(
            server.wait_log(&warning, LIMIT).is_some(),
            "{reason}: no `{warning}`: {:#?}",
            server.log()
        );

        // Once one holder has gone, a new client gets its slot.
        let gone = held.pop().unwrap();
        let gone_port = port(&*gone);
        drop(gone);
        access_line(&server, gone_port);
        let mut fresh = raw_ws(&server, "/echo");
        assert_echo(&mut fresh, TEXT, reason.as_bytes());
        assert_eq!(
            server
                .log()
                .iter()
                .filter(|l| l.contains("refused "))
                .count(),
            1,
            "{reason}: {:#?}",
            server.log()
        );
    }
}

/// Ten messages a second per connection, five at once.
const RATE_LIMIT: [&str; 4] = ["--max-messages-per-s", "10", "--message-burst", "5"];

#[test]
fn a_burst_over_the_message_rate_gets_the_burst_then_1008() {
    let server = Server::start(&RATE_LIMIT);
    let mut ws = raw_ws(&server, "/echo");
    let ws_port = port(&ws);
    let messages: Vec<String> = (0..20).map(|n| format!("m{n}")).collect();
    let burst: Vec<u8> = messages
        .iter()
        .flat_map(|m| client_frame(true, TEXT, m.as_bytes()))
        .collect();
    send(&mut ws, &burst);
    for message in &messages[..5] {
        let (fin, opcode, payload) = read_frame(&mut ws).unwrap();
        assert!(fin && opcode == TEXT, "{message}: opcode {opcode:#x}");
        assert_eq!(payload, message.as_bytes());
    }
    let close = next_close(&mut ws);
    assert_eq!(close_code(&close), Some(1008), "{close:?}");
    assert_eq!(&close[2..], b"message_rate");
    wait_dropped(&mut ws);
    // Hang up as a client does once the server is done, so the server
    // need not wait out its closing-handshake timeout before it logs.
    drop(ws);
    let line = assert_evicted(&server, ws_port, "message_rate");
    assert!(
        line.contains(" messages_in=5 messages_out=5 close=1008 "),
        "{line}"
    );
}

#[test]
fn a_client_within_the_message_rate_is_never_closed() {
    let server = Server::start(&RATE_LIMIT);
    let mut ws = raw_ws(&server, "/echo");
    let ws_port = port(&ws);
    // Five a second for two seconds: the bucket never runs dry.
    for n in 0..10 {
        assert_echo(&mut ws, TEXT, format!("paced {n}").as_bytes());
        std::thread::sleep(Duration::from_millis(200));
    }
    send(&mut ws, &client_close(1000, b""));
    assert_eq!(close_code(&next_close(&mut ws)), Some(1000));
    // Hang up as a client does once the server is done, so the server
    // need not wait out its closing-handshake timeout before it logs.
    drop(ws);
    let line = access_line(&server, ws_port);
    assert!(
        line.ends_with(" messages_in=10 messages_out=10 close=1000 closed_by=client evicted=-"),
        "{line}"
    );
}

#[test]
fn an_honest_client_echoes_among_a_thousand_slowloris_connections() {
    const SLOWLORIS: usize = 1000;
    // The test holds a socket per slowloris and its own few.
    let (soft, _) = rlimit::getrlimit(rlimit::Resource::NOFILE).unwrap();
    if soft < 4096 {
        rlimit::increase_nofile_limit(4096).unwrap();
    }
    // At one byte per 16 KiB flight and a minute to upgrade, the slowloris
    // clients outlast the test; nothing limits connections from one IP.
    let server = Server::start(&[
        "--min-rate",
        "1",
        "--first-byte-timeout-ms",
        "5000",
        "--handshake-timeout-ms",
        "60000",
        "--max-connections-per-ip",
        "0",
    ]);
    let hello = client_hello(&server);
    let fds_before = open_fds(server.pid());
    let mut slowloris: Vec<TcpStream> = (0..SLOWLORIS)
        .map(|_| {
            let mut tcp = tcp(&server);
            tcp.write_all(&hello[..1]).unwrap();
            tcp
        })
        .collect();
    // Every one of them is attached: the server holds a socket for each.
    let deadline = Instant::now() + LIMIT;
    while open_fds(server.pid()) < fds_before + SLOWLORIS {
        assert!(
            Instant::now() < deadline,
            "the server holds {} fds",
            open_fds(server.pid())
        );
        std::thread::sleep(Duration::from_millis(20));
    }

    let mut ws = server.ws("/echo");
    ws.send(Message::text("honest")).unwrap();
    assert_eq!(ws.read().unwrap(), Message::text("honest"));
    ws.close(None).unwrap();

    // The slowloris clients are still attached, and none was evicted.
    for tcp in &mut slowloris {
        tcp.set_nonblocking(true).unwrap();
        let mut byte = [0u8; 1];
        match tcp.read(&mut byte) {
            Err(e) if e.kind() == ErrorKind::WouldBlock => {}
            other => panic!("a slowloris client was dropped: {other:?}"),
        }
    }
    assert!(!server.log().iter().any(|l| l.contains("evicted")));
}

/// With a budget of one TLS handshake step per loop turn, a storm of
/// clients whose first flights all wait at once is served a step at a
/// time: the metrics show steps put off to later turns, and every client
/// gets its session. The storm is made certain, not left to chance: the
/// server is stopped (SIGSTOP) while the clients connect and send their
/// ClientHellos, so its first poll after SIGCONT finds them all.
#[test]
fn a_connect_storm_is_served_within_the_handshake_budget() {
    // A route, so the harness's open ACL lets the test read /metrics.
    let server = Server::start(&[
        "--route",
        "/echo=echo",
        "--handshakes-per-turn",
        "1",
        "--max-connections-per-ip",
        "0",
    ]);
    let deferred = || {
        let (_, _, body) = common::scrape::scrape(&server, None);
        common::scrape::sample_sum(&body, "averyws_handshakes_deferred_total")
    };
    assert_eq!(deferred(), 0, "steps put off before the storm");
    server.signal("STOP");
    let mut storm: Vec<TlsStream> = (0..STORM)
        .map(|_| {
            let mut tls = server.tls();
            tls.conn
                .write_tls(&mut tls.sock)
                .expect("send the ClientHello");
            tls
        })
        .collect();
    server.signal("CONT");
    for (n, tls) in storm.iter_mut().enumerate() {
        upgrade(tls, "/echo");
        assert_echo(tls, TEXT, format!("storm client {n}").as_bytes());
    }
    // One step a turn: at least all but the first ClientHello of the
    // first turn waited for a later one.
    let put_off = deferred();
    assert!(
        put_off >= STORM as u64 - 1,
        "{put_off} steps put off for {STORM} clients: {:#?}",
        server.log()
    );
}

/// Clients in one connect storm.
const STORM: usize = 32;
