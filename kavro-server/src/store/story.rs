//! The store "story": one test of every [`Store`] operation, generic over the
//! trait, run on SQLite always and on PostgreSQL when `KAVRO_TEST_DATABASE_URL`
//! is set. Both backends must tell the same story.

use chrono::{DateTime, Utc};
use kavro_proto::api::{DeliveryState, InboxOrder};
use kavro_proto::{MessageId, UserId};
use uuid::Uuid;

use super::fixtures::{message, options, sqlite_options, user};
use super::{AckCount, AckOutcome, NewUser, Quota, Store, StoreError, StoreOptions, SweepCutoffs};

/// Sweep cut-offs with no deleted account's name due.
fn cutoffs(now: DateTime<Utc>, receipts_before: DateTime<Utc>) -> SweepCutoffs {
    SweepCutoffs {
        now,
        receipts_before,
        names_before: DateTime::<Utc>::UNIX_EPOCH,
    }
}

pub async fn story(store: &dyn Store) {
    // Whole milliseconds: SQLite keeps milliseconds.
    let t0 = DateTime::from_timestamp_millis(Utc::now().timestamp_millis()).unwrap();
    let at = |secs: i64| t0 + chrono::Duration::seconds(secs);
    store.ping().await.unwrap();

    // Users: unique ignoring case; SQL metacharacters are just text.
    let alice = user(store, "Alice", t0).await;
    let bob = user(store, "bob", t0).await;
    let evil_name = "x'); DROP TABLE users;--";
    let evil = user(store, evil_name, t0).await;
    assert!(matches!(
        store
            .create_user(NewUser {
                username: "ALICE",
                username_normalized: "alice",
                password_hash: "h",
                created_at: t0,
            })
            .await,
        Err(StoreError::Conflict)
    ));
    let found = store.user_by_name("alice").await.unwrap().unwrap();
    assert_eq!((found.id, found.username.as_str()), (alice, "Alice"));
    assert_eq!(
        store.user_by_id(evil).await.unwrap().unwrap().username,
        evil_name
    );
    assert!(store.user_by_name("nobody").await.unwrap().is_none());
    assert!(store.user_by_id(UserId(i64::MAX)).await.unwrap().is_none());

    // Devices: idempotent, oldest first, names opaque bytes.
    let key1 = "11".repeat(32);
    let key2 = "22".repeat(32);
    store
        .add_device(bob, &key1, Some(b"enc-name".to_vec()), at(1))
        .await
        .unwrap();
    store.add_device(bob, &key1, None, at(2)).await.unwrap();
    store.add_device(bob, &key2, None, at(3)).await.unwrap();
    let devices = store.devices(bob).await.unwrap();
    assert_eq!(devices.len(), 2);
    assert_eq!(devices[0].identity_pubkey, key1);
    assert_eq!(devices[0].device_name.as_deref(), Some(&b"enc-name"[..]));
    assert_eq!(devices[0].created_at, at(1));
    assert_eq!(devices[1].identity_pubkey, key2);
    assert!(store.devices(UserId(i64::MAX)).await.unwrap().is_empty());

    // Messages: stored, listed in both orders, limited.
    let m1 = store
        .store_message(message(alice, bob, "one", at(10)))
        .await
        .unwrap();
    let m2 = store
        .store_message(message(alice, bob, "two", at(11)))
        .await
        .unwrap();
    let m3 = store
        .store_message(message(evil, bob, "three", at(12)))
        .await
        .unwrap();
    assert!(m1.created && m2.created && m3.created);
    assert!(m1.id < m2.id && m2.id < m3.id);
    let desc = store
        .inbox(bob, 50, InboxOrder::Desc, at(20))
        .await
        .unwrap();
    assert_eq!(
        desc.iter().map(|m| m.id).collect::<Vec<_>>(),
        vec![m3.id, m2.id, m1.id]
    );
    assert_eq!(desc[2].ciphertext, b"one");
    assert_eq!(desc[2].created_at, at(10));
    assert_eq!(desc[2].sender_id, alice);
    let asc = store.inbox(bob, 2, InboxOrder::Asc, at(20)).await.unwrap();
    assert_eq!(
        asc.iter().map(|m| m.id).collect::<Vec<_>>(),
        vec![m1.id, m2.id]
    );
    assert!(
        store
            .inbox(alice, 50, InboxOrder::Desc, at(20))
            .await
            .unwrap()
            .is_empty()
    );

    // Unknown recipient.
    assert!(matches!(
        store
            .store_message(message(alice, UserId(i64::MAX), "x", at(10)))
            .await,
        Err(StoreError::NotFound)
    ));

    // Idempotent send with client_msg_id.
    let cid = Uuid::new_v4();
    let mut first = message(alice, bob, "idem", at(13));
    first.client_msg_id = Some(cid);
    first.metadata = Some(b"meta".to_vec());
    let a = store.store_message(first.clone()).await.unwrap();
    let b = store.store_message(first.clone()).await.unwrap();
    assert!(a.created && !b.created && a.id == b.id);
    // The same client id from another sender is another message.
    let mut other = first.clone();
    other.sender_id = evil;
    assert!(store.store_message(other).await.unwrap().created);
    let inbox = store
        .inbox(bob, 50, InboxOrder::Desc, at(20))
        .await
        .unwrap();
    assert_eq!(inbox.len(), 5);
    assert_eq!(
        inbox
            .iter()
            .find(|m| m.id == a.id)
            .unwrap()
            .metadata
            .as_deref(),
        Some(&b"meta"[..])
    );

    // Acks: only the recipient; idempotent; ciphertext gone; receipt stays.
    assert_eq!(
        store.ack(alice, m1.id, at(21)).await.unwrap(),
        AckOutcome::NotRecipient
    );
    assert_eq!(
        store.ack(bob, MessageId(i64::MAX), at(21)).await.unwrap(),
        AckOutcome::NotFound
    );
    assert_eq!(
        store.ack(bob, m1.id, at(21)).await.unwrap(),
        AckOutcome::Acknowledged { newly: true }
    );
    assert_eq!(
        store.ack(bob, m1.id, at(22)).await.unwrap(),
        AckOutcome::Acknowledged { newly: false }
    );
    let inbox = store
        .inbox(bob, 50, InboxOrder::Desc, at(22))
        .await
        .unwrap();
    assert!(inbox.iter().all(|m| m.id != m1.id));

    // Receipts: for the sender only.
    let receipt = store.receipt(alice, m1.id, at(22)).await.unwrap().unwrap();
    assert_eq!(receipt.state, DeliveryState::Delivered);
    assert_eq!(receipt.delivered_at, Some(at(21)));
    assert_eq!(
        store
            .receipt(alice, m2.id, at(22))
            .await
            .unwrap()
            .unwrap()
            .state,
        DeliveryState::Pending
    );
    assert!(store.receipt(bob, m1.id, at(22)).await.unwrap().is_none());
    assert!(store.receipt(evil, m1.id, at(22)).await.unwrap().is_none());

    // Batch ack: others' and unknown ids ignored; counts include earlier acks.
    let count = store
        .ack_many(bob, &[m1.id, m2.id, MessageId(i64::MAX)], at(23))
        .await
        .unwrap();
    assert_eq!(count, AckCount { newly: 1, total: 2 });
    let count = store.ack_many(alice, &[m3.id], at(23)).await.unwrap();
    assert_eq!(
        count,
        AckCount { newly: 0, total: 0 },
        "not alice's message"
    );
    assert_eq!(
        store.ack_many(bob, &[], at(23)).await.unwrap(),
        AckCount::default()
    );
    assert_eq!(
        store
            .inbox(bob, 50, InboxOrder::Desc, at(23))
            .await
            .unwrap()
            .len(),
        3
    );

    // Pending quota per recipient.
    let carol = user(store, "carol", t0).await;
    let mut capped = message(alice, carol, "q", at(30));
    capped.max_pending = 2;
    store.store_message(capped.clone()).await.unwrap();
    store.store_message(capped.clone()).await.unwrap();
    assert!(matches!(
        store.store_message(capped.clone()).await,
        Err(StoreError::QuotaExceeded(Quota::Recipient))
    ));
    // A retry of an already-stored id is still answered when the quota is full.
    let mut retry = capped.clone();
    retry.client_msg_id = Some(cid);
    retry.sender_id = alice;
    retry.recipient_id = bob;
    assert_eq!(store.store_message(retry).await.unwrap().id, a.id);
    assert_eq!(store.pending_total(at(30)).await.unwrap(), 5);

    // Expiry: past its TTL a message leaves the inbox; the sweep drops its
    // ciphertext once and keeps the receipt; later the receipt goes too.
    let mut short = message(alice, carol, "old", at(40));
    short.expires_at = at(100);
    short.max_pending = 100;
    let expiring = store.store_message(short).await.unwrap();
    let later = at(101);
    assert!(
        store
            .inbox(carol, 50, InboxOrder::Desc, later)
            .await
            .unwrap()
            .iter()
            .all(|m| m.id != expiring.id)
    );
    assert_eq!(
        store
            .receipt(alice, expiring.id, later)
            .await
            .unwrap()
            .unwrap()
            .state,
        DeliveryState::Expired
    );
    let swept = store.sweep(cutoffs(later, t0)).await.unwrap();
    assert_eq!(swept.expired, 1, "only the message whose TTL ran out");
    assert_eq!(swept.purged, 0);
    assert_eq!(
        store.sweep(cutoffs(later, t0)).await.unwrap().expired,
        0,
        "nothing twice"
    );
    // Receipts older than the cut-off are purged: m1 and m2 (delivered at 21
    // and 23) and the expired one (its receipt runs from its expiry at 100).
    let swept = store.sweep(cutoffs(at(102), at(102))).await.unwrap();
    assert_eq!(
        swept,
        super::SweepReport {
            expired: 0,
            purged: 3,
            names_released: 0,
        }
    );
    assert!(
        store
            .receipt(alice, m1.id, at(102))
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        store
            .receipt(alice, expiring.id, at(102))
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(
        store.ack(bob, m1.id, at(102)).await.unwrap(),
        AckOutcome::NotFound
    );
    // Undelivered, unexpired messages are untouched.
    assert_eq!(store.pending_total(at(102)).await.unwrap(), 5);
    assert_eq!(
        store
            .inbox(bob, 50, InboxOrder::Desc, at(102))
            .await
            .unwrap()
            .len(),
        3
    );
    let status = store.pool_status();
    assert!(status.max >= 1);
}

#[tokio::test]
async fn story_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let store = super::connect(&sqlite_options(dir.path(), "story.db"))
        .await
        .unwrap();
    story(store.as_ref()).await;
}

