//! Abuse controls through the API, with the default numbers: on in-process
//! counters always, and on Redis when `KAVRO_TEST_REDIS_URL` is set. Time is
//! the relay's manual clock; nothing sleeps.

// Scenario helpers outside #[test] fns unwrap too: a failure is a test failure.
#![allow(clippy::unwrap_used)]

mod abuse;
mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{Counters, Db, TestServer, assert_error, message_body};
use kavro_server::config::Toggle;
use reqwest::{Method, StatusCode};
use serde_json::json;

macro_rules! on_both_counters {
    ($name:ident) => {
        mod $name {
            use super::*;
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn memory() {
                if let Some(s) = limited(Counters::Memory).await {
                    super::$name(s).await;
                }
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn redis() {
                if let Some(s) = limited(Counters::Redis).await {
                    super::$name(s).await;
                }
            }
        }
    };
}

/// A server with the default limits on.
async fn limited(counters: Counters) -> Option<TestServer> {
    TestServer::start(Db::Sqlite, counters, |c| c.rate_limits = Toggle::On).await
}

on_both_counters!(register_limit);
on_both_counters!(login_limit);
on_both_counters!(send_limit);
on_both_counters!(concurrent_burst);

/// Poses as client `ip` (127.0.0.1 is a trusted proxy in tests).
fn from(s: &TestServer, method: Method, path: &str, ip: &str) -> reqwest::RequestBuilder {
    s.request(method, path).header("x-forwarded-for", ip)
}

async fn register_from(
    s: &TestServer,
    name: &str,
    ip: &str,
) -> (StatusCode, serde_json::Value, Option<String>) {
    let response = from(s, Method::POST, "/auth/register", ip)
        .json(&json!({"username": name, "password": "Passw0rd!"}))
        .send()
        .await
        .unwrap();
    let status = response.status();
    let retry = response
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_owned());
    (status, response.json().await.unwrap(), retry)
}

async fn register_limit(s: TestServer) {
    for i in 0..3 {
        let (status, body, _) = register_from(&s, &format!("user{i}"), "198.51.100.1").await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }
    let (status, body, retry) = register_from(&s, "user3", "198.51.100.1").await;
    assert_error(status, &body, StatusCode::TOO_MANY_REQUESTS);
    let retry: u64 = retry.expect("Retry-After").parse().unwrap();
    assert!((3500..=3600).contains(&retry), "about an hour: {retry}");
    // Another address is not affected; after the hour the first may register again.
    let (status, _, _) = register_from(&s, "other1", "198.51.100.2").await;
    assert_eq!(status, StatusCode::CREATED);
    s.clock.advance(Duration::from_secs(3600));
    let (status, _, _) = register_from(&s, "user3", "198.51.100.1").await;
    assert_eq!(status, StatusCode::CREATED);
}

async fn login_from(s: &TestServer, name: &str, password: &str, ip: &str) -> reqwest::Response {
    from(s, Method::POST, "/auth/login", ip)
        .json(&json!({"username": name, "password": password}))
        .send()
        .await
        .unwrap()
}

async fn login_limit(s: TestServer) {
    s.register("lim").await;
    for _ in 0..5 {
        let response = login_from(&s, "lim", "Passw0rd!", "198.51.100.7").await;
        assert_eq!(response.status(), StatusCode::OK);
    }
    let response = login_from(&s, "lim", "Passw0rd!", "198.51.100.7").await;
    assert_eq!(
        response.status(),
        StatusCode::TOO_MANY_REQUESTS,
        "6th login in 15 minutes"
    );
    let retry: u64 = response.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=900).contains(&retry));
    let response = login_from(&s, "lim", "Passw0rd!", "198.51.100.8").await;
    assert_eq!(
        response.status(),
        StatusCode::OK,
        "other addresses unaffected"
    );
    // A client cannot dodge the limit by prepending a made-up address: the
    // trusted proxy (127.0.0.1) appended the real one, which is what counts.
    let response = login_from(&s, "lim", "Passw0rd!", "1.2.3.4, 198.51.100.7").await;
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
}

