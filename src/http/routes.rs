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
//! | `GET /health` | [`health`] | `HealthHandle::status` |
//! | `GET /.well-known/jwks.json` | [`jwks`] | `TokenHandle::jwks` (no actor call) |

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::AUTHORIZATION;
use hyper::{Method, Request, Response, StatusCode};
use serde_json::json;

use super::json::{
    json_response, read_json, CredentialsBody, RevokeBody, TokenBody, TokenResponse,
};
use super::ApiError;
use crate::actors::Services;
use crate::domain::{Email, Password};

/// What every handler can reach.
pub struct AppContext {
    pub services: Services,
    pub max_body_bytes: usize,
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
        }
    }
}

/// Finds the endpoint for a method and path: 404 for an unknown path, 405
/// for a known path with the wrong method.
pub fn route(method: &Method, path: &str) -> Result<Endpoint, ApiError> {
    let (allowed, endpoint) = match path {
        "/signup" | "/auth/signup" => (Method::POST, Endpoint::SignUp),
        "/signin" | "/auth/signin" => (Method::POST, Endpoint::SignIn),
        "/refresh" => (Method::POST, Endpoint::Refresh),
        "/auth/refresh" => (Method::PUT, Endpoint::Refresh),
        "/revoke" => (Method::POST, Endpoint::Revoke),
        "/auth/revoke" => (Method::DELETE, Endpoint::Revoke),
        "/authorize" => (Method::GET, Endpoint::Authorize),
        "/auth/authorize-token" => (Method::GET, Endpoint::AuthorizeToken),
        "/health" => (Method::GET, Endpoint::Health),
        "/.well-known/jwks.json" => (Method::GET, Endpoint::Jwks),
        _ => return Err(ApiError::NotFound),
    };
    if *method == allowed {
        Ok(endpoint)
    } else {
        Err(ApiError::MethodNotAllowed)
    }
}

pub async fn dispatch(
    endpoint: Endpoint,
    request: Request<Incoming>,
    ctx: &AppContext,
) -> Result<Response<Full<Bytes>>, ApiError> {
    match endpoint {
        Endpoint::SignUp => sign_up(request, ctx).await,
        Endpoint::SignIn => sign_in(request, ctx).await,
        Endpoint::Refresh => refresh(request, ctx).await,
        Endpoint::Revoke => revoke(request, ctx).await,
        Endpoint::Authorize => authorize(request, ctx).await,
        Endpoint::AuthorizeToken => authorize_token(request, ctx).await,
        Endpoint::Health => health(ctx).await,
        Endpoint::Jwks => Ok(jwks(ctx)),
    }
}

async fn credentials(
    request: Request<Incoming>,
    ctx: &AppContext,
) -> Result<(Email, Password), ApiError> {
    let body: CredentialsBody = read_json(request, ctx.max_body_bytes).await?;
    Ok((Email::parse(&body.email)?, Password::parse(body.password)?))
}

pub async fn sign_up(
    request: Request<Incoming>,
    ctx: &AppContext,
) -> Result<Response<Full<Bytes>>, ApiError> {
    let (email, password) = credentials(request, ctx).await?;
    let issued = ctx.services.users.sign_up(email, password).await?;
    Ok(json_response(
        StatusCode::CREATED,
        &TokenResponse::from(issued),
    ))
}

pub async fn sign_in(
    request: Request<Incoming>,
    ctx: &AppContext,
) -> Result<Response<Full<Bytes>>, ApiError> {
    let (email, password) = credentials(request, ctx).await?;
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
    authorized(&token, ctx).await
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
    authorized(&token, ctx).await
}

async fn authorized(token: &str, ctx: &AppContext) -> Result<Response<Full<Bytes>>, ApiError> {
    let who = ctx.services.tokens.authorize(token).await?;
    Ok(json_response(
        StatusCode::OK,
        &json!({
            "user_id": who.user_id,
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

/// The token of an `Authorization: Bearer <token>` header, if there is one.
fn bearer_token(request: &Request<Incoming>) -> Result<Option<String>, ApiError> {
    let Some(value) = request.headers().get(AUTHORIZATION) else {
        return Ok(None);
    };
    let value = value
        .to_str()
        .map_err(|_| ApiError::Token(crate::actors::token::TokenFailure::Invalid))?;
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
            Err(ApiError::MethodNotAllowed)
        ));
        assert!(matches!(
            route(&Method::GET, "/nope"),
            Err(ApiError::NotFound)
        ));
    }
}
