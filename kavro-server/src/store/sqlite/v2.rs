//! [`V2Store`] on SQLite. Every write runs in one transaction on the single
//! writer connection, so writes are serialised: a device's `seq` order is the
//! order of the writer's transactions, and a group's epoch check and advance
//! cannot interleave with another write.

use std::collections::{BTreeMap, BTreeSet};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use kavro_proto::UserId;
use kavro_proto::v2::api::QueueKind;
use kavro_proto::v2::{GroupId, MlsDeviceId, QueueSeq, V2MessageId};
use sqlx::sqlite::SqliteRow;
use sqlx::{QueryBuilder, Row, Sqlite, SqliteConnection};
use uuid::Uuid;

use super::{SqliteStore, from_ms, ms};
use crate::store::SWEEP_BATCH;
use crate::store::v2::{
    Claimed, DeviceRow, GroupRow, KeyPackageTally, LinkRequestRow, NewCommit, NewDevice,
    NewGroupMessage, NewKeyPackage, NewLinkRequest, Posted, QueueRead, QueueRow, V2Error, V2Store,
    V2SweepReport, epoch_from_db, epoch_to_db,
};

const DEVICE_COLUMNS: &str =
    "id, user_id, signature_key, link_signer, link_signature, created_at, revoked_at";

fn device_row(row: &SqliteRow) -> Result<DeviceRow, sqlx::Error> {
    let signer: Option<i64> = row.try_get("link_signer")?;
    let signature: Option<Vec<u8>> = row.try_get("link_signature")?;
    let revoked: Option<i64> = row.try_get("revoked_at")?;
    Ok(DeviceRow {
        id: MlsDeviceId(row.try_get("id")?),
        user_id: UserId(row.try_get("user_id")?),
        signature_key: row.try_get("signature_key")?,
        link: signer.zip(signature).map(|(s, sig)| (MlsDeviceId(s), sig)),
        created_at: from_ms(row.try_get("created_at")?),
        revoked_at: revoked.map(from_ms),
    })
}

fn link_row(row: &SqliteRow) -> Result<LinkRequestRow, sqlx::Error> {
    let id: String = row.try_get("id")?;
    let device: Option<i64> = row.try_get("device_id")?;
    let failures: i64 = row.try_get("failures")?;
    Ok(LinkRequestRow {
        id: Uuid::parse_str(&id).map_err(|e| sqlx::Error::Decode(Box::new(e)))?,
        user_id: UserId(row.try_get("user_id")?),
        signature_key: row.try_get("signature_key")?,
        created_at: from_ms(row.try_get("created_at")?),
        expires_at: from_ms(row.try_get("expires_at")?),
        failures: u32::try_from(failures).unwrap_or(u32::MAX),
        device_id: device.map(MlsDeviceId),
    })
}

fn push_list(builder: &mut QueryBuilder<Sqlite>, ids: impl IntoIterator<Item = i64>) {
    builder.push("(");
    let mut list = builder.separated(", ");
    for id in ids {
        list.push_bind(id);
    }
    builder.push(")");
}

/// Takes the next `seq` of each device in `devices` (active ones only) and
/// returns (device, seq, entries pending, this one included).
async fn take_seqs(
    conn: &mut SqliteConnection,
    devices: &BTreeSet<i64>,
) -> Result<Vec<(i64, i64, i64)>, sqlx::Error> {
    if devices.is_empty() {
        return Ok(Vec::new());
    }
    let mut update = QueryBuilder::<Sqlite>::new(
        "UPDATE v2_devices SET next_seq = next_seq + 1 WHERE revoked_at IS NULL AND id IN ",
    );
    push_list(&mut update, devices.iter().copied());
    update.push(" RETURNING id, next_seq - 1 AS seq, next_seq - 1 - acked_seq AS pending");
    let rows = update.build().fetch_all(&mut *conn).await?;
    let mut taken = rows
        .iter()
        .map(|r| Ok((r.try_get("id")?, r.try_get("seq")?, r.try_get("pending")?)))
        .collect::<Result<Vec<(i64, i64, i64)>, sqlx::Error>>()?;
    taken.sort_unstable();
    Ok(taken)
}

