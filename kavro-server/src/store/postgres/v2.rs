//! [`V2Store`] on PostgreSQL, shared by every relay instance.
//!
//! Locks, always in this order within a transaction: the group row (`FOR
//! SHARE` for an application message or proposal, `FOR UPDATE` for a commit),
//! then device rows in id order (`FOR UPDATE`, to take their next `seq`), then
//! message rows in id order (to release bodies on ack). A transaction that
//! still loses a deadlock (only possible against a revoke or the sweep) or a
//! serialisation check is retried a few times.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use kavro_proto::UserId;
use kavro_proto::v2::api::QueueKind;
use kavro_proto::v2::{GroupId, MlsDeviceId, QueueSeq, V2MessageId};
use sqlx::postgres::PgRow;
use sqlx::{PgConnection, Row};
use uuid::Uuid;

use super::PgStore;
use crate::store::v2::{
    Claimed, DeviceRow, GroupRow, KeyPackageTally, LinkRequestRow, NewCommit, NewDevice,
    NewGroupMessage, NewKeyPackage, NewLinkRequest, Posted, QueueRead, QueueRow, V2Error, V2Store,
    V2SweepReport, epoch_from_db, epoch_to_db,
};
use crate::store::{SWEEP_BATCH, StoreError};

const DEVICE_COLUMNS: &str =
    "id, user_id, signature_key, link_signer, link_signature, created_at, revoked_at";
const ATTEMPTS: usize = 4;

/// Runs `op` again when PostgreSQL aborted it for a deadlock or a serialisation failure.
async fn retrying<T, F, Fut>(op: F) -> Result<T, V2Error>
where
    F: Fn() -> Fut,
    Fut: Future<Output = Result<T, V2Error>>,
{
    let mut attempt = 1;
    loop {
        match op().await {
            Err(V2Error::Store(StoreError::Backend(sqlx::Error::Database(db))))
                if attempt < ATTEMPTS
                    && matches!(db.code().as_deref(), Some("40P01" | "40001")) =>
            {
                tracing::debug!(attempt, "v2 transaction lost a lock race; retrying");
                attempt += 1;
            }
            other => return other,
        }
    }
}

fn device_row(row: &PgRow) -> Result<DeviceRow, sqlx::Error> {
    let signer: Option<i64> = row.try_get("link_signer")?;
    let signature: Option<Vec<u8>> = row.try_get("link_signature")?;
    Ok(DeviceRow {
        id: MlsDeviceId(row.try_get("id")?),
        user_id: UserId(row.try_get("user_id")?),
        signature_key: row.try_get("signature_key")?,
        link: signer.zip(signature).map(|(s, sig)| (MlsDeviceId(s), sig)),
        created_at: row.try_get("created_at")?,
        revoked_at: row.try_get("revoked_at")?,
    })
}

fn link_row(row: &PgRow) -> Result<LinkRequestRow, sqlx::Error> {
    let device: Option<i64> = row.try_get("device_id")?;
    let failures: i32 = row.try_get("failures")?;
    Ok(LinkRequestRow {
        id: row.try_get("id")?,
        user_id: UserId(row.try_get("user_id")?),
        signature_key: row.try_get("signature_key")?,
        created_at: row.try_get("created_at")?,
        expires_at: row.try_get("expires_at")?,
        failures: u32::try_from(failures).unwrap_or(u32::MAX),
        device_id: device.map(MlsDeviceId),
    })
}

/// Locks the active devices among `devices` in id order, takes the next
/// `seq` of each; returns (device, seq, entries pending, this one included).
async fn take_seqs(
    conn: &mut PgConnection,
    devices: &BTreeSet<i64>,
) -> Result<Vec<(i64, i64, i64)>, sqlx::Error> {
    if devices.is_empty() {
        return Ok(Vec::new());
    }
    let ids: Vec<i64> = devices.iter().copied().collect();
    let rows = sqlx::query(
        "UPDATE v2_devices d SET next_seq = d.next_seq + 1
         FROM (SELECT id FROM v2_devices WHERE id = ANY($1) AND revoked_at IS NULL
               ORDER BY id FOR UPDATE) l
         WHERE d.id = l.id
         RETURNING d.id, d.next_seq - 1 AS seq, d.next_seq - 1 - d.acked_seq AS pending",
    )
    .bind(&ids)
    .fetch_all(&mut *conn)
    .await?;
    let mut taken = rows
        .iter()
        .map(|r| Ok((r.try_get("id")?, r.try_get("seq")?, r.try_get("pending")?)))
        .collect::<Result<Vec<(i64, i64, i64)>, sqlx::Error>>()?;
    taken.sort_unstable();
    Ok(taken)
}

