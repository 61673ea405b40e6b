//! The message queue on SQLite: sends with their pending counters, the inbox,
//! acknowledgements, receipts and the retention sweep.
//!
//! Every change of a message's "pending" state (it counts while
//! `delivered_at IS NULL AND ciphertext IS NOT NULL`) and of the counters in
//! `inbox_counts` / `sender_counts` happens in one transaction on the single
//! writer connection, so the counters always equal the rows they count.
//! Sends and acknowledgements go through the writer's group commit
//! ([`super::batch`]): each in its own savepoint, several per transaction.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use kavro_proto::api::InboxOrder;
use kavro_proto::{MessageId, UserId};
use sqlx::{QueryBuilder, Row, Sqlite, SqliteConnection};

use super::{SqliteStore, from_ms, ms, unsigned};
use crate::store::{
    AckCount, AckOutcome, MessageRecord, NewMessage, PendingCounts, Quota, RELEASED_NAME, Receipt,
    SWEEP_BATCH, StoreError, Stored, SweepCutoffs, SweepReport, receipt_state,
};

fn push_ids(builder: &mut QueryBuilder<Sqlite>, ids: &[MessageId]) {
    builder.push(" AND id IN (");
    let mut list = builder.separated(", ");
    for id in ids {
        list.push_bind(id.0);
    }
    builder.push(")");
}

