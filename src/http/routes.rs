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
//! | `GET /health/live`, `GET /health/ready` | [`probes`](super::probes) | none / `HealthHandle::status` |
//! | `GET /.well-known/jwks.json` | [`jwks`] | `TokenHandle::jwks` (no actor call) |
//! | `GET /metrics` | [`metrics`] | none: Prometheus text from the recorder |
//! | `GET /openapi.json` | [`openapi`] | none: the static OpenAPI document |
//! | `GET /sessions`, `DELETE /sessions/{id}`, `POST /password`, `DELETE /account` | [`accounts`](super::accounts) | see there |
//!
//! Sign-up, sign-in, revocations and reuse detection are audit events
//! ([`crate::audit`]), logged here inside the request's span.
//!
//! Which of these a listener serves is its [`Surface`]: with `admin_bind`
//! set, `/metrics` moves from the public listener to the admin one.

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, AUTHORIZATION, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};
use serde_json::json;

use super::accounts;
use super::client_addr::TrustedProxies;
use super::json::{
    json_response, read_json, read_optional_json, BodyLimits, CredentialsBody, RevokeBody,
    TokenBody, TokenResponse,
};
use super::probes::{self, Lifecycle};
use super::ApiError;
use std::net::IpAddr;
use std::sync::Arc;

use super::rate_limit::RateLimits;
use crate::actors::token::{TokenFailure, TokenRefusal};
use crate::actors::user::UserFailure;
use crate::actors::Services;
use crate::audit::{Action, AuditEvent, Auditor, Outcome};
use crate::domain::{Email, IssuedToken, Password, SessionOrigin, SignInEmail};
use crate::telemetry::metrics as m;
use hyper::header::USER_AGENT;

/// What every handler can reach.
pub(crate) struct AppContext {
    pub services: Services,
    pub body: BodyLimits,
    /// Request line plus headers, in bytes; more gets 431.
    pub max_header_bytes: usize,
    /// Whose `Forwarded`/`X-Forwarded-For` name the client.
    pub proxies: TrustedProxies,
    pub lifecycle: Arc<Lifecycle>,
    /// `None` when rate limiting is off.
    pub rate_limits: Option<Arc<RateLimits>>,
    /// Audit events (whether they may name e-mails).
    pub auditor: Auditor,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Endpoint {
    SignUp,
    SignIn,
    Refresh,
    Revoke,
    Authorize,
    AuthorizeToken,
    Health,
    HealthLive,
    HealthReady,
    Jwks,
    Metrics,
    OpenApi,
    Sessions,
    SessionDelete,
    Password,
    Account,
}

impl Endpoint {
    /// A short, fixed label for logs and metrics.
    pub(crate) fn label(self) -> &'static str {
        match self {
            Endpoint::SignUp => "signup",
            Endpoint::SignIn => "signin",
            Endpoint::Refresh => "refresh",
            Endpoint::Revoke => "revoke",
            Endpoint::Authorize => "authorize",
            Endpoint::AuthorizeToken => "authorize_token",
            Endpoint::Health => "health",
            Endpoint::HealthLive => "health_live",
            Endpoint::HealthReady => "health_ready",
            Endpoint::Jwks => "jwks",
            Endpoint::Metrics => "metrics",
            Endpoint::OpenApi => "openapi",
            Endpoint::Sessions => "sessions",
            Endpoint::SessionDelete => "session_delete",
            Endpoint::Password => "password",
            Endpoint::Account => "account",
        }
    }
}

/// Which endpoints one listener serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Surface {
    /// `bind`: the API; `/metrics` too unless an admin listener exists.
    Public { metrics: bool },
    /// `admin_bind`: `/metrics` and the health probes only.
    Admin,
}

impl Surface {
    pub(crate) fn serves(self, endpoint: Endpoint) -> bool {
        match (self, endpoint) {
            (Surface::Public { metrics }, Endpoint::Metrics) => metrics,
            (Surface::Public { .. }, _) => true,
            (Surface::Admin, e) => matches!(
                e,
                Endpoint::Metrics | Endpoint::Health | Endpoint::HealthLive | Endpoint::HealthReady
            ),
        }
    }
}

/// Finds the endpoint for a method and path on `surface`: 404 for a path
/// it does not serve, 405 for a served path with the wrong method.
pub(crate) fn route(surface: Surface, method: &Method, path: &str) -> Result<Endpoint, ApiError> {
    let (allowed, endpoint) = lookup(path)?;
    if !surface.serves(endpoint) {
        return Err(ApiError::NotFound);
    }
    if method.as_str() == allowed {
        Ok(endpoint)
    } else {
        Err(ApiError::MethodNotAllowed { allow: allowed })
    }
}

