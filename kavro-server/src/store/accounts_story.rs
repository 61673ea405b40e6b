//! The accounts story: token generations (password change, log out
//! everywhere), key retirement, and account deletion with its reserved name,
//! on SQLite always and on PostgreSQL when `KAVRO_TEST_DATABASE_URL` is set.

use chrono::{DateTime, Utc};
use kavro_proto::api::InboxOrder;
use kavro_proto::{DeviceId, UserId};

use super::fixtures::{message, new_user, options, sqlite_options};
use super::{Published, Store, StoreError, SweepCutoffs, TokenGeneration};

fn sweep_at(now: DateTime<Utc>, names_before: DateTime<Utc>) -> SweepCutoffs {
    SweepCutoffs {
        now,
        receipts_before: DateTime::<Utc>::UNIX_EPOCH,
        names_before,
    }
}

pub async fn story(store: &dyn Store) {
    let t0 = DateTime::from_timestamp_millis(Utc::now().timestamp_millis()).unwrap();
    let at = |secs: i64| t0 + chrono::Duration::seconds(secs);
    let dora = store.create_user(new_user("dora", t0)).await.unwrap();
    let eli = store.create_user(new_user("eli", t0)).await.unwrap();

    // Generations: 0 at registration, raised by a password change (with the
    // new hash) and by logging out everywhere.
    let found = store.user_by_name("dora").await.unwrap().unwrap();
    assert_eq!(found.token_generation, TokenGeneration(0));
    assert!(
        store.revoked_generations(t0).await.unwrap().is_empty(),
        "nothing revoked yet"
    );
    let changed = store
        .change_password(dora, "$argon2id$second", at(1))
        .await
        .unwrap();
    assert_eq!(changed, TokenGeneration(1));
    let found = store.user_by_id(dora).await.unwrap().unwrap();
    assert_eq!(
        (found.password_hash.as_str(), found.token_generation),
        ("$argon2id$second", TokenGeneration(1))
    );
    assert_eq!(
        store.revoke_tokens(dora, at(2)).await.unwrap(),
        TokenGeneration(2)
    );
    let revoked = store.revoked_generations(t0).await.unwrap();
    assert_eq!(revoked.len(), 1);
    assert_eq!(
        (
            revoked[0].user,
            revoked[0].generation,
            revoked[0].revoked_at
        ),
        (dora, TokenGeneration(2), at(2))
    );
    assert!(store.revoked_generations(at(2)).await.unwrap().is_empty());
    assert!(matches!(
        store.revoke_tokens(UserId(i64::MAX), at(2)).await,
        Err(StoreError::NotFound)
    ));

    // Keys: added, again, retired (only by their owner), never back.
    let key1 = "31".repeat(32);
    let key2 = "32".repeat(32);
    assert_eq!(
        store.add_device(dora, &key1, None, at(3)).await.unwrap(),
        Published::Added
    );
    assert_eq!(
        store.add_device(dora, &key1, None, at(3)).await.unwrap(),
        Published::AlreadyPublished
    );
    store.add_device(dora, &key2, None, at(4)).await.unwrap();
    let devices = store.devices(dora).await.unwrap();
    let (id1, id2) = (devices[0].id, devices[1].id);
    assert!(
        !store.retire_device(eli, id1, at(5)).await.unwrap(),
        "not eli's key"
    );
    assert!(
        !store
            .retire_device(dora, DeviceId(i64::MAX), at(5))
            .await
            .unwrap()
    );
    assert!(store.retire_device(dora, id1, at(5)).await.unwrap());
    assert!(
        store.retire_device(dora, id1, at(6)).await.unwrap(),
        "idempotent"
    );
    let devices = store.devices(dora).await.unwrap();
    assert_eq!(
        devices.iter().map(|d| d.id).collect::<Vec<_>>(),
        vec![id2],
        "retired keys are not served"
    );
    assert_eq!(
        store.add_device(dora, &key1, None, at(7)).await.unwrap(),
        Published::Retired
    );
    assert_eq!(store.devices(dora).await.unwrap().len(), 1);
    // The same key is someone else's own business.
    assert_eq!(
        store.add_device(eli, &key1, None, at(7)).await.unwrap(),
        Published::Added
    );

    // Deletion: messages both ways, receipts, keys; the name stays taken.
    let to_dora = store
        .store_message(message(eli, dora, "c", at(8)))
        .await
        .unwrap();
    let from_dora = store
        .store_message(message(dora, eli, "c", at(8)))
        .await
        .unwrap();
    let read_by_eli = store
        .store_message(message(dora, eli, "c", at(8)))
        .await
        .unwrap();
    store.ack(eli, read_by_eli.id, at(9)).await.unwrap();
    let deleted = store.delete_account(dora, at(10)).await.unwrap();
    assert_eq!(deleted.generation, TokenGeneration(3));
    assert_eq!(deleted.messages_deleted, 1);
    assert!(store.user_by_name("dora").await.unwrap().is_none());
    assert!(store.user_by_id(dora).await.unwrap().is_none());
    assert!(store.devices(dora).await.unwrap().is_empty());
    assert!(
        store
            .receipt(eli, to_dora.id, at(10))
            .await
            .unwrap()
            .is_none(),
        "messages to the deleted account are gone, receipts too"
    );
    assert!(
        store
            .receipt(dora, read_by_eli.id, at(10))
            .await
            .unwrap()
            .is_none(),
        "receipts of what it sent are gone"
    );
    let inbox = store.inbox(eli, 50, InboxOrder::Asc, at(10)).await.unwrap();
    assert_eq!(
        inbox.iter().map(|m| m.id).collect::<Vec<_>>(),
        vec![from_dora.id],
        "what it sent and was not read yet stays for the recipient"
    );
    assert!(matches!(
        store.create_user(new_user("dora", at(11))).await,
        Err(StoreError::Conflict)
    ));
    assert!(matches!(
        store.change_password(dora, "$argon2id$x", at(11)).await,
        Err(StoreError::NotFound)
    ));
    assert!(matches!(
        store.delete_account(dora, at(11)).await,
        Err(StoreError::NotFound)
    ));
    assert!(matches!(
        store.store_message(message(eli, dora, "c", at(11))).await,
        Err(StoreError::NotFound)
    ));
    let revoked = store.revoked_generations(at(9)).await.unwrap();
    assert_eq!(
        revoked
            .iter()
            .map(|r| (r.user, r.generation))
            .collect::<Vec<_>>(),
        vec![(dora, TokenGeneration(3))],
        "a deleted account's tokens stay revoked after a restart"
    );
    // The recipient still reads and acknowledges what it sent.
    store.ack(eli, from_dora.id, at(12)).await.unwrap();

    // The sweep releases the name only once the reservation is over.
    assert_eq!(
        store
            .sweep(sweep_at(at(13), at(10)))
            .await
            .unwrap()
            .names_released,
        0,
        "deleted at 10: not before 10"
    );
    let report = store.sweep(sweep_at(at(14), at(11))).await.unwrap();
    assert_eq!(report.names_released, 1);
    assert_eq!(
        store
            .sweep(sweep_at(at(15), at(12)))
            .await
            .unwrap()
            .names_released,
        0,
        "once"
    );
    let again = store.create_user(new_user("dora", at(16))).await.unwrap();
    assert_ne!(again, dora, "a new account, with a new id");
    let fresh = store.user_by_name("dora").await.unwrap().unwrap();
    assert_eq!(
        (fresh.id, fresh.token_generation),
        (again, TokenGeneration(0))
    );
    assert!(store.devices(again).await.unwrap().is_empty());
    // The old account's messages to others are not the new one's.
    let receipt = store.receipt(again, from_dora.id, at(16)).await.unwrap();
    assert!(receipt.is_none());
}

#[tokio::test]
async fn accounts_story_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let store = super::connect(&sqlite_options(dir.path(), "accounts.db"))
        .await
        .unwrap();
    story(store.as_ref()).await;
}

#[tokio::test]
async fn accounts_story_on_postgres() {
    let Some(db) = crate::testing::TestDatabase::create().await else {
        return;
    };
    let store = super::connect(&options(db.url.clone(), 4)).await.unwrap();
    story(store.as_ref()).await;
}
