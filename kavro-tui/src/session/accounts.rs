//! Accounts on this device: register, log in (a device without a key gets a
//! new one, published), log out, who am I.

use kavro_proto::api::{Credentials, Me, NewAccount, PublishKey};
use kavro_proto::crypto::{IdentityKeypair, IdentityPublic, KeyFingerprint};
use kavro_proto::strings::{InviteCode, Password};
use kavro_proto::{UserId, validate};

use super::{NotLoggedIn, Session, SessionError, check_username, keystore_error};
use crate::config::{AccountConfig, ServerUrl};
use crate::keystore::{AccessToken, AccountKey, KeyStoreKind, SecretStore, StoredSecrets};
use crate::relay::RelayError;

/// The label published with our key (the relay stores it encrypted).
const DEVICE_NAME: &str = "kavro";

/// The account after `register` or `login`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountSummary {
    pub username: String,
    pub user_id: UserId,
    pub server: ServerUrl,
    pub public_key: IdentityPublic,
    pub fingerprint: KeyFingerprint,
    pub key_store: KeyStoreKind,
    /// Where the secrets are, in words.
    pub key_location: String,
    /// This device generated (and published) a new identity key.
    pub new_key: bool,
    /// Tell the user once (e.g. the file is used because no keyring works).
    pub notice: Option<String>,
}

/// The result of `logout`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogoutOutcome {
    pub username: String,
    /// Was there a token to forget?
    pub was_logged_in: bool,
    /// Why the relay could not revoke the token, if it could not (it was
    /// forgotten locally anyway and stays valid until it expires).
    pub revoke_error: Option<String>,
}

/// `whoami`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WhoAmI {
    pub profile: String,
    pub username: String,
    pub user_id: UserId,
    pub server: ServerUrl,
    pub public_key: IdentityPublic,
    pub fingerprint: KeyFingerprint,
    pub key_store: KeyStoreKind,
    pub key_location: String,
    /// `false` when another device published a newer key for this account:
    /// contacts then encrypt to that device, and this one cannot read it.
    pub newest_key_is_ours: bool,
}

fn credentials(username: &str, password: &Password) -> Credentials {
    Credentials {
        username: username.into(),
        password: password.clone(),
    }
}

impl Session {
    fn profile_in_use(&self, account: &AccountConfig) -> SessionError {
        SessionError::ProfileInUse {
            profile: self.profile.name().to_string(),
            username: account.username.clone(),
            server: account.server.to_string(),
        }
    }

    fn check_profile_free_for(&self, username: &str) -> Result<(), SessionError> {
        if let Some(account) = self.profile.account() {
            let same = account.username.eq_ignore_ascii_case(username)
                && &account.server == self.profile.server();
            if !same {
                return Err(self.profile_in_use(account));
            }
        }
        Ok(())
    }

    /// Creates an account, generates an identity key, keeps it in the
    /// key store and publishes it. `invite` is the code a relay that
    /// registers by invitation asks for (other relays ignore it).
    pub async fn register(
        &mut self,
        username: &str,
        password: &Password,
        invite: Option<&str>,
    ) -> Result<AccountSummary, SessionError> {
        check_username(username)?;
        validate::password(password.as_str())
            .map_err(|reason| SessionError::InvalidInput(format!("the password {reason}")))?;
        if let Some(account) = self.profile.account() {
            return Err(self.profile_in_use(account));
        }
        let chosen = self
            .keystores
            .choose()
            .map_err(|source| SessionError::Keystore {
                account: username.to_owned(),
                source,
            })?;
        let account = NewAccount {
            username: username.into(),
            password: password.clone(),
            invite_code: invite
                .map(str::trim)
                .filter(|c| !c.is_empty())
                .map(InviteCode::from),
        };
        let token = match self.relay.register(&account).await {
            Ok(token) => token,
            Err(RelayError::Rejected {
                status: 400,
                message,
                ..
            }) if message.contains("already taken") => {
                return Err(SessionError::UsernameTaken {
                    username: username.to_owned(),
                    message,
                });
            }
            Err(RelayError::Rejected {
                status: 422,
                message,
                details,
            }) => {
                return Err(SessionError::InvalidInput(
                    RelayError::Rejected {
                        status: 422,
                        message,
                        details,
                    }
                    .describe_details(),
                ));
            }
            Err(err) => return Err(self.relay_error(err)),
        };
        let me = self
            .relay
            .me(&token)
            .await
            .map_err(|e| self.relay_error(e))?;
        let keypair = IdentityKeypair::generate();
        self.finish_login(chosen.store, token, me, keypair, true, chosen.notice)
            .await
    }