/// Stores one message body and its queue entries, in one statement.
#[allow(clippy::too_many_arguments)]
async fn insert_message(
    conn: &mut PgConnection,
    group: &GroupId,
    sender: MlsDeviceId,
    kind: QueueKind,
    epoch: i64,
    result_epoch: i64,
    body: &[u8],
    client_msg_id: Option<Uuid>,
    seqs: &[(i64, i64, i64)],
    recipients: usize,
    now: DateTime<Utc>,
    expires_at: DateTime<Utc>,
) -> Result<i64, sqlx::Error> {
    let devices: Vec<i64> = seqs.iter().map(|(d, _, _)| *d).collect();
    let numbers: Vec<i64> = seqs.iter().map(|(_, s, _)| *s).collect();
    sqlx::query_scalar(
        "WITH m AS (
             INSERT INTO v2_messages (group_id, sender_device, kind, epoch, body, client_msg_id,
                                      result_epoch, recipients, pending, created_at, expires_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $13, $8, $9, $10) RETURNING id),
         q AS (
             INSERT INTO v2_queue (device_id, seq, message_id)
             SELECT t.d, t.s, m.id FROM m, unnest($11::bigint[], $12::bigint[]) AS t(d, s))
         SELECT id FROM m",
    )
    .bind(group.as_bytes())
    .bind(sender.0)
    .bind(kind.code())
    .bind(epoch)
    .bind(body)
    .bind(client_msg_id)
    .bind(result_epoch)
    .bind(devices.len() as i32)
    .bind(now)
    .bind(expires_at)
    .bind(&devices)
    .bind(&numbers)
    .bind(recipients as i32)
    .fetch_one(&mut *conn)
    .await
}

/// The group's epoch, locked (shared or exclusive), checking that `device` is a member.
async fn lock_group(
    conn: &mut PgConnection,
    group: &GroupId,
    device: MlsDeviceId,
    exclusive: bool,
) -> Result<i64, V2Error> {
    let sql = if exclusive {
        "SELECT g.epoch, EXISTS (SELECT 1 FROM v2_group_members m
                                 WHERE m.group_id = g.group_id AND m.device_id = $2) AS member
         FROM v2_groups g WHERE g.group_id = $1 FOR UPDATE OF g"
    } else {
        "SELECT g.epoch, EXISTS (SELECT 1 FROM v2_group_members m
                                 WHERE m.group_id = g.group_id AND m.device_id = $2) AS member
         FROM v2_groups g WHERE g.group_id = $1 FOR SHARE OF g"
    };
    let row = sqlx::query(sql)
        .bind(group.as_bytes())
        .bind(device.0)
        .fetch_optional(&mut *conn)
        .await?
        .ok_or(V2Error::UnknownGroup)?;
    let member: bool = row.try_get("member")?;
    if !member {
        return Err(V2Error::NotMember);
    }
    Ok(row.try_get("epoch")?)
}

async fn earlier_post(
    conn: &mut PgConnection,
    sender: MlsDeviceId,
    client_msg_id: Option<Uuid>,
) -> Result<Option<Posted>, sqlx::Error> {
    let Some(client_msg_id) = client_msg_id else {
        return Ok(None);
    };
    let row = sqlx::query(
        "SELECT id, result_epoch, recipients FROM v2_messages
         WHERE sender_device = $1 AND client_msg_id = $2",
    )
    .bind(sender.0)
    .bind(client_msg_id)
    .fetch_optional(&mut *conn)
    .await?;
    row.map(|row| {
        let recipients: i32 = row.try_get("recipients")?;
        Ok(Posted {
            id: V2MessageId(row.try_get("id")?),
            epoch: epoch_from_db(row.try_get("result_epoch")?),
            recipients: u32::try_from(recipients).unwrap_or(u32::MAX),
            created: false,
            woken: Vec::new(),
        })
    })
    .transpose()
}

/// Acknowledges `device`'s queue up to `up_to` in one statement: deletes
/// its entries and moves its position when it moves; returns the position
/// and the messages whose entries went. Only the device's own rows are
/// written: the message bodies are deleted after the commit
/// ([`drop_delivered`]). Counting each message's recipients down here made
/// every recipient of a message lock that message's row until its commit,
/// and with nine receivers per message (PostgreSQL, groups of 10 at
/// 200/s) the acks queued behind each other, filled the pool, and posts
/// waited 16-20 ms for a connection.
async fn ack_in(
    conn: &mut PgConnection,
    device: MlsDeviceId,
    up_to: i64,
) -> Result<(QueueSeq, Vec<i64>), V2Error> {
    // A position that does not move is not written: a reader that
    // acknowledges what it already had (`after=n&ack=n` on every poll)
    // writes nothing and commits without a WAL flush. (Every
    // data-modifying part runs to completion whether or not the final
    // `SELECT` reads it.)
    let row = sqlx::query(
        "WITH gone AS (
             DELETE FROM v2_queue WHERE device_id = $1 AND seq <= $2 RETURNING message_id
         ), moved AS (
             UPDATE v2_devices SET acked_seq = LEAST($2, next_seq - 1)
             WHERE id = $1 AND acked_seq < LEAST($2, next_seq - 1) RETURNING acked_seq
         )
         SELECT COALESCE((SELECT acked_seq FROM moved),
                         (SELECT acked_seq FROM v2_devices WHERE id = $1)) AS acked,
                COALESCE((SELECT array_agg(DISTINCT message_id) FROM gone), '{}') AS messages",
    )
    .bind(device.0)
    .bind(up_to)
    .fetch_one(&mut *conn)
    .await?;
    let acked: Option<i64> = row.try_get("acked")?;
    let messages: Vec<i64> = row.try_get("messages")?;
    let acked = acked.map(QueueSeq).ok_or(V2Error::DeviceInactive)?;
    Ok((acked, messages))
}

