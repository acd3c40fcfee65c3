//! The PostgreSQL backend: a deadpool-postgres pool shared by every actor,
//! for deployments where several instances share one database.
//!
//! Choices, and why:
//!
//! - [`PostgresStore::connect`] creates the target database if it is
//!   missing (through the maintenance database `postgres`), so a fresh
//!   server needs no manual step; two instances racing to create it both
//!   succeed. Migrations then run under an advisory lock (see
//!   [`super::migrations`]).
//! - Every operation, pool checkout included, must finish within the
//!   configured timeout; otherwise it fails with
//!   an unavailable [`StoreError::Fault`] (the callers answer 503) and the connection
//!   it held is discarded rather than returned to the pool, since a
//!   connection that stopped answering is probably dead.
//! - [`Store::write_sessions`] is the hot path (group commit): a whole
//!   batch is one transaction and one statement per kind of write, whatever
//!   the batch size, by passing columns as arrays and `UNNEST`ing them on the
//!   server. That is one round trip per kind instead of one per session.
//!   Rotations are conditional `UPDATE`s (generation still as expected, not
//!   revoked), so two instances rotating the same session produce exactly
//!   one successor; under READ COMMITTED the loser re-checks the condition
//!   against the winner's row and updates nothing. "Logout everywhere"
//!   ([`SessionWrite::RevokeUser`]) is one more statement for all the users
//!   of the batch. Every statement that rotates or revokes sessions also
//!   writes one entry listing them to the change log (`session_changes`),
//!   in the same statement, which is what [`Store::changes_after`] reads
//!   (`changelog` explains how it reads by position without skipping).
//! - Change publication: a batch's transaction does not notify. Once it
//!   committed, the final states of what it rotated or revoked (taken from
//!   the `RETURNING` of the updates) go to the publisher (`publisher`), one
//!   task that sends them on [`CHANGE_CHANNEL`] with `pg_notify`, coalescing
//!   whatever committed meanwhile into one statement, on a connection of its
//!   own. Committing a transaction that notified takes a database-wide lock
//!   held through its WAL flush, so notifying batches used to commit one at
//!   a time, each waiting for its own flush; now a batch commits without
//!   that lock, and the next batch gathers everything that arrived while
//!   it committed (one batch at a time by default: see
//!   `sessions::BatchLimits`). Listeners still only hear of committed
//!   changes, but at most once and not atomically with the commit (a crash
//!   in between loses the notification), so every listener also catches up
//!   by reading [`Store::changes_after`] periodically (`sessions::feed`).
//!   Payloads are text lines `"<uuid> <generation> <issued_at_ms> <0|1>"`
//!   (`encode_changes`), split so each stays under PostgreSQL's 8000-byte
//!   limit; all the chunks go out in one statement.
//! - The change feed ([`Store::subscribe`]) listens on a dedicated
//!   connection, not a pooled one: `LISTEN` belongs to a server session,
//!   and the pool would hand that session to other work and recycle it at
//!   will. A task owns the connection, drives it with `poll_message` (the
//!   only way to see notifications) and forwards them. Notifications are
//!   at most once: those sent while the feed was down are lost, so after
//!   every (re)connection it first emits [`FeedEvent::Connected`] and the
//!   consumer catches up with [`Store::changes_after`]. The connection is
//!   otherwise idle, so it re-issues its `LISTEN` every 30 s
//!   (`FEED_HEARTBEAT`) to notice a silently dead server within a timeout
//!   rather than at the next TCP keepalive (hours). On loss it logs a
//!   warning and reconnects with backoff until the receiver is dropped.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use deadpool_postgres::{Object, Pool};
use tokio::sync::mpsc;
use tokio::time::{timeout_at, Instant};
use tokio_postgres::tls::NoTlsStream;
use tokio_postgres::{AsyncMessage, Connection, Row, Socket};
use uuid::Uuid;

