//! Running the `authload` binary and reading what it printed.

use std::time::Duration;

use serde_json::Value;

/// What one authload run printed and how it ended.
pub struct Run {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// The final JSON line (the run must have been started with `--json`).
    pub fn json(&self) -> Value {
        let line = self
            .stdout
            .lines()
            .rfind(|l| l.starts_with('{'))
            .unwrap_or_else(|| panic!("no JSON line in:\n{}\n{}", self.stdout, self.stderr));
        serde_json::from_str(line).expect("the JSON line parses")
    }

    /// Asserts a clean exit and returns the JSON line.
    pub fn ok_json(&self) -> Value {
        assert_eq!(
            self.code,
            Some(0),
            "authload failed:\n{}\n{}",
            self.stdout,
            self.stderr
        );
        self.json()
    }
}

/// Runs authload with `args` (a short run; bounded so a hang fails the test).
pub async fn authload(args: &[&str]) -> Run {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_authload"));
    command.args(args).kill_on_drop(true);
    let output = tokio::time::timeout(Duration::from_secs(90), command.output())
        .await
        .expect("authload finishes within 90 s")
        .expect("authload starts");
    Run {
        code: output.status.code(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// A short measured run's common flags.
pub fn short<'a>(url: &'a str, scenario: &'a str, connections: &'a str) -> Vec<&'a str> {
    vec![
        "--url",
        url,
        "--scenario",
        scenario,
        "-c",
        connections,
        "--duration",
        "2s",
        "--warmup",
        "200ms",
        "--json",
        "--quiet",
    ]
}

pub fn u(v: &Value) -> u64 {
    v.as_u64()
        .unwrap_or_else(|| panic!("{v} is not a non-negative integer"))
}
