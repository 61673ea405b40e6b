//! Retired keys and device names only for their owner.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::common::{Counters, Db, TestServer, assert_error};
use crate::on_both_databases;

on_both_databases!(key_retirement, key_retirement);
on_both_databases!(device_names_only_for_their_owner, device_names);

async fn retire(s: &TestServer, path: &str, token: Option<&str>) -> (StatusCode, Value) {
    let mut request = s.request(Method::DELETE, path);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    s.call(request).await
}

fn ids(devices: &Value) -> Vec<i64> {
    devices
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["id"].as_i64().unwrap())
        .collect()
}

async fn key_retirement(s: TestServer) {
    let (dave, dave_id) = s.register("dave").await;
    let (erin, _) = s.register("erin").await;
    let (old_key, new_key) = ("d1".repeat(32), "d2".repeat(32));
    for key in [&old_key, &new_key] {
        let (status, _) = s
            .post(
                "/keys/publish",
                Some(&dave),
                json!({"identity_pubkey": key}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED);
    }
    let (_, body) = s.get(&format!("/keys/{dave_id}"), None).await;
    let [old_id, new_id] = ids(&body["devices"])[..] else {
        panic!("two keys: {body}")
    };

    // Only the owner retires a key; others and unknown ids are 404.
    let (status, body) = retire(&s, &format!("/keys/{old_id}"), Some(&erin)).await;
    assert_error(status, &body, StatusCode::NOT_FOUND);
    let (status, body) = retire(&s, "/keys/999999999", Some(&dave)).await;
    assert_error(status, &body, StatusCode::NOT_FOUND);
    let (status, body) = retire(&s, &format!("/keys/{old_id}"), None).await;
    assert_error(status, &body, StatusCode::UNAUTHORIZED);
    let (status, body) = retire(&s, "/keys/abc", Some(&dave)).await;
    assert_error(status, &body, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(body["details"][0]["field"], "key_id");

    for prefix in ["", "/api/v1"] {
        let (status, body) = retire(&s, &format!("{prefix}/keys/{old_id}"), Some(&dave)).await;
        assert_eq!(
            (status, body),
            (StatusCode::OK, json!({"status": "key retired"})),
            "and again: idempotent"
        );
    }
    // No longer served, by either directory route.
    let (_, body) = s.get(&format!("/keys/{dave_id}"), None).await;
    assert_eq!(ids(&body["devices"]), vec![new_id]);
    let (_, body) = s.get("/users/dave", Some(&erin)).await;
    assert_eq!(ids(&body["devices"]), vec![new_id]);
    // A retired key cannot come back.
    let (status, body) = s
        .post(
            "/keys/publish",
            Some(&dave),
            json!({"identity_pubkey": old_key.to_uppercase()}),
        )
        .await;
    let text = assert_error(status, &body, StatusCode::CONFLICT);
    assert!(text.contains("retired"), "{text}");
    let (_, body) = s.get(&format!("/keys/{dave_id}"), None).await;
    assert_eq!(ids(&body["devices"]), vec![new_id]);
    // Publishing a live key again is still fine.
    let (status, _) = s
        .post(
            "/keys/publish",
            Some(&dave),
            json!({"identity_pubkey": new_key}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
}

async fn device_names(s: TestServer) {
    let (dave, dave_id) = s.register("dave").await;
    let (erin, _) = s.register("erin").await;
    s.post(
        "/keys/publish",
        Some(&dave),
        json!({"identity_pubkey": "d3".repeat(32), "device_name": "daves-laptop"}),
    )
    .await;
    let name_seen = |body: &Value| body["devices"][0]["device_name"].clone();
    for prefix in ["", "/api/v1"] {
        let path = format!("{prefix}/keys/{dave_id}");
        // Public without a token, as the original's clients use it, but
        // without the name.
        let (status, body) = s.get(&path, None).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(name_seen(&body), Value::Null, "anonymous: {body}");
        assert_eq!(body["devices"][0]["identity_pubkey"], "d3".repeat(32));
        let (_, body) = s.get(&path, Some(&erin)).await;
        assert_eq!(name_seen(&body), Value::Null, "someone else");
        let (status, body) = s.get(&path, Some("not-a-token")).await;
        assert_eq!(
            (status, name_seen(&body)),
            (StatusCode::OK, Value::Null),
            "a bad token is just anonymous here"
        );
        let (_, body) = s.get(&path, Some(&dave)).await;
        assert_eq!(name_seen(&body), "daves-laptop", "the owner");
        let (_, body) = s.get(&format!("{prefix}/users/dave"), Some(&erin)).await;
        assert_eq!(name_seen(&body), Value::Null);
        let (_, body) = s.get(&format!("{prefix}/users/DAVE"), Some(&dave)).await;
        assert_eq!(name_seen(&body), "daves-laptop");
    }
}
