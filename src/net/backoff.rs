//! Per-address backoff after failed passwords (Faktory has none).
//!
//! Each client address that sends a wrong password gets an entry. After `failures_max` failures
//! within `window_ms`, the address is blocked for `block_ms`: its HELLOs are refused at once,
//! without checking the hash (which costs the loop thousands of SHA-256 rounds per attempt, so an
//! attacker's flood cannot buy CPU time either). Each further block of the same address, while
//! it is remembered, lasts twice as long as the previous one, up to `block_max_ms`. Attempts
//! while blocked are not counted: a client retrying in a loop with the right password gets in
//! once the block ends.
//!
//! Bounded memory: at most `entries_max` addresses are tracked. An address is forgotten once it
//! has been quiet (no failure, no block) for `window_ms`; [`PasswordBackoff::sweep`] runs from a
//! loop timer. When the table is full, the least recently failing unblocked address makes room;
//! when every entry is blocked, a new address is not tracked (and the event is counted), so an
//! attacker spraying source addresses can make the table forget, never grow.
//!
//! IPv6 addresses are tracked by their /64 prefix (one host usually owns a whole /64);
//! IPv4-mapped IPv6 addresses count as the IPv4 address.
//!
//! Pure: time comes in as monotonic milliseconds, so tests drive it without sleeping.

use std::collections::HashMap;
use std::net::IpAddr;

/// The tunables.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BackoffConfig {
    /// Failed passwords from one address within `window_ms` that block it; 0 turns blocking off.
    pub failures_max: u32,
    /// The window in which failures add up, and how long a quiet address is remembered.
    pub window_ms: u64,
    /// Length of the first block of an address.
    pub block_ms: u64,
    /// Longest block (each further block doubles, up to this).
    pub block_max_ms: u64,
    /// Most addresses tracked at once.
    pub entries_max: usize,
}

impl Default for BackoffConfig {
    fn default() -> Self {
        BackoffConfig {
            failures_max: 5,
            window_ms: 60_000,
            block_ms: 60_000,
            block_max_ms: 3_600_000,
            entries_max: 10_000,
        }
    }
}

/// What is known of one address.
#[derive(Clone, Copy, Debug)]
struct Entry {
    /// Failures counted in the current window.
    failures: u32,
    /// Start of the current window.
    window_start_ms: u64,
    /// Last failure (for eviction and forgetting).
    last_failure_ms: u64,
    /// Blocked until then (0: never blocked).
    blocked_until_ms: u64,
    /// Blocks so far; the next one lasts `block_ms * 2^blocks`.
    blocks: u32,
}

/// A failure that started a block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Blocked {
    /// How long the block lasts.
    pub for_ms: u64,
    /// Which block of this address it is (1 for the first).
    pub nth: u32,
}

/// The table of addresses with recent failed passwords.
#[derive(Debug)]
pub struct PasswordBackoff {
    config: BackoffConfig,
    entries: HashMap<IpAddr, Entry>,
    /// Failures of addresses that could not be tracked because every entry was blocked.
    untracked: u64,
}

impl PasswordBackoff {
    /// An empty table.
    pub fn new(config: BackoffConfig) -> PasswordBackoff {
        PasswordBackoff {
            config,
            entries: HashMap::new(),
            untracked: 0,
        }
    }

    /// Addresses tracked now.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when no address is tracked.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Failures that could not be tracked because the table was full of blocked addresses.
    pub fn untracked(&self) -> u64 {
        self.untracked
    }

    /// If `addr` is blocked at `now_ms`, the milliseconds left.
    pub fn blocked(&self, addr: IpAddr, now_ms: u64) -> Option<u64> {
        let e = self.entries.get(&key(addr))?;
        (e.blocked_until_ms > now_ms).then(|| e.blocked_until_ms - now_ms)
    }

    /// Records a failed password from `addr`; `Some` when this failure blocks it.
    pub fn failed(&mut self, addr: IpAddr, now_ms: u64) -> Option<Blocked> {
        if self.config.failures_max == 0 {
            return None;
        }
        let addr = key(addr);
        if !self.entries.contains_key(&addr) && !self.make_room(now_ms) {
            self.untracked += 1;
            return None;
        }
        let c = self.config;
        let e = self.entries.entry(addr).or_insert(Entry {
            failures: 0,
            window_start_ms: now_ms,
            last_failure_ms: now_ms,
            blocked_until_ms: 0,
            blocks: 0,
        });
        if now_ms.saturating_sub(e.window_start_ms) >= c.window_ms {
            e.failures = 0;
            e.window_start_ms = now_ms;
        }
        e.failures += 1;
        e.last_failure_ms = now_ms;
        if e.failures < c.failures_max {
            return None;
        }
        let for_ms = c
            .block_ms
            .saturating_mul(1u64 << e.blocks.min(32))
            .min(c.block_max_ms.max(c.block_ms));
        e.blocks = e.blocks.saturating_add(1);
        e.failures = 0;
        e.window_start_ms = now_ms;
        e.blocked_until_ms = now_ms.saturating_add(for_ms);
        Some(Blocked {
            for_ms,
            nth: e.blocks,
        })
    }

    /// Forgets addresses quiet for a window: no failure in it, and no block in force or ended
    /// within it. Returns how many were forgotten.
    pub fn sweep(&mut self, now_ms: u64) -> usize {
        let before = self.entries.len();
        let window = self.config.window_ms;
        self.entries.retain(|_, e| {
            now_ms
                < e.last_failure_ms
                    .max(e.blocked_until_ms)
                    .saturating_add(window)
        });
        before - self.entries.len()
    }

