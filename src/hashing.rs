//! The password-hashing pool used by `UserActor` (argon2id, and bcrypt for
//! the old service's hashes).
//!
//! argon2id costs ~20 ms of CPU and 19 MiB per hash. Hashes run on a fixed
//! set of dedicated threads (never on the async workers, never inside an
//! actor's loop), one hash per thread at a time:
//!
//! - Each thread allocates argon2's working memory (19 MiB) once and reuses
//!   it for every hash. Letting argon2 allocate per hash left ~19 MiB
//!   resident after *each* hash (glibc does not reuse large 64-byte-aligned
//!   blocks well): 10 sign-ups took resident memory from 8 to 199 MiB, and a
//!   benchmark past 7 GB.
//! - The threads run at a lower scheduling priority (`hash_thread_nice`), so
//!   a sign-in storm that saturates hashing takes only the CPU that refresh
//!   and authorize traffic leave idle.
//! - In front of the threads sits an explicit queue bound: when
//!   `queue_limit` requests already wait, new ones are refused at once
//!   ([`HashError::Overloaded`], HTTP 503) instead of piling up memory and
//!   latency for everyone.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};

use argon2::password_hash::phc::{Output, ParamsString, PasswordHash, Salt};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use tokio::sync::oneshot;

use crate::domain::Password;
use crate::fault::Fault;

#[derive(Debug, Clone, thiserror::Error)]
pub enum HashError {
    /// The queue in front of the threads is full (HTTP 503).
    #[error("too many password operations queued")]
    Overloaded,
    /// The threads are gone or argon2 refused its parameters.
    #[error("password hashing {0}")]
    Fault(#[from] Fault),
}

impl HashError {
    fn internal(source: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        HashError::Fault(Fault::internal(source))
    }
}

enum Job {
    Hash(Password, oneshot::Sender<Result<String, HashError>>),
    Verify(Password, String, oneshot::Sender<bool>),
    /// The old service's passlib bcrypt hash (`$2b$12$...`).
    VerifyBcrypt(Password, String, oneshot::Sender<bool>),
}

pub(crate) struct HashPool {
    jobs: SyncSender<Job>,
    waiting: Arc<AtomicUsize>,
}

impl HashPool {
    /// Starts `threads` hashing threads at niceness `nice` (Linux; ignored
    /// elsewhere) behind a queue of at most `queue_limit` jobs.
    pub(crate) fn new(
        m_kib: u32,
        t: u32,
        p: u32,
        threads: usize,
        queue_limit: usize,
        nice: i32,
    ) -> Result<Arc<Self>, HashError> {
        let params =
            Params::new(m_kib, t, p, None).map_err(|e| HashError::internal(e.to_string()))?;
        let (jobs, inbox) = sync_channel::<Job>(queue_limit.max(1));
        let inbox = Arc::new(Mutex::new(inbox));
        let waiting = Arc::new(AtomicUsize::new(0));
        for i in 0..threads.max(1) {
            let (params, inbox, waiting) =
                (params.clone(), Arc::clone(&inbox), Arc::clone(&waiting));
            std::thread::Builder::new()
                .name(format!("authd-hash-{i}"))
                .spawn(move || work(Hasher::new(params), &inbox, &waiting, nice))
                .map_err(|e| HashError::internal(format!("cannot start a hashing thread: {e}")))?;
        }
        publish_depth(0);
        Ok(Arc::new(HashPool { jobs, waiting }))
    }

    /// Requests waiting for a hashing thread right now.
    #[cfg(test)]
    fn queue_depth(&self) -> usize {
        self.waiting.load(Ordering::Relaxed)
    }

    /// Hashes a new password (PHC string, fresh random salt).
    pub(crate) async fn hash(&self, password: Password) -> Result<String, HashError> {
        let (done, result) = oneshot::channel();
        self.submit(Job::Hash(password, done))?;
        result.await.map_err(|_| stopped())?
    }

    /// Checks `password` against a stored argon2id hash. Unknown e-mails
    /// are never hashed: a failed sign-in is answered no earlier than
    /// `signin_failure_floor_ms` after it arrived (`UserActor`), which is
    /// what makes an unknown address and a wrong password cost the same.
    pub(crate) async fn verify(
        &self,
        password: Password,
        stored: String,
    ) -> Result<bool, HashError> {
        let (done, result) = oneshot::channel();
        self.submit(Job::Verify(password, stored, done))?;
        result.await.map_err(|_| stopped())
    }

