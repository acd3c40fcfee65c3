//! The OpenAPI document served at `GET /openapi.json`, generated from the
//! code: each handler's `#[utoipa::path]`, the request and response types
//! (`ToSchema`), the named error answers ([`responses`]) and the route
//! table, from which the old service's aliases are added (an alias is its
//! endpoint's operation under the alias's method and path, tagged
//! `legacy`). Built once, served as the same bytes.
//!
//! The tests check that every row of the route table is in the document,
//! so an endpoint without its `#[utoipa::path]` fails them.

pub(crate) mod responses;

use std::sync::OnceLock;

use bytes::Bytes;
use hyper::Method;
use serde_json::Value;
use utoipa::openapi::path::{Operation, PathItem};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{Ref, RefOr, Required};
use utoipa::{Modify, OpenApi};

use super::error::ErrorBody;
use super::routes::ROUTES;
use super::{accounts, credentials, operations, probes, tokens};
use responses as r;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "authd",
        description = "JWT authentication service: sign up, sign in, refresh (rotating), revoke, authorize. Request bodies are JSON (`Content-Type: application/json`, an `application/*+json` type, or none); unknown fields are ignored, duplicate fields are refused (422). Every error is `{\"error\": <code>, \"message\": <text>}`.",
        license(name = "MIT"),
    ),
    paths(
        credentials::sign_up,
        credentials::sign_in,
        tokens::refresh,
        tokens::revoke,
        tokens::authorize,
        tokens::authorize_token,
        accounts::list_sessions,
        accounts::delete_session,
        accounts::change_password,
        accounts::delete_account,
        operations::health,
        probes::live,
        probes::ready,
        operations::jwks,
        operations::metrics,
        operations::openapi,
    ),
    components(
        schemas(ErrorBody),
        responses(
            r::MalformedJson,
            r::InvalidRequest,
            r::UnsupportedMediaType,
            r::PayloadTooLarge,
            r::RequestTimeout,
            r::HeadersTooLarge,
            r::EmailTaken,
            r::InvalidCredentials,
            r::RefreshRefused,
            r::RevokeRefused,
            r::AuthorizeRefused,
            r::PasswordRefused,
            r::SessionNotFound,
            r::RateLimited,
            r::Unavailable,
        ),
    ),
    modifiers(&BearerAuth, &OptionalBody, &Aliases, &HeaderLimit),
    tags(
        (name = "accounts", description = "Sign-up, sign-in, password change, account deletion."),
        (name = "tokens", description = "Access tokens: refresh, revoke, authorize."),
        (name = "sessions", description = "A signed-in user's own sessions: list them, end one."),
        (name = "operations", description = "Health, keys, metrics, this document."),
        (name = "legacy", description = "The predecessor service's paths, kept for its clients."),
    )
)]
struct ApiDoc;

/// The document as JSON, built on first use.
pub(crate) fn document() -> Bytes {
    static DOCUMENT: OnceLock<Bytes> = OnceLock::new();
    DOCUMENT
        .get_or_init(|| {
            // Serializing utoipa's own types cannot fail (string keys only).
            let mut json = serde_json::to_value(ApiDoc::openapi()).unwrap_or_default();
            fix_up(&mut json);
            Bytes::from(serde_json::to_vec(&json).unwrap_or_default())
        })
        .clone()
}

/// Two things utoipa 5 cannot say, said on the JSON: every documented
/// response header is `required` (authd always sends the headers it
/// documents, and schemathesis checks required ones; utoipa's `Header`
/// has no such field), and a link's fields are camelCase as OpenAPI
/// spells them (utoipa's `Link` writes `operation_id`, `request_body`).
fn fix_up(value: &mut Value) {
    match value {
        Value::Object(map) => {
            if let Some(Value::Object(headers)) = map.get_mut("headers") {
                for header in headers.values_mut().filter_map(Value::as_object_mut) {
                    header.insert("required".to_owned(), Value::Bool(true));
                }
            }
            if let Some(Value::Object(links)) = map.get_mut("links") {
                links
                    .values_mut()
                    .filter_map(Value::as_object_mut)
                    .for_each(camel_case_link);
            }
            map.values_mut().for_each(fix_up);
        }
        Value::Array(items) => items.iter_mut().for_each(fix_up),
        _ => {}
    }
}

