//! The INFO reply (PROTOCOL.md §8): exactly four top-level keys, every number a JSON number.

use super::{Core, SetName, TaskStats};
use crate::clock::Now;
use serde_json::{json, Map, Value};

/// The Faktory version werk is compatible with; clients parse it as semver and need ≥ 1.8.
pub const FAKTORY_COMPAT_VERSION: &str = "1.10.0";

impl Core {
    /// The INFO document.
    pub fn info_json(&self, now: Now) -> Vec<u8> {
        let mut queues = Map::new();
        let mut total_enqueued = 0usize;
        for (name, q) in &self.queues {
            queues.insert(name.to_string(), json!(q.jobs.len()));
            total_enqueued += q.jobs.len();
        }
        let set_task = |t: &TaskStats, size: usize| json!({"enqueued": t.enqueued, "cycles": t.cycles, "size": size, "wall_time_sec": 0.0});
        let doc = json!({
            "now": now.wall.to_rfc3339(),
            "server_utc_time": now.wall.hms_utc(),
            "faktory": {
                "queues": Value::Object(queues),
                "sets": {
                    "scheduled": self.scheduled.len(),
                    "retries": self.retries.len(),
                    "dead": self.dead.len(),
                    "working": self.working.len(),
                },
                "tasks": {
                    "Busy": {"size": self.working.len(), "reaped": self.stats.busy.reaped},
                    "Workers": {"size": self.workers.len(), "reaped": self.stats.workers.reaped},
                    "Scheduled": set_task(&self.stats.scheduled, self.set(SetName::Scheduled).len()),
                    "Retries": set_task(&self.stats.retries, self.set(SetName::Retries).len()),
                    "Dead": set_task(&self.stats.dead, self.set(SetName::Dead).len()),
                },
                "total_failures": self.stats.failures,
                "total_processed": self.stats.processed,
                "total_enqueued": total_enqueued,
                "total_queues": self.queues.len(),
            },
            "server": {
                "description": "Faktory",
                "faktory_version": FAKTORY_COMPAT_VERSION,
                "werk_version": env!("CARGO_PKG_VERSION"),
                "uptime": now.mono_ms.saturating_sub(self.started.mono_ms) / 1000,
                "connections": self.connections(),
                "command_count": self.stats.command_count,
                "used_memory_mb": self.used_memory_mb,
            },
        });
        serde_json::to_vec(&doc).unwrap_or_else(|_| b"{}".to_vec())
    }
}
