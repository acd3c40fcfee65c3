//! Storage: the [`Store`] trait every backend implements, the records it
//! moves, and [`connect`], which opens the backend the settings name and
//! brings its schema up to date.
//!
//! Backends: [`postgres`] (production, several instances may share it) and
//! [`sqlite`] (the embedded default: one file, one instance). Both pass the
//! same integration suite. The store knows nothing of actors or HTTP.

#[cfg(test)]
pub(crate) mod conformance;
pub(crate) mod migrations;
pub(crate) mod postgres;
mod shared;
mod sql;
pub(crate) mod sqlite;

use std::sync::Arc;

use async_trait::async_trait;

pub(crate) use crate::domain::SessionChange;
use crate::domain::{
    Email, Session, SessionCursor, SessionId, SessionOrigin, SessionSummary, UserId,
};
use crate::fault::Fault;
use crate::settings::{Database, Settings};

#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// The unique index on the normalised e-mail refused an insert.
    #[error("e-mail address already registered")]
    EmailTaken,
    /// The database cannot be reached or did not answer in time
    /// ([`FaultKind::Unavailable`](crate::fault::FaultKind): callers answer
    /// 503, the operation may be retried), or anything else (a bug, a schema
    /// mismatch, a corrupt file). Decided once, where the backend sees the
    /// failure.
    #[error("store {0}")]
    Fault(#[from] Fault),
}

impl StoreError {
    /// The database cannot answer now.
    pub fn unavailable(source: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        StoreError::Fault(Fault::unavailable(source))
    }

    /// A failure that retrying will not cure.
    pub fn internal(source: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        StoreError::Fault(Fault::internal(source))
    }

    pub fn is_unavailable(&self) -> bool {
        matches!(self, StoreError::Fault(f) if f.is_unavailable())
    }
}

/// A user to create. The e-mail is already normalised by [`Email`].
#[derive(Debug, Clone)]
pub struct NewUser {
    pub id: UserId,
    pub email: Email,
    pub password_hash: String,
}

/// The first session of a user signing up, stored with the user's row by
/// [`Store::sign_up`]. Its `user_int_id` is the one the new row gets, known
/// only once it is inserted.
#[derive(Debug, Clone)]
pub struct NewSession {
    pub id: SessionId,
    pub issued_at_ms: i64,
    pub expires_at_ms: i64,
    pub origin: SessionOrigin,
}

impl NewSession {
    /// The session as stored for `user`, whose row got `int_id`.
    pub(crate) fn stored(&self, user: UserId, int_id: i64) -> Session {
        Session {
            id: self.id,
            user_id: user,
            user_int_id: int_id,
            generation: 0,
            issued_at_ms: self.issued_at_ms,
            expires_at_ms: self.expires_at_ms,
            revoked: false,
        }
    }
}

/// A stored user.
#[derive(Debug, Clone)]
pub struct UserRecord {
    pub id: UserId,
    /// As stored: normalised for authd's own accounts, the old spelling
    /// for some adopted ones.
    pub email: String,
    /// The integer id (see `Session::user_int_id`).
    pub int_id: i64,
    /// argon2id PHC string; empty while the password is still only the old
    /// service's bcrypt hash (an account adopted by a token exchange).
    pub password_hash: String,
    /// The old service's `users.id`, for an account adopted from it.
    pub legacy_id: Option<i64>,
    /// The old service's credentials of this account (its tokens, and its
    /// bcrypt hash if authd has no password yet) are no longer honoured.
    pub legacy_tokens_closed: bool,
}

/// An account of the old FastAPI service (`public.users`): read, never
/// written.
#[derive(Clone)]
pub struct LegacyUser {
    pub id: i64,
    /// As the old service stored it (as typed at its sign-up).
    pub email: String,
    /// passlib bcrypt, `$2b$12$...`.
    pub hashed_password: String,
    pub is_active: bool,
}

impl std::fmt::Debug for LegacyUser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LegacyUser")
            .field("id", &self.id)
            .field("is_active", &self.is_active)
            .finish_non_exhaustive()
    }
}

/// The old accounts a sign-in e-mail can mean.
#[derive(Debug, Clone)]
pub enum LegacyMatch {
    None,
    One(LegacyUser),
    /// Several old accounts whose e-mails differ only by case, none of them
    /// spelt exactly as typed: authd will not guess (their ids).
    Ambiguous(Vec<i64>),
}

/// An old token already exchanged for an authd session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LegacyExchange {
    pub session_id: SessionId,
    pub exchanged_at_ms: i64,
}

/// Progress of the cut-over from the old service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LegacyCounts {
    /// Rows of the old `users` table.
    pub old_accounts: i64,
    /// Old accounts authd has adopted (signed in or exchanged a token).
    pub adopted: i64,
    /// Adopted accounts whose password authd has re-hashed with argon2id.
    pub upgraded: i64,
    /// Groups of old accounts whose e-mails differ only by case.
    pub ambiguous_groups: i64,
}

