//! RFC 6455 sections 5 and 7 over raw TLS against the real binary: framing,
//! fragmentation, control frames, UTF-8, close codes and size limits.
//!
//! Every table row runs on a connection of its own, so one failing rule
//! cannot hide another; the row name is in every assertion message.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::time::{Duration, Instant};

use common::{
    assert_echo, client_close, client_frame, client_frame_raw, client_header, close_code,
    expect_eof, next_close, raw_ws, read_frame, send, Server, TlsStream, BINARY, CLOSE,
    CONTINUATION, PING, PONG, TEXT,
};
use tungstenite::Message;

const MIB: usize = 1 << 20;

/// `len` bytes of valid UTF-8 mixing 1- to 4-byte code points.
fn text_of_len(len: usize) -> Vec<u8> {
    let mut text = String::with_capacity(len);
    for c in ['a', 'é', '€', '𝄞'].iter().cycle() {
        if text.len() + c.len_utf8() > len {
            break;
        }
        text.push(*c);
    }
    while text.len() < len {
        text.push('a');
    }
    text.into_bytes()
}

/// `len` bytes that cover every byte value.
fn binary_of_len(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 31 + 7) as u8).collect()
}

fn payload_for(opcode: u8, len: usize) -> Vec<u8> {
    if opcode == TEXT {
        text_of_len(len)
    } else {
        binary_of_len(len)
    }
}

/// Masked client frames, back to back: `(fin, opcode, payload)` each.
fn frames(list: &[(bool, u8, &[u8])]) -> Vec<u8> {
    list.iter()
        .flat_map(|(fin, opcode, payload)| client_frame(*fin, *opcode, payload))
        .collect()
}

/// Reads the next frame and checks it is `(opcode, payload)` with FIN set.
fn expect_frame(stream: &mut TlsStream, opcode: u8, payload: &[u8], row: &str) {
    let (fin, got_opcode, got) = read_frame(stream).unwrap_or_else(|e| panic!("{row}: {e}"));
    assert!(fin, "{row}: fragmented reply");
    assert_eq!(got_opcode, opcode, "{row}: opcode (payload {got:?})");
    assert!(got == payload, "{row}: payload {got:?}, want {payload:?}");
}