fn lookup(path: &str) -> Result<(&'static str, Endpoint), ApiError> {
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
        "/health/live" => ("GET", Endpoint::HealthLive),
        "/health/ready" => ("GET", Endpoint::HealthReady),
        "/.well-known/jwks.json" => ("GET", Endpoint::Jwks),
        "/metrics" => ("GET", Endpoint::Metrics),
        "/openapi.json" => ("GET", Endpoint::OpenApi),
        "/sessions" => ("GET", Endpoint::Sessions),
        "/password" => ("POST", Endpoint::Password),
        "/account" => ("DELETE", Endpoint::Account),
        // Any id: a malformed one is the handler's 404, like an unknown one.
        p if p
            .strip_prefix("/sessions/")
            .is_some_and(|id| !id.contains('/')) =>
        {
            ("DELETE", Endpoint::SessionDelete)
        }
        _ => return Err(ApiError::NotFound),
    };
    Ok((allowed, endpoint))
}

/// Runs the handler of `endpoint`; `client` is the client's address (the
/// peer, or what a trusted proxy says; see `client_addr`).
pub(crate) async fn dispatch(
    endpoint: Endpoint,
    request: Request<Incoming>,
    client: IpAddr,
    ctx: &AppContext,
) -> Result<Response<Full<Bytes>>, ApiError> {
    match endpoint {
        Endpoint::SignUp => sign_up(request, client, ctx).await,
        Endpoint::SignIn => sign_in(request, client, ctx).await,
        Endpoint::Refresh => refresh(request, client, ctx).await,
        Endpoint::Revoke => revoke(request, client, ctx).await,
        Endpoint::Authorize => authorize(request, ctx).await,
        Endpoint::AuthorizeToken => authorize_token(request, ctx).await,
        Endpoint::Health => health(ctx).await,
        Endpoint::HealthLive => Ok(probes::live()),
        Endpoint::HealthReady => Ok(probes::ready(ctx).await),
        Endpoint::Jwks => Ok(jwks(ctx)),
        Endpoint::Metrics => Ok(metrics()),
        Endpoint::OpenApi => Ok(openapi()),
        Endpoint::Sessions => accounts::list_sessions(request, ctx).await,
        Endpoint::SessionDelete => accounts::delete_session(request, client, ctx).await,
        Endpoint::Password => accounts::change_password(request, client, ctx).await,
        Endpoint::Account => accounts::delete_account(request, client, ctx).await,
    }
}

/// Counts a password check on `account` (a case-folded e-mail) against
/// the rate limits of the client address and the account; [`refund`]
/// gives the account's back when the password was right.
pub(super) fn rate_limit(ctx: &AppContext, peer: IpAddr, account: &str) -> Result<(), ApiError> {
    match &ctx.rate_limits {
        Some(limits) => limits.check(peer, account).map_err(|l| limited(peer, l)),
        None => Ok(()),
    }
}

/// Counts an attempt of the client address only (sign-up).
fn rate_limit_address(ctx: &AppContext, peer: IpAddr) -> Result<(), ApiError> {
    match &ctx.rate_limits {
        Some(limits) => limits.check_address(peer).map_err(|l| limited(peer, l)),
        None => Ok(()),
    }
}

/// The password checked on `account` was right: only failed checks count.
pub(super) fn refund(ctx: &AppContext, account: &str) {
    if let Some(limits) = &ctx.rate_limits {
        limits.refund(account);
    }
}

fn limited(peer: IpAddr, limited: super::rate_limit::Limited) -> ApiError {
    ApiError::RateLimited {
        retry_after_secs: retry_after_secs(peer, limited),
    }
}

/// Counts and logs a refusal; the whole seconds of its `Retry-After`.
pub(super) fn retry_after_secs(peer: IpAddr, limited: super::rate_limit::Limited) -> u64 {
    ::metrics::counter!(m::RATE_LIMITED).increment(1);
    tracing::info!(event = "rate_limited", client = %peer, "password check or sign-up refused: 429");
    // Round up: "retry in 0 s" would invite an immediate retry.
    limited.retry_after.as_secs() + u64::from(limited.retry_after.subsec_nanos() > 0)
}

/// Where a session started by this request starts.
fn origin_of(request: &Request<Incoming>, client: IpAddr) -> SessionOrigin {
    SessionOrigin::new(
        client,
        request.headers().get(USER_AGENT).map(|v| v.as_bytes()),
    )
}

