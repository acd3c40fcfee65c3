//! The client's address: the TCP peer, or — only when that peer is one of
//! the `trusted_proxies` — the address the proxy reports in `Forwarded`
//! (RFC 7239) if present, else in `X-Forwarded-For`.
//!
//! Either header is a list of hops, the original client first and each
//! proxy appending the address it received the request from. Anything to
//! the left of the last proxy we trust was written by whoever reached that
//! proxy, so it may be forged: we walk from the right and take the first
//! hop that is not itself a trusted proxy. If every hop is trusted, the
//! left-most one is the client. A hop we cannot use (`unknown`, an
//! obfuscated `_name`, garbage) stops the walk and the peer stays the
//! client address, so a malformed header never moves the client anywhere
//! a forger would choose.
//!
//! From an untrusted peer both headers are ignored entirely: any client
//! can send them.

use std::net::{IpAddr, SocketAddr};

use hyper::header::{HeaderMap, FORWARDED};
use ipnet::IpNet;

const X_FORWARDED_FOR: &str = "x-forwarded-for";

/// The proxies whose forwarding headers are believed.
#[derive(Debug, Clone, Default)]
pub(crate) struct TrustedProxies {
    nets: Vec<IpNet>,
}

impl TrustedProxies {
    pub(crate) fn new(nets: Vec<IpNet>) -> Self {
        TrustedProxies { nets }
    }

    pub(crate) fn contains(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        self.nets.iter().any(|net| net.contains(&ip))
    }

    /// The client address of a request from `peer` carrying `headers`.
    pub(crate) fn client_addr(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        let peer = canonical(peer);
        if self.nets.is_empty() || !self.contains(peer) {
            return peer;
        }
        let hops = match forwarded_hops(headers) {
            Some(hops) => hops,
            None => match x_forwarded_for_hops(headers) {
                Some(hops) => hops,
                None => return peer,
            },
        };
        let mut client = peer;
        for hop in hops.iter().rev() {
            let Some(ip) = hop else {
                // An unusable hop: what lies left of it cannot be judged.
                return client;
            };
            client = *ip;
            if !self.contains(*ip) {
                return client;
            }
        }
        client
    }
}

/// `for=` of every element of every `Forwarded` header, in order; `None`
/// when there is no such header (or none has a `for=`).
fn forwarded_hops(headers: &HeaderMap) -> Option<Vec<Option<IpAddr>>> {
    let mut hops = Vec::new();
    let mut any = false;
    for value in headers.get_all(FORWARDED) {
        any = true;
        let Ok(text) = value.to_str() else {
            hops.push(None);
            continue;
        };
        for element in text.split(',') {
            let node = element.split(';').find_map(|pair| {
                let (name, value) = pair.split_once('=')?;
                name.trim()
                    .eq_ignore_ascii_case("for")
                    .then(|| value.trim().trim_matches('"'))
            });
            if let Some(node) = node {
                hops.push(parse_node(node));
            }
        }
    }
    (any && !hops.is_empty()).then_some(hops)
}

/// The comma-separated hops of every `X-Forwarded-For` header, in order.
fn x_forwarded_for_hops(headers: &HeaderMap) -> Option<Vec<Option<IpAddr>>> {
    let mut hops = Vec::new();
    for value in headers.get_all(X_FORWARDED_FOR) {
        match value.to_str() {
            Ok(text) => hops.extend(
                text.split(',')
                    .map(str::trim)
                    .filter(|hop| !hop.is_empty())
                    .map(parse_node),
            ),
            Err(_) => hops.push(None),
        }
    }
    (!hops.is_empty()).then_some(hops)
}

/// `192.0.2.1`, `192.0.2.1:4711`, `2001:db8::1`, `[2001:db8::1]:4711`.
fn parse_node(node: &str) -> Option<IpAddr> {
    if let Ok(ip) = node.parse::<IpAddr>() {
        return Some(canonical(ip));
    }
    if let Ok(addr) = node.parse::<SocketAddr>() {
        return Some(canonical(addr.ip()));
    }
    let bracketed = node.strip_prefix('[')?.split(']').next()?;
    bracketed.parse::<IpAddr>().ok().map(canonical)
}

