//! Abuse controls of issue #9 through the API: per-IP limits per IPv6 /64
//! (and configurable prefixes), the lockout per (account, client network)
//! with growing back-off that cannot lock the owner out, and the pending
//! quota per (sender, recipient), also exact across two relay instances on
//! one PostgreSQL. Part of the `limits` test binary.

use std::sync::Arc;
use std::time::Duration;

use kavro_server::config::{Config, RateSpec, Toggle};
use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::common::{Counters, Db, TestServer, assert_error, message_body, tally};

async fn start(counters: Counters, tweak: impl FnOnce(&mut Config)) -> Option<TestServer> {
    TestServer::start(Db::Sqlite, counters, |c| {
        c.rate_limits = Toggle::On;
        tweak(c);
    })
    .await
}

macro_rules! on_both_counters_with {
    ($name:ident, $tweak:expr) => {
        mod $name {
            use super::*;
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn memory() {
                if let Some(s) = start(Counters::Memory, $tweak).await {
                    super::$name(s).await;
                }
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn redis() {
                if let Some(s) = start(Counters::Redis, $tweak).await {
                    super::$name(s).await;
                }
            }
        }
    };
}

on_both_counters_with!(lockout_cannot_lock_the_owner_out, |c: &mut Config| {
    // Many failures from one network must reach the lockout, not the per-IP limit.
    c.limits.login = RateSpec(None);
});
on_both_counters_with!(
    per_ip_limits_count_an_ipv6_slash_64_once,
    |_: &mut Config| {}
);
on_both_counters_with!(ip_prefix_lengths_are_configurable, |c: &mut Config| {
    c.ip_prefix_v4 = 24;
    c.ip_prefix_v6 = 48;
});

/// Logs in as `name` from client `ip` (127.0.0.1 is a trusted proxy in tests).
async fn login_from(s: &TestServer, name: &str, password: &str, ip: &str) -> (StatusCode, u64) {
    let response = s
        .request(Method::POST, "/auth/login")
        .header("x-forwarded-for", ip)
        .json(&json!({"username": name, "password": password}))
        .send()
        .await
        .unwrap();
    let retry = response
        .headers()
        .get("retry-after")
        .map_or(0, |v| v.to_str().unwrap().parse().unwrap());
    (response.status(), retry)
}

async fn fail_five_times(s: &TestServer, name: &str, network: &str) {
    for i in 1..=5 {
        // Rotating addresses within one /64 changes nothing.
        let (status, _) = login_from(s, name, "Wrong-pass1", &format!("{network}{i:x}")).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }
}

async fn lockout_cannot_lock_the_owner_out(s: TestServer) {
    s.register("victim").await;
    s.register("bystander").await;
    let attacker = "2001:db8:bad:1::";
    fail_five_times(&s, "victim", attacker).await;
    let (status, retry) = login_from(&s, "VICTIM", "Passw0rd!", "2001:db8:bad:1::99").await;
    assert_eq!(
        status,
        StatusCode::TOO_MANY_REQUESTS,
        "the attacker's network is locked, even with the right password"
    );
    assert!((295..=300).contains(&retry), "{retry}");
    // The owner, elsewhere, is not.
    let (status, _) = login_from(&s, "victim", "Passw0rd!", "198.51.100.20").await;
    assert_eq!(
        status,
        StatusCode::OK,
        "the owner logs in from another network"
    );
    let (status, _) = login_from(&s, "victim", "Passw0rd!", "2001:db8:bad:2::1").await;
    assert_eq!(status, StatusCode::OK, "another /64 is another network");
    let (status, _) = login_from(&s, "bystander", "Passw0rd!", "2001:db8:bad:1::7").await;
    assert_eq!(status, StatusCode::OK, "other accounts from that network");

    // Growing back-off: the next lock of the same (account, network) doubles.
    s.clock.advance(Duration::from_secs(300));
    fail_five_times(&s, "victim", attacker).await;
    let (status, retry) = login_from(&s, "victim", "Passw0rd!", "2001:db8:bad:1::1").await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert!((595..=600).contains(&retry), "doubled: {retry}");
    s.clock.advance(Duration::from_secs(599));
    let (status, _) = login_from(&s, "victim", "Passw0rd!", "2001:db8:bad:1::1").await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "not yet");
    s.clock.advance(Duration::from_secs(1));
    // A correct login from that network ends the back-off.
    let (status, _) = login_from(&s, "victim", "Passw0rd!", "2001:db8:bad:1::1").await;
    assert_eq!(status, StatusCode::OK);
    fail_five_times(&s, "victim", attacker).await;
    let (_, retry) = login_from(&s, "victim", "Passw0rd!", "2001:db8:bad:1::1").await;
    assert!((295..=300).contains(&retry), "back to the base: {retry}");

    // Unknown names lock the same way (no difference to observe).
    fail_five_times(&s, "ghost", attacker).await;
    let (status, _) = login_from(&s, "ghost", "Wrong-pass1", "2001:db8:bad:1::1").await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
}

