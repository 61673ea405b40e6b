//! The file backend: `<data>/profiles/<profile>/secrets.json`, mode 0600, in
//! a 0700 directory, for machines without a usable OS keyring.
//!
//! ```json
//! {
//!   "format": "kavro-secrets-v1",
//!   "accounts": {
//!     "alice@http://127.0.0.1:8000": {
//!       "identity_secret": "<64 hex digits: the X25519 secret key, libsodium's encoding>",
//!       "access_token": "<JWT, or null after logout>"
//!     }
//!   }
//! }
//! ```
//!
//! The file is not encrypted: its protection is the file mode (refused when
//! group or others can read it, like ssh does) and the disk's. A change is a
//! read-modify-write under an exclusive lock on `secrets.json.lock`, so two
//! `kavro` processes (say a login and a logout) cannot lose each other's
//! account; the new content goes to a temporary 0600 file with a name of its
//! own, synced and renamed over the old one, so a reader sees the old file
//! or the new one, never half of one.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use super::{
    AccountKey, KeyStoreKind, KeystoreError, RecordIn, RecordOut, SecretStore, StoredSecrets,
    record_out,
};
use crate::paths::ensure_private_dir;

/// Makes temporary file names unique within this process.
static TEMP_COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// The `format` field of the file.
pub const FILE_FORMAT: &str = "kavro-secrets-v1";

/// Secrets in a private file.
pub struct FileStore {
    path: PathBuf,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileIn {
    format: String,
    #[serde(default)]
    accounts: BTreeMap<String, RecordIn>,
}

#[derive(Serialize)]
struct FileOut<'a> {
    format: &'static str,
    accounts: BTreeMap<&'a str, RecordOut<'a>>,
}

impl FileStore {
    pub fn new(path: PathBuf) -> Self {
        Self { path }
    }

    #[cfg(test)]
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn io_err(&self, source: std::io::Error) -> KeystoreError {
        KeystoreError::Io {
            path: self.path.display().to_string(),
            source,
        }
    }

    fn read(&self) -> Result<Option<FileIn>, KeystoreError> {
        let text = match std::fs::read_to_string(&self.path) {
            Ok(text) => Zeroizing::new(text),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(err) => return Err(self.io_err(err)),
        };
        self.check_permissions()?;
        let parsed: FileIn = serde_json::from_str(&text).map_err(|_| KeystoreError::Corrupt {
            location: self.path.display().to_string(),
            reason: "not a Kavro secrets file".to_owned(),
        })?;
        if parsed.format != FILE_FORMAT {
            return Err(KeystoreError::Corrupt {
                location: self.path.display().to_string(),
                reason: format!("unknown format {:?}; update Kavro", parsed.format),
            });
        }
        Ok(Some(parsed))
    }

