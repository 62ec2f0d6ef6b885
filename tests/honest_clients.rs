//! The pace rules at their defaults, from both sides: honest clients that
//! are busy (thinking between flights, a burst from one process, a frame
//! that stalls, one octet per write) are served, and the slow senders the
//! rules exist for are still shed. The harness relaxes the rules for other
//! tests; here every server runs with the defaults spelled out.

mod common;

use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use averyws::pace::RTO_FLOOR;
use common::clients::port;
use common::evictions::{assert_evicted, assert_fired_at};
use common::procs::{open_fds, proc_status_kib, python_imports};
use common::{
    assert_echo, client_frame, client_header, raw_ws, read_frame, send, upgrade, upgrade_request,
    wait_dropped, Server, TlsStream, BINARY, PACE_DEFAULTS, READ_TIMEOUT, TEXT,
};

/// Longer than the first-byte time, well within the think time: what a
/// browser verifying a certificate or a busy event loop may take.
const THOUGHT: Duration = Duration::from_millis(300);

/// A TLS stream whose ClientHello is on the wire, nothing else done yet.
fn hello_sent(server: &Server) -> TlsStream {
    let mut tls = server.tls();
    tls.conn
        .write_tls(&mut tls.sock)
        .expect("send the ClientHello");
    tls
}

/// Reads the server's flight, thinks for `pause`, then finishes the TLS
/// handshake (the client's Finished goes out last).
fn finish_after(tls: &mut TlsStream, pause: Duration) {
    while !tls.conn.wants_write() {
        tls.conn
            .read_tls(&mut tls.sock)
            .expect("the server's flight");
        tls.conn.process_new_packets().expect("a valid flight");
    }
    std::thread::sleep(pause);
    while tls.conn.is_handshaking() || tls.conn.wants_write() {
        tls.conn
            .complete_io(&mut tls.sock)
            .expect("finish the handshake");
    }
}

#[test]
fn a_client_that_thinks_between_flights_is_served() {
    let server = Server::start(&PACE_DEFAULTS);
    let mut tls = hello_sent(&server);
    finish_after(&mut tls, THOUGHT);
    // And thinks again before its request.
    std::thread::sleep(THOUGHT);
    upgrade(&mut tls, "/echo");
    assert_echo(&mut tls, TEXT, b"after some thought");
    assert!(!server.log().iter().any(|l| l.contains("evicted 127.0.0.1")));
}

#[test]
fn a_burst_from_one_process_handshaking_in_turn_is_served() {
    const BURST: usize = 50;
    // What one event loop does: every ClientHello goes out at once, then
    // each handshake is finished in turn, a few milliseconds of work each,
    // so the last client's Finished comes long after the server's flight.
    let server = Server::start(&PACE_DEFAULTS);
    let mut clients: Vec<TlsStream> = (0..BURST).map(|_| hello_sent(&server)).collect();
    for tls in &mut clients {
        finish_after(tls, Duration::from_millis(5));
    }
    for (n, tls) in clients.iter_mut().enumerate() {
        upgrade(tls, "/echo");
        assert_echo(tls, TEXT, format!("client {n} of the burst").as_bytes());
    }
    assert!(!server.log().iter().any(|l| l.contains("evicted 127.0.0.1")));
}

#[test]
fn a_frame_that_stalls_on_an_open_connection_is_not_evicted() {
    let server = Server::start(&PACE_DEFAULTS);
    let mut ws = raw_ws(&server, "/echo");
    let payload = b"a frame whose payload stalls";
    let frame = client_frame(true, TEXT, payload);
    // Stalled for longer than a TCP retransmission would take, and again
    // after the first half of the payload.
    let (head, rest) = frame.split_at(2 + 4 + payload.len() / 2);
    send(&mut ws, &head[..3]);
    std::thread::sleep(Duration::from_millis(1200));
    send(&mut ws, &head[3..]);
    std::thread::sleep(Duration::from_millis(1200));
    send(&mut ws, rest);
    let (fin, opcode, echoed) = read_frame(&mut ws).expect("the echo");
    assert!(fin && opcode == TEXT && echoed == payload, "{echoed:?}");
    // One octet per write, as a fragmenting client or a test suite does.
    for byte in client_frame(true, BINARY, &[0x5a; 300]) {
        send(&mut ws, &[byte]);
        std::thread::sleep(Duration::from_millis(1));
    }
    let (_, opcode, echoed) = read_frame(&mut ws).expect("the echo");
    assert!(opcode == BINARY && echoed == [0x5a; 300]);
    assert!(!server.log().iter().any(|l| l.contains("evicted 127.0.0.1")));
}

