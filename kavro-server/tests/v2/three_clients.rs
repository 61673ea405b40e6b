//! Three openmls clients (alice, bob, carol) through the relay over HTTP:
//! create a group, add, exchange messages, two members commit at once (one
//! wins, the other re-syncs and retries), an offline member catches up across
//! 50 epochs in order, and a removed member receives nothing new.

use openmls::prelude::tls_codec::Serialize as _;
use reqwest::StatusCode;
use serde_json::json;

use crate::client::{Client, b64, group_text};
use crate::common::{Counters, Db, TestServer};
use crate::on_both_databases;

on_both_databases!(three_clients, three_clients);

async fn three_clients(s: TestServer) {
    let mut alice = Client::root(&s, "alice").await;
    let mut bob = Client::root(&s, "bob").await;
    let mut carol = Client::root(&s, "carol").await;
    bob.upload_key_packages(&s, 2).await;
    carol.upload_key_packages(&s, 2).await;

    // alice creates the group and adds bob and carol in one commit.
    let group = alice.create_group(&s).await;
    let mut packages = alice.claim(&s, "bob").await;
    packages.extend(alice.claim(&s, "carol").await);
    assert_eq!(alice.add(&s, &group, &packages).await, StatusCode::CREATED);
    assert_eq!(bob.sync(&s).await, vec!["welcome"]);
    assert_eq!(carol.sync(&s).await, vec!["welcome"]);
    assert_eq!(bob.epoch(&group), 1);

    // Everyone talks; everyone reads everyone else, in order.
    alice.send(&s, &group, "hi from alice").await;
    bob.sync(&s).await;
    bob.send(&s, &group, "hi from bob").await;
    carol.sync(&s).await;
    carol.send(&s, &group, "hi from carol").await;
    alice.sync(&s).await;
    bob.sync(&s).await;
    let texts = |c: &Client| {
        c.received
            .iter()
            .map(|(_, t)| t.clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(texts(&alice), vec!["hi from bob", "hi from carol"]);
    assert_eq!(texts(&bob), vec!["hi from alice", "hi from carol"]);
    assert_eq!(texts(&carol), vec!["hi from alice", "hi from bob"]);

    // bob and carol commit at once (both made at epoch 1): one wins.
    let bob_commit = bob.update_commit(&group);
    let carol_commit = carol.update_commit(&group);
    let (bob_answer, carol_answer) = tokio::join!(
        bob.post_commit(&s, &group, &bob_commit, None, &[], &[]),
        carol.post_commit(&s, &group, &carol_commit, None, &[], &[]),
    );
    let statuses = [bob_answer.0, carol_answer.0];
    assert!(
        statuses.contains(&StatusCode::CREATED) && statuses.contains(&StatusCode::CONFLICT),
        "{statuses:?}"
    );
    let (winner, loser) = if bob_answer.0 == StatusCode::CREATED {
        (&mut bob, &mut carol)
    } else {
        (&mut carol, &mut bob)
    };
    let conflict = if bob_answer.0 == StatusCode::CONFLICT {
        &bob_answer.1
    } else {
        &carol_answer.1
    };
    assert_eq!(conflict["epoch"].as_u64(), Some(2));
    // The loser re-syncs to epoch 2 and retries.
    assert_eq!(loser.sync(&s).await, vec!["commit"]);
    assert_eq!(loser.epoch(&group), 2);
    let retry = loser.update_commit(&group);
    assert_eq!(
        loser
            .post_commit(&s, &group, &retry, None, &[], &[])
            .await
            .0,
        StatusCode::CREATED
    );
    winner.sync(&s).await;
    alice.sync(&s).await;
    // Nobody forked: same epoch, same epoch authenticator everywhere.
    let auth = |c: &Client| c.groups[&group].epoch_authenticator().as_slice().to_vec();
    assert_eq!(alice.epoch(&group), 3);
    assert_eq!((bob.epoch(&group), carol.epoch(&group)), (3, 3));
    assert_eq!(auth(&alice), auth(&bob));
    assert_eq!(auth(&alice), auth(&carol));

    // carol is offline while alice and bob go through 50 epochs, talking.
    for round in 0..50u32 {
        let committer = if round.is_multiple_of(2) {
            &mut alice
        } else {
            &mut bob
        };
        let commit = committer.update_commit(&group);
        assert_eq!(
            committer
                .post_commit(&s, &group, &commit, None, &[], &[])
                .await
                .0,
            StatusCode::CREATED
        );
        committer
            .send(
                &s,
                &group,
                &format!("epoch {} message", committer.epoch(&group)),
            )
            .await;
        let other = if round.is_multiple_of(2) {
            &mut bob
        } else {
            &mut alice
        };
        other.sync(&s).await;
    }
    assert_eq!(alice.epoch(&group), 53);
    let kinds = carol.sync(&s).await;
    assert_eq!(kinds.len(), 100);
    assert_eq!(carol.epoch(&group), 53);
    assert_eq!(auth(&carol), auth(&alice));
    let caught_up: Vec<String> = texts(&carol).into_iter().skip(2).collect();
    let expected: Vec<String> = (4..=53).map(|e| format!("epoch {e} message")).collect();
    assert_eq!(caught_up, expected, "all 50 arrive, in order");

    // alice removes carol: carol gets that commit (she is removed), nothing after.
    let carol_late = carol
        .groups
        .get_mut(&group)
        .unwrap()
        .create_message(&carol.provider, &carol.signer, b"late")
        .unwrap();
    let carol_key = carol.signer.public().to_vec();
    assert_eq!(
        alice
            .remove(&s, &group, &[(carol.device_id, carol_key)])
            .await,
        StatusCode::CREATED
    );
    alice.send(&s, &group, "carol is gone").await;
    bob.sync(&s).await;
    assert_eq!(bob.received.last().unwrap().1, "carol is gone");
    assert_eq!(carol.sync(&s).await, vec!["commit"]);
    assert!(
        !carol.groups[&group].is_active(),
        "carol's client sees her removal"
    );
    let (status, _) = s
        .post(
            &format!("/v2/groups/{}/messages", group_text(&group)),
            Some(&carol.token),
            json!({"message": b64(&carol_late.tls_serialize_detached().unwrap())}),
        )
        .await;
    assert_eq!(
        status,
        StatusCode::FORBIDDEN,
        "a removed device may not post"
    );
    alice.send(&s, &group, "after carol").await;
    assert!(
        carol.sync(&s).await.is_empty(),
        "a removed member receives nothing new"
    );
    bob.sync(&s).await;
    assert_eq!(bob.received.last().unwrap().1, "after carol");
}
