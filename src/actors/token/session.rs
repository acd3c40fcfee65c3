//! `TokenActor`'s requests about the session a verified token belongs to:
//! [`refresh`](TokenState::refresh), [`revoke`](TokenState::revoke),
//! [`revoke_others`](TokenState::revoke_others),
//! [`revoke_all`](TokenState::revoke_all) and
//! [`authorize`](TokenState::authorize).
//!
//! Each starts from the session's committed state in the cache
//! ([`TokenState::session_for`]); a session not cached, or older there than
//! the token says, is read through by a task that re-sends the request
//! with the state it loaded, which stands in for the cache's if the
//! (bounded) cache has evicted the session again meanwhile.

use std::sync::Arc;

use super::{
    load_into_cache, Reply, TokenFailure, TokenMsg, TokenRefusal, TokenState, MAX_ATTEMPTS,
};
use crate::audit::{self, Action, Outcome};
use crate::domain::{now_ms, Authorized, Claims, RefreshDecision, Session, SessionId};
use crate::fault::Fault;
use crate::store::{SessionWrite, WriteOutcome};

/// A request about the session of a verified token: its claims, how often
/// it has been re-sent (after a read-through or a lost race), the state a
/// read-through found, and where the answer goes.
pub struct SessionAsk<T> {
    claims: Claims,
    attempts: u8,
    /// The session's committed state as a read-through just found it, for
    /// when the cache (bounded) has already evicted it again.
    loaded: Option<Session>,
    reply: Reply<T>,
}

impl<T> SessionAsk<T> {
    pub(super) fn new(claims: Claims, reply: Reply<T>) -> Self {
        SessionAsk {
            claims,
            attempts: 0,
            loaded: None,
            reply,
        }
    }

    fn answer(self, result: Result<T, TokenFailure>) {
        // A caller that gave up (timeout) has dropped its port; ignore.
        let _ = self.reply.send(result);
    }

    fn fail(self, failure: TokenFailure) {
        self.answer(Err(failure));
    }

    /// The same request, sent once more with the state a read-through
    /// found (`None`: the cache's is the one to use).
    fn again(self, loaded: Option<Session>) -> Self {
        SessionAsk {
            attempts: self.attempts + 1,
            loaded,
            ..self
        }
    }
}

/// How a request is sent to the actor again (the message it came in).
type Resend<T> = fn(SessionAsk<T>) -> TokenMsg;

impl TokenState {
    pub(super) fn refresh(&mut self, ask: SessionAsk<Session>) {
        if let Some(parked) = self.rotating.get_mut(&ask.claims.sid) {
            parked.push(ask);
            return;
        }
        let Some((session, ask)) = self.session_for(ask, TokenMsg::Refresh) else {
            return;
        };
        let now = now_ms();
        let grace = self.deps.refresh_grace_ms;
        match session.decide_refresh(ask.claims.generation, now, grace) {
            RefreshDecision::Rotate => {
                audit::count(Action::Refresh, Outcome::Success);
                self.rotate(session, ask, now)
            }
            RefreshDecision::GraceDuplicate => {
                audit::count(Action::Refresh, Outcome::GraceDuplicate);
                // The cache holds committed state only, so the current
                // generation is already durable.
                ask.answer(Ok(session));
            }
            RefreshDecision::Reuse => {
                metrics::counter!(crate::telemetry::metrics::REUSE_DETECTED).increment(1);
                tracing::warn!(
                    event = "token_reuse_detected",
                    session_id = %session.id,
                    user_id = %session.user_id,
                    presented_generation = ask.claims.generation,
                    current_generation = session.generation,
                    "refresh token reuse detected; revoking the session"
                );
                self.write_revoke(session.id, move |result| {
                    ask.answer(result.and(Err(TokenFailure::Refused(TokenRefusal::Reused))));
                });
            }
            RefreshDecision::Refused => {
                audit::count(Action::Refresh, Outcome::Refused);
                ask.fail(TokenFailure::Refused(TokenRefusal::Revoked));
            }
        }
    }

    /// Releases the refreshes parked behind the rotation of session `id`.
    pub(super) fn rotation_settled(&mut self, id: SessionId) {
        for ask in self.rotating.remove(&id).unwrap_or_default() {
            self.refresh(ask);
        }
    }

    pub(super) fn revoke(&mut self, ask: SessionAsk<()>) {
        let Some((session, ask)) = self.session_for(ask, TokenMsg::Revoke) else {
            return;
        };
        if session.revoked {
            // Idempotent: revoking a revoked session succeeds.
            ask.answer(Ok(()));
        } else {
            self.write_revoke(session.id, move |result| ask.answer(result));
        }
    }

    pub(super) fn revoke_others(&mut self, ask: SessionAsk<()>) {
        if let Some((session, ask)) = self.session_for(ask, TokenMsg::RevokeOthers) {
            let except = Some(session.id);
            self.revoke_user(&session, except, ask);
        }
    }

    pub(super) fn revoke_all(&mut self, ask: SessionAsk<()>) {
        if let Some((session, ask)) = self.session_for(ask, TokenMsg::RevokeAll) {
            self.revoke_user(&session, None, ask);
        }
    }

