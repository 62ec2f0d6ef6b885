//! The event loop: one `mio::Poll` for the listener, every client socket,
//! the backend link and the control waker; connection state in a slab;
//! deadlines in a heap. A process runs one reactor per `--threads`, each on
//! its own thread with its own listener (`SO_REUSEPORT`) and backend node;
//! they share nothing on the data path (see [`crate::control`]).

pub mod accounting;
mod admin;
mod backend;
mod handshakes;
pub mod timers;
pub mod token;

use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use log::{debug, info, warn};
use mio::net::TcpListener;
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Waker};
use rustls::ServerConfig;
use slab::Slab;

use crate::access::Access;
use crate::config::Config;
use crate::conn::{Conn, Shared, READ_SIZE};
use crate::control::{Control, Seen, Shutdown};
use crate::link::Backend;
use crate::logging;
use crate::metrics::{HandshakeFailure, ReactorMetrics};
use crate::pace::Crowd;
use crate::session::{Ctx, NodePort};
use crate::ws::deflate::Codec;
use accounting::Counters;
use timers::{Timer, Timers};
use token::{ConnId, BACKEND, LISTENER, MONITOR, WAKE, ZAP};

/// Pause before accepting again after EMFILE/ENFILE.
const ACCEPT_RETRY: std::time::Duration = std::time::Duration::from_millis(100);

/// A connection and the registration state the reactor keeps for it.
struct Slot {
    conn: Conn,
    generation: u32,
    /// Counted in `pending_handshakes` until the upgrade completes.
    upgrading: bool,
    interest: Interest,
    scheduled: Option<Instant>,
    /// In `queued`: workers' messages wait to be flushed this turn.
    queued: bool,
    /// In `deferred`: its handshake step waits for a turn's budget.
    deferred: bool,
}

/// One gateway node's event loop.
pub struct Reactor {
    poll: Poll,
    listener: Option<TcpListener>,
    local_addr: SocketAddr,
    /// This reactor's number in the process, from 0.
    index: usize,
    control: Arc<Control>,
    /// What this reactor has taken of the control state.
    seen: Seen,
    metrics: Arc<ReactorMetrics>,
    slots: Slab<Slot>,
    timers: Timers,
    /// The TLS configuration for new connections.
    tls: Arc<ServerConfig>,
    config: Config,
    /// Token verification and the ACL in force here.
    access: Access,
    /// TLS bytes read, shared by every connection ([`READ_SIZE`]).
    tls_in: Vec<u8>,
    /// Decrypted input, shared by every connection.
    plain: Vec<u8>,
    out: Vec<u8>,
    /// permessage-deflate state, shared by every connection.
    codec: Codec,
    next_generation: u32,
    /// Connections of this reactor still upgrading (the gauge; the limit
    /// is the process's, in the control state).
    pending_handshakes: usize,
    counters: Counters,
    accept_paused: bool,
    accept_backlog: bool,
    draining: bool,
    drain_over: bool,
    /// The backend node and its link, when a route targets workers.
    backend: Option<Backend>,
    /// Answers libzmq's ZAP requests: the backend peer allowlist.
    zap: Option<crate::backend::zap::ZapHandler>,
    /// Keeps ZeroMQ's I/O threads alive as long as the link.
    _zmq: Option<zmq::Context>,
    /// Connections workers wrote to in this batch, to flush once each.
    queued: Vec<ConnId>,
    /// Handshake steps over a turn's budget, oldest first.
    deferred: VecDeque<ConnId>,
}

impl Reactor {
    /// Joins `control`, registers `listener` and binds the backend node.
    /// `config` is this reactor's ([`Config::for_reactor`]).
    pub fn new(
        config: Config,
        access: Access,
        control: Arc<Control>,
        mut listener: TcpListener,
    ) -> io::Result<Self> {
        let poll = Poll::new()?;
        let local_addr = listener.local_addr()?;
        poll.registry()
            .register(&mut listener, LISTENER, Interest::READABLE)?;
        let metrics = Arc::new(ReactorMetrics::default());
        let index = control.join(Waker::new(poll.registry(), WAKE)?, Arc::clone(&metrics));
        let (zmq, node, zap) = match &config.backend {
            Some(backend_config) => {
                let (ctx, mut node, zap) = backend::open(backend_config, config.limits)?;
                let registry = poll.registry();
                let fd = node.link.fd();
                registry.register(&mut SourceFd(&fd), BACKEND, Interest::READABLE)?;
                let monitor = node.link.monitor().fd();
                registry.register(&mut SourceFd(&monitor), MONITOR, Interest::READABLE)?;
                registry.register(&mut SourceFd(&zap.fd()), ZAP, Interest::READABLE)?;
                (Some(ctx), Some(node), Some(zap))
            }
            None => (None, None, None),
        };
        let mut timers = Timers::default();
        if let Some(node) = &node {
            timers.arm(Instant::now() + node.node.heartbeat(), Timer::Backend);
        }
        Ok(Self {
            poll,
            listener: Some(listener),
            local_addr,
            index,
            tls: control.tls(),
            control,
            seen: Seen::default(),
            counters: Counters::new(Arc::clone(&metrics)),
            metrics,
            slots: Slab::new(),
            timers,
            config,
            access,
            tls_in: vec![0; READ_SIZE],
            plain: Vec::new(),
            out: Vec::new(),
            codec: Codec::default(),
            next_generation: 1,
            pending_handshakes: 0,
            accept_paused: false,
            accept_backlog: false,
            draining: false,
            drain_over: false,
            backend: node,
            zap,
            _zmq: zmq,
            queued: Vec::new(),
            deferred: VecDeque::new(),
        })
    }

