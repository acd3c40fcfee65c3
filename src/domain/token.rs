//! Access tokens: the claims authd puts in a JWT, and the codec that signs
//! and verifies them.
//!
//! Verification allow-lists exactly one algorithm (the configured one), so
//! `alg: none`, an HS/EdDSA swap or any other algorithm is rejected before a
//! signature is even looked at. Leeway is zero: authd both issues and checks
//! these tokens, so there is no clock skew to forgive.

use jsonwebtoken::{errors::ErrorKind, Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use super::verified::{TokenDigest, VerifiedTokens};
use super::{now_ms, Session, SessionId, UserId};

/// A JWT this service issued is a few hundred bytes; refusing longer input
/// first keeps hashing, base64 and JSON work on garbage bounded.
const MAX_TOKEN_BYTES: usize = 4096;

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
    /// The user's integer id, as the old service's tokens carried it, for
    /// services that decode tokens themselves. authd never trusts it: the
    /// integer it answers comes from the user's row. Optional, so tokens
    /// issued before it existed still verify.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<i64>,
    pub iat: i64,
    pub exp: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("token has expired")]
    Expired,
    #[error("token is invalid")]
    Invalid,
    /// Signed (supposedly) by a key id this codec does not hold: maybe a
    /// key added by another instance since our key set was loaded.
    #[error("token names an unknown signing key")]
    UnknownKey,
}

/// An Ed25519 signing key as stored: PKCS#8 DER of the private key, and the
/// raw 32-byte public key.
#[derive(Clone)]
pub struct Ed25519Key {
    pub kid: String,
    pub private_pkcs8_der: Vec<u8>,
    pub public_key: [u8; 32],
}

impl Ed25519Key {
    /// A fresh random key.
    pub fn generate(kid: String) -> Result<Self, String> {
        use ed25519_dalek::pkcs8::EncodePrivateKey;
        let signing = ed25519_dalek::SigningKey::from_bytes(&rand::random::<[u8; 32]>());
        let der = signing.to_pkcs8_der().map_err(|e| e.to_string())?;
        Ok(Ed25519Key {
            kid,
            private_pkcs8_der: der.as_bytes().to_vec(),
            public_key: signing.verifying_key().to_bytes(),
        })
    }

    /// The JWK `x` member: the public key, base64url without padding.
    pub fn public_x(&self) -> String {
        use base64::Engine;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(self.public_key)
    }
}

/// How tokens are signed: one shared secret, or a set of Ed25519 keys of
/// which the newest signs and all verify.
pub enum SigningKeys {
    Hs256 {
        secret: Vec<u8>,
    },
    /// Oldest first; must not be empty.
    Ed25519(Vec<Ed25519Key>),
}

/// Signs and verifies access tokens.
pub struct TokenCodec {
    header: Header,
    encoding: EncodingKey,
    /// HS256: one key (no `kid`). EdDSA: one per `kid`.
    decoding: DecodingKeys,
    /// Checks everything, `exp` included: for `/authorize`.
    strict: Validation,
    /// Same, but an expired token passes: `/refresh` and `/revoke` accept
    /// an expired token of a session that is still inside its lifetime.
    expired_ok: Validation,
    /// Tokens this codec signed or verified, so that presenting one again skips
    /// the signature check (see [`VerifiedTokens`]). Dropped with the codec
    /// when the keys change.
    verified: VerifiedTokens,
    issuer: String,
    audience: String,
    access_ttl_secs: i64,
    /// The public keys as a JWK Set (empty for HS256: a shared secret is
    /// never published).
    jwks: serde_json::Value,
}

enum DecodingKeys {
    Single(DecodingKey),
    ByKid(std::collections::HashMap<String, DecodingKey>),
}

