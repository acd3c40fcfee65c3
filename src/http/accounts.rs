//! The endpoints through which a signed-in user manages their own sessions
//! and account. Each takes the caller's access token from the
//! `Authorization: Bearer` header and authorizes it first (401 otherwise).
//!
//! | route | handler | actor calls |
//! |---|---|---|
//! | `GET /sessions` | [`list_sessions`] | `TokenHandle::authorize`, `TokenHandle::list_sessions` |
//! | `DELETE /sessions/{id}` | [`delete_session`] | `TokenHandle::authorize`, `TokenHandle::revoke_own_session` |
//! | `POST /password` | [`change_password`] | `TokenHandle::authorize`, `UserHandle::change_password` |
//! | `DELETE /account` | [`delete_account`] | `TokenHandle::authorize`, `UserHandle::delete_account` |
//!
//! The last two check a password: like sign-in they are rate-limited per
//! client address and per account (only a wrong password counts against
//! the account; `UserActor` asks the [`AccountLimit`] once it has read the
//! account) and a wrong password answers no sooner than
//! `signin_failure_floor_ms` after the request arrived (`UserActor`).

use std::net::IpAddr;
use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use super::credentials::{origin_of, refund, retry_after_secs};
use super::json::{json_response, read_json, PasswordBody, PasswordChangeBody, TokenResponse};
use super::openapi::responses as r;
use super::rate_limit::RateLimits;
use super::routes::{AppContext, Reply};
use super::tokens::bearer_token;
use super::ApiError;
use crate::actors::user::{PasswordGate, UserFailure};
use crate::audit::{Action, AuditEvent, Outcome};
use crate::domain::{Authorized, InvalidField, Password, SessionCursor, SessionId, SessionSummary};

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

/// One session in `GET /sessions`.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = SessionInfo)]
// Fields in alphabetical order: the keys keep the order authd has always
// answered them in.
pub(crate) struct SessionView {
    /// The client address at sign-in as authd saw it (the peer, or what a
    /// trusted proxy reported); null for sessions from exchanged old
    /// tokens or from before this was recorded.
    #[schema(required = true)]
    client_address: Option<String>,
    /// When it was started (sign-in, sign-up, password change), Unix
    /// seconds.
    created_at: i64,
    /// Whether this is the session of the token that asked.
    current: bool,
    /// End of its absolute lifetime, Unix seconds.
    expires_at: i64,
    /// The session id (the tokens' `sid`).
    id: Uuid,
    /// When its live token was issued by a refresh, Unix seconds; null if
    /// never refreshed.
    #[schema(required = true)]
    refreshed_at: Option<i64>,
    /// The User-Agent header at sign-in, cut to 256 characters; null if
    /// none was sent.
    #[schema(max_length = 256, required = true)]
    user_agent: Option<String>,
}

impl SessionView {
    fn new(session: &SessionSummary, current: Option<SessionId>) -> Self {
        let secs = |ms: i64| ms.div_euclid(1000);
        SessionView {
            id: session.id.0,
            created_at: secs(session.created_at_ms),
            refreshed_at: (session.generation > 0).then(|| secs(session.issued_at_ms)),
            expires_at: secs(session.expires_at_ms),
            client_address: session.origin.client_address.clone(),
            user_agent: session.origin.user_agent.clone(),
            current: current == Some(session.id),
        }
    }
}

/// A page of the caller's sessions.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = SessionList)]
// Fields in alphabetical order: the keys keep the order authd has always
// answered them in.
pub(crate) struct SessionPage {
    /// An opaque cursor for the next page (`?cursor=`), valid only for the
    /// same user; null on the last page.
    #[schema(required = true)]
    next: Option<String>,
    /// The caller's live sessions (not revoked, lifetime not over), newest
    /// first.
    #[schema(max_items = 100)]
    sessions: Vec<SessionView>,
}

/// List the caller's live sessions
///
/// The live sessions of the bearer token's user, newest first, a page at a
/// time: where and when each was started, when it was last refreshed,
/// when it ends, and which is the caller's own. Revoked and ended sessions
/// are not listed. A cursor from another user, or one authd did not
/// write, is 422.
#[utoipa::path(
    get,
    path = "/sessions",
    operation_id = "listSessions",
    tag = "sessions",
    security(("bearerAuth" = [])),
    params(
        ("limit" = Option<u32>, Query, minimum = 1, maximum = 100,
            description = "Sessions per page (default 20)."),
        ("cursor" = Option<String>, Query, pattern = "^[A-Za-z0-9_-]{1,128}$",
            description = "The `next` of the previous page. A cursor of another user's, or one authd did not write, is 422."),
    ),
    responses(
        (status = 200, description = "A page of sessions.", body = SessionPage),
        (status = 401, response = r::AuthorizeRefused),
        (status = 422, response = r::InvalidRequest),
        (status = 503, response = r::Unavailable),
    )
)]
pub(crate) async fn list_sessions(
    request: Request<Incoming>,
    _: IpAddr,
    ctx: &AppContext,
) -> Reply {
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
    let page = SessionPage {
        sessions: sessions
            .iter()
            .map(|s| SessionView::new(s, who.session_id))
            .collect(),
        next,
    };
    Ok(json_response(StatusCode::OK, &page))
}

