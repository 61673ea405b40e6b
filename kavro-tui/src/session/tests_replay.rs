//! Replays: caught by (sender key, message id), with legacy messages'
//! ephemeral keys normalised, and across a new history database.

use std::sync::Arc;

use kavro_proto::crypto::{IdentityKeypair, Payload, seal, seal_legacy};

use super::SyncOptions;
use super::testing::{file_store, registered, reopen, session_in};
use crate::history::{IncomingState, MessageState};
use crate::relay::MemoryRelay;

#[tokio::test]
async fn the_same_id_under_another_key_is_another_message() {
    let relay = Arc::new(MemoryRelay::new());
    let alice = registered(&relay, "alice").await;
    let bob = registered(&relay, "bob").await;
    let bob_key = bob.session.own_key().unwrap().public_key;
    let real = Payload::new("alice", "bob", "the real one");
    // A forgery reusing the real message's id, sealed with another key,
    // arrives first: it must not make the real message a "duplicate".
    let mut forged = real.clone();
    forged.text = "a forgery".into();
    let other = IdentityKeypair::generate();
    let forged = seal(&other, &bob_key, &forged).unwrap();
    relay.inject(
        "alice",
        "bob",
        &forged.ciphertext_b64,
        &forged.ephemeral_pubkey_hex,
    );
    let genuine = seal(&alice.session.unlock().unwrap().keypair, &bob_key, &real).unwrap();
    let id = relay.inject(
        "alice",
        "bob",
        &genuine.ciphertext_b64,
        &genuine.ephemeral_pubkey_hex,
    );
    let batch = bob
        .session
        .sync_inbox(SyncOptions::default())
        .await
        .unwrap();
    assert_eq!(batch.messages.len(), 2, "{batch:?}");
    assert_eq!(batch.duplicates, 0);
    // The real one replayed under a new relay id is a duplicate.
    relay.replay(id).unwrap();
    let batch = bob
        .session
        .sync_inbox(SyncOptions::default())
        .await
        .unwrap();
    assert_eq!((batch.messages.len(), batch.duplicates), (0, 1));
}

#[tokio::test]
async fn a_legacy_replay_with_the_ignored_key_bit_flipped_is_a_duplicate() {
    let relay = Arc::new(MemoryRelay::new());
    let _alice = registered(&relay, "alice").await;
    let bob = registered(&relay, "bob").await;
    let sealed = seal_legacy(&bob.session.own_key().unwrap().public_key, "old client").unwrap();
    relay.inject(
        "alice",
        "bob",
        &sealed.ciphertext_b64,
        &sealed.ephemeral_pubkey_hex,
    );
    let first = bob
        .session
        .sync_inbox(SyncOptions::default())
        .await
        .unwrap();
    assert_eq!(first.messages.len(), 1);
    // X25519 ignores the top bit of the ephemeral key: the same ciphertext
    // with that bit flipped opens again, and is the same message.
    let mut flipped = hex::decode(&sealed.ephemeral_pubkey_hex).unwrap();
    flipped[31] ^= 0x80;
    relay.inject(
        "alice",
        "bob",
        &sealed.ciphertext_b64,
        &hex::encode(flipped),
    );
    let again = bob
        .session
        .sync_inbox(SyncOptions::default())
        .await
        .unwrap();
    assert_eq!(
        (again.messages.len(), again.duplicates),
        (0, 1),
        "{again:?}"
    );
}

#[tokio::test]
async fn a_wiped_history_does_not_take_an_old_message_again() {
    let relay = Arc::new(MemoryRelay::new());
    let alice = registered(&relay, "alice").await;
    let bob = registered(&relay, "bob").await;
    alice.session.send("bob", "read once").await.unwrap();
    let first = bob
        .session
        .sync_inbox(SyncOptions::default())
        .await
        .unwrap();
    let id = first.messages[0].message.relay_id.unwrap();
    assert_eq!(
        first.messages[0].message.state,
        MessageState::In(IncomingState::Ok)
    );

    // Bob's history is wiped (the key stays); the relay replays the message.
    let dir = bob.dir;
    bob.session.close().await;
    for suffix in ["", "-wal", "-shm"] {
        let path = dir
            .path()
            .join(format!("data/profiles/default/history.sqlite3{suffix}"));
        let _ = std::fs::remove_file(path);
    }
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    let session = session_in(dir.path(), &relay, file_store(dir.path())).await;
    relay.replay(id).unwrap();
    let batch = session.sync_inbox(SyncOptions::default()).await.unwrap();
    let replayed = &batch.messages[0].message;
    assert!(!replayed.verified, "{replayed:?}");
    assert_eq!(replayed.state, MessageState::In(IncomingState::Unverified));
    assert!(
        replayed
            .error
            .as_deref()
            .unwrap()
            .contains("may be a replay"),
        "{replayed:?}"
    );
    // A message sent after the wipe is verified as usual.
    alice.session.send("bob", "new").await.unwrap();
    let batch = session.sync_inbox(SyncOptions::default()).await.unwrap();
    assert!(batch.messages[0].message.verified);
    session.close().await;
    let alice = reopen(alice, &relay).await;
    drop(alice);
}
