//! Time sources: the only module that reads the system clock.
//!
//! The server reads the clock once per loop turn and passes the resulting [`Now`] down by value.
//! `mono_ms` (monotonic milliseconds since the clock was made) drives deadlines in the timer
//! wheel; `wall` stamps jobs. Tests use [`ManualClock`] and move time by hand.

use crate::timestamp::Timestamp;
use std::cell::Cell;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// One reading of both clocks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Now {
    /// Wall-clock time, for job timestamps and daily statistics.
    pub wall: Timestamp,
    /// Monotonic milliseconds, for deadlines.
    pub mono_ms: u64,
}

impl Now {
    /// This reading moved forward by `ms` milliseconds on both clocks.
    pub fn plus_ms(self, ms: u64) -> Now {
        Now {
            wall: Timestamp(
                self.wall
                    .0
                    .saturating_add((ms as i64).saturating_mul(1_000_000)),
            ),
            mono_ms: self.mono_ms.saturating_add(ms),
        }
    }
}

/// Measures a short duration on the monotonic clock (journal sync latency), with microsecond
/// resolution. Lives here because this is the one module that reads the clocks.
#[derive(Debug)]
pub struct Stopwatch(Instant);

impl Stopwatch {
    /// Starts measuring.
    pub fn start() -> Stopwatch {
        Stopwatch(Instant::now())
    }

    /// Microseconds since [`Stopwatch::start`].
    pub fn elapsed_us(&self) -> u64 {
        u64::try_from(self.0.elapsed().as_micros()).unwrap_or(u64::MAX)
    }
}

/// Something that tells the time.
pub trait Clock {
    /// Reads both clocks.
    fn now(&self) -> Now;
}

/// The real clocks.
#[derive(Debug)]
pub struct SystemClock {
    start: Instant,
}

impl SystemClock {
    /// A clock whose monotonic zero is now.
    pub fn new() -> SystemClock {
        SystemClock {
            start: Instant::now(),
        }
    }
}

impl Default for SystemClock {
    fn default() -> Self {
        SystemClock::new()
    }
}

impl Clock for SystemClock {
    fn now(&self) -> Now {
        let wall = match SystemTime::now().duration_since(UNIX_EPOCH) {
            Ok(d) => Timestamp(i64::try_from(d.as_nanos()).unwrap_or(i64::MAX)),
            Err(e) => Timestamp(-i64::try_from(e.duration().as_nanos()).unwrap_or(i64::MAX)),
        };
        let mono_ms = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        Now { wall, mono_ms }
    }
}

/// A clock for tests: it moves only when told to.
#[derive(Debug)]
pub struct ManualClock {
    now: Cell<Now>,
}

impl ManualClock {
    /// A clock standing at `wall`, monotonic zero.
    pub fn new(wall: Timestamp) -> ManualClock {
        ManualClock {
            now: Cell::new(Now { wall, mono_ms: 0 }),
        }
    }

    /// Moves both clocks forward by `ms`.
    pub fn advance_ms(&self, ms: u64) {
        self.now.set(self.now.get().plus_ms(ms));
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Now {
        self.now.get()
    }
}
