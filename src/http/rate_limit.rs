//! Rate limits for sign-in and sign-up: per client address and per
//! account (e-mail), with governor's GCRA limiters (memory per key is one
//! word; stale keys are swept every minute).
//!
//! Passwords are guessed per account from many addresses, or across many
//! accounts from one address; each limit catches one of the two. A refused
//! request gets 429 with `Retry-After` (whole seconds, rounded up). Load
//! tests switch the limits off with `rate_limit_enabled = false`.
//!
//! The client address is passed in: the TCP peer, or what a proxy listed in
//! `trusted_proxies` reports (`http::client_addr`); forwarding headers from
//! anyone else are ignored, since any client can forge them.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota};

use crate::domain::Email;

pub struct RateLimits {
    per_ip: DefaultKeyedRateLimiter<IpAddr>,
    per_account: DefaultKeyedRateLimiter<String>,
    clock: DefaultClock,
}

/// Which limit refused, and when to come back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limited {
    pub retry_after: Duration,
}

impl RateLimits {
    /// `None` when disabled or a rate is zero (no limit).
    pub fn new(
        enabled: bool,
        per_ip_per_minute: u32,
        per_account_per_minute: u32,
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
            per_account: DefaultKeyedRateLimiter::keyed(account),
            clock: DefaultClock::default(),
        });
        let sweeper = Arc::downgrade(&limits);
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(Duration::from_secs(60));
            loop {
                ticks.tick().await;
                let Some(limits) = sweeper.upgrade() else {
                    break;
                };
                limits.per_ip.retain_recent();
                limits.per_account.retain_recent();
            }
        });
        Some(limits)
    }

    /// Counts one attempt by `ip` on `account`; refuses if either is over.
    pub fn check(&self, ip: IpAddr, account: &Email) -> Result<(), Limited> {
        let now = self.clock.now();
        self.per_ip
            .check_key(&ip)
            .and_then(|()| self.per_account.check_key(&account.as_str().to_owned()))
            .map_err(|not_until| Limited {
                retry_after: not_until.wait_time_from(now),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn per_account_and_per_ip() {
        let limits = RateLimits::new(true, 5, 2).unwrap();
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        let a = Email::parse("a@example.com").unwrap();
        let b = Email::parse("b@example.com").unwrap();
        assert!(limits.check(ip, &a).is_ok());
        assert!(limits.check(ip, &a).is_ok());
        let refused = limits.check(ip, &a).unwrap_err();
        assert!(refused.retry_after > Duration::ZERO);
        // Another account from the same address still has room...
        assert!(limits.check(ip, &b).is_ok());
        assert!(limits.check(ip, &b).is_ok());
        // ...until the address's own budget (5) is spent.
        let other = Email::parse("c@example.com").unwrap();
        assert!(limits.check(ip, &other).is_err());
        assert!(RateLimits::new(false, 5, 2).is_none());
    }
}
