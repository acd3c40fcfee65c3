//! Audit events: one structured log line per security-relevant action a
//! client takes, and the counter `authd_auth_events_total{action,outcome}`
//! for every action, the high-volume ones included.
//!
//! An audit line is an INFO event with `event="audit"`, `action`,
//! `outcome`, `reason` (for failures), `user_id`, `session_id`, `client`
//! (the client address), `scope` (revocations) and, only when
//! `audit_log_emails` is on, `email`. It is logged by the HTTP handler,
//! inside the request's span, so it also carries the `request_id` (JSON
//! logs: `span.request_id`). Refreshes and grace-window duplicates run at
//! tens of thousands a second: they are only counted ([`count`], called
//! where `TokenActor` decides them), never logged.

use std::net::IpAddr;

use crate::domain::{SessionId, UserId};
use crate::telemetry::metrics as m;

/// What the client did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Action {
    SignUp,
    SignIn,
    Refresh,
    Revoke,
    /// A rotated token presented again: the session was revoked.
    TokenReuse,
    PasswordChange,
    SessionDelete,
    AccountDelete,
}

impl Action {
    pub(crate) fn label(self) -> &'static str {
        match self {
            Action::SignUp => "signup",
            Action::SignIn => "signin",
            Action::Refresh => "refresh",
            Action::Revoke => "revoke",
            Action::TokenReuse => "token_reuse",
            Action::PasswordChange => "password_change",
            Action::SessionDelete => "session_delete",
            Action::AccountDelete => "account_delete",
        }
    }
}

/// How it ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    Success,
    /// Refused: wrong credentials, a bad token, a rate limit, a taken
    /// e-mail... (`reason` says which).
    Failure,
    /// A refresh answered with the successor another request got.
    GraceDuplicate,
    /// A refresh of a revoked or ended session.
    Refused,
    /// Token reuse: the session was revoked.
    Detected,
}

impl Outcome {
    pub(crate) fn label(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::Failure => "failure",
            Outcome::GraceDuplicate => "grace_duplicate",
            Outcome::Refused => "refused",
            Outcome::Detected => "detected",
        }
    }
}

/// Counts one event (no log line).
pub(crate) fn count(action: Action, outcome: Outcome) {
    metrics::counter!(m::AUTH_EVENTS, "action" => action.label(), "outcome" => outcome.label())
        .increment(1);
}

/// One audit event.
#[derive(Debug, Clone, Default)]
pub(crate) struct AuditEvent<'a> {
    pub reason: Option<&'static str>,
    pub user_id: Option<UserId>,
    pub session_id: Option<SessionId>,
    pub client: Option<IpAddr>,
    pub scope: Option<&'static str>,
    /// Logged only when the [`Auditor`] allows e-mails.
    pub email: Option<&'a str>,
}

/// Writes audit events; whether e-mail addresses may appear is its one
/// setting (`audit_log_emails`, default off).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Auditor {
    pub log_emails: bool,
}

impl Auditor {
    /// Counts the event and logs it.
    pub(crate) fn record(&self, action: Action, outcome: Outcome, event: AuditEvent<'_>) {
        count(action, outcome);
        let email = event.email.filter(|_| self.log_emails);
        tracing::info!(
            event = "audit",
            action = action.label(),
            outcome = outcome.label(),
            reason = event.reason,
            user_id = event.user_id.map(tracing::field::display),
            session_id = event.session_id.map(tracing::field::display),
            client = event.client.map(tracing::field::display),
            scope = event.scope,
            email,
            "audit"
        );
    }
}
