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

/// Prometheus metrics: the names, their descriptions, the recorder.
pub mod metrics;
