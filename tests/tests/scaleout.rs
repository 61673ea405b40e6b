//! Scale-out: two `kavro-server` processes on different ports share one
//! PostgreSQL database and one Redis. A long-poll on B is answered by a send
//! through A; a token revoked on A is refused on B; logging out everywhere and
//! a password change on one end every session on both; a rate limit is
//! counted across both; the retention sweeps of both delete nothing twice and
//! lose nothing. Needs KAVRO_TEST_DATABASE_URL and KAVRO_TEST_REDIS_URL.

use std::time::{Duration, Instant};

use kavro_e2e::{Http, Server, ServerOptions, eventually};
use kavro_server::testing::{TestDatabase, TestRedisPrefix};
use serde_json::json;

struct Cluster {
    a: Server,
    b: Server,
    _db: TestDatabase,
    _redis: TestRedisPrefix,
}

fn cluster(extra: &[(&str, &str)]) -> Option<Cluster> {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let db = runtime.block_on(TestDatabase::create())?;
    let redis = TestRedisPrefix::create("kavro-scaleout")?;
    let mut env = vec![
        ("KAVRO_DATABASE_URL".to_owned(), db.url.clone()),
        ("KAVRO_REDIS_URL".to_owned(), redis.url.clone()),
        ("KAVRO_REDIS_PREFIX".to_owned(), redis.prefix.clone()),
        (
            "KAVRO_JWT_SECRET".to_owned(),
            "scale-out-test-secret-of-32-bytes-or-more".to_owned(),
        ),
        (
            "KAVRO_FERNET_KEYS".to_owned(),
            kavro_server::fieldcrypt::FieldCrypt::generate_key(),
        ),
    ];
    env.extend(
        extra
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
    );
    let options = ServerOptions {
        env,
        rate_limits: true,
        ..ServerOptions::default()
    };
    let a = Server::start_with(&options);
    let b = Server::start_with(&options);
    Some(Cluster {
        a,
        b,
        _db: db,
        _redis: redis,
    })
}

/// The value of an unlabelled Prometheus sample, 0 when absent.
fn metric(http: &Http, name: &str) -> f64 {
    let text = http.text("/metrics");
    text.lines()
        .find_map(|line| {
            let (key, value) = line.rsplit_once(' ')?;
            (key == name).then(|| value.parse().ok()).flatten()
        })
        .unwrap_or(0.0)
}

#[test]
fn two_instances_share_one_database_and_one_redis() {
    let Some(cluster) = cluster(&[]) else { return };
    let a = Http::new(&cluster.a.url);
    let b = Http::new(&cluster.b.url);
    let (alice, _) = a.register("alice", "Passw0rd-a");
    let (bob, bob_id) = b.register("bob", "Passw0rd-b");

    // A long-poll held by B is answered by a send through A.
    let b_url = cluster.b.url.clone();
    let bob_token = bob.clone();
    let poll = std::thread::spawn(move || {
        let started = Instant::now();
        let answer = Http::new(&b_url).get("/messages/inbox?wait=30", Some(&bob_token));
        (answer, started.elapsed())
    });
    let deadline = Instant::now() + Duration::from_secs(10);
    while metric(&b, "kavro_long_polls_open") < 1.0 {
        assert!(Instant::now() < deadline, "the long-poll never opened on B");
        std::thread::sleep(Duration::from_millis(10));
    }
    let body = json!({"recipient_id": bob_id, "ciphertext": "aGVsbG8gZnJvbSBBIHRvIEIgYWNyb3NzIGluc3RhbmNlcw==", "ephemeral_pubkey": "cd".repeat(32)});
    let (status, sent) = a.post("/messages", Some(&alice), &body);
    assert_eq!(status, 201);
    let ((status, inbox), waited) = poll.join().expect("poll thread");
    assert_eq!(status, 200);
    assert_eq!(
        inbox["messages"][0]["id"], sent["id"],
        "answered with the message (waited {waited:?})"
    );

    // A token revoked on A is refused on B, which accepted it before.
    assert_eq!(b.get("/auth/me", Some(&alice)).0, 200);
    let (status, _) = a.post("/auth/logout", Some(&alice), &json!({}));
    assert_eq!(status, 200);
    assert_eq!(b.get("/auth/me", Some(&alice)).0, 401);
    assert_eq!(a.get("/auth/me", Some(&alice)).0, 401);

    // The lookup limit (30 per 30 s per client address) counts requests on both.
    let mut limited_at = None;
    for i in 0..40 {
        let http = if i % 2 == 0 { &a } else { &b };
        if http.get("/keys/1", None).0 == 429 {
            limited_at = Some(i);
            break;
        }
    }
    assert_eq!(
        limited_at,
        Some(30),
        "the 31st lookup across both instances is refused"
    );
}

