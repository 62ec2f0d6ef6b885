//! What the server says about a connection it ended: the access-log line
//! and the eviction reason, so a test can prove which rule fired.

use std::time::Duration;

use super::Server;

/// How long to wait for a connection's log lines once it has ended.
const LIMIT: Duration = Duration::from_secs(15);

/// How late the server may act on a deadline on a busy two-core machine
/// (parallel tests, a debug build): generous, since only the lower bound is
/// the rule itself.
pub const SLACK: Duration = Duration::from_secs(3);

/// Checks that a rule with a `deadline` fired after `elapsed`: never
/// before it, and not later than [`SLACK`] after it.
pub fn assert_fired_at(elapsed: Duration, deadline: Duration, rule: &str) {
    assert!(
        elapsed >= deadline,
        "{rule}: fired after {elapsed:?}, before its {deadline:?}"
    );
    assert!(
        elapsed <= deadline + SLACK,
        "{rule}: fired after {elapsed:?}, long after its {deadline:?}"
    );
}

/// The access-log line of the connection from local `port`, once it ended.
pub fn access_line(server: &Server, port: u16) -> String {
    let peer = format!("peer=127.0.0.1:{port} ");
    server
        .wait_log(&peer, LIMIT)
        .unwrap_or_else(|| panic!("no access line for {peer}: {:#?}", server.log()))
}

/// Checks that the connection from local `port` was evicted for `reason`,
/// in the access log and in the operator's warning, and for nothing else
/// first; returns the access-log line.
pub fn assert_evicted(server: &Server, port: u16, reason: &str) -> String {
    let line = access_line(server, port);
    assert!(line.contains(" averyws::access: "), "{line}");
    assert!(line.ends_with(&format!(" evicted={reason}")), "{line}");
    let warning = format!("evicted 127.0.0.1:{port}: {reason} (");
    let warned = server.wait_log(&warning, LIMIT);
    assert!(
        warned.is_some_and(|line| line.contains(" WARN ")),
        "no `{warning}` warning: {:#?}",
        server.log()
    );
    // The connection's own debug lines: it was never evicted for anything
    // else first (the access log keeps only the last reason).
    let debug = format!(" averyws::session::pacing: 127.0.0.1:{port}: evicted: ");
    let reasons: Vec<String> = server
        .log()
        .iter()
        .filter_map(|line| Some(line.split_once(&debug)?.1.to_owned()))
        .collect();
    assert!(
        !reasons.is_empty() && reasons.iter().all(|r| r == reason),
        "evicted for {reasons:?}, want only {reason}"
    );
    line
}
