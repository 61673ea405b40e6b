//! The core's behaviour against the in-memory relay: two (or three) people,
//! each with their own profile directories, and a relay that can misbehave.

use std::sync::Arc;
use std::time::Duration;

use kavro_proto::crypto::{IdentityKeypair, IdentityPublic, Payload, seal, seal_legacy};
use kavro_proto::strings::Password;

use super::testing::{SERVER, device, file_store, password, registered, reopen, session_in};
use super::*;
use crate::config::Profile;
use crate::history::{IncomingState, MessageState, OutgoingState};
use crate::keystore::{KeyStoreKind, Keystores};
use crate::paths::Dirs;
use crate::pinning::KeyState;
use crate::relay::{MemoryRelay, Relay as _};

fn texts(batch: &SyncBatch) -> Vec<String> {
    batch
        .messages
        .iter()
        .map(|r| r.message.text.clone().unwrap_or_default())
        .collect()
}

#[tokio::test]
async fn two_people_exchange_verified_messages() {
    let relay = Arc::new(MemoryRelay::new());
    let alice = registered(&relay, "alice").await;
    let bob = registered(&relay, "Bob").await;

    let sent = alice.session.send("bob", "hello bob").await.unwrap();
    assert_eq!(sent.to, "Bob", "the relay's spelling");
    assert_eq!(sent.state, OutgoingState::Stored);
    assert!(sent.first_use.is_some(), "first send pins Bob's key");
    assert_eq!(relay.pending_for("bob"), 1);

    let batch = bob
        .session
        .sync_inbox(SyncOptions::default())
        .await
        .unwrap();
    assert_eq!(texts(&batch), vec!["hello bob"]);
    let got = &batch.messages[0];
    assert!(got.new);
    assert!(got.message.verified);
    assert_eq!(got.message.state, MessageState::In(IncomingState::Ok));
    assert_eq!(got.message.peer.as_deref(), Some("alice"));
    assert_eq!(got.message.msg_uuid, Some(sent.msg_uuid));
    assert_eq!(batch.acked, 1);
    assert_eq!(relay.pending_for("bob"), 0, "acknowledged after storing");

    let again = bob
        .session
        .sync_inbox(SyncOptions::default())
        .await
        .unwrap();
    assert!(again.messages.is_empty());

    // And back: Bob already has Alice pinned from her message.
    let reply = bob.session.send("alice", "hi alice").await.unwrap();
    assert!(reply.first_use.is_none());
    let batch = alice
        .session
        .sync_inbox(SyncOptions::default())
        .await
        .unwrap();
    assert_eq!(texts(&batch), vec!["hi alice"]);
    assert!(batch.messages[0].message.verified);

    // Both sides keep the conversation, and the safety numbers agree.
    let history = alice.session.history("bob", 10).await.unwrap();
    assert_eq!(history.len(), 2);
    assert_eq!(history[0].state, MessageState::Out(OutgoingState::Stored));
    assert_eq!(history[1].text.as_deref(), Some("hi alice"));
    let a = alice.session.contact_keys("bob").await.unwrap();
    let b = bob.session.contact_keys("alice").await.unwrap();
    assert_eq!(a.safety_number, b.safety_number);
    assert!(a.refreshed);
    assert_eq!(Some(a.safety_number), sent.first_use);
    assert_eq!(a.contact.state, KeyState::Pinned);
}

