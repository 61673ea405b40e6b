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