/// Stores one message body for `seqs` and queues it for each.
#[allow(clippy::too_many_arguments)]
async fn insert_message(
    conn: &mut SqliteConnection,
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
    let count = seqs.len() as i64;
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO v2_messages (group_id, sender_device, kind, epoch, body, client_msg_id,
                                  result_epoch, recipients, pending, created_at, expires_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) RETURNING id",
    )
    .bind(group.as_bytes())
    .bind(sender.0)
    .bind(kind.code())
    .bind(epoch)
    .bind(body)
    .bind(client_msg_id.map(|id| id.to_string()))
    .bind(result_epoch)
    .bind(recipients as i64)
    .bind(count)
    .bind(ms(now))
    .bind(ms(expires_at))
    .fetch_one(&mut *conn)
    .await?;
    for chunk in seqs.chunks(300) {
        let mut insert =
            QueryBuilder::<Sqlite>::new("INSERT INTO v2_queue (device_id, seq, message_id) ");
        insert.push_values(chunk, |mut row, (device, seq, _)| {
            row.push_bind(device).push_bind(seq).push_bind(id);
        });
        insert.build().execute(&mut *conn).await?;
    }
    Ok(id)
}

/// The group's epoch and whether `device` is a member, if the group exists.
async fn group_and_membership(
    conn: &mut SqliteConnection,
    group: &GroupId,
    device: MlsDeviceId,
) -> Result<(i64, bool), V2Error> {
    let row = sqlx::query(
        "SELECT g.epoch, EXISTS (SELECT 1 FROM v2_group_members m
                                 WHERE m.group_id = g.group_id AND m.device_id = $2) AS member
         FROM v2_groups g WHERE g.group_id = $1",
    )
    .bind(group.as_bytes())
    .bind(device.0)
    .fetch_optional(&mut *conn)
    .await?
    .ok_or(V2Error::UnknownGroup)?;
    let member: bool = row.try_get("member")?;
    if !member {
        return Err(V2Error::NotMember);
    }
    Ok((row.try_get("epoch")?, member))
}

