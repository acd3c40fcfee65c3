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
//!   [`StoreError::Unavailable`] (the callers answer 503) and the connection
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
//!   of the batch. Every rotation and revocation also sets
//!   `sessions.updated_at_ms` to the write's own time (never moving it
//!   backwards), which is what [`Store::changes_since`] reads.
//! - Change publication: when a batch rotated or revoked sessions, the same
//!   transaction runs `pg_notify(`[`CHANGE_CHANNEL`]`, ...)` with their final
//!   states (taken from the `RETURNING` of the updates). PostgreSQL delivers
//!   notifications at commit and drops them on rollback, so listeners only
//!   ever hear of committed changes. Payloads are text lines
//!   `"<uuid> <generation> <issued_at_ms> <0|1>"` (`encode_changes`),
//!   split so each stays under PostgreSQL's 8000-byte limit; all the chunks
//!   go out in one statement. (Committing a transaction that notified takes
//!   a database-wide lock on the notification queue, so such commits
//!   serialise; group commit keeps them to one per batch, and batches that
//!   only create sessions do not notify.)
//! - The change feed ([`Store::subscribe`]) listens on a dedicated
//!   connection, not a pooled one: `LISTEN` belongs to a server session,
//!   and the pool would hand that session to other work and recycle it at
//!   will. A task owns the connection, drives it with `poll_message` (the
//!   only way to see notifications) and forwards them. Notifications are
//!   at most once: those sent while the feed was down are lost, so after
//!   every (re)connection it first emits [`FeedEvent::Connected`] and the
//!   consumer catches up with [`Store::changes_since`]. The connection is
//!   otherwise idle, so it re-issues its `LISTEN` every 30 s
//!   (`FEED_HEARTBEAT`) to notice a silently dead server within a timeout
//!   rather than at the next TCP keepalive (hours). On loss it logs a
//!   warning and reconnects with backoff until the receiver is dropped.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet, VecDeque};
use std::time::Duration;

use async_trait::async_trait;
use deadpool_postgres::{
    Manager, ManagerConfig, Object, Pool, PoolError, RecyclingMethod, Runtime, Timeouts,
};
use tokio::sync::mpsc;
use tokio::time::{timeout_at, Instant};
use tokio_postgres::error::SqlState;
use tokio_postgres::tls::NoTlsStream;
use tokio_postgres::{AsyncMessage, Connection, NoTls, Row, Socket};
use uuid::Uuid;

mod legacy;

use super::{
    migrations, BatchOutcome, FeedEvent, LegacyStore, NewUser, PoolStatus, SessionWrite,
    SigningKeyRecord, Store, StoreError, UserRecord, WriteOutcome,
};
use crate::domain::{Session, SessionChange, SessionId, UserId};
use crate::settings::PostgresTarget;

/// The schema holding every table of authd's (see `migrations`).
pub const SCHEMA: &str = "authd";

/// Database used to create the target database.
const MAINTENANCE_DB: &str = "postgres";

/// `CREATE DATABASE` and migrations may take longer than a query (and may
/// wait for another instance's migration), so start-up gets at least this.
const SETUP_TIMEOUT_FLOOR: Duration = Duration::from_secs(60);

/// Name of the unique constraint on `users.email` (sql/postgres/0001).
const EMAIL_CONSTRAINT: &str = "users_email_key";

/// The `NOTIFY` channel on which committed session changes are published.
pub const CHANGE_CHANNEL: &str = "authd_sessions";

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

const INSERT_USER: &str =
    "INSERT INTO users (id, email, password_hash) VALUES ($1, $2, $3) RETURNING int_id";
const FIND_USER: &str = "SELECT id, int_id, password_hash, legacy_id, legacy_tokens_closed \
     FROM users WHERE email = $1";
const LOAD_SESSION: &str = "SELECT id, user_id, generation, issued_at_ms, expires_at_ms, \
     revoked_at_ms IS NOT NULL, user_int_id FROM sessions WHERE id = $1";
const STORE_SECRET: &str =
    "INSERT INTO service_secrets (name, value) VALUES ('hs256', $1) ON CONFLICT (name) DO NOTHING";
const LOAD_SECRET: &str = "SELECT value FROM service_secrets WHERE name = 'hs256'";

/// Creates skip (and report as conflicts) ids that already exist and users
/// that do not, instead of failing the whole batch on a constraint.
const CREATE_SESSIONS: &str = "INSERT INTO sessions \
     (id, user_id, generation, issued_at_ms, expires_at_ms, revoked_at_ms, created_at_ms, \
      user_int_id) \
     SELECT v.id, v.user_id, v.generation, v.issued, v.expires, v.revoked, v.issued, v.int_id \
     FROM UNNEST($1::uuid[], $2::uuid[], $3::bigint[], $4::bigint[], $5::bigint[], $6::bigint[], \
       $7::bigint[]) AS v(id, user_id, generation, issued, expires, revoked, int_id) \
     WHERE EXISTS (SELECT 1 FROM users u WHERE u.id = v.user_id) \
     ON CONFLICT (id) DO NOTHING \
     RETURNING id";
/// The updates return the final state of what they touched (a
/// [`SessionChange`]); the id comes first, for the outcomes.
const ROTATE_SESSIONS: &str = "UPDATE sessions s \
     SET generation = v.from_gen + 1, issued_at_ms = v.issued, \
       updated_at_ms = GREATEST(s.updated_at_ms, v.issued) \
     FROM UNNEST($1::uuid[], $2::bigint[], $3::bigint[]) AS v(id, from_gen, issued) \
     WHERE s.id = v.id AND s.generation = v.from_gen AND s.revoked_at_ms IS NULL \
     RETURNING s.id, s.generation, s.issued_at_ms, s.revoked_at_ms IS NOT NULL";
/// Idempotent: revoking a revoked session keeps its first revocation time
/// and `updated_at_ms`, but still counts as applied (and as a change).
const REVOKE_SESSIONS: &str = "UPDATE sessions s \
     SET revoked_at_ms = COALESCE(s.revoked_at_ms, v.at), \
       updated_at_ms = CASE WHEN s.revoked_at_ms IS NULL \
         THEN GREATEST(s.updated_at_ms, v.at) ELSE s.updated_at_ms END \
     FROM UNNEST($1::uuid[], $2::bigint[]) AS v(id, at) \
     WHERE s.id = v.id \
     RETURNING s.id, s.generation, s.issued_at_ms, s.revoked_at_ms IS NOT NULL";
/// Also closes the old service's tokens of those users (see
/// `users.legacy_tokens_closed`), in the same statement.
const REVOKE_USERS: &str = "WITH closed AS (UPDATE users SET legacy_tokens_closed = true \
       WHERE id = ANY($1::uuid[]) AND NOT legacy_tokens_closed) \
     UPDATE sessions s \
     SET revoked_at_ms = v.at, updated_at_ms = GREATEST(s.updated_at_ms, v.at) \
     FROM UNNEST($1::uuid[], $2::bigint[]) AS v(user_id, at) \
     WHERE s.user_id = v.user_id AND s.revoked_at_ms IS NULL \
     RETURNING s.id, s.generation, s.issued_at_ms, s.revoked_at_ms IS NOT NULL";
