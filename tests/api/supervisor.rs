//! Supervision: a child actor that panics is restarted within moments; while
//! it is down requests get a quick 503 (never a hang), and afterwards
//! everything works as before. A child that keeps failing makes authd stop.

use std::time::{Duration, Instant};

use authd::actors::ActorKind;
use authd::startup::StartupError;
use tokio::task::JoinSet;

use crate::support::{email, spawn_app, Api, Backend, Reply, TestApp, PASSWORD};

both_backends!(
    token_actor_is_restarted,
    user_actor_is_restarted,
    health_actor_is_restarted,
    repeated_crashes_are_survived,
    supervisor_gives_up_on_a_crash_loop,
);

/// No request may take longer than this while an actor restarts.
const BOUND: Duration = Duration::from_secs(2);

/// A request that exercises one actor.
#[derive(Clone)]
enum Probe {
    SignIn(String),
    Authorize(String),
    Health,
}

impl Probe {
    async fn run(&self, api: &Api) -> Reply {
        match self {
            Probe::SignIn(email) => api.signin(email, PASSWORD).await,
            Probe::Authorize(token) => api.authorize(token).await,
            Probe::Health => api.health().await,
        }
    }

    /// Checks that `reply` is a success or a proper 503.
    #[track_caller]
    fn check(&self, reply: &Reply, took: Duration) {
        assert!(took < BOUND, "a request took {took:?} during a restart");
        match reply.status {
            200 => {}
            503 => match self {
                Probe::Health => assert_eq!(reply.body["status"], "unhealthy", "{reply:?}"),
                _ => reply.error(503, "service_unavailable"),
            },
            _ => panic!("expected 200 or 503 during a restart, got {reply:?}"),
        }
    }
}

/// Crashes the actor `kind` (through `crash`) while a burst of `probe`
/// requests is in flight, then polls until the actor has been restarted and
/// `probe` succeeds again, which must happen within 2 s.
async fn crash_and_recover(
    app: &TestApp,
    kind: ActorKind,
    probe: &Probe,
    crash: impl FnOnce() -> bool,
) {
    let api = app.api.bounded(BOUND);
    let before = app.services.restarts.get(kind);
    let reply = probe.run(&api).await;
    assert_eq!(reply.status, 200, "{reply:?}");

    assert!(crash(), "the crash hook could not reach {kind}");
    let mut burst = JoinSet::new();
    for _ in 0..8 {
        let api = api.clone();
        let probe = probe.clone();
        burst.spawn(async move {
            let started = Instant::now();
            let reply = probe.run(&api).await;
            (reply, started.elapsed())
        });
    }

    let started = Instant::now();
    loop {
        let sent = Instant::now();
        let reply = probe.run(&api).await;
        probe.check(&reply, sent.elapsed());
        if reply.status == 200 && app.services.restarts.get(kind) > before {
            break;
        }
        assert!(
            started.elapsed() < BOUND,
            "{kind} was not back within {BOUND:?}: restarts {}, last answer {reply:?}",
            app.services.restarts.get(kind)
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    while let Some(done) = burst.join_next().await {
        let (reply, took) = done.expect("probe task");
        probe.check(&reply, took);
    }
    assert_eq!(
        app.services.restarts.get(kind),
        before + 1,
        "one crash, one restart"
    );
}

fn restarts(app: &TestApp) -> [u64; 3] {
    [ActorKind::User, ActorKind::Token, ActorKind::DbHealth].map(|k| app.services.restarts.get(k))
}

async fn token_actor_is_restarted(backend: Backend) {
    let Some(app) = spawn_app(backend, &[]).await else {
        return;
    };
    let user = email();
    let token = app.signed_up(&user).await;
    let revoked = app.signed_in(&user).await;
    assert_eq!(app.revoke(&revoked).await.status, 200);

    let services = app.services.clone();
    crash_and_recover(
        &app,
        ActorKind::Token,
        &Probe::Authorize(token.clone()),
        || services.tokens.crash(),
    )
    .await;
    assert_eq!(restarts(&app), [0, 1, 0], "only TokenActor failed");

    // Its state survived the restart, and it does all its work again.
    app.refused(&revoked).await;
    let next = app.refreshed(&token).await;
    app.authorized(&next).await;
    let other = app.signed_in(&user).await;
    assert_eq!(app.revoke(&other).await.status, 200);
    app.refused(&other).await;
    app.signed_up(&email()).await;
}

async fn user_actor_is_restarted(backend: Backend) {
    let Some(app) = spawn_app(backend, &[]).await else {
        return;
    };
    let user = email();
    let token = app.signed_up(&user).await;

    let services = app.services.clone();
    crash_and_recover(&app, ActorKind::User, &Probe::SignIn(user.clone()), || {
        services.users.crash()
    })
    .await;
    assert_eq!(restarts(&app), [1, 0, 0], "only UserActor failed");

    app.authorized(&token).await;
    let fresh = app.signed_up(&email()).await;
    app.authorized(&fresh).await;
    app.signup(&user, PASSWORD).await.error(409, "email_taken");
    app.signin(&user, "wrong password")
        .await
        .error(401, "invalid_credentials");
}

async fn health_actor_is_restarted(backend: Backend) {
    let Some(app) = spawn_app(backend, &[]).await else {
        return;
    };
    let services = app.services.clone();
    crash_and_recover(&app, ActorKind::DbHealth, &Probe::Health, || {
        services.health.crash()
    })
    .await;
    assert_eq!(restarts(&app), [0, 0, 1], "only DbHealthActor failed");
    let reply = app.health().await;
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(reply.body["status"], "healthy");
    app.signed_up(&email()).await;
}

/// Crashes in quick succession back off, but each is recovered from.
async fn repeated_crashes_are_survived(backend: Backend) {
    let Some(app) = spawn_app(backend, &[]).await else {
        return;
    };
    let user = email();
    let token = app.signed_up(&user).await;
    let services = app.services.clone();
    for _ in 0..3 {
        crash_and_recover(
            &app,
            ActorKind::Token,
            &Probe::Authorize(token.clone()),
            || services.tokens.crash(),
        )
        .await;
        crash_and_recover(&app, ActorKind::User, &Probe::SignIn(user.clone()), || {
            services.users.crash()
        })
        .await;
    }
    assert_eq!(restarts(&app), [3, 3, 0]);
    let next = app.refreshed(&token).await;
    app.authorized(&next).await;
}

/// Past `restart_limit` failures within the window authd stops (and the
/// binary exits non-zero) instead of limping on.
async fn supervisor_gives_up_on_a_crash_loop(backend: Backend) {
    let Some(mut app) = spawn_app(backend, &[("AUTHD_RESTART_LIMIT", "1")]).await else {
        return;
    };
    let token = app.signed_up(&email()).await;
    let services = app.services.clone();
    crash_and_recover(&app, ActorKind::Token, &Probe::Authorize(token), || {
        services.tokens.crash()
    })
    .await;
    assert!(services.tokens.crash(), "TokenActor is running again");
    let ended = app.stopped(Duration::from_secs(10)).await;
    assert!(
        matches!(ended, Err(StartupError::SupervisorGaveUp)),
        "expected the supervisor to give up, got {ended:?}"
    );
}
