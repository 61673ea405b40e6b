//! Trust is bound to what the user compared: a relay that shows another key
//! between `fingerprint` and `trust` does not get it verified.

use std::sync::Arc;

use kavro_proto::crypto::{IdentityKeypair, SafetyNumber};

use super::testing::registered;
use super::{Compared, SessionError};
use crate::pinning::KeyState;
use crate::relay::MemoryRelay;

#[tokio::test]
async fn a_key_swapped_after_the_number_was_shown_is_not_trusted() {
    let relay = Arc::new(MemoryRelay::new());
    let alice = registered(&relay, "alice").await;
    let bob = registered(&relay, "bob").await;
    alice.session.send("bob", "first").await.unwrap();

    // Bob's key changes (a new device, or the relay); Alice reads the number.
    let second = IdentityKeypair::generate();
    relay.publish_as("bob", &second.public().to_hex());
    let shown = alice.session.contact_keys("bob").await.unwrap();
    let number = shown.pending_safety_number.unwrap();
    let fingerprint = second.public().fingerprint();

    // Before she runs `trust`, the relay shows a third key, which Alice's
    // client records as the pending one.
    let third = IdentityKeypair::generate();
    relay.publish_as("bob", &third.public().to_hex());
    alice.session.contact_keys("bob").await.unwrap();

    for compared in [
        Compared::SafetyNumber(number),
        Compared::KeyFingerprint(fingerprint),
        Compared::Key(*second.public()),
    ] {
        let err = alice.session.trust("bob", &compared).await.unwrap_err();
        assert!(
            matches!(&err, SessionError::NotTheKeyCompared { username } if username == "bob"),
            "{err}"
        );
    }
    let contact = alice.session.contact("bob").await.unwrap().unwrap();
    assert_eq!(contact.state, KeyState::Changed, "nothing was trusted");
    assert_eq!(contact.pending.unwrap().key, *third.public());

    // Comparing the number shown now, for the key now pending, works.
    let now = alice.session.contact_keys("bob").await.unwrap();
    let trusted = alice
        .session
        .trust(
            "bob",
            &Compared::SafetyNumber(now.pending_safety_number.unwrap()),
        )
        .await
        .unwrap();
    assert_eq!(trusted.contact.key, *third.public());
    assert_eq!(trusted.contact.state, KeyState::Verified);
    drop(bob);
}

#[tokio::test]
async fn verifying_a_pinned_key_needs_its_number_too() {
    let relay = Arc::new(MemoryRelay::new());
    let alice = registered(&relay, "alice").await;
    let bob = registered(&relay, "bob").await;
    alice.session.send("bob", "hi").await.unwrap();
    let bob_key = bob.session.own_key().unwrap().public_key;
    let me = alice.session.own_key().unwrap();
    // A number for some other key is refused; the right one is accepted.
    let other = IdentityKeypair::generate();
    let wrong = SafetyNumber::compute("alice", &me.public_key, "bob", other.public());
    assert!(matches!(
        alice
            .session
            .trust("bob", &Compared::SafetyNumber(wrong))
            .await,
        Err(SessionError::NotTheKeyCompared { .. })
    ));
    let right = SafetyNumber::compute("alice", &me.public_key, "bob", &bob_key);
    let trusted = alice
        .session
        .trust("bob", &Compared::SafetyNumber(right))
        .await
        .unwrap();
    assert_eq!(trusted.contact.state, KeyState::Verified);
    // What the CLI accepts as typed.
    assert_eq!(
        Compared::parse(&right.to_string()),
        Some(Compared::SafetyNumber(right))
    );
    assert_eq!(
        Compared::parse(&bob_key.fingerprint().to_string()),
        Some(Compared::KeyFingerprint(bob_key.fingerprint()))
    );
    assert_eq!(Compared::parse("yes"), None);
}