/// The audit event of a sign-up or sign-in: who, which session, or why not.
fn audit_session_start(
    ctx: &AppContext,
    action: Action,
    result: &Result<IssuedToken, ApiError>,
    peer: IpAddr,
    email: &str,
) {
    let (outcome, reason, user_id, session_id) = match result {
        Ok(issued) => (
            Outcome::Success,
            None,
            Some(issued.user_id),
            Some(issued.session_id),
        ),
        Err(e) => (Outcome::Failure, Some(failure_reason(e)), None, None),
    };
    ctx.auditor.record(
        action,
        outcome,
        AuditEvent {
            reason,
            user_id,
            session_id,
            client: Some(peer),
            email: Some(email),
            ..AuditEvent::default()
        },
    );
}

/// Why a sign-up or sign-in failed, for its audit event.
fn failure_reason(failure: &ApiError) -> &'static str {
    match failure {
        ApiError::BadCredentials => "bad_credentials",
        ApiError::EmailTaken => "email_taken",
        ApiError::RateLimited { .. } => "rate_limited",
        ApiError::Overloaded => "overloaded",
        ApiError::Fault(_) => "unavailable",
        _ => "invalid_request",
    }
}

/// Sign-up applies authd's rules to the e-mail and the password.
pub(crate) async fn sign_up(
    request: Request<Incoming>,
    peer: IpAddr,
    ctx: &AppContext,
) -> Result<Response<Full<Bytes>>, ApiError> {
    let origin = origin_of(&request, peer);
    let body: CredentialsBody = read_json(request, &ctx.body).await?;
    let email = Email::parse(&body.email)?;
    let password = Password::parse(body.password)?;
    let typed = email.as_str().to_owned();
    let result = match rate_limit_address(ctx, peer) {
        Ok(()) => ctx
            .services
            .users
            .sign_up(email, password, origin)
            .await
            .map_err(ApiError::from),
        Err(e) => Err(e),
    };
    audit_session_start(ctx, Action::SignUp, &result, peer, &typed);
    Ok(json_response(
        StatusCode::CREATED,
        &TokenResponse::from(result?),
    ))
}

pub(crate) async fn sign_in(
    request: Request<Incoming>,
    peer: IpAddr,
    ctx: &AppContext,
) -> Result<Response<Full<Bytes>>, ApiError> {
    // Sign-in does not: an account adopted from the old service may have a
    // password or an e-mail that sign-up would refuse today.
    let origin = origin_of(&request, peer);
    let body: CredentialsBody = read_json(request, &ctx.body).await?;
    let email = SignInEmail::parse(&body.email)?;
    let password = Password::parse_presented(body.password)?;
    let account = email.folded().to_owned();
    let result = match rate_limit(ctx, peer, &account) {
        Ok(()) => {
            let answer = ctx.services.users.sign_in(email, password, origin).await;
            // Only a wrong password counts against the account.
            if !matches!(answer, Err(UserFailure::BadCredentials)) {
                refund(ctx, &account);
            }
            answer.map_err(ApiError::from)
        }
        Err(e) => Err(e),
    };
    audit_session_start(ctx, Action::SignIn, &result, peer, &account);
    Ok(json_response(StatusCode::OK, &TokenResponse::from(result?)))
}

/// Refreshes are counted by `TokenActor`, not logged; reuse detection is
/// an audit event.
pub(crate) async fn refresh(
    request: Request<Incoming>,
    peer: IpAddr,
    ctx: &AppContext,
) -> Result<Response<Full<Bytes>>, ApiError> {
    let body: TokenBody = read_json(request, &ctx.body).await?;
    let refreshed = ctx.services.tokens.refresh(&body.access_token).await;
    if matches!(refreshed, Err(TokenFailure::Refused(TokenRefusal::Reused))) {
        let who = ctx.services.tokens.identify(&body.access_token).await;
        ctx.auditor.record(
            Action::TokenReuse,
            Outcome::Detected,
            AuditEvent {
                reason: Some("rotated_token_presented_again"),
                user_id: who.map(|w| w.0),
                session_id: who.map(|w| w.1),
                client: Some(peer),
                ..AuditEvent::default()
            },
        );
    }
    Ok(json_response(
        StatusCode::OK,
        &TokenResponse::from(refreshed?),
    ))
}

