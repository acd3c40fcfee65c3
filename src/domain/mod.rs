//! Domain types shared by every layer: e-mail addresses and passwords that
//! are valid by construction, user and session identities, the session state
//! machine, and the access-token format.
//!
//! Nothing here knows about HTTP, actors or databases; the other layers use
//! these types and never the other way round.

mod email;
mod legacy_token;
mod listing;
mod password;
mod results;
mod session;
mod token;
mod verified;

// What the tests and the binaries use; everything else is the crate's own.
pub use email::Email;
pub use password::Password;
pub use session::{Session, UserId};
pub use token::{Ed25519Key, SigningKeys, TokenCodec};

pub(crate) use email::SignInEmail;
pub(crate) use legacy_token::LegacyTokenCodec;
pub(crate) use listing::{SessionCursor, SessionOrigin, SessionSummary};
pub(crate) use results::{Authorized, IssuedToken, RevokeScope};
pub(crate) use session::{RefreshDecision, SessionChange, SessionId, SessionState};
pub(crate) use token::{Claims, TokenError};

/// A value from a client that does not satisfy a domain rule.
///
/// The message is safe to show to the client: it never echoes the value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct InvalidField {
    pub field: &'static str,
    pub reason: &'static str,
}

/// Milliseconds since the Unix epoch: the one clock every timestamp uses.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
