//! Kavro's own v2 tables (device, conversations, messages): plain queries on
//! a connection, so that they run inside the transaction of an MLS step.

use chrono::{DateTime, Utc};
use kavro_proto::UserId;
use kavro_proto::v2::{GroupId, MlsDeviceId, QueueSeq};
use sqlx::{Row as _, SqliteConnection};

/// This installation's device, as registered on the relay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceRow {
    pub user_id: UserId,
    pub username: String,
    pub device_id: MlsDeviceId,
    pub signature_key: Vec<u8>,
    pub queue_after: QueueSeq,
}

/// A conversation: a 1:1 chat (`name` is `None`) or a named group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConversationRow {
    pub group_id: GroupId,
    pub name: Option<String>,
    pub created_at: DateTime<Utc>,
}

/// One line of a conversation's history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageRow {
    pub epoch: u64,
    pub kind: LineKind,
    pub sender: String,
    pub outgoing: bool,
    pub body: String,
    pub at: DateTime<Utc>,
}

/// A chat line, or a line the client writes about the group itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LineKind {
    Text,
    System,
}

impl LineKind {
    fn as_str(self) -> &'static str {
        match self {
            Self::Text => "text",
            Self::System => "system",
        }
    }
}

pub async fn device(conn: &mut SqliteConnection) -> Result<Option<DeviceRow>, sqlx::Error> {
    let row = sqlx::query(
        "SELECT user_id, username, device_id, signature_key, queue_after FROM v2_device WHERE id = 1",
    )
    .fetch_optional(conn)
    .await?;
    row.map(|row| {
        Ok(DeviceRow {
            user_id: UserId(row.try_get("user_id")?),
            username: row.try_get("username")?,
            device_id: MlsDeviceId(row.try_get("device_id")?),
            signature_key: row.try_get("signature_key")?,
            queue_after: QueueSeq(row.try_get("queue_after")?),
        })
    })
    .transpose()
}

/// Records this installation's device. A row left by a link that was
/// interrupted before its key file was written is replaced.
pub async fn save_device(
    conn: &mut SqliteConnection,
    device: &DeviceRow,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO v2_device (id, user_id, username, device_id, signature_key, queue_after) \
         VALUES (1, $1, $2, $3, $4, $5) \
         ON CONFLICT (id) DO UPDATE SET user_id = excluded.user_id, username = excluded.username, \
         device_id = excluded.device_id, signature_key = excluded.signature_key, \
         queue_after = excluded.queue_after",
    )
    .bind(device.user_id.0)
    .bind(&device.username)
    .bind(device.device_id.0)
    .bind(&device.signature_key)
    .bind(device.queue_after.0)
    .execute(conn)
    .await?;
    Ok(())
}

pub async fn set_queue_after(
    conn: &mut SqliteConnection,
    seq: QueueSeq,
) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE v2_device SET queue_after = $1 WHERE id = 1 AND queue_after < $1")
        .bind(seq.0)
        .execute(conn)
        .await?;
    Ok(())
}

/// Adds the conversation, or keeps the existing row.
pub async fn add_conversation(
    conn: &mut SqliteConnection,
    group: &GroupId,
    name: Option<&str>,
    now: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO v2_conversations (group_id, name, created_at) VALUES ($1, $2, $3) \
         ON CONFLICT (group_id) DO NOTHING",
    )
    .bind(group.as_bytes())
    .bind(name)
    .bind(now)
    .execute(conn)
    .await?;
    Ok(())
}

pub async fn rename_conversation(
    conn: &mut SqliteConnection,
    group: &GroupId,
    name: Option<&str>,
) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE v2_conversations SET name = $1 WHERE group_id = $2")
        .bind(name)
        .bind(group.as_bytes())
        .execute(conn)
        .await?;
    Ok(())
}

