//! The thread that follows a PostgreSQL ACL store for every reactor of
//! the process (docs/acl.md, "The PostgreSQL store").
//!
//! It LISTENs on the store's channel, and on each notification (or every
//! `check_interval` without one) reads the version counter; when the
//! version differs from the one in force it reads a snapshot, builds the
//! ACL whole and publishes it like a SIGHUP reload, so every reactor
//! re-checks its connections. It LISTENs before it reads the version, so
//! a change committed while it was away, or between the two, is caught.
//!
//! When the database is lost the reactors keep serving on the last ACL
//! loaded; the thread logs it, counts it ([`StoreHealth`]) and reconnects
//! with a doubling backoff. The reactors never wait for it.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use log::{error, info, warn};
use postgres::fallible_iterator::FallibleIterator;
use postgres::Client;

use super::Control;
use crate::acl_store::{self, pg, Refusal};
use crate::config::PgStore;
use crate::metrics::StoreHealth;

/// Starts the follower of `store`; `known` is the version the reactors
/// started with (`None` when they started from the cache file).
pub fn spawn(control: Arc<Control>, store: PgStore, known: Option<i64>) -> io::Result<()> {
    let health = control.follow_store();
    if let Some(version) = known {
        health.up.set(1);
        health.version.set(u64::try_from(version).unwrap_or(0));
    }
    let mut follower = Follower {
        control,
        store,
        known,
        health,
    };
    std::thread::Builder::new()
        .name("acl-store".into())
        .spawn(move || follower.run())?;
    Ok(())
}

struct Follower {
    control: Arc<Control>,
    store: PgStore,
    /// The version of the ACL in force, if it came from the database.
    known: Option<i64>,
    health: Arc<StoreHealth>,
}

impl Follower {
    /// Follows the store for as long as the process runs.
    fn run(&mut self) {
        let mut wait = self.store.reconnect_min;
        loop {
            let why = self.follow(&mut wait);
            self.health.up.set(0);
            self.health.failures.add(1);
            warn!(
                "ACL store {}: {why}; serving on the ACL loaded last ({}), reconnecting in {}",
                self.store.describe(),
                self.known
                    .map_or_else(|| "the cached copy".to_owned(), |v| format!("version {v}")),
                humantime::format_duration(wait)
            );
            std::thread::sleep(wait);
            wait = (wait * 2).min(self.store.reconnect_max);
        }
    }

    /// One connection: listens, catches up, then waits for changes until
    /// the connection fails; returns why. `wait` is reset once connected.
    fn follow(&mut self, wait: &mut Duration) -> String {
        let mut client = match pg::connect(&self.store) {
            Ok(client) => client,
            Err(why) => return why,
        };
        let listen = format!("LISTEN \"{}\"", pg::channel(&self.store.schema));
        if let Err(e) = client.batch_execute(&listen) {
            return pg::reason(&e);
        }
        if self.health.up.get() == 0 {
            info!("ACL store {}: connected", self.store.describe());
        }
        self.health.up.set(1);
        *wait = self.store.reconnect_min;
        loop {
            if let Err(why) = self.catch_up(&mut client) {
                return why;
            }
            if let Err(why) = self.wait_for_change(&mut client) {
                return why;
            }
        }
    }

    /// Waits up to `check_interval` for a notification, then takes every
    /// other one that arrived: one catch-up serves them all.
    fn wait_for_change(&self, client: &mut Client) -> Result<(), String> {
        let mut notifications = client.notifications();
        let failed = |e: postgres::Error| pg::reason(&e);
        notifications
            .timeout_iter(self.store.check_interval)
            .next()
            .map_err(failed)?;
        notifications.iter().count().map_err(failed)?;
        Ok(())
    }

    /// Loads and publishes the store's ACL when its version is not the
    /// one in force. A snapshot the engine refuses keeps the ACL in force
    /// and is not read again until the version moves.
    fn catch_up(&mut self, client: &mut Client) -> Result<(), String> {
        let version = pg::version(client, &self.store.schema)?;
        if self.known == Some(version) {
            return Ok(());
        }
        match acl_store::snapshot_on(client, &self.store) {
            Ok((version, acl)) => {
                self.known = Some(version);
                // The follower reads the store in order: what it loaded is
                // the newest, even after a reset of the counter.
                let published = self.control.publish_stored_acl(version, acl, false);
                self.health.loads.add(1);
                if let Some(published) = published {
                    if self.control.wait_adopted(published) {
                        info!(
                            "ACL store: version {version} in force on {} reactor(s)",
                            self.control.reactors()
                        );
                    }
                }
                // Set once in force: the acl-admin thread answers on it.
                self.health.version.set(u64::try_from(version).unwrap_or(0));
                Ok(())
            }
            Err(Refusal::Invalid(why)) => {
                self.known = Some(version);
                self.health.rejected.add(1);
                error!("ACL store: version {version} refused, keeping the ACL in force: {why}");
                Ok(())
            }
            Err(Refusal::Unavailable(why)) => Err(why),
        }
    }
}