#[tokio::test]
async fn a_substituted_key_blocks_sending_until_trusted() {
    let relay = Arc::new(MemoryRelay::new());
    let alice = registered(&relay, "alice").await;
    let bob = registered(&relay, "bob").await;
    alice.session.send("bob", "first").await.unwrap();

    let evil = IdentityKeypair::generate();
    relay.publish_as("bob", &evil.public().to_hex());
    let err = alice.session.send("bob", "second").await.unwrap_err();
    assert!(
        matches!(err, SessionError::KeyChanged { ref username } if username == "bob"),
        "{err}"
    );
    assert!(!err.to_string().contains("`kavro"), "facts only: {err}");
    // Refused every time, and the contact shows it.
    assert!(matches!(
        alice.session.send("bob", "third").await,
        Err(SessionError::KeyChanged { .. })
    ));
    let changed = alice.session.changed_contacts().await.unwrap();
    assert_eq!(changed.len(), 1);
    assert_eq!(changed[0].pending.unwrap().key, *evil.public());

    let keys = alice.session.contact_keys("bob").await.unwrap();
    let pending = keys.pending_safety_number.unwrap();
    assert_ne!(pending, keys.safety_number);
    // Bob's side (his real key) sees the old number: comparing catches it.
    let bobs = bob.session.contact_keys("alice").await.unwrap();
    assert_eq!(bobs.safety_number, keys.safety_number);

    let trusted = alice
        .session
        .trust("bob", &Compared::SafetyNumber(pending))
        .await
        .unwrap();
    assert_eq!(trusted.contact.state, KeyState::Verified);
    assert_eq!(trusted.contact.key, *evil.public());
    assert_eq!(trusted.safety_number, pending);
    alice.session.send("bob", "to the new key").await.unwrap();

    // The real Bob cannot read what went to the substituted key: it is
    // stored, acknowledged and reported, not shown as verified.
    let batch = bob
        .session
        .sync_inbox(SyncOptions::default())
        .await
        .unwrap();
    assert_eq!(batch.messages.len(), 2);
    assert!(batch.messages[0].message.verified);
    let lost = &batch.messages[1].message;
    assert_eq!(lost.state, MessageState::In(IncomingState::Undecryptable));
    assert!(!lost.verified && lost.text.is_none() && lost.ciphertext.is_some());
    assert_eq!(lost.peer.as_deref(), Some("alice"));
    assert_eq!(relay.pending_for("bob"), 0);
}

