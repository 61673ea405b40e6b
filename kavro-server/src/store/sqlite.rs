//! The embedded backend: one SQLite file in WAL mode, `synchronous = FULL` so
//! that a `201` survives a crash, and foreign keys on. Times are stored as Unix
//! milliseconds.
//!
//! SQLite takes one writer at a time. Writes therefore go through a pool of
//! exactly one connection (they queue in order, in the pool, instead of
//! spinning on the database lock), and reads through a pool of their own,
//! which WAL lets run beside the writer.

use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, TimeZone, Utc};
use kavro_proto::api::InboxOrder;
use kavro_proto::{DeviceId, MessageId, UserId};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{QueryBuilder, Row, Sqlite};

use super::{
    AckCount, AckOutcome, ConnectError, DeviceRecord, MessageRecord, NewMessage, NewUser,
    PoolStatus, Receipt, SWEEP_BATCH, Store, StoreError, StoreOptions, Stored, SweepReport,
    UserRecord, receipt_state,
};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

mod v2;

pub struct SqliteStore {
    /// Exactly one connection: every write.
    writer: SqlitePool,
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
            writer,
            reader,
            max: options.max_connections + 1,
        })
    }
}

fn user_row(row: &sqlx::sqlite::SqliteRow) -> Result<UserRecord, sqlx::Error> {
    Ok(UserRecord {
        id: UserId(row.try_get("id")?),
        username: row.try_get("username")?,
        password_hash: row.try_get("password_hash")?,
    })
}

fn push_ids(builder: &mut QueryBuilder<Sqlite>, ids: &[MessageId]) {
    builder.push(" AND id IN (");
    let mut list = builder.separated(", ");
    for id in ids {
        list.push_bind(id.0);
    }
    builder.push(")");
}

