//! Test support: the external services a test may use, and the rule for when
//! they are absent. `KAVRO_TEST_DATABASE_URL` / `KAVRO_TEST_REDIS_URL` name
//! them; without them a test prints why it skips, unless
//! `KAVRO_REQUIRE_SERVICES=1` (CI), which turns the skip into a failure.
//!
//! Compiled only for this crate's unit tests and with the `testing` feature,
//! which the dev-dependencies of the test crates turn on: a release build of
//! the relay does not contain it.

use std::future::Future;
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::str::FromStr;
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::{Duration, Instant};

use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, Connection};

mod redis_cluster;
mod s3;
pub use redis_cluster::PrivateRedisCluster;
pub use s3::PrivateS3;

/// Prints why a test skips, or fails it when `KAVRO_REQUIRE_SERVICES=1`.
pub(crate) fn skip(what: &str) {
    assert!(
        std::env::var("KAVRO_REQUIRE_SERVICES").as_deref() != Ok("1"),
        "{what} but KAVRO_REQUIRE_SERVICES=1"
    );
    eprintln!("skipping: {what}");
}

fn service(var: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(url) if !url.trim().is_empty() => Some(url),
        _ => {
            skip(&format!("{var} is not set"));
            None
        }
    }
}

/// The Redis to test against, if any.
pub fn redis_url() -> Option<String> {
    service("KAVRO_TEST_REDIS_URL")
}

/// Runs `cleanup` to completion on a private runtime on its own thread: a
/// `Drop` runs with or without a runtime around it, and must not need one.
fn clean_up(cleanup: impl Future<Output = ()> + Send + 'static) {
    let _ = std::thread::spawn(move || {
        if let Ok(rt) = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            rt.block_on(cleanup);
        }
    })
    .join();
}

/// A fresh PostgreSQL database, dropped when this value is.
pub struct TestDatabase {
    pub url: String,
    admin_url: String,
    name: String,
}

impl TestDatabase {
    /// Creates a uniquely named database on the test server, if one is configured.
    pub async fn create() -> Option<Self> {
        let admin_url = service("KAVRO_TEST_DATABASE_URL")?;
        let name = format!("kavro_test_{}", uuid::Uuid::new_v4().simple());
        let mut admin = sqlx::PgConnection::connect(&admin_url)
            .await
            .expect("connect to KAVRO_TEST_DATABASE_URL");
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut admin)
            .await
            .expect("create test database");
        let _ = admin.close().await;
        let url = PgConnectOptions::from_str(&admin_url)
            .expect("valid KAVRO_TEST_DATABASE_URL")
            .database(&name)
            .to_url_lossy()
            .to_string();
        Some(Self {
            url,
            admin_url,
            name,
        })
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let admin_url = self.admin_url.clone();
        let drop_database = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name);
        clean_up(async move {
            if let Ok(mut admin) = sqlx::PgConnection::connect(&admin_url).await {
                let _ = sqlx::query(sqlx::AssertSqlSafe(drop_database))
                    .execute(&mut admin)
                    .await;
            }
        });
    }
}

/// A unique Redis key prefix on the test Redis; every key under it is deleted
/// when this value is dropped (also when the test fails).
pub struct TestRedisPrefix {
    pub url: String,
    pub prefix: String,
}

impl TestRedisPrefix {
    /// `<label>-<random>` on the test Redis, if one is configured.
    pub fn create(label: &str) -> Option<Self> {
        Some(Self {
            url: redis_url()?,
            prefix: format!("{label}-{}", uuid::Uuid::new_v4().simple()),
        })
    }
}

impl Drop for TestRedisPrefix {
    fn drop(&mut self) {
        let url = self.url.clone();
        let pattern = format!("{}:*", self.prefix);
        clean_up(async move {
            let Ok(client) = redis::Client::open(url) else {
                return;
            };
            let Ok(mut conn) = client.get_multiplexed_async_connection().await else {
                return;
            };
            let keys: Vec<String> = redis::AsyncCommands::keys(&mut conn, &pattern)
                .await
                .unwrap_or_default();
            if !keys.is_empty() {
                let _: Result<(), _> = redis::AsyncCommands::del(&mut conn, keys).await;
            }
        });
    }
}

/// A private `redis-server` on a free loopback port, for tests that stop and
/// restart Redis (never the machine's shared one). Killed when dropped.
pub struct PrivateRedis {
    child: Option<Child>,
    port: u16,
}

impl PrivateRedis {
    /// Starts one; `None` (the test skips) when `redis-server` cannot run.
    pub fn start() -> Option<Self> {
        let started = free_port().and_then(|port| {
            Some(Self {
                child: Some(spawn_redis(port)?),
                port,
            })
        });
        if started.is_none() {
            skip("cannot start redis-server");
        }
        started
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Kills the server (as a crash would); [`PrivateRedis::restart`] brings it back.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port, empty (it keeps no data).
    pub fn restart(&mut self) {
        self.stop();
        self.child = Some(spawn_redis(self.port).expect("restart redis-server on its port"));
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        self.stop();
    }
}

pub(crate) fn free_port() -> Option<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").ok()?;
    Some(listener.local_addr().ok()?.port())
}

/// Starts `redis-server` without persistence and waits (at most 10 s) until
/// it accepts connections.
fn spawn_redis(port: u16) -> Option<Child> {
    spawn_redis_with(port, &[])
}

/// [`spawn_redis`] with more `redis-server` arguments.
pub(crate) fn spawn_redis_with(port: u16, extra: &[String]) -> Option<Child> {
    let mut child = Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--save", "", "--appendonly", "no"])
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        let exited = matches!(child.try_wait(), Ok(Some(_)));
        if exited || Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    Some(child)
}

/// Holds every password hash (on the blocking pool) until released, and
/// counts the hashes waiting at it: with a hash held for as long as the test
/// likes, a test can show what still answers meanwhile, without timing.
#[derive(Clone)]
pub struct HashGate {
    inner: Arc<GateInner>,
}

struct GateInner {
    open: Mutex<bool>,
    opened: Condvar,
    arrived: tokio::sync::watch::Sender<usize>,
}

impl Default for HashGate {
    fn default() -> Self {
        Self {
            inner: Arc::new(GateInner {
                open: Mutex::new(false),
                opened: Condvar::new(),
                arrived: tokio::sync::watch::Sender::new(0),
            }),
        }
    }
}

impl HashGate {
    /// Blocks the calling (blocking-pool) thread until [`HashGate::release`].
    pub(crate) fn pass(&self) {
        self.inner.arrived.send_modify(|n| *n += 1);
        let mut open = self
            .inner
            .open
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        while !*open {
            open = self
                .inner
                .opened
                .wait(open)
                .unwrap_or_else(PoisonError::into_inner);
        }
    }

    /// Waits until `count` hashes have reached the gate.
    pub async fn arrived(&self, count: usize) {
        let mut arrived = self.inner.arrived.subscribe();
        let _ = arrived.wait_for(|n| *n >= count).await;
    }

    /// Lets every held hash, and every later one, through.
    pub fn release(&self) {
        *self
            .inner
            .open
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = true;
        self.inner.opened.notify_all();
    }
}
