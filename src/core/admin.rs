//! Operator queries and actions for the Web UI: paged, searchable views of the sets and queues,
//! and the actions an operator takes on them (retry now, add to queue, delete, kill; pause,
//! resume, clear a queue).
//!
//! Every action goes through the same private operations as MUTATE and QUEUE, so it produces the
//! same journal records and wakes the same parked fetchers. Nothing here reads a clock or knows
//! about HTTP: the web layer passes `now` and decoded parameters.

use super::{Core, Daily, Job, SetKey, SetName};
use crate::clock::Now;
use crate::command::QueueNames;
use crate::timestamp::Timestamp;

/// What to do with selected entries of a sorted set.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SetAction {
    /// Put the job on its queue now, with a fresh `enqueued_at` (the Web UI's "retry" and "add
    /// to queue"; MUTATE requeue keeps the old stamp).
    Enqueue,
    /// Delete the entry.
    Delete,
    /// Move the entry to the dead set (a no-op on the dead set itself).
    Kill,
}

/// Which entries an action applies to.
#[derive(Clone, Copy, Debug)]
pub enum Selection<'a> {
    /// These keys (unknown keys are skipped: the entry may have moved meanwhile).
    Keys(&'a [SetKey]),
    /// Every entry that [`job_matches`] the search text; the empty text matches every entry.
    Matching(&'a str),
}

/// One page of a sorted set, in time order.
#[derive(Debug)]
pub struct SetPage<'a> {
    /// The entries of the page.
    pub entries: Vec<(SetKey, &'a Job)>,
    /// Entries that matched among those scanned.
    pub matched: usize,
    /// False when the scan stopped at its bound before the end of the set.
    pub complete: bool,
}

impl SetKey {
    /// The key as the Web UI writes it in URLs and forms: `<nanoseconds>-<seq>`.
    pub fn to_token(&self) -> String {
        format!("{}-{}", self.at.0, self.seq)
    }

    /// Parses [`SetKey::to_token`]'s form; `None` for anything else.
    pub fn from_token(text: &str) -> Option<SetKey> {
        // The time may be negative; the sequence number never is.
        let (at, seq) = text.rsplit_once('-')?;
        Some(SetKey {
            at: Timestamp(at.parse().ok()?),
            seq: seq.parse().ok()?,
        })
    }
}

/// True when `needle` (already lowercased) occurs, ignoring ASCII case, in the job's jobtype,
/// queue, jid, args, or failure type or message. The empty needle matches every job.
pub fn job_matches(job: &Job, needle: &str) -> bool {
    if needle.is_empty() {
        return true;
    }
    let hit = |s: &str| contains_ignore_case(s, needle);
    let f = job.fields();
    // The failure is decoded only when the cheap fields did not match.
    hit(f.jobtype)
        || hit(f.queue)
        || hit(f.jid)
        || hit(f.args)
        || f.failure.is_some()
            && job
                .failure()
                .is_some_and(|fail| hit(&fail.errtype) || hit(&fail.message))
}

fn contains_ignore_case(haystack: &str, needle_lower: &str) -> bool {
    let n = needle_lower.as_bytes();
    n.len() <= haystack.len()
        && haystack
            .as_bytes()
            .windows(n.len())
            .any(|w| w.iter().zip(n).all(|(a, b)| a.to_ascii_lowercase() == *b))
}

impl Core {
    /// Applies `action` to the selected entries of `set`; returns how many entries it moved or
    /// deleted. Each change is journaled like the MUTATE that would make it.
    pub fn set_action(
        &mut self,
        set: SetName,
        selection: Selection<'_>,
        action: SetAction,
        now: Now,
    ) -> usize {
        if action == SetAction::Kill && set == SetName::Dead {
            return 0;
        }
        let keys: Vec<SetKey> = match selection {
            Selection::Keys(keys) => keys.to_vec(),
            Selection::Matching(text) => {
                let needle = text.to_ascii_lowercase();
                self.set_ref(set)
                    .iter()
                    .filter(|(_, j)| job_matches(j, &needle))
                    .map(|(k, _)| *k)
                    .collect()
            }
        };
        let mut done = 0;
        for key in keys {
            let Some(job) = self.set_mut(set).remove(&key) else {
                continue;
            };
            self.set_remove_record(set, key);
            done += 1;
            match action {
                SetAction::Delete => {}
                SetAction::Kill => self.add_dead(job, now),
                SetAction::Enqueue => self.enqueue(job, now, true),
            }
        }
        self.rearm_set(set, now);
        done
    }

    /// Entries `offset..offset + limit` of `set` among those matching `search` (see
    /// [`job_matches`]), looking at no more than `scan_max` entries.
    pub fn set_page(
        &self,
        set: SetName,
        search: &str,
        offset: usize,
        limit: usize,
        scan_max: usize,
    ) -> SetPage<'_> {
        let needle = search.to_ascii_lowercase();
        let mut page = SetPage {
            entries: Vec::new(),
            matched: 0,
            complete: true,
        };
        if needle.is_empty() {
            // No search: the count is the set's size and only the page itself is visited.
            let s = self.set_ref(set);
            page.matched = s.len();
            page.entries = s
                .iter()
                .skip(offset)
                .take(limit)
                .map(|(k, j)| (*k, j))
                .collect();
            return page;
        }
        for (scanned, (key, job)) in self.set_ref(set).iter().enumerate() {
            if scanned >= scan_max {
                page.complete = false;
                break;
            }
            if !job_matches(job, &needle) {
                continue;
            }
            if page.matched >= offset && page.entries.len() < limit {
                page.entries.push((*key, job));
            }
            page.matched += 1;
        }
        page
    }

    /// One entry of a set.
    pub fn set_entry(&self, set: SetName, key: &SetKey) -> Option<&Job> {
        self.set_ref(set).get(key)
    }

    /// Pauses or resumes one existing queue (journaled as QUEUE PAUSE/RESUME); false when the
    /// queue does not exist.
    pub fn pause_queue(&mut self, name: &str, paused: bool, now: Now) -> bool {
        if !self.queues.contains_key(name) {
            return false;
        }
        self.set_paused(QueueNames::List(vec![name]), paused, now);
        true
    }

    /// Deletes a queue and its jobs (journaled as QUEUE REMOVE); returns the number of jobs
    /// deleted, or `None` when the queue does not exist.
    pub fn remove_queue(&mut self, name: &str) -> Option<usize> {
        let q = self.queues.remove(name)?;
        if self.config.recording {
            self.effects
                .records
                .push(super::Record::RemoveQueue { queue: name.into() });
        }
        Some(q.jobs.len())
    }

    /// Seconds since the oldest job of `name` was enqueued (0 for an empty or unknown queue), as
    /// QUEUE LATENCY reports it.
    pub fn queue_latency_secs(&self, name: &str, now: Now) -> f64 {
        self.queues
            .get(name)
            .and_then(|q| q.jobs.front())
            .and_then(|j| j.enqueued_at())
            .map_or(0.0, |t| (t.nanos_until(now.wall).max(0) as f64) / 1e9)
    }

    /// Whole seconds since the core started.
    pub fn uptime_secs(&self, now: Now) -> u64 {
        now.mono_ms.saturating_sub(self.started.mono_ms) / 1000
    }

    /// The memory figure INFO reports, in MB.
    pub fn used_memory_mb(&self) -> u64 {
        self.used_memory_mb
    }

    /// The daily counters of the `days` UTC days ending today, oldest first (zero for days
    /// with no activity).
    pub fn daily_history(&self, days: usize, now: Now) -> Vec<(String, Daily)> {
        (0..days)
            .rev()
            .map(|back| {
                let day = now.wall.add_secs(-(back as i64) * 86_400).date_utc();
                let counts = self
                    .stats
                    .daily
                    .get(day.as_str())
                    .copied()
                    .unwrap_or_default();
                (day, counts)
            })
            .collect()
    }
}