    #[cfg(unix)]
    fn check_permissions(&self) -> Result<(), KeystoreError> {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&self.path)
            .map_err(|e| self.io_err(e))?
            .permissions()
            .mode()
            & 0o777;
        if mode & 0o077 != 0 {
            return Err(KeystoreError::InsecurePermissions {
                path: self.path.display().to_string(),
                mode,
            });
        }
        Ok(())
    }

    #[cfg(not(unix))]
    fn check_permissions(&self) -> Result<(), KeystoreError> {
        Ok(())
    }

    /// Rewrites the file with `accounts` (or removes it when empty).
    fn write(&self, accounts: &BTreeMap<String, &StoredSecrets>) -> Result<(), KeystoreError> {
        if accounts.is_empty() {
            return match std::fs::remove_file(&self.path) {
                Err(err) if err.kind() != std::io::ErrorKind::NotFound => Err(self.io_err(err)),
                _ => Ok(()),
            };
        }
        let dir = self.path.parent().unwrap_or_else(|| Path::new("."));
        ensure_private_dir(dir).map_err(|e| self.io_err(e))?;
        let hexes: Vec<(&str, Zeroizing<String>, Option<&str>)> = accounts
            .iter()
            .map(|(name, secrets)| {
                let (hex, token) = record_out(secrets);
                (name.as_str(), hex, token)
            })
            .collect();
        let out = FileOut {
            format: FILE_FORMAT,
            accounts: hexes
                .iter()
                .map(|(name, hex, token)| {
                    (
                        *name,
                        RecordOut {
                            identity_secret: hex,
                            access_token: *token,
                        },
                    )
                })
                .collect(),
        };
        let text = Zeroizing::new(serde_json::to_string_pretty(&out).map_err(|e| {
            KeystoreError::Corrupt {
                location: self.path.display().to_string(),
                reason: e.to_string(),
            }
        })?);
        let tmp = self.path.with_extension(format!(
            "json.{}.{}.tmp",
            std::process::id(),
            TEMP_COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ));
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt as _;
            options.mode(0o600);
        }
        let mut file = options.open(&tmp).map_err(|e| self.io_err(e))?;
        file.write_all(text.as_bytes())
            .and_then(|()| file.write_all(b"\n"))
            .and_then(|()| file.sync_all())
            .map_err(|e| self.io_err(e))?;
        drop(file);
        std::fs::rename(&tmp, &self.path).map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            self.io_err(e)
        })
    }

    /// Takes the exclusive lock of the file (released when the returned
    /// handle is dropped), creating the lock file `0600` if needed.
    fn lock(&self) -> Result<std::fs::File, KeystoreError> {
        let dir = self.path.parent().unwrap_or_else(|| Path::new("."));
        ensure_private_dir(dir).map_err(|e| self.io_err(e))?;
        let mut options = std::fs::OpenOptions::new();
        options.read(true).write(true).create(true).truncate(false);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt as _;
            options.mode(0o600);
        }
        let lock = options
            .open(self.path.with_extension("json.lock"))
            .map_err(|e| self.io_err(e))?;
        lock.lock().map_err(|e| self.io_err(e))?;
        Ok(lock)
    }

    /// Reads every account, applies `change` to the map and writes it back.
    fn update(
        &self,
        change: impl FnOnce(&mut BTreeMap<String, StoredSecrets>) -> Result<(), KeystoreError>,
    ) -> Result<(), KeystoreError> {
        let _lock = self.lock()?;
        let location = self.path.display().to_string();
        let mut accounts = BTreeMap::new();
        if let Some(file) = self.read()? {
            for (name, record) in &file.accounts {
                accounts.insert(name.clone(), record.to_secrets(&location)?);
            }
        }
        change(&mut accounts)?;
        let refs = accounts.iter().map(|(k, v)| (k.clone(), v)).collect();
        self.write(&refs)
    }
}

impl SecretStore for FileStore {
    fn kind(&self) -> KeyStoreKind {
        KeyStoreKind::File
    }

    fn describe(&self) -> String {
        format!("the file {}", self.path.display())
    }

    fn load(&self, account: &AccountKey) -> Result<Option<StoredSecrets>, KeystoreError> {
        let Some(file) = self.read()? else {
            return Ok(None);
        };
        file.accounts
            .get(account.as_str())
            .map(|record| record.to_secrets(&self.path.display().to_string()))
            .transpose()
    }

    fn save(&self, account: &AccountKey, secrets: &StoredSecrets) -> Result<(), KeystoreError> {
        let copy = StoredSecrets {
            identity: kavro_proto::crypto::IdentitySecret::from_bytes(
                *secrets.identity.expose_secret_bytes(),
            ),
            token: secrets.token.as_ref().map(super::AccessToken::duplicate),
        };
        self.update(|accounts| {
            accounts.insert(account.as_str().to_owned(), copy);
            Ok(())
        })
    }