/// An earlier post by `sender` with `client_msg_id`, if any.
async fn earlier_post(
    conn: &mut SqliteConnection,
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
    .bind(client_msg_id.to_string())
    .fetch_optional(&mut *conn)
    .await?;
    row.map(|row| {
        let recipients: i64 = row.try_get("recipients")?;
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

/// Deletes `device`'s entries up to `up_to`, releases their bodies, and
/// moves the acknowledged position. A position that does not move is not
/// written, so a repeated ack changes no page (and, alone in its batch,
/// costs no disk flush).
async fn ack_in(
    conn: &mut SqliteConnection,
    device: MlsDeviceId,
    up_to: i64,
) -> Result<QueueSeq, V2Error> {
    let gone: Vec<i64> = sqlx::query_scalar(
        "DELETE FROM v2_queue WHERE device_id = $1 AND seq <= $2 RETURNING message_id",
    )
    .bind(device.0)
    .bind(up_to)
    .fetch_all(&mut *conn)
    .await?;
    release(conn, &gone).await?;
    let moved: Option<i64> = sqlx::query_scalar(
        "UPDATE v2_devices SET acked_seq = min($2, next_seq - 1)
         WHERE id = $1 AND acked_seq < min($2, next_seq - 1) RETURNING acked_seq",
    )
    .bind(device.0)
    .bind(up_to)
    .fetch_optional(&mut *conn)
    .await?;
    let acked = match moved {
        Some(acked) => Some(acked),
        None => {
            sqlx::query_scalar("SELECT acked_seq FROM v2_devices WHERE id = $1")
                .bind(device.0)
                .fetch_optional(&mut *conn)
                .await?
        }
    };
    acked.map(QueueSeq).ok_or(V2Error::DeviceInactive)
}

/// Drops one reference per entry in `message_ids` and deletes the bodies
/// nobody waits for any more. A device holds at most one entry per message,
/// so one acknowledgement is usually two statements whatever its length.
async fn release(conn: &mut SqliteConnection, message_ids: &[i64]) -> Result<(), sqlx::Error> {
    let mut counts: BTreeMap<i64, i64> = BTreeMap::new();
    for id in message_ids {
        *counts.entry(*id).or_default() += 1;
    }
    let mut by_count: BTreeMap<i64, Vec<i64>> = BTreeMap::new();
    for (id, n) in &counts {
        by_count.entry(*n).or_default().push(*id);
    }
    for (n, ids) in &by_count {
        for chunk in ids.chunks(500) {
            let mut update =
                QueryBuilder::<Sqlite>::new("UPDATE v2_messages SET pending = pending - ");
            update.push_bind(n);
            update.push(" WHERE id IN ");
            push_list(&mut update, chunk.iter().copied());
            update.build().execute(&mut *conn).await?;
        }
    }
    let ids: Vec<i64> = counts.into_keys().collect();
    for chunk in ids.chunks(500) {
        let mut delete =
            QueryBuilder::<Sqlite>::new("DELETE FROM v2_messages WHERE pending <= 0 AND id IN ");
        push_list(&mut delete, chunk.iter().copied());
        delete.build().execute(&mut *conn).await?;
    }
    Ok(())
}

fn sorted_ids(ids: &[MlsDeviceId]) -> BTreeSet<i64> {
    ids.iter().map(|d| d.0).collect()
}

/// Queues an application message or proposal, on the writer (in a batch).
async fn post_message_in(
    tx: &mut SqliteConnection,
    message: &NewGroupMessage<'_>,
) -> Result<Posted, V2Error> {
    let (epoch, _) = group_and_membership(&mut *tx, message.group, message.sender).await?;
    if let Some(earlier) = earlier_post(&mut *tx, message.sender, message.client_msg_id).await? {
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
    let seqs = take_seqs(&mut *tx, &members).await?;
    if seqs
        .iter()
        .any(|(_, _, pending)| *pending > i64::from(message.max_pending))
    {
        return Err(V2Error::QuotaExceeded);
    }
    let id = insert_message(
        &mut *tx,
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
    .await?;
    if let Some(blob) = crate::store::blobs_sql::record_blob_refs!(
        tx,
        message.sender.0,
        id,
        message.blob_ids,
        message.now
    ) {
        return Err(V2Error::BlobUnusable(blob));
    }
    Ok(Posted {
        id: V2MessageId(id),
        epoch: epoch_from_db(epoch),
        recipients: seqs.len() as u32,
        created: true,
        woken: seqs.iter().map(|(d, _, _)| MlsDeviceId(*d)).collect(),
    })
}

/// Accepts a commit for the current epoch, on the writer (in a batch).
async fn post_commit_in(
    tx: &mut SqliteConnection,
    commit: &NewCommit<'_>,
) -> Result<Posted, V2Error> {
    let (epoch, _) = group_and_membership(&mut *tx, commit.group, commit.sender).await?;
    if let Some(earlier) = earlier_post(&mut *tx, commit.sender, commit.client_msg_id).await? {
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
    let removed = sorted_ids(commit.removed);
    if let Some(bad) = removed
        .iter()
        .find(|d| !members.contains(d) || **d == commit.sender.0)
    {
        return Err(V2Error::CannotRemove(MlsDeviceId(*bad)));
    }
    let added = sorted_ids(commit.added);
    if !added.is_empty() {
        let mut active = QueryBuilder::<Sqlite>::new(
            "SELECT id FROM v2_devices WHERE revoked_at IS NULL AND id IN ",
        );
        push_list(&mut active, added.iter().copied());
        let active: BTreeSet<i64> = active
            .build_query_scalar()
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
    let size = members.len() - removed.len() + added.len();
    if size > commit.max_members as usize {
        return Err(V2Error::GroupFull(commit.max_members));
    }
    let new_epoch = epoch + 1;
    sqlx::query("UPDATE v2_groups SET epoch = $2 WHERE group_id = $1 AND epoch = $3")
        .bind(commit.group.as_bytes())
        .bind(new_epoch)
        .bind(epoch)
        .execute(&mut *tx)
        .await?;
    let mut recipients: BTreeSet<i64> = members.clone();
    recipients.remove(&commit.sender.0);
    recipients.extend(added.iter().copied());
    let seqs = take_seqs(&mut *tx, &recipients).await?;
    let (for_welcome, for_commit): (Vec<_>, Vec<_>) =
        seqs.iter().partition(|(d, _, _)| added.contains(d));
    let id = insert_message(
        &mut *tx,
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
            &mut *tx,
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
    if !removed.is_empty() {
        let mut delete =
            QueryBuilder::<Sqlite>::new("DELETE FROM v2_group_members WHERE group_id = ");
        delete.push_bind(commit.group.as_bytes());
        delete.push(" AND device_id IN ");
        push_list(&mut delete, removed.iter().copied());
        delete.build().execute(&mut *tx).await?;
    }
    for device in &added {
        sqlx::query(
            "INSERT INTO v2_group_members (group_id, device_id, joined_epoch) VALUES ($1, $2, $3)",
        )
        .bind(commit.group.as_bytes())
        .bind(device)
        .bind(new_epoch)
        .execute(&mut *tx)
        .await?;
    }
    Ok(Posted {
        id: V2MessageId(id),
        epoch: epoch_from_db(new_epoch),
        recipients: seqs.len() as u32,
        created: true,
        woken: seqs.iter().map(|(d, _, _)| MlsDeviceId(*d)).collect(),
    })
}

#[async_trait]
impl V2Store for SqliteStore {
    async fn add_device(&self, device: NewDevice<'_>) -> Result<MlsDeviceId, V2Error> {
        let mut tx = self.writer.begin().await?;
        let taken: Option<i64> =
            sqlx::query_scalar("SELECT id FROM v2_devices WHERE signature_key = $1")
                .bind(device.signature_key)
                .fetch_optional(&mut *tx)
                .await?;
        if taken.is_some() {
            return Err(V2Error::KeyTaken);
        }
        let id: Option<i64> = match device.link {
            None => {
                let root: Option<i64> = sqlx::query_scalar(
                    "SELECT id FROM v2_devices WHERE user_id = $1 AND link_signer IS NULL",
                )
                .bind(device.user.0)
                .fetch_optional(&mut *tx)
                .await?;
                if root.is_some() {
                    return Err(V2Error::RootExists);
                }
                sqlx::query_scalar(
                    "INSERT INTO v2_devices (user_id, signature_key, created_at)
                     VALUES ($1, $2, $3) RETURNING id",
                )
                .bind(device.user.0)
                .bind(device.signature_key)
                .bind(ms(device.now))
                .fetch_optional(&mut *tx)
                .await?
            }
            Some((signer, signature)) => {
                sqlx::query_scalar(
                    "INSERT INTO v2_devices (user_id, signature_key, link_signer, link_signature, created_at)
                     SELECT $1, $2, $3, $4, $5 WHERE EXISTS (
                         SELECT 1 FROM v2_devices WHERE id = $3 AND user_id = $1 AND revoked_at IS NULL)
                     RETURNING id",
                )
                .bind(device.user.0)
                .bind(device.signature_key)
                .bind(signer.0)
                .bind(signature)
                .bind(ms(device.now))
                .fetch_optional(&mut *tx)
                .await?
            }
        };
        let id = id.ok_or(V2Error::SignerInvalid)?;
        tx.commit().await?;
        Ok(MlsDeviceId(id))
    }

    async fn device(&self, id: MlsDeviceId) -> Result<Option<DeviceRow>, V2Error> {
        let sql = format!("SELECT {DEVICE_COLUMNS} FROM v2_devices WHERE id = $1");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(id.0)
            .fetch_optional(&self.reader)
            .await?;
        Ok(row.as_ref().map(device_row).transpose()?)
    }

    async fn devices_of(&self, user: UserId) -> Result<Vec<DeviceRow>, V2Error> {
        let sql = format!("SELECT {DEVICE_COLUMNS} FROM v2_devices WHERE user_id = $1 ORDER BY id");
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(user.0)
            .fetch_all(&self.reader)
            .await?;
        Ok(rows.iter().map(device_row).collect::<Result<_, _>>()?)
    }

    async fn revoke_device(&self, id: MlsDeviceId, now: DateTime<Utc>) -> Result<bool, V2Error> {
        let mut tx = self.writer.begin().await?;
        let done = sqlx::query(
            "UPDATE v2_devices SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL",
        )
        .bind(id.0)
        .bind(ms(now))
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
        ack_in(&mut tx, id, i64::MAX).await?;
        // A revoked device reads no blob: it holds none.
        sqlx::query("DELETE FROM v2_blob_holds WHERE device_id = $1")
            .bind(id.0)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn create_link_request(&self, request: NewLinkRequest<'_>) -> Result<(), V2Error> {
        let mut tx = self.writer.begin().await?;
        let open: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM v2_link_requests
             WHERE user_id = $1 AND device_id IS NULL AND expires_at > $2",
        )
        .bind(request.user.0)
        .bind(ms(request.now))
        .fetch_one(&mut *tx)
        .await?;
        if open >= i64::from(request.max_open) {
            return Err(V2Error::TooManyOpenLinks);
        }
        sqlx::query(
            "INSERT INTO v2_link_requests (id, user_id, code_hash, signature_key, created_at, expires_at)
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(request.id.to_string())
        .bind(request.user.0)
        .bind(request.code_hash)
        .bind(request.signature_key)
        .bind(ms(request.now))
        .bind(ms(request.expires_at))
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
        .bind(ms(now))
        .bind(i64::from(max_failures))
        .fetch_optional(&self.writer)
        .await?;
        Ok(row.as_ref().map(link_row).transpose()?)
    }

    async fn link_request(&self, id: Uuid) -> Result<Option<LinkRequestRow>, V2Error> {
        let row = sqlx::query("SELECT * FROM v2_link_requests WHERE id = $1")
            .bind(id.to_string())
            .fetch_optional(&self.reader)
            .await?;
        Ok(row.as_ref().map(link_row).transpose()?)
    }

    async fn link_failed(&self, id: Uuid) -> Result<(), V2Error> {
        sqlx::query("UPDATE v2_link_requests SET failures = failures + 1 WHERE id = $1")
            .bind(id.to_string())
            .execute(&self.writer)
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
        let mut tx = self.writer.begin().await?;
        let row = sqlx::query(
            "SELECT user_id, signature_key FROM v2_link_requests WHERE id = $1
             AND device_id IS NULL AND expires_at > $2 AND failures < $3",
        )
        .bind(id.to_string())
        .bind(ms(now))
        .bind(i64::from(max_failures))
        .fetch_optional(&mut *tx)
        .await?
        .ok_or(V2Error::LinkGone)?;
        let user: i64 = row.try_get("user_id")?;
        let key: Vec<u8> = row.try_get("signature_key")?;
        let taken: Option<i64> =
            sqlx::query_scalar("SELECT id FROM v2_devices WHERE signature_key = $1")
                .bind(&key)
                .fetch_optional(&mut *tx)
                .await?;
        if taken.is_some() {
            return Err(V2Error::KeyTaken);
        }
        let device: i64 = sqlx::query_scalar(
            "INSERT INTO v2_devices (user_id, signature_key, link_signer, link_signature, created_at)
             SELECT $1, $2, $3, $4, $5 WHERE EXISTS (
                 SELECT 1 FROM v2_devices WHERE id = $3 AND user_id = $1 AND revoked_at IS NULL)
             RETURNING id",
        )
        .bind(user)
        .bind(&key)
        .bind(signer.0)
        .bind(signature)
        .bind(ms(now))
        .fetch_optional(&mut *tx)
        .await?
        .ok_or(V2Error::SignerInvalid)?;
        sqlx::query("UPDATE v2_link_requests SET device_id = $2 WHERE id = $1")
            .bind(id.to_string())
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
        let mut tx = self.writer.begin().await?;
        sqlx::query("DELETE FROM v2_key_packages WHERE device_id = $1 AND not_after <= $2")
            .bind(device.0)
            .bind(ms(now))
            .execute(&mut *tx)
            .await?;
        let have: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM v2_key_packages
             WHERE device_id = $1 AND ciphersuite = $2 AND last_resort = 0",
        )
        .bind(device.0)
        .bind(i32::from(suite))
        .fetch_one(&mut *tx)
        .await?;
        let have = u32::try_from(have).unwrap_or(u32::MAX);
        if u64::from(have) + packages.len() as u64 > u64::from(max) {
            return Err(V2Error::TooManyKeyPackages { have, max });
        }
        for package in packages {
            sqlx::query(
                "INSERT INTO v2_key_packages
                     (device_id, key_package, last_resort, not_after, created_at, ciphersuite)
                 VALUES ($1, $2, 0, $3, $4, $5)",
            )
            .bind(device.0)
            .bind(&package.bytes)
            .bind(ms(package.not_after))
            .bind(ms(now))
            .bind(i32::from(suite))
            .execute(&mut *tx)
            .await?;
        }
        if let Some(package) = last_resort {
            sqlx::query(
                "DELETE FROM v2_key_packages WHERE device_id = $1 AND ciphersuite = $2 AND last_resort = 1",
            )
            .bind(device.0)
            .bind(i32::from(suite))
                .execute(&mut *tx)
                .await?;
            sqlx::query(
                "INSERT INTO v2_key_packages
                     (device_id, key_package, last_resort, not_after, created_at, ciphersuite)
                 VALUES ($1, $2, 1, $3, $4, $5)",
            )
            .bind(device.0)
            .bind(&package.bytes)
            .bind(ms(package.not_after))
            .bind(ms(now))
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
        let mut conn = self.reader.acquire().await?;
        Ok(tally(&mut conn, device, suite, now).await?)
    }

    async fn claim_key_packages(
        &self,
        user: UserId,
        suite: u16,
        only: Option<MlsDeviceId>,
        now: DateTime<Utc>,
    ) -> Result<Claimed, V2Error> {
        let mut tx = self.writer.begin().await?;
        let devices: Vec<i64> = sqlx::query_scalar(
            "SELECT id FROM v2_devices WHERE user_id = $1 AND revoked_at IS NULL \
             AND ($2 IS NULL OR id = $2) ORDER BY id",
        )
        .bind(user.0)
        .bind(only.map(|d| d.0))
        .fetch_all(&mut *tx)
        .await?;
        let mut claimed = Claimed::default();
        for device in devices {
            let taken: Option<Vec<u8>> = sqlx::query_scalar(
                "DELETE FROM v2_key_packages WHERE id = (
                     SELECT id FROM v2_key_packages WHERE device_id = $1 AND last_resort = 0
                     AND not_after > $2 AND ciphersuite = $3 ORDER BY id LIMIT 1)
                 RETURNING key_package",
            )
            .bind(device)
            .bind(ms(now))
            .bind(i32::from(suite))
            .fetch_optional(&mut *tx)
            .await?;
            if let Some(package) = taken {
                claimed.packages.push((MlsDeviceId(device), package, false));
                continue;
            }
            let last: Option<Vec<u8>> = sqlx::query_scalar(
                "SELECT key_package FROM v2_key_packages
                 WHERE device_id = $1 AND last_resort = 1 AND not_after > $2 AND ciphersuite = $3",
            )
            .bind(device)
            .bind(ms(now))
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
        let mut tx = self.writer.begin().await?;
        let created = sqlx::query(
            "INSERT INTO v2_groups (group_id, epoch, created_by, created_at)
             VALUES ($1, 0, $2, $3) ON CONFLICT DO NOTHING",
        )
        .bind(group.as_bytes())
        .bind(creator.0)
        .bind(ms(now))
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
        let mut conn = self.reader.acquire().await?;
        let epoch: Option<i64> =
            sqlx::query_scalar("SELECT epoch FROM v2_groups WHERE group_id = $1")
                .bind(group.as_bytes())
                .fetch_optional(&mut *conn)
                .await?;
        let Some(epoch) = epoch else { return Ok(None) };
        let members: Vec<i64> = sqlx::query_scalar(
            "SELECT device_id FROM v2_group_members WHERE group_id = $1 ORDER BY device_id",
        )
        .bind(group.as_bytes())
        .fetch_all(&mut *conn)
        .await?;
        Ok(Some(GroupRow {
            epoch: epoch_from_db(epoch),
            members: members.into_iter().map(MlsDeviceId).collect(),
        }))
    }

    async fn post_message(&self, message: NewGroupMessage<'_>) -> Result<Posted, V2Error> {
        let group = message.group.clone();
        let body = message.body.to_vec();
        let blob_ids = message.blob_ids.to_vec();
        let NewGroupMessage {
            sender,
            kind,
            epoch,
            client_msg_id,
            now,
            expires_at,
            max_pending,
            ..
        } = message;
        self.batch
            .write(move |conn| {
                Box::pin(async move {
                    let message = NewGroupMessage {
                        group: &group,
                        sender,
                        kind,
                        epoch,
                        body: &body,
                        client_msg_id,
                        now,
                        expires_at,
                        max_pending,
                        blob_ids: &blob_ids,
                    };
                    post_message_in(conn, &message).await
                })
            })
            .await
    }

    async fn post_commit(&self, commit: NewCommit<'_>) -> Result<Posted, V2Error> {
        let group = commit.group.clone();
        let bytes = commit.commit.to_vec();
        let added = commit.added.to_vec();
        let removed = commit.removed.to_vec();
        let welcome = commit.welcome.map(<[u8]>::to_vec);
        let NewCommit {
            sender,
            epoch,
            client_msg_id,
            now,
            expires_at,
            max_members,
            ..
        } = commit;
        self.batch
            .write(move |conn| {
                Box::pin(async move {
                    let commit = NewCommit {
                        group: &group,
                        sender,
                        epoch,
                        commit: &bytes,
                        added: &added,
                        removed: &removed,
                        welcome: welcome.as_deref(),
                        client_msg_id,
                        now,
                        expires_at,
                        max_members,
                    };
                    post_commit_in(conn, &commit).await
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
        let mut conn = self.reader.acquire().await?;
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
        .bind(ms(now))
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
                    created_at: from_ms(row.try_get("created_at")?),
                })
            })
            .collect::<Result<Vec<_>, sqlx::Error>>()?;
        Ok(QueueRead { entries, acked })
    }

    async fn ack_queue(&self, device: MlsDeviceId, up_to: QueueSeq) -> Result<QueueSeq, V2Error> {
        self.batch
            .write(move |conn| Box::pin(ack_in(conn, device, up_to.0)))
            .await
    }

    async fn sweep_v2(&self, now: DateTime<Utc>) -> Result<V2SweepReport, V2Error> {
        let mut report = V2SweepReport::default();
        loop {
            let mut tx = self.writer.begin().await?;
            let ids: Vec<i64> =
                sqlx::query_scalar("SELECT id FROM v2_messages WHERE expires_at <= $1 LIMIT $2")
                    .bind(ms(now))
                    .bind(SWEEP_BATCH)
                    .fetch_all(&mut *tx)
                    .await?;
            if ids.is_empty() {
                break;
            }
            let mut delete =
                QueryBuilder::<Sqlite>::new("DELETE FROM v2_queue WHERE message_id IN ");
            push_list(&mut delete, ids.iter().copied());
            delete.push(" RETURNING device_id, seq");
            let mut last: BTreeMap<i64, i64> = BTreeMap::new();
            for row in delete.build().fetch_all(&mut *tx).await? {
                let (device, seq): (i64, i64) = (row.try_get("device_id")?, row.try_get("seq")?);
                let entry = last.entry(device).or_insert(seq);
                *entry = (*entry).max(seq);
            }
            for (device, seq) in last {
                sqlx::query("UPDATE v2_devices SET acked_seq = max(acked_seq, $2) WHERE id = $1")
                    .bind(device)
                    .bind(seq)
                    .execute(&mut *tx)
                    .await?;
            }
            let mut delete = QueryBuilder::<Sqlite>::new("DELETE FROM v2_messages WHERE id IN ");
            push_list(&mut delete, ids.iter().copied());
            delete.build().execute(&mut *tx).await?;
            tx.commit().await?;
            report.expired_messages += ids.len() as u64;
            if ids.len() < SWEEP_BATCH as usize {
                break;
            }
        }
        report.expired_key_packages =
            sqlx::query("DELETE FROM v2_key_packages WHERE not_after <= $1")
                .bind(ms(now))
                .execute(&self.writer)
                .await?
                .rows_affected();
        report.expired_link_requests =
            sqlx::query("DELETE FROM v2_link_requests WHERE expires_at <= $1")
                .bind(ms(now))
                .execute(&self.writer)
                .await?
                .rows_affected();
        Ok(report)
    }
}

async fn tally(
    conn: &mut SqliteConnection,
    device: MlsDeviceId,
    suite: u16,
    now: DateTime<Utc>,
) -> Result<KeyPackageTally, sqlx::Error> {
    let row = sqlx::query(
        "SELECT count(*) FILTER (WHERE last_resort = 0) AS remaining,
                count(*) FILTER (WHERE last_resort = 1) AS last_resort
         FROM v2_key_packages WHERE device_id = $1 AND not_after > $2 AND ciphersuite = $3",
    )
    .bind(device.0)
    .bind(ms(now))
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
