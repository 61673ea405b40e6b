//! The real `kavro-server` binary on a free loopback port: two users exchange
//! a message boxed with `crypto_box` (nonce || box, docs/API.md part 5), the
//! recipient opens and acknowledges it, and the inbox is empty afterwards.

use base64::Engine as _;
use crypto_box::aead::{Aead, AeadCore, OsRng};
use crypto_box::{PublicKey, SalsaBox, SecretKey};
use kavro_e2e::{Http, Server};
use serde_json::json;

#[test]
fn two_users_exchange_a_boxed_message() {
    let server = Server::start();
    let http = Http::new(&server.url);
    let (status, health) = http.get("/health", None);
    assert_eq!((status, health["status"].as_str()), (200, Some("ok")));

    let (alice, _) = http.register("alice", "Passw0rd-a");
    let (bob, bob_id) = http.register("bob", "Passw0rd-b");
    let bob_secret = SecretKey::generate(&mut OsRng);
    let bob_public = bob_secret.public_key();
    let (status, _) = http.post(
        "/keys/publish",
        Some(&bob),
        &json!({"identity_pubkey": hex::encode(bob_public.as_bytes()), "device_name": "phone"}),
    );
    assert_eq!(status, 201);

    // Alice looks Bob's key up and boxes a message to it from a fresh ephemeral key.
    let (_, keys) = http.get(&format!("/keys/{bob_id}"), None);
    let key_hex = keys["devices"][0]["identity_pubkey"].as_str().unwrap();
    let mut key = [0u8; 32];
    hex::decode_to_slice(key_hex, &mut key).unwrap();
    let ephemeral = SecretKey::generate(&mut OsRng);
    let salsa = SalsaBox::new(&PublicKey::from(key), &ephemeral);
    let nonce = SalsaBox::generate_nonce(&mut OsRng);
    let sealed = salsa.encrypt(&nonce, &b"hello bob"[..]).unwrap();
    let mut wire = nonce.to_vec();
    wire.extend_from_slice(&sealed);
    let b64 = base64::engine::general_purpose::STANDARD;
    let (status, sent) = http.post(
        "/messages/",
        Some(&alice),
        &json!({
            "recipient_id": bob_id,
            "ciphertext": b64.encode(&wire),
            "ephemeral_pubkey": hex::encode(ephemeral.public_key().as_bytes()),
        }),
    );
    assert_eq!(status, 201, "{sent}");

    // Bob fetches, opens, acknowledges.
    let (status, inbox) = http.get("/messages/inbox", Some(&bob));
    assert_eq!(status, 200);
    let message = &inbox["messages"][0];
    assert_eq!(message["id"], sent["id"]);
    let bytes = b64.decode(message["ciphertext"].as_str().unwrap()).unwrap();
    let mut eph = [0u8; 32];
    hex::decode_to_slice(message["ephemeral_pubkey"].as_str().unwrap(), &mut eph).unwrap();
    let (nonce, boxed) = bytes.split_at(24);
    let opened = SalsaBox::new(&PublicKey::from(eph), &bob_secret)
        .decrypt(nonce.into(), boxed)
        .expect("the box opens with Bob's key");
    assert_eq!(opened, b"hello bob");
    // Our own envelope code opens the same box (crypto_box compatible).
    let keypair = kavro_proto::crypto::IdentityKeypair::from_secret(
        kavro_proto::crypto::IdentitySecret::from_bytes(bob_secret.to_bytes()),
    );
    match kavro_proto::crypto::open(
        &keypair,
        message["ciphertext"].as_str().unwrap(),
        message["ephemeral_pubkey"].as_str().unwrap(),
    )
    .unwrap()
    {
        kavro_proto::crypto::Opened::Legacy { text } => assert_eq!(text, "hello bob"),
        kavro_proto::crypto::Opened::Envelope { .. } => panic!("a plain box is a legacy message"),
    }

    let id = message["id"].as_i64().unwrap();
    let (status, _) = http.post(&format!("/messages/{id}/ack"), Some(&bob), &json!({}));
    assert_eq!(status, 200);
    let (_, inbox) = http.get("/messages/inbox", Some(&bob));
    assert_eq!(inbox, json!({"messages": []}));
    let (_, receipt) = http.get(&format!("/messages/{id}/status"), Some(&alice));
    assert_eq!(receipt["status"], "delivered");
}