pub async fn conversations(
    conn: &mut SqliteConnection,
) -> Result<Vec<ConversationRow>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT group_id, name, created_at FROM v2_conversations ORDER BY created_at, group_id",
    )
    .fetch_all(conn)
    .await?;
    rows.iter()
        .filter_map(|row| {
            let bytes: Vec<u8> = match row.try_get("group_id") {
                Ok(bytes) => bytes,
                Err(err) => return Some(Err(err)),
            };
            // A row that is not a group id cannot be written by this client; skip it.
            let group_id = GroupId::from_bytes(&bytes).ok()?;
            Some(Ok(ConversationRow {
                group_id,
                name: match row.try_get("name") {
                    Ok(name) => name,
                    Err(err) => return Some(Err(err)),
                },
                created_at: match row.try_get("created_at") {
                    Ok(at) => at,
                    Err(err) => return Some(Err(err)),
                },
            }))
        })
        .collect()
}

pub async fn add_line(
    conn: &mut SqliteConnection,
    group: &GroupId,
    line: &MessageRow,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO v2_messages (group_id, epoch, kind, sender, outgoing, body, at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(group.as_bytes())
    .bind(line.epoch as i64)
    .bind(line.kind.as_str())
    .bind(&line.sender)
    .bind(line.outgoing)
    .bind(&line.body)
    .bind(line.at)
    .execute(conn)
    .await?;
    Ok(())
}

/// The last `limit` lines of a conversation, oldest first.
pub async fn lines(
    conn: &mut SqliteConnection,
    group: &GroupId,
    limit: u32,
) -> Result<Vec<MessageRow>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT epoch, kind, sender, outgoing, body, at FROM \
         (SELECT * FROM v2_messages WHERE group_id = $1 ORDER BY id DESC LIMIT $2) ORDER BY id",
    )
    .bind(group.as_bytes())
    .bind(i64::from(limit))
    .fetch_all(conn)
    .await?;
    rows.iter()
        .map(|row| {
            let kind: String = row.try_get("kind")?;
            Ok(MessageRow {
                epoch: row.try_get::<i64, _>("epoch")? as u64,
                kind: if kind == "system" {
                    LineKind::System
                } else {
                    LineKind::Text
                },
                sender: row.try_get("sender")?,
                outgoing: row.try_get("outgoing")?,
                body: row.try_get("body")?,
                at: row.try_get("at")?,
            })
        })
        .collect()
}

/// What an outbox row holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutboxKind {
    Commit,
    Message,
}

/// A commit or message not yet accepted by the relay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxRow {
    pub client_msg_id: String,
    pub group_id: GroupId,
    pub kind: OutboxKind,
    pub request: String,
    pub line: String,
}

pub async fn push_outbox(conn: &mut SqliteConnection, row: &OutboxRow) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO v2_outbox (client_msg_id, group_id, kind, request, line, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(&row.client_msg_id)
    .bind(row.group_id.as_bytes())
    .bind(match row.kind {
        OutboxKind::Commit => "commit",
        OutboxKind::Message => "message",
    })
    .bind(&row.request)
    .bind(&row.line)
    .bind(Utc::now())
    .execute(conn)
    .await?;
    Ok(())
}

pub async fn drop_outbox(
    conn: &mut SqliteConnection,
    client_msg_id: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM v2_outbox WHERE client_msg_id = $1")
        .bind(client_msg_id)
        .execute(conn)
        .await?;
    Ok(())
}

/// Every unsent row, oldest first.
pub async fn outbox(conn: &mut SqliteConnection) -> Result<Vec<OutboxRow>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT client_msg_id, group_id, kind, request, line FROM v2_outbox ORDER BY seq",
    )
    .fetch_all(conn)
    .await?;
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        let bytes: Vec<u8> = row.try_get("group_id")?;
        let Ok(group_id) = GroupId::from_bytes(&bytes) else {
            continue;
        };
        let kind: String = row.try_get("kind")?;
        out.push(OutboxRow {
            client_msg_id: row.try_get("client_msg_id")?,
            group_id,
            kind: if kind == "commit" {
                OutboxKind::Commit
            } else {
                OutboxKind::Message
            },
            request: row.try_get("request")?,
            line: row.try_get("line")?,
        });
    }
    Ok(out)
}
