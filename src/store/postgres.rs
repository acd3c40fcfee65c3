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
//!   against the winner's row and updates nothing.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use async_trait::async_trait;
use deadpool_postgres::{
    Manager, ManagerConfig, Object, Pool, PoolError, RecyclingMethod, Runtime, Timeouts,
};
use tokio::time::{timeout_at, Instant};
use tokio_postgres::error::SqlState;
use tokio_postgres::{NoTls, Row};
use uuid::Uuid;

use super::{migrations, NewUser, SessionWrite, Store, StoreError, UserRecord, WriteOutcome};
use crate::domain::{Email, Session, SessionId, UserId};
use crate::settings::PostgresTarget;

/// Database used to create the target database.
const MAINTENANCE_DB: &str = "postgres";

/// `CREATE DATABASE` and migrations may take longer than a query (and may
/// wait for another instance's migration), so start-up gets at least this.
const SETUP_TIMEOUT_FLOOR: Duration = Duration::from_secs(60);

/// Name of the unique constraint on `users.email` (sql/postgres/0001).
const EMAIL_CONSTRAINT: &str = "users_email_key";

const INSERT_USER: &str = "INSERT INTO users (id, email, password_hash) VALUES ($1, $2, $3)";
const FIND_USER: &str = "SELECT id, password_hash FROM users WHERE email = $1";
const LOAD_SESSION: &str = "SELECT id, user_id, generation, issued_at_ms, expires_at_ms, \
     revoked_at_ms IS NOT NULL FROM sessions WHERE id = $1";
const STORE_SECRET: &str =
    "INSERT INTO service_secrets (name, value) VALUES ('hs256', $1) ON CONFLICT (name) DO NOTHING";
const LOAD_SECRET: &str = "SELECT value FROM service_secrets WHERE name = 'hs256'";

/// Creates skip (and report as conflicts) ids that already exist and users
/// that do not, instead of failing the whole batch on a constraint.
const CREATE_SESSIONS: &str = "INSERT INTO sessions \
     (id, user_id, generation, issued_at_ms, expires_at_ms, revoked_at_ms, created_at_ms) \
     SELECT v.id, v.user_id, v.generation, v.issued, v.expires, v.revoked, v.issued \
     FROM UNNEST($1::uuid[], $2::uuid[], $3::bigint[], $4::bigint[], $5::bigint[], $6::bigint[]) \
       AS v(id, user_id, generation, issued, expires, revoked) \
     WHERE EXISTS (SELECT 1 FROM users u WHERE u.id = v.user_id) \
     ON CONFLICT (id) DO NOTHING \
     RETURNING id";
const ROTATE_SESSIONS: &str = "UPDATE sessions s \
     SET generation = v.from_gen + 1, issued_at_ms = v.issued \
     FROM UNNEST($1::uuid[], $2::bigint[], $3::bigint[]) AS v(id, from_gen, issued) \
     WHERE s.id = v.id AND s.generation = v.from_gen AND s.revoked_at_ms IS NULL \
     RETURNING s.id";
const REVOKE_SESSIONS: &str = "UPDATE sessions s \
     SET revoked_at_ms = COALESCE(s.revoked_at_ms, v.at) \
     FROM UNNEST($1::uuid[], $2::bigint[]) AS v(id, at) \
     WHERE s.id = v.id \
     RETURNING s.id";

pub struct PostgresStore {
    pool: Pool,
    timeout: Duration,
}

