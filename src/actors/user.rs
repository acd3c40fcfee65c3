//! `UserActor`: sign-up, sign-in, password change and account deletion
//! (the password checks; the sessions' side is `TokenActor`'s).
//!
//! The actor only dispatches: each request runs in its own task, because a
//! request spends ~20 ms hashing and a few more in the database, and doing
//! that inside the actor's loop would serialise every sign-in in the
//! process. Hashing goes through the bounded [`HashPool`]; the session and
//! its first token come from `TokenActor`.

use std::sync::Arc;
use std::time::Duration;

use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};

use super::token::{TokenFailure, TokenHandle};
use super::{CallError, ChildSlot};
use crate::domain::{Email, IssuedToken, Password, SessionOrigin, SignInEmail, UserId};
use crate::fault::Fault;
use crate::hashing::{HashError, HashPool};
use crate::store::{LegacyMatch, NewUser, Store, StoreError, UserRecord};

#[derive(Debug, Clone, thiserror::Error)]
pub enum UserFailure {
    #[error("an account with this e-mail address already exists")]
    EmailTaken,
    #[error("invalid e-mail or password")]
    BadCredentials,
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
    /// The key of the user's per-account rate limit (the case-folded
    /// e-mail, as sign-in keys it); `None` if the user is gone.
    AccountKey {
        user_id: UserId,
        reply: Reply<Option<String>>,
    },
    /// Check `current`, then store `new` and end every session of the
    /// user; answered with a token of a new session.
    ChangePassword {
        user_id: UserId,
        current: Password,
        new: Password,
        origin: SessionOrigin,
        reply: Reply,
    },
    /// Check `password`, then delete the user and every session.
    DeleteAccount {
        user_id: UserId,
        password: Password,
        reply: Reply<()>,
    },
    /// Test hook: panic inside the actor's loop.
    #[cfg(feature = "test-hooks")]
    Crash,
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

    /// The key of the user's per-account rate limit.
    pub async fn account_key(&self, user_id: UserId) -> Result<Option<String>, UserFailure> {
        self.slot
            .call(|reply| UserMsg::AccountKey { user_id, reply })
            .await?
    }

    pub async fn change_password(
        &self,
        user_id: UserId,
        current: Password,
        new: Password,
        origin: SessionOrigin,
    ) -> Result<IssuedToken, UserFailure> {
        self.slot
            .call(|reply| UserMsg::ChangePassword {
                user_id,
                current,
                new,
                origin,
                reply,
            })
            .await?
    }

