//! mio tokens that carry a slab key and a generation, so an event for a
//! connection that has gone can never reach the connection that reuses its
//! slot.

use mio::Token;

/// The TLS listener.
pub const LISTENER: Token = Token(usize::MAX);
/// The reactor's waker: the control side published a change.
pub const WAKE: Token = Token(usize::MAX - 1);
/// The backend link's ROUTER (`ZMQ_FD`).
pub const BACKEND: Token = Token(usize::MAX - 2);
/// The ZAP handler's socket (`ZMQ_FD`).
pub const ZAP: Token = Token(usize::MAX - 3);
/// The backend ROUTER's handshake monitor (`ZMQ_FD`).
pub const MONITOR: Token = Token(usize::MAX - 4);

/// Every token that names no connection.
const FIXED: [Token; 5] = [LISTENER, WAKE, BACKEND, ZAP, MONITOR];

/// A slab key together with the generation of the connection in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ConnId {
    /// Slot in the connection slab.
    pub key: u32,
    /// Counter value when the connection was accepted.
    pub generation: u32,
}

impl ConnId {
    /// The mio token for this connection.
    pub fn token(self) -> Token {
        Token(((self.generation as usize) << 32) | self.key as usize)
    }

    /// The connection a token names, unless it is one of the fixed tokens.
    pub fn from_token(token: Token) -> Option<Self> {
        if FIXED.contains(&token) {
            return None;
        }
        Some(Self {
            key: (token.0 & 0xFFFF_FFFF) as u32,
            generation: (token.0 >> 32) as u32,
        })
    }
}

impl ConnId {
    /// The connection id on the backend link: never 0 (generations start
    /// at 1) and not reused within a boot until the 32-bit generation
    /// counter wraps.
    pub fn wire(self) -> u64 {
        (u64::from(self.generation) << 32) | u64::from(self.key)
    }

    /// The connection a backend connection id names.
    pub fn from_wire(id: u64) -> Self {
        Self {
            key: (id & 0xFFFF_FFFF) as u32,
            generation: (id >> 32) as u32,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_round_trips_key_and_generation() {
        for (key, generation) in [(0, 0), (1, 7), (u32::MAX - 2, u32::MAX - 1)] {
            let id = ConnId { key, generation };
            assert_eq!(ConnId::from_token(id.token()), Some(id));
        }
    }

    #[test]
    fn fixed_tokens_are_not_connections() {
        for token in FIXED {
            assert_eq!(ConnId::from_token(token), None);
        }
    }

    #[test]
    fn wire_ids_round_trip() {
        let id = ConnId {
            key: 5,
            generation: 1,
        };
        assert_eq!(id.wire(), (1 << 32) | 5);
        assert_eq!(ConnId::from_wire(id.wire()), id);
    }
}
