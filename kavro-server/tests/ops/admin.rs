//! The admin operations against a running relay, and admin commands refused
//! on a database without this build's schema.

use std::sync::Arc;
use std::time::Duration;

use kavro_server::admin::{Admin, AdminError};
use kavro_server::clock::{Clock, SystemClock};
use reqwest::StatusCode;
use serde_json::json;

use super::admin;
use crate::common::{Counters, Db, TestServer, assert_error, message_body, test_config};
use crate::on_both_databases;

on_both_databases!(disable_enable_delete, disable_enable_delete);

const DISABLED: &str = "This account is disabled by the relay's operator.";

/// Until `token` is refused (the relay reads revocations from the database
/// every second; with Redis the admin command writes them at once).
async fn until_refused(s: &TestServer, token: &str) {
    for _ in 0..100 {
        if s.get("/auth/me", Some(token)).await.0 == StatusCode::UNAUTHORIZED {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the token still works 5 s after the account was disabled");
}

async fn disable_enable_delete(s: TestServer) {
    let admin = admin(&s).await;
    let (ann, _) = s.register("ann").await;
    let (bob, bob_id) = s.register("Bob").await;
    let (status, body) = s.post("/messages", Some(&ann), message_body(bob_id)).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    s.clock.advance(Duration::from_secs(90));

    let users = admin.users().await.unwrap();
    let names: Vec<_> = users.iter().map(|u| u.username.as_str()).collect();
    assert_eq!(names, ["ann", "Bob"]);
    assert_eq!((users[1].pending, users[0].pending), (1, 0));
    assert!(users.iter().all(|u| u.last_seen_at.is_some()));
    assert!(users.iter().all(|u| u.disabled_at.is_none()));
    let oldest = s.state.ops.oldest_pending(s.clock.now()).await.unwrap();
    assert_eq!(oldest.map(|t| (s.clock.now() - t).num_seconds()), Some(90));
    // The gauge is process-wide (other tests set it too): only its presence.
    let (status, metrics) = s.text("/metrics").await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        metrics.contains("kavro_messages_oldest_pending_age_seconds "),
        "{metrics}"
    );

    // Unknown names change nothing.
    for unknown in ["nobody", "", "x", "bad name!"] {
        assert!(matches!(
            admin.disable(unknown).await,
            Err(AdminError::UnknownUser(_))
        ));
        assert!(matches!(
            admin.enable(unknown).await,
            Err(AdminError::UnknownUser(_))
        ));
        assert!(matches!(
            admin.delete(unknown).await,
            Err(AdminError::UnknownUser(_))
        ));
    }

    admin.disable("ANN").await.unwrap();
    until_refused(&s, &ann).await;
    let (status, body) = s
        .post(
            "/auth/login",
            None,
            json!({"username": "ann", "password": "Passw0rd!"}),
        )
        .await;
    assert_eq!(assert_error(status, &body, StatusCode::FORBIDDEN), DISABLED);
    let (status, body) = s
        .post(
            "/auth/login",
            None,
            json!({"username": "ann", "password": "Wr0ng-pass"}),
        )
        .await;
    assert_eq!(
        assert_error(status, &body, StatusCode::UNAUTHORIZED),
        "Incorrect username or password.",
        "a wrong password does not learn that the account is disabled"
    );
    let (status, body) = s
        .post(
            "/auth/register",
            None,
            json!({"username": "Ann", "password": "Passw0rd!"}),
        )
        .await;
    assert_error(status, &body, StatusCode::BAD_REQUEST);
    assert!(admin.users().await.unwrap()[0].disabled_at.is_some());

    assert!(admin.enable("ann").await.unwrap());
    assert!(!admin.enable("ann").await.unwrap(), "nothing to enable");
    let again = s.login("ann").await;
    assert_eq!(s.get("/auth/me", Some(&again)).await.0, StatusCode::OK);

    let deleted = admin.delete("bob").await.unwrap();
    assert_eq!(deleted.messages_deleted, 1);
    until_refused(&s, &bob).await;
    let (status, body) = s.get("/users/Bob", Some(&again)).await;
    assert_error(status, &body, StatusCode::NOT_FOUND);
    assert_eq!(admin.users().await.unwrap().len(), 1);
}

/// Two instances on PostgreSQL with Redis: the disabled account's session
/// open on the other instance is refused as soon as the command returns.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disabling_ends_sessions_on_every_instance() {
    let Some(first) = TestServer::start(Db::Postgres, Counters::Redis, |_| {}).await else {
        return;
    };
    let second = first.second_instance().await;
    let (token, _) = first.register("carol").await;
    assert_eq!(second.get("/auth/me", Some(&token)).await.0, StatusCode::OK);
    admin(&first).await.disable("carol").await.unwrap();
    for s in [&second, &first] {
        let (status, body) = s.get("/auth/me", Some(&token)).await;
        assert_error(status, &body, StatusCode::UNAUTHORIZED);
    }
    let (status, body) = second
        .post(
            "/auth/login",
            None,
            json!({"username": "carol", "password": "Passw0rd!"}),
        )
        .await;
    assert_eq!(assert_error(status, &body, StatusCode::FORBIDDEN), DISABLED);
    second.stop().await;
}