impl TokenCodec {
    pub fn new(
        keys: &SigningKeys,
        issuer: &str,
        audience: &str,
        access_ttl_secs: i64,
    ) -> Result<Self, String> {
        let (algorithm, header, encoding, decoding, jwks) = match keys {
            SigningKeys::Hs256 { secret } => (
                Algorithm::HS256,
                Header::new(Algorithm::HS256),
                EncodingKey::from_secret(secret),
                DecodingKeys::Single(DecodingKey::from_secret(secret)),
                serde_json::json!({ "keys": [] }),
            ),
            SigningKeys::Ed25519(keys) => {
                let newest = keys.last().ok_or("no Ed25519 signing key")?;
                let mut header = Header::new(Algorithm::EdDSA);
                header.kid = Some(newest.kid.clone());
                let by_kid = keys
                    .iter()
                    .map(|k| (k.kid.clone(), DecodingKey::from_ed_der(&k.public_key)))
                    .collect();
                let jwks: Vec<serde_json::Value> = keys
                    .iter()
                    .map(|k| {
                        serde_json::json!({
                            "kty": "OKP", "crv": "Ed25519", "alg": "EdDSA", "use": "sig",
                            "kid": k.kid, "x": k.public_x(),
                        })
                    })
                    .collect();
                (
                    Algorithm::EdDSA,
                    header,
                    EncodingKey::from_ed_der(&newest.private_pkcs8_der),
                    DecodingKeys::ByKid(by_kid),
                    serde_json::json!({ "keys": jwks }),
                )
            }
        };
        let mut strict = Validation::new(algorithm);
        strict.leeway = 0;
        strict.set_issuer(&[issuer]);
        strict.set_audience(&[audience]);
        strict.set_required_spec_claims(&["exp", "iat", "iss", "aud", "sub"]);
        let mut expired_ok = strict.clone();
        expired_ok.validate_exp = false;
        Ok(TokenCodec {
            header,
            encoding,
            decoding,
            strict,
            expired_ok,
            verified: VerifiedTokens::new(),
            issuer: issuer.to_owned(),
            audience: audience.to_owned(),
            access_ttl_secs,
            jwks,
        })
    }

    /// The `kid` new tokens carry (EdDSA only).
    pub fn signing_kid(&self) -> Option<&str> {
        self.header.kid.as_deref()
    }

    pub fn jwks(&self) -> &serde_json::Value {
        &self.jwks
    }

    /// The claims of the live token of `session`. Deterministic: the same
    /// session state always yields the same claims (and, HS256 and Ed25519
    /// being deterministic, the same token with the same key), which is
    /// what lets a duplicate refresh inside the grace window receive the
    /// same successor.
    pub fn claims_for(&self, session: &Session) -> Claims {
        let iat = session.issued_at_ms.div_euclid(1000);
        let session_end = session.expires_at_ms.div_euclid(1000);
        Claims {
            iss: self.issuer.clone(),
            aud: self.audience.clone(),
            sub: session.user_id,
            sid: session.id,
            generation: session.generation,
            user_id: (session.user_int_id > 0).then_some(session.user_int_id),
            iat,
            exp: (iat + self.access_ttl_secs).min(session_end),
        }
    }

    /// Signs `claims`, and remembers the token as verified: it is, having
    /// been made here with this codec's key, so the client's next refresh
    /// or authorize of it skips the signature check.
    pub fn sign(&self, claims: &Claims) -> Result<String, jsonwebtoken::errors::Error> {
        let token = jsonwebtoken::encode(&self.header, claims, &self.encoding)?;
        self.verified
            .remember(VerifiedTokens::digest(&token), claims);
        Ok(token)
    }

    /// Verifies signature, algorithm, issuer, audience and expiry. A token
    /// verified before is recognised by its digest; only its expiry is
    /// checked again.
    pub fn verify(&self, token: &str) -> Result<Claims, TokenError> {
        let (digest, remembered) = self.recall(token, now_ms().div_euclid(1000))?;
        if let Some(claims) = remembered {
            return Ok(claims);
        }
        let claims = self.decode(token, &self.strict)?;
        self.verified.remember(digest, &claims);
        Ok(claims)
    }

