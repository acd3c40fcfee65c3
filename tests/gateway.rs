//! authd behind real nginx, with the shipped configuration
//! (`config/nginx/authd.conf`, rendered with this test's addresses): two
//! authd binaries on one PostgreSQL, a small upstream API that echoes what
//! it was told, and nginx in front, as a foreground child process with its
//! own prefix, configuration, pid and logs in a temporary directory.
//!
//! nginx comes from Debian's `nginx` package (`.ci/run` installs it). When
//! it is missing the tests print `SKIPPED (nginx not installed)` and pass,
//! unless `AUTHD_REQUIRE_NGINX=1`, which makes them fail instead.

#[macro_use]
#[allow(dead_code, unused_macros)]
#[path = "support/mod.rs"]
mod support;

use std::convert::Infallible;
use std::io::Write;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use jsonwebtoken::Algorithm;
use reqwest::Method;
use serde_json::json;
use tokio::net::TcpListener;
use tokio::task::JoinSet;

use support::{
    claims_of, email, forge, free_port, Api, Backend, ChildApp, Reply, TcpProxy, TestDb, PASSWORD,
    SECRET_KEY,
};

const CONFIG: &str = include_str!("../config/nginx/authd.conf");

/// The nginx binary, or `None` (skip reported) when it is not installed.
fn nginx_binary() -> Option<PathBuf> {
    let found = ["/usr/sbin/nginx", "/usr/local/sbin/nginx", "/usr/bin/nginx"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists());
    if found.is_none() {
        if std::env::var("AUTHD_REQUIRE_NGINX").as_deref() == Ok("1") {
            panic!("nginx is not installed and AUTHD_REQUIRE_NGINX=1 (apt-get install -y nginx)");
        }
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED (nginx not installed): {}",
            support::test_name()
        );
    }
    found
}

/// nginx in the foreground, on a free port of 127.0.0.1; killed on drop.
struct Nginx {
    child: Child,
    dir: tempfile::TempDir,
    port: u16,
}