    /// Checks `password` against an old service's bcrypt hash, on the same
    /// bounded threads (cost 12 is ~215 ms of CPU: never on the async
    /// workers). A malformed hash never matches.
    pub(crate) async fn verify_bcrypt(
        &self,
        password: Password,
        stored: String,
    ) -> Result<bool, HashError> {
        let (done, result) = oneshot::channel();
        self.submit(Job::VerifyBcrypt(password, stored, done))?;
        result.await.map_err(|_| stopped())
    }

    fn submit(&self, job: Job) -> Result<(), HashError> {
        publish_depth(self.waiting.fetch_add(1, Ordering::AcqRel) + 1);
        match self.jobs.try_send(job) {
            Ok(()) => Ok(()),
            Err(e) => {
                publish_depth(self.waiting.fetch_sub(1, Ordering::AcqRel) - 1);
                match e {
                    TrySendError::Full(_) => {
                        metrics::counter!(crate::telemetry::metrics::HASH_REJECTED).increment(1);
                        Err(HashError::Overloaded)
                    }
                    TrySendError::Disconnected(_) => Err(stopped()),
                }
            }
        }
    }
}

/// The pool publishes its own queue-depth gauge, whenever the depth moves.
fn publish_depth(depth: usize) {
    metrics::gauge!(crate::telemetry::metrics::HASH_QUEUE).set(depth as f64);
}

fn stopped() -> HashError {
    HashError::internal("hashing threads stopped")
}

/// argon2id with one working-memory buffer, reused for every hash.
struct Hasher {
    params: Params,
    memory: Vec<Block>,
}

impl Hasher {
    /// The buffer is allocated at the first hash, not here: an idle
    /// server does not hold 19 MiB per hashing thread.
    fn new(params: Params) -> Self {
        Hasher {
            params,
            memory: Vec::new(),
        }
    }

    fn memory(&mut self) -> &mut [Block] {
        if self.memory.len() != self.params.block_count() {
            self.memory = vec![Block::new(); self.params.block_count()];
        }
        &mut self.memory[..]
    }

    /// A PHC string (`$argon2id$v=19$m=..,t=..,p=..$salt$hash`) of
    /// `password` with a fresh random salt: the same format argon2's own
    /// `hash_password` produces, so either can verify the other's.
    fn hash(&mut self, password: &[u8]) -> Result<String, HashError> {
        let fail = |e: &dyn std::fmt::Display| HashError::internal(e.to_string());
        let salt: [u8; 16] = rand::random();
        let mut out = [0u8; Params::DEFAULT_OUTPUT_LEN];
        Argon2::new(Algorithm::Argon2id, Version::V0x13, self.params.clone())
            .hash_password_into_with_memory(password, &salt, &mut out, self.memory())
            .map_err(|e| fail(&e))?;
        let phc = PasswordHash {
            algorithm: argon2::ARGON2ID_IDENT,
            version: Some(Version::V0x13.into()),
            params: ParamsString::try_from(&self.params).map_err(|e| fail(&e))?,
            salt: Some(Salt::new(&salt).map_err(|e| fail(&e))?),
            hash: Some(Output::new(&out).map_err(|e| fail(&e))?),
        };
        Ok(phc.to_string())
    }