    fn delete(&self, account: &AccountKey) -> Result<(), KeystoreError> {
        if !self.path.exists() {
            return Ok(());
        }
        self.update(|accounts| {
            accounts.remove(account.as_str());
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::AccessToken;
    use super::*;
    use crate::config::ServerUrl;
    use kavro_proto::crypto::IdentitySecret;

    fn account(name: &str) -> AccountKey {
        AccountKey::new(&ServerUrl::parse("http://127.0.0.1:8000").unwrap(), name)
    }

    fn secrets(byte: u8, token: Option<&str>) -> StoredSecrets {
        StoredSecrets {
            identity: IdentitySecret::from_bytes([byte; 32]),
            token: token.map(|t| AccessToken::new(t.to_owned())),
        }
    }

    #[test]
    fn save_load_delete() {
        let dir = tempfile::tempdir().unwrap();
        let store = FileStore::new(dir.path().join("p/secrets.json"));
        assert!(store.load(&account("alice")).unwrap().is_none());
        store
            .save(&account("alice"), &secrets(1, Some("t-a")))
            .unwrap();
        store.save(&account("bob"), &secrets(2, None)).unwrap();
        let alice = store.load(&account("ALICE")).unwrap().unwrap();
        assert_eq!(alice.identity.expose_secret_bytes(), &[1; 32]);
        assert_eq!(alice.token.unwrap().expose(), "t-a");
        let bob = store.load(&account("bob")).unwrap().unwrap();
        assert!(bob.token.is_none());
        // Logging out: same key, no token.
        store.save(&account("alice"), &secrets(1, None)).unwrap();
        assert!(
            store
                .load(&account("alice"))
                .unwrap()
                .unwrap()
                .token
                .is_none()
        );
        store.delete(&account("alice")).unwrap();
        store.delete(&account("bob")).unwrap();
        assert!(!store.path().exists(), "the last account removes the file");
        store.delete(&account("bob")).unwrap();
    }

    #[test]
    fn concurrent_writers_lose_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p/secrets.json");
        let writers: Vec<_> = (0..8u8)
            .map(|i| {
                let path = path.clone();
                std::thread::spawn(move || {
                    // Each its own store, as separate processes would have.
                    let store = FileStore::new(path);
                    for round in 0..10 {
                        let token = format!("t-{i}-{round}");
                        store
                            .save(&account(&format!("user{i}")), &secrets(i, Some(&token)))
                            .unwrap();
                    }
                })
            })
            .collect();
        for writer in writers {
            writer.join().unwrap();
        }
        let store = FileStore::new(path);
        for i in 0..8u8 {
            let saved = store.load(&account(&format!("user{i}"))).unwrap().unwrap();
            assert_eq!(saved.identity.expose_secret_bytes(), &[i; 32]);
            assert_eq!(saved.token.unwrap().expose(), format!("t-{i}-9"));
        }
        let leftovers: Vec<_> = std::fs::read_dir(dir.path().join("p"))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|name| {
                std::path::Path::new(name)
                    .extension()
                    .is_some_and(|ext| ext.eq_ignore_ascii_case("tmp"))
            })
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
    }

    #[test]
    fn documented_format() {
        let dir = tempfile::tempdir().unwrap();
        let store = FileStore::new(dir.path().join("secrets.json"));
        store
            .save(&account("Alice"), &secrets(0xab, Some("jwt")))
            .unwrap();
        let json: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(store.path()).unwrap()).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "format": "kavro-secrets-v1",
                "accounts": {"alice@http://127.0.0.1:8000": {
                    "identity_secret": "ab".repeat(32), "access_token": "jwt"}}
            })
        );
    }

    #[cfg(unix)]
    #[test]
    fn permissions_are_private_and_enforced() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let store = FileStore::new(data.join("secrets.json"));
        store.save(&account("alice"), &secrets(1, None)).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(store.path()), 0o600);
        assert_eq!(mode(&data), 0o700);

        std::fs::set_permissions(store.path(), std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = store.load(&account("alice")).err().unwrap();
        assert!(
            matches!(err, KeystoreError::InsecurePermissions { mode: 0o644, .. }),
            "{err}"
        );
        assert!(err.to_string().contains("chmod 600"), "{err}");
    }

    #[test]
    fn damaged_files_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let store = FileStore::new(dir.path().join("secrets.json"));
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt as _;
            options.mode(0o600);
        }
        let mut file = options.open(store.path()).unwrap();
        file.write_all(b"{\"format\":\"kavro-secrets-v9\",\"accounts\":{}}")
            .unwrap();
        drop(file);
        let err = store.load(&account("alice")).err().unwrap();
        assert!(err.to_string().contains("update Kavro"), "{err}");
        std::fs::write(store.path(), "garbage").unwrap();
        assert!(matches!(
            store.load(&account("alice")),
            Err(KeystoreError::Corrupt { .. })
        ));
    }
}
