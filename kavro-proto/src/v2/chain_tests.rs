//! A relay that lies about an account's devices: every lie is refused.
#![allow(clippy::unwrap_used)]

use chrono::{TimeZone as _, Utc};
use ed25519_dalek::{Signer as _, SigningKey};

use super::*;
use crate::v2::api::DeviceLink;
use crate::v2::link::device_link_message;
use crate::validate::base64_encode;

const USER: UserId = UserId(7);

fn key(seed: u8) -> (SigningKey, SignatureKey) {
    let signing = SigningKey::from_bytes(&[seed; 32]);
    let public = SignatureKey::from_bytes(signing.verifying_key().as_bytes()).unwrap();
    (signing, public)
}

fn device(id: i64, seed: u8, link: Option<(i64, u8)>) -> MlsDevice {
    let (_, public) = key(seed);
    MlsDevice {
        id: MlsDeviceId(id),
        user_id: USER,
        signature_key: public.to_base64().into(),
        link: link.map(|(signer_id, signer_seed)| {
            let (secret, signer) = key(signer_seed);
            let signature = secret.sign(&device_link_message(USER, &signer, &public));
            DeviceLink {
                signer_device_id: MlsDeviceId(signer_id),
                signature: base64_encode(&signature.to_bytes()).into(),
            }
        }),
        created_at: Utc.timestamp_opt(1_700_000_000 + id, 0).unwrap(),
        revoked_at: None,
    }
}

fn list(devices: Vec<MlsDevice>) -> MlsDeviceList {
    MlsDeviceList {
        user_id: USER,
        username: "bob".into(),
        devices,
    }
}

fn ids(chain: &CheckedChain) -> Vec<i64> {
    chain.devices.iter().map(|d| d.id.0).collect()
}

fn refusal(chain: &CheckedChain, id: i64) -> Option<Refusal> {
    chain
        .refused
        .iter()
        .find(|(d, _)| d.0 == id)
        .map(|(_, why)| *why)
}

#[test]
fn an_honest_chain_is_accepted_in_any_order() {
    // Root 1 links 2, 2 links 3; the relay lists 3 before 2.
    let honest = list(vec![
        device(1, 1, None),
        device(3, 3, Some((2, 2))),
        device(2, 2, Some((1, 1))),
    ]);
    let chain = check_chain(&honest, None).unwrap();
    assert_eq!(ids(&chain), vec![1, 3, 2]);
    assert!(chain.refused.is_empty());
    assert_eq!(chain.root, key(1).1);
    // Pinned: the same answer.
    let again = check_chain(&honest, Some(&chain.pin())).unwrap();
    assert_eq!(again, chain);
}

#[test]
fn a_forged_link_is_refused_and_so_is_what_it_signed() {
    let mut forged = device(2, 2, Some((1, 1)));
    // Signed by key 9, which is not device 1's key.
    forged.link = device(2, 2, Some((1, 9))).link;
    let chain = check_chain(
        &list(vec![device(1, 1, None), forged, device(3, 3, Some((2, 2)))]),
        None,
    )
    .unwrap();
    assert_eq!(ids(&chain), vec![1]);
    assert_eq!(refusal(&chain, 2), Some(Refusal::BadSignature));
    assert_eq!(refusal(&chain, 3), Some(Refusal::SignerOutsideChain));
}

#[test]
fn malformed_signatures_keys_and_accounts_are_refused() {
    let mut short = device(2, 2, Some((1, 1)));
    if let Some(link) = short.link.as_mut() {
        link.signature = base64_encode(&[0u8; 63]).into();
    }
    let mut bad_key = device(3, 3, Some((1, 1)));
    bad_key.signature_key = "not a key".to_owned().into();
    let mut other = device(4, 4, Some((1, 1)));
    other.user_id = UserId(8);
    let chain = check_chain(&list(vec![device(1, 1, None), short, bad_key, other]), None).unwrap();
    assert_eq!(ids(&chain), vec![1]);
    assert_eq!(refusal(&chain, 2), Some(Refusal::BadSignature));
    assert_eq!(refusal(&chain, 3), Some(Refusal::BadKey));
    assert_eq!(refusal(&chain, 4), Some(Refusal::OtherAccount));
}

