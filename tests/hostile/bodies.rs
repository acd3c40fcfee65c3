//! Hostile bodies: broken, non-object, oversized and deeply nested JSON,
//! wrong content types, unknown and duplicate fields.

use super::*;

both_backends!(
    broken_json,
    not_an_object,
    content_types,
    unknown_and_duplicate_fields,
    oversized_bodies,
    deep_nesting,
);

async fn broken_json(backend: Backend) {
    let Some(app) = app(backend, &[]).await else {
        return;
    };
    for path in ["/signup", "/signin", "/refresh", "/revoke"] {
        // `first` is the first field of the endpoint's body, `rest` the others.
        let (first, rest) = if path == "/signup" || path == "/signin" {
            ("email", format!(r#", "password": "{PASSWORD}""#))
        } else {
            ("access_token", String::new())
        };
        let good = format!(r#"{{"{first}": "a@example.com"{rest}}}"#);
        let truncated = &good[..good.len() / 2];
        let cases: Vec<(&str, Vec<u8>)> = vec![
            (
                "malformed",
                format!(r#"{{"{first}": "a@example.com", password: }}"#).into_bytes(),
            ),
            ("not JSON at all", b"hello".to_vec()),
            ("truncated", truncated.as_bytes().to_vec()),
            ("truncated after the brace", b"{".to_vec()),
            (
                "truncated inside a string",
                format!(r#"{{"{first}": "a@exa"#).into_bytes(),
            ),
            ("empty", Vec::new()),
            ("only whitespace", b"  \r\n\t ".to_vec()),
            ("trailing garbage", format!("{good} x").into_bytes()),
            ("two documents", format!("{good}{good}").into_bytes()),
            (
                "trailing comma",
                format!(r#"{{"{first}": "a@example.com"{rest},}}"#).into_bytes(),
            ),
            (
                "non-UTF-8 in a value",
                [
                    format!(r#"{{"{first}": ""#).as_bytes(),
                    b"\xff\xfe",
                    format!(r#"@example.com"{rest}}}"#).as_bytes(),
                ]
                .concat(),
            ),
            (
                "non-UTF-8 in a key",
                [
                    format!(r#"{{"{first}": "a@example.com"{rest}, ""#).as_bytes(),
                    b"\xc3\x28",
                    br#"": 1}"#,
                ]
                .concat(),
            ),
            (
                "non-UTF-8 in an unknown field's value",
                [
                    format!(r#"{{"{first}": "a@example.com"{rest}, "x": ""#).as_bytes(),
                    b"\xff\xfe\xfd",
                    br#""}"#,
                ]
                .concat(),
            ),
            (
                "non-UTF-8 outside a string",
                [
                    format!(r#"{{"{first}": "a@example.com"{rest}, "#).as_bytes(),
                    b"\xc3\x28",
                    br#" "x": 1}"#,
                ]
                .concat(),
            ),
            ("NUL bytes", b"\0\0\0\0".to_vec()),
            (
                "single quotes",
                format!("{{'{first}': 'a@example.com'}}").into_bytes(),
            ),
            (
                "a comment",
                format!(r#"{{/* hi */ "{first}": "a@example.com"{rest}}}"#).into_bytes(),
            ),
            ("NaN", format!(r#"{{"{first}": NaN{rest}}}"#).into_bytes()),
            (
                "a raw control character",
                format!("{{\"{first}\": \"a\u{1}@example.com\"{rest}}}").into_bytes(),
            ),
        ];
        for (what, body) in cases {
            let reply = post_raw(&app, path, body).await;
            refused(
                &app,
                reply,
                400,
                "malformed_json",
                &format!("{what} on {path}"),
            )
            .await;
        }
        // A lone surrogate escape is allowed by the JSON grammar but is no
        // Unicode string: a 400 or a 422 is right, never a success.
        let body = format!(r#"{{"{first}": "\ud800@example.com"{rest}}}"#);
        let reply = post_raw(&app, path, body).await;
        match reply.status {
            400 => reply.error(400, "malformed_json"),
            _ => reply.error(422, "invalid_request"),
        }
        alive(&app).await;
    }
    // The legacy aliases and the GET with a body read JSON the same way.
    for (method, path) in [
        (Method::PUT, "/auth/refresh"),
        (Method::DELETE, "/auth/revoke"),
        (Method::GET, "/auth/authorize-token"),
    ] {
        for body in [
            b"{\"access_token\": \"ab".to_vec(),
            Vec::new(),
            b"[".to_vec(),
        ] {
            let reply =
                send_bytes(&app, method.clone(), path, Some("application/json"), body).await;
            refused(
                &app,
                reply,
                400,
                "malformed_json",
                &format!("{method} {path}"),
            )
            .await;
        }
    }
}

async fn not_an_object(backend: Backend) {
    let Some(app) = app(backend, &[]).await else {
        return;
    };
    let address = email();
    for body in [
        json!([]),
        json!("a string"),
        json!(42),
        json!(-1.5),
        json!(null),
        json!(true),
        json!([{"email": address, "password": PASSWORD}]),
        // The fields in order, as an array: a struct must not be read from
        // a positional array.
        json!([address, PASSWORD]),
    ] {
        let reply = app.post_json("/signup", &body).await;
        refused(
            &app,
            reply,
            422,
            "invalid_request",
            &format!("signup with {body}"),
        )
        .await;
    }
    // Nothing was created by the refused requests.
    app.signin(&address, PASSWORD)
        .await
        .error(401, "invalid_credentials");
    let token = app.signed_up(&address).await;
    for path in ["/refresh", "/revoke"] {
        for body in [
            json!([]),
            json!(token),
            json!(null),
            json!([token]),
            json!([token, "all"]),
        ] {
            let reply = app.post_json(path, &body).await;
            refused(
                &app,
                reply,
                422,
                "invalid_request",
                &format!("{path} with {body}"),
            )
            .await;
        }
    }
    // The session is untouched by all of it.
    app.authorized(&token).await;
}

async fn content_types(backend: Backend) {
    let Some(app) = app(backend, &[]).await else {
        return;
    };
    let body = credentials(&email(), PASSWORD).to_string();
    for ct in [
        "text/plain",
        "text/plain; charset=utf-8",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
        "application/xml",
        "application/jsonx",
        "json",
        "",
    ] {
        for path in ["/signup", "/signin", "/refresh", "/revoke"] {
            let reply = send_bytes(&app, Method::POST, path, Some(ct), body.clone()).await;
            refused(
                &app,
                reply,
                415,
                "unsupported_media_type",
                &format!("{ct:?} on {path}"),
            )
            .await;
        }
    }
    // A form body, as a browser form would send it.
    let form = format!("email={}&password=correct+horse+battery", email());
    let reply = send_bytes(
        &app,
        Method::POST,
        "/signup",
        Some("application/x-www-form-urlencoded"),
        form,
    )
    .await;
    refused(&app, reply, 415, "unsupported_media_type", "form body").await;
    // A Content-Type header that is not even text.
    let request = app
        .request(Method::POST, "/signup")
        .header(
            CONTENT_TYPE,
            HeaderValue::from_bytes(b"application/json\xff").unwrap(),
        )
        .body(body.clone());
    let reply = app.send(request).await;
    refused(
        &app,
        reply,
        415,
        "unsupported_media_type",
        "non-ASCII Content-Type",
    )
    .await;
    // JSON without a Content-Type, with parameters, and +json are fine.
    for ct in [
        None,
        Some("application/json; charset=utf-8"),
        Some("Application/JSON"),
        Some("application/vnd.authd+json"),
    ] {
        let address = email();
        let reply = send_bytes(
            &app,
            Method::POST,
            "/signup",
            ct,
            credentials(&address, PASSWORD).to_string(),
        )
        .await;
        reply.token(201);
    }
    alive(&app).await;
}

async fn unknown_and_duplicate_fields(backend: Backend) {
    let Some(app) = app(backend, &[]).await else {
        return;
    };
    let address = email();
    // Unknown fields are ignored, as the predecessor did.
    let token = app
        .post_json(
            "/signup",
            &json!({
                "email": address, "password": PASSWORD,
                "is_admin": true, "role": "admin", "user_id": "00000000-0000-0000-0000-000000000000",
                "nested": {"a": [1, 2, {"b": null}]},
            }),
        )
        .await
        .token(201);
    app.post_json(
        "/signin",
        &json!({"email": address, "password": PASSWORD, "remember_me": true}),
    )
    .await
    .token(200);
    let token = app
        .post_json("/refresh", &json!({"access_token": token, "extra": 1}))
        .await
        .token(200);
    alive(&app).await;

    // Duplicate fields are refused, whichever copy would be valid.
    let other = email();
    let duplicates = [
        (
            "/signup",
            format!(r#"{{"email": "{other}", "email": "{address}", "password": "{PASSWORD}"}}"#),
        ),
        (
            "/signin",
            format!(
                r#"{{"email": "{address}", "password": "wrong password", "password": "{PASSWORD}"}}"#
            ),
        ),
        (
            "/refresh",
            format!(r#"{{"access_token": "x", "access_token": "{token}"}}"#),
        ),
        (
            "/revoke",
            format!(r#"{{"access_token": "{token}", "scope": "session", "scope": "all"}}"#),
        ),
    ];
    for (path, body) in duplicates {
        let reply = post_raw(&app, path, body.clone()).await;
        refused(
            &app,
            reply,
            422,
            "invalid_request",
            &format!("{path} with {body}"),
        )
        .await;
    }
    // Missing and mistyped fields, an unknown scope.
    for (path, body) in [
        ("/signup", json!({"email": email()})),
        ("/signup", json!({"password": PASSWORD})),
        ("/signup", json!({})),
        ("/signup", json!({"email": 5, "password": PASSWORD})),
        ("/signup", json!({"email": email(), "password": null})),
        ("/signup", json!({"email": [email()], "password": PASSWORD})),
        ("/refresh", json!({"token": token})),
        ("/refresh", json!({"access_token": {"jwt": token}})),
        (
            "/revoke",
            json!({"access_token": token, "scope": "everything"}),
        ),
        ("/revoke", json!({"access_token": token, "scope": null})),
        ("/revoke", json!({"access_token": token, "scope": 5})),
        ("/revoke", json!({"access_token": token, "scope": ["all"]})),
        ("/revoke", json!({"access_token": token, "scope": "ALL"})),
    ] {
        let reply = app.post_json(path, &body).await;
        refused(
            &app,
            reply,
            422,
            "invalid_request",
            &format!("{path} with {body}"),
        )
        .await;
    }
    // None of that touched the session.
    app.authorized(&token).await;
}

async fn oversized_bodies(backend: Backend) {
    let Some(app) = app(backend, &[]).await else {
        return;
    };
    let padding = "x".repeat(2 * BODY_LIMIT);
    let big = format!(r#"{{"email": "{}", "password": "{padding}"}}"#, email());

    // Declared with Content-Length: refused before it is read.
    let (status, body) = raw_exchange(
        &app,
        &format!(
            "POST /signup HTTP/1.1\r\nContent-Type: application/json\r\nContent-Length: {}",
            big.len()
        ),
        big.clone().into_bytes(),
    )
    .await;
    assert_error_body(status, &body, 413, "payload_too_large");
    alive(&app).await;

    // A Content-Length announcing a huge body, with almost nothing sent.
    let (status, body) = raw_exchange(
        &app,
        "POST /signin HTTP/1.1\r\nContent-Type: application/json\r\nContent-Length: 10000000000",
        b"{".to_vec(),
    )
    .await;
    assert_error_body(status, &body, 413, "payload_too_large");
    alive(&app).await;

    // Chunked, no Content-Length: cut off at the limit while reading.
    let mut chunked = Vec::new();
    for piece in big.as_bytes().chunks(1000) {
        chunked.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
        chunked.extend_from_slice(piece);
        chunked.extend_from_slice(b"\r\n");
    }
    chunked.extend_from_slice(b"0\r\n\r\n");
    for path in ["/signup", "/refresh"] {
        let (status, body) = raw_exchange(
            &app,
            &format!(
                "POST {path} HTTP/1.1\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked"
            ),
            chunked.clone(),
        )
        .await;
        assert_error_body(status, &body, 413, "payload_too_large");
        alive(&app).await;
    }

    // Through an ordinary keep-alive client: one byte over the limit, and
    // far over. The server does not read the rest of such a body, so it
    // must close the connection and say so (`Connection: close`): a client
    // that is not told reuses the connection for its next request, which
    // then fails when the server hangs up.
    for size in [BODY_LIMIT + 1, 4 * BODY_LIMIT] {
        let body = format!(r#"{{"access_token": "{}"}}"#, "a".repeat(size));
        let reply = post_raw(&app, "/refresh", body).await;
        assert_eq!(
            reply
                .headers
                .get(reqwest::header::CONNECTION)
                .and_then(|v| v.to_str().ok()),
            Some("close"),
            "a 413 for an unread body must close the connection: {reply:?}"
        );
        refused(
            &app,
            reply,
            413,
            "payload_too_large",
            &format!("{size}-byte token"),
        )
        .await;
    }
    // Exactly at the limit is read (and then judged on its content).
    let at_limit = {
        let frame = r#"{"access_token": ""}"#;
        format!(
            r#"{{"access_token": "{}"}}"#,
            "a".repeat(BODY_LIMIT - frame.len())
        )
    };
    assert_eq!(at_limit.len(), BODY_LIMIT);
    let reply = post_raw(&app, "/refresh", at_limit).await;
    refused(
        &app,
        reply,
        401,
        "invalid_token",
        "a token of exactly the limit",
    )
    .await;
}

async fn deep_nesting(backend: Backend) {
    // A larger body limit, so that deep nesting (not size) is what is tested.
    let Some(app) = app(backend, &[("AUTHD_MAX_BODY_BYTES", "1048576")]).await else {
        return;
    };
    for depth in [10_000usize, 100_000] {
        let nested = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
        let unclosed = "[".repeat(depth);
        let objects = format!("{}1{}", r#"{"a":"#.repeat(depth), "}".repeat(depth));

        // In a field that must be a string: the wrong type, 422.
        let body = format!(r#"{{"email": {nested}, "password": "{PASSWORD}"}}"#);
        let reply = post_raw(&app, "/signup", body).await;
        refused(
            &app,
            reply,
            422,
            "invalid_request",
            &format!("{depth} arrays as the e-mail"),
        )
        .await;
        let body = format!(r#"{{"access_token": {objects}}}"#);
        let reply = post_raw(&app, "/refresh", body).await;
        refused(
            &app,
            reply,
            422,
            "invalid_request",
            &format!("{depth} objects as the token"),
        )
        .await;

        // As the whole body: not an object, 422.
        let reply = post_raw(&app, "/signin", nested.clone()).await;
        refused(
            &app,
            reply,
            422,
            "invalid_request",
            &format!("{depth} arrays as the body"),
        )
        .await;

        // Unclosed: not JSON, 400.
        let body =
            format!(r#"{{"email": "a@example.com", "password": "{PASSWORD}", "x": {unclosed}"#);
        let reply = post_raw(&app, "/signin", body).await;
        refused(
            &app,
            reply,
            400,
            "malformed_json",
            &format!("{depth} unclosed arrays"),
        )
        .await;

        // In an unknown field, balanced: ignored like any unknown field
        // (serde_json skips it without recursing), so the sign-up succeeds.
        let address = email();
        let body = format!(
            r#"{{"email": "{address}", "password": "{PASSWORD}", "x": {nested}, "y": {objects}}}"#
        );
        post_raw(&app, "/signup", body).await.token(201);
        alive(&app).await;
    }
}
