//! `TokenActor`: issues, rotates, revokes and authorizes access tokens.
//!
//! State: a dashmap cache of sessions holding only *committed* state (what
//! the database has acknowledged), so whatever the actor decides from it is
//! true of the database too. Every change goes to the group-commit
//! [`SessionWriter`]; a small task per request waits for its write to be
//! durable, applies it to the cache and only then answers the caller.
//!
//! The actor's own loop never awaits I/O: cache misses are read through by
//! a task that re-sends the request when the session is loaded, and a
//! refresh of a session whose rotation is still in flight is parked until
//! that rotation settles (then it is, typically, a grace-window duplicate).
//! Because the loop is the only place decisions are made, two refreshes of
//! one token on this instance can never both rotate it; across instances
//! the conditional update in the store decides (see [`SessionWrite::Rotate`]).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};

mod failure;
mod handle;
pub(crate) mod legacy;
mod manage;

pub(crate) use self::failure::{TokenFailure, TokenRefusal};
pub(crate) use self::handle::TokenHandle;
use self::legacy::{LegacyRequest, LegacyTokens};
pub(crate) use self::manage::ManageRequest;
use super::{CallError, ChildSlot};
use crate::audit::{self, Action, Outcome};
use crate::domain::{
    now_ms, Authorized, Claims, IssuedToken, RefreshDecision, Session, SessionId, SessionOrigin,
    TokenCodec, UserId,
};
use crate::fault::Fault;
use crate::keys::KeyRing;
use crate::sessions::{BatchLimits, SessionCache, SessionWriter};
use crate::store::{SessionWrite, Store, WriteOutcome, CHANGE_LOG_RETENTION_MS};

/// A request is re-dispatched at most this often (after a read-through or
/// a lost race with another instance) before it gives up with 503.
const MAX_ATTEMPTS: u8 = 3;

type Reply<T> = RpcReplyPort<Result<T, TokenFailure>>;

pub enum TokenMsg {
    /// Start a session for a user who just signed up or in.
    /// Answered with the new session once it is durable; the caller signs
    /// its token (signing stays out of the actor's and the writer's loops).
    Issue {
        user_id: UserId,
        user_int_id: i64,
        origin: SessionOrigin,
        reply: Reply<Session>,
    },
    /// A user managing their own sessions and account (see [`manage`]).
    Manage(ManageRequest),
    /// Revoke one session by id (a surplus session of a raced legacy
    /// exchange, or one whose exchanged old token was reused).
    RevokeSession { id: SessionId, reply: Reply<()> },
    /// A request about an old service's token (see [`legacy`]).
    Legacy(LegacyRequest),
    /// Anything done with the token of an existing session.
    Session(SessionRequest),
    /// The rotation of this session finished (either way): release the
    /// requests parked behind it.
    RotationSettled(SessionId),
    /// Drop expired sessions from the cache.
    Prune,
    /// Test hook: panic inside the actor's loop.
    #[cfg(feature = "test-hooks")]
    Crash,
}

/// A request about the session a verified token belongs to.
pub struct SessionRequest {
    claims: Claims,
    op: SessionOp,
    attempts: u8,
    /// The session's committed state as a read-through just found it, for
    /// when the cache (bounded) has already evicted it again.
    loaded: Option<Session>,
}

enum SessionOp {
    /// Answered with the session state whose token the caller returns.
    Refresh(Reply<Session>),
    Revoke(Reply<()>),
    /// Revoke every session of the token's user ("logout everywhere").
    RevokeAll(Reply<()>),
    /// Revoke every session of the token's user but the token's own.
    RevokeOthers(Reply<()>),
    Authorize(Reply<Authorized>),
}

impl SessionOp {
    fn fail(self, failure: TokenFailure) {
        // A caller that gave up (timeout) has dropped its port; ignore.
        match self {
            SessionOp::Refresh(r) => drop(r.send(Err(failure))),
            SessionOp::Revoke(r) | SessionOp::RevokeAll(r) | SessionOp::RevokeOthers(r) => {
                drop(r.send(Err(failure)))
            }
            SessionOp::Authorize(r) => drop(r.send(Err(failure))),
        }
    }
}

/// Which sessions a user-wide revocation ends.
#[derive(Clone, Copy)]
enum RevokeKind {
    All,
    Others,
}

