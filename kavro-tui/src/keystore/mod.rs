//! Where an account's secrets live: the identity secret key and the relay
//! access token, behind one [`SecretStore`] trait with two backends, the OS
//! keyring ([`KeyringStore`]) and a private file ([`FileStore`]).
//!
//! Both store one record per account (server + username), the JSON text
//!
//! ```json
//! {"identity_secret": "<64 hex digits>", "access_token": "<JWT>" }
//! ```
//!
//! (`access_token` is `null` after `logout`). The keyring keeps it as the
//! password of the entry (service `kavro`, user `<username>@<server>`); the
//! file store keeps a map of such records (see [`file`]).
//!
//! Choosing a backend ([`Keystores::choose`]), for a new account only: the
//! explicit `KAVRO_KEY_STORE=keyring|file`; otherwise the keyring if a probe
//! entry can be written, read and deleted; otherwise the file, with a notice
//! for the user. The profile config records the choice, and later commands
//! open exactly that backend ([`Keystores::open`]): if it is the keyring and
//! the keyring is unavailable, that is an error, never a reason to create a
//! new identity.

mod file;
mod keyring;

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;

use kavro_proto::crypto::IdentitySecret;
use serde::{Deserialize, Serialize};
use zeroize::{Zeroize, Zeroizing};

pub use self::file::FileStore;
pub use self::keyring::KeyringStore;
use crate::config::ServerUrl;

/// Environment variable that forces a backend.
pub const ENV_KEY_STORE: &str = "KAVRO_KEY_STORE";
/// The keyring service name of every entry.
pub const KEYRING_SERVICE: &str = "kavro";

/// Which backend holds an account's secrets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyStoreKind {
    /// The operating system's keyring (Secret Service, Keychain, Credential Manager).
    Keyring,
    /// A 0600 file in the profile's 0700 data directory.
    File,
}

impl KeyStoreKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Keyring => "keyring",
            Self::File => "file",
        }
    }
}

impl fmt::Display for KeyStoreKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for KeyStoreKind {
    type Err = KeystoreError;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text.trim().to_ascii_lowercase().as_str() {
            "keyring" => Ok(Self::Keyring),
            "file" => Ok(Self::File),
            _ => Err(KeystoreError::InvalidChoice(text.to_owned())),
        }
    }
}

/// What can go wrong with secrets. Messages never contain secret material.
#[derive(Debug, thiserror::Error)]
pub enum KeystoreError {
    #[error("{ENV_KEY_STORE}={0:?} is not understood: use `keyring` or `file`")]
    InvalidChoice(String),
    #[error("the OS keyring is not available: {0}")]
    KeyringUnavailable(String),
    #[error(
        "this profile keeps its secrets in the {recorded}, but {ENV_KEY_STORE}={requested}; unset {ENV_KEY_STORE}, or use another --profile for a {requested} key store"
    )]
    Conflict {
        recorded: KeyStoreKind,
        requested: KeyStoreKind,
    },
    #[error("the OS keyring failed: {0}")]
    Keyring(String),
    #[error("cannot use the key file {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "the key file {path} can be read by other users (mode {mode:o}); run `chmod 600 {path}` if you trust its contents"
    )]
    InsecurePermissions { path: String, mode: u32 },
    #[error("the stored secrets in {location} are damaged: {reason}")]
    Corrupt { location: String, reason: String },
}

/// The relay access token (a JWT). Zeroized on drop; no `Debug`, `Clone`
/// or `Serialize`; read it with [`Self::expose`].
pub struct AccessToken(Zeroizing<String>);

impl AccessToken {
    pub fn new(token: String) -> Self {
        Self(Zeroizing::new(token))
    }

    /// The token text, to put in an `Authorization` header.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// A second handle on the same token (explicit, unlike `Clone`).
    #[must_use]
    pub fn duplicate(&self) -> Self {
        Self::new(self.0.as_str().to_owned())
    }
}

/// The inner `Zeroizing` wipes the text when dropped.
impl zeroize::ZeroizeOnDrop for AccessToken {}

/// Everything secret about one account on one device.
pub struct StoredSecrets {
    pub identity: IdentitySecret,
    /// `None` once logged out.
    pub token: Option<AccessToken>,
}

/// Names an account's entry: one per server and (case-insensitive) username.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct AccountKey(String);

