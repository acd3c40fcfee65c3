//! The supervisor gives up on a child that keeps failing, and authd stops
//! with an error (the binary then exits non-zero) instead of limping on.

use std::time::Duration;

use authd::actors::ActorKind;
use authd::startup::StartupError;

use crate::support::{spawn_app, wait_for, Backend};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_failures_escalate_and_stop_the_service() {
    let mut app = spawn_app(
        Backend::Sqlite,
        &[
            ("AUTHD_RESTART_LIMIT", "2"),
            ("AUTHD_RESTART_WINDOW_SECS", "60"),
        ],
    )
    .await
    .expect("sqlite is always available");
    let token = app.signed_up(&crate::support::email()).await;

    // Two failures are within the limit: each is restarted and service resumes.
    for expected in 1..=2u64 {
        assert!(app.services.tokens.crash(), "TokenActor is up");
        wait_for("TokenActor restart", Duration::from_secs(5), || async {
            (app.services.restarts.get(ActorKind::Token) == expected).then_some(())
        })
        .await;
        wait_for("service resumes", Duration::from_secs(5), || async {
            (app.authorize(&token).await.status == 200).then_some(())
        })
        .await;
    }

    // The third exceeds restart_limit: the supervisor gives up.
    assert!(app.services.tokens.crash(), "TokenActor is up");
    match app.stopped(Duration::from_secs(10)).await {
        Err(StartupError::SupervisorGaveUp) => {}
        other => panic!("expected the supervisor to give up, got {other:?}"),
    }
}
