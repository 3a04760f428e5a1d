//! The heartbeat table: one entry per worker process (wid).
//!
//! A worker is registered by its first HELLO with a non-empty `wid`; later connections with the
//! same wid attach to it. It is removed when its last connection closes, or when no BEAT arrived
//! for the beat timeout (then its connections are closed too). Its state only moves forward:
//! running → quiet → terminate, or running → terminate.

use super::ConnId;
use crate::timer::TimerId;
use crate::timestamp::Timestamp;

/// A worker process's lifecycle state. The order is the only allowed direction of change.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum WorkerState {
    /// Fetching normally.
    Running,
    /// Told to stop fetching and finish its jobs.
    Quiet,
    /// Told to stop fetching and exit.
    Terminate,
}

impl WorkerState {
    /// The name used in BEAT replies and the Web UI.
    pub fn as_str(self) -> &'static str {
        match self {
            WorkerState::Running => "running",
            WorkerState::Quiet => "quiet",
            WorkerState::Terminate => "terminate",
        }
    }

    /// The state a BEAT's `current_state` asks for: `quiet`, `terminate`, or running for any
    /// other non-empty text (which can never move a worker backward).
    pub fn from_client(s: &str) -> WorkerState {
        match s {
            "quiet" => WorkerState::Quiet,
            "terminate" => WorkerState::Terminate,
            _ => WorkerState::Running,
        }
    }
}

/// What the server knows of a worker process (Faktory's ClientData).
#[derive(Debug)]
pub struct Worker {
    /// Worker process id.
    pub wid: Box<str>,
    /// Host name from HELLO.
    pub hostname: Box<str>,
    /// Process id from HELLO.
    pub pid: i64,
    /// Labels from HELLO.
    pub labels: Vec<Box<str>>,
    /// Protocol version from HELLO.
    pub version: u8,
    /// First registration.
    pub started_at: Timestamp,
    /// Last BEAT (or registration).
    pub last_beat: Timestamp,
    /// Lifecycle state.
    pub state: WorkerState,
    /// Resident memory reported by the last BEAT.
    pub rss_kb: i64,
    /// Open connections under this wid.
    pub conns: Vec<ConnId>,
    pub(super) beat_timer: TimerId,
}

impl Worker {
    /// Moves the state forward to `to` (never backward); returns the resulting state.
    pub fn advance(&mut self, to: WorkerState) -> WorkerState {
        self.state = self.state.max(to);
        self.state
    }
}
