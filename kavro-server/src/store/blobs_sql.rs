//! The SQL of [`BlobMeta`](super::blobs::BlobMeta), one text for both
//! backends: the tables use types both read the same way (BIGINT/INTEGER
//! Unix milliseconds, 0/1 flags, UUIDs), so only the pool, the row lock
//! that serialises an account's quota check, and the database type differ.
//! Each backend instantiates [`blob_meta_impl`] in its own module (it needs
//! the store's private pools).

/// Implements `BlobMeta` for `$store` with `$write` (the pool that writes)
/// and `$read` (the pool that reads one's own writes), `$db` the database,
/// and `$lock` a statement taking the account row (`$1`) for the transaction.
macro_rules! blob_meta_impl {
    ($store:ty, $write:ident, $read:ident, $db:ty, $lock:expr) => {
        use async_trait::async_trait;
        use chrono::{DateTime, TimeZone as _, Utc};
        use kavro_proto::UserId;
        use kavro_proto::v2::{BlobId, MlsDeviceId};
        use sqlx::Row as _;

        use crate::store::blobs::{
            BlobError, BlobMeta, BlobRow, ChunkRow, NewChunk, from_db, to_db,
        };

        fn millis(t: DateTime<Utc>) -> i64 {
            t.timestamp_millis()
        }

        fn from_millis(ms: i64) -> DateTime<Utc> {
            Utc.timestamp_millis_opt(ms).single().unwrap_or_default()
        }

        fn blob_row(row: &<$db as sqlx::Database>::Row) -> Result<BlobRow, sqlx::Error> {
            Ok(BlobRow {
                id: BlobId(row.try_get("id")?),
                owner: UserId(row.try_get("user_id")?),
                size: from_db(row.try_get("size")?),
                received: from_db(row.try_get("received")?),
                created_at: from_millis(row.try_get("created_at")?),
                expires_at: from_millis(row.try_get("expires_at")?),
            })
        }

        #[async_trait]
        impl BlobMeta for $store {
            async fn create_blob(
                &self,
                id: BlobId,
                owner: UserId,
                size: u64,
                quota: u64,
                now: DateTime<Utc>,
                expires_at: DateTime<Utc>,
            ) -> Result<BlobRow, BlobError> {
                let mut tx = self.$write.begin().await?;
                sqlx::query($lock)
                    .bind(owner.0)
                    .fetch_optional(&mut *tx)
                    .await?
                    .ok_or(BlobError::Gone)?;
                let used: i64 = sqlx::query_scalar(
                    "SELECT CAST(COALESCE(SUM(size), 0) AS BIGINT) FROM v2_blobs
                     WHERE user_id = $1 AND expires_at > $2",
                )
                .bind(owner.0)
                .bind(millis(now))
                .fetch_one(&mut *tx)
                .await?;
                if from_db(used).saturating_add(size) > quota {
                    return Err(BlobError::QuotaExceeded { quota });
                }
                let row = sqlx::query(
                    "INSERT INTO v2_blobs (id, user_id, size, received, referenced, created_at, expires_at)
                     VALUES ($1, $2, $3, 0, 0, $4, $5) RETURNING id, user_id, size, received, created_at, expires_at",
                )
                .bind(id.0)
                .bind(owner.0)
                .bind(to_db(size))
                .bind(millis(now))
                .bind(millis(expires_at))
                .fetch_one(&mut *tx)
                .await?;
                let row = blob_row(&row)?;
                tx.commit().await?;
                Ok(row)
            }

            async fn blob(
                &self,
                id: BlobId,
                now: DateTime<Utc>,
            ) -> Result<Option<BlobRow>, BlobError> {
                let row = sqlx::query(
                    "SELECT id, user_id, size, received, created_at, expires_at FROM v2_blobs WHERE id = $1 AND expires_at > $2",
                )
                .bind(id.0)
                .bind(millis(now))
                .fetch_optional(&self.$read)
                .await?;
                Ok(row.as_ref().map(blob_row).transpose()?)
            }

            async fn add_chunk(&self, chunk: NewChunk<'_>) -> Result<BlobRow, BlobError> {
                let mut tx = self.$write.begin().await?;
                let moved = sqlx::query(
                    "UPDATE v2_blobs SET received = received + $4
                     WHERE id = $1 AND user_id = $2 AND received = $3
                       AND received + $4 <= size AND expires_at > $5
                     RETURNING id, user_id, size, received, created_at, expires_at",
                )
                .bind(chunk.blob.0)
                .bind(chunk.owner.0)
                .bind(to_db(chunk.start))
                .bind(to_db(chunk.length))
                .bind(millis(chunk.now))
                .fetch_optional(&mut *tx)
                .await?;
                let Some(moved) = moved else {
                    drop(tx);
                    let current = self
                        .blob(chunk.blob, chunk.now)
                        .await?
                        .filter(|b| b.owner == chunk.owner)
                        .ok_or(BlobError::Gone)?;
                    if current.received != chunk.start {
                        return Err(BlobError::OffsetMismatch {
                            expected: current.received,
                        });
                    }
                    return Err(BlobError::PastSize);
                };
                sqlx::query(
                    "INSERT INTO v2_blob_chunks (blob_id, start, length, object_key)
                     VALUES ($1, $2, $3, $4)",
                )
                .bind(chunk.blob.0)
                .bind(to_db(chunk.start))
                .bind(to_db(chunk.length))
                .bind(chunk.object_key)
                .execute(&mut *tx)
                .await?;
                let row = blob_row(&moved)?;
                tx.commit().await?;
                Ok(row)
            }

            async fn chunks(&self, id: BlobId) -> Result<Vec<ChunkRow>, BlobError> {
                let rows = sqlx::query(
                    "SELECT start, length, object_key FROM v2_blob_chunks
                     WHERE blob_id = $1 ORDER BY start",
                )
                .bind(id.0)
                .fetch_all(&self.$read)
                .await?;
                rows.iter()
                    .map(|row| {
                        Ok(ChunkRow {
                            start: from_db(row.try_get("start")?),
                            length: from_db(row.try_get("length")?),
                            object_key: row.try_get("object_key")?,
                        })
                    })
                    .collect::<Result<_, sqlx::Error>>()
                    .map_err(BlobError::from)
            }

            async fn may_read(
                &self,
                id: BlobId,
                user: UserId,
                device: Option<MlsDeviceId>,
            ) -> Result<bool, BlobError> {
                // A device hold is that device's; an account hold is the
                // account's, whichever token it calls with.
                let found: Option<i64> = sqlx::query_scalar(
                    "SELECT CAST(1 AS BIGINT) FROM v2_blobs b WHERE b.id = $1 AND (b.user_id = $2
                       OR EXISTS (SELECT 1 FROM v2_blob_holds h WHERE h.blob_id = b.id AND h.device_id = $3)
                       OR EXISTS (SELECT 1 FROM v2_blob_account_holds a WHERE a.blob_id = b.id AND a.user_id = $2))",
                )
                .bind(id.0)
                .bind(user.0)
                .bind(device.map(|d| d.0))
                .fetch_optional(&self.$read)
                .await?;
                Ok(found.is_some())
            }

            async fn release(&self, id: BlobId, device: MlsDeviceId) -> Result<(), BlobError> {
                sqlx::query("DELETE FROM v2_blob_holds WHERE blob_id = $1 AND device_id = $2")
                    .bind(id.0)
                    .bind(device.0)
                    .execute(&self.$write)
                    .await?;
                Ok(())
            }

            async fn release_account(&self, id: BlobId, user: UserId) -> Result<(), BlobError> {
                sqlx::query("DELETE FROM v2_blob_account_holds WHERE blob_id = $1 AND user_id = $2")
                    .bind(id.0)
                    .bind(user.0)
                    .execute(&self.$write)
                    .await?;
                Ok(())
            }

            async fn add_account_hold(
                &self,
                id: BlobId,
                owner: UserId,
                holder: UserId,
                now: DateTime<Utc>,
            ) -> Result<(), BlobError> {
                let mut tx = self.$write.begin().await?;
                let marked = sqlx::query(
                    "UPDATE v2_blobs SET referenced = 1
                     WHERE id = $1 AND user_id = $2 AND received = size AND expires_at > $3",
                )
                .bind(id.0)
                .bind(owner.0)
                .bind(millis(now))
                .execute(&mut *tx)
                .await?;
                if marked.rows_affected() == 0 {
                    return Err(BlobError::Gone);
                }
                sqlx::query(
                    "INSERT INTO v2_blob_account_holds (blob_id, user_id) VALUES ($1, $2)
                     ON CONFLICT DO NOTHING",
                )
                .bind(id.0)
                .bind(holder.0)
                .execute(&mut *tx)
                .await?;
                tx.commit().await?;
                Ok(())
            }

            async fn remove_dead(
                &self,
                now: DateTime<Utc>,
                limit: u32,
            ) -> Result<Vec<(BlobId, Vec<String>)>, BlobError> {
                let mut tx = self.$write.begin().await?;
                let ids: Vec<uuid::Uuid> = sqlx::query_scalar(
                    "SELECT id FROM v2_blobs b WHERE b.expires_at <= $1 OR (b.referenced = 1
                       AND NOT EXISTS (SELECT 1 FROM v2_blob_holds h WHERE h.blob_id = b.id)
                       AND NOT EXISTS (SELECT 1 FROM v2_blob_account_holds a WHERE a.blob_id = b.id))
                     LIMIT $2",
                )
                .bind(millis(now))
                .bind(i64::from(limit))
                .fetch_all(&mut *tx)
                .await?;
                let mut dead = Vec::with_capacity(ids.len());
                for id in ids {
                    let keys: Vec<String> = sqlx::query_scalar(
                        "SELECT object_key FROM v2_blob_chunks WHERE blob_id = $1",
                    )
                    .bind(id)
                    .fetch_all(&mut *tx)
                    .await?;
                    sqlx::query("DELETE FROM v2_blobs WHERE id = $1")
                        .bind(id)
                        .execute(&mut *tx)
                        .await?;
                    dead.push((BlobId(id), keys));
                }
                tx.commit().await?;
                Ok(dead)
            }
        }
    };
}

