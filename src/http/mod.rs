//! The HTTP layer: the hyper server ([`server`]) with its lingering close
//! ([`linger`]), the route table and the handlers that turn requests into
//! actor calls ([`routes`]), the health probes ([`probes`]), JSON bodies in
//! and out ([`json`]), the client address behind trusted proxies
//! ([`client_addr`]), sign-in rate limits ([`rate_limit`]), and the one
//! mapping from failures to statuses ([`error`]). Nothing below this layer
//! sees a hyper type.

pub(crate) mod accounts;
pub(crate) mod client_addr;
pub(crate) mod error;
pub mod json;
pub(crate) mod linger;
pub(crate) mod probes;
pub(crate) mod rate_limit;
pub(crate) mod routes;
pub(crate) mod server;

pub use error::ApiError;
