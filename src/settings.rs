//! Settings: read once at start-up from `config/default.toml` (compiled in),
//! an optional override file and the environment, then handed down.
//!
//! Precedence, lowest first: built-in defaults, the `--config`/`AUTHD_CONFIG`
//! file, `AUTHD_<KEY>` variables, and finally the seed service's variable
//! names (`POSTGRES_*`, `SECRET_KEY`, `ACCESS_TOKEN_EXPIRE_MINUTES`,
//! `DATABASE_URL`) so its deployments keep working unchanged.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use config::{Config, Environment, File, FileFormat};
use serde::{Deserialize, Serialize};

use crate::secret::Secret;

mod names;
mod postgres;
mod validation;

use names::{check_file_keys, setting_names, unknown_variables};

pub use postgres::{parse_host_list, PgHost, PostgresTarget};

const DEFAULTS: &str = include_str!("../config/default.toml");

/// A configured HS256 secret shorter than this is refused.
pub const MIN_SECRET_BYTES: usize = 16;
/// A configured HS256 secret shorter than this starts authd with a warning
/// (`event="weak_secret"`): the old service's keys are often shorter.
pub const GOOD_SECRET_BYTES: usize = 32;

#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("configuration: {0}")]
    Load(#[from] config::ConfigError),
    #[error("configuration: {0}")]
    Invalid(String),
}

/// Every setting, flat, as in `config/default.toml`. It serializes with
/// every secret masked (see `settings_report`).
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct Settings {
    pub bind: SocketAddr,
    pub max_body_bytes: usize,
    pub header_read_timeout_ms: u64,
    pub request_timeout_ms: u64,
    pub shutdown_grace_ms: u64,
    pub shutdown_delay_ms: u64,
    pub max_connections: usize,
    pub admin_bind: String,
    pub trusted_proxies: Vec<String>,
    pub body_read_timeout_ms: u64,
    pub max_header_bytes: usize,
    pub http2_max_concurrent_streams: u32,
    pub http2_max_pending_reset_streams: usize,
    pub rate_limit_enabled: bool,
    pub rate_limit_per_ip_per_minute: u32,
    pub rate_limit_per_account_per_minute: u32,
    pub rate_limit_max_keys: usize,

    /// May carry a password (`postgres://user:pw@...`).
    pub database_url: Secret,
    pub data_dir: PathBuf,
    pub postgres_host: String,
    pub postgres_port: u16,
    pub postgres_user: String,
    pub postgres_password: Secret,
    pub postgres_db: String,
    pub db_pool_size: usize,
    pub db_timeout_ms: u64,
    pub health_interval_ms: u64,
    pub feed_catch_up_ms: u64,

    pub jwt_algorithm: JwtAlgorithm,
    pub key_reload_secs: u64,
    pub secret_key: Secret,
    pub jwt_issuer: String,
    pub jwt_audience: String,
    pub access_token_ttl_secs: i64,
    pub session_ttl_secs: i64,
    pub refresh_grace_ms: i64,
    pub prune_interval_secs: u64,
    pub session_cache_capacity: usize,
    pub batch_max_size: usize,
    pub batch_max_wait_us: u64,
    pub batch_concurrency: usize,

    pub legacy_fastapi: bool,
    pub signin_failure_floor_ms: u64,

    pub restart_limit: usize,
    pub restart_window_secs: u64,

    pub argon2_m_kib: u32,
    pub argon2_t: u32,
    pub argon2_p: u32,
    pub hash_concurrency: usize,
    pub hash_queue_limit: usize,
    pub hash_thread_nice: i32,

    pub log_format: LogFormat,
    pub log_level: String,
    /// Whether audit events may carry e-mail addresses (default: no).
    pub audit_log_emails: bool,

    /// `AUTHD_*` variables that name no setting (a typo, most likely),
    /// logged at start-up as a warning (`event="unknown_setting"`).
    #[serde(skip)]
    pub unknown_variables: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
pub enum JwtAlgorithm {
    #[serde(rename = "HS256", alias = "hs256")]
    Hs256,
    #[serde(rename = "EdDSA", alias = "eddsa", alias = "EDDSA", alias = "Ed25519")]
    EdDsa,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Human,
    Json,
}

/// Where the data lives, decided from the settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Database {
    Sqlite { path: PathBuf },
    Postgres(PostgresTarget),
}

