//! `UserActor`: sign-up and sign-in.
//!
//! The actor only dispatches: each request runs in its own task, because a
//! request spends ~20 ms hashing and a few more in the database, and doing
//! that inside the actor's loop would serialise every sign-in in the
//! process. Hashing goes through the bounded [`HashPool`]; the session and
//! its first token come from `TokenActor`.

use std::sync::Arc;
use std::time::Duration;

use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};

use super::hashing::{HashError, HashPool};
use super::token::{IssuedToken, TokenFailure, TokenHandle};
use super::{CallError, ChildSlot};
use crate::domain::{Email, Password, UserId};
use crate::store::{NewUser, Store, StoreError};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UserFailure {
    #[error("an account with this e-mail address already exists")]
    EmailTaken,
    #[error("invalid e-mail or password")]
    BadCredentials,
    #[error("too many sign-ins in progress")]
    Overloaded,
    #[error("user service unavailable: {0}")]
    Unavailable(String),
    #[error("user service failure: {0}")]
    Internal(String),
    #[error(transparent)]
    Token(#[from] TokenFailure),
}

impl From<StoreError> for UserFailure {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::EmailTaken => UserFailure::EmailTaken,
            StoreError::Unavailable(m) => UserFailure::Unavailable(m),
            StoreError::Internal(m) => UserFailure::Internal(m),
        }
    }
}

impl From<HashError> for UserFailure {
    fn from(e: HashError) -> Self {
        match e {
            HashError::Overloaded => UserFailure::Overloaded,
            HashError::Internal(m) => UserFailure::Internal(m),
        }
    }
}

impl From<CallError> for UserFailure {
    fn from(e: CallError) -> Self {
        UserFailure::Unavailable(e.to_string())
    }
}

type Reply = RpcReplyPort<Result<IssuedToken, UserFailure>>;

pub enum UserMsg {
    SignUp {
        email: Email,
        password: Password,
        reply: Reply,
    },
    SignIn {
        email: Email,
        password: Password,
        reply: Reply,
    },
    /// Test hook: panic inside the actor's loop.
    #[cfg(feature = "test-hooks")]
    Crash,
}

pub struct UserDeps {
    pub store: Arc<dyn Store>,
    pub hasher: Arc<HashPool>,
    pub tokens: TokenHandle,
    pub db_timeout: Duration,
}

/// How the HTTP layer talks to `UserActor`.
#[derive(Clone)]
pub struct UserHandle {
    slot: Arc<ChildSlot<UserMsg>>,
}

impl UserHandle {
    pub fn new(slot: Arc<ChildSlot<UserMsg>>) -> Self {
        UserHandle { slot }
    }

    pub async fn sign_up(
        &self,
        email: Email,
        password: Password,
    ) -> Result<IssuedToken, UserFailure> {
        self.slot
            .call(|reply| UserMsg::SignUp {
                email,
                password,
                reply,
            })
            .await?
    }

    pub async fn sign_in(
        &self,
        email: Email,
        password: Password,
    ) -> Result<IssuedToken, UserFailure> {
        self.slot
            .call(|reply| UserMsg::SignIn {
                email,
                password,
                reply,
            })
            .await?
    }

    #[cfg(feature = "test-hooks")]
    pub fn crash(&self) -> bool {
        self.slot.cast(UserMsg::Crash)
    }
}

pub struct UserActor;

impl Actor for UserActor {
    type Msg = UserMsg;
    type State = Arc<UserDeps>;
    type Arguments = Arc<UserDeps>;

    async fn pre_start(
        &self,
        _myself: ActorRef<UserMsg>,
        deps: Arc<UserDeps>,
    ) -> Result<Arc<UserDeps>, ActorProcessingErr> {
        Ok(deps)
    }

    async fn handle(
        &self,
        _myself: ActorRef<UserMsg>,
        message: UserMsg,
        deps: &mut Arc<UserDeps>,
    ) -> Result<(), ActorProcessingErr> {
        let deps = Arc::clone(deps);
        match message {
            UserMsg::SignUp {
                email,
                password,
                reply,
            } => {
                tokio::spawn(async move {
                    let _ = reply.send(sign_up(&deps, email, password).await);
                });
            }
            UserMsg::SignIn {
                email,
                password,
                reply,
            } => {
                tokio::spawn(async move {
                    let _ = reply.send(sign_in(&deps, email, password).await);
                });
            }
            #[cfg(feature = "test-hooks")]
            UserMsg::Crash => panic!("UserActor crashed on request (test hook)"),
        }
        Ok(())
    }
}

async fn sign_up(
    deps: &UserDeps,
    email: Email,
    password: Password,
) -> Result<IssuedToken, UserFailure> {
    // Hash first, even if the address turns out to be taken: the unique
    // index is the one authority on that (two sign-ups can race), and the
    // answer takes the same time either way.
    let password_hash = deps.hasher.hash(password).await?;
    let user = NewUser {
        id: UserId::new_random(),
        email,
        password_hash,
    };
    with_timeout(deps.db_timeout, deps.store.insert_user(&user)).await?;
    Ok(deps.tokens.issue(user.id).await?)
}

async fn sign_in(
    deps: &UserDeps,
    email: Email,
    password: Password,
) -> Result<IssuedToken, UserFailure> {
    let user = with_timeout(deps.db_timeout, deps.store.find_user_by_email(&email)).await?;
    let (user_id, stored_hash) = match user {
        Some(u) => (Some(u.id), Some(u.password_hash)),
        None => (None, None),
    };
    // An unknown address is verified against a dummy hash: same work, same
    // time, so timing does not reveal which addresses have accounts.
    let matched = deps.hasher.verify(password, stored_hash).await?;
    match (matched, user_id) {
        (true, Some(user_id)) => Ok(deps.tokens.issue(user_id).await?),
        _ => Err(UserFailure::BadCredentials),
    }
}

async fn with_timeout<T>(
    limit: Duration,
    work: impl std::future::Future<Output = Result<T, StoreError>>,
) -> Result<T, StoreError> {
    tokio::time::timeout(limit, work).await.unwrap_or_else(|_| {
        Err(StoreError::Unavailable(
            "database did not answer in time".into(),
        ))
    })
}
