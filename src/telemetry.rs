//! Logging: a tracing subscriber writing human-readable or JSON lines to
//! stdout, filtered by `log_level` (or `RUST_LOG`, which wins).
//!
//! Events operators grep for carry an `event` field (`actor_failed`,
//! `actor_restarted`, `supervisor_gave_up`, `db_unreachable`,
//! `db_recovered`, `internal_error`, ...). Secrets never reach a log line:
//! `Password` has no printable form and the settings are masked.

use tracing_subscriber::{fmt, EnvFilter};

use crate::settings::LogFormat;

/// Installs the global subscriber. Calling it twice (tests) is harmless.
pub fn init(format: LogFormat, level: &str) {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = fmt().with_env_filter(filter).with_target(false);
    let _ = match format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .try_init(),
        LogFormat::Human => builder.try_init(),
    };
}

/// Prometheus metrics. One recorder per process (the `metrics` facade is
/// global), rendered by `GET /metrics`.
///
/// The recorder keeps every histogram sample in a lock-free bucket until
/// *upkeep* folds it into the histogram's buckets. The exporter spawns no
/// upkeep task for a recorder installed with `install_recorder` (its
/// documentation: "the caller is responsible for ensuring that upkeep is
/// run periodically"), so without [`spawn_upkeep`] memory would grow by
/// one sample per request for as long as nobody scrapes `/metrics`. With
/// it, the samples held at any moment are at most [`UPKEEP_INTERVAL`]'s
/// worth: 8 bytes each, about 0.8 MB at 100k requests a second.
pub mod metrics {
    use std::sync::OnceLock;
    use std::time::Duration;

    use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

    pub const HTTP_REQUESTS: &str = "authd_http_requests_total";
    pub const HTTP_DURATION: &str = "authd_http_request_duration_seconds";
    pub const ACTOR_RESTARTS: &str = "authd_actor_restarts_total";
    pub const CACHE_SESSIONS: &str = "authd_token_cache_sessions";
    pub const CACHE_CAPACITY: &str = "authd_token_cache_capacity";
    pub const CACHE_HITS: &str = "authd_token_cache_hits_total";
    pub const CACHE_MISSES: &str = "authd_token_cache_misses_total";
    pub const CACHE_EVICTIONS: &str = "authd_token_cache_evictions_total";
    pub const BATCH_SIZE: &str = "authd_session_batch_size";
    pub const BATCH_DURATION: &str = "authd_session_batch_duration_seconds";
    pub const BATCH_FAILURES: &str = "authd_session_batch_failures_total";
    pub const HASH_QUEUE: &str = "authd_hash_queue_depth";
    pub const HASH_REJECTED: &str = "authd_hash_rejected_total";
    pub const DB_POOL: &str = "authd_db_pool_connections";
    pub const DB_HEALTHY: &str = "authd_db_healthy";
    pub const FEED_CHANGES: &str = "authd_change_feed_changes_total";
    pub const FEED_RECONNECTS: &str = "authd_change_feed_connects_total";
    pub const FEED_UNANNOUNCED: &str = "authd_change_feed_unannounced_total";
    pub const FEED_CATCH_UPS: &str = "authd_change_feed_catch_ups_total";
    pub const FEED_RESYNCS: &str = "authd_change_feed_resyncs_total";
    pub const FEED_CATCH_UP_DURATION: &str = "authd_change_feed_catch_up_duration_seconds";
    pub const RATE_LIMITED: &str = "authd_rate_limited_total";
    pub const RATE_LIMIT_TABLE_FULL: &str = "authd_rate_limit_table_full_total";
    pub const REUSE_DETECTED: &str = "authd_token_reuse_detected_total";
    pub const AUTH_EVENTS: &str = "authd_auth_events_total";
    pub const LEGACY_ACCOUNTS: &str = "authd_legacy_accounts";
    pub const LEGACY_ADOPTIONS: &str = "authd_legacy_adoptions_total";
    pub const LEGACY_EXCHANGES: &str = "authd_legacy_token_exchanges_total";

    static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

    /// How often pending histogram samples are folded into their buckets,
    /// whether or not anything scrapes (the exporter's own default is 5 s;
    /// shorter keeps the pending samples small and costs a few µs).
    pub const UPKEEP_INTERVAL: Duration = Duration::from_secs(1);

    /// Runs the recorder's upkeep every [`UPKEEP_INTERVAL`] until the task
    /// is aborted. `None` when another recorder owns the facade.
    pub fn spawn_upkeep() -> Option<tokio::task::JoinHandle<()>> {
        let handle = handle()?;
        Some(tokio::spawn(async move {
            let mut ticks = tokio::time::interval(UPKEEP_INTERVAL);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticks.tick().await;
                handle.run_upkeep();
            }
        }))
    }

    /// Installs the recorder on first use and returns its handle; `None`
    /// if another recorder was installed first (then metrics go there).
    pub fn handle() -> Option<&'static PrometheusHandle> {
        HANDLE
            .get_or_init(|| {
                let latency = [
                    0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1,
                    0.25, 0.5, 1.0, 2.5, 5.0,
                ];
                let sizes = [
                    1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0,
                ];
                PrometheusBuilder::new()
                    .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &latency)
                    .and_then(|b| {
                        b.set_buckets_for_metric(Matcher::Full(BATCH_SIZE.into()), &sizes)
                    })
                    .and_then(|b| b.install_recorder())
                    .ok()
            })
            .as_ref()
    }

    /// The text exposition of every metric.
    pub fn render() -> String {
        match handle() {
            Some(h) => {
                h.run_upkeep();
                h.render()
            }
            None => String::new(),
        }
    }
}