/// Reading the old FastAPI service's tables (PostgreSQL only, when they
/// exist and `legacy_fastapi` is on). Everything authd learns from them is
/// written to its own schema; the old tables are only ever read.
#[async_trait]
pub trait LegacyStore: Send + Sync {
    /// The old account for an e-mail typed at sign-in: spelt exactly so
    /// (the old table's own index), else by case-folded `key` in authd's
    /// index of the old accounts (brought up to date first).
    async fn legacy_find(&self, typed: &str, key: &str) -> Result<LegacyMatch, StoreError>;

    /// The old account with this primary key.
    async fn legacy_user(&self, id: i64) -> Result<Option<LegacyUser>, StoreError>;

    /// How many old accounts have this case-folded e-mail (sign-up refuses
    /// one that any has; several mean case-only duplicates).
    async fn legacy_email_count(&self, key: &str) -> Result<i64, StoreError>;

    /// authd's user adopted from old account `legacy_id`, if any.
    async fn adopted_user(&self, legacy_id: i64) -> Result<Option<UserRecord>, StoreError>;

    /// Adopts old account `legacy_id` as user `id` with `email` (its
    /// `int_id` becomes `legacy_id`; an empty `password_hash` leaves the
    /// password in the old table), or returns the user another request
    /// adopted it as. [`StoreError::EmailTaken`] if an authd account holds
    /// that e-mail.
    async fn adopt(
        &self,
        id: UserId,
        email: &str,
        password_hash: &str,
        legacy_id: i64,
    ) -> Result<UserRecord, StoreError>;

    /// Stores the first argon2id hash of an adopted account whose password
    /// was still the old bcrypt hash; a no-op if one is stored already.
    async fn upgrade_password(&self, user: UserId, password_hash: &str) -> Result<(), StoreError>;

    /// The `user_id` of an old token's row in `access_tokens`, if present.
    async fn legacy_token_owner(&self, token: &str) -> Result<Option<i64>, StoreError>;

    /// The exchange of the old token with this SHA-256, if it happened.
    async fn exchanged(&self, token_sha256: &[u8]) -> Result<Option<LegacyExchange>, StoreError>;

    /// Records the exchange of an old token for `session`. `None` when
    /// this call recorded it; the earlier exchange when another won.
    async fn record_exchange(
        &self,
        token_sha256: &[u8],
        session: SessionId,
        at_ms: i64,
    ) -> Result<Option<LegacyExchange>, StoreError>;

    /// Brings authd's index of the old accounts up to date (new rows by
    /// primary key) and counts the cut-over's progress.
    async fn sync_and_count(&self) -> Result<LegacyCounts, StoreError>;

    /// Groups of old accounts whose e-mails differ only by case:
    /// (case-folded e-mail, their ids), at most `limit` groups.
    async fn ambiguous_accounts(&self, limit: i64) -> Result<Vec<(String, Vec<i64>)>, StoreError>;
}

/// One change to the `sessions` table. `TokenActor` batches these (group
/// commit) and hands a whole batch to [`Store::write_sessions`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionWrite {
    /// A new session (sign-in, password change, old token exchanged) and
    /// where it was started. A sign-up's first session is stored with its
    /// user instead ([`Store::sign_up`]).
    Create(Session, SessionOrigin),
    /// Rotate `id` from generation `from_generation` to the next one, issued
    /// at `issued_at_ms`. Conditional: applies only if the stored generation
    /// is still `from_generation` and the session is not revoked, so two
    /// instances rotating the same token produce exactly one successor.
    Rotate {
        id: SessionId,
        from_generation: u32,
        issued_at_ms: i64,
    },
    /// Revoke session `id` (idempotent). `Conflict` if there is no such
    /// session (pruned).
    Revoke { id: SessionId, revoked_at_ms: i64 },
    /// Revoke every live session of a user ("logout everywhere"), or every
    /// one but `except` ("sign out my other devices"); either way the old
    /// service's tokens of the user are closed too. Always `Applied`; the
    /// sessions it revoked are in [`BatchOutcome::changes`].
    RevokeUser {
        user_id: UserId,
        revoked_at_ms: i64,
        except: Option<SessionId>,
    },
}

/// What a batch did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BatchOutcome {
    /// One per write, in the order of the batch.
    pub outcomes: Vec<WriteOutcome>,
    /// The final state of every session this batch rotated or revoked (at
    /// most one entry per session). The same list reaches every other
    /// instance through the [change feed](Store::subscribe).
    pub changes: Vec<SessionChange>,
}

