//! A sign-up on PostgreSQL: the user's row and its first session in one
//! statement, so one implicit transaction (no `BEGIN`/`COMMIT` round
//! trips) stores both or neither.
//!
//! The session insert takes no lock on the user's row, unlike the session
//! writer's creates (`FOR KEY SHARE`, against a concurrent account
//! deletion): the row is this statement's own, invisible to every other
//! transaction until it commits, so nothing can delete it meanwhile. A
//! created session is not a change: nothing is published, as for the
//! writer's creates.

use super::*;

/// The integer id comes from the column's sequence and is copied into the
/// session. A taken address fails the whole statement on the users'
/// unique constraint, before any session is stored.
const SIGN_UP: &str = "WITH u AS (INSERT INTO users (id, email, password_hash) \
       VALUES ($1, $2, $3) RETURNING id, int_id) \
     INSERT INTO sessions \
     (id, user_id, generation, issued_at_ms, expires_at_ms, revoked_at_ms, created_at_ms, \
      user_int_id, client_address, user_agent) \
     SELECT $4::uuid, u.id, 0, $5::bigint, $6::bigint, NULL, $5::bigint, u.int_id, \
       $7::text, $8::text \
     FROM u \
     RETURNING user_int_id";

impl PostgresStore {
    pub(super) async fn insert_user_and_session(
        &self,
        user: &NewUser,
        session: &NewSession,
    ) -> Result<Session, StoreError> {
        let (id, email, hash) = (
            user.id.0,
            user.email.as_str().to_owned(),
            user.password_hash.clone(),
        );
        let (session_id, issued, expires) =
            (session.id.0, session.issued_at_ms, session.expires_at_ms);
        let address = session.origin.client_address.clone();
        let agent = session.origin.user_agent.clone();
        let inserted = self
            .on_connection("sign_up", move |c| {
                Box::pin(async move {
                    let statement = c.prepare_cached(SIGN_UP).await?;
                    let params: [&(dyn tokio_postgres::types::ToSql + Sync); 8] = [
                        &id,
                        &email,
                        &hash,
                        &session_id,
                        &issued,
                        &expires,
                        &address,
                        &agent,
                    ];
                    match c.query_one(&statement, &params).await {
                        Ok(row) => Ok(Some(row.try_get::<_, i64>(0)?)),
                        Err(e) if is_email_taken(&e) => Ok(None),
                        Err(e) => Err(e),
                    }
                })
            })
            .await?;
        let int_id = inserted.ok_or(StoreError::EmailTaken)?;
        Ok(session.stored(user.id, int_id))
    }
}
