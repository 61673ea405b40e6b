//! The blob store's metadata behind its own narrow trait, [`BlobMeta`]
//! (the bytes live in an object store, see `crate::blobs`). Both backends
//! implement it with the same SQL text (`blobs_sql.rs`).
//!
//! Lifetime: a blob lives until `expires_at`; once a message referenced it
//! or its uploader named a holder account (`referenced`), also only while
//! someone holds it: a device a referencing v2 message was queued for, or an
//! account named for a v1 message (`v2_blob_account_holds`), until each
//! acknowledged it.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use kavro_proto::UserId;
use kavro_proto::v2::{BlobId, MlsDeviceId};

use super::StoreError;

/// Why a blob operation was refused (or failed).
#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The account's blobs (uploaded and reserved) would exceed the quota.
    #[error("the account's blob quota of {quota} bytes would be exceeded")]
    QuotaExceeded { quota: u64 },
    /// Unknown, expired, deleted, or not the caller's.
    #[error("no such blob")]
    Gone,
    /// A chunk must start where the stored bytes end.
    #[error("the next chunk starts at offset {expected}")]
    OffsetMismatch { expected: u64 },
    /// The chunk would end past the blob's declared size.
    #[error("the chunk ends past the blob's size")]
    PastSize,
}

impl From<sqlx::Error> for BlobError {
    fn from(err: sqlx::Error) -> Self {
        Self::Store(StoreError::from(err))
    }
}

/// A blob as stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlobRow {
    pub id: BlobId,
    pub owner: UserId,
    pub size: u64,
    pub received: u64,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

impl BlobRow {
    pub fn complete(&self) -> bool {
        self.received == self.size
    }
}

/// One stored chunk: bytes `start..start + length` in object `object_key`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChunkRow {
    pub start: u64,
    pub length: u64,
    pub object_key: String,
}

/// A chunk to record after its object was written.
#[derive(Debug, Clone, Copy)]
pub struct NewChunk<'a> {
    pub blob: BlobId,
    pub owner: UserId,
    pub start: u64,
    pub length: u64,
    pub object_key: &'a str,
    pub now: DateTime<Utc>,
}

/// The blob metadata, as domain operations. Every time comes from the caller.
#[async_trait]
pub trait BlobMeta: Send + Sync + 'static {
    /// Reserves a blob of `size` bytes for `owner` unless the account's live
    /// blobs plus this one would exceed `quota` (checked and inserted under
    /// the account's lock: concurrent creations cannot both pass).
    async fn create_blob(
        &self,
        id: BlobId,
        owner: UserId,
        size: u64,
        quota: u64,
        now: DateTime<Utc>,
        expires_at: DateTime<Utc>,
    ) -> Result<BlobRow, BlobError>;
    /// The blob unless unknown or expired.
    async fn blob(&self, id: BlobId, now: DateTime<Utc>) -> Result<Option<BlobRow>, BlobError>;
    /// Records a chunk (its object already written) and advances `received`,
    /// only when it starts at `received`, ends within `size` and the blob is
    /// the owner's and alive.
    async fn add_chunk(&self, chunk: NewChunk<'_>) -> Result<BlobRow, BlobError>;
    /// The stored chunks, in order.
    async fn chunks(&self, id: BlobId) -> Result<Vec<ChunkRow>, BlobError>;
    /// Whether `user` (calling from `device`, or with its account token when
    /// `None`) may read the blob: the owner, a device a referencing message
    /// was queued for, and an account the owner named a holder, until they
    /// release it.
    async fn may_read(
        &self,
        id: BlobId,
        user: UserId,
        device: Option<MlsDeviceId>,
    ) -> Result<bool, BlobError>;
    /// `device` is done with the blob (saved or refused it): it no longer
    /// holds it.
    async fn release(&self, id: BlobId, device: MlsDeviceId) -> Result<(), BlobError>;
    /// Account `user` is done with the blob: its account hold goes.
    async fn release_account(&self, id: BlobId, user: UserId) -> Result<(), BlobError>;
    /// Lets account `holder` read `owner`'s blob until it releases it (or
    /// the blob expires); marks the blob referenced. [`BlobError::Gone`]
    /// unless the blob is `owner`'s, complete and alive.
    async fn add_account_hold(
        &self,
        id: BlobId,
        owner: UserId,
        holder: UserId,
        now: DateTime<Utc>,
    ) -> Result<(), BlobError>;
    /// Deletes up to `limit` blobs that are past `expires_at`, or referenced
    /// once and held by no device any more; returns the object keys to delete.
    async fn remove_dead(
        &self,
        now: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<(BlobId, Vec<String>)>, BlobError>;
}

/// A size or offset as stored (sizes are capped far below `i64::MAX`).
pub(crate) fn to_db(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// A stored size or offset (non-negative by constraint).
pub(crate) fn from_db(n: i64) -> u64 {
    u64::try_from(n).unwrap_or_default()
}
