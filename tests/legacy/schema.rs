//! authd's tables live in a schema of their own; a database made by an
//! authd from before that (tables in `public`) is moved forward intact.

use serde_json::json;

use crate::support::{forge, Backend, TestApp, TestDb, SECRET_KEY};
use crate::{connect, OldDeployment};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tables_live_in_authds_schema_beside_the_old_ones() {
    let Some(old) = OldDeployment::create().await else {
        return;
    };
    let app = old.start_authd(&[]).await;
    app.signed_up("someone@example.com").await;
    let schemas: Vec<(String, String)> = old
        .old
        .query(
            "SELECT table_schema, table_name FROM information_schema.tables \
             WHERE table_schema IN ('public', 'authd') ORDER BY 1, 2",
            &[],
        )
        .await
        .expect("tables")
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    let public: Vec<&str> = schemas
        .iter()
        .filter(|(s, _)| s == "public")
        .map(|(_, t)| t.as_str())
        .collect();
    assert_eq!(public, ["access_tokens", "users"], "{schemas:?}");
    for table in ["schema_migrations", "users", "sessions", "legacy_users"] {
        assert!(
            schemas.contains(&("authd".into(), table.into())),
            "authd.{table} missing: {schemas:?}"
        );
    }
    drop(app);
    old.remove_role().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_with_authds_tables_in_public_moves_forward() {
    let Some(db) = TestDb::create(Backend::Postgres).await else {
        return;
    };
    let name = db.url.rsplit('/').next().expect("name").to_owned();
    // What releases before the schema did: migrations 1-3 in public.
    connect("postgres")
        .await
        .batch_execute(&format!("CREATE DATABASE \"{name}\""))
        .await
        .expect("database");
    let client = connect(&name).await;
    client
        .batch_execute(
            "CREATE TABLE schema_migrations (version BIGINT PRIMARY KEY, name TEXT NOT NULL, \
             applied_at TIMESTAMPTZ NOT NULL DEFAULT now())",
        )
        .await
        .expect("migrations table");
    for (version, name, sql) in [
        (
            1i64,
            "init",
            include_str!("../../sql/postgres/0001_init.sql"),
        ),
        (
            2,
            "change_feed_and_signing_keys",
            include_str!("../../sql/postgres/0002_change_feed_and_signing_keys.sql"),
        ),
        (
            3,
            "hot_rotations",
            include_str!("../../sql/postgres/0003_hot_rotations.sql"),
        ),
    ] {
        client.batch_execute(sql).await.expect("old migration");
        client
            .execute(
                "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)",
                &[&version, &name],
            )
            .await
            .expect("record");
    }
    // A user with a live session under that release.
    let (user, session) = (uuid::Uuid::new_v4(), uuid::Uuid::new_v4());
    let now_ms = crate::now_secs() * 1000;
    client
        .execute(
            "INSERT INTO users (id, email, password_hash) VALUES ($1, 'kept@example.com', 'x')",
            &[&user],
        )
        .await
        .expect("user");
    client
        .execute(
            "INSERT INTO sessions (id, user_id, generation, issued_at_ms, expires_at_ms, \
             created_at_ms) VALUES ($1, $2, 0, $3, $4, $3)",
            &[&session, &user, &now_ms, &(now_ms + 3_600_000)],
        )
        .await
        .expect("session");
    let token = forge(
        &json!({
            "iss": "authd", "aud": "authd", "sub": user, "sid": session, "gen": 0,
            "iat": now_ms / 1000, "exp": now_ms / 1000 + 600,
        }),
        jsonwebtoken::Algorithm::HS256,
        SECRET_KEY.as_bytes(),
    );

    let app = TestApp::spawn_on(db, &[]).await;
    // The session survived the move, and the user got an integer id.
    let who = app.authorized(&token).await;
    assert!(
        who.body["user_int_id"].as_i64().unwrap() >= 1 << 31,
        "{who:?}"
    );
    let refreshed = app.refreshed(&token).await;
    app.authorized(&refreshed).await;
    let in_public: i64 = client
        .query_one(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'",
            &[],
        )
        .await
        .expect("count")
        .get(0);
    assert_eq!(in_public, 0, "authd's tables left public");
}

/// The real binary, started with the old service's environment as it is
/// (its 27-byte key included): it serves, and says the key is weak
/// without ever printing it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_old_environment_starts_the_binary_with_a_warning() {
    let Some(old) = OldDeployment::create().await else {
        return;
    };
    let who = old.add_user("old@example.com", "old-pw", true).await;
    let app = crate::support::ChildApp::start_with(
        &old.db,
        0,
        &[
            ("DATABASE_URL", ""),
            ("POSTGRES_HOST", "127.0.0.1"),
            ("POSTGRES_PORT", "5432"),
            ("POSTGRES_USER", old.role.as_str()),
            ("POSTGRES_PASSWORD", ""),
            ("POSTGRES_DB", old.name.as_str()),
            ("SECRET_KEY", crate::OLD_SECRET),
            ("ACCESS_TOKEN_EXPIRE_MINUTES", "15"),
        ],
    )
    .await;
    let token = app.api.signin("old@example.com", "old-pw").await.token(200);
    assert_eq!(crate::support::claims_of(&token)["user_id"], json!(who));
    let health = app
        .api
        .send(app.api.request(reqwest::Method::GET, "/auth/health"))
        .await;
    assert_eq!(health.status, 200, "{health:?}");
    let log = app.log();
    let warning = log
        .lines()
        .find(|l| l.contains("weak_secret"))
        .unwrap_or_else(|| panic!("no weak_secret warning in:\n{log}"));
    assert!(
        warning.contains("WARN") && warning.contains("27"),
        "{warning}"
    );
    assert!(!log.contains(crate::OLD_SECRET), "the key reached the log");
    assert!(log.contains("legacy_accounts"), "{log}");
    drop(app);
    old.remove_role().await;
}
