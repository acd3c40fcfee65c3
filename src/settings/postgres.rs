//! Where PostgreSQL is: one server, or a primary and its standbys listed
//! together, from a `postgres://` URL (`postgres://u@h1:5432,h2:5432/db`)
//! or the seed's `POSTGRES_*` variables (`POSTGRES_HOST=h1,h2:5433`).
//! Checked here, once, so that a malformed list stops authd at start-up
//! with a message that names the faulty part and never the password.
//!
//! authd writes on every connection it makes, so whatever the URL says it
//! always looks for the primary (`target_session_attrs=read-write`); a URL
//! asking for a standby (`read-only`) is refused rather than ignored.

use std::fmt;

use tokio_postgres::config::{Host, TargetSessionAttrs};

use crate::secret::Secret;

/// One server of the list: a host name, an IP address or (starting with
/// `/`) the directory of a Unix socket, and its port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PgHost {
    pub host: String,
    pub port: u16,
}

impl fmt::Display for PgHost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// The PostgreSQL servers authd uses (the primary is whichever of `hosts`
/// accepts writes) and how it logs in. Its `Debug` masks the password.
#[derive(Clone, PartialEq, Eq)]
pub struct PostgresTarget {
    /// Tried in this order at start-up; never empty once settings are
    /// loaded.
    pub hosts: Vec<PgHost>,
    pub user: String,
    pub password: Secret,
    pub dbname: String,
}

impl fmt::Debug for PostgresTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let hosts: Vec<String> = self.hosts.iter().map(ToString::to_string).collect();
        // The mask shows that a password is set, never what it is.
        let password = if self.password.expose().is_empty() {
            ""
        } else {
            ":***"
        };
        write!(
            f,
            "postgres://{}{password}@{}/{}?target_session_attrs=read-write",
            self.user,
            hosts.join(","),
            self.dbname
        )
    }
}

impl PostgresTarget {
    /// A target from a `postgres://` (or `postgresql://`) URL. The error
    /// names what is wrong and never contains the password. A URL without
    /// a host gives an empty `hosts` (the caller's default applies).
    pub fn from_url(url: &str) -> Result<PostgresTarget, String> {
        let hosts = check_url_hosts(url)?;
        let config: tokio_postgres::Config = url
            .parse()
            .map_err(|e: tokio_postgres::Error| scrub(&with_causes(&e), url))?;
        if config.get_target_session_attrs() == TargetSessionAttrs::ReadOnly {
            return Err(
                "target_session_attrs=read-only: authd writes on every connection, \
                 so it always connects to the primary; use read-write or leave it out"
                    .into(),
            );
        }
        // The URL's own parser agrees with the check above (which only
        // gives better messages): one port per host.
        let ports = config.get_ports();
        let parsed: Vec<PgHost> = config
            .get_hosts()
            .iter()
            .enumerate()
            .map(|(i, host)| PgHost {
                host: match host {
                    Host::Tcp(name) => name.clone(),
                    #[cfg(unix)]
                    Host::Unix(path) => path.display().to_string(),
                },
                port: ports.get(i).or(ports.first()).copied().unwrap_or(5432),
            })
            .collect();
        Ok(PostgresTarget {
            hosts: if parsed.is_empty() { hosts } else { parsed },
            user: config.get_user().unwrap_or("postgres").to_owned(),
            password: Secret::new(
                config
                    .get_password()
                    .map(|p| String::from_utf8_lossy(p).into_owned())
                    .unwrap_or_default(),
            ),
            dbname: config.get_dbname().unwrap_or("authd").to_owned(),
        })
    }
}

/// `POSTGRES_HOST` (`postgres_host`): one host or a comma-separated list,
/// each entry `host`, `host:port` or `[ipv6]:port`; an entry without a
/// port gets `default_port` (`POSTGRES_PORT`).
pub fn parse_host_list(list: &str, default_port: u16) -> Result<Vec<PgHost>, String> {
    let entries: Vec<&str> = list.split(',').map(str::trim).collect();
    let count = entries.len();
    entries
        .iter()
        .enumerate()
        .map(|(i, entry)| {
            parse_entry(entry, i, count, Some(default_port))
                .map_err(|problem| format!("postgres_host: {problem}"))
        })
        .collect()
}