/// Takes `by_sender` (sender id → messages no longer pending) off the
/// counters of `recipient`, and forgets pairs that reach zero.
async fn uncount(
    conn: &mut SqliteConnection,
    recipient: i64,
    by_sender: &BTreeMap<i64, i64>,
) -> Result<(), sqlx::Error> {
    let total: i64 = by_sender.values().sum();
    if total == 0 {
        return Ok(());
    }
    sqlx::query("UPDATE inbox_counts SET pending = pending - $2 WHERE recipient_id = $1")
        .bind(recipient)
        .bind(total)
        .execute(&mut *conn)
        .await?;
    for (sender, n) in by_sender {
        sqlx::query(
            "UPDATE sender_counts SET pending = pending - $3
             WHERE recipient_id = $1 AND sender_id = $2",
        )
        .bind(recipient)
        .bind(sender)
        .bind(n)
        .execute(&mut *conn)
        .await?;
    }
    sqlx::query("DELETE FROM sender_counts WHERE recipient_id = $1 AND pending = 0")
        .bind(recipient)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Why a send stored nothing, from inside its batch (its savepoint is then
/// rolled back): a database error, or a quota that refused it (or the
/// idempotency index: told apart after the commit by [`SqliteStore::refused`]).
enum NotQueued {
    Store(StoreError),
    Refused(Quota),
}

impl From<StoreError> for NotQueued {
    fn from(err: StoreError) -> Self {
        Self::Store(err)
    }
}

impl From<sqlx::Error> for NotQueued {
    fn from(err: sqlx::Error) -> Self {
        Self::Store(err.into())
    }
}

/// Takes a place in the recipient's quota and in the (recipient, sender)
/// quota, then inserts; on the writer, in a batch. A retry with the same
/// `client_msg_id` hits the unique index and is refused here.
async fn queue_in(
    conn: &mut SqliteConnection,
    message: &NewMessage,
    client_msg_id: Option<&str>,
) -> Result<Stored, NotQueued> {
    let recipient = message.recipient_id.0;
    let counted = sqlx::query(
        "UPDATE inbox_counts SET pending = pending + 1
         WHERE recipient_id = $1 AND pending < $2",
    )
    .bind(recipient)
    .bind(i64::from(message.max_pending))
    .execute(&mut *conn)
    .await?
    .rows_affected();
    if counted == 0 {
        return Err(NotQueued::Refused(Quota::Recipient));
    }
    let paired = sqlx::query(
        "INSERT INTO sender_counts (recipient_id, sender_id, pending) VALUES ($1, $2, 1)
         ON CONFLICT (recipient_id, sender_id)
         DO UPDATE SET pending = sender_counts.pending + 1 WHERE sender_counts.pending < $3",
    )
    .bind(recipient)
    .bind(message.sender_id.0)
    .bind(i64::from(message.max_pending_per_sender))
    .execute(&mut *conn)
    .await?
    .rows_affected();
    if paired == 0 {
        return Err(NotQueued::Refused(Quota::Sender));
    }
    let id: Option<i64> = sqlx::query_scalar(
        "INSERT INTO messages (sender_id, recipient_id, ciphertext, ephemeral_pubkey,
                               metadata, client_msg_id, created_at, expires_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
         ON CONFLICT DO NOTHING RETURNING id",
    )
    .bind(message.sender_id.0)
    .bind(recipient)
    .bind(&message.ciphertext)
    .bind(&message.ephemeral_pubkey)
    .bind(&message.metadata)
    .bind(client_msg_id)
    .bind(ms(message.created_at))
    .bind(ms(message.expires_at))
    .fetch_optional(&mut *conn)
    .await?;
    // Only the idempotency index can refuse the insert.
    let id = id.ok_or(NotQueued::Refused(Quota::Sender))?;
    Ok(Stored {
        id: MessageId(id),
        created: true,
    })
}

/// Acknowledges one message; on the writer, in a batch.
async fn ack_one_in(
    conn: &mut SqliteConnection,
    recipient: UserId,
    id: MessageId,
    now: DateTime<Utc>,
) -> Result<AckOutcome, StoreError> {
    let row = sqlx::query(
        "SELECT recipient_id, sender_id, delivered_at IS NOT NULL AS delivered,
                ciphertext IS NOT NULL AS counted
         FROM messages WHERE id = $1",
    )
    .bind(id.0)
    .fetch_optional(&mut *conn)
    .await?;
    let Some(row) = row else {
        return Ok(AckOutcome::NotFound);
    };
    if row.try_get::<i64, _>("recipient_id")? != recipient.0 {
        return Ok(AckOutcome::NotRecipient);
    }
    if row.try_get::<bool, _>("delivered")? {
        return Ok(AckOutcome::Acknowledged { newly: false });
    }
    sqlx::query(
        "UPDATE messages SET delivered_at = $2, ciphertext = NULL, metadata = NULL
         WHERE id = $1",
    )
    .bind(id.0)
    .bind(ms(now))
    .execute(&mut *conn)
    .await?;
    if row.try_get::<bool, _>("counted")? {
        let sender: i64 = row.try_get("sender_id")?;
        uncount(conn, recipient.0, &BTreeMap::from([(sender, 1)])).await?;
    }
    Ok(AckOutcome::Acknowledged { newly: true })
}

/// Acknowledges a list of messages; on the writer, in a batch.
async fn ack_batch_in(
    conn: &mut SqliteConnection,
    recipient: UserId,
    ids: &[MessageId],
    now: DateTime<Utc>,
) -> Result<AckCount, StoreError> {
    if ids.is_empty() {
        return Ok(AckCount::default());
    }
    let mut pending = QueryBuilder::<Sqlite>::new(
        "SELECT sender_id, count(*) AS n FROM messages
         WHERE delivered_at IS NULL AND ciphertext IS NOT NULL AND recipient_id = ",
    );
    pending.push_bind(recipient.0);
    push_ids(&mut pending, ids);
    pending.push(" GROUP BY sender_id");
    let by_sender = pending
        .build()
        .fetch_all(&mut *conn)
        .await?
        .iter()
        .map(|row| Ok((row.try_get("sender_id")?, row.try_get("n")?)))
        .collect::<Result<BTreeMap<i64, i64>, sqlx::Error>>()?;
    let mut update = QueryBuilder::<Sqlite>::new(
        "UPDATE messages SET ciphertext = NULL, metadata = NULL, delivered_at = ",
    );
    update.push_bind(ms(now));
    update.push(" WHERE delivered_at IS NULL AND recipient_id = ");
    update.push_bind(recipient.0);
    push_ids(&mut update, ids);
    let newly = update.build().execute(&mut *conn).await?.rows_affected();
    uncount(conn, recipient.0, &by_sender).await?;
    let total = if newly == ids.len() as u64 {
        newly
    } else {
        let mut count = QueryBuilder::<Sqlite>::new(
            "SELECT count(*) FROM messages WHERE delivered_at IS NOT NULL AND recipient_id = ",
        );
        count.push_bind(recipient.0);
        push_ids(&mut count, ids);
        unsigned(count.build_query_scalar().fetch_one(&mut *conn).await?)
    };
    Ok(AckCount { newly, total })
}

impl SqliteStore {
    /// One send, in the writer's next batch ([`super::batch`]): answered
    /// once the commit that holds it is durable.
    pub(super) async fn queue(&self, message: NewMessage) -> Result<Stored, StoreError> {
        let client_msg_id = message.client_msg_id.map(|id| id.to_string());
        let (sender, recipient) = (message.sender_id, message.recipient_id);
        let client = client_msg_id.clone();
        let queued = self
            .batch
            .write(move |conn| {
                Box::pin(async move { queue_in(conn, &message, client.as_deref()).await })
            })
            .await;
        match queued {
            Ok(stored) => Ok(stored),
            Err(NotQueued::Store(err)) => Err(err),
            Err(NotQueued::Refused(quota)) => {
                self.refused(sender, recipient, client_msg_id.as_deref(), quota)
                    .await
            }
        }
    }

    /// A send that stored nothing: an earlier message with the same
    /// `client_msg_id` (its id), an unknown or deleted recipient, or `quota`.
    async fn refused(
        &self,
        sender: UserId,
        recipient: UserId,
        client_msg_id: Option<&str>,
        quota: Quota,
    ) -> Result<Stored, StoreError> {
        if let Some(client_msg_id) = client_msg_id {
            let earlier: Option<i64> = sqlx::query_scalar(
                "SELECT id FROM messages WHERE sender_id = $1 AND client_msg_id = $2",
            )
            .bind(sender.0)
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
        let inbox: Option<i64> =
            sqlx::query_scalar("SELECT recipient_id FROM inbox_counts WHERE recipient_id = $1")
                .bind(recipient.0)
                .fetch_optional(&self.writer)
                .await?;
        Err(match inbox {
            None => StoreError::NotFound,
            Some(_) => StoreError::QuotaExceeded(quota),
        })
    }

    pub(super) async fn counts(
        &self,
        recipient: UserId,
        sender: UserId,
    ) -> Result<PendingCounts, StoreError> {
        let row = sqlx::query(
            "SELECT (SELECT pending FROM inbox_counts WHERE recipient_id = $1) AS recipient,
                    (SELECT pending FROM sender_counts
                     WHERE recipient_id = $1 AND sender_id = $2) AS from_sender",
        )
        .bind(recipient.0)
        .bind(sender.0)
        .fetch_one(&self.reader)
        .await?;
        let recipient: Option<i64> = row.try_get("recipient")?;
        let from_sender: Option<i64> = row.try_get("from_sender")?;
        Ok(PendingCounts {
            recipient: unsigned(recipient.unwrap_or_default()),
            from_sender: unsigned(from_sender.unwrap_or_default()),
        })
    }

    pub(super) async fn pending_page(
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

    pub(super) async fn ack_one(
        &self,
        recipient: UserId,
        id: MessageId,
        now: DateTime<Utc>,
    ) -> Result<AckOutcome, StoreError> {
        self.batch
            .write(move |conn| Box::pin(ack_one_in(conn, recipient, id, now)))
            .await
    }

    pub(super) async fn ack_batch(
        &self,
        recipient: UserId,
        ids: &[MessageId],
        now: DateTime<Utc>,
    ) -> Result<AckCount, StoreError> {
        if ids.is_empty() {
            return Ok(AckCount::default());
        }
        let ids = ids.to_vec();
        self.batch
            .write(move |conn| {
                Box::pin(async move { ack_batch_in(conn, recipient, &ids, now).await })
            })
            .await
    }

    pub(super) async fn receipt_of(
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

    /// Expires one batch: drops the ciphertext of up to [`SWEEP_BATCH`]
    /// messages past their TTL and takes them off the counters.
    async fn expire_batch(&self, now: DateTime<Utc>) -> Result<u64, StoreError> {
        let mut tx = self.writer.begin().await?;
        let rows = sqlx::query(
            "UPDATE messages SET ciphertext = NULL, metadata = NULL WHERE id IN (
               SELECT id FROM messages WHERE delivered_at IS NULL AND expires_at <= $1
               AND ciphertext IS NOT NULL LIMIT $2)
             RETURNING recipient_id, sender_id",
        )
        .bind(ms(now))
        .bind(SWEEP_BATCH)
        .fetch_all(&mut *tx)
        .await?;
        let mut by_recipient: BTreeMap<i64, BTreeMap<i64, i64>> = BTreeMap::new();
        for row in &rows {
            let recipient: i64 = row.try_get("recipient_id")?;
            let sender: i64 = row.try_get("sender_id")?;
            *by_recipient
                .entry(recipient)
                .or_default()
                .entry(sender)
                .or_default() += 1;
        }
        for (recipient, by_sender) in &by_recipient {
            uncount(&mut tx, *recipient, by_sender).await?;
        }
        tx.commit().await?;
        Ok(rows.len() as u64)
    }

    pub(super) async fn sweep_all(&self, cutoffs: SweepCutoffs) -> Result<SweepReport, StoreError> {
        let mut report = SweepReport::default();
        loop {
            let n = self.expire_batch(cutoffs.now).await?;
            report.expired += n;
            if n < SWEEP_BATCH as u64 {
                break;
            }
        }
        loop {
            // Only rows that no longer count as pending: delivered, or
            // expired and already swept above.
            let n = sqlx::query(
                "DELETE FROM messages WHERE id IN (
                   SELECT id FROM messages WHERE delivered_at < $1
                   UNION ALL
                   SELECT id FROM messages WHERE delivered_at IS NULL AND expires_at < $1
                     AND ciphertext IS NULL
                   LIMIT $2)",
            )
            .bind(ms(cutoffs.receipts_before))
            .bind(SWEEP_BATCH)
            .execute(&self.writer)
            .await?
            .rows_affected();
            report.purged += n;
            if n < SWEEP_BATCH as u64 {
                break;
            }
        }
        report.names_released = sqlx::query(
            "UPDATE users SET username = $2, username_normalized = '#' || id
             WHERE deleted_at IS NOT NULL AND deleted_at < $1
               AND substr(username_normalized, 1, 1) <> '#'",
        )
        .bind(ms(cutoffs.names_before))
        .bind(RELEASED_NAME)
        .execute(&self.writer)
        .await?
        .rows_affected();
        Ok(report)
    }
}
