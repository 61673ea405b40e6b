//! A relay running in this test process on a free loopback port, with a
//! manual clock, fast password hashing, and a backend chosen by the test.

#![allow(dead_code, clippy::unwrap_used)]

use std::net::SocketAddr;
use std::sync::Arc;

use kavro_server::auth::password::Passwords;
use kavro_server::clock::ManualClock;
use kavro_server::config::Config;
use kavro_server::state::AppState;
use kavro_server::testing::{TestDatabase, TestRedisPrefix};
use poem::listener::{Acceptor as _, Listener as _, TcpListener};
use reqwest::{Method, RequestBuilder, StatusCode};
use serde_json::{Value, json};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Db {
    Sqlite,
    Postgres,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Counters {
    Memory,
    Redis,
}

pub struct TestServer {
    pub base: String,
    pub client: reqwest::Client,
    pub clock: Arc<ManualClock>,
    pub state: Arc<AppState>,
    /// What this instance was started with (a second instance can share it).
    pub config: Config,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
    /// `None` on a second instance: the first owns the data and services.
    dir_guard: Option<tempfile::TempDir>,
    db_guard: Option<TestDatabase>,
    /// Declared after the server's state so its keys go after the server stops.
    redis_guard: Option<TestRedisPrefix>,
}

/// Rate limits off unless a test turns them on; 127.0.0.1 is a trusted
/// proxy, so a test can pose as several client IPs with `X-Forwarded-For`.
pub fn test_config(dir: &std::path::Path) -> Config {
    let mut config = Config {
        data_dir: dir.to_path_buf(),
        trusted_proxies: vec!["127.0.0.1/32".parse().unwrap()],
        ..Config::default()
    };
    config.rate_limits = kavro_server::config::Toggle::Off;
    config
}

impl TestServer {
    /// `None` when the backend's service is not configured (the test skips).
    pub async fn start(
        db: Db,
        counters: Counters,
        tweak: impl FnOnce(&mut Config),
    ) -> Option<Self> {
        Self::start_with(db, counters, Passwords::fast_for_tests(), tweak).await
    }

    pub async fn start_with(
        db: Db,
        counters: Counters,
        passwords: Passwords,
        tweak: impl FnOnce(&mut Config),
    ) -> Option<Self> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let dir = tempfile::tempdir().unwrap();
        let mut config = test_config(dir.path());
        let mut test_db = None;
        if db == Db::Postgres {
            let created = TestDatabase::create().await?;
            config.database_url.clone_from(&created.url);
            config.jwt_secret = "route-tests-9c41f7e2b8d35a60-not-a-real-secret"
                .to_owned()
                .into();
            config.fernet_keys = kavro_server::fieldcrypt::FieldCrypt::generate_key().into();
            test_db = Some(created);
        }
        let mut redis = None;
        if counters == Counters::Redis {
            let prefix = TestRedisPrefix::create("kavro-test")?;
            config.redis_url.clone_from(&prefix.url);
            config.redis_prefix.clone_from(&prefix.prefix);
            redis = Some(prefix);
        }
        tweak(&mut config);
        let mut server = Self::serve(config, Arc::new(ManualClock::default()), passwords).await;
        server.dir_guard = Some(dir);
        server.db_guard = test_db;
        server.redis_guard = redis;
        Some(server)
    }

    /// A second relay instance on the same data directory, database, Redis
    /// prefix, secrets and clock, as in a scaled-out deployment. Drop it
    /// before the first.
    pub async fn second_instance(&self) -> Self {
        Self::serve(
            self.config.clone(),
            self.clock.clone(),
            Passwords::fast_for_tests(),
        )
        .await
    }

    async fn serve(config: Config, clock: Arc<ManualClock>, passwords: Passwords) -> Self {
        let state = kavro_server::bootstrap::build_with(&config, clock.clone(), passwords)
            .await
            .unwrap();
        let acceptor = TcpListener::bind("127.0.0.1:0")
            .into_acceptor()
            .await
            .unwrap();
        let addr: SocketAddr = *acceptor.local_addr()[0].as_socket_addr().unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let serve_state = state.clone();
        let serve_config = config.clone();
        let task = tokio::spawn(async move {
            kavro_server::server::serve(acceptor, serve_state, &serve_config, async {
                let _ = rx.await;
            })
            .await
            .unwrap();
        });
        Self {
            base: format!("http://{addr}"),
            // A deadline on every call (longer than any long-poll a test asks for).
            client: reqwest::Client::builder()
                .timeout(std::time::Duration::from_secs(90))
                .build()
                .unwrap(),
            clock,
            state,
            config,
            shutdown: Some(tx),
            task: Some(task),
            dir_guard: None,
            db_guard: None,
            redis_guard: None,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub fn request(&self, method: Method, path: &str) -> RequestBuilder {
        self.client.request(method, self.url(path))
    }

    /// Sends and decodes: (status, JSON body or Null).
    pub async fn call(&self, builder: RequestBuilder) -> (StatusCode, Value) {
        let response = builder.send().await.unwrap();
        let status = response.status();
        let text = response.text().await.unwrap();
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        (status, body)
    }

    pub async fn post(&self, path: &str, token: Option<&str>, body: Value) -> (StatusCode, Value) {
        let mut builder = self.request(Method::POST, path).json(&body);
        if let Some(token) = token {
            builder = builder.bearer_auth(token);
        }
        self.call(builder).await
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> (StatusCode, Value) {
        let mut builder = self.request(Method::GET, path);
        if let Some(token) = token {
            builder = builder.bearer_auth(token);
        }
        self.call(builder).await
    }

    /// A plain-text GET (e.g. `/metrics`): (status, text).
    pub async fn text(&self, path: &str) -> (StatusCode, String) {
        let response = self.request(Method::GET, path).send().await.unwrap();
        (response.status(), response.text().await.unwrap())
    }

    /// Polls `check` every 5 ms until it holds; fails after 20 s.
    pub async fn until(&self, what: &str, check: impl Fn() -> bool) {
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
        while !check() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "{what}: not within 20 s"
            );
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
    }

    /// Registers `name` with a valid password; returns (token, user id).
    pub async fn register(&self, name: &str) -> (String, i64) {
        let (status, body) = self
            .post(
                "/auth/register",
                None,
                json!({"username": name, "password": "Passw0rd!"}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        let token = body["access_token"].as_str().unwrap().to_owned();
        let (_, me) = self.get("/auth/me", Some(&token)).await;
        (token, me["user_id"].as_i64().unwrap())
    }

    /// Logs `name` in (password as [`TestServer::register`] sets it).
    pub async fn login(&self, name: &str) -> String {
        let (status, body) = self
            .post(
                "/auth/login",
                None,
                json!({"username": name, "password": "Passw0rd!"}),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body["access_token"].as_str().unwrap().to_owned()
    }

    /// Writes raw bytes on a fresh connection (ignoring a write refused after
    /// the server answered early) and parses the response.
    pub async fn raw(&self, request: &[u8]) -> (StatusCode, Value) {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let addr = self.base.trim_start_matches("http://");
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let _ = stream.write_all(request).await;
        let mut response = Vec::new();
        let read = stream.read_to_end(&mut response);
        let _ = tokio::time::timeout(std::time::Duration::from_secs(30), read)
            .await
            .expect("the connection is answered and closed within 30 s");
        let text = String::from_utf8_lossy(&response);
        let status: u16 = text
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("no HTTP response: {text:?}"));
        let body = text.split("\r\n\r\n").nth(1).unwrap_or("");
        (
            StatusCode::from_u16(status).unwrap(),
            serde_json::from_str(body).unwrap_or(Value::Null),
        )
    }

    pub async fn stop(mut self) {
        self.shutdown_now().await;
    }

    async fn shutdown_now(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// A well-formed message body: 40 bytes of "ciphertext", a valid key.
pub fn message_body(recipient: i64) -> Value {
    json!({
        "recipient_id": recipient,
        "ciphertext": kavro_proto::validate::base64_encode(&[7u8; 40]),
        "ephemeral_pubkey": "ab".repeat(32),
    })
}

/// Asserts the contract's error shape and returns the message.
pub fn assert_error(status: StatusCode, body: &Value, expected: StatusCode) -> String {
    assert_eq!(status, expected, "{body}");
    assert_eq!(
        body["status_code"].as_u64(),
        Some(u64::from(expected.as_u16())),
        "{body}"
    );
    body["error"].as_str().expect("error text").to_owned()
}

/// Runs an async test body on SQLite and, when configured, PostgreSQL.
#[macro_export]
macro_rules! on_both_databases {
    ($name:ident, $body:expr) => {
        mod $name {
            use super::*;
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                let Some(server) = TestServer::start(Db::Sqlite, Counters::Memory, |_| {}).await
                else {
                    return;
                };
                ($body)(server).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                let Some(server) = TestServer::start(Db::Postgres, Counters::Memory, |_| {}).await
                else {
                    return;
                };
                ($body)(server).await;
            }
        }
    };
}

/// How many of `statuses` are `a`, and how many are `b`: the tally a
/// concurrency test compares with what must have happened.
pub fn tally(statuses: &[StatusCode], a: StatusCode, b: StatusCode) -> (usize, usize) {
    let count = |code| statuses.iter().filter(|s| **s == code).count();
    (count(a), count(b))
}
