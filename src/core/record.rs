//! Journal records: one per state change, in the order the changes happen.
//!
//! Records describe the resulting change to stored state, not the command that caused it, so
//! replaying them needs no policy decisions (no random backoff, no clock): a replay of the records
//! in order rebuilds exactly the state that was acknowledged. Jobs travel as their canonical JSON.
//! They are produced only when the core is built with `recording` on (the journal needs them;
//! the in-memory server does not pay for them).

use super::sorted::{SetKey, SetName};
use crate::timestamp::Timestamp;

/// One durable state change.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Record {
    /// A job was appended to the back of its queue.
    Enqueue {
        /// Canonical job JSON.
        job: Vec<u8>,
    },
    /// The front job of `queue` was reserved.
    Reserve {
        /// The queue it came from.
        queue: Box<str>,
        /// Its jid.
        jid: Box<str>,
        /// The reserving worker ("" for producers).
        wid: Box<str>,
        /// When the reservation expires.
        expires_at: Timestamp,
    },
    /// A reservation ended (ACK, FAIL or expiry).
    Release {
        /// The job.
        jid: Box<str>,
    },
    /// A job entered a set.
    SetAdd {
        /// Which set.
        set: SetName,
        /// Its key.
        key: SetKey,
        /// Canonical job JSON.
        job: Vec<u8>,
    },
    /// A job left a set.
    SetRemove {
        /// Which set.
        set: SetName,
        /// Its key.
        key: SetKey,
    },
    /// Counter increments for a day (UTC).
    Count {
        /// Added to processed.
        processed: u64,
        /// Added to failures.
        failures: u64,
        /// `YYYY-MM-DD`.
        day: Box<str>,
    },
    /// A queue's paused mark changed.
    Pause {
        /// The queue.
        queue: Box<str>,
        /// New value.
        paused: bool,
    },
    /// A queue and its jobs were deleted.
    RemoveQueue {
        /// The queue.
        queue: Box<str>,
    },
    /// Everything stored was wiped.
    Flush,
    /// The all-time counters are exactly these (snapshots only: the journal adds with
    /// [`Record::Count`]).
    Totals {
        /// All-time processed.
        processed: u64,
        /// All-time failures.
        failures: u64,
    },
}
