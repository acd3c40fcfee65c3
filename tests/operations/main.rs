//! Operating authd: supervision limits, metrics, rate limits, sign-in
//! timing, signing-key rotation, several instances on one PostgreSQL, the
//! edge limits, health probes and the admin listener, and the client address
//! behind trusted proxies.
//! Shares `tests/support` with the API suite.

#[macro_use]
#[path = "../support/mod.rs"]
mod support;

mod audit;
mod cluster;
mod edge;
mod faults;
mod keys;
mod limits;
mod memory;
mod observability;
mod probes;
mod proxies;
mod shutdown;
mod startup_log;