    /// Logs in. A device that has no key for the account generates one;
    /// either way the key is (re)published.
    pub async fn login(
        &mut self,
        username: &str,
        password: &Password,
    ) -> Result<AccountSummary, SessionError> {
        check_username(username)?;
        self.check_profile_free_for(username)?;
        let (store, notice) = if let Some(account) = self.profile.account() {
            (self.store_for(account)?, None)
        } else {
            let chosen = self
                .keystores
                .choose()
                .map_err(|source| SessionError::Keystore {
                    account: username.to_owned(),
                    source,
                })?;
            (chosen.store, chosen.notice)
        };
        if let Some(account) = self.profile.account() {
            // A key store that cannot be read fails now, before the relay
            // hands out a token for nothing.
            store
                .load(&AccountKey::new(&account.server, &account.username))
                .map_err(|source| keystore_error(account, source))?;
        }
        let token = match self.relay.login(&credentials(username, password)).await {
            Ok(token) => token,
            Err(RelayError::Unauthorized(message)) => {
                return Err(SessionError::AuthRefused {
                    message,
                    relogin: None,
                });
            }
            Err(err) => return Err(self.relay_error(err)),
        };
        // The relay may spell the name differently (usernames ignore case).
        let me = self
            .relay
            .me(&token)
            .await
            .map_err(|e| self.relay_error(e))?;
        let key = AccountKey::new(self.profile.server(), &me.username);
        let existing = store.load(&key).map_err(|source| SessionError::Keystore {
            account: me.username.clone(),
            source,
        })?;
        let (keypair, new_key) = match existing {
            Some(secrets) => (IdentityKeypair::from_secret(secrets.identity), false),
            None => (IdentityKeypair::generate(), true),
        };
        self.finish_login(store, token, me, keypair, new_key, notice)
            .await
    }

    /// Saves the secrets, then the profile, then publishes the key: the key
    /// is on disk before anyone can encrypt to it.
    async fn finish_login(
        &mut self,
        store: std::sync::Arc<dyn SecretStore>,
        token: AccessToken,
        me: Me,
        keypair: IdentityKeypair,
        new_key: bool,
        notice: Option<String>,
    ) -> Result<AccountSummary, SessionError> {
        let server = self.profile.server().clone();
        let account = AccountConfig {
            server: server.clone(),
            username: me.username.clone(),
            user_id: me.user_id,
            key_store: store.kind(),
            public_key: *keypair.public(),
        };
        let key = AccountKey::new(&server, &me.username);
        let secrets = StoredSecrets {
            identity: kavro_proto::crypto::IdentitySecret::from_bytes(
                *keypair.secret().expose_secret_bytes(),
            ),
            token: Some(token.duplicate()),
        };
        store
            .save(&key, &secrets)
            .map_err(|source| keystore_error(&account, source))?;
        self.profile.save_account(account.clone())?;
        // Nothing can have been sent to a key generated just now: no horizon.
        self.history
            .record_identity(keypair.public(), (!new_key).then(super::now))
            .await?;
        self.relay
            .publish_key(
                &token,
                &PublishKey {
                    identity_pubkey: keypair.public().to_hex().into(),
                    device_name: Some(DEVICE_NAME.into()),
                },
            )
            .await
            .map_err(|e| self.relay_error(e))?;
        Ok(AccountSummary {
            username: me.username,
            user_id: me.user_id,
            server,
            public_key: *keypair.public(),
            fingerprint: keypair.public().fingerprint(),
            key_store: store.kind(),
            key_location: store.describe(),
            new_key,
            notice,
        })
    }

    /// Revokes the token on the relay and forgets it here (the identity key
    /// stays, so logging in again on this device keeps the same key).
    pub async fn logout(&mut self) -> Result<LogoutOutcome, SessionError> {
        let account = self.account()?.clone();
        let store = self.store_for(&account)?;
        let key = AccountKey::new(&account.server, &account.username);
        let Some(secrets) = store
            .load(&key)
            .map_err(|source| keystore_error(&account, source))?
        else {
            return Ok(LogoutOutcome {
                username: account.username,
                was_logged_in: false,
                revoke_error: None,
            });
        };
        let Some(token) = secrets.token else {
            return Ok(LogoutOutcome {
                username: account.username,
                was_logged_in: false,
                revoke_error: None,
            });
        };
        let revoke_error = match self.relay.logout(&token).await {
            // Already expired or revoked: nothing left to revoke.
            Ok(()) | Err(RelayError::Unauthorized(_)) => None,
            Err(err) => Some(err.to_string()),
        };
        store
            .save(
                &key,
                &StoredSecrets {
                    identity: secrets.identity,
                    token: None,
                },
            )
            .map_err(|source| keystore_error(&account, source))?;
        Ok(LogoutOutcome {
            username: account.username,
            was_logged_in: true,
            revoke_error,
        })
    }

    /// Who this profile is, as the relay confirms it.
    pub async fn whoami(&self) -> Result<WhoAmI, SessionError> {
        let unlocked = self.unlock()?;
        let me = self
            .relay
            .me(&unlocked.token)
            .await
            .map_err(|e| self.relay_error(e))?;
        let account = &unlocked.account;
        if me.user_id != account.user_id {
            return Err(NotLoggedIn::OtherAccount {
                profile: self.profile.name().to_string(),
                username: account.username.clone(),
                user_id: account.user_id.0,
                relay_username: me.username,
                relay_user_id: me.user_id.0,
            }
            .into());
        }
        let newest_key_is_ours = match self.lookup(&unlocked.token, &me.username).await {
            Ok((_, newest)) => &newest == unlocked.keypair.public(),
            Err(SessionError::NoUsableKey { .. }) => false,
            Err(err) => return Err(err),
        };
        let store = self.store_for(account)?;
        Ok(WhoAmI {
            profile: self.profile.name().to_string(),
            username: me.username,
            user_id: me.user_id,
            server: account.server.clone(),
            public_key: account.public_key,
            fingerprint: account.public_key.fingerprint(),
            key_store: account.key_store,
            key_location: store.describe(),
            newest_key_is_ours,
        })
    }
}
