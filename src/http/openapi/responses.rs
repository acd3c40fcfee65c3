//! The error answers the document names once and every operation refers
//! to (`#/components/responses/...`), and the schemas of bodies that no
//! Rust type of this layer serializes (the JWK Set is built as JSON by
//! the signing keys).
//!
//! Each error answer lists the `error` codes ([`ApiError::code`]) an
//! operation can get with its status, so a client (and schemathesis)
//! knows the whole vocabulary per status.
//!
//! [`ApiError::code`]: crate::http::ApiError::code

use std::collections::BTreeMap;

use utoipa::openapi::header::HeaderBuilder;
use utoipa::openapi::schema::{ObjectBuilder, Type};
use utoipa::openapi::{ContentBuilder, Ref, RefOr, Response, ResponseBuilder};
use utoipa::{IntoResponses, ToResponse, ToSchema};

/// Which header an error answer always carries.
#[derive(Clone, Copy)]
enum Carries {
    Nothing,
    /// `WWW-Authenticate: Bearer` (every 401).
    Challenge,
    /// `Retry-After: <seconds>` (429).
    RetryAfter,
    /// `Retry-After: 1` (503).
    RetryInOne,
}

fn error_response(description: &str, codes: &[&str], carries: Carries) -> Response {
    let schema = ObjectBuilder::new()
        .description(Some(description))
        .property(
            "error",
            ObjectBuilder::new()
                .schema_type(Type::String)
                .enum_values(Some(codes.iter().copied())),
        )
        .required("error")
        .property(
            "message",
            ObjectBuilder::new()
                .schema_type(Type::String)
                .min_length(Some(1)),
        )
        .required("message");
    let response = ResponseBuilder::new().description(description).content(
        "application/json",
        ContentBuilder::new().schema(Some(schema)).build(),
    );
    let header = |description: &str, schema: ObjectBuilder| {
        HeaderBuilder::new()
            .description(Some(description))
            .schema(schema)
            .build()
    };
    match carries {
        Carries::Nothing => response,
        Carries::Challenge => response.header(
            "WWW-Authenticate",
            header(
                "Always `Bearer`.",
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .enum_values(Some(["Bearer"])),
            ),
        ),
        Carries::RetryAfter => response.header(
            "Retry-After",
            header(
                "Seconds to wait before retrying (at least 1).",
                ObjectBuilder::new()
                    .schema_type(Type::Integer)
                    .minimum(Some(1)),
            ),
        ),
        Carries::RetryInOne => response.header(
            "Retry-After",
            header(
                "Always `1`: retry after a second.",
                ObjectBuilder::new()
                    .schema_type(Type::Integer)
                    .enum_values(Some([1])),
            ),
        ),
    }
    .build()
}

