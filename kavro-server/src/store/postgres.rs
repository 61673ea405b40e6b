//! The production backend: PostgreSQL, shared by every relay instance. An
//! optional read replica serves the read-only lookups (keys, users, receipts,
//! metrics); the inbox always reads the primary so an ack is seen at once.

use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use kavro_proto::api::InboxOrder;
use kavro_proto::{DeviceId, MessageId, UserId};
use sqlx::Row;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions, PgRow};

use super::{
    AckCount, AckOutcome, ConnectError, DeviceRecord, MessageRecord, NewMessage, NewUser,
    PoolStatus, Receipt, SWEEP_BATCH, Store, StoreError, StoreOptions, Stored, SweepReport,
    UserRecord, receipt_state,
};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

mod v2;

pub struct PgStore {
    primary: PgPool,
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
            primary,
            read,
            max: options.max_connections,
        })
    }
}

fn user_row(row: &PgRow) -> Result<UserRecord, sqlx::Error> {
    Ok(UserRecord {
        id: UserId(row.try_get("id")?),
        username: row.try_get("username")?,
        password_hash: row.try_get("password_hash")?,
    })
}

fn raw_ids(ids: &[MessageId]) -> Vec<i64> {
    ids.iter().map(|id| id.0).collect()
}

#[async_trait]
impl Store for PgStore {
    async fn create_user(&self, user: NewUser<'_>) -> Result<UserId, StoreError> {
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO users (username, username_normalized, password_hash, created_at)
             VALUES ($1, $2, $3, $4) RETURNING id",
        )
        .bind(user.username)
        .bind(user.username_normalized)
        .bind(user.password_hash)
        .bind(user.created_at)
        .fetch_one(&self.primary)
        .await?;
        Ok(UserId(id))
    }

    async fn user_by_name(&self, normalized: &str) -> Result<Option<UserRecord>, StoreError> {
        // Login reads the primary: a just-registered user must be able to log in.
        let row = sqlx::query(
            "SELECT id, username, password_hash FROM users WHERE username_normalized = $1",
        )
        .bind(normalized)
        .fetch_optional(&self.primary)
        .await?;
        Ok(row.as_ref().map(user_row).transpose()?)
    }

    async fn user_by_id(&self, id: UserId) -> Result<Option<UserRecord>, StoreError> {
        let row = sqlx::query("SELECT id, username, password_hash FROM users WHERE id = $1")
            .bind(id.0)
            .fetch_optional(&self.primary)
            .await?;
        Ok(row.as_ref().map(user_row).transpose()?)
    }

    async fn add_device(
        &self,
        user: UserId,
        identity_pubkey: &str,
        device_name: Option<Vec<u8>>,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO devices (user_id, identity_pubkey, device_name, created_at)
             VALUES ($1, $2, $3, $4) ON CONFLICT (user_id, identity_pubkey) DO NOTHING",
        )
        .bind(user.0)
        .bind(identity_pubkey)
        .bind(device_name)
        .bind(now)
        .execute(&self.primary)
        .await?;
        Ok(())
    }

    async fn devices(&self, user: UserId) -> Result<Vec<DeviceRecord>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, user_id, identity_pubkey, device_name, created_at FROM devices
             WHERE user_id = $1 ORDER BY created_at, id",
        )
        .bind(user.0)
        .fetch_all(&self.read)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(DeviceRecord {
                    id: DeviceId(row.try_get("id")?),
                    user_id: UserId(row.try_get("user_id")?),
                    identity_pubkey: row.try_get("identity_pubkey")?,
                    device_name: row.try_get("device_name")?,
                    created_at: row.try_get("created_at")?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(StoreError::from)
    }

    async fn store_message(&self, message: NewMessage) -> Result<Stored, StoreError> {
        // One statement: quota check and insert together; a retry with the
        // same client_msg_id hits the unique index and inserts nothing.
        let id: Option<i64> = sqlx::query_scalar(
            "INSERT INTO messages (sender_id, recipient_id, ciphertext, ephemeral_pubkey,
                                   metadata, client_msg_id, created_at, expires_at)
             SELECT $1, $2, $3, $4, $5, $6, $7, $8
             WHERE (SELECT count(*) FROM (SELECT 1 FROM messages
                     WHERE recipient_id = $2 AND delivered_at IS NULL LIMIT $9) AS pending) < $9
             ON CONFLICT DO NOTHING
             RETURNING id",
        )
        .bind(message.sender_id.0)
        .bind(message.recipient_id.0)
        .bind(&message.ciphertext)
        .bind(&message.ephemeral_pubkey)
        .bind(&message.metadata)
        .bind(message.client_msg_id)
        .bind(message.created_at)
        .bind(message.expires_at)
        .bind(i64::from(message.max_pending))
        .fetch_optional(&self.primary)
        .await?;
        if let Some(id) = id {
            return Ok(Stored {
                id: MessageId(id),
                created: true,
            });
        }
        if let Some(client_msg_id) = message.client_msg_id {
            let earlier: Option<i64> = sqlx::query_scalar(
                "SELECT id FROM messages WHERE sender_id = $1 AND client_msg_id = $2",
            )
            .bind(message.sender_id.0)
            .bind(client_msg_id)
            .fetch_optional(&self.primary)
            .await?;
            if let Some(id) = earlier {
                return Ok(Stored {
                    id: MessageId(id),
                    created: false,
                });
            }
        }
        Err(StoreError::QuotaExceeded)
    }

    async fn inbox(
        &self,
        recipient: UserId,
        limit: u32,
        order: InboxOrder,
        now: DateTime<Utc>,
    ) -> Result<Vec<MessageRecord>, StoreError> {
        let sql = match order {
            InboxOrder::Asc => {
                "SELECT id, sender_id, recipient_id, ciphertext, ephemeral_pubkey, metadata, created_at
                 FROM messages WHERE recipient_id = $1 AND delivered_at IS NULL AND expires_at > $2
                 AND ciphertext IS NOT NULL ORDER BY id ASC LIMIT $3"
            }
            InboxOrder::Desc => {
                "SELECT id, sender_id, recipient_id, ciphertext, ephemeral_pubkey, metadata, created_at
                 FROM messages WHERE recipient_id = $1 AND delivered_at IS NULL AND expires_at > $2
                 AND ciphertext IS NOT NULL ORDER BY id DESC LIMIT $3"
            }
        };
        let rows = sqlx::query(sql)
            .bind(recipient.0)
            .bind(now)
            .bind(i64::from(limit))
            .fetch_all(&self.primary)
            .await?;
        rows.iter()
            .map(|row| {
                Ok(MessageRecord {
                    id: MessageId(row.try_get("id")?),
                    sender_id: UserId(row.try_get("sender_id")?),
                    recipient_id: UserId(row.try_get("recipient_id")?),
                    ciphertext: row.try_get("ciphertext")?,
                    ephemeral_pubkey: row.try_get("ephemeral_pubkey")?,
                    metadata: row.try_get("metadata")?,
                    created_at: row.try_get("created_at")?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(StoreError::from)
    }

    async fn ack(
        &self,
        recipient: UserId,
        id: MessageId,
        now: DateTime<Utc>,
    ) -> Result<AckOutcome, StoreError> {
        let done = sqlx::query(
            "UPDATE messages SET delivered_at = $3, ciphertext = NULL, metadata = NULL
             WHERE id = $1 AND recipient_id = $2 AND delivered_at IS NULL",
        )
        .bind(id.0)
        .bind(recipient.0)
        .bind(now)
        .execute(&self.primary)
        .await?;
        if done.rows_affected() == 1 {
            return Ok(AckOutcome::Acknowledged { newly: true });
        }
        let owner: Option<i64> =
            sqlx::query_scalar("SELECT recipient_id FROM messages WHERE id = $1")
                .bind(id.0)
                .fetch_optional(&self.primary)
                .await?;
        Ok(match owner {
            None => AckOutcome::NotFound,
            Some(owner) if owner != recipient.0 => AckOutcome::NotRecipient,
            Some(_) => AckOutcome::Acknowledged { newly: false },
        })
    }

    async fn ack_many(
        &self,
        recipient: UserId,
        ids: &[MessageId],
        now: DateTime<Utc>,
    ) -> Result<AckCount, StoreError> {
        if ids.is_empty() {
            return Ok(AckCount::default());
        }
        let ids = raw_ids(ids);
        let newly = sqlx::query(
            "UPDATE messages SET delivered_at = $3, ciphertext = NULL, metadata = NULL
             WHERE recipient_id = $1 AND id = ANY($2) AND delivered_at IS NULL",
        )
        .bind(recipient.0)
        .bind(&ids)
        .bind(now)
        .execute(&self.primary)
        .await?
        .rows_affected();
        if newly == ids.len() as u64 {
            return Ok(AckCount {
                newly,
                total: newly,
            });
        }
        let total: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM messages
             WHERE recipient_id = $1 AND id = ANY($2) AND delivered_at IS NOT NULL",
        )
        .bind(recipient.0)
        .bind(&ids)
        .fetch_one(&self.primary)
        .await?;
        Ok(AckCount {
            newly,
            total: total as u64,
        })
    }

    async fn receipt(
        &self,
        sender: UserId,
        id: MessageId,
        now: DateTime<Utc>,
    ) -> Result<Option<Receipt>, StoreError> {
        // The primary: a sender polling for delivery must see the ack at once.
        let row = sqlx::query(
            "SELECT delivered_at, expires_at FROM messages WHERE id = $1 AND sender_id = $2",
        )
        .bind(id.0)
        .bind(sender.0)
        .fetch_optional(&self.primary)
        .await?;
        let Some(row) = row else { return Ok(None) };
        Ok(Some(receipt_state(
            row.try_get("delivered_at")?,
            row.try_get("expires_at")?,
            now,
        )))
    }

    async fn sweep(
        &self,
        now: DateTime<Utc>,
        receipts_before: DateTime<Utc>,
    ) -> Result<SweepReport, StoreError> {
        let mut report = SweepReport::default();
        // SKIP LOCKED: instances sweeping at the same time take disjoint rows,
        // so each row is counted once and nobody waits.
        loop {
            let n = sqlx::query(
                "UPDATE messages SET ciphertext = NULL, metadata = NULL WHERE id IN (
                   SELECT id FROM messages WHERE delivered_at IS NULL AND expires_at <= $1
                   AND ciphertext IS NOT NULL LIMIT $2 FOR UPDATE SKIP LOCKED)",
            )
            .bind(now)
            .bind(SWEEP_BATCH)
            .execute(&self.primary)
            .await?
            .rows_affected();
            report.expired += n;
            if n < SWEEP_BATCH as u64 {
                break;
            }
        }
        loop {
            let n = sqlx::query(
                "DELETE FROM messages WHERE id IN (
                   SELECT id FROM messages
                   WHERE (delivered_at < $1) OR (delivered_at IS NULL AND expires_at < $1)
                   LIMIT $2 FOR UPDATE SKIP LOCKED)",
            )
            .bind(receipts_before)
            .bind(SWEEP_BATCH)
            .execute(&self.primary)
            .await?
            .rows_affected();
            report.purged += n;
            if n < SWEEP_BATCH as u64 {
                break;
            }
        }
        Ok(report)
    }

    async fn pending_total(&self, now: DateTime<Utc>) -> Result<u64, StoreError> {
        let n: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM messages WHERE delivered_at IS NULL AND expires_at > $1",
        )
        .bind(now)
        .fetch_one(&self.read)
        .await?;
        Ok(n as u64)
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
