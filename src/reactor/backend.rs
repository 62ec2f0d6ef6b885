//! The reactor's side of the backend: it moves the ROUTER's messages into
//! the node core ([`crate::node::Node`]), lets the core reach the
//! connections ([`Conns`], an [`Edge`]), and carries out what the core
//! hands back ([`Followup`]): connections moved or closed, verdicts,
//! ACL commands.

use std::io;
use std::time::{Duration, Instant};

use log::{info, warn};

use slab::Slab;

use super::timers::Timer;
use super::token::ConnId;
use super::{Reactor, Slot};
use crate::access::{Access, Identity};
use crate::backend::cidr::Allowlist;
use crate::backend::curve;
use crate::backend::endpoint::is_local_endpoint;
use crate::backend::key_file::read_keys;
use crate::backend::message::{Author, Message, Payload};
use crate::backend::signing::KeyRing;
use crate::backend::zap::{self, Policy, ZapHandler};
use crate::config;
use crate::conn::Conn;
use crate::link::{random_nonzero, Backend, Link, LinkConfig};
use crate::metrics::ReactorMetrics;
use crate::node::connections::Resolved;
use crate::node::workers::WorkerRef;
use crate::node::{Edge, Followup, Node, NodeConfig};
use crate::ws::deflate::Codec;
use crate::ws::Limits;

/// How soon full pipes are tried again when nothing else wakes the loop.
const BLOCKED_RETRY: Duration = Duration::from_millis(20);

/// Loads the key file, binds the link and sets the node up.
pub(super) fn open(
    config: &config::Backend,
    limits: Limits,
) -> io::Result<(zmq::Context, Backend, ZapHandler)> {
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
    let curve = signed && config.curve;
    if curve {
        curve::available().map_err(io::Error::other)?;
    } else if signed {
        warn!(
            "backend: --backend-no-curve: the handshake is NULL, so a peer that holds \
             no key can make the node buffer without bound (docs/protocol.md section 2)"
        );
    }
    let ctx = zmq::Context::new();
    // The handler must exist before the ROUTER binds: libzmq lets every
    // peer in while nothing answers at the ZAP endpoint.
    // Exactly the --backend-allow blocks; loopback only without any.
    let policy = Policy {
        allowlist: Allowlist::from_config(config.allow.iter().copied()),
        curve_clients: keys.as_ref().filter(|_| curve).map(KeyRing::curve_clients),
    };
    let zap =
        ZapHandler::new(&ctx, policy).map_err(|e| io::Error::other(format!("ZAP handler: {e}")))?;
    let max_payload = u32::try_from(limits.max_message_size).unwrap_or(u32::MAX);
    let link = Link::bind(
        &ctx,
        LinkConfig {
            binds: config.binds.clone(),
            max_payload,
            zap_domain: Some(zap::DOMAIN.to_owned()),
            curve,
            pipe_hwm: config.pipe_hwm,
        },
    )
    .map_err(io::Error::other)?;
    let node = Node::new(
        NodeConfig {
            name: config.node_name.clone(),
            keys,
            admin_keys: config.admin_keys.clone(),
            heartbeat: config.heartbeat,
            liveness: config.liveness,
            max_payload,
            worker_queue: config.worker_queue,
            worker_loss: config.worker_loss,
            max_workers: config.max_workers,
            max_channels_per_conn: config.max_channels_per_conn,
            reactors: config.reactors,
        },
        random_nonzero(),
    );
    info!(
        "backend: {} bound on {}, boot {:016x}, messages {}",
        config.node_name,
        link.bound().join(", "),
        node.boot(),
        match (signed, curve) {
            (true, true) => "signed, handshake CURVE",
            (true, false) => "signed, handshake NULL",
            (false, _) => "unsigned",
        }
    );
    Ok((ctx, Backend { node, link }, zap))
}

