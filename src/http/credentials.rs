//! Sign-up and sign-in: the endpoints that check or set a password without
//! a token, and the rate limits every password check goes through.
//!
//! | route | handler | actor call |
//! |---|---|---|
//! | `POST /signup`, `POST /auth/signup` | [`sign_up`] | `UserHandle::sign_up` |
//! | `POST /signin`, `POST /auth/signin` | [`sign_in`] | `UserHandle::sign_in` |
//!
//! Both are audit events ([`crate::audit`]), logged inside the request's
//! span.

use std::net::IpAddr;

use hyper::body::Incoming;
use hyper::header::USER_AGENT;
use hyper::{Request, StatusCode};

use super::json::{json_response, read_json, CredentialsBody, SignInBody, TokenResponse};
use super::openapi::responses as r;
use super::routes::{AppContext, Reply};
use super::ApiError;
use crate::actors::user::UserFailure;
use crate::audit::{Action, AuditEvent, Outcome};
use crate::domain::{Email, IssuedToken, Password, SessionOrigin, SignInEmail};
use crate::telemetry::metrics as m;

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
pub(super) fn origin_of(request: &Request<Incoming>, client: IpAddr) -> SessionOrigin {
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

/// Create an account and start a session
///
/// Creates the account and signs it in: the answer is the first access
/// token of a new session. Sign-up applies authd's rules to the e-mail and
/// the password.
#[utoipa::path(
    post,
    path = "/signup",
    operation_id = "signUp",
    tag = "accounts",
    request_body(content = CredentialsBody, description = "The account's e-mail address and password."),
    responses(
        (status = 201, description = "Account created; the access token of its first session.",
            body = TokenResponse, links(
                ("Refresh" = (operation_id = "refresh", request_body = json!({"access_token": "$response.body#/access_token"}), description = "Rotate the token.")),
                ("Revoke" = (operation_id = "revoke", request_body = json!({"access_token": "$response.body#/access_token"}), description = "Revoke its session.")),
                ("RevokeAll" = (operation_id = "revoke", request_body = json!({"access_token": "$response.body#/access_token", "scope": "all"}), description = "Revoke every session of its user.")),
                ("AuthorizeToken" = (operation_id = "legacyAuthorizeToken", request_body = json!({"access_token": "$response.body#/access_token"}), description = "Check the token (legacy path, token in the body).")),
            )),
        r::JsonBodyRefusals,
        (status = 409, response = r::EmailTaken),
        (status = 429, response = r::RateLimited),
        (status = 503, response = r::Unavailable),
    )
)]
pub(crate) async fn sign_up(request: Request<Incoming>, peer: IpAddr, ctx: &AppContext) -> Reply {
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

/// Sign in: start a session
///
/// Checks the password and starts a new session. A wrong e-mail and a
/// wrong password get the same answer, in the same time.
#[utoipa::path(
    post,
    path = "/signin",
    operation_id = "signIn",
    tag = "accounts",
    request_body(content = SignInBody, description = "The account's e-mail address and password."),
    responses(
        (status = 200, description = "Signed in; the access token of the new session.",
            body = TokenResponse, links(
                ("Refresh" = (operation_id = "refresh", request_body = json!({"access_token": "$response.body#/access_token"}), description = "Rotate the token.")),
                ("Revoke" = (operation_id = "revoke", request_body = json!({"access_token": "$response.body#/access_token"}), description = "Revoke its session.")),
                ("RevokeAll" = (operation_id = "revoke", request_body = json!({"access_token": "$response.body#/access_token", "scope": "all"}), description = "Revoke every session of its user.")),
                ("RevokeOthers" = (operation_id = "revoke", request_body = json!({"access_token": "$response.body#/access_token", "scope": "others"}), description = "Revoke every other session of its user.")),
                ("AuthorizeToken" = (operation_id = "legacyAuthorizeToken", request_body = json!({"access_token": "$response.body#/access_token"}), description = "Check the token (legacy path, token in the body).")),
            )),
        r::JsonBodyRefusals,
        (status = 401, response = r::InvalidCredentials),
        (status = 429, response = r::RateLimited),
        (status = 503, response = r::Unavailable),
    )
)]
pub(crate) async fn sign_in(request: Request<Incoming>, peer: IpAddr, ctx: &AppContext) -> Reply {
    // Sign-in does not apply sign-up's rules: an account adopted from the
    // old service may have a password or an e-mail that sign-up would
    // refuse.
    let origin = origin_of(&request, peer);
    let body: SignInBody = read_json(request, &ctx.body).await?;
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
