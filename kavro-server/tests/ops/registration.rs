//! `registration = "open" | "invite" | "closed"` and invite codes.

use std::time::Duration;

use futures_util::future::join_all;
use kavro_server::config::{Config, Registration};
use reqwest::StatusCode;
use serde_json::json;

use super::admin;
use crate::common::{Counters, Db, TestServer, assert_error};
use crate::on_both_with;

fn invite_only(c: &mut Config) {
    c.registration = Registration::Invite;
}

fn closed(c: &mut Config) {
    c.registration = Registration::Closed;
}

on_both_with!(invite_codes, invite_only, invite_codes);
on_both_with!(invites_race_for_the_last_use, invite_only, invite_race);
on_both_with!(closed_registration, closed, closed_registration);

const NEEDED: &str = "This relay registers new accounts only with an invite code.";
const NOT_VALID: &str = "This invite code is not valid: unknown, used up, expired or revoked.";

async fn register(
    s: &TestServer,
    name: &str,
    code: Option<&str>,
) -> (StatusCode, serde_json::Value) {
    let mut body = json!({"username": name, "password": "Passw0rd!"});
    if let Some(code) = code {
        body["invite_code"] = json!(code);
    }
    s.post("/auth/register", None, body).await
}

async fn invite_codes(s: TestServer) {
    let admin = admin(&s).await;
    for prefix in ["", "/api/v1"] {
        let (status, body) = s
            .post(
                &format!("{prefix}/auth/register"),
                None,
                json!({"username": "nocode", "password": "Passw0rd!"}),
            )
            .await;
        assert_eq!(assert_error(status, &body, StatusCode::FORBIDDEN), NEEDED);
    }
    let long = "x".repeat(5000);
    for bad in ["", "   ", "not-a-code", long.as_str()] {
        let (status, body) = register(&s, "badcode", Some(bad)).await;
        let text = assert_error(status, &body, StatusCode::FORBIDDEN);
        assert!(text == NEEDED || text == NOT_VALID, "{text}");
    }
    let two = admin.create_invite(2, None).await.unwrap();
    let (status, body) = register(&s, "first", Some(&two.code)).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    // A name that is taken gives its use back.
    let (status, body) = register(&s, "FIRST", Some(&two.code)).await;
    assert_error(status, &body, StatusCode::BAD_REQUEST);
    let (status, body) = register(&s, "second", Some(&format!(" {} ", two.code))).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (status, body) = register(&s, "third", Some(&two.code)).await;
    assert_eq!(
        assert_error(status, &body, StatusCode::FORBIDDEN),
        NOT_VALID,
        "used up"
    );
    let listed = admin.invites().await.unwrap();
    assert_eq!((listed[0].uses, listed[0].max_uses), (2, 2));

    let week = admin
        .create_invite(5, Some(Duration::from_secs(7 * 24 * 3600)))
        .await
        .unwrap();
    s.clock.advance(Duration::from_secs(7 * 24 * 3600 + 1));
    let (status, body) = register(&s, "late", Some(&week.code)).await;
    assert_eq!(
        assert_error(status, &body, StatusCode::FORBIDDEN),
        NOT_VALID,
        "expired"
    );

    let revoked = admin.create_invite(5, None).await.unwrap();
    assert_eq!(
        admin.revoke_invite(&revoked.code).await.unwrap(),
        revoked.id
    );
    let (status, body) = register(&s, "revoked", Some(&revoked.code)).await;
    assert_eq!(
        assert_error(status, &body, StatusCode::FORBIDDEN),
        NOT_VALID
    );
    // By id as well; unknown ones are an error.
    let other = admin.create_invite(1, None).await.unwrap();
    admin.revoke_invite(&other.id.0.to_string()).await.unwrap();
    for unknown in ["999999", "no-such-code"] {
        let err = admin.revoke_invite(unknown).await.err().unwrap();
        assert!(err.to_string().contains("no invite"), "{err}");
    }
    assert!(admin.create_invite(0, None).await.is_err());
    // Logins need no code.
    s.login("first").await;
}

async fn invite_race(s: TestServer) {
    let admin = admin(&s).await;
    let code = admin.create_invite(3, None).await.unwrap().code;
    let names: Vec<String> = (0..8).map(|i| format!("racer{i}")).collect();
    let answers = join_all(names.iter().map(|n| register(&s, n, Some(&code)))).await;
    let created = answers
        .iter()
        .filter(|(status, _)| *status == StatusCode::CREATED)
        .count();
    assert_eq!(created, 3, "{answers:?}");
    for (status, body) in answers.iter().filter(|(s, _)| *s != StatusCode::CREATED) {
        assert_eq!(
            assert_error(*status, body, StatusCode::FORBIDDEN),
            NOT_VALID
        );
    }
}

async fn closed_registration(s: TestServer) {
    let admin = admin(&s).await;
    let code = admin.create_invite(1, None).await.unwrap().code;
    for code in [None, Some(code.as_str())] {
        let (status, body) = register(&s, "anyone", code).await;
        assert_eq!(
            assert_error(status, &body, StatusCode::FORBIDDEN),
            "Registration is closed on this relay."
        );
    }
}

/// An open relay (the default) ignores a code: older clients send none.
#[tokio::test]
async fn an_open_relay_ignores_invite_codes() {
    let Some(s) = TestServer::start(Db::Sqlite, Counters::Memory, |_| {}).await else {
        return;
    };
    let (status, body) = register(&s, "opener", Some("whatever")).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
}

/// `/metrics` counts 429s per route: by the rate limiter (`route`) and by
/// operation and status (every 429, quotas and lockouts included).
#[tokio::test]
async fn refused_requests_are_counted_per_route() {
    let Some(s) = TestServer::start(Db::Sqlite, Counters::Memory, |c| {
        c.rate_limits = kavro_server::config::Toggle::On;
        c.limits.register = kavro_server::config::RateSpec::new(1, Duration::from_secs(3600));
    })
    .await
    else {
        return;
    };
    s.register("counted").await;
    let (status, body) = register(&s, "refused", None).await;
    assert_error(status, &body, StatusCode::TOO_MANY_REQUESTS);
    let (_, metrics) = s.text("/metrics").await;
    for line in [
        "kavro_rate_limited_total{route=\"register\"}",
        "kavro_http_requests_total{operation=\"register\",status=\"429\"}",
    ] {
        assert!(metrics.contains(line), "{line} missing from {metrics}");
    }
}