/// What `TokenActor` needs; shared by every incarnation of the actor, so the
/// (committed-only) cache survives a restart.
pub struct TokenDeps {
    pub store: Arc<dyn Store>,
    pub keys: Arc<KeyRing>,
    pub cache: Arc<SessionCache>,
    /// The slot of the current `TokenActor`, for re-sending requests: by the
    /// time a read-through finishes, the actor may have been restarted.
    pub slot: Arc<ChildSlot<TokenMsg>>,
    pub session_ttl_ms: i64,
    pub refresh_grace_ms: i64,
    pub batch: BatchLimits,
    /// How often expired sessions leave the cache and the database.
    pub prune_interval: Duration,
    /// The writer tasks of every incarnation of the actor, so shutdown can
    /// wait until each has flushed what it was given.
    pub writer_tasks: std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>,
    /// The old service's tokens, when its tables are read.
    pub legacy: Option<Arc<LegacyTokens>>,
}

impl TokenDeps {
    /// Waits (up to `limit`) for every session writer to finish: a writer
    /// exits once its actor is gone and its queue is written.
    pub async fn flush_writers(&self, limit: Duration) {
        let tasks = match self.writer_tasks.lock() {
            Ok(mut tasks) => std::mem::take(&mut *tasks),
            Err(poisoned) => std::mem::take(&mut *poisoned.into_inner()),
        };
        let all = async {
            for task in tasks {
                let _ = task.await;
            }
        };
        if tokio::time::timeout(limit, all).await.is_err() {
            tracing::warn!(
                event = "flush_timeout",
                "session writers did not finish in time"
            );
        }
    }
}

pub(crate) struct TokenActor;

pub(crate) struct TokenState {
    deps: Arc<TokenDeps>,
    writer: SessionWriter,
    /// Sessions with a rotation in flight, with the refreshes parked behind it.
    rotating: HashMap<SessionId, Vec<SessionRequest>>,
}

impl Actor for TokenActor {
    type Msg = TokenMsg;
    type State = TokenState;
    type Arguments = Arc<TokenDeps>;

    async fn pre_start(
        &self,
        myself: ActorRef<TokenMsg>,
        deps: Arc<TokenDeps>,
    ) -> Result<TokenState, ActorProcessingErr> {
        let (writer, task) =
            SessionWriter::spawn(Arc::clone(&deps.store), Arc::clone(&deps.cache), deps.batch);
        if let Ok(mut tasks) = deps.writer_tasks.lock() {
            tasks.retain(|t| !t.is_finished());
            tasks.push(task);
        }
        myself.send_interval(deps.prune_interval, || TokenMsg::Prune);
        Ok(TokenState {
            deps,
            writer,
            rotating: HashMap::new(),
        })
    }

    async fn handle(
        &self,
        _myself: ActorRef<TokenMsg>,
        message: TokenMsg,
        state: &mut TokenState,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            TokenMsg::Issue {
                user_id,
                user_int_id,
                origin,
                reply,
            } => state.issue(user_id, user_int_id, origin, reply),
            TokenMsg::Manage(request) => state.manage(request),
            TokenMsg::RevokeSession { id, reply } => state.revoke(id, move |result| {
                let _ = reply.send(result);
            }),
            TokenMsg::Legacy(request) => match &state.deps.legacy {
                Some(legacy) => {
                    let (legacy, tokens) = (Arc::clone(legacy), TokenHandle::new(&state.deps));
                    tokio::spawn(legacy.handle(tokens, request));
                }
                // Unreachable through the handle; dropping the request
                // answers its caller with 503.
                None => drop(request),
            },
            TokenMsg::Session(request) => state.dispatch(request),
            TokenMsg::RotationSettled(id) => {
                for request in state.rotating.remove(&id).unwrap_or_default() {
                    state.dispatch(request);
                }
            }
            TokenMsg::Prune => state.prune(),
            #[cfg(feature = "test-hooks")]
            TokenMsg::Crash => panic!("TokenActor crashed on request (test hook)"),
        }
        Ok(())
    }
}

impl TokenState {
    fn issue(
        &mut self,
        user_id: UserId,
        user_int_id: i64,
        origin: SessionOrigin,
        reply: Reply<Session>,
    ) {
        let session = Session::start(user_id, user_int_id, now_ms(), self.deps.session_ttl_ms);
        let deps = Arc::clone(&self.deps);
        let created = session.clone();
        self.writer.submit(
            SessionWrite::Create(session, origin),
            Box::new(move |written| {
                let result = match written {
                    Ok(WriteOutcome::Applied) => {
                        deps.cache.insert_committed(&created);
                        Ok(created)
                    }
                    Ok(WriteOutcome::Conflict) => {
                        Err(Fault::internal("new session id collided").into())
                    }
                    Err(e) => Err(e.into()),
                };
                let _ = reply.send(result);
            }),
        );
    }

