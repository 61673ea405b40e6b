//! Issue #13 through the API: the registration policy with invite codes, the
//! admin operations against a running relay (disable, enable, delete; a
//! disabled account's sessions end on another instance at once), admin
//! commands refusing a database without this build's schema, and the queue
//! and 429 metrics. Each scenario runs on SQLite and (in CI) PostgreSQL;
//! part of the `routes` test binary.

mod admin;
mod registration;

use std::sync::Arc;

use kavro_server::admin::Admin;

use crate::common::TestServer;

/// The admin side of `s`: its database, its Redis, its clock.
pub async fn admin(s: &TestServer) -> Admin {
    Admin::open(
        &s.config,
        s.clock.clone() as Arc<dyn kavro_server::clock::Clock>,
    )
    .await
    .unwrap()
}

/// Runs an async test body on SQLite and, when configured, PostgreSQL, with
/// a config tweak.
#[macro_export]
macro_rules! on_both_with {
    ($name:ident, $tweak:expr, $body:expr) => {
        mod $name {
            use super::*;
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                let Some(server) = TestServer::start(Db::Sqlite, Counters::Memory, $tweak).await
                else {
                    return;
                };
                ($body)(server).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                let Some(server) = TestServer::start(Db::Postgres, Counters::Memory, $tweak).await
                else {
                    return;
                };
                ($body)(server).await;
            }
        }
    };
}
