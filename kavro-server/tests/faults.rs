//! Behaviour under faults and load that a careless relay gets wrong: Redis
//! going away mid-run, logins hashing while `/health` must stay responsive,
//! and the TLS mode.

// Scenario helpers outside #[test] fns unwrap too: a failure is a test failure.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::{Counters, Db, TestServer};
use kavro_server::auth::password::Passwords;
use kavro_server::config::Toggle;
use kavro_server::testing::{HashGate, PrivateRedis};
use poem::listener::Acceptor as _;
use reqwest::{Method, StatusCode};
use serde_json::json;

/// While Redis is down: request limits fall back to this instance's memory
/// (sends still work and are still limited), while login (lockout) and
/// authenticated requests (revocation) fail closed with 503. Everything
/// recovers by itself when Redis is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_outage_is_survived_as_documented() {
    let Some(mut redis) = PrivateRedis::start() else {
        return;
    };
    let url = redis.url();
    let Some(s) = TestServer::start(Db::Sqlite, Counters::Memory, |c| {
        c.redis_url = url.clone();
        c.rate_limits = Toggle::On;
    })
    .await
    else {
        return;
    };
    let (alice, _) = s.register("alice").await;
    let (bob, bob_id) = s.register("bob").await;
    assert_eq!(s.get("/ready", None).await.0, StatusCode::OK);

    redis.stop();
    let (status, body) = s.get("/auth/me", Some(&alice)).await;
    assert_eq!(
        status,
        StatusCode::SERVICE_UNAVAILABLE,
        "revocation cannot be checked: {body}"
    );
    assert_eq!(body["status_code"], 503);
    let (status, _) = s
        .post(
            "/auth/login",
            None,
            json!({"username": "alice", "password": "Passw0rd!"}),
        )
        .await;
    assert_eq!(
        status,
        StatusCode::SERVICE_UNAVAILABLE,
        "the lockout must not silently turn off"
    );
    let (status, ready) = s.get("/ready", None).await;
    assert_eq!(
        (status, ready["redis"].as_str()),
        (StatusCode::SERVICE_UNAVAILABLE, Some("unavailable"))
    );
    // Public routes keep working and keep being limited (per instance now).
    let mut statuses = Vec::new();
    for _ in 0..31 {
        statuses.push(s.get("/keys/1", None).await.0);
    }
    assert_eq!(
        statuses.iter().filter(|s| **s == StatusCode::OK).count(),
        30
    );
    assert_eq!(statuses.last(), Some(&StatusCode::TOO_MANY_REQUESTS));

    // Redis comes back on the same address: the relay recovers on its own.
    redis.restart();
    let mut recovered = false;
    for _ in 0..100 {
        if s.get("/auth/me", Some(&bob)).await.0 == StatusCode::OK {
            recovered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        recovered,
        "authenticated requests work again once Redis is back"
    );
    let (status, _) = s
        .post("/messages", Some(&alice), common::message_body(bob_id))
        .await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(s.get("/ready", None).await.0, StatusCode::OK);
}

/// Password hashing runs on the blocking pool. With a single async worker, a
/// login's hash is held at a gate until the test releases it, and `/health`
/// must answer meanwhile: were the hash on the async worker, that worker would
/// wait at the gate, nothing could be served, and the `/health` call would
/// time out. (No timing: the hash is held for as long as the test likes.)
#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn logins_do_not_block_health() {
    let gate = HashGate::default();
    let passwords = Passwords::gated_for_tests(gate.clone());
    let Some(s) = TestServer::start_with(Db::Sqlite, Counters::Memory, passwords, |_| {}).await
    else {
        return;
    };
    let s = std::sync::Arc::new(s);
    // An unknown user: the login still verifies (against the dummy hash).
    let login = tokio::spawn({
        let s = s.clone();
        async move {
            s.post(
                "/auth/login",
                None,
                json!({"username": "nobody", "password": "Passw0rd!"}),
            )
            .await
            .0
        }
    });
    tokio::time::timeout(Duration::from_secs(30), gate.arrived(1))
        .await
        .expect("the login reaches the password hash");
    // Asked from a plain thread with an OS-level timeout: a runtime timer
    // would never fire if the only worker were stuck at the gate.
    let addr = s.base.trim_start_matches("http://").to_owned();
    let health = std::thread::spawn(move || blocking_status(&addr, "/health"))
        .join()
        .unwrap();
    let login_still_hashing = !login.is_finished();
    // Release before asserting, so a failure does not leave the worker held.
    gate.release();
    assert_eq!(
        health,
        Some(200),
        "/health answers while a login's hash is held"
    );
    assert!(login_still_hashing, "the login waited at the gate");
    assert_eq!(login.await.unwrap(), StatusCode::UNAUTHORIZED);
}

