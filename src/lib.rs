//! authd: a JWT authentication service.
//!
//! Requests flow one way: [`http`] (hyper server, routing, JSON, errors) →
//! [`actors`] (supervisor, `UserActor`, `TokenActor`, `DbHealthActor`) →
//! [`store`] (PostgreSQL or SQLite). [`domain`] holds the types all of them
//! share; [`settings`] is read once and handed down; [`startup`] wires it
//! all together.

#![warn(unreachable_pub)]

pub mod actors;
mod allocator;
mod audit;
pub mod commands;
mod cutover;
pub mod domain;
mod fault;
mod hashing;
pub mod http;
mod keys;
mod secret;
mod sessions;
pub mod settings;
pub mod settings_report;
pub mod startup;
mod store;
pub mod telemetry;
