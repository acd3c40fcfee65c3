//! `authd_supervisor_restarts_left` counts an actor's failures down within
//! `restart_window_secs`, and gives each back once it has left the window.

use std::time::Duration;

use authd::actors::ActorKind;

use crate::exposition::{one_app_at_a_time, sample, scrape};
use crate::support::{spawn_app, wait_for, Backend, TestApp};

const USER_LEFT: &str = r#"authd_supervisor_restarts_left{actor="UserActor"}"#;
const TOKEN_LEFT: &str = r#"authd_supervisor_restarts_left{actor="TokenActor"}"#;

/// Makes `UserActor` fail and waits for the supervisor to have counted it.
async fn fail_user_actor(app: &TestApp) {
    let before = app.services.restarts.get(ActorKind::User);
    assert!(
        app.services.users.crash(),
        "the crash hook reached UserActor"
    );
    wait_for(
        "UserActor's failure counted",
        Duration::from_secs(10),
        || async { (app.services.restarts.get(ActorKind::User) > before).then_some(()) },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarts_left_counts_down_and_recovers() {
    let _turn = one_app_at_a_time().await;

    // A long window: both failures count, whatever the machine's speed.
    let app = spawn_app(
        Backend::Sqlite,
        &[
            ("AUTHD_RESTART_LIMIT", "3"),
            ("AUTHD_RESTART_WINDOW_SECS", "600"),
        ],
    )
    .await
    .expect("SQLite app");
    assert_eq!(sample(&scrape(&app).await, USER_LEFT), Some(3.0));
    fail_user_actor(&app).await;
    assert_eq!(sample(&scrape(&app).await, USER_LEFT), Some(2.0));
    fail_user_actor(&app).await;
    let text = scrape(&app).await;
    assert_eq!(sample(&text, USER_LEFT), Some(1.0));
    assert_eq!(
        sample(&text, TOKEN_LEFT),
        Some(3.0),
        "only UserActor failed"
    );
    app.shutdown().await;

    // A one-second window: the failure leaves it, and the budget is whole
    // again. (The failure set the gauge to 2 before it was counted, so 3
    // can only come from its leaving the window.)
    let app = spawn_app(
        Backend::Sqlite,
        &[
            ("AUTHD_RESTART_LIMIT", "3"),
            ("AUTHD_RESTART_WINDOW_SECS", "1"),
        ],
    )
    .await
    .expect("SQLite app");
    fail_user_actor(&app).await;
    wait_for(
        "the failure to leave the window",
        Duration::from_secs(30),
        || async { (sample(&scrape(&app).await, USER_LEFT) == Some(3.0)).then_some(()) },
    )
    .await;
}
