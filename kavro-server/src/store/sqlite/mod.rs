//! The embedded backend: one SQLite file in WAL mode, `synchronous = FULL` so
//! that a `201` survives a crash, and foreign keys on. Times are stored as Unix
//! milliseconds.
//!
//! SQLite takes one writer at a time. Writes therefore go through a pool of
//! exactly one connection (they queue in order, in the pool, instead of
//! spinning on the database lock), and reads through a pool of their own,
//! which WAL lets run beside the writer. The single writer also makes the
//! pending counters exact: a write transaction sees every earlier one.
//!
//! The busiest writes (v1 sends and acks; v2 group messages, commits and
//! queue acks) go through [`batch`]: one task takes every such write
//! waiting into one transaction, so they share a commit.
//!
//! [`accounts`] holds the account and key operations, [`messages`] the queue.

mod accounts;
mod blobs;
mod messages;
mod ops;
mod v2;

use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, TimeZone, Utc};
use kavro_proto::api::InboxOrder;
use kavro_proto::{DeviceId, MessageId, UserId};
use sqlx::Row;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

use super::batch::GroupCommit;
use super::{
    AckCount, AckOutcome, ConnectError, DeletedAccount, DeviceRecord, MessageRecord, NewMessage,
    NewUser, PendingCounts, PoolStatus, Published, Receipt, RevokedGeneration, Store, StoreError,
    StoreOptions, Stored, SweepCutoffs, SweepReport, TokenGeneration, UserRecord,
};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

pub struct SqliteStore {
    /// Exactly one connection: every write.
    writer: SqlitePool,
    /// Group commit in front of `writer`.
    batch: GroupCommit<SqlitePool>,
    /// Reads, concurrent with the writer.
    reader: SqlitePool,
    max: u32,
}

fn ms(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

fn from_ms(ms: i64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(ms).single().unwrap_or_default()
}

/// A count or generation read from an `INTEGER` column (never negative by
/// the schema's checks).
fn unsigned(n: i64) -> u64 {
    u64::try_from(n).unwrap_or_default()
}

fn user_row(row: &sqlx::sqlite::SqliteRow) -> Result<UserRecord, sqlx::Error> {
    Ok(UserRecord {
        id: UserId(row.try_get("id")?),
        username: row.try_get("username")?,
        password_hash: row.try_get("password_hash")?,
        token_generation: TokenGeneration(unsigned(row.try_get("token_generation")?)),
    })
}

impl SqliteStore {
    pub async fn connect(options: &StoreOptions) -> Result<Self, ConnectError> {
        let connect = SqliteConnectOptions::from_str(&options.url)
            .map_err(ConnectError::Open)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_secs(10))
            .foreign_keys(true);
        let file = connect.get_filename();
        if let Some(dir) = file.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|e| ConnectError::Directory(dir.display().to_string(), e))?;
        }
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(connect.clone())
            .await
            .map_err(ConnectError::Open)?;
        if options.migrate {
            MIGRATOR.run(&writer).await?;
        }
        let reader = SqlitePoolOptions::new()
            .max_connections(options.max_connections.max(1))
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(connect.read_only(true))
            .await
            .map_err(ConnectError::Open)?;
        Ok(Self {
            // One lane: the single writer. 128 writes per transaction at most.
            batch: GroupCommit::start(&writer, 1, 128),
            writer,
            reader,
            max: options.max_connections + 1,
        })
    }
}

impl SqliteStore {
    /// Writes a consistent copy of the database to `target` (`VACUUM INTO`,
    /// which refuses an existing non-empty file).
    pub async fn backup_into(&self, target: &std::path::Path) -> Result<(), StoreError> {
        sqlx::query("VACUUM INTO $1")
            .bind(target.to_string_lossy().into_owned())
            .execute(&self.reader)
            .await?;
        Ok(())
    }
}

