//! Setting the PostgreSQL backend up: the connection settings every
//! connection shares (the host is chosen per connection, by
//! [`super::primary`]), creating the target database when it is missing,
//! the pool and its gauges. Migrations themselves are in
//! [`crate::store::migrations`]; [`super::PostgresStore::connect`] runs them
//! through the pool under their longer start-up limit.

use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime, Timeouts};
use tokio_postgres::error::SqlState;

use super::errors::Failure;
use super::primary::{PoolConnect, Primary};
use super::SCHEMA;
use crate::settings::PostgresTarget;
use crate::store::StoreError;

/// Database used to create the target database.
pub(super) const MAINTENANCE_DB: &str = "postgres";

/// `CREATE DATABASE` and migrations may take longer than a query (and may
/// wait for another instance's migration), so start-up gets at least this.
pub(super) const SETUP_TIMEOUT_FLOOR: Duration = Duration::from_secs(60);

/// How often the pool's gauges are published.
const POOL_GAUGE_INTERVAL: Duration = Duration::from_secs(1);

/// The settings of every connection to `target` (pooled ones, the change
/// feed's, the publisher's), all but the host: [`Primary::connect`] adds
/// the host that is primary.
pub(super) fn client_config(target: &PostgresTarget) -> tokio_postgres::Config {
    let mut config = tokio_postgres::Config::new();
    config
        .user(&target.user)
        .dbname(&target.dbname)
        .application_name("authd")
        // authd's tables live in a schema of their own, so that it can
        // share a database with anyone else's tables (the old service's
        // `public.users`, above all). Unqualified names resolve there.
        //
        // Custom plans always: statements are prepared once per pooled
        // connection, and PostgreSQL may switch a prepared statement to a
        // generic plan after five executions, made while the table was
        // small (a sequential scan), and keep it until the next ANALYZE.
        // Measured on a shared machine, refresh at 64 connections: without
        // this setting 3,022 req/s fresh, 626 after 150,000 sign-ins, 8,130
        // once authd restarted (new connections, new plans); with it
        // 7,217, 7,160 and 10,113. The price: planning a batch's rotation
        // statement takes ~0.13 ms (`EXPLAIN ANALYZE`, 31 rows), about a
        // sixth of the backend's time per batch.
        //
        // Warnings and errors only: the migrations' `IF NOT EXISTS`
        // notices ("schema \"authd\" already exists, skipping") would
        // otherwise reach the log at every start but the first.
        .options(format!(
            "-c search_path={SCHEMA} -c plan_cache_mode=force_custom_plan \
             -c client_min_messages=warning"
        ));
    if !target.password.is_empty() {
        config.password(target.password.expose());
    }
    config
}

/// A pool of at most `size` connections to the primary whose checkouts,
/// connection attempts and recycling each give up after `timeout`.
///
/// Recycling only checks that a connection is still open (no round trip
/// per checkout): a connection to a primary that went away is closed by
/// then, and one that failed in a way that shows its server no longer
/// takes writes is thrown away by the store (`errors::ends_connection`).
pub(super) fn build_pool(
    config: tokio_postgres::Config,
    primary: &Arc<Primary>,
    size: usize,
    timeout: Duration,
) -> Result<Pool, StoreError> {
    let manager = Manager::from_connect(
        config,
        PoolConnect(Arc::clone(primary)),
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    // Without these timeouts `pool.get()` waits forever for a server
    // that is gone.
    Pool::builder(manager)
        .max_size(size.max(1))
        .runtime(Runtime::Tokio1)
        .timeouts(Timeouts {
            wait: Some(timeout),
            create: Some(timeout),
            recycle: Some(timeout),
        })
        .build()
        .map_err(|e| StoreError::internal(format!("building the connection pool: {e}")))
}

/// The store publishes its own pool gauges, every [`POOL_GAUGE_INTERVAL`],
/// for as long as its pool lives (the task holds it weakly).
pub(super) fn spawn_pool_gauges(pool: &Pool) {
    use crate::telemetry::metrics as m;
    let weak = pool.weak();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(POOL_GAUGE_INTERVAL);
        loop {
            tick.tick().await;
            let Some(pool) = weak.upgrade() else { return };
            let status = pool.status();
            metrics::gauge!(m::DB_POOL, "state" => "open").set(status.size as f64);
            metrics::gauge!(m::DB_POOL, "state" => "idle").set(status.available as f64);
            metrics::gauge!(m::DB_POOL, "state" => "waiting").set(status.waiting as f64);
        }
    });
}

/// Connects to the maintenance database on the primary and creates
/// `dbname` if missing.
///
/// A role that may not use the maintenance database can still run authd
/// against an existing database, so failing to log in there only warns;
/// no reachable primary is an error.
pub(super) async fn ensure_database(
    config: &tokio_postgres::Config,
    primary: &Primary,
    dbname: &str,
    timeout: Duration,
) -> Result<(), StoreError> {
    const CONTEXT: &str = "connecting to the maintenance database";
    let mut maintenance = config.clone();
    maintenance.dbname(MAINTENANCE_DB);
    let client = match primary.connect_within(&maintenance, timeout).await {
        None => return Err(Failure::Elapsed(timeout).into_store_error(CONTEXT)),
        Some(Err(none)) => {
            let error = none.into_store_error(CONTEXT);
            if error.is_unavailable() {
                return Err(error);
            }
            tracing::warn!(%error, "cannot check whether the database exists; assuming it does");
            return Ok(());
        }
        Some(Ok((client, connection))) => {
            tokio::spawn(async move {
                if let Err(error) = connection.await {
                    tracing::debug!(%error, "maintenance connection ended");
                }
            });
            client
        }
    };

    let setup = timeout.max(SETUP_TIMEOUT_FLOOR);
    match tokio::time::timeout(setup, create_if_missing(&client, dbname)).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(Failure::Db(e).into_store_error("creating the database")),
        Err(_) => Err(Failure::Elapsed(setup).into_store_error("creating the database")),
    }
}

/// Creates `dbname` through `client` (on the maintenance database) unless
/// it exists. Another process creating it at the same time is no error.
async fn create_if_missing(
    client: &tokio_postgres::Client,
    dbname: &str,
) -> Result<(), tokio_postgres::Error> {
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
}

/// Quotes an SQL identifier: `"` around it, inner `"` doubled.
pub(super) fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_identifiers() {
        assert_eq!(quote_ident("authd"), "\"authd\"");
        assert_eq!(quote_ident("we\"ird"), "\"we\"\"ird\"");
    }
}