impl Reactor {
    /// Once a turn: reads what workers sent, retries full pipes, and
    /// handles workers found gone.
    pub(super) fn service_backend(&mut self) {
        // This turn's client messages go before the replies are read.
        self.flush_batches();
        let mut parts = Vec::new();
        let per_turn = self
            .config
            .backend
            .as_ref()
            .map_or(0, |b| b.messages_per_turn);
        for _ in 0..per_turn {
            let Some(backend) = self.backend.as_mut() else {
                return;
            };
            match backend.link.recv(&mut parts) {
                Ok(true) => self.on_backend_message(&parts),
                Ok(false) => break,
                Err(dropped) => backend.node.drop_received(dropped, Instant::now()),
            }
        }
        self.flush_queued();
        if let Some(zap) = self.zap.as_mut() {
            // Peers wait for these answers in their handshake.
            self.accept_backlog |= zap.handle_ready().more;
        }
        if let Some(backend) = self.backend.as_mut() {
            self.accept_backlog |= backend.link.monitor().drain(Instant::now());
        }
        let now = Instant::now();
        let Some(backend) = self.backend.as_mut() else {
            return;
        };
        // More than a turn's worth: the edge is spent, so come back at once.
        self.accept_backlog |= backend.link.readable();
        if backend.node.has_backlog() || backend.node.blocked() > 0 {
            backend.node.flush_backlogs(&mut backend.link, now);
            let time = backend.at(now);
            let resumed = backend.node.retry(&mut backend.link, time);
            for conn in resumed {
                self.with_conn(ConnId::from_wire(conn), |c, sh| c.resume(sh));
            }
        }
        // What resumed clients sent since: nothing waits for a later turn,
        // which may be a heartbeat away. A worker found gone by it is
        // buried now.
        self.flush_batches();
        self.bury_lost_workers();
    }

    /// The end of a turn for batches: every open one goes to its worker
    /// (docs/protocol.md section 13).
    fn flush_batches(&mut self) {
        if let Some(backend) = self.backend.as_mut() {
            let time = backend.at(Instant::now());
            backend.node.flush_batches(&mut backend.link, time);
        }
    }

    /// Heartbeats, liveness, and a retry of full pipes.
    pub(super) fn backend_tick(&mut self, now: Instant) {
        let Some(backend) = self.backend.as_mut() else {
            return;
        };
        let heartbeat = backend.node.heartbeat();
        let blocked = backend.node.blocked() > 0;
        let time = backend.at(now);
        let resolved = backend.node.tick(&mut backend.link, time);
        self.apply(resolved);
        let next = if !blocked {
            heartbeat
        } else {
            BLOCKED_RETRY.min(heartbeat)
        };
        self.timers.arm(now + next, Timer::Backend);
    }

    fn on_backend_message(&mut self, parts: &[zmq::Message]) {
        let Some((routing_id, frames)) = parts.split_first() else {
            return;
        };
        let frames: Vec<&[u8]> = frames.iter().map(|frame| &frame[..]).collect();
        let Some((backend, mut conns)) = self.node_and_conns() else {
            return;
        };
        let time = backend.at(Instant::now());
        match backend
            .node
            .handle(&mut backend.link, &mut conns, routing_id, &frames, time)
        {
            Followup::Done => {}
            Followup::Lost(resolved) => self.apply(resolved),
            Followup::Close { conn, code, reason } => {
                let id = ConnId::from_wire(conn);
                self.with_conn(id, |c, sh| c.close_by_worker(sh, code, reason));
            }
            Followup::AuthReply { conn, reply, .. } => {
                let id = ConnId::from_wire(conn);
                self.with_conn(id, |c, sh| c.on_auth_reply(sh, &reply));
            }
            Followup::AclCommand {
                worker,
                command,
                admin,
            } => self.on_acl_command(worker, command, admin, time.now),
        }
    }

