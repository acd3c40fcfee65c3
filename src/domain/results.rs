//! What the token service answers: the results a caller (the HTTP layer
//! above all) gets back from `TokenHandle` and `UserHandle`, and the scope
//! of a revocation it asks for. Plain data, so that `http` depends on these
//! and not on the actors' internals.

use super::{SessionId, UserId};

/// A freshly issued access token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuedToken {
    pub access_token: String,
    /// Seconds until the token's `exp`.
    pub expires_in: i64,
    /// Whose session it belongs to (for audit events).
    pub user_id: UserId,
    pub session_id: SessionId,
}

/// What `/authorize` learns about a valid token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authorized {
    pub user_id: UserId,
    /// The user's integer id (the old service's id for adopted accounts).
    pub user_int_id: i64,
    /// `None` for an old service's token (it belongs to no authd session).
    pub session_id: Option<SessionId>,
    /// The token's `exp` (Unix seconds).
    pub expires_at: i64,
}

/// What `/revoke` revokes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RevokeScope {
    /// The token's session (the default).
    #[default]
    Session,
    /// Every session of the token's user except the token's own, on every
    /// instance ("sign out my other devices").
    Others,
    /// Every session of the token's user, on every instance.
    All,
}
