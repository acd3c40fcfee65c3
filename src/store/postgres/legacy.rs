//! Reading the old FastAPI service's tables (`public.users`,
//! `public.access_tokens`) so that authd can replace it in place.
//!
//! Every statement here reads `public.*` and writes only authd's own schema
//! (`legacy_users`, `legacy_exchanges`, `users`): the old tables stay as the
//! old service left them, so switching back remains possible, and a role
//! with nothing but SELECT on them is enough.
//!
//! The old table's only e-mail index is case-sensitive, so authd keeps its
//! own index of the old accounts by case-folded e-mail (`legacy_users`),
//! filled by primary-key ranges (`id > max(legacy_id)`): accounts the old
//! service creates while both run are picked up without scanning e-mails.
//!
//! An old account whose authd account was deleted is listed in
//! `legacy_deleted` (written by the deletion, `accounts.rs`); every read
//! here treats its old row as absent, so neither its bcrypt password nor
//! its tokens open (or re-adopt) anything, and its e-mail is free.

use async_trait::async_trait;
use uuid::Uuid;

use super::{is_email_taken, user_from_row, PostgresStore};
use crate::domain::{SessionId, UserId};
use crate::store::sql::select_user;
use crate::store::{
    LegacyCounts, LegacyExchange, LegacyMatch, LegacyStore, LegacyUser, StoreError, UserRecord,
};

/// Old accounts read per round of [`LegacyStore::sync_and_count`].
const SYNC_CHUNK: i64 = 5_000;

/// Whether the database holds the old service's tables.
pub(super) const DETECT: &str = "SELECT to_regclass('public.users') IS NOT NULL \
     AND to_regclass('public.access_tokens') IS NOT NULL \
     AND EXISTS (SELECT 1 FROM information_schema.columns \
         WHERE table_schema = 'public' AND table_name = 'users' \
           AND column_name = 'hashed_password')";

const BY_EXACT_EMAIL: &str = "SELECT id::bigint, email, hashed_password, \
     COALESCE(is_active, true) FROM public.users o WHERE email = $1 \
     AND NOT EXISTS (SELECT 1 FROM legacy_deleted d WHERE d.legacy_id = o.id)";
const BY_ID: &str = "SELECT id::bigint, email, hashed_password, COALESCE(is_active, true) \
     FROM public.users o WHERE id = $1 \
     AND NOT EXISTS (SELECT 1 FROM legacy_deleted d WHERE d.legacy_id = o.id)";
const IDS_BY_KEY: &str = "SELECT legacy_id FROM legacy_users l WHERE email_key = $1 \
     AND NOT EXISTS (SELECT 1 FROM legacy_deleted d WHERE d.legacy_id = l.legacy_id) \
     ORDER BY legacy_id";
const KEY_COUNT: &str = "SELECT count(*) FROM legacy_users l WHERE email_key = $1 \
     AND NOT EXISTS (SELECT 1 FROM legacy_deleted d WHERE d.legacy_id = l.legacy_id)";
const NEWEST_INDEXED: &str = "SELECT COALESCE(max(legacy_id), 0) FROM legacy_users";
const NEW_OLD_ROWS: &str =
    "SELECT id::bigint, email FROM public.users WHERE id > $1::bigint ORDER BY id LIMIT $2";
const INDEX_ROWS: &str = "INSERT INTO legacy_users (legacy_id, email, email_key) \
     SELECT * FROM UNNEST($1::bigint[], $2::text[], $3::text[]) ON CONFLICT DO NOTHING";
const ADOPTED: &str = select_user!("legacy_id = $1");
const ADOPT: &str = "INSERT INTO users (id, email, password_hash, int_id, legacy_id) \
     VALUES ($1, $2, $3, $4, $4) ON CONFLICT (legacy_id) DO NOTHING";
const UPGRADE: &str = "UPDATE users SET password_hash = $2 WHERE id = $1 AND password_hash = ''";
const TOKEN_OWNER: &str = "SELECT user_id::bigint FROM public.access_tokens t \
     WHERE access_token = $1 \
     AND NOT EXISTS (SELECT 1 FROM legacy_deleted d WHERE d.legacy_id = t.user_id)";
const EXCHANGED: &str =
    "SELECT session_id, exchanged_at_ms FROM legacy_exchanges WHERE token_sha256 = $1";
const RECORD_EXCHANGE: &str = "INSERT INTO legacy_exchanges \
     (token_sha256, session_id, exchanged_at_ms) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING";
