//! The reactor's side of the backend link: what workers' messages do to
//! connections, worker liveness, and the retry of full pipes.

use std::collections::HashMap;
use std::io;
use std::path::Path;
use std::time::{Duration, Instant};

use log::{info, warn};

use super::timers::Timer;
use super::token::ConnId;
use super::Reactor;
use crate::access;
use crate::backend::channels::SubscribeError;
use crate::backend::cidr::Allowlist;
use crate::backend::codec::decode;
use crate::backend::link::{Dropped, Link, LinkConfig};
use crate::backend::message::VERSION;
use crate::backend::message::{
    is_reserved_service, ErrorCode, ErrorReply, Message, MessageType, Payload, Ready,
};
use crate::backend::signing::{KeyRing, VerifyError};
use crate::backend::workers::{Proposal, Registered, WorkerRef};
use crate::backend::zap::{self, ZapHandler};
use crate::cli::is_local_endpoint;
use crate::config::{Backend, WorkerLoss};
use crate::logging::LogBudget;
use crate::ws::Limits;

/// Worker messages handled per turn, so a flood from workers cannot starve
/// the clients; the rest wait for the next turn.
const MESSAGES_PER_TURN: usize = 1024;

/// How soon full pipes are tried again when nothing else wakes the loop.
const BLOCKED_RETRY: Duration = Duration::from_millis(20);

/// Counts of dropped backend messages by reason, logged within a budget.
#[derive(Debug, Default)]
pub(super) struct Drops {
    counts: HashMap<String, u64>,
    total: u64,
    budget: LogBudget,
}

impl Drops {
    /// Messages dropped so far, for any reason.
    pub(super) fn total(&self) -> u64 {
        self.total
    }

    fn count(&mut self, reason: String, now: Instant) {
        self.total += 1;
        let total = self.counts.entry(reason.clone()).or_default();
        *total += 1;
        let total = *total;
        if self.budget.allow(now) {
            warn!("backend: dropped a message: {reason} ({total} so far)");
        }
    }
}