fn camel_case_link(link: &mut serde_json::Map<String, Value>) {
    for (snake, camel) in [
        ("operation_id", "operationId"),
        ("operation_ref", "operationRef"),
        ("request_body", "requestBody"),
    ] {
        if let Some(field) = link.remove(snake) {
            link.insert(camel.to_owned(), field);
        }
    }
}

/// `bearerAuth`: the access token in `Authorization: Bearer`.
struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let scheme = HttpBuilder::new()
            .scheme(HttpAuthScheme::Bearer)
            .bearer_format("JWT")
            .description(Some("An access token from sign-up, sign-in or refresh."))
            .build();
        openapi
            .components
            .get_or_insert_with(Default::default)
            .add_security_scheme("bearerAuth", SecurityScheme::Http(scheme));
    }
}

/// `GET /auth/authorize-token` takes its token from a body or from the
/// Bearer header: its body is optional (an `Option` would make the schema
/// `null`-able instead, and a JSON `null` body is refused).
struct OptionalBody;

impl Modify for OptionalBody {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let body = openapi
            .paths
            .paths
            .get_mut("/auth/authorize-token")
            .and_then(|item| item.get.as_mut())
            .and_then(|operation| operation.request_body.as_mut());
        if let Some(body) = body {
            body.required = Some(Required::False);
        }
    }
}

/// The old service's paths: each row's alias gets a copy of the row's
/// operation, `legacy` + its id, also tagged `legacy`.
struct Aliases;

impl Modify for Aliases {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        for (row, (method, path)) in ROUTES
            .iter()
            .flat_map(|row| row.aliases.iter().map(move |alias| (row, alias)))
        {
            let Some(mut operation) = openapi
                .paths
                .paths
                .get_mut(row.path)
                .and_then(|item| operation_mut(item, &row.method))
                .cloned()
            else {
                // The tests fail on a row without its operation.
                continue;
            };
            operation.operation_id = operation.operation_id.map(|id| legacy_id(&id));
            operation
                .tags
                .get_or_insert_with(Vec::new)
                .push("legacy".to_owned());
            let note = format!("The old service's path for `{} {}`.", row.method, row.path);
            operation.description = Some(match operation.description.take() {
                Some(text) => format!("{text}\n\n{note}"),
                None => note,
            });
            let item = openapi.paths.paths.entry((*path).to_owned()).or_default();
            if let Some(slot) = operation_slot(item, method) {
                *slot = Some(operation);
            }
        }
    }
}

/// `signUp` -> `legacySignUp`.
fn legacy_id(id: &str) -> String {
    let mut chars = id.chars();
    let first = chars.next().map(|c| c.to_ascii_uppercase());
    format!(
        "legacy{}{}",
        first.map(String::from).unwrap_or_default(),
        chars.as_str()
    )
}

/// Every request can get 431 (the server answers it before any route).
struct HeaderLimit;

impl Modify for HeaderLimit {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        for item in openapi.paths.paths.values_mut() {
            for method in [
                Method::GET,
                Method::POST,
                Method::PUT,
                Method::DELETE,
                Method::PATCH,
            ] {
                if let Some(operation) = operation_mut(item, &method) {
                    operation.responses.responses.insert(
                        "431".to_owned(),
                        RefOr::Ref(Ref::from_response_name("HeadersTooLarge")),
                    );
                }
            }
        }
    }
}

fn operation_slot<'a>(
    item: &'a mut PathItem,
    method: &Method,
) -> Option<&'a mut Option<Operation>> {
    Some(match *method {
        Method::GET => &mut item.get,
        Method::POST => &mut item.post,
        Method::PUT => &mut item.put,
        Method::DELETE => &mut item.delete,
        Method::PATCH => &mut item.patch,
        _ => return None,
    })
}

fn operation_mut<'a>(item: &'a mut PathItem, method: &Method) -> Option<&'a mut Operation> {
    operation_slot(item, method).and_then(Option::as_mut)
}

#[cfg(test)]
mod tests;
