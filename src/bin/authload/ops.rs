//! The requests authload can send ([`Op`]), what each expects back, and the
//! ways one can fail ([`ErrKind`]).

use std::fmt;

use hyper::Method;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Op {
    Health,
    Signup,
    Signin,
    Refresh,
    Revoke,
    Authorize,
    /// A refresh presenting an already-rotated token: must be refused (401).
    Replay,
    /// An authorize with the session's latest token after a replay: the
    /// session must be revoked, so this must be refused too (401).
    ReplayCheck,
}

pub const OP_COUNT: usize = 8;

pub const OPS: [Op; OP_COUNT] = [
    Op::Health,
    Op::Signup,
    Op::Signin,
    Op::Refresh,
    Op::Revoke,
    Op::Authorize,
    Op::Replay,
    Op::ReplayCheck,
];

impl Op {
    pub fn index(self) -> usize {
        self as usize
    }

    pub fn label(self) -> &'static str {
        match self {
            Op::Health => "health",
            Op::Signup => "signup",
            Op::Signin => "signin",
            Op::Refresh => "refresh",
            Op::Revoke => "revoke",
            Op::Authorize => "authorize",
            Op::Replay => "replay",
            Op::ReplayCheck => "replay_check",
        }
    }

    pub fn from_label(label: &str) -> Option<Op> {
        OPS.into_iter().find(|op| op.label() == label)
    }

    pub fn path(self) -> &'static str {
        match self {
            Op::Health => "/health",
            Op::Signup => "/signup",
            Op::Signin => "/signin",
            Op::Refresh | Op::Replay => "/refresh",
            Op::Revoke => "/revoke",
            Op::Authorize | Op::ReplayCheck => "/authorize",
        }
    }

    pub fn method(self) -> Method {
        match self {
            Op::Health | Op::Authorize | Op::ReplayCheck => Method::GET,
            _ => Method::POST,
        }
    }

    pub fn expected_status(self) -> u16 {
        match self {
            Op::Signup => 201,
            Op::Replay | Op::ReplayCheck => 401,
            _ => 200,
        }
    }

    /// Whether a successful answer carries an access token.
    pub fn issues_token(self) -> bool {
        matches!(self, Op::Signup | Op::Signin | Op::Refresh)
    }

    /// Whether the request carries a token in a JSON body.
    pub fn takes_token_body(self) -> bool {
        matches!(self, Op::Refresh | Op::Revoke | Op::Replay)
    }

    /// Whether the request carries a token as `Authorization: Bearer`.
    pub fn takes_bearer(self) -> bool {
        matches!(self, Op::Authorize | Op::ReplayCheck)
    }
}

/// What went wrong with one request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ErrKind {
    Status(u16),
    Transport,
    Timeout,
    BadBody,
}

impl fmt::Display for ErrKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ErrKind::Status(code) => write!(f, "{code}"),
            ErrKind::Transport => f.write_str("transport"),
            ErrKind::Timeout => f.write_str("timeout"),
            ErrKind::BadBody => f.write_str("bad_body"),
        }
    }
}
