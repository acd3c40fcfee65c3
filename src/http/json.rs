//! JSON in and out: reading a bounded request body, decoding it into the
//! endpoint's request type, and building JSON responses.
//!
//! Request types hold raw strings; handlers turn them into domain types
//! (`Email`, `Password`) right away, so nothing invalid travels further.
//! Unknown fields are ignored, as the seed service (pydantic) did, so old
//! clients keep working; duplicate fields are refused.

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONTENT_LENGTH, CONTENT_TYPE};
use hyper::{Request, Response, StatusCode};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::time::Duration;
use utoipa::ToSchema;

use super::ApiError;
use crate::domain::{IssuedToken, RevokeScope};

/// A request body type: what its endpoint says when the body is missing.
pub trait RequestBody: DeserializeOwned {
    /// Completes "the request body is empty: …".
    const REQUIRED: &'static str;
}

/// `{"email", "password"}` of /signup.
#[derive(Debug, Deserialize, ToSchema)]
#[schema(
    as = Credentials,
    example = json!({"email": "ada@example.com", "password": "correct horse battery staple"})
)]
pub struct CredentialsBody {
    /// At most 254 bytes; a plain address (no display name, no quoted
    /// local part) with a fully qualified domain. Compared
    /// case-insensitively (stored lower-cased).
    #[schema(format = "email", min_length = 1, max_length = 254)]
    pub email: String,
    /// At least 8 characters and at most 1024 bytes of UTF-8.
    #[schema(min_length = 8, max_length = 1024)]
    pub password: String,
}

impl RequestBody for CredentialsBody {
    const REQUIRED: &'static str =
        r#"the e-mail and password are required ({"email", "password"})"#;
}

/// Sign-in does not apply the sign-up rules: accounts adopted from the old
/// FastAPI service may have older credentials.
#[derive(Debug, Deserialize, ToSchema)]
#[schema(
    as = SignInCredentials,
    example = json!({"email": "ada@example.com", "password": "correct horse battery staple"})
)]
pub struct SignInBody {
    /// As registered; authd's own accounts compare case-insensitively.
    #[schema(min_length = 1, max_length = 320)]
    pub email: String,
    /// 1 to 1024 bytes of UTF-8.
    #[schema(min_length = 1, max_length = 1024)]
    pub password: String,
}

impl RequestBody for SignInBody {
    const REQUIRED: &'static str =
        r#"the e-mail and password are required ({"email", "password"})"#;
}

/// `{"access_token"}` of /refresh and /auth/authorize-token.
#[derive(Debug, Deserialize, ToSchema)]
#[schema(as = TokenRequest)]
pub struct TokenBody {
    /// An access token (JWT).
    pub access_token: String,
}

impl RequestBody for TokenBody {
    const REQUIRED: &'static str = r#"the access token is required ({"access_token"})"#;
}

/// `{"current_password", "new_password"}` of `POST /password`.
#[derive(Debug, Deserialize, ToSchema)]
#[schema(
    as = PasswordChange,
    example = json!({"current_password": "correct horse", "new_password": "battery staple horse"})
)]
pub struct PasswordChangeBody {
    /// The account's password now (1 to 1024 bytes).
    #[schema(min_length = 1)]
    pub current_password: String,
    /// Sign-up's rules: 8 characters to 1024 bytes.
    #[schema(min_length = 8, max_length = 1024)]
    pub new_password: String,
}

impl RequestBody for PasswordChangeBody {
    const REQUIRED: &'static str =
        r#"the current and the new password are required ({"current_password", "new_password"})"#;
}

/// `{"password"}` of `DELETE /account`.
#[derive(Debug, Deserialize, ToSchema)]
#[schema(as = PasswordConfirmation, example = json!({"password": "correct horse"}))]
pub struct PasswordBody {
    /// The account's password (1 to 1024 bytes).
    #[schema(min_length = 1)]
    pub password: String,
}

impl RequestBody for PasswordBody {
    const REQUIRED: &'static str = r#"the password is required ({"password"})"#;
}