    /// The bound listener address (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Runs until a shutdown signal has been handled and every connection
    /// closed, or the drain period ran out.
    pub fn run(&mut self) -> io::Result<()> {
        let mut events = Events::with_capacity(1024);
        while !(self.draining && (self.slots.is_empty() || self.drain_over)) {
            let timeout = if self.accept_backlog || !self.deferred.is_empty() {
                Some(std::time::Duration::ZERO)
            } else {
                self.timers
                    .next_deadline()
                    .map(|at| at.saturating_duration_since(Instant::now()))
            };
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            let now = Instant::now();
            let mut budget = self.config.protection.handshakes_per_turn;
            self.serve_deferred(&mut budget);
            for event in events.iter() {
                match event.token() {
                    LISTENER => self.accept(now),
                    WAKE => self.on_control(now),
                    // Serviced below, every turn: ZMQ_FD is edge-triggered
                    // and our own sends can consume its edge.
                    BACKEND | ZAP | MONITOR => {}
                    token => {
                        let Some(id) = ConnId::from_token(token) else {
                            continue;
                        };
                        let readable =
                            event.is_readable() || event.is_read_closed() || event.is_error();
                        self.on_conn_event(id, readable, &mut budget);
                    }
                }
            }
            self.fire_timers(now);
            if std::mem::take(&mut self.accept_backlog) {
                self.accept(now);
            }
            self.service_backend();
            self.publish_gauges();
            self.metrics.turns.observe(now.elapsed());
        }
        if let Some(backend) = &mut self.backend {
            let time = backend.at(Instant::now());
            backend.node.bye(&mut backend.link, time);
        }
        info!(
            "stopped; {} connection(s) still open at exit",
            self.slots.len()
        );
        Ok(())
    }

    fn accept(&mut self, now: Instant) {
        for _ in 0..self.config.protection.accepts_per_event {
            let Some(listener) = &self.listener else {
                return;
            };
            if self.accept_paused {
                return;
            }
            match listener.accept() {
                Ok((socket, peer)) => self.admit(socket, peer, Instant::now()),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if is_resource_exhaustion(&e) => {
                    warn!("accept paused for {ACCEPT_RETRY:?}: {e}");
                    self.accept_paused = true;
                    self.timers.arm(now + ACCEPT_RETRY, Timer::ResumeAccept);
                    return;
                }
                Err(e) => debug!("accept: {e}"),
            }
        }
        // The listener may still hold connections, but the edge is spent:
        // take the next batch next turn, after established traffic.
        self.accept_backlog = true;
    }

    fn admit(&mut self, socket: mio::net::TcpStream, peer: SocketAddr, now: Instant) {
        let crowd = match self.control.admit(peer.ip(), &self.config.protection) {
            Ok(crowd) => crowd,
            Err(refusal) => {
                // Dropping the socket closes it: cheaper than a TLS
                // handshake just to say 503, and it is what a flood deserves.
                self.counters.refused(refusal, peer, now);
                return;
            }
        };
        if !self.start_conn(socket, peer, crowd, now) {
            self.control.closed(peer.ip(), true);
        }
    }

