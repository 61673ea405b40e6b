//! The device's MLS signature key (Ed25519), kept like the account's
//! identity secret ([`DeviceKeyHome`]): in the OS keyring when the account's
//! secrets are there (entry `kavro` / `mls-device:<username>@<server>`),
//! else in `mls-device.key` in the profile's private data directory (0700),
//! mode 0600, next to `mls.db`. Either holds JSON `{"key": hex}`, the key
//! pair's TLS encoding (openmls_basic_credential: private key, public key,
//! signature scheme). Created once (an existing key is never overwritten)
//! and never regenerated: a missing or unreadable key is an error that
//! names where it was. A key file written before the keyring was used for
//! device keys moves into the keyring on first use (read back and compared
//! before the file is removed).

use std::io::Write as _;
use std::path::{Path, PathBuf};

use openmls::prelude::tls_codec::{Deserialize as _, Serialize as _};
use openmls_basic_credential::SignatureKeyPair;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::keystore::{AccountKey, KeyStoreKind, KeyringStore};
use crate::v2::SUITE;

/// The key file could not be written or read.
#[derive(Debug, thiserror::Error)]
pub enum DeviceKeyError {
    #[error("cannot write the device key {path}: {source}")]
    Write {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot read the device key {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the device key {path} is corrupt")]
    Corrupt { path: String },
    #[error("the device key in the OS keyring: {0}")]
    Keyring(#[from] crate::keystore::KeystoreError),
    #[error(
        "the OS keyring and {path} hold two different device keys; keep the one of this device's `kavro device list` entry and remove the other"
    )]
    TwoKeys { path: String },
    #[error("a device key exists already in {0}")]
    Exists(String),
}

/// Where an installation keeps its device key.
pub enum DeviceKeyHome {
    /// The OS keyring entry `user` (service `kavro`); `file` is where an
    /// older version kept it (migrated on first load).
    Keyring {
        store: KeyringStore,
        user: String,
        file: PathBuf,
    },
    /// A 0600 file.
    File(PathBuf),
}

impl DeviceKeyHome {
    /// The home of the device key of `account`'s secrets in `kind`.
    pub fn new(
        kind: KeyStoreKind,
        account: &AccountKey,
        store: KeyringStore,
        file: PathBuf,
    ) -> Self {
        match kind {
            KeyStoreKind::Keyring => Self::Keyring {
                store,
                user: format!("mls-device:{account}"),
                file,
            },
            KeyStoreKind::File => Self::File(file),
        }
    }

    /// Where it is, for the user.
    pub fn describe(&self) -> String {
        match self {
            Self::Keyring { user, .. } => format!("the OS keyring entry kavro/{user}"),
            Self::File(path) => path.display().to_string(),
        }
    }

    /// Whether a device key is kept (anywhere this home looks).
    pub fn exists(&self) -> Result<bool, DeviceKeyError> {
        match self {
            Self::Keyring { store, user, file } => {
                Ok(file.exists() || store.get_text(user)?.is_some())
            }
            Self::File(path) => Ok(path.exists()),
        }
    }

    /// Reads the key; `None` if there is none. Moves a key file into the
    /// keyring first if the keyring is the home.
    pub fn load(&self) -> Result<Option<SignatureKeyPair>, DeviceKeyError> {
        match self {
            Self::File(path) => load(path),
            Self::Keyring { store, user, file } => {
                let location = self.describe();
                let in_keyring = match store.get_text(user)? {
                    Some(text) => Some(parse(&text, &location)?),
                    None => None,
                };
                let Some(from_file) = load(file)? else {
                    return Ok(in_keyring);
                };
                if let Some(kept) = &in_keyring {
                    if kept.public() != from_file.public() {
                        return Err(DeviceKeyError::TwoKeys {
                            path: file.display().to_string(),
                        });
                    }
                } else {
                    store.set_text(user, &to_text(&from_file)?)?;
                    let back = store
                        .get_text(user)?
                        .map(|text| parse(&text, &location))
                        .transpose()?;
                    if back.is_none_or(|b| *encode(&b) != *encode(&from_file)) {
                        return Err(DeviceKeyError::Corrupt { path: location });
                    }
                }
                std::fs::remove_file(file).map_err(|source| DeviceKeyError::Write {
                    path: file.display().to_string(),
                    source,
                })?;
                Ok(Some(from_file))
            }
        }
    }

    /// Keeps a new key; fails if one is kept already.
    pub fn create(&self, signer: &SignatureKeyPair) -> Result<(), DeviceKeyError> {
        match self {
            Self::File(path) => create(path, signer),
            Self::Keyring { store, user, .. } => {
                if self.exists()? {
                    return Err(DeviceKeyError::Exists(self.describe()));
                }
                store.set_text(user, &to_text(signer)?)?;
                Ok(())
            }
        }
    }
}

fn to_text(signer: &SignatureKeyPair) -> Result<Zeroizing<String>, DeviceKeyError> {
    serde_json::to_string(&KeyFile {
        key: hex::encode(encode(signer).as_slice()),
    })
    .map(Zeroizing::new)
    .map_err(|e| DeviceKeyError::Write {
        path: "the device key".to_owned(),
        source: std::io::Error::other(e),
    })
}

fn parse(text: &str, location: &str) -> Result<SignatureKeyPair, DeviceKeyError> {
    let corrupt = || DeviceKeyError::Corrupt {
        path: location.to_owned(),
    };
    let file: KeyFile = serde_json::from_str(text).map_err(|_| corrupt())?;
    let bytes = Zeroizing::new(hex::decode(&file.key).map_err(|_| corrupt())?);
    decode(&bytes).ok_or_else(corrupt)
}

#[derive(Serialize, Deserialize)]
struct KeyFile {
    key: String,
}

impl Drop for KeyFile {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.key);
    }
}

