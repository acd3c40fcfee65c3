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

/// An e-mail address as typed at sign-in. Sign-in does not apply the
/// sign-up rules: accounts adopted from the old service may have addresses
/// authd's own parser would refuse (the old service took whatever its
/// validator took), and they must still sign in. Only emptiness and length
/// are checked; the address is kept as typed (the old service compared it
/// case-sensitively) beside its case-folded form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignInEmail {
    typed: String,
    folded: String,
}

/// Longest sign-in address accepted (an address longer than any mailbox
/// can be is no account's).
const MAX_SIGN_IN_LEN: usize = 320;

impl SignInEmail {
    pub fn parse(raw: &str) -> Result<Self, InvalidField> {
        let invalid = |reason| InvalidField {
            field: "email",
            reason,
        };
        let typed = raw.trim();
        if typed.is_empty() {
            return Err(invalid("must not be empty"));
        }
        if typed.len() > MAX_SIGN_IN_LEN {
            return Err(invalid("must be at most 320 bytes"));
        }
        // No mailbox has them, and PostgreSQL text cannot hold NUL.
        if typed.chars().any(char::is_control) {
            return Err(invalid("must not contain control characters"));
        }
        Ok(SignInEmail {
            typed: typed.to_owned(),
            folded: typed.to_lowercase(),
        })
    }

    /// Exactly as typed (trimmed).
    pub fn typed(&self) -> &str {
        &self.typed
    }

    /// Case-folded: how authd stores and compares its own accounts' e-mails.
    pub fn folded(&self) -> &str {
        &self.folded
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
