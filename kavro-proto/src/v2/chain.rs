//! The chain of device links of an account, checked by a client.
//!
//! The relay serves every device of an account with the link that admitted
//! it ([`MlsDeviceList`]). A client does not take the list on trust: it
//! accepts the account's root device (the one without a link; pinned on
//! first use, so a relay that later swaps the root is caught), then every
//! device whose link was signed by a device already accepted, over
//! [`device_link_message`](super::link::device_link_message) with the
//! account's user id. Anything else (a bad or missing signature, a signer
//! outside the chain or revoked before the link, a second root, a device of
//! another account) is refused: never added to a group, never trusted for
//! decryption.
//!
//! Pure functions over the relay's answer; the pin is the caller's.

use std::collections::{BTreeMap, BTreeSet};

use super::api::{MlsDevice, MlsDeviceList};
use super::ids::MlsDeviceId;
use super::link::{SignatureKey, parse_signature, verify_device_link};
use crate::ids::UserId;

/// What a client pinned of a contact's account the first time it saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PinnedRoot {
    pub user_id: UserId,
    pub root: SignatureKey,
}

/// A device that chains to the account's root.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChainedDevice {
    pub id: MlsDeviceId,
    pub key: SignatureKey,
    /// Revoked devices stay in the chain (later links may pass through
    /// them) but are never added to a group.
    pub revoked: bool,
}

/// Why one device is outside the chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("its key is not a valid Ed25519 key")]
    BadKey,
    #[error("it belongs to another account")]
    OtherAccount,
    #[error("it claims to be a second root device")]
    SecondRoot,
    #[error("its link signature is malformed or does not verify")]
    BadSignature,
    #[error("it was linked by a device outside the chain")]
    SignerOutsideChain,
    #[error("it was linked by a device revoked before the link")]
    SignerRevoked,
}

/// The account as a whole does not check: nothing of it is trusted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ChainError {
    #[error("the relay lists no root device")]
    NoRoot,
    #[error("the relay lists several root devices")]
    SeveralRoots,
    #[error("the account's root device is not the one pinned here (the relay swapped it)")]
    RootChanged,
    #[error("the relay answered for another account than the one pinned here")]
    OtherAccount,
}

/// The checked list: the root, the devices in the chain, the refused ones.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckedChain {
    pub user_id: UserId,
    pub root: SignatureKey,
    /// Root first, then in the relay's order.
    pub devices: Vec<ChainedDevice>,
    pub refused: Vec<(MlsDeviceId, Refusal)>,
}

impl CheckedChain {
    /// The pin to keep after this check.
    pub fn pin(&self) -> PinnedRoot {
        PinnedRoot {
            user_id: self.user_id,
            root: self.root,
        }
    }

    /// The chained device with this key, if any.
    pub fn device_with_key(&self, key: &[u8]) -> Option<&ChainedDevice> {
        self.devices.iter().find(|d| d.key.as_bytes() == key)
    }

    /// The chained, non-revoked device `id`.
    pub fn active(&self, id: MlsDeviceId) -> Option<&ChainedDevice> {
        self.devices.iter().find(|d| d.id == id && !d.revoked)
    }
}

/// Checks `list` against `pinned` (`None`: first sight, the root is taken
/// as it is).
pub fn check_chain(
    list: &MlsDeviceList,
    pinned: Option<&PinnedRoot>,
) -> Result<CheckedChain, ChainError> {
    if pinned.is_some_and(|p| p.user_id != list.user_id) {
        return Err(ChainError::OtherAccount);
    }
    let mut refused = BTreeMap::new();
    let mut keys = BTreeMap::new();
    for device in &list.devices {
        if device.user_id != list.user_id {
            refused.insert(device.id, Refusal::OtherAccount);
            continue;
        }
        match SignatureKey::parse(device.signature_key.as_str()) {
            Ok(key) => {
                keys.insert(device.id, key);
            }
            Err(_) => {
                refused.insert(device.id, Refusal::BadKey);
            }
        }
    }
    let roots: Vec<&MlsDevice> = list
        .devices
        .iter()
        .filter(|d| d.link.is_none() && keys.contains_key(&d.id))
        .collect();
    let root = match pinned {
        Some(pin) => *roots
            .iter()
            .find(|d| keys[&d.id] == pin.root)
            .ok_or(ChainError::RootChanged)?,
        None => match roots.as_slice() {
            [] => return Err(ChainError::NoRoot),
            [only] => *only,
            _ => return Err(ChainError::SeveralRoots),
        },
    };
    for other in roots.iter().filter(|d| d.id != root.id) {
        refused.insert(other.id, Refusal::SecondRoot);
    }
    let by_id: BTreeMap<MlsDeviceId, &MlsDevice> = list.devices.iter().map(|d| (d.id, d)).collect();
    let mut accepted = BTreeSet::from([root.id]);
    // Each pass accepts or refuses at least one device, or stops: at most
    // one pass per device.
    loop {
        let mut progress = false;
        for device in &list.devices {
            if accepted.contains(&device.id) || refused.contains_key(&device.id) {
                continue;
            }
            let Some(link) = &device.link else {
                continue;
            };
            let verdict = if refused.contains_key(&link.signer_device_id) {
                Some(Err(Refusal::SignerOutsideChain))
            } else if accepted.contains(&link.signer_device_id) {
                let signer = by_id[&link.signer_device_id];
                Some(check_link(
                    list.user_id,
                    signer,
                    &keys[&signer.id],
                    device,
                    &keys[&device.id],
                ))
            } else {
                None
            };
            match verdict {
                Some(Ok(())) => {
                    accepted.insert(device.id);
                    progress = true;
                }
                Some(Err(why)) => {
                    refused.insert(device.id, why);
                    progress = true;
                }
                None => {}
            }
        }
        if !progress {
            break;
        }
    }
    // Whatever is left names a signer the relay did not list (or a cycle).
    for device in &list.devices {
        if !accepted.contains(&device.id) {
            refused
                .entry(device.id)
                .or_insert(Refusal::SignerOutsideChain);
        }
    }
    let mut devices = vec![chained(root, keys[&root.id])];
    devices.extend(
        list.devices
            .iter()
            .filter(|d| d.id != root.id && accepted.contains(&d.id))
            .map(|d| chained(d, keys[&d.id])),
    );
    Ok(CheckedChain {
        user_id: list.user_id,
        root: keys[&root.id],
        devices,
        refused: refused.into_iter().collect(),
    })
}

fn chained(device: &MlsDevice, key: SignatureKey) -> ChainedDevice {
    ChainedDevice {
        id: device.id,
        key,
        revoked: device.revoked_at.is_some(),
    }
}

fn check_link(
    user: UserId,
    signer: &MlsDevice,
    signer_key: &SignatureKey,
    device: &MlsDevice,
    key: &SignatureKey,
) -> Result<(), Refusal> {
    if signer
        .revoked_at
        .is_some_and(|revoked| revoked <= device.created_at)
    {
        return Err(Refusal::SignerRevoked);
    }
    let link = device.link.as_ref().ok_or(Refusal::BadSignature)?;
    let signature = parse_signature(link.signature.as_str()).map_err(|_| Refusal::BadSignature)?;
    verify_device_link(user, signer_key, key, &signature).map_err(|_| Refusal::BadSignature)
}

#[cfg(test)]
#[path = "chain_tests.rs"]
mod tests;