#[test]
fn under_pressure_a_thinking_client_is_held_to_the_first_byte_time() {
    // Two of four pending handshakes held (one byte of a ClientHello,
    // with a minute to send the rest) put the server at half its cap.
    let server = Server::start(
        &[
            &PACE_DEFAULTS[..6],
            &["--min-rate", "1", "--max-pending-handshakes", "4"],
        ]
        .concat(),
    );
    let hello = {
        let mut tls = server.tls();
        let mut bytes = Vec::new();
        tls.conn.write_tls(&mut bytes).unwrap();
        bytes
    };
    let held: Vec<TcpStream> = (0..2)
        .map(|_| {
            let mut tcp = TcpStream::connect(server.addr).unwrap();
            send(&mut tcp, &hello[..1]);
            tcp
        })
        .collect();
    let mut thinker = hello_sent(&server);
    let thinker_port = port(&thinker);
    let flight_read = Instant::now();
    // Reading the flight and thinking; the server must give up first.
    while !thinker.conn.wants_write() {
        thinker.conn.read_tls(&mut thinker.sock).unwrap();
        thinker.conn.process_new_packets().unwrap();
    }
    thinker.sock.set_read_timeout(Some(READ_TIMEOUT)).unwrap();
    wait_dropped(&mut thinker.sock);
    assert!(flight_read.elapsed() < Duration::from_secs(1) + RTO_FLOOR);
    assert_evicted(&server, thinker_port, "first_byte_timeout");
    drop(held);
}

#[test]
fn a_silent_connection_is_shed_at_the_hello_time() {
    let server = Server::start(&PACE_DEFAULTS);
    let connected = Instant::now();
    let mut silent = TcpStream::connect(server.addr).unwrap();
    silent.set_read_timeout(Some(READ_TIMEOUT)).unwrap();
    let silent_port = port(&silent);
    assert!(wait_dropped(&mut silent).is_empty());
    assert_fired_at(
        connected.elapsed(),
        Duration::from_millis(100),
        "hello time",
    );
    assert_evicted(&server, silent_port, "first_byte_timeout");
}

#[test]
fn an_upgrade_request_dribbled_a_byte_per_100_ms_is_shed() {
    let server = Server::start(&PACE_DEFAULTS);
    let mut tls = server.tls();
    while tls.conn.is_handshaking() {
        tls.conn.complete_io(&mut tls.sock).unwrap();
    }
    let tls_port = port(&tls);
    let started = Instant::now();
    let request = upgrade_request("/echo", "");
    let mut sent = 0;
    for byte in request.as_bytes() {
        if tls.sock.peek(&mut [0u8; 1]).is_ok_and(|n| n == 0) {
            break;
        }
        use std::io::Write;
        if tls.write_all(&[*byte]).and_then(|()| tls.flush()).is_err() {
            break;
        }
        sent += 1;
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(sent < request.len(), "the whole request was let through");
    // 8 KiB of head at 50 kB/s (164 ms) and one retransmission.
    let unit = Duration::from_millis(164) + RTO_FLOOR;
    assert_fired_at(started.elapsed(), unit, "the request's minimum rate");
    assert_evicted(&server, tls_port, "slow_upgrade_request");
}

/// The frame dribble rule still holds on an open connection: a large
/// frame sent at a trickle is closed 1008 once its time at the minimum
/// rate and the stall allowance are spent.
#[test]
fn a_frame_dribbled_far_below_the_rate_is_still_closed() {
    let server = Server::start(&[&PACE_DEFAULTS[..], &["--frame-stall-ms", "500"]].concat());
    let mut ws = raw_ws(&server, "/echo");
    let ws_port = port(&ws);
    send(&mut ws, &client_header(0x80 | BINARY, 1000));
    ws.sock
        .set_read_timeout(Some(Duration::from_millis(50)))
        .unwrap();
    let started = Instant::now();
    let mut got = Vec::new();
    while started.elapsed() < Duration::from_secs(10) {
        use std::io::{Read, Write};
        if ws.write_all(&[0]).and_then(|()| ws.flush()).is_err() {
            break;
        }
        let mut buf = [0u8; 64];
        match ws.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(_) => break,
        }
        if !got.is_empty() {
            break;
        }
    }
    let (_, _, close) = read_frame(&mut &got[..]).expect("a Close");
    assert_eq!(&close[..2], &1008u16.to_be_bytes());
    assert_eq!(&close[2..], b"slow_frame");
    // 1,008 bytes at 50 kB/s (21 ms), the 500 ms stall and a
    // retransmission's worth (the stall is the larger).
    assert_fired_at(started.elapsed(), Duration::from_millis(521), "frame stall");
    // Hang up as a client does once the server is done, so the server
    // need not wait out its closing-handshake timeout before it logs.
    drop(ws);
    assert_evicted(&server, ws_port, "slow_frame");
}

