//! `ApiError`: every way a request can fail, and the one place where each
//! becomes an HTTP status and a JSON body `{"error", "message"}`.
//!
//! Client mistakes get a 4xx that says what was wrong (never echoing a
//! secret). Every infrastructure failure arrives as a [`Fault`], whatever
//! layer noticed it, and its kind alone decides the status: unavailable
//! (database down, actor restarting) gets 503, internal gets 500 with an
//! error id that is also in the ERROR log line, and no internal detail in
//! the body. A full hashing queue is 503 too. Token refusals are
//! [`TokenRefusal`]s, which cannot hold a fault, so nothing the service
//! failed at can leave as 401.

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{HeaderValue, CONTENT_TYPE, RETRY_AFTER, WWW_AUTHENTICATE};
use hyper::{Response, StatusCode};

use serde::Serialize;
use utoipa::ToSchema;

use super::routes::Allow;
use crate::actors::token::{TokenFailure, TokenRefusal};
use crate::actors::user::UserFailure;
use crate::actors::CallError;
use crate::domain::InvalidField;
use crate::fault::{Fault, FaultKind};

/// Every error answer: `{"error": <code>, "message": <text>}`.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Error)]
pub(crate) struct ErrorBody {
    /// The stable machine-readable code ([`ApiError::code`]).
    #[schema(schema_with = every_code)]
    pub(crate) error: &'static str,
    /// What was wrong, for people.
    #[schema(min_length = 1)]
    pub(crate) message: String,
}

/// Every code [`ApiError::code`] answers.
pub(crate) const CODES: [&str; 19] = [
    "malformed_json",
    "invalid_request",
    "unsupported_media_type",
    "payload_too_large",
    "request_timeout",
    "headers_too_large",
    "not_found",
    "session_not_found",
    "method_not_allowed",
    "missing_token",
    "invalid_credentials",
    "invalid_token",
    "token_expired",
    "token_revoked",
    "token_reused",
    "email_taken",
    "rate_limited",
    "service_unavailable",
    "internal_error",
];

