//! The SQLite backend's row mappers: one per kind of row (user, session,
//! listed session), each reading the columns its statements select, in
//! their order. (A session change, `change_from_row`, is read where the
//! batches are written.)

use rusqlite::types::Type;
use rusqlite::Row;
use uuid::Uuid;

use crate::domain::{Session, SessionId, SessionOrigin, SessionSummary, UserId};
use crate::store::UserRecord;

/// SQLite stores ids as text.
pub(super) fn uuid_at(row: &Row<'_>, index: usize) -> rusqlite::Result<Uuid> {
    let text: String = row.get(index)?;
    Uuid::parse_str(&text)
        .map_err(|e| rusqlite::Error::FromSqlConversionFailure(index, Type::Text, Box::new(e)))
}

/// A row of `sql::select_user!`.
pub(super) fn user_from_row(row: &Row<'_>) -> rusqlite::Result<UserRecord> {
    Ok(UserRecord {
        id: UserId(uuid_at(row, 0)?),
        int_id: row.get(1)?,
        password_hash: row.get(2)?,
        legacy_id: row.get(3)?,
        legacy_tokens_closed: row.get(4)?,
        email: row.get(5)?,
    })
}

/// A row of `sql::LIST_SESSIONS`.
pub(super) fn summary_from_row(row: &Row<'_>) -> rusqlite::Result<SessionSummary> {
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

/// A row of `sql::LOAD_SESSION`.
pub(super) fn session_from_row(row: &Row<'_>) -> rusqlite::Result<Session> {
    Ok(Session {
        id: SessionId(uuid_at(row, 0)?),
        user_id: UserId(uuid_at(row, 1)?),
        // rusqlite refuses (IntegralValueOutOfRange) what does not fit.
        generation: row.get(2)?,
        issued_at_ms: row.get(3)?,
        expires_at_ms: row.get(4)?,
        revoked: row.get(5)?,
        user_int_id: row.get(6)?,
    })
}
