//! What a user does to their own account and sessions, on SQLite: reading
//! a user by id, listing live sessions, changing the password and deleting
//! the account. The last two run in one `BEGIN IMMEDIATE` transaction each
//! on the writer connection, so they are ordered with every batch.

use async_trait::async_trait;
use rusqlite::{params, OptionalExtension, TransactionBehavior};

use super::rows::{summary_from_row, user_from_row};
use super::{change_from_row, changelog, sqlite_error, SqliteStore};
use crate::domain::{SessionChange, SessionCursor, SessionSummary, UserId};
use crate::store::sql::{
    entomb_sessions, revoke_all_of_user, DELETE_USER, LIST_SESSIONS, SET_PASSWORD, USER_BY_ID,
};
use crate::store::{AccountStore, StoreError, UserRecord};

/// Each stamps the rows it changes with the transaction's change sequence
/// (taken by `changelog::next_seq` first), as a batch does.
const REVOKE_ALL_OF_USER: &str =
    revoke_all_of_user!(", change_seq = (SELECT seq FROM change_counter)");
const ENTOMB_SESSIONS: &str = entomb_sessions!(", change_seq = (SELECT seq FROM change_counter)");

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
                if tx.execute(SET_PASSWORD, params![hash, user])? == 0 {
                    return Ok(None);
                }
                changelog::next_seq(&tx)?;
                let changes = tx
                    .prepare(REVOKE_ALL_OF_USER)?
                    .query_map(params![now_ms, user], change_from_row)?
                    .collect::<rusqlite::Result<Vec<_>>>()?;
                tx.commit()?;
                Ok(Some(changes))
            };
            work().map_err(|e| sqlite_error("change_password", e))
        })
        .await
    }

    async fn delete_account(
        &self,
        user: UserId,
        now_ms: i64,
    ) -> Result<Option<Vec<SessionChange>>, StoreError> {
        let user = user.0.to_string();
        self.with_conn(&self.writer, "delete_account", move |conn| {
            let mut work = || -> rusqlite::Result<Option<Vec<SessionChange>>> {
                let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
                changelog::next_seq(&tx)?;
                let changes = tx
                    .prepare(ENTOMB_SESSIONS)?
                    .query_map(params![now_ms, user], change_from_row)?
                    .collect::<rusqlite::Result<Vec<_>>>()?;
                if tx.execute(DELETE_USER, [&user])? == 0 {
                    return Ok(None);
                }
                tx.commit()?;
                Ok(Some(changes))
            };
            work().map_err(|e| sqlite_error("delete_account", e))
        })
        .await
    }
}
