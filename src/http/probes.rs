//! The probes a load balancer or Kubernetes asks: `GET /health/live` (the
//! process serves HTTP; no database involved, so a database outage never
//! gets a healthy process restarted) and `GET /health/ready` (send me
//! traffic: the database answers, every actor is up, the migrations are
//! applied, and no shutdown has begun).
//!
//! [`Lifecycle`] carries the one bit of state the server owns: once a
//! SIGTERM arrives readiness answers 503 while requests are still served
//! for `shutdown_delay_ms`, so the balancer stops sending before the drain.

use std::sync::atomic::{AtomicBool, Ordering};

use std::net::IpAddr;

use hyper::body::Incoming;
use hyper::header::{HeaderValue, RETRY_AFTER};
use hyper::{Request, StatusCode};
use serde::Serialize;
use utoipa::ToSchema;

use super::json::json_response;
use super::routes::{AppContext, Reply};

/// Where the process is in its life, as far as readiness is concerned.
#[derive(Debug, Default)]
pub(crate) struct Lifecycle {
    /// Set once start-up applied the migrations (before anything listens).
    migrated: AtomicBool,
    /// Set when a shutdown begins; never cleared.
    stopping: AtomicBool,
}

impl Lifecycle {
    pub(crate) fn mark_migrated(&self) {
        self.migrated.store(true, Ordering::Release);
    }

    /// From now on readiness answers 503.
    pub(crate) fn begin_shutdown(&self) {
        self.stopping.store(true, Ordering::Release);
    }

    pub(crate) fn is_stopping(&self) -> bool {
        self.stopping.load(Ordering::Acquire)
    }

    fn is_migrated(&self) -> bool {
        self.migrated.load(Ordering::Acquire)
    }
}

/// The answer of `GET /health/live`.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Liveness {
    #[schema(inline)]
    status: Alive,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
enum Alive {
    Alive,
}

/// Liveness probe
///
/// Answers whenever the process serves HTTP; never asks the database (a
/// restart would not bring it back). Also served on `admin_bind` when set.
#[utoipa::path(
    get,
    path = "/health/live",
    operation_id = "healthLive",
    tag = "operations",
    responses((status = 200, description = "Alive.", body = Liveness))
)]
pub(crate) async fn live(_: Request<Incoming>, _: IpAddr, _: &AppContext) -> Reply {
    Ok(json_response(
        StatusCode::OK,
        &Liveness {
            status: Alive::Alive,
        },
    ))
}

/// The answer of `GET /health/ready`.
#[derive(Debug, Serialize, ToSchema)]
// Fields in alphabetical order: the keys keep the order authd has always
// answered them in.
pub(crate) struct Readiness {
    /// Why not ready: `shutting_down`, `migrations_pending`,
    /// `<Actor>_down`, `database_unreachable`, `database_unknown`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    #[schema(required = false)]
    reasons: Vec<String>,
    #[schema(inline)]
    status: Ready,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
enum Ready {
    Ready,
    NotReady,
}

/// Readiness probe
///
/// 200 when the database answers, every actor is up, the migrations are
/// applied and no shutdown has begun; on SIGTERM it answers 503 for
/// `shutdown_delay_ms` while requests are still served. Also served on
/// `admin_bind` when set.
#[utoipa::path(
    get,
    path = "/health/ready",
    operation_id = "healthReady",
    tag = "operations",
    responses(
        (status = 200, description = "Ready for traffic.", body = Readiness),
        (status = 503, description = "Not ready; `reasons` says why.", body = Readiness,
            headers(("Retry-After" = u32, description = "Seconds to wait before asking again."))),
    )
)]
pub(crate) async fn ready(_: Request<Incoming>, _: IpAddr, ctx: &AppContext) -> Reply {
    let mut reasons: Vec<String> = Vec::new();
    if ctx.lifecycle.is_stopping() {
        reasons.push("shutting_down".into());
    }
    if !ctx.lifecycle.is_migrated() {
        reasons.push("migrations_pending".into());
    }
    reasons.extend(
        ctx.services
            .children
            .down()
            .into_iter()
            .map(|kind| format!("{}_down", kind.name())),
    );
    // Asking DbHealthActor also proves it answers; it never waits on the
    // database itself (it reports its last ping).
    match ctx.services.health.status().await {
        Ok(report) if report.database_ok => {}
        Ok(_) => reasons.push("database_unreachable".into()),
        Err(_) => reasons.push("database_unknown".into()),
    }
    if reasons.is_empty() {
        let body = Readiness {
            status: Ready::Ready,
            reasons,
        };
        return Ok(json_response(StatusCode::OK, &body));
    }
    let body = Readiness {
        status: Ready::NotReady,
        reasons,
    };
    let mut response = json_response(StatusCode::SERVICE_UNAVAILABLE, &body);
    response
        .headers_mut()
        .insert(RETRY_AFTER, HeaderValue::from_static("1"));
    Ok(response)
}
