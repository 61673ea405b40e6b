//! The production backend: PostgreSQL, shared by every relay instance. An
//! optional read replica serves the read-only lookups (keys, users, receipts,
//! metrics); the inbox always reads the primary so an ack is seen at once.
//!
//! The pending counters stay exact across instances through one rule: every
//! transaction that changes what counts as pending for a recipient first
//! locks that recipient's `inbox_counts` row (sends with a conditional
//! `UPDATE … WHERE pending < max`, acks and deletion with `FOR UPDATE`, the
//! sweep with `FOR UPDATE` in recipient order), and only then touches their
//! messages and `sender_counts` rows. One lock order means no deadlock, and
//! whoever holds the row sees every earlier change (READ COMMITTED takes a
//! new snapshot per statement). Sends and acks go through a group commit
//! (`store/batch.rs`) keyed by the recipient: a batch runs its writes in
//! recipient order, each in a savepoint, so a batch takes `inbox_counts`
//! locks in the same global order and still one recipient before its rows.
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
use chrono::{DateTime, Utc};
use kavro_proto::api::InboxOrder;
use kavro_proto::{DeviceId, MessageId, UserId};
use sqlx::Row;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions, PgRow};

use super::batch::GroupCommit;
use super::{
    AckCount, AckOutcome, ConnectError, DeletedAccount, DeviceRecord, MessageRecord, NewMessage,
    NewUser, PendingCounts, PoolStatus, Published, Receipt, RevokedGeneration, Store, StoreError,
    StoreOptions, Stored, SweepCutoffs, SweepReport, TokenGeneration, UserRecord,
};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// Group-commit lanes for v1 sends and acks (`store/batch.rs`): each holds
/// one connection while it commits a batch.
const BATCH_LANES: usize = 4;
/// Writes per batch at most: each is a subtransaction (savepoint), and
/// PostgreSQL caches 64 subtransaction ids per backend; past that, other
/// sessions' snapshots must read `pg_subtrans` (the "suboverflow" slowdown).
const BATCH_MAX: usize = 60;

pub struct PgStore {
    primary: PgPool,
    /// Group commit of v1 sends and acks, keyed by recipient.
    batch: GroupCommit<PgPool>,
    /// The replica, or a clone of `primary` when none is configured.
    read: PgPool,
    max: u32,
}

async fn open_pool(url: &str, max: u32) -> Result<PgPool, ConnectError> {
    let options = PgConnectOptions::from_str(url).map_err(ConnectError::Open)?;
    PgPoolOptions::new()
        .max_connections(max)
        // Fail fast when the database is down, so requests answer 503 rather than hang.
        .acquire_timeout(Duration::from_secs(3))
        .connect_with(options)
        .await
        .map_err(ConnectError::Open)
}

/// A count or generation read from a `BIGINT` column (never negative by the
/// schema's checks).
fn unsigned(n: i64) -> u64 {
    u64::try_from(n).unwrap_or_default()
}

fn user_row(row: &PgRow) -> Result<UserRecord, sqlx::Error> {
    Ok(UserRecord {
        id: UserId(row.try_get("id")?),
        username: row.try_get("username")?,
        password_hash: row.try_get("password_hash")?,
        token_generation: TokenGeneration(unsigned(row.try_get("token_generation")?)),
    })
}

impl PgStore {
    pub async fn connect(options: &StoreOptions) -> Result<Self, ConnectError> {
        let primary = open_pool(&options.url, options.max_connections).await?;
        if options.migrate {
            MIGRATOR.run(&primary).await?;
        }
        let read = match &options.read_url {
            Some(url) => open_pool(url, options.max_connections).await?,
            None => primary.clone(),
        };
        Ok(Self {
            batch: GroupCommit::start(&primary, BATCH_LANES, BATCH_MAX),
            primary,
            read,
            max: options.max_connections,
        })
    }
}

#[async_trait]
impl Store for PgStore {
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
        .bind(now)
        .fetch_one(&self.read)
        .await?;
        Ok(unsigned(n))
    }

    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.primary).await?;
        Ok(())
    }

    fn pool_status(&self) -> PoolStatus {
        PoolStatus {
            size: self.primary.size(),
            idle: self.primary.num_idle() as u32,
            max: self.max,
        }
    }
}
