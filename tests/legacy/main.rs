//! Replacing a running deployment of the old FastAPI service in place
//! (PostgreSQL only): each test builds the old service's schema and rows
//! itself — bcrypt hashes in passlib's `$2b$12$` form, tokens signed exactly
//! as the old service signed them — then starts authd on that database with
//! the old service's environment variables, under a database role that has
//! nothing but SELECT on the old tables.

#[macro_use]
#[path = "../support/mod.rs"]
mod support;

mod accounts;
mod schema;
mod signin;
mod timing;
mod tokens;

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use tokio_postgres::{Client, NoTls};

use support::{Backend, TestApp, TestDb};

/// The old service's docker-compose key: 27 bytes, under authd's 32.
pub const OLD_SECRET: &str = "34912@445dfsdFBSD23reg@F587";

/// The old service's tables, as its SQLAlchemy models created them.
const OLD_SCHEMA: &str = "
CREATE TABLE users (
    id SERIAL PRIMARY KEY,
    email VARCHAR UNIQUE NOT NULL,
    hashed_password VARCHAR NOT NULL,
    is_active BOOLEAN DEFAULT true
);
CREATE TABLE access_tokens (
    id SERIAL PRIMARY KEY,
    access_token VARCHAR UNIQUE NOT NULL,
    created_at TIMESTAMP DEFAULT now(),
    user_id INTEGER NOT NULL REFERENCES users(id)
);";

/// A database holding the old service's tables, and the role authd logs in
/// as (SELECT only on those tables; CREATE on the database for its own
/// schema).
pub struct OldDeployment {
    pub db: Arc<TestDb>,
    pub name: String,
    pub role: String,
    /// A superuser connection to the database: the old service's side.
    pub old: Client,
}

async fn connect(dbname: &str) -> Client {
    let (client, connection) = tokio_postgres::Config::new()
        .host("127.0.0.1")
        .port(5432)
        .user("postgres")
        .dbname(dbname)
        .connect_timeout(Duration::from_secs(5))
        .connect(NoTls)
        .await
        .expect("connect to PostgreSQL");
    tokio::spawn(connection);
    client
}

impl OldDeployment {
    /// `None` when PostgreSQL is not reachable (the skip was reported).
    pub async fn create() -> Option<OldDeployment> {
        let db = TestDb::create(Backend::Postgres).await?;
        let name = db
            .url
            .rsplit('/')
            .next()
            .expect("a database name")
            .to_owned();
        let role = format!("{name}_role");
        let admin = connect("postgres").await;
        // One statement per call: CREATE DATABASE refuses to run inside
        // the implicit transaction of a multi-statement string.
        for sql in [
            format!("CREATE DATABASE \"{name}\""),
            format!("CREATE ROLE \"{role}\" LOGIN"),
            format!("GRANT CONNECT, CREATE ON DATABASE \"{name}\" TO \"{role}\""),
        ] {
            admin.batch_execute(&sql).await.expect("database and role");
        }
        let old = connect(&name).await;
        old.batch_execute(OLD_SCHEMA).await.expect("the old schema");
        old.batch_execute(&format!(
            "GRANT USAGE ON SCHEMA public TO \"{role}\"; \
             GRANT SELECT ON public.users, public.access_tokens TO \"{role}\";"
        ))
        .await
        .expect("grants");
        Some(OldDeployment {
            db,
            name,
            role,
            old,
        })
    }

    /// Adds an old account (bcrypt cost 12, as passlib made them).
    pub async fn add_user(&self, email: &str, password: &str, active: bool) -> i64 {
        let hash = bcrypt::hash(password, 12).expect("bcrypt");
        assert!(hash.starts_with("$2b$12$"), "{hash}");
        let row = self
            .old
            .query_one(
                "INSERT INTO users (email, hashed_password, is_active) VALUES ($1, $2, $3) \
                 RETURNING id",
                &[&email, &hash, &active],
            )
            .await
            .expect("old user");
        i64::from(row.get::<_, i32>(0))
    }

    /// The old service's token for `user_id`, stored as its one live token.
    pub async fn add_token(&self, user_id: i64, exp: i64) -> String {
        let token = old_token(user_id, exp, OLD_SECRET);
        self.old
            .execute(
                "DELETE FROM access_tokens WHERE user_id = $1",
                &[&(user_id as i32)],
            )
            .await
            .expect("old token row");
        self.old
            .execute(
                "INSERT INTO access_tokens (access_token, user_id) VALUES ($1, $2)",
                &[&token, &(user_id as i32)],
            )
            .await
            .expect("old token row");
        token
    }

    /// A digest of everything in the old tables, to prove authd wrote none.
    pub async fn old_tables_digest(&self) -> String {
        self.old
            .query_one(
                "SELECT md5(COALESCE((SELECT string_agg(u::text, ',' ORDER BY id) FROM users u), '') \
                 || '|' || COALESCE((SELECT string_agg(t::text, ',' ORDER BY id) \
                 FROM access_tokens t), ''))",
                &[],
            )
            .await
            .expect("digest")
            .get(0)
    }

    /// authd started as the old service was configured (its variable
    /// names, its key), logging in as the SELECT-only role.
    pub async fn start_authd(&self, extra: &[(&str, &str)]) -> TestApp {
        let mut vars = vec![
            ("DATABASE_URL", ""),
            ("POSTGRES_HOST", "127.0.0.1"),
            ("POSTGRES_PORT", "5432"),
            ("POSTGRES_USER", self.role.as_str()),
            ("POSTGRES_PASSWORD", ""),
            ("POSTGRES_DB", self.name.as_str()),
            ("SECRET_KEY", OLD_SECRET),
            ("ACCESS_TOKEN_EXPIRE_MINUTES", "15"),
            // Above bcrypt's cost in this build, kept short for the suite.
            ("AUTHD_SIGNIN_FAILURE_FLOOR_MS", "500"),
        ];
        vars.extend_from_slice(extra);
        TestApp::spawn_on(Arc::clone(&self.db), &vars).await
    }

    /// Drops what the role owns, then the role (the database goes with
    /// the `TestDb`).
    pub async fn remove_role(&self) {
        let _ = self
            .old
            .batch_execute(&format!(
                "REASSIGN OWNED BY \"{0}\" TO postgres; DROP OWNED BY \"{0}\";",
                self.role
            ))
            .await;
        let admin = connect("postgres").await;
        let _ = admin
            .batch_execute(&format!("DROP ROLE IF EXISTS \"{}\"", self.role))
            .await;
    }
}

/// A token exactly as the old service signed it: HS256, header
/// `{"alg":"HS256","typ":"JWT"}`, payload `{"user_id", "exp"}`.
pub fn old_token(user_id: i64, exp: i64, key: &str) -> String {
    support::forge(
        &json!({ "user_id": user_id, "exp": exp }),
        jsonwebtoken::Algorithm::HS256,
        key.as_bytes(),
    )
}

pub fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64
}
