//! The subcommands of `authd` other than serving: `check-config`, `keys
//! rotate|list`, and the two measurements the benchmark script uses
//! (`hash-cost`, `cache-footprint`). Each returns `Err(message)` for the
//! binary to print and exit non-zero on.

use crate::settings::Settings;

type Outcome = Result<(), String>;

/// Prints the effective configuration as TOML, secrets masked.
pub fn check_config(settings: &Settings) -> Outcome {
    print!("{}", crate::settings_report::toml_listing(settings)?);
    Ok(())
}

/// Adds a new Ed25519 signing key and prints its `kid`.
pub async fn rotate_key(settings: &Settings) -> Outcome {
    let store = crate::store::connect(settings)
        .await
        .map_err(|e| e.to_string())?;
    let kid = crate::keys::add_key(&*store)
        .await
        .map_err(|e| e.to_string())?;
    println!("added signing key {kid}");
    Ok(())
}

/// Lists the stored signing keys, oldest first.
pub async fn list_keys(settings: &Settings) -> Outcome {
    let store = crate::store::connect(settings)
        .await
        .map_err(|e| e.to_string())?;
    for key in store.signing_keys().await.map_err(|e| e.to_string())? {
        println!(
            "{}\t{}\tcreated_at_ms={}",
            key.kid, key.algorithm, key.created_at_ms
        );
    }
    Ok(())
}

/// Times `rounds` argon2id hashes with the configured parameters on one
/// thread, exactly as the hashing pool computes them, and prints, as a JSON line, one hash's time and the hash-bound
/// sign-in limit (hashing threads / one hash's time).
pub fn hash_cost(settings: &Settings, rounds: u32) -> Outcome {
    let per_hash = crate::hashing::seconds_per_hash(
        settings.argon2_m_kib,
        settings.argon2_t,
        settings.argon2_p,
        rounds,
    )
    .map_err(|e| e.to_string())?;
    let threads = settings.hash_threads();
    // What checking a not-yet-upgraded old account's password costs: a
    // passlib bcrypt hash at the old service's cost (12).
    let old_hash = bcrypt::hash("benchmark-password", 12).map_err(|e| e.to_string())?;
    let started = std::time::Instant::now();
    let bcrypt_rounds = rounds.clamp(1, 5);
    for _ in 0..bcrypt_rounds {
        let _ = bcrypt::verify("benchmark-password", &old_hash);
    }
    let bcrypt_ms = started.elapsed().as_secs_f64() * 1000.0 / f64::from(bcrypt_rounds);
    println!(
        "{}",
        serde_json::json!({
            "hash_ms": per_hash * 1000.0,
            "hash_threads": threads,
            "hash_bound_per_s": threads as f64 / per_hash,
            "bcrypt12_verify_ms": bcrypt_ms,
            "signin_failure_floor_ms": settings.signin_failure_floor_ms,
        })
    );
    Ok(())
}

/// Prints the cut-over's progress and the old accounts whose e-mails differ
/// only by case, as JSON (see `crate::cutover`).
pub async fn legacy_report(settings: &Settings) -> Outcome {
    let store = crate::store::connect(settings)
        .await
        .map_err(|e| e.to_string())?;
    match crate::cutover::report(&*store)
        .await
        .map_err(|e| e.to_string())?
    {
        Some(report) => {
            println!(
                "{}",
                serde_json::to_string_pretty(&report).map_err(|e| e.to_string())?
            );
            Ok(())
        }
        None => Err(
            "no old service's tables are read here (PostgreSQL with public.users and \
                     public.access_tokens, and legacy_fastapi = true)"
                .into(),
        ),
    }
}

/// Fills `TokenActor`'s cache type with `sessions` entries and prints, as a
/// JSON line, the resident memory it took per session.
pub fn cache_footprint(sessions: usize) -> Outcome {
    use crate::domain::{now_ms, Session, SessionId, SessionState, UserId};
    use crate::sessions::SessionCache;
    fn resident_bytes() -> Result<u64, String> {
        let statm = std::fs::read_to_string("/proc/self/statm").map_err(|e| e.to_string())?;
        let pages: u64 = statm
            .split_whitespace()
            .nth(1)
            .and_then(|p| p.parse().ok())
            .ok_or("unexpected /proc/self/statm")?;
        Ok(pages * 4096)
    }
    let before = resident_bytes()?;
    let cache = SessionCache::new(sessions);
    let now = now_ms();
    for _ in 0..sessions {
        let session = Session::start(UserId::new_random(), 0, now, 604_800_000);
        cache.insert_committed(&session);
    }
    let after = resident_bytes()?;
    println!(
        "{}",
        serde_json::json!({
            "sessions": cache.len(),
            "bytes_per_session": after.saturating_sub(before) as f64 / sessions.max(1) as f64,
            "entry_size": std::mem::size_of::<(SessionId, SessionState)>(),
        })
    );
    Ok(())
}