    /// Whether `password` matches the PHC string `stored`; the outputs are
    /// compared in constant time (`Output`'s equality). A hash made with
    /// other parameters (settings changed since) still verifies, with a
    /// buffer of its own size.
    fn verify(&mut self, password: &[u8], stored: &str) -> bool {
        let Ok(parsed) = PasswordHash::new(stored) else {
            return false;
        };
        let (Some(salt), Some(expected)) = (&parsed.salt, &parsed.hash) else {
            return false;
        };
        let (Ok(algorithm), Ok(params)) = (
            Algorithm::try_from(parsed.algorithm.as_str()),
            Params::try_from(&parsed),
        ) else {
            return false;
        };
        let Ok(version) = Version::try_from(parsed.version.unwrap_or(Version::V0x13.into())) else {
            return false;
        };
        let argon = Argon2::new(algorithm, version, params.clone());
        let mut out = vec![0u8; expected.len()];
        let computed = if params == self.params {
            argon.hash_password_into_with_memory(password, salt, &mut out, self.memory())
        } else {
            let mut memory = vec![Block::new(); params.block_count()];
            argon.hash_password_into_with_memory(password, salt, &mut out, &mut memory[..])
        };
        computed.is_ok() && Output::new(&out).is_ok_and(|computed| computed == *expected)
    }
}

/// Seconds one hash takes on this thread with these parameters, the way the
/// pool's threads hash (reused buffer), averaged over `rounds`.
pub(crate) fn seconds_per_hash(m_kib: u32, t: u32, p: u32, rounds: u32) -> Result<f64, HashError> {
    let params = Params::new(m_kib, t, p, None).map_err(|e| HashError::internal(e.to_string()))?;
    let mut hasher = Hasher::new(params);
    hasher.hash(b"warm-up: allocate the buffer")?;
    let rounds = rounds.max(1);
    let started = std::time::Instant::now();
    for i in 0..rounds {
        hasher.hash(format!("benchmark-password-{i}").as_bytes())?;
    }
    Ok(started.elapsed().as_secs_f64() / f64::from(rounds))
}

/// One hashing thread: takes jobs until the pool is dropped.
fn work(mut hasher: Hasher, inbox: &Mutex<Receiver<Job>>, waiting: &AtomicUsize, nice: i32) {
    lower_priority(nice);
    loop {
        let job = {
            let Ok(inbox) = inbox.lock() else { return };
            match inbox.recv() {
                Ok(job) => job,
                Err(_) => return,
            }
        };
        publish_depth(waiting.fetch_sub(1, Ordering::AcqRel) - 1);
        match job {
            Job::Hash(password, done) => {
                let _ = done.send(hasher.hash(password.expose()));
            }
            Job::Verify(password, stored, done) => {
                let _ = done.send(hasher.verify(password.expose(), &stored));
            }
            Job::VerifyBcrypt(password, stored, done) => {
                // bcrypt's own comparison is constant-time; like passlib it
                // uses the first 72 bytes of the password.
                let _ = done.send(bcrypt::verify(password.expose(), &stored).unwrap_or(false));
            }
        }
    }
}

#[cfg(target_os = "linux")]
fn lower_priority(nice: i32) {
    if nice != 0 {
        // On Linux, PRIO_PROCESS with id 0 sets the calling *thread*'s nice.
        // SAFETY: setpriority has no memory-safety preconditions.
        let _ = unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, nice) };
    }
}

#[cfg(not(target_os = "linux"))]
fn lower_priority(_nice: i32) {}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn hash_and_verify() {
        let pool = HashPool::new(1024, 1, 1, 2, 8, 0).unwrap();
        let pw = || Password::parse("correct horse".into()).unwrap();
        let hash = pool.hash(pw()).await.unwrap();
        assert!(hash.starts_with("$argon2id$"));
        assert!(pool.verify(pw(), hash.clone()).await.unwrap());
        let wrong = Password::parse("wrong horse".into()).unwrap();
        assert!(!pool.verify(wrong, hash).await.unwrap());
        assert!(!pool.verify(pw(), "not a phc string".into()).await.unwrap());
    }

    #[test]
    fn compatible_with_argon2s_own_format() {
        use argon2::{PasswordHasher, PasswordVerifier};
        let params = Params::new(1024, 1, 1, None).unwrap();
        let mut ours = Hasher::new(params.clone());
        let theirs = Argon2::new(Algorithm::Argon2id, Version::V0x13, params);
        let ours_hash = ours.hash(b"password-one").unwrap();
        assert!(theirs
            .verify_password(b"password-one", ours_hash.as_str())
            .is_ok());
        assert!(theirs
            .verify_password(b"password-two", ours_hash.as_str())
            .is_err());
        let their_hash = theirs.hash_password(b"password-one").unwrap().to_string();
        assert!(ours.verify(b"password-one", &their_hash));
        assert!(!ours.verify(b"password-two", &their_hash));
        // Other parameters than the configured ones still verify.
        let other = Argon2::new(
            Algorithm::Argon2id,
            Version::V0x13,
            Params::new(2048, 2, 1, None).unwrap(),
        )
        .hash_password(b"password-one")
        .unwrap()
        .to_string();
        assert!(ours.verify(b"password-one", &other));
        assert!(!ours.verify(b"password-one", "not a phc string"));
    }

    #[tokio::test]
    async fn refuses_when_queue_is_full() {
        // One slow thread (big memory cost), queue of one.
        let pool = HashPool::new(65536, 3, 1, 1, 1, 0).unwrap();
        let pw = || Password::parse("12345678".into()).unwrap();
        let mut pending = Vec::new();
        let mut refused = 0;
        for _ in 0..6 {
            let pool = Arc::clone(&pool);
            pending.push(tokio::spawn(async move { pool.hash(pw()).await }));
        }
        for p in pending {
            match p.await.unwrap() {
                Ok(_) => {}
                Err(HashError::Overloaded) => refused += 1,
                Err(e) => panic!("{e}"),
            }
        }
        assert!(refused >= 1, "a full queue must refuse");
        assert_eq!(pool.queue_depth(), 0);
    }
}
