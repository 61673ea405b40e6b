//! The client's operations, shared by the scripted subcommands and the chat
//! app, free of terminal code: accounts ([`Session::register`],
//! [`Session::login`], [`Session::logout`], [`Session::whoami`]), messages
//! ([`Session::send`], [`Session::sync_inbox`], [`Session::history`]) and keys
//! ([`Session::contacts`], [`Session::contact_keys`], [`Session::trust`]).
//!
//! A session is one profile: its config, its secret store, its local history
//! and a [`Relay`]. Nothing here prints; results are plain data.

mod accounts;
mod contacts;
mod error;
mod files;
mod inbox;
mod manage;
mod outgoing;
#[cfg(test)]
pub(crate) mod testing;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_files;
#[cfg(test)]
mod tests_manage;
#[cfg(test)]
mod tests_replay;
#[cfg(test)]
mod tests_trust;

use std::sync::Arc;

use chrono::{DateTime, Utc};
use kavro_proto::api::UserInfo;
use kavro_proto::crypto::{IdentityKeypair, IdentityPublic};
use kavro_proto::validate;

pub use self::accounts::{AccountSummary, LogoutOutcome, WhoAmI};
pub use self::contacts::{Compared, ContactKeys, OwnKey, TrustOutcome};
pub use self::error::{NotLoggedIn, SessionError};
pub use self::files::SavedFile;
#[cfg(test)]
pub use self::inbox::SyncBatch;
pub use self::inbox::SyncOptions;
pub use self::outgoing::{DeliveryOutcome, FlushReport, SentMessage};
use crate::config::{AccountConfig, Profile};
use crate::history::History;
use crate::keystore::{AccessToken, AccountKey, KeyStoreKind, Keystores, SecretStore};
use crate::paths::ensure_private_dir;
use crate::relay::{LongPoll, Relay, RelayError};

/// One profile's client.
pub struct Session {
    profile: Profile,
    relay: Arc<dyn Relay>,
    keystores: Keystores,
    history: History,
}

/// A logged-in account with its secrets loaded.
pub(crate) struct Unlocked {
    pub account: AccountConfig,
    pub keypair: IdentityKeypair,
    pub token: AccessToken,
}

impl Session {
    /// Opens profile `profile`'s history (creating its private data
    /// directory) and talks to `relay`. Secrets are read only when needed.
    pub async fn open(
        profile: Profile,
        relay: Arc<dyn Relay>,
        keystores: Keystores,
    ) -> Result<Self, SessionError> {
        let data_dir = &profile.paths().data_dir;
        ensure_private_dir(data_dir).map_err(|source| {
            SessionError::Config(crate::config::ConfigError::Write {
                path: data_dir.display().to_string(),
                source,
            })
        })?;
        let history = History::open(&profile.paths().history_db()).await?;
        if let Some(account) = profile.account() {
            // A history new to this identity (wiped, moved, upgraded) starts
            // its replay horizon now; an existing one keeps its own.
            history
                .record_identity(&account.public_key, Some(now()))
                .await?;
        }
        Ok(Self {
            profile,
            relay,
            keystores,
            history,
        })
    }

    pub fn profile(&self) -> &Profile {
        &self.profile
    }

    /// Whether the relay long-polls (its `/ready`), so the inbox can wait
    /// there instead of polling.
    pub async fn long_poll(&self) -> Result<LongPoll, SessionError> {
        self.relay
            .long_poll()
            .await
            .map_err(|e| self.relay_error(e))
    }

    /// Closes the local database cleanly.
    pub async fn close(self) {
        self.history.close().await;
    }

    /// The profile's account, if it is set up for the relay this session talks to.
    pub fn account(&self) -> Result<&AccountConfig, SessionError> {
        let profile = self.profile.name().to_string();
        match self.profile.account() {
            None => Err(NotLoggedIn::NoAccount { profile }.into()),
            Some(account) if &account.server != self.profile.server() => {
                Err(NotLoggedIn::OtherServer {
                    profile,
                    username: account.username.clone(),
                    account_server: account.server.to_string(),
                    server: self.profile.server().to_string(),
                }
                .into())
            }
            Some(account) => Ok(account),
        }
    }

    pub(crate) fn relay_error(&self, err: RelayError) -> SessionError {
        let username = self.profile.account().map(|a| a.username.as_str());
        SessionError::from_relay(err, username)
    }

