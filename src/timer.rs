//! A hierarchical timing wheel: every deadline in the server lives here.
//!
//! Time is in monotonic milliseconds. The wheel has [`LEVELS`] levels of 64 slots; level `L`
//! slots are `64^L` ms wide, so the wheel spans `64^6` ms (about 795 days); later deadlines are
//! parked in the last level and re-filed when they come round. Each slot is an intrusive doubly
//! linked list threaded through a slab of entries, so insert and cancel are O(1), and a per-level
//! occupancy bitmap finds the next deadline in O(levels).
//!
//! Invariants:
//! - every entry in a slot has `deadline > elapsed`; entries due at insertion sit on the `due`
//!   list and fire on the next [`TimerWheel::advance`];
//! - a [`TimerId`] carries the generation of its slab entry; cancelling a stale id (already fired
//!   or cancelled, slab entry reused) is a no-op, so a stale timer can never fire.
//!
//! The wheel never reads a clock: callers pass `now`.

const LEVELS: usize = 6;
const SLOT_BITS: u32 = 6;
const SLOTS: usize = 1 << SLOT_BITS;
const NIL: u32 = u32::MAX;
/// The list index of the `due` list (after the `LEVELS * SLOTS` slot lists).
const DUE_LIST: usize = LEVELS * SLOTS;
/// Largest distance from `elapsed` that the levels can represent.
const SPAN_MS: u64 = 1 << (SLOT_BITS as usize * LEVELS);

/// A handle to an armed timer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TimerId {
    index: u32,
    generation: u32,
}

#[derive(Debug)]
struct Entry<T> {
    deadline: u64,
    generation: u32,
    prev: u32,
    next: u32,
    list: u32,
    payload: Option<T>,
}

/// The timing wheel, carrying payloads of type `T` that [`TimerWheel::advance`] hands back.
#[derive(Debug)]
pub struct TimerWheel<T> {
    elapsed: u64,
    entries: Vec<Entry<T>>,
    free: Vec<u32>,
    heads: Vec<u32>,
    occupied: [u64; LEVELS],
    len: usize,
}

impl<T> Default for TimerWheel<T> {
    fn default() -> Self {
        TimerWheel::new(0)
    }
}

impl<T> TimerWheel<T> {
    /// An empty wheel whose clock stands at `now_ms`.
    pub fn new(now_ms: u64) -> TimerWheel<T> {
        TimerWheel {
            elapsed: now_ms,
            entries: Vec::new(),
            free: Vec::new(),
            heads: vec![NIL; LEVELS * SLOTS + 1],
            occupied: [0; LEVELS],
            len: 0,
        }
    }

    /// Number of armed timers.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when no timer is armed.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Arms a timer that fires at `deadline_ms` (or on the next advance if that has passed).
    pub fn insert(&mut self, deadline_ms: u64, payload: T) -> TimerId {
        let index = match self.free.pop() {
            Some(i) => i,
            None => {
                let i = u32::try_from(self.entries.len()).expect("more than 4 billion timers");
                self.entries.push(Entry {
                    deadline: 0,
                    generation: 0,
                    prev: NIL,
                    next: NIL,
                    list: NIL,
                    payload: None,
                });
                i
            }
        };
        let e = &mut self.entries[index as usize];
        e.deadline = deadline_ms;
        e.payload = Some(payload);
        let generation = e.generation;
        self.file(index);
        self.len += 1;
        TimerId { index, generation }
    }

    /// Disarms a timer and returns its payload; `None` when it already fired or was cancelled.
    pub fn cancel(&mut self, id: TimerId) -> Option<T> {
        let e = self.entries.get(id.index as usize)?;
        if e.generation != id.generation || e.payload.is_none() {
            return None;
        }
        self.unlink(id.index);
        Some(self.release(id.index))
    }

    /// The deadline of an armed timer.
    pub fn deadline(&self, id: TimerId) -> Option<u64> {
        let e = self.entries.get(id.index as usize)?;
        (e.generation == id.generation && e.payload.is_some()).then_some(e.deadline)
    }

    /// The earliest time at which [`TimerWheel::advance`] has work: a deadline, or the start of
    /// a slot whose entries must move to a finer level. `None` when nothing is armed.
    pub fn next_wakeup(&self) -> Option<u64> {
        if self.heads[DUE_LIST] != NIL {
            return Some(self.elapsed);
        }
        (0..LEVELS)
            .filter_map(|l| self.next_slot(l))
            .map(|(_, at)| at)
            .min()
    }