#[test]
fn a_link_for_another_key_or_account_does_not_verify() {
    // Device 2 carries the link that root 1 made for device 3's key.
    let mut replayed = device(2, 2, None);
    replayed.link = device(3, 3, Some((1, 1))).link;
    let chain = check_chain(&list(vec![device(1, 1, None), replayed]), None).unwrap();
    assert_eq!(refusal(&chain, 2), Some(Refusal::BadSignature));
    // A whole honest list served under another user id.
    let mut moved = list(vec![device(1, 1, None), device(2, 2, Some((1, 1)))]);
    moved.user_id = UserId(8);
    for d in &mut moved.devices {
        d.user_id = UserId(8);
    }
    let chain = check_chain(&moved, None).unwrap();
    assert_eq!(refusal(&chain, 2), Some(Refusal::BadSignature));
}

#[test]
fn unknown_signers_and_cycles_are_outside() {
    let chain = check_chain(
        &list(vec![
            device(1, 1, None),
            device(2, 2, Some((99, 5))),
            device(3, 3, Some((4, 4))),
            device(4, 4, Some((3, 3))),
        ]),
        None,
    )
    .unwrap();
    assert_eq!(ids(&chain), vec![1]);
    for id in [2, 3, 4] {
        assert_eq!(refusal(&chain, id), Some(Refusal::SignerOutsideChain));
    }
}

#[test]
fn a_signer_revoked_before_the_link_is_refused() {
    // Device 2 is revoked between device 3's link and device 5's.
    let mut revoked = device(2, 2, Some((1, 1)));
    revoked.revoked_at = Some(Utc.timestamp_opt(1_700_000_004, 0).unwrap());
    let late = device(5, 5, Some((2, 2)));
    let early = device(3, 3, Some((2, 2)));
    let chain = check_chain(&list(vec![device(1, 1, None), revoked, early, late]), None).unwrap();
    // The revoked device stays in the chain, marked; what it linked before
    // its revocation too; what it "linked" after is refused.
    assert_eq!(ids(&chain), vec![1, 2, 3]);
    assert!(chain.devices[1].revoked);
    assert!(chain.active(MlsDeviceId(2)).is_none());
    assert!(chain.active(MlsDeviceId(3)).is_some());
    assert_eq!(refusal(&chain, 5), Some(Refusal::SignerRevoked));
}

#[test]
fn roots_swapped_missing_or_doubled_are_caught() {
    let honest = check_chain(&list(vec![device(1, 1, None)]), None).unwrap();
    let pin = honest.pin();
    // The relay swaps the root for its own key (and re-signs the chain with it).
    let swapped = list(vec![device(1, 6, None), device(2, 2, Some((1, 6)))]);
    assert_eq!(
        check_chain(&swapped, Some(&pin)),
        Err(ChainError::RootChanged)
    );
    // A second root beside the pinned one is refused, the pinned one kept.
    let doubled = list(vec![device(1, 1, None), device(2, 6, None)]);
    let chain = check_chain(&doubled, Some(&pin)).unwrap();
    assert_eq!(ids(&chain), vec![1]);
    assert_eq!(refusal(&chain, 2), Some(Refusal::SecondRoot));
    // Unpinned, two roots are ambiguous, none is nothing.
    assert_eq!(check_chain(&doubled, None), Err(ChainError::SeveralRoots));
    assert_eq!(check_chain(&list(vec![]), None), Err(ChainError::NoRoot));
    // The pinned account answered with another user id.
    let mut moved = list(vec![device(1, 1, None)]);
    moved.user_id = UserId(8);
    assert_eq!(
        check_chain(&moved, Some(&pin)),
        Err(ChainError::OtherAccount)
    );
}