/// Deletes those of `messages` no queue entry names any more (their last
/// recipient acknowledged them), once the acknowledgement committed. Two
/// last recipients acknowledging at the same moment may each still see
/// the other's entry and leave the body: the retention sweep deletes such
/// bodies ([`SWEEP_BATCH`] at a time, see `sweep_v2`).
async fn drop_delivered(pool: &sqlx::PgPool, messages: &[i64]) -> Result<(), sqlx::Error> {
    if messages.is_empty() {
        return Ok(());
    }
    sqlx::query(
        "DELETE FROM v2_messages m WHERE m.id = ANY($1)
         AND NOT EXISTS (SELECT 1 FROM v2_queue q WHERE q.message_id = m.id)",
    )
    .bind(messages)
    .execute(pool)
    .await?;
    Ok(())
}

async fn tally(
    conn: &mut PgConnection,
    device: MlsDeviceId,
    suite: u16,
    now: DateTime<Utc>,
) -> Result<KeyPackageTally, sqlx::Error> {
    let row = sqlx::query(
        "SELECT count(*) FILTER (WHERE NOT last_resort) AS remaining,
                count(*) FILTER (WHERE last_resort) AS last_resort
         FROM v2_key_packages WHERE device_id = $1 AND not_after > $2 AND ciphersuite = $3",
    )
    .bind(device.0)
    .bind(now)
    .bind(i32::from(suite))
    .fetch_one(&mut *conn)
    .await?;
    let remaining: i64 = row.try_get("remaining")?;
    let last_resort: i64 = row.try_get("last_resort")?;
    Ok(KeyPackageTally {
        remaining: u32::try_from(remaining).unwrap_or(u32::MAX),
        last_resort: last_resort > 0,
    })
}

/// Inserts a device (root, or linked by an active device of the same account).
async fn insert_device(
    conn: &mut PgConnection,
    user: i64,
    key: &[u8],
    link: Option<(MlsDeviceId, &[u8])>,
    now: DateTime<Utc>,
) -> Result<i64, V2Error> {
    let taken: Option<i64> =
        sqlx::query_scalar("SELECT id FROM v2_devices WHERE signature_key = $1")
            .bind(key)
            .fetch_optional(&mut *conn)
            .await?;
    if taken.is_some() {
        return Err(V2Error::KeyTaken);
    }
    let result = match link {
        None => {
            sqlx::query_scalar(
                "INSERT INTO v2_devices (user_id, signature_key, created_at)
                 VALUES ($1, $2, $3) RETURNING id",
            )
            .bind(user)
            .bind(key)
            .bind(now)
            .fetch_optional(&mut *conn)
            .await
        }
        Some((signer, signature)) => {
            // FOR SHARE: a concurrent revoke of the signer waits for us, or we for it.
            sqlx::query_scalar(
                "INSERT INTO v2_devices (user_id, signature_key, link_signer, link_signature, created_at)
                 SELECT $1, $2, $3, $4, $5 WHERE EXISTS (
                     SELECT 1 FROM v2_devices WHERE id = $3 AND user_id = $1
                     AND revoked_at IS NULL FOR SHARE)
                 RETURNING id",
            )
            .bind(user)
            .bind(key)
            .bind(signer.0)
            .bind(signature)
            .bind(now)
            .fetch_optional(&mut *conn)
            .await
        }
    };
    match result {
        Ok(Some(id)) => Ok(id),
        Ok(None) => Err(V2Error::SignerInvalid),
        // The unique indexes settle races: the key, or a second root.
        Err(sqlx::Error::Database(db)) if db.is_unique_violation() => {
            if db.constraint() == Some("v2_devices_one_root") {
                Err(V2Error::RootExists)
            } else {
                Err(V2Error::KeyTaken)
            }
        }
        Err(other) => Err(other.into()),
    }
}

#[async_trait]
impl V2Store for PgStore {
    async fn add_device(&self, device: NewDevice<'_>) -> Result<MlsDeviceId, V2Error> {
        let mut tx = self.primary.begin().await?;
        if device.link.is_none() {
            let root: Option<i64> = sqlx::query_scalar(
                "SELECT id FROM v2_devices WHERE user_id = $1 AND link_signer IS NULL",
            )
            .bind(device.user.0)
            .fetch_optional(&mut *tx)
            .await?;
            if root.is_some() {
                return Err(V2Error::RootExists);
            }
        }
        let id = insert_device(
            &mut tx,
            device.user.0,
            device.signature_key,
            device.link,
            device.now,
        )
        .await?;
        tx.commit().await?;
        Ok(MlsDeviceId(id))
    }

