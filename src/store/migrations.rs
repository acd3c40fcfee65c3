//! Schema migrations: the SQL files under `sql/` compiled into the binary,
//! and the tiny migrator that applies the pending ones at start-up.
//!
//! Each backend records the versions it has applied in `schema_migrations`
//! and applies every pending migration exactly once, each in its own
//! transaction together with its `schema_migrations` row, so a crash leaves
//! either all of a migration or none of it. Several PostgreSQL instances may
//! start at the same moment: every migration transaction first takes a
//! transaction-level advisory lock, so they queue up and the later ones find
//! the version already recorded. SQLite serialises writers by itself
//! (`BEGIN IMMEDIATE`).
//!
//! Migrations are append-only: never edit a released file, add the next one.

/// One schema change.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Migration {
    /// Strictly increasing, starting at 1.
    pub version: i64,
    pub name: &'static str,
    pub sql: &'static str,
}

pub(crate) const POSTGRES: &[Migration] = &[
    Migration {
        version: 1,
        name: "init",
        sql: include_str!("../../sql/postgres/0001_init.sql"),
    },
    Migration {
        version: 2,
        name: "change_feed_and_signing_keys",
        sql: include_str!("../../sql/postgres/0002_change_feed_and_signing_keys.sql"),
    },
    Migration {
        version: 3,
        name: "hot_rotations",
        sql: include_str!("../../sql/postgres/0003_hot_rotations.sql"),
    },
    Migration {
        version: 4,
        name: "integer_ids_and_legacy",
        sql: include_str!("../../sql/postgres/0004_integer_ids_and_legacy.sql"),
    },
    Migration {
        version: 5,
        name: "session_origin_and_account_deletion",
        sql: include_str!("../../sql/postgres/0005_session_origin_and_account_deletion.sql"),
    },
    Migration {
        version: 6,
        name: "change_log",
        sql: include_str!("../../sql/postgres/0006_change_log.sql"),
    },
];

pub(crate) const SQLITE: &[Migration] = &[
    Migration {
        version: 1,
        name: "init",
        sql: include_str!("../../sql/sqlite/0001_init.sql"),
    },
    Migration {
        version: 2,
        name: "change_feed_and_signing_keys",
        sql: include_str!("../../sql/sqlite/0002_change_feed_and_signing_keys.sql"),
    },
    Migration {
        version: 3,
        name: "hot_rotations",
        sql: include_str!("../../sql/sqlite/0003_hot_rotations.sql"),
    },
    Migration {
        version: 4,
        name: "integer_ids_and_legacy",
        sql: include_str!("../../sql/sqlite/0004_integer_ids_and_legacy.sql"),
    },
    Migration {
        version: 5,
        name: "session_origin_and_account_deletion",
        sql: include_str!("../../sql/sqlite/0005_session_origin_and_account_deletion.sql"),
    },
    Migration {
        version: 6,
        name: "change_log",
        sql: include_str!("../../sql/sqlite/0006_change_log.sql"),
    },
];

/// Key of the PostgreSQL advisory lock serialising migrators ("authd_mg").
const PG_LOCK_KEY: i64 = 0x6175_7468_645f_6d67;

const PG_CREATE_TABLE: &str = "CREATE TABLE IF NOT EXISTS schema_migrations (
    version    BIGINT      PRIMARY KEY,
    name       TEXT        NOT NULL,
    applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
)";

const SQLITE_CREATE_TABLE: &str = "CREATE TABLE IF NOT EXISTS schema_migrations (
    version    INTEGER NOT NULL PRIMARY KEY,
    name       TEXT    NOT NULL,
    applied_at TEXT    NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
)";

/// Applies the pending `migrations` on PostgreSQL; returns how many it
/// applied. Safe to run from several processes at once.
pub(crate) async fn apply_postgres(
    client: &mut tokio_postgres::Client,
    schema: &str,
    migrations: &[Migration],
) -> Result<usize, tokio_postgres::Error> {
    // Even `CREATE TABLE IF NOT EXISTS` races (a duplicate key in
    // pg_type) when two sessions run it together, so it too runs under
    // the lock.
    let tx = client.transaction().await?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&PG_LOCK_KEY])
        .await?;
    tx.batch_execute(&format!("CREATE SCHEMA IF NOT EXISTS {schema}"))
        .await?;
    move_out_of_public(&tx, schema).await?;
    tx.batch_execute(PG_CREATE_TABLE).await?;
    tx.commit().await?;

    let mut applied = 0;
    for migration in migrations {
        let tx = client.transaction().await?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&PG_LOCK_KEY])
            .await?;
        let done = tx
            .query_opt(
                "SELECT 1 FROM schema_migrations WHERE version = $1",
                &[&migration.version],
            )
            .await?
            .is_some();
        if done {
            tx.rollback().await?;
            continue;
        }
        tx.batch_execute(migration.sql).await?;
        tx.execute(
            "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)",
            &[&migration.version, &migration.name],
        )
        .await?;
        tx.commit().await?;
        tracing::info!(
            backend = "postgres",
            version = migration.version,
            name = migration.name,
            "applied schema migration"
        );
        applied += 1;
    }

    let newest: Option<i64> = client
        .query_one("SELECT max(version) FROM schema_migrations", &[])
        .await?
        .get(0);
    warn_if_newer("postgres", newest, migrations);
    Ok(applied)
}

