//! Received messages that fail a check: counted, and logged at most once
//! per reason and node every [`DROP_LOG_EVERY`] (docs/protocol.md section 10).

use std::time::{Duration, Instant};

use log::warn;

use averyws_protocol::signing::VerifyError;

/// At most one log line per drop reason and node this often (section 10).
const DROP_LOG_EVERY: Duration = Duration::from_secs(10);

/// Counts dropped messages and logs each reason and node at most once per
/// [`DROP_LOG_EVERY`], with the count since the last line. Reasons are a
/// fixed set of strings, so the table stays small.
#[derive(Default)]
pub(crate) struct DropLog {
    pub(crate) total: u64,
    lines: Vec<DropLine>,
}

struct DropLine {
    node: usize,
    reason: &'static str,
    unlogged: u64,
    logged: Option<Instant>,
}

impl DropLog {
    pub(crate) fn record(
        &mut self,
        node: usize,
        endpoint: &str,
        reason: &'static str,
        detail: &str,
    ) {
        self.total += 1;
        let position = self
            .lines
            .iter()
            .position(|line| line.node == node && line.reason == reason);
        let line = match position {
            Some(position) => &mut self.lines[position],
            None => {
                self.lines.push(DropLine {
                    node,
                    reason,
                    unlogged: 0,
                    logged: None,
                });
                let last = self.lines.len() - 1;
                &mut self.lines[last]
            }
        };
        line.unlogged += 1;
        let now = Instant::now();
        if line
            .logged
            .is_none_or(|at| now.saturating_duration_since(at) >= DROP_LOG_EVERY)
        {
            warn!(
                "{endpoint}: dropped {} message(s): {reason}{}{detail}",
                line.unlogged,
                if detail.is_empty() { "" } else { ": " }
            );
            line.unlogged = 0;
            line.logged = Some(now);
        }
    }
}

pub(crate) fn verify_reason(error: VerifyError) -> &'static str {
    match error {
        VerifyError::Header(_) => "bad header",
        VerifyError::Unsigned => "unsigned",
        VerifyError::SignatureFrame => "malformed signature frame",
        VerifyError::UnknownKey => "unknown key id",
        VerifyError::BadSignature => "bad signature",
        VerifyError::WrongRecipient { .. } => "wrong recipient",
        VerifyError::Stale => "stale timestamp",
        VerifyError::Replayed => "replayed",
    }
}
