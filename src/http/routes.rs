//! The route table: one row per endpoint, naming its method and path, the
//! old service's aliases of it, its label in logs and metrics, the
//! listeners that serve it and its handler. Lookup, 404 and 405 with
//! `Allow`, labels and dispatch all read [`ROUTES`]; the OpenAPI document
//! ([`super::openapi`]) is checked against it, so an endpoint is one row
//! plus one handler with its `#[utoipa::path]`.
//!
//! Handlers parse the request into domain types, call an actor handle and
//! map the answer to JSON; failures become [`ApiError`]s. They live by
//! what they serve: [`credentials`](super::credentials) (sign-up,
//! sign-in), [`tokens`](super::tokens) (refresh, revoke, authorize),
//! [`accounts`](super::accounts) (the caller's sessions, password,
//! account), [`operations`](super::operations) and
//! [`probes`](super::probes) (health, keys, metrics, this document).

use std::fmt;
use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Method, Request, Response};

use super::client_addr::TrustedProxies;
use super::json::BodyLimits;
use super::probes::Lifecycle;
use super::rate_limit::RateLimits;
use super::{accounts, credentials, operations, probes, tokens, ApiError};
use crate::actors::Services;
use crate::audit::Auditor;

/// What every handler can reach.
pub(crate) struct AppContext {
    pub services: Services,
    pub body: BodyLimits,
    /// Request line plus headers, in bytes; more gets 431.
    pub max_header_bytes: usize,
    /// Whose `Forwarded`/`X-Forwarded-For` name the client.
    pub proxies: TrustedProxies,
    pub lifecycle: Arc<Lifecycle>,
    /// `None` when rate limiting is off.
    pub rate_limits: Option<Arc<RateLimits>>,
    /// Audit events (whether they may name e-mails).
    pub auditor: Auditor,
}

/// What a handler answers: a response, or the failure `error` maps.
pub(crate) type Reply = Result<Response<Full<Bytes>>, ApiError>;

/// A handler, boxed so that every row has the same type. `client` is the
/// client's address (the peer, or what a trusted proxy says).
pub(crate) type Handler = for<'a> fn(
    request: Request<Incoming>,
    client: IpAddr,
    ctx: &'a AppContext,
) -> Pin<Box<dyn Future<Output = Reply> + Send + 'a>>;

/// Which listeners serve a row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Exposure {
    /// The API: the public listener only.
    Public,
    /// Health probes: every listener.
    Everywhere,
    /// `/metrics`: the admin listener when there is one, else the public.
    Metrics,
}

/// Which endpoints one listener serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Surface {
    /// `bind`: the API; `/metrics` too unless an admin listener exists.
    Public { metrics: bool },
    /// `admin_bind`: `/metrics` and the health probes only.
    Admin,
}

impl Surface {
    pub(crate) fn serves(self, exposure: Exposure) -> bool {
        match (self, exposure) {
            (_, Exposure::Everywhere) | (Surface::Admin, Exposure::Metrics) => true,
            (Surface::Public { metrics }, Exposure::Metrics) => metrics,
            (Surface::Public { .. }, Exposure::Public) => true,
            (Surface::Admin, Exposure::Public) => false,
        }
    }
}

/// One endpoint.
pub(crate) struct Route {
    pub method: Method,
    /// A literal path, or one with `{name}` segments that match any one
    /// segment (the handler reads it).
    pub path: &'static str,
    /// The old service's methods and paths for the same handler.
    pub aliases: &'static [(Method, &'static str)],
    /// A short, fixed label for logs and metrics.
    pub label: &'static str,
    pub exposure: Exposure,
    pub handler: Handler,
}

/// Boxes a handler `fn(Request<Incoming>, IpAddr, &AppContext)` into a
/// row's [`Handler`].
macro_rules! handler {
    ($f:path) => {
        |request, client, ctx| Box::pin($f(request, client, ctx))
    };
}

