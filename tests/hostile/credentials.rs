//! Hostile credentials on sign-up and sign-in: e-mail addresses that are
//! too long, malformed, carry NUL bytes, header injections or SQL, or use
//! `LIKE` wildcards; passwords too short, too long or multi-byte at the
//! limit. A bystander account must still sign in afterwards.

use super::*;

both_backends!(hostile_emails_and_passwords);

async fn hostile_emails_and_passwords(backend: Backend) {
    let Some(app) = app(backend, &[]).await else {
        return;
    };
    // Someone who must still be able to sign in at the end.
    let bystander = email();
    app.signed_up(&bystander).await;

    let long_local = format!("{}@example.com", "a".repeat(10 * 1024));
    let long_domain = format!("a@{}.com", "b".repeat(10 * 1024));
    for (what, address) in [
        ("10 KB local part", long_local.as_str()),
        ("10 KB domain", long_domain.as_str()),
        ("255 bytes", &format!("{}@example.com", "a".repeat(243))),
        ("empty", ""),
        ("no @", "not-an-address"),
        ("no domain dot", "a@localhost"),
        ("display name", "Alice <alice@example.com>"),
        ("quoted local part", "\"a b\"@example.com"),
        ("spaces", " a@example.com "),
        ("NUL", "a\u{0}@example.com"),
        ("newline", "a@example.com\r\nBcc: x@example.com"),
        (
            "SQL after the address",
            "x@example.com'; DROP TABLE users;--",
        ),
        ("SQL in the domain", "x@example.com' OR '1'='1"),
    ] {
        let reply = app
            .post_json("/signup", &credentials(address, PASSWORD))
            .await;
        refused(
            &app,
            reply,
            422,
            "invalid_request",
            &format!("{what} on /signup"),
        )
        .await;
        // Sign-in does not apply the sign-up rules (accounts adopted from
        // the old service may have such addresses): only an empty or
        // overlong address, or one with control characters, is malformed;
        // the rest is nobody's account.
        let reply = app
            .post_json("/signin", &credentials(address, PASSWORD))
            .await;
        let trimmed = address.trim();
        let (status, code) =
            if trimmed.is_empty() || trimmed.len() > 320 || trimmed.chars().any(char::is_control) {
                (422, "invalid_request")
            } else {
                (401, "invalid_credentials")
            };
        refused(&app, reply, status, code, &format!("{what} on /signin")).await;
    }

    // SQL metacharacters that make a valid address: stored and found as
    // data, never as SQL.
    for address in [
        format!("a'--{}@example.com", uuid::Uuid::new_v4().simple()),
        format!("o'reilly+{}@example.com", uuid::Uuid::new_v4().simple()),
        format!(
            "x;drop-table-users-{}@example.com",
            uuid::Uuid::new_v4().simple()
        ),
    ] {
        let reply = app.signup(&address, PASSWORD).await;
        if reply.status == 422 {
            reply.error(422, "invalid_request");
        } else {
            let token = reply.token(201);
            app.authorized(&token).await;
            app.signed_in(&address).await;
            app.signup(&address.to_uppercase(), PASSWORD)
                .await
                .error(409, "email_taken");
            app.signin(&address, "wrong password!")
                .await
                .error(401, "invalid_credentials");
        }
        alive(&app).await;
    }
    // A wildcard must not match someone else's row.
    app.signin("%@example.com", PASSWORD)
        .await
        .error(401, "invalid_credentials");
    app.signin("_@example.com", PASSWORD)
        .await
        .error(401, "invalid_credentials");

    // Passwords: too short, over 1024 bytes, far over (still under the body
    // limit), and over the body limit.
    let address = email();
    for (what, password, status, code) in [
        ("7 characters", "1234567".to_owned(), 422, "invalid_request"),
        ("empty", String::new(), 422, "invalid_request"),
        ("1025 bytes", "p".repeat(1025), 422, "invalid_request"),
        (
            "1024 bytes of 2-byte characters + 1",
            format!("{}x", "é".repeat(512)),
            422,
            "invalid_request",
        ),
        ("15 KB", "p".repeat(15 * 1024), 422, "invalid_request"),
        ("16 KB", "p".repeat(16 * 1024), 413, "payload_too_large"),
    ] {
        for path in ["/signup", "/signin"] {
            let reply = app.post_json(path, &credentials(&address, &password)).await;
            // Sign-in takes shorter passwords than sign-up (old accounts
            // may have them): 7 characters there is just a wrong password.
            let (status, code) = if path == "/signin" && what == "7 characters" {
                (401, "invalid_credentials")
            } else {
                (status, code)
            };
            refused(
                &app,
                reply,
                status,
                code,
                &format!("password of {what} on {path}"),
            )
            .await;
        }
    }
    // The longest valid password works, 8 multi-byte characters too.
    app.signup(&address, &"p".repeat(1024)).await.token(201);
    app.signin(&address, &"p".repeat(1024)).await.token(200);
    let address = email();
    app.signup(&address, "ééééééé€").await.token(201);
    app.signin(&address, "ééééééé€").await.token(200);

    // The users table is intact.
    app.signed_in(&bystander).await;
    alive(&app).await;
}
