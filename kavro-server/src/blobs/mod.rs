//! The relay's blob store (attachments, `/v2/blobs`): the bytes in an object
//! store ([`objects`]), one object per uploaded chunk
//! (`<prefix>/blobs/<id>/<start>-<nonce>`), the metadata in the database
//! ([`BlobMeta`]). A chunk's object is written first and recorded second,
//! only if it still starts where the blob's bytes end, so a dropped or
//! concurrent upload never leaves a gap or an overlap; a loser's object is
//! deleted. Downloads stream the chunk objects in order, honouring a range.

pub mod objects;
pub mod range;
mod read;

use std::ops::Range;
use std::sync::Arc;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures_util::stream::{self, BoxStream, StreamExt as _, TryStreamExt as _};
use kavro_proto::UserId;
use kavro_proto::v2::{BlobId, BlobStatus, MlsDeviceId};
use object_store::path::Path;
use object_store::{
    GetOptions, GetRange, ObjectStore, ObjectStoreExt as _, PutPayload, WriteMultipart,
};
use uuid::Uuid;

use crate::store::blobs::{BlobError, BlobMeta, BlobRow, ChunkRow, NewChunk};
use objects::{FreeSpace, Storage, is_out_of_space};

/// The limits of the blob store.
#[derive(Debug, Clone, Copy)]
pub struct BlobLimits {
    /// Largest blob.
    pub max_bytes: u64,
    /// Most bytes of live blobs (uploaded and reserved) per account.
    pub quota_bytes: u64,
    /// Largest chunk one `PUT` takes.
    pub chunk_max: u64,
}