/// Fifty clients of one asyncio process (the Python `websockets` library,
/// `tests/python/burst.py`) opening at once while the other core is kept
/// busy: every one opens and echoes at the default pace.
#[test]
fn fifty_asyncio_clients_of_one_process_open_while_the_other_core_is_busy() {
    if !python_imports("websockets", "websockets") {
        return;
    }
    let server = Server::start(&PACE_DEFAULTS);
    let spinning = AtomicBool::new(true);
    let output = std::thread::scope(|scope| {
        // Bounded like every load here: the script gives up after 20 s.
        scope.spawn(|| {
            let until = Instant::now() + Duration::from_secs(60);
            while spinning.load(Ordering::Relaxed) && Instant::now() < until {
                std::hint::spin_loop();
            }
        });
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python/burst.py");
        let url = format!("wss://127.0.0.1:{}/echo", server.addr.port());
        let output = std::process::Command::new("python3")
            .args([script, "--url", &url, "--ca", &common::utf8(&server.cert)])
            .args(["--clients", "50", "--timeout", "20"])
            .output()
            .expect("run the burst");
        spinning.store(false, Ordering::Relaxed);
        output
    });
    let stdout = String::from_utf8_lossy(&output.stdout);
    let evictions: Vec<String> = server
        .log()
        .into_iter()
        .filter(|l| l.contains("evicted 127.0.0.1"))
        .collect();
    assert!(
        output.status.success() && stdout.contains("opened and echoed 50 of 50"),
        "{stdout}{}\nevictions: {evictions:#?}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(evictions.is_empty(), "{evictions:#?}");
}

/// A flood of 5,000 connections that never send a byte, from one address
/// (limits per address off, as behind a large NAT) at the default pace:
/// every one is shed, within the think time they can stretch to, an
/// honest client is served meanwhile, and the server's memory stays
/// bounded.
#[test]
fn a_flood_of_five_thousand_silent_connections_is_shed_with_bounded_memory() {
    const FLOOD: usize = 5000;
    let (soft, _) = rlimit::getrlimit(rlimit::Resource::NOFILE).unwrap();
    if soft < 8192 {
        rlimit::increase_nofile_limit(8192).unwrap();
    }
    let server = Server::start(&[&PACE_DEFAULTS[..], &["--max-connections-per-ip", "0"]].concat());
    let rss_before = proc_status_kib(server.pid(), "VmRSS");
    let fds_before = open_fds(server.pid());
    let started = Instant::now();
    let mut flood: Vec<TcpStream> = (0..FLOOD)
        .map(|_| TcpStream::connect(server.addr).expect("connect"))
        .collect();
    let opened = started.elapsed();
    let mut honest = raw_ws(&server, "/echo");
    assert_echo(&mut honest, TEXT, b"served during the flood");
    // Each is shed at most the think time after it was accepted (the
    // longest a crowded address stretches to), so all are gone soon after
    // the last was opened.
    for tcp in &mut flood {
        tcp.set_read_timeout(Some(READ_TIMEOUT)).unwrap();
        assert!(
            wait_dropped(tcp).is_empty(),
            "a silent client got an answer"
        );
    }
    let shed = started.elapsed();
    assert!(
        shed <= opened + Duration::from_secs(1) + RTO_FLOOR + common::evictions::SLACK,
        "the last silent connection was shed {shed:?} after the flood began \
         (opening it took {opened:?})"
    );
    drop(flood);
    let peak = proc_status_kib(server.pid(), "VmHWM");
    assert!(
        peak.saturating_sub(rss_before) < 64 * 1024,
        "server grew from {rss_before} KiB to a peak of {peak} KiB for {FLOOD} silent connections"
    );
    // The honest client is still there; the flood's sockets are not.
    assert_echo(&mut honest, TEXT, b"after the flood");
    let deadline = Instant::now() + READ_TIMEOUT;
    while open_fds(server.pid()) > fds_before + 1 {
        assert!(
            Instant::now() < deadline,
            "the server still holds flood sockets"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}