/// `GET path` on a plain socket, waiting at most 30 s for the status line.
fn blocking_status(addr: &str, path: &str) -> Option<u16> {
    use std::io::{Read as _, Write as _};
    let mut stream = std::net::TcpStream::connect(addr).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .ok()?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).ok()?;
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).ok()?;
    String::from_utf8_lossy(&head[9..12]).parse().ok()
}

/// With a certificate and key, the relay speaks HTTPS and sends HSTS.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_mode_serves_https() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir().unwrap();
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let cert_path = dir.path().join("cert.pem");
    let key_path = dir.path().join("key.pem");
    std::fs::write(&cert_path, cert.cert.pem()).unwrap();
    std::fs::write(&key_path, cert.signing_key.serialize_pem()).unwrap();
    let config = kavro_server::config::Config {
        data_dir: dir.path().join("data"),
        tls_cert: Some(cert_path),
        tls_key: Some(key_path),
        bind: "127.0.0.1:0".parse().unwrap(),
        ..kavro_server::config::Config::default()
    };
    let state = kavro_server::bootstrap::build_with(
        &config,
        std::sync::Arc::new(kavro_server::clock::SystemClock),
        Passwords::fast_for_tests(),
    )
    .await
    .unwrap();
    let acceptor = kavro_server::server::bind(&config).await.unwrap();
    let port = acceptor.local_addr()[0].as_socket_addr().unwrap().port();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        kavro_server::server::serve(acceptor, state, &config, async {
            let _ = rx.await;
        })
        .await
    });
    let client = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(cert.cert.pem().as_bytes()).unwrap())
        .build()
        .unwrap();
    let response = client
        .request(Method::GET, format!("https://localhost:{port}/health"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(
        response.headers()["strict-transport-security"]
            .to_str()
            .unwrap()
            .contains("max-age")
    );
    // Plain HTTP on the TLS port gets nowhere.
    let plain = reqwest::Client::new()
        .get(format!("http://127.0.0.1:{port}/health"))
        .send()
        .await;
    assert!(plain.is_err() || !plain.unwrap().status().is_success());
    let _ = tx.send(());
    server.await.unwrap().unwrap();
}

/// Slow and abusive clients: a request head that never ends is cut off after
/// `header_timeout`; a body that never arrives gets `408` after
/// `body_timeout`; a long-poll, which sends nothing while it waits, is not
/// mistaken for a slow client.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_clients_are_cut_off() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let Some(s) = TestServer::start(Db::Sqlite, Counters::Memory, |c| {
        c.header_timeout = Duration::from_secs(1);
        c.body_timeout = Duration::from_secs(1);
    })
    .await
    else {
        return;
    };
    let addr = s.base.trim_start_matches("http://").to_owned();

    // Headers dribbled and never finished: the connection is closed.
    let mut slow = tokio::net::TcpStream::connect(&addr).await.unwrap();
    slow.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let mut buf = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(20), slow.read_to_end(&mut buf)).await;
    assert!(
        matches!(read, Ok(Ok(0) | Err(_))),
        "closed without an answer: {read:?} {buf:?}"
    );

    // A body that never comes: 408.
    let (alice, _) = s.register("alice").await;
    let mut stream = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let head = format!(
        "POST /messages HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {alice}\r\n\
         Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"recip"
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut response = vec![0u8; 1024];
    let n = tokio::time::timeout(Duration::from_secs(20), stream.read(&mut response))
        .await
        .unwrap()
        .unwrap();
    let text = String::from_utf8_lossy(&response[..n]);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    // The body limit answered before any route: counted all the same.
    let (_, metrics) = s.text("/metrics").await;
    assert!(
        metrics
            .lines()
            .any(|line| line.starts_with("kavro_http_requests_total{")
                && line.contains("operation=\"unmatched\"")
                && line.contains("status=\"408\"")),
        "{metrics}"
    );

    // A long-poll outlives the header timeout.
    let (status, body) = s.get("/messages/inbox?wait=2", Some(&alice)).await;
    assert_eq!((status, body), (StatusCode::OK, json!({"messages": []})));
}

