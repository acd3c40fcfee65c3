//! What every integration test needs: a fresh database (a SQLite file in a
//! temporary directory, or a fresh PostgreSQL database), authd started on
//! it in-process exactly as `main.rs` starts it (or the real binary, for the
//! kill -9 tests), and a small HTTP client speaking authd's API.
//!
//! Every scenario runs against both backends through [`both_backends!`].
//! PostgreSQL is expected at 127.0.0.1:5432 (user `postgres`, no password);
//! when it is not reachable its half of each scenario prints
//! `SKIPPED (PostgreSQL not reachable): <test>` and passes, unless
//! `AUTHD_REQUIRE_POSTGRES=1`, which turns the skip into a failure.
//! `AUTHD_TEST_LOG=<filter>` shows the in-process apps' logs.
//!
//! Several test binaries include this module and each uses a different part
//! of it, hence the allowance for unused items (the `unused` group, so that
//! an includer that also allows `dead_code` does not duplicate it).

#![allow(unused)]

use std::collections::HashMap;
use std::future::Future;
use std::io::Write;
use std::net::SocketAddr;
use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use authd::actors::Services;
use authd::settings::{LogFormat, Settings};
use authd::startup::{Application, StartupError};
use base64::Engine;
use reqwest::header::HeaderMap;
use reqwest::{Method, RequestBuilder};
use serde_json::{json, Value};
use tempfile::TempDir;
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::{oneshot, Mutex};
use tokio::task::{JoinHandle, JoinSet};
use tokio_postgres::NoTls;

/// The HS256 key every test app signs with (tests forge tokens with it).
pub const SECRET_KEY: &str = "integration-tests-secret-key-0123456789abcdef";
/// A password that satisfies the rules.
pub const PASSWORD: &str = "correct horse battery staple";
/// Where the tests expect PostgreSQL.
const PG_HOST: &str = "127.0.0.1";
const PG_PORT: u16 = 5432;
/// How long any single request of a test may take before the test fails.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);

