//! The relay on a Redis Cluster (`redis_cluster`): two instances sharing one
//! PostgreSQL database and a private three-master cluster started by the
//! test, for the cross-instance wake-ups, revocation and lockout, and one
//! master killed and restarted while messages are being sent.
//!
//! Without redis-server / redis-cli or PostgreSQL the tests skip (they fail
//! under `KAVRO_REQUIRE_SERVICES=1`).

// Scenario helpers outside #[test] fns unwrap too: a failure is a test failure.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use common::{TestServer, assert_error, message_body};
use kavro_server::testing::PrivateRedisCluster;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

/// Two relays on one PostgreSQL database and `cluster` (its own key prefix).
async fn two_relays(cluster: &PrivateRedisCluster) -> Option<(TestServer, TestServer)> {
    let urls = cluster.urls();
    let first = TestServer::start(common::Db::Postgres, common::Counters::Memory, |c| {
        c.redis_cluster = urls;
        c.redis_prefix = format!("kavro-test-{}", uuid::Uuid::new_v4().simple());
    })
    .await?;
    assert!(first.config.redis_url.is_empty(), "the cluster alone");
    let second = first.second_instance().await;
    Some((first, second))
}

async fn login_from(s: &TestServer, name: &str, password: &str, ip: &str) -> StatusCode {
    s.request(Method::POST, "/auth/login")
        .header("x-forwarded-for", ip)
        .json(&json!({"username": name, "password": password}))
        .send()
        .await
        .unwrap()
        .status()
}

/// A long-poll of `token` held on `on`, answered by a message `send` posts
/// through the other instance: only the cluster's pub/sub can wake it before
/// its 30 s are up (the 10 s guard fails the test otherwise).
async fn woken_across(on: &TestServer, token: &str, send: impl Future<Output = Value>) {
    let before = on.state.wake.open_waiters();
    let poll = tokio::spawn(
        on.request(Method::GET, "/messages/inbox?wait=30")
            .bearer_auth(token)
            .send(),
    );
    on.until("the long-poll is waiting", || {
        on.state.wake.open_waiters() > before
    })
    .await;
    let message = send.await;
    let response = tokio::time::timeout(Duration::from_secs(10), poll)
        .await
        .expect("woken through the cluster, not by the long-poll's timeout")
        .unwrap()
        .unwrap();
    let inbox: Value = response.json().await.unwrap();
    assert_eq!(inbox["messages"][0]["id"], message["id"], "{inbox}");
}

