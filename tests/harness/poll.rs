//! Waiting on a condition, the one copy for both test harnesses (`tests/harness` and
//! `tests/common`, which wrap these in their own styles: a bool, or a panic that says what).

use std::time::{Duration, Instant};

/// Checks `cond` every `every` until it holds (returns how long that took) or `timeout`
/// passes (`None`).
pub fn until(
    timeout: Duration,
    every: Duration,
    mut cond: impl FnMut() -> bool,
) -> Option<Duration> {
    let start = Instant::now();
    loop {
        if cond() {
            return Some(start.elapsed());
        }
        if start.elapsed() >= timeout {
            return None;
        }
        std::thread::sleep(every);
    }
}

/// Checks `cond` every 50 ms for `window`: `Ok` when it held throughout, else `Err` with how
/// long it held. For claims that something does *not* happen, where a window is the only
/// evidence.
pub fn holds(window: Duration, mut cond: impl FnMut() -> bool) -> Result<(), Duration> {
    let start = Instant::now();
    loop {
        if !cond() {
            return Err(start.elapsed());
        }
        if start.elapsed() >= window {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}
