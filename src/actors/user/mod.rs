//! `UserActor`: sign-up, sign-in, password change and account deletion
//! (everything that checks or stores a password).
//!
//! One message per operation ([`UserMsg::SignUp`], ...), handled by the
//! method of the same name on [`UserDeps`]: [`sign_up`](UserDeps::sign_up)
//! and [`sign_in`](UserDeps::sign_in) in `credentials`,
//! [`change_password`](UserDeps::change_password) and
//! [`delete_account`](UserDeps::delete_account) in `account`.
//!
//! The actor only dispatches: each request runs in its own task, because a
//! request spends ~20 ms hashing and a few more in the database, and doing
//! that inside the actor's loop would serialise every sign-in in the
//! process. Hashing goes through the bounded [`HashPool`]; sessions and
//! their tokens come from `TokenActor`.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};

mod account;
mod credentials;

pub(crate) use self::account::PasswordGate;
use super::token::{TokenFailure, TokenHandle};
use super::{CallError, ChildSlot};
use crate::domain::{Email, IssuedToken, Password, SessionOrigin, SignInEmail, UserId};
use crate::fault::Fault;
use crate::hashing::{HashError, HashPool};
use crate::store::{Store, StoreError};

#[derive(Debug, Clone, thiserror::Error)]
pub enum UserFailure {
    #[error("an account with this e-mail address already exists")]
    EmailTaken,
    #[error("invalid e-mail or password")]
    BadCredentials,
    /// The signed-in user's account no longer exists.
    #[error("the account no longer exists")]
    AccountGone,
    /// The caller's [`PasswordGate`] refused to have the password checked.
    #[error("too many attempts; retry in {retry_after_secs} s")]
    RateLimited { retry_after_secs: u64 },
    #[error("too many sign-ins in progress")]
    Overloaded,
    #[error("user service {0}")]
    Fault(#[from] Fault),
    #[error(transparent)]
    Token(#[from] TokenFailure),
}

impl From<StoreError> for UserFailure {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::EmailTaken => UserFailure::EmailTaken,
            StoreError::Fault(f) => UserFailure::Fault(f),
        }
    }
}

impl From<HashError> for UserFailure {
    fn from(e: HashError) -> Self {
        match e {
            HashError::Overloaded => UserFailure::Overloaded,
            HashError::Fault(f) => UserFailure::Fault(f),
        }
    }
}

impl From<CallError> for UserFailure {
    fn from(e: CallError) -> Self {
        UserFailure::Fault(e.into())
    }
}

type Reply<T = IssuedToken> = RpcReplyPort<Result<T, UserFailure>>;

pub enum UserMsg {
    SignUp {
        email: Email,
        password: Password,
        origin: SessionOrigin,
        reply: Reply,
    },
    SignIn {
        email: SignInEmail,
        password: Password,
        origin: SessionOrigin,
        reply: Reply,
    },
    /// Check the signed-in user's `current` password (if `gate` lets it be
    /// checked), then store `new` and end every session of the user;
    /// answered with a token of a new session.
    ChangePassword {
        user_id: UserId,
        current: Password,
        new: Password,
        origin: SessionOrigin,
        gate: Arc<dyn PasswordGate>,
        reply: Reply,
    },
    /// Check the signed-in user's `password` (if `gate` lets it be
    /// checked), then delete the user and every session.
    DeleteAccount {
        user_id: UserId,
        password: Password,
        gate: Arc<dyn PasswordGate>,
        reply: Reply<()>,
    },
    /// Test hook: panic inside the actor's loop.
    #[cfg(feature = "test-hooks")]
    Crash,
    /// Test hook: keep the actor's loop busy for this long (a child that
    /// does not drain in time at shutdown).
    #[cfg(feature = "test-hooks")]
    Hang(Duration),
}

pub(crate) struct UserDeps {
    pub store: Arc<dyn Store>,
    pub hasher: Arc<HashPool>,
    pub tokens: TokenHandle,
    /// The least time a wrong-credentials answer takes.
    pub failure_floor: Duration,
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
        origin: SessionOrigin,
    ) -> Result<IssuedToken, UserFailure> {
        self.slot
            .call(|reply| UserMsg::SignUp {
                email,
                password,
                origin,
                reply,
            })
            .await?
    }

    pub async fn sign_in(
        &self,
        email: SignInEmail,
        password: Password,
        origin: SessionOrigin,
    ) -> Result<IssuedToken, UserFailure> {
        self.slot
            .call(|reply| UserMsg::SignIn {
                email,
                password,
                origin,
                reply,
            })
            .await?
    }

    pub async fn change_password(
        &self,
        user_id: UserId,
        current: Password,
        new: Password,
        origin: SessionOrigin,
        gate: Arc<dyn PasswordGate>,
    ) -> Result<IssuedToken, UserFailure> {
        self.slot
            .call(|reply| UserMsg::ChangePassword {
                user_id,
                current,
                new,
                origin,
                gate,
                reply,
            })
            .await?
    }

    pub async fn delete_account(
        &self,
        user_id: UserId,
        password: Password,
        gate: Arc<dyn PasswordGate>,
    ) -> Result<(), UserFailure> {
        self.slot
            .call(|reply| UserMsg::DeleteAccount {
                user_id,
                password,
                gate,
                reply,
            })
            .await?
    }

    #[cfg(feature = "test-hooks")]
    pub fn crash(&self) -> bool {
        self.slot.cast(UserMsg::Crash)
    }

    /// Test hook: keep the current `UserActor`'s loop busy for `time`.
    #[cfg(feature = "test-hooks")]
    pub fn hang(&self, time: Duration) -> bool {
        self.slot.cast(UserMsg::Hang(time))
    }
}

pub(crate) struct UserActor;

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
                origin,
                reply,
            } => answer(
                reply,
                async move { deps.sign_up(email, password, origin).await },
            ),
            UserMsg::SignIn {
                email,
                password,
                origin,
                reply,
            } => answer(
                reply,
                async move { deps.sign_in(email, password, origin).await },
            ),
            UserMsg::ChangePassword {
                user_id,
                current,
                new,
                origin,
                gate,
                reply,
            } => answer(reply, async move {
                deps.change_password(user_id, current, new, origin, &*gate)
                    .await
            }),
            UserMsg::DeleteAccount {
                user_id,
                password,
                gate,
                reply,
            } => answer(reply, async move {
                deps.delete_account(user_id, password, &*gate).await
            }),
            #[cfg(feature = "test-hooks")]
            UserMsg::Crash => panic!("UserActor crashed on request (test hook)"),
            #[cfg(feature = "test-hooks")]
            UserMsg::Hang(time) => tokio::time::sleep(time).await,
        }
        Ok(())
    }
}

/// Runs `work` in a task of its own (out of the actor's loop) and answers
/// with its result.
fn answer<T: Send + 'static>(
    reply: Reply<T>,
    work: impl Future<Output = Result<T, UserFailure>> + Send + 'static,
) {
    tokio::spawn(async move {
        let _ = reply.send(work.await);
    });
}