    async fn device(&self, id: MlsDeviceId) -> Result<Option<DeviceRow>, V2Error> {
        let sql = format!("SELECT {DEVICE_COLUMNS} FROM v2_devices WHERE id = $1");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(id.0)
            .fetch_optional(&self.primary)
            .await?;
        Ok(row.as_ref().map(device_row).transpose()?)
    }

    async fn devices_of(&self, user: UserId) -> Result<Vec<DeviceRow>, V2Error> {
        let sql = format!("SELECT {DEVICE_COLUMNS} FROM v2_devices WHERE user_id = $1 ORDER BY id");
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(user.0)
            .fetch_all(&self.primary)
            .await?;
        Ok(rows.iter().map(device_row).collect::<Result<_, _>>()?)
    }

    async fn revoke_device(&self, id: MlsDeviceId, now: DateTime<Utc>) -> Result<bool, V2Error> {
        retrying(|| async {
            let mut tx = self.primary.begin().await?;
            let done = sqlx::query(
                "UPDATE v2_devices SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL",
            )
            .bind(id.0)
            .bind(now)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if done == 0 {
                return Ok(false);
            }
            sqlx::query("DELETE FROM v2_key_packages WHERE device_id = $1")
                .bind(id.0)
                .execute(&mut *tx)
                .await?;
            let (_, messages) = ack_in(&mut tx, id, i64::MAX).await?;
            // A revoked device reads no blob: it holds none.
            sqlx::query("DELETE FROM v2_blob_holds WHERE device_id = $1")
                .bind(id.0)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            drop_delivered(&self.primary, &messages).await?;
            Ok(true)
        })
        .await
    }

