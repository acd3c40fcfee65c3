//! The HTTP layer: the hyper server ([`server`]) with its lingering close
//! ([`linger`]), the route table ([`routes`]) and the handlers it names
//! ([`credentials`], [`tokens`], [`accounts`], [`operations`], [`probes`]),
//! the OpenAPI document generated from them ([`openapi`]), JSON bodies in
//! and out ([`json`]), the client address behind trusted proxies
//! ([`client_addr`]), sign-in rate limits ([`rate_limit`]), and the one
//! mapping from failures to statuses ([`error`]). Nothing below this layer
//! sees a hyper type.

pub(crate) mod accounts;
pub(crate) mod client_addr;
pub(crate) mod credentials;
pub(crate) mod error;
pub mod json;
pub(crate) mod linger;
pub(crate) mod openapi;
pub(crate) mod operations;
pub(crate) mod probes;
pub(crate) mod rate_limit;
pub(crate) mod routes;
pub(crate) mod server;
pub(crate) mod tokens;

pub use error::ApiError;