#[tokio::test]
async fn tampered_legacy_and_forged_messages_are_stored_and_reported() {
    let relay = Arc::new(MemoryRelay::new());
    let alice = registered(&relay, "alice").await;
    let bob = registered(&relay, "bob").await;
    let mallory = registered(&relay, "mallory").await;
    alice.session.send("bob", "genuine").await.unwrap();
    bob.session
        .sync_inbox(SyncOptions::default())
        .await
        .unwrap();
    let bob_key = bob.session.own_key().unwrap().public_key;

    // 1. A flipped byte: the outer box fails.
    let payload = Payload::new("alice", "bob", "tampered");
    let keypair = IdentityKeypair::generate();
    let mut sealed = seal(&keypair, &bob_key, &payload).unwrap();
    let mut bytes = kavro_proto::validate::base64_strict(&sealed.ciphertext_b64).unwrap();
    bytes[40] ^= 1;
    sealed.ciphertext_b64 = kavro_proto::validate::base64_encode(&bytes);
    relay.inject(
        "alice",
        "bob",
        &sealed.ciphertext_b64,
        &sealed.ephemeral_pubkey_hex,
    );
    // 2. A legacy message, the way libsodium clients send.
    let legacy = seal_legacy(&bob_key, "old client").unwrap();
    relay.inject(
        "alice",
        "bob",
        &legacy.ciphertext_b64,
        &legacy.ephemeral_pubkey_hex,
    );
    // 3. Mallory's key, claiming to be Alice, sent from Mallory's account.
    let mallory_keys = crate::keystore::FileStore::new(
        mallory
            .dir
            .path()
            .join("data/profiles/default/secrets.json"),
    );
    let mallory_secret = crate::keystore::SecretStore::load(
        &mallory_keys,
        &crate::keystore::AccountKey::new(
            &crate::config::ServerUrl::parse(SERVER).unwrap(),
            "mallory",
        ),
    )
    .unwrap()
    .unwrap();
    let mallory_pair = IdentityKeypair::from_secret(mallory_secret.identity);
    let forged = seal(
        &mallory_pair,
        &bob_key,
        &Payload::new("alice", "bob", "I am alice"),
    )
    .unwrap();
    relay.inject(
        "mallory",
        "bob",
        &forged.ciphertext_b64,
        &forged.ephemeral_pubkey_hex,
    );
    // 4. The same, but the relay lies that Alice's account sent it.
    let forged = seal(
        &mallory_pair,
        &bob_key,
        &Payload::new("alice", "bob", "really"),
    )
    .unwrap();
    relay.inject(
        "alice",
        "bob",
        &forged.ciphertext_b64,
        &forged.ephemeral_pubkey_hex,
    );
    // 5. An envelope addressed to someone else by name.
    let alice_pair = {
        let store = crate::keystore::FileStore::new(
            alice.dir.path().join("data/profiles/default/secrets.json"),
        );
        let secrets = crate::keystore::SecretStore::load(
            &store,
            &crate::keystore::AccountKey::new(
                &crate::config::ServerUrl::parse(SERVER).unwrap(),
                "alice",
            ),
        )
        .unwrap()
        .unwrap();
        IdentityKeypair::from_secret(secrets.identity)
    };
    let misaddressed = seal(
        &alice_pair,
        &bob_key,
        &Payload::new("alice", "carol", "for carol"),
    )
    .unwrap();
    relay.inject(
        "alice",
        "bob",
        &misaddressed.ciphertext_b64,
        &misaddressed.ephemeral_pubkey_hex,
    );

    let batch = bob
        .session
        .sync_inbox(SyncOptions::default())
        .await
        .unwrap();
    assert_eq!(batch.fetched, 5);
    assert_eq!(batch.acked, 5, "every message is acknowledged once stored");
    assert_eq!(relay.pending_for("bob"), 0);
    let states: Vec<_> = batch.messages.iter().map(|r| r.message.state).collect();
    assert_eq!(
        states,
        vec![
            MessageState::In(IncomingState::Undecryptable),
            MessageState::In(IncomingState::Unverified),
            MessageState::In(IncomingState::Unverified),
            MessageState::In(IncomingState::KeyMismatch),
            MessageState::In(IncomingState::Unverified),
        ]
    );
    assert!(batch.messages.iter().all(|r| !r.message.verified));
    let m = |i: usize| &batch.messages[i].message;
    assert!(
        m(0).error
            .as_deref()
            .unwrap()
            .contains("could not be decrypted")
    );
    assert!(m(0).ciphertext.is_some() && m(0).text.is_none());
    assert_eq!(m(1).text.as_deref(), Some("old client"));
    assert!(
        m(1).error.as_deref().unwrap().contains("legacy"),
        "{:?}",
        m(1).error
    );
    assert!(
        m(2).error
            .as_deref()
            .unwrap()
            .contains("claims to be from alice"),
        "{:?}",
        m(2).error
    );
    assert!(
        m(3).error.as_deref().unwrap().contains("pinned for alice"),
        "{:?}",
        m(3).error
    );
    assert!(
        m(4).error.as_deref().unwrap().contains("not to you"),
        "{:?}",
        m(4).error
    );

    // The forged key marked Alice as changed for Bob.
    let changed = bob.session.changed_contacts().await.unwrap();
    assert_eq!(changed.len(), 1);
    assert_eq!(changed[0].username, "alice");
    assert_eq!(changed[0].pending.unwrap().key, *mallory_pair.public());
    // Alice's genuine key still verifies.
    alice.session.send("bob", "still me").await.unwrap();
    let batch = bob
        .session
        .sync_inbox(SyncOptions::default())
        .await
        .unwrap();
    assert!(batch.messages[0].message.verified);
    // Everything but the message from Mallory's account is in the conversation with Alice.
    assert_eq!(bob.session.history("alice", 50).await.unwrap().len(), 6);
}

#[tokio::test]
async fn replays_and_unacknowledged_refetches() {
    let relay = Arc::new(MemoryRelay::new());
    let alice = registered(&relay, "alice").await;
    let bob = registered(&relay, "bob").await;
    let sent = alice.session.send("bob", "once").await.unwrap();

    let peek = SyncOptions {
        ack: false,
        ..SyncOptions::default()
    };
    let first = bob.session.sync_inbox(peek).await.unwrap();
    assert_eq!(texts(&first), vec!["once"]);
    assert!(first.messages[0].new);
    assert_eq!(
        relay.pending_for("bob"),
        1,
        "--no-ack leaves it on the relay"
    );
    let second = bob.session.sync_inbox(peek).await.unwrap();
    assert_eq!(texts(&second), vec!["once"]);
    assert!(!second.messages[0].new, "recognised, not stored again");

    // A relay replaying the message under a new id: stored once, not shown.
    relay.replay(sent.relay_id).unwrap();
    let batch = bob
        .session
        .sync_inbox(SyncOptions::default())
        .await
        .unwrap();
    assert_eq!(batch.duplicates, 1);
    assert_eq!(batch.messages.len(), 1);
    assert_eq!(batch.acked, 2);
    assert_eq!(bob.session.history("alice", 10).await.unwrap().len(), 1);
}