impl Settings {
    /// Loads the settings from the built-in defaults, `file` (if any) and the
    /// process environment.
    pub fn load(file: Option<&std::path::Path>) -> Result<Self, SettingsError> {
        Self::load_from(file, std::env::vars().collect())
    }

    /// Like [`load`](Self::load) with an explicit environment (tests, and
    /// the test helper that starts the server in-process).
    pub fn load_from(
        file: Option<&std::path::Path>,
        vars: HashMap<String, String>,
    ) -> Result<Self, SettingsError> {
        let env = |name: &str| vars.get(name).cloned();
        let names = setting_names()?;
        let mut builder = Config::builder().add_source(File::from_str(DEFAULTS, FileFormat::Toml));
        if let Some(path) = file {
            check_file_keys(path, &names)?;
            builder = builder.add_source(File::from(path).required(true));
        }
        builder = builder.add_source(
            Environment::with_prefix("AUTHD")
                .try_parsing(true)
                // `AUTHD_TRUSTED_PROXIES=10.0.0.0/8,192.168.1.7`
                .list_separator(",")
                .with_list_parse_key("trusted_proxies")
                .source(Some(vars.clone().into_iter().collect())),
        );
        // The seed service's variable names.
        for (var, key) in [
            ("POSTGRES_HOST", "postgres_host"),
            ("POSTGRES_PORT", "postgres_port"),
            ("POSTGRES_USER", "postgres_user"),
            ("POSTGRES_PASSWORD", "postgres_password"),
            ("POSTGRES_DB", "postgres_db"),
            ("SECRET_KEY", "secret_key"),
            ("DATABASE_URL", "database_url"),
        ] {
            builder = builder.set_override_option(key, env(var))?;
        }
        if let Some(minutes) = env("ACCESS_TOKEN_EXPIRE_MINUTES") {
            let minutes: i64 = minutes.trim().parse().map_err(|_| {
                SettingsError::Invalid("ACCESS_TOKEN_EXPIRE_MINUTES must be an integer".into())
            })?;
            builder = builder.set_override("access_token_ttl_secs", minutes * 60)?;
        }
        let mut settings: Settings = builder.build()?.try_deserialize()?;
        settings.check()?;
        settings.unknown_variables = unknown_variables(&vars, &names);
        Ok(settings)
    }

