//! The Prometheus text exposition format (version 0.0.4) of every
//! reactor's [`ReactorMetrics`], one sample per reactor, labelled
//! `reactor="N"`.

use std::fmt::Write;

use super::{ReactorMetrics, StoreHealth, TURN_BUCKETS_US, UPGRADE_STATUSES};
use crate::outcome::Eviction;
use crate::outcome::Refusal;

/// The `Content-Type` of [`render`]'s output.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// A metric family's `# HELP` and `# TYPE` lines.
struct Family<'a> {
    name: &'a str,
    kind: &'a str,
    help: &'a str,
}

/// Appends the exposition of `reactors` (index = reactor number) to `out`.
pub fn render(reactors: &[&ReactorMetrics], out: &mut String) {
    let mut w = Writer { out, reactors };
    w.scalar(
        "averyws_connections_accepted_total",
        "counter",
        "Connections accepted into a TLS handshake.",
        |m| m.accepted.get(),
    );
    w.labelled(
        "averyws_connections_refused_total",
        "counter",
        "Connections refused at accept, by the limit that refused them.",
        "reason",
        &Refusal::ALL.map(Refusal::as_str),
        |m, i| m.refused[i].get(),
    );
    w.scalar(
        "averyws_connections_open",
        "gauge",
        "Connections held, in any phase.",
        |m| m.open.get(),
    );
    w.scalar(
        "averyws_handshakes_pending",
        "gauge",
        "Connections in the TLS handshake or the upgrade.",
        |m| m.pending_handshakes.get(),
    );
    w.scalar(
        "averyws_tls_handshakes_total",
        "counter",
        "TLS handshakes completed.",
        |m| m.tls_handshakes.get(),
    );
    w.scalar(
        "averyws_handshakes_deferred_total",
        "counter",
        "TLS handshake steps put off to a later loop turn by the per-turn budget.",
        |m| m.deferred_handshakes.get(),
    );
    w.labelled(
        "averyws_handshake_failures_total",
        "counter",
        "Connections that ended before their upgrade was answered, by stage.",
        "stage",
        &["tls", "upgrade"],
        |m, i| m.handshake_failures[i].get(),
    );
    let statuses = UPGRADE_STATUSES.map(|status| status.to_string());
    let statuses = statuses.each_ref().map(String::as_str);
    w.labelled(
        "averyws_upgrade_responses_total",
        "counter",
        "Answers to upgrade requests, by HTTP status.",
        "status",
        &statuses,
        |m, i| m.upgrades[i].get(),
    );
    w.labelled(
        "averyws_tokens_total",
        "counter",
        "Bearer tokens judged at the upgrade.",
        "result",
        &["valid", "invalid"],
        |m, i| m.tokens[i].get(),
    );
    w.scalar(
        "averyws_messages_received_total",
        "counter",
        "WebSocket data messages received from clients.",
        |m| m.messages_in.get(),
    );
    w.scalar(
        "averyws_messages_sent_total",
        "counter",
        "WebSocket data messages sent to clients.",
        |m| m.messages_out.get(),
    );
    w.scalar(
        "averyws_deflate_sessions_total",
        "counter",
        "Sessions that agreed to permessage-deflate.",
        |m| m.deflate_sessions.get(),
    );
    w.labelled(
        "averyws_deflate_messages_total",
        "counter",
        "Data messages compressed with permessage-deflate, by direction.",
        "direction",
        &["received", "sent"],
        |m, i| m.deflate_messages[i].get(),
    );
    w.scalar(
        "averyws_bytes_received_total",
        "counter",
        "TLS bytes received from clients.",
        |m| m.bytes_in.get(),
    );
    w.scalar(
        "averyws_bytes_sent_total",
        "counter",
        "TLS bytes sent to clients.",
        |m| m.bytes_out.get(),
    );
    w.labelled(
        "averyws_evictions_total",
        "counter",
        "Clients evicted, by reason.",
        "reason",
        &Eviction::ALL.map(Eviction::as_str),
        |m, i| m.evictions[i].get(),
    );
    w.scalar(
        "averyws_backend_workers",
        "gauge",
        "Workers registered on the reactor's backend node.",
        |m| m.workers.get(),
    );
    w.scalar(
        "averyws_backend_queued_messages",
        "gauge",
        "Messages waiting in per-worker backlogs.",
        |m| m.backend_queued.get(),
    );
    w.scalar(
        "averyws_backend_blocked_connections",
        "gauge",
        "Connections whose reading waits for a full worker pipe.",
        |m| m.backend_blocked.get(),
    );
    w.scalar(
        "averyws_backend_dropped_total",
        "counter",
        "Messages from workers dropped as unverifiable or malformed.",
        |m| m.backend_dropped.get(),
    );
    w.scalar(
        "averyws_backend_replies_dropped_total",
        "counter",
        "ERROR replies and HEARTBEATs not sent: their worker does not read.",
        |m| m.backend_replies_dropped.get(),
    );
    w.scalar(
        "averyws_backend_lost_messages_total",
        "counter",
        "Client messages handed to workers that died; their clients got Close 1012.",
        |m| m.backend_lost_messages.get(),
    );
    w.labelled(
        "averyws_acl_decisions_total",
        "counter",
        "ACL decisions, by result.",
        "result",
        &["allow", "deny"],
        |m, i| m.acl_decisions[i].get(),
    );
    w.labelled(
        "averyws_acl_cache_lookups_total",
        "counter",
        "ACL decisions looked up in the decision cache, by outcome.",
        "outcome",
        &["hit", "miss"],
        |m, i| m.acl_cache[i].get(),
    );
    w.scalar(
        "averyws_metrics_scrapes_total",
        "counter",
        "GET /metrics requests served.",
        |m| m.scrapes.get(),
    );
    w.turns();
}

