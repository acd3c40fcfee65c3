//! The load generator, `authload`, driven as its users drive it: the real
//! binary run for a second or two against authd started on a random port
//! (or against a deliberately slow stand-in server), its summary, JSON
//! line, time series, exit status and HTML report checked. No speed is
//! asserted anywhere: only what must hold whatever the machine's speed.
//! The report is opened in headless Chromium (see `report.rs`).

#[macro_use]
#[path = "../support/mod.rs"]
mod support;

mod harness;
mod loops;
mod outputs;
mod pools;
mod report;
mod scenarios;
mod standin;