async fn register_from(s: &TestServer, name: &str, ip: &str) -> StatusCode {
    s.request(Method::POST, "/auth/register")
        .header("x-forwarded-for", ip)
        .json(&json!({"username": name, "password": "Passw0rd!"}))
        .send()
        .await
        .unwrap()
        .status()
}

async fn per_ip_limits_count_an_ipv6_slash_64_once(s: TestServer) {
    // Registration: 3 per hour per client network.
    for (i, ip) in ["2001:db8:1:2::1", "2001:db8:1:2::2", "2001:db8:1:2:ffff::3"]
        .iter()
        .enumerate()
    {
        assert_eq!(
            register_from(&s, &format!("six{i}"), ip).await,
            StatusCode::CREATED
        );
    }
    assert_eq!(
        register_from(&s, "six3", "2001:db8:1:2:abcd:ef01:2345:6789").await,
        StatusCode::TOO_MANY_REQUESTS,
        "a fourth address in the same /64 is the same client"
    );
    assert_eq!(
        register_from(&s, "six4", "2001:db8:1:3::1").await,
        StatusCode::CREATED,
        "the next /64 is another client"
    );
    // IPv4 stays per address by default.
    for (i, ip) in ["198.51.100.1", "198.51.100.1", "198.51.100.1"]
        .iter()
        .enumerate()
    {
        assert_eq!(
            register_from(&s, &format!("four{i}"), ip).await,
            StatusCode::CREATED
        );
    }
    assert_eq!(
        register_from(&s, "four3", "198.51.100.2").await,
        StatusCode::CREATED
    );
    // The lookup limit (30 per 30 s) counts the /64 too.
    let mut limited_at = None;
    for i in 0..40 {
        let status = s
            .request(Method::GET, "/keys/1")
            .header("x-forwarded-for", format!("2001:db8:77:1::{:x}", i + 1))
            .send()
            .await
            .unwrap()
            .status();
        if status == StatusCode::TOO_MANY_REQUESTS {
            limited_at = Some(i);
            break;
        }
    }
    assert_eq!(limited_at, Some(30));
}

