//! The OS keyring backend (keyring 4: Secret Service on Linux and the BSDs,
//! Keychain on macOS, Credential Manager on Windows): one entry per account,
//! service `kavro`, user `<username>@<server>`, holding the JSON record.
//!
//! keyring's API is blocking, and on Linux it talks D-Bus through its own
//! executor; every call runs on a short-lived thread of its own so that it
//! never blocks (or trips over) the async runtime of the caller.

use std::sync::Arc;

use keyring_core::{CredentialStore, Entry, Error};

use super::{
    AccountKey, KEYRING_SERVICE, KeyStoreKind, KeystoreError, SecretStore, StoredSecrets,
    decode_record, encode_record,
};

/// The user name of the probe entry written and deleted when choosing a backend.
const PROBE_USER: &str = "kavro-probe";

enum Source {
    Os,
    #[cfg(test)]
    Given(Arc<CredentialStore>),
    #[cfg(test)]
    Missing(String),
}

/// Secrets in a keyring.
pub struct KeyringStore {
    source: Source,
}

impl KeyringStore {
    /// The platform's keyring, initialised on first use.
    pub fn os() -> Self {
        Self { source: Source::Os }
    }

    /// A specific store, e.g. `keyring_core::mock::Store::new()` in tests.
    #[cfg(test)]
    pub fn with_store(store: Arc<CredentialStore>) -> Self {
        Self {
            source: Source::Given(store),
        }
    }

    #[cfg(test)]
    pub(super) fn missing(reason: String) -> Self {
        Self {
            source: Source::Missing(reason),
        }
    }

    fn store(&self) -> Result<Arc<CredentialStore>, KeystoreError> {
        match &self.source {
            Source::Os => off_thread(|| match keyring::Entry::store_status() {
                Ok(()) => keyring_core::get_default_store().ok_or_else(|| {
                    KeystoreError::KeyringUnavailable("no default credential store".to_owned())
                }),
                Err(err) => Err(KeystoreError::KeyringUnavailable(err.to_string())),
            })?,
            #[cfg(test)]
            Source::Given(store) => Ok(store.clone()),
            #[cfg(test)]
            Source::Missing(reason) => Err(KeystoreError::KeyringUnavailable(reason.clone())),
        }
    }

    fn entry(&self, user: &str) -> Result<Entry, KeystoreError> {
        let store = self.store()?;
        Entry::new_in_store(&store, KEYRING_SERVICE, user).map_err(map_err)
    }

    /// Writes, reads back and deletes a probe entry: succeeds only where the
    /// keyring really works (unlocked, reachable, persistent API).
    pub fn probe(&self) -> Result<(), KeystoreError> {
        let entry = self.entry(PROBE_USER)?;
        off_thread(move || {
            let value = format!("probe-{}", std::process::id());
            entry.set_password(&value).map_err(map_err)?;
            let back = entry.get_password().map_err(map_err);
            let _ = entry.delete_credential();
            if back? == value {
                Ok(())
            } else {
                Err(KeystoreError::KeyringUnavailable(
                    "the keyring did not return what was stored".to_owned(),
                ))
            }
        })?
    }
}

/// Entries of other secrets than the account record (the Kavro v2 device
/// key): plain text under their own user name, same service.
impl KeyringStore {
    /// The text of entry `user`; `None` if there is none.
    pub fn get_text(
        &self,
        user: &str,
    ) -> Result<Option<zeroize::Zeroizing<String>>, KeystoreError> {
        let entry = self.entry(user)?;
        match off_thread(move || entry.get_password())? {
            Ok(text) => Ok(Some(zeroize::Zeroizing::new(text))),
            Err(Error::NoEntry) => Ok(None),
            Err(err) => Err(map_err(err)),
        }
    }

    /// Writes entry `user`.
    pub fn set_text(&self, user: &str, text: &str) -> Result<(), KeystoreError> {
        let entry = self.entry(user)?;
        let text = zeroize::Zeroizing::new(text.to_owned());
        off_thread(move || entry.set_password(&text))?.map_err(map_err)
    }
}

/// Runs `f` on its own thread (see the module docs).
fn off_thread<T: Send>(f: impl FnOnce() -> T + Send) -> Result<T, KeystoreError> {
    std::thread::scope(|scope| scope.spawn(f).join())
        .map_err(|_| KeystoreError::Keyring("the keyring call panicked".to_owned()))
}

/// keyring errors, without their payloads (`BadEncoding` would carry secret bytes).
fn map_err(err: Error) -> KeystoreError {
    match err {
        Error::NoStorageAccess(_) | Error::PlatformFailure(_) | Error::NoDefaultStore => {
            KeystoreError::KeyringUnavailable(err.to_string())
        }
        Error::BadEncoding(_) | Error::BadDataFormat(..) => {
            KeystoreError::Keyring("the stored entry is not valid text".to_owned())
        }
        other => KeystoreError::Keyring(other.to_string()),
    }
}

impl SecretStore for KeyringStore {
    fn kind(&self) -> KeyStoreKind {
        KeyStoreKind::Keyring
    }

    fn describe(&self) -> String {
        "the OS keyring".to_owned()
    }

    fn load(&self, account: &AccountKey) -> Result<Option<StoredSecrets>, KeystoreError> {
        let entry = self.entry(account.as_str())?;
        let text = match off_thread(move || entry.get_password())? {
            Ok(text) => zeroize::Zeroizing::new(text),
            Err(Error::NoEntry) => return Ok(None),
            Err(err) => return Err(map_err(err)),
        };
        let location = format!("the OS keyring entry {KEYRING_SERVICE}/{account}");
        decode_record(&text, &location).map(Some)
    }

    fn save(&self, account: &AccountKey, secrets: &StoredSecrets) -> Result<(), KeystoreError> {
        let entry = self.entry(account.as_str())?;
        let text = encode_record(secrets)?;
        off_thread(move || entry.set_password(&text))?.map_err(map_err)
    }

    fn delete(&self, account: &AccountKey) -> Result<(), KeystoreError> {
        let entry = self.entry(account.as_str())?;
        match off_thread(move || entry.delete_credential())? {
            Ok(()) | Err(Error::NoEntry) => Ok(()),
            Err(err) => Err(map_err(err)),
        }
    }
}