/// Acknowledges everything pending for `token`; returns the message ids seen.
async fn drain(s: &TestServer, token: &str) -> Vec<i64> {
    let mut seen = Vec::new();
    loop {
        let (status, inbox) = s
            .get("/messages/inbox?limit=200&order=asc", Some(token))
            .await;
        assert_eq!(status, StatusCode::OK, "{inbox}");
        let ids: Vec<i64> = inbox["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["id"].as_i64().unwrap())
            .collect();
        if ids.is_empty() {
            return seen;
        }
        let (status, _) = s
            .post("/messages/ack", Some(token), json!({ "ids": ids }))
            .await;
        assert_eq!(status, StatusCode::OK);
        seen.extend(ids);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_relays_share_a_cluster() {
    let Some(cluster) = PrivateRedisCluster::start() else {
        return;
    };
    let Some((first, second)) = two_relays(&cluster).await else {
        return;
    };
    let (alice, _) = first.register("alice").await;
    let (bob, bob_id) = first.register("bob").await;
    assert_eq!(second.get("/ready", None).await.0, StatusCode::OK);

    // Wake-ups both ways, several times (each send publishes once).
    for _ in 0..3 {
        woken_across(&second, &bob, async {
            first
                .post("/messages", Some(&alice), message_body(bob_id))
                .await
                .1
        })
        .await;
        drain(&second, &bob).await;
        woken_across(&first, &bob, async {
            second
                .post("/messages", Some(&alice), message_body(bob_id))
                .await
                .1
        })
        .await;
        drain(&first, &bob).await;
    }

    // Revocation: tokens logged out on one instance are refused by the
    // other; several accounts, so their keys land on different masters.
    for n in 0..6 {
        let name = format!("leaver{n}");
        let (token, _) = first.register(&name).await;
        assert_eq!(second.get("/auth/me", Some(&token)).await.0, StatusCode::OK);
        let (status, _) = second.post("/auth/logout", Some(&token), json!({})).await;
        assert_eq!(status, StatusCode::OK);
        let (status, body) = first.get("/auth/me", Some(&token)).await;
        assert_error(status, &body, StatusCode::UNAUTHORIZED);
    }

    // Lockout: five failures through one instance lock that network on both.
    let attacker = "203.0.113.9";
    for _ in 0..5 {
        let status = login_from(&first, "alice", "Wrong-pass1", attacker).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }
    assert_eq!(
        login_from(&second, "alice", "Passw0rd!", attacker).await,
        StatusCode::TOO_MANY_REQUESTS,
        "locked on the other instance too"
    );
    assert_eq!(
        login_from(&second, "alice", "Passw0rd!", "198.51.100.1").await,
        StatusCode::OK,
        "not from another network"
    );
}

/// One sender's load: each message gets its own `client_msg_id` and is
/// retried with it after a `503` (as a client does), so a message is either
/// stored once or still being retried. Returns client id → message id.
///
/// Paced (one accepted send per 25 ms per sender): the load must last through
/// the outage and the recovery, however long the cluster takes to notice the
/// dead master (an unpaced sender once used up its whole budget during the
/// failure detection, and "sends flow again" then waited for nothing).
async fn send_until_stopped(
    relays: [Arc<TestServer>; 2],
    token: String,
    bob_id: i64,
    stop: Arc<AtomicBool>,
    refused: Arc<AtomicUsize>,
    accepted: Arc<AtomicUsize>,
) -> HashMap<String, i64> {
    let mut stored = HashMap::new();
    // Bounded: at most 900 messages (under the per-sender pending quota of
    // 1,000), so at least 22 s of load at the pace below.
    for n in 0..900 {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        let client_id = uuid::Uuid::new_v4().to_string();
        let mut body = message_body(bob_id);
        body["client_msg_id"] = json!(client_id);
        let relay = &relays[n % 2];
        let mut attempts = 0;
        let id = loop {
            let (status, answer) = relay.post("/messages", Some(&token), body.clone()).await;
            match status {
                StatusCode::CREATED => break answer["id"].as_i64().unwrap(),
                StatusCode::SERVICE_UNAVAILABLE => {
                    refused.fetch_add(1, Ordering::Relaxed);
                    attempts += 1;
                    assert!(attempts < 1000, "still refused after 1000 tries");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                other => panic!("a send answered {other}: {answer}"),
            }
        };
        stored.insert(client_id, id);
        accepted.fetch_add(1, Ordering::Relaxed);
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    stored
}

/// Polls `path` with `token` on `s` until it answers `want` (at most 20 s).
async fn until_status(s: &TestServer, path: &str, token: Option<&str>, want: StatusCode) {
    for _ in 0..400 {
        if s.get(path, token).await.0 == want {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{path} did not answer {want} within 20 s");
}

/// A master killed under load: while the cluster is down, the lockout and
/// the token check fail closed (`503`: login, every authenticated request,
/// `/ready`), and sends are refused with `503`, never lost: each is retried
/// with its `client_msg_id`. After the master restarts (empty, with its
/// slots), both relays recover on their own, every message is delivered
/// exactly once, and cross-instance wake-ups work again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_master_restart_under_load() {
    let Some(mut cluster) = PrivateRedisCluster::start() else {
        return;
    };
    let Some((first, second)) = two_relays(&cluster).await else {
        return;
    };
    let (alice, _) = first.register("alice").await;
    let (carol, _) = first.register("carol").await;
    let (bob, bob_id) = first.register("bob").await;
    let (first, second) = (Arc::new(first), Arc::new(second));

    let stop = Arc::new(AtomicBool::new(false));
    let refused = Arc::new(AtomicUsize::new(0));
    let accepted = Arc::new(AtomicUsize::new(0));
    let senders: Vec<_> = [alice.clone(), carol]
        .into_iter()
        .map(|token| {
            tokio::spawn(send_until_stopped(
                [first.clone(), second.clone()],
                token,
                bob_id,
                stop.clone(),
                refused.clone(),
                accepted.clone(),
            ))
        })
        .collect();
    first
        .until("sends flow", || accepted.load(Ordering::Relaxed) >= 20)
        .await;

    cluster.stop(0);
    assert!(
        tokio::task::block_in_place(|| cluster.wait_for_state("fail")),
        "the survivors declare the cluster down"
    );
    for relay in [&first, &second] {
        let (status, body) = relay.get("/auth/me", Some(&alice)).await;
        assert_error(status, &body, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(
            login_from(relay, "alice", "Passw0rd!", "198.51.100.2").await,
            StatusCode::SERVICE_UNAVAILABLE,
            "the lockout does not silently turn off"
        );
        let (status, ready) = relay.get("/ready", None).await;
        assert_eq!(
            (status, ready["redis"].as_str()),
            (StatusCode::SERVICE_UNAVAILABLE, Some("unavailable"))
        );
    }
    let refused_during_outage = refused.load(Ordering::Relaxed);

    cluster.restart(0);
    assert!(
        tokio::task::block_in_place(|| cluster.wait_for_state("ok")),
        "the restarted master rejoins"
    );
    for relay in [&first, &second] {
        until_status(relay, "/auth/me", Some(&alice), StatusCode::OK).await;
        until_status(relay, "/ready", None, StatusCode::OK).await;
    }
    let after = accepted.load(Ordering::Relaxed);
    first
        .until("sends flow again", || {
            accepted.load(Ordering::Relaxed) >= after + 20
        })
        .await;
    stop.store(true, Ordering::Relaxed);
    let mut stored = HashMap::new();
    for sender in senders {
        stored.extend(sender.await.unwrap());
    }
    assert!(
        refused_during_outage > 0,
        "the load ran into the outage (sends were refused with 503)"
    );

    // Every accepted message is delivered once: no loss, no duplicate.
    let mut delivered = drain(&second, &bob).await;
    delivered.sort_unstable();
    let mut expected: Vec<i64> = stored.values().copied().collect();
    expected.sort_unstable();
    assert_eq!(delivered, expected);

    // Wake-ups cross instances again after the restart.
    woken_across(&second, &bob, async {
        first
            .post("/messages", Some(&alice), message_body(bob_id))
            .await
            .1
    })
    .await;
}
