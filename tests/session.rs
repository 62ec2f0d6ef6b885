//! One connection's state machine, seen from the wire: what the server
//! sends back for a sequence of client writes, how the connection ends, and
//! what the access log says about it. Each row pins a transition of today's
//! phases (open, our Close sent, the peer's Close received, failed) so that
//! restructuring the connection cannot change them unnoticed.

mod common;

use common::clients::port;
use common::evictions::access_line;
use common::{
    client_close, client_frame, raw_ws, read_frame, send, Server, TempDir, BINARY, CLOSE,
    CONTINUATION, PING, PONG, TEXT,
};

/// What the client saw, in order.
#[derive(Debug, PartialEq, Eq)]
enum Seen {
    /// A frame (FIN set) with this opcode and payload.
    Frame(u8, Vec<u8>),
    /// The end of the connection: TLS close_notify, then TCP EOF.
    End,
}

/// A frame of `opcode` carrying `payload`, as the client expects to see it.
fn frame(opcode: u8, payload: &[u8]) -> Seen {
    Seen::Frame(opcode, payload.to_vec())
}

/// A Close frame with `code` and `reason`, as the client expects to see it.
fn close(code: u16, reason: &str) -> Seen {
    Seen::Frame(CLOSE, [&code.to_be_bytes()[..], reason.as_bytes()].concat())
}

/// Reads every frame the server sends until the connection ends cleanly;
/// anything else (a timeout, a reset, a fragment) fails the row.
fn transcript(ws: &mut common::TlsStream, row: &str) -> Vec<Seen> {
    let mut seen = Vec::new();
    loop {
        match read_frame(ws) {
            Ok((fin, opcode, payload)) => {
                assert!(fin, "{row}: a fragment from the server");
                seen.push(Seen::Frame(opcode, payload));
            }
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                let mut byte = [0u8; 1];
                let tcp = std::io::Read::read(&mut ws.sock, &mut byte);
                assert!(
                    matches!(tcp, Ok(0)),
                    "{row}: TCP after close_notify: {tcp:?}"
                );
                seen.push(Seen::End);
                return seen;
            }
            Err(e) => panic!("{row}: {e} after {seen:?}"),
        }
    }
}

/// A row: its name, the client's writes (each flushed on its own), what
/// the client must see, and how the access-log line must end.
type Row = (&'static str, Vec<Vec<u8>>, Vec<Seen>, &'static str);

/// Runs each row on a fresh `/echo` connection to `server`.
fn assert_rows(server: &Server, rows: Vec<Row>) {
    for (name, writes, want, log_end) in rows {
        let mut ws = raw_ws(server, "/echo");
        let port = port(&ws);
        for bytes in &writes {
            send(&mut ws, bytes);
        }
        assert_eq!(transcript(&mut ws, name), want, "{name}");
        // Hang up as a client does once the server is done, so the server
        // need not wait out its closing-handshake timeout.
        drop(ws);
        let line = access_line(server, port);
        assert!(
            line.ends_with(log_end),
            "{name}: `{line}` does not end with `{log_end}`"
        );
    }
}

#[test]
fn an_open_session_ends_as_its_frames_say() {
    let server = Server::start(&[]);
    let text = |payload: &[u8]| client_frame(true, TEXT, payload);
    let rows: Vec<Row> = vec![
        (
            "two messages in one write, then Close",
            vec![[
                text(b"a"),
                client_frame(true, BINARY, b"b"),
                client_close(1000, b""),
            ]
            .concat()],
            vec![
                frame(TEXT, b"a"),
                frame(BINARY, b"b"),
                close(1000, ""),
                Seen::End,
            ],
            " messages_in=2 messages_out=2 close=1000 closed_by=client evicted=-",
        ),
        (
            "what follows the client's Close is discarded",
            vec![[
                client_close(1001, b"bye"),
                text(b"late"),
                client_frame(true, PING, b"p"),
            ]
            .concat()],
            vec![close(1001, ""), Seen::End],
            " messages_in=0 messages_out=0 close=1001 closed_by=client evicted=-",
        ),
        (
            "the client's Close in a later write",
            vec![text(b"first"), client_close(1000, b"done")],
            vec![frame(TEXT, b"first"), close(1000, ""), Seen::End],
            " messages_in=1 messages_out=1 close=1000 closed_by=client evicted=-",
        ),
        (
            "a message cut short by the client's Close is not delivered",
            vec![client_frame(false, TEXT, b"half"), client_close(1000, b"")],
            vec![close(1000, ""), Seen::End],
            " messages_in=0 messages_out=0 close=1000 closed_by=client evicted=-",
        ),
        (
            "a ping between fragments, then the rest and Close",
            vec![
                client_frame(false, BINARY, b"one "),
                client_frame(true, PING, b"are you there"),
                client_frame(true, CONTINUATION, b"two"),
                client_frame(true, PONG, b"unsolicited"),
                client_close(1000, b""),
            ],
            vec![
                frame(PONG, b"are you there"),
                frame(BINARY, b"one two"),
                close(1000, ""),
                Seen::End,
            ],
            " messages_in=1 messages_out=1 close=1000 closed_by=client evicted=-",
        ),
        (
            "a violation after a good message: echo, then 1002",
            vec![[text(b"ok"), vec![0x81, 0x00]].concat()],
            vec![
                frame(TEXT, b"ok"),
                close(1002, "unmasked client frame"),
                Seen::End,
            ],
            " messages_in=1 messages_out=1 close=1002 closed_by=server evicted=-",
        ),
        (
            "what follows a violation is discarded, its Close too",
            vec![vec![0x81, 0x00], text(b"after"), client_close(1000, b"")],
            vec![close(1002, "unmasked client frame"), Seen::End],
            " messages_in=0 messages_out=0 close=1002 closed_by=server evicted=-",
        ),
        (
            "a violation inside a fragmented message",
            vec![
                client_frame(false, TEXT, b"a"),
                client_frame(false, PING, b""),
            ],
            vec![close(1002, "fragmented control frame"), Seen::End],
            " messages_in=0 messages_out=0 close=1002 closed_by=server evicted=-",
        ),
    ];
    assert_rows(&server, rows);
}

/// After the server's own Close (a message the ACL refuses), the client's
/// data and pings are discarded, a second violation draws no second Close,
/// and the client's Close ends the connection at once.
#[test]
fn after_the_servers_close_only_the_clients_close_counts() {
    let dir = TempDir::new();
    let acl = dir.path().join("connect-only.acl");
    std::fs::write(&acl, "allow guest /echo connect\n").expect("write the ACL");
    let server = Server::start(&["--acl", &common::utf8(&acl)]);
    let refused = client_frame(true, TEXT, b"refused");
    let rows: Vec<Row> = vec![
        (
            "data and a ping, then Close",
            vec![
                refused.clone(),
                client_frame(true, BINARY, b"discarded"),
                client_frame(true, PING, b"unanswered"),
                client_close(1000, b""),
            ],
            vec![close(1008, "forbidden"), Seen::End],
            " messages_in=0 messages_out=0 close=1008 closed_by=server evicted=-",
        ),
        (
            "a violation draws no second Close",
            vec![refused, vec![0x81, 0x00]],
            vec![close(1008, "forbidden"), Seen::End],
            " messages_in=0 messages_out=0 close=1008 closed_by=server evicted=-",
        ),
    ];
    assert_rows(&server, rows);
}