mod accounts;
mod changelog;
mod errors;
mod feed;
mod legacy;
mod primary;
mod publisher;
mod rows;
mod setup;
mod signup;
mod writes;

/// The work an operation does on its connection (see
/// [`PostgresStore::on_connection`]).
type Work<'c, T> = std::pin::Pin<
    Box<dyn std::future::Future<Output = Result<T, tokio_postgres::Error>> + Send + 'c>,
>;

use errors::{ends_connection, is_email_taken, Failure};
#[cfg(test)]
use feed::decode_changes;
use feed::encode_changes;
use feed::run_feed;
use primary::Primary;
use publisher::Publisher;
use rows::{generation_at, session_from_row, user_from_row};
use writes::{apply_plan, Plan};

use super::shared::ChangeSet;
use super::sql::{
    INSERT_SIGNING_KEY, LOAD_SECRET, LOAD_SESSION, LOAD_SIGNING_KEYS, STORE_SECRET, USER_BY_EMAIL,
};
use super::{
    migrations, BatchOutcome, ChangeCursor, ChangeRead, FeedEvent, LegacyStore, NewSession,
    NewUser, SessionWrite, SigningKeyRecord, Store, StoreError, UserRecord, WriteOutcome,
};
use crate::domain::{Session, SessionChange, SessionCursor, SessionId, SessionSummary, UserId};
use crate::settings::PostgresTarget;

/// The schema holding every table of authd's (see `migrations`).
pub(crate) const SCHEMA: &str = "authd";

/// Name of the unique constraint on `users.email` (sql/postgres/0001).
const EMAIL_CONSTRAINT: &str = "users_email_key";

/// The `NOTIFY` channel on which committed session changes are published.
pub(crate) const CHANGE_CHANNEL: &str = "authd_sessions";

/// Every notification payload is shorter than this (PostgreSQL refuses
/// 8000 bytes and more).
const MAX_PAYLOAD_BYTES: usize = 7900;

/// Capacity of the change feed's channel, in events.
const FEED_CAPACITY: usize = 1024;
/// Reconnection backoff of the change feed: from the first to the last,
/// doubling.
const FEED_BACKOFF_MIN: Duration = Duration::from_millis(100);
const FEED_BACKOFF_MAX: Duration = Duration::from_secs(2);
/// How often the idle change feed connection checks the server answers.
const FEED_HEARTBEAT: Duration = Duration::from_secs(30);
/// `application_name` of the change feed connection (`pg_stat_activity`).
const FEED_APPLICATION_NAME: &str = "authd-feed";

/// Rows per `DELETE` of [`Store::prune_sessions`], so that pruning a large
/// backlog neither holds many row locks nor outlives the timeout.
const PRUNE_CHUNK: i64 = 5_000;

/// The integer id comes from the column's sequence.
const INSERT_USER: &str =
    "INSERT INTO users (id, email, password_hash) VALUES ($1, $2, $3) RETURNING int_id";

/// One notification per payload, all in one round trip.
const NOTIFY_CHANGES: &str = "SELECT pg_notify($1, p) FROM UNNEST($2::text[]) AS p";
const PRUNE_SESSIONS: &str = "DELETE FROM sessions WHERE id IN \
     (SELECT id FROM sessions WHERE expires_at_ms < $1 LIMIT $2)";

pub(crate) struct PostgresStore {
    pool: Pool,
    timeout: Duration,
    /// Whether the old FastAPI service's tables are read (they exist and
    /// `legacy_fastapi` is on).
    legacy: bool,
    /// The pool's connection settings but the host, for the change feed's
    /// own connection.
    config: tokio_postgres::Config,
    /// Which host is primary; every connection is made through it.
    primary: Arc<Primary>,
    /// Announces committed changes to the other instances.
    publisher: Publisher,
}