    /// Puts an admitted connection in the table; false if it could not be.
    fn start_conn(
        &mut self,
        mut socket: mio::net::TcpStream,
        peer: SocketAddr,
        crowd: Crowd,
        now: Instant,
    ) -> bool {
        let _ = socket.set_nodelay(true);
        let generation = self.next_generation;
        let entry = self.slots.vacant_entry();
        let Ok(key) = u32::try_from(entry.key()) else {
            warn!("connection table full; dropping {peer}");
            return false;
        };
        let id = ConnId { key, generation };
        if let Err(e) = self
            .poll
            .registry()
            .register(&mut socket, id.token(), Interest::READABLE)
        {
            warn!("cannot register {peer}: {e}");
            return false;
        }
        let conn = match Conn::new(
            socket,
            peer,
            id.wire(),
            Arc::clone(&self.tls),
            &self.config,
            crowd,
            now,
        ) {
            Ok(conn) => conn,
            Err(e) => {
                warn!("cannot start TLS for {peer}: {e}");
                return false;
            }
        };
        // Generation 0 is never used, so no backend connection id is 0.
        self.next_generation = self.next_generation.wrapping_add(1).max(1);
        self.pending_handshakes += 1;
        self.metrics.accepted.add(1);
        entry.insert(Slot {
            conn,
            generation,
            upgrading: true,
            interest: Interest::READABLE,
            scheduled: None,
            queued: false,
            deferred: false,
        });
        self.settle(id, now);
        true
    }