impl AccountKey {
    pub fn new(server: &ServerUrl, username: &str) -> Self {
        Self(format!("{}@{}", username.to_ascii_lowercase(), server))
    }

    /// `alice@https://relay.example.org`: the keyring user and the file's map key.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for AccountKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A place for [`StoredSecrets`]. Implementations are blocking (they are
/// called rarely, and the keyring API is synchronous).
pub trait SecretStore: Send + Sync {
    fn kind(&self) -> KeyStoreKind;
    /// Where the secrets are, for the user: "the OS keyring" or the file path.
    fn describe(&self) -> String;
    fn load(&self, account: &AccountKey) -> Result<Option<StoredSecrets>, KeystoreError>;
    fn save(&self, account: &AccountKey, secrets: &StoredSecrets) -> Result<(), KeystoreError>;
    fn delete(&self, account: &AccountKey) -> Result<(), KeystoreError>;
}

/// The record both backends store, as written.
#[derive(Serialize)]
struct RecordOut<'a> {
    identity_secret: &'a str,
    access_token: Option<&'a str>,
}

/// The record as read; wiped when dropped.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RecordIn {
    identity_secret: String,
    #[serde(default)]
    access_token: Option<String>,
}

impl Drop for RecordIn {
    fn drop(&mut self) {
        self.identity_secret.zeroize();
        if let Some(token) = &mut self.access_token {
            token.zeroize();
        }
    }
}

impl RecordIn {
    fn to_secrets(&self, location: &str) -> Result<StoredSecrets, KeystoreError> {
        let corrupt = |reason: &str| KeystoreError::Corrupt {
            location: location.to_owned(),
            reason: reason.to_owned(),
        };
        let mut bytes = Zeroizing::new([0u8; 32]);
        hex::decode_to_slice(&self.identity_secret, bytes.as_mut_slice())
            .map_err(|_| corrupt("identity_secret is not 64 hex digits"))?;
        Ok(StoredSecrets {
            identity: IdentitySecret::from_bytes(*bytes),
            token: self.access_token.clone().map(AccessToken::new),
        })
    }
}

fn record_out(secrets: &StoredSecrets) -> (Zeroizing<String>, Option<&str>) {
    let hex = Zeroizing::new(hex::encode(secrets.identity.expose_secret_bytes()));
    (hex, secrets.token.as_ref().map(AccessToken::expose))
}

/// The record as JSON text (the keyring entry's password).
fn encode_record(secrets: &StoredSecrets) -> Result<Zeroizing<String>, KeystoreError> {
    let (hex, token) = record_out(secrets);
    serde_json::to_string(&RecordOut {
        identity_secret: &hex,
        access_token: token,
    })
    .map(Zeroizing::new)
    .map_err(|e| KeystoreError::Keyring(e.to_string()))
}

fn decode_record(text: &str, location: &str) -> Result<StoredSecrets, KeystoreError> {
    let record: RecordIn = serde_json::from_str(text).map_err(|_| KeystoreError::Corrupt {
        location: location.to_owned(),
        reason: "not a Kavro secrets record".to_owned(),
    })?;
    record.to_secrets(location)
}

/// A backend picked for a new account, and what to tell the user about it.
pub struct Chosen {
    pub store: Arc<dyn SecretStore>,
    /// Say this once on stderr (e.g. that the file is used because no keyring works).
    pub notice: Option<String>,
}

/// Where the keyring backend comes from.
#[derive(Clone)]
enum KeyringSource {
    /// The platform's keyring, initialised on first use.
    Os,
    /// A given store (keyring-core's mock in tests).
    #[cfg(test)]
    Given(Arc<keyring_core::CredentialStore>),
    /// No keyring at all, with the reason.
    #[cfg(test)]
    Missing(String),
}

/// Opens and chooses secret stores for one profile.
#[derive(Clone)]
pub struct Keystores {
    explicit: Option<KeyStoreKind>,
    secrets_file: PathBuf,
    keyring: KeyringSource,
}

impl Keystores {
    /// With the platform's keyring. `explicit` is `KAVRO_KEY_STORE`.
    pub fn new(secrets_file: PathBuf, explicit: Option<KeyStoreKind>) -> Self {
        Self {
            explicit,
            secrets_file,
            keyring: KeyringSource::Os,
        }
    }

