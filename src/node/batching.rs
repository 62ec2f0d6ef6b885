//! Client messages to a version 2 worker (docs/protocol.md section 13):
//! appended to the worker's open batch, which goes when the next record
//! would not fit, before any other message to that worker, and at the end
//! of the reactor's turn ([`Node::flush_batches`]). No timer: a lone
//! message waits only for the end of the turn it arrived in.

use super::workers::WorkerRef;
use super::{Delivery, Node, Time, Wire};
use crate::backend::batch::MAX_BATCHED_PAYLOAD;
use crate::backend::message::{Data, Message, MessageType, Payload, VERSION_2};

impl Node {
    /// Hands client message `payload` of connection `conn` to `worker`:
    /// into its batch (version 2), else as one MESSAGE. On
    /// [`Delivery::Blocked`] the caller keeps it.
    pub fn send_client_message(
        &mut self,
        wire: &mut impl Wire,
        worker: WorkerRef,
        conn: u64,
        payload: Payload<'_>,
        time: Time,
    ) -> Delivery {
        if self.backlogs.waiting(worker) {
            return Delivery::Blocked;
        }
        let Some(open) = self.workers.get(worker).map(|w| &w.batch) else {
            return Delivery::Gone;
        };
        let len = payload.as_bytes().len();
        let version = self.workers.get(worker).map_or(0, |w| w.version);
        if version < VERSION_2 || len > MAX_BATCHED_PAYLOAD {
            let message = Message::Message(Data { conn, payload });
            return self.send_data(wire, worker, &message, time);
        }
        if !open.fits(len) {
            match self.seal(wire, worker, time) {
                Delivery::Sent => {}
                other => return other,
            }
        }
        let Some(batch) = self.workers.get_mut(worker).map(|w| &mut w.batch) else {
            return Delivery::Gone;
        };
        if batch.is_empty() {
            self.open_batches.push(worker);
        }
        batch.push(conn, payload);
        Delivery::Sent
    }

    /// Sends every open batch: the end of a turn.
    pub fn flush_batches(&mut self, wire: &mut impl Wire, time: Time) {
        for worker in std::mem::take(&mut self.open_batches) {
            // Blocked: it waits in the backlog; gone: it went with it.
            self.seal(wire, worker, time);
        }
    }

    /// Sends `worker`'s open batch, if any, as one MESSAGES; a full pipe
    /// puts it first in the worker's backlog ([`Delivery::Blocked`]).
    pub(super) fn seal(&mut self, wire: &mut impl Wire, worker: WorkerRef, time: Time) -> Delivery {
        let Some(w) = self.workers.get_mut(worker) else {
            return Delivery::Gone;
        };
        if w.batch.is_empty() {
            return Delivery::Sent;
        }
        let (mut batch, version) = (std::mem::take(&mut w.batch), w.version);
        let message = Message::Messages(batch.batch());
        let encoded = self.encode_for((worker.instance, version), &message, time);
        // The emptied builder goes back, its buffer kept for the next one.
        batch.clear();
        if let Some(w) = self.workers.get_mut(worker) {
            w.batch = batch;
        }
        if encoded.is_err() {
            log::error!("cannot encode a batch for a worker");
            return Delivery::Sent;
        }
        match self.transmit(wire, worker, time) {
            Delivery::Blocked => {
                self.queue(worker, MessageType::Messages, time.now);
                Delivery::Blocked
            }
            other => other,
        }
    }
}
