//! Heartbeats, liveness, node death and reconnects with backoff
//! (docs/protocol.md section 6), and the DEALER each link opens.

use std::time::{Duration, Instant};

use log::{debug, info, warn};

use averyws_protocol::curve::{self, KeyPair};
use averyws_protocol::message::{Message, VERSION_3};

use crate::{millis_i32, Event, Phase, Timing, Worker, WorkerError};

impl Worker {
    /// Heartbeats, liveness and reconnects, for every node.
    pub(crate) fn tick(&mut self, now: Instant) {
        for index in 0..self.nodes.len() {
            let node = &mut self.nodes[index];
            let (interval, liveness) = node.timing(&self.timing);
            let silent = now.saturating_duration_since(node.heard);
            match &node.phase {
                Phase::Waiting { retry_at } if now >= *retry_at => self.reconnect(index, now),
                Phase::Waiting { .. } => {}
                Phase::Linked { .. } if silent > interval * u32::from(liveness) => {
                    let why = format!("silent for {} ms", silent.as_millis());
                    self.lose(index, now, &why);
                }
                Phase::Linked { welcome, .. } => {
                    if now.saturating_duration_since(node.sent) < interval {
                        continue;
                    }
                    let welcomed = welcome.is_some();
                    // Count the attempt even if the pipe is full, so a
                    // stuck node does not make this loop spin.
                    node.sent = now;
                    if !welcomed {
                        self.send_ready(index);
                        continue;
                    }
                    let heartbeat = Message::Heartbeat {
                        boot: self.instance,
                    };
                    if let Err(why) = self.transmit(index, &heartbeat, false) {
                        debug!("{}: HEARTBEAT not sent: {why}", self.nodes[index].endpoint);
                    }
                }
            }
        }
    }

    /// Open a new DEALER to a node whose backoff ran out.
    pub(crate) fn reconnect(&mut self, index: usize, now: Instant) {
        let timing = self.timing;
        let node = &mut self.nodes[index];
        match open(&self.context, &node.endpoint, &timing, self.curve.as_ref()) {
            Ok(socket) => {
                info!("{}: reconnecting", node.endpoint);
                node.phase = Phase::Linked {
                    socket,
                    welcome: None,
                };
                node.heard = now;
                node.sent = now;
                // The node may have been upgraded meanwhile.
                node.version = VERSION_3;
                self.send_ready(index);
            }
            Err(why) => {
                warn!("{}: cannot reconnect: {why}", node.endpoint);
                node.phase = Phase::Waiting {
                    retry_at: now + node.backoff,
                };
                node.backoff = (node.backoff * 2).min(timing.reconnect_max);
            }
        }
    }

    /// The node is dead (silence or BYE): drop its state and its socket,
    /// and reconnect after the backoff, which doubles for next time.
    pub(crate) fn lose(&mut self, index: usize, now: Instant, why: &str) {
        self.reset(index);
        let max = self.timing.reconnect_max;
        let node = &mut self.nodes[index];
        warn!(
            "{}: node dead ({why}); reconnecting in {} ms",
            node.endpoint,
            node.backoff.as_millis()
        );
        // Dropping the socket closes it (linger 0).
        node.phase = Phase::Waiting {
            retry_at: now + node.backoff,
        };
        node.backoff = (node.backoff * 2).min(max);
    }

    /// Forget node `index`'s registration; if it had one, queue
    /// [`Event::NodeReset`]. Returns whether it had one.
    pub(crate) fn reset(&mut self, index: usize) -> bool {
        let node = &mut self.nodes[index];
        let Phase::Linked { welcome, .. } = &mut node.phase else {
            return false;
        };
        if welcome.take().is_none() {
            return false;
        }
        node.batch.clear();
        let id = node.id;
        let queued = self
            .pending
            .iter()
            .any(|event| matches!(event, Event::NodeReset { node } if *node == id));
        if !queued {
            self.pending.push_back(Event::NodeReset { node: id });
        }
        true
    }

    /// The node restarted or forgot this worker: drop its state and
    /// register again.
    pub(crate) fn restart(&mut self, index: usize, why: &str) {
        info!("{}: {why}: registering again", self.nodes[index].endpoint);
        self.reset(index);
        self.send_ready(index);
    }

    /// The earliest timer of any node.
    pub(crate) fn next_deadline(&self) -> Instant {
        let far = Instant::now() + Duration::from_secs(3600);
        self.nodes
            .iter()
            .map(|node| match node.phase {
                Phase::Waiting { retry_at } => retry_at,
                Phase::Linked { .. } => {
                    let (interval, liveness) = node.timing(&self.timing);
                    let dead =
                        node.heard + interval * u32::from(liveness) + Duration::from_millis(1);
                    dead.min(node.sent + interval)
                }
            })
            .fold(far, Instant::min)
    }

    /// Block until a socket is readable or `timeout` passed. Whether a
    /// signal interrupted the wait.
    pub(crate) fn wait(&self, timeout: Duration) -> bool {
        let mut items: Vec<zmq::PollItem<'_>> = self
            .nodes
            .iter()
            .filter_map(|node| match &node.phase {
                Phase::Linked { socket, .. } => Some(socket.as_poll_item(zmq::POLLIN)),
                Phase::Waiting { .. } => None,
            })
            .collect();
        // Round up, so a sub-millisecond wait does not spin.
        let millis = timeout.as_micros().div_ceil(1000);
        match zmq::poll(&mut items, i64::try_from(millis).unwrap_or(i64::MAX)) {
            Ok(_) => false,
            Err(zmq::Error::EINTR) => true,
            Err(why) => {
                warn!("zmq poll failed: {why}");
                std::thread::sleep(timeout);
                false
            }
        }
    }
}

/// A DEALER for `endpoint`, set up as section 1 says (no routing id,
/// linger 0, CURVE as `curve` on a signed link) and connected.
pub(crate) fn open(
    context: &zmq::Context,
    endpoint: &str,
    timing: &Timing,
    curve: Option<&KeyPair>,
) -> Result<zmq::Socket, WorkerError> {
    let socket = context
        .socket(zmq::DEALER)
        .map_err(socket_error("socket"))?;
    if let Some(client) = curve {
        curve::connect_as(&socket, client).map_err(socket_error("curve"))?;
    }
    socket.set_linger(0).map_err(socket_error("linger"))?;
    // tcp://[::1]:PORT and other IPv6 endpoints connect only with this on.
    socket.set_ipv6(true).map_err(socket_error("ipv6"))?;
    socket
        .set_sndtimeo(millis_i32(timing.send_timeout))
        .map_err(socket_error("sndtimeo"))?;
    socket
        .set_maxmsgsize(i64::try_from(timing.max_frame).unwrap_or(i64::MAX))
        .map_err(socket_error("maxmsgsize"))?;
    socket.connect(endpoint).map_err(|why| {
        WorkerError::Config(format!("cannot connect to {endpoint:?}: {}", why.message()))
    })?;
    Ok(socket)
}

pub(crate) fn socket_error(op: &'static str) -> impl Fn(zmq::Error) -> WorkerError {
    move |error| WorkerError::Socket {
        op,
        reason: error.message(),
    }
}
