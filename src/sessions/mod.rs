//! Session state and everything that moves it: the one owner of
//! `TokenActor`'s cache, and the two tasks that change it besides the actor.
//!
//! - [`cache`]: [`SessionCache`], the committed state of the cached
//!   sessions, at most `session_cache_capacity` of them; its methods are
//!   the only way to change it (one per kind of change). A new kind of
//!   session change is a new method there. `eviction` (which session
//!   leaves to make room) and `guard` (a read-through never caches a state
//!   older than a change it missed) are its parts.
//! - [`writer`]: group commit; writes batches of session writes and folds
//!   what they changed into the cache before answering.
//! - [`feed`]: follows the store's change feed and reads its change log,
//!   and folds other instances' changes into the cache.
//!
//! `writer` and `feed` depend on `cache` only, never on each other nor on
//! the actors; `TokenActor` (in `actors`) depends on all three.

pub(crate) mod cache;
mod eviction;
pub(crate) mod feed;
mod guard;
pub(crate) mod writer;

pub(crate) use cache::SessionCache;
pub(crate) use writer::{BatchLimits, SessionWriter};