/// What the change feed delivers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FeedEvent {
    /// The feed (re)connected and is listening. Changes committed while it
    /// was not listening were not delivered: read them from the change log
    /// with [`Store::changes_after`].
    Connected,
    /// Changes committed by some instance (this one included).
    Changes(Vec<SessionChange>),
}

/// How long the change log keeps an entry (pruned with the sessions, by
/// [`Store::prune_change_log`]). A reader that has not read for longer may
/// have lost entries and resyncs instead ([`ChangeRead::Lost`]). Fixed
/// rather than a setting, so that every instance on one database agrees on
/// it.
pub(crate) const CHANGE_LOG_RETENTION_MS: i64 = 10 * 60 * 1000;

/// Most change-log entries (one per batch statement) one read returns. A
/// reader further behind resyncs ([`ChangeRead::Lost`]) rather than read
/// an unbounded backlog: under full load one instance writes a few hundred
/// entries a second, so this is tens of seconds of changes.
pub(crate) const CHANGE_READ_MAX_ENTRIES: i64 = 10_000;

/// Where a reader of the change log stands: every entry committed "before"
/// it has been read. Opaque to callers; each backend fills it in its own way
/// (PostgreSQL: the `xmax` of the snapshot of the last read, and the
/// transactions that snapshot saw in progress, whose entries may commit
/// later; SQLite: the last sequence number read).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ChangeCursor {
    pub(crate) after: i64,
    pub(crate) pending: Vec<i64>,
}

/// What a read of the change log found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChangeRead {
    /// Every session changed since the cursor, once, with its state after
    /// the latest of those changes (possibly some read before, which is
    /// harmless: changes commute), and the cursor to read from next.
    Changes {
        changes: Vec<SessionChange>,
        next: ChangeCursor,
    },
    /// Entries after the cursor are gone (pruned: the reader was away
    /// longer than the retention) or too many to read at once: the reader
    /// must drop what it derived from earlier reads and start again at
    /// `next`.
    Lost {
        next: ChangeCursor,
        why: &'static str,
    },
}

/// A signing key shared by every instance through the database.
#[derive(Clone, PartialEq, Eq)]
pub struct SigningKeyRecord {
    /// Key id: the `kid` header of the tokens it signs.
    pub kid: String,
    /// "EdDSA".
    pub algorithm: String,
    /// PKCS#8 DER of the private key, base64 (standard alphabet).
    pub private_key: String,
    /// The raw 32-byte Ed25519 public key, base64url without padding (the
    /// JWK `x` member).
    pub public_key: String,
    pub created_at_ms: i64,
}

impl std::fmt::Debug for SigningKeyRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKeyRecord")
            .field("kid", &self.kid)
            .field("algorithm", &self.algorithm)
            .field("private_key", &"***")
            .field("public_key", &self.public_key)
            .field("created_at_ms", &self.created_at_ms)
            .finish()
    }
}

/// The outcome of one [`SessionWrite`] in a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteOutcome {
    Applied,
    /// A conditional rotation found another generation (or a revoked or
    /// missing session); nothing was changed.
    Conflict,
}

/// What a signed-in user does to their own account and sessions (each
/// backend's `accounts.rs`). Part of every [`Store`].
#[async_trait]
pub trait AccountStore: Send + Sync {
    /// The user with this id.
    async fn find_user_by_id(&self, id: UserId) -> Result<Option<UserRecord>, StoreError>;

    /// Up to `limit` live sessions of `user` (not revoked, lifetime not
    /// over at `now_ms`), newest first (by creation time, then id, both
    /// descending), starting after `after` when given.
    async fn list_sessions(
        &self,
        user: UserId,
        now_ms: i64,
        after: Option<SessionCursor>,
        limit: usize,
    ) -> Result<Vec<SessionSummary>, StoreError>;

    /// In one transaction: stores the user's new argon2id hash, closes the
    /// old service's credentials of the account, and revokes every live
    /// session of the user at `now_ms` (published to the change feed, like
    /// a batch's changes). `None` if there is no such user.
    async fn change_password(
        &self,
        user: UserId,
        password_hash: &str,
        now_ms: i64,
    ) -> Result<Option<Vec<SessionChange>>, StoreError>;

    /// In one transaction: revokes every session of the user at `now_ms`
    /// (published, like a batch's changes) and strips them of their origin,
    /// records an adopted account's old id as deleted (its old credentials
    /// are never honoured again), and deletes the user, so the e-mail is
    /// free. The revocations are written to the change log like a batch's,
    /// so an instance catching up with [`changes_after`] learns of them; the
    /// revoked rows stay until their lifetime ends (pruned like any other),
    /// so one that reads them through finds them revoked. `None` if there
    /// is no such user.
    ///
    /// [`changes_after`]: Store::changes_after
    async fn delete_account(
        &self,
        user: UserId,
        now_ms: i64,
    ) -> Result<Option<Vec<SessionChange>>, StoreError>;
}

