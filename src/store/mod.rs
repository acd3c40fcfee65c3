//! Storage: the [`Store`] trait every backend implements, the records it
//! moves, and [`connect`], which opens the backend the settings name and
//! brings its schema up to date.
//!
//! Backends: [`postgres`] (production, several instances may share it) and
//! [`sqlite`] (the embedded default: one file, one instance). Both pass the
//! same integration suite. The store knows nothing of actors or HTTP.

pub mod migrations;
pub mod postgres;
pub mod sqlite;

use std::sync::Arc;

use async_trait::async_trait;

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
    /// Revoke session `id` (idempotent).
    Revoke { id: SessionId, revoked_at_ms: i64 },
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

    /// Applies a batch of session writes in one transaction and returns one
    /// outcome per write, in order. When this returns `Ok`, every applied
    /// write is durable (committed; on SQLite, fsynced).
    async fn write_sessions(&self, batch: &[SessionWrite])
        -> Result<Vec<WriteOutcome>, StoreError>;

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