#[tokio::test]
async fn the_relay_going_away_between_store_and_ack_leaves_one_copy() {
    let relay = Arc::new(MemoryRelay::new());
    let alice = registered(&relay, "alice").await;
    let bob = registered(&relay, "bob").await;
    alice.session.send("bob", "kept once").await.unwrap();

    // Fetched and stored locally, then the ack is lost.
    relay.fail_acks(1);
    let first = bob.session.sync_inbox(SyncOptions::default()).await;
    let stored = bob.session.history("alice", 10).await.unwrap();
    assert_eq!(
        stored.len(),
        1,
        "stored before the ack was tried: {first:?}"
    );
    assert_eq!(relay.pending_for("bob"), 1, "not acknowledged on the relay");

    // The next sync finds it again, stores nothing new, and acknowledges it.
    let again = bob
        .session
        .sync_inbox(SyncOptions::default())
        .await
        .unwrap();
    assert_eq!(again.messages.len(), 1);
    assert!(!again.messages[0].new, "recognised, not stored twice");
    assert_eq!(relay.pending_for("bob"), 0);
    assert_eq!(bob.session.history("alice", 10).await.unwrap().len(), 1);
}

#[tokio::test]
async fn an_unreachable_relay_is_reported_and_a_lost_send_goes_out_once() {
    let relay = Arc::new(MemoryRelay::new());
    let alice = registered(&relay, "alice").await;
    let bob = registered(&relay, "bob").await;
    alice.session.send("bob", "warm-up").await.unwrap();

    relay.set_offline(true);
    let err = alice.session.send("bob", "not now").await.unwrap_err();
    assert!(matches!(err, SessionError::Unreachable { .. }), "{err}");
    assert!(err.to_string().contains("cannot reach"), "{err}");
    relay.set_offline(false);

    relay.set_rate_limited(Some(Duration::from_secs(7)));
    let err = alice.session.send("bob", "later").await.unwrap_err();
    assert!(err.to_string().contains("wait 7 s"), "{err}");
    relay.set_rate_limited(None);

    // The relay stores the message but the answer is lost: the client
    // keeps it queued, and the retry (same client_msg_id) stores nothing new.
    relay.lose_send_answers(1);
    let err = alice.session.send("bob", "exactly once").await.unwrap_err();
    assert!(matches!(err, SessionError::Queued { .. }), "{err}");
    assert!(err.is_transient());
    assert!(err.to_string().contains("queued"), "{err}");
    let pending = alice.session.history("bob", 10).await.unwrap();
    assert_eq!(
        pending.last().unwrap().state,
        MessageState::Out(OutgoingState::Pending)
    );
    let stored_before = relay.stored_count();
    let report = alice.session.flush_outbox().await.unwrap();
    assert_eq!((report.sent, report.remaining), (1, 0));
    assert_eq!(relay.stored_count(), stored_before, "no second copy");
    assert_eq!(
        alice.session.flush_outbox().await.unwrap(),
        FlushReport::default()
    );
    let sent = alice.session.history("bob", 10).await.unwrap();
    assert_eq!(
        sent.last().unwrap().state,
        MessageState::Out(OutgoingState::Stored)
    );
    let batch = bob
        .session
        .sync_inbox(SyncOptions::default())
        .await
        .unwrap();
    assert_eq!(texts(&batch), vec!["warm-up", "exactly once"]);
}

