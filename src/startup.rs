//! Start-up: builds the whole application from [`Settings`] — store,
//! signing key, hashing pool, actors, listener — and runs it until told to
//! stop. `main.rs` and the integration tests' `spawn_app` both go through
//! [`Application`], so the tests exercise exactly what production runs.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::actors::db_health::HealthDeps;
use crate::actors::supervisor::ActorSystem;
use crate::actors::token::legacy::LegacyTokens;
use crate::actors::token::TokenDeps;
use crate::actors::user::UserDeps;
use crate::actors::{ActorKind, ChildSlot, Services};
use crate::domain::LegacyTokenCodec;
use crate::hashing::{HashError, HashPool};
use crate::http::client_addr::TrustedProxies;
use crate::http::json::BodyLimits;
use crate::http::probes::Lifecycle;
use crate::http::rate_limit::RateLimits;
use crate::http::routes::{AppContext, Surface};
use crate::http::server::{serve, ServerLimits};
use crate::keys::{KeyError, KeyRing};
use crate::sessions::{self, BatchLimits, SessionCache};
use crate::settings::{Settings, SettingsError};
use crate::store::{self, Store, StoreError};

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
    #[error("{0}")]
    Settings(#[from] SettingsError),
}

/// Why the application is asked to stop. On `Terminate` (SIGTERM: an
/// orchestrator or load balancer is involved) readiness turns 503 and
/// requests are still served for `shutdown_delay_ms` before the drain; on
/// `Interrupt` (Ctrl-C at a terminal) the drain starts at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    Terminate,
    Interrupt,
}

/// A plain `()` shutdown future (tests) means SIGTERM.
impl From<()> for StopReason {
    fn from((): ()) -> Self {
        StopReason::Terminate
    }
}

pub struct Application {
    listener: TcpListener,
    local_addr: SocketAddr,
    /// The `admin_bind` listener and its address, when configured.
    admin: Option<(TcpListener, SocketAddr)>,
    system: ActorSystem,
    ctx: Arc<AppContext>,
    limits: ServerLimits,
    /// The shutdown's one clock: `shutdown_delay + shutdown_grace` from the
    /// signal (see [`Application::run_until`]).
    shutdown_delay: Duration,
    shutdown_grace: Duration,
    /// Background tasks: the change-feed follower (PostgreSQL only), the
    /// signing-key reloader (EdDSA only), the metrics upkeep and the
    /// allocator's trimmer.
    background: Vec<tokio::task::JoinHandle<()>>,
}

impl Application {
    pub async fn build(settings: Settings) -> Result<Self, StartupError> {
        warn_unknown_variables(&settings);
        let store = store::connect(&settings).await?;
        // `store::connect` applies the migrations before it returns.
        let lifecycle = Arc::new(Lifecycle::default());
        lifecycle.mark_migrated();
        tracing::info!(
            event = "store_ready",
            store = store.kind(),
            "store connected and migrated"
        );

        let keys = KeyRing::load(&settings, Arc::clone(&store)).await?;
        let legacy_tokens = legacy_tokens(&settings, &store);
        let key_reload =
            keys.spawn_periodic_reload(Duration::from_secs(settings.key_reload_secs.max(1)));
        // Install the metrics recorder before anything records, and drain
        // its histogram samples on a timer of our own (not only on scrape).
        let metrics_upkeep = crate::telemetry::metrics::spawn_upkeep();
        let trimmer = crate::allocator::spawn_trimmer();
        let legacy_progress = crate::cutover::start(Arc::clone(&store)).await?;
        let hasher = HashPool::new(
            settings.argon2_m_kib,
            settings.argon2_t,
            settings.argon2_p,
            settings.hash_threads(),
            settings.hash_queue_limit,
            settings.hash_thread_nice,
        )?;
        let token_deps = token_deps(&settings, &store, keys, legacy_tokens);
        let feed = sessions::feed::start(
            Arc::clone(&store),
            Arc::clone(&token_deps.cache),
            Duration::from_millis(settings.feed_catch_up_ms),
        )
        .await?;
        let system = start_actors(&settings, &store, hasher, token_deps).await?;

        let (listener, local_addr) = bind(settings.bind).await?;
        let admin = match settings.admin_addr()? {
            Some(addr) => Some(bind(addr).await?),
            None => None,
        };
        let ctx = Arc::new(app_context(&settings, system.services.clone(), lifecycle)?);
        Ok(Application {
            listener,
            local_addr,
            admin,
            system,
            ctx,
            background: feed
                .into_iter()
                .chain(key_reload)
                .chain(metrics_upkeep)
                .chain(trimmer)
                .chain(legacy_progress)
                .collect(),
            limits: server_limits(&settings),
            shutdown_delay: Duration::from_millis(settings.shutdown_delay_ms),
            shutdown_grace: Duration::from_millis(settings.shutdown_grace_ms),
        })
    }