    pub(super) fn authorize(&mut self, ask: SessionAsk<Authorized>) {
        let Some((session, ask)) = self.session_for(ask, TokenMsg::Authorize) else {
            return;
        };
        let now = now_ms();
        let result = if session.authorizes(ask.claims.generation, now) {
            Ok(Authorized {
                user_id: session.user_id,
                user_int_id: session.user_int_id,
                session_id: Some(session.id),
                expires_at: ask.claims.exp,
            })
        } else if !session.is_live(now) {
            Err(TokenFailure::Refused(TokenRefusal::Revoked))
        } else {
            // An older generation: superseded by a refresh.
            Err(TokenFailure::Refused(TokenRefusal::Invalid))
        };
        ask.answer(result);
    }

    /// Revokes every session of the user of the live `session`, but
    /// `except`.
    fn revoke_user(&mut self, session: &Session, except: Option<SessionId>, ask: SessionAsk<()>) {
        let now = now_ms();
        if !session.is_live(now) {
            return ask.fail(TokenFailure::Refused(TokenRefusal::Revoked));
        }
        // The writer folds the revoked sessions into the cache before it
        // calls back.
        self.writer.submit(
            SessionWrite::RevokeUser {
                user_id: session.user_id,
                revoked_at_ms: now,
                except,
            },
            Box::new(move |written| {
                ask.answer(written.map(|_| ()).map_err(TokenFailure::from));
            }),
        );
    }

    /// The committed state of the session `ask` is about, or `None` when
    /// `ask` went elsewhere: to a read-through (re-sent with `resend`), or
    /// answered (a token naming another user's session).
    fn session_for<T: Send + 'static>(
        &mut self,
        mut ask: SessionAsk<T>,
        resend: Resend<T>,
    ) -> Option<(Session, SessionAsk<T>)> {
        // The cache's state when it has the session (it may be newer than
        // a read-through's), else what the read-through loaded.
        let loaded = ask.loaded.take();
        let session = match self.deps.cache.get(ask.claims.sid).or(loaded) {
            Some(session) if ask.claims.generation <= session.generation => session,
            // Not cached, or a generation newer than the cached one:
            // another instance rotated this session and its change has not
            // reached us yet. Read the committed state instead of refusing
            // a valid token.
            _ => {
                self.read_through(ask, resend);
                return None;
            }
        };
        if session.user_id != ask.claims.sub {
            // Correctly signed but naming another user's session: only a
            // key compromise or a bug produces this.
            ask.fail(TokenFailure::Refused(TokenRefusal::Invalid));
            return None;
        }
        Some((session, ask))
    }

    fn rotate(&mut self, session: Session, ask: SessionAsk<Session>, now: i64) {
        let next = session.rotated(now);
        let id = session.id;
        self.rotating.insert(id, Vec::new());
        let deps = Arc::clone(&self.deps);
        let write = SessionWrite::Rotate {
            id,
            from_generation: session.generation,
            issued_at_ms: now,
        };
        self.writer.submit(
            write,
            Box::new(move |written| match written {
                Ok(WriteOutcome::Applied) => {
                    // The writer has already folded the rotation into the cache.
                    ask.answer(Ok(next));
                    deps.slot.cast(TokenMsg::RotationSettled(id));
                }
                Ok(WriteOutcome::Conflict) => {
                    // Another instance rotated or revoked it first. Reload the
                    // truth, then decide again (usually: grace duplicate).
                    tokio::spawn(async move {
                        let reloaded = load_into_cache(&deps, id).await;
                        deps.slot.cast(TokenMsg::RotationSettled(id));
                        match reloaded {
                            Err(e) => ask.fail(e),
                            Ok(_) if ask.attempts + 1 >= MAX_ATTEMPTS => {
                                ask.fail(Fault::unavailable("session is contended").into())
                            }
                            Ok(loaded) => {
                                deps.slot.cast(TokenMsg::Refresh(ask.again(loaded)));
                            }
                        }
                    });
                }
                Err(e) => {
                    ask.fail(e.into());
                    deps.slot.cast(TokenMsg::RotationSettled(id));
                }
            }),
        );
    }

    /// Loads a session's committed state into the cache (merged with what
    /// is there), then re-sends the request with that state.
    fn read_through<T: Send + 'static>(&mut self, ask: SessionAsk<T>, resend: Resend<T>) {
        if ask.attempts >= MAX_ATTEMPTS {
            return ask.fail(TokenFailure::Refused(TokenRefusal::Invalid));
        }
        let deps = Arc::clone(&self.deps);
        tokio::spawn(async move {
            match load_into_cache(&deps, ask.claims.sid).await {
                // If the actor is down, the request (and its reply port)
                // is dropped and the caller gets 503.
                Ok(Some(loaded)) => drop(deps.slot.cast(resend(ask.again(Some(loaded))))),
                Ok(None) => ask.fail(TokenFailure::Refused(TokenRefusal::Invalid)),
                Err(e) => ask.fail(e),
            }
        });
    }
}