fn system() -> Arc<dyn Clock> {
    Arc::new(SystemClock)
}

/// Admin commands on an embedded database that does not exist, has no
/// schema, or an older one: refused, and nothing is created or changed.
#[tokio::test]
async fn admin_refuses_a_database_without_this_schema() {
    let dir = tempfile::tempdir().unwrap();
    let config = test_config(dir.path());
    let err = Admin::open(&config, system()).await.err().unwrap();
    assert!(matches!(err, AdminError::NoDatabase(_)), "{err}");
    assert!(
        !dir.path().join("kavro.db").exists(),
        "no database file is created"
    );

    let url = config.effective_database_url();
    let empty = sqlx::SqlitePool::connect(&format!("{url}?mode=rwc"))
        .await
        .unwrap();
    sqlx::query("CREATE TABLE unrelated (x INTEGER)")
        .execute(&empty)
        .await
        .unwrap();
    let err = Admin::open(&config, system()).await.err().unwrap();
    assert!(matches!(err, AdminError::EmptySchema), "{err}");
    assert!(err.to_string().contains("kavro-server migrate"), "{err}");
    let tables: i64 = sqlx::query_scalar("SELECT count(*) FROM sqlite_master WHERE type = 'table'")
        .fetch_one(&empty)
        .await
        .unwrap();
    assert_eq!(tables, 1, "nothing migrated");
    empty.close().await;

    // A database one migration behind.
    std::fs::remove_file(dir.path().join("kavro.db")).unwrap();
    let state = kavro_server::bootstrap::build(&config).await.unwrap();
    drop(state);
    let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
    sqlx::query(
        "DELETE FROM _sqlx_migrations WHERE version = (SELECT max(version) FROM _sqlx_migrations)",
    )
    .execute(&pool)
    .await
    .unwrap();
    let err = Admin::open(&config, system()).await.err().unwrap();
    assert!(matches!(err, AdminError::OldSchema { .. }), "{err}");
    pool.close().await;
}

#[tokio::test]
async fn admin_refuses_an_empty_postgres_database() {
    let Some(db) = kavro_server::testing::TestDatabase::create().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(dir.path());
    config.database_url.clone_from(&db.url);
    config.jwt_secret = "admin-tests-5d2c81f3a9e04b76-not-a-real-secret"
        .to_owned()
        .into();
    config.fernet_keys = kavro_server::fieldcrypt::FieldCrypt::generate_key().into();
    let err = Admin::open(&config, system()).await.err().unwrap();
    assert!(matches!(err, AdminError::EmptySchema), "{err}");
}
