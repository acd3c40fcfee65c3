//! Tests of routing: which row a method and path reach on each surface,
//! and the refusals of everything else.

use super::*;

const PUBLIC: Surface = Surface::Public { metrics: true };

fn label(surface: Surface, method: Method, path: &str) -> Result<&'static str, ApiError> {
    route(surface, &method, path).map(|row| row.label)
}

#[test]
fn routing() {
    assert_eq!(label(PUBLIC, Method::POST, "/signup").unwrap(), "signup");
    assert_eq!(
        label(PUBLIC, Method::POST, "/auth/signup").unwrap(),
        "signup"
    );
    assert_eq!(
        label(PUBLIC, Method::PUT, "/auth/refresh").unwrap(),
        "refresh"
    );
    assert_eq!(
        label(PUBLIC, Method::DELETE, "/auth/revoke").unwrap(),
        "revoke"
    );
    assert_eq!(
        label(PUBLIC, Method::GET, "/auth/authorize-token").unwrap(),
        "authorize_token"
    );
    let Err(ApiError::MethodNotAllowed { allow }) = label(PUBLIC, Method::GET, "/signup") else {
        panic!("GET /signup is 405");
    };
    assert_eq!(allow.to_string(), "POST");
    let Err(ApiError::MethodNotAllowed { allow }) = label(PUBLIC, Method::POST, "/auth/refresh")
    else {
        panic!("POST /auth/refresh is 405");
    };
    assert_eq!(allow.to_string(), "PUT");
    assert!(matches!(
        label(PUBLIC, Method::GET, "/nope"),
        Err(ApiError::NotFound)
    ));
}

#[test]
fn path_parameters() {
    let id = "/sessions/0b7c6a52-5f7e-4c1e-9d3c-2f1a6e0c9b11";
    assert_eq!(label(PUBLIC, Method::DELETE, id).unwrap(), "session_delete");
    // Any one segment reaches the handler (which answers 404 for a
    // malformed id, like for an unknown one); two do not.
    assert_eq!(
        label(PUBLIC, Method::DELETE, "/sessions/x").unwrap(),
        "session_delete"
    );
    assert!(matches!(
        label(PUBLIC, Method::DELETE, "/sessions/a/b"),
        Err(ApiError::NotFound)
    ));
    assert_eq!(label(PUBLIC, Method::GET, "/sessions").unwrap(), "sessions");
    let Err(ApiError::MethodNotAllowed { allow }) = label(PUBLIC, Method::GET, id) else {
        panic!("GET /sessions/{{id}} is 405");
    };
    assert_eq!(allow.to_string(), "DELETE");
}

#[test]
fn allow_lists_every_method_of_a_path() {
    let mut allow = Allow::default();
    allow.add(&Method::DELETE);
    allow.add(&Method::GET);
    assert_eq!(allow.to_string(), "GET, DELETE");
}

#[test]
fn labels_are_unique() {
    let mut labels: Vec<_> = ROUTES.iter().map(|row| row.label).collect();
    labels.sort_unstable();
    labels.dedup();
    assert_eq!(labels.len(), ROUTES.len());
}

#[test]
fn surfaces() {
    let public_only = Surface::Public { metrics: false };
    assert!(matches!(
        label(public_only, Method::GET, "/metrics"),
        Err(ApiError::NotFound)
    ));
    assert_eq!(label(PUBLIC, Method::GET, "/metrics").unwrap(), "metrics");
    for path in ["/metrics", "/health", "/health/live", "/health/ready"] {
        assert!(label(Surface::Admin, Method::GET, path).is_ok(), "{path}");
        assert!(label(public_only, Method::GET, path).is_ok() || path == "/metrics");
    }
    for path in ["/signup", "/authorize", "/openapi.json"] {
        assert!(matches!(
            label(Surface::Admin, Method::GET, path),
            Err(ApiError::NotFound)
        ));
    }
}
