//! [`Fault`]: the one infrastructure failure type, carried unchanged from
//! the layer that noticed it (store, hashing pool, actor call) up to the
//! HTTP layer, which maps its [`FaultKind`] to a status in one place
//! (`http::error`).
//!
//! A fault is not the client's doing, so it never becomes a 4xx: either the
//! service cannot answer now ([`FaultKind::Unavailable`], 503, retry later)
//! or it is authd's own bug or a broken environment ([`FaultKind::Internal`],
//! 500 with an error id). The decision between the two is made once, where
//! the fault arises; every layer above carries it as it is. It is `Clone`
//! (the source sits behind an `Arc`) so one failed batch can answer every
//! caller in it with the same fault.

use std::error::Error;
use std::fmt;
use std::sync::Arc;

/// Whether retrying later may help.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultKind {
    /// Cannot answer now: database unreachable or too slow, an actor
    /// restarting, a queue full. HTTP 503.
    Unavailable,
    /// A bug or a broken environment (schema mismatch, corrupt file). HTTP 500.
    Internal,
}

impl fmt::Display for FaultKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FaultKind::Unavailable => "unavailable",
            FaultKind::Internal => "failure",
        })
    }
}

/// An infrastructure failure and what caused it.
#[derive(Debug, Clone)]
pub struct Fault {
    kind: FaultKind,
    source: Arc<dyn Error + Send + Sync>,
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.kind, self.source)
    }
}

// By hand rather than thiserror: `source()` must be the cause itself (so it
// can be downcast), not the `Arc` around it.
impl Error for Fault {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        Some(&*self.source)
    }
}

impl Fault {
    pub fn new(kind: FaultKind, source: impl Into<Box<dyn Error + Send + Sync>>) -> Self {
        Fault {
            kind,
            source: Arc::from(source.into()),
        }
    }

    /// Cannot answer now (a string or any error as the cause).
    pub fn unavailable(source: impl Into<Box<dyn Error + Send + Sync>>) -> Self {
        Fault::new(FaultKind::Unavailable, source)
    }

    /// A fault of authd's own or of its environment.
    pub fn internal(source: impl Into<Box<dyn Error + Send + Sync>>) -> Self {
        Fault::new(FaultKind::Internal, source)
    }

    pub fn kind(&self) -> FaultKind {
        self.kind
    }

    pub fn is_unavailable(&self) -> bool {
        self.kind == FaultKind::Unavailable
    }

    /// What caused it.
    pub fn cause(&self) -> &(dyn Error + Send + Sync + 'static) {
        &*self.source
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_kind_and_source_through_clones() {
        let io = std::io::Error::new(std::io::ErrorKind::TimedOut, "no answer");
        let fault = Fault::unavailable(io);
        let copy = fault.clone();
        assert!(copy.is_unavailable());
        assert_eq!(copy.to_string(), "unavailable: no answer");
        let source = copy.source().expect("source kept");
        assert!(source.downcast_ref::<std::io::Error>().is_some());
        assert_eq!(Fault::internal("boom").kind(), FaultKind::Internal);
    }
}
