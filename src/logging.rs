//! Log output through `fern`, and the access-log line written when a
//! connection ends.

use std::time::{Instant, SystemTime};

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
        None => (1006, "client"),
    };
    info!(
        target: ACCESS_TARGET,
        "peer={} path={} duration_ms={} bytes_in={} bytes_out={} messages_in={} messages_out={} close={} closed_by={} evicted={}",
        conn.peer(),
        conn.path().unwrap_or("-"),
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
