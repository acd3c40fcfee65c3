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
    /// Manage the Ed25519 signing keys stored in the database.
    Keys {
        #[command(subcommand)]
        action: KeysAction,
    },
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
        Command::Keys { action } => keys(settings, action),
    }
}

fn keys(settings: Settings, action: KeysAction) -> ExitCode {
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("authd: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async {
        let store = match authd::store::connect(&settings).await {
            Ok(store) => store,
            Err(e) => {
                eprintln!("authd: {e}");
                return ExitCode::FAILURE;
            }
        };
        match action {
            KeysAction::Rotate => match authd::keys::add_key(&*store).await {
                Ok(kid) => {
                    println!("added signing key {kid}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("authd: {e}");
                    ExitCode::FAILURE
                }
            },
            KeysAction::List => match store.signing_keys().await {
                Ok(keys) => {
                    for key in keys {
                        println!(
                            "{}\t{}\tcreated_at_ms={}",
                            key.kid, key.algorithm, key.created_at_ms
                        );
                    }
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("authd: {e}");
                    ExitCode::FAILURE
                }
            },
        }
    })
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