    /// After an ACL change: the node re-checks every subscription.
    pub(super) fn recheck_subscriptions(&mut self) {
        let Some((backend, conns)) = self.node_and_conns() else {
            return;
        };
        let time = backend.at(Instant::now());
        backend
            .node
            .recheck_subscriptions(&mut backend.link, &conns, time);
    }

    /// The node and, beside it, the connections it may reach.
    fn node_and_conns(&mut self) -> Option<(&mut Backend, Conns<'_>)> {
        let backend = self.backend.as_mut()?;
        let conns = Conns {
            slots: &mut self.slots,
            queued: &mut self.queued,
            metrics: &self.metrics,
            access: &self.access,
            cap: self.config.protection.max_outbound_bytes,
            codec: &mut self.codec,
            deflate_min_bytes: self.config.deflate.min_bytes,
        };
        Some((backend, conns))
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

    pub(super) fn send_to_worker(
        &mut self,
        worker: WorkerRef,
        message: &Message<'_>,
        now: Instant,
    ) {
        if let Some(backend) = self.backend.as_mut() {
            backend.send_control(worker, message, now);
        }
    }

    /// A worker is gone: what the node decided for each of its
    /// connections (docs/protocol.md section 6).
    fn apply(&mut self, resolved: Vec<Resolved>) {
        for Resolved { conn, outcome } in resolved {
            let id = ConnId::from_wire(conn);
            self.with_conn(id, |c, sh| c.worker_lost(sh, outcome));
        }
    }

    fn bury_lost_workers(&mut self) {
        let Some(backend) = self.backend.as_mut() else {
            return;
        };
        let time = backend.at(Instant::now());
        let resolved = backend.node.take_lost(&mut backend.link, time);
        self.apply(resolved);
    }
}

/// The reactor's connections as the node core reaches them while it
/// handles a message: by wire id, read-only but for queueing output.
struct Conns<'a> {
    slots: &'a mut Slab<Slot>,
    queued: &'a mut Vec<ConnId>,
    metrics: &'a ReactorMetrics,
    access: &'a Access,
    cap: usize,
    codec: &'a mut Codec,
    deflate_min_bytes: usize,
}

impl Conns<'_> {
    fn conn(&self, conn: u64) -> Option<&Conn> {
        let id = ConnId::from_wire(conn);
        self.slots
            .get(id.key as usize)
            .filter(|slot| slot.generation == id.generation)
            .map(|slot| &slot.conn)
    }
}

impl Edge for Conns<'_> {
    /// The message is queued on the connection; [`Reactor::flush_queued`]
    /// sends each connection's queue once, after the batch.
    fn deliver(&mut self, conn: u64, payload: Payload<'_>) -> bool {
        let id = ConnId::from_wire(conn);
        let Some(slot) = self.slots.get_mut(id.key as usize) else {
            return false;
        };
        if slot.generation != id.generation {
            return false;
        }
        // Outside `with_conn`, so counted here.
        let before = slot.conn.session().stats();
        let queued = slot
            .conn
            .queue(payload, self.cap, self.codec, self.deflate_min_bytes);
        self.metrics.traffic(&before, &slot.conn.session().stats());
        if !queued {
            return false;
        }
        if !slot.queued {
            slot.queued = true;
            self.queued.push(id);
        }
        true
    }

    fn permits(&self, conn: u64, resource: &str, permission: &str) -> Option<bool> {
        let identity = self.conn(conn)?.session().identity()?;
        Some(identity.may(self.access.acl(), resource, permission))
    }

    fn is_open(&self, conn: u64) -> bool {
        self.conn(conn).is_some_and(|c| c.session().is_open())
    }

    /// The author is judged as a client holding its user and roles would
    /// be; an empty user is a guest.
    fn author_may(&self, author: &Author<'_>, resource: &str, permission: &str) -> bool {
        let identity = if author.user.is_empty() {
            Identity::guest()
        } else {
            Identity::delegated(author.user, author.roles.iter())
        };
        identity.may(self.access.acl(), resource, permission)
    }
}
