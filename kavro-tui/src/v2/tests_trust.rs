//! The 1:1 rule and device trust against a real relay in this process, and
//! a relay that lies: devices with forged links and key packages planted
//! straight into the relay's store (what a compromised relay can serve).
#![allow(clippy::unwrap_used)]

use chrono::Utc;
use kavro_proto::v2::MlsDeviceId;
use kavro_server::store::v2::{NewDevice, NewKeyPackage};
use openmls::prelude::KeyPackage;
use openmls::prelude::tls_codec::Serialize as _;
use openmls_basic_credential::SignatureKeyPair;

use super::direct::direct_group_id;
use super::groups::Change;
use super::test_relay::TestServer;
use super::tests::{Device, linked, relay, root, texts};
use super::{SUITE, V2Error, credential, fingerprint, new_signer};
use crate::mls::MlsStore;

/// A key package for `signer` under `name`'s credential, as an attacker
/// holding `signer` makes it.
async fn key_package(name: &str, signer: &SignatureKeyPair) -> (Vec<u8>, KeyPackage) {
    let dir = tempfile::tempdir().unwrap();
    let store = MlsStore::open(&dir.path().join("attacker.db"))
        .await
        .unwrap();
    let bundle = KeyPackage::builder()
        .build(SUITE, store.provider(), signer, credential(name, signer))
        .unwrap();
    let package = bundle.key_package().clone();
    (package.tls_serialize_detached().unwrap(), package)
}

/// The relay plants a device in `owner`'s account, linked by `signer` with
/// a signature that is not one, and hands out a key package for it.
async fn plant_device(
    s: &TestServer,
    owner: &Device,
    link: Option<MlsDeviceId>,
) -> (MlsDeviceId, SignatureKeyPair, KeyPackage) {
    let attacker = new_signer().unwrap();
    let id = s
        .state
        .v2
        .store
        .add_device(NewDevice {
            user: owner.device.user_id,
            signature_key: attacker.public(),
            link: link.map(|signer| (signer, &[7u8; 64][..])),
            now: Utc::now(),
        })
        .await
        .unwrap();
    let (bytes, package) = key_package(owner.username(), &attacker).await;
    plant_package(s, id, bytes).await;
    (id, attacker, package)
}