const COUNTS: &str = "SELECT (SELECT count(*) FROM public.users), \
     (SELECT count(*) FROM users WHERE legacy_id IS NOT NULL), \
     (SELECT count(*) FROM users WHERE legacy_id IS NOT NULL AND password_hash <> ''), \
     (SELECT count(*) FROM (SELECT 1 FROM legacy_users GROUP BY email_key \
        HAVING count(*) > 1) AS g)";
const AMBIGUOUS: &str = "SELECT email_key, array_agg(legacy_id ORDER BY legacy_id) \
     FROM legacy_users GROUP BY email_key HAVING count(*) > 1 ORDER BY email_key LIMIT $1";

impl PostgresStore {
    /// Indexes the old accounts added since the last call (primary keys
    /// above the highest indexed one), a chunk per round trip.
    async fn sync_index(&self) -> Result<(), StoreError> {
        loop {
            let added = self
                .on_connection("legacy_sync", |c| {
                    Box::pin(async move {
                        let newest: i64 = c.query_one(NEWEST_INDEXED, &[]).await?.try_get(0)?;
                        let rows = c.query(NEW_OLD_ROWS, &[&newest, &SYNC_CHUNK]).await?;
                        let mut ids = Vec::with_capacity(rows.len());
                        let mut emails = Vec::with_capacity(rows.len());
                        let mut keys = Vec::with_capacity(rows.len());
                        for row in &rows {
                            let email: String = row.try_get(1)?;
                            ids.push(row.try_get::<_, i64>(0)?);
                            keys.push(email_key(&email));
                            emails.push(email);
                        }
                        if !ids.is_empty() {
                            c.execute(INDEX_ROWS, &[&ids, &emails, &keys]).await?;
                        }
                        Ok(ids.len() as i64)
                    })
                })
                .await?;
            if added < SYNC_CHUNK {
                break;
            }
        }
        Ok(())
    }
}

fn legacy_user(row: &tokio_postgres::Row) -> Result<LegacyUser, tokio_postgres::Error> {
    Ok(LegacyUser {
        id: row.try_get(0)?,
        email: row.try_get(1)?,
        hashed_password: row.try_get(2)?,
        is_active: row.try_get(3)?,
    })
}

/// The case folding of authd's index, the same as the sign-in side's.
pub(crate) fn email_key(email: &str) -> String {
    email.trim().to_lowercase()
}

#[async_trait]
impl LegacyStore for PostgresStore {
    async fn legacy_find(&self, typed: &str, key: &str) -> Result<LegacyMatch, StoreError> {
        let (typed, key) = (typed.to_owned(), key.to_owned());
        let exact = self
            .on_connection("legacy_find", |c| {
                Box::pin(async move {
                    let statement = c.prepare_cached(BY_EXACT_EMAIL).await?;
                    c.query_opt(&statement, &[&typed])
                        .await?
                        .map(|row| legacy_user(&row))
                        .transpose()
                })
            })
            .await?;
        if let Some(user) = exact {
            return Ok(LegacyMatch::One(user));
        }
        self.sync_index().await?;
        let ids: Vec<i64> = self
            .on_connection("legacy_find", |c| {
                Box::pin(async move {
                    let statement = c.prepare_cached(IDS_BY_KEY).await?;
                    let rows = c.query(&statement, &[&key]).await?;
                    rows.iter().map(|r| r.try_get(0)).collect()
                })
            })
            .await?;
        match ids.as_slice() {
            [] => Ok(LegacyMatch::None),
            [id] => Ok(self
                .legacy_user(*id)
                .await?
                .map_or(LegacyMatch::None, LegacyMatch::One)),
            _ => Ok(LegacyMatch::Ambiguous(ids)),
        }
    }

    async fn legacy_user(&self, id: i64) -> Result<Option<LegacyUser>, StoreError> {
        // The old column is an INTEGER (SERIAL); compare in its type.
        let Ok(id) = i32::try_from(id) else {
            return Ok(None);
        };
        self.on_connection("legacy_user", move |c| {
            Box::pin(async move {
                let statement = c.prepare_cached(BY_ID).await?;
                c.query_opt(&statement, &[&id])
                    .await?
                    .map(|row| legacy_user(&row))
                    .transpose()
            })
        })
        .await
    }

    async fn legacy_email_count(&self, key: &str) -> Result<i64, StoreError> {
        let key = key.to_owned();
        self.sync_index().await?;
        self.on_connection("legacy_email_count", move |c| {
            Box::pin(async move {
                let statement = c.prepare_cached(KEY_COUNT).await?;
                c.query_one(&statement, &[&key]).await?.try_get(0)
            })
        })
        .await
    }