    async fn create_link_request(&self, request: NewLinkRequest<'_>) -> Result<(), V2Error> {
        let mut tx = self.primary.begin().await?;
        // Serialise one account's requests so the open count holds.
        sqlx::query("SELECT id FROM users WHERE id = $1 FOR UPDATE")
            .bind(request.user.0)
            .execute(&mut *tx)
            .await?;
        let open: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM v2_link_requests
             WHERE user_id = $1 AND device_id IS NULL AND expires_at > $2",
        )
        .bind(request.user.0)
        .bind(request.now)
        .fetch_one(&mut *tx)
        .await?;
        if open >= i64::from(request.max_open) {
            return Err(V2Error::TooManyOpenLinks);
        }
        sqlx::query(
            "INSERT INTO v2_link_requests (id, user_id, code_hash, signature_key, created_at, expires_at)
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(request.id)
        .bind(request.user.0)
        .bind(request.code_hash)
        .bind(request.signature_key)
        .bind(request.now)
        .bind(request.expires_at)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn link_request_by_code(
        &self,
        user: UserId,
        code_hash: &[u8],
        now: DateTime<Utc>,
        max_failures: u32,
    ) -> Result<Option<LinkRequestRow>, V2Error> {
        let row = sqlx::query(
            "SELECT * FROM v2_link_requests WHERE user_id = $1 AND code_hash = $2
             AND device_id IS NULL AND expires_at > $3 AND failures < $4",
        )
        .bind(user.0)
        .bind(code_hash)
        .bind(now)
        .bind(i32::try_from(max_failures).unwrap_or(i32::MAX))
        .fetch_optional(&self.primary)
        .await?;
        Ok(row.as_ref().map(link_row).transpose()?)
    }

    async fn link_request(&self, id: Uuid) -> Result<Option<LinkRequestRow>, V2Error> {
        let row = sqlx::query("SELECT * FROM v2_link_requests WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.primary)
            .await?;
        Ok(row.as_ref().map(link_row).transpose()?)
    }

    async fn link_failed(&self, id: Uuid) -> Result<(), V2Error> {
        sqlx::query("UPDATE v2_link_requests SET failures = failures + 1 WHERE id = $1")
            .bind(id)
            .execute(&self.primary)
            .await?;
        Ok(())
    }

    async fn approve_link(
        &self,
        id: Uuid,
        signer: MlsDeviceId,
        signature: &[u8],
        now: DateTime<Utc>,
        max_failures: u32,
    ) -> Result<MlsDeviceId, V2Error> {
        let mut tx = self.primary.begin().await?;
        let row = sqlx::query(
            "SELECT user_id, signature_key FROM v2_link_requests WHERE id = $1
             AND device_id IS NULL AND expires_at > $2 AND failures < $3 FOR UPDATE",
        )
        .bind(id)
        .bind(now)
        .bind(i32::try_from(max_failures).unwrap_or(i32::MAX))
        .fetch_optional(&mut *tx)
        .await?
        .ok_or(V2Error::LinkGone)?;
        let user: i64 = row.try_get("user_id")?;
        let key: Vec<u8> = row.try_get("signature_key")?;
        let device = insert_device(&mut tx, user, &key, Some((signer, signature)), now).await?;
        sqlx::query("UPDATE v2_link_requests SET device_id = $2 WHERE id = $1")
            .bind(id)
            .bind(device)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(MlsDeviceId(device))
    }

    async fn add_key_packages(
        &self,
        device: MlsDeviceId,
        suite: u16,
        packages: &[NewKeyPackage],
        last_resort: Option<&NewKeyPackage>,
        max: u32,
        now: DateTime<Utc>,
    ) -> Result<KeyPackageTally, V2Error> {
        let mut tx = self.primary.begin().await?;
        // Serialise uploads of one device so the bound holds.
        sqlx::query("SELECT id FROM v2_devices WHERE id = $1 FOR UPDATE")
            .bind(device.0)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM v2_key_packages WHERE device_id = $1 AND not_after <= $2")
            .bind(device.0)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        let have: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM v2_key_packages
             WHERE device_id = $1 AND ciphersuite = $2 AND NOT last_resort",
        )
        .bind(device.0)
        .bind(i32::from(suite))
        .fetch_one(&mut *tx)
        .await?;
        let have = u32::try_from(have).unwrap_or(u32::MAX);
        if u64::from(have) + packages.len() as u64 > u64::from(max) {
            return Err(V2Error::TooManyKeyPackages { have, max });
        }
        if !packages.is_empty() {
            let bytes: Vec<&[u8]> = packages.iter().map(|p| p.bytes.as_slice()).collect();
            let not_after: Vec<DateTime<Utc>> = packages.iter().map(|p| p.not_after).collect();
            sqlx::query(
                "INSERT INTO v2_key_packages
                     (device_id, key_package, last_resort, not_after, created_at, ciphersuite)
                 SELECT $1, t.k, false, t.a, $4, $5
                 FROM unnest($2::bytea[], $3::timestamptz[]) AS t(k, a)",
            )
            .bind(device.0)
            .bind(&bytes)
            .bind(&not_after)
            .bind(now)
            .bind(i32::from(suite))
            .execute(&mut *tx)
            .await?;
        }
        if let Some(package) = last_resort {
            sqlx::query(
                "DELETE FROM v2_key_packages WHERE device_id = $1 AND ciphersuite = $2 AND last_resort",
            )
            .bind(device.0)
            .bind(i32::from(suite))
                .execute(&mut *tx)
                .await?;
            sqlx::query(
                "INSERT INTO v2_key_packages
                     (device_id, key_package, last_resort, not_after, created_at, ciphersuite)
                 VALUES ($1, $2, true, $3, $4, $5)",
            )
            .bind(device.0)
            .bind(&package.bytes)
            .bind(package.not_after)
            .bind(now)
            .bind(i32::from(suite))
            .execute(&mut *tx)
            .await?;
        }
        let tally = tally(&mut tx, device, suite, now).await?;
        tx.commit().await?;
        Ok(tally)
    }

    async fn key_package_tally(
        &self,
        device: MlsDeviceId,
        suite: u16,
        now: DateTime<Utc>,
    ) -> Result<KeyPackageTally, V2Error> {
        let mut conn = self.primary.acquire().await?;
        Ok(tally(&mut conn, device, suite, now).await?)
    }

    async fn claim_key_packages(
        &self,
        user: UserId,
        suite: u16,
        only: Option<MlsDeviceId>,
        now: DateTime<Utc>,
    ) -> Result<Claimed, V2Error> {
        let mut tx = self.primary.begin().await?;
        let devices: Vec<i64> = sqlx::query_scalar(
            "SELECT id FROM v2_devices WHERE user_id = $1 AND revoked_at IS NULL \
             AND ($2::BIGINT IS NULL OR id = $2) ORDER BY id",
        )
        .bind(user.0)
        .bind(only.map(|d| d.0))
        .fetch_all(&mut *tx)
        .await?;
        let mut claimed = Claimed::default();
        for device in devices {
            // SKIP LOCKED: concurrent claimers take different packages; a
            // package is deleted by exactly one of them.
            let taken: Option<Vec<u8>> = sqlx::query_scalar(
                "DELETE FROM v2_key_packages WHERE id = (
                     SELECT id FROM v2_key_packages WHERE device_id = $1 AND NOT last_resort
                     AND not_after > $2 AND ciphersuite = $3 ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED)
                 RETURNING key_package",
            )
            .bind(device)
            .bind(now)
            .bind(i32::from(suite))
            .fetch_optional(&mut *tx)
            .await?;
            if let Some(package) = taken {
                claimed.packages.push((MlsDeviceId(device), package, false));
                continue;
            }
            let last: Option<Vec<u8>> = sqlx::query_scalar(
                "SELECT key_package FROM v2_key_packages
                 WHERE device_id = $1 AND last_resort AND not_after > $2 AND ciphersuite = $3",
            )
            .bind(device)
            .bind(now)
            .bind(i32::from(suite))
            .fetch_optional(&mut *tx)
            .await?;
            match last {
                Some(package) => claimed.packages.push((MlsDeviceId(device), package, true)),
                None => claimed.missing.push(MlsDeviceId(device)),
            }
        }
        tx.commit().await?;
        Ok(claimed)
    }

