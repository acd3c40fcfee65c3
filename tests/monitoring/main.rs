//! What operators run beside authd, checked against a live authd: its
//! `/metrics` passes Prometheus' own linter, the shipped alerting rules
//! pass their unit tests, every metric the rules and the Grafana dashboard
//! query is one authd exports, and the real Prometheus scraping authd
//! fires the restart alert when an actor fails.
//!
//! A test binary of its own: the metrics recorder is global to a process,
//! so the tests here that start authd take turns
//! ([`exposition::one_app_at_a_time`]) and each reads its own app's gauges
//! and failures; the alert test sees its own failure and nobody else's.
//!
//! Prometheus' binaries (`promtool`, `prometheus`: Debian's `prometheus`
//! package) missing make these tests print `SKIPPED (...)` and pass, unless
//! `AUTHD_REQUIRE_PROMETHEUS=1`, which turns the skip into a failure.

#[macro_use]
#[path = "../support/mod.rs"]
mod support;

mod alerting;
mod exposition;
mod lint;
mod promql;
mod queries;
mod rules;
mod supervision;
mod tools;
