//! A sign-up on SQLite: the user's row and its first session in one
//! `BEGIN IMMEDIATE` transaction on the writer connection, so both are
//! stored or neither is.

use rusqlite::{params, TransactionBehavior};

use super::writes::CREATE_SESSION;
use super::{is_email_taken, sqlite_error, SqliteStore, INSERT_USER};
use crate::domain::Session;
use crate::store::{NewSession, NewUser, StoreError};

impl SqliteStore {
    pub(super) async fn insert_user_and_session(
        &self,
        user: &NewUser,
        session: &NewSession,
    ) -> Result<Session, StoreError> {
        let (user, session) = (user.clone(), session.clone());
        self.with_conn(&self.writer, "sign_up", move |conn| {
            let inserted = (|| -> rusqlite::Result<Result<Session, StoreError>> {
                let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
                let int_id: i64 = tx.prepare_cached(INSERT_USER)?.query_row(
                    params![
                        user.id.0.to_string(),
                        user.email.as_str(),
                        user.password_hash
                    ],
                    |row| row.get(0),
                )?;
                let stored = session.stored(user.id, int_id);
                let created = tx.prepare_cached(CREATE_SESSION)?.execute(params![
                    stored.id.0.to_string(),
                    stored.user_id.0.to_string(),
                    stored.generation,
                    stored.issued_at_ms,
                    stored.expires_at_ms,
                    None::<i64>,
                    stored.user_int_id,
                    session.origin.client_address,
                    session.origin.user_agent,
                ])?;
                // Not created: the session id exists already. Dropping
                // `tx` rolls the user's row back too.
                if created != 1 {
                    return Ok(Err(StoreError::internal(
                        "sign_up: the new session's id is taken",
                    )));
                }
                tx.commit()?;
                Ok(Ok(stored))
            })();
            match inserted {
                Ok(done) => done,
                Err(e) if is_email_taken(&e) => Err(StoreError::EmailTaken),
                Err(e) => Err(sqlite_error("sign_up", e)),
            }
        })
        .await
    }
}