#[tokio::test]
async fn a_new_device_gets_a_new_key_and_contacts_notice() {
    let relay = Arc::new(MemoryRelay::new());
    let alice = registered(&relay, "alice").await;
    let bob = registered(&relay, "bob").await;
    alice.session.send("bob", "hi").await.unwrap();
    let old_key = bob.session.own_key().unwrap().public_key;

    let mut laptop = device(&relay).await;
    let summary = laptop.session.login("BOB", &password()).await.unwrap();
    assert!(summary.new_key);
    assert_eq!(summary.username, "bob");
    assert_ne!(summary.public_key, old_key);
    let token = laptop.session.unlock().unwrap().token;
    let info = relay.user_by_name(&token, "bob").await.unwrap();
    assert_eq!(info.devices.len(), 2);
    assert_eq!(info.devices[1].identity_pubkey, summary.public_key.to_hex());

    assert!(matches!(
        alice.session.send("bob", "which bob?").await,
        Err(SessionError::KeyChanged { .. })
    ));
    let who = bob.session.whoami().await.unwrap();
    assert!(
        !who.newest_key_is_ours,
        "the old device learns it is not the newest"
    );

    // Logging in again on the same device keeps its key.
    let mut bob = bob;
    let again = bob.session.login("bob", &password()).await.unwrap();
    assert!(!again.new_key);
    assert_eq!(again.public_key, old_key);
}

#[tokio::test]
async fn logout_forgets_the_token_and_keeps_the_key() {
    let relay = Arc::new(MemoryRelay::new());
    let mut alice = registered(&relay, "alice").await;
    registered(&relay, "bob").await;
    let token = alice.session.unlock().unwrap().token;
    let key = alice.session.own_key().unwrap().public_key;

    let out = alice.session.logout().await.unwrap();
    assert!(out.was_logged_in && out.revoke_error.is_none());
    assert!(matches!(
        relay.me(&token).await,
        Err(crate::relay::RelayError::Unauthorized(_))
    ));
    let err = alice.session.send("bob", "x").await.unwrap_err();
    assert!(matches!(err, SessionError::NotLoggedIn(_)), "{err}");
    assert!(
        matches!(&err, SessionError::NotLoggedIn(why) if why.username() == Some("alice")),
        "{err}"
    );
    assert!(!alice.session.logout().await.unwrap().was_logged_in);

    let alice = reopen(alice, &relay).await;
    let mut alice = alice;
    let back = alice.session.login("alice", &password()).await.unwrap();
    assert_eq!(back.public_key, key);
    alice.session.send("bob", "back").await.unwrap();
}

#[tokio::test]
async fn errors_say_what_to_do() {
    let relay = Arc::new(MemoryRelay::new());
    let nobody = device(&relay).await;
    let err = nobody.session.send("bob", "x").await.unwrap_err();
    assert!(
        matches!(
            err,
            SessionError::NotLoggedIn(NotLoggedIn::NoAccount { .. })
        ),
        "{err}"
    );

    let mut alice = registered(&relay, "alice").await;
    let err = alice.session.send("zed", "x").await.unwrap_err();
    assert!(matches!(err, SessionError::NoSuchUser(_)), "{err}");
    let err = alice.session.send("no spaces", "x").await.unwrap_err();
    assert!(matches!(err, SessionError::InvalidInput(_)), "{err}");
    let err = alice.session.send("alice", "").await.unwrap_err();
    assert!(matches!(err, SessionError::InvalidInput(_)), "{err}");
    let err = alice
        .session
        .register("alice2", &password(), None)
        .await
        .unwrap_err();
    assert!(matches!(err, SessionError::ProfileInUse { .. }), "{err}");
    let err = alice.session.login("bob", &password()).await.unwrap_err();
    assert!(matches!(err, SessionError::ProfileInUse { .. }), "{err}");

    let mut fresh = device(&relay).await;
    let err = fresh
        .session
        .register("alice", &password(), None)
        .await
        .unwrap_err();
    assert!(matches!(err, SessionError::UsernameTaken { .. }), "{err}");
    assert!(err.to_string().contains("already taken"), "{err}");
    let err = fresh
        .session
        .register("carol", &Password::from("weak"), None)
        .await
        .unwrap_err();
    assert!(matches!(err, SessionError::InvalidInput(_)), "{err}");
    let err = fresh
        .session
        .login("alice", &Password::from("Wr0ng-password"))
        .await
        .unwrap_err();
    assert!(matches!(err, SessionError::AuthRefused { .. }), "{err}");

    // A registered user without a published key.
    let bare = relay
        .register(&kavro_proto::api::NewAccount {
            username: "keyless".into(),
            password: password(),
            invite_code: None,
        })
        .await
        .unwrap();
    drop(bare);
    let err = alice.session.send("keyless", "x").await.unwrap_err();
    assert!(matches!(err, SessionError::NoUsableKey { .. }), "{err}");
}

