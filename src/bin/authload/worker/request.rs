//! Building a connection's requests: bodies (credentials, a token) and the
//! bearer header, cached for the chain's own token until it changes.

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{HeaderValue, AUTHORIZATION, CONTENT_TYPE, HOST};
use hyper::Request;

use super::{Role, Worker};
use crate::cli::Scenario;
use crate::exchange::{credentials_body, token_body};
use crate::ops::Op;

impl Worker {
    /// The request for `op`: its body and bearer from the chain's own
    /// token, or from `presented` (a tab's, replay's or pool's).
    pub(super) fn request(&mut self, op: Op, presented: Option<&str>) -> Request<Full<Bytes>> {
        let own = matches!(self.role, Role::Chain);
        let body = match op {
            Op::Signup if self.plan.scenario == Scenario::Signup => {
                self.signups += 1;
                let email = format!(
                    "load-{}-{}-{}@example.com",
                    self.plan.run_id, self.id, self.signups
                );
                credentials_body(&email, &self.plan.password)
            }
            Op::Signup | Op::Signin => self.credentials.clone(),
            _ if op.takes_token_body() => {
                let token = if own {
                    self.token.as_deref()
                } else {
                    presented
                };
                token_body(token.unwrap_or_default())
            }
            _ => Bytes::new(),
        };
        let mut builder = Request::builder()
            .method(op.method())
            .uri(self.peer.uri(op))
            .header(HOST, self.peer.host.clone());
        if !body.is_empty() {
            builder = builder.header(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        }
        if op.takes_bearer() {
            let bearer = if own {
                self.bearer()
            } else {
                presented.and_then(|t| HeaderValue::from_str(&format!("Bearer {t}")).ok())
            };
            if let Some(bearer) = bearer {
                builder = builder.header(AUTHORIZATION, bearer);
            }
        }
        match builder.body(Full::new(body)) {
            Ok(request) => request,
            // Every part above is pre-validated; keep the type total anyway.
            Err(_) => Request::new(Full::new(Bytes::new())),
        }
    }

    fn bearer(&mut self) -> Option<HeaderValue> {
        if self.bearer.is_none() {
            let token = self.token.as_deref()?;
            self.bearer =
                HeaderValue::from_maybe_shared(Bytes::from(format!("Bearer {token}"))).ok();
        }
        self.bearer.clone()
    }

    pub(super) fn set_token(&mut self, token: &str) {
        let slot = self.token.get_or_insert_with(String::new);
        slot.clear();
        slot.push_str(token);
        self.bearer = None;
    }

    pub(super) fn forget_token(&mut self) {
        self.token = None;
        self.bearer = None;
    }
}
