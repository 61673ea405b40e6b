//! What the chat app needs from the v2 core beyond the CLI's calls: opening
//! the installation's device from a [`Session`] (or learning there is none),
//! whether a contact's 1:1 goes over MLS, and waiting for the device's queue *without* holding the session, so a
//! long-poll never blocks a send typed meanwhile.

use kavro_proto::v2::{MlsDeviceId, QueueSeq};

use super::{V2Error, V2Relay, V2Session};
use crate::keystore::AccessToken;
use crate::mls::MlsStore;
use crate::relay::RelayError;
use crate::session::Session;

/// Why the app could not open the installation's v2 device.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error(transparent)]
    Session(#[from] crate::session::SessionError),
    #[error(transparent)]
    V2(#[from] V2Error),
    #[error("cannot read this installation's device key: {0}")]
    Key(String),
}

impl V2Session {
    /// Opens this installation's device; `Ok(None)` when it has none (a
    /// profile from before v2, or a relay without `/v2`): the app then
    /// stays v1-only without a word.
    pub async fn open_for_app(session: &Session) -> Result<Option<Self>, OpenError> {
        // The same home as the CLI's: the OS keyring when the account's
        // secrets are there (a key file of an older client moves in on load).
        let home = super::profile::device_key_home(session)?;
        if !home.exists().map_err(|e| OpenError::Key(e.to_string()))? {
            return Ok(None);
        }
        let unlocked = session.unlock()?;
        let Some(signer) = home.load().map_err(|e| OpenError::Key(e.to_string()))? else {
            return Ok(None);
        };
        let db = super::profile::mls_db_path(session);
        let server = session.profile().server();
        let relay = V2Relay::with_client(
            server,
            crate::cli::relay_client(server).map_err(V2Error::from)?,
        );
        let store = MlsStore::open(&db).await.map_err(V2Error::from)?;
        Ok(Some(
            Self::open(relay, store, signer, &unlocked.token).await?,
        ))
    }

    /// Whether `username`'s account has a device that is not revoked: a 1:1
    /// message to them then goes over MLS, as `kavro send USER` decides it.
    /// `false` for an unknown user (v1 reports that in its own words).
    pub async fn has_active_devices(&mut self, username: &str) -> Result<bool, V2Error> {
        match self.devices(username).await {
            Ok(devices) => Ok(devices.iter().any(|d| d.revoked_at.is_none())),
            Err(V2Error::Relay(RelayError::NotFound(_))) => Ok(false),
            Err(err) => Err(err),
        }
    }

    /// A handle that waits for this device's queue on its own.
    pub fn queue_watch(&self) -> QueueWatch {
        QueueWatch {
            relay: self.relay.clone(),
            token: AccessToken::new(self.token.expose().to_owned()),
            device: self.device.device_id,
            after: self.device.queue_after,
        }
    }
}

/// Waits for entries past what the device applied when the watch was made.
pub struct QueueWatch {
    relay: V2Relay,
    token: AccessToken,
    device: MlsDeviceId,
    after: QueueSeq,
}

impl QueueWatch {
    /// Holds one request up to `wait` seconds (the relay answers at once
    /// when something is queued); `true` when entries are waiting. It reads
    /// without acknowledging: [`V2Session::sync`] applies them.
    pub async fn wait(&self, wait: u32) -> Result<bool, RelayError> {
        let page = self
            .relay
            .queue(&self.token, self.device, self.after, 1, wait)
            .await?;
        Ok(!page.messages.is_empty())
    }
}

#[cfg(test)]
#[path = "tests_app_direct.rs"]
mod tests_app_direct;
