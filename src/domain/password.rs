//! `Password`: a plaintext password that satisfies the length rules.
//!
//! The upper bound is in bytes, not characters, because hashing cost grows
//! with bytes: without it one request with a multi-megabyte password could
//! burn a hashing thread. `Debug` never prints the value, so a password
//! cannot reach a log line by accident.

use super::InvalidField;

pub(super) const MIN_CHARS: usize = 8;
pub(super) const MAX_BYTES: usize = 1024;

#[derive(Clone)]
pub struct Password(String);

impl Password {
    pub fn parse(raw: String) -> Result<Self, InvalidField> {
        if raw.len() > MAX_BYTES {
            return Err(InvalidField {
                field: "password",
                reason: "must be at most 1024 bytes",
            });
        }
        if raw.chars().count() < MIN_CHARS {
            return Err(InvalidField {
                field: "password",
                reason: "must be at least 8 characters",
            });
        }
        Ok(Password(raw))
    }

    /// A password presented at sign-in (or to confirm an action): only the
    /// byte bound applies, since the old service's accounts may have
    /// passwords shorter than authd's sign-up minimum.
    pub fn parse_presented(raw: String) -> Result<Self, InvalidField> {
        if raw.len() > MAX_BYTES {
            return Err(InvalidField {
                field: "password",
                reason: "must be at most 1024 bytes",
            });
        }
        if raw.is_empty() {
            return Err(InvalidField {
                field: "password",
                reason: "must not be empty",
            });
        }
        Ok(Password(raw))
    }

    pub fn expose(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Password(***)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn length_rules() {
        assert!(Password::parse("1234567".into()).is_err());
        assert!(Password::parse("12345678".into()).is_ok());
        // 8 characters but more bytes: characters count for the minimum.
        assert!(Password::parse("ééééééé".into()).is_err());
        assert!(Password::parse("x".repeat(1024)).is_ok());
        assert!(Password::parse("x".repeat(1025)).is_err());
        assert_eq!(
            format!("{:?}", Password::parse("secret-pw".into()).unwrap()),
            "Password(***)"
        );
    }
}
