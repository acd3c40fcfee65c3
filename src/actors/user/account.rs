//! A signed-in user's password change and account deletion: each is one
//! message to `UserActor`, which reads the user's row once, lets the
//! caller's [`PasswordGate`] (the per-account rate limit) admit the check,
//! checks the password, and runs the store's one transaction (the password
//! or the user row, and the revocation of every session). The revoked
//! sessions reach `TokenActor`'s cache ([`TokenHandle::sessions_revoked`])
//! before the caller is answered.
//!
//! [`TokenHandle::sessions_revoked`]: crate::actors::token::TokenHandle::sessions_revoked

use super::{UserDeps, UserFailure};
use crate::domain::{now_ms, IssuedToken, Password, SessionOrigin, UserId};
use crate::store::UserRecord;

/// What the caller checks before a signed-in user's password is: its
/// per-account rate limit, keyed like sign-in's by the account's e-mail,
/// case-folded (known only once the user's row is read).
pub trait PasswordGate: Send + Sync {
    /// Whether the password of `account` may be checked now; when not,
    /// the whole seconds after which to retry.
    fn admit(&self, account: &str) -> Result<(), u64>;
}

impl UserDeps {
    /// Checks the current password, stores the new one (argon2id, on the
    /// hashing pool) and ends every session of the user in one
    /// transaction, then starts a new session for the caller.
    pub(super) async fn change_password(
        &self,
        user_id: UserId,
        current: Password,
        new: Password,
        origin: SessionOrigin,
        gate: &dyn PasswordGate,
    ) -> Result<IssuedToken, UserFailure> {
        let user = self.check_own_password(user_id, current, gate).await?;
        let password_hash = self.hasher.hash(new).await?;
        let changed = self
            .store
            .change_password(user.id, &password_hash, now_ms())
            .await?;
        // `None`: deleted since its password was checked.
        let revoked = changed.ok_or(UserFailure::BadCredentials)?;
        self.tokens.sessions_revoked(&revoked);
        Ok(self.tokens.issue(user.id, user.int_id, origin).await?)
    }

    /// Checks the password, then deletes the user and ends every session.
    pub(super) async fn delete_account(
        &self,
        user_id: UserId,
        password: Password,
        gate: &dyn PasswordGate,
    ) -> Result<(), UserFailure> {
        let user = self.check_own_password(user_id, password, gate).await?;
        let deleted = self.store.delete_account(user.id, now_ms()).await?;
        let revoked = deleted.ok_or(UserFailure::BadCredentials)?;
        self.tokens.sessions_revoked(&revoked);
        Ok(())
    }

    /// The signed-in user `user_id`, if `gate` admits the check and
    /// `password` is theirs. A wrong password answers no sooner than the
    /// failure floor after the request arrived, as at sign-in.
    async fn check_own_password(
        &self,
        user_id: UserId,
        password: Password,
        gate: &dyn PasswordGate,
    ) -> Result<UserRecord, UserFailure> {
        let started = tokio::time::Instant::now();
        // Deleted since its token was authorized: `AccountGone`.
        let user = self
            .store
            .find_user_by_id(user_id)
            .await?
            .ok_or(UserFailure::AccountGone)?;
        gate.admit(&user.email.to_lowercase())
            .map_err(|retry_after_secs| UserFailure::RateLimited { retry_after_secs })?;
        let checked = self.verify_known(user, password).await;
        self.floored(started, checked).await
    }
}
