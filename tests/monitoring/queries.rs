//! Every metric that the Grafana dashboard (`config/grafana/authd.json`)
//! and the alerting rules (`config/prometheus/authd-rules.yml`) query is
//! one a live authd exports: a renamed or dropped metric breaks this test
//! instead of leaving an empty panel or an alert that can never fire.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::Value;
use yaml_rust2::YamlLoader;

use crate::exposition::{exercise, families, is_exported, one_app_at_a_time, scrape};
use crate::promql::{label_values_selector, metric_names};
use crate::support::{spawn_app, Backend};
use crate::tools::config_dir;

/// Series Prometheus records itself for every target (not authd's).
const PROMETHEUS_SERIES: &[&str] = &["up"];

/// `(where, expression)` for each query of the dashboard: every panel's
/// targets and every `label_values` variable.
fn dashboard_queries() -> Vec<(String, String)> {
    let path = config_dir().join("grafana/authd.json");
    let text = std::fs::read_to_string(&path).expect("the dashboard is readable");
    let dashboard: Value = serde_json::from_str(&text).expect("the dashboard is JSON");
    let mut queries = Vec::new();
    let panels = dashboard["panels"].as_array().expect("dashboard panels");
    for panel in panels {
        let title = panel["title"].as_str().unwrap_or("<untitled>");
        if panel["type"] == "row" {
            assert!(
                panel["panels"].as_array().is_none_or(Vec::is_empty),
                "row {title} holds collapsed panels, which this check does not read"
            );
            continue;
        }
        let targets = panel["targets"].as_array().map_or(&[][..], Vec::as_slice);
        assert!(!targets.is_empty(), "panel {title} has no query");
        for target in targets {
            let expr = target["expr"].as_str().unwrap_or_default();
            assert!(!expr.trim().is_empty(), "panel {title} has an empty query");
            queries.push((format!("panel {title:?}"), expr.to_owned()));
        }
    }
    let variables = dashboard["templating"]["list"].as_array();
    for variable in variables.into_iter().flatten() {
        if variable["type"] != "query" {
            continue;
        }
        let name = variable["name"].as_str().unwrap_or_default();
        let query = variable["query"]["query"]
            .as_str()
            .or_else(|| variable["query"].as_str())
            .unwrap_or_default();
        let selector = label_values_selector(query)
            .unwrap_or_else(|| panic!("variable {name}: not a label_values query: {query}"));
        queries.push((format!("variable {name}"), selector.to_owned()));
    }
    queries
}

/// `(where, expression)` for each rule of the alerting rules.
fn rule_queries() -> Vec<(String, String)> {
    let path = config_dir().join("prometheus/authd-rules.yml");
    let text = std::fs::read_to_string(&path).expect("the rules are readable");
    let docs = YamlLoader::load_from_str(&text).expect("the rules are YAML");
    let groups = docs[0]["groups"].as_vec().expect("rule groups");
    let mut queries = Vec::new();
    for group in groups {
        for rule in group["rules"].as_vec().expect("rules in each group") {
            let name = rule["alert"]
                .as_str()
                .or_else(|| rule["record"].as_str())
                .expect("each rule is an alert or a recording rule");
            let expr = rule["expr"].as_str().expect("each rule has an expression");
            queries.push((format!("rule {name}"), expr.to_owned()));
        }
    }
    queries
}

/// The queried metric names that `families` does not export, with where
/// each is queried.
fn missing(
    queries: &[(String, String)],
    families: &BTreeMap<String, String>,
) -> Vec<(String, String)> {
    queries
        .iter()
        .flat_map(|(place, expr)| {
            metric_names(expr)
                .into_iter()
                .map(move |name| (place.clone(), name))
        })
        .filter(|(_, name)| {
            !PROMETHEUS_SERIES.contains(&name.as_str()) && !is_exported(name, families)
        })
        .collect()
}

#[test]
fn the_dashboard_and_the_rules_have_queries_naming_metrics() {
    let dashboard = dashboard_queries();
    let rules = rule_queries();
    assert!(dashboard.len() >= 20, "{dashboard:?}");
    assert!(rules.len() >= 10, "{rules:?}");
    for (place, expr) in dashboard.iter().chain(&rules) {
        assert!(
            !metric_names(expr).is_empty(),
            "{place} queries no metric: {expr}"
        );
    }
}

/// PostgreSQL: the pool and change-feed families exist only there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_queried_metric_is_exported() {
    let _turn = one_app_at_a_time().await;
    let Some(app) = spawn_app(Backend::Postgres, &[]).await else {
        return;
    };
    exercise(&app).await;
    let mut queries = dashboard_queries();
    queries.extend(rule_queries());
    // Some families are published on a period (the pool's gauges every
    // second): wait for them rather than assume they are there.
    let result = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            let text = scrape(&app).await;
            let absent = missing(&queries, &families(&text));
            if absent.is_empty() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
    .await;
    if result.is_err() {
        let text = scrape(&app).await;
        panic!(
            "queried but not exported: {:?}\n--- /metrics:\n{text}",
            missing(&queries, &families(&text))
        );
    }
}