    async fn create_group(
        &self,
        group: &GroupId,
        creator: MlsDeviceId,
        now: DateTime<Utc>,
    ) -> Result<(), V2Error> {
        let mut tx = self.primary.begin().await?;
        let created = sqlx::query(
            "INSERT INTO v2_groups (group_id, epoch, created_by, created_at)
             VALUES ($1, 0, $2, $3) ON CONFLICT DO NOTHING",
        )
        .bind(group.as_bytes())
        .bind(creator.0)
        .bind(now)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if created == 0 {
            return Err(V2Error::GroupExists);
        }
        sqlx::query(
            "INSERT INTO v2_group_members (group_id, device_id, joined_epoch) VALUES ($1, $2, 0)",
        )
        .bind(group.as_bytes())
        .bind(creator.0)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn group(&self, group: &GroupId) -> Result<Option<GroupRow>, V2Error> {
        let row = sqlx::query(
            "SELECT g.epoch, COALESCE(array_agg(m.device_id ORDER BY m.device_id)
                                      FILTER (WHERE m.device_id IS NOT NULL), '{}') AS members
             FROM v2_groups g LEFT JOIN v2_group_members m ON m.group_id = g.group_id
             WHERE g.group_id = $1 GROUP BY g.epoch",
        )
        .bind(group.as_bytes())
        .fetch_optional(&self.primary)
        .await?;
        let Some(row) = row else { return Ok(None) };
        let members: Vec<i64> = row.try_get("members")?;
        Ok(Some(GroupRow {
            epoch: epoch_from_db(row.try_get("epoch")?),
            members: members.into_iter().map(MlsDeviceId).collect(),
        }))
    }

    async fn post_message(&self, message: NewGroupMessage<'_>) -> Result<Posted, V2Error> {
        let message = &message;
        retrying(|| async move {
            let mut tx = self.primary.begin().await?;
            let epoch = lock_group(&mut tx, message.group, message.sender, false).await?;
            if let Some(earlier) =
                earlier_post(&mut tx, message.sender, message.client_msg_id).await?
            {
                return Ok(earlier);
            }
            if epoch != epoch_to_db(message.epoch) {
                return Err(V2Error::WrongEpoch {
                    current: epoch_from_db(epoch),
                });
            }
            let members: BTreeSet<i64> = sqlx::query_scalar(
                "SELECT device_id FROM v2_group_members WHERE group_id = $1 AND device_id <> $2",
            )
            .bind(message.group.as_bytes())
            .bind(message.sender.0)
            .fetch_all(&mut *tx)
            .await?
            .into_iter()
            .collect();
            let seqs = take_seqs(&mut tx, &members).await?;
            if seqs
                .iter()
                .any(|(_, _, pending)| *pending > i64::from(message.max_pending))
            {
                return Err(V2Error::QuotaExceeded);
            }
            let id = insert_message(
                &mut tx,
                message.group,
                message.sender,
                message.kind,
                epoch,
                epoch,
                message.body,
                message.client_msg_id,
                &seqs,
                seqs.len(),
                message.now,
                message.expires_at,
            )
            .await;
            let id = match id {
                Ok(id) => id,
                // A concurrent retry with the same client_msg_id won the unique index.
                Err(sqlx::Error::Database(db)) if db.is_unique_violation() => {
                    drop(tx);
                    let mut conn = self.primary.acquire().await?;
                    return earlier_post(&mut conn, message.sender, message.client_msg_id)
                        .await?
                        .ok_or(V2Error::Store(StoreError::Conflict));
                }
                Err(other) => return Err(other.into()),
            };
            if let Some(blob) = crate::store::blobs_sql::record_blob_refs!(
                tx,
                message.sender.0,
                id,
                message.blob_ids,
                message.now
            ) {
                return Err(V2Error::BlobUnusable(blob));
            }
            tx.commit().await?;
            Ok(Posted {
                id: V2MessageId(id),
                epoch: epoch_from_db(epoch),
                recipients: seqs.len() as u32,
                created: true,
                woken: seqs.iter().map(|(d, _, _)| MlsDeviceId(*d)).collect(),
            })
        })
        .await
    }

