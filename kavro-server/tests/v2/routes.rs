//! Every `/v2` route with its refusals, on SQLite and PostgreSQL: devices and
//! sessions, key packages, groups, commits and messages, the queue. Each bad
//! input gets a clear 4xx in the contract's shape, and nothing half-stored.

use std::time::Duration;

use kavro_proto::UserId;
use kavro_proto::v2::link::SignatureKey;
use openmls::prelude::tls_codec::Serialize as _;
use openmls_traits::signatures::Signer as _;
use reqwest::StatusCode;
use serde_json::{Value, json};

use kavro_server::clock::Clock as _;

use crate::client::{Client, b64, group_text, identity};
use crate::common::{Counters, Db, TestServer, assert_error};
use crate::on_both_databases;

on_both_databases!(devices_and_sessions, devices_and_sessions);
on_both_databases!(key_packages, key_packages);
on_both_databases!(groups_and_queue, groups_and_queue);
on_both_databases!(queue_long_poll_and_retention, queue_long_poll_and_retention);

async fn device_count(s: &TestServer, token: &str, name: &str) -> usize {
    let (status, body) = s
        .get(&format!("/v2/users/{name}/devices"), Some(token))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["devices"].as_array().unwrap().len()
}

async fn devices_and_sessions(s: TestServer) {
    let alice = Client::root(&s, "alice").await;
    let bob = Client::root(&s, "bob").await;
    // A second root is refused; so are keys that are not Ed25519 keys.
    let (_, _, other) = identity("x");
    let key = b64(other.signature_key.as_slice());
    let (status, body) = s
        .post(
            "/v2/devices",
            Some(&alice.account_token),
            json!({"signature_key": key}),
        )
        .await;
    assert!(assert_error(status, &body, StatusCode::CONFLICT).contains("first device"));
    for bad in ["", "not base64", &b64(&[1; 31]), &b64(&[0; 32])] {
        let (status, body) = s
            .post(
                "/v2/devices",
                Some(&alice.account_token),
                json!({"signature_key": bad}),
            )
            .await;
        assert_error(status, &body, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(body["details"][0]["field"], "signature_key", "{bad:?}");
    }
    let (status, body) = s
        .post("/v2/devices", None, json!({"signature_key": key}))
        .await;
    assert_error(status, &body, StatusCode::UNAUTHORIZED);

    // A direct link signed by alice's root device.
    let link_sig = alice.sign_link(other.signature_key.as_slice());
    let good_link = json!({"signature_key": key, "link": {"signer_device_id": alice.device_id, "signature": b64(&link_sig)}});
    // Bad signatures, a signer of another account, an unknown signer: refused, nothing stored.
    let mut flipped = link_sig.clone();
    flipped[3] ^= 1;
    let forged = bob.sign_link(other.signature_key.as_slice());
    for (signer, sig, expected) in [
        (alice.device_id, b64(&flipped), StatusCode::FORBIDDEN),
        (alice.device_id, b64(&forged), StatusCode::FORBIDDEN),
        (bob.device_id, b64(&forged), StatusCode::FORBIDDEN),
        (i64::MAX, b64(&link_sig), StatusCode::FORBIDDEN),
        (
            alice.device_id,
            b64(&[0; 10]),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
    ] {
        let (status, body) = s
            .post("/v2/devices", Some(&alice.account_token), json!({"signature_key": key, "link": {"signer_device_id": signer, "signature": sig}}))
            .await;
        assert_error(status, &body, expected);
    }
    assert_eq!(
        device_count(&s, &alice.token, "alice").await,
        1,
        "nothing half-stored"
    );
    let (status, linked) = s
        .post("/v2/devices", Some(&alice.account_token), good_link.clone())
        .await;
    assert_eq!(status, StatusCode::CREATED, "{linked}");
    assert_eq!(
        linked["link"]["signer_device_id"].as_i64(),
        Some(alice.device_id)
    );
    let (status, body) = s
        .post("/v2/devices", Some(&bob.account_token), good_link)
        .await;
    assert_error(status, &body, StatusCode::FORBIDDEN);

    // The list carries each link; anyone can check it against the root's key.
    let (status, list) = s.get("/v2/users/ALICE/devices", Some(&bob.token)).await;
    assert_eq!(status, StatusCode::OK, "{list}");
    assert_eq!(list["username"], "alice");
    let devices = list["devices"].as_array().unwrap();
    assert_eq!(devices.len(), 2);
    assert!(devices[0]["link"].is_null());
    let root = SignatureKey::parse(devices[0]["signature_key"].as_str().unwrap()).unwrap();
    let new = SignatureKey::parse(devices[1]["signature_key"].as_str().unwrap()).unwrap();
    let sig =
        kavro_proto::v2::link::parse_signature(devices[1]["link"]["signature"].as_str().unwrap())
            .unwrap();
    kavro_proto::v2::link::verify_device_link(UserId(alice.user_id), &root, &new, &sig).unwrap();
    for path in ["/v2/users/nobody/devices", "/v2/users/x/devices"] {
        let (status, body) = s.get(path, Some(&bob.token)).await;
        assert_error(status, &body, StatusCode::NOT_FOUND);
    }

    // Sessions: a proof by the device key, close to the relay's clock.
    let url = format!("/v2/devices/{}/session", alice.device_id);
    let now = s.clock.now().timestamp();
    let proof = |ts: i64, device: i64| {
        b64(&alice
            .signer
            .sign(&kavro_proto::v2::link::session_message(
                UserId(alice.user_id),
                kavro_proto::v2::MlsDeviceId(device),
                ts,
            ))
            .unwrap())
    };
    let (status, body) = s
        .post(
            &url,
            Some(&alice.account_token),
            json!({"timestamp": now - 301, "signature": proof(now - 301, alice.device_id)}),
        )
        .await;
    assert_eq!(
        assert_error(status, &body, StatusCode::UNPROCESSABLE_ENTITY).as_str(),
        "Validation failed"
    );
    // Signed for another device (403), by a token of another account (404),
    // with a device token instead of the account's (403).
    let refusals = [
        (&alice.account_token, bob.device_id, StatusCode::FORBIDDEN),
        (&bob.account_token, alice.device_id, StatusCode::NOT_FOUND),
        (&alice.token, alice.device_id, StatusCode::FORBIDDEN),
    ];
    for (token, signed_for, expected) in refusals {
        let (status, body) = s
            .post(
                &url,
                Some(token),
                json!({"timestamp": now, "signature": proof(now, signed_for)}),
            )
            .await;
        assert_error(status, &body, expected);
    }

    let read_queue = async |device: i64, token: &str| {
        s.get(&format!("/v2/devices/{device}/queue"), Some(token))
            .await
    };
    // Tokens are not interchangeable: a device token is no account token.
    let (status, _) = s.get("/auth/me", Some(&alice.token)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, body) = read_queue(alice.device_id, &alice.account_token).await;
    assert!(assert_error(status, &body, StatusCode::FORBIDDEN).contains("device token"));
    let (status, body) = read_queue(bob.device_id, &alice.token).await;
    assert_error(status, &body, StatusCode::FORBIDDEN);
    let (status, body) = s
        .get(
            &format!("/v2/devices/{}/queue", alice.device_id),
            Some("garbage"),
        )
        .await;
    assert_error(status, &body, StatusCode::UNAUTHORIZED);

    // Revoke: by another device of the account; refused everywhere afterwards.
    let second = linked["id"].as_i64().unwrap();
    let (status, body) = s
        .post(
            &format!("/v2/devices/{}/revoke", alice.device_id),
            Some(&bob.token),
            json!({}),
        )
        .await;
    assert_error(status, &body, StatusCode::NOT_FOUND);
    let (status, body) = s
        .post(
            &format!("/v2/devices/{second}/revoke"),
            Some(&alice.token),
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body["revoked_at"].is_string());
    let (status, again) = s
        .post(
            &format!("/v2/devices/{second}/revoke"),
            Some(&alice.account_token),
            json!({}),
        )
        .await;
    assert_eq!(
        (status, &again["revoked_at"]),
        (StatusCode::OK, &body["revoked_at"])
    );
    // The owner revokes the root: its token stops working at once.
    let (status, _) = s
        .post(
            &format!("/v2/devices/{}/revoke", alice.device_id),
            Some(&alice.account_token),
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = read_queue(alice.device_id, &alice.token).await;
    assert!(assert_error(status, &body, StatusCode::UNAUTHORIZED).contains("revoked"));
    let (status, body) = s
        .post(
            &url,
            Some(&alice.account_token),
            json!({"timestamp": now, "signature": proof(now, alice.device_id)}),
        )
        .await;
    assert_error(status, &body, StatusCode::FORBIDDEN);
    // A revoked device cannot admit another.
    let (_, _, third) = identity("y");
    let sig = alice.sign_link(third.signature_key.as_slice());
    let (status, body) = s
        .post("/v2/devices", Some(&alice.account_token), json!({"signature_key": b64(third.signature_key.as_slice()), "link": {"signer_device_id": alice.device_id, "signature": b64(&sig)}}))
        .await;
    assert_error(status, &body, StatusCode::FORBIDDEN);
}

async fn upload(s: &TestServer, c: &Client, body: Value) -> (StatusCode, Value) {
    s.post(
        &format!("/v2/devices/{}/key-packages", c.device_id),
        Some(&c.token),
        body,
    )
    .await
}

async fn key_packages(s: TestServer) {
    let alice = Client::root(&s, "alice").await;
    let bob = Client::root(&s, "bob").await;
    let count = alice.upload_key_packages(&s, 3).await;
    assert_eq!(
        (count["remaining"].as_u64(), count["last_resort"].as_bool()),
        (Some(3), Some(false))
    );
    let (status, body) = upload(
        &s,
        &alice,
        json!({"last_resort": b64(&alice.key_package(true))}),
    )
    .await;
    assert_eq!(
        (status, body["last_resort"].as_bool()),
        (StatusCode::CREATED, Some(true)),
        "{body}"
    );

    // Refusals, each naming the field; nothing half-stored.
    let good = b64(&alice.key_package(false));
    let mut tampered = alice.key_package(false);
    let last = tampered.len() - 1;
    tampered[last] ^= 1;
    for (body, expected, field) in [
        (
            json!({"key_packages": [good, b64(&bob.key_package(false))]}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "key_packages[1]",
        ),
        (
            json!({"key_packages": [b64(&tampered)]}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "key_packages[0]",
        ),
        (
            json!({"key_packages": [b64(b"not a key package")]}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "key_packages[0]",
        ),
        (
            json!({"key_packages": [b64(&alice.key_package(true))]}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "key_packages[0]",
        ),
        (
            json!({"last_resort": good}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "last_resort",
        ),
        (
            json!({"key_packages": []}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "key_packages",
        ),
        (
            json!({"key_packages": vec![good.clone(); 101]}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "key_packages",
        ),
        (
            json!({"key_packages": ["***"]}),
            StatusCode::BAD_REQUEST,
            "",
        ),
        (
            json!({"key_packages": [b64(&[1; 9000])]}),
            StatusCode::PAYLOAD_TOO_LARGE,
            "",
        ),
    ] {
        let (status, answer) = upload(&s, &alice, body).await;
        assert_error(status, &answer, expected);
        if !field.is_empty() {
            assert_eq!(answer["details"][0]["field"], field, "{answer}");
        }
    }
    let (status, body) = s
        .post(
            &format!("/v2/devices/{}/key-packages", bob.device_id),
            Some(&alice.token),
            json!({"key_packages": [good]}),
        )
        .await;
    assert_error(status, &body, StatusCode::FORBIDDEN);
    // 100 outstanding at most: 3 + 98 is refused whole.
    let many: Vec<String> = (0..98).map(|_| b64(&alice.key_package(false))).collect();
    let (status, body) = upload(&s, &alice, json!({"key_packages": many})).await;
    assert!(assert_error(status, &body, StatusCode::CONFLICT).contains("100"));
    let (status, count) = s
        .get(
            &format!("/v2/devices/{}/key-packages", alice.device_id),
            Some(&alice.token),
        )
        .await;
    assert_eq!(
        (status, count["remaining"].as_u64()),
        (StatusCode::OK, Some(3))
    );

    // Claims: one per device, never twice; then the last-resort one, kept.
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..3 {
        let (status, body) = s
            .post(
                "/v2/users/alice/key-packages/claim",
                Some(&bob.token),
                json!({}),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["key_packages"][0]["last_resort"], false);
        assert!(
            seen.insert(
                body["key_packages"][0]["key_package"]
                    .as_str()
                    .unwrap()
                    .to_owned()
            )
        );
    }
    for _ in 0..2 {
        let (_, body) = s
            .post(
                "/v2/users/alice/key-packages/claim",
                Some(&bob.account_token),
                json!({}),
            )
            .await;
        assert_eq!(body["key_packages"][0]["last_resort"], true, "{body}");
    }
    let (_, body) = s
        .post(
            "/v2/users/bob/key-packages/claim",
            Some(&alice.token),
            json!({}),
        )
        .await;
    assert_eq!(body["missing"], json!([bob.device_id]));
    let (status, body) = s
        .post(
            "/v2/users/nobody/key-packages/claim",
            Some(&alice.token),
            json!({}),
        )
        .await;
    assert_error(status, &body, StatusCode::NOT_FOUND);
    // One device's package: `device` names it; another user's device, or
    // one that does not exist, is 404 (nothing claimed).
    let (status, body) = s
        .post(
            &format!("/v2/users/bob/key-packages/claim?device={}", bob.device_id),
            Some(&alice.token),
            json!({}),
        )
        .await;
    assert_eq!(
        (status, &body["missing"]),
        (StatusCode::OK, &json!([bob.device_id]))
    );
    for device in [alice.device_id, 987_654] {
        let (status, body) = s
            .post(
                &format!("/v2/users/bob/key-packages/claim?device={device}"),
                Some(&alice.token),
                json!({}),
            )
            .await;
        assert_error(status, &body, StatusCode::NOT_FOUND);
    }

    // Expired by the relay's clock: refused on upload, skipped by claims.
    bob.upload_key_packages(&s, 1).await;
    s.clock.advance(Duration::from_secs(25 * 3600));
    let (mut alice, mut bob) = (alice, bob);
    alice.account_token = s.login("alice").await;
    bob.account_token = s.login("bob").await;
    bob.open_session(&s).await;
    let (status, body) = upload(
        &s,
        &bob,
        json!({"key_packages": [b64(&bob.key_package(false))]}),
    )
    .await;
    assert!(
        body["details"][0]["message"]
            .as_str()
            .unwrap()
            .contains("expired"),
        "{body}"
    );
    assert_error(status, &body, StatusCode::UNPROCESSABLE_ENTITY);
    let (_, body) = s
        .post(
            "/v2/users/bob/key-packages/claim",
            Some(&alice.account_token),
            json!({}),
        )
        .await;
    assert_eq!(body["missing"], json!([bob.device_id]), "{body}");
}

async fn groups_and_queue(s: TestServer) {
    let mut alice = Client::root(&s, "alice").await;
    let mut bob = Client::root(&s, "bob").await;
    let mut carol = Client::root(&s, "carol").await;
    bob.upload_key_packages(&s, 2).await;
    let group = alice.create_group(&s).await;
    let path = format!("/v2/groups/{}", group_text(&group));
    let (status, body) = s
        .post(
            "/v2/groups",
            Some(&bob.token),
            json!({"group_id": group_text(&group)}),
        )
        .await;
    assert_error(status, &body, StatusCode::CONFLICT);
    for bad in ["", "a+b/", "==", &"A".repeat(90)] {
        let (status, body) = s
            .post("/v2/groups", Some(&bob.token), json!({"group_id": bad}))
            .await;
        assert_error(status, &body, StatusCode::UNPROCESSABLE_ENTITY);
    }
    let (status, body) = s
        .post(
            "/v2/groups",
            Some(&bob.account_token),
            json!({"group_id": "AAAA"}),
        )
        .await;
    assert_error(status, &body, StatusCode::FORBIDDEN);

    // Adding bob: a welcome is required; unknown devices are refused whole.
    let packages = alice.claim(&s, "bob").await;
    let kps: Vec<_> = packages.iter().map(|(_, k)| k.clone()).collect();
    let (commit, welcome, _) = alice
        .groups
        .get_mut(&group)
        .unwrap()
        .add_members(&alice.provider, &alice.signer, &kps)
        .unwrap();
    let commit_b64 = b64(&commit.tls_serialize_detached().unwrap());
    let welcome_b64 = b64(&welcome.tls_serialize_detached().unwrap());
    for (body, expected, field) in [
        (
            json!({"epoch": 0, "commit": commit_b64, "added": [bob.device_id]}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "welcome",
        ),
        (
            json!({"epoch": 0, "commit": commit_b64, "welcome": welcome_b64}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "welcome",
        ),
        (
            json!({"epoch": 0, "commit": commit_b64, "added": [i64::MAX], "welcome": welcome_b64}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "added",
        ),
        (
            json!({"epoch": 0, "commit": commit_b64, "added": [bob.device_id, bob.device_id], "welcome": welcome_b64}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "added",
        ),
        (
            json!({"epoch": 0, "commit": commit_b64, "removed": [carol.device_id]}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "removed",
        ),
        (
            json!({"epoch": 0, "commit": commit_b64, "added": [bob.device_id], "welcome": commit_b64}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "welcome",
        ),
        (
            json!({"epoch": 1, "commit": commit_b64}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "epoch",
        ),
        (
            json!({"epoch": 0, "commit": welcome_b64}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "commit",
        ),
        (
            json!({"epoch": 0, "commit": b64(b"\x00\x01garbage")}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "commit",
        ),
        (
            json!({"epoch": 0, "commit": "%%%"}),
            StatusCode::BAD_REQUEST,
            "",
        ),
    ] {
        let (status, answer) = s
            .post(&format!("{path}/commits"), Some(&alice.token), body)
            .await;
        assert_error(status, &answer, expected);
        if !field.is_empty() {
            assert_eq!(answer["details"][0]["field"], field, "{answer}");
        }
    }
    // Not a member, unknown group, or another group's commit.
    let (status, body) = s
        .post(
            &format!("{path}/commits"),
            Some(&carol.token),
            json!({"epoch": 0, "commit": commit_b64}),
        )
        .await;
    assert_error(status, &body, StatusCode::FORBIDDEN);
    let other = carol.create_group(&s).await;
    let (status, body) = s
        .post(
            &format!("/v2/groups/{}/commits", group_text(&other)),
            Some(&carol.token),
            json!({"epoch": 0, "commit": commit_b64}),
        )
        .await;
    assert!(
        body["details"][0]["message"]
            .as_str()
            .unwrap()
            .contains("another group"),
        "{body}"
    );
    assert_error(status, &body, StatusCode::UNPROCESSABLE_ENTITY);
    for path in ["/v2/groups/bm9uZQ", "/v2/groups/not+base64"] {
        let (status, body) = s.get(path, Some(&alice.token)).await;
        assert_error(status, &body, StatusCode::NOT_FOUND);
    }
    let (status, info) = s.get(&path, Some(&alice.token)).await;
    assert_eq!(
        (status, info["epoch"].as_u64()),
        (StatusCode::OK, Some(0)),
        "nothing half-stored: {info}"
    );

    // The real add, idempotent by client_msg_id.
    let id = uuid::Uuid::new_v4();
    let body = json!({"epoch": 0, "commit": commit_b64, "added": [bob.device_id], "welcome": welcome_b64, "client_msg_id": id});
    let (status, first) = s
        .post(&format!("{path}/commits"), Some(&alice.token), body.clone())
        .await;
    assert_eq!(
        (
            status,
            first["epoch"].as_u64(),
            first["recipients"].as_u64()
        ),
        (StatusCode::CREATED, Some(1), Some(1)),
        "{first}"
    );
    let (status, again) = s
        .post(&format!("{path}/commits"), Some(&alice.token), body.clone())
        .await;
    assert_eq!(
        (status, &again),
        (StatusCode::CREATED, &first),
        "a retry is the same commit"
    );
    alice
        .groups
        .get_mut(&group)
        .unwrap()
        .merge_pending_commit(&alice.provider)
        .unwrap();
    // The same commit without the id is a stale epoch now: 409 with the epoch.
    let (status, body) = s
        .post(
            &format!("{path}/commits"),
            Some(&alice.token),
            json!({"epoch": 0, "commit": commit_b64}),
        )
        .await;
    assert_eq!(
        (status, body["epoch"].as_u64(), body["status_code"].as_u64()),
        (StatusCode::CONFLICT, Some(1), Some(409)),
        "{body}"
    );
    assert!(body["error"].as_str().unwrap().contains("epoch 1"));
    assert_eq!(bob.sync(&s).await, vec!["welcome"]);
    let (status, info) = s.get(&path, Some(&bob.token)).await;
    assert_eq!(
        (status, info["members"].clone()),
        (StatusCode::OK, json!([alice.device_id, bob.device_id]))
    );
    let (status, body) = s.get(&path, Some(&carol.token)).await;
    assert_error(status, &body, StatusCode::FORBIDDEN);

    // Application messages: members only, current epoch only, not commits.
    let (status, body) = alice.send(&s, &group, "hello bob").await;
    assert_eq!(
        (status, body["recipients"].as_u64()),
        (StatusCode::CREATED, Some(1)),
        "{body}"
    );
    assert_eq!(bob.sync(&s).await, vec!["application"]);
    assert_eq!(bob.received.last().unwrap().1, "hello bob");
    let (status, body) = s
        .post(
            &format!("{path}/messages"),
            Some(&alice.token),
            json!({"message": commit_b64}),
        )
        .await;
    assert_error(status, &body, StatusCode::UNPROCESSABLE_ENTITY);
    let (status, body) = s
        .post(
            &format!("{path}/messages"),
            Some(&carol.token),
            json!({"message": b64(b"xx")}),
        )
        .await;
    assert_error(status, &body, StatusCode::UNPROCESSABLE_ENTITY);
    let carol_says = carol
        .groups
        .get_mut(&other)
        .unwrap()
        .create_message(&carol.provider, &carol.signer, b"hi")
        .unwrap();
    let carol_says = b64(&carol_says.tls_serialize_detached().unwrap());
    let (status, body) = s
        .post(
            &format!("/v2/groups/{}/messages", group_text(&other)),
            Some(&alice.token),
            json!({"message": carol_says}),
        )
        .await;
    assert_error(status, &body, StatusCode::FORBIDDEN);
    // A message from the old epoch: 409, the current epoch named.
    let old_epoch_message = alice
        .groups
        .get_mut(&group)
        .unwrap()
        .create_message(&alice.provider, &alice.signer, b"old")
        .unwrap();
    let update = alice.update_commit(&group);
    let (status, _) = alice.post_commit(&s, &group, &update, None, &[], &[]).await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, body) = s
        .post(
            &format!("{path}/messages"),
            Some(&alice.token),
            json!({"message": b64(&old_epoch_message.tls_serialize_detached().unwrap())}),
        )
        .await;
    assert_eq!(
        (status, body["epoch"].as_u64()),
        (StatusCode::CONFLICT, Some(2)),
        "{body}"
    );

    // The queue: after / limit, cumulative ack that never moves back.
    assert_eq!(bob.sync(&s).await, vec!["commit"]);
    let q = format!("/v2/devices/{}/queue", bob.device_id);
    let (status, page) = s.get(&format!("{q}?after=0"), Some(&bob.token)).await;
    assert_eq!(
        (
            status,
            page["messages"].as_array().unwrap().len(),
            page["acked_up_to"].as_i64()
        ),
        (StatusCode::OK, 0, Some(3))
    );
    for _ in 0..3 {
        alice.send(&s, &group, "more").await;
    }
    let (_, page) = s
        .get(&format!("{q}?after=3&limit=2"), Some(&bob.token))
        .await;
    let seqs: Vec<i64> = page["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["seq"].as_i64().unwrap())
        .collect();
    assert_eq!(seqs, vec![4, 5]);
    for (query, expected) in [
        ("limit=0", StatusCode::UNPROCESSABLE_ENTITY),
        ("limit=501", StatusCode::UNPROCESSABLE_ENTITY),
        ("after=-1", StatusCode::UNPROCESSABLE_ENTITY),
        ("wait=61", StatusCode::UNPROCESSABLE_ENTITY),
        ("ack=-1", StatusCode::UNPROCESSABLE_ENTITY),
        ("ack=x", StatusCode::UNPROCESSABLE_ENTITY),
    ] {
        let (status, body) = s.get(&format!("{q}?{query}"), Some(&bob.token)).await;
        assert_error(status, &body, expected);
    }
    let (status, body) = s
        .post(&format!("{q}/ack"), Some(&bob.token), json!({"up_to": -1}))
        .await;
    assert_error(status, &body, StatusCode::UNPROCESSABLE_ENTITY);
    let (_, body) = s
        .post(&format!("{q}/ack"), Some(&bob.token), json!({"up_to": 4}))
        .await;
    assert_eq!(body["acked_up_to"].as_i64(), Some(4));
    let (_, body) = s
        .post(&format!("{q}/ack"), Some(&bob.token), json!({"up_to": 1}))
        .await;
    assert_eq!(body["acked_up_to"].as_i64(), Some(4));
    let (_, page) = s.get(&format!("{q}?after=0"), Some(&bob.token)).await;
    assert_eq!(
        page["messages"].as_array().unwrap().len(),
        2,
        "acked entries are gone"
    );
    // The ack can ride on the next read: acknowledged first, then read.
    let seqs_of = |page: &Value| -> Vec<i64> {
        page["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["seq"].as_i64().unwrap())
            .collect()
    };
    let (status, page) = s.get(&format!("{q}?after=5&ack=5"), Some(&bob.token)).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert_eq!(
        (seqs_of(&page), page["acked_up_to"].as_i64()),
        (vec![6], Some(5))
    );
    let (_, page) = s.get(&format!("{q}?after=0&ack=2"), Some(&bob.token)).await;
    assert_eq!(
        (seqs_of(&page), page["acked_up_to"].as_i64()),
        (vec![6], Some(5)),
        "never moves back; acked entries are gone"
    );
    let (_, page) = s.get(&format!("{q}?ack=1000"), Some(&bob.token)).await;
    assert_eq!(
        (seqs_of(&page), page["acked_up_to"].as_i64()),
        (vec![], Some(6)),
        "no further than the last entry"
    );
}

async fn queue_long_poll_and_retention(s: TestServer) {
    let mut alice = Client::root(&s, "alice").await;
    let mut bob = Client::root(&s, "bob").await;
    bob.upload_key_packages(&s, 1).await;
    let group = alice.create_group(&s).await;
    let packages = alice.claim(&s, "bob").await;
    assert_eq!(alice.add(&s, &group, &packages).await, StatusCode::CREATED);
    bob.sync(&s).await;
    // A long-poll is answered by the next post (positive control: it returns it).
    let poll = bob.long_poll(&s);
    tokio::time::sleep(Duration::from_millis(200)).await;
    alice.send(&s, &group, "wake up").await;
    let page = tokio::time::timeout(Duration::from_secs(20), poll)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(page["messages"][0]["kind"], "application", "{page}");
    // An empty long-poll with wait=1 answers empty.
    let (status, page) = s
        .get(
            &format!("/v2/devices/{}/queue?after=99&wait=1", bob.device_id),
            Some(&bob.token),
        )
        .await;
    assert_eq!(
        (status, page["messages"].as_array().unwrap().len()),
        (StatusCode::OK, 0)
    );
    // Past the message TTL the sweep drops the entry; the acked position moves past it.
    s.clock.advance(Duration::from_secs(31 * 24 * 3600));
    kavro_server::retention::sweep_once(&s.state).await.unwrap();
    alice.account_token = s.login("alice").await;
    bob.account_token = s.login("bob").await;
    alice.open_session(&s).await;
    bob.open_session(&s).await;
    let (_, page) = s
        .get(
            &format!("/v2/devices/{}/queue?after=0", bob.device_id),
            Some(&bob.token),
        )
        .await;
    assert_eq!(
        (
            page["messages"].as_array().unwrap().len(),
            page["acked_up_to"].as_i64()
        ),
        (0, Some(2)),
        "{page}"
    );
    // Logging out everywhere ends the account's device tokens too.
    let (status, _) = s
        .get(
            &format!("/v2/devices/{}/queue", alice.device_id),
            Some(&alice.token),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "positive control");
    let (status, _) = s
        .post("/auth/logout-all", Some(&alice.account_token), json!({}))
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = s
        .get(
            &format!("/v2/devices/{}/queue", alice.device_id),
            Some(&alice.token),
        )
        .await;
    assert!(assert_error(status, &body, StatusCode::UNAUTHORIZED).contains("revoked"));
    // A device token expires after an hour.
    let stale = bob.token.clone();
    s.clock.advance(Duration::from_secs(3601));
    let (status, body) = s
        .get(
            &format!("/v2/devices/{}/queue", bob.device_id),
            Some(&stale),
        )
        .await;
    assert!(assert_error(status, &body, StatusCode::UNAUTHORIZED).contains("expired"));
}

/// Rate limits count a device token per device: one device over its budget
/// is refused (`429`), another device of the same account is not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limits_are_per_device() {
    let Some(s) = TestServer::start(Db::Sqlite, Counters::Memory, |c| {
        c.rate_limits = kavro_server::config::Toggle::On;
    })
    .await
    else {
        return;
    };
    let alice = Client::root(&s, "alice").await;
    let phone = Client::linked(&s, &alice).await;
    let queue = |c: &Client| format!("/v2/devices/{}/queue", c.device_id);
    // The default inbox budget: 20 reads per 30 s.
    for _ in 0..20 {
        let (status, body) = s.get(&queue(&alice), Some(&alice.token)).await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    let (status, body) = s.get(&queue(&alice), Some(&alice.token)).await;
    assert_error(status, &body, StatusCode::TOO_MANY_REQUESTS);
    let (status, body) = s.get(&queue(&phone), Some(&phone.token)).await;
    assert_eq!(
        status,
        StatusCode::OK,
        "the other device has its own budget: {body}"
    );
}