pub(crate) use blob_meta_impl;

/// Records that message `message` of `sender` refers to `blobs`, in the
/// transaction that stores the message: each must be a complete, live blob
/// of the sender's account. Returns the first that is not.
macro_rules! record_blob_refs {
    ($conn:expr, $sender:expr, $message:expr, $blobs:expr, $now:expr) => {{
        let mut unusable = None;
        for blob in $blobs {
            let done = sqlx::query(
                "INSERT INTO v2_blob_refs (blob_id, message_id)
                 SELECT b.id, $2 FROM v2_blobs b JOIN v2_devices d ON d.user_id = b.user_id
                 WHERE b.id = $1 AND d.id = $3 AND b.received = b.size AND b.expires_at > $4
                 ON CONFLICT DO NOTHING",
            )
            .bind(blob.0)
            .bind($message)
            .bind($sender)
            .bind($now.timestamp_millis())
            .execute(&mut *$conn)
            .await?;
            if done.rows_affected() == 0 {
                unusable = Some(*blob);
                break;
            }
            sqlx::query("UPDATE v2_blobs SET referenced = 1 WHERE id = $1")
                .bind(blob.0)
                .execute(&mut *$conn)
                .await?;
            // Every device the message is queued for holds the blob until
            // it is done with it (v2_blob_holds).
            sqlx::query(
                "INSERT INTO v2_blob_holds (blob_id, device_id)
                 SELECT $1, device_id FROM v2_queue WHERE message_id = $2
                 ON CONFLICT DO NOTHING",
            )
            .bind(blob.0)
            .bind($message)
            .execute(&mut *$conn)
            .await?;
        }
        unusable
    }};
}

pub(crate) use record_blob_refs;