/// One notification per payload, all in one round trip.
const NOTIFY_CHANGES: &str = "SELECT pg_notify($1, p) FROM UNNEST($2::text[]) AS p";
const CHANGES_SINCE: &str = "SELECT id, generation, issued_at_ms, revoked_at_ms IS NOT NULL \
     FROM sessions WHERE updated_at_ms >= $1 ORDER BY updated_at_ms, id";
const PRUNE_SESSIONS: &str = "DELETE FROM sessions WHERE id IN \
     (SELECT id FROM sessions WHERE expires_at_ms < $1 LIMIT $2)";
const LOAD_SIGNING_KEYS: &str = "SELECT kid, algorithm, private_key, public_key, created_at_ms \
     FROM signing_keys ORDER BY created_at_ms, kid";
/// A retried insert (its first attempt committed but timed out) is not an
/// error; callers read the keys back with [`Store::signing_keys`].
const INSERT_SIGNING_KEY: &str = "INSERT INTO signing_keys \
     (kid, algorithm, private_key, public_key, created_at_ms) VALUES ($1, $2, $3, $4, $5) \
     ON CONFLICT (kid) DO NOTHING";

pub struct PostgresStore {
    pool: Pool,
    timeout: Duration,
    /// Whether the old FastAPI service's tables are read (they exist and
    /// `legacy_fastapi` is on).
    legacy: bool,
    /// The pool's connection settings, for the change feed's own connection.
    config: tokio_postgres::Config,
}

impl PostgresStore {
    /// Creates the database if missing, opens a pool of at most `pool_size`
    /// connections and applies pending migrations.
    pub async fn connect(
        target: &PostgresTarget,
        pool_size: usize,
        timeout: Duration,
        legacy_fastapi: bool,
    ) -> Result<Self, StoreError> {
        let mut config = tokio_postgres::Config::new();
        config
            .host(&target.host)
            .port(target.port)
            .user(&target.user)
            .dbname(&target.dbname)
            .application_name("authd")
            // authd's tables live in a schema of their own, so that it can
            // share a database with anyone else's tables (the old service's
            // `public.users`, above all). Unqualified names resolve there.
            .options(format!("-c search_path={SCHEMA}"))
            .connect_timeout(timeout);
        if !target.password.is_empty() {
            config.password(&target.password);
        }

        ensure_database(&config, &target.dbname, timeout).await?;

        let manager = Manager::from_config(
            config.clone(),
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        // Without these timeouts `pool.get()` waits forever for a server
        // that is gone.
        let pool = Pool::builder(manager)
            .max_size(pool_size.max(1))
            .runtime(Runtime::Tokio1)
            .timeouts(Timeouts {
                wait: Some(timeout),
                create: Some(timeout),
                recycle: Some(timeout),
            })
            .build()
            .map_err(|e| StoreError::Internal(format!("building the connection pool: {e}")))?;
        let mut store = PostgresStore {
            pool,
            timeout,
            legacy: false,
            config,
        };

        let setup = timeout.max(SETUP_TIMEOUT_FLOOR);
        let deadline = Instant::now() + setup;
        let mut client = store.client("migrate", deadline).await?;
        let result = timeout_at(
            deadline,
            migrations::apply_postgres(&mut client, SCHEMA, migrations::POSTGRES),
        )
        .await;
        store
            .settle(client, result, setup)
            .map_err(|f| f.into_store_error("applying migrations"))?;
        if legacy_fastapi {
            let client = store.client("detect legacy tables", deadline).await?;
            let result = timeout_at(deadline, async {
                client.query_one(legacy::DETECT, &[]).await?.try_get(0)
            })
            .await;
            store.legacy = store
                .settle(client, result, setup)
                .map_err(|f| f.into_store_error("detecting the old service's tables"))?;
        }
        tracing::info!(store = "postgres", target = ?target, pool_size, "store ready");
        Ok(store)
    }

    /// A pooled connection, waiting no later than `deadline`.
    async fn client(&self, context: &str, deadline: Instant) -> Result<Object, StoreError> {
        match timeout_at(deadline, self.pool.get()).await {
            Ok(Ok(client)) => Ok(client),
            Ok(Err(e)) => Err(Failure::Pool(e).into_store_error(context)),
            Err(_) => Err(Failure::Elapsed(self.timeout).into_store_error(context)),
        }
    }

    /// Gives `client` back (or, after a timeout, throws it away) and unwraps
    /// the result of the work done with it.
    fn settle<T>(
        &self,
        client: Object,
        result: Result<Result<T, tokio_postgres::Error>, tokio::time::error::Elapsed>,
        limit: Duration,
    ) -> Result<T, Failure> {
        match result {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(e)) => Err(Failure::Db(e)),
            Err(_) => {
                // Dropping the detached client aborts its connection task.
                drop(Object::take(client));
                Err(Failure::Elapsed(limit))
            }
        }
    }

    fn deadline(&self) -> Instant {
        Instant::now() + self.timeout
    }
}

/// Connects to the maintenance database and creates `dbname` if missing.
///
/// A role that may not use the maintenance database can still run authd
/// against an existing database, so failing to log in there only warns;
/// an unreachable server is an error.
async fn ensure_database(
    config: &tokio_postgres::Config,
    dbname: &str,
    timeout: Duration,
) -> Result<(), StoreError> {
    const CONTEXT: &str = "connecting to the maintenance database";
    let mut maintenance = config.clone();
    maintenance.dbname(MAINTENANCE_DB);
    let client = match tokio::time::timeout(timeout, maintenance.connect(NoTls)).await {
        Err(_) => return Err(Failure::Elapsed(timeout).into_store_error(CONTEXT)),
        Ok(Err(e)) => {
            let error = Failure::Db(e).into_store_error(CONTEXT);
            if let StoreError::Unavailable(_) = error {
                return Err(error);
            }
            tracing::warn!(%error, "cannot check whether the database exists; assuming it does");
            return Ok(());
        }
        Ok(Ok((client, connection))) => {
            tokio::spawn(async move {
                if let Err(error) = connection.await {
                    tracing::debug!(%error, "maintenance connection ended");
                }
            });
            client
        }
    };

    let work = async {
        let exists = client
            .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&dbname])
            .await?
            .is_some();
        if exists {
            return Ok(());
        }
        let sql = format!("CREATE DATABASE {}", quote_ident(dbname));
        match client.batch_execute(&sql).await {
            Ok(()) => {
                tracing::info!(database = dbname, "created database");
                Ok(())
            }
            // Another process created it between our check and our CREATE.
            // Depending on timing PostgreSQL reports duplicate_database or a
            // unique violation on pg_database's name index.
            Err(e)
                if e.code() == Some(&SqlState::DUPLICATE_DATABASE)
                    || e.code() == Some(&SqlState::UNIQUE_VIOLATION) =>
            {
                Ok(())
            }
            Err(e) => Err(e),
        }
    };
    let setup = timeout.max(SETUP_TIMEOUT_FLOOR);
    match tokio::time::timeout(setup, work).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(Failure::Db(e).into_store_error("creating the database")),
        Err(_) => Err(Failure::Elapsed(setup).into_store_error("creating the database")),
    }
}