pub(crate) async fn revoke(
    request: Request<Incoming>,
    peer: IpAddr,
    ctx: &AppContext,
) -> Result<Response<Full<Bytes>>, ApiError> {
    let body: RevokeBody = read_json(request, &ctx.body).await?;
    let scope = body.scope.label();
    let result = ctx
        .services
        .tokens
        .revoke(&body.access_token, body.scope.into())
        .await;
    let (outcome, reason, who) = match &result {
        Ok(who) => (Outcome::Success, None, *who),
        Err(f) => (Outcome::Failure, Some(token_reason(f)), None),
    };
    ctx.auditor.record(
        Action::Revoke,
        outcome,
        AuditEvent {
            reason,
            user_id: who.map(|w| w.0),
            session_id: who.map(|w| w.1),
            client: Some(peer),
            scope: Some(scope),
            ..AuditEvent::default()
        },
    );
    result?;
    Ok(json_response(
        StatusCode::OK,
        &json!({ "message": "Token revoked successfully." }),
    ))
}

/// Why a token was refused, for an audit event.
fn token_reason(failure: &TokenFailure) -> &'static str {
    match failure {
        TokenFailure::Refused(TokenRefusal::Invalid) => "invalid_token",
        TokenFailure::Refused(TokenRefusal::Expired) => "token_expired",
        TokenFailure::Refused(TokenRefusal::Revoked) => "token_revoked",
        TokenFailure::Refused(TokenRefusal::Reused) => "token_reused",
        TokenFailure::Fault(_) => "unavailable",
    }
}

pub(crate) async fn authorize(
    request: Request<Incoming>,
    ctx: &AppContext,
) -> Result<Response<Full<Bytes>>, ApiError> {
    let token = bearer_token(&request)?.ok_or(ApiError::MissingToken)?;
    let who = ctx.services.tokens.authorize(&token).await?;
    let mut response = json_response(
        StatusCode::OK,
        &json!({
            "user_id": who.user_id,
            "user_int_id": who.user_int_id,
            "session_id": who.session_id,
            "expires_at": who.expires_at,
        }),
    );
    identity_headers(&who, response.headers_mut());
    Ok(response)
}

/// The seed's `GET /auth/authorize-token`, which read the token from a JSON
/// body; a Bearer header is accepted too. A body, when there is one, must
/// be a valid `{"access_token": "<string>"}` whatever else the request
/// carries (400/422 otherwise), and when both are well-formed the body's
/// token is the one authorized: the body is this endpoint's question,
/// while an `Authorization` header may belong to whoever relays it.
pub(crate) async fn authorize_token(
    request: Request<Incoming>,
    ctx: &AppContext,
) -> Result<Response<Full<Bytes>>, ApiError> {
    let header = bearer_token(&request);
    let body: Option<TokenBody> = read_optional_json(request, &ctx.body).await?;
    let token = match body {
        Some(body) => body.access_token,
        None => header?.ok_or(ApiError::MissingToken)?,
    };
    // The old service answered `{"user_id": <int>}`; its clients and the
    // services downstream key their data by that integer.
    let who = ctx.services.tokens.authorize(&token).await?;
    let mut response = json_response(
        StatusCode::OK,
        &json!({
            "user_id": who.user_int_id,
            "user_uuid": who.user_id,
            "session_id": who.session_id,
            "expires_at": who.expires_at,
        }),
    );
    identity_headers(&who, response.headers_mut());
    Ok(response)
}

/// The identity of an authorized request as response headers, for a
/// gateway's `auth_request` (which sees headers, not bodies): nginx copies
/// them into the request it forwards upstream (`config/nginx/`).
fn identity_headers(who: &crate::domain::Authorized, headers: &mut hyper::HeaderMap) {
    if let Ok(value) = HeaderValue::from_str(&who.user_id.to_string()) {
        headers.insert(USER_ID_HEADER, value);
    }
}

/// The authorized user's id (a UUID) in `/authorize` answers.
pub(crate) const USER_ID_HEADER: &str = "x-authd-user-id";

pub(crate) async fn health(ctx: &AppContext) -> Result<Response<Full<Bytes>>, ApiError> {
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
pub(crate) fn jwks(ctx: &AppContext) -> Response<Full<Bytes>> {
    json_response(StatusCode::OK, &ctx.services.tokens.jwks())
}

/// The OpenAPI 3 description of this API (`src/http/openapi.json`, checked
/// against the live server in CI by schemathesis).
pub(crate) fn openapi() -> Response<Full<Bytes>> {
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
pub(crate) fn metrics() -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(m::render())));
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    response
}

/// The token of an `Authorization: Bearer <token>` header, if there is one.
pub(super) fn bearer_token(request: &Request<Incoming>) -> Result<Option<String>, ApiError> {
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
mod tests;
