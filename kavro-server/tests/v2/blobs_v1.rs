//! Blobs for attachments in a v1 envelope (issue #14), on both databases:
//! accounts without a v2 device upload, name the recipient account a holder,
//! download and acknowledge with their account tokens; only the uploader
//! and the holders read the blob; it goes once the recipient account
//! acknowledged it, or at the message TTL.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::json;

use super::blobs::{create, download, put};
use crate::common::{Counters, Db, TestServer, assert_error};
use crate::on_both_databases;

on_both_databases!(v1_blob_story, v1_blob_story);

async fn holder(s: &TestServer, token: &str, id: &str, user_id: i64) -> (StatusCode, String) {
    let (status, body) = s
        .post(
            &format!("/v2/blobs/{id}/holders"),
            Some(token),
            json!({"user_id": user_id}),
        )
        .await;
    (status, body.to_string())
}

async fn status_of(s: &TestServer, token: &str, id: &str) -> StatusCode {
    s.get(&format!("/v2/blobs/{id}/status"), Some(token))
        .await
        .0
}

/// Uploads `data` as a blob with `token`; returns its id.
async fn upload(s: &TestServer, token: &str, data: &[u8]) -> String {
    let (status, created) = create(s, token, data.len() as u64).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let id = created["blob_id"].as_str().unwrap().to_owned();
    let (status, body) = put(s, token, &id, 0, data).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    id
}

async fn v1_blob_story(s: TestServer) {
    // Three accounts, none with a v2 device: account tokens only.
    let (alice, _) = s.register("alice").await;
    let (bob, bob_id) = s.register("bob").await;
    let (carol, carol_id) = s.register("carol").await;
    let data: Vec<u8> = (0u8..40).collect();

    // An incomplete blob cannot be handed to anyone yet.
    let (_, partial) = create(&s, &alice, 10).await;
    let partial = partial["blob_id"].as_str().unwrap().to_owned();
    let (status, body) = holder(&s, &alice, &partial, bob_id).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");

    let id = upload(&s, &alice, &data).await;
    assert_eq!(status_of(&s, &alice, &id).await, StatusCode::OK);
    // Before alice names him, bob reads nothing (as for an unknown blob).
    assert_eq!(status_of(&s, &bob, &id).await, StatusCode::NOT_FOUND);
    assert_eq!(
        download(&s, &bob, &id, None).await.status(),
        StatusCode::NOT_FOUND
    );

    // Refusals: someone else's blob, an unknown account, an unknown blob.
    let (status, body) = holder(&s, &carol, &id, carol_id).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "only the uploader: {body}");
    let (status, body) = holder(&s, &alice, &id, 999_999).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(body.contains("Unknown user"), "{body}");
    let unknown = "01234567-89ab-4cde-8f01-23456789abcd";
    let (status, _) = holder(&s, &alice, unknown, bob_id).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, body) = s
        .post(
            &format!("/v2/blobs/{id}/holders"),
            Some(&alice),
            json!({"user": "bob"}),
        )
        .await;
    assert_error(status, &body, StatusCode::UNPROCESSABLE_ENTITY);

    // alice names bob: bob reads it with his account token, carol still not.
    let (status, body) = holder(&s, &alice, &id, bob_id).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = holder(&s, &alice, &id, bob_id).await;
    assert_eq!(
        status,
        StatusCode::OK,
        "naming twice changes nothing: {body}"
    );
    assert_eq!(status_of(&s, &bob, &id).await, StatusCode::OK);
    let response = download(&s, &bob, &id, Some("bytes=30-")).await;
    assert_eq!(response.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(response.bytes().await.unwrap().as_ref(), &data[30..]);
    let response = download(&s, &bob, &id, None).await;
    assert_eq!(response.bytes().await.unwrap().as_ref(), &data[..]);
    assert_eq!(status_of(&s, &carol, &id).await, StatusCode::NOT_FOUND);
    let (status, _) = s
        .post(&format!("/v2/blobs/{id}/ack"), Some(&carol), json!({}))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "carol never held it");
    // Bob cannot write to alice's blob.
    let (_, more) = create(&s, &alice, 2).await;
    let more = more["blob_id"].as_str().unwrap().to_owned();
    let (status, _) = put(&s, &bob, &more, 0, &[1, 2]).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // The sweep keeps it while bob holds it; his ack lets it go.
    kavro_server::retention::sweep_once(&s.state).await.unwrap();
    assert_eq!(status_of(&s, &bob, &id).await, StatusCode::OK);
    let (status, _) = s
        .post(&format!("/v2/blobs/{id}/ack"), Some(&bob), json!({}))
        .await;
    assert_eq!(status, StatusCode::OK);
    let mut gone = false;
    for _ in 0..50 {
        if status_of(&s, &alice, &id).await == StatusCode::NOT_FOUND {
            gone = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        gone,
        "the blob goes once the recipient account acknowledged it"
    );

    // A held blob nobody acknowledges goes at the message TTL.
    let id = upload(&s, &alice, &data).await;
    let (status, _) = holder(&s, &alice, &id, carol_id).await;
    assert_eq!(status, StatusCode::OK);
    s.clock
        .advance(s.config.message_ttl + Duration::from_secs(1));
    kavro_server::retention::sweep_once(&s.state).await.unwrap();
    let carol = s.login("carol").await;
    assert_eq!(status_of(&s, &carol, &id).await, StatusCode::NOT_FOUND);
    assert_eq!(
        download(&s, &carol, &id, None).await.status(),
        StatusCode::NOT_FOUND
    );
}
