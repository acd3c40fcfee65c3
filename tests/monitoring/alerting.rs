//! The real Prometheus, scraping a live authd every second with the shipped
//! rules loaded, fires `AuthdActorRestarted` once an actor fails, and not
//! before.

use std::io::Write;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use authd::actors::ActorKind;
use serde_json::Value;
use tempfile::TempDir;

use crate::exposition::one_app_at_a_time;
use crate::support::{free_port, spawn_app, wait_for, Backend};
use crate::tools::{binary, config_dir};

/// How long Prometheus may take for anything (start, a scrape, an alert):
/// generous, as the machine may be busy; the quiet-machine time is a few
/// seconds.
const PATIENCE: Duration = Duration::from_secs(60);

/// Prometheus on a free port of 127.0.0.1, with its own configuration and
/// storage in a temporary directory; killed on drop.
struct Prometheus {
    child: Child,
    dir: TempDir,
    base: String,
    http: reqwest::Client,
}

impl Prometheus {
    /// Starts Prometheus scraping `target` (`host:port`) as `job="authd"`
    /// every second, evaluating the shipped rules every second, and waits
    /// until it is ready.
    async fn start(binary: &Path, target: &str) -> Prometheus {
        let dir = tempfile::tempdir().expect("temporary directory");
        let rules = config_dir().join("prometheus/authd-rules.yml");
        let config = format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
             rule_files:\n  - {}\n\
             scrape_configs:\n  - job_name: authd\n    static_configs:\n      - targets: ['{target}']\n",
            rules.display()
        );
        let config_path = dir.path().join("prometheus.yml");
        std::fs::write(&config_path, config).expect("Prometheus configuration written");
        let log = std::fs::File::create(dir.path().join("prometheus.log")).expect("log file");
        let port = free_port();
        let child = Command::new(binary)
            .arg(format!("--config.file={}", config_path.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log file"))
            .stderr(log)
            .spawn()
            .expect("prometheus starts");
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .no_proxy()
            .build()
            .expect("HTTP client");
        let mut prometheus = Prometheus {
            child,
            dir,
            base: format!("http://127.0.0.1:{port}"),
            http,
        };
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Some(status) = prometheus.child.try_wait().expect("child status") {
                panic!("prometheus exited ({status}):\n{}", prometheus.log());
            }
            let ready = prometheus
                .http
                .get(format!("{}/-/ready", prometheus.base))
                .send()
                .await;
            if ready.is_ok_and(|r| r.status().is_success()) {
                return prometheus;
            }
            assert!(
                Instant::now() < deadline,
                "prometheus not ready within {PATIENCE:?}:\n{}",
                prometheus.log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("prometheus.log")).unwrap_or_default()
    }

    /// `data` of a successful answer of the HTTP API at `path`.
    async fn get(&self, path: &str, query: &[(&str, &str)]) -> Value {
        let url = format!("{}{path}", self.base);
        let response = self
            .http
            .get(&url)
            .query(query)
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {url}: {e}\n{}", self.log()));
        let body: Value = response.json().await.expect("Prometheus answers JSON");
        assert_eq!(body["status"], "success", "GET {url}: {body}");
        body["data"].clone()
    }

    /// The value of the instant query `promql`'s first sample, if any.
    async fn value(&self, promql: &str) -> Option<f64> {
        let data = self.get("/api/v1/query", &[("query", promql)]).await;
        data["result"][0]["value"][1].as_str()?.parse().ok()
    }

    /// The state (`pending`, `firing`) of the `alertname` alert for
    /// `actor`, if it is active.
    async fn alert(&self, alertname: &str, actor: &str) -> Option<String> {
        let data = self.get("/api/v1/alerts", &[]).await;
        data["alerts"]
            .as_array()?
            .iter()
            .find(|a| a["labels"]["alertname"] == alertname && a["labels"]["actor"] == actor)
            .map(|a| a["state"].as_str().unwrap_or_default().to_owned())
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_actor_fires_the_restart_alert() {
    let Some(binary) = binary("prometheus") else {
        return;
    };
    let _turn = one_app_at_a_time().await;
    let app = spawn_app(Backend::Sqlite, &[]).await.expect("SQLite app");
    let prometheus = Prometheus::start(&binary, app.address.trim_start_matches("http://")).await;

    let groups = prometheus.get("/api/v1/rules", &[]).await;
    let loaded: Vec<&str> = groups["groups"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|g| g["rules"].as_array().into_iter().flatten())
        .filter_map(|r| r["name"].as_str())
        .collect();
    assert!(
        loaded.contains(&"AuthdActorRestarted"),
        "the shipped rules are not loaded: {loaded:?}\n{}",
        prometheus.log()
    );

    // Prometheus has seen TokenActor's counter at zero, twice: the rule's
    // condition is false, and no restart alert is active.
    let seen = r#"count_over_time(authd_actor_restarts_total{job="authd",actor="TokenActor"}[1m])"#;
    wait_for("two scrapes of the restart counter", PATIENCE, || async {
        (prometheus.value(seen).await? >= 2.0).then_some(())
    })
    .await;
    assert_eq!(
        prometheus
            .value(r#"authd_actor_restarts_total{job="authd",actor="TokenActor"}"#)
            .await,
        Some(0.0)
    );
    assert_eq!(
        prometheus
            .value(
                r#"increase(authd_actor_restarts_total{job="authd",actor="TokenActor"}[5m]) > 0"#
            )
            .await,
        None
    );
    assert_eq!(
        prometheus.alert("AuthdActorRestarted", "TokenActor").await,
        None,
        "the restart alert is active before any failure"
    );

    let failed_at = Instant::now();
    assert!(
        app.services.tokens.crash(),
        "the crash hook reached TokenActor"
    );
    wait_for("TokenActor's restart", PATIENCE, || async {
        (app.services.restarts.get(ActorKind::Token) >= 1).then_some(())
    })
    .await;
    let deadline = Instant::now() + PATIENCE;
    loop {
        if prometheus
            .alert("AuthdActorRestarted", "TokenActor")
            .await
            .as_deref()
            == Some("firing")
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "AuthdActorRestarted did not fire within {PATIENCE:?} of the failure; alerts: {}\n{}",
            prometheus.get("/api/v1/alerts", &[]).await,
            prometheus.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let _ = writeln!(
        std::io::stderr(),
        "AuthdActorRestarted fired {:?} after TokenActor failed",
        failed_at.elapsed()
    );
    assert_eq!(
        prometheus.alert("AuthdActorRestarted", "UserActor").await,
        None,
        "only the actor that failed alerts"
    );
}