#[async_trait]
pub trait Store: AccountStore + Send + Sync + 'static {
    /// "postgres" or "sqlite", for logs.
    fn kind(&self) -> &'static str;

    /// A cheap round trip, used by `DbHealthActor`.
    async fn ping(&self) -> Result<(), StoreError>;

    /// Inserts a user alone (a sign-up stores its first session with it:
    /// [`Store::sign_up`]) and returns its integer id;
    /// [`StoreError::EmailTaken`] if the address is taken.
    async fn insert_user(&self, user: &NewUser) -> Result<i64, StoreError>;

    /// A sign-up: inserts the user and its first session in one
    /// transaction, so that either both are stored or neither is (a
    /// sign-up that failed, unavailable, can be retried without finding
    /// its address taken). Returns the session as stored.
    /// [`StoreError::EmailTaken`] if the address is taken (nothing is
    /// stored). The session is created, not changed: nothing is announced
    /// on the change feed, as for a batch's creates.
    async fn sign_up(&self, user: &NewUser, session: &NewSession) -> Result<Session, StoreError>;

    /// The user stored under exactly this e-mail (authd's own accounts are
    /// stored normalised; see [`Email`]).
    async fn find_user_by_email(&self, email: &str) -> Result<Option<UserRecord>, StoreError>;

    /// The old service's tables, when this store reads them.
    fn legacy(&self) -> Option<&dyn LegacyStore> {
        None
    }

    async fn load_session(&self, id: SessionId) -> Result<Option<Session>, StoreError>;

    /// Applies a batch of session writes in one transaction. When this
    /// returns `Ok`, every applied write is durable (committed; on SQLite,
    /// fsynced); on PostgreSQL its changes are then announced on the change
    /// feed (best effort, after the commit). Writes are applied grouped by
    /// kind: creates, rotations, revocations, user revocations.
    async fn write_sessions(&self, batch: &[SessionWrite]) -> Result<BatchOutcome, StoreError>;

    /// The change log's current end: a reader starting here reads every
    /// change committed from now on. Taken before a cache loads anything,
    /// so nothing it loads can miss a change.
    async fn change_cursor(&self) -> Result<ChangeCursor, StoreError>;

    /// The sessions rotated or revoked (by any instance; sign-ins are not
    /// changes) whose change committed after `cursor`: the change feed's
    /// catch-up read, after every reconnect and periodically. Reads the
    /// change log by position, never the `sessions` table as a whole, and
    /// never skips a change whose transaction commits after a later one.
    async fn changes_after(&self, cursor: &ChangeCursor) -> Result<ChangeRead, StoreError>;

    /// Deletes change-log entries written before `before_ms` (the caller
    /// passes now minus [`CHANGE_LOG_RETENTION_MS`]); returns how many.
    async fn prune_change_log(&self, before_ms: i64) -> Result<u64, StoreError>;

    /// Deletes sessions whose lifetime ended before `before_ms`; returns
    /// how many.
    async fn prune_sessions(&self, before_ms: i64) -> Result<u64, StoreError>;

    /// Starts the change feed: every change any instance commits, as it
    /// commits. `None` for a backend that serves one instance only (SQLite).
    /// The feed reconnects by itself and says so with
    /// [`FeedEvent::Connected`]; it stops when the receiver is dropped.
    fn subscribe(&self) -> Option<tokio::sync::mpsc::Receiver<FeedEvent>>;

    /// Test hook: while `on`, this instance's changes are not announced on
    /// the change feed (as if every notification were lost).
    #[cfg(feature = "test-hooks")]
    fn drop_notifications(&self, _on: bool) {}

    /// All signing keys, oldest first.
    async fn signing_keys(&self) -> Result<Vec<SigningKeyRecord>, StoreError>;

    async fn insert_signing_key(&self, key: &SigningKeyRecord) -> Result<(), StoreError>;

    /// Returns the stored HS256 secret, storing `candidate` first if none is
    /// stored yet (so every instance and every restart agree on one secret).
    async fn signing_secret(&self, candidate: &str) -> Result<String, StoreError>;
}

/// Opens the store named by the settings, creating the database (PostgreSQL)
/// or file (SQLite) if missing and applying pending migrations.
pub(crate) async fn connect(settings: &Settings) -> Result<Arc<dyn Store>, StoreError> {
    let database = settings.database().map_err(StoreError::internal)?;
    Ok(match database {
        Database::Sqlite { path } => {
            Arc::new(sqlite::SqliteStore::open(&path, settings.db_timeout()).await?)
        }
        Database::Postgres(target) => Arc::new(
            postgres::PostgresStore::connect(
                &target,
                settings.db_pool_size,
                settings.db_timeout(),
                settings.legacy_fastapi,
            )
            .await?,
        ),
    })
}
