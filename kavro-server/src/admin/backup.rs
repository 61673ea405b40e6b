//! `kavro-server backup PATH`: a consistent copy of the embedded database
//! while the relay runs, made by SQLite's `VACUUM INTO` (one read
//! transaction: the copy is the database as of one moment, and WAL lets the
//! relay keep writing meanwhile). PostgreSQL has its own tools
//! (docs/OPERATIONS.md, "Backups").

use std::path::Path;

use super::{AdminError, sqlite_file};
use crate::config::Config;
use crate::store::StoreOptions;
use crate::store::sqlite::SqliteStore;

/// Copies the configured embedded database to `target`, which must not exist.
pub async fn backup(config: &Config, target: &Path) -> Result<(), AdminError> {
    let url = config.effective_database_url();
    let Some(file) = sqlite_file(&url)? else {
        return Err(AdminError::Invalid(
            "`kavro-server backup` copies the embedded SQLite database; back up PostgreSQL \
             with pg_dump as docs/OPERATIONS.md (\"Backups\") shows"
                .to_owned(),
        ));
    };
    if target.exists() {
        return Err(AdminError::Invalid(format!(
            "{} already exists: give a new file name (a backup never overwrites)",
            target.display()
        )));
    }
    if !file.is_file() {
        return Err(AdminError::NoDatabase(file));
    }
    let store = SqliteStore::connect(&StoreOptions {
        url,
        read_url: None,
        max_connections: 1,
        migrate: false,
    })
    .await?;
    store.backup_into(target).await?;
    crate::audit::admin_action("backup", &target.display().to_string());
    Ok(())
}
