//! Which names are settings (the keys of `config/default.toml`), and the
//! names in a configuration file or the environment that are not: a
//! misspelt setting must not silently leave its setting at the default.

use std::collections::HashMap;

use config::{Config, File, FileFormat};

use super::{SettingsError, DEFAULTS};

/// `AUTHD_*` variables that are not settings: the configuration file's
/// path, the test suite's switches, and what Kubernetes injects for a
/// Service named `authd` (`AUTHD_PORT`, `AUTHD_SERVICE_HOST`, ...).
const NOT_SETTINGS: [&str; 5] = ["CONFIG", "BIN", "REQUIRE_", "TEST_", "SERVICE_"];

/// The names of every setting: the keys of `config/default.toml`.
pub(super) fn setting_names() -> Result<Vec<String>, SettingsError> {
    let defaults = Config::builder()
        .add_source(File::from_str(DEFAULTS, FileFormat::Toml))
        .build()?;
    top_level_keys(defaults)
}

fn top_level_keys(config: Config) -> Result<Vec<String>, SettingsError> {
    let table: HashMap<String, config::Value> = config.try_deserialize()?;
    Ok(table.into_keys().collect())
}

/// A file's keys that name no setting: refused, since a misspelt key would
/// otherwise leave its setting at the default without a word.
pub(super) fn check_file_keys(
    path: &std::path::Path,
    names: &[String],
) -> Result<(), SettingsError> {
    let file = Config::builder()
        .add_source(File::from(path).required(true))
        .build()?;
    let mut unknown: Vec<String> = top_level_keys(file)?
        .into_iter()
        .filter(|key| !names.contains(key))
        .collect();
    unknown.sort();
    if unknown.is_empty() {
        return Ok(());
    }
    Err(SettingsError::Invalid(format!(
        "{}: unknown setting(s) {}; every setting is listed in config/default.toml",
        path.display(),
        unknown.join(", ")
    )))
}

/// `AUTHD_*` variables that name no setting.
pub(super) fn unknown_variables(vars: &HashMap<String, String>, names: &[String]) -> Vec<String> {
    let mut unknown: Vec<String> = vars
        .keys()
        .filter_map(|var| Some((var, var.strip_prefix("AUTHD_")?)))
        .filter(|(_, rest)| {
            let key = rest.to_ascii_lowercase();
            !names.contains(&key)
                && !rest.starts_with("PORT")
                && !NOT_SETTINGS
                    .iter()
                    .any(|p| *rest == *p || (p.ends_with('_') && rest.starts_with(p)))
        })
        .map(|(var, _)| var.clone())
        .collect();
    unknown.sort();
    unknown
}