#[tokio::test]
async fn first_contact_pins_only_the_newest_key() {
    let relay = Arc::new(MemoryRelay::new());
    let alice = registered(&relay, "alice").await;
    let bob = registered(&relay, "bob").await;
    // Bob's account gets a newer key (another device); a message made with
    // his older, still listed key reaches Alice, who never talked to him.
    let newer = IdentityKeypair::generate();
    relay.publish_as("bob", &newer.public().to_hex());
    let old = bob.session.unlock().unwrap().keypair;
    let alice_key = alice.session.own_key().unwrap().public_key;
    let sealed = kavro_proto::crypto::seal(
        &old,
        &alice_key,
        &kavro_proto::crypto::Payload::new("bob", "alice", "from the old device"),
    )
    .unwrap();
    relay.inject(
        "bob",
        "alice",
        &sealed.ciphertext_b64,
        &sealed.ephemeral_pubkey_hex,
    );
    let batch = alice
        .session
        .sync_inbox(super::SyncOptions::default())
        .await
        .unwrap();
    let message = &batch.messages[0].message;
    assert!(!message.verified, "{message:?}");
    assert!(
        message.error.as_deref().unwrap().contains("not the newest"),
        "{message:?}"
    );
    assert!(
        alice.session.contact("bob").await.unwrap().is_none(),
        "nothing pinned"
    );
}

#[tokio::test]
async fn pinned_and_verified_are_two_marks_and_legacy_is_apart() {
    use crate::history::{LegacyPolicy, SenderMark};
    let relay = Arc::new(MemoryRelay::new());
    let alice = registered(&relay, "alice").await;
    let bob = registered(&relay, "bob").await;
    let carol = registered(&relay, "carol").await;
    alice.session.send("bob", "hello").await.unwrap();
    let batch = bob
        .session
        .sync_inbox(super::SyncOptions::default())
        .await
        .unwrap();
    let got = &batch.messages[0].message;
    assert_eq!(
        got.sender_mark(),
        Some(SenderMark::Pinned),
        "not compared yet"
    );

    // After comparing, the same message reads as verified.
    let alice_key = alice.session.own_key().unwrap().public_key;
    bob.session
        .trust("alice", &Compared::KeyFingerprint(alice_key.fingerprint()))
        .await
        .unwrap();
    let history = bob.session.history("alice", 10).await.unwrap();
    assert_eq!(history[0].sender_mark(), Some(SenderMark::Verified));

    // Legacy messages: shown apart; refused per contact, then by default.
    let bob_key = bob.session.own_key().unwrap().public_key;
    let legacy = |from: &str, text: &str| {
        let sealed = kavro_proto::crypto::seal_legacy(&bob_key, text).unwrap();
        relay.inject(
            from,
            "bob",
            &sealed.ciphertext_b64,
            &sealed.ephemeral_pubkey_hex,
        );
    };
    let sync = || async {
        bob.session
            .sync_inbox(super::SyncOptions::default())
            .await
            .unwrap()
            .messages
            .into_iter()
            .map(|r| (r.message.sender_mark(), r.message.text))
            .collect::<Vec<_>>()
    };
    legacy("alice", "old client");
    assert_eq!(
        sync().await,
        vec![(Some(SenderMark::Legacy), Some("old client".to_owned()))]
    );
    bob.session
        .set_legacy_policy(Some("Alice"), LegacyPolicy::Refuse)
        .await
        .unwrap();
    legacy("alice", "refused now");
    legacy("carol", "carol's old client");
    assert_eq!(
        sync().await,
        vec![
            (Some(SenderMark::Refused), None),
            (
                Some(SenderMark::Legacy),
                Some("carol's old client".to_owned())
            ),
        ]
    );
    bob.session
        .set_legacy_policy(None, LegacyPolicy::Refuse)
        .await
        .unwrap();
    legacy("carol", "refused by default");
    assert_eq!(sync().await, vec![(Some(SenderMark::Refused), None)]);
    assert_eq!(
        bob.session.legacy_policies().await.unwrap(),
        vec![
            (None, LegacyPolicy::Refuse),
            (Some("alice".to_owned()), LegacyPolicy::Refuse)
        ]
    );
    assert!(matches!(
        bob.session
            .set_legacy_policy(Some("no spaces"), LegacyPolicy::Allow)
            .await,
        Err(SessionError::InvalidInput(_))
    ));
    drop(carol);
}
