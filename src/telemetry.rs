//! Logging: a tracing subscriber writing human-readable or JSON lines to
//! stdout, filtered by `log_level` (or `RUST_LOG`, which wins). Human lines
//! are coloured only on a terminal and without `NO_COLOR`, so files and
//! pipes get plain text.
//!
//! Events operators grep for carry an `event` field (`actor_failed`,
//! `actor_restarted`, `supervisor_gave_up`, `db_unreachable`,
//! `db_recovered`, `internal_error`, ...). Secrets never reach a log line:
//! `Password` has no printable form and the settings are masked.

use std::io::IsTerminal;

use tracing_subscriber::{fmt, EnvFilter};

use crate::settings::LogFormat;

/// Installs the global subscriber. Calling it twice (tests) is harmless.
pub fn init(format: LogFormat, level: &str) {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_ansi(colour(
            std::io::stdout().is_terminal(),
            std::env::var_os("NO_COLOR"),
        ));
    let _ = match format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .try_init(),
        LogFormat::Human => builder.try_init(),
    };
}

/// Whether human log lines get ANSI colours: only on a terminal, and not
/// when `NO_COLOR` is set to anything but the empty string (no-color.org).
fn colour(terminal: bool, no_color: Option<std::ffi::OsString>) -> bool {
    terminal && no_color.is_none_or(|v| v.is_empty())
}

/// Prometheus metrics: the names, their descriptions, the recorder.
pub mod metrics;

#[cfg(test)]
mod tests {
    use super::colour;

    #[test]
    fn colour_only_on_a_terminal_without_no_color() {
        assert!(colour(true, None));
        assert!(colour(true, Some("".into())));
        assert!(!colour(true, Some("1".into())));
        assert!(!colour(false, None));
    }
}
