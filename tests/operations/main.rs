//! Operating authd: supervision limits, metrics, rate limits, sign-in
//! timing, signing-key rotation, and several instances on one PostgreSQL.
//! Shares `tests/support` with the API suite.

#[macro_use]
#[path = "../support/mod.rs"]
mod support;

mod cluster;
mod faults;
mod keys;
mod limits;
mod memory;
mod observability;
mod shutdown;
