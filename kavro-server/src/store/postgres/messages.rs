//! The message queue on PostgreSQL: sends with their pending counters, the
//! inbox, acknowledgements, receipts and the retention sweep.
//!
//! A message counts as pending while `delivered_at IS NULL AND ciphertext IS
//! NOT NULL`; `inbox_counts` and `sender_counts` change in the same
//! transaction as that state, under the recipient's `inbox_counts` row lock
//! (see the module doc of [`super`]).

use std::collections::BTreeSet;
use std::convert::Infallible;

use chrono::{DateTime, Utc};
use kavro_proto::api::InboxOrder;
use kavro_proto::{MessageId, UserId};
use sqlx::Row;
use sqlx::postgres::PgConnection;

use super::{PgStore, unsigned};
use crate::store::{
    AckCount, AckOutcome, MessageRecord, NewMessage, PendingCounts, Quota, RELEASED_NAME, Receipt,
    SWEEP_BATCH, StoreError, Stored, SweepCutoffs, SweepReport, receipt_state,
};

fn raw_ids(ids: &[MessageId]) -> Vec<i64> {
    ids.iter().map(|id| id.0).collect()
}

/// Takes the row lock that orders every change to `recipient`'s pending
/// messages. Must be the transaction's first statement that touches them.
async fn lock_inbox(conn: &mut PgConnection, recipient: UserId) -> Result<(), sqlx::Error> {
    sqlx::query("SELECT 1 FROM inbox_counts WHERE recipient_id = $1 FOR UPDATE")
        .bind(recipient.0)
        .execute(conn)
        .await?;
    Ok(())
}

/// Forgets (recipient, sender) counters of `recipients` that reached zero.
async fn drop_empty_pairs(conn: &mut PgConnection, recipients: &[i64]) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM sender_counts WHERE recipient_id = ANY($1) AND pending = 0")
        .bind(recipients)
        .execute(conn)
        .await?;
    Ok(())
}

/// One statement: a place in the recipient's quota (the conditional update
/// also takes the row lock), then in the (recipient, sender) quota, then the
/// insert; each step runs only if the previous one did. Anything short of an
/// insert is a refusal, whose counter steps are undone here (see
/// [`undo_places`]), so a refusal writes nothing and a batch needs no
/// savepoint around a send.
async fn queue_in(
    conn: &mut PgConnection,
    message: &NewMessage,
) -> Result<Result<Stored, Quota>, StoreError> {
    let row = sqlx::query(
        "WITH inbox AS (
           UPDATE inbox_counts SET pending = pending + 1
           WHERE recipient_id = $2 AND pending < $9 RETURNING recipient_id
         ), pair AS (
           INSERT INTO sender_counts (recipient_id, sender_id, pending)
           SELECT recipient_id, $1, 1 FROM inbox
           ON CONFLICT (recipient_id, sender_id)
           DO UPDATE SET pending = sender_counts.pending + 1
           WHERE sender_counts.pending < $10
           RETURNING recipient_id
         ), msg AS (
           INSERT INTO messages (sender_id, recipient_id, ciphertext, ephemeral_pubkey,
                                 metadata, client_msg_id, created_at, expires_at)
           SELECT $1, recipient_id, $3, $4, $5, $6, $7, $8 FROM pair
           ON CONFLICT DO NOTHING RETURNING id
         )
         SELECT (SELECT count(*) FROM inbox) AS counted,
                (SELECT count(*) FROM pair) AS paired,
                (SELECT id FROM msg) AS id",
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
    .bind(i64::from(message.max_pending_per_sender))
    .fetch_one(&mut *conn)
    .await?;
    let id: Option<i64> = row.try_get("id")?;
    if let Some(id) = id {
        return Ok(Ok(Stored {
            id: MessageId(id),
            created: true,
        }));
    }
    if row.try_get::<i64, _>("counted")? == 0 {
        return Ok(Err(Quota::Recipient));
    }
    // Refused by the pair quota, or (paired) by the idempotency index.
    let paired = row.try_get::<i64, _>("paired")? == 1;
    undo_places(conn, message, paired).await?;
    Ok(Err(Quota::Sender))
}

