//! What test clients do with their WebSocket: read the next text, check
//! for silence, wait until a chat room has formed; and the TCP socket
//! under a raw or TLS client stream.

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use tungstenite::Message as Ws;

use super::{TlsStream, WebSocket, READ_TIMEOUT};

/// How long to watch for something that should not happen.
pub const QUIET: Duration = Duration::from_millis(300);

/// How long a room may take to form.
const LIMIT: Duration = Duration::from_secs(8);

/// The next text message (control frames skipped).
pub fn read_text(ws: &mut WebSocket) -> String {
    try_read_text(ws).unwrap_or_else(|other| panic!("expected text, got {other}"))
}

/// The next text message, or what came instead (control frames skipped).
pub fn try_read_text(ws: &mut WebSocket) -> Result<String, String> {
    loop {
        match ws.read() {
            Ok(Ws::Text(text)) => return Ok(text),
            Ok(Ws::Ping(_) | Ws::Pong(_)) => {}
            other => return Err(format!("{other:?}")),
        }
    }
}

/// Reads until the server's Close and answers it, as a client does: its
/// code (1005 when it has none) and reason.
pub fn closed(ws: &mut WebSocket) -> (u16, String) {
    loop {
        match ws.read().expect("a Close") {
            Ws::Close(frame) => {
                let _ = ws.flush();
                return frame.map_or((1005, String::new()), |f| {
                    (f.code.into(), f.reason.into_owned())
                });
            }
            Ws::Ping(_) | Ws::Pong(_) => {}
            other => panic!("expected Close, got {other:?}"),
        }
    }
}

/// Fails if a message arrives within [`QUIET`].
pub fn assert_silent(ws: &mut WebSocket) {
    match briefly(ws, WebSocket::read) {
        Err(tungstenite::Error::Io(e)) if e.kind() == ErrorKind::WouldBlock => {}
        other => panic!("expected nothing, got {other:?}"),
    }
}

/// `read` with the client's read timeout cut to [`QUIET`].
pub fn briefly<T>(ws: &mut WebSocket, read: impl FnOnce(&mut WebSocket) -> T) -> T {
    let timeout = |ws: &WebSocket, limit| ws.get_ref().sock.set_read_timeout(Some(limit));
    timeout(ws, QUIET).expect("timeout");
    let result = read(ws);
    timeout(ws, READ_TIMEOUT).expect("timeout");
    result
}

/// The next chat line that is not a `sync-` probe.
pub fn next_chat(ws: &mut WebSocket) -> String {
    loop {
        let text = read_text(ws);
        if !text.starts_with("sync-") {
            return text;
        }
    }
}

/// Probes the room until one probe from member 0 reaches every other
/// member: then every node has applied every SUBSCRIBE. Late copies of
/// earlier probes are skipped by [`next_chat`].
pub fn sync_room(members: &mut [WebSocket]) {
    let deadline = Instant::now() + LIMIT;
    for probe in 0.. {
        assert!(Instant::now() < deadline, "the room never formed");
        let text = format!("sync-{probe}");
        members[0].send(Ws::Text(text.clone())).expect("probe");
        let mut everyone = true;
        for ws in &mut members[1..] {
            everyone &= briefly(ws, |ws| loop {
                match ws.read() {
                    Ok(Ws::Text(got)) if got == text => break true,
                    Ok(_) => {}
                    Err(_) => break false,
                }
            });
        }
        if everyone {
            return;
        }
    }
}

/// Sends `text` and returns the text that comes back.
pub fn say(ws: &mut WebSocket, text: &str) -> String {
    ws.send(Ws::Text(text.into())).expect("send");
    read_text(ws)
}

/// A stream whose TCP socket can be reached, raw or under TLS.
pub trait Tcp: Read + Write {
    fn tcp(&self) -> &TcpStream;
}

impl Tcp for TcpStream {
    fn tcp(&self) -> &TcpStream {
        self
    }
}

impl Tcp for TlsStream {
    fn tcp(&self) -> &TcpStream {
        &self.sock
    }
}

/// The client-side port of a connection, which names it in the server log.
pub fn port(stream: &(impl Tcp + ?Sized)) -> u16 {
    stream.tcp().local_addr().unwrap().port()
}