    async fn adopted_user(&self, legacy_id: i64) -> Result<Option<UserRecord>, StoreError> {
        self.on_connection("adopted_user", move |c| {
            Box::pin(async move {
                let statement = c.prepare_cached(ADOPTED).await?;
                c.query_opt(&statement, &[&legacy_id])
                    .await?
                    .map(|row| user_from_row(&row))
                    .transpose()
            })
        })
        .await
    }

    async fn adopt(
        &self,
        id: UserId,
        email: &str,
        password_hash: &str,
        legacy_id: i64,
    ) -> Result<UserRecord, StoreError> {
        let (email, password_hash) = (email.to_owned(), password_hash.to_owned());
        let inserted = self
            .on_connection("adopt", |c| {
                Box::pin(async move {
                    let statement = c.prepare_cached(ADOPT).await?;
                    match c
                        .execute(&statement, &[&id.0, &email, &password_hash, &legacy_id])
                        .await
                    {
                        Ok(_) => Ok(true),
                        Err(e) if is_email_taken(&e) => Ok(false),
                        Err(e) => Err(e),
                    }
                })
            })
            .await?;
        if !inserted {
            return Err(StoreError::EmailTaken);
        }
        self.adopted_user(legacy_id)
            .await?
            .ok_or_else(|| StoreError::internal("adopted account vanished"))
    }

    async fn upgrade_password(&self, user: UserId, password_hash: &str) -> Result<(), StoreError> {
        let password_hash = password_hash.to_owned();
        self.on_connection("upgrade_password", move |c| {
            Box::pin(async move {
                let statement = c.prepare_cached(UPGRADE).await?;
                c.execute(&statement, &[&user.0, &password_hash]).await?;
                Ok(())
            })
        })
        .await
    }

    async fn legacy_token_owner(&self, token: &str) -> Result<Option<i64>, StoreError> {
        let token = token.to_owned();
        self.on_connection("legacy_token_owner", move |c| {
            Box::pin(async move {
                let statement = c.prepare_cached(TOKEN_OWNER).await?;
                c.query_opt(&statement, &[&token])
                    .await?
                    .map(|row| row.try_get(0))
                    .transpose()
            })
        })
        .await
    }

    async fn exchanged(&self, token_sha256: &[u8]) -> Result<Option<LegacyExchange>, StoreError> {
        let token_sha256 = token_sha256.to_vec();
        self.on_connection("exchanged", move |c| {
            Box::pin(async move {
                let statement = c.prepare_cached(EXCHANGED).await?;
                c.query_opt(&statement, &[&token_sha256])
                    .await?
                    .map(|row| {
                        Ok(LegacyExchange {
                            session_id: SessionId(row.try_get::<_, Uuid>(0)?),
                            exchanged_at_ms: row.try_get(1)?,
                        })
                    })
                    .transpose()
            })
        })
        .await
    }

    async fn record_exchange(
        &self,
        token_sha256: &[u8],
        session: SessionId,
        at_ms: i64,
    ) -> Result<Option<LegacyExchange>, StoreError> {
        let sha = token_sha256.to_vec();
        let inserted = self
            .on_connection("record_exchange", |c| {
                Box::pin(async move {
                    let statement = c.prepare_cached(RECORD_EXCHANGE).await?;
                    c.execute(&statement, &[&sha, &session.0, &at_ms]).await
                })
            })
            .await?;
        if inserted == 1 {
            return Ok(None);
        }
        self.exchanged(token_sha256).await
    }

    async fn sync_and_count(&self) -> Result<LegacyCounts, StoreError> {
        self.sync_index().await?;
        self.on_connection("legacy_counts", |c| {
            Box::pin(async move {
                let row = c.query_one(COUNTS, &[]).await?;
                Ok(LegacyCounts {
                    old_accounts: row.try_get(0)?,
                    adopted: row.try_get(1)?,
                    upgraded: row.try_get(2)?,
                    ambiguous_groups: row.try_get(3)?,
                })
            })
        })
        .await
    }

    async fn ambiguous_accounts(&self, limit: i64) -> Result<Vec<(String, Vec<i64>)>, StoreError> {
        self.on_connection("ambiguous_accounts", move |c| {
            Box::pin(async move {
                let rows = c.query(AMBIGUOUS, &[&limit]).await?;
                rows.iter()
                    .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
                    .collect()
            })
        })
        .await
    }
}
