//! Channel subscriptions of one node's connections, sans-IO. Fan-out
//! happens here; several nodes are reached by workers publishing to each
//! (docs/protocol.md section 8).

use std::collections::{HashMap, HashSet};

/// Default of [`crate::node::NodeConfig::max_channels_per_conn`]: most
/// channels one connection may be subscribed to.
pub const MAX_CHANNELS_PER_CONN: usize = 256;

/// Subscriptions both ways: channel to connections, connection to channels.
#[derive(Debug)]
pub struct Channels {
    subscribers: HashMap<String, HashSet<u64>>,
    of_conn: HashMap<u64, Vec<String>>,
    per_conn: usize,
}

impl Default for Channels {
    fn default() -> Self {
        Channels::with_cap(MAX_CHANNELS_PER_CONN)
    }
}

/// Why a subscription was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubscribeError {
    /// The connection holds as many subscriptions as it may.
    TooMany,
}

impl Channels {
    /// No subscriptions yet; at most `per_conn` for each connection.
    pub fn with_cap(per_conn: usize) -> Channels {
        Channels {
            subscribers: HashMap::new(),
            of_conn: HashMap::new(),
            per_conn,
        }
    }

    /// Subscribes `conn` to `channel`; subscribing twice is not an error.
    pub fn subscribe(&mut self, conn: u64, channel: &str) -> Result<(), SubscribeError> {
        let mine = self.of_conn.entry(conn).or_default();
        if mine.iter().any(|c| c == channel) {
            return Ok(());
        }
        if mine.len() >= self.per_conn {
            return Err(SubscribeError::TooMany);
        }
        mine.push(channel.to_owned());
        self.subscribers
            .entry(channel.to_owned())
            .or_default()
            .insert(conn);
        Ok(())
    }

    /// Unsubscribes `conn` from `channel`; not subscribed is not an error.
    pub fn unsubscribe(&mut self, conn: u64, channel: &str) {
        if let Some(mine) = self.of_conn.get_mut(&conn) {
            mine.retain(|c| c != channel);
            if mine.is_empty() {
                self.of_conn.remove(&conn);
            }
        }
        self.drop_subscriber(channel, conn);
    }

    /// Ends every subscription of a connection that is gone.
    pub fn remove_conn(&mut self, conn: u64) {
        for channel in self.of_conn.remove(&conn).unwrap_or_default() {
            self.drop_subscriber(&channel, conn);
        }
    }

    /// Every subscription, as (connection, channel).
    pub fn all(&self) -> Vec<(u64, String)> {
        self.of_conn
            .iter()
            .flat_map(|(&conn, channels)| channels.iter().map(move |c| (conn, c.clone())))
            .collect()
    }

    /// The connections subscribed to `channel`.
    pub fn subscribers(&self, channel: &str) -> Vec<u64> {
        self.subscribers
            .get(channel)
            .map(|conns| conns.iter().copied().collect())
            .unwrap_or_default()
    }

    fn drop_subscriber(&mut self, channel: &str, conn: u64) {
        if let Some(conns) = self.subscribers.get_mut(channel) {
            conns.remove(&conn);
            if conns.is_empty() {
                self.subscribers.remove(channel);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subscribe_publish_unsubscribe_and_cleanup() {
        let mut channels = Channels::default();
        channels.subscribe(1, "rooms/a").unwrap();
        channels.subscribe(2, "rooms/a").unwrap();
        channels.subscribe(2, "rooms/a").unwrap();
        channels.subscribe(2, "rooms/b").unwrap();
        let mut a = channels.subscribers("rooms/a");
        a.sort();
        assert_eq!(a, vec![1, 2]);
        let mut all = channels.all();
        all.sort();
        let expected = [(1, "rooms/a"), (2, "rooms/a"), (2, "rooms/b")];
        assert_eq!(all, expected.map(|(conn, c)| (conn, c.to_owned())));
        channels.unsubscribe(1, "rooms/a");
        assert_eq!(channels.subscribers("rooms/a"), vec![2]);
        channels.remove_conn(2);
        assert!(channels.subscribers("rooms/a").is_empty());
        assert!(channels.subscribers("rooms/b").is_empty());
        assert!(channels.subscribers.is_empty() && channels.of_conn.is_empty());
    }

    #[test]
    fn subscriptions_per_connection_are_capped() {
        let mut channels = Channels::default();
        for i in 0..MAX_CHANNELS_PER_CONN {
            channels.subscribe(1, &format!("c{i}")).unwrap();
        }
        assert_eq!(
            channels.subscribe(1, "one-more"),
            Err(SubscribeError::TooMany)
        );
        assert!(channels.subscribe(1, "c0").is_ok());
    }
}