/// Why a blob operation failed, as the routes map it.
#[derive(Debug, thiserror::Error)]
pub enum BlobFailure {
    #[error(transparent)]
    Meta(#[from] BlobError),
    /// Larger than the cap (bytes).
    #[error("blob larger than the cap of {0} bytes")]
    TooLarge(u64),
    #[error("blob size must be at least 1 byte")]
    Empty,
    /// The storage has no room.
    #[error("the relay's blob storage is out of space")]
    OutOfSpace,
    /// The object store failed (not a full disk).
    #[error("blob storage failed: {0}")]
    Storage(#[source] object_store::Error),
    /// The blob is not complete yet.
    #[error("the blob is not complete")]
    Incomplete,
    /// A chunk's body passed [`BlobLimits::chunk_max`] (bytes).
    #[error("a chunk is at most {0} bytes")]
    ChunkTooLarge(u64),
    /// A chunk without a byte.
    #[error("a chunk has at least 1 byte")]
    EmptyChunk,
    /// The chunk's body could not be read (the connection broke, or the
    /// body did not arrive in time: [`std::io::ErrorKind::TimedOut`]).
    #[error("could not read the chunk: {0}")]
    Body(#[source] std::io::Error),
}

/// A chunk's bytes as they arrive.
pub type ChunkBody = BoxStream<'static, Result<Bytes, std::io::Error>>;

/// The pieces a streamed chunk is written to its file in.
const PART: usize = 1024 * 1024;

/// A chunk `length` bytes long so far is within the chunk cap and the
/// blob's `room`.
fn admit(length: u64, chunk_max: u64, room: u64) -> Result<(), BlobFailure> {
    if length > chunk_max {
        return Err(BlobFailure::ChunkTooLarge(chunk_max));
    }
    if length > room {
        return Err(BlobError::PastSize.into());
    }
    Ok(())
}

fn storage_failure(err: object_store::Error) -> BlobFailure {
    if is_out_of_space(&err) {
        BlobFailure::OutOfSpace
    } else {
        BlobFailure::Storage(err)
    }
}

/// The blob store: metadata, objects, limits.
pub struct Blobs {
    meta: Arc<dyn BlobMeta>,
    store: Arc<dyn ObjectStore>,
    prefix: Path,
    space: Arc<dyn FreeSpace>,
    /// See [`Storage::streams`].
    streams: bool,
    pub limits: BlobLimits,
    /// Kicked by queue acknowledgements: a blob whose last referencing
    /// message was acknowledged goes soon after (see [`run_collector`]).
    kick: tokio::sync::Notify,
}

/// A readable blob: its size and the byte range being sent.
pub struct Download {
    pub size: u64,
    pub range: Range<u64>,
    pub body: BoxStream<'static, Result<Bytes, std::io::Error>>,
}

impl Blobs {
    pub fn new(meta: Arc<dyn BlobMeta>, storage: Storage, limits: BlobLimits) -> Self {
        Self {
            meta,
            store: storage.store,
            prefix: storage.prefix,
            space: storage.space,
            streams: storage.streams,
            limits,
            kick: tokio::sync::Notify::new(),
        }
    }

    pub fn status(&self, row: &BlobRow) -> BlobStatus {
        BlobStatus {
            blob_id: row.id,
            size: row.size,
            received: row.received,
            complete: row.complete(),
            expires_at: row.expires_at,
            chunk_max: self.limits.chunk_max,
        }
    }

    /// A device acknowledged queue entries: referenced blobs may be free now.
    pub fn acked(&self) {
        self.kick.notify_one();
    }

    /// Reserves a blob for `owner` (cap, free space, then quota).
    pub async fn create(
        &self,
        owner: UserId,
        size: u64,
        now: DateTime<Utc>,
        expires_at: DateTime<Utc>,
    ) -> Result<BlobRow, BlobFailure> {
        if size == 0 {
            return Err(BlobFailure::Empty);
        }
        if size > self.limits.max_bytes {
            return Err(BlobFailure::TooLarge(self.limits.max_bytes));
        }
        if self.space.available().is_some_and(|free| free < size) {
            return Err(BlobFailure::OutOfSpace);
        }
        let id = BlobId(Uuid::new_v4());
        Ok(self
            .meta
            .create_blob(id, owner, size, self.limits.quota_bytes, now, expires_at)
            .await?)
    }

    /// The blob, for its owner, a device a referencing message is queued
    /// for, or an account named a holder (`device` is `None` for a caller
    /// with an account token); [`BlobError::Gone`] for everyone else alike.
    pub async fn readable(
        &self,
        id: BlobId,
        user: UserId,
        device: Option<MlsDeviceId>,
        now: DateTime<Utc>,
    ) -> Result<BlobRow, BlobFailure> {
        let row = self.meta.blob(id, now).await?.ok_or(BlobError::Gone)?;
        if row.owner != user && !self.meta.may_read(id, user, device).await? {
            return Err(BlobError::Gone.into());
        }
        Ok(row)
    }

    /// The caller is done with the blob (saved or refused it): a device
    /// drops its device hold, an account token (`device` `None`) the
    /// account's hold; the blob goes once nobody holds it.
    /// [`BlobError::Gone`] as for [`Self::readable`].
    pub async fn release(
        &self,
        id: BlobId,
        user: UserId,
        device: Option<MlsDeviceId>,
        now: DateTime<Utc>,
    ) -> Result<BlobRow, BlobFailure> {
        let row = self.readable(id, user, device, now).await?;
        if let Some(device) = device {
            self.meta.release(id, device).await?;
        } else {
            self.meta.release_account(id, user).await?;
            // A v1 recipient is the only holder as a rule: collect soon.
            self.kick.notify_one();
        }
        Ok(row)
    }

    /// `owner` lets account `holder` read its complete blob (a v1 message
    /// to `holder` carries its key). [`BlobError::Gone`] unless the blob is
    /// `owner`'s and alive; [`BlobFailure::Incomplete`] before its last byte.
    pub async fn add_holder(
        &self,
        id: BlobId,
        owner: UserId,
        holder: UserId,
        now: DateTime<Utc>,
    ) -> Result<BlobRow, BlobFailure> {
        let row = self.owned(id, owner, now).await?;
        if !row.complete() {
            return Err(BlobFailure::Incomplete);
        }
        self.meta.add_account_hold(id, owner, holder, now).await?;
        Ok(row)
    }

    /// The live blob, if `owner` uploads it; [`BlobError::Gone`] otherwise
    /// (another account's blob looks like none).
    async fn owned(
        &self,
        id: BlobId,
        owner: UserId,
        now: DateTime<Utc>,
    ) -> Result<BlobRow, BlobFailure> {
        Ok(self
            .meta
            .blob(id, now)
            .await?
            .filter(|row| row.owner == owner)
            .ok_or(BlobError::Gone)?)
    }

    /// Stores one chunk at `offset` for the owner's device, written as its
    /// body arrives (see [`Storage::streams`]); the chunk is recorded only
    /// once its object is durable.
    pub async fn put_chunk(
        &self,
        id: BlobId,
        owner: UserId,
        offset: u64,
        body: ChunkBody,
        now: DateTime<Utc>,
    ) -> Result<BlobRow, BlobFailure> {
        let row = self.owned(id, owner, now).await?;
        if offset != row.received {
            return Err(BlobError::OffsetMismatch {
                expected: row.received,
            }
            .into());
        }
        let key = self
            .prefix
            .clone()
            .join("blobs")
            .join(id.to_string())
            .join(format!("{offset:020}-{}", Uuid::new_v4().simple()));
        let length = self
            .write_chunk(&key, body, row.size.saturating_sub(offset))
            .await?;
        let recorded = self
            .meta
            .add_chunk(NewChunk {
                blob: id,
                owner,
                start: offset,
                length,
                object_key: key.as_ref(),
                now,
            })
            .await;
        if recorded.is_err() {
            // Another upload of this offset won, or the blob went: ours is garbage.
            if let Err(err) = self.store.delete(&key).await {
                tracing::warn!(error = %err, "could not delete an unrecorded blob chunk");
            }
        }
        Ok(recorded?)
    }

    /// Writes the chunk object `key` from `body`, at most `room` bytes (what
    /// is left of the blob); returns its length. Nothing is left behind when
    /// the body is refused or breaks.
    async fn write_chunk(
        &self,
        key: &Path,
        mut body: ChunkBody,
        room: u64,
    ) -> Result<u64, BlobFailure> {
        let max = self.limits.chunk_max;
        let mut length = 0u64;
        // A local file takes the body as it arrives; for S3 it is gathered.
        let mut writer = if self.streams {
            let upload = self
                .store
                .put_multipart(key)
                .await
                .map_err(storage_failure)?;
            Some(WriteMultipart::new_with_chunk_size(upload, PART))
        } else {
            None
        };
        let mut gathered = bytes::BytesMut::new();
        let taken = async {
            while let Some(frame) = body.next().await {
                let frame = frame.map_err(BlobFailure::Body)?;
                length += frame.len() as u64;
                admit(length, max, room)?;
                match writer.as_mut() {
                    Some(writer) => {
                        // At most two parts on their way to the file.
                        writer.wait_for_capacity(2).await.map_err(storage_failure)?;
                        writer.put(frame);
                    }
                    None => gathered.extend_from_slice(&frame),
                }
            }
            if length == 0 {
                return Err(BlobFailure::EmptyChunk);
            }
            Ok(())
        }
        .await;
        match (taken, writer) {
            (Ok(()), Some(writer)) => {
                writer.finish().await.map_err(storage_failure)?;
            }
            (Ok(()), None) => {
                self.store
                    .put(key, PutPayload::from_bytes(gathered.freeze()))
                    .await
                    .map_err(storage_failure)?;
            }
            (Err(err), Some(writer)) => {
                if let Err(abort) = writer.abort().await {
                    tracing::warn!(error = %abort, "could not remove a refused blob chunk");
                }
                return Err(err);
            }
            (Err(err), None) => return Err(err),
        }
        Ok(length)
    }

    /// Streams a complete blob's bytes in `range` (the whole blob if `None`).
    pub async fn download(
        &self,
        row: &BlobRow,
        range: Option<Range<u64>>,
    ) -> Result<Download, BlobFailure> {
        if !row.complete() {
            return Err(BlobFailure::Incomplete);
        }
        let range = range.unwrap_or(0..row.size);
        let chunks = self.meta.chunks(row.id).await?;
        let parts = pieces(&chunks, &range);
        let store = self.store.clone();
        let body = stream::iter(parts)
            .then(move |(key, within)| {
                let store = store.clone();
                async move {
                    let options = GetOptions {
                        range: Some(GetRange::Bounded(within)),
                        ..GetOptions::default()
                    };
                    let got = store
                        .get_opts(&Path::from(key), options)
                        .await
                        .map_err(std::io::Error::other)?;
                    Ok::<_, std::io::Error>(read::object_stream(got))
                }
            })
            .try_flatten()
            .boxed();
        Ok(Download {
            size: row.size,
            range,
            body,
        })
    }

    /// Deletes dead blobs (expired, or referenced once and no longer) and
    /// their objects; returns how many blobs went.
    pub async fn collect(&self, now: DateTime<Utc>) -> Result<u64, BlobFailure> {
        let mut removed = 0;
        loop {
            let dead = self.meta.remove_dead(now, 100).await?;
            if dead.is_empty() {
                return Ok(removed);
            }
            for (id, keys) in &dead {
                for key in keys {
                    if let Err(err) = self.store.delete(&Path::from(key.as_str())).await
                        && !matches!(err, object_store::Error::NotFound { .. })
                    {
                        tracing::warn!(blob = %id, error = %err, "could not delete a blob object");
                    }
                }
                self.delete_leftovers(*id).await;
            }
            removed += dead.len() as u64;
        }
    }
}

impl Blobs {
    /// Deletes what is left under a dead blob's prefix that no record
    /// named: a chunk object whose request was cancelled after the object
    /// was written and before it was recorded.
    async fn delete_leftovers(&self, id: BlobId) {
        let prefix = self.prefix.clone().join("blobs").join(id.to_string());
        let mut listing = self.store.list(Some(&prefix));
        while let Some(object) = listing.next().await {
            let deleted = match object {
                Ok(object) => self.store.delete(&object.location).await,
                Err(err) => Err(err),
            };
            if let Err(err) = deleted
                && !matches!(err, object_store::Error::NotFound { .. })
            {
                tracing::warn!(blob = %id, error = %err, "could not delete a leftover blob object");
            }
        }
    }
}

/// Deletes the blobs acknowledgements freed, coalescing bursts of acks into
/// at most one collection per 200 ms (the hot queue route only pokes a
/// `Notify`). Expired blobs go in the retention sweep.
pub async fn run_collector(
    state: Arc<crate::state::AppState>,
    stop: tokio_util::sync::CancellationToken,
) {
    let blobs = state.v2.blobs.clone();
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            () = blobs.kick.notified() => {
                if let Err(err) = blobs.collect(state.clock.now()).await {
                    tracing::warn!(error = %crate::error::error_chain(&err), "blob collection failed; will retry");
                }
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            }
        }
    }
}

/// The objects (and the range within each) that make up `range` of a blob
/// stored as `chunks` (in order, contiguous).
fn pieces(chunks: &[ChunkRow], range: &Range<u64>) -> Vec<(String, Range<u64>)> {
    chunks
        .iter()
        .filter_map(|c| {
            let end = c.start + c.length;
            let from = range.start.max(c.start);
            let to = range.end.min(end);
            (from < to).then(|| (c.object_key.clone(), from - c.start..to - c.start))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk(start: u64, length: u64) -> ChunkRow {
        ChunkRow {
            start,
            length,
            object_key: format!("k{start}"),
        }
    }

    struct Fixed(u64);

    impl FreeSpace for Fixed {
        fn available(&self) -> Option<u64> {
            Some(self.0)
        }
    }

    #[tokio::test]
    async fn a_full_disk_is_out_of_space_before_anything_is_reserved() {
        let dir = tempfile::tempdir().unwrap();
        let stores = crate::store::connect_stores(&crate::store::StoreOptions {
            url: format!("sqlite://{}", dir.path().join("k.db").display()),
            read_url: None,
            max_connections: 2,
            migrate: true,
        })
        .await
        .unwrap();
        let mut storage = objects::open("", dir.path(), &[]).unwrap();
        storage.space = Arc::new(Fixed(9));
        let limits = BlobLimits {
            max_bytes: 100,
            quota_bytes: 1000,
            chunk_max: 8,
        };
        let blobs = Blobs::new(stores.blobs, storage, limits);
        let now = Utc::now();
        let refused = blobs.create(UserId(1), 10, now, now).await;
        assert!(
            matches!(refused, Err(BlobFailure::OutOfSpace)),
            "{refused:?}"
        );
        let refused = blobs.create(UserId(1), 101, now, now).await;
        assert!(
            matches!(refused, Err(BlobFailure::TooLarge(100))),
            "{refused:?}"
        );
        let refused = blobs.create(UserId(1), 0, now, now).await;
        assert!(matches!(refused, Err(BlobFailure::Empty)), "{refused:?}");
    }

    #[test]
    fn ranges_map_onto_chunks() {
        let chunks = [chunk(0, 4), chunk(4, 4), chunk(8, 2)];
        assert_eq!(
            pieces(&chunks, &(0..10)),
            vec![
                ("k0".to_owned(), 0..4),
                ("k4".to_owned(), 0..4),
                ("k8".to_owned(), 0..2)
            ]
        );
        assert_eq!(
            pieces(&chunks, &(3..9)),
            vec![
                ("k0".to_owned(), 3..4),
                ("k4".to_owned(), 0..4),
                ("k8".to_owned(), 0..1)
            ]
        );
        assert_eq!(pieces(&chunks, &(5..6)), vec![("k4".to_owned(), 1..2)]);
        assert!(pieces(&chunks, &(10..10)).is_empty());
    }
}
