//! The local MLS state of one installation (one device): openmls' storage and
//! Kavro's own v2 tables (device, conversations, messages, outbox) in one
//! SQLite file, `mls.db` in the profile's data directory, mode 0600.
//!
//! Why not `openmls_sqlite_storage`: it needs rusqlite 0.37, whose
//! `libsqlite3-sys` (0.35) cannot share the build with sqlx 0.9's (0.37);
//! both link `sqlite3`. As the issue allows, openmls' storage lives in the
//! client's own database instead: openmls writes to its in-memory
//! key-value [`MemoryStorage`] (every value openmls keeps is one key and one
//! value there), and [`MlsStore::commit`] writes what changed since the last
//! commit into the `mls_kv` table **in the same transaction** as the Kavro
//! rows of the same step (the decrypted message, the queue position, the
//! outbox row). A crash therefore leaves the file either before or after the
//! step, never with an epoch the history does not match; the queue entries
//! after the stored position are fetched again and applied again.
//!
//! If a commit fails, the in-memory state is ahead of the file: the store
//! reloads itself from the file ([`MlsStore::reload`]) so that the next step
//! starts from what is durable.

use std::collections::HashMap;
use std::path::Path;

use openmls_memory_storage::MemoryStorage;
use openmls_rust_crypto::RustCrypto;
use openmls_traits::OpenMlsProvider;
use sqlx::sqlite::SqlitePool;
use sqlx::{Row as _, Sqlite, Transaction};

pub mod attachments;
pub mod device_key;
pub mod pins;
pub mod rows;
pub mod session_cache;

use crate::history::open_private_pool;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations-v2");

/// The local MLS database failed.
#[derive(Debug, thiserror::Error)]
pub enum MlsStoreError {
    #[error("cannot open the MLS state at {path}: {source}")]
    Open {
        path: String,
        #[source]
        source: sqlx::Error,
    },
    #[error("the MLS state database failed: {0}")]
    Database(#[from] sqlx::Error),
    #[error("cannot prepare the MLS state database: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

/// openmls' provider: RustCrypto for the cryptography, the in-memory
/// storage that [`MlsStore`] persists.
#[derive(Default)]
pub struct Provider {
    crypto: RustCrypto,
    storage: MemoryStorage,
}

impl OpenMlsProvider for Provider {
    type CryptoProvider = RustCrypto;
    type RandProvider = RustCrypto;
    type StorageProvider = MemoryStorage;

    fn storage(&self) -> &Self::StorageProvider {
        &self.storage
    }

    fn crypto(&self) -> &Self::CryptoProvider {
        &self.crypto
    }

    fn rand(&self) -> &Self::RandProvider {
        &self.crypto
    }
}

type KeyValues = HashMap<Vec<u8>, Vec<u8>>;

/// The MLS database of one installation and openmls' provider over it.
pub struct MlsStore {
    pool: SqlitePool,
    provider: Provider,
    /// What the file holds of openmls' storage (the base of the next diff).
    persisted: KeyValues,
}

impl MlsStore {
    /// Opens (or creates, 0600) the database at `path` and loads openmls' state.
    pub async fn open(path: &Path) -> Result<Self, MlsStoreError> {
        let open_err = |source| MlsStoreError::Open {
            path: path.display().to_string(),
            source,
        };
        // Secret keys of every group live here: private from the first byte.
        let pool = open_private_pool(path, 2, false).await.map_err(open_err)?;
        MIGRATOR.run(&pool).await?;
        let mut store = Self {
            pool,
            provider: Provider::default(),
            persisted: KeyValues::new(),
        };
        store.reload().await?;
        Ok(store)
    }

    pub fn provider(&self) -> &Provider {
        &self.provider
    }

    /// Starts the transaction of one step; finish it with [`MlsStore::commit`].
    pub async fn begin(&self) -> Result<Transaction<'static, Sqlite>, MlsStoreError> {
        Ok(self.pool.begin().await?)
    }

    /// Writes openmls' changes since the last commit into `tx` and commits
    /// it: the Kavro rows in `tx` and the MLS state land together.
    pub async fn commit(
        &mut self,
        mut tx: Transaction<'static, Sqlite>,
    ) -> Result<(), MlsStoreError> {
        let current = self.snapshot();
        let written = async {
            for key in self.persisted.keys() {
                if !current.contains_key(key) {
                    sqlx::query("DELETE FROM mls_kv WHERE key = $1")
                        .bind(key)
                        .execute(&mut *tx)
                        .await?;
                }
            }
            for (key, value) in &current {
                if self.persisted.get(key) != Some(value) {
                    sqlx::query(
                        "INSERT INTO mls_kv (key, value) VALUES ($1, $2) \
                         ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                    )
                    .bind(key)
                    .bind(value)
                    .execute(&mut *tx)
                    .await?;
                }
            }
            tx.commit().await
        }
        .await;
        match written {
            Ok(()) => {
                self.persisted = current;
                Ok(())
            }
            Err(err) => {
                // Memory is ahead of the file: go back to what is durable.
                self.reload().await?;
                Err(err.into())
            }
        }
    }

    /// Forgets unsaved changes: openmls' state becomes the file's again.
    pub async fn reload(&mut self) -> Result<(), MlsStoreError> {
        let rows = sqlx::query("SELECT key, value FROM mls_kv")
            .fetch_all(&self.pool)
            .await?;
        let mut values = KeyValues::with_capacity(rows.len());
        for row in rows {
            values.insert(row.try_get("key")?, row.try_get("value")?);
        }
        self.values_mut().clone_from(&values);
        self.persisted = values;
        Ok(())
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }

    fn snapshot(&self) -> KeyValues {
        match self.provider.storage.values.read() {
            Ok(values) => values.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    fn values_mut(&mut self) -> std::sync::RwLockWriteGuard<'_, KeyValues> {
        match self.provider.storage.values.write() {
            Ok(values) => values,
            Err(poisoned) => poisoned.into_inner(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What one commit writes is what the next open reads; a rolled-back
    /// step leaves nothing behind.
    #[tokio::test]
    async fn state_survives_reopen_and_failed_steps_vanish() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mls.db");
        let mut store = MlsStore::open(&path).await.unwrap();
        let signer = openmls_basic_credential::SignatureKeyPair::new(
            openmls::prelude::SignatureScheme::ED25519,
        )
        .unwrap();
        signer.store(store.provider().storage()).unwrap();
        let tx = store.begin().await.unwrap();
        store.commit(tx).await.unwrap();
        // A change made but never committed is forgotten by reload.
        store
            .provider()
            .storage()
            .values
            .write()
            .unwrap()
            .insert(vec![1], vec![2]);
        store.reload().await.unwrap();
        assert!(!store.snapshot().contains_key(&vec![1]));
        store.close().await;

        let reopened = MlsStore::open(&path).await.unwrap();
        let read = openmls_basic_credential::SignatureKeyPair::read(
            reopened.provider().storage(),
            signer.public(),
            openmls::prelude::SignatureScheme::ED25519,
        );
        assert_eq!(
            read.map(|s| s.public().to_vec()),
            Some(signer.public().to_vec())
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }
}
