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
        Command::HashCost { rounds } => hash_cost(&settings, rounds),
        Command::CacheFootprint { sessions } => cache_footprint(sessions),
    }
}

fn hash_cost(settings: &Settings, rounds: u32) -> ExitCode {
    use argon2::{Algorithm, Argon2, Params, PasswordHasher, Version};
    let params = match Params::new(
        settings.argon2_m_kib,
        settings.argon2_t,
        settings.argon2_p,
        None,
    ) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("authd: argon2 parameters: {e}");
            return ExitCode::FAILURE;
        }
    };
    let argon = Argon2::new(Algorithm::Argon2id, Version::V0x13, params);
    let rounds = rounds.max(1);
    let started = std::time::Instant::now();
    for i in 0..rounds {
        if let Err(e) = argon.hash_password(format!("benchmark-password-{i}").as_bytes()) {
            eprintln!("authd: hashing failed: {e}");
            return ExitCode::FAILURE;
        }
    }
    let per_hash = started.elapsed().as_secs_f64() / f64::from(rounds);
    let threads = settings.hash_threads();
    println!(
        "{{\"hash_ms\":{:.3},\"hash_threads\":{},\"hash_bound_per_s\":{:.1}}}",
        per_hash * 1000.0,
        threads,
        threads as f64 / per_hash
    );
    ExitCode::SUCCESS
}

fn cache_footprint(sessions: usize) -> ExitCode {
    use authd::domain::{now_ms, Session, SessionId, UserId};
    fn resident_bytes() -> Option<u64> {
        let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
        let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
        Some(pages * 4096)
    }
    let before = resident_bytes();
    let cache = authd::actors::token::SessionCache::new();
    let now = now_ms();
    for _ in 0..sessions {
        let session = Session::start(UserId::new_random(), now, 604_800_000);
        cache.insert(session.id, session.state());
    }
    let after = resident_bytes();
    match (before, after) {
        (Some(before), Some(after)) => {
            let per = after.saturating_sub(before) as f64 / sessions.max(1) as f64;
            println!(
                "{{\"sessions\":{},\"bytes_per_session\":{per:.1},\"entry_size\":{}}}",
                cache.len(),
                std::mem::size_of::<(SessionId, authd::domain::SessionState)>()
            );
            ExitCode::SUCCESS
        }
        _ => {
            eprintln!("authd: cannot read /proc/self/statm");
            ExitCode::FAILURE
        }
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
