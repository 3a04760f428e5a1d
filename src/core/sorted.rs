//! Time-ordered job sets: scheduled, retries and dead.
//!
//! Entries are keyed by `(time, seq)`: the time is the job's `at`, `next_at` or expiry, and `seq`
//! is a per-server counter that keeps entries with the same time apart and in arrival order.
//! A `BTreeMap` gives ordered iteration (Web UI, MUTATE, promotion) and O(log n) insert/remove.

use super::job::Job;
use crate::timestamp::Timestamp;
use std::collections::BTreeMap;

/// The key of a set entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SetKey {
    /// When the entry is due (or expires, for the dead set).
    pub at: Timestamp,
    /// Tie-breaker, unique per server.
    pub seq: u64,
}

/// Which set.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SetName {
    /// Jobs pushed with a future `at`.
    Scheduled,
    /// Failed jobs waiting for their next attempt.
    Retries,
    /// Jobs that ran out of retries.
    Dead,
}

impl SetName {
    /// Every set, in INFO's order.
    pub const ALL: [SetName; 3] = [SetName::Scheduled, SetName::Retries, SetName::Dead];

    /// The name INFO and MUTATE use.
    pub fn as_str(self) -> &'static str {
        match self {
            SetName::Scheduled => "scheduled",
            SetName::Retries => "retries",
            SetName::Dead => "dead",
        }
    }
}

/// A time-ordered set of jobs.
#[derive(Debug, Default)]
pub struct SortedSet {
    entries: BTreeMap<SetKey, Job>,
}

impl SortedSet {
    /// Number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Adds an entry.
    pub fn insert(&mut self, key: SetKey, job: Job) {
        self.entries.insert(key, job);
    }

    /// Removes an entry.
    pub fn remove(&mut self, key: &SetKey) -> Option<Job> {
        self.entries.remove(key)
    }

    /// The entry under `key`.
    pub fn get(&self, key: &SetKey) -> Option<&Job> {
        self.entries.get(key)
    }

    /// The earliest key.
    pub fn first_key(&self) -> Option<SetKey> {
        self.entries.keys().next().copied()
    }

    /// Removes the earliest entry if it is due at or before `now`.
    pub fn pop_due(&mut self, now: Timestamp) -> Option<(SetKey, Job)> {
        match self.entries.first_key_value() {
            Some((k, _)) if k.at <= now => self.entries.pop_first(),
            _ => None,
        }
    }

    /// Removes the earliest entry.
    pub fn pop_first(&mut self) -> Option<(SetKey, Job)> {
        self.entries.pop_first()
    }

    /// Entries in time order.
    pub fn iter(&self) -> impl Iterator<Item = (&SetKey, &Job)> {
        self.entries.iter()
    }

    /// Removes every entry.
    pub fn clear(&mut self) {
        self.entries.clear();
    }
}
