//! The `authd` binary: parse the command line, load settings, start
//! telemetry, then build and run the application — or run one of the
//! other subcommands (`src/commands.rs`).

use std::future::Future;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use authd::commands;
use authd::settings::Settings;
use authd::startup::{shutdown_signal, Application};

#[derive(Parser)]
#[command(name = "authd", version, about = "JWT authentication service")]
struct Cli {
    /// A TOML file overriding config/default.toml (environment wins over both).
    #[arg(long, env = "AUTHD_CONFIG", global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the API (the default).
    Serve,
    /// Print the effective configuration, secrets masked, and exit.
    CheckConfig,
    /// Manage the Ed25519 signing keys stored in the database.
    Keys {
        #[command(subcommand)]
        action: KeysAction,
    },
    /// Time argon2id hashing with the configured parameters on one thread
    /// and print the hash-bound sign-in limit (hashing threads / one hash's
    /// time) as a JSON line. Used by the benchmark script.
    HashCost {
        /// Hashes to time.
        #[arg(long, default_value_t = 20)]
        rounds: u32,
    },
    /// Measure the memory of TokenActor's session cache: insert `sessions`
    /// entries into the same map type and print resident bytes per session
    /// as a JSON line. Used by the benchmark script.
    CacheFootprint {
        #[arg(long, default_value_t = 1_000_000)]
        sessions: usize,
    },
    /// Print the cut-over from the old FastAPI service as JSON: old
    /// accounts, adopted, upgraded to argon2id, and the old accounts whose
    /// e-mails differ only by case.
    LegacyReport,
}

#[derive(Subcommand)]
enum KeysAction {
    /// Add a new signing key; it signs from now on (running instances pick
    /// it up within key_reload_secs) while older keys keep verifying.
    Rotate,
    /// List the stored keys, oldest first.
    List,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let settings = match Settings::load(cli.config.as_deref()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("authd: {e}");
            return ExitCode::from(2);
        }
    };
    let outcome = match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => return serve(settings),
        Command::CheckConfig => commands::check_config(&settings),
        Command::Keys {
            action: KeysAction::Rotate,
        } => run_async(commands::rotate_key(&settings)),
        Command::Keys {
            action: KeysAction::List,
        } => run_async(commands::list_keys(&settings)),
        Command::HashCost { rounds } => commands::hash_cost(&settings, rounds),
        Command::CacheFootprint { sessions } => commands::cache_footprint(sessions),
        Command::LegacyReport => run_async(commands::legacy_report(&settings)),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("authd: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Runs `work` on a fresh multi-threaded runtime.
fn run_async<T>(work: impl Future<Output = Result<T, String>>) -> Result<T, String> {
    tokio::runtime::Runtime::new()
        .map_err(|e| format!("cannot start the async runtime: {e}"))?
        .block_on(work)
}

fn serve(settings: Settings) -> ExitCode {
    authd::telemetry::init(settings.log_format, &settings.log_level);
    let served = run_async(async {
        authd::settings_report::log_starting(&settings);
        let app = Application::build(settings).await.map_err(|e| {
            tracing::error!(event = "startup_failed", error = %e, "authd could not start");
            e.to_string()
        })?;
        tracing::info!(event = "listening", addr = %app.local_addr(), "authd listening");
        if let Some(admin) = app.admin_addr() {
            tracing::info!(event = "admin_listening", addr = %admin, "admin listener (metrics, probes)");
        }
        app.run_until(shutdown_signal()).await.map_err(|e| {
            tracing::error!(event = "fatal", error = %e, "authd stopped on an error");
            e.to_string()
        })
    });
    match served {
        Ok(()) => ExitCode::SUCCESS,
        Err(_) => ExitCode::FAILURE,
    }
}