    /// The store the account's secrets are recorded in.
    fn store_for(&self, account: &AccountConfig) -> Result<Arc<dyn SecretStore>, SessionError> {
        if let Some(explicit) = self.keystores.explicit()
            && explicit != account.key_store
        {
            return Err(SessionError::Keystore {
                account: account.username.clone(),
                source: crate::keystore::KeystoreError::Conflict {
                    recorded: account.key_store,
                    requested: explicit,
                },
            });
        }
        Ok(self.keystores.open(account.key_store))
    }

    /// Where the account's secrets live (its backend as recorded, and the
    /// keyring backend of this profile), for secrets kept beside them.
    pub(crate) fn secrets_home(
        &self,
    ) -> Result<(KeyStoreKind, AccountKey, crate::keystore::KeyringStore), SessionError> {
        let account = self.account()?;
        let kind = self.store_for(account)?.kind();
        Ok((
            kind,
            AccountKey::new(&account.server, &account.username),
            self.keystores.keyring_store(),
        ))
    }

    /// Loads the account's key and token, or says how to get them.
    pub(crate) fn unlock(&self) -> Result<Unlocked, SessionError> {
        let account = self.account()?.clone();
        let store = self.store_for(&account)?;
        let key = AccountKey::new(&account.server, &account.username);
        let secrets = store
            .load(&key)
            .map_err(|source| keystore_error(&account, source))?;
        let Some(secrets) = secrets else {
            return Err(NotLoggedIn::NoKey {
                username: account.username,
                store: store.describe(),
            }
            .into());
        };
        let keypair = IdentityKeypair::from_secret(secrets.identity);
        if keypair.public() != &account.public_key {
            return Err(NotLoggedIn::KeyNotPublished {
                username: account.username,
                store: store.describe(),
                profile: self.profile.name().to_string(),
                fingerprint: account.public_key.fingerprint().to_string(),
            }
            .into());
        }
        let Some(token) = secrets.token else {
            return Err(NotLoggedIn::LoggedOut {
                username: account.username,
            }
            .into());
        };
        Ok(Unlocked {
            account,
            keypair,
            token,
        })
    }

    /// Looks `username` up on the relay: the account and its newest key.
    pub(crate) async fn lookup(
        &self,
        token: &AccessToken,
        username: &str,
    ) -> Result<(UserInfo, IdentityPublic), SessionError> {
        let info = match self.relay.user_by_name(token, username).await {
            Ok(info) => info,
            Err(RelayError::NotFound(_)) => {
                return Err(SessionError::NoSuchUser(username.to_owned()));
            }
            Err(err) => return Err(self.relay_error(err)),
        };
        let key = newest_key(&info)?;
        Ok((info, key))
    }
}

/// The key a user's newest device published (the relay lists oldest first).
fn newest_key(info: &UserInfo) -> Result<IdentityPublic, SessionError> {
    let newest = info
        .devices
        .iter()
        .max_by_key(|d| (d.created_at, d.id))
        .ok_or_else(|| SessionError::NoUsableKey {
            username: info.username.clone(),
            reason: format!("{} has not published an identity key yet", info.username),
        })?;
    IdentityPublic::from_hex(&newest.identity_pubkey).map_err(|e| SessionError::NoUsableKey {
        username: info.username.clone(),
        reason: format!("the relay returned a malformed key ({e})"),
    })
}

fn keystore_error(account: &AccountConfig, source: crate::keystore::KeystoreError) -> SessionError {
    use crate::keystore::KeystoreError;
    match source {
        KeystoreError::KeyringUnavailable(detail) => SessionError::Keystore {
            account: account.username.clone(),
            source: KeystoreError::KeyringUnavailable(format!(
                "{detail}. {}'s identity key is in the OS keyring: unlock it or run kavro in a desktop session (over SSH, `dbus-run-session -- kavro ...` with an unlocked keyring). Kavro will not create a new identity in its place",
                account.username
            )),
        },
        other => SessionError::Keystore {
            account: account.username.clone(),
            source: other,
        },
    }
}

/// Checks a username argument before any round trip.
pub(crate) fn check_username(name: &str) -> Result<(), SessionError> {
    validate::username(name).map_err(|reason| {
        SessionError::InvalidInput(format!("invalid username {name:?}: {reason}"))
    })
}

fn now() -> DateTime<Utc> {
    Utc::now()
}
