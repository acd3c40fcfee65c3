//! Live progress on stderr, once a second while the measured window runs:
//! elapsed time, requests/s, errors and p99 of the second just finished.
//! On when stderr is a terminal (or with `--progress`), off with `--quiet`.

use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

use crate::stats::ms;
use crate::timeline::Timeline;

/// How long after a second ends its line is printed, so that the answers
/// of that second have landed.
const SETTLE: Duration = Duration::from_millis(100);

/// Prints a line per measured second until `done` turns true.
pub async fn report(
    timeline: Arc<Timeline>,
    measure_from: Instant,
    duration: Duration,
    mut done: watch::Receiver<bool>,
) {
    let total_secs = duration.as_secs_f64();
    let measured = duration.as_secs_f64().ceil() as usize;
    let mut errors_so_far = 0u64;
    let mut finished = false;
    for second in 0usize.. {
        if !finished {
            let due = measure_from + Duration::from_secs(second as u64 + 1) + SETTLE;
            tokio::select! {
                _ = tokio::time::sleep_until(due) => {}
                _ = done.wait_for(|d| *d) => finished = true,
            }
        }
        // Once the run is over, the seconds not printed yet are complete.
        if finished && second >= measured {
            return;
        }
        let s = timeline.second(second);
        errors_so_far += s.error_count();
        let line = format!(
            "authload: [{:>4}s/{total_secs:.0}s] {:>8} req/s · errors {} (total {errors_so_far}) · p99 {:.3} ms",
            second + 1,
            s.requests(),
            s.error_count(),
            ms(s.latency.quantile(0.99)),
        );
        // Straight to the handle: a line at a time, never interleaved.
        let _ = writeln!(std::io::stderr().lock(), "{line}");
    }
}
