//! Access tokens: the claims authd puts in a JWT, and the codec that signs
//! and verifies them.
//!
//! Verification allow-lists exactly one algorithm (the configured one), so
//! `alg: none`, an HS/EdDSA swap or any other algorithm is rejected before a
//! signature is even looked at. Leeway is zero: authd both issues and checks
//! these tokens, so there is no clock skew to forgive.

use jsonwebtoken::{errors::ErrorKind, Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use super::{Session, SessionId, UserId};

/// The claims of an authd access token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    pub iss: String,
    pub aud: String,
    /// The user.
    pub sub: UserId,
    /// The session this token belongs to.
    pub sid: SessionId,
    /// The session generation this token carries; only the latest is live.
    #[serde(rename = "gen")]
    pub generation: u32,
    pub iat: i64,
    pub exp: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("token has expired")]
    Expired,
    #[error("token is invalid")]
    Invalid,
}

/// Signs and verifies access tokens with one key and one algorithm.
pub struct TokenCodec {
    header: Header,
    encoding: EncodingKey,
    decoding: DecodingKey,
    /// Checks everything, `exp` included: for `/authorize`.
    strict: Validation,
    /// Same, but an expired token passes: `/refresh` and `/revoke` accept
    /// an expired token of a session that is still inside its lifetime.
    expired_ok: Validation,
    issuer: String,
    audience: String,
    access_ttl_secs: i64,
}

impl TokenCodec {
    /// HS256 with a shared secret.
    pub fn hs256(secret: &[u8], issuer: &str, audience: &str, access_ttl_secs: i64) -> Self {
        let mut strict = Validation::new(Algorithm::HS256);
        strict.leeway = 0;
        strict.set_issuer(&[issuer]);
        strict.set_audience(&[audience]);
        strict.set_required_spec_claims(&["exp", "iat", "iss", "aud", "sub"]);
        let mut expired_ok = strict.clone();
        expired_ok.validate_exp = false;
        TokenCodec {
            header: Header::new(Algorithm::HS256),
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            strict,
            expired_ok,
            issuer: issuer.to_owned(),
            audience: audience.to_owned(),
            access_ttl_secs,
        }
    }

    /// The claims of the live token of `session`. Deterministic: the same
    /// session state always yields the same claims (and, HS256 and Ed25519
    /// being deterministic, the same token), which is what lets a duplicate
    /// refresh inside the grace window receive the same successor.
    pub fn claims_for(&self, session: &Session) -> Claims {
        let iat = session.issued_at_ms.div_euclid(1000);
        let session_end = session.expires_at_ms.div_euclid(1000);
        Claims {
            iss: self.issuer.clone(),
            aud: self.audience.clone(),
            sub: session.user_id,
            sid: session.id,
            generation: session.generation,
            iat,
            exp: (iat + self.access_ttl_secs).min(session_end),
        }
    }

    pub fn sign(&self, claims: &Claims) -> Result<String, jsonwebtoken::errors::Error> {
        jsonwebtoken::encode(&self.header, claims, &self.encoding)
    }

    /// Verifies signature, algorithm, issuer, audience and expiry.
    pub fn verify(&self, token: &str) -> Result<Claims, TokenError> {
        self.decode(token, &self.strict)
    }

    /// Like [`verify`](Self::verify) but lets an expired token through.
    pub fn verify_allow_expired(&self, token: &str) -> Result<Claims, TokenError> {
        self.decode(token, &self.expired_ok)
    }

    fn decode(&self, token: &str, validation: &Validation) -> Result<Claims, TokenError> {
        // A JWT this service issued is a few hundred bytes; refusing long
        // input early keeps base64/JSON work on garbage bounded.
        if token.len() > 4096 {
            return Err(TokenError::Invalid);
        }
        match jsonwebtoken::decode::<Claims>(token, &self.decoding, validation) {
            Ok(data) => Ok(data.claims),
            Err(e) if matches!(e.kind(), ErrorKind::ExpiredSignature) => Err(TokenError::Expired),
            Err(_) => Err(TokenError::Invalid),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::now_ms;

    fn codec(secret: &[u8]) -> TokenCodec {
        TokenCodec::hs256(secret, "authd", "authd", 900)
    }

    #[test]
    fn round_trip_and_determinism() {
        let c = codec(b"0123456789abcdef0123456789abcdef");
        let s = Session::start(UserId::new_random(), now_ms(), 3_600_000);
        let claims = c.claims_for(&s);
        let t1 = c.sign(&claims).unwrap();
        let t2 = c.sign(&c.claims_for(&s)).unwrap();
        assert_eq!(t1, t2);
        assert_eq!(c.verify(&t1).unwrap(), claims);
    }

    #[test]
    fn rejects_wrong_key_none_and_tampering() {
        let c = codec(b"0123456789abcdef0123456789abcdef");
        let other = codec(b"another-secret-another-secret-xx");
        let s = Session::start(UserId::new_random(), now_ms(), 3_600_000);
        let token = other.sign(&other.claims_for(&s)).unwrap();
        assert_eq!(c.verify(&token), Err(TokenError::Invalid));

        let good = c.sign(&c.claims_for(&s)).unwrap();
        let parts: Vec<&str> = good.split('.').collect();
        use base64::Engine;
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let none_header = b64.encode(br#"{"alg":"none","typ":"JWT"}"#);
        assert_eq!(
            c.verify(&format!("{none_header}.{}.", parts[1])),
            Err(TokenError::Invalid)
        );
        let mut payload: serde_json::Value =
            serde_json::from_slice(&b64.decode(parts[1]).unwrap()).unwrap();
        payload["gen"] = 5.into();
        let tampered = format!(
            "{}.{}.{}",
            parts[0],
            b64.encode(payload.to_string()),
            parts[2]
        );
        assert_eq!(c.verify(&tampered), Err(TokenError::Invalid));
    }

    #[test]
    fn expired_tokens() {
        let c = codec(b"0123456789abcdef0123456789abcdef");
        let s = Session::start(UserId::new_random(), now_ms() - 2_000_000, 3_600_000);
        let token = c.sign(&c.claims_for(&s)).unwrap();
        assert_eq!(c.verify(&token), Err(TokenError::Expired));
        assert!(c.verify_allow_expired(&token).is_ok());
    }
}