/// Gives back the places a refused send took: the recipient's, and the
/// (recipient, sender) one when `paired`; a pair row left at zero is
/// deleted, as an ack does. Both rows are locked by this transaction since
/// the send's statement, so nobody saw them move: the net effect is that of
/// rolling the send back. The rare path (a full pair quota, a retried
/// `client_msg_id`), so two more statements are fine here.
async fn undo_places(
    conn: &mut PgConnection,
    message: &NewMessage,
    paired: bool,
) -> Result<(), sqlx::Error> {
    let left: Option<i64> = sqlx::query_scalar(
        "WITH inbox AS (
           UPDATE inbox_counts SET pending = pending - 1 WHERE recipient_id = $1
         )
         UPDATE sender_counts SET pending = pending - 1
         WHERE recipient_id = $1 AND sender_id = $2 AND $3
         RETURNING pending",
    )
    .bind(message.recipient_id.0)
    .bind(message.sender_id.0)
    .bind(paired)
    .fetch_optional(&mut *conn)
    .await?;
    if left == Some(0) {
        sqlx::query(
            "DELETE FROM sender_counts WHERE recipient_id = $1 AND sender_id = $2 AND pending = 0",
        )
        .bind(message.recipient_id.0)
        .bind(message.sender_id.0)
        .execute(conn)
        .await?;
    }
    Ok(())
}

/// Acknowledges one message under the recipient's lock; whether it was
/// pending until now.
async fn ack_one_in(
    conn: &mut PgConnection,
    recipient: UserId,
    id: MessageId,
    now: DateTime<Utc>,
) -> Result<bool, StoreError> {
    lock_inbox(conn, recipient).await?;
    // Under the lock the message's pending state cannot change, so what
    // `old` reads is what the update changes.
    let row = sqlx::query(
        "WITH old AS (
           SELECT id, sender_id, ciphertext IS NOT NULL AS counted FROM messages
           WHERE id = $2 AND recipient_id = $1 AND delivered_at IS NULL
         ), done AS (
           UPDATE messages m SET delivered_at = $3, ciphertext = NULL, metadata = NULL
           FROM old WHERE m.id = old.id RETURNING old.sender_id, old.counted
         ), inbox AS (
           UPDATE inbox_counts SET pending = pending - 1
           WHERE recipient_id = $1 AND EXISTS (SELECT 1 FROM done WHERE counted)
         ), pair AS (
           UPDATE sender_counts s SET pending = s.pending - 1 FROM done
           WHERE s.recipient_id = $1 AND s.sender_id = done.sender_id AND done.counted
           RETURNING s.pending
         )
         SELECT (SELECT count(*) FROM done) AS newly,
                (SELECT pending FROM pair) AS pair_left",
    )
    .bind(recipient.0)
    .bind(id.0)
    .bind(now)
    .fetch_one(&mut *conn)
    .await?;
    let newly = row.try_get::<i64, _>("newly")? == 1;
    if newly && row.try_get::<Option<i64>, _>("pair_left")? == Some(0) {
        drop_empty_pairs(conn, &[recipient.0]).await?;
    }
    Ok(newly)
}