impl PostgresStore {
    /// Creates the database if missing, opens a pool of at most `pool_size`
    /// connections and applies pending migrations.
    pub async fn connect(
        target: &PostgresTarget,
        pool_size: usize,
        timeout: Duration,
    ) -> Result<Self, StoreError> {
        let mut config = tokio_postgres::Config::new();
        config
            .host(&target.host)
            .port(target.port)
            .user(&target.user)
            .dbname(&target.dbname)
            .application_name("authd")
            .connect_timeout(timeout);
        if !target.password.is_empty() {
            config.password(&target.password);
        }

        ensure_database(&config, &target.dbname, timeout).await?;

        let manager = Manager::from_config(
            config,
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
        let store = PostgresStore { pool, timeout };

        let setup = timeout.max(SETUP_TIMEOUT_FLOOR);
        let deadline = Instant::now() + setup;
        let mut client = store.client("migrate", deadline).await?;
        let result = timeout_at(
            deadline,
            migrations::apply_postgres(&mut client, migrations::POSTGRES),
        )
        .await;
        store
            .settle(client, result, setup)
            .map_err(|f| f.into_store_error("applying migrations"))?;
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

    async fn ping(&self) -> Result<(), StoreError> {
        let deadline = self.deadline();
        let client = self.client("ping", deadline).await?;
        let result = timeout_at(deadline, client.batch_execute("SELECT 1")).await;
        self.settle(client, result, self.timeout)
            .map_err(|f| f.into_store_error("ping"))
    }

    async fn insert_user(&self, user: &NewUser) -> Result<(), StoreError> {
        let deadline = self.deadline();
        let client = self.client("insert_user", deadline).await?;
        let result = timeout_at(deadline, async {
            let statement = client.prepare_cached(INSERT_USER).await?;
            client
                .execute(
                    &statement,
                    &[&user.id.0, &user.email.as_str(), &user.password_hash],
                )
                .await
        })
        .await;
        match self.settle(client, result, self.timeout) {
            Ok(_) => Ok(()),
            Err(Failure::Db(e)) if is_email_taken(&e) => Err(StoreError::EmailTaken),
            Err(f) => Err(f.into_store_error("insert_user")),
        }
    }

    async fn find_user_by_email(&self, email: &Email) -> Result<Option<UserRecord>, StoreError> {
        let deadline = self.deadline();
        let client = self.client("find_user_by_email", deadline).await?;
        let result = timeout_at(deadline, async {
            let statement = client.prepare_cached(FIND_USER).await?;
            let row = client.query_opt(&statement, &[&email.as_str()]).await?;
            row.map(|row| {
                Ok(UserRecord {
                    id: UserId(row.try_get(0)?),
                    password_hash: row.try_get(1)?,
                })
            })
            .transpose()
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

    async fn write_sessions(
        &self,
        batch: &[SessionWrite],
    ) -> Result<Vec<WriteOutcome>, StoreError> {
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        let plan = Plan::new(batch);
        let deadline = self.deadline();
        let mut client = self.client("write_sessions", deadline).await?;
        let result = timeout_at(deadline, async {
            let tx = client.transaction().await?;
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
                        ],
                    )
                    .await?;
                created = ids(&rows)?;
            }
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
            }
            let mut revoked = Vec::new();
            if !plan.revokes.ids.is_empty() {
                let statement = tx.prepare_cached(REVOKE_SESSIONS).await?;
                let rows = tx
                    .query(&statement, &[&plan.revokes.ids, &plan.revokes.at])
                    .await?;
                revoked = ids(&rows)?;
            }
            tx.commit().await?;
            Ok((created, rotated, revoked))
        })
        .await;
        let (created, rotated, revoked) = self
            .settle(client, result, self.timeout)
            .map_err(|f| f.into_store_error("write_sessions"))?;
        Ok(plan.outcomes(batch, &created, &rotated, &revoked))
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
    })
}

fn is_email_taken(e: &tokio_postgres::Error) -> bool {
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
}