#[tokio::test]
async fn keyring_profiles_never_fall_back_to_a_new_identity() {
    let relay = Arc::new(MemoryRelay::new());
    let dir = tempfile::tempdir().unwrap();
    let secrets = dir.path().join("data/profiles/default/secrets.json");
    let keyring = keyring_core::mock::Store::new().unwrap();
    let stores = Keystores::with_keyring_store(secrets.clone(), None, keyring);
    let mut session = session_in(dir.path(), &relay, stores.clone()).await;
    let summary = session.register("alice", &password(), None).await.unwrap();
    assert_eq!(summary.key_store, KeyStoreKind::Keyring);
    assert!(summary.notice.is_none());
    assert!(!secrets.exists(), "nothing in the file");
    session.whoami().await.unwrap();
    session.close().await;

    // The same profile where no keyring works: a clear error, for login too.
    let mut gone = session_in(
        dir.path(),
        &relay,
        Keystores::without_keyring(secrets.clone(), None),
    )
    .await;
    let err = gone.whoami().await.unwrap_err();
    assert!(matches!(err, SessionError::Keystore { .. }), "{err}");
    assert!(
        err.to_string().contains("will not create a new identity"),
        "{err}"
    );
    let err = gone.login("alice", &password()).await.unwrap_err();
    assert!(matches!(err, SessionError::Keystore { .. }), "{err}");
    assert!(!secrets.exists());
    let token = relay
        .login(&kavro_proto::api::Credentials {
            username: "alice".into(),
            password: password(),
        })
        .await
        .unwrap();
    assert_eq!(
        relay
            .user_by_name(&token, "alice")
            .await
            .unwrap()
            .devices
            .len(),
        1
    );

    // Without a keyring, a new profile falls back to the file and says so.
    let other = tempfile::tempdir().unwrap();
    let mut fallback = session_in(
        other.path(),
        &relay,
        Keystores::without_keyring(
            other.path().join("data/profiles/default/secrets.json"),
            None,
        ),
    )
    .await;
    let summary = fallback.register("bob", &password(), None).await.unwrap();
    assert_eq!(summary.key_store, KeyStoreKind::File);
    assert!(summary.notice.unwrap().contains("no usable OS keyring"));
}

#[tokio::test]
async fn waiting_for_delivery() {
    let relay = Arc::new(MemoryRelay::new());
    let alice = registered(&relay, "alice").await;
    let bob = registered(&relay, "bob").await;
    let sent = alice.session.send("bob", "ack me").await.unwrap();
    let later = alice.session.send("bob", "and me").await.unwrap();
    assert_eq!(
        alice
            .session
            .wait_for_delivery(sent.local_id, sent.relay_id, Duration::ZERO)
            .await
            .unwrap(),
        DeliveryOutcome::TimedOut
    );
    let both = [
        (sent.local_id, sent.relay_id),
        (later.local_id, later.relay_id),
    ];
    assert!(
        alice
            .session
            .check_deliveries(&both)
            .await
            .unwrap()
            .is_empty(),
        "nothing delivered yet"
    );
    bob.session
        .sync_inbox(SyncOptions::default())
        .await
        .unwrap();
    let changed = alice.session.check_deliveries(&both[1..]).await.unwrap();
    assert!(
        matches!(changed[..], [(id, DeliveryOutcome::Delivered(Some(_)))] if id == later.local_id),
        "{changed:?}"
    );
    let outcome = alice
        .session
        .wait_for_delivery(sent.local_id, sent.relay_id, Duration::from_secs(5))
        .await
        .unwrap();
    assert!(
        matches!(outcome, DeliveryOutcome::Delivered(Some(_))),
        "{outcome:?}"
    );
    let stored = alice
        .session
        .history
        .message(sent.local_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.state, MessageState::Out(OutgoingState::Delivered));
}