impl PostgresStore {
    /// Creates the database if missing, opens a pool of at most `pool_size`
    /// connections and applies pending migrations.
    pub(crate) async fn connect(
        target: &PostgresTarget,
        pool_size: usize,
        timeout: Duration,
        legacy_fastapi: bool,
    ) -> Result<Self, StoreError> {
        let config = setup::client_config(target);
        let primary = Primary::new(target.hosts.clone(), timeout);
        setup::ensure_database(&config, &primary, &target.dbname, timeout).await?;
        let pool = setup::build_pool(config.clone(), &primary, pool_size, timeout)?;
        let publisher = Publisher::spawn(&config, &primary, timeout);
        let mut store = PostgresStore {
            pool,
            timeout,
            legacy: false,
            config,
            primary,
            publisher,
        };

        let setup = timeout.max(setup::SETUP_TIMEOUT_FLOOR);
        store
            .on_connection_within("applying migrations", setup, |c| {
                Box::pin(migrations::apply_postgres(c, SCHEMA, migrations::POSTGRES))
            })
            .await?;
        if legacy_fastapi {
            store.legacy = store
                .on_connection_within("detecting the old service's tables", setup, |c| {
                    Box::pin(async move { c.query_one(legacy::DETECT, &[]).await?.try_get(0) })
                })
                .await?;
        }
        setup::spawn_pool_gauges(&store.pool);
        tracing::info!(
            store = "postgres",
            target = ?target,
            primary = %store.primary.current().map(ToString::to_string).unwrap_or_default(),
            pool_size,
            "store ready"
        );
        Ok(store)
    }

    /// Runs `work` on a pooled connection within the store's timeout. The
    /// one skeleton of every operation: checkout, deadline, timeout, settle
    /// (a connection whose work timed out is discarded, not returned).
    /// Every database operation goes through here, so the store alone
    /// bounds its operations and no caller wraps them again.
    pub(super) async fn on_connection<T>(
        &self,
        context: &'static str,
        work: impl for<'c> FnOnce(&'c mut Object) -> Work<'c, T>,
    ) -> Result<T, StoreError> {
        self.on_connection_within(context, self.timeout, work).await
    }

    /// [`on_connection`](Self::on_connection) with a limit of its own (start-up
    /// work: migrations may wait for another instance's).
    async fn on_connection_within<T>(
        &self,
        context: &'static str,
        limit: Duration,
        work: impl for<'c> FnOnce(&'c mut Object) -> Work<'c, T>,
    ) -> Result<T, StoreError> {
        let deadline = Instant::now() + limit;
        let mut client = self.client(context, deadline).await?;
        let result = timeout_at(deadline, work(&mut client)).await;
        self.settle(client, result, limit)
            .map_err(|f| f.into_store_error(context))
    }

    /// A pooled connection, waiting no later than `deadline`.
    async fn client(&self, context: &str, deadline: Instant) -> Result<Object, StoreError> {
        match timeout_at(deadline, self.pool.get()).await {
            Ok(Ok(client)) => Ok(client),
            Ok(Err(e)) => Err(Failure::Pool(e).into_store_error(context)),
            Err(_) => Err(Failure::Elapsed(self.timeout).into_store_error(context)),
        }
    }

    /// Gives `client` back (or, after a timeout or an error showing it is
    /// no longer usable, throws it away) and unwraps the result of the work
    /// done with it.
    fn settle<T>(
        &self,
        client: Object,
        result: Result<Result<T, tokio_postgres::Error>, tokio::time::error::Elapsed>,
        limit: Duration,
    ) -> Result<T, Failure> {
        match result {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(e)) => {
                // A read-only error would otherwise repeat on this
                // connection at every checkout: its server is no longer
                // the primary, and the next connection finds the new one.
                if ends_connection(&e) {
                    drop(Object::take(client));
                }
                Err(Failure::Db(e))
            }
            Err(_) => {
                // Dropping the detached client aborts its connection task.
                drop(Object::take(client));
                Err(Failure::Elapsed(limit))
            }
        }
    }
}

