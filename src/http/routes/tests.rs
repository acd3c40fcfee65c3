//! Tests of routing: which endpoint a method and path reach on each
//! surface, and the refusals of everything else.

use super::*;

const PUBLIC: Surface = Surface::Public { metrics: true };

#[test]
fn routing() {
    assert_eq!(
        route(PUBLIC, &Method::POST, "/signup").unwrap(),
        Endpoint::SignUp
    );
    assert_eq!(
        route(PUBLIC, &Method::PUT, "/auth/refresh").unwrap(),
        Endpoint::Refresh
    );
    assert_eq!(
        route(PUBLIC, &Method::DELETE, "/auth/revoke").unwrap(),
        Endpoint::Revoke
    );
    assert!(matches!(
        route(PUBLIC, &Method::GET, "/signup"),
        Err(ApiError::MethodNotAllowed { allow: "POST" })
    ));
    assert!(matches!(
        route(PUBLIC, &Method::GET, "/nope"),
        Err(ApiError::NotFound)
    ));
}

#[test]
fn surfaces() {
    let public_only = Surface::Public { metrics: false };
    assert!(matches!(
        route(public_only, &Method::GET, "/metrics"),
        Err(ApiError::NotFound)
    ));
    assert_eq!(
        route(PUBLIC, &Method::GET, "/metrics").unwrap(),
        Endpoint::Metrics
    );
    for path in ["/metrics", "/health", "/health/live", "/health/ready"] {
        assert!(route(Surface::Admin, &Method::GET, path).is_ok(), "{path}");
        assert!(route(public_only, &Method::GET, path).is_ok() || path == "/metrics");
    }
    for path in ["/signup", "/authorize", "/openapi.json"] {
        assert!(matches!(
            route(Surface::Admin, &Method::GET, path),
            Err(ApiError::NotFound)
        ));
    }
}
