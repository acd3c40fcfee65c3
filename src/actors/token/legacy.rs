//! `TokenActor`'s handling of the old FastAPI service's tokens, so that
//! nobody is logged out by the cut-over.
//!
//! - **Authorize**: an old token is accepted while it is unexpired, still
//!   the user's row in the old `access_tokens` table (a row the old service
//!   deleted stops working at once: the table is read on every use), not
//!   yet exchanged, and its account's old tokens have not been closed by
//!   authd ("log out everywhere"). The integer id answered is the old row's.
//! - **Exchange** (`/refresh`): the same checks, `exp` may have passed by up
//!   to `session_ttl`; the account is adopted if it was not yet, a session
//!   is started, and the exchange is recorded (by the token's SHA-256)
//!   once. Presenting the old token again is treated like a rotated token:
//!   inside the grace window the same successor (two tabs), after it, or
//!   once that successor was refreshed, reuse: the session is revoked.
//!
//! The messages (`TokenMsg::LegacyAuthorize`, `LegacyExchange`,
//! `LegacyRevoke`) arrive through `TokenActor`'s mailbox like every other
//! token request; the actor hands each to a task (they read the database),
//! so its own loop never waits on I/O.

use std::future::Future;
use std::sync::Arc;

use sha2::{Digest, Sha256};

use super::{Reply, TokenFailure, TokenHandle, TokenRefusal, TokenState};
use crate::domain::{
    now_ms, Authorized, IssuedToken, LegacyTokenCodec, Session, SessionOrigin, TokenError, UserId,
};
use crate::store::{LegacyStore, Store, StoreError, UserRecord};

/// What the legacy flows need; shared by every incarnation of the actor.
pub struct LegacyTokens {
    pub codec: LegacyTokenCodec,
    pub store: Arc<dyn Store>,
    pub session_ttl_ms: i64,
    pub refresh_grace_ms: i64,
}

impl LegacyTokens {
    fn legacy(&self) -> Result<&dyn LegacyStore, TokenFailure> {
        self.store
            .legacy()
            .ok_or(TokenFailure::Refused(TokenRefusal::Invalid))
    }

    /// Checks signature, the old table's row and authd's own state of the
    /// account; returns the old user id and authd's user if adopted.
    async fn check(
        &self,
        token: &str,
        allow_expired: bool,
    ) -> Result<(i64, Option<UserRecord>), TokenFailure> {
        let legacy = self.legacy()?;
        let claims = self.codec.verify(token, allow_expired)?;
        if allow_expired && claims.exp.saturating_mul(1000) + self.session_ttl_ms < now_ms() {
            return Err(TokenError::Expired.into());
        }
        // The integer comes from the old row, never from the claim alone.
        match legacy.legacy_token_owner(token).await? {
            Some(owner) if owner == claims.user_id => {}
            _ => return Err(TokenFailure::Refused(TokenRefusal::Invalid)),
        }
        let adopted = legacy.adopted_user(claims.user_id).await?;
        if adopted.as_ref().is_some_and(|u| u.legacy_tokens_closed) {
            return Err(TokenFailure::Refused(TokenRefusal::Revoked));
        }
        Ok((claims.user_id, adopted))
    }

    async fn authorize(&self, token: &str) -> Result<Authorized, TokenFailure> {
        let (old_id, adopted) = self.check(token, false).await?;
        if self.legacy()?.exchanged(&digest(token)).await?.is_some() {
            // Exchanged tokens live on only as their successor.
            return Err(TokenFailure::Refused(TokenRefusal::Invalid));
        }
        let user = match adopted {
            Some(user) => user,
            None => self.adopt(old_id).await?,
        };
        let claims = self.codec.verify(token, false)?;
        Ok(Authorized {
            user_id: user.id,
            user_int_id: user.int_id,
            session_id: None,
            expires_at: claims.exp,
        })
    }

    async fn exchange(
        &self,
        tokens: &TokenHandle,
        token: &str,
    ) -> Result<IssuedToken, TokenFailure> {
        let (old_id, adopted) = self.check(token, true).await?;
        let legacy = self.legacy()?;
        let sha = digest(token);
        if let Some(done) = legacy.exchanged(&sha).await? {
            return self.again(tokens, done).await;
        }
        let user = match adopted {
            Some(user) => user,
            None => self.adopt(old_id).await?,
        };
        let session = tokens
            .start_session(user.id, user.int_id, SessionOrigin::default())
            .await?;
        match legacy.record_exchange(&sha, session.id, now_ms()).await? {
            None => {
                metrics::counter!(crate::telemetry::metrics::LEGACY_EXCHANGES).increment(1);
                tokens.sign_session(&session)
            }
            Some(earlier) => {
                // Another request (tab, instance) exchanged it first: this
                // session is surplus; answer as the duplicate we are.
                let _ = tokens.revoke_session(session.id).await;
                self.again(tokens, earlier).await
            }
        }
    }

