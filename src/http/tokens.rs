//! The token endpoints: rotate, revoke and check an access token.
//!
//! | route | handler | actor call |
//! |---|---|---|
//! | `POST /refresh`, `PUT /auth/refresh` | [`refresh`] | `TokenHandle::refresh` |
//! | `POST /revoke`, `DELETE /auth/revoke` | [`revoke`] | `TokenHandle::revoke` |
//! | `GET /authorize` (Bearer header) | [`authorize`] | `TokenHandle::authorize` |
//! | `GET /auth/authorize-token` (JSON body or Bearer) | [`authorize_token`] | `TokenHandle::authorize` |
//!
//! Revocations and reuse detection are audit events ([`crate::audit`]).

use std::net::IpAddr;

use hyper::body::Incoming;
use hyper::header::{HeaderValue, AUTHORIZATION};
use hyper::{Request, StatusCode};
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use super::json::{
    json_response, read_json, read_optional_json, RevokeBody, TokenBody, TokenResponse,
};
use super::openapi::responses as r;
use super::routes::{AppContext, Reply};
use super::ApiError;
use crate::actors::token::{TokenFailure, TokenRefusal};
use crate::audit::{Action, AuditEvent, Outcome};
use crate::domain::Authorized;

/// The authorized user's id (a UUID) in `/authorize` answers.
pub(crate) const USER_ID_HEADER: &str = "x-authd-user-id";

/// Rotate the session's access token
///
/// Takes the session's live access token (even expired, while the session
/// is inside its absolute lifetime) and returns the next one; the
/// presented token stops working. Presenting an already-rotated token
/// again revokes the whole session (`token_reused`), except inside the
/// short grace window, where it gets the same successor again. A revoked
/// session is never refreshed.
// Refreshes are counted by `TokenActor`, not logged; reuse detection is an
// audit event.
#[utoipa::path(
    post,
    path = "/refresh",
    operation_id = "refresh",
    tag = "tokens",
    request_body(content = TokenBody, description = "An access token of the session."),
    responses(
        (status = 200, description = "The session's new access token.",
            body = TokenResponse, links(
                ("Refresh" = (operation_id = "refresh", request_body = json!({"access_token": "$response.body#/access_token"}), description = "Rotate the token.")),
                ("Revoke" = (operation_id = "revoke", request_body = json!({"access_token": "$response.body#/access_token"}), description = "Revoke its session.")),
                ("RevokeAll" = (operation_id = "revoke", request_body = json!({"access_token": "$response.body#/access_token", "scope": "all"}), description = "Revoke every session of its user.")),
                ("AuthorizeToken" = (operation_id = "legacyAuthorizeToken", request_body = json!({"access_token": "$response.body#/access_token"}), description = "Check the token (legacy path, token in the body).")),
            )),
        r::JsonBodyRefusals,
        (status = 401, response = r::RefreshRefused),
        (status = 503, response = r::Unavailable),
    )
)]
pub(crate) async fn refresh(request: Request<Incoming>, peer: IpAddr, ctx: &AppContext) -> Reply {
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

/// The answer of a revocation.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct RevokeResponse {
    #[schema(inline)]
    message: Revoked,
}

#[derive(Debug, Serialize, ToSchema)]
enum Revoked {
    #[serde(rename = "Token revoked successfully.")]
    Done,
}

/// Revoke the session, the user's other sessions, or all of them
///
/// Ends the token's session (`scope: "session"`, the default), every other
/// session of the token's user (`scope: "others"`: sign out my other
/// devices), or every session of the token's user (`scope: "all"`), on
/// every instance. Expired tokens are accepted (for `session`; `others`
/// and `all` need a live session). Revoking a revoked session again
/// answers 200.
#[utoipa::path(
    post,
    path = "/revoke",
    operation_id = "revoke",
    tag = "tokens",
    request_body(content = RevokeBody, description = "An access token of the session, and what to revoke."),
    responses(
        (status = 200, description = "Revoked.", body = RevokeResponse),
        r::JsonBodyRefusals,
        (status = 401, response = r::RevokeRefused),
        (status = 503, response = r::Unavailable),
    )
)]
pub(crate) async fn revoke(request: Request<Incoming>, peer: IpAddr, ctx: &AppContext) -> Reply {
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
    let body = RevokeResponse {
        message: Revoked::Done,
    };
    Ok(json_response(StatusCode::OK, &body))
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

/// The answer of `GET /authorize`.
#[derive(Debug, Serialize, ToSchema)]
// Fields in alphabetical order: the keys keep the order authd has always
// answered them in.
pub(crate) struct Authorization {
    /// The token's `exp` (Unix seconds).
    expires_at: i64,
    /// null for a token issued by the old FastAPI service (it belongs to
    /// no authd session).
    #[schema(required = true)]
    session_id: Option<Uuid>,
    user_id: Uuid,
    /// The user's integer id: the old FastAPI service's users.id for an
    /// adopted account, 2^31 and up for accounts created by authd.
    user_int_id: i64,
}

/// Check an access token
///
/// Verifies the bearer token (signature, algorithm, issuer, audience,
/// expiry) and that it is the live token of a live session.
#[utoipa::path(
    get,
    path = "/authorize",
    operation_id = "authorize",
    tag = "tokens",
    security(("bearerAuth" = [])),
    responses(
        (status = 200, description = "The token is valid and its session live.",
            body = Authorization, headers(
                ("X-Authd-User-Id" = Uuid,
                    description = "The authorized user's id (a UUID), for gateways whose `auth_request` sees only headers.")
            )),
        (status = 401, response = r::AuthorizeRefused),
        (status = 503, response = r::Unavailable),
    )
)]
pub(crate) async fn authorize(request: Request<Incoming>, _: IpAddr, ctx: &AppContext) -> Reply {
    let token = bearer_token(&request)?.ok_or(ApiError::MissingToken)?;
    let who = ctx.services.tokens.authorize(&token).await?;
    let body = Authorization {
        user_id: who.user_id.0,
        user_int_id: who.user_int_id,
        session_id: who.session_id.map(|s| s.0),
        expires_at: who.expires_at,
    };
    let mut response = json_response(StatusCode::OK, &body);
    identity_headers(&who, response.headers_mut());
    Ok(response)
}

