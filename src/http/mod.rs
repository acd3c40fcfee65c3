//! The HTTP layer: the hyper server ([`server`]), the route table and the
//! handlers that turn requests into actor calls ([`routes`]), JSON bodies in
//! and out ([`json`]), sign-in rate limits ([`rate_limit`]), and the one
//! mapping from failures to statuses ([`error`]). Nothing below this layer sees a hyper type.

pub mod error;
pub mod json;
pub mod rate_limit;
pub mod routes;
pub mod server;

pub use error::ApiError;
