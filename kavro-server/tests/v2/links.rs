//! Linking a second installation with a one-time code, and every way the
//! code refuses: wrong code, other account, bad signatures (3 and the code
//! is dead), expiry, single use, too many open requests.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::json;

use crate::client::{Client, b64, identity};
use crate::common::{Counters, Db, TestServer, assert_error};
use crate::on_both_databases;

on_both_databases!(link_codes, link_codes);

async fn link_codes(s: TestServer) {
    let alice = Client::root(&s, "alice").await;
    let bob = Client::root(&s, "bob").await;
    // The happy path, through the client helper: the approver sees the key,
    // signs, and the new installation learns its id.
    let phone = Client::linked(&s, &alice).await;
    let (_, list) = s.get("/v2/users/alice/devices", Some(&bob.token)).await;
    assert_eq!(list["devices"][1]["id"].as_i64(), Some(phone.device_id));
    assert_eq!(
        list["devices"][1]["link"]["signer_device_id"].as_i64(),
        Some(alice.device_id)
    );

    let account = alice.account_token.clone();
    let request = |key: String| {
        let token = account.clone();
        let s = &s;
        async move {
            s.post(
                "/v2/link-requests",
                Some(&token),
                json!({"signature_key": key}),
            )
            .await
        }
    };
    let (_, _, laptop) = identity("laptop");
    let laptop_key = laptop.signature_key.as_slice().to_vec();
    let (status, created) = request(b64(&laptop_key)).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let code = created["code"].as_str().unwrap().to_owned();
    assert_eq!(code.len(), 10);
    let status_url = format!(
        "/v2/link-requests/{}",
        created["request_id"].as_str().unwrap()
    );
    let (_, state) = s.get(&status_url, Some(&alice.account_token)).await;
    assert_eq!(
        (state["status"].as_str(), &state["device_id"]),
        (Some("pending"), &json!(null))
    );
    let (status, body) = s.get(&status_url, Some(&bob.account_token)).await;
    assert_error(status, &body, StatusCode::NOT_FOUND);

    // Typed loosely (lowercase, dashes) it still matches; other accounts and
    // wrong codes see nothing; an account token cannot approve.
    let loose = format!("{}-{}", &code[..5], &code[5..]).to_lowercase();
    let (status, view) = s
        .get(&format!("/v2/link-codes/{loose}"), Some(&phone.token))
        .await;
    assert_eq!(
        (status, view["signature_key"].as_str()),
        (StatusCode::OK, Some(b64(&laptop_key).as_str()))
    );
    for (code, token) in [
        (code.as_str(), &bob.token),
        ("0000000000", &alice.token),
        ("short", &alice.token),
    ] {
        let (status, body) = s.get(&format!("/v2/link-codes/{code}"), Some(token)).await;
        assert_error(status, &body, StatusCode::NOT_FOUND);
    }
    let (status, body) = s
        .get(
            &format!("/v2/link-codes/{code}"),
            Some(&alice.account_token),
        )
        .await;
    assert_error(status, &body, StatusCode::FORBIDDEN);

    // Bad signatures: refused, counted; the third kills the code.
    let good = alice.sign_link(&laptop_key);
    let approve = format!("/v2/link-codes/{code}/approve");
    let (status, body) = s
        .post(
            &approve,
            Some(&alice.token),
            json!({"signature": b64(&[1; 5])}),
        )
        .await;
    assert_error(status, &body, StatusCode::UNPROCESSABLE_ENTITY);
    let wrong_signer = phone.sign_link(&laptop_key); // phone's signature, presented by alice
    for attempt in 0..3 {
        let (status, body) = s
            .post(
                &approve,
                Some(&alice.token),
                json!({"signature": b64(&wrong_signer)}),
            )
            .await;
        assert!(
            assert_error(status, &body, StatusCode::FORBIDDEN).contains("does not verify"),
            "attempt {attempt}"
        );
    }
    let (status, body) = s
        .post(
            &approve,
            Some(&alice.token),
            json!({"signature": b64(&good)}),
        )
        .await;
    assert_error(status, &body, StatusCode::NOT_FOUND);
    let (_, state) = s.get(&status_url, Some(&alice.account_token)).await;
    assert_eq!(state["status"], "expired");
    assert_eq!(
        s.get("/v2/users/alice/devices", Some(&bob.token)).await.1["devices"]
            .as_array()
            .unwrap()
            .len(),
        2,
        "nothing half-stored"
    );

    // A fresh code works once; then it is used up.
    let (_, created) = request(b64(&laptop_key)).await;
    let code = created["code"].as_str().unwrap();
    let approve = format!("/v2/link-codes/{code}/approve");
    let (status, device) = s
        .post(
            &approve,
            Some(&phone.token),
            json!({"signature": b64(&phone.sign_link(&laptop_key))}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{device}");
    assert_eq!(
        device["link"]["signer_device_id"].as_i64(),
        Some(phone.device_id)
    );
    let (status, body) = s
        .post(
            &approve,
            Some(&phone.token),
            json!({"signature": b64(&phone.sign_link(&laptop_key))}),
        )
        .await;
    assert_error(status, &body, StatusCode::NOT_FOUND);
    // The same key cannot be linked twice.
    let (_, again) = request(b64(&laptop_key)).await;
    let code = again["code"].as_str().unwrap();
    let (status, body) = s
        .post(
            &format!("/v2/link-codes/{code}/approve"),
            Some(&phone.token),
            json!({"signature": b64(&phone.sign_link(&laptop_key))}),
        )
        .await;
    assert_error(status, &body, StatusCode::CONFLICT);

    // Codes expire after 10 minutes.
    let (_, _, tablet) = identity("tablet");
    let tablet_key = tablet.signature_key.as_slice().to_vec();
    let (_, created) = request(b64(&tablet_key)).await;
    let code = created["code"].as_str().unwrap();
    let status_url = format!(
        "/v2/link-requests/{}",
        created["request_id"].as_str().unwrap()
    );
    s.clock.advance(Duration::from_secs(601));
    let mut alice = alice;
    alice.open_session(&s).await;
    let (status, body) = s
        .post(
            &format!("/v2/link-codes/{code}/approve"),
            Some(&alice.token),
            json!({"signature": b64(&alice.sign_link(&tablet_key))}),
        )
        .await;
    assert_error(status, &body, StatusCode::NOT_FOUND);
    let (_, state) = s.get(&status_url, Some(&alice.account_token)).await;
    assert_eq!(state["status"], "expired");

    // Bad keys, and at most 5 open requests per account.
    let (status, body) = request(b64(&[0; 32])).await;
    assert_error(status, &body, StatusCode::UNPROCESSABLE_ENTITY);
    for i in 0..5u8 {
        let (_, _, k) = identity(&format!("k{i}"));
        let (status, body) = request(b64(k.signature_key.as_slice())).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }
    let (_, _, k) = identity("k5");
    let (status, body) = request(b64(k.signature_key.as_slice())).await;
    assert_error(status, &body, StatusCode::TOO_MANY_REQUESTS);
    let (status, body) = s
        .post(
            "/v2/link-requests",
            Some(&alice.token),
            json!({"signature_key": b64(k.signature_key.as_slice())}),
        )
        .await;
    assert_error(status, &body, StatusCode::FORBIDDEN);
}
