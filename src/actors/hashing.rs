//! The password-hashing pool used by `UserActor`.
//!
//! argon2id costs ~20 ms of CPU and 19 MiB per hash, so hashes run on tokio's
//! blocking threads (never on the async workers, never inside an actor's
//! loop), at most `threads` at a time. In front of that sits an explicit
//! queue bound: when more than `queue_limit` requests already wait, new ones
//! are refused at once ([`HashError::Overloaded`], HTTP 503) instead of
//! piling up memory and latency for everyone.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use argon2::{Algorithm, Argon2, Params, PasswordHasher, PasswordVerifier, Version};
use tokio::sync::Semaphore;

use crate::domain::Password;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HashError {
    #[error("too many password operations queued")]
    Overloaded,
    #[error("password hashing failed: {0}")]
    Internal(String),
}

pub struct HashPool {
    argon: Argon2<'static>,
    permits: Semaphore,
    waiting: AtomicUsize,
    queue_limit: usize,
    /// A hash of a random password with the configured parameters. Sign-ins
    /// for unknown e-mails verify against it, so they cost exactly what a
    /// wrong password costs and response time does not reveal which
    /// addresses have accounts.
    dummy_hash: String,
}

impl HashPool {
    pub fn new(
        m_kib: u32,
        t: u32,
        p: u32,
        threads: usize,
        queue_limit: usize,
    ) -> Result<Arc<Self>, HashError> {
        let params =
            Params::new(m_kib, t, p, None).map_err(|e| HashError::Internal(e.to_string()))?;
        let argon = Argon2::new(Algorithm::Argon2id, Version::V0x13, params);
        let random: [u8; 32] = rand::random();
        let dummy_hash = argon
            .hash_password(&random)
            .map_err(|e| HashError::Internal(e.to_string()))?
            .to_string();
        Ok(Arc::new(HashPool {
            argon,
            permits: Semaphore::new(threads.max(1)),
            waiting: AtomicUsize::new(0),
            queue_limit,
            dummy_hash,
        }))
    }

    /// Requests waiting for a hashing thread right now.
    pub fn queue_depth(&self) -> usize {
        self.waiting.load(Ordering::Relaxed)
    }

    /// Hashes a new password (PHC string, fresh random salt).
    pub async fn hash(self: &Arc<Self>, password: Password) -> Result<String, HashError> {
        self.run(move |argon| {
            argon
                .hash_password(password.expose())
                .map(|h| h.to_string())
                .map_err(|e| HashError::Internal(e.to_string()))
        })
        .await?
    }

    /// Checks `password` against `stored`, or against the dummy hash when
    /// there is no stored hash (unknown e-mail), which always fails.
    pub async fn verify(
        self: &Arc<Self>,
        password: Password,
        stored: Option<String>,
    ) -> Result<bool, HashError> {
        let known = stored.is_some();
        let hash = stored.unwrap_or_else(|| self.dummy_hash.clone());
        let matched = self
            .run(move |argon| {
                argon
                    .verify_password(password.expose(), hash.as_str())
                    .is_ok()
            })
            .await?;
        Ok(known && matched)
    }

    async fn run<T: Send + 'static>(
        self: &Arc<Self>,
        work: impl FnOnce(&Argon2<'static>) -> T + Send + 'static,
    ) -> Result<T, HashError> {
        // Count ourselves as waiting; refuse if the queue is already full.
        if self.waiting.fetch_add(1, Ordering::AcqRel) >= self.queue_limit {
            self.waiting.fetch_sub(1, Ordering::AcqRel);
            metrics::counter!(crate::telemetry::metrics::HASH_REJECTED).increment(1);
            return Err(HashError::Overloaded);
        }
        let permit = self.permits.acquire().await;
        self.waiting.fetch_sub(1, Ordering::AcqRel);
        let _permit = permit.map_err(|_| HashError::Internal("hash pool closed".into()))?;
        let pool = Arc::clone(self);
        tokio::task::spawn_blocking(move || work(&pool.argon))
            .await
            .map_err(|e| HashError::Internal(format!("hashing thread failed: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn hash_verify_and_dummy() {
        let pool = HashPool::new(1024, 1, 1, 2, 8).unwrap();
        let pw = || Password::parse("correct horse".into()).unwrap();
        let hash = pool.hash(pw()).await.unwrap();
        assert!(hash.starts_with("$argon2id$"));
        assert!(pool.verify(pw(), Some(hash.clone())).await.unwrap());
        let wrong = Password::parse("wrong horse".into()).unwrap();
        assert!(!pool.verify(wrong, Some(hash)).await.unwrap());
        assert!(!pool.verify(pw(), None).await.unwrap());
    }

    #[tokio::test]
    async fn refuses_when_queue_is_full() {
        let pool = HashPool::new(1024, 1, 1, 1, 1).unwrap();
        // Hold the only permit so the next request has to queue.
        let held = pool.permits.acquire().await.unwrap();
        let queued = {
            let pool = Arc::clone(&pool);
            tokio::spawn(
                async move { pool.hash(Password::parse("12345678".into()).unwrap()).await },
            )
        };
        while pool.queue_depth() == 0 {
            tokio::task::yield_now().await;
        }
        let refused = pool.hash(Password::parse("12345678".into()).unwrap()).await;
        assert_eq!(refused, Err(HashError::Overloaded));
        drop(held);
        assert!(queued.await.unwrap().is_ok());
    }
}