    /// Makes room for one more entry; false when every entry is blocked.
    fn make_room(&mut self, now_ms: u64) -> bool {
        if self.entries.len() < self.config.entries_max {
            return true;
        }
        if self.sweep(now_ms) > 0 {
            return true;
        }
        let oldest = self
            .entries
            .iter()
            .filter(|(_, e)| e.blocked_until_ms <= now_ms)
            .min_by_key(|(_, e)| e.last_failure_ms)
            .map(|(a, _)| *a);
        match oldest {
            Some(a) => {
                self.entries.remove(&a);
                true
            }
            None => false,
        }
    }
}

/// The address an entry is kept under: IPv4 as is (also when mapped into IPv6), IPv6 by /64.
fn key(addr: IpAddr) -> IpAddr {
    match addr {
        IpAddr::V4(_) => addr,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    fn v4(last: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(127, 0, 0, last))
    }

    fn table(entries_max: usize) -> PasswordBackoff {
        PasswordBackoff::new(BackoffConfig {
            failures_max: 3,
            window_ms: 1_000,
            block_ms: 500,
            block_max_ms: 1_500,
            entries_max,
        })
    }

    #[test]
    fn blocks_at_the_nth_failure_within_the_window_only() {
        let mut t = table(10);
        assert_eq!(t.failed(v4(1), 0), None);
        assert_eq!(t.failed(v4(1), 10), None);
        assert_eq!(t.blocked(v4(1), 10), None, "N-1 failures do not block");
        assert_eq!(
            t.failed(v4(1), 20),
            Some(Blocked {
                for_ms: 500,
                nth: 1
            })
        );
        assert_eq!(t.blocked(v4(1), 20), Some(500));
        assert_eq!(t.blocked(v4(1), 519), Some(1));
        assert_eq!(t.blocked(v4(1), 520), None, "the block ends on time");
        assert_eq!(t.blocked(v4(2), 20), None, "other addresses are unaffected");
        // Failures spread wider than the window never add up.
        let mut t = table(10);
        for i in 0..10 {
            assert_eq!(t.failed(v4(3), i * 600), None, "failure {i}");
        }
    }

    #[test]
    fn repeated_blocks_double_up_to_the_maximum() {
        let mut t = table(10);
        let mut now = 0;
        let mut lengths = Vec::new();
        for _ in 0..4 {
            t.failed(v4(1), now);
            t.failed(v4(1), now);
            let b = t.failed(v4(1), now).expect("blocked");
            lengths.push((b.nth, b.for_ms));
            now += b.for_ms;
            assert_eq!(t.blocked(v4(1), now), None);
        }
        assert_eq!(lengths, [(1, 500), (2, 1000), (3, 1500), (4, 1500)]);
    }

    #[test]
    fn quiet_addresses_are_forgotten() {
        let mut t = table(10);
        t.failed(v4(1), 0);
        for _ in 0..3 {
            t.failed(v4(2), 0);
        }
        assert_eq!(t.sweep(999), 0);
        assert_eq!(t.sweep(1_000), 1, "v4(1): a window after its failure");
        assert_eq!(
            t.sweep(1_499),
            0,
            "v4(2): blocked until 500, remembered a window more"
        );
        assert_eq!(t.sweep(1_500), 1);
        assert!(t.is_empty());
        // Forgotten means the next block is a first block again.
        for _ in 0..2 {
            t.failed(v4(2), 2_000);
        }
        assert_eq!(t.failed(v4(2), 2_000).map(|b| b.nth), Some(1));
    }

    #[test]
    fn the_table_is_bounded_and_keeps_blocked_addresses() {
        let mut t = table(3);
        for _ in 0..3 {
            t.failed(v4(1), 0); // blocked until 500
        }
        t.failed(v4(2), 10);
        t.failed(v4(3), 20);
        assert_eq!(t.len(), 3);
        // Full: the oldest unblocked failure (v4(2)) makes room.
        t.failed(v4(4), 30);
        assert_eq!(t.len(), 3);
        assert!(t.blocked(v4(1), 30).is_some(), "the blocked address stays");
        // Fill with blocked addresses only: a new one is not tracked, and counted.
        let mut t = table(2);
        for a in [1, 2] {
            for _ in 0..3 {
                t.failed(v4(a), 0);
            }
        }
        assert_eq!(t.failed(v4(9), 1), None);
        assert_eq!((t.len(), t.untracked()), (2, 1));
        // Spraying many addresses never grows the table.
        let mut t = table(100);
        for i in 0..10_000u32 {
            t.failed(IpAddr::V4(Ipv4Addr::from(i)), u64::from(i));
        }
        assert_eq!(t.len(), 100);
    }

    #[test]
    fn ipv6_by_prefix_and_mapped_ipv4_as_ipv4() {
        let mut t = table(10);
        let a: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        let other: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        t.failed(a, 0);
        t.failed(b, 0);
        t.failed(a, 0);
        assert!(t.blocked(b, 1).is_some(), "same /64");
        assert!(t.blocked(other, 1).is_none());
        let mapped = IpAddr::V6(Ipv4Addr::new(10, 0, 0, 1).to_ipv6_mapped());
        for _ in 0..3 {
            t.failed(mapped, 0);
        }
        assert!(t
            .blocked(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)), 1)
            .is_some());
        assert!(t.blocked(IpAddr::V6(Ipv6Addr::LOCALHOST), 1).is_none());
    }

    #[test]
    fn zero_failures_max_turns_it_off() {
        let mut t = PasswordBackoff::new(BackoffConfig {
            failures_max: 0,
            ..BackoffConfig::default()
        });
        for _ in 0..100 {
            assert_eq!(t.failed(v4(1), 0), None);
        }
        assert!(t.is_empty());
    }
}