    fn dispatch(&mut self, request: SessionRequest) {
        let id = request.claims.sid;
        if let Some(parked) = self.rotating.get_mut(&id) {
            if matches!(request.op, SessionOp::Refresh(_)) {
                parked.push(request);
                return;
            }
        }
        let mut request = request;
        let Some(session) = self.deps.cache.get(id).or(request.loaded.take()) else {
            self.read_through(request);
            return;
        };
        if request.claims.generation > session.generation {
            // A generation newer than the cached one: another instance
            // rotated this session and its change has not reached us yet.
            // Read the committed state instead of refusing a valid token.
            self.read_through(request);
            return;
        }
        let SessionRequest {
            claims,
            op,
            attempts,
            ..
        } = request;
        if session.user_id != claims.sub {
            // Correctly signed but naming another user's session: only a
            // key compromise or a bug produces this.
            return op.fail(TokenFailure::Refused(TokenRefusal::Invalid));
        }
        let now = now_ms();
        let op_kind = if matches!(op, SessionOp::RevokeOthers(_)) {
            RevokeKind::Others
        } else {
            RevokeKind::All
        };
        match op {
            SessionOp::Authorize(reply) => {
                let result = if session.authorizes(claims.generation, now) {
                    Ok(Authorized {
                        user_id: session.user_id,
                        user_int_id: session.user_int_id,
                        session_id: Some(session.id),
                        expires_at: claims.exp,
                    })
                } else if !session.is_live(now) {
                    Err(TokenFailure::Refused(TokenRefusal::Revoked))
                } else {
                    // An older generation: superseded by a refresh.
                    Err(TokenFailure::Refused(TokenRefusal::Invalid))
                };
                let _ = reply.send(result);
            }
            SessionOp::Revoke(reply) => {
                if session.revoked {
                    // Idempotent: revoking a revoked session succeeds.
                    let _ = reply.send(Ok(()));
                } else {
                    self.revoke(session.id, move |result| {
                        let _ = reply.send(result);
                    });
                }
            }
            SessionOp::RevokeAll(reply) | SessionOp::RevokeOthers(reply) => {
                if !session.is_live(now) {
                    let _ = reply.send(Err(TokenFailure::Refused(TokenRefusal::Revoked)));
                    return;
                }
                let except = matches!(op_kind, RevokeKind::Others).then_some(session.id);
                // The writer folds the revoked sessions into the cache
                // before it calls back.
                self.writer.submit(
                    SessionWrite::RevokeUser {
                        user_id: session.user_id,
                        revoked_at_ms: now,
                        except,
                    },
                    Box::new(move |written| {
                        let _ = reply.send(written.map(|_| ()).map_err(TokenFailure::from));
                    }),
                );
            }
            SessionOp::Refresh(reply) => {
                match session.decide_refresh(claims.generation, now, self.deps.refresh_grace_ms) {
                    RefreshDecision::Rotate => {
                        audit::count(Action::Refresh, Outcome::Success);
                        self.rotate(session, claims, reply, attempts, now)
                    }
                    RefreshDecision::GraceDuplicate => {
                        audit::count(Action::Refresh, Outcome::GraceDuplicate);
                        // The cache holds committed state only, so the
                        // current generation is already durable.
                        let _ = reply.send(Ok(session));
                    }
                    RefreshDecision::Reuse => {
                        metrics::counter!(crate::telemetry::metrics::REUSE_DETECTED).increment(1);
                        tracing::warn!(
                            event = "token_reuse_detected",
                            session_id = %session.id,
                            user_id = %session.user_id,
                            presented_generation = claims.generation,
                            current_generation = session.generation,
                            "refresh token reuse detected; revoking the session"
                        );
                        self.revoke(session.id, move |result| {
                            let _ = reply
                                .send(result.and(Err(TokenFailure::Refused(TokenRefusal::Reused))));
                        });
                    }
                    RefreshDecision::Refused => {
                        audit::count(Action::Refresh, Outcome::Refused);
                        let _ = reply.send(Err(TokenFailure::Refused(TokenRefusal::Revoked)));
                    }
                }
            }
        }
    }

