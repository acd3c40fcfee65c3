//! The endpoints through which a signed-in user manages their own sessions
//! and account. Each takes the caller's access token from the
//! `Authorization: Bearer` header and authorizes it first (401 otherwise).
//!
//! | route | handler | actor calls |
//! |---|---|---|
//! | `GET /sessions` | [`list_sessions`] | `TokenHandle::authorize`, `TokenHandle::list_sessions` |
//! | `DELETE /sessions/{id}` | [`delete_session`] | `TokenHandle::authorize`, `TokenHandle::revoke_own_session` |
//! | `POST /password` | [`change_password`] | `TokenHandle::authorize`, `UserHandle::account_key`, `UserHandle::change_password` |
//! | `DELETE /account` | [`delete_account`] | `TokenHandle::authorize`, `UserHandle::account_key`, `UserHandle::delete_account` |
//!
//! The last two check a password: like sign-in they are rate-limited per
//! client address and per account (only a wrong password counts against
//! the account) and a wrong password answers no sooner than
//! `signin_failure_floor_ms` after the request arrived (`UserActor`).

use std::net::IpAddr;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::USER_AGENT;
use hyper::{Request, Response, StatusCode};
use serde_json::json;

use super::json::{json_response, read_json, PasswordBody, PasswordChangeBody, TokenResponse};
use super::routes::{bearer_token, rate_limit, refund, AppContext};
use super::ApiError;
use crate::actors::user::UserFailure;
use crate::audit::{Action, AuditEvent, Outcome};
use crate::domain::{
    Authorized, InvalidField, Password, SessionCursor, SessionId, SessionOrigin, SessionSummary,
};

/// Page size of `GET /sessions` without `?limit=`.
pub(crate) const DEFAULT_PAGE: usize = 20;
/// The largest `?limit=`.
pub(crate) const MAX_PAGE: usize = 100;

/// The caller: the user and session of the Bearer token.
async fn caller(request: &Request<Incoming>, ctx: &AppContext) -> Result<Authorized, ApiError> {
    let token = bearer_token(request)?.ok_or(ApiError::MissingToken)?;
    Ok(ctx.services.tokens.authorize(&token).await?)
}

fn invalid(field: &'static str, reason: &'static str) -> ApiError {
    ApiError::InvalidField(InvalidField { field, reason })
}

/// `?limit=` and `?cursor=`, percent-decoded (form_urlencoded): unknown
/// parameters are ignored, repeated ones refused.
fn page_query(query: Option<&str>) -> Result<(usize, Option<String>), ApiError> {
    let (mut limit, mut cursor) = (None, None);
    for (name, value) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        let (slot, field) = match name.as_ref() {
            "limit" => (&mut limit, "limit"),
            "cursor" => (&mut cursor, "cursor"),
            _ => continue,
        };
        if slot.replace(value.into_owned()).is_some() {
            return Err(invalid(field, "must be given at most once"));
        }
    }
    let limit = match limit {
        None => DEFAULT_PAGE,
        Some(text) => text
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=MAX_PAGE).contains(n))
            .ok_or_else(|| invalid("limit", "must be an integer from 1 to 100"))?,
    };
    Ok((limit, cursor))
}

fn summary_json(session: &SessionSummary, current: Option<SessionId>) -> serde_json::Value {
    let secs = |ms: i64| ms.div_euclid(1000);
    json!({
        "id": session.id,
        "created_at": secs(session.created_at_ms),
        "refreshed_at": (session.generation > 0).then(|| secs(session.issued_at_ms)),
        "expires_at": secs(session.expires_at_ms),
        "client_address": session.origin.client_address,
        "user_agent": session.origin.user_agent,
        "current": current == Some(session.id),
    })
}

/// `GET /sessions`: the caller's live sessions, newest first, a page at a
/// time. A cursor from another user, or one authd did not write, is 422.
pub(crate) async fn list_sessions(
    request: Request<Incoming>,
    ctx: &AppContext,
) -> Result<Response<Full<Bytes>>, ApiError> {
    let who = caller(&request, ctx).await?;
    let (limit, cursor) = page_query(request.uri().query())?;
    let after = match cursor {
        None => None,
        Some(text) => Some(
            SessionCursor::decode(&text)
                .ok_or_else(|| invalid("cursor", "is not a valid cursor"))?,
        ),
    };
    if after.is_some_and(|c| c.user_id != who.user_id) {
        return Err(invalid("cursor", "is not a valid cursor"));
    }
    // One more than asked for says whether there is a next page.
    let mut sessions = ctx
        .services
        .tokens
        .list_sessions(who.user_id, after, limit + 1)
        .await?;
    let more = sessions.len() > limit;
    sessions.truncate(limit);
    let next = more
        .then(|| sessions.last().map(|s| s.cursor(who.user_id).encode()))
        .flatten();
    let listed: Vec<_> = sessions
        .iter()
        .map(|s| summary_json(s, who.session_id))
        .collect();
    Ok(json_response(
        StatusCode::OK,
        &json!({ "sessions": listed, "next": next }),
    ))
}

