//! [`BlobMeta`](crate::store::blobs::BlobMeta) on SQLite: the single writer
//! connection serialises every account's quota check.

use super::SqliteStore;

crate::store::blobs_sql::blob_meta_impl!(
    SqliteStore,
    writer,
    writer,
    sqlx::Sqlite,
    "SELECT id FROM users WHERE id = $1"
);
