//! [`TokenHandle`]: how the HTTP layer and `UserActor` reach `TokenActor`.
//!
//! Each method checks the token's signature here, in the caller's task
//! (so the actor's loop never spends time on cryptography and only sees
//! claims of tokens authd signed), sends the one [`TokenMsg`] of its name
//! and waits for its answer. An old service's token goes to the `Legacy…`
//! message of the operation instead.

use std::sync::Arc;

use super::{sign, Reply, SessionAsk, TokenDeps, TokenFailure, TokenMsg};
use crate::actors::ChildSlot;
use crate::domain::{
    now_ms, Authorized, IssuedToken, LegacyTokenCodec, RevokeScope, Session, SessionId,
    SessionOrigin, UserId,
};
use crate::keys::KeyRing;
use crate::sessions::SessionCache;
use crate::store::NewSession;
#[cfg(feature = "test-hooks")]
use crate::store::Store;

/// How the HTTP layer and `UserActor` talk to `TokenActor`. Token signatures
/// are checked here, in the caller's task, so the actor only ever sees
/// claims of tokens authd itself signed.
#[derive(Clone)]
pub struct TokenHandle {
    slot: Arc<ChildSlot<TokenMsg>>,
    keys: Arc<KeyRing>,
    /// `TokenActor`'s cache, for the revocations of account transactions
    /// (`sessions_revoked`).
    pub(super) cache: Arc<SessionCache>,
    /// Whether old service's tokens are recognised (its tables are read).
    legacy: bool,
    /// How long a session lasts (a sign-up's first one is made here).
    session_ttl_ms: i64,
    /// For the test hook that silences this instance's change announcements.
    #[cfg(feature = "test-hooks")]
    store: Arc<dyn Store>,
}

impl TokenHandle {
    pub fn new(deps: &TokenDeps) -> Self {
        TokenHandle {
            slot: Arc::clone(&deps.slot),
            keys: Arc::clone(&deps.keys),
            cache: Arc::clone(&deps.cache),
            legacy: deps.legacy.is_some(),
            session_ttl_ms: deps.session_ttl_ms,
            #[cfg(feature = "test-hooks")]
            store: Arc::clone(&deps.store),
        }
    }

