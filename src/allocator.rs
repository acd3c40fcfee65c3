//! How authd uses the C allocator (glibc malloc, on Linux): resident memory
//! should follow the live data, not the highest load ever seen.
//!
//! glibc gives threads that allocate concurrently arenas of their own (up
//! to eight per core), and memory freed inside an arena's heap stays
//! resident until the top of that heap is free. A server whose tokio
//! workers, blocking-pool threads (SQLite) and hashing threads all allocate
//! under load keeps the peak of each arena after the load is gone. So
//! [`spawn_trimmer`] hands free memory back to the kernel every
//! [`TRIM_INTERVAL`] (`malloc_trim`, on the blocking pool: it locks each
//! arena while it walks it), so memory freed after a burst leaves within
//! seconds.
//!
//! Capping the arenas instead (`M_ARENA_MAX=2`, measured with the
//! environment variable `MALLOC_ARENA_MAX`) made it worse: after a sign-in
//! run 109 MiB instead of 52 MiB on PostgreSQL, 415 MiB instead of 56 MiB
//! on SQLite, as threads sharing an arena fragment it.
//!
//! On other platforms this does nothing.

use std::time::Duration;

/// How often free memory is returned to the kernel.
pub(crate) const TRIM_INTERVAL: Duration = Duration::from_secs(10);

/// Starts returning free memory to the kernel every [`TRIM_INTERVAL`],
/// until the task is aborted. `None` where there is nothing to trim.
pub(crate) fn spawn_trimmer() -> Option<tokio::task::JoinHandle<()>> {
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