struct Writer<'a> {
    out: &'a mut String,
    reactors: &'a [&'a ReactorMetrics],
}

impl Writer<'_> {
    fn head(&mut self, family: &Family<'_>) {
        let Family { name, kind, help } = family;
        let _ = writeln!(self.out, "# HELP {name} {help}\n# TYPE {name} {kind}");
    }

    fn scalar(
        &mut self,
        name: &str,
        kind: &str,
        help: &str,
        value: impl Fn(&ReactorMetrics) -> u64,
    ) {
        self.head(&Family { name, kind, help });
        for (reactor, m) in self.reactors.iter().enumerate() {
            let _ = writeln!(self.out, "{name}{{reactor=\"{reactor}\"}} {}", value(m));
        }
    }

    /// A family with one more label, whose values are `texts`; `value`
    /// reads the sample for the text at a position.
    fn labelled(
        &mut self,
        name: &str,
        kind: &str,
        help: &str,
        label: &str,
        texts: &[&str],
        value: impl Fn(&ReactorMetrics, usize) -> u64,
    ) {
        self.head(&Family { name, kind, help });
        for (reactor, m) in self.reactors.iter().enumerate() {
            for (index, text) in texts.iter().enumerate() {
                let _ = writeln!(
                    self.out,
                    "{name}{{reactor=\"{reactor}\",{label}=\"{text}\"}} {}",
                    value(m, index)
                );
            }
        }
    }

    fn turns(&mut self) {
        let name = "averyws_loop_turn_seconds";
        self.head(&Family {
            name,
            kind: "histogram",
            help: "Reactor loop turns: from the poll returning to the next poll.",
        });
        for (reactor, m) in self.reactors.iter().enumerate() {
            let mut cumulative = 0;
            for (index, bucket) in m.turns.buckets.iter().enumerate() {
                cumulative += bucket.get();
                let le = TURN_BUCKETS_US
                    .get(index)
                    .map_or_else(|| "+Inf".to_owned(), |&us| seconds(us));
                let _ = writeln!(
                    self.out,
                    "{name}_bucket{{reactor=\"{reactor}\",le=\"{le}\"}} {cumulative}"
                );
            }
            let sum = seconds(m.turns.sum_us.get());
            let _ = writeln!(self.out, "{name}_sum{{reactor=\"{reactor}\"}} {sum}");
            let _ = writeln!(
                self.out,
                "{name}_count{{reactor=\"{reactor}\"}} {cumulative}"
            );
        }
    }
}

