//! Start-up: builds the whole application from [`Settings`] — store,
//! signing key, hashing pool, actors, listener — and runs it until told to
//! stop. `main.rs` and the integration tests' `spawn_app` both go through
//! [`Application`], so the tests exercise exactly what production runs.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;

use crate::actors::db_health::HealthDeps;
use crate::actors::supervisor::ActorSystem;
use crate::actors::token::legacy::LegacyTokens;
use crate::actors::token::TokenDeps;
use crate::actors::user::UserDeps;
use crate::actors::{ActorKind, ChildSlot, Services};
use crate::domain::LegacyTokenCodec;
use crate::hashing::{HashError, HashPool};
use crate::http::rate_limit::RateLimits;
use crate::http::routes::AppContext;
use crate::http::server::{serve, ServerLimits};
use crate::keys::{KeyError, KeyRing};
use crate::sessions::{self, BatchLimits, SessionCache};
use crate::settings::Settings;
use crate::store::{self, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error("store: {0}")]
    Store(#[from] StoreError),
    #[error("signing keys: {0}")]
    Keys(#[from] KeyError),
    #[error("password hashing: {0}")]
    Hashing(#[from] HashError),
    #[error("actors: {0}")]
    Actors(#[from] ractor::SpawnErr),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("the supervisor gave up on a failing actor")]
    SupervisorGaveUp,
}

pub struct Application {
    listener: TcpListener,
    local_addr: SocketAddr,
    system: ActorSystem,
    ctx: Arc<AppContext>,
    limits: ServerLimits,
    /// Background tasks: the change-feed follower (PostgreSQL only), the
    /// signing-key reloader (EdDSA only) and the metrics upkeep.
    background: Vec<tokio::task::JoinHandle<()>>,
}

impl Application {
    pub async fn build(settings: Settings) -> Result<Self, StartupError> {
        let store = store::connect(&settings).await?;
        tracing::info!(
            event = "store_ready",
            store = store.kind(),
            "store connected and migrated"
        );

        let keys = KeyRing::load(&settings, Arc::clone(&store)).await?;
        // The old service's tokens are HS256 over its SECRET_KEY: without
        // that key configured there is nothing to verify them with.
        let legacy_tokens =
            (store.legacy().is_some() && !settings.secret_key.is_empty()).then(|| {
                Arc::new(LegacyTokens {
                    codec: LegacyTokenCodec::new(settings.secret_key.expose().as_bytes()),
                    store: Arc::clone(&store),
                    session_ttl_ms: settings.session_ttl_secs.saturating_mul(1000),
                    refresh_grace_ms: settings.refresh_grace_ms,
                })
            });
        let key_reload =
            keys.spawn_periodic_reload(Duration::from_secs(settings.key_reload_secs.max(1)));
        // Install the metrics recorder before anything records, and drain
        // its histogram samples on a timer of our own (not only on scrape).
        let metrics_upkeep = crate::telemetry::metrics::spawn_upkeep();
        let legacy_progress = crate::cutover::start(Arc::clone(&store)).await?;
        let hasher = HashPool::new(
            settings.argon2_m_kib,
            settings.argon2_t,
            settings.argon2_p,
            settings.hash_threads(),
            settings.hash_queue_limit,
            settings.hash_thread_nice,
        )?;

        let request_timeout = settings.request_timeout();
        let token_deps = Arc::new(TokenDeps {
            store: Arc::clone(&store),
            keys,
            cache: Arc::new(SessionCache::new()),
            slot: ChildSlot::new(ActorKind::Token, request_timeout),
            session_ttl_ms: settings.session_ttl_secs.saturating_mul(1000),
            refresh_grace_ms: settings.refresh_grace_ms,
            batch: BatchLimits {
                max_batch: settings.batch_max_size,
                max_wait: Duration::from_micros(settings.batch_max_wait_us),
                concurrency: settings.batch_concurrency,
            },
            prune_interval: Duration::from_secs(settings.prune_interval_secs.max(1)),
            writer_tasks: std::sync::Mutex::new(Vec::new()),
            legacy: legacy_tokens,
        });
        let feed = sessions::feed::spawn(Arc::clone(&store), Arc::clone(&token_deps.cache));
        let system = ActorSystem::start(
            token_deps,
            |tokens| UserDeps {
                store: Arc::clone(&store),
                hasher: Arc::clone(&hasher),
                tokens,
                failure_floor: settings.signin_failure_floor(),
            },
            HealthDeps {
                store: Arc::clone(&store),
                interval: Duration::from_millis(settings.health_interval_ms),
            },
            request_timeout,
            settings.restart_limit,
            Duration::from_secs(settings.restart_window_secs),
        )
        .await?;

        let listener =
            TcpListener::bind(settings.bind)
                .await
                .map_err(|source| StartupError::Bind {
                    addr: settings.bind,
                    source,
                })?;
        let local_addr = listener.local_addr().map_err(|source| StartupError::Bind {
            addr: settings.bind,
            source,
        })?;
        let ctx = Arc::new(AppContext {
            services: system.services.clone(),
            max_body_bytes: settings.max_body_bytes,
            rate_limits: RateLimits::new(
                settings.rate_limit_enabled,
                settings.rate_limit_per_ip_per_minute,
                settings.rate_limit_per_account_per_minute,
                settings.rate_limit_max_keys,
            ),
        });
        Ok(Application {
            listener,
            local_addr,
            system,
            ctx,
            background: feed
                .into_iter()
                .chain(key_reload)
                .chain(metrics_upkeep)
                .chain(legacy_progress)
                .collect(),
            limits: ServerLimits {
                header_read_timeout: Duration::from_millis(settings.header_read_timeout_ms),
                max_connections: settings.max_connections,
                shutdown_grace: Duration::from_millis(settings.shutdown_grace_ms),
            },
        })
    }

    /// The address actually bound (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    pub fn services(&self) -> &Services {
        &self.ctx.services
    }

    /// Serves until `shutdown` completes, then drains in-flight requests
    /// (each of which waits for its own writes to be durable) and stops the
    /// actors. Fails if the supervisor gave up on a child.
    pub async fn run_until(self, shutdown: impl Future<Output = ()>) -> Result<(), StartupError> {
        let Application {
            listener,
            mut system,
            ctx,
            limits,
            background,
            ..
        } = self;
        // Stop the background tasks however we leave (the feed's listener
        // connection closes when its receiver drops).
        let _background: Vec<AbortOnDrop> = background.into_iter().map(AbortOnDrop).collect();
        let grace = limits.shutdown_grace;
        tokio::select! {
            () = serve(listener, ctx, limits, shutdown) => {
                system.shutdown(grace).await;
                tracing::info!(event = "stopped", "authd stopped");
                Ok(())
            }
            () = system.gave_up() => Err(StartupError::SupervisorGaveUp),
        }
    }
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Completes on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
    tracing::info!(event = "shutdown_requested", "shutdown signal received");
}
