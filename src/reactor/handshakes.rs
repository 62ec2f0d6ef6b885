//! A budget of TLS handshake steps per loop turn (DESIGN.md section 6).
//!
//! A handshake step costs about 150 µs of crypto, an echo a fraction of a
//! microsecond: a storm of new connections (a restart, a reconnect wave,
//! a flood) would otherwise make every loop turn as long as all their
//! handshakes together, and every established connection wait that long.
//! So each turn runs at most `--handshakes-per-turn` events of connections
//! still in their TLS handshake; the others are queued, in order, and run
//! first next turn, which then polls without waiting. A queued connection's
//! deadline does not evict it: its bytes have arrived, only we are late.

use super::token::ConnId;
use super::Reactor;

impl Reactor {
    /// Handles a readiness event of connection `id`, or queues it when
    /// this turn's handshake budget is spent.
    pub(super) fn on_conn_event(&mut self, id: ConnId, readable: bool, budget: &mut usize) {
        let Some(slot) = self.slots.get_mut(id.key as usize) else {
            return;
        };
        if slot.generation != id.generation || slot.deferred {
            return; // gone, or queued already (and read in full when served)
        }
        if slot.conn.is_tls_handshaking() {
            if *budget == 0 {
                slot.deferred = true;
                self.deferred.push_back(id);
                self.metrics.deferred_handshakes.add(1);
                return;
            }
            *budget -= 1;
        }
        self.with_conn(id, |conn, sh| conn.on_ready(sh, readable));
    }

    /// Runs queued handshake steps, oldest first, within `budget`.
    pub(super) fn serve_deferred(&mut self, budget: &mut usize) {
        while *budget > 0 {
            let Some(id) = self.deferred.pop_front() else {
                return;
            };
            let Some(slot) = self.slots.get_mut(id.key as usize) else {
                continue;
            };
            if slot.generation != id.generation || !slot.deferred {
                continue;
            }
            slot.deferred = false;
            *budget -= 1;
            self.with_conn(id, |conn, sh| conn.on_ready(sh, true));
        }
    }
}