/// At `max_connections`, the relay stops accepting; a waiting client is
/// served as soon as a slot frees.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_cap_queues_the_rest() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let Some(s) = TestServer::start(Db::Sqlite, Counters::Memory, |c| c.max_connections = 2).await
    else {
        return;
    };
    let addr = s.base.trim_start_matches("http://").to_owned();
    let mut first = tokio::net::TcpStream::connect(&addr).await.unwrap();
    first
        .write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let mut second = tokio::net::TcpStream::connect(&addr).await.unwrap();
    second
        .write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let mut third = tokio::net::TcpStream::connect(&addr).await.unwrap();
    third
        .write_all(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 512];
    let early = tokio::time::timeout(Duration::from_millis(300), third.read(&mut buf)).await;
    assert!(
        early.is_err(),
        "the third connection waits while two hold the slots"
    );
    drop(first);
    let n = tokio::time::timeout(Duration::from_secs(20), third.read(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    drop(second);
}

/// A relay with `max_wait`: `/ready` reports `(long_poll, long_poll_max_wait)`
/// as `reported`, and a 60 s long-poll on an empty inbox is answered (empty)
/// well within a 20 s client deadline. Returns the relay and Bob's token.
async fn long_poll_with_max_wait(
    max_wait: Duration,
    reported: (bool, u32),
) -> Option<(TestServer, String, i64)> {
    let s = TestServer::start(Db::Sqlite, Counters::Memory, |c| c.max_wait = max_wait).await?;
    let (bob, bob_id) = s.register("bob").await;
    let (status, ready) = s.get("/ready", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        (&ready["long_poll"], &ready["long_poll_max_wait"]),
        (&json!(reported.0), &json!(reported.1)),
        "max_wait {max_wait:?}: {ready}"
    );
    let response = s
        .request(Method::GET, "/messages/inbox?wait=60")
        .bearer_auth(&bob)
        .timeout(Duration::from_secs(20))
        .send()
        .await
        .expect("answered long before the client's 60 s");
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.json::<serde_json::Value>().await.unwrap(),
        json!({"messages": []})
    );
    Some((s, bob, bob_id))
}

/// An operator's `max_wait` caps long-polls below what clients ask for, and
/// `/ready` reports it rounded up to whole seconds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_wait_caps_long_polls() {
    long_poll_with_max_wait(Duration::from_millis(300), (true, 1)).await;
}

/// `max_wait = 0` turns long-poll off, and `/ready` says so: a `wait` is
/// accepted and answered at once, and a message sent after that answer is in
/// the next read (no request was left holding it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_wait_zero_turns_long_poll_off() {
    let Some((s, bob, bob_id)) = long_poll_with_max_wait(Duration::ZERO, (false, 0)).await else {
        return;
    };
    let (alice, _) = s.register("alice").await;
    assert_eq!(s.state.wake.open_waiters(), 0, "nothing is held");
    let (status, _) = s
        .post("/messages", Some(&alice), common::message_body(bob_id))
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let (_, inbox) = s.get("/messages/inbox?wait=60", Some(&bob)).await;
    assert_eq!(inbox["messages"].as_array().map(Vec::len), Some(1));
}

/// A client that dropped a long-poll and came back is not locked out: past
/// the per-user cap, the oldest long-poll is answered (empty) and the new one waits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_long_poll_replaces_the_oldest_past_the_cap() {
    let Some(s) = TestServer::start(Db::Sqlite, Counters::Memory, |c| {
        c.max_long_polls_per_user = 1;
    })
    .await
    else {
        return;
    };
    let (bob, _) = s.register("bob").await;
    let first = tokio::spawn(
        s.request(Method::GET, "/messages/inbox?wait=30")
            .bearer_auth(&bob)
            .timeout(Duration::from_secs(20))
            .send(),
    );
    s.until("the first long-poll is held", || {
        s.state.wake.open_waiters() >= 1
    })
    .await;
    let second = tokio::spawn(
        s.request(Method::GET, "/messages/inbox?wait=30")
            .bearer_auth(&bob)
            .send(),
    );
    let answered = first
        .await
        .unwrap()
        .expect("the old long-poll is answered, not left hanging");
    assert_eq!(answered.status(), StatusCode::OK);
    assert_eq!(
        answered.json::<serde_json::Value>().await.unwrap(),
        json!({"messages": []})
    );
    assert_eq!(s.state.wake.open_waiters(), 1, "the new one waits");
    second.abort();
}
