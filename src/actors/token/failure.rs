//! How a token request fails: [`TokenFailure`] (a refusal or a fault) and
//! [`TokenRefusal`] (only the refusals, the failures that may leave as 401).

use crate::actors::CallError;
use crate::domain::TokenError;
use crate::fault::Fault;
use crate::store::StoreError;

/// Why a token request failed: the token was refused (the client's
/// problem, 401), or the service failed ([`Fault`]: 503 or 500).
#[derive(Debug, Clone, thiserror::Error)]
pub enum TokenFailure {
    #[error(transparent)]
    Refused(#[from] TokenRefusal),
    #[error("token service {0}")]
    Fault(#[from] Fault),
}

/// The ways a token can be refused: the only token failures that may
/// leave as 401, so a fault (an unavailable store above all) cannot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenRefusal {
    #[error("the token is invalid")]
    Invalid,
    #[error("the token has expired")]
    Expired,
    #[error("the session has been revoked or has ended")]
    Revoked,
    #[error("this token was already used; the session has been revoked")]
    Reused,
}

impl TokenFailure {
    /// The refusal, or the fault that is not one.
    pub fn refusal(self) -> Result<TokenRefusal, Fault> {
        match self {
            TokenFailure::Refused(r) => Ok(r),
            TokenFailure::Fault(f) => Err(f),
        }
    }
}

impl From<TokenError> for TokenFailure {
    fn from(e: TokenError) -> Self {
        match e {
            TokenError::Expired => TokenFailure::Refused(TokenRefusal::Expired),
            TokenError::Invalid | TokenError::UnknownKey => {
                TokenFailure::Refused(TokenRefusal::Invalid)
            }
        }
    }
}

impl From<CallError> for TokenFailure {
    fn from(e: CallError) -> Self {
        TokenFailure::Fault(e.into())
    }
}

impl From<StoreError> for TokenFailure {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Fault(f) => TokenFailure::Fault(f),
            // Session writes never insert users: a store bug.
            StoreError::EmailTaken => TokenFailure::Fault(Fault::internal(e)),
        }
    }
}