/// The tables releases before the `authd` schema created in `public`.
const PRE_SCHEMA_TABLES: &[&str] = &[
    "schema_migrations",
    "users",
    "sessions",
    "service_secrets",
    "signing_keys",
];

/// Moves the tables of an authd that predates its own schema out of
/// `public` into `schema`, keeping every row (sessions included) and index.
/// Only when `public.schema_migrations` is authd's (its first migration is
/// `init`) and `public.users` is authd's (it has `password_hash`; the old
/// FastAPI service's has `hashed_password`), and `schema` has no tables of
/// its own yet. Runs under the migration lock, so instances that start
/// together move them once.
async fn move_out_of_public(
    tx: &tokio_postgres::Transaction<'_>,
    schema: &str,
) -> Result<(), tokio_postgres::Error> {
    let ours_in_public: bool = tx
        .query_one(
            "SELECT to_regclass('public.schema_migrations') IS NOT NULL \
               AND to_regclass($1 || '.schema_migrations') IS NULL \
               AND EXISTS (SELECT 1 FROM information_schema.columns \
                   WHERE table_schema = 'public' AND table_name = 'users' \
                     AND column_name = 'password_hash') \
               AND EXISTS (SELECT 1 FROM information_schema.columns \
                   WHERE table_schema = 'public' AND table_name = 'schema_migrations' \
                     AND column_name = 'version')",
            &[&schema],
        )
        .await?
        .get(0);
    if !ours_in_public {
        return Ok(());
    }
    let first: Option<String> = tx
        .query_opt(
            "SELECT name FROM public.schema_migrations WHERE version = 1",
            &[],
        )
        .await?
        .map(|row| row.get(0));
    if first.as_deref() != Some("init") {
        return Ok(());
    }
    for table in PRE_SCHEMA_TABLES {
        tx.batch_execute(&format!(
            "ALTER TABLE IF EXISTS public.{table} SET SCHEMA {schema}"
        ))
        .await?;
    }
    tracing::warn!(
        event = "tables_moved_to_schema",
        schema,
        "moved authd's tables from schema public into its own schema"
    );
    Ok(())
}

/// Applies the pending `migrations` on SQLite; returns how many it applied.
pub(crate) fn apply_sqlite(
    conn: &mut rusqlite::Connection,
    migrations: &[Migration],
) -> Result<usize, rusqlite::Error> {
    use rusqlite::{OptionalExtension, TransactionBehavior};

    conn.execute_batch(SQLITE_CREATE_TABLE)?;
    let mut applied = 0;
    for migration in migrations {
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let done = tx
            .query_row(
                "SELECT 1 FROM schema_migrations WHERE version = ?1",
                [migration.version],
                |_| Ok(()),
            )
            .optional()?
            .is_some();
        if done {
            tx.rollback()?;
            continue;
        }
        tx.execute_batch(migration.sql)?;
        tx.execute(
            "INSERT INTO schema_migrations (version, name) VALUES (?1, ?2)",
            rusqlite::params![migration.version, migration.name],
        )?;
        tx.commit()?;
        tracing::info!(
            backend = "sqlite",
            version = migration.version,
            name = migration.name,
            "applied schema migration"
        );
        applied += 1;
    }

    let newest: Option<i64> =
        conn.query_row("SELECT max(version) FROM schema_migrations", [], |row| {
            row.get(0)
        })?;
    warn_if_newer("sqlite", newest, migrations);
    Ok(applied)
}

/// A database migrated by a newer release still works as long as the newer
/// migrations were additive; say so in the log rather than refuse to start.
fn warn_if_newer(backend: &str, newest: Option<i64>, migrations: &[Migration]) {
    let known = migrations.iter().map(|m| m.version).max().unwrap_or(0);
    if let Some(newest) = newest.filter(|&v| v > known) {
        tracing::warn!(
            backend,
            database_version = newest,
            binary_version = known,
            "database schema is newer than this binary"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_strictly_increase_from_one() {
        for set in [POSTGRES, SQLITE] {
            for (i, m) in set.iter().enumerate() {
                assert_eq!(m.version, i as i64 + 1, "{}", m.name);
                assert!(!m.sql.trim().is_empty());
            }
        }
        assert_eq!(POSTGRES.len(), SQLITE.len());
    }
}