#[async_trait]
impl Store for PostgresStore {
    fn kind(&self) -> &'static str {
        "postgres"
    }

    fn legacy(&self) -> Option<&dyn LegacyStore> {
        self.legacy.then_some(self as &dyn LegacyStore)
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.on_connection("ping", |c| {
            Box::pin(async move { c.batch_execute("SELECT 1").await })
        })
        .await
    }

    async fn insert_user(&self, user: &NewUser) -> Result<i64, StoreError> {
        let (id, email, hash) = (
            user.id.0,
            user.email.as_str().to_owned(),
            user.password_hash.clone(),
        );
        let inserted = self
            .on_connection("insert_user", move |c| {
                Box::pin(async move {
                    let statement = c.prepare_cached(INSERT_USER).await?;
                    match c.query_one(&statement, &[&id, &email, &hash]).await {
                        Ok(row) => Ok(Some(row.try_get::<_, i64>(0)?)),
                        Err(e) if is_email_taken(&e) => Ok(None),
                        Err(e) => Err(e),
                    }
                })
            })
            .await?;
        inserted.ok_or(StoreError::EmailTaken)
    }

    async fn sign_up(&self, user: &NewUser, session: &NewSession) -> Result<Session, StoreError> {
        self.insert_user_and_session(user, session).await
    }

    async fn find_user_by_email(&self, email: &str) -> Result<Option<UserRecord>, StoreError> {
        let email = email.to_owned();
        self.on_connection("find_user_by_email", move |c| {
            Box::pin(async move {
                let statement = c.prepare_cached(USER_BY_EMAIL).await?;
                let row = c.query_opt(&statement, &[&email]).await?;
                row.map(|row| user_from_row(&row)).transpose()
            })
        })
        .await
    }

    async fn load_session(&self, id: SessionId) -> Result<Option<Session>, StoreError> {
        let row = self
            .on_connection("load_session", move |c| {
                Box::pin(async move {
                    let statement = c.prepare_cached(LOAD_SESSION).await?;
                    c.query_opt(&statement, &[&id.0]).await
                })
            })
            .await?;
        row.map(|row| session_from_row(&row)).transpose()
    }

    async fn write_sessions(&self, batch: &[SessionWrite]) -> Result<BatchOutcome, StoreError> {
        if batch.is_empty() {
            return Ok(BatchOutcome::default());
        }
        let plan = Plan::new(batch);
        let written = self
            .on_connection("write_sessions", move |client| {
                Box::pin(async move {
                    // One statement is a transaction by itself: no BEGIN
                    // and COMMIT round trips (nearly every batch under
                    // load is one UPDATE of rotations).
                    if plan.statements() == 1 {
                        let written = apply_plan(&*client, &plan).await?;
                        return Ok(written.map(|w| (plan, w)));
                    }
                    let tx = client.transaction().await?;
                    // An unreadable row (a generation beyond u32) is not a
                    // database error: it comes out through the inner result,
                    // rolling back (dropping `tx`).
                    let written = match apply_plan(&tx, &plan).await? {
                        Ok(written) => written,
                        Err(e) => return Ok(Err(e)),
                    };
                    tx.commit().await?;
                    Ok(Ok((plan, written)))
                })
            })
            .await?;
        let (plan, written) = written?;
        // Committed: now the other instances may hear of it.
        self.publisher.publish(written.changes.clone());
        Ok(BatchOutcome {
            outcomes: plan.outcomes(batch, &written.created, &written.rotated, &written.revoked),
            changes: written.changes,
        })
    }

    async fn change_cursor(&self) -> Result<ChangeCursor, StoreError> {
        self.read_change_cursor().await
    }

    async fn changes_after(&self, cursor: &ChangeCursor) -> Result<ChangeRead, StoreError> {
        self.read_changes_after(cursor).await
    }

    async fn prune_change_log(&self, before_ms: i64) -> Result<u64, StoreError> {
        self.delete_old_changes(before_ms).await
    }

    async fn prune_sessions(&self, before_ms: i64) -> Result<u64, StoreError> {
        let mut deleted = 0;
        // One chunk per round, each with its own deadline and pooled
        // connection, so a long prune never starves the hot path.
        loop {
            let chunk = self
                .on_connection("prune_sessions", move |c| {
                    Box::pin(async move {
                        let statement = c.prepare_cached(PRUNE_SESSIONS).await?;
                        c.execute(&statement, &[&before_ms, &PRUNE_CHUNK]).await
                    })
                })
                .await?;
            deleted += chunk;
            if chunk < PRUNE_CHUNK.unsigned_abs() {
                return Ok(deleted);
            }
        }
    }

    #[cfg(feature = "test-hooks")]
    fn drop_notifications(&self, on: bool) {
        self.publisher.drop_notifications(on);
    }

    fn subscribe(&self) -> Option<mpsc::Receiver<FeedEvent>> {
        let runtime = match tokio::runtime::Handle::try_current() {
            Ok(runtime) => runtime,
            Err(error) => {
                tracing::error!(%error, "the change feed needs a tokio runtime");
                return None;
            }
        };
        let (sender, receiver) = mpsc::channel(FEED_CAPACITY);
        let mut config = self.config.clone();
        config.application_name(FEED_APPLICATION_NAME);
        let primary = Arc::clone(&self.primary);
        runtime.spawn(run_feed(primary, config, self.timeout, sender));
        Some(receiver)
    }

    async fn signing_keys(&self) -> Result<Vec<SigningKeyRecord>, StoreError> {
        self.on_connection("signing_keys", |c| {
            Box::pin(async move {
                let statement = c.prepare_cached(LOAD_SIGNING_KEYS).await?;
                let rows = c.query(&statement, &[]).await?;
                rows.iter()
                    .map(|row| {
                        Ok(SigningKeyRecord {
                            kid: row.try_get(0)?,
                            algorithm: row.try_get(1)?,
                            private_key: row.try_get(2)?,
                            public_key: row.try_get(3)?,
                            created_at_ms: row.try_get(4)?,
                        })
                    })
                    .collect()
            })
        })
        .await
    }

    async fn insert_signing_key(&self, key: &SigningKeyRecord) -> Result<(), StoreError> {
        let key = key.clone();
        self.on_connection("insert_signing_key", move |c| {
            Box::pin(async move {
                let statement = c.prepare_cached(INSERT_SIGNING_KEY).await?;
                c.execute(
                    &statement,
                    &[
                        &key.kid,
                        &key.algorithm,
                        &key.private_key,
                        &key.public_key,
                        &key.created_at_ms,
                    ],
                )
                .await
                .map(|_| ())
            })
        })
        .await
    }

    async fn signing_secret(&self, candidate: &str) -> Result<String, StoreError> {
        let candidate = candidate.to_owned();
        self.on_connection("signing_secret", move |c| {
            Box::pin(async move {
                let store = c.prepare_cached(STORE_SECRET).await?;
                c.execute(&store, &[&candidate]).await?;
                let load = c.prepare_cached(LOAD_SECRET).await?;
                c.query_one(&load, &[]).await?.try_get::<_, String>(0)
            })
        })
        .await
    }
}

/// A row `(id, generation, issued_at_ms, revoked)`.
pub(super) fn change_from_row(row: &Row) -> Result<SessionChange, StoreError> {
    let read = |e: tokio_postgres::Error| Failure::Db(e).into_store_error("reading a session");
    Ok(SessionChange {
        id: SessionId(row.try_get(0).map_err(read)?),
        generation: generation_at(row, 1, "reading a session")?,
        issued_at_ms: row.try_get(2).map_err(read)?,
        revoked: row.try_get(3).map_err(read)?,
    })
}

#[cfg(test)]
mod tests;