/// The key pair's TLS encoding (it holds the private key).
pub fn encode(signer: &SignatureKeyPair) -> Zeroizing<Vec<u8>> {
    Zeroizing::new(signer.tls_serialize_detached().expect("a key pair encodes"))
}

/// A key pair from [`encode`]'s bytes.
pub fn decode(bytes: &[u8]) -> Option<SignatureKeyPair> {
    let signer = SignatureKeyPair::tls_deserialize_exact(bytes).ok()?;
    (signer.signature_scheme() == SUITE.signature_algorithm() && signer.public().len() == 32)
        .then_some(signer)
}

/// Writes `signer` to a new file at `path` (0600); fails if one exists.
pub fn create(path: &Path, signer: &SignatureKeyPair) -> Result<(), DeviceKeyError> {
    let write_err = |source| DeviceKeyError::Write {
        path: path.display().to_string(),
        source,
    };
    let text = to_text(signer)?;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    let mut file = options.open(path).map_err(write_err)?;
    file.write_all(text.as_bytes()).map_err(write_err)?;
    file.sync_all().map_err(write_err)
}

/// Reads the key at `path`; `None` if there is no file.
pub fn load(path: &Path) -> Result<Option<SignatureKeyPair>, DeviceKeyError> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => Zeroizing::new(text),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(DeviceKeyError::Read {
                path: path.display().to_string(),
                source,
            });
        }
    };
    parse(&text, &path.display().to_string()).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn written_once_read_back_and_corruption_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mls-device.key");
        assert!(load(&path).unwrap().is_none());
        let signer = crate::v2::new_signer().unwrap();
        create(&path, &signer).unwrap();
        assert!(create(&path, &signer).is_err(), "never overwritten");
        let read = load(&path).unwrap().unwrap();
        assert_eq!(read.public(), signer.public());
        assert_eq!(*encode(&read), *encode(&signer));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        std::fs::write(&path, "{\"key\":\"zz\"}").unwrap();
        assert!(matches!(load(&path), Err(DeviceKeyError::Corrupt { .. })));
        std::fs::write(&path, "{\"key\":\"0001\"}").unwrap();
        assert!(matches!(load(&path), Err(DeviceKeyError::Corrupt { .. })));
        std::fs::write(&path, "not json").unwrap();
        assert!(matches!(load(&path), Err(DeviceKeyError::Corrupt { .. })));
    }

    fn keyring_home(dir: &Path) -> (DeviceKeyHome, PathBuf) {
        let store = KeyringStore::with_store(keyring_core::mock::Store::new().unwrap());
        let file = dir.join("mls-device.key");
        let server = crate::config::ServerUrl::parse("http://127.0.0.1:1").unwrap();
        let home = DeviceKeyHome::new(
            KeyStoreKind::Keyring,
            &AccountKey::new(&server, "alice"),
            store,
            file.clone(),
        );
        (home, file)
    }

    #[test]
    fn the_keyring_keeps_the_key_and_never_overwrites_it() {
        let dir = tempfile::tempdir().unwrap();
        let (home, file) = keyring_home(dir.path());
        assert!(!home.exists().unwrap());
        assert!(home.load().unwrap().is_none());
        let signer = crate::v2::new_signer().unwrap();
        home.create(&signer).unwrap();
        assert!(!file.exists(), "nothing on disk");
        assert!(home.exists().unwrap());
        assert!(matches!(
            home.create(&crate::v2::new_signer().unwrap()),
            Err(DeviceKeyError::Exists(_))
        ));
        assert_eq!(*encode(&home.load().unwrap().unwrap()), *encode(&signer));
    }

    #[test]
    fn a_key_file_moves_into_the_keyring_once() {
        let dir = tempfile::tempdir().unwrap();
        let (home, file) = keyring_home(dir.path());
        let signer = crate::v2::new_signer().unwrap();
        create(&file, &signer).unwrap();
        assert!(home.exists().unwrap());
        let moved = home.load().unwrap().unwrap();
        assert_eq!(*encode(&moved), *encode(&signer));
        assert!(
            !file.exists(),
            "the file is gone once the keyring holds the key"
        );
        // Read again from the keyring alone.
        assert_eq!(*encode(&home.load().unwrap().unwrap()), *encode(&signer));
        // A file with the same key (a copy restored) is removed; a different
        // one is an error, never a silent choice.
        create(&file, &signer).unwrap();
        home.load().unwrap();
        assert!(!file.exists());
        create(&file, &crate::v2::new_signer().unwrap()).unwrap();
        assert!(matches!(home.load(), Err(DeviceKeyError::TwoKeys { .. })));
        assert!(file.exists(), "kept for the user to decide");
    }

    #[test]
    fn a_damaged_keyring_entry_is_an_error_not_a_new_key() {
        let dir = tempfile::tempdir().unwrap();
        let (home, _) = keyring_home(dir.path());
        if let DeviceKeyHome::Keyring { store, user, .. } = &home {
            store.set_text(user, "{\"key\":\"00\"}").unwrap();
        }
        assert!(matches!(home.load(), Err(DeviceKeyError::Corrupt { .. })));
        assert!(home.create(&crate::v2::new_signer().unwrap()).is_err());
    }
}