fn every_code() -> utoipa::openapi::Object {
    utoipa::openapi::ObjectBuilder::new()
        .schema_type(utoipa::openapi::Type::String)
        .enum_values(Some(CODES))
        .build()
}

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("request body is not valid JSON: {0}")]
    MalformedJson(String),
    /// No body where one is needed: says what the endpoint needs.
    #[error("the request body is empty: {0}")]
    EmptyBody(&'static str),
    #[error("request body has the wrong shape: {0}")]
    InvalidBody(String),
    #[error("{0}")]
    InvalidField(#[from] InvalidField),
    #[error("Content-Type must be application/json")]
    UnsupportedMediaType,
    #[error("request body exceeds {0} bytes")]
    PayloadTooLarge(usize),
    #[error("the request body did not arrive within {} ms", .0.as_millis())]
    BodyTimeout(std::time::Duration),
    #[error("request headers exceed {0} bytes")]
    HeadersTooLarge(usize),
    #[error("no such endpoint")]
    NotFound,
    /// Not one of the caller's live sessions (whether it exists is not
    /// said).
    #[error("no such session")]
    SessionNotFound,
    #[error("method not allowed for this endpoint (allowed: {allow})")]
    MethodNotAllowed { allow: Allow },
    #[error("missing bearer token in the Authorization header")]
    MissingToken,
    #[error("invalid e-mail or password")]
    BadCredentials,
    /// A signed-in user's password check failed (no e-mail was sent).
    #[error("wrong password")]
    WrongPassword,
    #[error("{0}")]
    Token(TokenRefusal),
    #[error("an account with this e-mail address already exists")]
    EmailTaken,
    #[error("too many attempts; retry in {retry_after_secs} s")]
    RateLimited { retry_after_secs: u64 },
    #[error("too many sign-ins in progress")]
    Overloaded,
    #[error("{0}")]
    Fault(#[from] Fault),
}

impl From<TokenFailure> for ApiError {
    fn from(f: TokenFailure) -> Self {
        match f.refusal() {
            Ok(refusal) => ApiError::Token(refusal),
            Err(fault) => ApiError::Fault(fault),
        }
    }
}

impl From<UserFailure> for ApiError {
    fn from(f: UserFailure) -> Self {
        match f {
            UserFailure::EmailTaken => ApiError::EmailTaken,
            UserFailure::BadCredentials => ApiError::BadCredentials,
            UserFailure::AccountGone => ApiError::Token(TokenRefusal::Revoked),
            UserFailure::RateLimited { retry_after_secs } => {
                ApiError::RateLimited { retry_after_secs }
            }
            UserFailure::Overloaded => ApiError::Overloaded,
            UserFailure::Fault(fault) => ApiError::Fault(fault),
            UserFailure::Token(t) => t.into(),
        }
    }
}

impl From<CallError> for ApiError {
    fn from(e: CallError) -> Self {
        ApiError::Fault(e.into())
    }
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::MalformedJson(_) | ApiError::EmptyBody(_) => StatusCode::BAD_REQUEST,
            ApiError::InvalidBody(_) | ApiError::InvalidField(_) => {
                StatusCode::UNPROCESSABLE_ENTITY
            }
            ApiError::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::BodyTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            ApiError::HeadersTooLarge(_) => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            ApiError::NotFound | ApiError::SessionNotFound => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::MissingToken
            | ApiError::BadCredentials
            | ApiError::WrongPassword
            | ApiError::Token(_) => StatusCode::UNAUTHORIZED,
            ApiError::EmailTaken => StatusCode::CONFLICT,
            ApiError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Overloaded => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Fault(f) => match f.kind() {
                FaultKind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
                FaultKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
            },
        }
    }

    /// The stable machine-readable code in the `error` field.
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::MalformedJson(_) | ApiError::EmptyBody(_) => "malformed_json",
            ApiError::InvalidBody(_) | ApiError::InvalidField(_) => "invalid_request",
            ApiError::UnsupportedMediaType => "unsupported_media_type",
            ApiError::PayloadTooLarge(_) => "payload_too_large",
            ApiError::BodyTimeout(_) => "request_timeout",
            ApiError::HeadersTooLarge(_) => "headers_too_large",
            ApiError::NotFound => "not_found",
            ApiError::SessionNotFound => "session_not_found",
            ApiError::MethodNotAllowed { .. } => "method_not_allowed",
            ApiError::MissingToken => "missing_token",
            ApiError::BadCredentials | ApiError::WrongPassword => "invalid_credentials",
            ApiError::Token(TokenRefusal::Expired) => "token_expired",
            ApiError::Token(TokenRefusal::Revoked) => "token_revoked",
            ApiError::Token(TokenRefusal::Reused) => "token_reused",
            ApiError::Token(TokenRefusal::Invalid) => "invalid_token",
            ApiError::EmailTaken => "email_taken",
            ApiError::RateLimited { .. } => "rate_limited",
            ApiError::Overloaded => "service_unavailable",
            ApiError::Fault(f) => match f.kind() {
                FaultKind::Unavailable => "service_unavailable",
                FaultKind::Internal => "internal_error",
            },
        }
    }

    pub fn into_response(self) -> Response<Full<Bytes>> {
        let status = self.status();
        let message = match &self {
            ApiError::Fault(fault) if fault.kind() == FaultKind::Internal => {
                let error_id = uuid::Uuid::new_v4().simple().to_string();
                tracing::error!(event = "internal_error", error_id, detail = %fault, "request failed");
                format!("internal error (id {error_id})")
            }
            ApiError::Fault(fault) => {
                tracing::warn!(event = "unavailable", detail = %fault, "request refused: 503");
                "service temporarily unavailable; retry shortly".to_owned()
            }
            ApiError::Overloaded => {
                tracing::warn!(event = "unavailable", detail = %self, "request refused: 503");
                "service temporarily unavailable; retry shortly".to_owned()
            }
            other => other.to_string(),
        };
        let body = ErrorBody {
            error: self.code(),
            message,
        };
        let bytes = serde_json::to_vec(&body).unwrap_or_default();
        let mut response = Response::new(Full::new(Bytes::from(bytes)));
        *response.status_mut() = status;
        let headers = response.headers_mut();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        if status == StatusCode::UNAUTHORIZED {
            headers.insert(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        // The rest of the request was not read: the connection cannot carry
        // another one, so close it (lingering; see `linger`).
        if matches!(
            self,
            ApiError::PayloadTooLarge(_) | ApiError::BodyTimeout(_) | ApiError::HeadersTooLarge(_)
        ) {
            headers.insert(hyper::header::CONNECTION, HeaderValue::from_static("close"));
        }
        match &self {
            _ if status == StatusCode::SERVICE_UNAVAILABLE => {
                headers.insert(RETRY_AFTER, HeaderValue::from_static("1"));
            }
            ApiError::MethodNotAllowed { allow } => {
                if let Ok(value) = HeaderValue::from_str(&allow.to_string()) {
                    headers.insert(hyper::header::ALLOW, value);
                }
            }
            ApiError::RateLimited { retry_after_secs } => {
                headers.insert(RETRY_AFTER, HeaderValue::from(*retry_after_secs));
            }
            _ => {}
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The document's list of codes covers every code answered.
    #[test]
    fn every_code_is_listed() {
        let errors = [
            ApiError::MalformedJson(String::new()),
            ApiError::EmptyBody(""),
            ApiError::InvalidBody(String::new()),
            ApiError::UnsupportedMediaType,
            ApiError::PayloadTooLarge(1),
            ApiError::BodyTimeout(std::time::Duration::ZERO),
            ApiError::HeadersTooLarge(1),
            ApiError::NotFound,
            ApiError::SessionNotFound,
            ApiError::MethodNotAllowed {
                allow: Allow::default(),
            },
            ApiError::MissingToken,
            ApiError::BadCredentials,
            ApiError::WrongPassword,
            ApiError::Token(TokenRefusal::Invalid),
            ApiError::Token(TokenRefusal::Expired),
            ApiError::Token(TokenRefusal::Revoked),
            ApiError::Token(TokenRefusal::Reused),
            ApiError::EmailTaken,
            ApiError::RateLimited {
                retry_after_secs: 1,
            },
            ApiError::Overloaded,
            ApiError::Fault(Fault::internal("test")),
        ];
        for error in errors {
            assert!(CODES.contains(&error.code()), "{}", error.code());
        }
    }
}