/// The host list of a URL, checked entry by entry: the URL parser's own
/// errors say "invalid value for option `port`" without saying which.
fn check_url_hosts(url: &str) -> Result<Vec<PgHost>, String> {
    let rest = url
        .strip_prefix("postgres://")
        .or_else(|| url.strip_prefix("postgresql://"))
        .ok_or("must start with postgres:// or postgresql://")?;
    // As the URL parser does: the credentials end at the first `@`.
    let rest = rest.split_once('@').map_or(rest, |(_, hosts)| hosts);
    let list = rest.split(['/', '?']).next().unwrap_or_default();
    if list.is_empty() {
        // No host in the URL: the `host` parameter or the default decides.
        return Ok(Vec::new());
    }
    let entries: Vec<&str> = list.split(',').collect();
    let count = entries.len();
    entries
        .iter()
        .enumerate()
        .map(|(i, entry)| parse_entry(entry, i, count, None))
        .collect()
}

/// One `host[:port]` entry (the `i`th of `count`). Without
/// `default_port` (a URL), a missing port means 5432.
fn parse_entry(
    entry: &str,
    i: usize,
    count: usize,
    default_port: Option<u16>,
) -> Result<PgHost, String> {
    let which = || {
        if count == 1 {
            "the host".to_owned()
        } else {
            format!("host {} of {count}", i + 1)
        }
    };
    if entry.is_empty() {
        return Err(format!(
            "{} is empty (a stray comma?); expected host:port,host:port",
            which()
        ));
    }
    let (host, port) =
        split_host_port(entry).map_err(|why| format!("{} ({entry:?}): {why}", which()))?;
    if host.is_empty() {
        return Err(format!("{} ({entry:?}) has no host name", which()));
    }
    let port = match port {
        None => default_port.unwrap_or(5432),
        Some(text) => match text.parse::<u16>() {
            Ok(port) if port > 0 => port,
            _ => {
                return Err(format!(
                    "{} ({host}): port {text:?} is not a port number (1-65535)",
                    which()
                ))
            }
        },
    };
    Ok(PgHost {
        host: host.to_owned(),
        port,
    })
}

/// The host and the port text of a non-empty entry: `host`, `host:port`,
/// or an IPv6 address in brackets (`[::1]`, `[::1]:port`), since its own
/// colons would read as a port. The error says what is wrong with it.
fn split_host_port(entry: &str) -> Result<(&str, Option<&str>), &'static str> {
    let Some(bracketed) = entry.strip_prefix('[') else {
        return Ok(match entry.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (entry, None),
        });
    };
    let (host, after) = bracketed.split_once(']').ok_or("unclosed `[`")?;
    match after {
        "" => Ok((host, None)),
        _ => match after.strip_prefix(':') {
            Some(port) => Ok((host, Some(port))),
            None => Err("expected `:port` after `]`"),
        },
    }
}

/// An error and its causes, `: `-separated (the parser's own message is
/// only "invalid connection string"; the cause names the option).
fn with_causes(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        out.push_str(": ");
        out.push_str(&cause.to_string());
        source = cause.source();
    }
    out
}

/// `message` with the URL's password (raw or percent-decoded) replaced by
/// `***`: the parser's messages do not quote it, and this keeps it so.
fn scrub(message: &str, url: &str) -> String {
    let mut out = message.to_owned();
    if let Some(password) = url_password(url) {
        out = out.replace(password, "***");
        let decoded = percent_decode(password);
        if !decoded.is_empty() {
            out = out.replace(&decoded, "***");
        }
    }
    out
}

