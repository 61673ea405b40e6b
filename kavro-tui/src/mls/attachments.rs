//! The attachments of Kavro v2 conversations (`v2_attachments`): a received
//! file is recorded in the transaction that applies its message (so it is
//! never lost), then downloaded and saved (or marked failed with the reason);
//! a sent file is recorded when the relay took its message.

use chrono::{DateTime, Utc};
use kavro_proto::attachment::FileRef;
use kavro_proto::v2::GroupId;
use sqlx::{Row as _, SqliteConnection};

/// Where an attachment is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttachmentState {
    /// Received, not downloaded yet.
    Pending,
    Saved,
    /// The download was refused (the reason is kept); not retried.
    Failed,
    Sent,
}

impl AttachmentState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Saved => "saved",
            Self::Failed => "failed",
            Self::Sent => "sent",
        }
    }

    pub(crate) fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "pending" => Self::Pending,
            "saved" => Self::Saved,
            "failed" => Self::Failed,
            "sent" => Self::Sent,
            _ => return None,
        })
    }
}

/// One attachment row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttachmentRow {
    pub id: i64,
    pub group_id: GroupId,
    pub sender: String,
    pub outgoing: bool,
    pub file: FileRef,
    pub caption: Option<String>,
    pub state: AttachmentState,
    pub saved_path: Option<String>,
    pub error: Option<String>,
    pub at: DateTime<Utc>,
}

/// An attachment to record.
pub struct NewAttachment<'a> {
    pub group: &'a GroupId,
    pub sender: &'a str,
    pub outgoing: bool,
    pub file: &'a FileRef,
    pub caption: Option<&'a str>,
    pub state: AttachmentState,
    pub at: DateTime<Utc>,
}

/// Records an attachment; returns its id.
pub async fn add(conn: &mut SqliteConnection, new: NewAttachment<'_>) -> Result<i64, sqlx::Error> {
    let NewAttachment {
        group,
        sender,
        outgoing,
        file,
        caption,
        state,
        at,
    } = new;
    let json = serde_json::to_string(file).map_err(|e| sqlx::Error::Encode(Box::new(e)))?;
    let row = sqlx::query(
        "INSERT INTO v2_attachments (group_id, sender, outgoing, file, caption, state, at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
    )
    .bind(group.as_bytes())
    .bind(sender)
    .bind(outgoing)
    .bind(json)
    .bind(caption)
    .bind(state.as_str())
    .bind(at)
    .fetch_one(conn)
    .await?;
    row.try_get("id")
}

fn from_row(row: &sqlx::sqlite::SqliteRow) -> Result<AttachmentRow, sqlx::Error> {
    let bad = |what: &str| sqlx::Error::Decode(what.to_owned().into());
    let group: Vec<u8> = row.try_get("group_id")?;
    let file: String = row.try_get("file")?;
    let state: String = row.try_get("state")?;
    Ok(AttachmentRow {
        id: row.try_get("id")?,
        group_id: GroupId::from_bytes(&group).map_err(|_| bad("a stored group id"))?,
        sender: row.try_get("sender")?,
        outgoing: row.try_get("outgoing")?,
        file: serde_json::from_str(&file).map_err(|_| bad("a stored attachment"))?,
        caption: row.try_get("caption")?,
        state: AttachmentState::parse(&state).ok_or_else(|| bad("an attachment state"))?,
        saved_path: row.try_get("saved_path")?,
        error: row.try_get("error")?,
        at: row.try_get("at")?,
    })
}

/// Every attachment in `state` (all with `None`), oldest first.
pub async fn list(
    conn: &mut SqliteConnection,
    state: Option<AttachmentState>,
) -> Result<Vec<AttachmentRow>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT id, group_id, sender, outgoing, file, caption, state, saved_path, error, at \
         FROM v2_attachments WHERE ($1 IS NULL OR state = $1) ORDER BY id",
    )
    .bind(state.map(AttachmentState::as_str))
    .fetch_all(conn)
    .await?;
    rows.iter().map(from_row).collect()
}

pub async fn set_saved(
    conn: &mut SqliteConnection,
    id: i64,
    path: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE v2_attachments SET state = 'saved', saved_path = $2, error = NULL WHERE id = $1",
    )
    .bind(id)
    .bind(path)
    .execute(conn)
    .await?;
    Ok(())
}

pub async fn set_failed(
    conn: &mut SqliteConnection,
    id: i64,
    error: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE v2_attachments SET state = 'failed', error = $2 WHERE id = $1")
        .bind(id)
        .bind(error)
        .execute(conn)
        .await?;
    Ok(())
}
