//! The session driven with tables of client bytes and clock steps, no
//! socket: what it answers, what it asks of the node, how it ends.

use std::time::Duration;

use super::testing::{client_frame, upgrade_request, Driver};
use crate::backend::message::Initiator;
use crate::node::connections::Outcome;
use crate::outcome::Eviction;
use crate::ws::CloseCode;

const TEXT: u8 = 0x81;
const BINARY: u8 = 0x82;
const CLOSE: u8 = 0x88;
const PING: u8 = 0x89;
const PONG: u8 = 0x8a;

/// An ACL that lets guests connect to `/w` and `/q`, and send on `svc`
/// but not on `quiet`.
const ACL: &str = "allow guest /w connect\nallow guest /q connect\nallow guest svc send\n";

fn driver(args: &[&str]) -> Driver {
    Driver::new(args).expect("valid flags")
}

/// A driver whose ACL is [`ACL`], with routes `/w` to the worker service
/// `svc` and `/q` to `quiet`.
fn worker_driver(extra: &[&str]) -> Driver {
    let mut args = vec!["--route", "/w=svc", "--route", "/q=quiet"];
    args.extend_from_slice(extra);
    Driver::with_acl(ACL, &args).expect("valid flags")
}

fn close_frame(code: u16, reason: &str) -> Vec<u8> {
    let mut payload = code.to_be_bytes().to_vec();
    payload.extend_from_slice(reason.as_bytes());
    client_frame(CLOSE, &payload)
}

/// The close code of a Close frame's payload.
fn code_of(payload: &[u8]) -> u16 {
    u16::from_be_bytes([payload[0], payload[1]])
}

/// Upgrades `/echo` and checks the 101.
fn upgraded(args: &[&str]) -> Driver {
    let mut d = driver(args);
    d.feed(&upgrade_request("/echo", ""));
    let (head, frames) = d.take_output();
    assert!(head.unwrap().starts_with("HTTP/1.1 101"));
    assert!(frames.is_empty());
    assert!(d.session.is_open());
    d
}

