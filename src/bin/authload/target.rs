//! Where the load goes: `--url` (repeatable, one per instance of a fleet)
//! turned into an address to connect to, the Host header and the request
//! paths of every operation.

use std::net::SocketAddr;
use std::sync::Arc;

use hyper::header::HeaderValue;
use hyper::Uri;

use crate::ops::{Op, OPS};

/// Where to connect and what to put in the Host header and request paths.
#[derive(Debug, PartialEq, Eq)]
pub struct Target {
    pub authority: String,
    pub connect: String,
    pub prefix: String,
}

pub fn parse_target(url: &str, base_path: &str) -> Result<Target, String> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| format!("--url must start with http:// (got {url:?})"))?;
    let (authority, path) = match rest.find(['/', '?', '#']) {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    if authority.is_empty() || authority.contains('@') {
        return Err(format!("--url has no usable host: {url:?}"));
    }
    if path.contains(['?', '#']) {
        return Err(format!("--url must not carry a query or fragment: {url:?}"));
    }
    // "[::1]" and "host" have no port; "[::1]:8000" and "host:8000" do.
    let has_port = match authority.rfind(']') {
        Some(bracket) => authority[bracket..].contains(':'),
        None => authority.contains(':'),
    };
    let connect = if has_port {
        authority.to_string()
    } else {
        format!("{authority}:80")
    };
    let mut prefix = String::new();
    for part in [path, base_path] {
        let part = part.trim_matches('/');
        if !part.is_empty() {
            prefix.push('/');
            prefix.push_str(part);
        }
    }
    Ok(Target {
        authority: authority.to_string(),
        connect,
        prefix,
    })
}

/// One resolved target, shared by the connections aimed at it.
pub struct TargetPlan {
    /// How reports name it: `http://host:port/prefix`.
    pub label: String,
    pub host: HeaderValue,
    uris: Vec<Uri>,
    pub addrs: Arc<[SocketAddr]>,
}

impl TargetPlan {
    pub async fn resolve(url: &str, base_path: &str) -> Result<TargetPlan, String> {
        let target = parse_target(url, base_path)?;
        let addrs: Arc<[SocketAddr]> = tokio::net::lookup_host(&target.connect)
            .await
            .map_err(|e| format!("cannot resolve {}: {e}", target.connect))?
            .collect::<Vec<_>>()
            .into();
        if addrs.is_empty() {
            return Err(format!("{} resolves to no address", target.connect));
        }
        let uris = OPS
            .iter()
            .map(|op| {
                format!("{}{}", target.prefix, op.path())
                    .parse::<Uri>()
                    .map_err(|e| format!("bad --base-path: {e}"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(TargetPlan {
            label: format!("http://{}{}", target.authority, target.prefix),
            host: HeaderValue::from_str(&target.authority).map_err(|e| format!("bad host: {e}"))?,
            uris,
            addrs,
        })
    }

    pub fn uri(&self, op: Op) -> Uri {
        self.uris[op.index()].clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets() {
        let t = parse_target("http://127.0.0.1:8000", "").unwrap();
        assert_eq!(t.connect, "127.0.0.1:8000");
        assert_eq!(t.prefix, "");
        let t = parse_target("http://example.com/api/", "/authd/").unwrap();
        assert_eq!(t.connect, "example.com:80");
        assert_eq!(t.authority, "example.com");
        assert_eq!(t.prefix, "/api/authd");
        let t = parse_target("http://[::1]:9000", "x").unwrap();
        assert_eq!(t.connect, "[::1]:9000");
        assert_eq!(t.prefix, "/x");
        assert!(parse_target("https://a:1", "").is_err());
        assert!(parse_target("http://a:1/?q", "").is_err());
    }
}
