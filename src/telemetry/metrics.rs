//! Prometheus metrics. One recorder per process (the `metrics` facade is
//! global), rendered by `GET /metrics`.
//!
//! Every metric name lives here with its description and unit
//! ([`FAMILIES`]), registered once when the recorder is installed, so that
//! each family is exposed with `# HELP` as Prometheus' linter (`promtool
//! check metrics`) requires. The unit is part of each name already
//! (`_seconds`, `_total`), so the exporter's unit suffixes stay off.
//!
//! The recorder keeps every histogram sample in a lock-free bucket until
//! *upkeep* folds it into the histogram's buckets. The exporter spawns no
//! upkeep task for a recorder installed with `install_recorder` (its
//! documentation: "the caller is responsible for ensuring that upkeep is
//! run periodically"), so without [`spawn_upkeep`] memory would grow by
//! one sample per request for as long as nobody scrapes `/metrics`. With
//! it, the samples held at any moment are at most [`UPKEEP_INTERVAL`]'s
//! worth: 8 bytes each, about 0.8 MB at 100k requests a second.

use std::sync::OnceLock;
use std::time::Duration;

use metrics::Unit;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

pub const HTTP_REQUESTS: &str = "authd_http_requests_total";
pub const HTTP_DURATION: &str = "authd_http_request_duration_seconds";
pub const ACTOR_RESTARTS: &str = "authd_actor_restarts_total";
pub const SUPERVISOR_RESTARTS_LEFT: &str = "authd_supervisor_restarts_left";
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

/// What kind of metric a family is, for its description.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
}

/// One metric family: name, kind, unit and help text.
pub struct Family {
    pub name: &'static str,
    pub kind: Kind,
    pub unit: Unit,
    pub help: &'static str,
}

const fn family(name: &'static str, kind: Kind, unit: Unit, help: &'static str) -> Family {
    Family {
        name,
        kind,
        unit,
        help,
    }
}

/// Every metric authd exports, described.
pub const FAMILIES: &[Family] = &[
    family(HTTP_REQUESTS, Kind::Counter, Unit::Count,
        "HTTP requests answered, by route and status code (\"other\" for codes without a label of their own)."),
    family(HTTP_DURATION, Kind::Histogram, Unit::Seconds,
        "Seconds from a request's headers being read to its answer, by route."),
    family(ACTOR_RESTARTS, Kind::Counter, Unit::Count,
        "Failures of a supervised actor, by actor; each is followed by a restart unless the supervisor gives up."),
    family(SUPERVISOR_RESTARTS_LEFT, Kind::Gauge, Unit::Count,
        "Failures an actor may still have within restart_window_secs before the supervisor gives up and authd exits, by actor (0: the next one stops authd)."),
    family(CACHE_SESSIONS, Kind::Gauge, Unit::Count,
        "Sessions held in the token cache (never more than authd_token_cache_capacity)."),
    family(CACHE_CAPACITY, Kind::Gauge, Unit::Count,
        "Most sessions the token cache holds (session_cache_capacity); past it, the least recently used are evicted."),
    family(CACHE_HITS, Kind::Counter, Unit::Count,
        "Session lookups answered from the token cache."),
    family(CACHE_MISSES, Kind::Counter, Unit::Count,
        "Session lookups the token cache could not answer (read through from the database)."),
    family(CACHE_EVICTIONS, Kind::Counter, Unit::Count,
        "Sessions evicted from the full token cache to make room (read through again when next used)."),
    family(BATCH_SIZE, Kind::Histogram, Unit::Count,
        "Session writes committed together in one batch."),
    family(BATCH_DURATION, Kind::Histogram, Unit::Seconds,
        "Seconds to commit one batch of session writes."),
    family(BATCH_FAILURES, Kind::Counter, Unit::Count,
        "Batches of session writes the database refused or failed to commit."),
    family(HASH_QUEUE, Kind::Gauge, Unit::Count,
        "Password hashes waiting for or running on a hashing thread."),
    family(HASH_REJECTED, Kind::Counter, Unit::Count,
        "Password hashes refused because the hashing queue was full (answered 503)."),
    family(DB_POOL, Kind::Gauge, Unit::Count,
        "PostgreSQL pool by state: open and idle connections, and tasks waiting for one."),
    family(DB_HEALTHY, Kind::Gauge, Unit::Count,
        "1 when the last database health check succeeded, 0 when it failed."),
    family(FEED_CHANGES, Kind::Counter, Unit::Count,
        "Session changes received from other instances through the change feed."),
    family(FEED_RECONNECTS, Kind::Counter, Unit::Count,
        "Connections the change feed's listener made: the first and each reconnection."),
    family(FEED_UNANNOUNCED, Kind::Counter, Unit::Count,
        "Session changes committed but not announced to other instances (they see them at their next catch-up read)."),
    family(FEED_CATCH_UPS, Kind::Counter, Unit::Count,
        "Catch-up reads of the session change log."),
    family(FEED_RESYNCS, Kind::Counter, Unit::Count,
        "Times the change feed lost its place in the change log (pruned, too far behind, or read too long ago) and emptied the session cache instead."),
    family(FEED_CATCH_UP_DURATION, Kind::Histogram, Unit::Seconds,
        "Seconds one catch-up read of the session change log took."),
    family(RATE_LIMITED, Kind::Counter, Unit::Count,
        "Password checks and sign-ups refused by the rate limits (429)."),
    family(RATE_LIMIT_TABLE_FULL, Kind::Counter, Unit::Count,
        "Attempts refused because a rate-limit table held rate_limit_max_keys addresses or accounts."),
    family(REUSE_DETECTED, Kind::Counter, Unit::Count,
        "Refresh tokens presented again after their rotation; each such reuse ends its session."),
    family(AUTH_EVENTS, Kind::Counter, Unit::Count,
        "Audit events, by action and outcome."),
    family(LEGACY_ACCOUNTS, Kind::Gauge, Unit::Count,
        "Accounts of the old service, by state (old, adopted, upgraded, not_upgraded)."),
    family(LEGACY_ADOPTIONS, Kind::Counter, Unit::Count,
        "Old-service accounts adopted, by what adopted them (signin, token)."),
    family(LEGACY_EXCHANGES, Kind::Counter, Unit::Count,
        "Old-service tokens exchanged for authd tokens."),
];