/// `DELETE /sessions/{id}`: 204 when `id` was one of the caller's live
/// sessions (the current one included); 404 for anything else, so the
/// answer never confirms that someone else's session exists.
pub(crate) async fn delete_session(
    request: Request<Incoming>,
    client: IpAddr,
    ctx: &AppContext,
) -> Result<Response<Full<Bytes>>, ApiError> {
    let who = caller(&request, ctx).await?;
    let id = request
        .uri()
        .path()
        .strip_prefix("/sessions/")
        .and_then(|id| uuid::Uuid::try_parse(id).ok())
        .map(SessionId);
    let revoked = match id {
        Some(id) => {
            ctx.services
                .tokens
                .revoke_own_session(who.user_id, id)
                .await?
        }
        None => false,
    };
    let outcome = if revoked {
        Outcome::Success
    } else {
        Outcome::Failure
    };
    ctx.auditor.record(
        Action::SessionDelete,
        outcome,
        AuditEvent {
            reason: (!revoked).then_some("not_found"),
            user_id: Some(who.user_id),
            session_id: id,
            client: Some(client),
            ..AuditEvent::default()
        },
    );
    if !revoked {
        return Err(ApiError::SessionNotFound);
    }
    let mut response = Response::new(Full::new(Bytes::new()));
    *response.status_mut() = StatusCode::NO_CONTENT;
    Ok(response)
}

/// Audits a password check's outcome and keeps the account's rate limit
/// (a right password gives its cell back).
fn settle_password_check<T>(
    ctx: &AppContext,
    action: Action,
    who: &Authorized,
    client: IpAddr,
    account: &str,
    result: &Result<T, UserFailure>,
) {
    let reason = match result {
        Ok(_) => None,
        Err(UserFailure::BadCredentials) => Some("bad_credentials"),
        Err(UserFailure::Overloaded) => Some("overloaded"),
        Err(_) => Some("unavailable"),
    };
    if !matches!(result, Err(UserFailure::BadCredentials)) {
        // Only a password check that failed counts against the account.
        refund(ctx, account);
    }
    ctx.auditor.record(
        action,
        if reason.is_none() {
            Outcome::Success
        } else {
            Outcome::Failure
        },
        AuditEvent {
            reason,
            user_id: Some(who.user_id),
            session_id: who.session_id,
            client: Some(client),
            email: Some(account),
            ..AuditEvent::default()
        },
    );
}

/// The caller's rate-limit key, or 401 if their account is gone.
async fn account_key(ctx: &AppContext, who: &Authorized) -> Result<String, ApiError> {
    ctx.services
        .users
        .account_key(who.user_id)
        .await?
        .ok_or(ApiError::Token(crate::actors::token::TokenRefusal::Revoked))
}

/// `POST /password`: checks the current password, stores the new one
/// (sign-up's rules), ends every session of the user on every instance —
/// the caller's too — and answers a token of a new session.
pub(crate) async fn change_password(
    request: Request<Incoming>,
    client: IpAddr,
    ctx: &AppContext,
) -> Result<Response<Full<Bytes>>, ApiError> {
    let who = caller(&request, ctx).await?;
    let origin = SessionOrigin::new(
        client,
        request.headers().get(USER_AGENT).map(|v| v.as_bytes()),
    );
    let body: PasswordChangeBody = read_json(request, &ctx.body).await?;
    let current = Password::parse_presented(body.current_password).map_err(|e| InvalidField {
        field: "current_password",
        ..e
    })?;
    let new = Password::parse(body.new_password).map_err(|e| InvalidField {
        field: "new_password",
        ..e
    })?;
    let account = account_key(ctx, &who).await?;
    rate_limit(ctx, client, &account)?;
    let result = ctx
        .services
        .users
        .change_password(who.user_id, current, new, origin)
        .await;
    settle_password_check(ctx, Action::PasswordChange, &who, client, &account, &result);
    Ok(json_response(StatusCode::OK, &TokenResponse::from(result?)))
}

/// `DELETE /account`: checks the password, then deletes the user and
/// every session of theirs, everywhere. The e-mail is free again.
pub(crate) async fn delete_account(
    request: Request<Incoming>,
    client: IpAddr,
    ctx: &AppContext,
) -> Result<Response<Full<Bytes>>, ApiError> {
    let who = caller(&request, ctx).await?;
    let body: PasswordBody = read_json(request, &ctx.body).await?;
    let password = Password::parse_presented(body.password)?;
    let account = account_key(ctx, &who).await?;
    rate_limit(ctx, client, &account)?;
    let result = ctx
        .services
        .users
        .delete_account(who.user_id, password)
        .await;
    settle_password_check(ctx, Action::AccountDelete, &who, client, &account, &result);
    result?;
    Ok(json_response(
        StatusCode::OK,
        &json!({ "message": "Account deleted." }),
    ))
}
