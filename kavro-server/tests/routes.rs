//! Every route, at the root and under `/api/v1`: success and each documented
//! error. Each scenario runs on SQLite and (in CI) on PostgreSQL.

// Scenario helpers outside #[test] fns unwrap too: a failure is a test failure.
#![allow(clippy::unwrap_used)]

mod common;
mod ops;
mod trust;

use common::{Counters, Db, TestServer, assert_error, message_body, tally};
use reqwest::{Method, StatusCode};
use serde_json::json;

on_both_databases!(auth_flow, auth_flow);
on_both_databases!(bad_registrations, bad_registrations);
on_both_databases!(login_answers, login_answers);
on_both_databases!(tokens_refused, tokens_refused);
on_both_databases!(keys, keys);
on_both_databases!(users, users);
on_both_databases!(send_and_fetch, send_and_fetch);
on_both_databases!(send_errors, send_errors);
on_both_databases!(acks, acks);
on_both_databases!(delivery_status, delivery_status);
on_both_databases!(idempotent_send, idempotent_send);
on_both_databases!(long_poll, long_poll);
on_both_databases!(inbox_params, inbox_params);
on_both_databases!(operations, operations);
on_both_databases!(sql_metacharacters, sql_metacharacters);
on_both_databases!(encrypted_at_rest, encrypted_at_rest);
on_both_databases!(concurrent_registrations, concurrent_registrations);
on_both_databases!(expiry, expiry);

const PREFIXES: [&str; 2] = ["", "/api/v1"];