async fn plant_package(s: &TestServer, device: MlsDeviceId, bytes: Vec<u8>) {
    s.state
        .v2
        .store
        .add_key_packages(
            device,
            kavro_proto::v2::suites::CLASSIC,
            &[NewKeyPackage {
                bytes,
                not_after: Utc::now() + chrono::Duration::days(1),
            }],
            None,
            1_000,
            Utc::now(),
        )
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_sides_start_the_chat_at_once_and_get_one_group() {
    let Some(s) = relay().await else { return };
    let mut alice = root(&s, "alice").await;
    let mut laptop = linked(&s, &mut alice).await;
    let mut bob = root(&s, "bob").await;
    // Three devices of two accounts start the 1:1 chat at the same moment.
    let (a, l, b) = tokio::join!(
        alice.direct("bob"),
        laptop.direct("bob"),
        bob.direct("alice")
    );
    let (a, l, b) = (a.unwrap(), l.unwrap(), b.unwrap());
    assert_eq!(a, b);
    assert_eq!(a, l);
    assert_eq!(a, direct_group_id(alice.device.user_id, bob.device.user_id));
    // One conversation each, all three devices in it, and it works.
    for device in [&mut alice, &mut laptop, &mut bob] {
        device.sync().await.unwrap();
        let listed = device.conversations().await.unwrap();
        assert_eq!(listed.len(), 1, "{listed:?}");
        assert_eq!(listed[0].devices, 3);
    }
    bob.send(&b, "one chat").await.unwrap();
    assert_eq!(texts(&alice.sync().await.unwrap()), vec!["bob: one chat"]);
    assert_eq!(texts(&laptop.sync().await.unwrap()), vec!["bob: one chat"]);
    // A group with one member and no name is that same chat.
    assert_eq!(alice.create_group(None, &["bob".into()]).await.unwrap(), a);
    assert!(matches!(
        alice.direct("alice").await,
        Err(V2Error::Refused(_))
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_with_a_forged_link_is_never_added() {
    let Some(s) = relay().await else { return };
    let mut alice = root(&s, "alice").await;
    let bob = root(&s, "bob").await;
    alice.direct("bob").await.unwrap();
    let (forged, _, _) = plant_device(&s, &bob, Some(bob.device_id())).await;
    // The relay lists it and hands out its key package: refused by name.
    let err = alice
        .create_group(Some("team"), &["bob".into()])
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains(&format!(
            "bob's device {forged} is not of a device in the account's chain"
        )),
        "{err}"
    );
    assert!(alice.find("#team").await.is_err(), "nothing was created");
    let chain = alice.checked_devices("bob").await.unwrap();
    assert!(chain.devices.iter().all(|d| d.id != forged));
    assert_eq!(
        alice.conversations().await.unwrap()[0].devices,
        2,
        "the 1:1 chat did not grow"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_package_not_made_with_the_device_key_is_refused() {
    let Some(s) = relay().await else { return };
    let mut alice = root(&s, "alice").await;
    // Carol's root device is genuine, but it has no key packages of its own:
    // the relay hands out one that an attacker made under carol's name.
    let (_, carol_id) = s.register("carol").await;
    let carol_key = new_signer().unwrap();
    let carol_device = s
        .state
        .v2
        .store
        .add_device(NewDevice {
            user: kavro_proto::UserId(carol_id),
            signature_key: carol_key.public(),
            link: None,
            now: Utc::now(),
        })
        .await
        .unwrap();
    let attacker = new_signer().unwrap();
    let (bytes, _) = key_package("carol", &attacker).await;
    plant_package(&s, carol_device, bytes).await;
    let err = alice.direct("carol").await.unwrap_err();
    assert!(
        err.to_string()
            .contains("is signed by another key than the device's"),
        "{err}"
    );
    // The relay refuses such a package itself when a device uploads it.
    let (status, body) = s
        .post(
            &format!("/v2/devices/{}/key-packages", alice.device_id()),
            Some(alice.token.expose()),
            serde_json::json!({
                "key_packages": [kavro_proto::validate::base64_encode(
                    &key_package("alice", &attacker).await.0
                )],
            }),
        )
        .await;
    assert_eq!(status.as_u16(), 422, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_that_adds_an_outsider_is_refused_by_the_others() {
    let Some(s) = relay().await else { return };
    let mut alice = root(&s, "alice").await;
    let mut bob = root(&s, "bob").await;
    let chat = alice.direct("bob").await.unwrap();
    bob.sync().await.unwrap();
    let before = alice.epoch_state(&chat).0;
    // A compromised bob client adds a device that is outside bob's chain.
    let (forged, attacker, package) = plant_device(&s, &bob, Some(bob.device_id())).await;
    bob.commit_change(
        &chat,
        Change::Add(vec![(forged, package)]),
        "bob added a device".into(),
    )
    .await
    .unwrap();
    bob.send(&chat, "can the planted device read this?")
        .await
        .unwrap();
    let report = alice.sync().await.unwrap();
    assert!(report.received.is_empty(), "{report:?}");
    assert_eq!(alice.epoch_state(&chat).0, before, "alice did not follow");
    let lines = alice.history(&chat, 20).await.unwrap();
    let refused = lines
        .iter()
        .find(|l| l.body.starts_with("refused a change"))
        .unwrap();
    assert!(
        refused.body.contains(&format!(
            "bob's device {} is outside bob's chain",
            fingerprint(attacker.public())
        )),
        "{}",
        refused.body
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_device_is_announced_and_the_safety_number_covers_it() {
    let Some(s) = relay().await else { return };
    let mut alice = root(&s, "alice").await;
    let mut bob = root(&s, "bob").await;
    let chat = alice.direct("bob").await.unwrap();
    bob.sync().await.unwrap();
    let number = alice.safety_number("bob").await.unwrap();
    assert_eq!(
        number.safety_number,
        bob.safety_number("alice").await.unwrap().safety_number,
        "both sides show the same number"
    );
    assert!(!number.verified);

    let phone = linked(&s, &mut bob).await;
    let fp = fingerprint(phone.signer.public());
    alice.sync().await.unwrap();
    let lines: Vec<String> = alice
        .history(&chat, 20)
        .await
        .unwrap()
        .into_iter()
        .map(|l| l.body)
        .collect();
    assert!(
        lines.contains(&format!("bob added a device {fp}")),
        "{lines:?}"
    );
    assert_eq!(alice.conversations().await.unwrap()[0].devices, 3);
    // The number is over the root keys: a new device does not change it.
    let after = alice.safety_number("bob").await.unwrap();
    assert_eq!(after.safety_number, number.safety_number);
    assert_eq!(after.devices, 2);
    // Trust needs exactly that number.
    let other = kavro_proto::crypto::SafetyNumber::parse(&"1".repeat(60)).unwrap();
    assert!(alice.trust_root("bob", &other).await.unwrap().is_err());
    let trusted = alice
        .trust_root("bob", &number.safety_number)
        .await
        .unwrap()
        .unwrap();
    assert!(trusted.verified);
    assert!(alice.safety_number("bob").await.unwrap().verified);
}