/// The Close a failed connection must get: status code and reason.
type Expected = (u16, &'static str);

/// Invalid UTF-8 in a text message or a Close reason.
const UTF8: Expected = (1007, "invalid utf-8");

/// A frame or message over its size limit.
const TOO_BIG: Expected = (1009, "message too big");

/// A protocol violation, for the reason `why`.
fn protocol(why: &'static str) -> Expected {
    (1002, why)
}

/// Sends each row's bytes on a fresh connection and checks that the next
/// frame back is a Close with the row's code and reason, and that the
/// server then ends TLS and TCP.
fn assert_failures(server: &Server, rows: &[(String, Vec<u8>, Expected)]) {
    for (name, bytes, (code, reason)) in rows {
        let mut ws = raw_ws(server, "/echo");
        send(&mut ws, bytes);
        let payload = next_close(&mut ws);
        assert_eq!(close_code(&payload), Some(*code), "{name}: {payload:?}");
        assert_eq!(
            String::from_utf8_lossy(&payload[2..]),
            *reason,
            "{name}: Close reason"
        );
        expect_eof(&mut ws);
    }
}

#[test]
fn payload_lengths_echo_byte_exact() {
    let server = Server::start(&[]);
    let mut ws = raw_ws(&server, "/echo");
    for len in [0, 1, 125, 126, 127, 65535, 65536, 16 * MIB] {
        for opcode in [TEXT, BINARY] {
            assert_echo(&mut ws, opcode, &payload_for(opcode, len));
        }
    }
}

#[test]
fn sixteen_mib_through_tungstenite() {
    let server = Server::start(&[]);
    let mut ws = server.ws("/echo");
    let binary = binary_of_len(16 * MIB);
    ws.send(Message::binary(binary.clone())).unwrap();
    assert!(ws.read().unwrap() == Message::binary(binary));
    let text = String::from_utf8(text_of_len(16 * MIB)).unwrap();
    ws.send(Message::text(text.clone())).unwrap();
    assert!(ws.read().unwrap() == Message::text(text));
    ws.close(None).unwrap();
}

#[test]
fn frames_written_one_byte_at_a_time() {
    let server = Server::start(&[]);
    let mut ws = raw_ws(&server, "/echo");
    let long = binary_of_len(300);
    type Replies<'a> = &'a [(u8, &'a [u8])];
    let rows: &[(&str, Vec<u8>, Replies)] = &[
        (
            "short text",
            client_frame(true, TEXT, b"Hello"),
            &[(TEXT, b"Hello")],
        ),
        (
            "binary with a 16-bit length",
            client_frame(true, BINARY, &long),
            &[(BINARY, &long)],
        ),
        (
            "ping",
            client_frame(true, PING, b"probe"),
            &[(PONG, b"probe")],
        ),
        (
            "fragmented text, a code point split across fragments",
            frames(&[(false, TEXT, b"h\xC3"), (true, CONTINUATION, b"\xA9llo")]),
            &[(TEXT, "héllo".as_bytes())],
        ),
    ];
    for (name, bytes, replies) in rows {
        for byte in bytes {
            send(&mut ws, &[*byte]);
        }
        for (opcode, payload) in *replies {
            expect_frame(&mut ws, *opcode, payload, name);
        }
    }
}

#[test]
fn ping_is_answered_with_its_payload() {
    let server = Server::start(&[]);
    let mut ws = raw_ws(&server, "/echo");
    let rows: &[(&str, Vec<u8>)] = &[
        ("empty", Vec::new()),
        ("text", b"hello".to_vec()),
        ("125 bytes, every value", binary_of_len(125)),
    ];
    for (name, payload) in rows {
        send(&mut ws, &client_frame(true, PING, payload));
        expect_frame(&mut ws, PONG, payload, name);
    }
}

#[test]
fn unsolicited_pong_is_ignored() {
    let server = Server::start(&[]);
    let mut ws = raw_ws(&server, "/echo");
    send(&mut ws, &client_frame(true, PONG, b"unsolicited"));
    send(&mut ws, &client_frame(true, PONG, b""));
    assert_echo(&mut ws, TEXT, b"after");
    // Nothing was queued between the echo and this probe's answer.
    send(&mut ws, &client_frame(true, PING, b"probe"));
    expect_frame(&mut ws, PONG, b"probe", "probe");
}

#[test]
fn interleaved_ping_is_answered_before_the_message() {
    let server = Server::start(&[]);
    let mut ws = raw_ws(&server, "/echo");
    let frames = [
        client_frame(false, TEXT, b"Hel"),
        client_frame(true, PING, b"mid"),
        client_frame(false, CONTINUATION, b"l"),
        client_frame(true, PONG, b"ignored"),
        client_frame(true, CONTINUATION, b"o"),
    ];
    for one_write in [true, false] {
        let row = if one_write {
            "one write"
        } else {
            "a write per frame"
        };
        if one_write {
            send(&mut ws, &frames.concat());
        } else {
            for frame in &frames {
                send(&mut ws, frame);
            }
        }
        expect_frame(&mut ws, PONG, b"mid", row);
        expect_frame(&mut ws, TEXT, b"Hello", row);
    }
}

#[test]
fn utf8_split_at_every_byte_boundary_across_fragments() {
    let server = Server::start(&[]);
    let mut ws = raw_ws(&server, "/echo");
    let text = "aé€𝄞z".as_bytes();
    for split in 0..=text.len() {
        send(&mut ws, &client_frame(false, TEXT, &text[..split]));
        send(&mut ws, &client_frame(true, CONTINUATION, &text[split..]));
        expect_frame(&mut ws, TEXT, text, &format!("split at {split}"));
    }
}

#[test]
fn protocol_violations_fail_the_connection() {
    let server = Server::start(&[]);
    let mut rows: Vec<(String, Vec<u8>, Expected)> = Vec::new();
    for (rsv, bit) in [("RSV1", 0x40), ("RSV2", 0x20), ("RSV3", 0x10)] {
        rows.push((
            format!("{rsv} on text"),
            client_frame_raw(0x80 | bit | TEXT, b"x"),
            protocol("reserved bits set"),
        ));
        rows.push((
            format!("{rsv} on ping"),
            client_frame_raw(0x80 | bit | PING, b""),
            protocol("reserved bits set"),
        ));
    }
    for opcode in (0x3..=0x7).chain(0xB..=0xF) {
        rows.push((
            format!("reserved opcode {opcode:#x}"),
            client_frame(true, opcode, b"x"),
            protocol("reserved opcode"),
        ));
    }
    let fixed: Vec<(&str, Vec<u8>, Expected)> = vec![
        (
            "unmasked text",
            vec![0x81, 0x02, b'h', b'i'],
            protocol("unmasked client frame"),
        ),
        (
            "unmasked ping",
            vec![0x89, 0x00],
            protocol("unmasked client frame"),
        ),
        (
            "fragmented ping",
            client_frame(false, PING, b"a"),
            protocol("fragmented control frame"),
        ),
        (
            "fragmented close",
            client_frame(false, CLOSE, &1000u16.to_be_bytes()),
            protocol("fragmented control frame"),
        ),
        (
            "ping of 126 bytes",
            client_frame(true, PING, &[b'p'; 126]),
            protocol("control frame too long"),
        ),
        (
            "pong of 126 bytes",
            client_frame(true, PONG, &[b'p'; 126]),
            protocol("control frame too long"),
        ),
        (
            "close of 126 bytes",
            client_close(1000, &[b'r'; 124]),
            protocol("control frame too long"),
        ),
        (
            "continuation without a message",
            client_frame(true, CONTINUATION, b"x"),
            protocol("continuation without a message"),
        ),
        (
            "non-final continuation without a message",
            client_frame(false, CONTINUATION, b"x"),
            protocol("continuation without a message"),
        ),
        (
            "text inside a fragmented text message",
            frames(&[(false, TEXT, b"a"), (true, TEXT, b"b")]),
            protocol("new message inside a fragmented message"),
        ),
        (
            "binary inside a fragmented text message",
            frames(&[(false, TEXT, b"a"), (true, BINARY, b"b")]),
            protocol("new message inside a fragmented message"),
        ),
        (
            "64-bit length with the top bit set",
            client_header(0x82, 1 << 63),
            protocol("64-bit payload length has its top bit set"),
        ),
        // Invalid UTF-8 in complete messages.
        (
            "overlong C0 AF",
            client_frame(true, TEXT, b"\xC0\xAF"),
            UTF8,
        ),
        (
            "surrogate ED A0 80",
            client_frame(true, TEXT, b"\xED\xA0\x80"),
            UTF8,
        ),
        (
            "above U+10FFFF: F4 90 80 80",
            client_frame(true, TEXT, b"\xF4\x90\x80\x80"),
            UTF8,
        ),
        (
            "lone continuation byte",
            client_frame(true, TEXT, b"a\x80"),
            UTF8,
        ),
        ("byte FF", client_frame(true, TEXT, b"\xFF"), UTF8),
        (
            "truncated at the end of a message",
            client_frame(true, TEXT, b"a\xE2\x82"),
            UTF8,
        ),
        (
            "truncated at the end of a fragmented message",
            frames(&[(false, TEXT, b"\xE2\x82"), (true, CONTINUATION, b"")]),
            UTF8,
        ),
        (
            "split code point completed wrongly",
            frames(&[(false, TEXT, b"\xE2"), (true, CONTINUATION, b"\x82a")]),
            UTF8,
        ),
        // Fail fast (RFC 6455 section 8.1): the rest is never sent, so only
        // a server that judges the bytes it has can answer.
        (
            "fail fast: overlong in a first fragment",
            client_frame(false, TEXT, b"ok\xC0\xAF"),
            UTF8,
        ),
        (
            "fail fast: F4 90 in a first fragment",
            client_frame(false, TEXT, b"ok\xF4\x90"),
            UTF8,
        ),
        (
            "fail fast: ED A0 in a first fragment",
            client_frame(false, TEXT, b"\xED\xA0"),
            UTF8,
        ),
        (
            "fail fast: bad second fragment",
            frames(&[(false, TEXT, b"ok"), (false, CONTINUATION, b"\xFF")]),
            UTF8,
        ),
        (
            "fail fast: final frame whose payload has not all arrived",
            client_frame(true, TEXT, b"\xC0\xAF and the rest")[..2 + 4 + 2].to_vec(),
            UTF8,
        ),
        (
            "frame over the default 16 MiB cap, header alone",
            client_header(0x80 | BINARY, 16 << 20 | 1),
            TOO_BIG,
        ),
    ];
    rows.extend(
        fixed
            .into_iter()
            .map(|(name, bytes, code)| (name.to_owned(), bytes, code)),
    );
    assert_failures(&server, &rows);
}

#[test]
fn continuation_after_a_finished_message_is_refused() {
    let server = Server::start(&[]);
    let mut ws = raw_ws(&server, "/echo");
    send(&mut ws, &client_frame(false, BINARY, b"a"));
    send(&mut ws, &client_frame(true, CONTINUATION, b"b"));
    expect_frame(&mut ws, BINARY, b"ab", "fragmented message");
    send(&mut ws, &client_frame(true, CONTINUATION, b"c"));
    let close = next_close(&mut ws);
    assert_eq!(close_code(&close), Some(1002));
    assert_eq!(&close[2..], b"continuation without a message");
    expect_eof(&mut ws);
}

#[test]
fn close_codes() {
    /// What the server must answer to a Close.
    #[derive(Debug)]
    enum Reply {
        /// A Close with this code and reason.
        Close(u16, &'static str),
        Empty,
    }
    let server = Server::start(&[]);
    let mut rows: Vec<(String, Vec<u8>, Reply)> = Vec::new();
    for code in [1000, 1001, 1003]
        .into_iter()
        .chain(1007..=1014)
        .chain([3000, 4999])
    {
        rows.push((
            format!("{code} echoed"),
            client_close(code, b"bye"),
            Reply::Close(code, ""),
        ));
    }
    for code in [0, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000, 65535] {
        rows.push((
            format!("{code} refused"),
            client_close(code, b""),
            Reply::Close(1002, "invalid close code"),
        ));
    }
    rows.extend([
        (
            "no reason".to_owned(),
            client_close(1000, b""),
            Reply::Close(1000, ""),
        ),
        (
            "123-byte UTF-8 reason".to_owned(),
            client_close(1000, &text_of_len(123)),
            Reply::Close(1000, ""),
        ),
        (
            "empty close".to_owned(),
            client_frame(true, CLOSE, b""),
            Reply::Empty,
        ),
        (
            "one-byte payload".to_owned(),
            client_frame(true, CLOSE, &[0x03]),
            Reply::Close(1002, "close payload of one byte"),
        ),
        (
            "reason not UTF-8".to_owned(),
            client_close(1000, b"bad \xC0\xAF"),
            Reply::Close(1007, "invalid utf-8"),
        ),
        (
            "reason cut inside a code point".to_owned(),
            client_close(1000, b"\xE2\x82"),
            Reply::Close(1007, "invalid utf-8"),
        ),
        (
            "close in the middle of a fragmented message".to_owned(),
            [client_frame(false, TEXT, b"half"), client_close(1000, b"")].concat(),
            Reply::Close(1000, ""),
        ),
    ]);
    for (name, bytes, reply) in &rows {
        let mut ws = raw_ws(&server, "/echo");
        send(&mut ws, bytes);
        let payload = next_close(&mut ws);
        match reply {
            Reply::Close(code, reason) => {
                assert_eq!(close_code(&payload), Some(*code), "{name}: {payload:?}");
                assert_eq!(
                    String::from_utf8_lossy(&payload[2..]),
                    *reason,
                    "{name}: Close reason"
                );
            }
            Reply::Empty => assert!(payload.is_empty(), "{name}: {payload:?}"),
        }
        expect_eof(&mut ws);
    }
}

#[test]
fn size_limits_are_enforced_exactly() {
    let server = Server::start(&["--max-frame-size", "1024", "--max-message-size", "4096"]);
    // Four 1024-byte fragments (4096 bytes), and one more byte if `over`.
    let fragments = |opcode: u8, over: bool| {
        let mut frames = client_frame(false, opcode, &payload_for(opcode, 1024));
        for i in 1..4 {
            let fin = i == 3 && !over;
            frames.extend(client_frame(fin, CONTINUATION, &[b'a'; 1024]));
        }
        if over {
            frames.extend(client_frame(true, CONTINUATION, b"a"));
        }
        frames
    };

    // At the limits: echoed.
    let mut ws = raw_ws(&server, "/echo");
    assert_echo(&mut ws, BINARY, &binary_of_len(1024));
    assert_echo(&mut ws, TEXT, &text_of_len(1024));
    for opcode in [TEXT, BINARY] {
        send(&mut ws, &fragments(opcode, false));
        let mut whole = payload_for(opcode, 1024);
        whole.extend_from_slice(&[b'a'; 3 * 1024]);
        expect_frame(&mut ws, opcode, &whole, "4096-byte message in 4 frames");
    }

    // One byte over: 1009.
    let rows: Vec<(String, Vec<u8>, Expected)> = vec![
        (
            "binary frame of 1025 bytes".into(),
            client_frame(true, BINARY, &binary_of_len(1025)),
            TOO_BIG,
        ),
        (
            "text frame of 1025 bytes".into(),
            client_frame(true, TEXT, &text_of_len(1025)),
            TOO_BIG,
        ),
        (
            "1025-byte frame refused from its header alone".into(),
            client_header(0x80 | BINARY, 1025),
            TOO_BIG,
        ),
        (
            "first fragment of 1025 bytes".into(),
            client_frame(false, TEXT, &text_of_len(1025)),
            TOO_BIG,
        ),
        (
            "binary message of 4097 bytes".into(),
            fragments(BINARY, true),
            TOO_BIG,
        ),
        (
            "text message of 4097 bytes".into(),
            fragments(TEXT, true),
            TOO_BIG,
        ),
    ];
    assert_failures(&server, &rows);
}

/// Messages pipelined faster than they are read: the server's output backs
/// up past its cap, it stops reading (TCP backpressure), and it must resume
/// once the client drains. Every echo arrives, in order.
#[test]
fn pipelined_messages_flow_under_backpressure() {
    let server = Server::start(&[]);
    let mut ws = raw_ws(&server, "/echo");
    ws.sock.set_nonblocking(true).unwrap();
    ws.conn.set_buffer_limit(None);
    let mut expected = Vec::new();
    for i in 0..16_000u32 {
        let message: Vec<u8> = i.to_be_bytes().iter().copied().cycle().take(1024).collect();
        ws.conn
            .writer()
            .write_all(&client_frame(true, BINARY, &message))
            .unwrap();
        expected.extend_from_slice(&[0x82, 126, 0x04, 0x00]);
        expected.extend_from_slice(&message);
    }
    let mut received = Vec::new();
    let mut buf = vec![0u8; 64 << 10];
    let deadline = Instant::now() + Duration::from_secs(15);
    while received.len() < expected.len() {
        assert!(
            Instant::now() < deadline,
            "stalled after {} of {} bytes",
            received.len(),
            expected.len()
        );
        while ws.conn.wants_write() {
            match ws.conn.write_tls(&mut ws.sock) {
                Ok(_) => {}
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) => panic!("write: {e}"),
            }
        }
        match ws.conn.read_tls(&mut ws.sock) {
            Ok(0) => panic!("EOF after {} bytes", received.len()),
            Ok(_) => {
                ws.conn.process_new_packets().unwrap();
                while let Ok(n @ 1..) = ws.conn.reader().read(&mut buf) {
                    received.extend_from_slice(&buf[..n]);
                }
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(1))
            }
            Err(e) => panic!("read: {e}"),
        }
    }
    assert!(received == expected, "echoes differ or are out of order");
}
