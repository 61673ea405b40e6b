//! Managing the account on the relay: change the password, log out
//! everywhere, list and retire our keys, delete the account.

use chrono::{DateTime, Utc};
use kavro_proto::DeviceId;
use kavro_proto::crypto::IdentityPublic;
use kavro_proto::strings::Password;
use kavro_proto::validate;

use super::{Session, SessionError, keystore_error};
use crate::keystore::{AccountKey, StoredSecrets};
use crate::relay::RelayError;

/// One of our published keys, as `kavro keys` lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnDevice {
    /// What `kavro keys retire` takes.
    pub id: DeviceId,
    pub key: IdentityPublic,
    pub device_name: Option<String>,
    pub created_at: DateTime<Utc>,
    /// The key this device holds.
    pub current: bool,
}

impl Session {
    /// Changes the password: the relay revokes every other session of the
    /// account and hands out a new token, which replaces ours.
    pub async fn change_password(
        &self,
        current: &Password,
        new: &Password,
    ) -> Result<(), SessionError> {
        validate::password(new.as_str())
            .map_err(|reason| SessionError::InvalidInput(format!("the new password {reason}")))?;
        let unlocked = self.unlock()?;
        let token = match self
            .relay
            .change_password(&unlocked.token, current, new)
            .await
        {
            Ok(token) => token,
            Err(RelayError::Unauthorized(message)) => {
                return Err(SessionError::AuthRefused {
                    message: format!("the relay refused the current password ({message})"),
                    relogin: None,
                });
            }
            Err(err @ RelayError::Rejected { status: 422, .. }) => {
                return Err(SessionError::InvalidInput(err.describe_details()));
            }
            Err(err) => return Err(self.relay_error(err)),
        };
        let store = self.store_for(&unlocked.account)?;
        let secrets = StoredSecrets {
            identity: kavro_proto::crypto::IdentitySecret::from_bytes(
                *unlocked.keypair.secret().expose_secret_bytes(),
            ),
            token: Some(token),
        };
        store
            .save(
                &AccountKey::new(&unlocked.account.server, &unlocked.account.username),
                &secrets,
            )
            .map_err(|source| keystore_error(&unlocked.account, source))
    }

    /// Revokes every session of the account, this one included, and forgets
    /// the token here (the identity key stays).
    pub async fn logout_everywhere(&mut self) -> Result<String, SessionError> {
        let unlocked = self.unlock()?;
        self.relay
            .logout_all(&unlocked.token)
            .await
            .map_err(|e| self.relay_error(e))?;
        self.logout().await?;
        Ok(unlocked.account.username)
    }

    /// Our keys on the relay, oldest first, the one this device holds marked.
    pub async fn own_keys(&self) -> Result<Vec<OwnDevice>, SessionError> {
        let unlocked = self.unlock()?;
        let devices = self
            .relay
            .keys(&unlocked.token, unlocked.account.user_id)
            .await
            .map_err(|e| self.relay_error(e))?;
        devices
            .into_iter()
            .map(|d| {
                let key = IdentityPublic::from_hex(&d.identity_pubkey).map_err(|e| {
                    SessionError::Relay(RelayError::InvalidResponse(format!(
                        "key #{} is not a key ({e})",
                        d.id
                    )))
                })?;
                Ok(OwnDevice {
                    id: d.id,
                    current: &key == unlocked.keypair.public(),
                    key,
                    device_name: d.device_name,
                    created_at: d.created_at,
                })
            })
            .collect()
    }

    /// Retires one of our keys on the relay (contacts then see the newest
    /// remaining key). Refuses the key this device holds.
    pub async fn retire_key(&self, id: DeviceId) -> Result<IdentityPublic, SessionError> {
        let unlocked = self.unlock()?;
        let keys = self.own_keys().await?;
        let Some(device) = keys.iter().find(|d| d.id == id) else {
            return Err(SessionError::InvalidInput(format!(
                "key #{id} is not one of your keys on the relay"
            )));
        };
        if device.current {
            return Err(SessionError::InvalidInput(format!(
                "key #{id} is the key this device uses: retiring it would leave this device unable to read new messages"
            )));
        }
        match self.relay.retire_key(&unlocked.token, id).await {
            Ok(()) => Ok(device.key),
            Err(RelayError::NotFound(_)) => Err(SessionError::InvalidInput(format!(
                "key #{id} is not one of your keys on the relay"
            ))),
            Err(err) => Err(self.relay_error(err)),
        }
    }

    /// Deletes the account on the relay (its keys, queued messages to it
    /// and sessions go), then this profile's secrets and account record.
    /// The local history stays; its path is returned.
    pub async fn delete_account(&mut self, password: &Password) -> Result<String, SessionError> {
        let unlocked = self.unlock()?;
        match self.relay.delete_account(&unlocked.token, password).await {
            Ok(()) => {}
            Err(RelayError::Unauthorized(message)) => {
                return Err(SessionError::AuthRefused {
                    message: format!("the relay refused the password ({message})"),
                    relogin: None,
                });
            }
            Err(err) => return Err(self.relay_error(err)),
        }
        let store = self.store_for(&unlocked.account)?;
        store
            .delete(&AccountKey::new(
                &unlocked.account.server,
                &unlocked.account.username,
            ))
            .map_err(|source| keystore_error(&unlocked.account, source))?;
        self.profile.forget_account()?;
        Ok(self.profile.paths().history_db().display().to_string())
    }
}