#[tokio::test]
async fn sqlite_data_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let now = Utc::now();
    {
        let store = super::connect(&sqlite_options(dir.path(), "story.db"))
            .await
            .unwrap();
        let a = user(store.as_ref(), "a1x", now).await;
        store
            .store_message(message(a, a, "keep", now))
            .await
            .unwrap();
    }
    let store = super::connect(&sqlite_options(dir.path(), "story.db"))
        .await
        .unwrap();
    let a = store.user_by_name("a1x").await.unwrap().unwrap().id;
    assert_eq!(
        store
            .inbox(a, 10, InboxOrder::Asc, now)
            .await
            .unwrap()
            .len(),
        1
    );
}

#[tokio::test]
async fn story_on_postgres() {
    let Some(db) = crate::testing::TestDatabase::create().await else {
        return;
    };
    let store = super::connect(&StoreOptions {
        read_url: Some(db.url.clone()),
        ..options(db.url.clone(), 4)
    })
    .await
    .unwrap();
    story(store.as_ref()).await;
}

#[tokio::test]
async fn unknown_scheme_is_refused() {
    let err = super::connect(&StoreOptions {
        url: "mysql://u:secret@h/db".into(),
        read_url: None,
        max_connections: 1,
        migrate: false,
    })
    .await
    .err()
    .unwrap();
    let text = err.to_string();
    assert!(text.contains("mysql") && !text.contains("secret"), "{text}");
}
