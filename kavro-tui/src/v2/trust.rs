//! Trust in accounts: each account's chain of device links is checked here
//! against its root device key, pinned the first time this installation saw
//! the account ([`kavro_proto::v2::chain`]). A device outside the chain is
//! never added to a group, and a group step (a Welcome or a commit) that
//! would make one a member is refused. A new device that chains is recorded
//! and shown in every conversation with its owner. The safety number of a
//! v2 contact covers both accounts' root keys, so one comparison covers all
//! their devices.

use chrono::Utc;
use kavro_proto::crypto::{PartyHalf, SafetyNumber};
use kavro_proto::v2::GroupId;
use kavro_proto::v2::chain::{CheckedChain, PinnedRoot, check_chain};
use kavro_proto::v2::link::SignatureKey;

use super::{V2Error, V2Session, credential_name, fingerprint};
use crate::mls::MlsStoreError;
use crate::mls::pins;
use crate::mls::rows::{self, LineKind, MessageRow};

/// A v2 account's safety number with this one, and whether it was compared.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct V2SafetyNumber {
    pub username: String,
    pub safety_number: SafetyNumber,
    /// Fingerprint of the account's root device key.
    pub root_fingerprint: String,
    pub verified: bool,
    /// Devices in the chain, not revoked.
    pub devices: usize,
}

/// The user compared a number that is not the one over the pinned roots.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mismatch;

fn half(username: &str, root: &SignatureKey) -> PartyHalf {
    PartyHalf::compute(root.as_bytes(), username.to_ascii_lowercase().as_bytes())
}

fn store_err(e: sqlx::Error) -> V2Error {
    V2Error::Store(MlsStoreError::from(e))
}

impl V2Session {
    /// Fetches `username`'s devices and checks their chain against the pin
    /// (pinning the root on first sight). Devices new since the last check
    /// are recorded and, for an account pinned before, announced in every
    /// conversation with it.
    pub async fn checked_devices(&mut self, username: &str) -> Result<CheckedChain, V2Error> {
        let list = self.relay.devices(&self.token, username).await?;
        let untrusted = |reason: String| V2Error::Untrusted {
            username: username.to_owned(),
            reason,
        };
        let mut tx = self.store.begin().await?;
        let pin = pins::pin(&mut tx, username).await.map_err(store_err)?;
        let pinned = match &pin {
            Some(row) => Some(PinnedRoot {
                user_id: row.user_id,
                root: SignatureKey::from_bytes(&row.root_key)
                    .map_err(|e| untrusted(format!("the pinned root key {e}")))?,
            }),
            None => None,
        };
        let chain = check_chain(&list, pinned.as_ref()).map_err(|e| untrusted(e.to_string()))?;
        if pin.is_none() {
            pins::save_pin(
                &mut tx,
                username,
                chain.user_id,
                chain.root.as_bytes(),
                Utc::now(),
            )
            .await
            .map_err(store_err)?;
        }
        let mut new = Vec::new();
        for device in &chain.devices {
            if pins::add_known_device(&mut tx, username, device.id, device.key.as_bytes())
                .await
                .map_err(store_err)?
                && pin.is_some()
                && !device.revoked
            {
                new.push(fingerprint(device.key.as_bytes()));
            }
        }
        if !new.is_empty() {
            let name = username.to_ascii_lowercase();
            let me = self.device.username.eq_ignore_ascii_case(&name);
            for conversation in self.conversations().await? {
                if !conversation.members.contains(&name) {
                    continue;
                }
                for fp in &new {
                    let line = MessageRow {
                        epoch: conversation.epoch,
                        kind: LineKind::System,
                        sender: name.clone(),
                        outgoing: me,
                        body: format!("{name} added a device {fp}"),
                        at: Utc::now(),
                    };
                    rows::add_line(&mut tx, &conversation.group_id, &line)
                        .await
                        .map_err(store_err)?;
                }
            }
        }
        // Kavro rows only: openmls' state of a step in progress stays in memory.
        tx.commit().await.map_err(store_err)?;
        Ok(chain)
    }

    /// The members of `group` whose device is outside their account's chain
    /// (as "name's device FINGERPRINT: why"); empty when every member checks.
    /// Asks the relay only about accounts with a device not seen before.
    pub(crate) async fn outsiders(&mut self, group: &GroupId) -> Result<Vec<String>, V2Error> {
        let Some(group) = self.load_group(group)? else {
            return Ok(Vec::new());
        };
        let mut members: Vec<(String, Vec<u8>)> = group
            .members()
            .map(|m| {
                (
                    credential_name(&m.credential)
                        .unwrap_or_default()
                        .to_ascii_lowercase(),
                    m.signature_key,
                )
            })
            .collect();
        members.sort();
        let mut out = Vec::new();
        let mut names: Vec<String> = members.iter().map(|(n, _)| n.clone()).collect();
        names.dedup();
        for name in names {
            let keys: Vec<&Vec<u8>> = members
                .iter()
                .filter(|(n, _)| *n == name)
                .map(|(_, k)| k)
                .collect();
            let known = {
                let mut conn = self.store.begin().await?;
                pins::known_devices(&mut conn, &name)
                    .await
                    .map_err(store_err)?
            };
            if keys
                .iter()
                .all(|k| known.iter().any(|(_, known)| known == *k))
            {
                continue;
            }
            let chain = match self.checked_devices(&name).await {
                Ok(chain) => Some(chain),
                Err(V2Error::Untrusted { reason, .. }) => {
                    out.push(format!("{name}'s account: {reason}"));
                    None
                }
                Err(V2Error::Relay(crate::relay::RelayError::NotFound(_))) => None,
                Err(e) => return Err(e),
            };
            for key in keys {
                if chain
                    .as_ref()
                    .and_then(|c| c.device_with_key(key))
                    .is_none()
                {
                    out.push(format!(
                        "{name}'s device {} is outside {name}'s chain of device links",
                        fingerprint(key)
                    ));
                }
            }
        }
        Ok(out)
    }

    /// The safety number with `username`'s v2 account (its chain checked).
    pub async fn safety_number(&mut self, username: &str) -> Result<V2SafetyNumber, V2Error> {
        let me = self.device.username.clone();
        let own = self.checked_devices(&me).await?;
        let theirs = self.checked_devices(username).await?;
        let verified = {
            let mut conn = self.store.begin().await?;
            pins::pin(&mut conn, username)
                .await
                .map_err(store_err)?
                .is_some_and(|p| p.verified)
        };
        Ok(V2SafetyNumber {
            username: username.to_ascii_lowercase(),
            safety_number: SafetyNumber::from_halves(
                half(&me, &own.root),
                half(username, &theirs.root),
            ),
            root_fingerprint: fingerprint(theirs.root.as_bytes()),
            verified,
            devices: theirs.devices.iter().filter(|d| !d.revoked).count(),
        })
    }

    /// Marks `username`'s pinned root as verified if `compared` is the
    /// safety number over both pinned roots.
    pub async fn trust_root(
        &mut self,
        username: &str,
        compared: &SafetyNumber,
    ) -> Result<Result<V2SafetyNumber, Mismatch>, V2Error> {
        let mut number = self.safety_number(username).await?;
        if &number.safety_number != compared {
            return Ok(Err(Mismatch));
        }
        let mut tx = self.store.begin().await?;
        pins::set_verified(&mut tx, username)
            .await
            .map_err(store_err)?;
        tx.commit().await.map_err(store_err)?;
        number.verified = true;
        Ok(Ok(number))
    }
}
