//! The operator's story: accounts listed, disabled and enabled, last seen,
//! invite codes used up, expired, revoked and given back, two registrations
//! racing for the last use, the oldest pending message, and the schema
//! version; on SQLite always and on PostgreSQL when `KAVRO_TEST_DATABASE_URL`
//! is set.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::{InviteHash, NewInvite, OpsStore, SchemaState};
use crate::clock::after;
use crate::store::{NewMessage, NewUser, Store, StoreOptions, Stores, TokenGeneration};

fn at(seconds: u64) -> DateTime<Utc> {
    after(
        DateTime::<Utc>::UNIX_EPOCH,
        Duration::from_secs(1_800_000_000 + seconds),
    )
}

fn invite(code: &str, uses: u32, expires_at: Option<DateTime<Utc>>) -> NewInvite {
    NewInvite {
        hash: InviteHash::of(code),
        max_uses: uses,
        created_at: at(0),
        expires_at,
    }
}

async fn story(stores: Stores) {
    let store: &dyn Store = stores.store.as_ref();
    let ops: Arc<dyn OpsStore> = stores.ops.clone();
    assert!(matches!(
        ops.schema_state().await.unwrap(),
        SchemaState::At { applied, expected } if applied == expected && expected >= 4
    ));
    let new = |name: &'static str| NewUser {
        username: name,
        username_normalized: name,
        password_hash: "$argon2id$x",
        created_at: at(1),
    };
    let ann = store.create_user(new("ann")).await.unwrap();
    let bob = store.create_user(new("bob")).await.unwrap();
    store
        .add_device(ann, &"ab".repeat(32), None, at(2))
        .await
        .unwrap();
    store
        .store_message(NewMessage {
            sender_id: ann,
            recipient_id: bob,
            ciphertext: b"c".to_vec(),
            ephemeral_pubkey: "cd".repeat(32),
            metadata: None,
            client_msg_id: None,
            created_at: at(3),
            expires_at: at(3600),
            max_pending: 10,
            max_pending_per_sender: 10,
        })
        .await
        .unwrap();
    ops.touch_last_seen(ann, at(4)).await.unwrap();

    let listed = ops.accounts().await.unwrap();
    assert_eq!(listed.len(), 2);
    assert_eq!(
        (
            listed[0].username.as_str(),
            listed[0].keys,
            listed[0].pending
        ),
        ("ann", 1, 0)
    );
    assert_eq!(listed[0].last_seen_at, Some(at(4)));
    assert_eq!((listed[1].pending, listed[1].last_seen_at), (1, None));
    assert_eq!(ops.account("bob").await.unwrap().unwrap().id, bob);
    assert!(ops.account("nobody").await.unwrap().is_none());
    assert_eq!(ops.oldest_pending(at(10)).await.unwrap(), Some(at(3)));
    assert_eq!(ops.oldest_pending(at(3600)).await.unwrap(), None, "expired");

    // Disabling raises the generation (sessions end) and is visible.
    assert!(!ops.is_disabled(ann).await.unwrap());
    let generation = ops.disable_account(ann, at(5)).await.unwrap();
    assert_eq!(generation, TokenGeneration(1));
    assert!(ops.is_disabled(ann).await.unwrap());
    let revoked = store.revoked_generations(at(4)).await.unwrap();
    assert_eq!((revoked.len(), revoked[0].generation), (1, generation));
    assert_eq!(
        ops.account("ann").await.unwrap().unwrap().disabled_at,
        Some(at(5))
    );
    assert!(ops.enable_account(ann).await.unwrap());
    assert!(!ops.enable_account(ann).await.unwrap(), "already enabled");
    assert!(!ops.is_disabled(ann).await.unwrap());
    // A deleted account is neither listed nor disabled.
    store.delete_account(bob, at(6)).await.unwrap();
    assert_eq!(ops.accounts().await.unwrap().len(), 1);
    assert!(matches!(
        ops.disable_account(bob, at(7)).await,
        Err(crate::store::StoreError::NotFound)
    ));

    // Invites: uses, expiry, revocation, give-back.
    let two = ops.create_invite(invite("two", 2, None)).await.unwrap();
    assert_eq!(
        ops.use_invite(&InviteHash::of("two"), at(10))
            .await
            .unwrap(),
        Some(two)
    );
    assert_eq!(
        ops.use_invite(&InviteHash::of(" two "), at(10))
            .await
            .unwrap(),
        Some(two),
        "surrounding blanks do not count"
    );
    assert_eq!(
        ops.use_invite(&InviteHash::of("two"), at(10))
            .await
            .unwrap(),
        None,
        "used up"
    );
    ops.release_invite(two).await.unwrap();
    assert_eq!(
        ops.use_invite(&InviteHash::of("two"), at(10))
            .await
            .unwrap(),
        Some(two),
        "a given-back use can be taken again"
    );
    assert_eq!(
        ops.use_invite(&InviteHash::of("nope"), at(10))
            .await
            .unwrap(),
        None
    );
    let soon = ops
        .create_invite(invite("soon", 5, Some(at(100))))
        .await
        .unwrap();
    assert_eq!(
        ops.use_invite(&InviteHash::of("soon"), at(100))
            .await
            .unwrap(),
        None,
        "expired"
    );
    assert_eq!(
        ops.invite_by_hash(&InviteHash::of("soon")).await.unwrap(),
        Some(soon)
    );
    assert!(ops.revoke_invite(soon, at(11)).await.unwrap());
    assert!(
        !ops.revoke_invite(super::InviteId(-1), at(11))
            .await
            .unwrap()
    );
    let listed = ops.invites().await.unwrap();
    assert_eq!(listed.len(), 2);
    assert_eq!((listed[0].uses, listed[0].max_uses), (2, 2));
    assert_eq!(listed[1].revoked_at, Some(at(11)));
    assert!(
        ops.create_invite(invite("two", 1, None)).await.is_err(),
        "codes are unique"
    );

    // Eight registrations race for three uses: exactly three get one.
    ops.create_invite(invite("race", 3, None)).await.unwrap();
    let racers: Vec<_> = (0..8)
        .map(|_| {
            let ops: Arc<dyn OpsStore> = ops.clone();
            tokio::spawn(async move { ops.use_invite(&InviteHash::of("race"), at(12)).await })
        })
        .collect();
    let mut won = 0;
    for racer in racers {
        if racer.await.unwrap().unwrap().is_some() {
            won += 1;
        }
    }
    assert_eq!(won, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ops_story_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let stores = crate::store::connect_stores(&StoreOptions {
        url: format!("sqlite://{}", dir.path().join("ops.db").display()),
        read_url: None,
        max_connections: 4,
        migrate: true,
    })
    .await
    .unwrap();
    story(stores).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ops_story_on_postgres() {
    let Some(db) = crate::testing::TestDatabase::create().await else {
        return;
    };
    let stores = crate::store::connect_stores(&StoreOptions {
        url: db.url.clone(),
        read_url: None,
        max_connections: 8,
        migrate: true,
    })
    .await
    .unwrap();
    story(stores).await;
}

#[tokio::test]
async fn an_empty_database_has_no_schema() {
    let dir = tempfile::tempdir().unwrap();
    let stores = crate::store::connect_stores(&StoreOptions {
        url: format!("sqlite://{}", dir.path().join("empty.db").display()),
        read_url: None,
        max_connections: 1,
        migrate: false,
    })
    .await
    .unwrap();
    assert_eq!(stores.ops.schema_state().await.unwrap(), SchemaState::Empty);
}
