//! Rate limits wherever a password is checked (sign-in, password change,
//! account deletion) and at sign-up: per client address (governor's GCRA
//! limiter, every attempt counts) and per account (e-mail; a GCRA of our
//! own, because only *failed* password checks count against it).
//!
//! Passwords are guessed per account from many addresses, or across many
//! accounts from one address; each limit catches one of the two. An
//! attempt on an account takes a cell of its budget before the password is
//! checked (so a burst of parallel guesses cannot all slip through) and
//! gives it back when the password was right ([`RateLimits::refund`]): a
//! user who signs in often is never limited, a guesser is. A refused
//! request gets 429 with `Retry-After` (whole seconds, rounded up). Load
//! tests switch the limits off with `rate_limit_enabled = false`.
//!
//! **Memory is bounded.** Each limiter holds one entry per key seen within
//! the last minute (stale keys are swept every minute), and at most
//! `rate_limit_max_keys` entries. Keys are fixed-size: an IPv4 address, an
//! IPv6 address's /64 prefix (one host owns a whole /64, so keying by full
//! address would let one host mint 2^64 keys), and a keyed 64-bit hash of
//! the e-mail (no e-mail is kept). An entry costs about 32 bytes, so the
//! default cap of 200,000 keys is about 6–8 MB per limiter at worst. A
//! table that is full even after a sweep refuses *new* keys with 429 until
//! the next sweep frees room (fail closed: flooding the table with fresh
//! addresses must neither grow memory nor switch the limit off).
//!
//! The client address is passed in: the TCP peer, or what a proxy listed in
//! `trusted_proxies` reports (`http::client_addr`); forwarding headers from
//! anyone else are ignored, since any client can forge them.

use std::hash::{BuildHasher, RandomState};
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use dashmap::DashMap;
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota};

/// How often keys not seen for a minute are dropped.
const SWEEP_INTERVAL: Duration = Duration::from_secs(60);

pub(crate) struct RateLimits {
    per_ip: DefaultKeyedRateLimiter<u128>,
    per_account: AccountLimiter,
    /// Keys the e-mail hash per process, so nobody can aim collisions.
    account_hasher: RandomState,
    max_keys: usize,
    clock: DefaultClock,
}

/// Which limit refused, and when to come back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Limited {
    pub retry_after: Duration,
}

impl RateLimits {
    /// `None` when disabled or a rate is zero (no limit).
    pub(crate) fn new(
        enabled: bool,
        per_ip_per_minute: u32,
        per_account_per_minute: u32,
        max_keys: usize,
    ) -> Option<Arc<Self>> {
        if !enabled {
            return None;
        }
        let quota = |n: u32| NonZeroU32::new(n).map(Quota::per_minute);
        let (Some(ip), Some(account)) = (quota(per_ip_per_minute), quota(per_account_per_minute))
        else {
            return None;
        };
        let limits = Arc::new(RateLimits {
            per_ip: DefaultKeyedRateLimiter::keyed(ip),
            per_account: AccountLimiter::new(account),
            account_hasher: RandomState::new(),
            max_keys: max_keys.max(1),
            clock: DefaultClock::default(),
        });
        let sweeper = Arc::downgrade(&limits);
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(SWEEP_INTERVAL);
            loop {
                ticks.tick().await;
                let Some(limits) = sweeper.upgrade() else {
                    break;
                };
                limits.sweep();
            }
        });
        Some(limits)
    }

    /// Counts one attempt by `ip` on `account`; refuses if either is over
    /// its rate, or if a limiter's table is full. The account's cell is
    /// given back by [`refund`](Self::refund) when the password was right.
    pub(crate) fn check(&self, ip: IpAddr, account: &str) -> Result<(), Limited> {
        let full = Limited {
            retry_after: SWEEP_INTERVAL,
        };
        if self.per_ip.len() >= self.max_keys || self.per_account.len() >= self.max_keys {
            self.sweep();
            if self.per_ip.len() >= self.max_keys || self.per_account.len() >= self.max_keys {
                ::metrics::counter!(crate::telemetry::metrics::RATE_LIMIT_TABLE_FULL).increment(1);
                return Err(full);
            }
        }
        let now = self.clock.now();
        let account_key = self.account_hasher.hash_one(account);
        self.per_ip
            .check_key(&ip_key(ip))
            .map_err(|not_until| Limited {
                retry_after: not_until.wait_time_from(now),
            })?;
        self.per_account
            .take(account_key)
            .map_err(|retry_after| Limited { retry_after })
    }

    /// Counts one attempt by `ip` only (sign-up checks no password).
    pub(crate) fn check_address(&self, ip: IpAddr) -> Result<(), Limited> {
        if self.per_ip.len() >= self.max_keys {
            self.sweep();
            if self.per_ip.len() >= self.max_keys {
                ::metrics::counter!(crate::telemetry::metrics::RATE_LIMIT_TABLE_FULL).increment(1);
                return Err(Limited {
                    retry_after: SWEEP_INTERVAL,
                });
            }
        }
        let now = self.clock.now();
        self.per_ip
            .check_key(&ip_key(ip))
            .map_err(|not_until| Limited {
                retry_after: not_until.wait_time_from(now),
            })
    }

    /// Gives back the cell an attempt on `account` took: its password was
    /// right, and only failed checks count against an account.
    pub(crate) fn refund(&self, account: &str) {
        self.per_account
            .give_back(self.account_hasher.hash_one(account));
    }

    /// Keys currently held by the (address, account) limiters.
    #[cfg(test)]
    fn keys(&self) -> (usize, usize) {
        (self.per_ip.len(), self.per_account.len())
    }

    /// Drops keys whose limit has fully recovered, and returns the memory.
    fn sweep(&self) {
        self.per_ip.retain_recent();
        self.per_account.retain_recent();
        self.per_ip.shrink_to_fit();
    }
}

