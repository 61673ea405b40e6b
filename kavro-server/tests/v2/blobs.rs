//! The blob store (`/v2/blobs`) over HTTP on both databases: reserve, upload
//! in chunks, resume from the status after a dropped upload, download in
//! full and by range, who may read, `blob_ids` on group messages, deletion
//! once every device it was sent to acknowledged the blob, and at expiry;
//! cap and quota.

use std::time::Duration;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use reqwest::StatusCode;
use reqwest::header::{CONTENT_RANGE, RANGE};
use serde_json::{Value, json};

use crate::client::Client;
use crate::common::{Counters, Db, TestServer, assert_error};
use crate::on_both_databases;
use kavro_server::testing::PrivateS3;

on_both_databases!(blob_story, blob_story);

pub(crate) async fn create(s: &TestServer, token: &str, size: u64) -> (StatusCode, Value) {
    s.post("/v2/blobs", Some(token), json!({"size": size}))
        .await
}

pub(crate) async fn put(
    s: &TestServer,
    token: &str,
    id: &str,
    offset: u64,
    bytes: &[u8],
) -> (StatusCode, Value) {
    s.call(
        s.request(
            reqwest::Method::PUT,
            &format!("/v2/blobs/{id}?offset={offset}"),
        )
        .bearer_auth(token)
        .header("content-type", "application/octet-stream")
        .body(bytes.to_vec()),
    )
    .await
}

pub(crate) async fn download(
    s: &TestServer,
    token: &str,
    id: &str,
    range: Option<&str>,
) -> reqwest::Response {
    let mut request = s
        .request(reqwest::Method::GET, &format!("/v2/blobs/{id}"))
        .bearer_auth(token);
    if let Some(range) = range {
        request = request.header(RANGE, range);
    }
    request.send().await.unwrap()
}

/// Where the relay under test keeps its blob objects.
enum Objects<'a> {
    /// The default storage, `DATA_DIR/blobs`.
    Directory,
    /// An S3 bucket, under a key prefix.
    Bucket(&'a PrivateS3, &'a str),
}

impl Objects<'_> {
    /// How many blob objects are stored, counted in the storage itself.
    async fn count(&self, s: &TestServer) -> usize {
        match self {
            Self::Directory => files_under(&s.config.data_dir.join("blobs")),
            Self::Bucket(s3, prefix) => s3.keys(prefix).await.len(),
        }
    }
}

fn files_under(dir: &std::path::Path) -> usize {
    std::fs::read_dir(dir).map_or(0, |entries| {
        entries
            .flatten()
            .map(|e| {
                if e.path().is_dir() {
                    files_under(&e.path())
                } else {
                    1
                }
            })
            .sum()
    })
}

async fn blob_story(s: TestServer) {
    blob_story_in(&s, &Objects::Directory).await;
}

/// The blob story with the relay's blobs in a moto S3 bucket (SQLite for
/// the metadata: the storage is what differs). Every object is really in
/// the bucket under the prefix, none in the data directory, and each goes
/// with its blob.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blob_story_on_s3() {
    let Some(s3) = PrivateS3::start().await else {
        return;
    };
    let prefix = "relay/one";
    let s = TestServer::start(Db::Sqlite, Counters::Memory, |c| {
        c.blob_url = s3.blob_url(prefix);
        c.blob_s3_settings = s3.settings();
    })
    .await
    .unwrap();
    let objects = Objects::Bucket(&s3, prefix);
    blob_story_in(&s, &objects).await;
    assert_eq!(files_under(&s.config.data_dir.join("blobs")), 0);
}

