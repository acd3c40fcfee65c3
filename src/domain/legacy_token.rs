//! The old FastAPI service's access tokens: HS256 over `SECRET_KEY`, header
//! `{"alg":"HS256","typ":"JWT"}`, payload `{"user_id": <int>, "exp": <int>}`
//! and nothing else.
//!
//! They are told apart from authd's own tokens by their payload's shape
//! (exactly those two integer members), never by trying one format after
//! the other, so an authd token that fails its checks can never be
//! re-read as an old one. Verification allow-lists HS256 with the
//! configured secret and zero leeway, like authd's own.

use base64::Engine;
use jsonwebtoken::{errors::ErrorKind, Algorithm, DecodingKey, Validation};
use serde::Deserialize;

use super::TokenError;

/// What an old token says. Its `user_id` is only a hint for finding the
/// account: authd checks it against the old service's own table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LegacyClaims {
    pub user_id: i64,
    pub exp: i64,
}

/// Verifies the old service's tokens.
pub struct LegacyTokenCodec {
    key: DecodingKey,
    strict: Validation,
    expired_ok: Validation,
}

impl LegacyTokenCodec {
    pub fn new(secret: &[u8]) -> Self {
        let mut strict = Validation::new(Algorithm::HS256);
        strict.leeway = 0;
        strict.validate_aud = false;
        strict.set_required_spec_claims(&["exp"]);
        let mut expired_ok = strict.clone();
        expired_ok.validate_exp = false;
        LegacyTokenCodec {
            key: DecodingKey::from_secret(secret),
            strict,
            expired_ok,
        }
    }

    /// Whether `token` has the old service's payload shape (it may still be
    /// forged: [`verify`](Self::verify) decides that).
    pub fn is_legacy_shape(token: &str) -> bool {
        if token.len() > 2048 {
            return false;
        }
        let mut parts = token.split('.');
        let (Some(_), Some(payload), Some(_), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return false;
        };
        let Ok(bytes) = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload) else {
            return false;
        };
        let Ok(serde_json::Value::Object(members)) = serde_json::from_slice(&bytes) else {
            return false;
        };
        members.len() == 2
            && members.get("user_id").is_some_and(|v| v.is_i64())
            && members.get("exp").is_some_and(|v| v.is_i64())
    }

    /// Checks signature and algorithm, and `exp` unless `allow_expired`.
    pub fn verify(&self, token: &str, allow_expired: bool) -> Result<LegacyClaims, TokenError> {
        let validation = if allow_expired {
            &self.expired_ok
        } else {
            &self.strict
        };
        match jsonwebtoken::decode::<LegacyClaims>(token, &self.key, validation) {
            Ok(data) => Ok(data.claims),
            Err(e) if matches!(e.kind(), ErrorKind::ExpiredSignature) => Err(TokenError::Expired),
            Err(_) => Err(TokenError::Invalid),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{EncodingKey, Header};

    const KEY: &[u8] = b"34912@445dfsdFBSD23reg@F587";

    fn old_token(payload: serde_json::Value, key: &[u8]) -> String {
        jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &payload,
            &EncodingKey::from_secret(key),
        )
        .unwrap()
    }

    #[test]
    fn shape_and_verification() {
        let now = crate::domain::now_ms() / 1000;
        let codec = LegacyTokenCodec::new(KEY);
        let good = old_token(serde_json::json!({"user_id": 7, "exp": now + 60}), KEY);
        assert!(LegacyTokenCodec::is_legacy_shape(&good));
        assert_eq!(
            codec.verify(&good, false),
            Ok(LegacyClaims {
                user_id: 7,
                exp: now + 60
            })
        );
        let forged = old_token(serde_json::json!({"user_id": 7, "exp": now + 60}), b"other");
        assert_eq!(codec.verify(&forged, false), Err(TokenError::Invalid));
        let expired = old_token(serde_json::json!({"user_id": 7, "exp": now - 60}), KEY);
        assert_eq!(codec.verify(&expired, false), Err(TokenError::Expired));
        assert!(codec.verify(&expired, true).is_ok());
        // Anything more or less than the two members is not an old token.
        for other in [
            serde_json::json!({"user_id": 7, "exp": now + 60, "sid": "x"}),
            serde_json::json!({"user_id": "7", "exp": now + 60}),
            serde_json::json!({"exp": now + 60}),
        ] {
            assert!(!LegacyTokenCodec::is_legacy_shape(&old_token(other, KEY)));
        }
        let hs512 = jsonwebtoken::encode(
            &Header::new(Algorithm::HS512),
            &serde_json::json!({"user_id": 7, "exp": now + 60}),
            &EncodingKey::from_secret(KEY),
        )
        .unwrap();
        assert_eq!(codec.verify(&hs512, false), Err(TokenError::Invalid));
    }
}