    async fn post_commit(&self, commit: NewCommit<'_>) -> Result<Posted, V2Error> {
        let commit = &commit;
        retrying(|| async move {
            let mut tx = self.primary.begin().await?;
            let epoch = lock_group(&mut tx, commit.group, commit.sender, true).await?;
            if let Some(earlier) =
                earlier_post(&mut tx, commit.sender, commit.client_msg_id).await?
            {
                return Ok(earlier);
            }
            if epoch != epoch_to_db(commit.epoch) {
                return Err(V2Error::WrongEpoch {
                    current: epoch_from_db(epoch),
                });
            }
            let members: BTreeSet<i64> =
                sqlx::query_scalar("SELECT device_id FROM v2_group_members WHERE group_id = $1")
                    .bind(commit.group.as_bytes())
                    .fetch_all(&mut *tx)
                    .await?
                    .into_iter()
                    .collect();
            let removed: BTreeSet<i64> = commit.removed.iter().map(|d| d.0).collect();
            if let Some(bad) = removed
                .iter()
                .find(|d| !members.contains(d) || **d == commit.sender.0)
            {
                return Err(V2Error::CannotRemove(MlsDeviceId(*bad)));
            }
            let added: BTreeSet<i64> = commit.added.iter().map(|d| d.0).collect();
            if !added.is_empty() {
                let wanted: Vec<i64> = added.iter().copied().collect();
                let active: BTreeSet<i64> = sqlx::query_scalar(
                    "SELECT id FROM v2_devices WHERE id = ANY($1) AND revoked_at IS NULL",
                )
                .bind(&wanted)
                .fetch_all(&mut *tx)
                .await?
                .into_iter()
                .collect();
                if let Some(bad) = added
                    .iter()
                    .find(|d| !active.contains(d) || members.contains(d))
                {
                    return Err(V2Error::CannotAdd(MlsDeviceId(*bad)));
                }
            }
            if members.len() - removed.len() + added.len() > commit.max_members as usize {
                return Err(V2Error::GroupFull(commit.max_members));
            }
            let new_epoch = epoch + 1;
            sqlx::query("UPDATE v2_groups SET epoch = $2 WHERE group_id = $1 AND epoch = $3")
                .bind(commit.group.as_bytes())
                .bind(new_epoch)
                .bind(epoch)
                .execute(&mut *tx)
                .await?;
            let mut recipients = members.clone();
            recipients.remove(&commit.sender.0);
            recipients.extend(added.iter().copied());
            let seqs = take_seqs(&mut tx, &recipients).await?;
            let (for_welcome, for_commit): (Vec<_>, Vec<_>) =
                seqs.iter().partition(|(d, _, _)| added.contains(d));
            let id = insert_message(
                &mut tx,
                commit.group,
                commit.sender,
                QueueKind::Commit,
                epoch,
                new_epoch,
                commit.commit,
                commit.client_msg_id,
                &for_commit,
                seqs.len(),
                commit.now,
                commit.expires_at,
            )
            .await?;
            if let Some(welcome) = commit.welcome.filter(|_| !for_welcome.is_empty()) {
                insert_message(
                    &mut tx,
                    commit.group,
                    commit.sender,
                    QueueKind::Welcome,
                    new_epoch,
                    new_epoch,
                    welcome,
                    None,
                    &for_welcome,
                    for_welcome.len(),
                    commit.now,
                    commit.expires_at,
                )
                .await?;
            }
            let removed: Vec<i64> = removed.into_iter().collect();
            let added_list: Vec<i64> = added.iter().copied().collect();
            sqlx::query("DELETE FROM v2_group_members WHERE group_id = $1 AND device_id = ANY($2)")
                .bind(commit.group.as_bytes())
                .bind(&removed)
                .execute(&mut *tx)
                .await?;
            sqlx::query(
                "INSERT INTO v2_group_members (group_id, device_id, joined_epoch)
                 SELECT $1, d, $3 FROM unnest($2::bigint[]) AS d",
            )
            .bind(commit.group.as_bytes())
            .bind(&added_list)
            .bind(new_epoch)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            Ok(Posted {
                id: V2MessageId(id),
                epoch: epoch_from_db(new_epoch),
                recipients: seqs.len() as u32,
                created: true,
                woken: seqs.iter().map(|(d, _, _)| MlsDeviceId(*d)).collect(),
            })
        })
        .await
    }

    async fn queue(
        &self,
        owner: UserId,
        device: MlsDeviceId,
        after: QueueSeq,
        limit: u32,
        now: DateTime<Utc>,
    ) -> Result<QueueRead, V2Error> {
        let mut conn = self.primary.acquire().await?;
        let (acked, next): (i64, i64) = sqlx::query_as(
            "SELECT acked_seq, next_seq FROM v2_devices
             WHERE id = $1 AND user_id = $2 AND revoked_at IS NULL",
        )
        .bind(device.0)
        .bind(owner.0)
        .fetch_optional(&mut *conn)
        .await?
        .ok_or(V2Error::DeviceInactive)?;
        let acked = QueueSeq(acked);
        if next - 1 <= after.0 {
            return Ok(QueueRead {
                entries: Vec::new(),
                acked,
            });
        }
        let rows = sqlx::query(
            "SELECT q.seq, m.id, m.kind, m.group_id, m.epoch, m.sender_device, m.body, m.created_at
             FROM v2_queue q JOIN v2_messages m ON m.id = q.message_id
             WHERE q.device_id = $1 AND q.seq > $2 AND m.expires_at > $3
             ORDER BY q.seq LIMIT $4",
        )
        .bind(device.0)
        .bind(after.0)
        .bind(now)
        .bind(i64::from(limit))
        .fetch_all(&mut *conn)
        .await?;
        let entries = rows
            .iter()
            .map(|row| {
                let kind: i16 = row.try_get("kind")?;
                let group: Vec<u8> = row.try_get("group_id")?;
                Ok(QueueRow {
                    seq: QueueSeq(row.try_get("seq")?),
                    id: V2MessageId(row.try_get("id")?),
                    kind: QueueKind::from_code(kind)
                        .ok_or_else(|| sqlx::Error::Decode("unknown message kind".into()))?,
                    group: GroupId::from_bytes(&group)
                        .map_err(|e| sqlx::Error::Decode(Box::new(e)))?,
                    epoch: epoch_from_db(row.try_get("epoch")?),
                    sender: MlsDeviceId(row.try_get("sender_device")?),
                    body: row.try_get("body")?,
                    created_at: row.try_get("created_at")?,
                })
            })
            .collect::<Result<Vec<_>, sqlx::Error>>()?;
        Ok(QueueRead { entries, acked })
    }

