//! authd: a JWT authentication service. This page is the map of the code;
//! the README says how to run and operate it.
//!
//! # Layers
//!
//! Requests flow one way, and no layer reaches back up:
//!
//! ```text
//!  client ─HTTP─▶ http::server ─▶ route table ─▶ handler ─▶ actor handle ─message─▶ actor ─▶ Store
//!                 (hyper-util)    (http)         (http)     (UserHandle,            (UserActor,   (PostgreSQL,
//!                                                            TokenHandle,            TokenActor,   SQLite)
//!                                                            HealthHandle)           DbHealthActor)
//!                                                                                    │
//!                                                  sessions: SessionCache, the session writer, the change feed
//! ```
//!
//! - [`http`]: the hyper server (public and admin listeners, HTTP/1.1 and
//!   HTTP/2, header, body and connection limits, graceful drain), the route
//!   table, the handlers (request → domain types → actor call → JSON), the
//!   client address behind trusted proxies, rate limits, and `ApiError`,
//!   the one mapping from failures to statuses and JSON errors.
//! - [`actors`]: the supervisor and its children. `UserActor` signs up and
//!   signs in (hashing on a bounded pool of blocking threads, `hashing`);
//!   `TokenActor` issues, rotates, revokes and authorizes from its cache;
//!   `DbHealthActor` pings the store for `/health`. Callers reach a child
//!   through a handle whose slot the supervisor refills after a restart.
//! - `sessions`: `SessionCache`, the committed state of cached sessions; the
//!   session writer (group commit: one statement per batch, folded into the
//!   cache before anyone is answered); the feed that applies other
//!   instances' changes (LISTEN/NOTIFY, and a catch-up read).
//! - `store`: the `Store` trait and its PostgreSQL and SQLite backends, the
//!   embedded migrations (`sql/`), and reading the FastAPI service's tables.
//! - [`domain`]: e-mail, password, claims, the session's refresh state
//!   machine, token signing and verification; used by every layer, using
//!   none of them.
//! - [`settings`] is read once at start-up and handed down; [`startup`]
//!   builds the application from it and runs it until shutdown; `main.rs`
//!   only parses the command line, loads settings, starts [`telemetry`]
//!   and runs. [`commands`] holds the other subcommands (`check-config`,
//!   `keys`, `legacy-report`, the bench's `hash-cost` and `cache-footprint`).
//! - Beside them: `keys` (the HS256 secret or the Ed25519 key set), `audit`
//!   (audit events and their counter), `cutover` (progress of the cut-over
//!   from the FastAPI service), `fault` (`Fault`: the one infrastructure
//!   failure every layer's error carries), `allocator` (returning freed
//!   memory to the kernel), `secret` (settings that never print).
//! - `src/bin/authload/`: the load generator, a binary of its own.
//!
//! # Who owns what
//!
//! - Cached session state belongs to `SessionCache`: its map is private,
//!   and `TokenActor`, the session writer and the feed change it only
//!   through its named methods. The database is the truth; the cache holds
//!   only what the database acknowledged.
//! - Each gauge is published by its owner (the cache its size, the hashing
//!   pool its queue, the PostgreSQL store its pool, `DbHealthActor` the
//!   database's health); `/metrics` only renders.
//! - Each timeout has one owner: every store operation is bounded by the
//!   store (`db_timeout_ms`), actor calls by the actor's slot
//!   (`request_timeout_ms`), the server's reads by [`http`]'s server.
//!   Callers never wrap a call in a timeout of their own.
//! - Failures travel as typed errors carrying a `Fault` up to `ApiError`,
//!   the only place a failure becomes a status.
//!
//! # Following a request
//!
//! A refresh: the route table picks the handler; the handler decodes the
//! body and calls the token handle, which verifies the JWT in the caller's
//! task and sends one message to `TokenActor`; the actor decides (rotate,
//! duplicate within the grace window, reuse, refuse) from its cache, so two
//! refreshes of one token on one instance can never both rotate it, and
//! hands the write to the session writer; the writer commits the batch
//! through the `Store` and answers each caller once its write is durable.
//!
//! # Supervision
//!
//! The children are linked to one supervisor, which restarts a failed one
//! (at once, then with doubling backoff), logs each failure at WARN
//! (`event="actor_failed"`) and gives up past `restart_limit` failures in
//! `restart_window_secs`; authd then exits non-zero. While a child is down
//! its slot is empty and requests for it get 503 at once.
//!
//! # Visibility
//!
//! Modules are crate-private and items `pub(crate)` unless `main.rs`, the
//! tests or `authload` need them; the crate is built with
//! `#![warn(unreachable_pub)]` and CI denies warnings, so the compiler
//! holds the layering.

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
