//! What a short command does not ask the relay every time: the device
//! session token is reused from `v2_session_cache` (and renewed when the
//! relay refuses it), and key packages are counted after a Welcome or once
//! an hour, not on every sync.
#![allow(clippy::unwrap_used)]

use chrono::{TimeDelta, Utc};
use openmls_basic_credential::SignatureKeyPair;

use super::tests::{Device, relay, root};
use super::{SUITE, V2Relay, V2Session};
use crate::mls::MlsStore;
use crate::mls::session_cache::{self, CachedToken};

/// The installation's key pair, again (openmls' type is not `Clone`).
fn same_signer(session: &V2Session) -> SignatureKeyPair {
    serde_json::from_value(serde_json::to_value(&session.signer).unwrap()).unwrap()
}

/// Closes `device`'s session and opens the installation again, as the next
/// command does.
async fn reopen(base: &str, device: Device) -> Device {
    let Device { session, dir } = device;
    let signer = same_signer(&session);
    let account = session.account.as_ref().unwrap().duplicate();
    session.close().await;
    let store = MlsStore::open(&dir.path().join("mls.db")).await.unwrap();
    let session = V2Session::open(V2Relay::for_tests(base), store, signer, &account)
        .await
        .unwrap();
    Device { session, dir }
}

async fn cache(device: &Device, token: &str, expires_in: TimeDelta) {
    let mut conn = device.session.store.begin().await.unwrap();
    session_cache::save_device_token(
        &mut conn,
        &CachedToken {
            device_id: device.device_id(),
            token: token.to_owned(),
            expires_at: Utc::now() + expires_in,
        },
    )
    .await
    .unwrap();
    conn.commit().await.unwrap();
}

async fn cached(device: &Device) -> Option<CachedToken> {
    let mut conn = device.session.store.begin().await.unwrap();
    session_cache::device_token(&mut conn).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_next_command_reuses_the_device_session_and_renews_a_refused_one() {
    let Some(s) = relay().await else { return };
    let alice = root(&s, "alice").await;
    let first = alice.session.token.expose().to_owned();
    assert_eq!(
        cached(&alice).await.unwrap().token,
        first,
        "kept for the next command"
    );

    // The next command uses it without asking the relay.
    let mut alice = reopen(&s.base, alice).await;
    assert!(alice.session.token_from_cache);
    assert_eq!(alice.session.token.expose(), first);
    alice.sync().await.unwrap();

    // One the relay refuses (its keys changed, say) is replaced, once, and
    // the command goes on.
    cache(&alice, "not-a-token", TimeDelta::hours(1)).await;
    let mut alice = reopen(&s.base, alice).await;
    assert_eq!(alice.session.token.expose(), "not-a-token");
    alice.sync().await.unwrap();
    assert!(!alice.session.token_from_cache);
    let renewed = cached(&alice).await.unwrap().token;
    assert_ne!(renewed, "not-a-token");
    assert_eq!(alice.session.token.expose(), renewed);
    // The device list renews the same way (it is the first call of a 1:1 send).
    cache(&alice, "not-a-token", TimeDelta::hours(1)).await;
    let mut alice = reopen(&s.base, alice).await;
    assert_eq!(alice.devices("alice").await.unwrap().len(), 1);

    // A token about to expire, or issued for another device, is not used.
    cache(&alice, "nearly-expired", TimeDelta::minutes(2)).await;
    let alice = reopen(&s.base, alice).await;
    assert!(!alice.session.token_from_cache);
    assert_ne!(alice.session.token.expose(), "nearly-expired");
    {
        let mut conn = alice.session.store.begin().await.unwrap();
        session_cache::save_device_token(
            &mut conn,
            &CachedToken {
                device_id: kavro_proto::v2::MlsDeviceId(alice.device_id().0 + 1000),
                token: "another-device".to_owned(),
                expires_at: Utc::now() + TimeDelta::hours(1),
            },
        )
        .await
        .unwrap();
        conn.commit().await.unwrap();
    }
    let alice = reopen(&s.base, alice).await;
    assert!(!alice.session.token_from_cache);

    // A token the relay refuses is not retried forever: a fresh session that
    // is refused too (a revoked device) is the caller's error.
    let account = alice.session.account.as_ref().unwrap().duplicate();
    alice
        .session
        .relay
        .revoke_device(&account, alice.device_id())
        .await
        .unwrap();
    let mut alice = alice;
    assert!(alice.sync().await.is_err(), "a revoked device is refused");
}

async fn remaining(device: &Device) -> u32 {
    device
        .session
        .relay
        .key_package_count(&device.session.token, device.device_id(), u16::from(SUITE))
        .await
        .unwrap()
        .remaining
}

/// Claims `bob`'s classic key packages (as `by`) until `left` remain.
async fn drain(by: &Device, bob: &Device, left: u32) {
    while remaining(bob).await > left {
        by.session
            .relay
            .claim_key_packages(&by.session.token, "bob", u16::from(SUITE), None)
            .await
            .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_packages_are_counted_after_a_welcome_or_after_an_hour() {
    let Some(s) = relay().await else { return };
    let mut alice = root(&s, "alice").await;
    let mut bob = root(&s, "bob").await;
    assert_eq!(remaining(&bob).await, super::KEY_PACKAGE_TARGET);

    // Claims that bring no Welcome: the next sync does not count.
    drain(&alice, &bob, 5).await;
    bob.sync().await.unwrap();
    assert_eq!(remaining(&bob).await, 5, "counted less than an hour ago");

    // An hour later it does, and tops up.
    {
        let mut conn = bob.session.store.begin().await.unwrap();
        session_cache::set_key_packages_counted_at(&mut conn, Utc::now() - TimeDelta::minutes(61))
            .await
            .unwrap();
        conn.commit().await.unwrap();
    }
    bob.sync().await.unwrap();
    assert_eq!(remaining(&bob).await, super::KEY_PACKAGE_TARGET);

    // A Welcome (alice added bob, with one of his packages) makes the next
    // sync count at once.
    drain(&alice, &bob, 5).await;
    alice
        .create_group(Some("team"), &["bob".into()])
        .await
        .unwrap();
    assert_eq!(remaining(&bob).await, 4);
    bob.sync().await.unwrap();
    assert_eq!(remaining(&bob).await, super::KEY_PACKAGE_TARGET);
    assert_eq!(
        bob.conversations().await.unwrap().len(),
        1,
        "and bob joined"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approving_a_new_device_takes_no_package_of_the_other_devices() {
    let Some(s) = relay().await else { return };
    let mut alice = root(&s, "alice").await;
    let laptop = super::tests::linked(&s, &mut alice).await;
    let mut bob = root(&s, "bob").await;
    bob.create_group(Some("one"), &["alice".into()])
        .await
        .unwrap();
    bob.create_group(Some("two"), &["alice".into()])
        .await
        .unwrap();
    alice.sync().await.unwrap();
    let before = (remaining(&alice).await, remaining(&laptop).await);

    // A third installation, approved by alice's first device: added to both
    // conversations with its own packages only.
    let phone = super::tests::linked(&s, &mut alice).await;
    assert_eq!(
        (remaining(&alice).await, remaining(&laptop).await),
        before,
        "the approving device and the laptop keep their packages"
    );
    let mut phone = phone;
    phone.sync().await.unwrap();
    assert_eq!(phone.conversations().await.unwrap().len(), 2);
}