/// A keyed GCRA (the algorithm governor uses) that can give a cell back.
/// Each key holds its *theoretical arrival time* in nanoseconds since the
/// limiter started; an attempt is allowed while that lies at most `burst`
/// ahead of now, and moves it one `interval` further.
struct AccountLimiter {
    tats: DashMap<u64, u64>,
    interval: u64,
    burst: u64,
    epoch: std::time::Instant,
}

impl AccountLimiter {
    fn new(quota: Quota) -> Self {
        let interval = quota.replenish_interval().as_nanos() as u64;
        let cells = u64::from(quota.burst_size().get());
        AccountLimiter {
            tats: DashMap::new(),
            interval,
            burst: interval.saturating_mul(cells.saturating_sub(1)),
            epoch: std::time::Instant::now(),
        }
    }

    fn now(&self) -> u64 {
        self.epoch.elapsed().as_nanos() as u64
    }

    fn take(&self, key: u64) -> Result<(), Duration> {
        let now = self.now();
        let mut tat = self.tats.entry(key).or_insert(now);
        let start = (*tat).max(now);
        let ahead = start - now;
        if ahead > self.burst {
            return Err(Duration::from_nanos(ahead - self.burst));
        }
        *tat = start + self.interval;
        Ok(())
    }

    fn give_back(&self, key: u64) {
        if let Some(mut tat) = self.tats.get_mut(&key) {
            *tat = tat.saturating_sub(self.interval);
        }
    }

    fn len(&self) -> usize {
        self.tats.len()
    }

    /// Drops keys whose budget is whole again.
    fn retain_recent(&self) {
        let now = self.now();
        self.tats.retain(|_, tat| *tat > now);
        self.tats.shrink_to_fit();
    }
}

/// An IPv4 address as itself; an IPv6 address by its /64 prefix.
fn ip_key(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(v4) => u128::from(u32::from(v4)),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => u128::from(u32::from(v4)),
            None => u128::from(v6) & !u128::from(u64::MAX),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn per_account_and_per_ip() {
        let limits = RateLimits::new(true, 5, 2, 1000).unwrap();
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        let a = "a@example.com";
        let b = "b@example.com";
        assert!(limits.check(ip, a).is_ok());
        assert!(limits.check(ip, a).is_ok());
        let refused = limits.check(ip, a).unwrap_err();
        assert!(refused.retry_after > Duration::ZERO);
        // Another account from the same address still has room...
        assert!(limits.check(ip, b).is_ok());
        assert!(limits.check(ip, b).is_ok());
        // ...until the address's own budget (5) is spent.
        let other = "c@example.com";
        assert!(limits.check(ip, other).is_err());
        assert!(RateLimits::new(false, 5, 2, 1000).is_none());
    }

    #[tokio::test]
    async fn refunded_attempts_do_not_count() {
        let limits = RateLimits::new(true, 1000, 2, 1000).unwrap();
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        let a = "a@example.com";
        for _ in 0..10 {
            assert!(limits.check(ip, a).is_ok());
            limits.refund(a);
        }
        assert!(limits.check(ip, a).is_ok());
        assert!(limits.check(ip, a).is_ok());
        let refused = limits.check(ip, a).unwrap_err();
        assert!(refused.retry_after > Duration::ZERO);
        assert!(refused.retry_after <= Duration::from_secs(30));
        assert!(limits.check_address(ip).is_ok());
    }

    #[tokio::test]
    async fn one_ipv6_host_is_one_key() {
        let limits = RateLimits::new(true, 3, 100, 1000).unwrap();
        let a = "a@example.com";
        for host in 1..=3 {
            let ip: IpAddr = format!("2001:db8:1:2::{host:x}").parse().unwrap();
            assert!(limits.check(ip, a).is_ok());
        }
        // A fourth address in the same /64 shares the spent budget.
        let ip: IpAddr = "2001:db8:1:2:ffff::1".parse().unwrap();
        assert!(limits.check(ip, a).is_err());
        // Another /64 has its own.
        let ip: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert!(limits.check(ip, a).is_ok());
        assert_eq!(limits.keys().0, 2);
    }

    #[tokio::test]
    async fn the_tables_are_capped() {
        let limits = RateLimits::new(true, 100, 100, 50).unwrap();
        let a = "a@example.com";
        let mut refused = 0;
        for n in 0..200u32 {
            let ip = IpAddr::from(std::net::Ipv4Addr::from(0x0a00_0000 + n));
            if limits.check(ip, a).is_err() {
                refused += 1;
            }
        }
        // Fresh keys (within their minute) cannot be swept: past the cap,
        // new addresses are refused and the table stops growing.
        let (ips, accounts) = limits.keys();
        assert!(ips <= 50, "{ips} address keys held");
        assert!(accounts <= 50, "{accounts} account keys held");
        assert_eq!(refused, 150);
    }
}