/// An IPv4 address seen through an IPv6 socket (`::ffff:a.b.c.d`) is the
/// IPv4 address, so that `10.0.0.0/8` matches it.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::header::HeaderValue;

    fn proxies(nets: &[&str]) -> TrustedProxies {
        TrustedProxies::new(nets.iter().map(|n| n.parse().unwrap()).collect())
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(
                hyper::header::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        map
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn untrusted_peers_headers_are_ignored() {
        let trusted = proxies(&["10.0.0.0/8"]);
        let forged = headers(&[("x-forwarded-for", "1.2.3.4"), ("forwarded", "for=5.6.7.8")]);
        assert_eq!(
            trusted.client_addr(ip("203.0.113.9"), &forged),
            ip("203.0.113.9")
        );
        // Nobody is trusted by default.
        let nobody = TrustedProxies::default();
        assert_eq!(nobody.client_addr(ip("10.0.0.1"), &forged), ip("10.0.0.1"));
    }

    #[test]
    fn right_most_untrusted_hop_of_x_forwarded_for() {
        let trusted = proxies(&["10.0.0.0/8"]);
        // The client forged "1.2.3.4"; the proxy appended the real address.
        let h = headers(&[("x-forwarded-for", "1.2.3.4, 198.51.100.7, 10.0.0.5")]);
        assert_eq!(trusted.client_addr(ip("10.0.0.2"), &h), ip("198.51.100.7"));
        // Several headers are one list, in order.
        let h = headers(&[
            ("x-forwarded-for", "1.2.3.4"),
            ("x-forwarded-for", "198.51.100.8"),
        ]);
        assert_eq!(trusted.client_addr(ip("10.0.0.2"), &h), ip("198.51.100.8"));
        // Every hop trusted: the left-most is the client.
        let h = headers(&[("x-forwarded-for", "10.1.1.1, 10.2.2.2")]);
        assert_eq!(trusted.client_addr(ip("10.0.0.2"), &h), ip("10.1.1.1"));
        // No header: the proxy itself.
        assert_eq!(
            trusted.client_addr(ip("10.0.0.2"), &HeaderMap::new()),
            ip("10.0.0.2")
        );
        // Garbage stops the walk at the last trusted address.
        let h = headers(&[("x-forwarded-for", "198.51.100.7, nonsense")]);
        assert_eq!(trusted.client_addr(ip("10.0.0.2"), &h), ip("10.0.0.2"));
    }

    #[test]
    fn forwarded_wins_over_x_forwarded_for() {
        let trusted = proxies(&["10.0.0.0/8", "2001:db8::/32"]);
        let h = headers(&[
            ("x-forwarded-for", "192.0.2.99"),
            (
                "forwarded",
                "for=192.0.2.60;proto=http;by=203.0.113.43, for=\"[2001:db8:cafe::17]:4711\"",
            ),
        ]);
        // 2001:db8:cafe::17 is a trusted proxy: the hop before it counts.
        assert_eq!(trusted.client_addr(ip("10.0.0.2"), &h), ip("192.0.2.60"));
        let h = headers(&[("forwarded", "For=\"198.51.100.17:8080\"")]);
        assert_eq!(trusted.client_addr(ip("10.0.0.2"), &h), ip("198.51.100.17"));
        // An obfuscated or unknown node cannot be used.
        let h = headers(&[("forwarded", "for=unknown")]);
        assert_eq!(trusted.client_addr(ip("10.0.0.2"), &h), ip("10.0.0.2"));
        // A Forwarded header without for= falls back to X-Forwarded-For.
        let h = headers(&[
            ("forwarded", "proto=https"),
            ("x-forwarded-for", "192.0.2.5"),
        ]);
        assert_eq!(trusted.client_addr(ip("10.0.0.2"), &h), ip("192.0.2.5"));
    }

    #[test]
    fn ipv4_mapped_peers_match_ipv4_blocks() {
        let trusted = proxies(&["127.0.0.0/8"]);
        let h = headers(&[("x-forwarded-for", "192.0.2.1")]);
        assert_eq!(
            trusted.client_addr(ip("::ffff:127.0.0.1"), &h),
            ip("192.0.2.1")
        );
    }
}
