//! Two relay instances on one PostgreSQL and one Redis: many devices commit
//! at once through both, every round exactly one wins, and every member ends
//! in the same epoch with the same transcript; a long-poll held by one
//! instance is woken by a post through the other; concurrent key package
//! claims through both never get the same package; a device revoked through
//! one is refused by the other on its next queue read.

use std::collections::BTreeSet;
use std::time::Duration;

use futures_util::future::join_all;
use kavro_server::config::Config;
use kavro_server::testing::{TestDatabase, TestRedisPrefix};
use reqwest::StatusCode;
use serde_json::json;

use crate::client::Client;
use crate::common::{Counters, Db, TestServer};

const MEMBERS: usize = 6;
const ROUNDS: usize = 8;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_keep_one_order_per_group() {
    let Some(db) = TestDatabase::create().await else {
        return;
    };
    let Some(redis) = TestRedisPrefix::create("kavro-v2-scaleout") else {
        return;
    };
    let fernet = kavro_server::fieldcrypt::FieldCrypt::generate_key();
    let shared = |c: &mut Config| {
        c.database_url.clone_from(&db.url);
        c.redis_url.clone_from(&redis.url);
        c.redis_prefix.clone_from(&redis.prefix);
        c.jwt_secret = "v2-scaleout-5e1d93c07a4b28f6-not-a-real-secret"
            .to_owned()
            .into();
        c.fernet_keys = fernet.clone().into();
    };
    let a = TestServer::start(Db::Sqlite, Counters::Memory, shared)
        .await
        .unwrap();
    let b = TestServer::start(Db::Sqlite, Counters::Memory, shared)
        .await
        .unwrap();
    let server = |i: usize| if i.is_multiple_of(2) { &a } else { &b };

    let mut clients = Vec::new();
    for i in 0..MEMBERS {
        let client = Client::root(server(i), &format!("member{i}")).await;
        if i > 0 {
            client.upload_key_packages(server(i + 1), 1).await;
        }
        clients.push(client);
    }
    let group = clients[0].create_group(&a).await;
    let mut packages = Vec::new();
    for i in 1..MEMBERS {
        packages.extend(clients[0].claim(&b, &format!("member{i}")).await);
    }
    assert_eq!(
        clients[0].add(&a, &group, &packages).await,
        StatusCode::CREATED
    );
    for (i, client) in clients.iter_mut().enumerate().skip(1) {
        assert_eq!(client.sync(server(i)).await, vec!["welcome"]);
    }

    for round in 0..ROUNDS {
        let epoch = clients[0].epoch(&group);
        let commits: Vec<_> = clients
            .iter_mut()
            .map(|c| c.update_commit(&group))
            .collect();
        let answers = join_all(clients.iter_mut().zip(&commits).enumerate().map(
            |(i, (c, commit))| {
                let group = group.clone();
                async move {
                    c.post_commit(server(i), &group, commit, None, &[], &[])
                        .await
                }
            },
        ))
        .await;
        let winners: Vec<usize> = answers
            .iter()
            .enumerate()
            .filter(|(_, (s, _))| *s == StatusCode::CREATED)
            .map(|(i, _)| i)
            .collect();
        assert_eq!(
            winners.len(),
            1,
            "round {round}: exactly one commit wins: {answers:?}"
        );
        for (status, body) in &answers {
            if *status != StatusCode::CREATED {
                assert_eq!(
                    (*status, body["epoch"].as_u64()),
                    (StatusCode::CONFLICT, Some(epoch + 1)),
                    "{body}"
                );
            }
        }
        // Everyone else receives exactly that one commit, and follows it.
        for (i, client) in clients.iter_mut().enumerate() {
            let kinds = client.sync(server(i + round)).await;
            let expected: Vec<&str> = if i == winners[0] {
                vec![]
            } else {
                vec!["commit"]
            };
            assert_eq!(kinds, expected, "round {round}, member {i}");
            assert_eq!(client.epoch(&group), epoch + 1);
        }
    }
    let transcript = |c: &Client| c.groups[&group].epoch_authenticator().as_slice().to_vec();
    for client in &clients[1..] {
        assert_eq!(transcript(client), transcript(&clients[0]), "no fork");
    }

    // A long-poll on instance b is woken by a message posted through a.
    let listener = &clients[1];
    let poll = listener.long_poll(&b);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (status, _) = clients[0].send(&a, &group, "across instances").await;
    assert_eq!(status, StatusCode::CREATED);
    let page = tokio::time::timeout(Duration::from_secs(20), poll)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(page["messages"][0]["kind"], "application", "{page}");

    // Concurrent claims through both instances: no package handed out twice.
    let owner = &clients[2];
    for _ in 0..3 {
        owner.upload_key_packages(&a, 10).await;
    }
    let claims = join_all((0..40).map(|i| {
        let s = server(i);
        let token = clients[3].token.clone();
        async move {
            s.post(
                "/v2/users/member2/key-packages/claim",
                Some(&token),
                json!({}),
            )
            .await
        }
    }))
    .await;
    let mut seen = BTreeSet::new();
    let mut missing = 0;
    for (status, body) in claims {
        assert_eq!(status, StatusCode::OK, "{body}");
        match body["key_packages"].as_array().unwrap().first() {
            Some(package) => assert!(
                seen.insert(package["key_package"].as_str().unwrap().to_owned()),
                "handed out twice"
            ),
            None => missing += 1,
        }
    }
    assert_eq!((seen.len(), missing), (30, 10));

    // A device revoked through a is refused by b on its next queue read
    // (the queue route checks the device in its own query, no cache).
    let revoked = &clients[4];
    let queue = format!(
        "/v2/devices/{}/queue?after={}",
        revoked.device_id, revoked.after
    );
    let (status, body) = b.get(&queue, Some(&revoked.token)).await;
    assert_eq!(status, StatusCode::OK, "positive control: {body}");
    let (status, body) = a
        .post(
            &format!("/v2/devices/{}/revoke", revoked.device_id),
            Some(&revoked.account_token),
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    for s in [&b, &a] {
        let (status, body) = s.get(&queue, Some(&revoked.token)).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
        assert!(
            body["error"].as_str().unwrap().contains("revoked"),
            "{body}"
        );
    }
}