    /// Like [`verify`](Self::verify) but lets an expired token through. A
    /// token strictly verified before passes as it did then; one seen only
    /// here is not remembered (a refresh presents a token once).
    pub fn verify_allow_expired(&self, token: &str) -> Result<Claims, TokenError> {
        match self.recall(token, i64::MIN)? {
            (_, Some(claims)) => Ok(claims),
            (_, None) => self.decode(token, &self.expired_ok),
        }
    }

    /// Refuses oversized input, then looks `token` up among the remembered
    /// ones (unexpired at `now_secs`); the digest is for remembering it.
    fn recall(
        &self,
        token: &str,
        now_secs: i64,
    ) -> Result<(TokenDigest, Option<Claims>), TokenError> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(TokenError::Invalid);
        }
        let digest = VerifiedTokens::digest(token);
        let remembered = self.verified.get(&digest, now_secs);
        Ok((digest, remembered))
    }

    fn decode(&self, token: &str, validation: &Validation) -> Result<Claims, TokenError> {
        let key = match &self.decoding {
            DecodingKeys::Single(key) => key,
            DecodingKeys::ByKid(keys) => {
                let header = jsonwebtoken::decode_header(token).map_err(|_| TokenError::Invalid)?;
                let kid = header.kid.ok_or(TokenError::Invalid)?;
                keys.get(&kid).ok_or(TokenError::UnknownKey)?
            }
        };
        match jsonwebtoken::decode::<Claims>(token, key, validation) {
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
        let keys = SigningKeys::Hs256 {
            secret: secret.to_vec(),
        };
        TokenCodec::new(&keys, "authd", "authd", 900).unwrap()
    }

    #[test]
    fn round_trip_and_determinism() {
        let c = codec(b"0123456789abcdef0123456789abcdef");
        let s = Session::start(UserId::new_random(), 42, now_ms(), 3_600_000);
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
        let s = Session::start(UserId::new_random(), 42, now_ms(), 3_600_000);
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
    fn ed25519_keys_sign_verify_and_rotate() {
        let old = Ed25519Key::generate("k1".into()).unwrap();
        let new = Ed25519Key::generate("k2".into()).unwrap();
        let before = TokenCodec::new(
            &SigningKeys::Ed25519(vec![old.clone()]),
            "authd",
            "authd",
            900,
        )
        .unwrap();
        let after =
            TokenCodec::new(&SigningKeys::Ed25519(vec![old, new]), "authd", "authd", 900).unwrap();
        let s = Session::start(UserId::new_random(), 42, now_ms(), 3_600_000);
        let old_token = before.sign(&before.claims_for(&s)).unwrap();
        let new_token = after.sign(&after.claims_for(&s)).unwrap();
        assert_eq!(after.signing_kid(), Some("k2"));
        assert!(after.verify(&old_token).is_ok(), "old key still verifies");
        assert!(after.verify(&new_token).is_ok());
        assert_eq!(before.verify(&new_token), Err(TokenError::UnknownKey));
        assert_eq!(after.jwks()["keys"].as_array().unwrap().len(), 2);
        // An HS256 token is refused by an EdDSA codec (algorithm confusion).
        let hs = codec(b"0123456789abcdef0123456789abcdef");
        let hs_token = hs.sign(&hs.claims_for(&s)).unwrap();
        assert_eq!(after.verify(&hs_token), Err(TokenError::Invalid));
        assert_eq!(hs.verify(&new_token), Err(TokenError::Invalid));
        assert_eq!(hs.jwks()["keys"].as_array().unwrap().len(), 0);
    }

    #[test]
    fn expired_tokens() {
        let c = codec(b"0123456789abcdef0123456789abcdef");
        let s = Session::start(UserId::new_random(), 42, now_ms() - 2_000_000, 3_600_000);
        let token = c.sign(&c.claims_for(&s)).unwrap();
        assert_eq!(c.verify(&token), Err(TokenError::Expired));
        assert!(c.verify_allow_expired(&token).is_ok());
    }
}
