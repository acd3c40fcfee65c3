//! What authd writes to a log file at start-up: plain text (no colour
//! codes outside a terminal), the settings that matter as fields of their
//! own, never a secret.

use serde_json::Value;

use crate::support::{Backend, ChildApp, TestDb, SECRET_KEY};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_start_up_line_names_the_settings_as_fields_and_hides_secrets() {
    let db = TestDb::create(Backend::Sqlite).await.expect("sqlite");

    let human = ChildApp::start(&db, 0).await;
    let log = human.log();
    assert!(
        !log.contains('\u{1b}'),
        "colour codes in a log file:\n{log}"
    );
    let starting = log
        .lines()
        .find(|l| l.contains("event=\"starting\""))
        .unwrap_or_else(|| panic!("no start-up line in:\n{log}"));
    for field in [
        "store=sqlite:",
        "bind=127.0.0.1:",
        "jwt_algorithm=\"HS256\"",
    ] {
        assert!(starting.contains(field), "{field} missing: {starting}");
    }
    assert!(starting.contains("secret_key"), "overrides: {starting}");
    assert!(!starting.contains("Settings {"), "a Debug dump: {starting}");
    assert!(!log.contains(SECRET_KEY), "the secret in the log:\n{log}");
    drop(human);

    let json = ChildApp::start_with(&db, 1, &[("AUTHD_LOG_FORMAT", "json")]).await;
    let log = json.log();
    let starting: Value = log
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|l| l["event"] == "starting")
        .unwrap_or_else(|| panic!("no JSON start-up line in:\n{log}"));
    assert!(
        starting["store"].as_str().unwrap().starts_with("sqlite:"),
        "{starting}"
    );
    assert!(starting["hash_threads"].as_u64() >= Some(1), "{starting}");
    assert_eq!(starting["rate_limits"], false, "{starting}");
    let overrides = starting["overrides"].as_str().unwrap();
    for name in ["log_format", "rate_limit_enabled", "secret_key"] {
        assert!(overrides.split(',').any(|o| o == name), "{overrides}");
    }
    assert!(!log.contains(SECRET_KEY), "the secret in the log:\n{log}");
}