/// Counters that start at zero instead of at their first event. A counter
/// whose first sample is already 1 shows no increase to `rate()` or
/// `increase()`, so the first reuse or the first full table would never
/// reach an alert. (Labelled counters are started by their owners, which
/// know the label values.)
const STARTED_AT_ZERO: &[&str] = &[
    REUSE_DETECTED,
    RATE_LIMITED,
    RATE_LIMIT_TABLE_FULL,
    HASH_REJECTED,
    BATCH_FAILURES,
    FEED_UNANNOUNCED,
    FEED_RESYNCS,
];

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
            let handle = install()?;
            describe();
            Some(handle)
        })
        .as_ref()
}

fn install() -> Option<PrometheusHandle> {
    let latency = [
        0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
        2.5, 5.0,
    ];
    let sizes = [
        1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0,
    ];
    PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &latency)
        .and_then(|b| b.set_buckets_for_metric(Matcher::Full(BATCH_SIZE.into()), &sizes))
        .and_then(|b| b.install_recorder())
        .ok()
}

/// Registers every family's help text and unit with the installed
/// recorder, and starts the [`STARTED_AT_ZERO`] counters.
fn describe() {
    for f in FAMILIES {
        match f.kind {
            Kind::Counter => metrics::describe_counter!(f.name, f.unit, f.help),
            Kind::Gauge => metrics::describe_gauge!(f.name, f.unit, f.help),
            Kind::Histogram => metrics::describe_histogram!(f.name, f.unit, f.help),
        }
    }
    for name in STARTED_AT_ZERO {
        metrics::counter!(*name).increment(0);
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_are_named_once_with_their_unit() {
        let mut names: Vec<_> = FAMILIES.iter().map(|f| f.name).collect();
        names.sort_unstable();
        let before = names.len();
        names.dedup();
        assert_eq!(names.len(), before, "a family is described twice");
        for f in FAMILIES {
            assert!(f.name.starts_with("authd_"), "{}", f.name);
            assert_eq!(
                f.name.ends_with("_total"),
                f.kind == Kind::Counter,
                "{}: counters and only counters end in _total",
                f.name
            );
            if f.unit == Unit::Seconds {
                assert!(f.name.ends_with("_seconds"), "{}", f.name);
            }
            assert!(f.help.ends_with('.'), "{}", f.name);
        }
    }
}
