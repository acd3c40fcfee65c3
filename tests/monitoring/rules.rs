//! The shipped alerting rules are valid (`promtool check rules`) and pass
//! their unit tests (`promtool test rules`), which fire each alert on the
//! series it is about and keep it quiet on ordinary ones.

use std::path::Path;
use std::process::Command;

use crate::tools::{binary, config_dir};

fn promtool(promtool: &Path, args: &[&str]) {
    let out = Command::new(promtool)
        .args(args)
        .current_dir(config_dir().join("prometheus"))
        .output()
        .expect("promtool runs");
    assert!(
        out.status.success(),
        "promtool {args:?} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn alerting_rules_pass_their_unit_tests() {
    let Some(path) = binary("promtool") else {
        return;
    };
    promtool(&path, &["check", "rules", "authd-rules.yml"]);
    promtool(&path, &["test", "rules", "authd-rules.test.yml"]);
}
