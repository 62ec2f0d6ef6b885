//! An averyws backend worker for chat rooms, one channel per room
//! (docs/protocol.md section 8).
//!
//! ```text
//! cargo run --release --example chat_worker -- \
//!     --connect tcp://127.0.0.1:7100 [--connect tcp://10.0.0.2:7100] \
//!     --service chat [--key-file FILE]
//! ```
//!
//! A client joins the room named by its query, `wss://host/chat?room=NAME`
//! (default `lobby`): the worker SUBSCRIBEs its connection to channel
//! `rooms/NAME`. Each message it sends is PUBLISHed to `rooms/NAME` on every
//! node, leaving the sender out on its own node, so room members on all
//! nodes get it once; each copy names the sender's user and roles, so
//! every (protocol v2) node checks that the sender may `publish` there. SIGINT or SIGTERM sends BYE to every node and exits.

use std::collections::HashMap;
use std::process::ExitCode;

use averyws::backend::message::ErrorCode;
use averyws::ws::CloseCode;
use averyws_worker::{self as worker, Connected, Event, Handler, NodeId, Worker};
use log::{debug, info, warn};

/// The room of a connection without a `room` query parameter.
const DEFAULT_ROOM: &str = "lobby";
/// Channel names are `rooms/` and the room name: at most 256 bytes.
const CHANNEL_PREFIX: &str = "rooms/";
/// Most connections tracked; beyond, new ones are closed with 1013.
const MAX_MEMBERS: usize = 1 << 20;

fn main() -> ExitCode {
    worker::cli_main("chat_worker", "chat", Chat::default())
}

/// The room of every connection this worker was assigned.
#[derive(Default)]
struct Chat {
    channels: HashMap<(NodeId, u64), Member>,
}

/// A connection in a room: its channel, and its CONNECT, whose user and
/// roles every node checks its publishes against.
struct Member {
    channel: String,
    connect: Connected,
}

impl Handler for Chat {
    fn handle(&mut self, worker: &mut Worker, event: Event) {
        match event {
            Event::Connect(connect) => self.join(worker, &connect),
            Event::Message {
                node,
                conn,
                payload,
            } => {
                let Some(member) = self.channels.get(&(node, conn)) else {
                    debug!("{node}: message from {conn}, which is in no room");
                    return;
                };
                let channel = &member.channel;
                if let Err(why) = worker.publish_as(channel, &member.connect, payload.as_payload())
                {
                    warn!("{node}: publish to {channel} failed: {why}");
                }
            }
            Event::Disconnect { node, conn, .. } => {
                self.channels.remove(&(node, conn));
            }
            Event::Error {
                node,
                code,
                detail,
                conns,
                ..
            } => {
                if code == ErrorCode::FORBIDDEN {
                    info!("{node}: not allowed into {detail}: {conns:?}");
                }
                if matches!(code, ErrorCode::FORBIDDEN | ErrorCode::NO_SUCH_CONNECTION) {
                    for conn in conns {
                        self.channels.remove(&(node, conn));
                    }
                } else {
                    warn!("{node}: ERROR {}: {detail}", code.0);
                }
            }
            Event::NodeReset { node } => self.channels.retain(|(on, _), _| *on != node),
            _ => {}
        }
    }
}

impl Chat {
    fn join(&mut self, worker: &mut Worker, connect: &Connected) {
        let (node, conn) = (connect.node, connect.conn);
        let refuse = |worker: &mut Worker, code: CloseCode, reason: &str| {
            if let Err(why) = worker.close(node, conn, code, reason) {
                warn!("{node}: closing {conn} failed: {why}");
            }
        };
        let Some(room) = room(connect) else {
            return refuse(worker, CloseCode::POLICY_VIOLATION, "invalid room name");
        };
        if self.channels.len() >= MAX_MEMBERS && !self.channels.contains_key(&(node, conn)) {
            return refuse(worker, CloseCode::TRY_AGAIN_LATER, "too many members");
        }
        let channel = format!("{CHANNEL_PREFIX}{room}");
        match worker.subscribe(node, conn, &channel) {
            Ok(()) => {
                info!("{node}: {conn} ({}) joins {channel}", connect.peer);
                let connect = connect.clone();
                self.channels
                    .insert((node, conn), Member { channel, connect });
            }
            Err(why) => warn!("{node}: subscribing {conn} to {channel} failed: {why}"),
        }
    }
}

/// The room a connection asked for: its `room` query parameter,
/// percent-decoded, or [`DEFAULT_ROOM`]; `None` if that is not UTF-8 or
/// too long for a channel name.
fn room(connect: &Connected) -> Option<String> {
    let raw = connect.query_param("room").unwrap_or_default();
    let room = percent_decode(raw)?;
    let room = if room.is_empty() {
        DEFAULT_ROOM.to_owned()
    } else {
        room
    };
    (CHANNEL_PREFIX.len() + room.len() <= 256).then_some(room)
}

/// `%XX` escapes decoded; `None` for a broken escape or non-UTF-8 result.
fn percent_decode(raw: &str) -> Option<String> {
    let mut bytes = Vec::with_capacity(raw.len());
    let mut rest = raw.as_bytes();
    while let Some((&byte, tail)) = rest.split_first() {
        if byte == b'%' {
            let hex = tail
                .get(..2)
                .filter(|hex| hex.iter().all(u8::is_ascii_hexdigit))?;
            bytes.push(u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()?);
            rest = &tail[2..];
        } else {
            bytes.push(byte);
            rest = tail;
        }
    }
    String::from_utf8(bytes).ok()
}