/// Every endpoint. The hot paths come first (the scan stops at a match).
pub(crate) static ROUTES: &[Route] = &[
    Route {
        method: Method::POST,
        path: "/refresh",
        aliases: &[(Method::PUT, "/auth/refresh")],
        label: "refresh",
        exposure: Exposure::Public,
        handler: handler!(tokens::refresh),
    },
    Route {
        method: Method::GET,
        path: "/authorize",
        aliases: &[],
        label: "authorize",
        exposure: Exposure::Public,
        handler: handler!(tokens::authorize),
    },
    Route {
        method: Method::GET,
        path: "/auth/authorize-token",
        aliases: &[],
        label: "authorize_token",
        exposure: Exposure::Public,
        handler: handler!(tokens::authorize_token),
    },
    Route {
        method: Method::POST,
        path: "/signin",
        aliases: &[(Method::POST, "/auth/signin")],
        label: "signin",
        exposure: Exposure::Public,
        handler: handler!(credentials::sign_in),
    },
    Route {
        method: Method::POST,
        path: "/signup",
        aliases: &[(Method::POST, "/auth/signup")],
        label: "signup",
        exposure: Exposure::Public,
        handler: handler!(credentials::sign_up),
    },
    Route {
        method: Method::POST,
        path: "/revoke",
        aliases: &[(Method::DELETE, "/auth/revoke")],
        label: "revoke",
        exposure: Exposure::Public,
        handler: handler!(tokens::revoke),
    },
    Route {
        method: Method::GET,
        path: "/sessions",
        aliases: &[],
        label: "sessions",
        exposure: Exposure::Public,
        handler: handler!(accounts::list_sessions),
    },
    Route {
        method: Method::DELETE,
        // Any id: a malformed one is the handler's 404, like an unknown one.
        path: "/sessions/{id}",
        aliases: &[],
        label: "session_delete",
        exposure: Exposure::Public,
        handler: handler!(accounts::delete_session),
    },
    Route {
        method: Method::POST,
        path: "/password",
        aliases: &[],
        label: "password",
        exposure: Exposure::Public,
        handler: handler!(accounts::change_password),
    },
    Route {
        method: Method::DELETE,
        path: "/account",
        aliases: &[],
        label: "account",
        exposure: Exposure::Public,
        handler: handler!(accounts::delete_account),
    },
    Route {
        method: Method::GET,
        path: "/health",
        aliases: &[(Method::GET, "/auth/health")],
        label: "health",
        exposure: Exposure::Everywhere,
        handler: handler!(operations::health),
    },
    Route {
        method: Method::GET,
        path: "/health/live",
        aliases: &[],
        label: "health_live",
        exposure: Exposure::Everywhere,
        handler: handler!(probes::live),
    },
    Route {
        method: Method::GET,
        path: "/health/ready",
        aliases: &[],
        label: "health_ready",
        exposure: Exposure::Everywhere,
        handler: handler!(probes::ready),
    },
    Route {
        method: Method::GET,
        path: "/.well-known/jwks.json",
        aliases: &[],
        label: "jwks",
        exposure: Exposure::Public,
        handler: handler!(operations::jwks),
    },
    Route {
        method: Method::GET,
        path: "/metrics",
        aliases: &[],
        label: "metrics",
        exposure: Exposure::Metrics,
        handler: handler!(operations::metrics),
    },
    Route {
        method: Method::GET,
        path: "/openapi.json",
        aliases: &[],
        label: "openapi",
        exposure: Exposure::Public,
        handler: handler!(operations::openapi),
    },
];

/// Finds the row for a method and path on `surface`: 404 for a path it
/// does not serve, 405 (with every method it does serve there) for a
/// served path with another method. Allocates nothing.
pub(crate) fn route(
    surface: Surface,
    method: &Method,
    path: &str,
) -> Result<&'static Route, ApiError> {
    let mut allow = Allow::default();
    for row in ROUTES.iter().filter(|row| surface.serves(row.exposure)) {
        let aliases = row.aliases.iter().map(|(m, p)| (m, *p));
        for (row_method, pattern) in std::iter::once((&row.method, row.path)).chain(aliases) {
            if path_matches(pattern, path) {
                if row_method == method {
                    return Ok(row);
                }
                allow.add(row_method);
            }
        }
    }
    if allow.is_empty() {
        Err(ApiError::NotFound)
    } else {
        Err(ApiError::MethodNotAllowed { allow })
    }
}

/// Whether `path` fits `pattern`, where a `{name}` segment matches any
/// one segment.
fn path_matches(pattern: &str, path: &str) -> bool {
    if pattern == path {
        return true;
    }
    if !pattern.contains('{') {
        return false;
    }
    let (mut want, mut got) = (pattern.split('/'), path.split('/'));
    loop {
        match (want.next(), got.next()) {
            (None, None) => return true,
            (Some(w), Some(g)) if w == g || w.starts_with('{') => {}
            _ => return false,
        }
    }
}

/// The methods a path answers, for a 405's `Allow` header.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Allow(u8);

/// The methods a row can name, in the order `Allow` lists them.
const METHODS: [Method; 5] = [
    Method::GET,
    Method::POST,
    Method::PUT,
    Method::PATCH,
    Method::DELETE,
];

impl Allow {
    fn add(&mut self, method: &Method) {
        if let Some(i) = METHODS.iter().position(|m| m == method) {
            self.0 |= 1 << i;
        }
    }

    fn is_empty(self) -> bool {
        self.0 == 0
    }
}

impl fmt::Display for Allow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let listed = METHODS
            .iter()
            .enumerate()
            .filter(|(i, _)| self.0 & (1 << i) != 0);
        for (n, (_, method)) in listed.enumerate() {
            if n > 0 {
                f.write_str(", ")?;
            }
            f.write_str(method.as_str())?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
