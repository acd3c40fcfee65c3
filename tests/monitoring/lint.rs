//! `promtool check metrics` accepts authd's `/metrics` as served: every
//! family has help text and a type, and the names follow Prometheus'
//! conventions (counters end in `_total`, units are base units).

use std::io::Write;
use std::process::{Command, Stdio};

use authd::telemetry::metrics::FAMILIES;

use crate::exposition::{exercise, families, one_app_at_a_time, scrape};
use crate::support::{spawn_app, Backend};
use crate::tools::binary;

both_backends!(metrics_pass_promtool);

async fn metrics_pass_promtool(backend: Backend) {
    let Some(promtool) = binary("promtool") else {
        return;
    };
    let _turn = one_app_at_a_time().await;
    let Some(app) = spawn_app(backend, &[]).await else {
        return;
    };
    exercise(&app).await;
    let text = scrape(&app).await;

    // Each family served is one authd describes, with its help text.
    for name in families(&text).keys() {
        let described = FAMILIES
            .iter()
            .find(|f| f.name == name)
            .unwrap_or_else(|| panic!("{name} is exported but not in FAMILIES"));
        assert!(
            text.contains(&format!("# HELP {name} {}", described.help)),
            "{name} is served without its help text:\n{text}"
        );
    }

    let mut check = Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool starts");
    check
        .stdin
        .take()
        .expect("promtool's stdin")
        .write_all(text.as_bytes())
        .expect("the metrics reach promtool");
    let out = check.wait_with_output().expect("promtool finishes");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && said.trim().is_empty(),
        "promtool check metrics rejects /metrics ({}):\n{said}\n--- the metrics:\n{text}",
        out.status
    );
}
