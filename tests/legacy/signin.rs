//! The old service's users sign in with their passwords, keep their integer
//! ids, and authd never writes to the old tables.

use reqwest::Method;
use serde_json::json;

use crate::support::claims_of;
use crate::OldDeployment;

/// `/auth/authorize-token`'s integer `user_id` for `token`.
async fn int_id(app: &crate::support::TestApp, token: &str) -> i64 {
    let reply = app
        .send(
            app.request(Method::GET, "/auth/authorize-token")
                .bearer_auth(token),
        )
        .await;
    assert_eq!(reply.status, 200, "{reply:?}");
    reply.body["user_id"].as_i64().expect("an integer user_id")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn old_users_sign_in_with_their_passwords() {
    let Some(old) = OldDeployment::create().await else {
        return;
    };
    // Passwords and e-mails the old service took but authd's sign-up
    // would refuse (6 characters; a domain without a dot).
    let alice = old.add_user("Alice@Example.com", "secret", true).await;
    let bob = old.add_user("bob@localhost", "hunter22", true).await;
    old.add_user("carol@example.com", "carol-password", false)
        .await;
    let upper = old
        .add_user("Dup@Example.com", "upper-password", true)
        .await;
    let lower = old
        .add_user("dup@example.com", "lower-password", true)
        .await;

    let app = old.start_authd(&[]).await;

    // Exactly as registered, and in another case (one old account has it).
    let token = app.signin("Alice@Example.com", "secret").await.token(200);
    assert_eq!(int_id(&app, &token).await, alice);
    assert_eq!(claims_of(&token)["user_id"], json!(alice));
    let again = app.signin("alice@EXAMPLE.com", "secret").await.token(200);
    assert_eq!(int_id(&app, &again).await, alice);
    app.signin("Alice@Example.com", "wrong!")
        .await
        .error(401, "invalid_credentials");
    let bob_token = app.signin("bob@localhost", "hunter22").await.token(200);
    assert_eq!(int_id(&app, &bob_token).await, bob);
    // Inactive accounts cannot sign in, whatever the password.
    app.signin("carol@example.com", "carol-password")
        .await
        .error(401, "invalid_credentials");

    // Two old accounts differing only by case: never merged, never guessed.
    app.signin("DUP@example.com", "upper-password")
        .await
        .error(401, "invalid_credentials");
    let t_upper = app
        .signin("Dup@Example.com", "upper-password")
        .await
        .token(200);
    let t_lower = app
        .signin("dup@example.com", "lower-password")
        .await
        .token(200);
    assert_eq!(int_id(&app, &t_upper).await, upper);
    assert_eq!(int_id(&app, &t_lower).await, lower);
    app.signin("Dup@Example.com", "lower-password")
        .await
        .error(401, "invalid_credentials");

    // Their addresses are taken for sign-up.
    app.signup("alice@example.com", crate::support::PASSWORD)
        .await
        .error(409, "email_taken");

    // Once adopted, authd's argon2id hash is the password: bcrypt is not
    // consulted again (the old service changing its row changes nothing).
    let other = bcrypt::hash("changed-by-the-old-service", 12).expect("bcrypt");
    old.old
        .execute(
            "UPDATE users SET hashed_password = $1 WHERE id = $2",
            &[&other, &(alice as i32)],
        )
        .await
        .expect("old side update");
    app.signin("Alice@Example.com", "secret").await.token(200);
    app.signin("Alice@Example.com", "changed-by-the-old-service")
        .await
        .error(401, "invalid_credentials");
    // Side by side: an account the old service creates after authd started
    // is found by its primary key, in any case.
    let late = old.add_user("Late@Example.com", "late-pw", true).await;
    let late_token = app.signin("late@example.com", "late-pw").await.token(200);
    assert_eq!(int_id(&app, &late_token).await, late);

    // authd's own users get integers the old SERIAL can never reach.
    let native = app.signed_up("new-user@example.com").await;
    assert!(int_id(&app, &native).await >= 1 << 31);

    // The progress metric counts the old accounts.
    let metrics = app.send(app.request(Method::GET, "/metrics")).await;
    let text = metrics.body.as_str().expect("metrics text").to_owned();
    assert!(
        text.contains("authd_legacy_accounts{state=\"old\"} 5"),
        "{text}"
    );

    // Nothing is written to the old tables: the role could not (SELECT
    // only), and their contents do not change under authd's traffic.
    let before = old.old_tables_digest().await;
    for _ in 0..3 {
        app.signin("late@example.com", "late-pw").await.token(200);
        app.signin("bob@localhost", "wrong-pw")
            .await
            .error(401, "invalid_credentials");
    }
    let refreshed = app.refreshed(&late_token).await;
    app.authorized(&refreshed).await;
    assert_eq!(old.old_tables_digest().await, before);
    let tables: Vec<String> = old
        .old
        .query(
            "SELECT table_schema || '.' || table_name FROM information_schema.tables \
             WHERE table_schema = 'public' ORDER BY 1",
            &[],
        )
        .await
        .expect("tables")
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(tables, ["public.access_tokens", "public.users"]);
    drop(app);
    old.remove_role().await;
}
