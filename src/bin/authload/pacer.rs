//! The open loop's clock: intended send times at a constant rate, handed
//! out in order to whichever connection asks next, and how many of them
//! fall inside a window (to count the ones never sent).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;

/// Open loop: hands out intended send times at a constant rate, in order,
/// to whichever connection asks next.
pub struct Pacer {
    start: Instant,
    interval_ns: f64,
    next: AtomicU64,
}

impl Pacer {
    pub fn new(start: Instant, rate: f64) -> Self {
        Pacer {
            start,
            interval_ns: 1e9 / rate,
            next: AtomicU64::new(0),
        }
    }

    fn at(&self, slot: u64) -> Instant {
        self.start + Duration::from_nanos((slot as f64 * self.interval_ns) as u64)
    }

    pub fn claim(&self) -> Instant {
        self.at(self.next.fetch_add(1, Ordering::Relaxed))
    }

    /// How many intended times fall in `[from, to)`.
    pub fn scheduled_between(&self, from: Instant, to: Instant) -> u64 {
        let slots_before = |t: Instant| {
            let ns = t.saturating_duration_since(self.start).as_nanos() as f64;
            (ns / self.interval_ns).ceil() as u64
        };
        slots_before(to) - slots_before(from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pacer_counts_its_slots() {
        let start = Instant::now();
        let pacer = Pacer::new(start, 100.0);
        // Slots at 0, 10 ms, 20 ms, ...: [0, 1 s) holds 100 of them.
        assert_eq!(
            pacer.scheduled_between(start, start + Duration::from_secs(1)),
            100
        );
        assert_eq!(
            pacer.scheduled_between(
                start + Duration::from_millis(5),
                start + Duration::from_millis(25)
            ),
            2
        );
        assert_eq!(pacer.claim(), start);
        assert_eq!(pacer.claim(), start + Duration::from_millis(10));
    }
}
