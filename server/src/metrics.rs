//! A few counters, exposed in the Prometheus text format at `/metrics`.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};

/// Process-wide counters.
#[derive(Default)]
pub struct Metrics {
    pub deposits_created: AtomicU64,
    pub withdrawals_created: AtomicU64,
    pub webhooks_applied: AtomicU64,
    pub webhooks_duplicate: AtomicU64,
    pub webhooks_other: AtomicU64,
    pub webhooks_rejected: AtomicU64,
}

impl Metrics {
    /// Adds one to a counter.
    pub fn inc(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// The exposition text; `sse_connections` is read live from the hub.
    pub fn render(&self, sse_connections: usize) -> String {
        let mut out = String::new();
        let counters = [
            ("pientegra_deposits_created_total", "Deposit intents created", &self.deposits_created),
            ("pientegra_withdrawals_created_total", "Withdrawals accepted by Pientegra", &self.withdrawals_created),
            ("pientegra_webhooks_applied_total", "Webhooks that changed state", &self.webhooks_applied),
            ("pientegra_webhooks_duplicate_total", "Webhooks already seen", &self.webhooks_duplicate),
            (
                "pientegra_webhooks_other_total",
                "Webhooks stored without a change (stale, unknown, orphan)",
                &self.webhooks_other,
            ),
            ("pientegra_webhooks_rejected_total", "Webhooks refused (signature or body)", &self.webhooks_rejected),
        ];
        for (name, help, value) in counters {
            let _ =
                writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}", value.load(Ordering::Relaxed));
        }
        let _ = writeln!(
            out,
            "# HELP pientegra_sse_connections Open SSE streams\n# TYPE pientegra_sse_connections gauge\npientegra_sse_connections {sse_connections}"
        );
        out
    }
}
