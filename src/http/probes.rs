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

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{HeaderValue, RETRY_AFTER};
use hyper::{Response, StatusCode};
use serde_json::json;

use super::json::json_response;
use super::routes::AppContext;

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

/// `GET /health/live`: answering at all is the answer.
pub(crate) fn live() -> Response<Full<Bytes>> {
    json_response(StatusCode::OK, &json!({ "status": "alive" }))
}

/// `GET /health/ready`: 200 only when every condition holds; otherwise 503
/// naming each one that does not, with `Retry-After`.
pub(crate) async fn ready(ctx: &AppContext) -> Response<Full<Bytes>> {
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
        return json_response(StatusCode::OK, &json!({ "status": "ready" }));
    }
    let mut response = json_response(
        StatusCode::SERVICE_UNAVAILABLE,
        &json!({ "status": "not_ready", "reasons": reasons }),
    );
    response
        .headers_mut()
        .insert(RETRY_AFTER, HeaderValue::from_static("1"));
    response
}