impl Nginx {
    /// Renders the shipped configuration for these addresses and starts
    /// nginx; waits until it proxies `/health` to authd.
    async fn start(binary: &Path, authd: [SocketAddr; 2], api: SocketAddr) -> Nginx {
        let dir = tempfile::tempdir().expect("temporary directory");
        let port = free_port();
        let site = CONFIG
            .replace("${AUTHD_1}", &authd[0].to_string())
            .replace("${AUTHD_2}", &authd[1].to_string())
            .replace("${API}", &api.to_string())
            .replace("${LISTEN}", &format!("127.0.0.1:{port}"));
        assert!(!site.contains("${"), "a placeholder was left: {site}");
        std::fs::write(dir.path().join("authd.conf"), site).expect("site config");
        let d = dir.path().display();
        // As root, nginx's workers would switch to `nobody`, which cannot
        // enter a private temporary directory.
        // SAFETY: geteuid(2) has no preconditions.
        let user = if unsafe { libc::geteuid() } == 0 {
            "user root;"
        } else {
            ""
        };
        let main = format!(
            "{user}
daemon off;
master_process on;
worker_processes 1;
error_log {d}/error.log info;
pid {d}/nginx.pid;
events {{ worker_connections 1024; }}
http {{
    access_log {d}/access.log;
    client_body_temp_path {d}/client_body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    include {d}/authd.conf;
}}
"
        );
        std::fs::write(dir.path().join("nginx.conf"), main).expect("nginx.conf");
        let stderr = std::fs::File::create(dir.path().join("stderr.log")).expect("log");
        let child = Command::new(binary)
            .arg("-p")
            .arg(dir.path())
            .arg("-c")
            .arg(dir.path().join("nginx.conf"))
            .arg("-e")
            .arg(dir.path().join("error.log"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("nginx starts");
        let mut nginx = Nginx { child, dir, port };
        let api = nginx.api();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = nginx.child.try_wait().expect("nginx status") {
                panic!("nginx exited ({status}):\n{}", nginx.logs());
            }
            if let Ok(r) = api.http.get(api.url("/health")).send().await {
                if r.status() == 200 {
                    break;
                }
            }
            assert!(
                Instant::now() < deadline,
                "nginx did not proxy /health:\n{}",
                nginx.logs()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        nginx
    }

    fn api(&self) -> Api {
        Api::with_timeout(
            SocketAddr::from(([127, 0, 0, 1], self.port)),
            Duration::from_secs(10),
        )
    }

    /// A client of nginx connecting from another loopback address, so that
    /// nginx and the client are told apart by address.
    fn api_from(&self, local: IpAddr) -> Api {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .local_address(local)
            .no_proxy()
            .build()
            .expect("client");
        Api {
            address: format!("http://127.0.0.1:{}", self.port),
            http,
        }
    }

    fn logs(&self) -> String {
        let read =
            |name: &str| std::fs::read_to_string(self.dir.path().join(name)).unwrap_or_default();
        format!("{}{}", read("stderr.log"), read("error.log"))
    }
}

impl Drop for Nginx {
    /// SIGTERM (nginx's fast shutdown: the master stops its workers, then
    /// itself); SIGKILL only if that did not end it. Killing the master
    /// outright would leave its workers running, holding the port.
    fn drop(&mut self) {
        if let Ok(pid) = libc::pid_t::try_from(self.child.id()) {
            // SAFETY: kill(2) has no memory-safety preconditions.
            unsafe { libc::kill(pid, libc::SIGTERM) };
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The protected API: answers every request with what it received, in
/// particular every `X-Authd-User-Id` header value.
async fn upstream_api() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("address");
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let service = service_fn(
                    |request: hyper::Request<hyper::body::Incoming>| async move {
                        let ids: Vec<String> = request
                            .headers()
                            .get_all("x-authd-user-id")
                            .iter()
                            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
                            .collect();
                        let body = json!({ "path": request.uri().path(), "user_ids": ids });
                        Ok::<_, Infallible>(hyper::Response::new(Full::new(Bytes::from(
                            body.to_string(),
                        ))))
                    },
                );
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}

/// `GET /api/<path>` through nginx with `token` (if any) and extra headers.
async fn call_api(api: &Api, token: Option<&str>, headers: &[(&str, &str)]) -> Reply {
    let mut request = api.request(Method::GET, "/api/orders");
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    api.send(request).await
}

fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64
}

/// Two authd binaries on one fresh PostgreSQL database.
async fn two_instances(db: &TestDb, extra: &[(&str, &str)]) -> (ChildApp, ChildApp) {
    let mut vars = vec![("AUTHD_TRUSTED_PROXIES", "127.0.0.1/32")];
    vars.extend_from_slice(extra);
    let a = ChildApp::start_with(db, 0, &vars).await;
    let b = ChildApp::start_with(db, 1, &vars).await;
    (a, b)
}

fn addr_of(app: &ChildApp) -> SocketAddr {
    app.api
        .address
        .trim_start_matches("http://")
        .parse()
        .expect("address")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_lets_only_valid_tokens_through() {
    let Some(binary) = nginx_binary() else {
        return;
    };
    let Some(db) = TestDb::create(Backend::Postgres).await else {
        return;
    };
    let (a, b) = two_instances(&db, &[]).await;
    let nginx = Nginx::start(&binary, [addr_of(&a), addr_of(&b)], upstream_api().await).await;
    let gw = nginx.api();

    // authd's own API through nginx: sign up, and both instances serve.
    let user = email();
    let token = gw.signed_up(&user).await;
    let user_id = a.api.authorized(&token).await.user_id();
    b.api.authorized(&token).await;

    // A valid token reaches the API, with authd's user id, and a client's
    // own copy of the header is gone.
    for _ in 0..4 {
        let reply = call_api(&gw, Some(&token), &[("x-authd-user-id", "forged")]).await;
        assert_eq!(reply.status, 200, "{reply:?}\n{}", nginx.logs());
        assert_eq!(reply.body["path"], "/api/orders", "{reply:?}");
        assert_eq!(reply.body["user_ids"], json!([user_id]), "{reply:?}");
    }

    // Missing, malformed, forged, expired and revoked tokens: 401 from
    // nginx, in authd's JSON error shape, and the API never sees them.
    let refused = |reply: Reply, what: &str| {
        assert_eq!(reply.status, 401, "{what}: {reply:?}");
        assert_eq!(reply.body["error"], "unauthorized", "{what}: {reply:?}");
        assert!(
            reply.body.get("user_ids").is_none(),
            "{what} reached the API"
        );
        assert_eq!(
            reply
                .headers
                .get("www-authenticate")
                .and_then(|v| v.to_str().ok()),
            Some("Bearer"),
            "{what}"
        );
    };
    refused(
        call_api(&gw, None, &[("x-authd-user-id", &user_id)]).await,
        "no token",
    );
    refused(call_api(&gw, Some("not.a.jwt"), &[]).await, "garbage");
    let mut claims = claims_of(&token);
    refused(
        call_api(
            &gw,
            Some(&forge(
                &claims,
                Algorithm::HS256,
                b"another key of at least 32 bytes!",
            )),
            &[],
        )
        .await,
        "wrong key",
    );
    claims["iat"] = json!(now_secs() - 1000);
    claims["exp"] = json!(now_secs() - 100);
    let expired = forge(&claims, Algorithm::HS256, SECRET_KEY.as_bytes());
    refused(call_api(&gw, Some(&expired), &[]).await, "expired");
    let second = gw.signed_in(&user).await;
    assert_eq!(gw.revoke(&token).await.status, 200);
    // The other instance learns of it through the change feed (within
    // milliseconds; the cluster tests bound it at a second)...
    support::wait_for(
        "the revocation to reach both instances",
        Duration::from_secs(2),
        || async {
            let (one, two) = (a.api.authorize(&token).await, b.api.authorize(&token).await);
            (one.status == 401 && two.status == 401).then_some(())
        },
    )
    .await;
    // ...after which the gateway refuses it, whichever instance it asks.
    for _ in 0..4 {
        refused(call_api(&gw, Some(&token), &[]).await, "revoked");
    }
    // Another session of the same user is untouched.
    let reply = call_api(&gw, Some(&second), &[]).await;
    assert_eq!(reply.body["user_ids"], json!([user_id]), "{reply:?}");
}

/// authd answering 503 (its database is gone and the session must be read
/// from it) stays a 503 through nginx, with Retry-After, and so does authd
/// being unreachable altogether: never nginx's 500.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authd_unavailable_stays_503_through_the_gateway() {
    let Some(binary) = nginx_binary() else {
        return;
    };
    let Some(db) = TestDb::create(Backend::Postgres).await else {
        return;
    };
    let mut proxy = TcpProxy::to_postgres().await;
    let url = db.url_via(proxy.addr);
    let app = ChildApp::start_with(
        &db,
        0,
        &[
            ("DATABASE_URL", url.as_str()),
            ("AUTHD_DB_TIMEOUT_MS", "500"),
        ],
    )
    .await;
    let api = upstream_api().await;
    let nginx = Nginx::start(&binary, [addr_of(&app), addr_of(&app)], api).await;
    let gw = nginx.api();
    let token = gw.signed_up(&email()).await;
    // A validly signed token of a session this instance has never seen:
    // answering it needs the database.
    let mut claims = claims_of(&token);
    claims["sid"] = json!(uuid::Uuid::new_v4().to_string());
    let unknown_session = forge(&claims, Algorithm::HS256, SECRET_KEY.as_bytes());

    proxy.stop().await;
    let direct = app.api.authorize(&unknown_session).await;
    assert_eq!(direct.status, 503, "authd itself: {direct:?}");
    let reply = call_api(&gw, Some(&unknown_session), &[]).await;
    assert_eq!(
        reply.status,
        503,
        "through nginx: {reply:?}\n{}",
        nginx.logs()
    );
    assert_eq!(reply.body["error"], "service_unavailable", "{reply:?}");
    assert_eq!(
        reply
            .headers
            .get("retry-after")
            .and_then(|v| v.to_str().ok()),
        Some("1")
    );
    // A cached session keeps working meanwhile.
    assert_eq!(call_api(&gw, Some(&token), &[]).await.status, 200);
    proxy.start().await;

    // authd gone entirely: still a 503, not a 500.
    app.kill();
    let reply = call_api(&gw, Some(&token), &[]).await;
    assert_eq!(reply.status, 503, "authd down: {reply:?}");
    assert_eq!(reply.body["error"], "service_unavailable", "{reply:?}");
}

/// With `trusted_proxies` set to nginx's address, authd rate-limits the
/// client nginx saw, whatever forwarding headers the client forged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_address_survives_the_gateway_and_cannot_be_forged() {
    let Some(binary) = nginx_binary() else {
        return;
    };
    let Some(db) = TestDb::create(Backend::Postgres).await else {
        return;
    };
    let limits = [
        ("AUTHD_RATE_LIMIT_ENABLED", "true"),
        ("AUTHD_RATE_LIMIT_PER_IP_PER_MINUTE", "2"),
        ("AUTHD_RATE_LIMIT_PER_ACCOUNT_PER_MINUTE", "100"),
    ];
    // One instance twice: the limiter is per instance.
    let app = ChildApp::start_with(
        &db,
        0,
        &[
            limits[0],
            limits[1],
            limits[2],
            ("AUTHD_TRUSTED_PROXIES", "127.0.0.1/32"),
        ],
    )
    .await;
    let nginx = Nginx::start(
        &binary,
        [addr_of(&app), addr_of(&app)],
        upstream_api().await,
    )
    .await;
    // Clients on 127.0.0.2 and 127.0.0.3; nginx reaches authd from 127.0.0.1.
    let mallory = nginx.api_from(IpAddr::from([127, 0, 0, 2]));
    let alice = nginx.api_from(IpAddr::from([127, 0, 0, 3]));
    let signin = |api: &Api, forged: usize| {
        let hop = format!("198.51.100.{forged}");
        let request = api
            .request(Method::POST, "/signin")
            .header("x-forwarded-for", hop.clone())
            .header("forwarded", format!("for={hop}"))
            .json(&json!({ "email": email(), "password": PASSWORD }));
        let api = api.clone();
        async move { api.send(request).await }
    };
    signin(&mallory, 1).await.error(401, "invalid_credentials");
    signin(&mallory, 2).await.error(401, "invalid_credentials");
    // A new forged address every time, and still the same client.
    let third = signin(&mallory, 3).await;
    assert_eq!(
        third.status, 429,
        "forged headers escaped the limit: {third:?}"
    );
    // Another client behind the same nginx has its own budget.
    signin(&alice, 1).await.error(401, "invalid_credentials");
}

/// Load through nginx over both instances; one is killed with SIGKILL in
/// the middle. Requests may fail only while nginx fails over: the ones in
/// flight on the dead instance at that moment. None may fail once a second
/// has passed, and at most one per load worker before that.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_one_instance_under_load_fails_only_during_failover() {
    let Some(binary) = nginx_binary() else {
        return;
    };
    let Some(db) = TestDb::create(Backend::Postgres).await else {
        return;
    };
    let (a, b) = two_instances(&db, &[]).await;
    let nginx = Nginx::start(&binary, [addr_of(&a), addr_of(&b)], upstream_api().await).await;
    let gw = nginx.api();
    const WORKERS: usize = 8;
    let mut accounts = Vec::new();
    for _ in 0..WORKERS {
        let user = email();
        let token = gw.signed_up(&user).await;
        accounts.push((user, token));
    }
    // Let both instances cache every session.
    for (_, token) in &accounts {
        a.api.authorized(token).await;
        b.api.authorized(token).await;
    }

    let started = Instant::now();
    let kill_at = Duration::from_millis(1500);
    let run_for = Duration::from_millis(4500);
    let mut load = JoinSet::new();
    for (user, token) in accounts {
        let gw = gw.bounded(Duration::from_secs(10));
        load.spawn(async move {
            // (time since start, what, status or transport error)
            let mut outcomes: Vec<(Duration, &'static str, Result<u16, String>)> = Vec::new();
            let mut i = 0usize;
            while started.elapsed() < run_for {
                let (what, request) = match i % 3 {
                    0 => (
                        "GET /api/orders",
                        gw.request(Method::GET, "/api/orders").bearer_auth(&token),
                    ),
                    1 => (
                        "GET /authorize",
                        gw.request(Method::GET, "/authorize").bearer_auth(&token),
                    ),
                    _ => (
                        "POST /signin",
                        gw.request(Method::POST, "/signin")
                            .json(&json!({ "email": user, "password": PASSWORD })),
                    ),
                };
                let outcome = match request.send().await {
                    Ok(response) => Ok(response.status().as_u16()),
                    Err(e) => Err(e.to_string()),
                };
                outcomes.push((started.elapsed(), what, outcome));
                i += 1;
            }
            outcomes
        });
    }
    tokio::time::sleep(kill_at).await;
    let killed_at = started.elapsed();
    a.kill();

    let mut total = 0usize;
    let mut failures = Vec::new();
    while let Some(outcomes) = load.join_next().await {
        for (at, what, outcome) in outcomes.expect("load worker") {
            total += 1;
            if !matches!(outcome, Ok(200)) {
                // A failure is nginx's JSON 503 (a request lost with the
                // dead instance), never a hang or a transport error.
                assert_eq!(outcome, Ok(503), "{what}");
                assert!(
                    at >= killed_at,
                    "{what} failed before the kill: {outcome:?}"
                );
                failures.push((at - killed_at, what, outcome));
            }
        }
    }
    let late: Vec<_> = failures
        .iter()
        .filter(|(since_kill, _, _)| *since_kill > Duration::from_secs(1))
        .collect();
    let _ = writeln!(
        std::io::stderr(),
        "failover: {} of {total} requests failed, the last {:?} after the kill: {failures:?}",
        failures.len(),
        failures.iter().map(|f| f.0).max().unwrap_or_default()
    );
    assert!(
        total > 100,
        "too little load to prove anything: {total} requests"
    );
    assert!(
        late.is_empty(),
        "failures later than 1 s after the kill: {late:?}"
    );
    assert!(
        failures.len() <= WORKERS,
        "{} failures, more than one per worker: {failures:?}",
        failures.len()
    );
    // The survivor carries everything.
    b.api.health().await;
    assert_eq!(gw.health().await.status, 200);
}