    /// Moves the wheel's clock to `now_ms` and appends the payloads of every timer whose deadline
    /// is at or before it to `fired`, in deadline order per slot.
    pub fn advance(&mut self, now_ms: u64, fired: &mut Vec<T>) {
        self.drain_list(DUE_LIST, now_ms, fired);
        loop {
            let next = (0..LEVELS)
                .filter_map(|l| self.next_slot(l).map(|(slot, at)| (at, l, slot)))
                .min();
            match next {
                Some((at, level, slot)) if at <= now_ms => {
                    self.elapsed = self.elapsed.max(at);
                    self.drain_list(level * SLOTS + slot, now_ms, fired);
                }
                _ => break,
            }
        }
        self.elapsed = self.elapsed.max(now_ms);
    }

    /// Empties one list: fires what is due, re-files the rest relative to the current `elapsed`.
    fn drain_list(&mut self, list: usize, now_ms: u64, fired: &mut Vec<T>) {
        let mut i = self.heads[list];
        self.heads[list] = NIL;
        if list < DUE_LIST {
            self.occupied[list / SLOTS] &= !(1u64 << (list % SLOTS));
        }
        while i != NIL {
            let next = self.entries[i as usize].next;
            if self.entries[i as usize].deadline <= now_ms {
                fired.push(self.release(i));
            } else {
                self.file(i);
            }
            i = next;
        }
    }

    /// The next occupied slot of `level` at or after the current position, and when it starts.
    fn next_slot(&self, level: usize) -> Option<(usize, u64)> {
        let bits = self.occupied[level];
        if bits == 0 {
            return None;
        }
        let shift = SLOT_BITS * level as u32;
        let slot_ms = 1u64 << shift;
        let level_ms = slot_ms << SLOT_BITS;
        let current = ((self.elapsed >> shift) as usize) & (SLOTS - 1);
        let distance = bits.rotate_right(current as u32).trailing_zeros() as usize;
        let slot = (current + distance) % SLOTS;
        let level_start = self.elapsed & !(level_ms - 1);
        let mut at = level_start + slot as u64 * slot_ms;
        if slot < current {
            // Only the top level wraps: an entry filed at the last millisecond of a top-level
            // block for the first millisecond of the next (see `file`).
            at += level_ms;
        }
        Some((slot, at))
    }

    /// Links entry `i` into the list its deadline belongs to.
    fn file(&mut self, i: u32) {
        let deadline = self.entries[i as usize].deadline;
        let list = if deadline <= self.elapsed {
            DUE_LIST
        } else {
            // Keep the slot inside the top-level block that holds `elapsed`, so no slot ever
            // wraps behind the current position; a later deadline is re-filed at the block's end.
            let block_end = (self.elapsed | (SPAN_MS - 1)).max(self.elapsed + 1);
            let capped = deadline.min(block_end);
            // The level is given by the highest bit in which the deadline and now differ.
            let diff = (self.elapsed ^ capped) | (SLOTS as u64 - 1);
            let level = ((63 - diff.leading_zeros()) / SLOT_BITS) as usize;
            let level = level.min(LEVELS - 1);
            let slot = ((capped >> (SLOT_BITS * level as u32)) as usize) & (SLOTS - 1);
            self.occupied[level] |= 1u64 << slot;
            level * SLOTS + slot
        };
        let head = self.heads[list];
        {
            let e = &mut self.entries[i as usize];
            e.list = list as u32;
            e.prev = NIL;
            e.next = head;
        }
        if head != NIL {
            self.entries[head as usize].prev = i;
        }
        self.heads[list] = i;
    }

    /// Unlinks entry `i` from its list in O(1).
    fn unlink(&mut self, i: u32) {
        let (prev, next, list) = {
            let e = &self.entries[i as usize];
            (e.prev, e.next, e.list as usize)
        };
        if prev != NIL {
            self.entries[prev as usize].next = next;
        } else {
            self.heads[list] = next;
            if next == NIL && list < DUE_LIST {
                self.occupied[list / SLOTS] &= !(1u64 << (list % SLOTS));
            }
        }
        if next != NIL {
            self.entries[next as usize].prev = prev;
        }
    }

