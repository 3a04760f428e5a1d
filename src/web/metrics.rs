//! `/metrics` in the Prometheus text exposition format (version 0.0.4).
//!
//! Counters end in `_total`; sizes are gauges; the journal's fsync latency is a histogram in
//! seconds. Label values are escaped as the format requires (queue names cannot hold the
//! characters that need it, but the escaping does not rely on that).

use super::ServerFacts;
use crate::clock::Now;
use crate::core::{Core, SetName, WorkerState};
use std::fmt::Write;

/// Escapes a label value: backslash, double quote and newline.
fn label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// One metric family: HELP and TYPE lines, then its samples.
fn family(out: &mut String, name: &str, kind: &str, help: &str, samples: &[(String, String)]) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
    for (labels, value) in samples {
        let _ = writeln!(out, "{name}{labels} {value}");
    }
}

fn plain(value: impl ToString) -> Vec<(String, String)> {
    vec![(String::new(), value.to_string())]
}

/// The whole exposition.
pub fn render(core: &Core, facts: &ServerFacts<'_>, now: Now) -> Vec<u8> {
    let mut out = String::with_capacity(4096);
    let stats = core.stats();
    family(
        &mut out,
        "werk_jobs_processed_total",
        "counter",
        "Jobs processed (acknowledged or failed), persisted across restarts.",
        &plain(stats.processed),
    );
    family(
        &mut out,
        "werk_jobs_failed_total",
        "counter",
        "Job failures (FAIL or reservation expiry), persisted across restarts.",
        &plain(stats.failures),
    );
    family(
        &mut out,
        "werk_commands_total",
        "counter",
        "Protocol commands dispatched since start.",
        &plain(stats.command_count),
    );
    let queues: Vec<(&str, usize, f64, bool)> = core
        .queues()
        .map(|(n, q)| (n, q.jobs.len(), core.queue_latency_secs(n, now), q.paused))
        .collect();
    let per_queue = |f: &dyn Fn(usize, f64, bool) -> String| -> Vec<(String, String)> {
        queues
            .iter()
            .map(|(n, size, lat, paused)| {
                (
                    format!("{{queue=\"{}\"}}", label(n)),
                    f(*size, *lat, *paused),
                )
            })
            .collect()
    };
    family(
        &mut out,
        "werk_queue_size",
        "gauge",
        "Jobs waiting in each queue.",
        &per_queue(&|s, _, _| s.to_string()),
    );
    family(
        &mut out,
        "werk_queue_latency_seconds",
        "gauge",
        "Age of the oldest job of each queue (0 when empty).",
        &per_queue(&|_, l, _| format!("{l:.6}")),
    );
    family(
        &mut out,
        "werk_queue_paused",
        "gauge",
        "1 when the queue is paused.",
        &per_queue(&|_, _, p| u8::from(p).to_string()),
    );
    let mut sets: Vec<(String, String)> = SetName::ALL
        .iter()
        .map(|s| {
            (
                format!("{{set=\"{}\"}}", s.as_str()),
                core.set(*s).len().to_string(),
            )
        })
        .collect();
    sets.push((
        "{set=\"working\"}".to_owned(),
        core.working().len().to_string(),
    ));
    family(
        &mut out,
        "werk_set_size",
        "gauge",
        "Jobs in the scheduled, retries and dead sets, and reserved (working).",
        &sets,
    );
    family(
        &mut out,
        "werk_connections",
        "gauge",
        "Identified protocol connections.",
        &plain(core.connections()),
    );
    family(
        &mut out,
        "werk_web_connections",
        "gauge",
        "Open Web UI connections.",
        &plain(facts.web_connections),
    );
    let workers: Vec<(String, String)> = [
        WorkerState::Running,
        WorkerState::Quiet,
        WorkerState::Terminate,
    ]
    .iter()
    .map(|st| {
        let n = core.workers().filter(|w| w.state == *st).count();
        (format!("{{state=\"{}\"}}", st.as_str()), n.to_string())
    })
    .collect();
    family(
        &mut out,
        "werk_workers",
        "gauge",
        "Worker processes by state.",
        &workers,
    );
    family(
        &mut out,
        "werk_uptime_seconds",
        "gauge",
        "Seconds since start.",
        &plain(core.uptime_secs(now)),
    );
    family(
        &mut out,
        "werk_resident_memory_bytes",
        "gauge",
        "Resident memory of the process (refreshed every second, MB resolution).",
        &plain(core.used_memory_mb() * 1024 * 1024),
    );
    family(
        &mut out,
        "werk_journal_bytes",
        "gauge",
        "Size of the journal file.",
        &plain(facts.journal_bytes),
    );
    family(
        &mut out,
        "werk_journal_healthy",
        "gauge",
        "0 once a journal write or fsync failed (writes are refused until restart).",
        &plain(u8::from(facts.journal_failed.is_none())),
    );
    let h = facts.sync_latency;
    let mut samples: Vec<(String, String)> = h
        .buckets()
        .into_iter()
        .map(|(bound, n)| {
            let le = bound.map_or("+Inf".to_owned(), |us| format!("{}", us as f64 / 1e6));
            (format!("_bucket{{le=\"{le}\"}}"), n.to_string())
        })
        .collect();
    samples.push(("_sum".to_owned(), format!("{}", h.sum_us() as f64 / 1e6)));
    samples.push(("_count".to_owned(), h.count().to_string()));
    family(
        &mut out,
        "werk_journal_sync_seconds",
        "histogram",
        "Time taken by each journal fsync (group commit).",
        &samples,
    );
    family(
        &mut out,
        "werk_sync_gathered_total",
        "counter",
        "Poll events found by the extra looks before a sync (--sync-gather): mostly connections whose requests joined the batch.",
        &plain(facts.sync_gathered),
    );
    out.into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