#[async_trait]
impl Store for SqliteStore {
    async fn create_user(&self, user: NewUser<'_>) -> Result<UserId, StoreError> {
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO users (username, username_normalized, password_hash, created_at)
             VALUES ($1, $2, $3, $4) RETURNING id",
        )
        .bind(user.username)
        .bind(user.username_normalized)
        .bind(user.password_hash)
        .bind(ms(user.created_at))
        .fetch_one(&self.writer)
        .await?;
        Ok(UserId(id))
    }

    async fn user_by_name(&self, normalized: &str) -> Result<Option<UserRecord>, StoreError> {
        let row = sqlx::query(
            "SELECT id, username, password_hash FROM users WHERE username_normalized = $1",
        )
        .bind(normalized)
        .fetch_optional(&self.reader)
        .await?;
        Ok(row.as_ref().map(user_row).transpose()?)
    }

    async fn user_by_id(&self, id: UserId) -> Result<Option<UserRecord>, StoreError> {
        let row = sqlx::query("SELECT id, username, password_hash FROM users WHERE id = $1")
            .bind(id.0)
            .fetch_optional(&self.reader)
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
        .bind(ms(now))
        .execute(&self.writer)
        .await?;
        Ok(())
    }

    async fn devices(&self, user: UserId) -> Result<Vec<DeviceRecord>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, user_id, identity_pubkey, device_name, created_at FROM devices
             WHERE user_id = $1 ORDER BY created_at, id",
        )
        .bind(user.0)
        .fetch_all(&self.reader)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(DeviceRecord {
                    id: DeviceId(row.try_get("id")?),
                    user_id: UserId(row.try_get("user_id")?),
                    identity_pubkey: row.try_get("identity_pubkey")?,
                    device_name: row.try_get("device_name")?,
                    created_at: from_ms(row.try_get("created_at")?),
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(StoreError::from)
    }

    async fn store_message(&self, message: NewMessage) -> Result<Stored, StoreError> {
        let client_msg_id = message.client_msg_id.map(|id| id.to_string());
        // One statement: the quota check and the insert are atomic, and a
        // retry with the same client_msg_id hits the unique index.
        let id: Option<i64> = sqlx::query_scalar(
            "INSERT INTO messages (sender_id, recipient_id, ciphertext, ephemeral_pubkey,
                                   metadata, client_msg_id, created_at, expires_at)
             SELECT $1, $2, $3, $4, $5, $6, $7, $8
             WHERE (SELECT count(*) FROM (SELECT 1 FROM messages
                     WHERE recipient_id = $2 AND delivered_at IS NULL LIMIT $9)) < $9
             ON CONFLICT DO NOTHING
             RETURNING id",
        )
        .bind(message.sender_id.0)
        .bind(message.recipient_id.0)
        .bind(&message.ciphertext)
        .bind(&message.ephemeral_pubkey)
        .bind(&message.metadata)
        .bind(&client_msg_id)
        .bind(ms(message.created_at))
        .bind(ms(message.expires_at))
        .bind(i64::from(message.max_pending))
        .fetch_optional(&self.writer)
        .await?;
        if let Some(id) = id {
            return Ok(Stored {
                id: MessageId(id),
                created: true,
            });
        }
        if let Some(client_msg_id) = client_msg_id {
            let earlier: Option<i64> = sqlx::query_scalar(
                "SELECT id FROM messages WHERE sender_id = $1 AND client_msg_id = $2",
            )
            .bind(message.sender_id.0)
            .bind(client_msg_id)
            .fetch_optional(&self.writer)
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
            .bind(ms(now))
            .bind(i64::from(limit))
            .fetch_all(&self.reader)
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
                    created_at: from_ms(row.try_get("created_at")?),
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
        .bind(ms(now))
        .execute(&self.writer)
        .await?;
        if done.rows_affected() == 1 {
            return Ok(AckOutcome::Acknowledged { newly: true });
        }
        let owner: Option<i64> =
            sqlx::query_scalar("SELECT recipient_id FROM messages WHERE id = $1")
                .bind(id.0)
                .fetch_optional(&self.writer)
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
        let mut update = QueryBuilder::<Sqlite>::new(
            "UPDATE messages SET ciphertext = NULL, metadata = NULL, delivered_at = ",
        );
        update.push_bind(ms(now));
        update.push(" WHERE delivered_at IS NULL AND recipient_id = ");
        update.push_bind(recipient.0);
        push_ids(&mut update, ids);
        let newly = update.build().execute(&self.writer).await?.rows_affected();
        if newly == ids.len() as u64 {
            return Ok(AckCount {
                newly,
                total: newly,
            });
        }
        let mut count = QueryBuilder::<Sqlite>::new(
            "SELECT count(*) FROM messages WHERE delivered_at IS NOT NULL AND recipient_id = ",
        );
        count.push_bind(recipient.0);
        push_ids(&mut count, ids);
        let total: i64 = count.build_query_scalar().fetch_one(&self.writer).await?;
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
        let row = sqlx::query(
            "SELECT delivered_at, expires_at FROM messages WHERE id = $1 AND sender_id = $2",
        )
        .bind(id.0)
        .bind(sender.0)
        .fetch_optional(&self.reader)
        .await?;
        let Some(row) = row else { return Ok(None) };
        let delivered_at: Option<i64> = row.try_get("delivered_at")?;
        let expires_at: i64 = row.try_get("expires_at")?;
        Ok(Some(receipt_state(
            delivered_at.map(from_ms),
            from_ms(expires_at),
            now,
        )))
    }

    async fn sweep(
        &self,
        now: DateTime<Utc>,
        receipts_before: DateTime<Utc>,
    ) -> Result<SweepReport, StoreError> {
        let mut report = SweepReport::default();
        loop {
            let n = sqlx::query(
                "UPDATE messages SET ciphertext = NULL, metadata = NULL WHERE id IN (
                   SELECT id FROM messages WHERE delivered_at IS NULL AND expires_at <= $1
                   AND ciphertext IS NOT NULL LIMIT $2)",
            )
            .bind(ms(now))
            .bind(SWEEP_BATCH)
            .execute(&self.writer)
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
                   SELECT id FROM messages WHERE delivered_at < $1
                   UNION ALL
                   SELECT id FROM messages WHERE delivered_at IS NULL AND expires_at < $1
                   LIMIT $2)",
            )
            .bind(ms(receipts_before))
            .bind(SWEEP_BATCH)
            .execute(&self.writer)
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
        .bind(ms(now))
        .fetch_one(&self.reader)
        .await?;
        Ok(n as u64)
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