    async fn revoke(&self, tokens: &TokenHandle, token: &str) -> Result<(), TokenFailure> {
        let (old_id, adopted) = self.check(token, true).await?;
        let legacy = self.legacy()?;
        let sha = digest(token);
        let session = match legacy.exchanged(&sha).await? {
            Some(done) => done.session_id,
            None => {
                let user = match adopted {
                    Some(user) => user,
                    None => self.adopt(old_id).await?,
                };
                let session = tokens
                    .start_session(user.id, user.int_id, SessionOrigin::default())
                    .await?;
                match legacy.record_exchange(&sha, session.id, now_ms()).await? {
                    None => session.id,
                    Some(earlier) => {
                        let _ = tokens.revoke_session(session.id).await;
                        earlier.session_id
                    }
                }
            }
        };
        // Idempotent, like revoking an authd session twice.
        tokens.revoke_session(session).await
    }

    /// The old token presented after its exchange: the same successor
    /// inside the grace window while the successor is still the live
    /// generation; otherwise reuse, and the session ends.
    async fn again(
        &self,
        tokens: &TokenHandle,
        done: crate::store::LegacyExchange,
    ) -> Result<IssuedToken, TokenFailure> {
        let now = now_ms();
        let session: Option<Session> = self.store.load_session(done.session_id).await?;
        let Some(session) = session.filter(|s| s.is_live(now)) else {
            return Err(TokenFailure::Refused(TokenRefusal::Revoked));
        };
        if session.generation == 0 && now - done.exchanged_at_ms < self.refresh_grace_ms {
            return tokens.sign_session(&session);
        }
        metrics::counter!(crate::telemetry::metrics::REUSE_DETECTED).increment(1);
        tracing::warn!(
            event = "token_reuse_detected",
            session_id = %session.id,
            user_id = %session.user_id,
            legacy = true,
            "an exchanged old token was presented again; revoking its session"
        );
        tokens.revoke_session(session.id).await?;
        Err(TokenFailure::Refused(TokenRefusal::Reused))
    }

    /// Adopts old account `old_id` without its password (which stays the
    /// old bcrypt hash until the next successful sign-in).
    async fn adopt(&self, old_id: i64) -> Result<UserRecord, TokenFailure> {
        let legacy = self.legacy()?;
        let old = legacy
            .legacy_user(old_id)
            .await?
            .filter(|u| u.is_active)
            .ok_or(TokenFailure::Refused(TokenRefusal::Invalid))?;
        let folded = old.email.trim().to_lowercase();
        let adopted = match legacy
            .adopt(UserId::new_random(), &folded, "", old.id)
            .await
        {
            Err(StoreError::EmailTaken) => {
                // Its case-folded e-mail is another account's: keep the
                // old spelling (see README, "Replacing the FastAPI service").
                legacy
                    .adopt(UserId::new_random(), &old.email, "", old.id)
                    .await
            }
            other => other,
        };
        let user = adopted.map_err(|e| match e {
            StoreError::EmailTaken => TokenFailure::Refused(TokenRefusal::Invalid),
            other => other.into(),
        })?;
        metrics::counter!(crate::telemetry::metrics::LEGACY_ADOPTIONS, "via" => "token")
            .increment(1);
        Ok(user)
    }
}

fn digest(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}

impl TokenState {
    pub(super) fn legacy_authorize(&mut self, token: String, reply: Reply<Authorized>) {
        self.on_legacy(
            reply,
            |legacy, _| async move { legacy.authorize(&token).await },
        );
    }

    pub(super) fn legacy_exchange(&mut self, token: String, reply: Reply<IssuedToken>) {
        self.on_legacy(reply, |legacy, tokens| async move {
            legacy.exchange(&tokens, &token).await
        });
    }

    /// `/revoke` (`DELETE /auth/revoke`) with an old token: it is exchanged
    /// for a session that is revoked at once, so the token and any
    /// successor are refused from then on.
    pub(super) fn legacy_revoke(&mut self, token: String, reply: Reply<()>) {
        self.on_legacy(reply, |legacy, tokens| async move {
            legacy.revoke(&tokens, &token).await
        });
    }

    /// Runs `work` in a task of its own and answers with its result.
    fn on_legacy<T, F, W>(&self, reply: Reply<T>, work: W)
    where
        T: Send + 'static,
        F: Future<Output = Result<T, TokenFailure>> + Send + 'static,
        W: FnOnce(Arc<LegacyTokens>, TokenHandle) -> F,
    {
        // Without the old tables the handle sends no legacy requests;
        // dropping one answers its caller with 503.
        let Some(legacy) = &self.deps.legacy else {
            return;
        };
        let answer = work(Arc::clone(legacy), TokenHandle::new(&self.deps));
        tokio::spawn(async move {
            let _ = reply.send(answer.await);
        });
    }
}
