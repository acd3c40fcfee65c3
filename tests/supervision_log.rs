//! The supervisor's events reach the log the way operators grep for them:
//! a child that panics under load produces a WARN `actor_failed` line with
//! the actor, the reason and the restart count, then `actor_restarted`; the
//! service keeps answering. Its own test binary, because it installs the
//! process-wide log subscriber.

#[macro_use]
#[path = "support/mod.rs"]
mod support;

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use authd::actors::ActorKind;
use support::{email, spawn_app, wait_for, Backend};

/// A log sink the test can read.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .map_err(|_| std::io::Error::other("poisoned"))?
            .extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().expect("log buffer")).into_owned()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_actor_under_load_is_logged_and_restarted() {
    let log = Captured::default();
    let sink = log.clone();
    tracing_subscriber::fmt()
        .json()
        .flatten_event(true)
        .with_env_filter("warn")
        .with_writer(move || sink.clone())
        .init();

    let app = spawn_app(Backend::Sqlite, &[]).await.expect("sqlite");
    let token = app.signed_up(&email()).await;

    // Load: a few clients authorizing in a loop while the actor dies.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut clients = Vec::new();
    for _ in 0..4 {
        let (api, token, stop) = (
            app.api.bounded(Duration::from_secs(2)),
            token.clone(),
            Arc::clone(&stop),
        );
        clients.push(tokio::spawn(async move {
            let (mut ok, mut unavailable) = (0u32, 0u32);
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                match api.authorize(&token).await.status {
                    200 => ok += 1,
                    503 => unavailable += 1,
                    other => panic!("unexpected {other} while TokenActor restarts"),
                }
            }
            (ok, unavailable)
        }));
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(app.services.tokens.crash(), "TokenActor is up");
    wait_for("the restart", Duration::from_secs(5), || async {
        (app.services.restarts.get(ActorKind::Token) == 1).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut ok = 0;
    for client in clients {
        ok += client.await.expect("client").0;
    }
    assert!(ok > 0, "the service kept answering");
    app.authorized(&token).await;

    let lines = log.text();
    let failed = lines
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|l| l["event"] == "actor_failed")
        .unwrap_or_else(|| panic!("no actor_failed event in the log:\n{lines}"));
    assert_eq!(failed["level"], "WARN");
    assert_eq!(failed["actor"], "TokenActor");
    assert_eq!(failed["restart_count"], 1);
    assert!(
        failed["reason"]
            .as_str()
            .is_some_and(|r| r.contains("crashed on request")),
        "the reason names the panic: {failed}"
    );
    assert!(
        lines.contains("\"event\":\"actor_restarted\""),
        "no actor_restarted event:\n{lines}"
    );
}