/// Appends the ACL store's health to `out`: process-wide samples without
/// a reactor label.
pub fn render_store(health: &StoreHealth, out: &mut String) {
    let families = [
        (
            "averyws_acl_store_up",
            "gauge",
            "1 while the PostgreSQL ACL store is connected, 0 while the node serves on the ACL loaded last.",
            health.up.get(),
        ),
        (
            "averyws_acl_store_version",
            "gauge",
            "The ACL store's version counter of the ACL in force.",
            health.version.get(),
        ),
        (
            "averyws_acl_store_loads_total",
            "counter",
            "ACL snapshots loaded from the store and put in force.",
            health.loads.get(),
        ),
        (
            "averyws_acl_store_failures_total",
            "counter",
            "Connections to the ACL store lost or refused.",
            health.failures.get(),
        ),
        (
            "averyws_acl_store_rejected_total",
            "counter",
            "ACL snapshots refused for a bad row; the ACL in force was kept.",
            health.rejected.get(),
        ),
    ];
    for (name, kind, help, value) in families {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
        );
    }
}

/// Microseconds as decimal seconds, exactly.
fn seconds(us: u64) -> String {
    format!("{}.{:06}", us / 1_000_000, us % 1_000_000)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::HandshakeFailure;
    use std::time::Duration;

    fn sample<'t>(text: &'t str, series: &str) -> Option<&'t str> {
        text.lines()
            .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
    }

    #[test]
    fn every_reactor_is_a_labelled_sample() {
        let (a, b) = (ReactorMetrics::default(), ReactorMetrics::default());
        a.accepted.add(3);
        b.accepted.add(4);
        b.evictions[Eviction::Idle.index()].add(2);
        b.handshake_failed(HandshakeFailure::Upgrade);
        a.upgrade_answered(403);
        a.upgrade_answered(999); // not a status we send: ignored
        let mut text = String::new();
        render(&[&a, &b], &mut text);
        assert_eq!(
            sample(&text, "averyws_connections_accepted_total{reactor=\"0\"}"),
            Some("3")
        );
        assert_eq!(
            sample(&text, "averyws_connections_accepted_total{reactor=\"1\"}"),
            Some("4")
        );
        assert_eq!(
            sample(
                &text,
                "averyws_evictions_total{reactor=\"1\",reason=\"idle_timeout\"}"
            ),
            Some("2")
        );
        assert_eq!(
            sample(
                &text,
                "averyws_evictions_total{reactor=\"0\",reason=\"idle_timeout\"}"
            ),
            Some("0")
        );
        assert_eq!(
            sample(
                &text,
                "averyws_handshake_failures_total{reactor=\"1\",stage=\"upgrade\"}"
            ),
            Some("1")
        );
        assert_eq!(
            sample(
                &text,
                "averyws_upgrade_responses_total{reactor=\"0\",status=\"403\"}"
            ),
            Some("1")
        );
        assert_eq!(
            text.matches("# TYPE averyws_connections_accepted_total counter")
                .count(),
            1
        );
    }

    #[test]
    fn turn_histogram_is_cumulative_with_exact_sum() {
        let m = ReactorMetrics::default();
        for us in [5, 10, 11, 900, 1_000_000] {
            m.turns.observe(Duration::from_micros(us));
        }
        let mut text = String::new();
        render(&[&m], &mut text);
        let bucket =
            |le: &str| format!("averyws_loop_turn_seconds_bucket{{reactor=\"0\",le=\"{le}\"}}");
        assert_eq!(sample(&text, &bucket("0.000010")), Some("2"));
        assert_eq!(sample(&text, &bucket("0.000050")), Some("3"));
        assert_eq!(sample(&text, &bucket("0.001000")), Some("4"));
        assert_eq!(sample(&text, &bucket("0.250000")), Some("4"));
        assert_eq!(sample(&text, &bucket("+Inf")), Some("5"));
        assert_eq!(
            sample(&text, "averyws_loop_turn_seconds_count{reactor=\"0\"}"),
            Some("5")
        );
        assert_eq!(
            sample(&text, "averyws_loop_turn_seconds_sum{reactor=\"0\"}"),
            Some("1.000926")
        );
    }
}
