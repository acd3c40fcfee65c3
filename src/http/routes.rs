//! The route table and one handler per endpoint. Each handler parses the
//! request into domain types, makes one call to an actor handle, and maps
//! the answer to JSON; failures become [`ApiError`]s.
//!
//! | route | handler | actor call |
//! |---|---|---|
//! | `POST /signup`, `POST /auth/signup` | [`sign_up`] | `UserHandle::sign_up` |
//! | `POST /signin`, `POST /auth/signin` | [`sign_in`] | `UserHandle::sign_in` |
//! | `POST /refresh`, `PUT /auth/refresh` | [`refresh`] | `TokenHandle::refresh` |
//! | `POST /revoke`, `DELETE /auth/revoke` | [`revoke`] | `TokenHandle::revoke` |
//! | `GET /authorize` (Bearer header) | [`authorize`] | `TokenHandle::authorize` |
//! | `GET /auth/authorize-token` (JSON body or Bearer) | [`authorize_token`] | `TokenHandle::authorize` |
//! | `GET /health`, `GET /auth/health` | [`health`] | `HealthHandle::status` |
//! | `GET /.well-known/jwks.json` | [`jwks`] | `TokenHandle::jwks` (no actor call) |
//! | `GET /metrics` | [`metrics`] | none: Prometheus text from the recorder |
//! | `GET /openapi.json` | [`openapi`] | none: the static OpenAPI document |

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, AUTHORIZATION, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};
use serde_json::json;

use super::json::{
    json_response, read_json, CredentialsBody, RevokeBody, TokenBody, TokenResponse,
};
use super::ApiError;
use std::net::IpAddr;
use std::sync::Arc;

use super::rate_limit::RateLimits;
use crate::actors::Services;
use crate::domain::{Email, Password, SignInEmail};
use crate::telemetry::metrics as m;

/// What every handler can reach.
pub struct AppContext {
    pub services: Services,
    pub max_body_bytes: usize,
    /// `None` when rate limiting is off.
    pub rate_limits: Option<Arc<RateLimits>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    SignUp,
    SignIn,
    Refresh,
    Revoke,
    Authorize,
    AuthorizeToken,
    Health,
    Jwks,
    Metrics,
    OpenApi,
}

impl Endpoint {
    /// A short, fixed label for logs and metrics.
    pub fn label(self) -> &'static str {
        match self {
            Endpoint::SignUp => "signup",
            Endpoint::SignIn => "signin",
            Endpoint::Refresh => "refresh",
            Endpoint::Revoke => "revoke",
            Endpoint::Authorize => "authorize",
            Endpoint::AuthorizeToken => "authorize_token",
            Endpoint::Health => "health",
            Endpoint::Jwks => "jwks",
            Endpoint::Metrics => "metrics",
            Endpoint::OpenApi => "openapi",
        }
    }
}

/// Finds the endpoint for a method and path: 404 for an unknown path, 405
/// for a known path with the wrong method.
pub fn route(method: &Method, path: &str) -> Result<Endpoint, ApiError> {
    let (allowed, endpoint) = match path {
        "/signup" | "/auth/signup" => ("POST", Endpoint::SignUp),
        "/signin" | "/auth/signin" => ("POST", Endpoint::SignIn),
        "/refresh" => ("POST", Endpoint::Refresh),
        "/auth/refresh" => ("PUT", Endpoint::Refresh),
        "/revoke" => ("POST", Endpoint::Revoke),
        "/auth/revoke" => ("DELETE", Endpoint::Revoke),
        "/authorize" => ("GET", Endpoint::Authorize),
        "/auth/authorize-token" => ("GET", Endpoint::AuthorizeToken),
        "/health" | "/auth/health" => ("GET", Endpoint::Health),
        "/.well-known/jwks.json" => ("GET", Endpoint::Jwks),
        "/metrics" => ("GET", Endpoint::Metrics),
        "/openapi.json" => ("GET", Endpoint::OpenApi),
        _ => return Err(ApiError::NotFound),
    };
    if method.as_str() == allowed {
        Ok(endpoint)
    } else {
        Err(ApiError::MethodNotAllowed { allow: allowed })
    }
}

