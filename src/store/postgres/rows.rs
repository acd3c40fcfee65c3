//! The PostgreSQL backend's row mappers: one per kind of row (user,
//! session, listed session), each reading the columns its statements
//! select, in their order, and one conversion of a stored generation.
//! (A session change, `change_from_row`, is read beside the batches.)

use tokio_postgres::Row;

use super::errors::Failure;
use crate::domain::{Session, SessionId, SessionOrigin, SessionSummary, UserId};
use crate::store::{StoreError, UserRecord};

/// A row of `sql::select_user!`.
pub(crate) fn user_from_row(row: &Row) -> Result<UserRecord, tokio_postgres::Error> {
    Ok(UserRecord {
        id: UserId(row.try_get(0)?),
        int_id: row.try_get(1)?,
        password_hash: row.try_get(2)?,
        legacy_id: row.try_get(3)?,
        legacy_tokens_closed: row.try_get(4)?,
        email: row.try_get(5)?,
    })
}

/// A session generation, stored as a BIGINT, as the `u32` it is.
pub(crate) fn generation_at(
    row: &Row,
    index: usize,
    context: &'static str,
) -> Result<u32, StoreError> {
    let generation: i64 = row
        .try_get(index)
        .map_err(|e| Failure::Db(e).into_store_error(context))?;
    u32::try_from(generation)
        .map_err(|_| StoreError::internal(format!("session generation {generation} out of range")))
}

/// A row of `sql::LOAD_SESSION`.
pub(crate) fn session_from_row(row: &Row) -> Result<Session, StoreError> {
    const CONTEXT: &str = "reading a session";
    let read = |e: tokio_postgres::Error| Failure::Db(e).into_store_error(CONTEXT);
    Ok(Session {
        id: SessionId(row.try_get(0).map_err(read)?),
        user_id: UserId(row.try_get(1).map_err(read)?),
        generation: generation_at(row, 2, CONTEXT)?,
        issued_at_ms: row.try_get(3).map_err(read)?,
        expires_at_ms: row.try_get(4).map_err(read)?,
        revoked: row.try_get(5).map_err(read)?,
        user_int_id: row.try_get(6).map_err(read)?,
    })
}

/// A row of `sql::LIST_SESSIONS`.
pub(crate) fn summary_from_row(row: &Row) -> Result<SessionSummary, StoreError> {
    const CONTEXT: &str = "listing sessions";
    let read = |e: tokio_postgres::Error| Failure::Db(e).into_store_error(CONTEXT);
    Ok(SessionSummary {
        id: SessionId(row.try_get(0).map_err(read)?),
        created_at_ms: row.try_get(1).map_err(read)?,
        issued_at_ms: row.try_get(2).map_err(read)?,
        generation: generation_at(row, 3, CONTEXT)?,
        expires_at_ms: row.try_get(4).map_err(read)?,
        origin: SessionOrigin {
            client_address: row.try_get(5).map_err(read)?,
            user_agent: row.try_get(6).map_err(read)?,
        },
    })
}