/// `{"access_token", "scope"?}` of /revoke; scope is "session" (default),
/// "others" (every other session of the user) or "all" (every session of
/// the user), on every instance.
#[derive(Debug, Deserialize, ToSchema)]
#[schema(
    as = RevokeRequest,
    example = json!({
        "access_token": "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.e30.c2lnbmF0dXJl",
        "scope": "all"
    })
)]
pub struct RevokeBody {
    /// An access token (JWT), expired or not.
    pub access_token: String,
    /// `session`: this token's session; `others`: every other session of
    /// its user; `all`: every session of its user.
    #[serde(default)]
    #[schema(inline, default = "session")]
    pub scope: RevokeScopeField,
}

impl RequestBody for RevokeBody {
    const REQUIRED: &'static str = r#"the access token is required ({"access_token", "scope"?})"#;
}

#[derive(Debug, Default, Clone, Copy, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum RevokeScopeField {
    #[default]
    Session,
    Others,
    All,
}

impl RevokeScopeField {
    pub fn label(self) -> &'static str {
        match self {
            RevokeScopeField::Session => "session",
            RevokeScopeField::Others => "others",
            RevokeScopeField::All => "all",
        }
    }
}

impl From<RevokeScopeField> for RevokeScope {
    fn from(f: RevokeScopeField) -> Self {
        match f {
            RevokeScopeField::Session => RevokeScope::Session,
            RevokeScopeField::Others => RevokeScope::Others,
            RevokeScopeField::All => RevokeScope::All,
        }
    }
}

/// The answer of signup, signin, refresh and password change.
#[derive(Debug, Serialize, ToSchema)]
pub struct TokenResponse {
    /// A JWT (`typ: JWT`).
    pub access_token: String,
    #[schema(inline)]
    pub token_type: TokenType,
    /// Seconds until the token's `exp`.
    #[schema(minimum = 0)]
    pub expires_in: i64,
}

/// Always `bearer`.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum TokenType {
    Bearer,
}

impl From<IssuedToken> for TokenResponse {
    fn from(t: IssuedToken) -> Self {
        TokenResponse {
            access_token: t.access_token,
            token_type: TokenType::Bearer,
            expires_in: t.expires_in,
        }
    }
}

/// How much body a request may send, and how long it may take.
#[derive(Debug, Clone, Copy)]
pub struct BodyLimits {
    pub max_bytes: usize,
    /// From the moment the handler starts reading: a body dribbled slower
    /// than this gets 408 (and the connection is closed), so slow clients
    /// cannot hold connection slots for hours.
    pub read_timeout: Duration,
}

/// Reads a body within `limits` and decodes it as `T`; an empty body is
/// 400 saying what `T` needs.
pub async fn read_json<T: RequestBody>(
    request: Request<Incoming>,
    limits: &BodyLimits,
) -> Result<T, ApiError> {
    check_content_type(&request)?;
    let body = read_body(request, limits).await?;
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::EmptyBody(T::REQUIRED));
    }
    decode(&body)
}

/// Like [`read_json`], but a request without a body (an empty one that no
/// Content-Type announces) is `None`. Any body that is there, or that a
/// JSON Content-Type announces, must be valid.
pub async fn read_optional_json<T: DeserializeOwned>(
    request: Request<Incoming>,
    limits: &BodyLimits,
) -> Result<Option<T>, ApiError> {
    let announced = request.headers().contains_key(CONTENT_TYPE);
    check_content_type(&request)?;
    let body = read_body(request, limits).await?;
    if body.is_empty() && !announced {
        return Ok(None);
    }
    decode(&body).map(Some)
}

/// The whole body, at most `limits.max_bytes` (413) within
/// `limits.read_timeout` (408).
async fn read_body(request: Request<Incoming>, limits: &BodyLimits) -> Result<Bytes, ApiError> {
    let limit = limits.max_bytes;
    // Refuse a declared oversize body before reading any of it.
    let declared = request
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(ApiError::PayloadTooLarge(limit));
    }
    let collected = tokio::time::timeout(
        limits.read_timeout,
        Limited::new(request.into_body(), limit).collect(),
    )
    .await
    .map_err(|_| ApiError::BodyTimeout(limits.read_timeout))?;
    Ok(collected
        .map_err(|e| {
            if e.is::<http_body_util::LengthLimitError>() {
                ApiError::PayloadTooLarge(limit)
            } else {
                ApiError::MalformedJson("the request body could not be read".into())
            }
        })?
        .to_bytes())
}

