//! What a user does to their own account and sessions, on PostgreSQL:
//! reading a user by id, listing live sessions, changing the password and
//! deleting the account. The last two revoke sessions outside the group
//! commit, each in one transaction of its own that also publishes the
//! revocations on the change feed (`NOTIFY`, delivered at commit).

use super::*;
use crate::domain::SessionOrigin;
use crate::store::AccountStore;

const USER_BY_ID: &str = "SELECT id, int_id, password_hash, legacy_id, legacy_tokens_closed, \
     email FROM users WHERE id = $1";
/// Newest first; `$3` (created_at_ms) and `$4` (id) are where the previous
/// page ended, or NULL.
const LIST_SESSIONS: &str = "SELECT id, created_at_ms, issued_at_ms, generation, \
     expires_at_ms, client_address, user_agent FROM sessions \
     WHERE user_id = $1 AND revoked_at_ms IS NULL AND expires_at_ms > $2 \
       AND ($3::bigint IS NULL OR (created_at_ms, id) < ($3::bigint, $4::uuid)) \
     ORDER BY created_at_ms DESC, id DESC LIMIT $5";
/// Locks the user's row against concurrent session creates (which hold
/// `FOR KEY SHARE` on it until they commit): every session committed
/// before is seen by the revocation that follows, and every later create
/// finds the state after this transaction.
const LOCK_USER: &str = "SELECT legacy_id FROM users WHERE id = $1 FOR UPDATE";
const SET_PASSWORD: &str =
    "UPDATE users SET password_hash = $2, legacy_tokens_closed = true WHERE id = $1";
/// Like a batch's revocations, writes a change-log entry of what it revoked.
const REVOKE_ALL_OF_USER: &str = "WITH changed AS (UPDATE sessions \
       SET revoked_at_ms = $2, updated_at_ms = GREATEST(updated_at_ms, $2) \
       WHERE user_id = $1 AND revoked_at_ms IS NULL \
       RETURNING id, generation, issued_at_ms, revoked_at_ms IS NOT NULL AS revoked), \
     logged AS (INSERT INTO session_changes (ids, generations, issued, revoked) \
       SELECT array_agg(id), array_agg(generation), array_agg(issued_at_ms), \
         array_agg(revoked) FROM changed HAVING count(*) > 0) \
     SELECT id, generation, issued_at_ms, revoked FROM changed";
/// Every session of the user, revoked ones included, loses its origin; the
/// live ones are revoked (and logged, like any revocation). The rows stay
/// as tombstones until pruned.
const ENTOMB_SESSIONS: &str = "WITH changed AS (UPDATE sessions \
       SET revoked_at_ms = COALESCE(revoked_at_ms, $2), \
         updated_at_ms = CASE WHEN revoked_at_ms IS NULL \
           THEN GREATEST(updated_at_ms, $2) ELSE updated_at_ms END, \
         client_address = NULL, user_agent = NULL \
       WHERE user_id = $1 \
       RETURNING id, generation, issued_at_ms, revoked_at_ms IS NOT NULL AS revoked), \
     logged AS (INSERT INTO session_changes (ids, generations, issued, revoked) \
       SELECT array_agg(id), array_agg(generation), array_agg(issued_at_ms), \
         array_agg(revoked) FROM changed HAVING count(*) > 0) \
     SELECT id, generation, issued_at_ms, revoked FROM changed";
const MARK_LEGACY_DELETED: &str = "INSERT INTO legacy_deleted (legacy_id, deleted_at_ms) \
     VALUES ($1, $2) ON CONFLICT (legacy_id) DO NOTHING";
const DELETE_USER: &str = "DELETE FROM users WHERE id = $1";

#[async_trait]
impl AccountStore for PostgresStore {
    async fn find_user_by_id(&self, id: UserId) -> Result<Option<UserRecord>, StoreError> {
        self.on_connection("find_user_by_id", move |c| {
            Box::pin(async move {
                let statement = c.prepare_cached(USER_BY_ID).await?;
                let row = c.query_opt(&statement, &[&id.0]).await?;
                row.map(|row| user_from_row(&row)).transpose()
            })
        })
        .await
    }