    /// The address actually bound (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The admin listener's address, when `admin_bind` is set.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin.as_ref().map(|(_, addr)| *addr)
    }

    pub fn services(&self) -> &Services {
        &self.ctx.services
    }

    /// Serves until `shutdown` completes; then (on SIGTERM) reports not
    /// ready while still serving for `shutdown_delay_ms`, drains in-flight
    /// requests (each of which waits for its own writes to be durable),
    /// stops the actors and waits for the session writers to flush. One
    /// deadline bounds all of it: `shutdown_delay_ms + shutdown_grace_ms`
    /// after the signal (`shutdown_grace_ms` after Ctrl-C); each stage has
    /// what the stages before it left. Fails if the supervisor gave up on
    /// a child.
    pub async fn run_until<R: Into<StopReason>>(
        self,
        shutdown: impl Future<Output = R>,
    ) -> Result<(), StartupError> {
        let Application {
            listener,
            admin,
            mut system,
            ctx,
            limits,
            shutdown_delay,
            shutdown_grace,
            background,
            ..
        } = self;
        // Stop the background tasks however we leave (the feed's listener
        // connection closes when its receiver drops).
        let _background: Vec<AbortOnDrop> = background.into_iter().map(AbortOnDrop).collect();
        let (stop_tx, stop_rx) = watch::channel(None);
        let lifecycle = Arc::clone(&ctx.lifecycle);
        let trigger = start_shutdown(shutdown, lifecycle, shutdown_delay, shutdown_grace, stop_tx);
        let public_surface = Surface::Public {
            metrics: admin.is_none(),
        };
        let public = serve(
            listener,
            public_surface,
            Arc::clone(&ctx),
            limits,
            deadline(stop_rx.clone()),
        );
        let admin = async {
            if let Some((admin, _)) = admin {
                serve(
                    admin,
                    Surface::Admin,
                    Arc::clone(&ctx),
                    limits,
                    deadline(stop_rx),
                )
                .await;
            }
        };
        tokio::select! {
            ((), (), deadline) = async { tokio::join!(public, admin, trigger) } => {
                system.shutdown(deadline).await;
                tracing::info!(event = "stopped", "authd stopped");
                Ok(())
            }
            () = system.gave_up() => Err(StartupError::SupervisorGaveUp),
        }
    }
}

/// Warns once per `AUTHD_` variable that names no setting: start-up goes on,
/// but a misspelt setting would otherwise be silently left at its default.
fn warn_unknown_variables(settings: &Settings) {
    for variable in &settings.unknown_variables {
        tracing::warn!(
            event = "unknown_setting",
            variable = %variable,
            "this AUTHD_ variable names no setting and is ignored (misspelt?); \
             every setting is listed in config/default.toml"
        );
    }
}

/// The verifier of the old service's tokens, when there is one to verify.
/// They are HS256 over its SECRET_KEY: without that key configured (or
/// without a legacy store) there is nothing to verify them with.
fn legacy_tokens(settings: &Settings, store: &Arc<dyn Store>) -> Option<Arc<LegacyTokens>> {
    (store.legacy().is_some() && !settings.secret_key.is_empty()).then(|| {
        Arc::new(LegacyTokens {
            codec: LegacyTokenCodec::new(settings.secret_key.expose().as_bytes()),
            store: Arc::clone(store),
            session_ttl_ms: settings.session_ttl_secs.saturating_mul(1000),
            refresh_grace_ms: settings.refresh_grace_ms,
        })
    })
}

/// What the token actor needs: the store, the signing keys, the session
/// cache (shared with the change feed) and the batching limits.
fn token_deps(
    settings: &Settings,
    store: &Arc<dyn Store>,
    keys: Arc<KeyRing>,
    legacy: Option<Arc<LegacyTokens>>,
) -> Arc<TokenDeps> {
    Arc::new(TokenDeps {
        store: Arc::clone(store),
        keys,
        cache: Arc::new(SessionCache::new(settings.session_cache_capacity)),
        slot: ChildSlot::new(ActorKind::Token, settings.request_timeout()),
        session_ttl_ms: settings.session_ttl_secs.saturating_mul(1000),
        refresh_grace_ms: settings.refresh_grace_ms,
        batch: BatchLimits {
            max_batch: settings.batch_max_size,
            max_wait: Duration::from_micros(settings.batch_max_wait_us),
            concurrency: settings.batch_concurrency,
        },
        prune_interval: Duration::from_secs(settings.prune_interval_secs.max(1)),
        writer_tasks: std::sync::Mutex::new(Vec::new()),
        legacy,
    })
}

