//! Password change, log out everywhere, account deletion.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::common::{Counters, Db, TestServer, assert_error, message_body};
use crate::on_both_databases;

on_both_databases!(password_change_ends_every_other_session, password_change);
on_both_databases!(logout_all_ends_every_session, logout_all);
on_both_databases!(account_deletion, account_deletion);
on_both_databases!(password_checks_count_toward_the_lockout, password_lockout);

const PREFIXES: [&str; 2] = ["", "/api/v1"];

async fn status_of(s: &TestServer, token: &str) -> StatusCode {
    s.get("/auth/me", Some(token)).await.0
}

async fn password_change(s: TestServer) {
    for (i, prefix) in PREFIXES.iter().enumerate() {
        let name = format!("pat{i}");
        let (first, _) = s.register(&name).await;
        let second = s.login(&name).await;
        let url = format!("{prefix}/auth/password");
        let (status, body) = s
            .post(
                &url,
                Some(&first),
                json!({"current_password": "Wrong-pass1", "new_password": "N3w-secret"}),
            )
            .await;
        assert_eq!(
            assert_error(status, &body, StatusCode::UNAUTHORIZED),
            "Incorrect password."
        );
        let (status, body) = s
            .post(
                &url,
                Some(&first),
                json!({"current_password": "Passw0rd!", "new_password": "weak"}),
            )
            .await;
        assert_error(status, &body, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(body["details"][0]["field"], "new_password");
        assert!(
            body["details"][0]["message"]
                .as_str()
                .unwrap()
                .contains("uppercase")
        );
        let (status, body) = s
            .post(&url, Some(&first), json!({"current_password": "Passw0rd!"}))
            .await;
        assert_error(status, &body, StatusCode::UNPROCESSABLE_ENTITY);
        let (status, body) = s
            .post(
                &url,
                None,
                json!({"current_password": "Passw0rd!", "new_password": "N3w-secret"}),
            )
            .await;
        assert_error(status, &body, StatusCode::UNAUTHORIZED);
        // Nothing changed so far.
        assert_eq!(status_of(&s, &first).await, StatusCode::OK);
        assert_eq!(status_of(&s, &second).await, StatusCode::OK);

        let (status, body) = s
            .post(
                &url,
                Some(&first),
                json!({"current_password": "Passw0rd!", "new_password": "N3w-secret"}),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["token_type"], "bearer");
        let fresh = body["access_token"].as_str().unwrap().to_owned();
        assert_eq!(status_of(&s, &fresh).await, StatusCode::OK);
        for old in [&first, &second] {
            for p in PREFIXES {
                let (status, body) = s.get(&format!("{p}/auth/me"), Some(old)).await;
                assert_error(status, &body, StatusCode::UNAUTHORIZED);
            }
        }
        let (status, _) = s
            .post(
                "/auth/login",
                None,
                json!({"username": name, "password": "Passw0rd!"}),
            )
            .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "the old password is gone");
        let (status, body) = s
            .post(
                "/auth/login",
                None,
                json!({"username": name, "password": "N3w-secret"}),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let later = body["access_token"].as_str().unwrap();
        assert_eq!(status_of(&s, later).await, StatusCode::OK);
    }
}

async fn logout_all(s: TestServer) {
    for (i, prefix) in PREFIXES.iter().enumerate() {
        let name = format!("lea{i}");
        let (first, _) = s.register(&name).await;
        let second = s.login(&name).await;
        let (other, _) = s.register(&format!("stay{i}")).await;
        let url = format!("{prefix}/auth/logout-all");
        let (status, body) = s.post(&url, None, json!({})).await;
        assert_error(status, &body, StatusCode::UNAUTHORIZED);
        let (status, body) = s
            .call(s.request(Method::POST, &url).bearer_auth(&second))
            .await;
        assert_eq!(
            (status, body),
            (StatusCode::OK, json!({"status": "logged out everywhere"})),
            "no body needed"
        );
        for token in [&first, &second] {
            let (status, body) = s.get("/auth/me", Some(token)).await;
            let text = assert_error(status, &body, StatusCode::UNAUTHORIZED);
            assert!(text.contains("revoked"), "{text}");
        }
        let (status, body) = s.post(&url, Some(&second), json!({})).await;
        assert_error(status, &body, StatusCode::UNAUTHORIZED);
        assert_eq!(
            status_of(&s, &other).await,
            StatusCode::OK,
            "other accounts keep their sessions"
        );
        // Logging in again works at once, and keeps working.
        let again = s.login(&name).await;
        assert_eq!(status_of(&s, &again).await, StatusCode::OK);
        s.clock.advance(Duration::from_secs(3600));
        assert_eq!(status_of(&s, &again).await, StatusCode::OK);
    }
}

async fn account_deletion(s: TestServer) {
    let (alice, alice_id) = s.register("alice").await;
    let (bob, bob_id) = s.register("bob").await;
    let bob_second = s.login("bob").await;
    s.post(
        "/keys/publish",
        Some(&bob),
        json!({"identity_pubkey": "b0".repeat(32)}),
    )
    .await;
    let (_, to_bob) = s
        .post("/messages", Some(&alice), message_body(bob_id))
        .await;
    let to_bob = to_bob["id"].as_i64().unwrap();
    let (_, from_bob) = s
        .post("/messages", Some(&bob), message_body(alice_id))
        .await;
    let from_bob = from_bob["id"].as_i64().unwrap();

    // Wrong password, missing password, no token: nothing happens.
    let delete = |token: Option<&str>, body: serde_json::Value| {
        let mut request = s.request(Method::DELETE, "/auth/me").json(&body);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        s.call(request)
    };
    let (status, body) = delete(Some(&bob), json!({"password": "Wrong-pass1"})).await;
    assert_eq!(
        assert_error(status, &body, StatusCode::UNAUTHORIZED),
        "Incorrect password."
    );
    let (status, body) = delete(Some(&bob), json!({})).await;
    assert_error(status, &body, StatusCode::UNPROCESSABLE_ENTITY);
    let (status, body) = delete(None, json!({"password": "Passw0rd!"})).await;
    assert_error(status, &body, StatusCode::UNAUTHORIZED);
    assert_eq!(status_of(&s, &bob).await, StatusCode::OK);

    let (status, body) = s
        .call(
            s.request(Method::DELETE, "/api/v1/auth/me")
                .bearer_auth(&bob)
                .json(&json!({"password": "Passw0rd!"})),
        )
        .await;
    assert_eq!(
        (status, body),
        (StatusCode::OK, json!({"status": "account deleted"}))
    );
    // Sessions, keys, the directory entry and the inbox are gone.
    for token in [&bob, &bob_second] {
        assert_eq!(status_of(&s, token).await, StatusCode::UNAUTHORIZED);
    }
    let (_, keys) = s.get(&format!("/keys/{bob_id}"), None).await;
    assert_eq!(keys, json!({"devices": []}));
    let (status, body) = s.get("/users/bob", Some(&alice)).await;
    assert_error(status, &body, StatusCode::NOT_FOUND);
    let (status, body) = s
        .post("/messages", Some(&alice), message_body(bob_id))
        .await;
    assert_error(status, &body, StatusCode::NOT_FOUND);
    let (status, body) = s
        .get(&format!("/messages/{to_bob}/status"), Some(&alice))
        .await;
    assert_error(status, &body, StatusCode::NOT_FOUND);
    let (status, body) = s
        .post(
            "/auth/login",
            None,
            json!({"username": "bob", "password": "Passw0rd!"}),
        )
        .await;
    assert_eq!(
        assert_error(status, &body, StatusCode::UNAUTHORIZED),
        "Incorrect username or password."
    );
    // What bob sent and alice has not read yet stays for her.
    let (_, inbox) = s.get("/messages/inbox", Some(&alice)).await;
    assert_eq!(inbox["messages"][0]["id"], from_bob);
    assert_eq!(inbox["messages"][0]["sender_id"], bob_id);

    // The name stays reserved for 30 days, then it is free again.
    let (status, body) = s
        .post(
            "/auth/register",
            None,
            json!({"username": "BOB", "password": "Passw0rd!"}),
        )
        .await;
    let text = assert_error(status, &body, StatusCode::BAD_REQUEST);
    assert!(text.contains("already taken"), "{text}");
    s.clock.advance(Duration::from_secs(29 * 24 * 3600));
    kavro_server::retention::sweep_once(&s.state).await.unwrap();
    let (status, _) = s
        .post(
            "/auth/register",
            None,
            json!({"username": "bob", "password": "Passw0rd!"}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "still reserved at 29 days");
    s.clock.advance(Duration::from_secs(2 * 24 * 3600));
    let report = kavro_server::retention::sweep_once(&s.state).await.unwrap();
    assert_eq!(report.names_released, 1);
    let (new_bob, new_id) = s.register("bob").await;
    assert_ne!(new_id, bob_id, "a new account");
    let (_, keys) = s.get(&format!("/keys/{new_id}"), Some(&new_bob)).await;
    assert_eq!(keys, json!({"devices": []}));
    let (_, inbox) = s.get("/messages/inbox", Some(&new_bob)).await;
    assert_eq!(inbox, json!({"messages": []}), "nothing of the old account");
}

async fn password_lockout(s: TestServer) {
    let (token, _) = s.register("guessed").await;
    // A stolen token does not make the password guessable without limit:
    // five wrong answers lock (account, network), for logins too.
    for _ in 0..5 {
        let (status, _) = s
            .post(
                "/auth/password",
                Some(&token),
                json!({"current_password": "Wrong-pass1", "new_password": "N3w-secret"}),
            )
            .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }
    let (status, body) = s
        .post(
            "/auth/password",
            Some(&token),
            json!({"current_password": "Passw0rd!", "new_password": "N3w-secret"}),
        )
        .await;
    let text = assert_error(status, &body, StatusCode::TOO_MANY_REQUESTS);
    assert!(text.contains("locked"), "{text}");
    let (status, _) = s
        .call(
            s.request(Method::DELETE, "/auth/me")
                .bearer_auth(&token)
                .json(&json!({"password": "Passw0rd!"})),
        )
        .await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    let (status, _) = s
        .post(
            "/auth/login",
            None,
            json!({"username": "guessed", "password": "Passw0rd!"}),
        )
        .await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(status_of(&s, &token).await, StatusCode::OK, "not changed");
}