/// Declares unit types that are named error answers.
macro_rules! error_answers {
    ($($(#[doc = $doc:literal])+ $name:ident: [$($code:literal),+], $carries:ident;)+) => {
        $(
            $(#[doc = $doc])+
            pub(crate) struct $name;

            impl<'r> ToResponse<'r> for $name {
                fn response() -> (&'r str, RefOr<Response>) {
                    let description = [$($doc.trim()),+].join(" ");
                    let response = error_response(&description, &[$($code),+], Carries::$carries);
                    (stringify!($name), RefOr::T(response))
                }
            }
        )+
    };
}

error_answers! {
    /// The body is not JSON (syntax error, truncation, invalid UTF-8,
    /// nesting too deep), or there is none where one is required.
    MalformedJson: ["malformed_json"], Nothing;
    /// Valid JSON of the wrong shape (not an object, a missing or mistyped
    /// or duplicate field), an invalid e-mail address, a password under 8
    /// characters or over 1024 bytes, an unknown `scope`, a bad `limit`
    /// or `cursor`.
    InvalidRequest: ["invalid_request"], Nothing;
    /// A Content-Type other than JSON.
    UnsupportedMediaType: ["unsupported_media_type"], Nothing;
    /// The body is larger than the server's limit (`max_body_bytes`, 16 KiB
    /// by default).
    PayloadTooLarge: ["payload_too_large"], Nothing;
    /// The body did not arrive within `body_read_timeout_ms` (10 s by
    /// default); the connection is closed.
    RequestTimeout: ["request_timeout"], Nothing;
    /// The request line and headers exceed `max_header_bytes` (16 KiB by
    /// default); the connection is closed. Past twice that limit the
    /// server's read buffer is full and the 431 carries no body.
    HeadersTooLarge: ["headers_too_large"], Nothing;
    /// An account with this e-mail address (case-insensitively) exists.
    EmailTaken: ["email_taken"], Nothing;
    /// Wrong e-mail or password.
    InvalidCredentials: ["invalid_credentials"], Challenge;
    /// The token is not valid (signature, algorithm, issuer, audience,
    /// claims, an unknown or superseded session), its session is revoked or
    /// over, or it was already rotated (reuse: the session is now revoked).
    RefreshRefused: ["invalid_token", "token_revoked", "token_reused"], Challenge;
    /// The token is not valid, or (`scope: "all"`) its session is already
    /// over.
    RevokeRefused: ["invalid_token", "token_revoked"], Challenge;
    /// No bearer token, or it is invalid, expired, superseded by a refresh,
    /// or its session is revoked or over.
    AuthorizeRefused: ["missing_token", "invalid_token", "token_expired", "token_revoked"], Challenge;
    /// No bearer token, or it is invalid, expired, superseded or its
    /// session is over; or the password is wrong (answered no sooner than
    /// `signin_failure_floor_ms`).
    PasswordRefused: ["missing_token", "invalid_token", "token_expired", "token_revoked", "invalid_credentials"], Challenge;
    /// Not one of the caller's live sessions: someone else's, unknown,
    /// already ended, or not a session id at all. The answer never says
    /// which.
    SessionNotFound: ["session_not_found"], Nothing;
    /// Too many password checks or sign-ups from this address or for this
    /// account.
    RateLimited: ["rate_limited"], RetryAfter;
    /// The database is down or slow, an actor is restarting, or the hashing
    /// queue is full.
    Unavailable: ["service_unavailable"], RetryInOne;
}

/// The refusals of every endpoint that reads a JSON body: 400, 408, 413,
/// 415 and 422.
pub(crate) struct JsonBodyRefusals;

impl IntoResponses for JsonBodyRefusals {
    fn responses() -> BTreeMap<String, RefOr<Response>> {
        [
            ("400", "MalformedJson"),
            ("408", "RequestTimeout"),
            ("413", "PayloadTooLarge"),
            ("415", "UnsupportedMediaType"),
            ("422", "InvalidRequest"),
        ]
        .into_iter()
        .map(|(status, name)| (status.to_owned(), RefOr::Ref(Ref::from_response_name(name))))
        .collect()
    }
}

/// The public keys that verify authd's tokens (`GET
/// /.well-known/jwks.json`); empty with HS256.
#[derive(ToSchema)]
#[allow(dead_code)] // Describes JSON built by the signing keys.
pub(crate) struct JwkSet {
    keys: Vec<Jwk>,
}

/// One Ed25519 public key.
#[derive(ToSchema)]
#[allow(dead_code)]
pub(crate) struct Jwk {
    #[schema(inline)]
    kty: Kty,
    #[schema(inline)]
    crv: Crv,
    #[schema(inline)]
    alg: Alg,
    #[schema(inline)]
    r#use: Use,
    kid: String,
    /// The public key, base64url without padding.
    x: String,
}

#[derive(ToSchema)]
#[allow(dead_code, clippy::upper_case_acronyms)]
enum Kty {
    OKP,
}

#[derive(ToSchema)]
#[allow(dead_code)]
enum Crv {
    Ed25519,
}

#[derive(ToSchema)]
#[allow(dead_code)]
enum Alg {
    EdDSA,
}

#[derive(ToSchema)]
#[allow(dead_code, non_camel_case_types)]
enum Use {
    sig,
}
