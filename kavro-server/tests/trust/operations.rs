//! The metadata cap and who may read `/metrics`.

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::common::{Counters, Db, TestServer, assert_error, message_body};
use crate::on_both_databases;

on_both_databases!(metadata_is_capped_at_4_kib, metadata_cap);

async fn metadata_cap(s: TestServer) {
    let (alice, _) = s.register("alice").await;
    let (bob, bob_id) = s.register("bob").await;
    let limit = kavro_proto::validate::MAX_METADATA_BYTES;
    let mut body = message_body(bob_id);
    // A JSON string of exactly 4,096 bytes (quotes included) is accepted...
    body["metadata"] = json!("m".repeat(limit - 2));
    let (status, sent) = s.post("/messages", Some(&alice), body.clone()).await;
    assert_eq!(status, StatusCode::CREATED, "{sent}");
    // ... one byte more is refused, as is a larger object.
    body["metadata"] = json!("m".repeat(limit - 1));
    for prefix in ["", "/api/v1"] {
        let (status, refused) = s
            .post(&format!("{prefix}/messages"), Some(&alice), body.clone())
            .await;
        assert_error(status, &refused, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(refused["details"][0]["field"], "metadata");
    }
    body["metadata"] = json!({"tags": vec!["x".repeat(100); 50]});
    let (status, refused) = s.post("/messages", Some(&alice), body).await;
    assert_error(status, &refused, StatusCode::UNPROCESSABLE_ENTITY);
    let (_, inbox) = s.get("/messages/inbox", Some(&bob)).await;
    assert_eq!(inbox["messages"].as_array().unwrap().len(), 1, "one stored");
    // The cap is documented in the OpenAPI schema.
    let (_, spec) = s.get("/openapi.json", None).await;
    let description =
        spec["components"]["schemas"]["SendMessage"]["properties"]["metadata"]["description"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
    assert!(description.contains("4 KiB"), "{description}");
}

async fn metrics_status(s: &TestServer, headers: &[(&str, &str)]) -> StatusCode {
    let mut request = s.request(Method::GET, "/metrics");
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request.send().await.unwrap();
    let status = response.status();
    let text = response.text().await.unwrap();
    if status == StatusCode::OK {
        assert!(text.contains("kavro_http_requests_total"), "{text}");
    } else {
        assert!(!text.contains("kavro_http_requests_total"), "{text}");
    }
    status
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_default_serves_only_direct_loopback_clients() {
    let Some(s) = TestServer::start(Db::Sqlite, Counters::Memory, |_| {}).await else {
        return;
    };
    // The test talks to 127.0.0.1 directly: allowed (benchmarks, scrapers on the host).
    assert_eq!(metrics_status(&s, &[]).await, StatusCode::OK);
    // The same connection carrying a proxy's header is someone from outside.
    for header in ["x-forwarded-for", "x-real-ip", "forwarded"] {
        assert_eq!(
            metrics_status(&s, &[(header, "203.0.113.9")]).await,
            StatusCode::FORBIDDEN,
            "{header}"
        );
    }
    let (status, body) = s
        .call(
            s.request(Method::GET, "/api/v1/metrics")
                .header("x-forwarded-for", "127.0.0.1"),
        )
        .await;
    assert_error(status, &body, StatusCode::FORBIDDEN);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_token_opens_it_from_anywhere() {
    let Some(s) = TestServer::start(Db::Sqlite, Counters::Memory, |c| {
        c.metrics_allow = Vec::new();
        c.metrics_token = "scrape-7f3e9a1c5b2d4e6f".to_owned().into();
    })
    .await
    else {
        return;
    };
    assert_eq!(metrics_status(&s, &[]).await, StatusCode::UNAUTHORIZED);
    assert_eq!(
        metrics_status(&s, &[("authorization", "Bearer scrape-7f3e9a1c5b2d4e6e")]).await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        metrics_status(&s, &[("authorization", "Bearer scrape-7f3e9a1c5b2d4e6")]).await,
        StatusCode::UNAUTHORIZED,
        "a prefix of the token is not the token"
    );
    assert_eq!(
        metrics_status(&s, &[("authorization", "Bearer scrape-7f3e9a1c5b2d4e6f")]).await,
        StatusCode::OK
    );
    assert_eq!(
        metrics_status(
            &s,
            &[
                ("authorization", "Bearer scrape-7f3e9a1c5b2d4e6f"),
                ("x-forwarded-for", "203.0.113.9")
            ]
        )
        .await,
        StatusCode::OK,
        "through a proxy too"
    );
}
