//! The command line of `authload`: its flags, the scenarios it knows and
//! the duration parser behind them (humantime's, plus plain seconds).

use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, ValueEnum};

use crate::threshold::Threshold;

#[derive(Parser, Debug)]
#[command(
    name = "authload",
    about = "Load generator for authd: closed or open loop, live progress, time series, HTML report, thresholds",
    version
)]
pub struct Args {
    /// Base URL of a server (http only), e.g. http://127.0.0.1:8000. Repeat
    /// it to spread the connections over a fleet (round-robin, reported per target).
    #[arg(long, default_value = "http://127.0.0.1:8000")]
    pub url: Vec<String>,
    /// Prefix put in front of every route, e.g. "/authd" (appended to any path in --url).
    #[arg(long, default_value = "")]
    pub base_path: String,
    /// What each request does.
    #[arg(long, value_enum)]
    pub scenario: Scenario,
    /// Concurrent connections, each with one request in flight (in open loop:
    /// the most requests in flight at once).
    #[arg(long, short = 'c', default_value_t = 16)]
    pub connections: usize,
    /// Measured window: "10s", "500ms", "2m", "1m 30s", or plain seconds.
    #[arg(long, short = 'd', default_value = "10s", value_parser = parse_duration)]
    pub duration: Duration,
    /// Load applied before the measured window and not counted.
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    pub warmup: Duration,
    /// Open loop: send this many requests per second in total, whatever the
    /// server does, and measure each latency from its intended send time.
    /// Without it the loop is closed (each connection waits for its answer).
    #[arg(long)]
    pub rate: Option<f64>,
    /// Open loop: a request sent later than this after its intended time counts as late.
    #[arg(long, default_value = "10ms", value_parser = parse_duration)]
    pub late_after: Duration,
    /// Multi-tab storm: how many sessions the connections (the tabs) share.
    #[arg(long, default_value_t = 4)]
    pub sessions: usize,
    /// `revoke` and `revoke-seen`: sessions signed in during setup, before
    /// the timed window, spread over the connections; each timed request
    /// revokes one of them (a connection whose share runs out stops).
    #[arg(long, default_value_t = 2000)]
    pub pool: usize,
    /// `revoke-seen`: how long the second instance may keep accepting a
    /// revoked token before the sample counts as never seen.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub seen_within: Duration,
    /// Password of the load users (at least 8 characters).
    #[arg(long, default_value = "load-test-password")]
    pub password: String,
    /// A request taking longer than this counts as a `timeout` error.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub timeout: Duration,
    /// Runtime worker threads (default: one per CPU).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Also print one final line of JSON with the results.
    #[arg(long)]
    pub json: bool,
    /// Write a per-second time series: CSV when FILE ends in .csv, JSON lines
    /// when it ends in .json, .jsonl or .ndjson.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// Write a self-contained HTML report (inline SVG charts).
    #[arg(long, value_name = "FILE.html")]
    pub report: Option<PathBuf>,
    /// Fail (exit status 99) when this does not hold, e.g. 'p99<10ms',
    /// 'errors<0.1%', 'refresh.p50<=2ms', 'rps>1000', 'dropped==0'. Repeatable.
    #[arg(long, value_parser = Threshold::parse)]
    pub threshold: Vec<Threshold>,
    /// No live progress on stderr.
    #[arg(long, short = 'q')]
    pub quiet: bool,
    /// Live progress on stderr even when it is not a terminal (e.g. CI logs).
    #[arg(long, conflicts_with = "quiet")]
    pub progress: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Scenario {
    /// `GET /health`: the HTTP ceiling.
    Health,
    /// `POST /signup` with a fresh e-mail each time (argon2-bound).
    Signup,
    /// `POST /signin` of the connection's user (argon2-bound).
    Signin,
    /// `POST /refresh` along the connection's own token chain.
    Refresh,
    /// Revoke sessions made in setup (`--pool`), one per request.
    Revoke,
    /// `GET /authorize` with the connection's Bearer token.
    Authorize,
    /// Per connection: sign in, 20 x (refresh, then 5 authorizes), revoke; looping.
    Mixed,
    /// Many connections (tabs) refreshing the same few sessions at once.
    MultiTab,
    /// Rotated tokens presented again: all must be refused, the session revoked.
    Replay,
    /// Revoke at the first `--url`, then authorize at the second until it
    /// answers 401: the delay another instance needs to see a revocation.
    RevokeSeen,
}

impl Scenario {
    pub fn label(self) -> &'static str {
        match self {
            Scenario::Health => "health",
            Scenario::Signup => "signup",
            Scenario::Signin => "signin",
            Scenario::Refresh => "refresh",
            Scenario::Revoke => "revoke",
            Scenario::Authorize => "authorize",
            Scenario::Mixed => "mixed",
            Scenario::MultiTab => "multi-tab",
            Scenario::Replay => "replay",
            Scenario::RevokeSeen => "revoke-seen",
        }
    }

    /// Whether each connection signs up a user of its own during setup
    /// (the multi-tab storm signs up one user per shared session instead).
    pub fn needs_own_user(self) -> bool {
        !matches!(
            self,
            Scenario::Health | Scenario::Signup | Scenario::MultiTab
        )
    }
}

/// Parses a duration as humantime writes it ("10s", "250ms", "1m 30s",
/// "2h") or a plain number of seconds ("3", "0.5").
pub fn parse_duration(raw: &str) -> Result<Duration, String> {
    let raw = raw.trim();
    if let Ok(seconds) = raw.parse::<f64>() {
        return Duration::try_from_secs_f64(seconds)
            .map_err(|_| format!("invalid duration {raw:?}"));
    }
    humantime::parse_duration(raw).map_err(|e| format!("invalid duration {raw:?}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("3"), Ok(Duration::from_secs(3)));
        assert_eq!(parse_duration("0.5"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("1m 30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("500us"), Ok(Duration::from_micros(500)));
        assert!(parse_duration("x").is_err());
        assert!(parse_duration("-1").is_err());
        assert!(parse_duration("5 parsecs").is_err());
    }
}