#[test]
fn survives_restart_and_stops_gracefully_on_sigterm() {
    let server = Server::start();
    let http = Http::new(&server.url);
    let (alice, _) = http.register("alice", "Passw0rd-a");
    let (_, bob_id) = http.register("bob", "Passw0rd-b");
    let body = json!({"recipient_id": bob_id, "ciphertext": "aGVsbG8gd29ybGQgaGVsbG8gd29ybGQgaGVsbG8gd29ybGQ=", "ephemeral_pubkey": "ab".repeat(32)});
    assert_eq!(http.post("/messages", Some(&alice), &body).0, 201);
    let mut server = server;
    let status = server.terminate(std::time::Duration::from_secs(20));
    assert!(
        status.is_some_and(|s| s.success()),
        "clean exit on SIGTERM: {:?}\n{}",
        status,
        server.log()
    );
    let dir = server.stop();
    // Same data directory: same secrets, same messages.
    let server = Server::start_in(dir, &kavro_e2e::ServerOptions::default());
    let http = Http::new(&server.url);
    let (status, me) = http.get("/auth/me", Some(&alice));
    assert_eq!(status, 200, "tokens survive a restart: {me}");
    let (status, login) = http.post(
        "/auth/login",
        None,
        &json!({"username": "bob", "password": "Passw0rd-b"}),
    );
    assert_eq!(status, 200);
    let bob = login["access_token"].as_str().unwrap();
    let (_, inbox) = http.get("/messages/inbox", Some(bob));
    assert_eq!(inbox["messages"].as_array().unwrap().len(), 1);
    // The log holds both runs (a restart appends): the first run's
    // registrations and the second run's login, and no password from either.
    let log = server.log();
    assert!(log.contains("kavro::audit"), "audit lines are logged");
    assert!(
        log.contains("\"register\""),
        "the first run's lines are still there:\n{log}"
    );
    assert!(
        log.contains("\"login_success\""),
        "the second run's lines are there:\n{log}"
    );
    assert!(!log.contains("Passw0rd"), "no password in the log");
    assert!(
        !log.contains(&alice) && !log.contains(bob),
        "no token in the log"
    );
    for file in ["jwt.secret", "fernet.key"] {
        let secret = std::fs::read_to_string(server.data_dir.path().join(file)).unwrap();
        assert!(!log.contains(secret.trim()), "{file} is not in the log");
    }
}

#[test]
fn sigterm_answers_open_long_polls_at_once() {
    let mut server = Server::start();
    let http = Http::new(&server.url);
    let (bob, _) = http.register("bob", "Passw0rd-b");
    let url = server.url.clone();
    let poll = std::thread::spawn(move || {
        let started = std::time::Instant::now();
        let answer = Http::new(&url).try_get("/messages/inbox?wait=60", Some(&bob));
        (answer, started.elapsed())
    });
    // Wait until the long-poll is held.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !http
        .text("/metrics")
        .lines()
        .any(|l| l == "kavro_long_polls_open 1")
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the long-poll never opened"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let status = server.terminate(std::time::Duration::from_secs(20));
    assert!(
        status.is_some_and(|s| s.success()),
        "clean exit: {status:?}"
    );
    let (answer, waited) = poll.join().expect("poll thread");
    assert_eq!(
        answer,
        Some((200, json!({"messages": []}))),
        "answered, not cut off"
    );
    assert!(
        waited < std::time::Duration::from_secs(60),
        "not held to its end"
    );
}