pub async fn dispatch(
    endpoint: Endpoint,
    request: Request<Incoming>,
    peer: IpAddr,
    ctx: &AppContext,
) -> Result<Response<Full<Bytes>>, ApiError> {
    match endpoint {
        Endpoint::SignUp => sign_up(request, peer, ctx).await,
        Endpoint::SignIn => sign_in(request, peer, ctx).await,
        Endpoint::Refresh => refresh(request, ctx).await,
        Endpoint::Revoke => revoke(request, ctx).await,
        Endpoint::Authorize => authorize(request, ctx).await,
        Endpoint::AuthorizeToken => authorize_token(request, ctx).await,
        Endpoint::Health => health(ctx).await,
        Endpoint::Jwks => Ok(jwks(ctx)),
        Endpoint::Metrics => Ok(metrics()),
        Endpoint::OpenApi => Ok(openapi()),
    }
}

/// Counts an attempt on `account` (a case-folded e-mail) against the rate
/// limits of the client address and the account.
fn rate_limit(ctx: &AppContext, peer: IpAddr, account: &str) -> Result<(), ApiError> {
    if let Some(limits) = &ctx.rate_limits {
        limits.check(peer, account).map_err(|limited| {
            ::metrics::counter!(m::RATE_LIMITED).increment(1);
            ApiError::RateLimited {
                // Round up: "retry in 0 s" would invite an immediate retry.
                retry_after_secs: limited.retry_after.as_secs()
                    + u64::from(limited.retry_after.subsec_nanos() > 0),
            }
        })?;
    }
    Ok(())
}

/// Sign-up applies authd's rules to the e-mail and the password.
pub async fn sign_up(
    request: Request<Incoming>,
    peer: IpAddr,
    ctx: &AppContext,
) -> Result<Response<Full<Bytes>>, ApiError> {
    let body: CredentialsBody = read_json(request, ctx.max_body_bytes).await?;
    let email = Email::parse(&body.email)?;
    let password = Password::parse(body.password)?;
    rate_limit(ctx, peer, email.as_str())?;
    let issued = ctx.services.users.sign_up(email, password).await?;
    Ok(json_response(
        StatusCode::CREATED,
        &TokenResponse::from(issued),
    ))
}

pub async fn sign_in(
    request: Request<Incoming>,
    peer: IpAddr,
    ctx: &AppContext,
) -> Result<Response<Full<Bytes>>, ApiError> {
    // Sign-in does not: an account adopted from the old service may have a
    // password or an e-mail that sign-up would refuse today.
    let body: CredentialsBody = read_json(request, ctx.max_body_bytes).await?;
    let email = SignInEmail::parse(&body.email)?;
    let password = Password::parse_presented(body.password)?;
    rate_limit(ctx, peer, email.folded())?;
    let issued = ctx.services.users.sign_in(email, password).await?;
    Ok(json_response(StatusCode::OK, &TokenResponse::from(issued)))
}

pub async fn refresh(
    request: Request<Incoming>,
    ctx: &AppContext,
) -> Result<Response<Full<Bytes>>, ApiError> {
    let body: TokenBody = read_json(request, ctx.max_body_bytes).await?;
    let issued = ctx.services.tokens.refresh(&body.access_token).await?;
    Ok(json_response(StatusCode::OK, &TokenResponse::from(issued)))
}

pub async fn revoke(
    request: Request<Incoming>,
    ctx: &AppContext,
) -> Result<Response<Full<Bytes>>, ApiError> {
    let body: RevokeBody = read_json(request, ctx.max_body_bytes).await?;
    ctx.services
        .tokens
        .revoke(&body.access_token, body.scope.into())
        .await?;
    Ok(json_response(
        StatusCode::OK,
        &json!({ "message": "Token revoked successfully." }),
    ))
}

