//! The three ways a sign-in can fail — unknown e-mail (no hash at all), a
//! wrong password of a not-yet-upgraded old account (bcrypt cost 12) and a
//! wrong password of an authd account (argon2id) — take the same time:
//! each answers at the failure floor, by waiting rather than hashing.

use std::time::{Duration, Instant};

use crate::OldDeployment;

/// The floor for this test: well above bcrypt's cost in this build even
/// on a machine busy with the rest of the suite (the floor must exceed the
/// slowest hash to hide it; see `.ci/RESULTS.md`, "Failed sign-ins take
/// the same time").
const FLOOR: Duration = Duration::from_millis(1500);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_sign_ins_take_the_same_time() {
    let Some(old) = OldDeployment::create().await else {
        return;
    };
    old.add_user("old@example.com", "old-password", true).await;
    let app = old
        .start_authd(&[("AUTHD_SIGNIN_FAILURE_FLOOR_MS", "1500")])
        .await;
    app.signed_up("native@example.com").await;

    let mut samples: [Vec<Duration>; 3] = Default::default();
    let cases = [
        "nobody@example.com",
        "old@example.com",
        "native@example.com",
    ];
    for round in 0..6 {
        for (case, email) in cases.iter().enumerate() {
            let started = Instant::now();
            app.signin(email, "not the password")
                .await
                .error(401, "invalid_credentials");
            let took = started.elapsed();
            assert!(took >= FLOOR, "{email}: a failure answered in {took:?}");
            if round > 0 {
                samples[case].push(took);
            }
        }
    }
    let medians: Vec<f64> = samples
        .iter_mut()
        .map(|v| {
            v.sort();
            v[v.len() / 2].as_secs_f64()
        })
        .collect();
    let (low, high) = (
        medians.iter().cloned().fold(f64::MAX, f64::min),
        medians.iter().cloned().fold(0.0, f64::max),
    );
    assert!(
        high / low < 1.1,
        "median failure times differ: unknown {:.0} ms, bcrypt {:.0} ms, argon2id {:.0} ms",
        medians[0] * 1e3,
        medians[1] * 1e3,
        medians[2] * 1e3
    );
    // The old account was not adopted by failures, and still signs in.
    app.signin("old@example.com", "old-password")
        .await
        .token(200);
    drop(app);
    old.remove_role().await;
}
