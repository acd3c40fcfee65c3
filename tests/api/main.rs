//! authd's integration suite: every scenario over real HTTP against a real
//! server (in-process through `Application`, or the real binary), each
//! scenario once on SQLite and once on PostgreSQL. See `tests/support` for
//! the helpers and for how a missing PostgreSQL is handled.

#[macro_use]
#[path = "../support/mod.rs"]
mod support;

mod accounts;
mod aliases;
mod authorize;
mod concurrency;
mod durability;
mod health;
mod password;
mod refresh;
mod revoke;
mod sessions;
mod supervisor;