/// The raw password of a URL, if it has a non-empty one.
fn url_password(url: &str) -> Option<&str> {
    let rest = url.split_once("://")?.1;
    let (credentials, _) = rest.split_once('@')?;
    let (_, password) = credentials.split_once(':')?;
    (!password.is_empty()).then_some(password)
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes.get(i + 1..i + 3).and_then(|h| {
            std::str::from_utf8(h)
                .ok()
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        });
        match (bytes[i], hex) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hosts(target: &PostgresTarget) -> Vec<String> {
        target.hosts.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn a_multi_host_url_keeps_every_host() {
        let t = PostgresTarget::from_url(
            "postgres://app:s3cret@db1:5440,10.0.0.2:5441,[::1]:5442,db4/authd\
             ?target_session_attrs=read-write",
        )
        .unwrap();
        assert_eq!(
            hosts(&t),
            ["db1:5440", "10.0.0.2:5441", "[::1]:5442", "db4:5432"]
        );
        assert_eq!((t.user.as_str(), t.dbname.as_str()), ("app", "authd"));
        assert_eq!(t.password.expose(), "s3cret");
        let shown = format!("{t:?}");
        assert_eq!(
            shown,
            "postgres://app:***@db1:5440,10.0.0.2:5441,[::1]:5442,db4:5432/authd\
             ?target_session_attrs=read-write"
        );
        assert!(!shown.contains("s3cret"));
    }

    #[test]
    fn single_hosts_and_defaults() {
        let t = PostgresTarget::from_url("postgresql://localhost").unwrap();
        assert_eq!(hosts(&t), ["localhost:5432"]);
        assert_eq!((t.user.as_str(), t.dbname.as_str()), ("postgres", "authd"));
        // `any` is accepted: authd looks for the primary regardless.
        let t = PostgresTarget::from_url("postgres://u@h:6000/x?target_session_attrs=any").unwrap();
        assert_eq!(hosts(&t), ["h:6000"]);
        // A Unix socket directory given as the `host` parameter.
        let t = PostgresTarget::from_url("postgres://u@/x?host=%2Fvar%2Frun%2Fpostgresql").unwrap();
        assert_eq!(hosts(&t), ["/var/run/postgresql:5432"]);
    }

    #[test]
    fn malformed_lists_name_the_problem_not_the_password() {
        let cases = [
            (
                "postgres://u:hunter2@h1:5432,,h3:5432/db",
                "host 2 of 3 is empty",
            ),
            ("postgres://u:hunter2@h1:5432,/db", "host 2 of 2 is empty"),
            (
                "postgres://u:hunter2@h1:54x2,h2:5432/db",
                "host 1 of 2 (h1): port \"54x2\" is not a port number",
            ),
            (
                "postgres://u:hunter2@h1:5432,h2:99999/db",
                "host 2 of 2 (h2): port \"99999\"",
            ),
            ("postgres://u:hunter2@h1:0/db", "the host (h1): port \"0\""),
            (
                "postgres://u:hunter2@:5432,h2/db",
                "host 1 of 2 (\":5432\") has no host name",
            ),
            ("postgres://u:hunter2@[::1:5432/db", "unclosed `[`"),
            (
                "postgres://u:hunter2@h1,h2/db?target_session_attrs=read-only",
                "target_session_attrs=read-only",
            ),
            (
                "postgres://u:hunter2@h1,h2/db?target_session_attrs=primary",
                "target_session_attrs",
            ),
            ("postgres://u:hunter2@h1,h2/db?sslmod=disable", "sslmod"),
        ];
        for (url, expected) in cases {
            let error = PostgresTarget::from_url(url).unwrap_err();
            assert!(error.contains(expected), "{url}: {error}");
            assert!(!error.contains("hunter2"), "{url}: {error}");
        }
    }

    #[test]
    fn the_password_is_scrubbed_from_parser_messages() {
        assert_eq!(
            scrub("bad p%40ss and p@ss", "postgres://u:p%40ss@h/db"),
            "bad *** and ***"
        );
        assert_eq!(scrub("nothing", "postgres://u@h/db"), "nothing");
    }

    #[test]
    fn host_lists() {
        let list = parse_host_list("db1, db2:5433,[fe80::1]:6000,[::1]", 5444).unwrap();
        let shown: Vec<String> = list.iter().map(ToString::to_string).collect();
        assert_eq!(
            shown,
            ["db1:5444", "db2:5433", "[fe80::1]:6000", "[::1]:5444"]
        );
        let error = parse_host_list("db1,,db3", 5432).unwrap_err();
        assert!(error.contains("host 2 of 3 is empty"), "{error}");
        let error = parse_host_list("db1:abc", 5432).unwrap_err();
        assert!(error.contains("the host (db1): port \"abc\""), "{error}");
    }
}