/// A case's name, what the client sends, and the frames answered.
type Case<'a> = (&'a str, Vec<u8>, Vec<(u8, &'a [u8])>);

#[test]
fn the_echo_route_answers_each_frame_as_rfc_6455_says() {
    // (what the client sends, the frames the server answers with)
    let fragmented = [
        client_frame(0x01, b"hel"),
        client_frame(PING, b"p"),
        client_frame(0x80, b"lo"),
    ]
    .concat();
    let table: &[Case] = &[
        ("text", client_frame(TEXT, b"hi"), vec![(TEXT, b"hi")]),
        (
            "binary",
            client_frame(BINARY, &[0, 255]),
            vec![(BINARY, &[0, 255])],
        ),
        ("ping", client_frame(PING, b"x"), vec![(PONG, b"x")]),
        ("unsolicited pong", client_frame(PONG, b"x"), vec![]),
        (
            "a fragmented message around a ping",
            fragmented,
            vec![(PONG, b"p"), (TEXT, b"hello")],
        ),
        (
            "two frames in one read",
            [client_frame(TEXT, b"a"), client_frame(TEXT, b"b")].concat(),
            vec![(TEXT, b"a"), (TEXT, b"b")],
        ),
    ];
    for (name, bytes, want) in table {
        let mut d = upgraded(&[]);
        d.feed(bytes);
        let (head, frames) = d.take_output();
        assert_eq!(head, None, "{name}");
        let frames: Vec<(u8, &[u8])> = frames.iter().map(|(b, p)| (*b, p.as_slice())).collect();
        assert_eq!(&frames, want, "{name}");
        assert!(d.session.is_open(), "{name}");
    }
}

#[test]
fn a_frame_split_anywhere_is_served_once_complete() {
    let frame = client_frame(TEXT, b"split me");
    for cut in 1..frame.len() {
        let mut d = upgraded(&[]);
        d.feed(&frame[..cut]);
        assert_eq!(d.take_output().1, vec![], "cut at {cut}");
        d.feed(&frame[cut..]);
        assert_eq!(
            d.take_output().1,
            vec![(TEXT, b"split me".to_vec())],
            "cut at {cut}"
        );
    }
}

#[test]
fn frames_pipelined_behind_the_head_are_served_with_it() {
    let mut d = driver(&[]);
    let mut bytes = upgrade_request("/echo", "");
    bytes.extend(client_frame(TEXT, b"early"));
    // Byte by byte: the head's end is found however it arrives.
    for byte in bytes {
        d.feed(&[byte]);
    }
    let (head, frames) = d.take_output();
    assert!(head.unwrap().starts_with("HTTP/1.1 101"));
    assert_eq!(frames, vec![(TEXT, b"early".to_vec())]);
    assert_eq!(d.session.stats().messages_in, 1);
}

#[test]
fn a_protocol_error_closes_with_its_code_and_drains() {
    let mut unmasked = client_frame(TEXT, b"x");
    unmasked[1] &= 0x7f;
    unmasked.drain(2..6);
    let table: &[(&str, Vec<u8>, u16)] = &[
        ("unmasked", unmasked, 1002),
        ("invalid UTF-8", client_frame(TEXT, &[0xff]), 1007),
        ("reserved opcode", client_frame(0x83, b""), 1002),
        ("RSV1 without an extension", client_frame(0xc1, b"x"), 1002),
        ("fragmented ping", client_frame(0x09, b""), 1002),
        ("continuation first", client_frame(0x80, b"x"), 1002),
        (
            "over the message size",
            client_frame(BINARY, &[0; 2048]),
            1009,
        ),
    ];
    for (name, bytes, code) in table {
        let mut d = upgraded(&["--max-message-size", "1024"]);
        d.feed(bytes);
        let (_, frames) = d.take_output();
        assert_eq!(frames.len(), 1, "{name}");
        assert_eq!(
            (frames[0].0, code_of(&frames[0].1)),
            (CLOSE, *code),
            "{name}"
        );
        assert!(!d.session.is_open(), "{name}");
        assert!(d.write_shut, "{name}: the shell ends TLS");
        // Data after the error is not read as frames.
        d.feed(&client_frame(TEXT, b"late"));
        assert_eq!(d.take_output().1, vec![], "{name}");
        d.hang_up();
        assert!(d.session.is_done(), "{name}");
        assert_eq!(
            d.session.farewell(),
            (CloseCode(*code), Initiator::Node),
            "{name}"
        );
    }
}

#[test]
fn a_client_close_is_answered_with_its_code() {
    let mut d = upgraded(&[]);
    d.feed(&close_frame(1000, "bye"));
    let (_, frames) = d.take_output();
    assert_eq!(frames, vec![(CLOSE, 1000u16.to_be_bytes().to_vec())]);
    assert!(d.write_shut);
    assert_eq!(d.session.farewell(), (CloseCode(1000), Initiator::Client));
    // A Close without a code is 1005 to the worker, answered with none.
    let mut d = upgraded(&[]);
    d.feed(&client_frame(CLOSE, b""));
    assert_eq!(d.take_output().1, vec![(CLOSE, vec![])]);
    assert_eq!(d.session.farewell().0, CloseCode::NO_STATUS);
}

#[test]
fn an_upgrade_is_refused_with_the_status_its_head_earns() {
    let long = format!("GET /echo HTTP/1.1\r\nX: {}\r\n", "a".repeat(9000));
    let table: &[(&str, Vec<u8>, u16)] = &[
        ("no route", upgrade_request("/nope", ""), 404),
        ("head over the cap", long.into_bytes(), 431),
        (
            "not an upgrade",
            b"GET /echo HTTP/1.1\r\nHost: h\r\n\r\n".to_vec(),
            400,
        ),
        (
            "a token without a verifier",
            upgrade_request("/echo", "Authorization: Bearer abc\r\n"),
            401,
        ),
        (
            "a scrape by a guest",
            b"GET /metrics HTTP/1.1\r\nHost: h\r\n\r\n".to_vec(),
            401,
        ),
    ];
    for (name, bytes, status) in table {
        let mut d = driver(&[]);
        d.feed(bytes);
        let (head, frames) = d.take_output();
        let head = head.unwrap_or_else(|| panic!("{name}: no HTTP answer"));
        assert!(
            head.starts_with(&format!("HTTP/1.1 {status} ")),
            "{name}: {head}"
        );
        assert!(frames.is_empty(), "{name}");
        assert_eq!(d.session.upgrade_answer(), Some(*status), "{name}");
        assert!(d.write_shut, "{name}");
        // The worker is never told an HTTP status as a close code.
        assert_eq!(d.session.farewell().0, CloseCode::ABNORMAL, "{name}");
    }
}

#[test]
fn the_clock_pings_an_idle_session_then_closes_it() {
    let mut d = upgraded(&[]);
    let config = d.rig.config.timeouts;
    assert_eq!(d.to_deadline(), Some(None));
    assert_eq!(d.take_output().1, vec![(PING, vec![])]);
    // The Pong's arrival counts as traffic: the idle clock restarts.
    d.feed(&client_frame(PONG, b""));
    d.advance(config.ping_interval - Duration::from_millis(1));
    assert_eq!(d.take_output().1, vec![]);
    // No answer to the next ping: idle, 1001, then the close timeout ends it.
    assert_eq!(d.to_deadline(), Some(None));
    assert_eq!(d.take_output().1, vec![(PING, vec![])]);
    assert_eq!(d.to_deadline(), Some(Some(Eviction::Idle)));
    let (_, frames) = d.take_output();
    assert_eq!((frames[0].0, code_of(&frames[0].1)), (CLOSE, 1001));
    assert_eq!(d.to_deadline(), Some(None));
    assert!(d.session.is_done());
    assert_eq!(d.session.eviction(), Some(Eviction::Idle));
    assert_eq!(d.to_deadline(), None);
}

#[test]
fn a_client_that_never_speaks_is_dropped_without_an_answer() {
    let mut d = driver(&[]);
    let evicted = d.to_deadline().expect("a deadline");
    assert_eq!(evicted, Some(Eviction::FirstByte));
    assert!(d.session.is_done());
    assert!(d.rig.take_out().is_empty(), "a slowloris gets no response");
    // Half a head, then silence, until the handshake timeout at most.
    let mut d = driver(&[]);
    d.feed(b"GET /echo HTTP/1.1\r\n");
    let mut evicted = None;
    for _ in 0..100 {
        evicted = d.to_deadline().flatten();
        if d.session.is_done() {
            break;
        }
    }
    assert!(matches!(
        evicted,
        Some(Eviction::SlowUpgrade | Eviction::HandshakeTimeout)
    ));
    assert!(d.rig.take_out().is_empty());
}

#[test]
fn a_rate_limited_client_is_closed_with_1008() {
    let mut d = upgraded(&["--max-messages-per-s", "2", "--message-burst", "2"]);
    let burst: Vec<u8> = (0..4).flat_map(|_| client_frame(TEXT, b"m")).collect();
    d.feed(&burst);
    let (_, frames) = d.take_output();
    assert_eq!(
        &frames[..2],
        &[(TEXT, b"m".to_vec()), (TEXT, b"m".to_vec())]
    );
    assert_eq!((frames[2].0, code_of(&frames[2].1)), (CLOSE, 1008));
    assert_eq!(d.session.eviction(), Some(Eviction::RateLimited));
}

#[test]
fn a_worker_route_opens_a_session_on_the_node_and_forwards_messages() {
    let mut d = worker_driver(&[]);
    d.feed(&upgrade_request("/w?room=1", ""));
    assert!(d.take_output().0.unwrap().starts_with("HTTP/1.1 101"));
    assert_eq!(d.rig.node.opened, vec![(1, "/w".to_owned())]);
    d.feed(&[client_frame(TEXT, b"one"), client_frame(BINARY, b"two")].concat());
    let messages = &d.rig.node.messages;
    assert_eq!(messages, &[(1, b"one".to_vec()), (1, b"two".to_vec())]);
    assert_eq!(
        d.take_output().1,
        vec![],
        "a worker answers, not the session"
    );
    // The worker is lost and none is left: 1013.
    let mut ctx = d.rig.ctx();
    let lost = Outcome::Close(CloseCode::TRY_AGAIN_LATER, "no worker");
    assert!(d.session.worker_lost(&mut ctx, lost));
    let (_, frames) = d.take_output();
    assert_eq!(code_of(&frames[0].1), 1013);
}

#[test]
fn a_full_pipe_holds_the_clients_input_until_the_node_resumes_it() {
    let mut d = worker_driver(&[]);
    d.feed(&upgrade_request("/w", ""));
    d.rig.node.full = true;
    d.feed(&[client_frame(TEXT, b"one"), client_frame(TEXT, b"two")].concat());
    assert!(d.session.holds_input());
    assert!(d.rig.node.messages.is_empty());
    // Nothing more is read while the pipe is full.
    d.feed(&client_frame(TEXT, b"three"));
    assert!(!d.kernel.is_empty());
    // "one" went out from the node's own queue; the rest follows in order.
    d.rig.node.full = false;
    d.resume();
    assert!(!d.session.holds_input());
    let sent: Vec<&[u8]> = d
        .rig
        .node
        .messages
        .iter()
        .map(|(_, m)| m.as_slice())
        .collect();
    assert_eq!(sent, [&b"two"[..], b"three"]);
    assert!(d.kernel.is_empty());
}

#[test]
fn a_service_without_a_worker_closes_the_session_with_1013() {
    let mut d = worker_driver(&[]);
    d.rig.node.no_workers = true;
    d.feed(&upgrade_request("/w", ""));
    let (head, frames) = d.take_output();
    assert!(head.unwrap().starts_with("HTTP/1.1 101"));
    assert_eq!(code_of(&frames[0].1), 1013);
}

#[test]
fn a_message_the_acl_forbids_closes_1008_and_reaches_no_worker() {
    let mut d = worker_driver(&[]);
    d.feed(&upgrade_request("/q", ""));
    d.take_output();
    d.feed(&[client_frame(TEXT, b"no"), close_frame(1000, "")].concat());
    let (_, frames) = d.take_output();
    assert_eq!(code_of(&frames[0].1), 1008);
    assert!(d.rig.node.messages.is_empty());
    // The client's Close behind the message completes the handshake.
    assert!(d.write_shut);
    assert_eq!(d.session.farewell(), (CloseCode(1008), Initiator::Node));
}

#[test]
fn the_auth_service_decides_a_guests_upgrade() {
    use crate::backend::message::{AuthReply, List};
    let reply = |allow, user| AuthReply {
        request: 1,
        allow,
        user,
        roles: List::from(&[][..]),
    };
    // (the reply, or none before the timeout; the status answered)
    let table: &[(&str, Option<AuthReply>, u16)] = &[
        ("allowed", Some(reply(true, "alice")), 101),
        ("denied", Some(reply(false, "")), 401),
        ("an allow without a user", Some(reply(true, "")), 401),
        ("no verdict in time", None, 503),
    ];
    for (name, reply, status) in table {
        let mut d = worker_driver(&["--auth-service", "auth"]);
        let mut bytes = upgrade_request("/w", "");
        bytes.extend(client_frame(TEXT, b"early"));
        d.feed(&bytes);
        assert_eq!(d.rig.node.asked, vec![(1, "auth".to_owned())], "{name}");
        assert!(d.session.holds_input(), "{name}");
        assert_eq!(d.rig.take_out(), b"", "{name}: nothing is answered yet");
        match reply {
            Some(reply) => {
                let mut ctx = d.rig.ctx();
                assert!(d.session.on_auth_reply(&mut ctx, reply), "{name}");
                d.resume();
            }
            None => {
                assert_eq!(d.to_deadline(), Some(None), "{name}");
                assert_eq!(d.rig.node.auth_done, vec![1], "{name}");
            }
        }
        let (head, _) = d.take_output();
        let head = head.unwrap();
        assert!(
            head.starts_with(&format!("HTTP/1.1 {status} ")),
            "{name}: {head}"
        );
        if *status == 101 {
            assert_eq!(d.session.identity().unwrap().user(), "alice");
            // The frame that waited behind the head reaches the worker.
            d.feed(b"");
            assert_eq!(d.rig.node.messages, vec![(1, b"early".to_vec())], "{name}");
        }
    }
}

#[test]
fn shutdown_closes_an_open_session_with_1001_and_drops_an_upgrade() {
    let mut d = upgraded(&[]);
    let mut ctx = d.rig.ctx();
    d.session.on_shutdown(&mut ctx);
    let (_, frames) = d.take_output();
    assert_eq!(code_of(&frames[0].1), 1001);
    // The peer's Close completes it.
    d.feed(&close_frame(1001, ""));
    assert!(d.write_shut);
    let mut d = driver(&[]);
    d.feed(b"GET /echo");
    let mut ctx = d.rig.ctx();
    d.session.on_shutdown(&mut ctx);
    assert!(d.session.is_done());
}

#[test]
fn a_worker_lost_while_the_session_closes_changes_nothing() {
    // Found by the session fuzz target: start_close on a session that was
    // not open replaced its phase with Done, dropping the connection with
    // its last bytes unsent and its peer's Close unread.
    let mut d = worker_driver(&[]);
    d.feed(&upgrade_request("/w", ""));
    let mut ctx = d.rig.ctx();
    d.session.on_shutdown(&mut ctx);
    let lost = Outcome::Close(CloseCode::SERVICE_RESTART, "worker lost");
    d.session.worker_lost(&mut ctx, lost);
    let (_, frames) = d.take_output();
    let codes: Vec<u16> = frames.iter().map(|(_, p)| code_of(p)).collect();
    assert_eq!(codes, [1001], "one Close, the first");
    assert!(!d.session.is_done());
    d.feed(&close_frame(1001, ""));
    assert!(d.write_shut);
    // The fuzzer's input: an upgrade waiting for the auth service.
    let mut d = worker_driver(&["--auth-service", "auth"]);
    d.feed(&upgrade_request("/q", "Sec-WebSocket-Protocol: x\r\n"));
    let mut ctx = d.rig.ctx();
    d.session.worker_lost(&mut ctx, lost);
    assert!(!d.session.is_done(), "the wait goes on");
    d.session.worker_lost(&mut ctx, Outcome::AuthLost);
    let head = d.take_output().0.unwrap();
    assert!(head.starts_with("HTTP/1.1 503 "), "{head}");
}

#[test]
fn a_session_that_ended_while_it_waited_for_the_auth_service_stays_ended() {
    // Found by the session fuzz target: the client hung up during the
    // wait, then the auth worker's loss refused the upgrade with 503,
    // reviving a session that was done.
    let mut d = worker_driver(&["--auth-service", "auth"]);
    d.feed(&upgrade_request("/w", ""));
    d.hang_up();
    assert!(d.session.is_done());
    let mut ctx = d.rig.ctx();
    d.session.worker_lost(&mut ctx, Outcome::AuthLost);
    assert!(d.session.is_done());
    assert!(d.rig.take_out().is_empty());
    assert!(d.rig.node.auth_done.is_empty());
}

/// The offer browsers send.
const OFFER: &str = "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n";

/// Upgrades `/echo` offering permessage-deflate; returns the 101's head.
fn upgraded_with_deflate(args: &[&str]) -> (Driver, String) {
    let mut d = driver(args);
    d.feed(&upgrade_request("/echo", OFFER));
    let (head, _) = d.take_output();
    (d, head.unwrap())
}

#[test]
fn a_compressed_message_is_inflated_served_and_answered_compressed() {
    use super::testing::{client_deflate, client_inflate};
    let (mut d, head) = upgraded_with_deflate(&[]);
    assert!(
        head.contains("\r\nSec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover; client_no_context_takeover"),
        "{head}"
    );
    let long = "a chat line that repeats, ".repeat(20);
    // (what the client sends, RSV1 on the answer, the answer inflated)
    let table: &[(&str, Vec<u8>, u8, &[u8])] = &[
        (
            "compressed, long",
            client_frame(0xc1, &client_deflate(long.as_bytes())),
            0xc1,
            long.as_bytes(),
        ),
        (
            "compressed, short",
            client_frame(0xc1, &client_deflate(b"hi")),
            0x81,
            b"hi",
        ),
        (
            "plain, long",
            client_frame(TEXT, long.as_bytes()),
            0xc1,
            long.as_bytes(),
        ),
        (
            "compressed binary",
            client_frame(0xc2, &client_deflate(&[0; 300])),
            0xc2,
            &[0; 300],
        ),
        (
            "compressed and fragmented",
            {
                let compressed = client_deflate(long.as_bytes());
                let (a, b) = compressed.split_at(compressed.len() / 2);
                [client_frame(0x41, a), client_frame(0x80, b)].concat()
            },
            0xc1,
            long.as_bytes(),
        ),
    ];
    for (name, bytes, first, want) in table {
        d.feed(bytes);
        let (_, frames) = d.take_output();
        assert_eq!(frames.len(), 1, "{name}");
        let (got_first, payload) = &frames[0];
        assert_eq!(got_first, first, "{name}");
        let payload = if got_first & 0x40 != 0 {
            client_inflate(payload)
        } else {
            payload.clone()
        };
        assert_eq!(&payload, want, "{name}");
    }
    assert!(d.session.is_open());
}

#[test]
fn a_compressed_message_that_breaks_a_rule_closes_with_its_code() {
    use super::testing::client_deflate;
    let bomb = client_deflate(&vec![0; 4 << 20]);
    let table: &[(&str, Vec<u8>, u16)] = &[
        (
            "inflates past --max-message-size",
            client_frame(0xc2, &bomb),
            1009,
        ),
        ("not DEFLATE", client_frame(0xc2, &[0xff; 8]), 1007),
        (
            "inflates to invalid UTF-8",
            client_frame(0xc1, &client_deflate(&[0xff, 0xfe])),
            1007,
        ),
        (
            "RSV1 on a continuation",
            [client_frame(0x01, b"a"), client_frame(0xc0, b"b")].concat(),
            1002,
        ),
        ("RSV1 on a ping", client_frame(0xc9, b""), 1002),
    ];
    for (name, bytes, code) in table {
        let (mut d, _) = upgraded_with_deflate(&["--max-message-size", "1048576"]);
        d.feed(bytes);
        let (_, frames) = d.take_output();
        assert_eq!(code_of(&frames[0].1), *code, "{name}");
        assert!(d.write_shut, "{name}");
    }
    // The ratio cap stops a bomb below the message size cap too.
    let (mut d, _) = upgraded_with_deflate(&["--deflate-max-ratio", "10"]);
    d.feed(&client_frame(0xc2, &bomb));
    assert_eq!(code_of(&d.take_output().1[0].1), 1009);
}

#[test]
fn without_the_extension_rsv1_is_a_protocol_error() {
    use super::testing::client_deflate;
    let table: &[&[&str]] = &[
        &["--permessage-deflate", "off"],
        &["--uncompressed-route", "/echo"],
    ];
    for args in table {
        let (mut d, head) = upgraded_with_deflate(args);
        assert!(
            !head.contains("Sec-WebSocket-Extensions"),
            "{args:?}: {head}"
        );
        d.feed(&client_frame(0xc1, &client_deflate(b"hi")));
        assert_eq!(code_of(&d.take_output().1[0].1), 1002, "{args:?}");
    }
}
