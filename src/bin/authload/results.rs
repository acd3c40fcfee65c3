//! Everything a finished run measured, in one value that the summary, the
//! time series, the HTML report and the thresholds all read.

use std::time::Duration;

use crate::cli::Scenario;
use crate::stats::Stats;
use crate::timeline::Second;

/// How the run was shaped (printed in the summary and the report).
pub struct Params {
    pub scenario: Scenario,
    pub connections: usize,
    pub warmup: Duration,
    pub duration: Duration,
    /// Open loop: requests per second; `None`: closed loop.
    pub rate: Option<f64>,
    pub late_after: Duration,
    /// Multi-tab storm: how many sessions the tabs share.
    pub sessions: Option<usize>,
    /// `revoke`: the sessions made in setup.
    pub pool: Option<usize>,
    pub targets: Vec<String>,
    pub run_id: String,
    /// Seconds since the Unix epoch when the measured window opened.
    pub started_unix: u64,
}

impl Params {
    pub fn mode(&self) -> String {
        match self.rate {
            Some(rate) => format!("open loop at {rate} req/s"),
            None => "closed loop".to_string(),
        }
    }
}

pub struct TargetResult {
    pub label: String,
    pub connections: usize,
    pub stats: Stats,
}

pub struct RunResult {
    pub params: Params,
    pub total: Stats,
    pub targets: Vec<TargetResult>,
    pub timeline: Vec<Second>,
    /// Open loop: requests whose intended time fell in the window.
    pub scheduled: Option<u64>,
}

impl RunResult {
    pub fn seconds(&self) -> f64 {
        self.params.duration.as_secs_f64()
    }

    /// Open loop: scheduled requests never sent because every connection
    /// was still busy when the window closed.
    pub fn dropped(&self) -> u64 {
        self.scheduled
            .map_or(0, |scheduled| scheduled.saturating_sub(self.total.sent))
    }
}
