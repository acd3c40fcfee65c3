//! [`TokenHandle`]: how the HTTP layer and `UserActor` reach `TokenActor`.
//!
//! Each method checks the token's signature here, in the caller's task
//! (so the actor's loop never spends time on cryptography and only sees
//! claims of tokens authd signed), sends one [`TokenMsg`] and waits for its
//! answer. An old service's token goes to the legacy handling instead.

use std::sync::Arc;

use super::legacy::LegacyRequest;
use super::{sign, Reply, SessionOp, SessionRequest, TokenDeps, TokenFailure, TokenMsg};
use crate::actors::ChildSlot;
use crate::domain::{
    Authorized, Claims, IssuedToken, LegacyTokenCodec, RevokeScope, Session, SessionId,
    SessionOrigin, UserId,
};
use crate::keys::KeyRing;
#[cfg(feature = "test-hooks")]
use crate::store::Store;

/// How the HTTP layer and `UserActor` talk to `TokenActor`. Token signatures
/// are checked here, in the caller's task, so the actor only ever sees
/// claims of tokens authd itself signed.
#[derive(Clone)]
pub struct TokenHandle {
    /// Also used by the account management calls (`manage`).
    pub(super) slot: Arc<ChildSlot<TokenMsg>>,
    keys: Arc<KeyRing>,
    /// Whether old service's tokens are recognised (its tables are read).
    legacy: bool,
    /// For the test hook that silences this instance's change announcements.
    #[cfg(feature = "test-hooks")]
    store: Arc<dyn Store>,
    /// For the test hooks that watch the session cache.
    #[cfg(feature = "test-hooks")]
    cache: Arc<crate::sessions::SessionCache>,
}

impl TokenHandle {
    pub fn new(deps: &TokenDeps) -> Self {
        TokenHandle {
            slot: Arc::clone(&deps.slot),
            keys: Arc::clone(&deps.keys),
            legacy: deps.legacy.is_some(),
            #[cfg(feature = "test-hooks")]
            store: Arc::clone(&deps.store),
            #[cfg(feature = "test-hooks")]
            cache: Arc::clone(&deps.cache),
        }
    }

    /// Sends an old service's token to `TokenActor`'s legacy handling;
    /// `None` when `token` is not one (or they are not read here).
    async fn legacy_call<T: Send + 'static>(
        &self,
        token: &str,
        request: impl FnOnce(String, Reply<T>) -> LegacyRequest,
    ) -> Option<Result<T, TokenFailure>> {
        if !(self.legacy && LegacyTokenCodec::is_legacy_shape(token)) {
            return None;
        }
        let token = token.to_owned();
        let answer = self
            .slot
            .call(|reply| TokenMsg::Legacy(request(token, reply)))
            .await;
        Some(answer.map_err(TokenFailure::from).and_then(|r| r))
    }

    /// Starts a session (durably) and returns it unsigned.
    pub async fn start_session(
        &self,
        user_id: UserId,
        user_int_id: i64,
        origin: SessionOrigin,
    ) -> Result<Session, TokenFailure> {
        self.slot
            .call(|reply| TokenMsg::Issue {
                user_id,
                user_int_id,
                origin,
                reply,
            })
            .await?
    }

    /// The live token of `session`, signed with the current key.
    pub fn sign_session(&self, session: &Session) -> Result<IssuedToken, TokenFailure> {
        sign(&self.keys.codec(), session)
    }

    /// Revokes session `id` durably.
    pub async fn revoke_session(&self, id: SessionId) -> Result<(), TokenFailure> {
        self.slot
            .call(|reply| TokenMsg::RevokeSession { id, reply })
            .await?
    }

    /// The public signing keys as a JWK Set (empty for HS256).
    pub fn jwks(&self) -> serde_json::Value {
        self.keys.codec().jwks().clone()
    }

    pub async fn issue(
        &self,
        user_id: UserId,
        user_int_id: i64,
        origin: SessionOrigin,
    ) -> Result<IssuedToken, TokenFailure> {
        let session = self.start_session(user_id, user_int_id, origin).await?;
        self.sign_session(&session)
    }

    /// Rotates the session of `token`; an expired token is accepted while
    /// its session lives. An old service's token is exchanged for a
    /// session of its own.
    pub async fn refresh(&self, token: &str) -> Result<IssuedToken, TokenFailure> {
        let exchange = |token, reply| LegacyRequest::Exchange { token, reply };
        if let Some(answer) = self.legacy_call(token, exchange).await {
            return answer;
        }
        let claims = self.keys.verify(token, true).await?;
        let session = self.session_call(claims, SessionOp::Refresh).await?;
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
        if scope == RevokeScope::Session {
            let revoke = |token, reply| LegacyRequest::Revoke { token, reply };
            if let Some(answer) = self.legacy_call(token, revoke).await {
                return answer.map(|()| None);
            }
        }
        let claims = self.keys.verify(token, true).await?;
        let who = Some((claims.sub, claims.sid));
        match scope {
            RevokeScope::Session => self.session_call(claims, SessionOp::Revoke).await,
            RevokeScope::Others => self.session_call(claims, SessionOp::RevokeOthers).await,
            RevokeScope::All => self.session_call(claims, SessionOp::RevokeAll).await,
        }
        .map(|()| who)
    }

    /// The user and session a token of authd's names, if its signature is
    /// good (expired or not): who an audit event is about.
    pub async fn identify(&self, token: &str) -> Option<(UserId, SessionId)> {
        let claims = self.keys.verify(token, true).await.ok()?;
        Some((claims.sub, claims.sid))
    }

    pub async fn authorize(&self, token: &str) -> Result<Authorized, TokenFailure> {
        let authorize = |token, reply| LegacyRequest::Authorize { token, reply };
        if let Some(answer) = self.legacy_call(token, authorize).await {
            return answer;
        }
        let claims = self.keys.verify(token, false).await?;
        self.session_call(claims, SessionOp::Authorize).await
    }

    async fn session_call<T: Send + 'static>(
        &self,
        claims: Claims,
        op: impl FnOnce(Reply<T>) -> SessionOp,
    ) -> Result<T, TokenFailure> {
        self.slot
            .call(|reply| {
                TokenMsg::Session(SessionRequest {
                    claims,
                    op: op(reply),
                    attempts: 0,
                    loaded: None,
                })
            })
            .await?
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