#[async_trait]
impl Store for SqliteStore {
    async fn create_user(&self, user: NewUser<'_>) -> Result<UserId, StoreError> {
        self.insert_user(user).await
    }

    async fn user_by_name(&self, normalized: &str) -> Result<Option<UserRecord>, StoreError> {
        self.live_user_by_name(normalized).await
    }

    async fn user_by_id(&self, id: UserId) -> Result<Option<UserRecord>, StoreError> {
        self.live_user_by_id(id).await
    }

    async fn change_password(
        &self,
        user: UserId,
        password_hash: &str,
        now: DateTime<Utc>,
    ) -> Result<TokenGeneration, StoreError> {
        self.raise_generation(user, Some(password_hash), now).await
    }

    async fn revoke_tokens(
        &self,
        user: UserId,
        now: DateTime<Utc>,
    ) -> Result<TokenGeneration, StoreError> {
        self.raise_generation(user, None, now).await
    }

    async fn delete_account(
        &self,
        user: UserId,
        now: DateTime<Utc>,
    ) -> Result<DeletedAccount, StoreError> {
        self.close_account(user, now).await
    }

    async fn revoked_generations(
        &self,
        since: DateTime<Utc>,
    ) -> Result<Vec<RevokedGeneration>, StoreError> {
        self.generations_since(since).await
    }

    async fn add_device(
        &self,
        user: UserId,
        identity_pubkey: &str,
        device_name: Option<Vec<u8>>,
        now: DateTime<Utc>,
    ) -> Result<Published, StoreError> {
        self.publish_key(user, identity_pubkey, device_name, now)
            .await
    }

    async fn devices(&self, user: UserId) -> Result<Vec<DeviceRecord>, StoreError> {
        self.live_devices(user).await
    }

    async fn retire_device(
        &self,
        user: UserId,
        device: DeviceId,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        self.retire_key(user, device, now).await
    }

    async fn store_message(&self, message: NewMessage) -> Result<Stored, StoreError> {
        self.queue(message).await
    }

    async fn pending_counts(
        &self,
        recipient: UserId,
        sender: UserId,
    ) -> Result<PendingCounts, StoreError> {
        self.counts(recipient, sender).await
    }

    async fn inbox(
        &self,
        recipient: UserId,
        limit: u32,
        order: InboxOrder,
        now: DateTime<Utc>,
    ) -> Result<Vec<MessageRecord>, StoreError> {
        self.pending_page(recipient, limit, order, now).await
    }

    async fn ack(
        &self,
        recipient: UserId,
        id: MessageId,
        now: DateTime<Utc>,
    ) -> Result<AckOutcome, StoreError> {
        self.ack_one(recipient, id, now).await
    }

    async fn ack_many(
        &self,
        recipient: UserId,
        ids: &[MessageId],
        now: DateTime<Utc>,
    ) -> Result<AckCount, StoreError> {
        self.ack_batch(recipient, ids, now).await
    }

    async fn receipt(
        &self,
        sender: UserId,
        id: MessageId,
        now: DateTime<Utc>,
    ) -> Result<Option<Receipt>, StoreError> {
        self.receipt_of(sender, id, now).await
    }

    async fn sweep(&self, cutoffs: SweepCutoffs) -> Result<SweepReport, StoreError> {
        self.sweep_all(cutoffs).await
    }

    async fn pending_total(&self, now: DateTime<Utc>) -> Result<u64, StoreError> {
        let n: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM messages WHERE delivered_at IS NULL AND expires_at > $1",
        )
        .bind(ms(now))
        .fetch_one(&self.reader)
        .await?;
        Ok(unsigned(n))
    }

    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.reader).await?;
        Ok(())
    }

    fn pool_status(&self) -> PoolStatus {
        PoolStatus {
            size: self.writer.size() + self.reader.size(),
            idle: (self.writer.num_idle() + self.reader.num_idle()) as u32,
            max: self.max,
        }
    }
}