    /// Sends the message `build` makes and waits for its answer.
    pub(super) async fn call<T: Send + 'static>(
        &self,
        build: impl FnOnce(Reply<T>) -> TokenMsg,
    ) -> Result<T, TokenFailure> {
        self.slot.call(build).await?
    }

    /// Whether `token` is an old service's (and those are read here).
    fn is_legacy(&self, token: &str) -> bool {
        self.legacy && LegacyTokenCodec::is_legacy_shape(token)
    }

    /// Starts a session (durably) and returns it unsigned.
    pub async fn start_session(
        &self,
        user_id: UserId,
        user_int_id: i64,
        origin: SessionOrigin,
    ) -> Result<Session, TokenFailure> {
        self.call(|reply| TokenMsg::StartSession {
            user_id,
            user_int_id,
            origin,
            reply,
        })
        .await
    }

    /// The live token of `session`, signed with the current key.
    pub fn sign_session(&self, session: &Session) -> Result<IssuedToken, TokenFailure> {
        sign(&self.keys.codec(), session)
    }

    /// Starts a session and signs its first token.
    pub async fn issue(
        &self,
        user_id: UserId,
        user_int_id: i64,
        origin: SessionOrigin,
    ) -> Result<IssuedToken, TokenFailure> {
        let session = self.start_session(user_id, user_int_id, origin).await?;
        self.sign_session(&session)
    }

    /// The first session of a user signing up, starting now: the store
    /// writes it with the user's row, in one transaction
    /// (`Store::sign_up`), outside the session writer.
    pub fn first_session(&self, origin: SessionOrigin) -> NewSession {
        let now = now_ms();
        NewSession {
            id: SessionId::new_random(),
            issued_at_ms: now,
            expires_at_ms: now.saturating_add(self.session_ttl_ms),
            origin,
        }
    }

    /// A session committed outside the session writer (a sign-up's, with
    /// its user's row): cached, as the writer's creates are once durable,
    /// and its first token signed. No message: the cache takes committed
    /// states from any task (see `SessionCache`).
    pub fn issue_committed(&self, session: &Session) -> Result<IssuedToken, TokenFailure> {
        self.cache.insert_committed(session);
        self.sign_session(session)
    }

    /// Revokes session `id` durably.
    pub async fn revoke_session(&self, id: SessionId) -> Result<(), TokenFailure> {
        self.call(|reply| TokenMsg::RevokeSession { id, reply })
            .await
    }

    /// The public signing keys as a JWK Set (empty for HS256).
    pub fn jwks(&self) -> serde_json::Value {
        self.keys.codec().jwks().clone()
    }

    /// Rotates the session of `token`; an expired token is accepted while
    /// its session lives. An old service's token is exchanged for a
    /// session of its own.
    pub async fn refresh(&self, token: &str) -> Result<IssuedToken, TokenFailure> {
        if self.is_legacy(token) {
            let token = token.to_owned();
            return self
                .call(|reply| TokenMsg::LegacyExchange { token, reply })
                .await;
        }
        let claims = self.keys.verify(token, true).await?;
        let session = self
            .call(|reply| TokenMsg::Refresh(SessionAsk::new(claims, reply)))
            .await?;
        sign(&self.keys.codec(), &session)
    }

    /// Revokes the session of `token` (expired tokens accepted), with
    /// [`RevokeScope::Others`] every other session of its user, with
    /// [`RevokeScope::All`] every session of its user.
    /// Answers the token's user and session (`None` for an old service's
    /// token).
    pub async fn revoke(
        &self,
        token: &str,
        scope: RevokeScope,
    ) -> Result<Option<(UserId, SessionId)>, TokenFailure> {
        if scope == RevokeScope::Session && self.is_legacy(token) {
            let token = token.to_owned();
            self.call(|reply| TokenMsg::LegacyRevoke { token, reply })
                .await?;
            return Ok(None);
        }
        let claims = self.keys.verify(token, true).await?;
        let who = Some((claims.sub, claims.sid));
        let message = match scope {
            RevokeScope::Session => TokenMsg::Revoke,
            RevokeScope::Others => TokenMsg::RevokeOthers,
            RevokeScope::All => TokenMsg::RevokeAll,
        };
        self.call(|reply| message(SessionAsk::new(claims, reply)))
            .await?;
        Ok(who)
    }

    /// The user and session a token of authd's names, if its signature is
    /// good (expired or not): who an audit event is about.
    pub async fn identify(&self, token: &str) -> Option<(UserId, SessionId)> {
        let claims = self.keys.verify(token, true).await.ok()?;
        Some((claims.sub, claims.sid))
    }

    pub async fn authorize(&self, token: &str) -> Result<Authorized, TokenFailure> {
        if self.is_legacy(token) {
            let token = token.to_owned();
            return self
                .call(|reply| TokenMsg::LegacyAuthorize { token, reply })
                .await;
        }
        let claims = self.keys.verify(token, false).await?;
        self.call(|reply| TokenMsg::Authorize(SessionAsk::new(claims, reply)))
            .await
    }

    /// Test hook: make the current `TokenActor` panic.
    #[cfg(feature = "test-hooks")]
    pub fn crash(&self) -> bool {
        self.slot.cast(TokenMsg::Crash)
    }

    /// Test hook: while `on`, the changes this instance commits are not
    /// announced to the other instances (every notification lost); they
    /// learn of them only by their periodic catch-up read.
    #[cfg(feature = "test-hooks")]
    pub fn drop_notifications(&self, on: bool) {
        self.store.drop_notifications(on);
    }

    /// Test hook: how many catch-up reads of the change log (and resyncs)
    /// this instance's cache has folded in.
    #[cfg(feature = "test-hooks")]
    pub fn catch_ups(&self) -> u64 {
        self.cache.catch_ups()
    }

    /// Test hook: sessions in this instance's cache.
    #[cfg(feature = "test-hooks")]
    pub fn cached_sessions(&self) -> usize {
        self.cache.len()
    }
}
