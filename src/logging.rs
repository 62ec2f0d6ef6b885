//! Log output through `fern`, and the access-log line written when a
//! connection ends.

use std::time::{Duration, Instant, SystemTime};

use log::info;

use crate::conn::{Closer, Conn};

/// Log target of the one-line-per-connection access log.
pub const ACCESS_TARGET: &str = "averyws::access";

/// Sends log records at `level` and above to stderr, one line each.
pub fn init(level: log::LevelFilter) -> Result<(), log::SetLoggerError> {
    fern::Dispatch::new()
        .format(|out, message, record| {
            out.finish(format_args!(
                "{} {:5} {}: {}",
                humantime::format_rfc3339_millis(SystemTime::now()),
                record.level(),
                record.target(),
                message
            ))
        })
        .level(level)
        .chain(std::io::stderr())
        .apply()
}

/// Writes the access-log line of a connection that has ended.
pub fn access(conn: &Conn, now: Instant) {
    let stats = conn.stats();
    let (code, closer) = match conn.close() {
        Some((code, Closer::Client)) => (code, "client"),
        Some((code, Closer::Server)) => (code, "server"),
        Some((code, Closer::Worker)) => (code, "worker"),
        None => (1006, "client"),
    };
    info!(
        target: ACCESS_TARGET,
        "peer={} path={} user={} duration_ms={} bytes_in={} bytes_out={} messages_in={} messages_out={} close={} closed_by={} evicted={}",
        conn.peer(),
        conn.path().unwrap_or("-"),
        conn.identity().map_or("-", |identity| identity.user()),
        conn.age(now).as_millis(),
        stats.bytes_in,
        stats.bytes_out,
        stats.messages_in,
        stats.messages_out,
        code,
        closer,
        conn.eviction().map_or("-", |reason| reason.as_str()),
    );
}

/// At most [`LogBudget::LINES`] lines a second; the rest are summed up in
/// one line when the next second starts.
#[derive(Debug, Default)]
pub struct LogBudget {
    window: Option<Instant>,
    used: u32,
    suppressed: u64,
}

impl LogBudget {
    /// Lines allowed a second.
    pub const LINES: u32 = 20;

    /// True when a line may be written at `now`; when a new second starts
    /// with lines suppressed, says how many first.
    pub fn allow(&mut self, now: Instant) -> bool {
        let fresh = self
            .window
            .is_none_or(|start| now.saturating_duration_since(start) >= Duration::from_secs(1));
        if fresh {
            if self.suppressed > 0 {
                log::warn!("{} more lines like the above suppressed", self.suppressed);
            }
            *self = LogBudget {
                window: Some(now),
                ..LogBudget::default()
            };
        }
        self.used += 1;
        if self.used > Self::LINES {
            self.suppressed += 1;
        }
        self.used <= Self::LINES
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budget_allows_a_burst_per_second_with_virtual_time() {
        let t0 = Instant::now();
        let mut budget = LogBudget::default();
        let allowed = (0..100).filter(|_| budget.allow(t0)).count();
        assert_eq!(allowed, LogBudget::LINES as usize);
        assert_eq!(budget.suppressed, 80);
        assert!(budget.allow(t0 + Duration::from_secs(1)));
        assert_eq!(budget.suppressed, 0);
    }
}
