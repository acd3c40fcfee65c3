//! authd: a JWT authentication service.
//!
//! Requests flow one way: [`http`] (hyper server, routing, JSON, errors) →
//! [`actors`] (supervisor, `UserActor`, `TokenActor`, `DbHealthActor`) →
//! [`store`] (PostgreSQL or SQLite). [`domain`] holds the types all of them
//! share; [`settings`] is read once and handed down; [`startup`] wires it
//! all together.

pub mod actors;
pub mod allocator;
pub mod audit;
pub mod commands;
pub mod cutover;
pub mod domain;
pub mod fault;
pub mod hashing;
pub mod http;
pub mod keys;
pub mod secret;
pub mod sessions;
pub mod settings;
pub mod startup;
pub mod store;
pub mod telemetry;