/// Runs each named `async fn case(backend: Backend)` once per backend, as
/// `case::sqlite` and `case::postgres`.
macro_rules! both_backends {
    ($($case:ident),+ $(,)?) => {
        $(
            mod $case {
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn sqlite() {
                    super::$case($crate::support::Backend::Sqlite).await;
                }

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn postgres() {
                    super::$case($crate::support::Backend::Postgres).await;
                }
            }
        )+
    };
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// The name libtest gave the current test's thread (the test's path).
pub fn test_name() -> String {
    std::thread::current()
        .name()
        .unwrap_or("<unknown test>")
        .to_owned()
}

/// Whether PostgreSQL answers at 127.0.0.1:5432. If not: fails the test
/// when `AUTHD_REQUIRE_POSTGRES=1`, otherwise reports the skip.
pub async fn postgres_available() -> bool {
    let mut config = tokio_postgres::Config::new();
    config
        .host(PG_HOST)
        .port(PG_PORT)
        .user("postgres")
        .dbname("postgres")
        .connect_timeout(Duration::from_secs(3));
    let reachable = matches!(
        tokio::time::timeout(Duration::from_secs(5), config.connect(NoTls)).await,
        Ok(Ok(_))
    );
    if reachable {
        return true;
    }
    if std::env::var("AUTHD_REQUIRE_POSTGRES").as_deref() == Ok("1") {
        panic!(
            "PostgreSQL is not reachable at {PG_HOST}:{PG_PORT} and AUTHD_REQUIRE_POSTGRES=1 ({})",
            test_name()
        );
    }
    // Straight to the process's stderr: libtest captures `eprintln!`, and
    // a skip should be visible in a passing run.
    let _ = writeln!(
        std::io::stderr(),
        "SKIPPED (PostgreSQL not reachable): {}",
        test_name()
    );
    false
}

/// One test's database: a SQLite file in a temporary directory, or a
/// PostgreSQL database with a fresh name (authd creates it; it is dropped
/// when the last handle goes). The temporary directory exists for both
/// backends and also holds `AUTHD_DATA_DIR` and child-process logs.
pub struct TestDb {
    pub backend: Backend,
    /// The `DATABASE_URL` of this database.
    pub url: String,
    dir: TempDir,
    pg_name: Option<String>,
}

impl TestDb {
    /// `None` when the backend is PostgreSQL and it is not reachable (the
    /// skip has been reported; the test should return).
    pub async fn create(backend: Backend) -> Option<Arc<TestDb>> {
        let dir = tempfile::tempdir().expect("temporary directory");
        let (url, pg_name) = match backend {
            Backend::Sqlite => (
                format!("sqlite://{}", dir.path().join("authd.db").display()),
                None,
            ),
            Backend::Postgres => {
                if !postgres_available().await {
                    return None;
                }
                let name = format!("authd_t_{}", uuid::Uuid::new_v4().simple());
                (
                    format!("postgres://postgres@{PG_HOST}:{PG_PORT}/{name}"),
                    Some(name),
                )
            }
        };
        Some(Arc::new(TestDb {
            backend,
            url,
            dir,
            pg_name,
        }))
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The `DATABASE_URL` of this (PostgreSQL) database reached through
    /// `addr` instead of the server's own address.
    pub fn url_via(&self, addr: SocketAddr) -> String {
        let name = self
            .pg_name
            .as_deref()
            .expect("url_via is for PostgreSQL databases");
        format!("postgres://postgres@{addr}/{name}")
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let Some(name) = self.pg_name.take() else {
            return;
        };
        // Best effort, on a thread of its own: we may be inside a runtime.
        let dropper = std::thread::spawn(move || {
            let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            runtime.block_on(async move {
                let mut config = tokio_postgres::Config::new();
                config
                    .host(PG_HOST)
                    .port(PG_PORT)
                    .user("postgres")
                    .dbname("postgres")
                    .connect_timeout(Duration::from_secs(3));
                let Ok(Ok((client, connection))) =
                    tokio::time::timeout(Duration::from_secs(5), config.connect(NoTls)).await
                else {
                    return;
                };
                tokio::spawn(connection);
                let sql = format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)");
                let _ =
                    tokio::time::timeout(Duration::from_secs(10), client.batch_execute(&sql)).await;
            });
        });
        let _ = dropper.join();
    }
}

/// The environment every test app starts from: an ephemeral port, a known
/// key, cheap argon2 parameters, no rate limits, and the test's database.
fn base_vars(db: &TestDb) -> HashMap<String, String> {
    [
        ("AUTHD_BIND", "127.0.0.1:0".to_owned()),
        ("SECRET_KEY", SECRET_KEY.to_owned()),
        ("DATABASE_URL", db.url.clone()),
        (
            "AUTHD_DATA_DIR",
            db.dir().join("data").display().to_string(),
        ),
        ("AUTHD_ARGON2_M_KIB", "1024".to_owned()),
        ("AUTHD_ARGON2_T", "1".to_owned()),
        ("AUTHD_DB_POOL_SIZE", "8".to_owned()),
        // Tests sign in far more often than a person; the limits have a
        // test of their own.
        ("AUTHD_RATE_LIMIT_ENABLED", "false".to_owned()),
        // No load balancer to wait for; the delay has a test of its own.
        ("AUTHD_SHUTDOWN_DELAY_MS", "0".to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}

/// authd running in-process on a test database.
pub struct TestApp {
    pub api: Api,
    /// `http://127.0.0.1:<port>`.
    pub address: String,
    /// The admin listener, when `AUTHD_ADMIN_BIND` was set.
    pub admin: Option<Api>,
    pub services: Services,
    pub db: Arc<TestDb>,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<Result<(), StartupError>>>,
}

impl Deref for TestApp {
    type Target = Api;

    fn deref(&self) -> &Api {
        &self.api
    }
}

/// Starts authd on a fresh database of `backend`, with `overrides` (env-style
/// variables) on top of the test defaults. `None`: PostgreSQL is not
/// reachable and the test should return (the skip has been reported).
pub async fn spawn_app(backend: Backend, overrides: &[(&str, &str)]) -> Option<TestApp> {
    let db = TestDb::create(backend).await?;
    Some(TestApp::spawn_on(db, overrides).await)
}

impl TestApp {
    /// Starts authd on an existing test database (e.g. again, after a
    /// shutdown).
    pub async fn spawn_on(db: Arc<TestDb>, overrides: &[(&str, &str)]) -> TestApp {
        init_logging();
        let mut vars = base_vars(&db);
        for (key, value) in overrides {
            vars.insert((*key).to_owned(), (*value).to_owned());
        }
        let settings = Settings::load_from(None, vars).expect("test settings are valid");
        let app = Application::build(settings)
            .await
            .expect("the application starts");
        let addr = app.local_addr();
        let admin = app.admin_addr().map(Api::new);
        let services = app.services().clone();
        let (shutdown, stop) = oneshot::channel::<()>();
        // Dropping the sender (the TestApp) also triggers the shutdown.
        let task = tokio::spawn(app.run_until(async move {
            let _ = stop.await;
        }));
        let api = Api::new(addr);
        TestApp {
            address: api.address.clone(),
            admin,
            api,
            services,
            db,
            shutdown: Some(shutdown),
            task: Some(task),
        }
    }

    /// Triggers a graceful shutdown, waits for it (it must succeed), and
    /// hands back the database for a restart.
    pub async fn shutdown(mut self) -> Arc<TestDb> {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        let result = self.stopped(Duration::from_secs(20)).await;
        if let Err(e) = result {
            panic!("authd stopped with an error: {e}");
        }
        Arc::clone(&self.db)
    }

    /// Waits (at most `limit`) for the application to stop by itself and
    /// returns how it ended.
    pub async fn stopped(&mut self, limit: Duration) -> Result<(), StartupError> {
        let task = self.task.take().expect("the application is running");
        match tokio::time::timeout(limit, task).await {
            Ok(Ok(result)) => result,
            Ok(Err(e)) => panic!("the application task failed: {e}"),
            Err(_) => panic!("the application did not stop within {limit:?}"),
        }
    }
}

fn init_logging() {
    if let Ok(level) = std::env::var("AUTHD_TEST_LOG") {
        authd::telemetry::init(LogFormat::Human, &level);
    }
}

/// One HTTP answer: status, decoded JSON body (or the raw text as a JSON
/// string if it was not JSON), headers.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub body: Value,
    pub headers: HeaderMap,
}

impl Reply {
    /// Asserts a token answer (`access_token`, `token_type: "bearer"`,
    /// `expires_in > 0`) with `status`, and returns the token.
    #[track_caller]
    pub fn token(&self, status: u16) -> String {
        assert_eq!(self.status, status, "unexpected answer: {self:?}");
        let token = self.body["access_token"]
            .as_str()
            .unwrap_or_else(|| panic!("no access_token in {self:?}"));
        assert_eq!(
            token.split('.').count(),
            3,
            "access_token is not a JWT: {self:?}"
        );
        assert_eq!(self.body["token_type"], "bearer", "{self:?}");
        let expires_in = self.body["expires_in"]
            .as_i64()
            .unwrap_or_else(|| panic!("no integer expires_in in {self:?}"));
        assert!(expires_in > 0, "expires_in must be positive: {self:?}");
        token.to_owned()
    }

    /// Asserts an error answer: `status`, a JSON content type and a body
    /// `{"error": code, "message": <non-empty>}`.
    #[track_caller]
    pub fn error(&self, status: u16, code: &str) {
        assert_eq!(self.status, status, "unexpected answer: {self:?}");
        assert_eq!(self.body["error"], code, "unexpected error code: {self:?}");
        assert!(
            self.body["message"].as_str().is_some_and(|m| !m.is_empty()),
            "error without a message: {self:?}"
        );
        assert!(self.is_json(), "error body is not JSON: {self:?}");
    }

    /// Asserts a 401 whose code is one of `codes`.
    #[track_caller]
    pub fn unauthorized(&self, codes: &[&str]) {
        assert_eq!(self.status, 401, "expected 401: {self:?}");
        let code = self.body["error"].as_str().unwrap_or_default();
        assert!(
            codes.contains(&code),
            "expected one of {codes:?}, got {self:?}"
        );
        self.error(401, code);
    }

    pub fn is_json(&self) -> bool {
        self.headers
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/json"))
    }

    /// The `user_id` of an authorize answer.
    #[track_caller]
    pub fn user_id(&self) -> String {
        assert_eq!(self.status, 200, "expected an authorized answer: {self:?}");
        let id = self.body["user_id"]
            .as_str()
            .unwrap_or_else(|| panic!("no user_id in {self:?}"));
        uuid::Uuid::parse_str(id).unwrap_or_else(|_| panic!("user_id is not a UUID: {self:?}"));
        id.to_owned()
    }

    /// The `session_id` of an authorize answer.
    #[track_caller]
    pub fn session_id(&self) -> String {
        assert_eq!(self.status, 200, "expected an authorized answer: {self:?}");
        let id = self.body["session_id"]
            .as_str()
            .unwrap_or_else(|| panic!("no session_id in {self:?}"));
        uuid::Uuid::parse_str(id).unwrap_or_else(|_| panic!("session_id is not a UUID: {self:?}"));
        id.to_owned()
    }
}

/// A client for one authd instance. Every request is bounded in time, and
/// no answer may ever be a 500: a client cannot cause an internal error.
#[derive(Clone)]
pub struct Api {
    pub address: String,
    pub http: reqwest::Client,
}

impl Api {
    pub fn new(addr: SocketAddr) -> Api {
        Api::with_timeout(addr, REQUEST_TIMEOUT)
    }

    pub fn with_timeout(addr: SocketAddr, timeout: Duration) -> Api {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .no_proxy()
            .build()
            .expect("HTTP client");
        Api {
            address: format!("http://{addr}"),
            http,
        }
    }

    /// The same server with another per-request time limit.
    pub fn bounded(&self, timeout: Duration) -> Api {
        let addr = self
            .address
            .trim_start_matches("http://")
            .parse()
            .expect("address");
        Api::with_timeout(addr, timeout)
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.address)
    }

    pub fn request(&self, method: Method, path: &str) -> RequestBuilder {
        self.http.request(method, self.url(path))
    }

    /// Sends `request`; fails the test on a transport error (including a
    /// timeout) or a 500.
    pub async fn send(&self, request: RequestBuilder) -> Reply {
        let described = format!("{request:?}");
        let response = request
            .send()
            .await
            .unwrap_or_else(|e| panic!("request failed ({e:?}): {described}"));
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let text = response
            .text()
            .await
            .unwrap_or_else(|e| panic!("reading the body failed ({e:?}): {described}"));
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        let reply = Reply {
            status,
            body,
            headers,
        };
        assert_ne!(reply.status, 500, "authd answered 500: {reply:?}");
        reply
    }

    pub async fn post_json(&self, path: &str, body: &Value) -> Reply {
        self.send(self.request(Method::POST, path).json(body)).await
    }

    pub async fn signup(&self, email: &str, password: &str) -> Reply {
        self.post_json("/signup", &json!({ "email": email, "password": password }))
            .await
    }

    pub async fn signin(&self, email: &str, password: &str) -> Reply {
        self.post_json("/signin", &json!({ "email": email, "password": password }))
            .await
    }

    pub async fn refresh(&self, token: &str) -> Reply {
        self.post_json("/refresh", &json!({ "access_token": token }))
            .await
    }

    pub async fn revoke(&self, token: &str) -> Reply {
        self.post_json("/revoke", &json!({ "access_token": token }))
            .await
    }

    pub async fn authorize(&self, token: &str) -> Reply {
        self.send(self.request(Method::GET, "/authorize").bearer_auth(token))
            .await
    }

    pub async fn health(&self) -> Reply {
        self.send(self.request(Method::GET, "/health")).await
    }

    /// Signs up `email` with [`PASSWORD`], asserting 201; returns the token.
    pub async fn signed_up(&self, email: &str) -> String {
        self.signup(email, PASSWORD).await.token(201)
    }

    /// Signs in `email` with [`PASSWORD`], asserting 200; returns the token.
    pub async fn signed_in(&self, email: &str) -> String {
        self.signin(email, PASSWORD).await.token(200)
    }

    /// Refreshes `token`, asserting 200 and a different token; returns it.
    pub async fn refreshed(&self, token: &str) -> String {
        let next = self.refresh(token).await.token(200);
        assert_ne!(next, token, "refresh must rotate the token");
        next
    }

    /// Asserts that `token` authorizes; returns the answer.
    pub async fn authorized(&self, token: &str) -> Reply {
        let reply = self.authorize(token).await;
        assert_eq!(reply.status, 200, "token should authorize: {reply:?}");
        reply.user_id();
        reply.session_id();
        reply
    }

    /// Asserts that `token` neither authorizes nor refreshes.
    pub async fn refused(&self, token: &str) {
        self.authorize(token).await.unauthorized(&[
            "invalid_token",
            "token_revoked",
            "token_expired",
        ]);
        self.refresh(token)
            .await
            .unauthorized(&["invalid_token", "token_revoked", "token_reused"]);
    }
}

/// Polls `probe` every 25 ms until it returns `Some`, failing the test
/// after `limit`.
pub async fn wait_for<T, F, Fut>(what: &str, limit: Duration, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + limit;
    loop {
        if let Some(value) = probe().await {
            return value;
        }
        if Instant::now() >= deadline {
            panic!("timed out after {limit:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// A random, valid, lower-case e-mail address.
pub fn email() -> String {
    format!("user-{}@example.com", uuid::Uuid::new_v4().simple())
}

/// The decoded claims of a JWT (no verification).
pub fn claims_of(token: &str) -> Value {
    let payload = token.split('.').nth(1).expect("a JWT has a payload");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .expect("payload is base64url");
    serde_json::from_slice(&bytes).expect("payload is JSON")
}

/// Signs `claims` with `key` and `alg`, as an attacker (or a test) would.
pub fn forge(claims: &Value, alg: jsonwebtoken::Algorithm, key: &[u8]) -> String {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(alg),
        claims,
        &jsonwebtoken::EncodingKey::from_secret(key),
    )
    .expect("signing a test token")
}

/// Sends raw bytes over a fresh connection and returns the status code and
/// the raw response.
pub async fn raw_http(address: &str, request: &[u8]) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = address.trim_start_matches("http://");
    let exchange = async {
        let mut stream = TcpStream::connect(addr).await.expect("connect");
        // The server may answer (and close) before reading everything.
        let _ = stream.write_all(request).await;
        let mut response = Vec::new();
        let _ = stream.read_to_end(&mut response).await;
        String::from_utf8_lossy(&response).into_owned()
    };
    let response = tokio::time::timeout(REQUEST_TIMEOUT, exchange)
        .await
        .expect("raw request timed out");
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no HTTP status line in {response:?}"));
    (status, response)
}

/// A free TCP port on 127.0.0.1 (free when this returns).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// The real `authd` binary running as a child process on a test database.
/// Dropping it kills the process.
pub struct ChildApp {
    child: Child,
    pub api: Api,
    log: PathBuf,
}

impl ChildApp {
    /// Starts the binary and waits until `/health` answers 200.
    pub async fn start(db: &TestDb, run: usize) -> ChildApp {
        ChildApp::start_with(db, run, &[]).await
    }

    /// Like [`start`](Self::start), with extra environment variables.
    pub async fn start_with(db: &TestDb, run: usize, overrides: &[(&str, &str)]) -> ChildApp {
        let port = free_port();
        let log = db.dir().join(format!("authd-{run}.log"));
        let log_file = std::fs::File::create(&log).expect("log file");
        let mut command = Command::new(env!("CARGO_BIN_EXE_authd"));
        command.env_clear();
        if let Ok(path) = std::env::var("PATH") {
            command.env("PATH", path);
        }
        for (key, value) in base_vars(db) {
            command.env(key, value);
        }
        command
            .envs(overrides.iter().copied())
            .env("AUTHD_BIND", format!("127.0.0.1:{port}"))
            .env("AUTHD_LOG_LEVEL", "info")
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().expect("log file"))
            .stderr(log_file);
        let child = command.spawn().expect("the authd binary starts");
        let mut app = ChildApp {
            child,
            api: Api::with_timeout(
                SocketAddr::from(([127, 0, 0, 1], port)),
                Duration::from_secs(2),
            ),
            log,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = app.child.try_wait().expect("child status") {
                panic!("authd exited early ({status}); log:\n{}", app.log());
            }
            if let Ok(response) = app.api.http.get(app.api.url("/health")).send().await {
                if response.status().as_u16() == 200 {
                    break;
                }
            }
            if Instant::now() >= deadline {
                panic!("authd did not become healthy; log:\n{}", app.log());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        app.api = app.api.bounded(REQUEST_TIMEOUT);
        app
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The process id (for reading `/proc/<pid>/status`).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGTERM, then waits (at most `limit`) for the process to exit.
    pub async fn terminate(mut self, limit: Duration) -> std::process::ExitStatus {
        self.send_sigterm();
        self.exited(limit).await
    }

    /// Sends SIGTERM and returns at once.
    pub fn send_sigterm(&self) {
        let pid = libc::pid_t::try_from(self.child.id()).expect("a pid");
        // SAFETY: kill(2) has no memory-safety preconditions.
        assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0, "SIGTERM sent");
    }

    /// Whether the process has exited (without waiting).
    pub fn has_exited(&mut self) -> bool {
        self.child.try_wait().expect("child status").is_some()
    }

    /// Waits (at most `limit`) for the process to exit.
    pub async fn exited(&mut self, limit: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().expect("child status") {
                return status;
            }
            if Instant::now() >= deadline {
                panic!(
                    "authd did not exit within {limit:?} of SIGTERM; log:\n{}",
                    self.log()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// SIGKILL: no shutdown, no flush, no destructor.
    pub fn kill(mut self) {
        self.child.kill().expect("SIGKILL");
        let status = self.child.wait().expect("reaping the child");
        assert!(!status.success(), "a killed process cannot succeed");
    }
}

impl Drop for ChildApp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A TCP proxy in front of PostgreSQL that can be cut (listener closed,
/// every forwarded connection dropped) and restored on the same port.
pub struct TcpProxy {
    pub addr: SocketAddr,
    target: SocketAddr,
    accept: Option<JoinHandle<()>>,
    connections: Arc<Mutex<JoinSet<()>>>,
}

impl TcpProxy {
    /// Starts a proxy on an ephemeral port of 127.0.0.1 forwarding to
    /// PostgreSQL.
    pub async fn to_postgres() -> TcpProxy {
        let target = SocketAddr::from(([127, 0, 0, 1], PG_PORT));
        let mut proxy = TcpProxy {
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            target,
            accept: None,
            connections: Arc::new(Mutex::new(JoinSet::new())),
        };
        proxy.start().await;
        proxy
    }

    /// (Re)opens the listener, on the same port after the first time.
    pub async fn start(&mut self) {
        assert!(self.accept.is_none(), "the proxy is already running");
        let socket = TcpSocket::new_v4().expect("socket");
        socket.set_reuseaddr(true).expect("SO_REUSEADDR");
        socket.bind(self.addr).expect("the proxy binds its port");
        let listener = socket.listen(128).expect("listen");
        self.addr = listener.local_addr().expect("proxy address");
        let target = self.target;
        let connections = Arc::clone(&self.connections);
        self.accept = Some(tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let mut set = connections.lock().await;
                while set.try_join_next().is_some() {}
                set.spawn(async move {
                    if let Ok(mut outbound) = TcpStream::connect(target).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
            }
        }));
    }

    /// Closes the listener and drops every forwarded connection.
    pub async fn stop(&mut self) {
        if let Some(accept) = self.accept.take() {
            accept.abort();
            let _ = accept.await;
        }
        self.connections.lock().await.shutdown().await;
    }
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        if let Some(accept) = self.accept.take() {
            accept.abort();
        }
    }
}