    async fn list_sessions(
        &self,
        user: UserId,
        now_ms: i64,
        after: Option<SessionCursor>,
        limit: usize,
    ) -> Result<Vec<SessionSummary>, StoreError> {
        let (created, id) = (after.map(|a| a.created_at_ms), after.map(|a| a.id.0));
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = self
            .on_connection("list_sessions", move |c| {
                Box::pin(async move {
                    let statement = c.prepare_cached(LIST_SESSIONS).await?;
                    c.query(&statement, &[&user.0, &now_ms, &created, &id, &limit])
                        .await
                })
            })
            .await?;
        rows.iter().map(summary_from_row).collect()
    }

    async fn change_password(
        &self,
        user: UserId,
        password_hash: &str,
        now_ms: i64,
    ) -> Result<Option<Vec<SessionChange>>, StoreError> {
        let password_hash = password_hash.to_owned();
        let rows = self
            .on_connection("change_password", move |c| {
                Box::pin(async move {
                    let tx = c.transaction().await?;
                    if tx.query_opt(LOCK_USER, &[&user.0]).await?.is_none() {
                        return Ok(None);
                    }
                    tx.execute(SET_PASSWORD, &[&user.0, &password_hash]).await?;
                    let rows = tx.query(REVOKE_ALL_OF_USER, &[&user.0, &now_ms]).await?;
                    let changes = match read_changes(&rows) {
                        Ok(changes) => changes,
                        // Rolled back (`tx` dropped).
                        Err(e) => return Ok(Some(Err(e))),
                    };
                    publish(&tx, &changes).await?;
                    tx.commit().await?;
                    Ok(Some(Ok(changes)))
                })
            })
            .await?;
        rows.transpose()
    }

    async fn delete_user(
        &self,
        user: UserId,
        now_ms: i64,
    ) -> Result<Option<Vec<SessionChange>>, StoreError> {
        let rows = self
            .on_connection("delete_user", move |c| {
                Box::pin(async move {
                    let tx = c.transaction().await?;
                    let Some(locked) = tx.query_opt(LOCK_USER, &[&user.0]).await? else {
                        return Ok(None);
                    };
                    let rows = tx.query(ENTOMB_SESSIONS, &[&user.0, &now_ms]).await?;
                    if let Some(legacy_id) = locked.try_get::<_, Option<i64>>(0)? {
                        tx.execute(MARK_LEGACY_DELETED, &[&legacy_id, &now_ms])
                            .await?;
                    }
                    tx.execute(DELETE_USER, &[&user.0]).await?;
                    let changes = match read_changes(&rows) {
                        Ok(changes) => changes,
                        Err(e) => return Ok(Some(Err(e))),
                    };
                    publish(&tx, &changes).await?;
                    tx.commit().await?;
                    Ok(Some(Ok(changes)))
                })
            })
            .await?;
        rows.transpose()
    }
}

fn read_changes(rows: &[Row]) -> Result<Vec<SessionChange>, StoreError> {
    rows.iter().map(change_from_row).collect()
}

/// Publishes `changes` at the commit of `tx`.
async fn publish(
    tx: &tokio_postgres::Transaction<'_>,
    changes: &[SessionChange],
) -> Result<(), tokio_postgres::Error> {
    if changes.is_empty() {
        return Ok(());
    }
    let payloads = encode_changes(changes);
    tx.execute(NOTIFY_CHANGES, &[&CHANGE_CHANNEL, &payloads])
        .await
        .map(|_| ())
}

/// A row of [`LIST_SESSIONS`].
fn summary_from_row(row: &Row) -> Result<SessionSummary, StoreError> {
    let read = |e: tokio_postgres::Error| Failure::Db(e).into_store_error("listing sessions");
    let generation: i64 = row.try_get(3).map_err(read)?;
    Ok(SessionSummary {
        id: SessionId(row.try_get(0).map_err(read)?),
        created_at_ms: row.try_get(1).map_err(read)?,
        issued_at_ms: row.try_get(2).map_err(read)?,
        generation: u32::try_from(generation).map_err(|_| {
            StoreError::internal(format!("session generation {generation} out of range"))
        })?,
        expires_at_ms: row.try_get(4).map_err(read)?,
        origin: SessionOrigin {
            client_address: row.try_get(5).map_err(read)?,
            user_agent: row.try_get(6).map_err(read)?,
        },
    })
}