    /// The store to use: `database_url` if set, else PostgreSQL if a
    /// database name is configured, else SQLite in `data_dir`.
    pub fn database(&self) -> Result<Database, SettingsError> {
        let url = self.database_url.expose().trim();
        if let Some(path) = url.strip_prefix("sqlite://") {
            return Ok(Database::Sqlite { path: path.into() });
        }
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let mut target = PostgresTarget::from_url(url)
                .map_err(|problem| SettingsError::Invalid(format!("database_url: {problem}")))?;
            if target.hosts.is_empty() {
                target.hosts = parse_host_list(&self.postgres_host, self.postgres_port)
                    .map_err(SettingsError::Invalid)?;
            }
            return Ok(Database::Postgres(target));
        }
        if !url.is_empty() {
            return Err(SettingsError::Invalid(
                "database_url must start with postgres:// or sqlite://".into(),
            ));
        }
        if !self.postgres_db.is_empty() {
            return Ok(Database::Postgres(PostgresTarget {
                hosts: parse_host_list(&self.postgres_host, self.postgres_port)
                    .map_err(SettingsError::Invalid)?,
                user: self.postgres_user.clone(),
                password: self.postgres_password.clone(),
                dbname: self.postgres_db.clone(),
            }));
        }
        Ok(Database::Sqlite {
            path: self.data_dir.join("authd.db"),
        })
    }

    /// Hashing threads: `hash_concurrency`, or by default half the cores
    /// (at least one). Measured on 2 cores: with both cores hashing, a
    /// sign-in storm cut refresh throughput from 19k to 6k req/s (p99 4.5x);
    /// with one, refresh kept 15k req/s (p99 2.5x) while sign-ins ran at
    /// one core's hash rate.
    pub fn hash_threads(&self) -> usize {
        if self.hash_concurrency > 0 {
            self.hash_concurrency
        } else {
            std::thread::available_parallelism().map_or(1, |n| (n.get() / 2).max(1))
        }
    }

    pub fn db_timeout(&self) -> Duration {
        Duration::from_millis(self.db_timeout_ms)
    }

    pub fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.request_timeout_ms)
    }

    /// The least time a failed sign-in takes (see `signin_failure_floor_ms`).
    pub fn signin_failure_floor(&self) -> Duration {
        Duration::from_millis(self.signin_failure_floor_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(vars: &[(&str, &str)]) -> Result<Settings, SettingsError> {
        let map = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Settings::load_from(None, map)
    }

    #[test]
    fn a_misspelt_key_in_the_file_is_refused() {
        let dir = std::env::temp_dir().join(format!("authd-settings-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("authd.toml");
        std::fs::write(&path, "bind = \"127.0.0.1:9\"\nbatch_max_siz = 8\n").unwrap();
        let error = Settings::load_from(Some(&path), HashMap::new()).unwrap_err();
        assert!(
            error
                .to_string()
                .contains("unknown setting(s) batch_max_siz"),
            "{error}"
        );
        std::fs::write(&path, "bind = \"127.0.0.1:9\"\nbatch_max_size = 8\n").unwrap();
        let settings = Settings::load_from(Some(&path), HashMap::new()).unwrap();
        assert_eq!(settings.batch_max_size, 8);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn unknown_authd_variables_are_listed_but_not_refused() {
        let settings = load(&[
            ("AUTHD_BATCH_MAX_SIZ", "8"),
            ("AUTHD_BATCH_MAX_SIZE", "9"),
            ("AUTHD_CONFIG", "/etc/authd.toml"),
            ("AUTHD_REQUIRE_POSTGRES", "1"),
            ("AUTHD_SERVICE_HOST", "10.0.0.1"),
            ("AUTHD_PORT_8000_TCP", "tcp://10.0.0.1:8000"),
            ("OTHER_THING", "x"),
        ])
        .unwrap();
        assert_eq!(settings.batch_max_size, 9);
        assert_eq!(
            settings.unknown_variables,
            vec!["AUTHD_BATCH_MAX_SIZ".to_string()]
        );
    }

    #[test]
    fn short_secrets() {
        // The old service's 27-byte key starts authd (with a warning).
        let s = load(&[("SECRET_KEY", "34912@445dfsdFBSD23reg@F587")]).unwrap();
        assert_eq!(s.secret_key.len(), 27);
        // Empty still means "generate one".
        assert!(load(&[("SECRET_KEY", "")]).is_ok());
        let refused = load(&[("SECRET_KEY", "too-short-key")]).unwrap_err();
        let message = refused.to_string();
        assert!(message.contains("16 bytes"), "{message}");
        assert!(
            !message.contains("too-short-key"),
            "the key is never echoed"
        );
    }

    #[test]
    fn defaults_are_sqlite_in_data_dir() {
        let s = load(&[]).unwrap();
        assert_eq!(s.bind.to_string(), "0.0.0.0:8000");
        assert_eq!(
            s.database().unwrap(),
            Database::Sqlite {
                path: PathBuf::from("./data/authd.db")
            }
        );
    }

    #[test]
    fn seed_names_and_precedence() {
        let s = load(&[
            ("POSTGRES_DB", "seeddb"),
            ("POSTGRES_PASSWORD", "pw"),
            ("ACCESS_TOKEN_EXPIRE_MINUTES", "30"),
            ("AUTHD_BIND", "127.0.0.1:9000"),
        ])
        .unwrap();
        assert_eq!(s.access_token_ttl_secs, 1800);
        assert_eq!(s.bind.to_string(), "127.0.0.1:9000");
        match s.database().unwrap() {
            Database::Postgres(t) => {
                assert_eq!(
                    t.hosts,
                    [PgHost {
                        host: "localhost".into(),
                        port: 5432
                    }]
                );
                assert_eq!(t.dbname, "seeddb");
                assert_eq!(t.password.expose(), "pw");
            }
            other => panic!("expected postgres, got {other:?}"),
        }
        assert!(!format!("{s:?}").contains("\"pw\""));
        let s = load(&[("DATABASE_URL", "postgres://u:hunter2@db:5433/x")]).unwrap();
        assert!(!format!("{s:?}").contains("hunter2"));
        let s = load(&[("POSTGRES_DB", "x"), ("DATABASE_URL", "sqlite:///tmp/a.db")]).unwrap();
        assert!(matches!(s.database().unwrap(), Database::Sqlite { .. }));
    }

    #[test]
    fn several_postgres_hosts() {
        let s = load(&[
            ("POSTGRES_DB", "authd"),
            ("POSTGRES_HOST", "db1,db2:5433"),
            ("POSTGRES_PORT", "5440"),
        ])
        .unwrap();
        let Database::Postgres(t) = s.database().unwrap() else {
            panic!("expected postgres");
        };
        let shown: Vec<String> = t.hosts.iter().map(ToString::to_string).collect();
        assert_eq!(shown, ["db1:5440", "db2:5433"]);
        // A URL without a host takes POSTGRES_HOST's list.
        let s = load(&[
            ("DATABASE_URL", "postgres://u@/x"),
            ("POSTGRES_HOST", "a,b"),
        ])
        .unwrap();
        let Database::Postgres(t) = s.database().unwrap() else {
            panic!("expected postgres");
        };
        assert_eq!(
            format!("{t:?}"),
            "postgres://u@a:5432,b:5432/x?target_session_attrs=read-write"
        );
        // A malformed list stops the start, naming the problem only.
        let error = load(&[("DATABASE_URL", "postgres://u:hunter2@a:5432,,c/x")])
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("database_url: host 2 of 3 is empty"),
            "{error}"
        );
        assert!(!error.contains("hunter2"), "{error}");
        let error = load(&[("POSTGRES_DB", "x"), ("POSTGRES_HOST", "a,b:x")])
            .unwrap_err()
            .to_string();
        assert!(error.contains("postgres_host: host 2 of 2 (b)"), "{error}");
    }

    #[test]
    fn rejects_nonsense() {
        assert!(load(&[("AUTHD_ACCESS_TOKEN_TTL_SECS", "0")]).is_err());
        assert!(load(&[("AUTHD_SESSION_CACHE_CAPACITY", "0")]).is_err());
        assert!(load(&[("AUTHD_FEED_CATCH_UP_MS", "120001")]).is_err());
        assert!(load(&[("SECRET_KEY", "short")]).is_err());
        assert!(load(&[("DATABASE_URL", "mysql://x")]).is_err());
        assert!(load(&[("AUTHD_TRUSTED_PROXIES", "10.0.0.0/33")]).is_err());
        assert!(load(&[("AUTHD_TRUSTED_PROXIES", "proxy.example")]).is_err());
        assert!(load(&[("AUTHD_ADMIN_BIND", "localhost")]).is_err());
        assert!(load(&[("AUTHD_MAX_HEADER_BYTES", "100")]).is_err());
    }

    #[test]
    fn edge_settings() {
        let s = load(&[]).unwrap();
        assert!(s.trusted_proxy_nets().unwrap().is_empty());
        assert_eq!(s.admin_addr().unwrap(), None);
        let s = load(&[
            ("AUTHD_TRUSTED_PROXIES", "10.0.0.0/8, 192.168.1.7,::1"),
            ("AUTHD_ADMIN_BIND", "127.0.0.1:9000"),
        ])
        .unwrap();
        let nets: Vec<String> = s
            .trusted_proxy_nets()
            .unwrap()
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(nets, ["10.0.0.0/8", "192.168.1.7/32", "::1/128"]);
        assert_eq!(s.admin_addr().unwrap().unwrap().port(), 9000);
        // An empty variable means "nobody is trusted", as the default.
        let s = load(&[("AUTHD_TRUSTED_PROXIES", "")]).unwrap();
        assert!(s.trusted_proxy_nets().unwrap().is_empty());
    }
}