/// Two instances sweep the same rows every 100 ms. Messages live 5 s: long
/// enough that a fresh message is read and acknowledged (the next requests)
/// long before it expires, even on a busy machine.
#[test]
fn retention_on_both_instances_deletes_nothing_twice_and_loses_nothing() {
    let Some(cluster) = cluster(&[
        ("KAVRO_MESSAGE_TTL", "5s"),
        ("KAVRO_SWEEP_INTERVAL", "100ms"),
        ("KAVRO_RATE_LIMITS", "off"),
    ]) else {
        return;
    };
    let a = Http::new(&cluster.a.url);
    let b = Http::new(&cluster.b.url);
    let (alice, _) = a.register("alice", "Passw0rd-a");
    let (bob, bob_id) = a.register("bob", "Passw0rd-b");
    let body = |n: usize| json!({"recipient_id": bob_id, "ciphertext": kavro_proto::validate::base64_encode(format!("message number {n:04}").as_bytes()), "ephemeral_pubkey": "cd".repeat(32)});
    let expired =
        || metric(&a, "kavro_messages_expired_total") + metric(&b, "kavro_messages_expired_total");
    // 40 messages that will expire undelivered, through both instances.
    for n in 0..40 {
        let http = if n % 2 == 0 { &a } else { &b };
        assert_eq!(http.post("/messages", Some(&alice), &body(n)).0, 201);
    }
    eventually(
        "the sweeps expire the 40 messages",
        Duration::from_secs(60),
        || expired() >= 40.0,
    );
    // Both instances sweep the same rows again (at least twice each, counted
    // by their own metric): each row is still counted once.
    let sweeps = (
        metric(&a, "kavro_sweeps_total"),
        metric(&b, "kavro_sweeps_total"),
    );
    eventually(
        "both instances sweep twice more",
        Duration::from_secs(30),
        || {
            metric(&a, "kavro_sweeps_total") >= sweeps.0 + 2.0
                && metric(&b, "kavro_sweeps_total") >= sweeps.1 + 2.0
        },
    );
    let total = expired();
    assert!(
        (total - 40.0).abs() < f64::EPSILON,
        "expired {total} times for 40 messages"
    );
    // Fresh messages sent while both sweep are each delivered, once.
    for n in 100..120 {
        let (sender, reader) = if n % 2 == 0 { (&b, &a) } else { (&a, &b) };
        let (status, sent) = sender.post("/messages", Some(&alice), &body(n));
        assert_eq!(status, 201);
        let inbox = reader.drain_inbox(&bob);
        let got: Vec<&serde_json::Value> = inbox.iter().map(|m| &m["id"]).collect();
        assert_eq!(
            got,
            [&sent["id"]],
            "message {n}, and nothing from the expired batch"
        );
        assert_eq!(inbox[0]["ciphertext"], body(n)["ciphertext"]);
    }
}

#[test]
fn logout_everywhere_and_password_change_reach_every_instance() {
    let Some(cluster) = cluster(&[("KAVRO_RATE_LIMITS", "off")]) else {
        return;
    };
    let a = Http::new(&cluster.a.url);
    let b = Http::new(&cluster.b.url);
    let (on_a, _) = a.register("carol", "Passw0rd-c");
    let login = |http: &Http, password: &str| {
        let (status, body) = http.post(
            "/auth/login",
            None,
            &json!({"username": "carol", "password": password}),
        );
        assert_eq!(status, 200, "{body}");
        body["access_token"].as_str().expect("token").to_owned()
    };
    let on_b = login(&b, "Passw0rd-c");
    for token in [&on_a, &on_b] {
        assert_eq!(a.get("/auth/me", Some(token)).0, 200);
        assert_eq!(b.get("/auth/me", Some(token)).0, 200);
    }

    // Logging out everywhere through A ends both sessions on both instances.
    let (status, body) = a.post("/auth/logout-all", Some(&on_b), &json!({}));
    assert_eq!(status, 200, "{body}");
    for token in [&on_a, &on_b] {
        assert_eq!(a.get("/auth/me", Some(token)).0, 401);
        assert_eq!(b.get("/auth/me", Some(token)).0, 401);
    }

    // A password change through B ends the session opened on A.
    let on_a = login(&a, "Passw0rd-c");
    let on_b = login(&b, "Passw0rd-c");
    let (status, body) = b.post(
        "/auth/password",
        Some(&on_b),
        &json!({"current_password": "Passw0rd-c", "new_password": "N3w-passw0rd"}),
    );
    assert_eq!(status, 200, "{body}");
    let fresh = body["access_token"].as_str().expect("token").to_owned();
    for token in [&on_a, &on_b] {
        assert_eq!(a.get("/auth/me", Some(token)).0, 401);
        assert_eq!(b.get("/auth/me", Some(token)).0, 401);
    }
    assert_eq!(a.get("/auth/me", Some(&fresh)).0, 200);
    assert_eq!(b.get("/auth/me", Some(&fresh)).0, 200);
    let (status, _) = a.post(
        "/auth/login",
        None,
        &json!({"username": "carol", "password": "Passw0rd-c"}),
    );
    assert_eq!(status, 401, "the old password is gone on every instance");
    login(&a, "N3w-passw0rd");
}
