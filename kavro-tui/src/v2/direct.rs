//! The 1:1 conversation of two accounts: one MLS group of all devices of
//! both, and exactly one per pair, even when both sides start it at once.
//!
//! The rule: the group id is derived from the two accounts' user ids,
//!
//! ```text
//! group_id = SHA-256("kavro-v2 direct\0" || i64_be(min(uid)) || i64_be(max(uid)))   (32 bytes)
//! ```
//!
//! so every device of either account that starts the chat names the same
//! group, and the relay creates a group id once (`409` to anyone later):
//! the device whose `POST /v2/groups` came first creates the MLS group and
//! adds everyone; a device that lost waits for its Welcome. A device that
//! created the group on the relay and crashed before its first commit finds
//! itself the only member at epoch 0 and finishes the job. User ids (not
//! names) so that an account deleted and registered again under the same
//! name gets a new conversation.

use std::time::Duration;

use kavro_proto::UserId;
use kavro_proto::v2::GroupId;
use sha2::Digest as _;

use super::{SUITE, V2Error, V2Session};
use crate::relay::RelayError;

/// The context of a 1:1 group id.
const DIRECT_CONTEXT: &[u8] = b"kavro-v2 direct\0";
/// How often, and how long apart, a device that lost the race looks for its
/// Welcome before giving up (the winner posts it right after creating).
const WELCOME_POLLS: u32 = 20;
const WELCOME_PAUSE: Duration = Duration::from_millis(250);

/// The group id of the 1:1 conversation of two accounts (the order of the
/// arguments does not matter).
pub fn direct_group_id(a: UserId, b: UserId) -> GroupId {
    let (low, high) = if a.0 <= b.0 { (a, b) } else { (b, a) };
    let digest = sha2::Sha256::new()
        .chain_update(DIRECT_CONTEXT)
        .chain_update(low.0.to_be_bytes())
        .chain_update(high.0.to_be_bytes())
        .finalize();
    GroupId::from_bytes(&digest).expect("32 bytes is a valid group id")
}

impl V2Session {
    /// The 1:1 conversation with `peer`, created (or joined, when another
    /// device of either account is creating it) if there is none here.
    pub async fn direct(&mut self, peer: &str) -> Result<GroupId, V2Error> {
        if peer.eq_ignore_ascii_case(&self.device.username) {
            return Err(V2Error::Refused(
                "a 1:1 conversation is with another account".to_owned(),
            ));
        }
        if let Some(existing) = self.find_direct(peer).await? {
            return Ok(existing);
        }
        let chain = self.checked_devices(peer).await?;
        if chain.devices.iter().all(|d| d.revoked) {
            return Err(V2Error::NoDevices(peer.to_owned()));
        }
        let id = direct_group_id(self.device.user_id, chain.user_id);
        if self.load_group(&id)?.is_some_and(|g| g.is_active()) {
            return Ok(id);
        }
        match self.relay.create_group(&self.token, &id).await {
            Ok(_) => {}
            Err(RelayError::Rejected { status: 409, .. }) => {
                if !self.created_and_crashed(&id).await? {
                    return self.await_welcome(peer, &id).await;
                }
            }
            Err(err) => return Err(err.into()),
        }
        let mut packages = self.claim(peer, SUITE).await?;
        if packages.is_empty() {
            return Err(V2Error::NoDevices(peer.to_owned()));
        }
        let own = self.device.username.clone();
        packages.extend(self.claim(&own, SUITE).await?);
        self.new_local_group(Some(&id), SUITE)?;
        self.populate(&id, None, packages).await?;
        Ok(id)
    }

    /// Whether the relay's group `id` is this device's alone at epoch 0 (it
    /// created it and did not get to add anyone).
    async fn created_and_crashed(&self, id: &GroupId) -> Result<bool, V2Error> {
        match self.relay.group_state(&self.token, id).await {
            Ok(state) => Ok(state.epoch == 0 && state.members == [self.device.device_id]),
            Err(RelayError::Forbidden(_) | RelayError::NotFound(_)) => Ok(false),
            Err(err) => Err(err.into()),
        }
    }

    /// Applies the queue until the Welcome to `id` arrived (bounded).
    async fn await_welcome(&mut self, peer: &str, id: &GroupId) -> Result<GroupId, V2Error> {
        for _ in 0..WELCOME_POLLS {
            self.sync_queue().await?;
            if self.load_group(id)?.is_some_and(|g| g.is_active()) {
                return Ok(id.clone());
            }
            tokio::time::sleep(WELCOME_PAUSE).await;
        }
        Err(V2Error::DirectPending(peer.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_direct_id_is_symmetric_and_per_pair() {
        let ab = direct_group_id(UserId(1), UserId(2));
        assert_eq!(ab, direct_group_id(UserId(2), UserId(1)));
        assert_ne!(ab, direct_group_id(UserId(1), UserId(3)));
        assert_eq!(ab.as_bytes().len(), 32);
        // The documented construction (docs/PROTOCOL.md).
        let mut input = b"kavro-v2 direct\0".to_vec();
        input.extend_from_slice(&1i64.to_be_bytes());
        input.extend_from_slice(&2i64.to_be_bytes());
        assert_eq!(ab.as_bytes(), sha2::Sha256::digest(&input).as_slice());
    }
}
