//! Tokens whose signature has been checked: a bounded memo, owned by one
//! [`TokenCodec`](super::TokenCodec), so that presenting the same access
//! token again (a gateway's `auth_request` asks about every API call a
//! client makes with it, for its whole lifetime) costs a digest and a
//! lookup instead of a signature check and two JSON parses.
//!
//! What it may and may not remember:
//! - Only tokens the codec signed itself, and those its strict verification
//!   accepted (signature, algorithm, issuer, audience and required claims).
//!   `exp` is checked again on every hit, so a remembered token still
//!   expires on time.
//! - Nothing about revocation or rotation: those are session state, decided
//!   by `TokenActor` for every request, hit or miss.
//! - Keyed by the SHA-256 of the whole token, never the token: a hit needs
//!   the exact bytes that were verified (a changed header, payload or
//!   signature is a different digest), and no token sits in memory.
//! - It lives and dies with its codec: a key rotation builds a new codec,
//!   hence an empty memo, so nothing verified under a removed key survives.
//!
//! Bounded by entry count (CLOCK-Pro eviction, from `quick_cache`): an
//! entry is a digest and its claims, ~250 bytes, so the bound below is about
//! 0.5 MiB. Small on purpose: every refresh makes a new token, so the memo
//! is always full under load, and what it holds counts against the memory
//! budget; the tokens presented again and again (a client's current one)
//! are the ones CLOCK-Pro keeps.

use sha2::{Digest, Sha256};

use super::Claims;

/// Most tokens remembered at once. With 16,384 the resident set grew by
/// 3.4 MiB while the memo filled (`tests/operations/memory.rs`).
const CAPACITY: usize = 2_048;

/// The SHA-256 of an access token as presented.
pub(crate) type TokenDigest = [u8; 32];

pub(crate) struct VerifiedTokens {
    entries: quick_cache::sync::Cache<TokenDigest, Claims>,
}

impl VerifiedTokens {
    pub(crate) fn new() -> Self {
        VerifiedTokens {
            entries: quick_cache::sync::Cache::new(CAPACITY),
        }
    }

    /// The digest `token` is remembered under.
    pub(crate) fn digest(token: &str) -> TokenDigest {
        Sha256::digest(token.as_bytes()).into()
    }

    /// The claims of a token verified before, unless they have expired at
    /// `now_secs` (then it is as if the token had never been seen: the
    /// caller verifies it in full and reports why it fails).
    pub(crate) fn get(&self, digest: &TokenDigest, now_secs: i64) -> Option<Claims> {
        self.entries
            .get(digest)
            .filter(|claims| claims.exp >= now_secs)
    }

    /// Remembers claims that strict verification just accepted, or that the
    /// codec just signed.
    pub(crate) fn remember(&self, digest: TokenDigest, claims: &Claims) {
        self.entries.insert(digest, claims.clone());
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{SessionId, UserId};

    fn claims(exp: i64) -> Claims {
        Claims {
            iss: "authd".into(),
            aud: "authd".into(),
            sub: UserId::new_random(),
            sid: SessionId::new_random(),
            generation: 0,
            user_id: None,
            iat: exp - 900,
            exp,
        }
    }

    #[test]
    fn a_remembered_token_is_found_until_it_expires() {
        let memo = VerifiedTokens::new();
        let digest = VerifiedTokens::digest("a.b.c");
        memo.remember(digest, &claims(1_000));
        assert_eq!(memo.get(&digest, 999).map(|c| c.exp), Some(1_000));
        assert_eq!(memo.get(&digest, 1_000).map(|c| c.exp), Some(1_000));
        assert!(memo.get(&digest, 1_001).is_none());
    }

    #[test]
    fn another_token_is_another_entry() {
        let memo = VerifiedTokens::new();
        memo.remember(VerifiedTokens::digest("a.b.c"), &claims(1_000));
        assert!(memo.get(&VerifiedTokens::digest("a.b.d"), 0).is_none());
        assert!(memo.get(&VerifiedTokens::digest("a.b.c "), 0).is_none());
    }

    #[test]
    fn memory_stays_bounded() {
        let memo = VerifiedTokens::new();
        for i in 0..(CAPACITY * 3) {
            memo.remember(VerifiedTokens::digest(&i.to_string()), &claims(1_000));
        }
        assert!(memo.len() <= CAPACITY, "{} entries", memo.len());
    }
}
