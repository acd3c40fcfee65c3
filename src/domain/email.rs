//! `Email`: an e-mail address that has been checked and normalised.
//!
//! Addresses are compared case-insensitively, so the whole address is
//! lower-cased once here; the store's unique index on the normalised form
//! then guarantees one account per address.

use super::InvalidField;

/// Longest address accepted (RFC 5321 path limit).
const MAX_LEN: usize = 254;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Email(String);

impl Email {
    pub fn parse(raw: &str) -> Result<Self, InvalidField> {
        let invalid = |reason| InvalidField {
            field: "email",
            reason,
        };
        let lowered = raw.to_lowercase();
        let raw = lowered.as_str();
        if raw.is_empty() {
            return Err(invalid("must not be empty"));
        }
        if raw.len() > MAX_LEN {
            return Err(invalid("must be at most 254 bytes"));
        }
        // `email_address` implements the RFC 5322 grammar; we additionally
        // refuse display-name forms ("Name <a@b>") and quoted local parts so
        // that one mailbox has exactly one spelling.
        let parsed: email_address::EmailAddress = raw
            .parse()
            .map_err(|_| invalid("is not a valid e-mail address"))?;
        if parsed.as_str() != raw || raw.contains(['"', ' ', '<', '>']) {
            return Err(invalid("is not a valid e-mail address"));
        }
        if !parsed.domain().contains('.') && !parsed.domain().starts_with('[') {
            return Err(invalid("must have a fully qualified domain"));
        }
        Ok(Email(raw.to_lowercase()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl AsRef<str> for Email {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_and_lowercases() {
        assert_eq!(
            Email::parse("Alice@Example.COM").unwrap().as_str(),
            "alice@example.com"
        );
    }

    #[test]
    fn rejects_bad_addresses() {
        for bad in [
            "",
            "no-at-sign",
            "a@b",
            "Alice <a@example.com>",
            "a b@example.com",
            "@example.com",
            "a@",
            &format!("{}@example.com", "a".repeat(300)),
        ] {
            assert!(Email::parse(bad).is_err(), "{bad:?} should be rejected");
        }
    }
}
