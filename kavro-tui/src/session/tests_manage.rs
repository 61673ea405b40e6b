//! Account management against the in-memory relay: password change, log
//! out everywhere, listing and retiring keys, deleting the account.

use std::sync::Arc;

use kavro_proto::strings::Password;

use super::testing::{device, password, registered};
use super::{NotLoggedIn, SessionError, SyncOptions};
use crate::relay::{MemoryRelay, Relay as _};

/// Alice on two devices (two sessions, two keys; the second is the newest).
async fn alice_twice(relay: &Arc<MemoryRelay>) -> (super::testing::Device, super::testing::Device) {
    let first = registered(relay, "alice").await;
    let mut second = device(relay).await;
    second.session.login("alice", &password()).await.unwrap();
    (first, second)
}

#[tokio::test]
async fn a_password_change_revokes_the_other_sessions() {
    let relay = Arc::new(MemoryRelay::new());
    let (first, second) = alice_twice(&relay).await;
    let new = Password::from("N3w-password!");
    let err = first
        .session
        .change_password(&Password::from("Wr0ng-password"), &new)
        .await
        .unwrap_err();
    assert!(
        matches!(err, SessionError::AuthRefused { relogin: None, .. }),
        "{err}"
    );
    let err = first
        .session
        .change_password(&password(), &Password::from("weak"))
        .await
        .unwrap_err();
    assert!(matches!(err, SessionError::InvalidInput(_)), "{err}");

    first
        .session
        .change_password(&password(), &new)
        .await
        .unwrap();
    // This device keeps working with its new token; the other is refused.
    first.session.whoami().await.unwrap();
    let err = second.session.whoami().await.unwrap_err();
    assert!(matches!(err, SessionError::AuthRefused { .. }), "{err}");
    let mut again = device(&relay).await;
    assert!(again.session.login("alice", &password()).await.is_err());
    again.session.login("alice", &new).await.unwrap();
}

#[tokio::test]
async fn logging_out_everywhere_ends_every_session() {
    let relay = Arc::new(MemoryRelay::new());
    let (mut first, second) = alice_twice(&relay).await;
    assert_eq!(first.session.logout_everywhere().await.unwrap(), "alice");
    let err = first.session.whoami().await.unwrap_err();
    assert!(
        matches!(
            err,
            SessionError::NotLoggedIn(NotLoggedIn::LoggedOut { .. })
        ),
        "{err}"
    );
    let err = second.session.whoami().await.unwrap_err();
    assert!(matches!(err, SessionError::AuthRefused { .. }), "{err}");
}

#[tokio::test]
async fn retiring_an_old_key_is_a_key_change_for_contacts() {
    let relay = Arc::new(MemoryRelay::new());
    let (first, second) = alice_twice(&relay).await;
    let bob = registered(&relay, "bob").await;
    // Bob pins Alice's newest key: the second device's.
    bob.session.send("alice", "hi").await.unwrap();

    let keys = first.session.own_keys().await.unwrap();
    assert_eq!(keys.len(), 2);
    assert!(keys[0].current && !keys[1].current, "{keys:?}");
    assert_eq!(
        keys[0].device_name.as_deref(),
        Some("kavro"),
        "shown to the owner"
    );
    let err = first.session.retire_key(keys[0].id).await.unwrap_err();
    assert!(err.to_string().contains("this device uses"), "{err}");
    let err = first
        .session
        .retire_key(kavro_proto::DeviceId(9_999))
        .await
        .unwrap_err();
    assert!(matches!(err, SessionError::InvalidInput(_)), "{err}");

    let retired = first.session.retire_key(keys[1].id).await.unwrap();
    assert_eq!(retired, second.session.own_key().unwrap().public_key);
    assert_eq!(first.session.own_keys().await.unwrap().len(), 1);
    // Bob now sees another key for Alice: a key change.
    let err = bob.session.send("alice", "again").await.unwrap_err();
    assert!(matches!(err, SessionError::KeyChanged { .. }), "{err}");
    // The retired key cannot be published again.
    let token = second.session.unlock().unwrap().token;
    let republish = relay
        .publish_key(
            &token,
            &kavro_proto::api::PublishKey {
                identity_pubkey: retired.to_hex().into(),
                device_name: None,
            },
        )
        .await;
    assert!(
        matches!(
            republish,
            Err(crate::relay::RelayError::Rejected { status: 409, .. })
        ),
        "{republish:?}"
    );
}

#[tokio::test]
async fn a_deleted_account_leaves_nothing_usable_behind() {
    let relay = Arc::new(MemoryRelay::new());
    let mut alice = registered(&relay, "alice").await;
    let bob = registered(&relay, "bob").await;
    bob.session.send("alice", "queued for alice").await.unwrap();
    assert_eq!(relay.pending_for("alice"), 1);
    let err = alice
        .session
        .delete_account(&Password::from("Wr0ng-password"))
        .await
        .unwrap_err();
    assert!(matches!(err, SessionError::AuthRefused { .. }), "{err}");

    let history = alice.session.delete_account(&password()).await.unwrap();
    assert!(history.ends_with("history.sqlite3"), "{history}");
    // Local secrets and the profile's account are gone.
    let secrets = alice.dir.path().join("data/profiles/default/secrets.json");
    assert!(!secrets.exists());
    let err = alice
        .session
        .sync_inbox(SyncOptions::default())
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            SessionError::NotLoggedIn(NotLoggedIn::NoAccount { .. })
        ),
        "{err}"
    );
    // On the relay: no user, nothing queued, the name stays reserved.
    assert!(matches!(
        bob.session.send("alice", "x").await,
        Err(SessionError::NoSuchUser(_))
    ));
    assert_eq!(
        relay.stored_count(),
        0,
        "the message queued for alice is gone"
    );
    let mut thief = device(&relay).await;
    assert!(matches!(
        thief.session.register("alice", &password(), None).await,
        Err(SessionError::UsernameTaken { .. })
    ));
}