pub async fn authorize(
    request: Request<Incoming>,
    ctx: &AppContext,
) -> Result<Response<Full<Bytes>>, ApiError> {
    let token = bearer_token(&request)?.ok_or(ApiError::MissingToken)?;
    let who = ctx.services.tokens.authorize(&token).await?;
    Ok(json_response(
        StatusCode::OK,
        &json!({
            "user_id": who.user_id,
            "user_int_id": who.user_int_id,
            "session_id": who.session_id,
            "expires_at": who.expires_at,
        }),
    ))
}

/// The seed's `GET /auth/authorize-token`, which read the token from a JSON
/// body; a Bearer header is accepted too.
pub async fn authorize_token(
    request: Request<Incoming>,
    ctx: &AppContext,
) -> Result<Response<Full<Bytes>>, ApiError> {
    let token = match bearer_token(&request)? {
        Some(token) => token,
        None => {
            let body: TokenBody = read_json(request, ctx.max_body_bytes).await?;
            body.access_token
        }
    };
    // The old service answered `{"user_id": <int>}`; its clients and the
    // services downstream key their data by that integer.
    let who = ctx.services.tokens.authorize(&token).await?;
    Ok(json_response(
        StatusCode::OK,
        &json!({
            "user_id": who.user_int_id,
            "user_uuid": who.user_id,
            "session_id": who.session_id,
            "expires_at": who.expires_at,
        }),
    ))
}

pub async fn health(ctx: &AppContext) -> Result<Response<Full<Bytes>>, ApiError> {
    let (status, body) = match ctx.services.health.status().await {
        Ok(report) if report.database_ok => (
            StatusCode::OK,
            json!({ "status": "healthy", "database": "ok" }),
        ),
        Ok(_) => (
            StatusCode::SERVICE_UNAVAILABLE,
            json!({ "status": "unhealthy", "database": "unreachable" }),
        ),
        Err(_) => (
            StatusCode::SERVICE_UNAVAILABLE,
            json!({ "status": "unhealthy", "database": "unknown" }),
        ),
    };
    Ok(json_response(status, &body))
}

/// The public signing keys (EdDSA), for verifiers outside authd. Empty
/// with HS256: a shared secret is never published.
pub fn jwks(ctx: &AppContext) -> Response<Full<Bytes>> {
    json_response(StatusCode::OK, &ctx.services.tokens.jwks())
}

/// The OpenAPI 3 description of this API (`src/http/openapi.json`, checked
/// against the live server in CI by schemathesis).
pub fn openapi() -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from_static(
        include_str!("openapi.json").as_bytes(),
    )));
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

/// Prometheus text exposition. Every gauge is published by its owner (the
/// session cache, the hashing pool, the store, `DbHealthActor`), so this
/// only renders.
pub fn metrics() -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(m::render())));
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    response
}

/// The token of an `Authorization: Bearer <token>` header, if there is one.
fn bearer_token(request: &Request<Incoming>) -> Result<Option<String>, ApiError> {
    let Some(value) = request.headers().get(AUTHORIZATION) else {
        return Ok(None);
    };
    let value = value
        .to_str()
        .map_err(|_| ApiError::Token(crate::actors::token::TokenRefusal::Invalid))?;
    match value.split_once(' ') {
        Some((scheme, token))
            if scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty() =>
        {
            Ok(Some(token.trim().to_owned()))
        }
        _ => Err(ApiError::MissingToken),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routing() {
        assert_eq!(route(&Method::POST, "/signup").unwrap(), Endpoint::SignUp);
        assert_eq!(
            route(&Method::PUT, "/auth/refresh").unwrap(),
            Endpoint::Refresh
        );
        assert_eq!(
            route(&Method::DELETE, "/auth/revoke").unwrap(),
            Endpoint::Revoke
        );
        assert!(matches!(
            route(&Method::GET, "/signup"),
            Err(ApiError::MethodNotAllowed { allow: "POST" })
        ));
        assert!(matches!(
            route(&Method::GET, "/nope"),
            Err(ApiError::NotFound)
        ));
    }
}