/// End one of the caller's sessions
///
/// Revokes one of the bearer token's user's live sessions (the caller's
/// own included), on every instance. Anything else is 404, never 403: the
/// answer does not confirm that a session exists.
#[utoipa::path(
    delete,
    path = "/sessions/{id}",
    operation_id = "deleteSession",
    tag = "sessions",
    security(("bearerAuth" = [])),
    params(("id" = Uuid, Path, description = "A session id from `GET /sessions`.")),
    responses(
        (status = 204, description = "Revoked."),
        (status = 401, response = r::AuthorizeRefused),
        (status = 404, response = r::SessionNotFound),
        (status = 503, response = r::Unavailable),
    )
)]
pub(crate) async fn delete_session(
    request: Request<Incoming>,
    client: IpAddr,
    ctx: &AppContext,
) -> Reply {
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

/// The per-account (and per-address) rate limit of one password check,
/// which `UserActor` asks once it has read the account: the key is the
/// account's case-folded e-mail, as at sign-in.
struct AccountLimit {
    limits: Option<Arc<RateLimits>>,
    client: IpAddr,
    /// The account whose check was admitted (then audited and settled).
    admitted: OnceLock<String>,
}

impl AccountLimit {
    fn new(ctx: &AppContext, client: IpAddr) -> Arc<Self> {
        Arc::new(AccountLimit {
            limits: ctx.rate_limits.clone(),
            client,
            admitted: OnceLock::new(),
        })
    }
}

impl PasswordGate for AccountLimit {
    fn admit(&self, account: &str) -> Result<(), u64> {
        if let Some(limits) = &self.limits {
            limits
                .check(self.client, account)
                .map_err(|limited| retry_after_secs(self.client, limited))?;
        }
        let _ = self.admitted.set(account.to_owned());
        Ok(())
    }
}

/// The answer of a password check that failed, or any other failure: a
/// wrong password is said to be one (no e-mail was sent to be wrong).
fn password_failure(failure: UserFailure) -> ApiError {
    match failure {
        UserFailure::BadCredentials => ApiError::WrongPassword,
        other => other.into(),
    }
}

/// Change the password; every session ends
///
/// Checks the current password (a wrong one is 401 and counts against the
/// account's sign-in rate limit), stores the new one (sign-up's rules),
/// ends every session of the user on every instance — the caller's too;
/// no earlier token can be refreshed, not even inside the grace window —
/// and answers the token of a new session. The change and the revocations
/// commit together.
#[utoipa::path(
    post,
    path = "/password",
    operation_id = "changePassword",
    tag = "accounts",
    security(("bearerAuth" = [])),
    request_body(content = PasswordChangeBody, description = "The current and the new password."),
    responses(
        (status = 200, description = "Changed; the access token of a new session.", body = TokenResponse),
        r::JsonBodyRefusals,
        (status = 401, response = r::PasswordRefused),
        (status = 429, response = r::RateLimited),
        (status = 503, response = r::Unavailable),
    )
)]
pub(crate) async fn change_password(
    request: Request<Incoming>,
    client: IpAddr,
    ctx: &AppContext,
) -> Reply {
    let who = caller(&request, ctx).await?;
    let origin = origin_of(&request, client);
    let body: PasswordChangeBody = read_json(request, &ctx.body).await?;
    let current = Password::parse_presented(body.current_password).map_err(|e| InvalidField {
        field: "current_password",
        ..e
    })?;
    let new = Password::parse(body.new_password).map_err(|e| InvalidField {
        field: "new_password",
        ..e
    })?;
    let limit = AccountLimit::new(ctx, client);
    let result = ctx
        .services
        .users
        .change_password(who.user_id, current, new, origin, limit.clone())
        .await;
    if let Some(account) = limit.admitted.get() {
        settle_password_check(ctx, Action::PasswordChange, &who, client, account, &result);
    }
    let issued = result.map_err(password_failure)?;
    Ok(json_response(StatusCode::OK, &TokenResponse::from(issued)))
}

/// The answer of an account deletion.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = AccountDeleted)]
pub(crate) struct AccountDeletedBody {
    #[schema(inline)]
    message: Deleted,
}

#[derive(Debug, Serialize, ToSchema)]
enum Deleted {
    #[serde(rename = "Account deleted.")]
    Done,
}

/// Delete the account and every session
///
/// Checks the password (a wrong one is 401 and counts against the
/// account's sign-in rate limit), then deletes the user and revokes every
/// session of theirs on every instance. The e-mail address can sign up
/// again.
#[utoipa::path(
    delete,
    path = "/account",
    operation_id = "deleteAccount",
    tag = "accounts",
    security(("bearerAuth" = [])),
    request_body(content = PasswordBody, description = "The account's password."),
    responses(
        (status = 200, description = "Deleted.", body = AccountDeletedBody),
        r::JsonBodyRefusals,
        (status = 401, response = r::PasswordRefused),
        (status = 429, response = r::RateLimited),
        (status = 503, response = r::Unavailable),
    )
)]
pub(crate) async fn delete_account(
    request: Request<Incoming>,
    client: IpAddr,
    ctx: &AppContext,
) -> Reply {
    let who = caller(&request, ctx).await?;
    let body: PasswordBody = read_json(request, &ctx.body).await?;
    let password = Password::parse_presented(body.password)?;
    let limit = AccountLimit::new(ctx, client);
    let result = ctx
        .services
        .users
        .delete_account(who.user_id, password, limit.clone())
        .await;
    if let Some(account) = limit.admitted.get() {
        settle_password_check(ctx, Action::AccountDelete, &who, client, account, &result);
    }
    result.map_err(password_failure)?;
    let body = AccountDeletedBody {
        message: Deleted::Done,
    };
    Ok(json_response(StatusCode::OK, &body))
}
