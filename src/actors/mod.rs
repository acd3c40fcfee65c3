//! The actor layer: one [`supervisor`] owning three children —
//! [`user::UserActor`] (sign-up, sign-in), [`token::TokenActor`] (issue,
//! rotate, revoke, authorize) and [`db_health::DbHealthActor`] — plus the
//! handles the HTTP layer uses to reach them. One file (or folder) per
//! actor; what an actor uses but is not itself an actor lives elsewhere
//! (session state in `crate::sessions`, the argon2 pool in
//! `crate::hashing`).
//!
//! A child's `ActorRef` dies with the child, so nobody keeps one: callers go
//! through a [`ChildSlot`] that the supervisor refills after each restart.
//! While a child is down its slot is empty and calls fail at once with
//! [`CallError::Unavailable`] (HTTP 503) instead of hanging.

pub(crate) mod db_health;
pub(crate) mod supervisor;
pub(crate) mod token;
pub(crate) mod user;

use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwapOption;
use ractor::rpc::CallResult;
use ractor::{ActorRef, Message, RpcReplyPort};

pub use supervisor::{ActorKind, Services};

/// Why a call to an actor got no answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CallError {
    /// The actor is down (restarting) or died while holding the request.
    #[error("{0} is unavailable")]
    Unavailable(ActorKind),
    /// The actor did not answer within the request timeout.
    #[error("{0} did not answer in time")]
    Timeout(ActorKind),
}

impl From<CallError> for crate::fault::Fault {
    /// A child that cannot answer is a service that cannot answer now.
    fn from(e: CallError) -> Self {
        crate::fault::Fault::unavailable(e)
    }
}

/// The current `ActorRef` of one supervised child, swapped on restart.
pub struct ChildSlot<M: Message> {
    kind: ActorKind,
    current: ArcSwapOption<ActorRef<M>>,
    timeout: Duration,
}

impl<M: Message> ChildSlot<M> {
    pub fn new(kind: ActorKind, timeout: Duration) -> Arc<Self> {
        Arc::new(ChildSlot {
            kind,
            current: ArcSwapOption::empty(),
            timeout,
        })
    }

    pub(crate) fn set(&self, actor: Option<ActorRef<M>>) {
        self.current.store(actor.map(Arc::new));
    }

    pub fn get(&self) -> Option<Arc<ActorRef<M>>> {
        self.current.load_full()
    }

    /// Sends a request built by `build` and waits for the answer.
    pub async fn call<R: Send + 'static>(
        &self,
        build: impl FnOnce(RpcReplyPort<R>) -> M,
    ) -> Result<R, CallError> {
        let actor = self.get().ok_or(CallError::Unavailable(self.kind))?;
        match actor.call(build, Some(self.timeout)).await {
            Ok(CallResult::Success(reply)) => Ok(reply),
            Ok(CallResult::Timeout) => Err(CallError::Timeout(self.kind)),
            // The actor died with the request in its mailbox (its reply port
            // was dropped), or was already dead when we sent.
            Ok(CallResult::SenderError) | Err(_) => Err(CallError::Unavailable(self.kind)),
        }
    }

    /// Sends a message without waiting. If the actor is down the message
    /// is dropped, and with it any reply port inside: whoever waits on that
    /// port gets [`CallError::Unavailable`] rather than a hang.
    pub fn cast(&self, message: M) -> bool {
        self.get().is_some_and(|actor| actor.cast(message).is_ok())
    }
}