async fn ip_prefix_lengths_are_configurable(s: TestServer) {
    for (i, ip) in ["198.51.100.1", "198.51.100.77", "198.51.100.254"]
        .iter()
        .enumerate()
    {
        assert_eq!(
            register_from(&s, &format!("v4n{i}"), ip).await,
            StatusCode::CREATED
        );
    }
    assert_eq!(
        register_from(&s, "v4n3", "198.51.100.9").await,
        StatusCode::TOO_MANY_REQUESTS,
        "one /24"
    );
    assert_eq!(
        register_from(&s, "v4n4", "198.51.101.9").await,
        StatusCode::CREATED
    );
    for (i, ip) in ["2001:db8:5::1", "2001:db8:5:1::1", "2001:db8:5:ffff::1"]
        .iter()
        .enumerate()
    {
        assert_eq!(
            register_from(&s, &format!("v6n{i}"), ip).await,
            StatusCode::CREATED
        );
    }
    assert_eq!(
        register_from(&s, "v6n3", "2001:db8:5:abcd::1").await,
        StatusCode::TOO_MANY_REQUESTS,
        "one /48"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pending_quota_per_sender() {
    let Some(s) = TestServer::start(Db::Sqlite, Counters::Memory, |c| {
        c.max_pending_per_recipient = 3;
        c.max_pending_per_sender = 2;
    })
    .await
    else {
        return;
    };
    let (alice, _) = s.register("alice").await;
    let (carol, _) = s.register("carol").await;
    let (bob, bob_id) = s.register("bob").await;
    for _ in 0..2 {
        let (status, _) = s
            .post("/messages", Some(&alice), message_body(bob_id))
            .await;
        assert_eq!(status, StatusCode::CREATED);
    }
    let (status, body) = s
        .post("/messages", Some(&alice), message_body(bob_id))
        .await;
    let text = assert_error(status, &body, StatusCode::TOO_MANY_REQUESTS);
    assert!(text.contains("from you"), "{text}");
    // One sender cannot fill the queue: someone else still gets through...
    let (status, _) = s
        .post("/messages", Some(&carol), message_body(bob_id))
        .await;
    assert_eq!(status, StatusCode::CREATED);
    // ... until the recipient's own quota is full.
    let (status, body) = s
        .post("/messages", Some(&carol), message_body(bob_id))
        .await;
    let text = assert_error(status, &body, StatusCode::TOO_MANY_REQUESTS);
    assert!(!text.contains("from you"), "{text}");
    // An ack of one of alice's messages gives alice (only) a place back.
    let (_, inbox) = s.get("/messages/inbox?order=asc", Some(&bob)).await;
    let first = inbox["messages"][0]["id"].as_i64().unwrap();
    s.post(&format!("/messages/{first}/ack"), Some(&bob), json!({}))
        .await;
    let (status, _) = s
        .post("/messages", Some(&alice), message_body(bob_id))
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let metrics = s
        .request(Method::GET, "/metrics")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("kavro_quota_rejections_total{quota=\"sender\"}"),
        "{metrics}"
    );
}

/// Two relay instances on one PostgreSQL, 16 concurrent
/// senders through both, a recipient quota of 40: exactly 40 are stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pending_quota_is_exact_across_two_instances() {
    let Some(db) = kavro_server::testing::TestDatabase::create().await else {
        return;
    };
    let fernet = kavro_server::fieldcrypt::FieldCrypt::generate_key();
    let shared = |c: &mut Config| {
        c.database_url.clone_from(&db.url);
        c.jwt_secret = "two-instances-3b8e1f6a9c2d7e40-test".to_owned().into();
        c.fernet_keys = fernet.clone().into();
        c.max_pending_per_recipient = 40;
    };
    let (Some(a), Some(b)) = (
        TestServer::start(Db::Sqlite, Counters::Memory, shared).await,
        TestServer::start(Db::Sqlite, Counters::Memory, shared).await,
    ) else {
        return;
    };
    let (_, bob_id) = a.register("bob").await;
    let mut senders = Vec::new();
    for i in 0..8 {
        senders.push(b.register(&format!("sender{i}")).await.0);
    }
    let (a, b, senders) = (Arc::new(a), Arc::new(b), Arc::new(senders));
    let tasks: Vec<_> = (0..16)
        .map(|task| {
            let server = if task % 2 == 0 { a.clone() } else { b.clone() };
            let senders = senders.clone();
            tokio::spawn(async move {
                let mut statuses = Vec::new();
                for n in 0..4 {
                    let token = &senders[(task + n) % senders.len()];
                    let (status, _) = server
                        .post("/messages", Some(token), message_body(bob_id))
                        .await;
                    statuses.push(status);
                }
                statuses
            })
        })
        .collect();
    let mut statuses = Vec::new();
    for task in tasks {
        statuses.extend(task.await.unwrap());
    }
    assert_eq!(
        tally(
            &statuses,
            StatusCode::CREATED,
            StatusCode::TOO_MANY_REQUESTS
        ),
        (40, 24),
        "{statuses:?}"
    );
    let bob = b.login("bob").await;
    let (_, inbox) = a.get("/messages/inbox?limit=200", Some(&bob)).await;
    assert_eq!(inbox["messages"].as_array().unwrap().len(), 40);
}
