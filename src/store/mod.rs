//! Storage: the [`Store`] trait every backend implements, the records it
//! moves, and [`connect`], which opens the backend the settings name and
//! brings its schema up to date.
//!
//! Backends: [`postgres`] (production, several instances may share it) and
//! [`sqlite`] (the embedded default: one file, one instance). Both pass the
//! same integration suite. The store knows nothing of actors or HTTP.

#[cfg(test)]
pub(crate) mod conformance;
pub mod migrations;
pub mod postgres;
pub mod sqlite;

use std::sync::Arc;

use async_trait::async_trait;

pub use crate::domain::SessionChange;
use crate::domain::{Email, Session, SessionId, UserId};
use crate::settings::{Database, Settings};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The unique index on the normalised e-mail refused an insert.
    #[error("e-mail address already registered")]
    EmailTaken,
    /// The database cannot be reached or did not answer in time. Callers
    /// answer 503; the operation may be retried.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// Anything else (a bug, a schema mismatch, a corrupt file).
    #[error("store failure: {0}")]
    Internal(String),
}

/// A user to create. The e-mail is already normalised by [`Email`].
#[derive(Debug, Clone)]
pub struct NewUser {
    pub id: UserId,
    pub email: Email,
    pub password_hash: String,
}

/// A stored user.
#[derive(Debug, Clone)]
pub struct UserRecord {
    pub id: UserId,
    pub password_hash: String,
}

/// One change to the `sessions` table. `TokenActor` batches these (group
/// commit) and hands a whole batch to [`Store::write_sessions`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionWrite {
    /// A new session (sign-in or sign-up).
    Create(Session),
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
    /// Revoke every live session of a user ("logout everywhere"). Always
    /// `Applied`; the sessions it revoked are in [`BatchOutcome::changes`].
    RevokeUser { user_id: UserId, revoked_at_ms: i64 },
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

/// A snapshot of a connection pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolStatus {
    /// Connections open (in use or idle).
    pub size: usize,
    /// Idle connections ready for use.
    pub available: usize,
    /// Callers waiting for a connection.
    pub waiting: usize,
}

/// What the change feed delivers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FeedEvent {
    /// The feed (re)connected and is listening. Changes committed while it
    /// was not listening were not delivered: read them with
    /// [`Store::changes_since`].
    Connected,
    /// Changes committed by some instance (this one included).
    Changes(Vec<SessionChange>),
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

#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// "postgres" or "sqlite", for logs.
    fn kind(&self) -> &'static str;

    /// A cheap round trip, used by `DbHealthActor`.
    async fn ping(&self) -> Result<(), StoreError>;

    /// Inserts a user; [`StoreError::EmailTaken`] if the address is taken.
    async fn insert_user(&self, user: &NewUser) -> Result<(), StoreError>;

    async fn find_user_by_email(&self, email: &Email) -> Result<Option<UserRecord>, StoreError>;

    async fn load_session(&self, id: SessionId) -> Result<Option<Session>, StoreError>;

    /// Applies a batch of session writes in one transaction. When this
    /// returns `Ok`, every applied write is durable (committed; on SQLite,
    /// fsynced) and, on PostgreSQL, its changes were published to the
    /// change feed in the same transaction. Writes are applied grouped by
    /// kind: creates, rotations, revocations, user revocations.
    async fn write_sessions(&self, batch: &[SessionWrite]) -> Result<BatchOutcome, StoreError>;

    /// Sessions rotated or revoked at or after `since_ms` (by any
    /// instance): the catch-up read after the change feed reconnects.
    async fn changes_since(&self, since_ms: i64) -> Result<Vec<SessionChange>, StoreError>;

    /// Deletes sessions whose lifetime ended before `before_ms`; returns
    /// how many.
    async fn prune_sessions(&self, before_ms: i64) -> Result<u64, StoreError>;

    /// Starts the change feed: every change any instance commits, as it
    /// commits. `None` for a backend that serves one instance only (SQLite).
    /// The feed reconnects by itself and says so with
    /// [`FeedEvent::Connected`]; it stops when the receiver is dropped.
    fn subscribe(&self) -> Option<tokio::sync::mpsc::Receiver<FeedEvent>>;

    /// All signing keys, oldest first.
    async fn signing_keys(&self) -> Result<Vec<SigningKeyRecord>, StoreError>;

    async fn insert_signing_key(&self, key: &SigningKeyRecord) -> Result<(), StoreError>;

    /// Connection-pool state for metrics, if the backend pools.
    fn pool_status(&self) -> Option<PoolStatus> {
        None
    }

    /// Returns the stored HS256 secret, storing `candidate` first if none is
    /// stored yet (so every instance and every restart agree on one secret).
    async fn signing_secret(&self, candidate: &str) -> Result<String, StoreError>;
}

/// Opens the store named by the settings, creating the database (PostgreSQL)
/// or file (SQLite) if missing and applying pending migrations.
pub async fn connect(settings: &Settings) -> Result<Arc<dyn Store>, StoreError> {
    let database = settings
        .database()
        .map_err(|e| StoreError::Internal(e.to_string()))?;
    Ok(match database {
        Database::Sqlite { path } => Arc::new(sqlite::SqliteStore::open(&path).await?),
        Database::Postgres(target) => Arc::new(
            postgres::PostgresStore::connect(&target, settings.db_pool_size, settings.db_timeout())
                .await?,
        ),
    })
}
