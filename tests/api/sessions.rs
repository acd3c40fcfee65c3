//! `GET /sessions`, `DELETE /sessions/{id}` and `POST /revoke` with
//! `"scope": "others"`: a user sees and ends their own sessions, and only
//! their own.

use reqwest::Method;
use serde_json::{json, Value};

use crate::support::{email, spawn_app, Api, Backend, Reply, TestApp};

both_backends!(
    sessions_are_listed_newest_first_with_their_origin,
    sessions_are_paged_with_a_cursor_bound_to_the_user,
    a_session_can_be_ended_by_id_only_by_its_owner,
    revoking_others_keeps_only_the_callers_session,
);

async fn sessions(api: &Api, token: &str, query: &str) -> Reply {
    api.send(
        api.request(Method::GET, &format!("/sessions{query}"))
            .bearer_auth(token),
    )
    .await
}

async fn delete_session(api: &Api, token: &str, id: &str) -> Reply {
    api.send(
        api.request(Method::DELETE, &format!("/sessions/{id}"))
            .bearer_auth(token),
    )
    .await
}

fn ids(reply: &Reply) -> Vec<String> {
    assert_eq!(reply.status, 200, "{reply:?}");
    reply.body["sessions"]
        .as_array()
        .unwrap_or_else(|| panic!("no sessions array: {reply:?}"))
        .iter()
        .map(|s| s["id"].as_str().expect("id").to_owned())
        .collect()
}

/// Signs `user` in with a User-Agent of its own; returns the token.
async fn signed_in_as(app: &TestApp, user: &str, agent: &str) -> String {
    app.send(
        app.request(Method::POST, "/signin")
            .header("user-agent", agent)
            .json(&json!({ "email": user, "password": crate::support::PASSWORD })),
    )
    .await
    .token(200)
}

async fn sessions_are_listed_newest_first_with_their_origin(backend: Backend) {
    let Some(app) = spawn_app(backend, &[]).await else {
        return;
    };
    let user = email();
    let first = app.signed_up(&user).await;
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    let second = signed_in_as(&app, &user, "phone/1.0").await;
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    let long_agent = "x".repeat(1000);
    let third = signed_in_as(&app, &user, &long_agent).await;
    let ended = app.signed_in(&user).await;
    app.revoke(&ended).await;
    let stranger = app.signed_up(&email()).await;
    // The second session was refreshed once.
    let second = app.refreshed(&second).await;

    let reply = sessions(&app, &second, "").await;
    assert!(reply.is_json(), "{reply:?}");
    let session_of = |token: &str| -> String {
        let claims = crate::support::claims_of(token);
        claims["sid"].as_str().expect("sid").to_owned()
    };
    assert_eq!(
        ids(&reply),
        vec![session_of(&third), session_of(&second), session_of(&first)]
    );
    assert_eq!(reply.body["next"], Value::Null);
    let listed = reply.body["sessions"].as_array().unwrap();
    for s in listed {
        for field in ["created_at", "expires_at"] {
            assert!(s[field].as_i64().is_some_and(|t| t > 1_600_000_000), "{s}");
        }
        assert_eq!(s["client_address"], "127.0.0.1", "{s}");
    }
    assert_eq!(listed[1]["user_agent"], "phone/1.0");
    assert_eq!(listed[1]["current"], true);
    assert!(
        listed[1]["refreshed_at"].as_i64().is_some(),
        "{}",
        listed[1]
    );
    assert_eq!(listed[0]["current"], false);
    assert_eq!(listed[0]["refreshed_at"], Value::Null);
    assert_eq!(
        listed[0]["user_agent"].as_str().unwrap().chars().count(),
        256,
        "a long User-Agent is cut"
    );
    assert!(listed[0]["expires_at"].as_i64() > listed[0]["created_at"].as_i64());

    // Another user sees only their own.
    let theirs = sessions(&app, &stranger, "").await;
    assert_eq!(ids(&theirs), vec![session_of(&stranger)]);

    // No token, a bad one, an ended one: 401.
    let anonymous = app.send(app.request(Method::GET, "/sessions")).await;
    anonymous.error(401, "missing_token");
    sessions(&app, "garbage", "")
        .await
        .error(401, "invalid_token");
    sessions(&app, &ended, "").await.error(401, "token_revoked");
}