/// Reads and parses a backend key file (at start and on SIGHUP), warning
/// about admin key ids it lacks. The error names the file.
pub fn read_keys(path: &Path, admin_keys: &[String]) -> Result<KeyRing, String> {
    let text = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let ring = KeyRing::parse(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    for admin in admin_keys {
        if !ring.key_ids().any(|id| id == admin) {
            warn!("backend: admin key id {admin} is not in the key file: it can never verify");
        }
    }
    Ok(ring)
}

/// Most (peer, code) pairs [`Answers`] remembers; beyond, a new pair gets
/// no answer until an entry is older than the interval.
const ANSWERS_KEPT: usize = 4096;

/// Errors the node volunteers for messages it cannot use (an unknown
/// version, an undecodable message from a worker, a message signed for a
/// previous boot), at most one per peer and code per heartbeat interval
/// (docs/protocol.md section 10): a peer, or a forger, cannot make the node
/// send without bound.
#[derive(Debug, Default)]
pub(super) struct Answers {
    last: HashMap<(Box<[u8]>, u16), Instant>,
}

impl Answers {
    fn allow(&mut self, peer: &[u8], code: ErrorCode, now: Instant, interval: Duration) -> bool {
        if self.last.len() >= ANSWERS_KEPT {
            self.last
                .retain(|_, at| now.saturating_duration_since(*at) < interval);
            if self.last.len() >= ANSWERS_KEPT {
                // Full of recent answers: a new peer waits for one to age
                // out rather than resetting everybody's budget.
                return false;
            }
        }
        let key = (Box::from(peer), code.0);
        match self.last.get(&key) {
            Some(at) if now.saturating_duration_since(*at) < interval => false,
            _ => {
                self.last.insert(key, now);
                true
            }
        }
    }
}

/// Loads the key file and binds the link.
pub(super) fn open(
    config: &Backend,
    limits: Limits,
) -> io::Result<(zmq::Context, Link, ZapHandler)> {
    let keys = match &config.key_file {
        Some(path) => Some(read_keys(path, &config.admin_keys).map_err(io::Error::other)?),
        None => None,
    };
    let signed = keys.is_some();
    if !signed {
        // Only --backend-insecure gets here with a non-loopback endpoint.
        for endpoint in config.binds.iter().filter(|e| !is_local_endpoint(e)) {
            warn!(
                "backend: {endpoint} is not loopback and messages are NOT signed \
                 (--backend-insecure): whoever reaches it can act as a worker"
            );
        }
    }
    let ctx = zmq::Context::new();
    // The handler must exist before the ROUTER binds: libzmq lets every
    // peer in while nothing answers at the ZAP endpoint.
    // Exactly the --backend-allow blocks; loopback only without any.
    let allowlist = Allowlist::from_config(config.allow.iter().copied());
    let zap = ZapHandler::new(&ctx, allowlist)
        .map_err(|e| io::Error::other(format!("ZAP handler: {e}")))?;
    let link = Link::bind(
        &ctx,
        LinkConfig {
            binds: config.binds.clone(),
            keys,
            node_name: config.node_name.clone(),
            heartbeat: config.heartbeat,
            liveness: config.liveness,
            max_payload: u32::try_from(limits.max_message_size).unwrap_or(u32::MAX),
            zap_domain: Some(zap::DOMAIN.to_owned()),
            worker_queue: config.worker_queue,
            pipe_hwm: config.pipe_hwm,
        },
    )
    .map_err(io::Error::other)?;
    info!(
        "backend: {} bound on {}, boot {:016x}, messages {}",
        config.node_name,
        link.bound().join(", "),
        link.boot(),
        if signed { "signed" } else { "unsigned" }
    );
    Ok((ctx, link, zap))
}

impl Reactor {
    /// Once a turn: reads what workers sent, retries full pipes, and
    /// handles workers found gone.
    pub(super) fn service_backend(&mut self) {
        let mut parts = Vec::new();
        for _ in 0..MESSAGES_PER_TURN {
            let Some(link) = self.link.as_mut() else {
                return;
            };
            match link.recv(&mut parts) {
                Ok(true) => self.on_backend_message(&parts),
                Ok(false) => break,
                Err(dropped) => self.backend_dropped(dropped),
            }
        }
        self.flush_queued();
        if let Some(zap) = self.zap.as_mut() {
            // Peers wait for these answers in their handshake.
            self.accept_backlog |= zap.handle_ready().more;
        }
        let now = Instant::now();
        let Some(link) = self.link.as_mut() else {
            return;
        };
        // More than a turn's worth: the edge is spent, so come back at once.
        self.accept_backlog |= link.readable();
        if link.has_backlog() || !self.blocked.is_empty() {
            link.flush_backlogs(now);
            self.retry_blocked();
        }
        self.bury_gone_workers();
    }

    /// Heartbeats, liveness, and a retry of full pipes.
    pub(super) fn backend_tick(&mut self, now: Instant) {
        let Some(link) = self.link.as_mut() else {
            return;
        };
        let heartbeat = link.heartbeat();
        for dead in link.tick(now) {
            self.worker_lost(dead, "silent past its liveness");
        }
        let next = if self.blocked.is_empty() {
            heartbeat
        } else {
            BLOCKED_RETRY.min(heartbeat)
        };
        self.timers.arm(now + next, Timer::Backend);
    }

    fn on_backend_message(&mut self, parts: &[zmq::Message]) {
        let now = Instant::now();
        let Some((routing_id, frames)) = parts.split_first() else {
            return;
        };
        let frames: Vec<&[u8]> = frames.iter().map(|frame| &frame[..]).collect();
        let header = frames.first().copied().unwrap_or_default();
        let about = header.get(1).copied().unwrap_or(0);
        let unknown_version = header.first().is_some_and(|&version| version != VERSION);
        if unknown_version {
            // Unverifiable, so addressed to nobody in particular.
            let spoken = VERSION.to_string();
            let answer = (ErrorCode::UNSUPPORTED_VERSION, about, spoken.as_str());
            self.answer(routing_id, 0, answer, now);
        }
        let Some(link) = self.link.as_mut() else {
            return;
        };
        let verified = match link.verify(&frames) {
            Ok(verified) => verified,
            Err(Dropped::Verify(stale @ VerifyError::WrongRecipient { sender, fresh })) => {
                // Authentic, but for another boot of this node; an old
                // capture replayed gets no answer.
                if fresh {
                    let answer = (ErrorCode::UNKNOWN_PEER, about, "");
                    self.answer(routing_id, sender, answer, now);
                }
                return self.backend_dropped(Dropped::Verify(stale));
            }
            Err(dropped) => return self.backend_dropped(dropped),
        };
        let sender = verified.map_or(0, |verified| verified.sender);
        let admin_keys = self.config.backend.as_ref().map(|b| &b.admin_keys);
        let admin = verified
            .zip(admin_keys)
            .is_some_and(|(verified, keys)| keys.iter().any(|key| key == verified.key_id.as_str()));
        let message = match decode(&frames) {
            Ok(message) => message,
            Err(e) => {
                let registered = link.workers.by_routing_id(routing_id).is_some();
                if registered && !unknown_version {
                    let why = e.to_string();
                    let answer = (ErrorCode::MALFORMED, about, why.as_str());
                    self.answer(routing_id, sender, answer, now);
                }
                return self.drops.count(format!("malformed: {e}"), now);
            }
        };
        if !message.message_type().sent_by_worker() {
            return self
                .drops
                .count(format!("{:?} from a worker", message.message_type()), now);
        }
        let mut worker = link.workers.by_routing_id(routing_id);
        if worker.is_none() && message.message_type() != MessageType::Ready {
            // Docs/protocol.md section 4: a READY on a signed link counts
            // once its sender signs something for this boot.
            let confirmed = verified.and_then(|v| link.workers.confirm(routing_id, v.sender));
            if let Some(proposal) = confirmed {
                worker = self.enrol(routing_id, proposal, now);
            }
        }
        let Some(link) = self.link.as_mut() else {
            return;
        };
        log::trace!("backend: {:?} from {worker:?}", message.message_type());
        match (message, worker) {
            (Message::Ready(ready), _) => self.on_ready(routing_id, ready, now),
            (_, None) => {
                // A node restart or an expired worker: it must READY again.
                let about = message.message_type() as u8;
                self.answer(
                    routing_id,
                    sender,
                    (ErrorCode::UNKNOWN_PEER, about, ""),
                    now,
                );
            }
            (Message::AclCommand(command), Some(worker)) => {
                link.workers.heard(worker, now);
                self.on_acl_command(worker, command, admin, now);
            }
            (message, Some(worker)) => {
                link.workers.heard(worker, now);
                self.on_command(worker, message, now);
            }
        }
    }

    fn on_ready(&mut self, routing_id: &[u8], ready: Ready<'_>, now: Instant) {
        let Some(link) = self.link.as_mut() else {
            return;
        };
        if let Some(reserved) = ready.services.iter().find(|s| is_reserved_service(s)) {
            warn!(
                "backend: worker {} claims reserved service {reserved}",
                ready.name
            );
            let reply = error(
                ErrorCode::RESERVED_SERVICE,
                MessageType::Ready as u8,
                reserved,
                &[],
            );
            return link.send_to_peer(routing_id, ready.instance, &reply);
        }
        let services = ready.services.iter().map(str::to_owned);
        let known = link
            .workers
            .by_routing_id(routing_id)
            .is_some_and(|w| w.instance == ready.instance);
        let proposal = Proposal::new(ready.instance, ready.name, services, now);
        if link.is_signed() && !known {
            // Signed for recipient 0, so it may be a capture replayed from
            // another node's link: wait for a message signed for this boot.
            log::debug!(
                "backend: worker {} said READY; registered once it signs for this boot",
                ready.name
            );
            link.workers.propose(routing_id, proposal);
            return link.welcome(routing_id, ready.instance);
        }
        if self.enrol(routing_id, proposal, now).is_some() {
            if let Some(link) = self.link.as_mut() {
                link.welcome(routing_id, ready.instance);
            }
        }
    }

    /// Registers a worker (or updates a known one) and says so.
    fn enrol(&mut self, routing_id: &[u8], ready: Proposal, now: Instant) -> Option<WorkerRef> {
        let link = self.link.as_mut()?;
        let services = || ready.services.iter().cloned();
        let mut registered =
            link.workers
                .register(routing_id, ready.instance, &ready.name, services(), now);
        if let Registered::Conflict(old) = registered {
            self.worker_lost(old, "replaced by a new instance");
            let link = self.link.as_mut()?;
            registered =
                link.workers
                    .register(routing_id, ready.instance, &ready.name, services(), now);
        }
        match registered {
            Registered::New(worker) | Registered::Updated(worker) => {
                info!(
                    "backend: worker {} ready for {}",
                    ready.name,
                    ready.services.join(", ")
                );
                Some(worker)
            }
            Registered::Full | Registered::Conflict(_) => {
                warn!("backend: worker table full; ignoring {}", ready.name);
                None
            }
        }
    }

    fn on_command(&mut self, worker: WorkerRef, message: Message<'_>, now: Instant) {
        let about = message.message_type();
        let missing: Vec<u64> = match message {
            Message::Heartbeat { .. } => Vec::new(),
            Message::Bye => {
                self.worker_lost(worker, "said BYE");
                Vec::new()
            }
            Message::Send(send) => {
                if self.too_big(worker, about, send.payload) {
                    return;
                }
                send.conns
                    .iter()
                    .filter(|&conn| !self.deliver(conn, send.payload))
                    .collect()
            }
            Message::Publish(publish) => {
                if self.too_big(worker, about, publish.payload) {
                    return;
                }
                // A publish on behalf of a client here (named in `except`)
                // needs that client's `publish` permission on the channel.
                let author = publish.except;
                if let Some(author) = author
                    .filter(|&a| self.conn_may(a, publish.channel, access::PUBLISH) == Some(false))
                {
                    let conns = [author];
                    let reply = error(ErrorCode::FORBIDDEN, about as u8, publish.channel, &conns);
                    self.send_to_worker(worker, &reply, now);
                    return;
                }
                for conn in self.channels.subscribers(publish.channel) {
                    if Some(conn) != publish.except {
                        self.deliver(conn, publish.payload);
                    }
                }
                Vec::new()
            }
            Message::Subscribe(sub) => {
                if !self.is_open(sub.conn) {
                    vec![sub.conn]
                } else if self.conn_may(sub.conn, sub.channel, access::SUBSCRIBE) != Some(true)
                    || self.channels.subscribe(sub.conn, sub.channel)
                        == Err(SubscribeError::TooMany)
                {
                    let conns = [sub.conn];
                    let reply = error(ErrorCode::FORBIDDEN, about as u8, sub.channel, &conns);
                    self.send_to_worker(worker, &reply, now);
                    Vec::new()
                } else {
                    Vec::new()
                }
            }
            Message::Unsubscribe(sub) => {
                self.channels.unsubscribe(sub.conn, sub.channel);
                Vec::new()
            }
            Message::Close(close) => {
                let id = ConnId::from_wire(close.conn);
                let closed = self.with_conn(id, |conn, sh| {
                    conn.close_by_worker(sh, close.code, close.reason)
                });
                if closed.is_some() {
                    Vec::new()
                } else {
                    vec![close.conn]
                }
            }
            Message::AuthReply(reply) => {
                let id = ConnId::from_wire(reply.request);
                let taken = self.with_conn(id, |conn, sh| conn.on_auth_reply(sh, worker, &reply));
                if taken != Some(true) {
                    let reason = "AUTH_REPLY for no request pending at that worker";
                    self.drops.count(reason.to_owned(), now);
                }
                Vec::new()
            }
            // Types a worker may not send were dropped before.
            _ => Vec::new(),
        };
        if !missing.is_empty() {
            let reply = error(ErrorCode::NO_SUCH_CONNECTION, about as u8, "", &missing);
            self.send_to_worker(worker, &reply, now);
        }
    }

    /// After an ACL change: a subscription whose connection may no longer
    /// `subscribe` to its channel ends, and the connection's worker gets
    /// ERROR FORBIDDEN about SUBSCRIBE (detail: the channel), as if it had
    /// asked now (docs/protocol.md section 3).
    pub(super) fn recheck_subscriptions(&mut self, now: Instant) {
        for (conn, channel) in self.channels.all() {
            if self.conn_may(conn, &channel, access::SUBSCRIBE) == Some(true) {
                continue;
            }
            self.channels.unsubscribe(conn, &channel);
            let id = ConnId::from_wire(conn);
            let Some(worker) = self.with_conn(id, |c, _| c.worker()).flatten() else {
                continue;
            };
            let conns = [conn];
            let about = MessageType::Subscribe as u8;
            let reply = error(ErrorCode::FORBIDDEN, about, &channel, &conns);
            self.send_to_worker(worker, &reply, now);
        }
    }

    /// Writes a worker's message to one connection; false when it is not
    /// open on this node.
    ///
    /// The message is queued on the connection; [`Reactor::flush_queued`]
    /// sends each connection's queue once, after the batch.
    fn deliver(&mut self, conn: u64, payload: Payload<'_>) -> bool {
        let id = ConnId::from_wire(conn);
        let cap = self.config.protection.max_outbound_bytes;
        let Some(slot) = self.slots.get_mut(id.key as usize) else {
            return false;
        };
        if slot.generation != id.generation {
            return false;
        }
        // Outside `with_conn`, so counted here.
        let before = slot.conn.stats();
        let queued = slot.conn.queue(payload, cap);
        self.metrics.traffic(&before, &slot.conn.stats());
        if !queued {
            return false;
        }
        if !slot.queued {
            slot.queued = true;
            self.queued.push(id);
        }
        true
    }

    /// Flushes every connection a batch of worker messages wrote to.
    fn flush_queued(&mut self) {
        for id in std::mem::take(&mut self.queued) {
            if let Some(slot) = self.slots.get_mut(id.key as usize) {
                slot.queued = false;
            }
            self.with_conn(id, |conn, sh| conn.flush_queued(sh));
        }
    }

    fn is_open(&mut self, conn: u64) -> bool {
        self.with_conn(ConnId::from_wire(conn), |c, _| c.is_open())
            .unwrap_or(false)
    }

    /// Refuses a payload over WELCOME's `max_payload` with ERROR TOO_BIG.
    fn too_big(&mut self, worker: WorkerRef, about: MessageType, payload: Payload<'_>) -> bool {
        let Some(link) = self.link.as_mut() else {
            return true;
        };
        let too_big = payload.as_bytes().len() > link.max_payload() as usize;
        if too_big {
            let reply = error(ErrorCode::TOO_BIG, about as u8, "", &[]);
            link.send_control(worker, &reply, Instant::now());
        }
        too_big
    }

    pub(super) fn send_to_worker(
        &mut self,
        worker: WorkerRef,
        message: &Message<'_>,
        now: Instant,
    ) {
        if let Some(link) = self.link.as_mut() {
            link.send_control(worker, message, now);
        }
    }

    /// A worker is gone: forget it, and move or close its connections as
    /// configured (docs/protocol.md section 6).
    fn worker_lost(&mut self, worker: WorkerRef, why: &str) {
        let Some(link) = self.link.as_mut() else {
            return;
        };
        link.drop_backlog(worker);
        let Some(removed) = link.workers.remove(worker) else {
            return;
        };
        let reassign = self
            .config
            .backend
            .as_ref()
            .is_none_or(|b| b.worker_loss == WorkerLoss::Reassign);
        info!(
            "backend: worker {} {why}; {} connection(s) {}",
            removed.name,
            removed.conns.len(),
            if reassign {
                "reassigned"
            } else {
                "closed with 1012"
            }
        );
        for conn in removed.conns {
            self.with_conn(ConnId::from_wire(conn), |c, sh| c.worker_lost(sh, reassign));
        }
    }

    fn bury_gone_workers(&mut self) {
        let gone = self.link.as_mut().map(Link::take_gone).unwrap_or_default();
        for (worker, why) in gone {
            self.worker_lost(worker, why);
        }
    }

    /// Tries once more every connection waiting for a worker's pipe.
    fn retry_blocked(&mut self) {
        for _ in 0..self.blocked.len() {
            let Some(id) = self.blocked.pop_front() else {
                break;
            };
            if let Some(slot) = self.slots.get_mut(id.key as usize) {
                slot.blocked = false;
            }
            self.with_conn(id, |conn, sh| conn.retry_backend(sh));
        }
    }

    /// Sends ERROR (code, type byte of the message it answers, detail)
    /// straight to the peer behind `routing_id` (signed for `recipient` on
    /// a signed link), within the [`Answers`] budget.
    fn answer(
        &mut self,
        routing_id: &[u8],
        recipient: u64,
        (code, about, detail): (ErrorCode, u8, &str),
        now: Instant,
    ) {
        let Some(link) = self.link.as_mut() else {
            return;
        };
        if self.answers.allow(routing_id, code, now, link.heartbeat()) {
            link.send_to_peer(routing_id, recipient, &error(code, about, detail, &[]));
        }
    }

    fn backend_dropped(&mut self, dropped: Dropped) {
        let reason = match dropped {
            Dropped::TooManyFrames => "too many frames".to_owned(),
            Dropped::SignedOnUnsignedLink => "signed message on an unsigned link".to_owned(),
            Dropped::Verify(e) => e.to_string(),
        };
        self.drops.count(reason, Instant::now());
    }
}

/// An ERROR reply about a message of type byte `about`.
pub(super) fn error<'a>(
    code: ErrorCode,
    about: u8,
    detail: &'a str,
    conns: &'a [u64],
) -> Message<'a> {
    Message::Error(ErrorReply {
        code,
        about,
        detail,
        conns: conns.into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_answer_per_peer_and_code_per_interval() {
        let (t0, beat) = (Instant::now(), Duration::from_millis(100));
        let mut answers = Answers::default();
        assert!(answers.allow(b"peer-a", ErrorCode::MALFORMED, t0, beat));
        assert!(!answers.allow(b"peer-a", ErrorCode::MALFORMED, t0 + beat / 2, beat));
        assert!(answers.allow(b"peer-a", ErrorCode::UNKNOWN_PEER, t0, beat));
        assert!(answers.allow(b"peer-b", ErrorCode::MALFORMED, t0, beat));
        assert!(answers.allow(b"peer-a", ErrorCode::MALFORMED, t0 + beat, beat));
        // Many peers: what is kept stays bounded, and the peers already
        // answered keep their budget.
        for i in 0..(2 * ANSWERS_KEPT as u32) {
            answers.allow(&i.to_be_bytes(), ErrorCode::MALFORMED, t0, beat);
        }
        assert!(answers.last.len() <= ANSWERS_KEPT);
        assert!(!answers.allow(b"peer-b", ErrorCode::MALFORMED, t0, beat));
        // Once the interval has passed, room is made again.
        assert!(answers.allow(b"late", ErrorCode::MALFORMED, t0 + beat, beat));
    }
}
