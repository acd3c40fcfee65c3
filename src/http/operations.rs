//! The operators' endpoints besides the probes: the service's health, the
//! public signing keys, the Prometheus metrics and the OpenAPI document.
//!
//! | route | handler | actor call |
//! |---|---|---|
//! | `GET /health`, `GET /auth/health` | [`health`] | `HealthHandle::status` |
//! | `GET /.well-known/jwks.json` | [`jwks`] | `TokenHandle::jwks` (no actor call) |
//! | `GET /metrics` | [`metrics`] | none: Prometheus text from the recorder |
//! | `GET /openapi.json` | [`openapi`] | none: the generated document |

use std::net::IpAddr;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::{Request, Response, StatusCode};
use serde::Serialize;
use utoipa::ToSchema;

use super::json::json_response;
use super::openapi::responses as r;
use super::routes::{AppContext, Reply};
use crate::telemetry::metrics as m;

/// The answer of `GET /health`.
#[derive(Debug, Serialize, ToSchema)]
// Fields in alphabetical order: the keys keep the order authd has always
// answered them in.
pub(crate) struct Health {
    #[schema(inline)]
    database: DatabaseStatus,
    #[schema(inline)]
    status: HealthStatus,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
enum HealthStatus {
    Healthy,
    Unhealthy,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
enum DatabaseStatus {
    Ok,
    Unreachable,
    Unknown,
}

/// Service health
///
/// Whether the database answers, as last seen by the periodic health
/// check.
#[utoipa::path(
    get,
    path = "/health",
    operation_id = "health",
    tag = "operations",
    responses(
        (status = 200, description = "Healthy.", body = Health),
        (status = 503, description = "Unhealthy: the database is unreachable, or the health check itself is not answering.",
            body = Health),
    )
)]
pub(crate) async fn health(_: Request<Incoming>, _: IpAddr, ctx: &AppContext) -> Reply {
    let (status, body) = match ctx.services.health.status().await {
        Ok(report) if report.database_ok => (
            StatusCode::OK,
            Health {
                status: HealthStatus::Healthy,
                database: DatabaseStatus::Ok,
            },
        ),
        Ok(_) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Health {
                status: HealthStatus::Unhealthy,
                database: DatabaseStatus::Unreachable,
            },
        ),
        Err(_) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Health {
                status: HealthStatus::Unhealthy,
                database: DatabaseStatus::Unknown,
            },
        ),
    };
    Ok(json_response(status, &body))
}

/// Public signing keys (JWK Set)
///
/// The Ed25519 public keys that verify authd's tokens (EdDSA). Empty with
/// HS256: a shared secret is never published.
#[utoipa::path(
    get,
    path = "/.well-known/jwks.json",
    operation_id = "jwks",
    tag = "operations",
    responses((status = 200, description = "The JWK Set.", body = r::JwkSet))
)]
pub(crate) async fn jwks(_: Request<Incoming>, _: IpAddr, ctx: &AppContext) -> Reply {
    Ok(json_response(StatusCode::OK, &ctx.services.tokens.jwks()))
}

/// Prometheus metrics
///
/// Prometheus text exposition format 0.0.4. Served on `admin_bind` instead
/// of the public port when that is set (the public port then answers 404).
// Every gauge is published by its owner (the session cache, the hashing
// pool, the store, `DbHealthActor`), so this only renders.
#[utoipa::path(
    get,
    path = "/metrics",
    operation_id = "metrics",
    tag = "operations",
    responses((status = 200, description = "The metrics.", body = String, content_type = "text/plain"))
)]
pub(crate) async fn metrics(_: Request<Incoming>, _: IpAddr, _: &AppContext) -> Reply {
    let mut response = Response::new(Full::new(Bytes::from(m::render())));
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    Ok(response)
}

/// This OpenAPI document
///
/// The OpenAPI 3.1 description of the API, generated from the handlers
/// and the types they read and write.
#[utoipa::path(
    get,
    path = "/openapi.json",
    operation_id = "openapi",
    tag = "operations",
    responses((status = 200, description = "The document.", body = Object))
)]
pub(crate) async fn openapi(_: Request<Incoming>, _: IpAddr, _: &AppContext) -> Reply {
    let mut response = Response::new(Full::new(super::openapi::document()));
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    Ok(response)
}