    /// Runs `f` on a live connection, then applies the interest and
    /// deadline it now wants, or removes it when it is done.
    ///
    /// The connection sees the time of its own event, not of the loop
    /// turn: a deadline that starts with our action (our TLS flight sent)
    /// must not start before it, however long the turn has run.
    fn with_conn<R>(
        &mut self,
        id: ConnId,
        f: impl FnOnce(&mut Conn, &mut Shared<'_>) -> R,
    ) -> Option<R> {
        let now = Instant::now();
        let slot = self.slots.get_mut(id.key as usize)?;
        if slot.generation != id.generation {
            return None; // a stale event for a slot that has been reused
        }
        let mut sh = Shared {
            tls_in: &mut self.tls_in,
            plain: &mut self.plain,
            ctx: Ctx {
                out: &mut self.out,
                config: &self.config,
                now,
                node: self.backend.as_mut().map(|b| b as &mut dyn NodePort),
                access: &self.access,
                metrics: &self.metrics,
                control: &self.control,
                codec: &mut self.codec,
            },
        };
        let (traffic, handshaking) = (slot.conn.session().stats(), slot.conn.is_tls_handshaking());
        let result = f(&mut slot.conn, &mut sh);
        self.metrics.traffic(&traffic, &slot.conn.session().stats());
        if handshaking && !slot.conn.is_tls_handshaking() {
            self.metrics.tls_handshakes.add(1);
        }
        if self.out.capacity() > self.config.protection.out_buffer_keep {
            self.out = Vec::new();
        }
        self.settle(id, now);
        Some(result)
    }

    fn settle(&mut self, id: ConnId, now: Instant) {
        let key = id.key as usize;
        let Some(slot) = self.slots.get_mut(key) else {
            return;
        };
        if slot.upgrading && !slot.conn.session().is_upgrading() {
            slot.upgrading = false;
            self.pending_handshakes -= 1;
            self.control.upgraded();
            match slot.conn.session().upgrade_answer() {
                Some(status) => self.metrics.upgrade_answered(status),
                None if slot.conn.is_tls_handshaking() => {
                    self.metrics.handshake_failed(HandshakeFailure::Tls)
                }
                None => self.metrics.handshake_failed(HandshakeFailure::Upgrade),
            }
        }
        if slot.conn.session().is_done() {
            let mut slot = self.slots.remove(key);
            let _ = self.poll.registry().deregister(slot.conn.socket());
            self.forget(&slot.conn, now);
            return;
        }
        let interest = slot.conn.interest();
        if interest != slot.interest {
            match self
                .poll
                .registry()
                .reregister(slot.conn.socket(), id.token(), interest)
            {
                Ok(()) => slot.interest = interest,
                Err(e) => warn!("reregister {}: {e}", slot.conn.session().peer()),
            }
        }
        if let Some(at) = slot.conn.deadline(&self.config) {
            // Lazy cancellation: a later deadline waits for the earlier
            // entry to fire and re-arm; only an earlier one is pushed.
            if slot.scheduled.is_none_or(|scheduled| at < scheduled) {
                slot.scheduled = Some(at);
                self.timers.arm(at, Timer::Conn(id));
            }
        }
    }

    /// Books a removed connection out of the limits, counts its eviction
    /// and writes its access-log line.
    fn forget(&mut self, conn: &Conn, now: Instant) {
        // Its upgrade, if any, ended in `settle` before it got here.
        self.control.closed(conn.session().peer().ip(), false);
        if let Some(reason) = conn.session().eviction() {
            self.counters.evicted(reason, conn.session().peer(), now);
        }
        if let Some(backend) = &mut self.backend {
            backend.close(conn.session().id(), conn.session().farewell(), now);
        }
        logging::access(&conn.session().record(now));
    }

    fn fire_timers(&mut self, now: Instant) {
        while let Some((at, timer)) = self.timers.pop_due(now) {
            match timer {
                Timer::Conn(id) => {
                    let Some(slot) = self.slots.get_mut(id.key as usize) else {
                        continue;
                    };
                    if slot.generation != id.generation || slot.scheduled != Some(at) {
                        continue; // superseded by an earlier deadline
                    }
                    slot.scheduled = None;
                    if !slot.deferred {
                        self.with_conn(id, |conn, sh| conn.on_timeout(sh));
                    }
                }
                Timer::ResumeAccept => {
                    self.accept_paused = false;
                    self.accept(now);
                }
                Timer::DrainOver => self.drain_over = true,
                Timer::Backend => self.backend_tick(now),
            }
        }
    }

    /// The control side published a change: take it, then say so.
    fn on_control(&mut self, now: Instant) {
        let changes = self.control.changes(&mut self.seen);
        if let Some(tls) = changes.tls {
            self.tls = tls;
        }
        if let Some(acl) = changes.acl {
            self.access.put_acl(acl);
            self.recheck_access();
        }
        // After the ACL: a change the acl-admin thread stored is in force
        // here before it is answered.
        for answer in self.control.answers(self.index) {
            self.answer(&answer, now);
        }
        if let Some(verifier) = changes.tokens {
            self.access.put_verifier(verifier);
        }
        if let (Some(keys), Some(backend)) = (changes.keys, self.backend.as_mut()) {
            if let Some(zap) = self.zap.as_mut() {
                zap.set_curve_clients(keys.curve_clients());
            }
            backend.node.set_keys(keys);
        }
        if changes.shutdown >= Shutdown::Drain {
            self.shut_down(now);
        }
        if changes.shutdown == Shutdown::Now && !self.drain_over {
            warn!(
                "second shutdown signal: exiting now with {} connection(s) open",
                self.slots.len()
            );
            self.drain_over = true;
        }
        self.control.adopted(self.index, &self.seen);
    }

    /// Mirrors this turn's gauges (and the counts kept elsewhere) into the
    /// metrics a scrape reads.
    fn publish_gauges(&self) {
        let m = &self.metrics;
        m.open.set(self.slots.len() as u64);
        m.pending_handshakes.set(self.pending_handshakes as u64);
        let decisions = self.access.decisions();
        m.acl_decisions[0].mirror(decisions.allowed);
        m.acl_decisions[1].mirror(decisions.denied);
        m.acl_cache[0].mirror(decisions.hits);
        m.acl_cache[1].mirror(decisions.misses);
        m.deflate_messages[0].mirror(self.codec.inflated());
        m.deflate_messages[1].mirror(self.codec.deflated());
        if let Some(Backend { node, .. }) = &self.backend {
            m.backend_dropped.mirror(node.dropped());
            m.workers.set(node.workers().len() as u64);
            m.backend_queued.set(node.backlog_len() as u64);
            m.backend_replies_dropped.mirror(node.replies_dropped());
            m.backend_lost_messages.mirror(node.lost_messages());
            m.backend_blocked.set(node.blocked() as u64);
        }
    }

    /// After an ACL change: every open connection checks `connect` on its
    /// path again and is closed with 1008 if that was revoked, and every
    /// channel subscription checks `subscribe`.
    fn recheck_access(&mut self) {
        for id in self.conn_ids() {
            self.with_conn(id, |conn, sh| conn.recheck_access(sh));
        }
        self.recheck_subscriptions();
    }

    /// The ids of every connection in the table.
    fn conn_ids(&self) -> Vec<ConnId> {
        self.slots
            .iter()
            .map(|(key, slot)| ConnId {
                key: key as u32,
                generation: slot.generation,
            })
            .collect()
    }

    /// Stops accepting, sends Close 1001 to every open connection and gives
    /// the closing handshakes until the drain deadline. Once only.
    fn shut_down(&mut self, now: Instant) {
        if self.draining {
            return;
        }
        info!(
            "shutting down: closing {} connection(s), waiting up to {:?}",
            self.slots.len(),
            self.config.timeouts.drain
        );
        self.draining = true;
        if let Some(mut listener) = self.listener.take() {
            let _ = self.poll.registry().deregister(&mut listener);
        }
        self.timers
            .arm(now + self.config.timeouts.drain, Timer::DrainOver);
        for id in self.conn_ids() {
            self.with_conn(id, |conn, sh| conn.on_shutdown(sh));
        }
    }
}

fn is_resource_exhaustion(error: &io::Error) -> bool {
    const EMFILE: i32 = 24;
    const ENFILE: i32 = 23;
    const ENOBUFS: i32 = 105;
    const ENOMEM: i32 = 12;
    matches!(
        error.raw_os_error(),
        Some(EMFILE | ENFILE | ENOBUFS | ENOMEM)
    )
}
