//! One message from a worker, in the order of docs/protocol.md section
//! 9: version, signature, decoding, the sender's side, registration, then
//! the command. Whatever fails is counted and dropped, answered only as
//! section 10 allows; nothing fails the link.

use std::time::Instant;

use log::{debug, info, warn};

use super::channels::SubscribeError;
use super::workers::{Proposal, Registered, WorkerRef};
use super::{Dropped, Edge, Followup, Lost, Node, Time, Wire};
use crate::access;
use crate::backend::codec::decode;
use crate::backend::message::{
    is_reserved_service, is_spoken, Batch, ErrorCode, ErrorReply, Message, MessageType, Payload,
    Publish, Ready, FLAG_SIGNED, MAX_CONN_IDS, VERSION, VERSIONS_SPOKEN,
};
use crate::backend::signing::{Verified, VerifyError};

impl Node {
    /// Handles one multipart message from the peer behind `routing_id`
    /// (`frames` after the routing id). Deliveries go to `edge` at once;
    /// what needs the node again comes back as a [`Followup`].
    pub fn handle<'m>(
        &mut self,
        wire: &mut impl Wire,
        edge: &mut impl Edge,
        routing_id: &[u8],
        frames: &'m [&'m [u8]],
        time: Time,
    ) -> Followup<'m> {
        let header = frames.first().copied().unwrap_or_default();
        let about = header.get(1).copied().unwrap_or(0);
        // Answers go in the version of what they answer, v1 if unknown.
        let (version, unknown_version) = match header.first() {
            Some(&version) if is_spoken(version) => (version, false),
            Some(_) => (VERSION, true),
            None => (VERSION, false),
        };
        if unknown_version {
            // Unverifiable, so addressed to nobody in particular.
            let answer = (ErrorCode::UNSUPPORTED_VERSION, about, VERSIONS_SPOKEN);
            self.answer(wire, routing_id, (0, VERSION), answer, time);
        }
        let verified = match self.verify(frames, time) {
            Ok(verified) => verified,
            Err(Dropped::Verify(stale @ VerifyError::WrongRecipient { sender, fresh })) => {
                // Authentic, but for another boot of this node; an old
                // capture replayed gets no answer.
                if fresh {
                    let answer = (ErrorCode::UNKNOWN_PEER, about, "");
                    self.answer(wire, routing_id, (sender, version), answer, time);
                }
                self.drop_received(Dropped::Verify(stale), time.now);
                return Followup::Done;
            }
            Err(dropped) => {
                self.drop_received(dropped, time.now);
                return Followup::Done;
            }
        };
        let sender = verified.map_or(0, |verified| verified.sender);
        let message = match decode(frames) {
            Ok(message) => message,
            Err(e) => {
                let registered = self.workers.by_routing_id(routing_id).is_some();
                if registered && !unknown_version {
                    let why = e.to_string();
                    let answer = (ErrorCode::MALFORMED, about, why.as_str());
                    self.answer(wire, routing_id, (sender, version), answer, time);
                }
                self.drops.count(format!("malformed: {e}"), time.now);
                return Followup::Done;
            }
        };
        let kind = message.message_type();
        if !kind.sent_by_worker() {
            self.drops
                .count(format!("{kind:?} from a worker"), time.now);
            return Followup::Done;
        }
        let mut worker = self.workers.by_routing_id(routing_id);
        // Signed, only the pipe's registered instance speaks for it.
        if verified.is_some_and(|v| worker.is_some_and(|w| w.instance != v.sender)) {
            worker = None;
        }
        let mut replaced = None;
        if worker.is_none() && kind != MessageType::Ready {
            // Section 4: a READY on a signed link counts once its sender
            // signs something for this boot (a restarted worker's new
            // instance on the same pipe then replaces the old one).
            if let Some(proposal) =
                verified.and_then(|v| self.workers.confirm(routing_id, v.sender))
            {
                (worker, replaced) = self.enrol(routing_id, proposal, time.now);
            }
        }
        log::trace!("backend: {kind:?} from {worker:?}");
        let followup = match (message, worker) {
            (Message::Ready(ready), _) => self.on_ready(wire, routing_id, version, ready, time),
            (_, None) => {
                // A node restart or an expired worker: it must READY again.
                let answer = (ErrorCode::UNKNOWN_PEER, kind as u8, "");
                self.answer(wire, routing_id, (sender, version), answer, time);
                Followup::Done
            }
            (Message::AclCommand(command), Some(worker)) => {
                self.workers.heard(worker, time.now);
                let admin = verified.is_some_and(|v| self.is_admin(v));
                Followup::AclCommand {
                    worker,
                    command,
                    admin,
                }
            }
            (message, Some(worker)) => {
                self.workers.heard(worker, time.now);
                self.command(wire, edge, worker, message, time)
            }
        };
        match (replaced, followup) {
            (Some(lost), Followup::Done) => Followup::Lost(self.resolve(wire, lost, time)),
            (Some(lost), other) => {
                // Cannot happen (a confirmation registers, it is no READY)
                // but must not lose the old worker's clients either.
                self.lost.push((lost.worker, "replaced by a new instance"));
                other
            }
            (None, other) => other,
        }
    }

    /// Registers, updates or (signed, unknown) proposes the worker, who
    /// speaks `version` from now on (docs/protocol.md section 13).
    fn on_ready<'m>(
        &mut self,
        wire: &mut impl Wire,
        routing_id: &[u8],
        version: u8,
        ready: Ready<'_>,
        time: Time,
    ) -> Followup<'m> {
        let to = (ready.instance, version);
        if let Some(reserved) = ready.services.iter().find(|s| is_reserved_service(s)) {
            warn!(
                "backend: worker {} claims reserved service {reserved}",
                ready.name
            );
            let about = MessageType::Ready as u8;
            let reply = error(ErrorCode::RESERVED_SERVICE, about, reserved, &[]);
            self.send_to_peer(wire, routing_id, to, &reply, time);
            return Followup::Done;
        }
        let services = ready.services.iter().map(str::to_owned);
        let proposal = Proposal::new(ready.instance, version, ready.name, services, time.now);
        let known = self
            .workers
            .by_routing_id(routing_id)
            .is_some_and(|w| w.instance == ready.instance);
        if self.is_signed() && !known {
            // Signed for recipient 0, so it may be a capture replayed from
            // another node's link: wait for a message signed for this boot.
            debug!(
                "backend: worker {} said READY; registered once it signs for this boot",
                ready.name
            );
            self.workers.propose(routing_id, proposal);
            self.welcome(wire, routing_id, to, time);
            return Followup::Done;
        }
        let (registered, replaced) = self.enrol(routing_id, proposal, time.now);
        if registered.is_some() {
            self.welcome(wire, routing_id, to, time);
        }
        match replaced {
            Some(lost) => Followup::Lost(self.resolve(wire, lost, time)),
            None => Followup::Done,
        }
    }

    /// Registers a worker (or updates a known one) and says so; a worker
    /// this one replaces on the same pipe comes back as lost.
    fn enrol(
        &mut self,
        routing_id: &[u8],
        ready: Proposal,
        now: Instant,
    ) -> (Option<WorkerRef>, Option<Lost>) {
        let mut registered = self.workers.register(routing_id, &ready, now);
        let mut replaced = None;
        if let Registered::Conflict(old) = registered {
            replaced = self.forget_worker(old, "replaced by a new instance");
            registered = self.workers.register(routing_id, &ready, now);
        }
        let worker = match registered {
            Registered::New(worker) | Registered::Updated(worker) => {
                info!(
                    "backend: worker {} ready for {} (protocol v{})",
                    ready.name,
                    ready.services.join(", "),
                    ready.version
                );
                Some(worker)
            }
            Registered::Full | Registered::Conflict(_) => {
                warn!("backend: worker table full; ignoring {}", ready.name);
                None
            }
        };
        (worker, replaced)
    }

    /// A registered worker's command (or HEARTBEAT, BYE).
    fn command<'m>(
        &mut self,
        wire: &mut impl Wire,
        edge: &mut impl Edge,
        worker: WorkerRef,
        message: Message<'m>,
        time: Time,
    ) -> Followup<'m> {
        let about = message.message_type() as u8;
        let mut missing = Vec::new();
        let followup = match message {
            Message::Bye => match self.forget_worker(worker, "said BYE") {
                Some(lost) => Followup::Lost(self.resolve(wire, lost, time)),
                None => Followup::Done,
            },
            Message::Send(send) => {
                if !self.too_big(wire, worker, about, send.payload, time) {
                    missing = send
                        .conns
                        .iter()
                        .filter(|&conn| !edge.deliver(conn, send.payload))
                        .collect();
                }
                Followup::Done
            }
            Message::Sends(batch) => {
                self.on_sends(wire, edge, worker, batch, &mut missing, time);
                Followup::Done
            }
            Message::Publish(publish) => {
                if self.too_big(wire, worker, about, publish.payload, time) {
                    return Followup::Done;
                }
                if !may_publish(edge, &publish) {
                    let conns: Vec<u64> = publish.except.into_iter().collect();
                    let reply = error(ErrorCode::FORBIDDEN, about, publish.channel, &conns);
                    self.send_control(wire, worker, &reply, time);
                    return Followup::Done;
                }
                for conn in self.channels.subscribers(publish.channel) {
                    if Some(conn) != publish.except {
                        edge.deliver(conn, publish.payload);
                    }
                }
                Followup::Done
            }
            Message::Subscribe(sub) => {
                if !edge.is_open(sub.conn) {
                    missing.push(sub.conn);
                } else if edge.permits(sub.conn, sub.channel, access::SUBSCRIBE) != Some(true)
                    || self.channels.subscribe(sub.conn, sub.channel)
                        == Err(SubscribeError::TooMany)
                {
                    let conns = [sub.conn];
                    let reply = error(ErrorCode::FORBIDDEN, about, sub.channel, &conns);
                    self.send_control(wire, worker, &reply, time);
                }
                Followup::Done
            }
            Message::Unsubscribe(sub) => {
                self.channels.unsubscribe(sub.conn, sub.channel);
                Followup::Done
            }
            Message::Close(close) if edge.is_open(close.conn) => Followup::Close {
                conn: close.conn,
                code: close.code,
                reason: close.reason,
            },
            Message::Close(close) => {
                missing.push(close.conn);
                Followup::Done
            }
            Message::AuthReply(reply)
                if self.sessions.auth_worker(reply.request) == Some(worker) =>
            {
                self.auth_done(reply.request);
                Followup::AuthReply {
                    conn: reply.request,
                    worker,
                    reply,
                }
            }
            Message::AuthReply(_) => {
                let reason = "AUTH_REPLY for no request pending at that worker";
                self.drops.count(reason.to_owned(), time.now);
                Followup::Done
            }
            // HEARTBEAT proved it alive, which is all it says; types a
            // worker may not send were dropped before.
            _ => Followup::Done,
        };
        if !missing.is_empty() {
            missing.truncate(MAX_CONN_IDS);
            let reply = error(ErrorCode::NO_SUCH_CONNECTION, about, "", &missing);
            self.send_control(wire, worker, &reply, time);
        }
        followup
    }

    /// After an ACL change: a subscription whose connection may no longer
    /// `subscribe` to its channel ends, and the connection's worker gets
    /// ERROR FORBIDDEN about SUBSCRIBE (detail: the channel), as if it had
    /// asked now (docs/protocol.md section 3).
    pub fn recheck_subscriptions(&mut self, wire: &mut impl Wire, edge: &impl Edge, time: Time) {
        for (conn, channel) in self.channels.all() {
            if edge.permits(conn, &channel, access::SUBSCRIBE) == Some(true) {
                continue;
            }
            self.channels.unsubscribe(conn, &channel);
            let Some(worker) = self.workers.holder(conn) else {
                continue;
            };
            let conns = [conn];
            let about = MessageType::Subscribe as u8;
            let reply = error(ErrorCode::FORBIDDEN, about, &channel, &conns);
            self.send_control(wire, worker, &reply, time);
        }
    }

    /// Signature checks for one received message: on a signed node every
    /// check of docs/protocol.md section 9; on an unsigned one, signed
    /// messages are refused. `None` when the node is unsigned.
    fn verify(&mut self, frames: &[&[u8]], time: Time) -> Result<Option<Verified>, Dropped> {
        match &mut self.verifier {
            Some(verifier) => verifier
                .verify(frames, time.unix_ms)
                .map(Some)
                .map_err(Dropped::Verify),
            None => {
                let signed = frames
                    .first()
                    .and_then(|header| header.get(2))
                    .is_some_and(|flags| flags & FLAG_SIGNED != 0);
                if signed {
                    Err(Dropped::SignedOnUnsignedLink)
                } else {
                    Ok(None)
                }
            }
        }
    }

    fn is_admin(&self, verified: Verified) -> bool {
        let key = verified.key_id;
        self.config.admin_keys.iter().any(|id| id == key.as_str())
    }

    /// Refuses a payload over WELCOME's `max_payload` with ERROR TOO_BIG.
    fn too_big(
        &mut self,
        wire: &mut impl Wire,
        worker: WorkerRef,
        about: u8,
        payload: Payload<'_>,
        time: Time,
    ) -> bool {
        let too_big = payload.as_bytes().len() > self.config.max_payload as usize;
        if too_big {
            let reply = error(ErrorCode::TOO_BIG, about, "", &[]);
            self.send_control(wire, worker, &reply, time);
        }
        too_big
    }

    /// SENDS: each record to its connection (docs/protocol.md section
    /// 13); records over the payload cap draw one ERROR TOO_BIG naming
    /// their connections, and those not open here go in `missing`.
    fn on_sends(
        &mut self,
        wire: &mut impl Wire,
        edge: &mut impl Edge,
        worker: WorkerRef,
        batch: Batch<'_>,
        missing: &mut Vec<u64>,
        time: Time,
    ) {
        let max = self.config.max_payload as usize;
        let mut too_big = Vec::new();
        for (conn, payload) in batch.records() {
            if payload.as_bytes().len() > max {
                too_big.push(conn);
            } else if !edge.deliver(conn, payload) {
                missing.push(conn);
            }
        }
        if !too_big.is_empty() {
            too_big.truncate(MAX_CONN_IDS);
            let about = MessageType::Sends as u8;
            let reply = error(ErrorCode::TOO_BIG, about, "", &too_big);
            self.send_control(wire, worker, &reply, time);
        }
    }

    /// Sends ERROR (code, type byte of the message it answers, detail)
    /// straight to the peer behind `routing_id` (signed for `to`'s
    /// instance on a signed node, in `to`'s version), within the answer
    /// budget.
    fn answer(
        &mut self,
        wire: &mut impl Wire,
        routing_id: &[u8],
        to: (u64, u8),
        (code, about, detail): (ErrorCode, u8, &str),
        time: Time,
    ) {
        let interval = self.config.heartbeat;
        if self.answers.allow(routing_id, code, time.now, interval) {
            let reply = error(code, about, detail, &[]);
            self.send_to_peer(wire, routing_id, to, &reply, time);
        }
    }
}

/// Whether a PUBLISH may go out (docs/protocol.md sections 3 and 13): on
/// behalf of a client here (named in `except`), that client's own
/// `publish` permission decides; else the author's a version 2 PUBLISH
/// names; else the worker publishes on its own authority.
fn may_publish(edge: &impl Edge, publish: &Publish<'_>) -> bool {
    let channel = publish.channel;
    let here = publish
        .except
        .and_then(|conn| edge.permits(conn, channel, access::PUBLISH));
    match (here, &publish.author) {
        (Some(allowed), _) => allowed,
        (None, Some(author)) => edge.author_may(author, channel, access::PUBLISH),
        (None, None) => true,
    }
}

/// An ERROR reply about a message of type byte `about`.
pub fn error<'a>(code: ErrorCode, about: u8, detail: &'a str, conns: &'a [u64]) -> Message<'a> {
    Message::Error(ErrorReply {
        code,
        about,
        detail,
        conns: conns.into(),
    })
}