    /// With a given keyring store instead of the platform's (tests).
    #[cfg(test)]
    pub fn with_keyring_store(
        secrets_file: PathBuf,
        explicit: Option<KeyStoreKind>,
        store: Arc<keyring_core::CredentialStore>,
    ) -> Self {
        Self {
            explicit,
            secrets_file,
            keyring: KeyringSource::Given(store),
        }
    }

    /// As on a machine without any keyring (tests).
    #[cfg(test)]
    pub fn without_keyring(secrets_file: PathBuf, explicit: Option<KeyStoreKind>) -> Self {
        Self {
            explicit,
            secrets_file,
            keyring: KeyringSource::Missing("no keyring on this machine".to_owned()),
        }
    }

    /// What `KAVRO_KEY_STORE` asked for, if anything.
    pub fn explicit(&self) -> Option<KeyStoreKind> {
        self.explicit
    }

    /// The backend a profile's config names. Opening the keyring does not
    /// touch it yet; the first load or save reports it unavailable.
    pub fn open(&self, kind: KeyStoreKind) -> Arc<dyn SecretStore> {
        match kind {
            KeyStoreKind::File => Arc::new(FileStore::new(self.secrets_file.clone())),
            KeyStoreKind::Keyring => Arc::new(self.keyring_store()),
        }
    }

    /// The keyring backend itself (for entries beside the account record).
    pub fn keyring_store(&self) -> KeyringStore {
        match &self.keyring {
            KeyringSource::Os => KeyringStore::os(),
            #[cfg(test)]
            KeyringSource::Given(store) => KeyringStore::with_store(store.clone()),
            #[cfg(test)]
            KeyringSource::Missing(reason) => KeyringStore::missing(reason.clone()),
        }
    }