/// Acknowledges `ids` (not empty) of `recipient` under the recipient's lock.
async fn ack_batch_in(
    conn: &mut PgConnection,
    recipient: UserId,
    ids: &[i64],
    now: DateTime<Utc>,
) -> Result<AckCount, StoreError> {
    lock_inbox(conn, recipient).await?;
    let row = sqlx::query(
        "WITH old AS (
           SELECT id, sender_id, ciphertext IS NOT NULL AS counted FROM messages
           WHERE recipient_id = $1 AND id = ANY($2) AND delivered_at IS NULL
         ), done AS (
           UPDATE messages m SET delivered_at = $3, ciphertext = NULL, metadata = NULL
           FROM old WHERE m.id = old.id RETURNING old.sender_id, old.counted
         ), per AS (
           SELECT sender_id, count(*) AS n FROM done WHERE counted GROUP BY sender_id
         ), inbox AS (
           UPDATE inbox_counts SET pending = pending - (SELECT sum(n) FROM per)
           WHERE recipient_id = $1 AND EXISTS (SELECT 1 FROM per)
         ), pair AS (
           UPDATE sender_counts s SET pending = s.pending - per.n FROM per
           WHERE s.recipient_id = $1 AND s.sender_id = per.sender_id
           RETURNING s.pending
         )
         SELECT (SELECT count(*) FROM done) AS newly,
                (SELECT count(*) FROM pair WHERE pending = 0) AS emptied",
    )
    .bind(recipient.0)
    .bind(ids)
    .bind(now)
    .fetch_one(&mut *conn)
    .await?;
    let newly = unsigned(row.try_get("newly")?);
    if row.try_get::<i64, _>("emptied")? > 0 {
        drop_empty_pairs(conn, &[recipient.0]).await?;
    }
    let total = if newly == ids.len() as u64 {
        newly
    } else {
        let total: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM messages
             WHERE recipient_id = $1 AND id = ANY($2) AND delivered_at IS NOT NULL",
        )
        .bind(recipient.0)
        .bind(ids)
        .fetch_one(&mut *conn)
        .await?;
        unsigned(total)
    };
    Ok(AckCount { newly, total })
}

impl PgStore {
    /// A send, in the recipient's group commit (keyed by the recipient,
    /// whose `inbox_counts` row it locks first), without a savepoint: see
    /// [`queue_in`].
    pub(super) async fn queue(&self, message: NewMessage) -> Result<Stored, StoreError> {
        let (sender, recipient, client_msg_id) = (
            message.sender_id,
            message.recipient_id,
            message.client_msg_id,
        );
        let queued = self
            .batch
            .write_atomic_keyed(recipient.0, move |conn| {
                let message = message.clone();
                Box::pin(async move { queue_in(conn, &message).await })
            })
            .await?;
        match queued {
            Ok(stored) => Ok(stored),
            Err(quota) => self.refused(sender, recipient, client_msg_id, quota).await,
        }
    }