    pub async fn delete_account(
        &self,
        user_id: UserId,
        password: Password,
    ) -> Result<(), UserFailure> {
        self.slot
            .call(|reply| UserMsg::DeleteAccount {
                user_id,
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
            } => {
                tokio::spawn(async move {
                    let _ = reply.send(sign_up(&deps, email, password, origin).await);
                });
            }
            UserMsg::SignIn {
                email,
                password,
                origin,
                reply,
            } => {
                tokio::spawn(async move {
                    let _ = reply.send(sign_in(&deps, email, password, origin).await);
                });
            }
            UserMsg::AccountKey { user_id, reply } => {
                tokio::spawn(async move {
                    let found = deps.store.find_user_by_id(user_id).await;
                    let key = found.map(|user| user.map(|u| u.email.to_lowercase()));
                    let _ = reply.send(key.map_err(UserFailure::from));
                });
            }
            UserMsg::ChangePassword {
                user_id,
                current,
                new,
                origin,
                reply,
            } => {
                tokio::spawn(async move {
                    let changed = change_password(&deps, user_id, current, new, origin);
                    let _ = reply.send(changed.await);
                });
            }
            UserMsg::DeleteAccount {
                user_id,
                password,
                reply,
            } => {
                tokio::spawn(async move {
                    let _ = reply.send(delete_account(&deps, user_id, password).await);
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
    origin: SessionOrigin,
) -> Result<IssuedToken, UserFailure> {
    // Hash first, even if the address turns out to be taken: the unique
    // index is the one authority on that (two sign-ups can race), and the
    // answer takes the same time either way.
    let password_hash = deps.hasher.hash(password).await?;
    if let Some(legacy) = deps.store.legacy() {
        // An address of the old service's is its owner's, who signs in.
        if legacy.legacy_email_count(email.as_str()).await? > 0 {
            return Err(UserFailure::EmailTaken);
        }
    }
    let user = NewUser {
        id: UserId::new_random(),
        email,
        password_hash,
    };
    let int_id = deps.store.insert_user(&user).await?;
    Ok(deps.tokens.issue(user.id, int_id, origin).await?)
}

/// Checks the credentials and starts a session. Every wrong-credentials
/// answer waits until `signin_failure_floor` after the request arrived, so
/// an unknown e-mail (no hash at all), a wrong argon2id password (~20 ms)
/// and a wrong bcrypt password of a not-yet-upgraded old account (~215 ms)
/// cannot be told apart by time, and no CPU is spent to make them so.
async fn sign_in(
    deps: &UserDeps,
    email: SignInEmail,
    password: Password,
    origin: SessionOrigin,
) -> Result<IssuedToken, UserFailure> {
    let started = tokio::time::Instant::now();
    let user = floored(
        deps,
        started,
        check_credentials(deps, &email, password).await,
    )
    .await?;
    Ok(deps.tokens.issue(user.id, user.int_id, origin).await?)
}

/// A wrong-credentials answer waits until `signin_failure_floor` after
/// `started`, wherever a password is checked (sign-in, password change,
/// account deletion).
async fn floored<T>(
    deps: &UserDeps,
    started: tokio::time::Instant,
    checked: Result<T, UserFailure>,
) -> Result<T, UserFailure> {
    if matches!(checked, Err(UserFailure::BadCredentials)) {
        tokio::time::sleep_until(started + deps.failure_floor).await;
    }
    checked
}

/// The signed-in user `user_id`, if `password` is theirs.
async fn check_own_password(
    deps: &UserDeps,
    user_id: UserId,
    password: Password,
) -> Result<UserRecord, UserFailure> {
    let started = tokio::time::Instant::now();
    let checked = match deps.store.find_user_by_id(user_id).await? {
        Some(user) => verify_known(deps, user, password).await,
        // Deleted since its token was authorized.
        None => Err(UserFailure::BadCredentials),
    };
    floored(deps, started, checked).await
}

/// Checks the current password, stores the new one (argon2id, on the
/// hashing pool) and ends every session of the user in one transaction
/// (`TokenActor`), then starts a new session for the caller.
async fn change_password(
    deps: &UserDeps,
    user_id: UserId,
    current: Password,
    new: Password,
    origin: SessionOrigin,
) -> Result<IssuedToken, UserFailure> {
    let user = check_own_password(deps, user_id, current).await?;
    let password_hash = deps.hasher.hash(new).await?;
    if !deps.tokens.change_password(user.id, password_hash).await? {
        return Err(UserFailure::BadCredentials);
    }
    Ok(deps.tokens.issue(user.id, user.int_id, origin).await?)
}

/// Checks the password, then deletes the user and ends every session.
async fn delete_account(
    deps: &UserDeps,
    user_id: UserId,
    password: Password,
) -> Result<(), UserFailure> {
    let user = check_own_password(deps, user_id, password).await?;
    if !deps.tokens.delete_account(user.id).await? {
        return Err(UserFailure::BadCredentials);
    }
    Ok(())
}

/// The account `email` and `password` open, or `BadCredentials`.
async fn check_credentials(
    deps: &UserDeps,
    email: &SignInEmail,
    password: Password,
) -> Result<UserRecord, UserFailure> {
    // authd's own accounts (adopted ones included). Spelt exactly as typed
    // first: two old accounts whose e-mails differ only by case are both
    // adopted under their own spelling.
    let mut user = deps.store.find_user_by_email(email.typed()).await?;
    if user.is_none() && email.folded() != email.typed() {
        user = deps.store.find_user_by_email(email.folded()).await?;
    }
    if let Some(user) = user {
        return verify_known(deps, user, password).await;
    }
    let Some(legacy) = deps.store.legacy() else {
        return Err(UserFailure::BadCredentials);
    };
    let old = match legacy.legacy_find(email.typed(), email.folded()).await? {
        LegacyMatch::One(old) => old,
        LegacyMatch::None => return Err(UserFailure::BadCredentials),
        LegacyMatch::Ambiguous(ids) => {
            tracing::warn!(
                event = "legacy_email_ambiguous",
                legacy_ids = ?ids,
                "sign-in e-mail matches several old accounts by case only and none exactly; \
                 refused (see `authd legacy-report`)"
            );
            return Err(UserFailure::BadCredentials);
        }
    };
    if let Some(adopted) = legacy.adopted_user(old.id).await? {
        return verify_known(deps, adopted, password).await;
    }
    if !old.is_active
        || !deps
            .hasher
            .verify_bcrypt(password.clone(), old.hashed_password.clone())
            .await?
    {
        return Err(UserFailure::BadCredentials);
    }
    // The first successful sign-in adopts the account with an argon2id
    // hash; bcrypt is not consulted for it again.
    let password_hash = deps.hasher.hash(password).await?;
    let folded = old.email.trim().to_lowercase();
    let shared = legacy.legacy_email_count(&folded).await? > 1;
    let spelling = if shared {
        old.email.as_str()
    } else {
        folded.as_str()
    };
    let user = legacy
        .adopt(UserId::new_random(), spelling, &password_hash, old.id)
        .await
        .map_err(|e| match e {
            StoreError::EmailTaken => {
                tracing::warn!(
                    event = "legacy_email_taken",
                    legacy_id = old.id,
                    "an old account's e-mail belongs to another authd account; not adopted"
                );
                UserFailure::BadCredentials
            }
            other => other.into(),
        })?;
    metrics::counter!(crate::telemetry::metrics::LEGACY_ADOPTIONS, "via" => "signin").increment(1);
    tracing::info!(
        event = "legacy_account_adopted",
        user_id = %user.id,
        legacy_id = old.id,
        "old account adopted at sign-in; password re-hashed with argon2id"
    );
    Ok(user)
}

/// Verifies a password against an authd account: its argon2id hash, or,
/// for an account adopted through a token exchange whose password is still
/// the old bcrypt hash, that hash once (then re-hashed with argon2id).
async fn verify_known(
    deps: &UserDeps,
    user: UserRecord,
    password: Password,
) -> Result<UserRecord, UserFailure> {
    if !user.password_hash.is_empty() {
        let matched = deps
            .hasher
            .verify(password, user.password_hash.clone())
            .await?;
        return if matched {
            Ok(user)
        } else {
            Err(UserFailure::BadCredentials)
        };
    }
    let (Some(legacy), Some(legacy_id)) = (deps.store.legacy(), user.legacy_id) else {
        return Err(UserFailure::BadCredentials);
    };
    if user.legacy_tokens_closed {
        // authd's state wins: after "log out everywhere" none of the old
        // service's credentials (tokens or bcrypt hash) opens the account.
        return Err(UserFailure::BadCredentials);
    }
    let Some(old) = legacy.legacy_user(legacy_id).await?.filter(|o| o.is_active) else {
        return Err(UserFailure::BadCredentials);
    };
    if !deps
        .hasher
        .verify_bcrypt(password.clone(), old.hashed_password)
        .await?
    {
        return Err(UserFailure::BadCredentials);
    }
    let password_hash = deps.hasher.hash(password).await?;
    legacy.upgrade_password(user.id, &password_hash).await?;
    Ok(UserRecord {
        password_hash,
        ..user
    })
}