    async fn ack_queue(&self, device: MlsDeviceId, up_to: QueueSeq) -> Result<QueueSeq, V2Error> {
        retrying(|| async {
            let mut tx = self.primary.begin().await?;
            // Committed without waiting for the WAL flush: an ack holds its
            // device's row, which every post to the device's groups locks
            // too, and 1,800 acks/s each waiting for a flush (groups of 10
            // at 200/s) held the posts up. A crash of PostgreSQL may undo
            // the last acks; that loses nothing: they are cumulative, the
            // client reads after its own durable position, and its next
            // ack deletes the same entries. (A revocation's ack stays
            // durable.)
            sqlx::query("SET LOCAL synchronous_commit TO OFF")
                .execute(&mut *tx)
                .await?;
            let (acked, messages) = ack_in(&mut tx, device, up_to.0).await?;
            tx.commit().await?;
            drop_delivered(&self.primary, &messages).await?;
            Ok(acked)
        })
        .await
    }

    async fn sweep_v2(&self, now: DateTime<Utc>) -> Result<V2SweepReport, V2Error> {
        let mut report = V2SweepReport::default();
        loop {
            let swept = retrying(|| async {
                let mut tx = self.primary.begin().await?;
                let ids: Vec<i64> = sqlx::query_scalar(
                    "SELECT id FROM v2_messages WHERE expires_at <= $1
                     ORDER BY id LIMIT $2 FOR UPDATE SKIP LOCKED",
                )
                .bind(now)
                .bind(SWEEP_BATCH)
                .fetch_all(&mut *tx)
                .await?;
                if ids.is_empty() {
                    return Ok(0);
                }
                let gone = sqlx::query(
                    "DELETE FROM v2_queue WHERE message_id = ANY($1) RETURNING device_id, seq",
                )
                .bind(&ids)
                .fetch_all(&mut *tx)
                .await?;
                let mut last: BTreeMap<i64, i64> = BTreeMap::new();
                for row in &gone {
                    let (device, seq): (i64, i64) =
                        (row.try_get("device_id")?, row.try_get("seq")?);
                    let entry = last.entry(device).or_insert(seq);
                    *entry = (*entry).max(seq);
                }
                let devices: Vec<i64> = last.keys().copied().collect();
                let seqs: Vec<i64> = last.values().copied().collect();
                sqlx::query(
                    "UPDATE v2_devices d SET acked_seq = GREATEST(d.acked_seq, t.s)
                     FROM (SELECT x.d, x.s FROM unnest($1::bigint[], $2::bigint[]) AS x(d, s)
                           ORDER BY x.d) t
                     WHERE d.id = t.d",
                )
                .bind(&devices)
                .bind(&seqs)
                .execute(&mut *tx)
                .await?;
                sqlx::query("DELETE FROM v2_messages WHERE id = ANY($1)")
                    .bind(&ids)
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
                Ok(ids.len())
            })
            .await?;
            report.expired_messages += swept as u64;
            if swept < SWEEP_BATCH as usize {
                break;
            }
        }
        // Bodies whose last recipients acknowledged at the same moment
        // (see `drop_delivered`). `pending` is the number of queue entries a
        // message was stored with (it is not counted down on PostgreSQL): a
        // message stored with none (posted to nobody, or a commit whose new
        // members got a welcome instead) stays until its TTL, as before: it
        // answers a repeated post idempotently.
        loop {
            let dropped = sqlx::query(
                "DELETE FROM v2_messages WHERE id IN (
                     SELECT m.id FROM v2_messages m
                     WHERE m.pending > 0
                       AND NOT EXISTS (SELECT 1 FROM v2_queue q WHERE q.message_id = m.id)
                     LIMIT $1)",
            )
            .bind(SWEEP_BATCH)
            .execute(&self.primary)
            .await?
            .rows_affected();
            if dropped < SWEEP_BATCH as u64 {
                break;
            }
        }
        report.expired_key_packages =
            sqlx::query("DELETE FROM v2_key_packages WHERE not_after <= $1")
                .bind(now)
                .execute(&self.primary)
                .await?
                .rows_affected();
        report.expired_link_requests =
            sqlx::query("DELETE FROM v2_link_requests WHERE expires_at <= $1")
                .bind(now)
                .execute(&self.primary)
                .await?
                .rows_affected();
        Ok(report)
    }
}