    /// A send that stored nothing: an earlier message with the same
    /// `client_msg_id` (its id), an unknown or deleted recipient, or `quota`.
    async fn refused(
        &self,
        sender: UserId,
        recipient: UserId,
        client_msg_id: Option<uuid::Uuid>,
        quota: Quota,
    ) -> Result<Stored, StoreError> {
        if let Some(client_msg_id) = client_msg_id {
            let earlier: Option<i64> = sqlx::query_scalar(
                "SELECT id FROM messages WHERE sender_id = $1 AND client_msg_id = $2",
            )
            .bind(sender.0)
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
        let inbox: Option<i64> =
            sqlx::query_scalar("SELECT recipient_id FROM inbox_counts WHERE recipient_id = $1")
                .bind(recipient.0)
                .fetch_optional(&self.primary)
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
        .fetch_one(&self.primary)
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

    pub(super) async fn ack_one(
        &self,
        recipient: UserId,
        id: MessageId,
        now: DateTime<Utc>,
    ) -> Result<AckOutcome, StoreError> {
        let newly = self
            .batch
            .write_atomic_keyed(recipient.0, move |conn| {
                Box::pin(async move {
                    ack_one_in(conn, recipient, id, now)
                        .await
                        .map(Ok::<_, Infallible>)
                })
            })
            .await?
            .unwrap_or_else(|never| match never {});
        if newly {
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

    pub(super) async fn ack_batch(
        &self,
        recipient: UserId,
        ids: &[MessageId],
        now: DateTime<Utc>,
    ) -> Result<AckCount, StoreError> {
        if ids.is_empty() {
            return Ok(AckCount::default());
        }
        let ids = raw_ids(ids);
        let counted = self
            .batch
            .write_atomic_keyed(recipient.0, move |conn| {
                let ids = ids.clone();
                Box::pin(async move {
                    ack_batch_in(conn, recipient, &ids, now)
                        .await
                        .map(Ok::<_, Infallible>)
                })
            })
            .await?;
        Ok(counted.unwrap_or_else(|never| match never {}))
    }

    pub(super) async fn receipt_of(
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

    /// Expires one batch of up to [`SWEEP_BATCH`] messages past their TTL:
    /// locks their recipients' counters in id order (so sweeps on several
    /// instances neither deadlock nor count a message twice), drops the
    /// ciphertext of those still pending, and takes them off the counters.
    /// Returns (candidates seen, messages expired).
    async fn expire_batch(&self, now: DateTime<Utc>) -> Result<(usize, u64), StoreError> {
        let candidates = sqlx::query(
            "SELECT id, recipient_id FROM messages
             WHERE delivered_at IS NULL AND expires_at <= $1 AND ciphertext IS NOT NULL
             LIMIT $2",
        )
        .bind(now)
        .bind(SWEEP_BATCH)
        .fetch_all(&self.primary)
        .await?;
        if candidates.is_empty() {
            return Ok((0, 0));
        }
        let mut ids = Vec::with_capacity(candidates.len());
        let mut recipients = BTreeSet::new();
        for row in &candidates {
            ids.push(row.try_get::<i64, _>("id")?);
            recipients.insert(row.try_get::<i64, _>("recipient_id")?);
        }
        let recipients: Vec<i64> = recipients.into_iter().collect();
        let mut tx = self.primary.begin().await?;
        sqlx::query(
            "SELECT 1 FROM inbox_counts WHERE recipient_id = ANY($1)
             ORDER BY recipient_id FOR UPDATE",
        )
        .bind(&recipients)
        .execute(&mut *tx)
        .await?;
        let expired: i64 = sqlx::query_scalar(
            "WITH done AS (
               UPDATE messages SET ciphertext = NULL, metadata = NULL
               WHERE id = ANY($1) AND delivered_at IS NULL AND ciphertext IS NOT NULL
               RETURNING recipient_id, sender_id
             ), per_pair AS (
               SELECT recipient_id, sender_id, count(*) AS n FROM done
               GROUP BY recipient_id, sender_id
             ), per_inbox AS (
               SELECT recipient_id, sum(n) AS n FROM per_pair GROUP BY recipient_id
             ), inbox AS (
               UPDATE inbox_counts i SET pending = i.pending - per_inbox.n FROM per_inbox
               WHERE i.recipient_id = per_inbox.recipient_id
             ), pair AS (
               UPDATE sender_counts s SET pending = s.pending - p.n FROM per_pair p
               WHERE s.recipient_id = p.recipient_id AND s.sender_id = p.sender_id
             )
             SELECT count(*) FROM done",
        )
        .bind(&ids)
        .fetch_one(&mut *tx)
        .await?;
        if expired > 0 {
            drop_empty_pairs(&mut tx, &recipients).await?;
        }
        tx.commit().await?;
        Ok((candidates.len(), unsigned(expired)))
    }

    pub(super) async fn sweep_all(&self, cutoffs: SweepCutoffs) -> Result<SweepReport, StoreError> {
        let mut report = SweepReport::default();
        loop {
            let (seen, expired) = self.expire_batch(cutoffs.now).await?;
            report.expired += expired;
            if seen < usize::try_from(SWEEP_BATCH).unwrap_or(usize::MAX) {
                break;
            }
        }
        // Only rows that no longer count as pending: delivered, or expired
        // and already swept. SKIP LOCKED: instances sweeping at the same time
        // take disjoint rows, so nobody waits and each row is counted once.
        loop {
            let n = sqlx::query(
                "DELETE FROM messages WHERE id IN (
                   SELECT id FROM messages
                   WHERE (delivered_at < $1)
                      OR (delivered_at IS NULL AND expires_at < $1 AND ciphertext IS NULL)
                   LIMIT $2 FOR UPDATE SKIP LOCKED)",
            )
            .bind(cutoffs.receipts_before)
            .bind(SWEEP_BATCH)
            .execute(&self.primary)
            .await?
            .rows_affected();
            report.purged += n;
            if n < SWEEP_BATCH as u64 {
                break;
            }
        }
        report.names_released = sqlx::query(
            "UPDATE users SET username = $2, username_normalized = '#' || id::text
             WHERE deleted_at IS NOT NULL AND deleted_at < $1
               AND left(username_normalized, 1) <> '#'",
        )
        .bind(cutoffs.names_before)
        .bind(RELEASED_NAME)
        .execute(&self.primary)
        .await?
        .rows_affected();
        Ok(report)
    }
}
