//! The effective settings as an operator reads them, every secret masked
//! (a `Secret` serializes as `***`): the TOML listing `authd check-config`
//! prints, and the fields of the start-up log line, which name the
//! settings that matter and those that differ from the defaults.

use std::collections::HashMap;

use crate::settings::{Database, JwtAlgorithm, Settings};

/// `authd check-config`: every setting as TOML (a file authd would accept),
/// then the store it resolves to and unknown `AUTHD_` variables, as comments.
pub fn toml_listing(settings: &Settings) -> Result<String, String> {
    let body = toml::to_string(settings).map_err(|e| format!("cannot list the settings: {e}"))?;
    let mut out = String::from(
        "# authd: effective settings (defaults, --config file, environment), secrets masked\n",
    );
    out.push_str(&body);
    out.push_str(&format!("\n# store: {}\n", store(settings)));
    if !settings.unknown_variables.is_empty() {
        out.push_str(&format!(
            "# unknown_variables: {} (they name no setting)\n",
            settings.unknown_variables.join(", ")
        ));
    }
    Ok(out)
}

/// Where the data lives, as the start-up line and `check-config` say it.
pub fn store(settings: &Settings) -> String {
    match settings.database() {
        Ok(Database::Sqlite { path }) => format!("sqlite:{}", path.display()),
        Ok(Database::Postgres(target)) => format!("{target:?}"),
        Err(e) => e.to_string(),
    }
}

/// The settings whose value differs from `config/default.toml`, by name
/// (a secret's name only: both sides are masked).
pub fn overrides(settings: &Settings) -> Vec<String> {
    let Ok(defaults) = Settings::load_from(None, HashMap::new()) else {
        return Vec::new();
    };
    let (Ok(serde_json::Value::Object(mine)), Ok(serde_json::Value::Object(theirs))) = (
        serde_json::to_value(settings),
        serde_json::to_value(&defaults),
    ) else {
        return Vec::new();
    };
    let mut changed: Vec<String> = mine
        .into_iter()
        .filter(|(key, value)| theirs.get(key) != Some(value))
        .map(|(key, _)| key)
        .collect();
    changed.sort();
    changed
}

/// Logs the start-up line (`event="starting"`): the settings that matter
/// as fields of their own, so JSON logs carry them as fields.
pub fn log_starting(settings: &Settings) {
    let admin = if settings.admin_bind.is_empty() {
        "off"
    } else {
        settings.admin_bind.as_str()
    };
    tracing::info!(
        event = "starting",
        version = env!("CARGO_PKG_VERSION"),
        store = %store(settings),
        bind = %settings.bind,
        admin_bind = admin,
        jwt_algorithm = match settings.jwt_algorithm {
            JwtAlgorithm::Hs256 => "HS256",
            JwtAlgorithm::EdDsa => "EdDSA",
        },
        hash_threads = settings.hash_threads(),
        rate_limits = settings.rate_limit_enabled,
        legacy_fastapi = settings.legacy_fastapi,
        overrides = %overrides(settings).join(","),
        "authd starting"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(vars: &[(&str, &str)]) -> Settings {
        let vars = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Settings::load_from(None, vars).expect("valid settings")
    }

    #[test]
    fn the_listing_is_toml_with_secrets_masked() {
        let settings = load(&[
            ("SECRET_KEY", "a-secret-that-must-not-show-0123456789"),
            (
                "DATABASE_URL",
                "postgres://app:hunter2@db.internal:5433/auth",
            ),
        ]);
        let listing = toml_listing(&settings).unwrap();
        assert!(!listing.contains("a-secret-that"), "{listing}");
        assert!(!listing.contains("hunter2"), "{listing}");
        let parsed: toml::Table = toml::from_str(&listing).expect("the listing parses as TOML");
        assert_eq!(parsed["secret_key"].as_str(), Some("***"));
        assert_eq!(parsed["database_url"].as_str(), Some("***"));
        assert_eq!(parsed["bind"].as_str(), Some("0.0.0.0:8000"));
        assert_eq!(parsed["jwt_algorithm"].as_str(), Some("HS256"));
        assert!(
            listing.contains("# store: postgres://app:***@db.internal:5433/auth"),
            "{listing}"
        );
    }

    #[test]
    fn overrides_name_what_differs_from_the_defaults() {
        assert!(overrides(&load(&[])).is_empty());
        let settings = load(&[
            ("AUTHD_BIND", "127.0.0.1:9"),
            ("AUTHD_LOG_FORMAT", "json"),
            ("SECRET_KEY", "a-secret-that-must-not-show-0123456789"),
        ]);
        assert_eq!(overrides(&settings), ["bind", "log_format", "secret_key"]);
    }
}
