//! `TokenActor`'s handling of a user managing their own sessions and
//! account: listing the live sessions, revoking one of them, and the
//! session side of a password change and of an account deletion.
//!
//! The caller has already been authorized (its token's user is the
//! `user_id` of each request). As everywhere in `TokenActor`, the loop
//! never awaits I/O: reads and the two account transactions run in tasks
//! of their own; revoking a session goes through the session writer like
//! any revocation. A password change and an account deletion revoke the
//! user's sessions in the store's own transaction (together with the
//! password or the user row), and their revocations reach this cache
//! through [`SessionCache::merge_account_revocations`] before the caller is
//! answered, and the other instances' through the change feed.
//!
//! [`SessionCache::merge_account_revocations`]: crate::sessions::SessionCache::merge_account_revocations

use std::sync::Arc;

use super::{
    load_into_cache, Reply, TokenFailure, TokenHandle, TokenMsg, TokenRefusal, TokenState,
};
use crate::domain::{now_ms, SessionCursor, SessionId, SessionSummary, UserId};

pub enum ManageRequest {
    /// Up to `limit` live sessions of the user, newest first, after `after`.
    List {
        user_id: UserId,
        after: Option<SessionCursor>,
        limit: usize,
        reply: Reply<Vec<SessionSummary>>,
    },
    /// Revoke session `id` if it is a live session of the user; `false`
    /// when it is not (someone else's, unknown, ended).
    RevokeOwn {
        user_id: UserId,
        id: SessionId,
        reply: Reply<bool>,
    },
    /// Store the user's new password hash and end every session of the
    /// user, in one transaction; `false` if the user is gone.
    ChangePassword {
        user_id: UserId,
        password_hash: String,
        reply: Reply<bool>,
    },
    /// Delete the user and end every session of theirs; `false` if the
    /// user is gone.
    DeleteAccount { user_id: UserId, reply: Reply<bool> },
}

impl TokenHandle {
    pub async fn list_sessions(
        &self,
        user_id: UserId,
        after: Option<SessionCursor>,
        limit: usize,
    ) -> Result<Vec<SessionSummary>, TokenFailure> {
        self.manage(|reply| ManageRequest::List {
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
        self.manage(|reply| ManageRequest::RevokeOwn { user_id, id, reply })
            .await
    }

    /// Stores `password_hash` and ends every session of the user.
    pub async fn change_password(
        &self,
        user_id: UserId,
        password_hash: String,
    ) -> Result<bool, TokenFailure> {
        self.manage(|reply| ManageRequest::ChangePassword {
            user_id,
            password_hash,
            reply,
        })
        .await
    }

    /// Deletes the user and ends every session of theirs.
    pub async fn delete_account(&self, user_id: UserId) -> Result<bool, TokenFailure> {
        self.manage(|reply| ManageRequest::DeleteAccount { user_id, reply })
            .await
    }

    async fn manage<T: Send + 'static>(
        &self,
        request: impl FnOnce(Reply<T>) -> ManageRequest,
    ) -> Result<T, TokenFailure> {
        self.slot
            .call(|reply| TokenMsg::Manage(request(reply)))
            .await?
    }
}

impl TokenState {
    pub(super) fn manage(&mut self, request: ManageRequest) {
        let deps = Arc::clone(&self.deps);
        match request {
            ManageRequest::List {
                user_id,
                after,
                limit,
                reply,
            } => {
                tokio::spawn(async move {
                    let listed = deps.store.list_sessions(user_id, now_ms(), after, limit);
                    let _ = reply.send(listed.await.map_err(TokenFailure::from));
                });
            }
            ManageRequest::RevokeOwn { user_id, id, reply } => {
                let now = now_ms();
                match self.deps.cache.get(id) {
                    // The cache holds committed state, and revocation and
                    // expiry are permanent: a session it shows ended (or
                    // someone else's) is so in the database too.
                    Some(session) if session.user_id == user_id && session.is_live(now) => {
                        self.revoke(id, move |result| {
                            let _ = reply.send(own_revoked(result));
                        });
                    }
                    Some(_) => {
                        let _ = reply.send(Ok(false));
                    }
                    None => {
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
            ManageRequest::ChangePassword {
                user_id,
                password_hash,
                reply,
            } => {
                tokio::spawn(async move {
                    let changed = deps
                        .store
                        .change_password(user_id, &password_hash, now_ms())
                        .await;
                    let _ = reply.send(settle(&deps, changed));
                });
            }
            ManageRequest::DeleteAccount { user_id, reply } => {
                tokio::spawn(async move {
                    let deleted = deps.store.delete_user(user_id, now_ms()).await;
                    let _ = reply.send(settle(&deps, deleted));
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

/// Folds the revocations of a committed account transaction into the
/// cache, then answers whether the user existed.
fn settle(
    deps: &super::TokenDeps,
    committed: Result<Option<Vec<crate::domain::SessionChange>>, crate::store::StoreError>,
) -> Result<bool, TokenFailure> {
    match committed? {
        Some(changes) => {
            deps.cache.merge_account_revocations(&changes);
            Ok(true)
        }
        None => Ok(false),
    }
}
