//! What a user does to their own account and sessions, on PostgreSQL:
//! reading a user by id, listing live sessions, changing the password and
//! deleting the account. The last two revoke sessions outside the group
//! commit, each in one transaction of its own that also publishes the
//! revocations on the change feed (`NOTIFY`, delivered at commit).

use super::changelog::logged;
use super::rows::summary_from_row;
use super::*;
use crate::store::sql::{
    entomb_sessions, revoke_all_of_user, DELETE_USER, LIST_SESSIONS, SET_PASSWORD, USER_BY_ID,
};
use crate::store::AccountStore;

/// Locks the user's row against concurrent session creates (which hold
/// `FOR KEY SHARE` on it until they commit): every session committed
/// before is seen by the revocation that follows, and every later create
/// finds the state after this transaction.
const LOCK_USER: &str = "SELECT legacy_id FROM users WHERE id = $1 FOR UPDATE";
/// Like a batch's revocations, each writes a change-log entry of what it
/// revoked, in the same statement.
const REVOKE_ALL_OF_USER: &str = logged!(revoke_all_of_user!(""));
const ENTOMB_SESSIONS: &str = logged!(entomb_sessions!(""));
const MARK_LEGACY_DELETED: &str = "INSERT INTO legacy_deleted (legacy_id, deleted_at_ms) \
     VALUES ($1, $2) ON CONFLICT (legacy_id) DO NOTHING";

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
                    tx.execute(SET_PASSWORD, &[&password_hash, &user.0]).await?;
                    let rows = tx.query(REVOKE_ALL_OF_USER, &[&now_ms, &user.0]).await?;
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

    async fn delete_account(
        &self,
        user: UserId,
        now_ms: i64,
    ) -> Result<Option<Vec<SessionChange>>, StoreError> {
        let rows = self
            .on_connection("delete_account", move |c| {
                Box::pin(async move {
                    let tx = c.transaction().await?;
                    let Some(locked) = tx.query_opt(LOCK_USER, &[&user.0]).await? else {
                        return Ok(None);
                    };
                    let rows = tx.query(ENTOMB_SESSIONS, &[&now_ms, &user.0]).await?;
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