/// The old service's answer shape: `user_id` is the integer id.
#[derive(Debug, Serialize, ToSchema)]
// Fields in alphabetical order, as `Authorization`.
pub(crate) struct LegacyAuthorization {
    /// The token's `exp` (Unix seconds).
    expires_at: i64,
    #[schema(required = true)]
    session_id: Option<Uuid>,
    /// The user's integer id (the old service's users.id for adopted
    /// accounts).
    user_id: i64,
    user_uuid: Uuid,
}

/// Check an access token (legacy)
///
/// Like `GET /authorize`, but the token may also come in a JSON body
/// `{"access_token"}` (a GET with a body, as the predecessor service had
/// it), and `user_id` is the integer id, as the old service answered. A
/// body, when there is one, must be valid whatever else the request
/// carries (400 malformed, 422 wrong shape), even with a Bearer header;
/// when both a valid body and a Bearer header are present, the body's
/// token is the one authorized (the body is this endpoint's question,
/// while an `Authorization` header may belong to whoever relays it). An
/// empty body without a Content-Type means no body (then the Bearer
/// header is required: 401 without it); an empty body announced as JSON
/// is malformed (400).
#[utoipa::path(
    get,
    path = "/auth/authorize-token",
    operation_id = "legacyAuthorizeToken",
    tag = "legacy",
    security(("bearerAuth" = []), ()),
    request_body(content = TokenBody,
        description = "The access token; when present it wins over a Bearer header."),
    responses(
        (status = 200, description = "The token is valid and its session live.",
            body = LegacyAuthorization, headers(
                ("X-Authd-User-Id" = Uuid,
                    description = "The authorized user's id (a UUID), for gateways whose `auth_request` sees only headers.")
            )),
        r::JsonBodyRefusals,
        (status = 401, response = r::AuthorizeRefused),
        (status = 503, response = r::Unavailable),
    )
)]
pub(crate) async fn authorize_token(
    request: Request<Incoming>,
    _: IpAddr,
    ctx: &AppContext,
) -> Reply {
    let header = bearer_token(&request);
    let body: Option<TokenBody> = read_optional_json(request, &ctx.body).await?;
    let token = match body {
        Some(body) => body.access_token,
        None => header?.ok_or(ApiError::MissingToken)?,
    };
    // The old service answered `{"user_id": <int>}`; its clients and the
    // services downstream key their data by that integer.
    let who = ctx.services.tokens.authorize(&token).await?;
    let body = LegacyAuthorization {
        user_id: who.user_int_id,
        user_uuid: who.user_id.0,
        session_id: who.session_id.map(|s| s.0),
        expires_at: who.expires_at,
    };
    let mut response = json_response(StatusCode::OK, &body);
    identity_headers(&who, response.headers_mut());
    Ok(response)
}

/// The identity of an authorized request as response headers, for a
/// gateway's `auth_request` (which sees headers, not bodies): nginx copies
/// them into the request it forwards upstream (`config/nginx/`).
fn identity_headers(who: &Authorized, headers: &mut hyper::HeaderMap) {
    if let Ok(value) = HeaderValue::from_str(&who.user_id.to_string()) {
        headers.insert(USER_ID_HEADER, value);
    }
}

/// The token of an `Authorization: Bearer <token>` header, if there is one.
pub(super) fn bearer_token(request: &Request<Incoming>) -> Result<Option<String>, ApiError> {
    let Some(value) = request.headers().get(AUTHORIZATION) else {
        return Ok(None);
    };
    let value = value
        .to_str()
        .map_err(|_| ApiError::Token(TokenRefusal::Invalid))?;
    match value.split_once(' ') {
        Some((scheme, token))
            if scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty() =>
        {
            Ok(Some(token.trim().to_owned()))
        }
        _ => Err(ApiError::MissingToken),
    }
}
