//! How authd uses the C allocator (glibc malloc, on Linux): resident memory
//! should follow the live data, not the highest load ever seen.
//!
//! glibc gives every thread that allocates concurrently an arena of its own
//! (up to eight per core), and memory freed inside an arena's heap stays
//! resident until the top of that heap is free. A server whose tokio
//! workers, blocking-pool threads (SQLite) and hashing threads all allocate
//! ends up holding the peak of each arena forever: that was most of the
//! resident memory after a load test (111 MiB on PostgreSQL, 233 MiB on
//! SQLite, against 10 MiB idle). So:
//!
//! - [`tune`] caps the arenas at [`ARENA_MAX`] before any thread starts;
//!   fewer arenas means less memory stranded per thread, at the price of
//!   some lock contention inside malloc, invisible in the benchmark.
//! - [`spawn_trimmer`] hands free memory back to the kernel every
//!   [`TRIM_INTERVAL`] (`malloc_trim`, on the blocking pool: it locks each
//!   arena while it walks it), so memory freed after a burst leaves within
//!   seconds.
//!
//! On other platforms both do nothing.

use std::time::Duration;

/// Most malloc arenas (glibc's default: eight per core).
pub const ARENA_MAX: i32 = 2;
/// How often free memory is returned to the kernel.
pub const TRIM_INTERVAL: Duration = Duration::from_secs(10);

/// Caps the allocator's arenas. Call first thing in `main`, before any
/// thread is spawned.
pub fn tune() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets a tuning parameter of the allocator; it is
    // called before any other thread exists.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, ARENA_MAX);
    }
}

/// Starts returning free memory to the kernel every [`TRIM_INTERVAL`],
/// until the task is aborted. `None` where there is nothing to trim.
pub fn spawn_trimmer() -> Option<tokio::task::JoinHandle<()>> {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        Some(tokio::spawn(async {
            let mut tick = tokio::time::interval(TRIM_INTERVAL);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                // SAFETY: malloc_trim only releases free memory; it takes
                // the allocator's own locks.
                let _ = tokio::task::spawn_blocking(|| unsafe { libc::malloc_trim(0) }).await;
            }
        }))
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        None
    }
}