/// Quotes an SQL identifier: `"` around it, inner `"` doubled.
fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
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
        let deadline = self.deadline();
        let client = self.client("ping", deadline).await?;
        let result = timeout_at(deadline, client.batch_execute("SELECT 1")).await;
        self.settle(client, result, self.timeout)
            .map_err(|f| f.into_store_error("ping"))
    }

    async fn insert_user(&self, user: &NewUser) -> Result<i64, StoreError> {
        let deadline = self.deadline();
        let client = self.client("insert_user", deadline).await?;
        let result = timeout_at(deadline, async {
            let statement = client.prepare_cached(INSERT_USER).await?;
            client
                .query_one(
                    &statement,
                    &[&user.id.0, &user.email.as_str(), &user.password_hash],
                )
                .await?
                .try_get::<_, i64>(0)
        })
        .await;
        match self.settle(client, result, self.timeout) {
            Ok(int_id) => Ok(int_id),
            Err(Failure::Db(e)) if is_email_taken(&e) => Err(StoreError::EmailTaken),
            Err(f) => Err(f.into_store_error("insert_user")),
        }
    }

    async fn find_user_by_email(&self, email: &str) -> Result<Option<UserRecord>, StoreError> {
        let deadline = self.deadline();
        let client = self.client("find_user_by_email", deadline).await?;
        let result = timeout_at(deadline, async {
            let statement = client.prepare_cached(FIND_USER).await?;
            let row = client.query_opt(&statement, &[&email]).await?;
            row.map(|row| user_from_row(&row)).transpose()
        })
        .await;
        self.settle(client, result, self.timeout)
            .map_err(|f| f.into_store_error("find_user_by_email"))
    }

    async fn load_session(&self, id: SessionId) -> Result<Option<Session>, StoreError> {
        let deadline = self.deadline();
        let client = self.client("load_session", deadline).await?;
        let result = timeout_at(deadline, async {
            let statement = client.prepare_cached(LOAD_SESSION).await?;
            client.query_opt(&statement, &[&id.0]).await
        })
        .await;
        let row = self
            .settle(client, result, self.timeout)
            .map_err(|f| f.into_store_error("load_session"))?;
        row.map(|row| session_from_row(&row)).transpose()
    }

    async fn write_sessions(&self, batch: &[SessionWrite]) -> Result<BatchOutcome, StoreError> {
        if batch.is_empty() {
            return Ok(BatchOutcome::default());
        }
        let plan = Plan::new(batch);
        let deadline = self.deadline();
        let mut client = self.client("write_sessions", deadline).await?;
        let result = timeout_at(deadline, async {
            let tx = client.transaction().await?;
            let mut changes = ChangeSet::default();
            let mut created = Vec::new();
            if !plan.creates.ids.is_empty() {
                let statement = tx.prepare_cached(CREATE_SESSIONS).await?;
                let c = &plan.creates;
                let rows = tx
                    .query(
                        &statement,
                        &[
                            &c.ids,
                            &c.user_ids,
                            &c.generations,
                            &c.issued,
                            &c.expires,
                            &c.revoked,
                            &c.user_int_ids,
                        ],
                    )
                    .await?;
                created = ids(&rows)?;
            }
            // An unreadable row (a generation beyond u32) is not a database
            // error: hand it out through the inner result, rolling back
            // (dropping `tx`).
            let mut rotated = Vec::with_capacity(plan.rotation_rounds.len());
            for round in &plan.rotation_rounds {
                let statement = tx.prepare_cached(ROTATE_SESSIONS).await?;
                let rows = tx
                    .query(
                        &statement,
                        &[&round.ids, &round.from_generations, &round.issued],
                    )
                    .await?;
                rotated.push(ids(&rows)?);
                if let Err(e) = changes.record(&rows) {
                    return Ok(Err(e));
                }
            }
            let mut revoked = Vec::new();
            if !plan.revokes.ids.is_empty() {
                let statement = tx.prepare_cached(REVOKE_SESSIONS).await?;
                let rows = tx
                    .query(&statement, &[&plan.revokes.ids, &plan.revokes.at])
                    .await?;
                revoked = ids(&rows)?;
                if let Err(e) = changes.record(&rows) {
                    return Ok(Err(e));
                }
            }
            if !plan.user_revokes.ids.is_empty() {
                let statement = tx.prepare_cached(REVOKE_USERS).await?;
                let rows = tx
                    .query(&statement, &[&plan.user_revokes.ids, &plan.user_revokes.at])
                    .await?;
                if let Err(e) = changes.record(&rows) {
                    return Ok(Err(e));
                }
            }
            let changes = changes.list;
            if !changes.is_empty() {
                // Delivered at commit, so only if the commit succeeds.
                let payloads = encode_changes(&changes);
                let statement = tx.prepare_cached(NOTIFY_CHANGES).await?;
                tx.execute(&statement, &[&CHANGE_CHANNEL, &payloads])
                    .await?;
            }
            tx.commit().await?;
            Ok(Ok((created, rotated, revoked, changes)))
        })
        .await;
        let (created, rotated, revoked, changes) = self
            .settle(client, result, self.timeout)
            .map_err(|f| f.into_store_error("write_sessions"))??;
        Ok(BatchOutcome {
            outcomes: plan.outcomes(batch, &created, &rotated, &revoked),
            changes,
        })
    }

    async fn changes_since(&self, since_ms: i64) -> Result<Vec<SessionChange>, StoreError> {
        let deadline = self.deadline();
        let client = self.client("changes_since", deadline).await?;
        let result = timeout_at(deadline, async {
            let statement = client.prepare_cached(CHANGES_SINCE).await?;
            client.query(&statement, &[&since_ms]).await
        })
        .await;
        let rows = self
            .settle(client, result, self.timeout)
            .map_err(|f| f.into_store_error("changes_since"))?;
        rows.iter().map(change_from_row).collect()
    }

    async fn prune_sessions(&self, before_ms: i64) -> Result<u64, StoreError> {
        let mut deleted = 0;
        // One chunk per round, each with its own deadline and pooled
        // connection, so a long prune never starves the hot path.
        loop {
            let deadline = self.deadline();
            let client = self.client("prune_sessions", deadline).await?;
            let result = timeout_at(deadline, async {
                let statement = client.prepare_cached(PRUNE_SESSIONS).await?;
                client
                    .execute(&statement, &[&before_ms, &PRUNE_CHUNK])
                    .await
            })
            .await;
            let chunk = self
                .settle(client, result, self.timeout)
                .map_err(|f| f.into_store_error("prune_sessions"))?;
            deleted += chunk;
            if chunk < PRUNE_CHUNK.unsigned_abs() {
                return Ok(deleted);
            }
        }
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
        runtime.spawn(run_feed(config, self.timeout, sender));
        Some(receiver)
    }

    async fn signing_keys(&self) -> Result<Vec<SigningKeyRecord>, StoreError> {
        let deadline = self.deadline();
        let client = self.client("signing_keys", deadline).await?;
        let result = timeout_at(deadline, async {
            let statement = client.prepare_cached(LOAD_SIGNING_KEYS).await?;
            let rows = client.query(&statement, &[]).await?;
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
        .await;
        self.settle(client, result, self.timeout)
            .map_err(|f| f.into_store_error("signing_keys"))
    }

    async fn insert_signing_key(&self, key: &SigningKeyRecord) -> Result<(), StoreError> {
        let deadline = self.deadline();
        let client = self.client("insert_signing_key", deadline).await?;
        let result = timeout_at(deadline, async {
            let statement = client.prepare_cached(INSERT_SIGNING_KEY).await?;
            client
                .execute(
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
        })
        .await;
        self.settle(client, result, self.timeout)
            .map(|_| ())
            .map_err(|f| f.into_store_error("insert_signing_key"))
    }

    fn pool_status(&self) -> Option<PoolStatus> {
        let status = self.pool.status();
        Some(PoolStatus {
            size: status.size,
            available: status.available,
            waiting: status.waiting,
        })
    }

    async fn signing_secret(&self, candidate: &str) -> Result<String, StoreError> {
        let deadline = self.deadline();
        let client = self.client("signing_secret", deadline).await?;
        let result = timeout_at(deadline, async {
            let store = client.prepare_cached(STORE_SECRET).await?;
            client.execute(&store, &[&candidate]).await?;
            let load = client.prepare_cached(LOAD_SECRET).await?;
            client.query_one(&load, &[]).await?.try_get::<_, String>(0)
        })
        .await;
        self.settle(client, result, self.timeout)
            .map_err(|f| f.into_store_error("signing_secret"))
    }
}

/// A row `(id, int_id, password_hash, legacy_id, legacy_tokens_closed)`.
pub(super) fn user_from_row(row: &Row) -> Result<UserRecord, tokio_postgres::Error> {
    Ok(UserRecord {
        id: UserId(row.try_get(0)?),
        int_id: row.try_get(1)?,
        password_hash: row.try_get(2)?,
        legacy_id: row.try_get(3)?,
        legacy_tokens_closed: row.try_get(4)?,
    })
}

fn ids(rows: &[Row]) -> Result<Vec<Uuid>, tokio_postgres::Error> {
    rows.iter().map(|row| row.try_get(0)).collect()
}

fn session_from_row(row: &Row) -> Result<Session, StoreError> {
    let read = |e: tokio_postgres::Error| Failure::Db(e).into_store_error("reading a session");
    let generation: i64 = row.try_get(2).map_err(read)?;
    Ok(Session {
        id: SessionId(row.try_get(0).map_err(read)?),
        user_id: UserId(row.try_get(1).map_err(read)?),
        generation: u32::try_from(generation).map_err(|_| {
            StoreError::Internal(format!("session generation {generation} out of range"))
        })?,
        issued_at_ms: row.try_get(3).map_err(read)?,
        expires_at_ms: row.try_get(4).map_err(read)?,
        revoked: row.try_get(5).map_err(read)?,
        user_int_id: row.try_get(6).map_err(read)?,
    })
}

/// A row `(id, generation, issued_at_ms, revoked)`.
fn change_from_row(row: &Row) -> Result<SessionChange, StoreError> {
    let read = |e: tokio_postgres::Error| Failure::Db(e).into_store_error("reading a session");
    let generation: i64 = row.try_get(1).map_err(read)?;
    Ok(SessionChange {
        id: SessionId(row.try_get(0).map_err(read)?),
        generation: u32::try_from(generation).map_err(|_| {
            StoreError::Internal(format!("session generation {generation} out of range"))
        })?,
        issued_at_ms: row.try_get(2).map_err(read)?,
        revoked: row.try_get(3).map_err(read)?,
    })
}

/// The final state of every session a batch changed, one entry per
/// session, in the order they were first changed. Each statement of a
/// batch sees the effects of the earlier ones, so the last row returned for
/// a session is its final state.
#[derive(Default)]
struct ChangeSet {
    list: Vec<SessionChange>,
    index: HashMap<Uuid, usize>,
}

impl ChangeSet {
    fn record(&mut self, rows: &[Row]) -> Result<(), StoreError> {
        for row in rows {
            let change = change_from_row(row)?;
            match self.index.entry(change.id.0) {
                Entry::Occupied(entry) => self.list[*entry.get()] = change,
                Entry::Vacant(entry) => {
                    entry.insert(self.list.len());
                    self.list.push(change);
                }
            }
        }
        Ok(())
    }
}

/// The notification payloads announcing `changes`: one line
/// `"<uuid> <generation> <issued_at_ms> <0|1>"` per change, `\n`-separated,
/// as few payloads as fit under [`MAX_PAYLOAD_BYTES`] each.
pub(crate) fn encode_changes(changes: &[SessionChange]) -> Vec<String> {
    let mut payloads = Vec::new();
    let mut payload = String::new();
    for change in changes {
        let line = format!(
            "{} {} {} {}",
            change.id,
            change.generation,
            change.issued_at_ms,
            u8::from(change.revoked)
        );
        // A line is at most ~70 bytes, so it always fits an empty payload.
        if !payload.is_empty() && payload.len() + 1 + line.len() >= MAX_PAYLOAD_BYTES {
            payloads.push(std::mem::take(&mut payload));
        }
        if !payload.is_empty() {
            payload.push('\n');
        }
        payload.push_str(&line);
    }
    if !payload.is_empty() {
        payloads.push(payload);
    }
    payloads
}

/// The changes a payload of [`encode_changes`] announces. Lines that do not
/// parse (another writer on the channel, a newer format) are skipped, never
/// an error: the feed must keep going.
pub(crate) fn decode_changes(payload: &str) -> Vec<SessionChange> {
    payload
        .lines()
        .filter_map(|line| {
            let mut fields = line.split_ascii_whitespace();
            let id = Uuid::parse_str(fields.next()?).ok()?;
            let generation = fields.next()?.parse().ok()?;
            let issued_at_ms = fields.next()?.parse().ok()?;
            let revoked = match fields.next()? {
                "0" => false,
                "1" => true,
                _ => return None,
            };
            if fields.next().is_some() {
                return None;
            }
            Some(SessionChange {
                id: SessionId(id),
                generation,
                issued_at_ms,
                revoked,
            })
        })
        .collect()
}

/// Why one connection of the change feed ended.
enum FeedEnd {
    /// The receiver was dropped: stop.
    ReceiverGone,
    /// Connecting or `LISTEN` failed.
    ConnectFailed(StoreError),
    /// An established feed broke.
    Lost(StoreError),
}

/// The change feed task: listens, and reconnects with backoff whenever the
/// connection fails, until the receiver is dropped.
async fn run_feed(
    config: tokio_postgres::Config,
    timeout: Duration,
    sender: mpsc::Sender<FeedEvent>,
) {
    let mut backoff = FEED_BACKOFF_MIN;
    let mut failed_attempts: u32 = 0;
    loop {
        match listen(&config, timeout, &sender).await {
            FeedEnd::ReceiverGone => {
                tracing::debug!("change feed receiver dropped; feed stopped");
                return;
            }
            FeedEnd::Lost(error) => {
                // It had connected, so the server was fine a moment ago:
                // retry soon.
                backoff = FEED_BACKOFF_MIN;
                failed_attempts = 0;
                tracing::warn!(
                    event = "change_feed_lost",
                    %error,
                    retry_in_ms = backoff.as_millis() as u64,
                    "change feed lost; reconnecting"
                );
            }
            FeedEnd::ConnectFailed(error) => {
                failed_attempts = failed_attempts.saturating_add(1);
                // Once per outage at WARN; the retries every couple of
                // seconds after that only at DEBUG.
                if failed_attempts == 1 {
                    tracing::warn!(
                        event = "change_feed_lost",
                        %error,
                        retry_in_ms = backoff.as_millis() as u64,
                        "change feed cannot connect; retrying"
                    );
                } else {
                    tracing::debug!(
                        event = "change_feed_lost",
                        %error,
                        attempt = failed_attempts,
                        retry_in_ms = backoff.as_millis() as u64,
                        "change feed still cannot connect"
                    );
                }
            }
        }
        tokio::select! {
            () = tokio::time::sleep(backoff) => {}
            () = sender.closed() => return,
        }
        backoff = (backoff * 2).min(FEED_BACKOFF_MAX);
    }
}

/// One connection of the change feed: connect, `LISTEN`, announce
/// [`FeedEvent::Connected`], then forward notifications until something
/// fails or the receiver goes away.
async fn listen(
    config: &tokio_postgres::Config,
    timeout: Duration,
    sender: &mpsc::Sender<FeedEvent>,
) -> FeedEnd {
    const CONTEXT: &str = "change feed";
    let connect = tokio::time::timeout(timeout, config.connect(NoTls));
    let (client, mut connection) = tokio::select! {
        connected = connect => match connected {
            Ok(Ok(pair)) => pair,
            Ok(Err(e)) => return FeedEnd::ConnectFailed(Failure::Db(e).into_store_error(CONTEXT)),
            Err(_) => {
                return FeedEnd::ConnectFailed(Failure::Elapsed(timeout).into_store_error(CONTEXT))
            }
        },
        () = sender.closed() => return FeedEnd::ReceiverGone,
    };

    // The connection only makes progress while polled, so drive it while
    // `LISTEN` runs (and keep anything it already delivers).
    let listen_sql = format!("LISTEN {}", quote_ident(CHANGE_CHANNEL));
    let mut pending: VecDeque<Vec<SessionChange>> = VecDeque::new();
    {
        let listened = tokio::time::timeout(timeout, client.batch_execute(&listen_sql));
        tokio::pin!(listened);
        loop {
            tokio::select! {
                done = &mut listened => match done {
                    Ok(Ok(())) => break,
                    Ok(Err(e)) => {
                        return FeedEnd::ConnectFailed(Failure::Db(e).into_store_error(CONTEXT))
                    }
                    Err(_) => {
                        return FeedEnd::ConnectFailed(
                            Failure::Elapsed(timeout).into_store_error(CONTEXT),
                        )
                    }
                },
                message = next_changes(&mut connection) => match message {
                    Ok(Some(changes)) => pending.push_back(changes),
                    Ok(None) => {}
                    Err(error) => return FeedEnd::ConnectFailed(error),
                },
                () = sender.closed() => return FeedEnd::ReceiverGone,
            }
        }
    }
    tracing::info!(
        event = "change_feed_connected",
        channel = CHANGE_CHANNEL,
        "change feed listening"
    );
    if sender.send(FeedEvent::Connected).await.is_err() {
        return FeedEnd::ReceiverGone;
    }

    // Completes only when the server stopped answering.
    let heartbeat = async {
        loop {
            tokio::time::sleep(FEED_HEARTBEAT).await;
            // Re-listening is a no-op round trip that keeps `LISTEN ...` as
            // the connection's last query in `pg_stat_activity`.
            match tokio::time::timeout(timeout, client.batch_execute(&listen_sql)).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => return Failure::Db(e).into_store_error(CONTEXT),
                Err(_) => return Failure::Elapsed(timeout).into_store_error(CONTEXT),
            }
        }
    };
    tokio::pin!(heartbeat);

    // Receiving and forwarding are separate branches, so a slow receiver
    // does not stop the connection (and the heartbeat) from being driven,
    // up to FEED_CAPACITY notifications waiting here.
    let end = loop {
        tokio::select! {
            permit = sender.reserve(), if !pending.is_empty() => match (permit, pending.pop_front()) {
                (Ok(permit), Some(changes)) => permit.send(FeedEvent::Changes(changes)),
                (Ok(_), None) => {}
                (Err(_), _) => return FeedEnd::ReceiverGone,
            },
            message = next_changes(&mut connection), if pending.len() < FEED_CAPACITY => {
                match message {
                    Ok(Some(changes)) => pending.push_back(changes),
                    Ok(None) => {}
                    Err(error) => break error,
                }
            }
            error = &mut heartbeat => break error,
            () = sender.closed() => return FeedEnd::ReceiverGone,
        }
    };
    // What already arrived was committed: deliver it before reconnecting.
    for changes in pending {
        if sender.send(FeedEvent::Changes(changes)).await.is_err() {
            return FeedEnd::ReceiverGone;
        }
    }
    FeedEnd::Lost(end)
}

/// Drives `connection` to its next message: `Some(changes)` for a
/// notification on [`CHANGE_CHANNEL`] announcing any, `None` for anything
/// else, an error once the connection has ended (after which it must not be
/// polled again).
async fn next_changes(
    connection: &mut Connection<Socket, NoTlsStream>,
) -> Result<Option<Vec<SessionChange>>, StoreError> {
    match std::future::poll_fn(|cx| connection.poll_message(cx)).await {
        Some(Ok(AsyncMessage::Notification(notification))) => {
            if notification.channel() != CHANGE_CHANNEL {
                return Ok(None);
            }
            let changes = decode_changes(notification.payload());
            Ok((!changes.is_empty()).then_some(changes))
        }
        Some(Ok(AsyncMessage::Notice(notice))) => {
            tracing::debug!(notice = notice.message(), "change feed: server notice");
            Ok(None)
        }
        Some(Ok(_)) => Ok(None),
        Some(Err(e)) => Err(Failure::Db(e).into_store_error("change feed")),
        None => Err(StoreError::Unavailable(
            "change feed: connection closed".into(),
        )),
    }
}

pub(super) fn is_email_taken(e: &tokio_postgres::Error) -> bool {
    e.as_db_error().is_some_and(|db| {
        *db.code() == SqlState::UNIQUE_VIOLATION
            && db.constraint().is_none_or(|c| c == EMAIL_CONSTRAINT)
    })
}

/// A batch of session writes regrouped into the arrays of one statement per
/// kind. Rotations of the same session are split into rounds (the second
/// rotation of a session in the batch goes into round two, and so on): one
/// `UPDATE` changes a row at most once, and the rounds keep the batch's
/// order for chained rotations. Nearly every batch has one round.
struct Plan {
    creates: Creates,
    rotation_rounds: Vec<Rotations>,
    revokes: Revokes,
    /// `RevokeUser`s: user ids (and times) instead of session ids.
    user_revokes: Revokes,
}

#[derive(Default)]
struct Creates {
    ids: Vec<Uuid>,
    user_ids: Vec<Uuid>,
    generations: Vec<i64>,
    issued: Vec<i64>,
    expires: Vec<i64>,
    revoked: Vec<Option<i64>>,
    user_int_ids: Vec<i64>,
}

#[derive(Default)]
struct Rotations {
    ids: Vec<Uuid>,
    from_generations: Vec<i64>,
    issued: Vec<i64>,
}

#[derive(Default)]
struct Revokes {
    ids: Vec<Uuid>,
    at: Vec<i64>,
}

impl Revokes {
    /// By id, for the lock order (see [`Plan::new`]).
    fn sort(&mut self) {
        let mut rows: Vec<_> = self
            .ids
            .iter()
            .copied()
            .zip(self.at.iter().copied())
            .collect();
        rows.sort_unstable_by_key(|row| row.0);
        self.ids = rows.iter().map(|row| row.0).collect();
        self.at = rows.iter().map(|row| row.1).collect();
    }
}

impl Plan {
    fn new(batch: &[SessionWrite]) -> Self {
        let mut creates = Creates::default();
        let mut rotation_rounds: Vec<Rotations> = Vec::new();
        let mut rounds_of: HashMap<Uuid, usize> = HashMap::new();
        let mut revokes = Revokes::default();
        let mut revoked_ids = HashSet::new();
        let mut user_revokes = Revokes::default();
        let mut revoked_users = HashSet::new();
        for write in batch {
            match write {
                SessionWrite::Create(s) => {
                    creates.ids.push(s.id.0);
                    creates.user_ids.push(s.user_id.0);
                    creates.user_int_ids.push(s.user_int_id);
                    creates.generations.push(i64::from(s.generation));
                    creates.issued.push(s.issued_at_ms);
                    creates.expires.push(s.expires_at_ms);
                    // A session created revoked (not done today) is revoked
                    // from the start.
                    creates.revoked.push(s.revoked.then_some(s.issued_at_ms));
                }
                SessionWrite::Rotate {
                    id,
                    from_generation,
                    issued_at_ms,
                } => {
                    let round = rounds_of.entry(id.0).or_insert(0);
                    if rotation_rounds.len() <= *round {
                        rotation_rounds.push(Rotations::default());
                    }
                    let r = &mut rotation_rounds[*round];
                    r.ids.push(id.0);
                    r.from_generations.push(i64::from(*from_generation));
                    r.issued.push(*issued_at_ms);
                    *round += 1;
                }
                SessionWrite::Revoke { id, revoked_at_ms } => {
                    // The first revocation's time wins, as if applied in order.
                    if revoked_ids.insert(id.0) {
                        revokes.ids.push(id.0);
                        revokes.at.push(*revoked_at_ms);
                    }
                }
                SessionWrite::RevokeUser {
                    user_id,
                    revoked_at_ms,
                } => {
                    // Likewise; and one `UPDATE` may change a row only once.
                    if revoked_users.insert(user_id.0) {
                        user_revokes.ids.push(user_id.0);
                        user_revokes.at.push(*revoked_at_ms);
                    }
                }
            }
        }
        // Rows are locked in the order the arrays list them; one order for
        // every instance means two batches touching the same sessions wait
        // for each other instead of deadlocking.
        for round in &mut rotation_rounds {
            let mut rows: Vec<_> = (0..round.ids.len())
                .map(|i| (round.ids[i], round.from_generations[i], round.issued[i]))
                .collect();
            rows.sort_unstable_by_key(|row| row.0);
            round.ids = rows.iter().map(|row| row.0).collect();
            round.from_generations = rows.iter().map(|row| row.1).collect();
            round.issued = rows.iter().map(|row| row.2).collect();
        }
        revokes.sort();
        user_revokes.sort();
        Plan {
            creates,
            rotation_rounds,
            revokes,
            user_revokes,
        }
    }

    /// One outcome per write of `batch`, from the ids each statement
    /// returned (`rotated[k]`: round `k`).
    fn outcomes(
        &self,
        batch: &[SessionWrite],
        created: &[Uuid],
        rotated: &[Vec<Uuid>],
        revoked: &[Uuid],
    ) -> Vec<WriteOutcome> {
        let mut created: HashSet<Uuid> = created.iter().copied().collect();
        let rotated: Vec<HashSet<Uuid>> = rotated
            .iter()
            .map(|round| round.iter().copied().collect())
            .collect();
        let revoked: HashSet<Uuid> = revoked.iter().copied().collect();
        let mut rounds_of: HashMap<Uuid, usize> = HashMap::new();
        let applied = |yes: bool| {
            if yes {
                WriteOutcome::Applied
            } else {
                WriteOutcome::Conflict
            }
        };
        batch
            .iter()
            .map(|write| match write {
                // Removed once claimed: a second create of the same id in
                // the batch is the one that was skipped.
                SessionWrite::Create(s) => applied(created.remove(&s.id.0)),
                SessionWrite::Rotate { id, .. } => {
                    let round = rounds_of.entry(id.0).or_insert(0);
                    let yes = rotated.get(*round).is_some_and(|r| r.contains(&id.0));
                    *round += 1;
                    applied(yes)
                }
                SessionWrite::Revoke { id, .. } => applied(revoked.contains(&id.0)),
                SessionWrite::RevokeUser { .. } => WriteOutcome::Applied,
            })
            .collect()
    }
}

/// Everything that can go wrong talking to PostgreSQL, before it becomes a
/// [`StoreError`].
enum Failure {
    Db(tokio_postgres::Error),
    Pool(PoolError),
    Elapsed(Duration),
}

impl Failure {
    /// The one place that decides between `Unavailable` (the server is
    /// unreachable, gone or overloaded: retrying later may work) and
    /// `Internal`. Messages never contain the connection password:
    /// tokio-postgres errors do not carry it, and only SQLSTATE and the
    /// server's primary message are kept (not its detail, which may quote
    /// row values).
    fn into_store_error(self, context: &str) -> StoreError {
        match self {
            Failure::Elapsed(limit) => {
                StoreError::Unavailable(format!("{context}: no answer within {limit:?}"))
            }
            Failure::Pool(PoolError::Backend(e)) => Failure::Db(e).into_store_error(context),
            Failure::Pool(PoolError::Timeout(kind)) => {
                StoreError::Unavailable(format!("{context}: connection pool timeout ({kind:?})"))
            }
            Failure::Pool(PoolError::Closed) => {
                StoreError::Unavailable(format!("{context}: connection pool closed"))
            }
            Failure::Pool(e) => StoreError::Internal(format!("{context}: connection pool: {e}")),
            Failure::Db(e) => {
                if let Some(db) = e.as_db_error() {
                    let code = db.code().code();
                    let message = format!("{context}: {} (SQLSTATE {code})", db.message());
                    if is_transient_sqlstate(code) {
                        StoreError::Unavailable(message)
                    } else {
                        StoreError::Internal(message)
                    }
                } else if e.is_closed() || is_io(&e) || e.to_string().contains("timeout") {
                    StoreError::Unavailable(format!("{context}: {}", chain(&e)))
                } else {
                    StoreError::Internal(format!("{context}: {}", chain(&e)))
                }
            }
        }
    }
}

/// SQLSTATEs meaning "not now" rather than "never": connection exceptions
/// (class 08), insufficient resources (class 53: disk full, out of memory,
/// too many connections), shutdown and start-up (57P01..57P03), and
/// serialization failures and deadlocks (40001, 40P01).
fn is_transient_sqlstate(code: &str) -> bool {
    code.starts_with("08")
        || code.starts_with("53")
        || matches!(code, "57P01" | "57P02" | "57P03" | "40001" | "40P01")
}

fn is_io(e: &tokio_postgres::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(e);
    while let Some(cause) = source {
        if cause.is::<std::io::Error>() {
            return true;
        }
        source = cause.source();
    }
    false
}

/// An error and its causes, `: `-separated.
fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        out.push_str(": ");
        out.push_str(&cause.to_string());
        source = cause.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::conformance::{self, change, new_user, Fixture};

    fn target(dbname: &str) -> PostgresTarget {
        PostgresTarget {
            host: "127.0.0.1".into(),
            port: 5432,
            user: "postgres".into(),
            password: String::new(),
            dbname: dbname.into(),
        }
    }

    fn fresh_name() -> String {
        format!("authd_store_{}", Uuid::new_v4().simple())
    }

    const TIMEOUT: Duration = Duration::from_secs(5);

    /// A fresh database, dropped (best effort) when the test ends.
    struct TestDb {
        name: String,
    }

    impl Fixture for TestDb {
        type Store = PostgresStore;
        const KIND: &'static str = "postgres";
        const MIGRATIONS: usize = migrations::POSTGRES.len();
        const PRUNE_CHUNK: usize = PRUNE_CHUNK as usize;

        fn fresh() -> Self {
            TestDb { name: fresh_name() }
        }

        async fn open(&self) -> PostgresStore {
            PostgresStore::connect(&target(&self.name), 4, TIMEOUT, true)
                .await
                .expect("connect")
        }

        async fn applied_migrations(store: &PostgresStore) -> i64 {
            let client = store.pool.get().await.expect("client");
            client
                .query_one("SELECT count(*) FROM schema_migrations", &[])
                .await
                .expect("count")
                .get(0)
        }

        async fn remove(self) {
            let mut config = tokio_postgres::Config::new();
            config
                .host("127.0.0.1")
                .port(5432)
                .user("postgres")
                .dbname(MAINTENANCE_DB);
            if let Ok((client, connection)) = config.connect(NoTls).await {
                tokio::spawn(connection);
                let sql = format!(
                    "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                    quote_ident(&self.name)
                );
                let _ = client.batch_execute(&sql).await;
            }
        }
    }

    conformance::suite!(TestDb);

    #[tokio::test]
    async fn concurrent_starts_create_and_migrate_once() {
        let db = TestDb::fresh();
        // Two instances starting together: both succeed, one creates.
        let t = target(&db.name);
        let (a, b) = tokio::join!(
            PostgresStore::connect(&t, 2, TIMEOUT, true),
            PostgresStore::connect(&t, 2, TIMEOUT, true),
        );
        let (a, b) = (a.expect("first"), b.expect("second"));
        let count = TestDb::applied_migrations;
        assert_eq!(count(&a).await, migrations::POSTGRES.len() as i64);
        assert_eq!(count(&b).await, migrations::POSTGRES.len() as i64);
        let pool = a.pool_status().expect("pooled");
        assert!(pool.size >= 1 && pool.available <= pool.size && pool.waiting == 0);
        drop((a, b));
        db.remove().await;
    }

    #[tokio::test]
    async fn concurrent_rotations_produce_one_successor() {
        let db = TestDb::fresh();
        let first = db.open().await;
        let second = db.open().await;
        let user = new_user("frank@example.com");
        first.insert_user(&user).await.expect("insert");
        let session = Session::start(user.id, 0, 1_000, 60_000);
        first
            .write_sessions(&[SessionWrite::Create(session.clone())])
            .await
            .expect("create");
        for generation in 0..5 {
            let rotate = [SessionWrite::Rotate {
                id: session.id,
                from_generation: generation,
                issued_at_ms: 2_000 + i64::from(generation),
            }];
            let (x, y) = tokio::join!(
                first.write_sessions(&rotate),
                second.write_sessions(&rotate)
            );
            let outcomes = [
                x.expect("first").outcomes[0],
                y.expect("second").outcomes[0],
            ];
            let applied = outcomes
                .iter()
                .filter(|o| **o == WriteOutcome::Applied)
                .count();
            assert_eq!(applied, 1, "{outcomes:?}");
        }
        let stored = second
            .load_session(session.id)
            .await
            .expect("load")
            .expect("session");
        assert_eq!(stored.generation, 5);
        drop((first, second));
        db.remove().await;
    }

    #[tokio::test]
    async fn unreachable_server_is_unavailable() {
        let mut t = target(&fresh_name());
        t.port = 1; // nothing listens there
        let started = std::time::Instant::now();
        let result = PostgresStore::connect(&t, 2, Duration::from_millis(500), true).await;
        assert!(
            matches!(result, Err(StoreError::Unavailable(_))),
            "{:?}",
            result.err()
        );
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn payloads_round_trip() {
        let changes = vec![
            SessionChange {
                id: SessionId::new_random(),
                generation: 0,
                issued_at_ms: 1_700_000_000_000,
                revoked: false,
            },
            SessionChange {
                id: SessionId::new_random(),
                generation: u32::MAX,
                issued_at_ms: -5,
                revoked: true,
            },
        ];
        let payloads = encode_changes(&changes);
        assert_eq!(payloads.len(), 1);
        let lines: Vec<&str> = payloads[0].lines().collect();
        assert_eq!(
            lines[0],
            format!("{} 0 1700000000000 0", changes[0].id.0.hyphenated())
        );
        assert_eq!(decode_changes(&payloads[0]), changes);
        assert!(encode_changes(&[]).is_empty());
        assert!(decode_changes("").is_empty());
    }

    #[test]
    fn payloads_are_chunked_under_the_limit() {
        let changes: Vec<SessionChange> = (0..1_000u32)
            .map(|i| SessionChange {
                id: SessionId::new_random(),
                generation: i * 1_000_000,
                issued_at_ms: i64::MAX - i64::from(i),
                revoked: i % 3 == 0,
            })
            .collect();
        let payloads = encode_changes(&changes);
        assert!(payloads.len() > 1, "{}", payloads.len());
        for payload in &payloads {
            assert!(payload.len() < MAX_PAYLOAD_BYTES, "{}", payload.len());
            assert!(!payload.starts_with('\n') && !payload.ends_with('\n'));
        }
        // Nearly full: no more payloads than needed.
        for payload in &payloads[..payloads.len() - 1] {
            assert!(payload.len() > MAX_PAYLOAD_BYTES - 100, "{}", payload.len());
        }
        let decoded: Vec<SessionChange> = payloads.iter().flat_map(|p| decode_changes(p)).collect();
        assert_eq!(decoded, changes);
    }

    #[test]
    fn decoding_skips_malformed_lines() {
        let id = Uuid::new_v4();
        let good = SessionChange {
            id: SessionId(id),
            generation: 3,
            issued_at_ms: 42,
            revoked: true,
        };
        let payload = format!(
            "garbage\n\n{id} 3 42 1\nnot-a-uuid 3 42 1\n{id} -1 42 1\n{id} 3 x 1\n\
             {id} 3 42 2\n{id} 3 42\n{id} 3 42 1 extra\n{id} 4294967296 42 0\n{id} 3 42 1\r\n"
        );
        assert_eq!(decode_changes(&payload), vec![good, good]);
    }

    async fn next_event(feed: &mut mpsc::Receiver<FeedEvent>, within: Duration) -> FeedEvent {
        tokio::time::timeout(within, feed.recv())
            .await
            .expect("a feed event in time")
            .expect("the feed is open")
    }

    /// Collects changes from the feed until every id of `ids` was seen.
    async fn wait_for_changes(
        feed: &mut mpsc::Receiver<FeedEvent>,
        ids: &[SessionId],
        within: Duration,
    ) -> HashMap<Uuid, SessionChange> {
        let deadline = Instant::now() + within;
        let mut seen = HashMap::new();
        while !ids.iter().all(|id| seen.contains_key(&id.0)) {
            let event = tokio::time::timeout_at(deadline, feed.recv())
                .await
                .unwrap_or_else(|_| panic!("changes in time; saw {}", seen.len()))
                .expect("the feed is open");
            if let FeedEvent::Changes(changes) = event {
                seen.extend(changes.into_iter().map(|c| (c.id.0, c)));
            }
        }
        seen
    }

    /// The backends of `dbname` listening for changes.
    async fn listeners(store: &PostgresStore, dbname: &str, terminate: bool) -> Vec<bool> {
        let client = store.pool.get().await.expect("client");
        let sql = format!(
            "SELECT {} FROM pg_stat_activity \
             WHERE datname = $1 AND query ILIKE 'LISTEN%' AND pid <> pg_backend_pid()",
            if terminate {
                "pg_terminate_backend(pid)"
            } else {
                "true"
            }
        );
        client
            .query(&sql, &[&dbname])
            .await
            .expect("pg_stat_activity")
            .iter()
            .map(|row| row.get(0))
            .collect()
    }

    #[tokio::test]
    async fn change_feed_delivers_commits_and_reconnects() {
        let db = TestDb::fresh();
        let a = db.open().await;
        let b = db.open().await;
        let user = new_user("feed@example.com");
        let crowd = new_user("crowd@example.com");
        b.insert_user(&user).await.expect("insert");
        b.insert_user(&crowd).await.expect("insert");
        let s1 = Session::start(user.id, 0, 1_000, 600_000);
        let s2 = Session::start(user.id, 0, 1_000, 600_000);
        // Enough that announcing their revocation takes several payloads.
        let many: Vec<Session> = (0..300)
            .map(|_| Session::start(crowd.id, 0, 1_000, 600_000))
            .collect();
        let mut creates = vec![
            SessionWrite::Create(s1.clone()),
            SessionWrite::Create(s2.clone()),
        ];
        creates.extend(many.iter().cloned().map(SessionWrite::Create));
        b.write_sessions(&creates).await.expect("create");

        let mut feed = a.subscribe().expect("postgres has a feed");
        assert_eq!(
            next_event(&mut feed, Duration::from_secs(2)).await,
            FeedEvent::Connected
        );
        let done = b
            .write_sessions(&[SessionWrite::Revoke {
                id: s1.id,
                revoked_at_ms: 2_000,
            }])
            .await
            .expect("revoke");
        assert_eq!(done.changes, vec![change(&s1, 0, 1_000, true)]);
        let seen = wait_for_changes(&mut feed, &[s1.id], Duration::from_secs(2)).await;
        assert_eq!(seen[&s1.id.0], change(&s1, 0, 1_000, true));

        // Kill the listener's server process: the feed reconnects.
        assert_eq!(listeners(&b, &db.name, true).await, vec![true]);
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let event = tokio::time::timeout_at(deadline, feed.recv())
                .await
                .expect("reconnected in time")
                .expect("the feed is open");
            if event == FeedEvent::Connected {
                break;
            }
        }
        b.write_sessions(&[SessionWrite::Revoke {
            id: s2.id,
            revoked_at_ms: 3_000,
        }])
        .await
        .expect("revoke");
        let seen = wait_for_changes(&mut feed, &[s2.id], Duration::from_secs(2)).await;
        assert_eq!(seen[&s2.id.0], change(&s2, 0, 1_000, true));

        // A large batch arrives whole, over several notifications.
        let done = b
            .write_sessions(&[SessionWrite::RevokeUser {
                user_id: crowd.id,
                revoked_at_ms: 4_000,
            }])
            .await
            .expect("revoke user");
        assert_eq!(done.changes.len(), many.len());
        assert!(encode_changes(&done.changes).len() > 1);
        let ids: Vec<SessionId> = many.iter().map(|s| s.id).collect();
        let seen = wait_for_changes(&mut feed, &ids, Duration::from_secs(2)).await;
        assert!(ids.iter().all(|id| seen[&id.0].revoked));

        // Dropping the receiver stops the feed and closes its connection.
        drop(feed);
        let deadline = Instant::now() + Duration::from_secs(5);
        while !listeners(&b, &db.name, false).await.is_empty() {
            assert!(
                Instant::now() < deadline,
                "the feed connection outlived its receiver"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        drop((a, b));
        db.remove().await;
    }

    #[test]
    fn quotes_identifiers() {
        assert_eq!(quote_ident("authd"), "\"authd\"");
        assert_eq!(quote_ident("we\"ird"), "\"we\"\"ird\"");
    }
}
