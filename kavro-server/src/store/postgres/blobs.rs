//! [`BlobMeta`](crate::store::blobs::BlobMeta) on PostgreSQL: the account's
//! row is locked (`FOR UPDATE`) for the quota check, so concurrent creations
//! on any instance cannot both pass.

use super::PgStore;

crate::store::blobs_sql::blob_meta_impl!(
    PgStore,
    primary,
    primary,
    sqlx::Postgres,
    "SELECT id FROM users WHERE id = $1 FOR UPDATE"
);