#[derive(Default)]
struct Creates {
    ids: Vec<Uuid>,
    user_ids: Vec<Uuid>,
    generations: Vec<i64>,
    issued: Vec<i64>,
    expires: Vec<i64>,
    revoked: Vec<Option<i64>>,
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

impl Plan {
    fn new(batch: &[SessionWrite]) -> Self {
        let mut creates = Creates::default();
        let mut rotation_rounds: Vec<Rotations> = Vec::new();
        let mut rounds_of: HashMap<Uuid, usize> = HashMap::new();
        let mut revokes = Revokes::default();
        let mut revoked_ids = HashSet::new();
        for write in batch {
            match write {
                SessionWrite::Create(s) => {
                    creates.ids.push(s.id.0);
                    creates.user_ids.push(s.user_id.0);
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
        let mut rows: Vec<_> = revokes
            .ids
            .iter()
            .copied()
            .zip(revokes.at.iter().copied())
            .collect();
        rows.sort_unstable_by_key(|row| row.0);
        revokes.ids = rows.iter().map(|row| row.0).collect();
        revokes.at = rows.iter().map(|row| row.1).collect();
        Plan {
            creates,
            rotation_rounds,
            revokes,
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

    impl TestDb {
        fn new() -> Self {
            TestDb { name: fresh_name() }
        }

        async fn connect(&self) -> PostgresStore {
            PostgresStore::connect(&target(&self.name), 4, TIMEOUT)
                .await
                .expect("connect")
        }

        async fn drop_database(self) {
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

    fn new_user(email: &str) -> NewUser {
        NewUser {
            id: UserId::new_random(),
            email: Email::parse(email).expect("email"),
            password_hash: "$argon2id$fake".into(),
        }
    }

    async fn migration_count(store: &PostgresStore) -> i64 {
        let client = store.pool.get().await.expect("client");
        client
            .query_one("SELECT count(*) FROM schema_migrations", &[])
            .await
            .expect("count")
            .get(0)
    }

    #[tokio::test]
    async fn creates_database_and_migrates_once() {
        let db = TestDb::new();
        // Two instances starting together: both succeed, one creates.
        let t = target(&db.name);
        let (a, b) = tokio::join!(
            PostgresStore::connect(&t, 2, TIMEOUT),
            PostgresStore::connect(&t, 2, TIMEOUT),
        );
        let (a, b) = (a.expect("first"), b.expect("second"));
        assert_eq!(migration_count(&a).await, migrations::POSTGRES.len() as i64);
        drop((a, b));
        let again = db.connect().await;
        assert_eq!(again.kind(), "postgres");
        again.ping().await.expect("ping");
        assert_eq!(
            migration_count(&again).await,
            migrations::POSTGRES.len() as i64
        );
        drop(again);
        db.drop_database().await;
    }

    #[tokio::test]
    async fn users() {
        let db = TestDb::new();
        let store = db.connect().await;
        let user = new_user("Alice@Example.com");
        store.insert_user(&user).await.expect("insert");
        let found = store
            .find_user_by_email(&Email::parse("alice@example.COM").expect("email"))
            .await
            .expect("find")
            .expect("present");
        assert_eq!(found.id, user.id);
        assert_eq!(found.password_hash, user.password_hash);
        let missing = store
            .find_user_by_email(&Email::parse("bob@example.com").expect("email"))
            .await
            .expect("find");
        assert!(missing.is_none());
        let twin = new_user("alice@example.com");
        assert!(matches!(
            store.insert_user(&twin).await,
            Err(StoreError::EmailTaken)
        ));
        drop(store);
        db.drop_database().await;
    }

    #[tokio::test]
    async fn sessions_and_batches() {
        let db = TestDb::new();
        let store = db.connect().await;
        let user = new_user("carol@example.com");
        store.insert_user(&user).await.expect("insert");

        let a = Session::start(user.id, 1_000, 60_000);
        let b = Session::start(user.id, 1_000, 60_000);
        let outcomes = store
            .write_sessions(&[
                SessionWrite::Create(a.clone()),
                SessionWrite::Create(b.clone()),
            ])
            .await
            .expect("create");
        assert_eq!(outcomes, vec![WriteOutcome::Applied; 2]);
        assert_eq!(
            store.load_session(a.id).await.expect("load"),
            Some(a.clone())
        );
        assert_eq!(
            store
                .load_session(SessionId::new_random())
                .await
                .expect("load"),
            None
        );

        let c = Session::start(user.id, 2_000, 60_000);
        let orphan = Session::start(UserId::new_random(), 2_000, 60_000);
        let missing = SessionId::new_random();
        let batch = [
            SessionWrite::Rotate {
                id: a.id,
                from_generation: 0,
                issued_at_ms: 2_000,
            },
            // Stale: `a` is at generation 0 before this batch, and the
            // rotation above moves it to 1.
            SessionWrite::Rotate {
                id: a.id,
                from_generation: 0,
                issued_at_ms: 2_001,
            },
            SessionWrite::Revoke {
                id: b.id,
                revoked_at_ms: 2_002,
            },
            SessionWrite::Create(c.clone()),
            SessionWrite::Revoke {
                id: missing,
                revoked_at_ms: 2_003,
            },
            SessionWrite::Rotate {
                id: missing,
                from_generation: 0,
                issued_at_ms: 2_004,
            },
            // Revoking twice is fine; rotating a revoked session is not.
            SessionWrite::Revoke {
                id: b.id,
                revoked_at_ms: 2_005,
            },
            SessionWrite::Rotate {
                id: b.id,
                from_generation: 0,
                issued_at_ms: 2_006,
            },
            // A duplicate id and a user that does not exist.
            SessionWrite::Create(a.clone()),
            SessionWrite::Create(orphan),
            // A chained rotation in the same batch (a later round).
            SessionWrite::Rotate {
                id: a.id,
                from_generation: 1,
                issued_at_ms: 2_007,
            },
        ];
        let outcomes = store.write_sessions(&batch).await.expect("batch");
        use WriteOutcome::{Applied, Conflict};
        assert_eq!(
            outcomes,
            vec![
                Applied, Conflict, Applied, Applied, Conflict, Conflict, Applied, Applied,
                Conflict, Conflict, Applied
            ]
        );
        let a2 = store.load_session(a.id).await.expect("load").expect("a");
        assert_eq!(
            (a2.generation, a2.issued_at_ms, a2.revoked),
            (2, 2_007, false)
        );
        // Rotations run before revocations inside a batch, so the rotation of
        // `b` listed after its revocation still applied; `b` ends revoked.
        let b2 = store.load_session(b.id).await.expect("load").expect("b");
        assert!(b2.revoked);
        assert_eq!(store.load_session(c.id).await.expect("load"), Some(c));

        // Revoked sessions refuse rotation; revoking again stays applied.
        let outcomes = store
            .write_sessions(&[
                SessionWrite::Rotate {
                    id: b.id,
                    from_generation: b2.generation,
                    issued_at_ms: 3_000,
                },
                SessionWrite::Revoke {
                    id: b.id,
                    revoked_at_ms: 3_001,
                },
            ])
            .await
            .expect("batch");
        assert_eq!(outcomes, vec![Conflict, Applied]);
        assert_eq!(store.write_sessions(&[]).await.expect("empty"), vec![]);
        drop(store);
        db.drop_database().await;
    }

    #[tokio::test]
    async fn concurrent_rotations_produce_one_successor() {
        let db = TestDb::new();
        let first = db.connect().await;
        let second = db.connect().await;
        let user = new_user("frank@example.com");
        first.insert_user(&user).await.expect("insert");
        let session = Session::start(user.id, 1_000, 60_000);
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
            let outcomes = [x.expect("first")[0], y.expect("second")[0]];
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
        db.drop_database().await;
    }

    #[tokio::test]
    async fn signing_secret_is_stored_once() {
        let db = TestDb::new();
        let store = db.connect().await;
        let first = store
            .signing_secret("first-candidate")
            .await
            .expect("first");
        assert_eq!(first, "first-candidate");
        let second = store
            .signing_secret("second-candidate")
            .await
            .expect("second");
        assert_eq!(second, "first-candidate");
        drop(store);
        db.drop_database().await;
    }

    #[tokio::test]
    async fn unreachable_server_is_unavailable() {
        let mut t = target(&fresh_name());
        t.port = 1; // nothing listens there
        let started = std::time::Instant::now();
        let result = PostgresStore::connect(&t, 2, Duration::from_millis(500)).await;
        assert!(
            matches!(result, Err(StoreError::Unavailable(_))),
            "{:?}",
            result.err()
        );
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn quotes_identifiers() {
        assert_eq!(quote_ident("authd"), "\"authd\"");
        assert_eq!(quote_ident("we\"ird"), "\"we\"\"ird\"");
    }
}
