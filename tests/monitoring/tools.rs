//! Finding Prometheus' binaries, and the paths of the shipped files.

use std::io::Write;
use std::path::PathBuf;

/// `config/` of this repository.
pub fn config_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("config")
}

/// `name` (`promtool`, `prometheus`) on `PATH` or in `/usr/bin`, or `None`
/// with the skip reported. With `AUTHD_REQUIRE_PROMETHEUS=1` a missing
/// binary fails the test instead.
pub fn binary(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let found = std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/bin"), PathBuf::from("/usr/local/bin")])
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file());
    if found.is_none() {
        if std::env::var("AUTHD_REQUIRE_PROMETHEUS").as_deref() == Ok("1") {
            panic!(
                "{name} is not installed and AUTHD_REQUIRE_PROMETHEUS=1 (apt-get install -y prometheus)"
            );
        }
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED ({name} not installed): {}",
            crate::support::test_name()
        );
    }
    found
}
