//! Signing up and signing in, and the password checks they share with
//! `account`: authd's argon2id hashes, and the old service's bcrypt hashes
//! of accounts not yet adopted (adopted, and re-hashed, at their first
//! successful sign-in).

use super::{UserDeps, UserFailure};
use crate::domain::{Email, IssuedToken, Password, SessionOrigin, SignInEmail, UserId};
use crate::store::{LegacyMatch, LegacyStore, LegacyUser, NewUser, StoreError, UserRecord};

impl UserDeps {
    pub(super) async fn sign_up(
        &self,
        email: Email,
        password: Password,
        origin: SessionOrigin,
    ) -> Result<IssuedToken, UserFailure> {
        // Hash first, even if the address turns out to be taken: the unique
        // index is the one authority on that (two sign-ups can race), and the
        // answer takes the same time either way.
        let password_hash = self.hasher.hash(password).await?;
        if let Some(legacy) = self.store.legacy() {
            // An address of the old service's is its owner's, who signs in.
            if legacy.legacy_email_count(email.as_str()).await? > 0 {
                return Err(UserFailure::EmailTaken);
            }
        }
        let user = NewUser {
            id: UserId::new_random(),
            email,
            password_hash,
        };
        // The user and its first session in one transaction: a sign-up that
        // failed (503) stored nothing, so its retry does not find the
        // address taken.
        let first = self.tokens.first_session(origin);
        let session = self.store.sign_up(&user, &first).await?;
        Ok(self.tokens.issue_committed(&session)?)
    }

    /// Checks the credentials and starts a session. Every wrong-credentials
    /// answer waits until `signin_failure_floor` after the request arrived,
    /// so an unknown e-mail (no hash at all), a wrong argon2id password
    /// (~20 ms) and a wrong bcrypt password of a not-yet-upgraded old
    /// account (~215 ms) cannot be told apart by time, and no CPU is spent
    /// to make them so.
    pub(super) async fn sign_in(
        &self,
        email: SignInEmail,
        password: Password,
        origin: SessionOrigin,
    ) -> Result<IssuedToken, UserFailure> {
        let started = tokio::time::Instant::now();
        let checked = self.check_credentials(&email, password).await;
        let user = self.floored(started, checked).await?;
        Ok(self.tokens.issue(user.id, user.int_id, origin).await?)
    }

    /// A wrong-credentials answer waits until `signin_failure_floor` after
    /// `started`, wherever a password is checked (sign-in, password change,
    /// account deletion).
    pub(super) async fn floored<T>(
        &self,
        started: tokio::time::Instant,
        checked: Result<T, UserFailure>,
    ) -> Result<T, UserFailure> {
        if matches!(checked, Err(UserFailure::BadCredentials)) {
            tokio::time::sleep_until(started + self.failure_floor).await;
        }
        checked
    }

    /// The account `email` and `password` open, or `BadCredentials`.
    async fn check_credentials(
        &self,
        email: &SignInEmail,
        password: Password,
    ) -> Result<UserRecord, UserFailure> {
        // authd's own accounts (adopted ones included). Spelt exactly as typed
        // first: two old accounts whose e-mails differ only by case are both
        // adopted under their own spelling.
        let mut user = self.store.find_user_by_email(email.typed()).await?;
        if user.is_none() && email.folded() != email.typed() {
            user = self.store.find_user_by_email(email.folded()).await?;
        }
        if let Some(user) = user {
            return self.verify_known(user, password).await;
        }
        let Some(legacy) = self.store.legacy() else {
            return Err(UserFailure::BadCredentials);
        };
        let old = match legacy.legacy_find(email.typed(), email.folded()).await? {
            LegacyMatch::One(old) => old,
            LegacyMatch::None => return Err(UserFailure::BadCredentials),
            LegacyMatch::Ambiguous(ids) => {
                tracing::warn!(
                    event = "legacy_email_ambiguous",
                    legacy_ids = ?ids,
                    "sign-in e-mail matches several old accounts by case only and none exactly; \
                     refused (see `authd legacy-report`)"
                );
                return Err(UserFailure::BadCredentials);
            }
        };
        if let Some(adopted) = legacy.adopted_user(old.id).await? {
            return self.verify_known(adopted, password).await;
        }
        self.adopt_at_sign_in(legacy, old, password).await
    }

    /// An old account not adopted yet, signed in with its bcrypt password:
    /// adopted with an argon2id hash (bcrypt is not consulted for it again).
    async fn adopt_at_sign_in(
        &self,
        legacy: &dyn LegacyStore,
        old: LegacyUser,
        password: Password,
    ) -> Result<UserRecord, UserFailure> {
        if !old.is_active
            || !self
                .hasher
                .verify_bcrypt(password.clone(), old.hashed_password.clone())
                .await?
        {
            return Err(UserFailure::BadCredentials);
        }
        let password_hash = self.hasher.hash(password).await?;
        let folded = old.email.trim().to_lowercase();
        let shared = legacy.legacy_email_count(&folded).await? > 1;
        let spelling = if shared {
            old.email.as_str()
        } else {
            folded.as_str()
        };
        let user = legacy
            .adopt(UserId::new_random(), spelling, &password_hash, old.id)
            .await
            .map_err(|e| match e {
                StoreError::EmailTaken => {
                    tracing::warn!(
                        event = "legacy_email_taken",
                        legacy_id = old.id,
                        "an old account's e-mail belongs to another authd account; not adopted"
                    );
                    UserFailure::BadCredentials
                }
                other => other.into(),
            })?;
        metrics::counter!(crate::telemetry::metrics::LEGACY_ADOPTIONS, "via" => "signin")
            .increment(1);
        tracing::info!(
            event = "legacy_account_adopted",
            user_id = %user.id,
            legacy_id = old.id,
            "old account adopted at sign-in; password re-hashed with argon2id"
        );
        Ok(user)
    }

    /// Verifies a password against an authd account: its argon2id hash, or,
    /// for an account adopted through a token exchange whose password is
    /// still the old bcrypt hash, that hash once (then re-hashed with
    /// argon2id).
    pub(super) async fn verify_known(
        &self,
        user: UserRecord,
        password: Password,
    ) -> Result<UserRecord, UserFailure> {
        if !user.password_hash.is_empty() {
            let matched = self
                .hasher
                .verify(password, user.password_hash.clone())
                .await?;
            return if matched {
                Ok(user)
            } else {
                Err(UserFailure::BadCredentials)
            };
        }
        let (Some(legacy), Some(legacy_id)) = (self.store.legacy(), user.legacy_id) else {
            return Err(UserFailure::BadCredentials);
        };
        if user.legacy_tokens_closed {
            // authd's state wins: after "log out everywhere" none of the old
            // service's credentials (tokens or bcrypt hash) opens the account.
            return Err(UserFailure::BadCredentials);
        }
        let Some(old) = legacy.legacy_user(legacy_id).await?.filter(|o| o.is_active) else {
            return Err(UserFailure::BadCredentials);
        };
        if !self
            .hasher
            .verify_bcrypt(password.clone(), old.hashed_password)
            .await?
        {
            return Err(UserFailure::BadCredentials);
        }
        let password_hash = self.hasher.hash(password).await?;
        legacy.upgrade_password(user.id, &password_hash).await?;
        Ok(UserRecord {
            password_hash,
            ..user
        })
    }
}