#[tokio::test]
async fn first_contact_by_message_pins_the_sender() {
    let relay = Arc::new(MemoryRelay::new());
    let alice = registered(&relay, "alice").await;
    let bob = registered(&relay, "bob").await;
    alice.session.send("bob", "hello stranger").await.unwrap();
    assert!(bob.session.contacts().await.unwrap().is_empty());
    bob.session
        .sync_inbox(SyncOptions::default())
        .await
        .unwrap();
    let contacts = bob.session.contacts().await.unwrap();
    assert_eq!(contacts.len(), 1);
    assert_eq!(contacts[0].username, "alice");
    assert_eq!(contacts[0].state, KeyState::Pinned);
    assert_eq!(contacts[0].key, alice.session.own_key().unwrap().public_key);
    let alice_key = alice.session.own_key().unwrap().public_key;
    let trusted = bob
        .session
        .trust("alice", &Compared::KeyFingerprint(alice_key.fingerprint()))
        .await
        .unwrap();
    assert_eq!(trusted.contact.state, KeyState::Verified);
    assert!(trusted.replaced.is_none());
    // Trusting someone never seen looks them up and pins them verified.
    let carol = registered(&relay, "carol").await;
    let carol_key = carol.session.own_key().unwrap().public_key;
    let outcome = bob
        .session
        .trust("carol", &Compared::Key(carol_key))
        .await
        .unwrap();
    assert_eq!(
        outcome.contact.key,
        carol.session.own_key().unwrap().public_key
    );
    let _: IdentityPublic = outcome.contact.key;
}

#[tokio::test]
async fn a_profile_belongs_to_one_server_and_one_key_store() {
    let relay = Arc::new(MemoryRelay::new());
    let alice = registered(&relay, "alice").await;
    let dir = alice.dir.path().to_owned();
    alice.session.close().await;

    // Another relay named on the command line: not this profile's account.
    let dirs = Dirs::new(dir.join("config"), dir.join("data"));
    let elsewhere = Profile::load(&dirs, "default", Some("https://relay.example.org")).unwrap();
    let relay_dyn: Arc<dyn crate::relay::Relay> = relay.clone();
    let mut session = Session::open(elsewhere, relay_dyn, file_store(&dir))
        .await
        .unwrap();
    let err = session.send("bob", "x").await.unwrap_err();
    assert!(
        matches!(
            err,
            SessionError::NotLoggedIn(NotLoggedIn::OtherServer { .. })
        ),
        "{err}"
    );
    let err = session.login("alice", &password()).await.unwrap_err();
    assert!(matches!(err, SessionError::ProfileInUse { .. }), "{err}");
    session.close().await;

    // KAVRO_KEY_STORE asking for another store than the one recorded.
    let session = session_in(
        &dir,
        &relay,
        Keystores::without_keyring(
            dir.join("data/profiles/default/secrets.json"),
            Some(KeyStoreKind::Keyring),
        ),
    )
    .await;
    let err = session.whoami().await.unwrap_err();
    assert!(err.to_string().contains("KAVRO_KEY_STORE=keyring"), "{err}");
}

#[tokio::test]
async fn sessions_can_live_on_a_worker_task() {
    // The chat app drives a session from a network task: it and its
    // futures must be Send (and the session shareable).
    fn assert_send<T: Send>(_: &T) {}
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Session>();
    let relay = Arc::new(MemoryRelay::new());
    let alice = registered(&relay, "alice").await;
    let sync = alice.session.sync_inbox(SyncOptions::default());
    assert_send(&sync);
    drop(sync);
    let send = alice.session.send("alice", "note to self");
    assert_send(&send);
    send.await.unwrap();
    let session = Arc::new(alice.session);
    let task = tokio::spawn({
        let session = session.clone();
        async move { session.sync_inbox(SyncOptions::default()).await }
    });
    let batch = task.await.unwrap().unwrap();
    assert_eq!(texts(&batch), vec!["note to self"]);
    assert!(batch.messages[0].message.verified);
}