async fn send_limit(s: TestServer) {
    let (alice, _) = s.register("alice").await;
    let (_, bob_id) = s.register("bob").await;
    for i in 0..30 {
        let (status, body) = s
            .post("/messages", Some(&alice), message_body(bob_id))
            .await;
        assert_eq!(status, StatusCode::CREATED, "message {i}: {body}");
    }
    let response = s
        .request(Method::POST, "/messages")
        .bearer_auth(&alice)
        .json(&message_body(bob_id))
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.status(),
        StatusCode::TOO_MANY_REQUESTS,
        "31st message in a minute"
    );
    assert!(response.headers().contains_key("retry-after"));
    let (bob2, _) = s.register("bob2").await;
    let (status, _) = s.post("/messages", Some(&bob2), message_body(bob_id)).await;
    assert_eq!(status, StatusCode::CREATED, "limits are per user");
    s.clock.advance(Duration::from_secs(60));
    let (status, _) = s
        .post("/messages", Some(&alice), message_body(bob_id))
        .await;
    assert_eq!(status, StatusCode::CREATED, "a minute later");
}

async fn concurrent_burst(s: TestServer) {
    // 100 simultaneous key lookups from one address against a 30-per-30 s limit.
    let s = Arc::new(s);
    let tasks: Vec<_> = (0..100)
        .map(|_| {
            let s = s.clone();
            tokio::spawn(async move {
                from(&s, Method::GET, "/keys/1", "192.0.2.33")
                    .send()
                    .await
                    .unwrap()
                    .status()
            })
        })
        .collect();
    let mut ok = 0;
    let mut limited = 0;
    for task in tasks {
        match task.await.unwrap() {
            StatusCode::OK => ok += 1,
            StatusCode::TOO_MANY_REQUESTS => limited += 1,
            other => panic!("unexpected {other}"),
        }
    }
    assert_eq!((ok, limited), (30, 70));
}

/// Two relay instances on one Redis (and one database): a token logged out
/// on one is refused by the other, which accepted it before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revocation_is_shared() {
    let Some(first) = limited(Counters::Redis).await else {
        return;
    };
    let second = first.second_instance().await;
    let (token, _) = first.register("leaver").await;
    let (status, _) = second.get("/auth/me", Some(&token)).await;
    assert_eq!(
        status,
        StatusCode::OK,
        "the second instance accepts the token"
    );
    let (status, _) = second.post("/auth/logout", Some(&token), json!({})).await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = first.get("/auth/me", Some(&token)).await;
    assert_error(status, &body, StatusCode::UNAUTHORIZED);
    // A fresh login is not affected by the other token's revocation.
    let again = first.login("leaver").await;
    assert_eq!(second.get("/auth/me", Some(&again)).await.0, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pending_quota_refuses_senders() {
    let Some(s) = TestServer::start(Db::Sqlite, Counters::Memory, |c| {
        c.max_pending_per_recipient = 3;
    })
    .await
    else {
        return;
    };
    let (alice, _) = s.register("alice").await;
    let (bob, bob_id) = s.register("bob").await;
    for _ in 0..3 {
        assert_eq!(
            s.post("/messages", Some(&alice), message_body(bob_id))
                .await
                .0,
            StatusCode::CREATED
        );
    }
    let (status, body) = s
        .post("/messages", Some(&alice), message_body(bob_id))
        .await;
    assert_error(status, &body, StatusCode::TOO_MANY_REQUESTS);
    // Once Bob acknowledges one, there is room again.
    let (_, inbox) = s.get("/messages/inbox", Some(&bob)).await;
    let id = inbox["messages"][0]["id"].as_i64().unwrap();
    s.post(&format!("/messages/{id}/ack"), Some(&bob), json!({}))
        .await;
    assert_eq!(
        s.post("/messages", Some(&alice), message_body(bob_id))
            .await
            .0,
        StatusCode::CREATED
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limits_off_keeps_the_lockout() {
    let Some(s) = TestServer::start(Db::Sqlite, Counters::Memory, |c| {
        c.rate_limits = Toggle::Off;
    })
    .await
    else {
        return;
    };
    s.register("v1ctim").await;
    for _ in 0..10 {
        s.register(&format!("n{}", uuid::Uuid::new_v4().simple())[..20])
            .await;
    }
    for _ in 0..5 {
        login_from(&s, "v1ctim", "Wrong-pass1", "198.51.100.1").await;
    }
    let response = login_from(&s, "v1ctim", "Passw0rd!", "198.51.100.1").await;
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
}
