//! What a user does to their own account and sessions, on SQLite: reading
//! a user by id, listing live sessions, changing the password and deleting
//! the account. The last two run in one `BEGIN IMMEDIATE` transaction each
//! on the writer connection, so they are ordered with every batch.

use async_trait::async_trait;
use rusqlite::{params, OptionalExtension, Row, TransactionBehavior};

use super::{change_from_row, changelog, sqlite_error, uuid_at, SqliteStore};
use crate::domain::{
    SessionChange, SessionCursor, SessionId, SessionOrigin, SessionSummary, UserId,
};
use crate::store::{AccountStore, StoreError, UserRecord};

const USER_BY_ID: &str = "SELECT id, int_id, password_hash, legacy_id, legacy_tokens_closed, \
     email FROM users WHERE id = ?1";
/// Newest first; `?3` (created_at_ms) and `?4` (id) are where the previous
/// page ended, or NULL.
const LIST_SESSIONS: &str = "SELECT id, created_at_ms, issued_at_ms, generation, \
     expires_at_ms, client_address, user_agent FROM sessions \
     WHERE user_id = ?1 AND revoked_at_ms IS NULL AND expires_at_ms > ?2 \
       AND (?3 IS NULL OR (created_at_ms, id) < (?3, ?4)) \
     ORDER BY created_at_ms DESC, id DESC LIMIT ?5";
const SET_PASSWORD: &str =
    "UPDATE users SET password_hash = ?2, legacy_tokens_closed = 1 WHERE id = ?1";
const REVOKE_ALL_OF_USER: &str = "UPDATE sessions \
     SET revoked_at_ms = ?2, updated_at_ms = max(updated_at_ms, ?2), change_seq = ?3 \
     WHERE user_id = ?1 AND revoked_at_ms IS NULL \
     RETURNING id, generation, issued_at_ms, revoked_at_ms IS NOT NULL";
/// Every session of the user loses its origin; the live ones are revoked.
/// The rows stay as tombstones until pruned.
const ENTOMB_SESSIONS: &str = "UPDATE sessions \
     SET revoked_at_ms = COALESCE(revoked_at_ms, ?2), \
       updated_at_ms = CASE WHEN revoked_at_ms IS NULL \
         THEN max(updated_at_ms, ?2) ELSE updated_at_ms END, \
       client_address = NULL, user_agent = NULL, change_seq = ?3 \
     WHERE user_id = ?1 \
     RETURNING id, generation, issued_at_ms, revoked_at_ms IS NOT NULL";
const DELETE_USER: &str = "DELETE FROM users WHERE id = ?1";

#[async_trait]
impl AccountStore for SqliteStore {
    async fn find_user_by_id(&self, id: UserId) -> Result<Option<UserRecord>, StoreError> {
        let id = id.0.to_string();
        self.with_conn(&self.reader, "find_user_by_id", move |conn| {
            conn.prepare_cached(USER_BY_ID)
                .and_then(|mut statement| statement.query_row([id], user_from_row).optional())
                .map_err(|e| sqlite_error("find_user_by_id", e))
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
        let user = user.0.to_string();
        let created = after.map(|a| a.created_at_ms);
        let id = after.map(|a| a.id.0.to_string());
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.with_conn(&self.reader, "list_sessions", move |conn| {
            conn.prepare_cached(LIST_SESSIONS)
                .and_then(|mut statement| {
                    statement
                        .query_map(params![user, now_ms, created, id, limit], summary_from_row)?
                        .collect()
                })
                .map_err(|e| sqlite_error("list_sessions", e))
        })
        .await
    }

    async fn change_password(
        &self,
        user: UserId,
        password_hash: &str,
        now_ms: i64,
    ) -> Result<Option<Vec<SessionChange>>, StoreError> {
        let (user, hash) = (user.0.to_string(), password_hash.to_owned());
        self.with_conn(&self.writer, "change_password", move |conn| {
            let mut work = || -> rusqlite::Result<Option<Vec<SessionChange>>> {
                let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
                if tx.execute(SET_PASSWORD, params![user, hash])? == 0 {
                    return Ok(None);
                }
                let seq = changelog::next_seq(&tx)?;
                let changes = tx
                    .prepare(REVOKE_ALL_OF_USER)?
                    .query_map(params![user, now_ms, seq], change_from_row)?
                    .collect::<rusqlite::Result<Vec<_>>>()?;
                tx.commit()?;
                Ok(Some(changes))
            };
            work().map_err(|e| sqlite_error("change_password", e))
        })
        .await
    }

    async fn delete_user(
        &self,
        user: UserId,
        now_ms: i64,
    ) -> Result<Option<Vec<SessionChange>>, StoreError> {
        let user = user.0.to_string();
        self.with_conn(&self.writer, "delete_user", move |conn| {
            let mut work = || -> rusqlite::Result<Option<Vec<SessionChange>>> {
                let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
                let seq = changelog::next_seq(&tx)?;
                let changes = tx
                    .prepare(ENTOMB_SESSIONS)?
                    .query_map(params![user, now_ms, seq], change_from_row)?
                    .collect::<rusqlite::Result<Vec<_>>>()?;
                if tx.execute(DELETE_USER, [&user])? == 0 {
                    return Ok(None);
                }
                tx.commit()?;
                Ok(Some(changes))
            };
            work().map_err(|e| sqlite_error("delete_user", e))
        })
        .await
    }
}

/// A row `(id, int_id, password_hash, legacy_id, legacy_tokens_closed, email)`.
fn user_from_row(row: &Row<'_>) -> rusqlite::Result<UserRecord> {
    Ok(UserRecord {
        id: UserId(uuid_at(row, 0)?),
        int_id: row.get(1)?,
        password_hash: row.get(2)?,
        legacy_id: row.get(3)?,
        legacy_tokens_closed: row.get(4)?,
        email: row.get(5)?,
    })
}

fn summary_from_row(row: &Row<'_>) -> rusqlite::Result<SessionSummary> {
    Ok(SessionSummary {
        id: SessionId(uuid_at(row, 0)?),
        created_at_ms: row.get(1)?,
        issued_at_ms: row.get(2)?,
        generation: row.get(3)?,
        expires_at_ms: row.get(4)?,
        origin: SessionOrigin {
            client_address: row.get(5)?,
            user_agent: row.get(6)?,
        },
    })
}
