//! The connections of every reactor together, for the limits that hold
//! for the whole process: `--max-connections`, `--max-connections-per-ip`
//! and `--max-pending-handshakes`. Reactors touch it at accept, when an
//! upgrade ends and at close (under the control lock), never per message.

use std::collections::HashMap;
use std::net::IpAddr;

use crate::config::Protection;
use crate::outcome::Refusal;
use crate::pace::Crowd;

/// Connections held, in handshake, and per client address.
#[derive(Debug, Default)]
pub struct Census {
    open: usize,
    pending: usize,
    per_ip: HashMap<IpAddr, usize>,
}

impl Census {
    /// Counts a new connection from `ip` (in its handshake) and says how
    /// crowded it found the server, or says which limit it would break and
    /// counts nothing.
    pub fn admit(&mut self, ip: IpAddr, limits: &Protection) -> Result<Crowd, Refusal> {
        let from_ip = self.per_ip.get(&ip).copied().unwrap_or(0);
        if self.open >= limits.max_connections {
            return Err(Refusal::MaxConnections);
        }
        if limits.max_connections_per_ip > 0 && from_ip >= limits.max_connections_per_ip {
            return Err(Refusal::MaxConnectionsPerIp);
        }
        if self.pending >= limits.max_pending_handshakes {
            return Err(Refusal::MaxPendingHandshakes);
        }
        self.open += 1;
        self.pending += 1;
        let held = self.per_ip.entry(ip).or_default();
        *held += 1;
        Ok(Crowd {
            held: *held,
            pressed: self.pressed(limits),
        })
    }

    /// How crowded the server is now for a connection from `ip` it already
    /// counts.
    pub fn crowd(&self, ip: IpAddr, limits: &Protection) -> Crowd {
        Crowd {
            held: self.per_ip.get(&ip).copied().unwrap_or(0),
            pressed: self.pressed(limits),
        }
    }

    /// Pending handshakes are at half their cap or more: the pace rules
    /// stop sparing clients that think between flights.
    pub fn pressed(&self, limits: &Protection) -> bool {
        self.pending.saturating_mul(2) >= limits.max_pending_handshakes
    }

    /// A connection's upgrade ended (answered, or the connection is gone).
    pub fn upgraded(&mut self) {
        self.pending = self.pending.saturating_sub(1);
    }

    /// A connection from `ip` is gone; `upgrading` if its upgrade never
    /// ended.
    pub fn closed(&mut self, ip: IpAddr, upgrading: bool) {
        if upgrading {
            self.upgraded();
        }
        self.open = self.open.saturating_sub(1);
        if let Some(count) = self.per_ip.get_mut(&ip) {
            *count -= 1;
            if *count == 0 {
                self.per_ip.remove(&ip);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_limit_holds_across_callers_and_frees_on_close() {
        let limits = Protection {
            max_connections: 3,
            max_connections_per_ip: 2,
            max_pending_handshakes: 2,
            ..Protection::default()
        };
        let (a, b): (IpAddr, IpAddr) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        let mut census = Census::default();
        // A cap of two pending handshakes is pressed from the first.
        let crowd = |held| {
            Ok(Crowd {
                held,
                pressed: true,
            })
        };
        assert_eq!(census.admit(a, &limits), crowd(1));
        assert_eq!(census.admit(a, &limits), crowd(2));
        assert_eq!(census.admit(a, &limits), Err(Refusal::MaxConnectionsPerIp));
        assert_eq!(census.admit(b, &limits), Err(Refusal::MaxPendingHandshakes));
        census.upgraded();
        assert_eq!(census.admit(b, &limits), crowd(1));
        assert_eq!(census.admit(b, &limits), Err(Refusal::MaxConnections));
        census.closed(a, false);
        census.closed(a, true);
        assert!(
            !census.per_ip.contains_key(&a),
            "no entry for a gone address"
        );
        assert_eq!((census.open, census.pending), (1, 1));
        assert_eq!(census.admit(a, &limits), crowd(1));
    }

    #[test]
    fn pressure_starts_at_half_the_pending_cap() {
        let limits = Protection {
            max_pending_handshakes: 4,
            ..Protection::default()
        };
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        let mut census = Census::default();
        let pressed = |census: &mut Census| census.admit(ip, &limits).map(|c| c.pressed);
        assert_eq!(pressed(&mut census), Ok(false));
        assert_eq!(pressed(&mut census), Ok(true));
        census.upgraded();
        assert!(!census.pressed(&limits));
        assert_eq!(pressed(&mut census), Ok(true));
    }
}
