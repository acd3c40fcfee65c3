//! The `authd` binary: parse the command line, load settings, start
//! telemetry, then build and run the application (or print the settings).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

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
    match cli.command.unwrap_or(Command::Serve) {
        Command::CheckConfig => {
            println!("{:#?}", settings.masked());
            match settings.database() {
                Ok(db) => println!("store: {db:?}"),
                Err(e) => println!("store: {e}"),
            }
            ExitCode::SUCCESS
        }
        Command::Serve => serve(settings),
    }
}

fn serve(settings: Settings) -> ExitCode {
    authd::telemetry::init(settings.log_format, &settings.log_level);
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("authd: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async {
        tracing::info!(
            event = "starting",
            version = env!("CARGO_PKG_VERSION"),
            settings = ?settings.masked(),
            "authd starting"
        );
        let app = match Application::build(settings).await {
            Ok(app) => app,
            Err(e) => {
                tracing::error!(event = "startup_failed", error = %e, "authd could not start");
                return ExitCode::FAILURE;
            }
        };
        tracing::info!(event = "listening", addr = %app.local_addr(), "authd listening");
        match app.run_until(shutdown_signal()).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                tracing::error!(event = "fatal", error = %e, "authd stopped on an error");
                ExitCode::FAILURE
            }
        }
    })
}