/// Decodes a JSON body: bytes that are not UTF-8 or not JSON are 400; a
/// valid document of the wrong shape (not an object, missing field, wrong
/// type) is 422.
pub fn decode<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    // The whole body, unknown fields included (serde skips those unread).
    let text = std::str::from_utf8(body)
        .map_err(|e| ApiError::MalformedJson(format!("body is not UTF-8: {e}")))?;
    match serde_json::from_str::<T>(text) {
        // serde's derived structs also accept an array of the fields in
        // order; our bodies are objects.
        Ok(value) if text.trim_start().starts_with('{') => Ok(value),
        Ok(_) => Err(ApiError::InvalidBody(
            "the body must be a JSON object".into(),
        )),
        // A typed decode stops at the first mismatch, which can look like a
        // syntax error ("trailing characters" after a short array): decide
        // 400 or 422 by whether the text is JSON at all.
        Err(e) => match serde_json::from_str::<serde::de::IgnoredAny>(text) {
            Err(syntax) => Err(ApiError::MalformedJson(syntax.to_string())),
            Ok(_) if !text.trim_start().starts_with('{') => Err(ApiError::InvalidBody(
                "the body must be a JSON object".into(),
            )),
            Ok(_) => Err(ApiError::InvalidBody(e.to_string())),
        },
    }
}

/// JSON bodies must say so, or say nothing (many clients omit the header).
fn check_content_type(request: &Request<Incoming>) -> Result<(), ApiError> {
    let Some(value) = request.headers().get(CONTENT_TYPE) else {
        return Ok(());
    };
    let media = value
        .to_str()
        .map_err(|_| ApiError::UnsupportedMediaType)?
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    if media == "application/json"
        || (media.starts_with("application/") && media.ends_with("+json"))
    {
        Ok(())
    } else {
        Err(ApiError::UnsupportedMediaType)
    }
}

pub fn json_response<T: Serialize>(status: StatusCode, body: &T) -> Response<Full<Bytes>> {
    match serde_json::to_vec(body) {
        Ok(bytes) => {
            let mut response = Response::new(Full::new(Bytes::from(bytes)));
            *response.status_mut() = status;
            response
                .headers_mut()
                .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
            response
        }
        Err(e) => ApiError::Fault(crate::fault::Fault::internal(e)).into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classification() {
        let malformed = decode::<TokenBody>(b"{\"access_token\": ").unwrap_err();
        assert!(matches!(malformed, ApiError::MalformedJson(_)));
        let wrong_shape = decode::<TokenBody>(b"{\"access_token\": 5}").unwrap_err();
        assert!(matches!(wrong_shape, ApiError::InvalidBody(_)));
        let missing = decode::<CredentialsBody>(b"{\"email\": \"a@b.co\"}").unwrap_err();
        assert!(matches!(missing, ApiError::InvalidBody(_)));
        let duplicate =
            decode::<TokenBody>(b"{\"access_token\": \"a\", \"access_token\": \"b\"}").unwrap_err();
        assert!(matches!(duplicate, ApiError::InvalidBody(_)));
        let non_utf8 = decode::<TokenBody>(b"{\"access_token\": \"\xff\"}").unwrap_err();
        assert!(matches!(
            non_utf8,
            ApiError::MalformedJson(_) | ApiError::InvalidBody(_)
        ));
        assert!(decode::<TokenBody>(b"{\"access_token\": \"a\", \"extra\": 1}").is_ok());
        let array = decode::<CredentialsBody>(b"[\"a@b.co\", \"password1\"]").unwrap_err();
        assert!(matches!(array, ApiError::InvalidBody(_)));
    }
}