async fn sessions_are_paged_with_a_cursor_bound_to_the_user(backend: Backend) {
    let Some(app) = spawn_app(backend, &[]).await else {
        return;
    };
    let user = email();
    let mut tokens = vec![app.signed_up(&user).await];
    for _ in 0..4 {
        tokens.push(app.signed_in(&user).await);
    }
    let me = &tokens[0];
    let all = ids(&sessions(&app, me, "?limit=100").await);
    assert_eq!(all.len(), 5);

    let mut seen = Vec::new();
    let mut query = "?limit=2".to_owned();
    let mut pages = 0;
    loop {
        let page = sessions(&app, me, &query).await;
        let page_ids = ids(&page);
        assert!(page_ids.len() <= 2, "{page:?}");
        seen.extend(page_ids);
        pages += 1;
        match page.body["next"].as_str() {
            Some(next) => query = format!("?limit=2&cursor={next}"),
            None => break,
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(seen, all, "the pages together are the list, in order");

    // Out of range or garbled: 422.
    for bad in [
        "?limit=0",
        "?limit=101",
        "?limit=-1",
        "?limit=ten",
        "?cursor=garbage",
        "?cursor=",
        "?limit=2&limit=3",
    ] {
        sessions(&app, me, bad).await.error(422, "invalid_request");
    }
    // Another user's cursor is refused, never a page of their sessions.
    let first_page = sessions(&app, me, "?limit=1").await;
    let cursor = first_page.body["next"].as_str().expect("more").to_owned();
    let stranger = app.signed_up(&email()).await;
    let reply = sessions(&app, &stranger, &format!("?cursor={cursor}")).await;
    reply.error(422, "invalid_request");
}

async fn a_session_can_be_ended_by_id_only_by_its_owner(backend: Backend) {
    let Some(app) = spawn_app(backend, &[]).await else {
        return;
    };
    let user = email();
    let laptop = app.signed_up(&user).await;
    let phone = app.signed_in(&user).await;
    let stranger = app.signed_up(&email()).await;
    let sid = |token: &str| {
        crate::support::claims_of(token)["sid"]
            .as_str()
            .unwrap()
            .to_owned()
    };

    // Someone else's live session: 404, and it lives on.
    delete_session(&app, &stranger, &sid(&phone))
        .await
        .error(404, "session_not_found");
    app.authorized(&phone).await;
    // Unknown and malformed ids: the same 404.
    for id in [uuid::Uuid::new_v4().to_string(), "not-a-uuid".to_owned()] {
        delete_session(&app, &laptop, &id)
            .await
            .error(404, "session_not_found");
    }
    // No token: 401.
    let anonymous = app
        .send(app.request(Method::DELETE, &format!("/sessions/{}", sid(&phone))))
        .await;
    anonymous.error(401, "missing_token");

    // The owner ends the phone's session from the laptop.
    let reply = delete_session(&app, &laptop, &sid(&phone)).await;
    assert_eq!(reply.status, 204, "{reply:?}");
    app.refused(&phone).await;
    app.authorized(&laptop).await;
    assert_eq!(ids(&sessions(&app, &laptop, "").await), vec![sid(&laptop)]);
    // Already ended: 404.
    delete_session(&app, &laptop, &sid(&phone))
        .await
        .error(404, "session_not_found");
    // The current session too.
    let reply = delete_session(&app, &laptop, &sid(&laptop)).await;
    assert_eq!(reply.status, 204, "{reply:?}");
    app.refused(&laptop).await;
    app.authorized(&stranger).await;
}

async fn revoking_others_keeps_only_the_callers_session(backend: Backend) {
    let Some(app) = spawn_app(backend, &[]).await else {
        return;
    };
    let user = email();
    let others = [app.signed_up(&user).await, app.signed_in(&user).await];
    let mine = app.signed_in(&user).await;
    let stranger = app.signed_up(&email()).await;
    let reply = app
        .post_json(
            "/revoke",
            &json!({ "access_token": mine, "scope": "others" }),
        )
        .await;
    assert_eq!(reply.status, 200, "{reply:?}");
    for token in &others {
        app.refused(token).await;
    }
    app.authorized(&mine).await;
    let mine = app.refreshed(&mine).await;
    app.authorized(&stranger).await;
    assert_eq!(ids(&sessions(&app, &mine, "").await).len(), 1);
    // A revoked token cannot revoke others.
    let reply = app
        .post_json(
            "/revoke",
            &json!({ "access_token": others[0], "scope": "others" }),
        )
        .await;
    reply.unauthorized(&["token_revoked"]);
}
