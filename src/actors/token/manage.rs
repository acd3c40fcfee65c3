//! `TokenActor`'s handling of a user managing their own sessions: listing
//! the live ones ([`list_sessions`](TokenState::list_sessions)) and
//! revoking one of them
//! ([`revoke_own_session`](TokenState::revoke_own_session)).
//!
//! The caller has already been authorized (its token's user is the
//! `user_id` of each request). As everywhere in `TokenActor`, the loop
//! never awaits I/O: reads run in tasks of their own; revoking a session
//! goes through the session writer like any revocation.
//!
//! A password change and an account deletion revoke the user's sessions
//! in the store's own transaction (together with the password or the user
//! row), run by `UserActor`, which checks the password; their revocations
//! reach this cache through [`TokenHandle::sessions_revoked`] before the
//! caller is answered, and the other instances' through the change feed.

use std::sync::Arc;

use super::{
    load_into_cache, Reply, TokenFailure, TokenHandle, TokenMsg, TokenRefusal, TokenState,
};
use crate::domain::{now_ms, SessionChange, SessionCursor, SessionId, SessionSummary, UserId};

impl TokenHandle {
    pub async fn list_sessions(
        &self,
        user_id: UserId,
        after: Option<SessionCursor>,
        limit: usize,
    ) -> Result<Vec<SessionSummary>, TokenFailure> {
        self.call(|reply| TokenMsg::ListSessions {
            user_id,
            after,
            limit,
            reply,
        })
        .await
    }

    /// Whether `id` was a live session of `user_id` (now revoked).
    pub async fn revoke_own_session(
        &self,
        user_id: UserId,
        id: SessionId,
    ) -> Result<bool, TokenFailure> {
        self.call(|reply| TokenMsg::RevokeOwnSession { user_id, id, reply })
            .await
    }

    /// The sessions an account transaction (a password change, an account
    /// deletion) revoked, now committed: folded into the cache before the
    /// caller is answered, so this instance refuses their tokens at once.
    /// No message: the cache merges commuting changes from any task (see
    /// `SessionCache`), as the writer's do.
    pub fn sessions_revoked(&self, changes: &[SessionChange]) {
        self.cache.merge_account_revocations(changes);
    }
}

impl TokenState {
    pub(super) fn list_sessions(
        &mut self,
        user_id: UserId,
        after: Option<SessionCursor>,
        limit: usize,
        reply: Reply<Vec<SessionSummary>>,
    ) {
        let store = Arc::clone(&self.deps.store);
        tokio::spawn(async move {
            let listed = store.list_sessions(user_id, now_ms(), after, limit).await;
            let _ = reply.send(listed.map_err(TokenFailure::from));
        });
    }

    pub(super) fn revoke_own_session(
        &mut self,
        user_id: UserId,
        id: SessionId,
        reply: Reply<bool>,
    ) {
        let now = now_ms();
        match self.deps.cache.get(id) {
            // The cache holds committed state, and revocation and expiry
            // are permanent: a session it shows ended (or someone else's)
            // is so in the database too.
            Some(session) if session.user_id == user_id && session.is_live(now) => {
                self.write_revoke(id, move |result| {
                    let _ = reply.send(own_revoked(result));
                });
            }
            Some(_) => {
                let _ = reply.send(Ok(false));
            }
            None => {
                let deps = Arc::clone(&self.deps);
                tokio::spawn(async move {
                    let answer = match load_into_cache(&deps, id).await {
                        Ok(Some(s)) if s.user_id == user_id && s.is_live(now_ms()) => {
                            let tokens = TokenHandle::new(&deps);
                            own_revoked(tokens.revoke_session(id).await)
                        }
                        Ok(_) => Ok(false),
                        Err(e) => Err(e),
                    };
                    let _ = reply.send(answer);
                });
            }
        }
    }
}

/// A revocation of one's own session: a session pruned meanwhile
/// (`Invalid`) was not live any more.
fn own_revoked(result: Result<(), TokenFailure>) -> Result<bool, TokenFailure> {
    match result {
        Ok(()) => Ok(true),
        Err(TokenFailure::Refused(TokenRefusal::Invalid)) => Ok(false),
        Err(e) => Err(e),
    }
}
