//! A log-linear latency histogram of microseconds (HDR-like, fixed range):
//! exact below 128 µs, then 64 buckets per power of two, so a quantile is
//! off by under 1.6% (reported as its bucket's upper bound).

/// Significant bits kept per value: values below 2^SUB_BITS are exact, above
/// that each power of two is split into 2^(SUB_BITS-1) buckets.
const SUB_BITS: u32 = 7;
const HALF: u64 = 1 << (SUB_BITS - 1);
/// Largest value tracked exactly enough (about 19 hours in µs); larger ones clamp.
const MAX_VALUE: u64 = (1 << 36) - 1;
#[cfg(test)]
const BUCKETS: usize = bucket_of(MAX_VALUE) + 1;

const fn bucket_of(value: u64) -> usize {
    let v = if value > MAX_VALUE { MAX_VALUE } else { value };
    if v < (1 << SUB_BITS) {
        return v as usize;
    }
    let msb = 63 - v.leading_zeros();
    let shift = msb + 1 - SUB_BITS;
    ((shift as u64 + 1) * HALF + ((v >> shift) - HALF)) as usize
}

/// The largest value that falls in bucket `index`.
fn bucket_high(index: usize) -> u64 {
    let index = index as u64;
    if index < (1 << SUB_BITS) {
        return index;
    }
    let shift = index / HALF - 1;
    let offset = index % HALF;
    ((HALF + offset) << shift) + (1 << shift) - 1
}

/// Counts grow only up to the highest bucket used, so the many per-second
/// histograms of a long run stay small (a few KiB for millisecond latencies).
#[derive(Clone, Debug, Default)]
pub struct Histogram {
    counts: Vec<u64>,
    pub total: u64,
    sum: u64,
    pub max: u64,
}

impl Histogram {
    pub fn record(&mut self, micros: u64) {
        let bucket = bucket_of(micros);
        if self.counts.len() <= bucket {
            self.counts.resize(bucket + 1, 0);
        }
        self.counts[bucket] += 1;
        self.total += 1;
        self.sum = self.sum.saturating_add(micros);
        self.max = self.max.max(micros);
    }

    pub fn merge(&mut self, other: &Histogram) {
        if other.total == 0 {
            return;
        }
        if self.counts.len() < other.counts.len() {
            self.counts.resize(other.counts.len(), 0);
        }
        for (mine, theirs) in self.counts.iter_mut().zip(&other.counts) {
            *mine += theirs;
        }
        self.total += other.total;
        self.sum = self.sum.saturating_add(other.sum);
        self.max = self.max.max(other.max);
    }

    /// The value at quantile `q` (0..=1), in µs; 0 when empty.
    pub fn quantile(&self, q: f64) -> u64 {
        if self.total == 0 {
            return 0;
        }
        let rank = ((q * self.total as f64).ceil() as u64).clamp(1, self.total);
        let mut seen = 0;
        for (index, &count) in self.counts.iter().enumerate() {
            seen += count;
            if seen >= rank {
                return bucket_high(index).min(self.max);
            }
        }
        self.max
    }

    pub fn mean(&self) -> f64 {
        if self.total == 0 {
            0.0
        } else {
            self.sum as f64 / self.total as f64
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_contiguous_and_bounded() {
        let mut previous = 0;
        for v in 0..200_000u64 {
            let b = bucket_of(v);
            assert!(b == previous || b == previous + 1, "gap at {v}");
            assert!(bucket_high(b) >= v);
            // Relative error stays under 1/64.
            assert!((bucket_high(b) - v) as f64 <= v as f64 / 64.0 + 1.0);
            previous = b;
        }
        assert_eq!(bucket_of(MAX_VALUE), BUCKETS - 1);
        assert_eq!(bucket_of(u64::MAX), BUCKETS - 1);
        assert_eq!(bucket_high(BUCKETS - 1), MAX_VALUE);
    }

    #[test]
    fn quantiles() {
        let mut h = Histogram::default();
        for v in 1..=1000 {
            h.record(v);
        }
        assert_eq!(h.quantile(0.5), 500u64.max(bucket_high(bucket_of(500))));
        let p99 = h.quantile(0.99);
        assert!((990..=1000).contains(&p99), "{p99}");
        assert_eq!(h.quantile(1.0), 1000);
        assert_eq!(Histogram::default().quantile(0.5), 0);
    }

    #[test]
    fn merging_grown_histograms() {
        let mut small = Histogram::default();
        small.record(10);
        let mut big = Histogram::default();
        big.record(1_000_000);
        small.merge(&big);
        assert_eq!(small.total, 2);
        assert_eq!(small.max, 1_000_000);
        assert_eq!(small.quantile(0.5), 10);
        assert!(small.quantile(1.0) >= 990_000);
    }
}