async fn blob_story_in(s: &TestServer, objects: &Objects<'_>) {
    let mut alice = Client::root(s, "alice").await;
    let mut bob = Client::root(s, "bob").await;
    let carol = Client::root(s, "carol").await;
    bob.upload_key_packages(s, 1).await;
    let group = alice.create_group(s).await;
    let packages = alice.claim(s, "bob").await;
    assert_eq!(alice.add(s, &group, &packages).await, StatusCode::CREATED);
    bob.sync(s).await;

    // Refused sizes.
    let (status, body) = create(s, &alice.token, 0).await;
    assert_error(status, &body, StatusCode::UNPROCESSABLE_ENTITY);
    let (status, body) = create(s, &alice.token, 100 * 1024 * 1024 + 1).await;
    assert!(assert_error(status, &body, StatusCode::PAYLOAD_TOO_LARGE).contains("100 MiB"));

    // Reserve 10 bytes, upload 4, "drop", read the status, continue.
    let data: Vec<u8> = (0u8..10).map(|i| i * 7 + 1).collect();
    let (status, created) = create(s, &alice.token, 10).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(created["received"], 0);
    assert_eq!(created["complete"], false);
    assert_eq!(created["chunk_max"], 8 * 1024 * 1024);
    let id = created["blob_id"].as_str().unwrap().to_owned();
    let (status, body) = put(s, &alice.token, &id, 0, &data[..4]).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["received"], 4);
    let (status, body) = put(s, &alice.token, &id, 0, &data[..4]).await;
    assert!(assert_error(status, &body, StatusCode::CONFLICT).contains("offset 4"));
    let (status, body) = put(s, &alice.token, &id, 4, &[0u8; 7]).await;
    assert_error(status, &body, StatusCode::UNPROCESSABLE_ENTITY);
    let (status, body) = put(s, &alice.token, &id, 4, &[]).await;
    assert_error(status, &body, StatusCode::UNPROCESSABLE_ENTITY);
    let (status, body) = put(s, &carol.token, &id, 4, &data[4..]).await;
    assert_error(status, &body, StatusCode::NOT_FOUND);
    let response = download(s, &alice.token, &id, None).await;
    assert_eq!(response.status(), StatusCode::CONFLICT, "not complete yet");
    let (status, body) = s
        .get(&format!("/v2/blobs/{id}/status"), Some(&alice.token))
        .await;
    assert_eq!(status, StatusCode::OK);
    let resume = body["received"].as_u64().unwrap();
    assert_eq!(resume, 4);
    let (status, body) = put(s, &alice.token, &id, resume, &data[4..]).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["complete"], true);

    // Downloads: full, ranges, 416, and 404 for outsiders.
    let response = download(s, &alice.token, &id, None).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.bytes().await.unwrap().as_ref(), &data[..]);
    let response = download(s, &alice.token, &id, Some("bytes=2-5")).await;
    assert_eq!(response.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(response.headers()[CONTENT_RANGE], "bytes 2-5/10");
    assert_eq!(response.bytes().await.unwrap().as_ref(), &data[2..6]);
    let response = download(s, &alice.token, &id, Some("bytes=3-")).await;
    assert_eq!(response.bytes().await.unwrap().as_ref(), &data[3..]);
    let response = download(s, &alice.token, &id, Some("bytes=10-")).await;
    assert_eq!(response.status(), StatusCode::RANGE_NOT_SATISFIABLE);
    assert_eq!(response.headers()[CONTENT_RANGE], "bytes */10");
    for token in [&carol.token, &bob.token] {
        assert_eq!(
            download(s, token, &id, None).await.status(),
            StatusCode::NOT_FOUND
        );
    }
    let unknown = "01234567-89ab-4cde-8f01-23456789abcd";
    assert_eq!(
        download(s, &alice.token, unknown, None).await.status(),
        StatusCode::NOT_FOUND
    );

    // blob_ids: unknown, incomplete, another account's: 422, nothing stored.
    let (_, partial) = create(s, &alice.token, 5).await;
    let (_, carols) = create(s, &carol.token, 1).await;
    put(
        s,
        &carol.token,
        carols["blob_id"].as_str().unwrap(),
        0,
        &[1],
    )
    .await;
    for bad in [
        json!(unknown),
        partial["blob_id"].clone(),
        carols["blob_id"].clone(),
    ] {
        let (status, body) = alice
            .send_with(s, &group, "with a bad blob", json!([bad]))
            .await;
        let message = assert_error(status, &body, StatusCode::UNPROCESSABLE_ENTITY);
        assert!(
            message.contains("blob_ids") || body.to_string().contains("blob_ids"),
            "{body}"
        );
    }
    assert!(bob.sync(s).await.is_empty(), "nothing was queued");

    // A message referencing the blob lets bob read it until he is done with
    // the blob (`ack` on the blob: he downloads after acknowledging the message).
    let (status, body) = alice
        .send_with(s, &group, "see attached", json!([id]))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let before = objects.count(s).await;
    assert!(before >= 2, "one object per chunk");
    let (status, _) = s
        .get(&format!("/v2/blobs/{id}/status"), Some(&bob.token))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(bob.sync(s).await, vec!["application"]);
    kavro_server::retention::sweep_once(&s.state).await.unwrap();
    let response = download(s, &bob.token, &id, None).await;
    assert_eq!(
        response.bytes().await.unwrap().as_ref(),
        &data[..],
        "still there after the message was acknowledged"
    );
    let (status, _) = s
        .post(
            &format!("/v2/blobs/{id}/ack"),
            Some(&carol.token),
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "carol never held it");
    let (status, _) = s
        .post(&format!("/v2/blobs/{id}/ack"), Some(&bob.token), json!({}))
        .await;
    assert_eq!(status, StatusCode::OK);
    kavro_server::retention::sweep_once(&s.state).await.unwrap();
    let mut gone = false;
    for _ in 0..50 {
        let (status, _) = s
            .get(&format!("/v2/blobs/{id}/status"), Some(&alice.token))
            .await;
        // The rows go first, the objects right after (see Blobs::collect).
        if status == StatusCode::NOT_FOUND && objects.count(s).await == before - 2 {
            gone = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        gone,
        "the blob goes once every device it was sent to is done with it"
    );
    assert_eq!(
        objects.count(s).await,
        before - 2,
        "its objects went with it"
    );

    // Unreferenced blobs expire with the message TTL (the retention sweep).
    let partial_id = partial["blob_id"].as_str().unwrap();
    s.clock
        .advance(s.config.message_ttl + Duration::from_secs(1));
    kavro_server::retention::sweep_once(&s.state).await.unwrap();
    alice.account_token = s.login("alice").await;
    alice.open_session(s).await;
    let (status, _) = s
        .get(
            &format!("/v2/blobs/{partial_id}/status"),
            Some(&alice.token),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(objects.count(s).await, 0, "carol's expired blob went too");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cap_and_quota_come_from_the_config() {
    let s = TestServer::start(Db::Sqlite, Counters::Memory, |c| {
        c.blob_max_bytes = 2 * 1024 * 1024;
        c.blob_quota_bytes = 3 * 1024 * 1024;
    })
    .await
    .unwrap();
    let alice = Client::root(&s, "alice").await;
    let (status, body) = create(&s, &alice.token, 2 * 1024 * 1024 + 1).await;
    assert!(assert_error(status, &body, StatusCode::PAYLOAD_TOO_LARGE).contains("2 MiB"));
    let (status, _) = create(&s, &alice.token, 2 * 1024 * 1024).await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, body) = create(&s, &alice.token, 1024 * 1024 + 1).await;
    assert!(assert_error(status, &body, StatusCode::CONFLICT).contains("3 MiB"));
    let (status, _) = create(&s, &alice.token, 1024 * 1024).await;
    assert_eq!(status, StatusCode::CREATED, "exactly the quota");
}

/// A chunk's body goes to storage as it arrives (issue #14): one without a
/// declared length is counted as it streams, and every refused or broken
/// body leaves nothing behind (no object, no staging file, `received`
/// unchanged).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunk_bodies_are_checked_as_they_stream() {
    let s = TestServer::start(Db::Sqlite, Counters::Memory, |c| {
        c.body_timeout = Duration::from_secs(1);
    })
    .await
    .unwrap();
    let alice = Client::root(&s, "alice").await;
    let blobs_dir = s.config.data_dir.join("blobs");
    // No connection is used twice: a relay that refuses a body before its
    // end closes the connection it came on.
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    let send = |request: reqwest::RequestBuilder| async move {
        let response = request.send().await.unwrap();
        let status = response.status();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        (status, body)
    };
    let create = |size: u64| {
        let request = http
            .post(s.url("/v2/blobs"))
            .bearer_auth(&alice.token)
            .json(&json!({ "size": size }));
        async move {
            send(request).await.1["blob_id"]
                .as_str()
                .unwrap()
                .to_owned()
        }
    };
    let chunked = |id: &str, frames: Vec<Vec<u8>>| {
        let stream = futures_util::stream::iter(frames.into_iter().map(Ok::<_, std::io::Error>));
        send(
            http.put(s.url(&format!("/v2/blobs/{id}?offset=0")))
                .bearer_auth(&alice.token)
                .header("content-type", "application/octet-stream")
                .body(reqwest::Body::wrap_stream(stream)),
        )
    };
    let status_of = |id: &str| {
        let request = http
            .get(s.url(&format!("/v2/blobs/{id}/status")))
            .bearer_auth(&alice.token);
        async move { send(request).await.1["received"].as_u64().unwrap() }
    };

    // Over the chunk cap without a declared length: 413 once it passes.
    let chunk_max = 8 * 1024 * 1024;
    let big = create(chunk_max + 2).await;
    let frames = vec![vec![7u8; 1024 * 1024]; 9];
    let (status, body) = chunked(&big, frames).await;
    assert!(
        assert_error(status, &body, StatusCode::PAYLOAD_TOO_LARGE).contains("8388608 bytes"),
        "{body}"
    );
    assert_eq!(status_of(&big).await, 0);

    // Past the blob's size, and empty: 422.
    let small = create(20).await;
    let (status, body) = chunked(&small, vec![vec![1; 15], vec![2; 15]]).await;
    assert_error(status, &body, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        body["details"][0]["message"]
            .as_str()
            .unwrap()
            .contains("past"),
        "{body}"
    );
    let (status, body) = chunked(&small, vec![]).await;
    assert_error(status, &body, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        body["details"][0]["message"]
            .as_str()
            .unwrap()
            .contains("1 byte"),
        "{body}"
    );
    assert_eq!(status_of(&small).await, 0);
    assert_eq!(
        files_under(&blobs_dir),
        0,
        "nothing stored for refused chunks"
    );

    // A body that stalls: 408 after the body timeout; one that breaks off:
    // nothing recorded. Both over a raw connection (a client library would
    // not send half a body).
    let head = |length: usize| {
        format!(
            "PUT /v2/blobs/{small}?offset=0 HTTP/1.1\r\nhost: {host}\r\nauthorization: Bearer {token}\r\n\
             content-type: application/octet-stream\r\ncontent-length: {length}\r\n\r\n",
            host = s.base.trim_start_matches("http://"),
            token = alice.token,
        )
    };
    let mut stalled = raw_connection(&s).await;
    stalled.write_all(head(20).as_bytes()).await.unwrap();
    stalled.write_all(&[3; 5]).await.unwrap();
    let mut answer = [0u8; 12];
    tokio::time::timeout(Duration::from_secs(10), stalled.read_exact(&mut answer))
        .await
        .expect("an answer within the body timeout")
        .unwrap();
    assert_eq!(
        &answer,
        b"HTTP/1.1 408",
        "{}",
        String::from_utf8_lossy(&answer)
    );
    let mut broken = raw_connection(&s).await;
    broken.write_all(head(20).as_bytes()).await.unwrap();
    broken.write_all(&[4; 5]).await.unwrap();
    drop(broken);
    // The relay notices the break and removes its staging file.
    for _ in 0..50 {
        if files_under(&blobs_dir) == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(files_under(&blobs_dir), 0, "no staging file left");
    assert_eq!(status_of(&small).await, 0);

    // A good chunked body in pieces is stored whole.
    let (status, body) = chunked(&small, vec![vec![5; 8], vec![6; 12]]).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["complete"], true);
    let response = http
        .get(s.url(&format!("/v2/blobs/{small}")))
        .bearer_auth(&alice.token)
        .send()
        .await
        .unwrap();
    let mut expected = vec![5u8; 8];
    expected.extend_from_slice(&[6; 12]);
    assert_eq!(
        response.bytes().await.unwrap().as_ref(),
        expected.as_slice()
    );

    // An object no record names (a request cancelled between writing its
    // chunk and recording it) goes with its blob.
    let stray = blobs_dir
        .join("blobs")
        .join(&small)
        .join("00000000000000000000-stray");
    std::fs::write(&stray, b"left over").unwrap();
    s.clock
        .advance(s.config.message_ttl + Duration::from_secs(1));
    kavro_server::retention::sweep_once(&s.state).await.unwrap();
    assert_eq!(
        files_under(&blobs_dir),
        0,
        "every object of the expired blobs went"
    );
}

async fn raw_connection(s: &TestServer) -> tokio::net::TcpStream {
    tokio::net::TcpStream::connect(s.base.trim_start_matches("http://"))
        .await
        .unwrap()
}

/// A chunk refused before its body is read (a bad token, a wrong offset)
/// still gets its answer, and the connection stays usable: the relay reads
/// the rest of the body before answering (the body limit's `SharedBody`),
/// so a client still sending sees the `401` or `409`, not a broken pipe.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chunk_refused_early_gets_its_answer() {
    let s = TestServer::start(Db::Sqlite, Counters::Memory, |_| {})
        .await
        .unwrap();
    let alice = Client::root(&s, "alice").await;
    let (_, created) = create(&s, &alice.token, 16 * 1024 * 1024).await;
    let id = created["blob_id"].as_str().unwrap().to_owned();
    let chunk = vec![9u8; 4 * 1024 * 1024];
    let (status, body) = put(&s, &alice.token, &id, 0, &chunk).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    for _ in 0..5 {
        let (status, body) = put(&s, &alice.token, &id, 0, &chunk).await;
        assert!(assert_error(status, &body, StatusCode::CONFLICT).contains("offset 4194304"));
        let (status, _) = put(&s, "not-a-token", &id, 4 * 1024 * 1024, &chunk).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }
    let (status, body) = put(&s, &alice.token, &id, 4 * 1024 * 1024, &chunk).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["received"], 8 * 1024 * 1024);
}
