//! What goes over the wire for one operation: the JSON bodies authload
//! sends (credentials, a token) and the check of an answer (its status,
//! and the new token when the operation issues one).

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::ops::{ErrKind, Op};

#[derive(Serialize)]
struct Credentials<'a> {
    email: &'a str,
    password: &'a str,
}

#[derive(Deserialize)]
struct TokenAnswer<'a> {
    #[serde(borrow)]
    access_token: std::borrow::Cow<'a, str>,
}

pub fn credentials_body(email: &str, password: &str) -> Bytes {
    // Serializing two &str fields cannot fail.
    Bytes::from(serde_json::to_vec(&Credentials { email, password }).unwrap_or_default())
}

pub fn token_body(token: &str) -> Bytes {
    let mut body = Vec::with_capacity(token.len() + 20);
    body.extend_from_slice(b"{\"access_token\":");
    // Writing a &str into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut body, token);
    body.push(b'}');
    Bytes::from(body)
}

/// Checks an answer's status and, for the operations that issue one, reads
/// the new token.
pub fn check(op: Op, status: u16, body: &[u8]) -> (Result<(), ErrKind>, Option<String>) {
    if status != op.expected_status() {
        return (Err(ErrKind::Status(status)), None);
    }
    if !op.issues_token() {
        return (Ok(()), None);
    }
    match serde_json::from_slice::<TokenAnswer>(body) {
        Ok(answer) => (Ok(()), Some(answer.access_token.into_owned())),
        Err(_) => (Err(ErrKind::BadBody), None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_body_is_json() {
        let body = token_body("a.b\"c");
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["access_token"], "a.b\"c");
    }

    #[test]
    fn check_sorts_answers() {
        assert_eq!(check(Op::Replay, 401, b"{}"), (Ok(()), None));
        assert_eq!(check(Op::Replay, 200, b"{}").0, Err(ErrKind::Status(200)));
        assert_eq!(check(Op::Refresh, 200, b"nope").0, Err(ErrKind::BadBody));
        assert_eq!(
            check(Op::Refresh, 200, br#"{"access_token":"t"}"#),
            (Ok(()), Some("t".into()))
        );
    }
}
