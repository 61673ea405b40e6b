//! Test support: the external services a test may use, and the rule for when
//! they are absent. `KAVRO_TEST_DATABASE_URL` / `KAVRO_TEST_REDIS_URL` name
//! them; without them a test prints why it skips, unless
//! `KAVRO_REQUIRE_SERVICES=1` (CI), which turns the skip into a failure.

use std::str::FromStr;

use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, Connection};

fn service(var: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(url) if !url.trim().is_empty() => Some(url),
        _ => {
            assert!(
                std::env::var("KAVRO_REQUIRE_SERVICES").as_deref() != Ok("1"),
                "{var} is not set but KAVRO_REQUIRE_SERVICES=1"
            );
            eprintln!("skipping: {var} is not set");
            None
        }
    }
}

/// The Redis to test against, if any.
pub fn redis_url() -> Option<String> {
    service("KAVRO_TEST_REDIS_URL")
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
        // Drop runs outside any runtime guarantee: use a private one on a thread.
        let admin_url = self.admin_url.clone();
        let name = self.name.clone();
        let _ = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async {
                if let Ok(mut admin) = sqlx::PgConnection::connect(&admin_url).await {
                    let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
                        "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                    )))
                    .execute(&mut admin)
                    .await;
                }
            });
        })
        .join();
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
        // Drop runs outside any runtime guarantee: use a private one on a thread.
        let _ = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async {
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
        })
        .join();
    }
}
