//! The checks every loaded [`Settings`] passes, and the settings that are
//! parsed further (addresses, CIDR blocks), parsed in one place so that
//! the check at start-up and their users agree.

use std::net::{IpAddr, SocketAddr};

use ipnet::IpNet;

use super::{Settings, SettingsError, MIN_SECRET_BYTES};

impl Settings {
    /// Refuses settings authd cannot run with, naming the faulty one.
    pub(super) fn check(&self) -> Result<(), SettingsError> {
        let invalid = |m: &str| Err(SettingsError::Invalid(m.to_owned()));
        if self.access_token_ttl_secs <= 0 {
            return invalid("access_token_ttl_secs must be positive");
        }
        if self.session_ttl_secs <= 0 {
            return invalid("session_ttl_secs must be positive");
        }
        if self.refresh_grace_ms < 0 {
            return invalid("refresh_grace_ms must not be negative");
        }
        if self.batch_max_size == 0 || self.db_pool_size == 0 || self.hash_queue_limit == 0 {
            return invalid("batch_max_size, db_pool_size and hash_queue_limit must be positive");
        }
        if !self.secret_key.is_empty() && self.secret_key.len() < MIN_SECRET_BYTES {
            return invalid(
                "SECRET_KEY / secret_key is shorter than 16 bytes: too weak to sign tokens. \
                 Set a random key of at least 32 bytes (e.g. `openssl rand -base64 48`), \
                 leave it empty to have authd generate and store one, or use \
                 jwt_algorithm = \"EdDSA\"",
            );
        }
        argon2::Params::new(self.argon2_m_kib, self.argon2_t, self.argon2_p, None)
            .map_err(|e| SettingsError::Invalid(format!("argon2 parameters: {e}")))?;
        if self.max_header_bytes < 1024 {
            return invalid("max_header_bytes must be at least 1024");
        }
        // A read gap beyond half the change log's retention makes the
        // feed resync (see `sessions::feed`), so reads must come well within
        // it.
        if self.feed_catch_up_ms == 0 || self.feed_catch_up_ms > 120_000 {
            return invalid("feed_catch_up_ms must be between 1 and 120000");
        }
        if self.session_cache_capacity == 0 {
            return invalid(
                "session_cache_capacity must be positive (the cache is always bounded)",
            );
        }
        if self.body_read_timeout_ms == 0 {
            return invalid("body_read_timeout_ms must be positive");
        }
        if self.http2_max_concurrent_streams == 0 {
            return invalid("http2_max_concurrent_streams must be positive");
        }
        self.admin_addr()?;
        self.trusted_proxy_nets()?;
        self.database()?;
        Ok(())
    }

    /// The admin listener's address, if `admin_bind` is set.
    pub fn admin_addr(&self) -> Result<Option<SocketAddr>, SettingsError> {
        let text = self.admin_bind.trim();
        if text.is_empty() {
            return Ok(None);
        }
        text.parse().map(Some).map_err(|_| {
            SettingsError::Invalid(format!(
                "admin_bind must be host:port (e.g. 127.0.0.1:9000), got {text:?}"
            ))
        })
    }

    /// `trusted_proxies` parsed: CIDR blocks, a bare address meaning just
    /// that address. Empty entries (an empty variable) are skipped.
    pub fn trusted_proxy_nets(&self) -> Result<Vec<IpNet>, SettingsError> {
        self.trusted_proxies
            .iter()
            .flat_map(|entry| entry.split(','))
            .map(str::trim)
            .filter(|entry| !entry.is_empty())
            .map(|entry| {
                entry
                    .parse::<IpNet>()
                    .or_else(|_| entry.parse::<IpAddr>().map(IpNet::from))
                    .map_err(|_| {
                        SettingsError::Invalid(format!(
                            "trusted_proxies: {entry:?} is not a CIDR block or an IP address"
                        ))
                    })
            })
            .collect()
    }
}
