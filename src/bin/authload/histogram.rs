//! Latency histograms of microseconds, on [`hdrhistogram`]: the run's
//! figures keep three significant digits (a quantile within 0.1%), the
//! per-second histograms of the timeline two (1%), since a run keeps one
//! per second and operation. Each is allocated at its first value, so the
//! many that stay empty (an operation a connection never sends) cost
//! nothing.

use hdrhistogram::Histogram as Hdr;

/// Latencies above an hour (in µs) are counted as an hour: no histogram
/// grows past that range.
const MAX_MICROS: u64 = 3_600_000_000;

#[derive(Clone, Debug)]
pub struct Histogram {
    sigfig: u8,
    hdr: Option<Hdr<u64>>,
    /// The largest value recorded, exactly (the histogram rounds it).
    max: u64,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram::precise()
    }
}

impl Histogram {
    /// Three significant digits: for the run's, the targets' and the
    /// operations' figures.
    pub fn precise() -> Self {
        Histogram {
            sigfig: 3,
            hdr: None,
            max: 0,
        }
    }

    /// Two significant digits: for the timeline's per-second histograms.
    pub fn coarse() -> Self {
        Histogram {
            sigfig: 2,
            ..Histogram::precise()
        }
    }

    fn hdr(&mut self) -> &mut Hdr<u64> {
        let sigfig = self.sigfig;
        // `Hdr::new` refuses only more than 5 significant digits.
        self.hdr
            .get_or_insert_with(|| Hdr::new(sigfig).expect("2 or 3 significant digits"))
    }

    pub fn record(&mut self, micros: u64) {
        let micros = micros.min(MAX_MICROS);
        let hdr = self.hdr();
        // `record` grows the histogram to the value; it fails only where
        // growing cannot, and then the value counts as the largest kept.
        if hdr.record(micros).is_err() {
            hdr.saturating_record(micros);
        }
        self.max = self.max.max(micros);
    }

    pub fn merge(&mut self, other: &Histogram) {
        let Some(theirs) = other.hdr.as_ref().filter(|h| !h.is_empty()) else {
            return;
        };
        // Adding refuses only when this histogram may not grow to the
        // other's range; both auto-resize and stay under MAX_MICROS.
        let _ = self.hdr().add(theirs);
        self.max = self.max.max(other.max);
    }

    /// How many values were recorded.
    pub fn total(&self) -> u64 {
        self.hdr.as_ref().map_or(0, Hdr::len)
    }

    /// The largest value recorded, in µs; 0 when empty.
    pub fn max(&self) -> u64 {
        self.max
    }

    /// The value at quantile `q` (0..=1), in µs; 0 when empty.
    pub fn quantile(&self, q: f64) -> u64 {
        match &self.hdr {
            Some(h) if !h.is_empty() => h.value_at_quantile(q).min(self.max),
            _ => 0,
        }
    }

    /// The mean, in µs; 0 when empty.
    pub fn mean(&self) -> f64 {
        self.hdr.as_ref().map_or(0.0, Hdr::mean)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_within_a_tenth_of_a_percent() {
        let mut h = Histogram::default();
        for v in 1..=100_000 {
            h.record(v);
        }
        for (q, exact) in [(0.5, 50_000.0), (0.99, 99_000.0), (0.999, 99_900.0)] {
            let got = h.quantile(q) as f64;
            assert!((got - exact).abs() <= exact * 0.001, "q{q}: {got}");
        }
        assert_eq!(h.quantile(1.0), 100_000);
        assert_eq!(h.max(), 100_000);
        assert_eq!(h.total(), 100_000);
        assert!((h.mean() - 50_000.5).abs() < 50.0, "{}", h.mean());
    }

    #[test]
    fn empty_histograms_answer_zero() {
        let h = Histogram::coarse();
        assert_eq!((h.total(), h.max(), h.quantile(0.5)), (0, 0, 0));
        assert_eq!(h.mean(), 0.0);
    }

    #[test]
    fn merging_histograms_of_other_ranges_and_precisions() {
        let mut small = Histogram::coarse();
        small.record(10);
        let mut big = Histogram::precise();
        big.record(1_000_000);
        big.record(u64::MAX);
        small.merge(&big);
        small.merge(&Histogram::default());
        assert_eq!(small.total(), 3);
        assert_eq!(small.max(), MAX_MICROS);
        assert_eq!(small.quantile(0.1), 10);
        let median = small.quantile(0.5);
        assert!((990_000..=1_010_000).contains(&median), "{median}");
    }
}