    /// Picks the backend for a new account (see the module docs).
    pub fn choose(&self) -> Result<Chosen, KeystoreError> {
        match self.explicit {
            Some(KeyStoreKind::File) => Ok(Chosen {
                store: self.open(KeyStoreKind::File),
                notice: None,
            }),
            Some(KeyStoreKind::Keyring) => {
                let store = self.keyring_store();
                store.probe().map_err(|err| match err {
                    KeystoreError::KeyringUnavailable(detail) | KeystoreError::Keyring(detail) => {
                        KeystoreError::KeyringUnavailable(format!(
                            "{detail} ({ENV_KEY_STORE}=keyring makes it mandatory; use {ENV_KEY_STORE}=file to keep the key in a private file instead)"
                        ))
                    }
                    other => other,
                })?;
                Ok(Chosen {
                    store: Arc::new(store),
                    notice: None,
                })
            }
            None => {
                let store = self.keyring_store();
                match store.probe() {
                    Ok(()) => Ok(Chosen {
                        store: Arc::new(store),
                        notice: None,
                    }),
                    Err(err) => Ok(Chosen {
                        notice: Some(format!(
                            "no usable OS keyring ({err}); keeping your identity key and token in {} (mode 0600) instead. Set {ENV_KEY_STORE}=file to silence this, or {ENV_KEY_STORE}=keyring to require the keyring.",
                            self.secrets_file.display()
                        )),
                        store: self.open(KeyStoreKind::File),
                    }),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server() -> ServerUrl {
        ServerUrl::parse("http://127.0.0.1:8000").unwrap()
    }

    fn secrets(byte: u8, token: Option<&str>) -> StoredSecrets {
        StoredSecrets {
            identity: IdentitySecret::from_bytes([byte; 32]),
            token: token.map(|t| AccessToken::new(t.to_owned())),
        }
    }

    // Secrets: never printed, copied implicitly or serialised; wiped on drop.
    static_assertions::assert_impl_all!(AccessToken: zeroize::ZeroizeOnDrop);
    static_assertions::assert_not_impl_any!(
        AccessToken: fmt::Debug,
        fmt::Display,
        Clone,
        Serialize
    );
    static_assertions::assert_impl_all!(Zeroizing<String>: zeroize::ZeroizeOnDrop);
    static_assertions::assert_not_impl_any!(StoredSecrets: fmt::Debug, Clone, Serialize);
    static_assertions::assert_not_impl_any!(RecordIn: fmt::Debug, Clone);

    #[test]
    fn a_wiped_token_is_empty() {
        let mut token = AccessToken::new("eyJ.secret.jwt".to_owned());
        token.0.zeroize();
        assert_eq!(token.expose(), "");
    }

    #[test]
    fn kinds_parse() {
        assert_eq!("file".parse::<KeyStoreKind>().unwrap(), KeyStoreKind::File);
        assert_eq!(
            " Keyring ".parse::<KeyStoreKind>().unwrap(),
            KeyStoreKind::Keyring
        );
        let err = "vault".parse::<KeyStoreKind>().unwrap_err().to_string();
        assert!(err.contains("keyring") && err.contains("file"), "{err}");
    }

    #[test]
    fn account_keys_ignore_case() {
        assert_eq!(
            AccountKey::new(&server(), "Alice"),
            AccountKey::new(&server(), "alice")
        );
        assert_eq!(
            AccountKey::new(&server(), "Alice").as_str(),
            "alice@http://127.0.0.1:8000"
        );
    }

    #[test]
    fn record_round_trip() {
        let text = encode_record(&secrets(7, Some("tok"))).unwrap();
        assert_eq!(
            text.as_str(),
            format!(
                "{{\"identity_secret\":\"{}\",\"access_token\":\"tok\"}}",
                "07".repeat(32)
            )
        );
        let back = decode_record(&text, "here").unwrap();
        assert_eq!(back.identity.expose_secret_bytes(), &[7; 32]);
        assert_eq!(back.token.unwrap().expose(), "tok");
        let err = decode_record("{\"identity_secret\":\"zz\"}", "here")
            .err()
            .unwrap();
        assert!(err.to_string().contains("damaged"), "{err}");
        assert!(decode_record("nope", "here").is_err());
    }

    fn mock() -> Arc<keyring_core::CredentialStore> {
        keyring_core::mock::Store::new().unwrap()
    }

    #[test]
    fn choose_prefers_a_working_keyring() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("secrets.json");
        let stores = Keystores::with_keyring_store(file.clone(), None, mock());
        let chosen = stores.choose().unwrap();
        assert_eq!(chosen.store.kind(), KeyStoreKind::Keyring);
        assert!(chosen.notice.is_none());

        let account = AccountKey::new(&server(), "alice");
        chosen
            .store
            .save(&account, &secrets(1, Some("t1")))
            .unwrap();
        // Another handle on the same keyring sees it (one entry per account).
        let again = stores.open(KeyStoreKind::Keyring);
        let loaded = again.load(&account).unwrap().unwrap();
        assert_eq!(loaded.identity.expose_secret_bytes(), &[1; 32]);
        assert_eq!(loaded.token.unwrap().expose(), "t1");
        again.delete(&account).unwrap();
        assert!(again.load(&account).unwrap().is_none());
        assert!(!file.exists(), "nothing written to the file");
    }

    #[test]
    fn choose_falls_back_to_the_file_with_one_notice() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("secrets.json");
        let stores = Keystores::without_keyring(file.clone(), None);
        let chosen = stores.choose().unwrap();
        assert_eq!(chosen.store.kind(), KeyStoreKind::File);
        let notice = chosen.notice.unwrap();
        assert!(notice.contains("no usable OS keyring"), "{notice}");
        assert!(notice.contains(&file.display().to_string()), "{notice}");
    }

    #[test]
    fn explicit_choices() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("secrets.json");
        let chosen = Keystores::with_keyring_store(file.clone(), Some(KeyStoreKind::File), mock())
            .choose()
            .unwrap();
        assert_eq!(chosen.store.kind(), KeyStoreKind::File);
        assert!(
            chosen.notice.is_none(),
            "an explicit choice needs no notice"
        );

        let err = Keystores::without_keyring(file.clone(), Some(KeyStoreKind::Keyring))
            .choose()
            .err()
            .unwrap();
        assert!(matches!(err, KeystoreError::KeyringUnavailable(_)), "{err}");
        assert!(err.to_string().contains("KAVRO_KEY_STORE=file"), "{err}");
    }

    #[test]
    fn a_recorded_keyring_that_is_gone_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let stores = Keystores::without_keyring(dir.path().join("secrets.json"), None);
        let store = stores.open(KeyStoreKind::Keyring);
        let account = AccountKey::new(&server(), "alice");
        assert!(matches!(
            store.load(&account),
            Err(KeystoreError::KeyringUnavailable(_))
        ));
    }
}