async fn auth_flow(s: TestServer) {
    for (i, prefix) in PREFIXES.iter().enumerate() {
        let name = format!("Alice{i}");
        let (status, body) = s
            .post(
                &format!("{prefix}/auth/register"),
                None,
                json!({"username": name, "password": "Passw0rd"}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        assert_eq!(body["token_type"], "bearer");
        let (status, body) = s
            .post(
                &format!("{prefix}/auth/login"),
                None,
                json!({"username": name.to_lowercase(), "password": "Passw0rd"}),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let token = body["access_token"].as_str().unwrap().to_owned();
        let (status, me) = s.get(&format!("{prefix}/auth/me"), Some(&token)).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(me["username"], name.as_str(), "shown as registered");
        assert!(me["user_id"].as_i64().unwrap() > 0);
        let (status, body) = s
            .post(&format!("{prefix}/auth/logout"), Some(&token), json!({}))
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        // The revoked token is refused everywhere.
        for p in PREFIXES {
            let response = s
                .request(Method::GET, &format!("{p}/auth/me"))
                .bearer_auth(&token)
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
            assert_eq!(response.headers()["www-authenticate"], "Bearer");
        }
        let (status, body) = s
            .post(&format!("{prefix}/auth/logout"), Some(&token), json!({}))
            .await;
        assert_error(status, &body, StatusCode::UNAUTHORIZED);
    }
}

async fn bad_registrations(s: TestServer) {
    s.register("Taken").await;
    for prefix in PREFIXES {
        let url = format!("{prefix}/auth/register");
        let (status, body) = s
            .post(
                &url,
                None,
                json!({"username": "tAKEN", "password": "Passw0rd"}),
            )
            .await;
        let text = assert_error(status, &body, StatusCode::BAD_REQUEST);
        assert!(text.contains("already taken"), "{text}");

        let (status, body) = s
            .post(
                &url,
                None,
                json!({"username": "ok_name", "password": "short"}),
            )
            .await;
        assert_error(status, &body, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(body["error"], "Validation failed");
        assert_eq!(body["details"][0]["field"], "password");
        let why = body["details"][0]["message"].as_str().unwrap();
        assert!(
            why.contains("uppercase") && why.contains("digit") && why.contains('8'),
            "{why}"
        );

        for bad_name in ["ab", "has space", "x".repeat(31).as_str(), "émile", ""] {
            let (status, body) = s
                .post(
                    &url,
                    None,
                    json!({"username": bad_name, "password": "Passw0rd"}),
                )
                .await;
            assert_error(status, &body, StatusCode::UNPROCESSABLE_ENTITY);
            assert_eq!(body["details"][0]["field"], "username", "{bad_name:?}");
        }
        // Malformed JSON, wrong types, missing fields, not JSON at all.
        for raw in [
            "{",
            "[]",
            "null",
            r#"{"username": 5, "password": "Passw0rd"}"#,
            r#"{"username": "abc"}"#,
            r#"{"username": "abc", "password": ["Passw0rd"]}"#,
            // An invite code is a string, even where registration is open.
            r#"{"username": "abc", "password": "Passw0rd", "invite_code": false}"#,
            r#"{"username": "abc", "password": "Passw0rd", "invite_code": 12}"#,
        ] {
            let (status, body) = s
                .call(
                    s.request(Method::POST, &url)
                        .header("content-type", "application/json")
                        .body(raw),
                )
                .await;
            assert_error(status, &body, StatusCode::UNPROCESSABLE_ENTITY);
            assert_eq!(body["error"], "Validation failed", "{raw}");
        }
        let (status, body) = s
            .call(s.request(Method::POST, &url).body("username=a"))
            .await;
        assert_error(status, &body, StatusCode::UNSUPPORTED_MEDIA_TYPE);
        let response = s.request(Method::GET, &url).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(
            response.headers()["allow"],
            "POST",
            "RFC 9110 wants the allowed methods"
        );
    }
}

async fn login_answers(s: TestServer) {
    s.register("bob").await;
    for prefix in PREFIXES {
        let url = format!("{prefix}/auth/login");
        let (s1, wrong) = s
            .post(
                &url,
                None,
                json!({"username": "bob", "password": "Wrong0ne"}),
            )
            .await;
        let (s2, unknown) = s
            .post(
                &url,
                None,
                json!({"username": "nobody", "password": "Wrong0ne"}),
            )
            .await;
        let (s3, invalid) = s
            .post(
                &url,
                None,
                json!({"username": "no such name!", "password": "x"}),
            )
            .await;
        for (status, body) in [(s1, &wrong), (s2, &unknown), (s3, &invalid)] {
            assert_eq!(
                assert_error(status, body, StatusCode::UNAUTHORIZED),
                "Incorrect username or password."
            );
        }
        assert_eq!(
            wrong, unknown,
            "same body for unknown user and wrong password"
        );
        let (status, _) = s
            .post(
                &url,
                None,
                json!({"username": "BOB", "password": "Passw0rd!"}),
            )
            .await;
        assert_eq!(status, StatusCode::OK);
        let (status, body) = s.post(&url, None, json!({"username": "bob"})).await;
        assert_error(status, &body, StatusCode::UNPROCESSABLE_ENTITY);
    }
}

async fn tokens_refused(s: TestServer) {
    let (token, _) = s.register("carol").await;
    let parts: Vec<&str> = token.split('.').collect();
    let tampered = format!("{}.{}x.{}", parts[0], parts[1], parts[2]);
    let none_alg = format!(
        "{}.{}.",
        base64_url(br#"{"alg":"none","typ":"JWT"}"#),
        parts[1]
    );
    let other_key = {
        // Same claims, signed with another secret.
        let claims: serde_json::Value =
            serde_json::from_slice(&base64_url_decode(parts[1])).unwrap();
        jsonwebtoken::encode(
            &jsonwebtoken::Header::default(),
            &claims,
            &jsonwebtoken::EncodingKey::from_secret(&[1u8; 32]).unwrap(),
        )
        .unwrap()
    };
    for bad in [
        tampered,
        none_alg,
        other_key,
        "garbage".to_owned(),
        String::new(),
    ] {
        for prefix in PREFIXES {
            let (status, body) = s.get(&format!("{prefix}/auth/me"), Some(&bad)).await;
            assert_error(status, &body, StatusCode::UNAUTHORIZED);
        }
    }
    let (status, body) = s
        .call(
            s.request(Method::GET, "/auth/me")
                .header("authorization", "Basic abc"),
        )
        .await;
    assert_error(status, &body, StatusCode::UNAUTHORIZED);
    // Expiry follows the relay's clock.
    s.clock
        .advance(std::time::Duration::from_secs(24 * 3600 + 1));
    let (status, body) = s.get("/auth/me", Some(&token)).await;
    let text = assert_error(status, &body, StatusCode::UNAUTHORIZED);
    assert!(text.contains("expired"), "{text}");
}

fn base64_url(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn base64_url_decode(text: &str) -> Vec<u8> {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(text)
        .unwrap()
}

async fn keys(s: TestServer) {
    let (token, id) = s.register("dave").await;
    let key = "0a".repeat(32);
    for prefix in PREFIXES {
        let url = format!("{prefix}/keys/publish");
        let (status, body) = s
            .post(
                &url,
                Some(&token),
                json!({"identity_pubkey": key, "device_name": "laptop"}),
            )
            .await;
        assert_eq!(
            (status, body["status"].as_str()),
            (StatusCode::CREATED, Some("public key stored"))
        );
        // Idempotent, and upper-case hex is the same key.
        let (status, _) = s
            .post(
                &url,
                Some(&token),
                json!({"identity_pubkey": key.to_uppercase()}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED);
        for bad in [
            "0a".repeat(31),
            "0a".repeat(33),
            "zz".repeat(32),
            String::new(),
            "é".repeat(32),
        ] {
            let (status, body) = s
                .post(&url, Some(&token), json!({"identity_pubkey": bad}))
                .await;
            assert_error(status, &body, StatusCode::UNPROCESSABLE_ENTITY);
            assert_eq!(body["details"][0]["field"], "identity_pubkey");
        }
        let (status, body) = s
            .post(
                &url,
                Some(&token),
                json!({"identity_pubkey": key, "device_name": "x".repeat(65)}),
            )
            .await;
        assert_error(status, &body, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(body["details"][0]["field"], "device_name");
        let (status, body) = s.post(&url, None, json!({"identity_pubkey": key})).await;
        assert_error(status, &body, StatusCode::UNAUTHORIZED);
    }
    let key2 = "0b".repeat(32);
    s.post(
        "/keys/publish",
        Some(&token),
        json!({"identity_pubkey": key2}),
    )
    .await;
    for prefix in PREFIXES {
        // The owner's view (others see no device names: tests/trust/keys.rs).
        let (status, body) = s.get(&format!("{prefix}/keys/{id}"), Some(&token)).await;
        assert_eq!(status, StatusCode::OK);
        let devices = body["devices"].as_array().unwrap();
        assert_eq!(devices.len(), 2, "{body}");
        assert_eq!(devices[0]["identity_pubkey"], key.as_str(), "oldest first");
        assert_eq!(devices[0]["device_name"], "laptop");
        assert_eq!(devices[0]["user_id"], id);
        assert!(devices[0]["id"].as_i64().is_some() && devices[0]["created_at"].is_string());
        assert_eq!(devices[1]["device_name"], serde_json::Value::Null);
        let (status, body) = s.get(&format!("{prefix}/keys/999999"), None).await;
        assert_eq!((status, body), (StatusCode::OK, json!({"devices": []})));
        let (status, body) = s.get(&format!("{prefix}/keys/abc"), None).await;
        assert_error(status, &body, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(body["details"][0]["field"], "user_id");
    }
}

async fn users(s: TestServer) {
    let (token, id) = s.register("Erin").await;
    s.post(
        "/keys/publish",
        Some(&token),
        json!({"identity_pubkey": "0c".repeat(32)}),
    )
    .await;
    for prefix in PREFIXES {
        let (status, body) = s.get(&format!("{prefix}/users/erin"), Some(&token)).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["user_id"], id);
        assert_eq!(body["username"], "Erin");
        assert_eq!(body["devices"].as_array().unwrap().len(), 1);
        let (status, body) = s.get(&format!("{prefix}/users/nobody"), Some(&token)).await;
        assert_error(status, &body, StatusCode::NOT_FOUND);
        let (status, body) = s.get(&format!("{prefix}/users/erin"), None).await;
        assert_error(status, &body, StatusCode::UNAUTHORIZED);
    }
}

async fn send_and_fetch(s: TestServer) {
    let (alice, alice_id) = s.register("alice").await;
    let (bob, bob_id) = s.register("bob").await;
    let mut ids = Vec::new();
    for (i, prefix) in ["", "/api/v1", "", "/api/v1"].iter().enumerate() {
        // `/messages/` and `/messages` are the same route.
        let path = if i % 2 == 0 {
            format!("{prefix}/messages/")
        } else {
            format!("{prefix}/messages")
        };
        let mut body = message_body(bob_id);
        body["metadata"] = json!({"n": i, "nested": {"a": [1, null, "x"]}});
        let (status, sent) = s.post(&path, Some(&alice), body).await;
        assert_eq!(status, StatusCode::CREATED, "{sent}");
        assert_eq!(sent["status"], "stored");
        ids.push(sent["id"].as_i64().unwrap());
    }
    for prefix in PREFIXES {
        let (status, inbox) = s.get(&format!("{prefix}/messages/inbox"), Some(&bob)).await;
        assert_eq!(status, StatusCode::OK);
        let messages = inbox["messages"].as_array().unwrap();
        let got: Vec<i64> = messages.iter().map(|m| m["id"].as_i64().unwrap()).collect();
        let mut newest_first = ids.clone();
        newest_first.reverse();
        assert_eq!(got, newest_first, "newest first by default");
        let m = &messages[3];
        assert_eq!(m["sender_id"], alice_id);
        assert_eq!(m["recipient_id"], bob_id);
        assert_eq!(
            m["ciphertext"],
            message_body(0)["ciphertext"],
            "returned exactly as sent"
        );
        assert_eq!(m["ephemeral_pubkey"], "ab".repeat(32));
        assert_eq!(
            m["metadata"],
            json!({"n": 0, "nested": {"a": [1, null, "x"]}})
        );
        assert!(m["created_at"].is_string());
        let (_, asc) = s
            .get(
                &format!("{prefix}/messages/inbox?order=asc&limit=2"),
                Some(&bob),
            )
            .await;
        let got: Vec<i64> = asc["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["id"].as_i64().unwrap())
            .collect();
        assert_eq!(got, ids[..2].to_vec(), "oldest first, limited");
        // The sender cannot read the recipient's messages.
        let (_, own) = s
            .get(&format!("{prefix}/messages/inbox"), Some(&alice))
            .await;
        assert_eq!(own, json!({"messages": []}));
    }
}

async fn send_errors(s: TestServer) {
    let (alice, _) = s.register("alice").await;
    let (_, bob_id) = s.register("bob").await;
    for prefix in PREFIXES {
        let url = format!("{prefix}/messages");
        let mut bad = message_body(bob_id);
        for invalid in ["not base64!", "aGk", "aGk=\n", "a-_=", "aG k="] {
            bad["ciphertext"] = json!(invalid);
            let (status, body) = s.post(&url, Some(&alice), bad.clone()).await;
            assert_error(status, &body, StatusCode::BAD_REQUEST);
        }
        let mut big = message_body(bob_id);
        big["ciphertext"] = json!(kavro_proto::validate::base64_encode(&vec![
            1u8;
            64 * 1024 + 1
        ]));
        let (status, body) = s.post(&url, Some(&alice), big).await;
        assert_error(status, &body, StatusCode::PAYLOAD_TOO_LARGE);
        let mut too_long = message_body(bob_id);
        too_long["ciphertext"] =
            json!("A".repeat(kavro_proto::validate::MAX_CIPHERTEXT_B64_CHARS + 4));
        let (status, body) = s.post(&url, Some(&alice), too_long).await;
        assert_error(status, &body, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(body["details"][0]["field"], "ciphertext");
        let mut max = message_body(bob_id);
        max["ciphertext"] = json!(kavro_proto::validate::base64_encode(&vec![1u8; 64 * 1024]));
        let (status, _) = s.post(&url, Some(&alice), max).await;
        assert_eq!(status, StatusCode::CREATED, "exactly 64 KiB is fine");
        let mut bad_key = message_body(bob_id);
        bad_key["ephemeral_pubkey"] = json!("12");
        let (status, body) = s.post(&url, Some(&alice), bad_key).await;
        assert_error(status, &body, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(body["details"][0]["field"], "ephemeral_pubkey");
        let (status, body) = s.post(&url, Some(&alice), message_body(987_654)).await;
        assert_error(status, &body, StatusCode::NOT_FOUND);
        let (status, body) = s.post(&url, None, message_body(bob_id)).await;
        assert_error(status, &body, StatusCode::UNAUTHORIZED);
        let mut wrong_type = message_body(bob_id);
        wrong_type["recipient_id"] = json!("two");
        let (status, body) = s.post(&url, Some(&alice), wrong_type).await;
        assert_error(status, &body, StatusCode::UNPROCESSABLE_ENTITY);
        let mut bad_uuid = message_body(bob_id);
        bad_uuid["client_msg_id"] = json!("not-a-uuid");
        let (status, body) = s.post(&url, Some(&alice), bad_uuid).await;
        assert_error(status, &body, StatusCode::UNPROCESSABLE_ENTITY);
        // Bodies over 1 MiB: declared (refused before reading), and chunked
        // without Content-Length (refused once the cap is passed).
        let head = format!(
            "POST {url} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {alice}\r\n\
             Content-Type: application/json\r\nConnection: close\r\n"
        );
        let declared = format!("{head}Content-Length: {}\r\n\r\n", 1024 * 1024 + 1);
        let (status, body) = s.raw(declared.as_bytes()).await;
        assert_error(status, &body, StatusCode::PAYLOAD_TOO_LARGE);
        let mut chunked = format!("{head}Transfer-Encoding: chunked\r\n\r\n").into_bytes();
        for _ in 0..17 {
            chunked.extend_from_slice(format!("{:x}\r\n", 64 * 1024).as_bytes());
            chunked.extend(std::iter::repeat_n(b' ', 64 * 1024));
            chunked.extend_from_slice(b"\r\n");
        }
        chunked.extend_from_slice(b"0\r\n\r\n");
        let (status, body) = s.raw(&chunked).await;
        assert_error(status, &body, StatusCode::PAYLOAD_TOO_LARGE);
    }
}

async fn acks(s: TestServer) {
    let (alice, _) = s.register("alice").await;
    let (bob, bob_id) = s.register("bob").await;
    let mut ids = Vec::new();
    for _ in 0..5 {
        let (_, sent) = s
            .post("/messages", Some(&alice), message_body(bob_id))
            .await;
        ids.push(sent["id"].as_i64().unwrap());
    }
    for (prefix, id) in PREFIXES.iter().zip(&ids) {
        let url = format!("{prefix}/messages/{id}/ack");
        let (status, body) = s.post(&url, Some(&alice), json!({})).await;
        assert_error(status, &body, StatusCode::FORBIDDEN);
        let (status, body) = s.post(&url, Some(&bob), json!({})).await;
        assert_eq!(
            (status, body),
            (StatusCode::OK, json!({"status": "acknowledged"}))
        );
        let (status, _) = s.post(&url, Some(&bob), json!({})).await;
        assert_eq!(status, StatusCode::OK, "idempotent");
        let (status, body) = s
            .post(
                &format!("{prefix}/messages/99999999/ack"),
                Some(&bob),
                json!({}),
            )
            .await;
        assert_error(status, &body, StatusCode::NOT_FOUND);
        let (status, body) = s
            .post(&format!("{prefix}/messages/x/ack"), Some(&bob), json!({}))
            .await;
        assert_error(status, &body, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(body["details"][0]["field"], "id");
        let (status, body) = s.post(&url, None, json!({})).await;
        assert_error(status, &body, StatusCode::UNAUTHORIZED);
    }
    // Batch: the caller's among the ids, acked before or now; others ignored.
    let (status, body) = s
        .post(
            "/api/v1/messages/ack",
            Some(&bob),
            json!({"ids": [ids[0], ids[2], ids[3], 99_999_999]}),
        )
        .await;
    assert_eq!((status, body), (StatusCode::OK, json!({"acknowledged": 3})));
    let (status, body) = s
        .post("/messages/ack", Some(&alice), json!({"ids": [ids[4]]}))
        .await;
    assert_eq!((status, body), (StatusCode::OK, json!({"acknowledged": 0})));
    let (status, body) = s
        .post(
            "/messages/ack",
            Some(&bob),
            json!({"ids": (1..=501).collect::<Vec<_>>()}),
        )
        .await;
    assert_error(status, &body, StatusCode::UNPROCESSABLE_ENTITY);
    let (status, body) = s
        .post("/messages/ack", Some(&bob), json!({"ids": ["a"]}))
        .await;
    assert_error(status, &body, StatusCode::UNPROCESSABLE_ENTITY);
    let (_, inbox) = s.get("/messages/inbox", Some(&bob)).await;
    let left: Vec<i64> = inbox["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_i64().unwrap())
        .collect();
    assert_eq!(left, vec![ids[4]]);
    s.post(&format!("/messages/{}/ack", ids[4]), Some(&bob), json!({}))
        .await;
    let (_, inbox) = s.get("/messages/inbox", Some(&bob)).await;
    assert_eq!(inbox, json!({"messages": []}));
}

async fn delivery_status(s: TestServer) {
    let (alice, _) = s.register("alice").await;
    let (bob, bob_id) = s.register("bob").await;
    let (_, sent) = s
        .post("/messages", Some(&alice), message_body(bob_id))
        .await;
    let id = sent["id"].as_i64().unwrap();
    for prefix in PREFIXES {
        let (status, body) = s
            .get(&format!("{prefix}/messages/{id}/status"), Some(&alice))
            .await;
        assert_eq!(
            (status, body),
            (
                StatusCode::OK,
                json!({"status": "pending", "delivered_at": null})
            )
        );
        let (status, body) = s
            .get(&format!("{prefix}/messages/{id}/status"), Some(&bob))
            .await;
        assert_error(status, &body, StatusCode::NOT_FOUND);
    }
    s.post(&format!("/messages/{id}/ack"), Some(&bob), json!({}))
        .await;
    let (status, body) = s.get(&format!("/messages/{id}/status"), Some(&alice)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["status"], "delivered");
    assert!(body["delivered_at"].is_string());
    // Expired: past the TTL without an ack.
    let (_, sent) = s
        .post("/messages", Some(&alice), message_body(bob_id))
        .await;
    let id2 = sent["id"].as_i64().unwrap();
    s.clock
        .advance(std::time::Duration::from_secs(31 * 24 * 3600));
    let alice = s.login("alice").await;
    let (_, body) = s
        .get(&format!("/messages/{id2}/status"), Some(&alice))
        .await;
    assert_eq!(body["status"], "expired");
    let (status, body) = s.get("/messages/abc/status", Some(&alice)).await;
    assert_error(status, &body, StatusCode::UNPROCESSABLE_ENTITY);
}

async fn idempotent_send(s: TestServer) {
    let (alice, _) = s.register("alice").await;
    let (bob, bob_id) = s.register("bob").await;
    let mut body = message_body(bob_id);
    body["client_msg_id"] = json!(uuid::Uuid::new_v4());
    let (s1, first) = s.post("/messages", Some(&alice), body.clone()).await;
    let (s2, again) = s.post("/api/v1/messages", Some(&alice), body.clone()).await;
    assert_eq!((s1, s2), (StatusCode::CREATED, StatusCode::CREATED));
    assert_eq!(first["id"], again["id"]);
    let (_, inbox) = s.get("/messages/inbox", Some(&bob)).await;
    assert_eq!(
        inbox["messages"].as_array().unwrap().len(),
        1,
        "stored once"
    );
}

async fn long_poll(s: TestServer) {
    let (alice, _) = s.register("alice").await;
    let (bob, bob_id) = s.register("bob").await;
    let poll = {
        let request = s
            .request(Method::GET, "/messages/inbox?wait=30")
            .bearer_auth(&bob)
            .send();
        tokio::spawn(request)
    };
    // The poll is held until something arrives (we wait until it is registered).
    s.until("the long-poll is waiting", || {
        s.state.wake.open_waiters() == 1
    })
    .await;
    assert!(!poll.is_finished());
    let (_, sent) = s
        .post("/messages", Some(&alice), message_body(bob_id))
        .await;
    let response = poll.await.unwrap().unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let inbox: serde_json::Value = response.json().await.unwrap();
    assert_eq!(inbox["messages"][0]["id"], sent["id"]);
    // With something pending, wait returns at once; wait over 60 is refused.
    let (status, inbox) = s.get("/messages/inbox?wait=60", Some(&bob)).await;
    assert_eq!(
        (status, inbox["messages"].as_array().unwrap().len()),
        (StatusCode::OK, 1)
    );
    let (status, body) = s.get("/messages/inbox?wait=61", Some(&bob)).await;
    assert_error(status, &body, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(body["details"][0]["field"], "wait");
}

async fn inbox_params(s: TestServer) {
    let (bob, _) = s.register("bob").await;
    for prefix in PREFIXES {
        for bad in [
            "limit=0",
            "limit=201",
            "limit=abc",
            "limit=-1",
            "order=sideways",
            "wait=-1",
            "wait=x",
        ] {
            let (status, body) = s
                .get(&format!("{prefix}/messages/inbox?{bad}"), Some(&bob))
                .await;
            assert_error(status, &body, StatusCode::UNPROCESSABLE_ENTITY);
            let field = bad.split('=').next().unwrap();
            assert_eq!(body["details"][0]["field"], field, "{bad}");
        }
        for good in ["limit=1", "limit=200", "order=asc", "order=desc", "wait=0"] {
            let (status, _) = s
                .get(&format!("{prefix}/messages/inbox?{good}"), Some(&bob))
                .await;
            assert_eq!(status, StatusCode::OK, "{good}");
        }
        let (status, body) = s.get(&format!("{prefix}/messages/inbox"), None).await;
        assert_error(status, &body, StatusCode::UNAUTHORIZED);
    }
}

async fn operations(s: TestServer) {
    for prefix in PREFIXES {
        let response = s
            .request(Method::GET, &format!("{prefix}/health"))
            .send()
            .await
            .unwrap();
        let headers = response.headers().clone();
        assert_security_headers("/health", &headers);
        assert!(
            headers.get("access-control-allow-origin").is_none(),
            "CORS off"
        );
        let body: serde_json::Value = response.json().await.unwrap();
        assert_eq!(body["status"], "ok");
        assert_eq!(body["service"], "kavro");
        assert_eq!(body["version"], env!("CARGO_PKG_VERSION"));
        let (status, ready) = s.get(&format!("{prefix}/ready"), None).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(ready["database"], "ok");
        assert_eq!(ready["redis"], "not configured");
        assert_eq!(
            (&ready["long_poll"], &ready["long_poll_max_wait"]),
            (&json!(true), &json!(60)),
            "the default max_wait (60 s): {ready}"
        );
        let (status, spec) = s.get(&format!("{prefix}/openapi.json"), None).await;
        assert_eq!(status, StatusCode::OK);
        let paths = spec["paths"].as_object().unwrap();
        for path in [
            "/auth/register",
            "/auth/login",
            "/auth/me",
            "/auth/logout",
            "/auth/password",
            "/auth/logout-all",
            "/keys/publish",
            "/keys/{id}",
            "/users/{username}",
            "/messages",
            "/messages/inbox",
            "/messages/{id}/ack",
            "/messages/ack",
            "/messages/{id}/status",
            "/health",
            "/ready",
            "/metrics",
        ] {
            assert!(paths.contains_key(path), "{path} missing from the spec");
        }
        let docs = s
            .request(Method::GET, &format!("{prefix}/docs"))
            .send()
            .await
            .unwrap();
        assert_eq!(docs.status(), StatusCode::OK);
        let csp = docs.headers()["content-security-policy"]
            .to_str()
            .unwrap()
            .to_owned();
        assert!(
            csp.contains("'unsafe-inline'"),
            "Swagger UI needs inline scripts: {csp}"
        );
        assert!(docs.text().await.unwrap().contains("swagger"));
        let (status, body) = s.get(&format!("{prefix}/no/such/route"), None).await;
        assert_error(status, &body, StatusCode::NOT_FOUND);
    }
    let metrics = s
        .request(Method::GET, "/metrics")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(metrics.contains("kavro_http_requests_total"), "{metrics}");
    assert!(metrics.contains("kavro_messages_pending"));
}

async fn sql_metacharacters(s: TestServer) {
    let (alice, _) = s.register("alice").await;
    let (bob, bob_id) = s.register("bob").await;
    let nasty = "'; DROP TABLE users; --\" OR 1=1 /*";
    let (status, body) = s
        .post(
            "/auth/register",
            None,
            json!({"username": nasty, "password": "Passw0rd"}),
        )
        .await;
    assert_error(status, &body, StatusCode::UNPROCESSABLE_ENTITY);
    let (status, _) = s
        .post(
            "/auth/register",
            None,
            json!({"username": "quoted", "password": format!("Aa1{nasty}")}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, _) = s
        .post(
            "/auth/login",
            None,
            json!({"username": "quoted", "password": format!("Aa1{nasty}")}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = s
        .post(
            "/auth/login",
            None,
            json!({"username": nasty, "password": nasty}),
        )
        .await;
    assert_error(status, &body, StatusCode::UNAUTHORIZED);
    let (status, _) = s
        .post(
            "/keys/publish",
            Some(&alice),
            json!({"identity_pubkey": "0d".repeat(32), "device_name": nasty}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, body) = s
        .post(
            "/keys/publish",
            Some(&alice),
            json!({"identity_pubkey": nasty}),
        )
        .await;
    assert_error(status, &body, StatusCode::UNPROCESSABLE_ENTITY);
    let mut msg = message_body(bob_id);
    msg["metadata"] = json!({nasty: nasty});
    let (status, _) = s.post("/messages", Some(&alice), msg).await;
    assert_eq!(status, StatusCode::CREATED);
    let mut msg = message_body(bob_id);
    msg["ciphertext"] = json!(nasty);
    let (status, body) = s.post("/messages", Some(&alice), msg).await;
    assert_error(status, &body, StatusCode::BAD_REQUEST);
    let (status, body) = s
        .get(&format!("/users/{}", urlencode(nasty)), Some(&bob))
        .await;
    assert_error(status, &body, StatusCode::NOT_FOUND);
    let (status, body) = s.get(&format!("/keys/{}", urlencode(nasty)), None).await;
    assert_error(status, &body, StatusCode::UNPROCESSABLE_ENTITY);
    let (_, inbox) = s.get("/messages/inbox", Some(&bob)).await;
    assert_eq!(inbox["messages"][0]["metadata"], json!({nasty: nasty}));
    let (_, users) = s.get("/users/alice", Some(&alice)).await;
    assert_eq!(users["devices"][0]["device_name"], nasty);
}

fn urlencode(text: &str) -> String {
    use std::fmt::Write as _;
    text.bytes().fold(String::new(), |mut out, b| {
        let _ = write!(out, "%{b:02X}");
        out
    })
}

async fn encrypted_at_rest(s: TestServer) {
    let (alice, alice_id) = s.register("alice").await;
    let (_, bob_id) = s.register("bob").await;
    s.post(
        "/keys/publish",
        Some(&alice),
        json!({"identity_pubkey": "0e".repeat(32), "device_name": "my-secret-laptop"}),
    )
    .await;
    let mut msg = message_body(bob_id);
    msg["metadata"] = json!({"subject": "very-private-metadata"});
    s.post("/messages", Some(&alice), msg).await;
    let devices = s
        .state
        .store
        .devices(kavro_proto::UserId(alice_id))
        .await
        .unwrap();
    let stored = devices[0].device_name.clone().unwrap();
    assert!(!String::from_utf8_lossy(&stored).contains("laptop"));
    assert!(
        String::from_utf8_lossy(&stored).starts_with("gAAAAA"),
        "a Fernet token"
    );
    let now = kavro_server::clock::Clock::now(s.clock.as_ref());
    let inbox = s
        .state
        .store
        .inbox(
            kavro_proto::UserId(bob_id),
            10,
            kavro_proto::api::InboxOrder::Desc,
            now,
        )
        .await
        .unwrap();
    let meta = inbox[0].metadata.clone().unwrap();
    assert!(!String::from_utf8_lossy(&meta).contains("private"));
}

async fn concurrent_registrations(s: TestServer) {
    let s = std::sync::Arc::new(s);
    let attempts = (0..10).map(|_| {
        let s = s.clone();
        tokio::spawn(async move {
            s.post(
                "/auth/register",
                None,
                json!({"username": "samename", "password": "Passw0rd"}),
            )
            .await
            .0
        })
    });
    let mut statuses = Vec::new();
    for attempt in attempts {
        statuses.push(attempt.await.unwrap());
    }
    assert_eq!(
        tally(&statuses, StatusCode::CREATED, StatusCode::BAD_REQUEST),
        (1, 9),
        "{statuses:?}"
    );
}

async fn expiry(s: TestServer) {
    let (alice, _) = s.register("alice").await;
    let (_, bob_id) = s.register("bob").await;
    s.post("/messages", Some(&alice), message_body(bob_id))
        .await;
    s.clock
        .advance(std::time::Duration::from_secs(29 * 24 * 3600));
    // (Tokens last a day: log in again after the jump.)
    let bob = s.login("bob").await;
    let (_, inbox) = s.get("/messages/inbox", Some(&bob)).await;
    assert_eq!(
        inbox["messages"].as_array().unwrap().len(),
        1,
        "still within 30 days"
    );
    s.clock
        .advance(std::time::Duration::from_secs(2 * 24 * 3600));
    let bob = s.login("bob").await;
    let (_, inbox) = s.get("/messages/inbox", Some(&bob)).await;
    assert_eq!(
        inbox,
        json!({"messages": []}),
        "expired: out of the inbox even before the sweep"
    );
    let report = kavro_server::retention::sweep_once(&s.state).await.unwrap();
    assert_eq!(report.expired, 1);
    assert_eq!(
        kavro_server::retention::sweep_once(&s.state)
            .await
            .unwrap()
            .expired,
        0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cors_only_for_listed_origins() {
    let Some(s) = TestServer::start(Db::Sqlite, Counters::Memory, |c| {
        c.cors_origins = vec!["https://chat.example.org".to_owned()];
    })
    .await
    else {
        return;
    };
    let allowed = s
        .request(Method::GET, "/health")
        .header("origin", "https://chat.example.org")
        .send()
        .await
        .unwrap();
    assert_eq!(
        allowed.headers()["access-control-allow-origin"],
        "https://chat.example.org"
    );
    assert!(
        allowed
            .headers()
            .get("access-control-allow-credentials")
            .is_none()
    );
    let other = s
        .request(Method::GET, "/health")
        .header("origin", "https://evil.example")
        .send()
        .await
        .unwrap();
    assert!(other.headers().get("access-control-allow-origin").is_none());
}

/// The contract's security headers (no HSTS: these servers run without TLS).
/// The Swagger UI's policy allows its inline scripts; every other answer
/// allows nothing.
fn assert_security_headers(what: &str, headers: &reqwest::header::HeaderMap) {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    assert_eq!(header("x-content-type-options"), Some("nosniff"), "{what}");
    assert_eq!(header("x-frame-options"), Some("DENY"), "{what}");
    assert_eq!(
        header("referrer-policy"),
        Some("strict-origin-when-cross-origin"),
        "{what}"
    );
    let csp = header("content-security-policy").unwrap_or_default();
    if what.contains("/docs") {
        assert!(
            csp.contains("'unsafe-inline'") && csp.contains("frame-ancestors 'none'"),
            "{what}: {csp}"
        );
    } else {
        assert_eq!(csp, "default-src 'none'; frame-ancestors 'none'", "{what}");
    }
    assert_eq!(header("strict-transport-security"), None, "{what}");
}

/// Every operation of the spec, at both mounts, with and without a token,
/// answers with the security headers, whatever its status; and so do the
/// answers no route gives (docs, spec, unknown route, wrong method, body limit).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn security_headers_on_every_route() {
    let Some(s) = TestServer::start(Db::Sqlite, Counters::Memory, |_| {}).await else {
        return;
    };
    let (token, _) = s.register("alice").await;
    let mut checked = 0;
    for prefix in PREFIXES {
        let (_, spec) = s.get(&format!("{prefix}/openapi.json"), None).await;
        for (template, operations) in spec["paths"].as_object().unwrap() {
            let path = template
                .replace("{user_id}", "1")
                .replace("{id}", "1")
                .replace("{username}", "alice");
            for method in operations.as_object().unwrap().keys() {
                let method = Method::from_bytes(method.to_ascii_uppercase().as_bytes()).unwrap();
                // Logging out revokes the token: use a token of its own.
                let own_token = if path.ends_with("/logout") {
                    s.login("alice").await
                } else {
                    token.clone()
                };
                for auth in [None, Some(own_token.as_str())] {
                    let mut request = s.request(method.clone(), &format!("{prefix}{path}"));
                    if method == Method::POST {
                        request = request.json(&json!({}));
                    }
                    if let Some(auth) = auth {
                        request = request.bearer_auth(auth);
                    }
                    let response = request.send().await.unwrap();
                    let what = format!("{method} {prefix}{path} -> {}", response.status());
                    assert_security_headers(&what, response.headers());
                    checked += 1;
                }
            }
        }
        let oversized = vec![b' '; kavro_proto::validate::MAX_BODY_BYTES + 1];
        let others = [
            (Method::GET, format!("{prefix}/docs"), None, StatusCode::OK),
            (
                Method::GET,
                format!("{prefix}/openapi.json"),
                None,
                StatusCode::OK,
            ),
            (
                Method::GET,
                format!("{prefix}/no/such/route"),
                None,
                StatusCode::NOT_FOUND,
            ),
            (
                Method::DELETE,
                format!("{prefix}/health"),
                None,
                StatusCode::METHOD_NOT_ALLOWED,
            ),
            (
                Method::POST,
                format!("{prefix}/messages"),
                Some(oversized),
                StatusCode::PAYLOAD_TOO_LARGE,
            ),
        ];
        for (method, path, body, expected) in others {
            let mut request = s.request(method.clone(), &path);
            if let Some(body) = body {
                request = request.body(body);
            }
            let response = request.send().await.unwrap();
            assert_eq!(response.status(), expected, "{method} {path}");
            assert_security_headers(&format!("{method} {path}"), response.headers());
        }
    }
    // 15 operations a mount (the spec's), each with and without a token.
    assert!(checked >= 2 * 15 * 2, "only {checked} requests checked");
}

/// The sum of `kavro_http_requests_total` for one operation and status.
fn requests_counted(metrics: &str, operation: &str, status: u16) -> u64 {
    let operation = format!("operation=\"{operation}\"");
    let status = format!("status=\"{status}\"");
    metrics
        .lines()
        .filter(|line| line.starts_with("kavro_http_requests_total{"))
        .filter(|line| line.contains(&operation) && line.contains(&status))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

/// The body limit answers before any route matches; its `413` and `400` are
/// counted all the same (as the operation `unmatched`). The metrics are
/// process-wide and other tests run at once, so this compares before and
/// after; nothing but the body limit answers `unmatched` with these statuses.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn body_limit_answers_are_counted() {
    let Some(s) = TestServer::start(Db::Sqlite, Counters::Memory, |_| {}).await else {
        return;
    };
    let metrics = || async {
        s.request(Method::GET, "/metrics")
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    };
    let before = metrics().await;
    let head = "POST /messages HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
                Connection: close\r\n";
    let too_large = format!("{head}Content-Length: {}\r\n\r\n", 1024 * 1024 + 1);
    // hyper itself refuses a malformed Content-Length (before the app); a
    // broken chunked body is the client error the body limit answers.
    let invalid = format!("{head}Transfer-Encoding: chunked\r\n\r\nzz\r\nnot hex\r\n");
    for _ in 0..2 {
        let (status, body) = s.raw(too_large.as_bytes()).await;
        assert_error(status, &body, StatusCode::PAYLOAD_TOO_LARGE);
        let (status, body) = s.raw(invalid.as_bytes()).await;
        assert_error(status, &body, StatusCode::BAD_REQUEST);
    }
    let after = metrics().await;
    for status in [413, 400] {
        let counted = requests_counted(&after, "unmatched", status)
            - requests_counted(&before, "unmatched", status);
        assert!(
            counted >= 2,
            "{counted} of 2 answers {status} counted:\n{after}"
        );
    }
}
