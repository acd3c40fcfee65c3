//! `TokenActor`: issues, rotates, revokes and authorizes access tokens.
//!
//! State: a dashmap cache of sessions holding only *committed* state (what
//! the database has acknowledged), so whatever the actor decides from it is
//! true of the database too. Every change goes to the group-commit
//! [`SessionWriter`]; a small task per request waits for its write to be
//! durable, applies it to the cache and only then answers the caller.
//!
//! One message per operation, each handled by the method of the same name
//! ([`TokenMsg::Refresh`] by `refresh`, ...): the requests about the
//! session of a verified token are in [`session`], a user's management of
//! their own sessions in [`manage`], the old service's tokens in
//! [`legacy`].
//!
//! The actor's own loop never awaits I/O: cache misses are read through by
//! a task that re-sends the request with the state it loaded (the cache is
//! bounded and may have evicted it again by then), and a
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
mod session;

pub(crate) use self::failure::{TokenFailure, TokenRefusal};
pub(crate) use self::handle::TokenHandle;
use self::legacy::LegacyTokens;
pub(crate) use self::session::SessionAsk;
use super::ChildSlot;
use crate::domain::{
    now_ms, Authorized, IssuedToken, Session, SessionCursor, SessionId, SessionOrigin,
    SessionSummary, TokenCodec, UserId,
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
    /// Start a session for a user who just signed in (or changed their
    /// password). A sign-up's first session is stored with the user's row
    /// instead (`TokenHandle::issue_committed`).
    /// Answered with the new session once it is durable; the caller signs
    /// its token (signing stays out of the actor's and the writer's loops).
    StartSession {
        user_id: UserId,
        user_int_id: i64,
        origin: SessionOrigin,
        reply: Reply<Session>,
    },
    /// Rotate the token's session; answered with the session state whose
    /// token the caller returns.
    Refresh(SessionAsk<Session>),
    /// Revoke the token's session.
    Revoke(SessionAsk<()>),
    /// Revoke every session of the token's user but the token's own.
    RevokeOthers(SessionAsk<()>),
    /// Revoke every session of the token's user ("logout everywhere").
    RevokeAll(SessionAsk<()>),
    /// Whether the token's session still honours it.
    Authorize(SessionAsk<Authorized>),
    /// Revoke one session by id (a surplus session of a raced legacy
    /// exchange, or one whose exchanged old token was reused).
    RevokeSession { id: SessionId, reply: Reply<()> },
    /// Up to `limit` live sessions of the user, newest first, after `after`.
    ListSessions {
        user_id: UserId,
        after: Option<SessionCursor>,
        limit: usize,
        reply: Reply<Vec<SessionSummary>>,
    },
    /// Revoke session `id` if it is a live session of the user; `false`
    /// when it is not (someone else's, unknown, ended).
    RevokeOwnSession {
        user_id: UserId,
        id: SessionId,
        reply: Reply<bool>,
    },
    /// Authorize an old service's token.
    LegacyAuthorize {
        token: String,
        reply: Reply<Authorized>,
    },
    /// Exchange an old service's token for a session of authd's
    /// (`/refresh`).
    LegacyExchange {
        token: String,
        reply: Reply<IssuedToken>,
    },
    /// Revoke an old service's token (`/revoke`).
    LegacyRevoke { token: String, reply: Reply<()> },
    /// The rotation of this session finished (either way): release the
    /// refreshes parked behind it.
    RotationSettled(SessionId),
    /// Drop expired sessions from the cache.
    Prune,
    /// Test hook: panic inside the actor's loop.
    #[cfg(feature = "test-hooks")]
    Crash,
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
    /// Waits (until `deadline` at most) for every session writer to
    /// finish: a writer exits once its actor is gone and its queue is
    /// written.
    pub async fn flush_writers(&self, deadline: tokio::time::Instant) {
        let tasks = match self.writer_tasks.lock() {
            Ok(mut tasks) => std::mem::take(&mut *tasks),
            Err(poisoned) => std::mem::take(&mut *poisoned.into_inner()),
        };
        let all = async {
            for task in tasks {
                let _ = task.await;
            }
        };
        if tokio::time::timeout_at(deadline, all).await.is_err() {
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
    rotating: HashMap<SessionId, Vec<SessionAsk<Session>>>,
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
            TokenMsg::StartSession {
                user_id,
                user_int_id,
                origin,
                reply,
            } => state.start_session(user_id, user_int_id, origin, reply),
            TokenMsg::Refresh(ask) => state.refresh(ask),
            TokenMsg::Revoke(ask) => state.revoke(ask),
            TokenMsg::RevokeOthers(ask) => state.revoke_others(ask),
            TokenMsg::RevokeAll(ask) => state.revoke_all(ask),
            TokenMsg::Authorize(ask) => state.authorize(ask),
            TokenMsg::RevokeSession { id, reply } => state.revoke_session(id, reply),
            TokenMsg::ListSessions {
                user_id,
                after,
                limit,
                reply,
            } => state.list_sessions(user_id, after, limit, reply),
            TokenMsg::RevokeOwnSession { user_id, id, reply } => {
                state.revoke_own_session(user_id, id, reply)
            }
            TokenMsg::LegacyAuthorize { token, reply } => state.legacy_authorize(token, reply),
            TokenMsg::LegacyExchange { token, reply } => state.legacy_exchange(token, reply),
            TokenMsg::LegacyRevoke { token, reply } => state.legacy_revoke(token, reply),
            TokenMsg::RotationSettled(id) => state.rotation_settled(id),
            TokenMsg::Prune => state.prune(),
            #[cfg(feature = "test-hooks")]
            TokenMsg::Crash => panic!("TokenActor crashed on request (test hook)"),
        }
        Ok(())
    }
}

impl TokenState {
    fn start_session(
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

    fn revoke_session(&mut self, id: SessionId, reply: Reply<()>) {
        self.write_revoke(id, move |result| {
            let _ = reply.send(result);
        });
    }

    /// Revokes session `id` durably, then calls `done` with the result
    /// (inside the writer task: `done` must be quick).
    fn write_revoke(
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
