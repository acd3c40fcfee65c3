//! A live authd's `/metrics`: traffic that makes its families exist, the
//! scrape, and the families the text declares.

use std::collections::BTreeMap;

use reqwest::Method;

use tokio::sync::{Mutex, MutexGuard};

use crate::support::{email, TestApp};

/// A turn to run authd in this process, held for the whole test: the
/// metrics recorder is global, so two apps at once would mix their gauges
/// and failures.
pub async fn one_app_at_a_time() -> MutexGuard<'static, ()> {
    static TURN: Mutex<()> = Mutex::const_new(());
    TURN.lock().await
}

/// Drives each kind of request the dashboard and the rules watch: sign-up
/// and sign-in (password hashing, a session batch), a failed sign-in,
/// refresh, revoke, authorize and the health probe.
pub async fn exercise(app: &TestApp) {
    let user = email();
    let token = app.signed_up(&user).await;
    let token = app.refreshed(&token).await;
    app.authorized(&token).await;
    app.signin(&user, "not the password")
        .await
        .error(401, "invalid_credentials");
    let other = app.signed_in(&user).await;
    assert_eq!(app.revoke(&other).await.status, 200);
    assert_eq!(app.health().await.status, 200);
}

/// `GET /metrics`, which must be Prometheus text.
pub async fn scrape(app: &TestApp) -> String {
    let reply = app.send(app.request(Method::GET, "/metrics")).await;
    assert_eq!(reply.status, 200, "{reply:?}");
    let content_type = reply
        .headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    assert!(content_type.starts_with("text/plain"), "{content_type}");
    reply.body.as_str().expect("metrics are text").to_owned()
}

/// The value of the sample `series` (name and labels exactly as rendered,
/// e.g. `a_total{x="y"}`) in `text`.
pub fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|value| value.trim().parse().ok())
}

/// The families the exposition declares (`# TYPE <name> <kind>`), by name.
pub fn families(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter_map(|line| line.strip_prefix("# TYPE "))
        .filter_map(|rest| {
            let mut words = rest.split_whitespace();
            Some((words.next()?.to_owned(), words.next()?.to_owned()))
        })
        .collect()
}

/// Whether a query's `name` is a series of an exported family: the family
/// itself (a counter or a gauge), or a histogram's `_bucket`, `_sum` or
/// `_count` series.
pub fn is_exported(name: &str, families: &BTreeMap<String, String>) -> bool {
    match families.get(name).map(String::as_str) {
        Some("counter" | "gauge") => return true,
        Some(_) => return false,
        None => {}
    }
    ["_bucket", "_sum", "_count"].iter().any(|suffix| {
        name.strip_suffix(suffix)
            .is_some_and(|base| families.get(base).is_some_and(|kind| kind == "histogram"))
    })
}

#[test]
fn a_histogram_is_queried_through_its_series() {
    let families = families(
        "# HELP a_seconds x\n# TYPE a_seconds histogram\na_seconds_bucket{le=\"1\"} 0\n\
         # TYPE b_total counter\nb_total 1\n",
    );
    assert!(is_exported("a_seconds_bucket", &families));
    assert!(is_exported("a_seconds_count", &families));
    assert!(is_exported("b_total", &families));
    assert!(
        !is_exported("a_seconds", &families),
        "a histogram has no plain series"
    );
    assert!(
        !is_exported("b_total_count", &families),
        "a counter has no _count series"
    );
    assert!(!is_exported("c_total", &families));
}
