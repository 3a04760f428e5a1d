//! A fixed-bucket latency histogram in microseconds, for Prometheus (`/metrics`) and `/debug`.
//!
//! Buckets are upper bounds; [`Histogram::buckets`] reports them cumulatively, as Prometheus
//! wants. Recording is O(buckets) with no allocation.

/// Upper bounds of the journal sync histogram, in microseconds (100 µs to 2.5 s).
pub const SYNC_BUCKETS_US: &[u64] = &[
    100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000,
    1_000_000, 2_500_000,
];

/// Counts of observations per bucket, their sum and their maximum.
#[derive(Clone, Debug)]
pub struct Histogram {
    bounds_us: &'static [u64],
    counts: Vec<u64>,
    sum_us: u64,
    max_us: u64,
}

impl Histogram {
    /// An empty histogram with these upper bounds (ascending).
    pub fn new(bounds_us: &'static [u64]) -> Histogram {
        Histogram {
            bounds_us,
            counts: vec![0; bounds_us.len() + 1],
            sum_us: 0,
            max_us: 0,
        }
    }

    /// Records one observation.
    pub fn observe_us(&mut self, us: u64) {
        let slot = self
            .bounds_us
            .iter()
            .position(|&b| us <= b)
            .unwrap_or(self.bounds_us.len());
        if let Some(c) = self.counts.get_mut(slot) {
            *c += 1;
        }
        self.sum_us = self.sum_us.saturating_add(us);
        self.max_us = self.max_us.max(us);
    }

    /// `(upper bound in µs, cumulative count)` per bucket, then `(None, total)` for +Inf.
    pub fn buckets(&self) -> Vec<(Option<u64>, u64)> {
        let mut total = 0;
        let mut out = Vec::with_capacity(self.counts.len());
        for (i, c) in self.counts.iter().enumerate() {
            total += c;
            out.push((self.bounds_us.get(i).copied(), total));
        }
        out
    }

    /// Number of observations.
    pub fn count(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// Sum of the observations, in µs.
    pub fn sum_us(&self) -> u64 {
        self.sum_us
    }

    /// Largest observation, in µs.
    pub fn max_us(&self) -> u64 {
        self.max_us
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cumulative_buckets() {
        static B: &[u64] = &[10, 100];
        let mut h = Histogram::new(B);
        for us in [5, 10, 11, 100, 5000] {
            h.observe_us(us);
        }
        assert_eq!(h.buckets(), [(Some(10), 2), (Some(100), 4), (None, 5)]);
        assert_eq!((h.count(), h.sum_us(), h.max_us()), (5, 5126, 5000));
    }
}