    /// Frees entry `i` (already unlinked) and returns its payload.
    fn release(&mut self, i: u32) -> T {
        let e = &mut self.entries[i as usize];
        e.generation = e.generation.wrapping_add(1);
        e.prev = NIL;
        e.next = NIL;
        e.list = NIL;
        self.free.push(i);
        self.len -= 1;
        e.payload.take().expect("armed timer without payload")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fire(w: &mut TimerWheel<u32>, now: u64) -> Vec<u32> {
        let mut v = Vec::new();
        w.advance(now, &mut v);
        v
    }

    #[test]
    fn fires_at_deadline_not_before() {
        let mut w = TimerWheel::new(1_000);
        w.insert(1_005, 1);
        w.insert(1_000 + 70_000, 2);
        w.insert(1_000 + 3_600_000, 3);
        assert_eq!(w.next_wakeup(), Some(1_005));
        assert!(fire(&mut w, 1_004).is_empty());
        assert_eq!(fire(&mut w, 1_005), vec![1]);
        assert!(fire(&mut w, 70_999).is_empty());
        assert_eq!(fire(&mut w, 71_000), vec![2]);
        assert!(fire(&mut w, 3_600_999).is_empty());
        assert_eq!(fire(&mut w, 3_601_000), vec![3]);
        assert!(w.is_empty());
        assert_eq!(w.next_wakeup(), None);
    }

    #[test]
    fn past_deadline_fires_on_next_advance() {
        let mut w = TimerWheel::new(500);
        w.insert(10, 7);
        assert_eq!(w.next_wakeup(), Some(500));
        assert_eq!(fire(&mut w, 500), vec![7]);
    }

    #[test]
    fn cancel_is_final_and_stale_ids_are_harmless() {
        let mut w = TimerWheel::new(0);
        let a = w.insert(100, 1);
        let b = w.insert(100, 2);
        assert_eq!(w.cancel(a), Some(1));
        assert_eq!(w.cancel(a), None);
        // The freed slab entry is reused; the old id must not touch the new timer.
        let c = w.insert(200, 3);
        assert_eq!(c.index, a.index);
        assert_eq!(w.cancel(a), None);
        assert_eq!(fire(&mut w, 150), vec![2]);
        assert_eq!(w.cancel(b), None);
        assert_eq!(w.deadline(c), Some(200));
        assert_eq!(fire(&mut w, 1_000), vec![3]);
        assert_eq!(w.cancel(c), None);
    }

    #[test]
    fn deadlines_beyond_the_span_still_fire() {
        let mut w = TimerWheel::new(0);
        let far = SPAN_MS * 3 + 17;
        w.insert(far, 9);
        let mut now = 0;
        let mut out = Vec::new();
        // Wake up whenever the wheel asks to, as the loop does; it must not fire early.
        while out.is_empty() {
            now = w.next_wakeup().unwrap().max(now);
            w.advance(now, &mut out);
        }
        assert_eq!(now, far);
        assert_eq!(out, vec![9]);
    }

    #[test]
    fn matches_a_sorted_model_under_random_use() {
        // A seeded xorshift drives inserts, cancels and advances; a Vec is the model.
        let mut seed = 0x9E37_79B9_7F4A_7C15u64;
        let mut rand = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let mut w = TimerWheel::new(0);
        let mut model: Vec<(u64, u32, TimerId)> = Vec::new();
        let mut now = 0u64;
        for step in 0..20_000u32 {
            match rand() % 4 {
                0 | 1 => {
                    let span = [10, 1_000, 100_000, 10_000_000][(rand() % 4) as usize];
                    let d = now + rand() % span;
                    let id = w.insert(d, step);
                    model.push((d, step, id));
                }
                2 if !model.is_empty() => {
                    let k = (rand() as usize) % model.len();
                    let (_, p, id) = model.swap_remove(k);
                    assert_eq!(w.cancel(id), Some(p));
                }
                _ => {
                    now += rand() % 5_000;
                    let mut got = fire(&mut w, now);
                    let mut want: Vec<u32> =
                        model.iter().filter(|m| m.0 <= now).map(|m| m.1).collect();
                    model.retain(|m| m.0 > now);
                    got.sort_unstable();
                    want.sort_unstable();
                    assert_eq!(got, want, "step {step} now {now}");
                    if let Some(next) = w.next_wakeup() {
                        let earliest = model.iter().map(|m| m.0).min().unwrap();
                        assert!(next <= earliest, "wakeup {next} after deadline {earliest}");
                    }
                }
            }
            assert_eq!(w.len(), model.len());
        }
    }
}