    fn rotate(
        &mut self,
        session: Session,
        claims: Claims,
        reply: Reply<Session>,
        attempts: u8,
        now: i64,
    ) {
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
                    let _ = reply.send(Ok(next));
                    deps.slot.cast(TokenMsg::RotationSettled(id));
                }
                Ok(WriteOutcome::Conflict) => {
                    // Another instance rotated or revoked it first. Reload the
                    // truth, then decide again (usually: grace duplicate).
                    tokio::spawn(async move {
                        let reloaded = load_into_cache(&deps, id).await;
                        deps.slot.cast(TokenMsg::RotationSettled(id));
                        match reloaded {
                            Err(e) => {
                                let _ = reply.send(Err(e));
                            }
                            Ok(_) if attempts + 1 >= MAX_ATTEMPTS => {
                                let _ = reply
                                    .send(Err(Fault::unavailable("session is contended").into()));
                            }
                            Ok(loaded) => {
                                deps.slot.cast(TokenMsg::Session(SessionRequest {
                                    claims,
                                    op: SessionOp::Refresh(reply),
                                    attempts: attempts + 1,
                                    loaded,
                                }));
                            }
                        }
                    });
                }
                Err(e) => {
                    let _ = reply.send(Err(e.into()));
                    deps.slot.cast(TokenMsg::RotationSettled(id));
                }
            }),
        );
    }

    /// Revokes session `id` durably, then calls `done` with the result
    /// (inside the writer task: `done` must be quick).
    fn revoke(
        &mut self,
        id: SessionId,
        done: impl FnOnce(Result<(), TokenFailure>) + Send + 'static,
    ) {
        let deps = Arc::clone(&self.deps);
        self.writer.submit(
            SessionWrite::Revoke {
                id,
                revoked_at_ms: now_ms(),
            },
            Box::new(move |written| match written {
                Ok(WriteOutcome::Applied) => done(Ok(())),
                Ok(WriteOutcome::Conflict) => {
                    // The session is gone from the database (pruned).
                    deps.cache.forget(id);
                    done(Err(TokenFailure::Refused(TokenRefusal::Invalid)))
                }
                Err(e) => done(Err(e.into())),
            }),
        );
    }

    /// Drops expired and revoked sessions from the cache, and expired ones
    /// from the database in the background.
    fn prune(&mut self) {
        let now = now_ms();
        let evicted = self.deps.cache.prune(now);
        let store = Arc::clone(&self.deps.store);
        tokio::spawn(async move {
            if let Err(e) = store.prune_change_log(now - CHANGE_LOG_RETENTION_MS).await {
                tracing::warn!(event = "prune_failed", error = %e, "pruning the change log failed");
            }
            match store.prune_sessions(now).await {
                Ok(deleted) => tracing::info!(
                    event = "sessions_pruned",
                    cache_evicted = evicted,
                    db_deleted = deleted,
                    "expired sessions pruned"
                ),
                Err(e) => {
                    tracing::warn!(event = "prune_failed", error = %e, "pruning sessions failed")
                }
            }
        });
    }

    /// Loads a session's committed state into the cache (merged with what
    /// is there), then re-sends the request.
    fn read_through(&mut self, mut request: SessionRequest) {
        if request.attempts >= MAX_ATTEMPTS {
            return request
                .op
                .fail(TokenFailure::Refused(TokenRefusal::Invalid));
        }
        let deps = Arc::clone(&self.deps);
        tokio::spawn(async move {
            match load_into_cache(&deps, request.claims.sid).await {
                Ok(Some(loaded)) => {
                    request.attempts += 1;
                    request.loaded = Some(loaded);
                    // If the actor is down, the request (and its reply port)
                    // is dropped and the caller gets 503.
                    deps.slot.cast(TokenMsg::Session(request));
                }
                Ok(None) => request
                    .op
                    .fail(TokenFailure::Refused(TokenRefusal::Invalid)),
                Err(e) => request.op.fail(e),
            }
        });
    }
}

/// Reads a session's committed state through the cache (see
/// [`SessionCache::read_through`]). `None`: the database no longer has it
/// (pruned), and neither has the cache.
async fn load_into_cache(deps: &TokenDeps, id: SessionId) -> Result<Option<Session>, TokenFailure> {
    // The store bounds its own operations (`db_timeout`).
    Ok(deps.cache.read_through(&*deps.store, id).await?)
}

pub(super) fn sign(codec: &TokenCodec, session: &Session) -> Result<IssuedToken, TokenFailure> {
    let claims = codec.claims_for(session);
    let access_token = codec
        .sign(&claims)
        .map_err(|e| Fault::internal(format!("signing failed: {e}")))?;
    let expires_in = (claims.exp - now_ms().div_euclid(1000)).max(0);
    Ok(IssuedToken {
        access_token,
        expires_in,
        user_id: session.user_id,
        session_id: session.id,
    })
}