/// The supervisor and its children (user, token, database health).
async fn start_actors(
    settings: &Settings,
    store: &Arc<dyn Store>,
    hasher: Arc<HashPool>,
    token_deps: Arc<TokenDeps>,
) -> Result<ActorSystem, StartupError> {
    let system = ActorSystem::start(
        token_deps,
        |tokens| UserDeps {
            store: Arc::clone(store),
            hasher: Arc::clone(&hasher),
            tokens,
            failure_floor: settings.signin_failure_floor(),
        },
        HealthDeps {
            store: Arc::clone(store),
            interval: Duration::from_millis(settings.health_interval_ms),
        },
        settings.request_timeout(),
        settings.restart_limit,
        Duration::from_secs(settings.restart_window_secs),
    )
    .await?;
    Ok(system)
}

/// What every request handler shares: the actors' handles, the audit log,
/// the body, proxy and rate limits, and the lifecycle the probes report.
fn app_context(
    settings: &Settings,
    services: Services,
    lifecycle: Arc<Lifecycle>,
) -> Result<AppContext, StartupError> {
    Ok(AppContext {
        auditor: crate::audit::Auditor {
            log_emails: settings.audit_log_emails,
        },
        services,
        body: BodyLimits {
            max_bytes: settings.max_body_bytes,
            read_timeout: Duration::from_millis(settings.body_read_timeout_ms),
        },
        max_header_bytes: settings.max_header_bytes,
        proxies: TrustedProxies::new(settings.trusted_proxy_nets()?),
        lifecycle,
        rate_limits: RateLimits::new(
            settings.rate_limit_enabled,
            settings.rate_limit_per_ip_per_minute,
            settings.rate_limit_per_account_per_minute,
            settings.rate_limit_max_keys,
        ),
    })
}

/// The connection-level limits the listeners enforce.
fn server_limits(settings: &Settings) -> ServerLimits {
    ServerLimits {
        header_read_timeout: Duration::from_millis(settings.header_read_timeout_ms),
        max_connections: settings.max_connections,
        max_header_bytes: settings.max_header_bytes,
        http2_max_concurrent_streams: settings.http2_max_concurrent_streams,
        http2_max_pending_reset_streams: settings.http2_max_pending_reset_streams,
    }
}

/// Waits for `shutdown`, then starts the shutdown's one clock: the deadline
/// is `delay + grace` away on SIGTERM, `grace` on Ctrl-C. On SIGTERM
/// readiness turns 503 and requests are still served for `delay`; then the
/// listeners are given the deadline and drain. Returns the deadline, which
/// the actors' drain and the writers' flush keep too.
async fn start_shutdown<R: Into<StopReason>>(
    shutdown: impl Future<Output = R>,
    lifecycle: Arc<Lifecycle>,
    delay: Duration,
    grace: Duration,
    stop: watch::Sender<Option<Instant>>,
) -> Instant {
    let reason = shutdown.await.into();
    lifecycle.begin_shutdown();
    let delay = match reason {
        StopReason::Terminate => delay,
        StopReason::Interrupt => Duration::ZERO,
    };
    let deadline = Instant::now() + delay + grace;
    tracing::info!(
        event = "shutdown_started",
        within_ms = (delay + grace).as_millis() as u64,
        "stopping; everything ends within shutdown_delay_ms + shutdown_grace_ms"
    );
    if !delay.is_zero() {
        tracing::info!(
            event = "not_ready",
            delay_ms = delay.as_millis() as u64,
            "readiness now 503; still serving before the drain"
        );
        tokio::time::sleep(delay).await;
    }
    let _ = stop.send(Some(deadline));
    deadline
}

/// The shutdown's deadline, once the drain is to start.
async fn deadline(mut stop: watch::Receiver<Option<Instant>>) -> Instant {
    match stop.wait_for(Option::is_some).await {
        Ok(deadline) => deadline.unwrap_or_else(Instant::now),
        // The sender always sends before it goes; were it gone, drain now.
        Err(_) => Instant::now(),
    }
}

async fn bind(addr: SocketAddr) -> Result<(TcpListener, SocketAddr), StartupError> {
    let bind_error = |source| StartupError::Bind { addr, source };
    let listener = TcpListener::bind(addr).await.map_err(bind_error)?;
    let local = listener.local_addr().map_err(bind_error)?;
    Ok((listener, local))
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Completes on SIGTERM or Ctrl-C, saying which.
pub async fn shutdown_signal() -> StopReason {
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
    let reason = tokio::select! {
        () = ctrl_c => StopReason::Interrupt,
        () = terminate => StopReason::Terminate,
    };
    tracing::info!(event = "shutdown_requested", signal = ?reason, "shutdown signal received");
    reason
}
