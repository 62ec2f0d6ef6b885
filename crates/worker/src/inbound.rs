//! Reading each node's DEALER and acting on what it says: version
//! fallback, WELCOME and siblings, node restarts, events for the
//! application (docs/protocol.md sections 4, 9, 10, 13, 14).

use std::time::{Duration, Instant};

use log::{debug, error, info, warn};

use averyws_protocol::codec::{decode, parse_head};
use averyws_protocol::message::{ErrorCode, Message, MessageType, MAX_FRAMES, VERSION};

use crate::drops::verify_reason;
use crate::event::owned_headers;
use crate::{unix_ms, Connected, Event, NodeInfo, Phase, Worker, MIN_HEARTBEAT, RECV_BUDGET};

impl Worker {
    /// Read and handle messages until one makes an event, none is left,
    /// or the budget is spent.
    pub(crate) fn receive(&mut self) -> Option<Event> {
        // The end of the worker's turn: its replies go before it reads on.
        self.flush_all();
        let count = self.nodes.len();
        let mut frames = std::mem::take(&mut self.inbox);
        let mut event = None;
        'budget: for _ in 0..RECV_BUDGET {
            for step in 0..count {
                let index = (self.next_node + step) % count;
                let Some(too_many) = self.recv_one(index, &mut frames) else {
                    continue;
                };
                self.next_node = (index + 1) % count;
                event = self.handle(index, &frames, too_many);
                frames.clear();
                if event.is_some() || !self.pending.is_empty() {
                    break 'budget;
                }
                continue 'budget;
            }
            break;
        }
        self.inbox = frames;
        event
    }

    /// One message from node `index` into `frames`, keeping at most
    /// [`MAX_FRAMES`] of them: `Some(true)` when there were more.
    pub(crate) fn recv_one(
        &mut self,
        index: usize,
        frames: &mut Vec<zmq::Message>,
    ) -> Option<bool> {
        let Phase::Linked { socket, .. } = &self.nodes[index].phase else {
            return None;
        };
        frames.clear();
        let mut too_many = false;
        loop {
            let part = match socket.recv_msg(zmq::DONTWAIT) {
                Ok(part) => part,
                Err(zmq::Error::EAGAIN) if frames.is_empty() && !too_many => return None,
                Err(why) => {
                    warn!("{}: receive failed: {why}", self.nodes[index].endpoint);
                    return None;
                }
            };
            let more = part.get_more();
            if frames.len() < MAX_FRAMES {
                frames.push(part);
            } else {
                too_many = true;
            }
            if !more {
                return Some(too_many);
            }
        }
    }

    /// Check one message from node `index` (section 9's order, then the
    /// direction) and act on it.
    pub(crate) fn handle(
        &mut self,
        index: usize,
        frames: &[zmq::Message],
        too_many: bool,
    ) -> Option<Event> {
        if too_many {
            self.drop_message(index, "too many frames", "");
            return None;
        }
        let views: Vec<&[u8]> = frames.iter().map(|frame| &frame[..]).collect();
        let verdict = self
            .verifier
            .as_mut()
            .map(|verifier| verifier.verify(&views, unix_ms()));
        let sender = match verdict {
            Some(Ok(verified)) => Some(verified.sender),
            Some(Err(why)) => {
                self.drop_message(index, verify_reason(why), &why.to_string());
                return None;
            }
            None => {
                if parse_head(&views).is_ok_and(|head| head.signed) {
                    self.drop_message(index, "signed on an unsigned link", "");
                    return None;
                }
                None
            }
        };
        let message = match decode(&views) {
            Ok(message) => message,
            Err(why) => {
                self.drop_message(index, "malformed", &why.to_string());
                return None;
            }
        };
        if !message.message_type().sent_by_node() {
            let kind = format!("{:?}", message.message_type());
            self.drop_message(index, "type a node may not send", &kind);
            return None;
        }
        self.on_message(index, message, sender)
    }

    /// Act on an authentic, well-formed message from node `index`.
    /// `sender` is the signature's sender id, on a signed link.
    pub(crate) fn on_message(
        &mut self,
        index: usize,
        message: Message<'_>,
        sender: Option<u64>,
    ) -> Option<Event> {
        let node = &self.nodes[index];
        let Phase::Linked { welcome, .. } = &node.phase else {
            return None;
        };
        let known = welcome.as_ref().map(|info| info.boot);
        let id = node.id;
        // A signature binds the message to the sender's boot: it must be
        // the boot the message states, or the one this worker knows.
        let boot_ok = match (&message, sender) {
            (_, None) => true,
            (Message::Heartbeat { boot }, Some(sender)) => sender == *boot,
            (Message::Welcome(welcome), Some(sender)) => sender == welcome.boot,
            (Message::Error(error), _) if error.code == ErrorCode::UNKNOWN_PEER => true,
            (_, Some(sender)) => known.is_none_or(|boot| boot == sender),
        };
        if !boot_ok {
            self.drop_message(index, "signed by another boot", "");
            return None;
        }
        let node = &mut self.nodes[index];
        node.heard = Instant::now();
        node.backoff = self.timing.reconnect_initial;
        match message {
            Message::Heartbeat { boot } => {
                if known.is_some_and(|known| known != boot) {
                    self.restart(index, "HEARTBEAT from a new boot");
                }
                None
            }
            Message::Bye => {
                self.lose(index, Instant::now(), "it said BYE");
                None
            }
            Message::Welcome(welcome_message) => {
                let info = NodeInfo {
                    boot: welcome_message.boot,
                    heartbeat: Duration::from_millis(welcome_message.heartbeat_ms.into())
                        .max(MIN_HEARTBEAT),
                    liveness: welcome_message.liveness.max(1),
                    max_payload: welcome_message.max_payload,
                    name: welcome_message.node.to_owned(),
                    reactors: welcome_message.reactors,
                };
                let new_boot = known.is_some_and(|known| known != info.boot);
                if known.is_none() {
                    info!(
                        "{}: registered with node {:?} (boot {:016x}, heartbeat {} ms, liveness {}, max payload {})",
                        self.nodes[index].endpoint,
                        info.name,
                        info.boot,
                        info.heartbeat.as_millis(),
                        info.liveness,
                        info.max_payload
                    );
                }
                if new_boot {
                    // Section 4: drop the old boot's state and READY again
                    // (the new boot's WELCOME answers it, and changes
                    // nothing then).
                    self.restart(index, "WELCOME from a new boot");
                }
                let reactors = info.reactors;
                if let Phase::Linked { welcome, .. } = &mut self.nodes[index].phase {
                    *welcome = Some(info);
                }
                self.add_siblings(index, reactors);
                // Section 4: a signed node registers this worker once it has
                // a message signed for its boot; this HEARTBEAT is it.
                let heartbeat = Message::Heartbeat {
                    boot: self.instance,
                };
                if let Err(why) = self.transmit(index, &heartbeat, false) {
                    debug!("{}: HEARTBEAT not sent: {why}", self.nodes[index].endpoint);
                }
                None
            }
            Message::Error(error)
                if error.code == ErrorCode::UNSUPPORTED_VERSION
                    && error.about == MessageType::Ready as u8
                    && known.is_none() =>
            {
                self.downgrade(index, error.detail);
                None
            }
            Message::Error(error) if error.code == ErrorCode::UNKNOWN_PEER => {
                // Not registered yet: the READY repeated every heartbeat
                // interval is on its way, do not add to it.
                if known.is_some() {
                    self.restart(index, "ERROR UNKNOWN_PEER");
                }
                None
            }
            Message::Error(error) => {
                if error.code == ErrorCode::RESERVED_SERVICE {
                    error!(
                        "{}: READY refused, reserved service {:?}",
                        self.nodes[index].endpoint, error.detail
                    );
                }
                Some(Event::Error {
                    node: id,
                    code: error.code,
                    about: error.about,
                    detail: error.detail.to_owned(),
                    conns: error.conns.iter().collect(),
                })
            }
            _ if known.is_none() => {
                self.drop_message(index, "event before WELCOME", "");
                None
            }
            Message::Connect(connect) => Some(Event::Connect(Connected {
                node: id,
                conn: connect.conn,
                reassigned: connect.reassigned,
                service: connect.service.to_owned(),
                node_name: connect.node.to_owned(),
                peer: connect.peer.to_owned(),
                path: connect.path.to_owned(),
                query: connect.query.to_owned(),
                subprotocol: connect.subprotocol.to_owned(),
                user: connect.user.to_owned(),
                roles: connect.roles.iter().map(str::to_owned).collect(),
                headers: owned_headers(&connect.headers),
            })),
            Message::Message(data) => Some(Event::Message {
                node: id,
                conn: data.conn,
                payload: data.payload.into(),
            }),
            Message::Messages(batch) => {
                let events = batch.records().map(|(conn, payload)| Event::Message {
                    node: id,
                    conn,
                    payload: payload.into(),
                });
                self.pending.extend(events);
                self.pending.pop_front()
            }
            Message::Disconnect(disconnect) => Some(Event::Disconnect {
                node: id,
                conn: disconnect.conn,
                code: disconnect.code,
                initiator: disconnect.initiator,
                reason: disconnect.reason.to_owned(),
            }),
            Message::Auth(auth) => Some(Event::Auth {
                node: id,
                request: auth.request,
                path: auth.path.to_owned(),
                query: auth.query.to_owned(),
                peer: auth.peer.to_owned(),
                headers: owned_headers(&auth.headers),
            }),
            Message::AclResult(result) => Some(Event::AclResult {
                node: id,
                request: result.request,
                status: result.status,
                decision: result.decision,
                detail: result.detail.to_owned(),
                explanation: result.explanation.to_owned(),
            }),
            // `handle` let only node-sent types through.
            _ => None,
        }
    }

    /// The node speaks an older version than this link's READY (section
    /// 11): READY again in the highest older one it lists.
    pub(crate) fn downgrade(&mut self, index: usize, spoken: &str) {
        let node = &mut self.nodes[index];
        let older = spoken
            .split(' ')
            .filter_map(|version| version.parse::<u8>().ok())
            .filter(|&version| (VERSION..node.version).contains(&version))
            .max();
        let Some(version) = older else {
            warn!("{}: node speaks protocol {spoken:?} only", node.endpoint);
            return;
        };
        let without = match version {
            VERSION => "no batches, no siblings",
            _ => "no siblings: give every reactor's endpoint",
        };
        info!(
            "{}: node speaks protocol {spoken}: using {version}, {without}",
            node.endpoint
        );
        node.version = version;
        self.send_ready(index);
    }

    pub(crate) fn drop_message(&mut self, index: usize, reason: &'static str, detail: &str) {
        let endpoint = &self.nodes[index].endpoint;
        self.drops.record(index, endpoint, reason, detail);
    }
}
