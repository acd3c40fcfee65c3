//! Concurrent clients: many sign-ups at once, racing sign-ups of one
//! address, and racing refreshes of one token (exactly one successor).

use std::collections::HashSet;

use tokio::task::JoinSet;

use crate::support::{email, spawn_app, Backend, Reply, PASSWORD};

both_backends!(
    concurrent_signups,
    racing_signups_of_one_address,
    racing_refreshes_of_one_token,
);

async fn concurrent_signups(backend: Backend) {
    let Some(app) = spawn_app(backend, &[]).await else {
        return;
    };
    let mut tasks = JoinSet::new();
    for _ in 0..20 {
        let api = app.api.clone();
        tasks.spawn(async move {
            let user = email();
            let reply = api.signup(&user, PASSWORD).await;
            (user, reply)
        });
    }
    let mut users = HashSet::new();
    let mut sessions = HashSet::new();
    while let Some(done) = tasks.join_next().await {
        let (user, reply) = done.expect("sign-up task");
        let token = reply.token(201);
        let who = app.authorized(&token).await;
        assert!(users.insert(who.user_id()), "two sign-ups, one user id");
        assert!(sessions.insert(who.session_id()));
        app.signed_in(&user).await;
    }
    assert_eq!(users.len(), 20);
}

async fn racing_signups_of_one_address(backend: Backend) {
    let Some(app) = spawn_app(backend, &[]).await else {
        return;
    };
    let user = email();
    let mut tasks = JoinSet::new();
    for i in 0..10 {
        let api = app.api.clone();
        // Differently cased spellings of the same address.
        let spelled = if i % 2 == 0 {
            user.clone()
        } else {
            user.to_uppercase()
        };
        tasks.spawn(async move { api.signup(&spelled, &format!("{PASSWORD} {i}")).await });
    }
    let mut winners = Vec::new();
    while let Some(done) = tasks.join_next().await {
        let reply = done.expect("sign-up task");
        match reply.status {
            201 => winners.push(reply.token(201)),
            _ => reply.error(409, "email_taken"),
        }
    }
    assert_eq!(winners.len(), 1, "exactly one account per address");
    app.authorized(&winners[0]).await;
}

async fn racing_refreshes_of_one_token(backend: Backend) {
    let Some(app) = spawn_app(backend, &[]).await else {
        return;
    };
    let mut token = app.signed_up(&email()).await;
    let session = app.authorized(&token).await.session_id();
    for round in 0..3 {
        let mut tasks = JoinSet::new();
        for _ in 0..10 {
            let api = app.api.clone();
            let token = token.clone();
            tasks.spawn(async move { api.refresh(&token).await });
        }
        let mut successors = HashSet::new();
        let mut replies: Vec<Reply> = Vec::new();
        while let Some(done) = tasks.join_next().await {
            let reply = done.expect("refresh task");
            match reply.status {
                200 => {
                    successors.insert(reply.token(200));
                }
                _ => reply.unauthorized(&["token_reused", "token_revoked", "invalid_token"]),
            }
            replies.push(reply);
        }
        assert_eq!(
            successors.len(),
            1,
            "round {round}: racing refreshes must share one successor: {replies:?}"
        );
        let next = successors.into_iter().next().unwrap();
        assert_ne!(next, token);
        // Exactly one token of the session authorizes: the successor.
        app.authorize(&token).await.error(401, "invalid_token");
        assert_eq!(app.authorized(&next).await.session_id(), session);
        token = next;
    }
}
