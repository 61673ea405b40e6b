//! The attachments of v1 conversations (`attachments`, issue #14): a file
//! whose key travelled in a v1 envelope. Recorded in the transaction that
//! stores its message (received: only a verified envelope's; sent: with the
//! queued message), then saved or marked failed by `session::files`. Also
//! the rule of who may be sent one: a contact whose authenticated envelope
//! reached this history (a Kavro client, not a legacy one).

use chrono::{DateTime, Utc};
use kavro_proto::UserId;
use kavro_proto::attachment::FileRef;
use sqlx::sqlite::SqliteRow;
use sqlx::{Row as _, SqliteConnection};

use super::{History, HistoryError, LocalId, parse_ts, ts};
use crate::mls::attachments::AttachmentState;

/// One attachment of a v1 conversation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileRow {
    pub id: i64,
    /// Its message in this history.
    pub message: LocalId,
    /// Who sent it (received) or to whom it went (sent).
    pub peer: String,
    pub outgoing: bool,
    pub file: FileRef,
    pub caption: Option<String>,
    pub state: AttachmentState,
    pub saved_path: Option<String>,
    pub error: Option<String>,
    pub at: DateTime<Utc>,
}

/// An attachment to record with its message.
pub struct NewFile<'a> {
    pub peer: &'a str,
    pub file: &'a FileRef,
    /// Empty: none.
    pub caption: &'a str,
    pub state: AttachmentState,
}

/// Records an attachment of message `message` inside its transaction.
pub(super) async fn record(
    conn: &mut SqliteConnection,
    message: i64,
    new: &NewFile<'_>,
    at: DateTime<Utc>,
) -> Result<(), HistoryError> {
    let json = serde_json::to_string(new.file)
        .map_err(|e| HistoryError::Corrupt(format!("an attachment to record: {e}")))?;
    sqlx::query(
        "INSERT INTO attachments (message_id, peer, outgoing, file, caption, state, at)
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(message)
    .bind(new.peer)
    .bind(new.state == AttachmentState::Sent)
    .bind(json)
    .bind((!new.caption.is_empty()).then_some(new.caption))
    .bind(new.state.as_str())
    .bind(ts(at))
    .execute(conn)
    .await?;
    Ok(())
}

fn file_row(row: &SqliteRow) -> Result<FileRow, HistoryError> {
    let file: String = row.try_get("file")?;
    let state: String = row.try_get("state")?;
    Ok(FileRow {
        id: row.try_get("id")?,
        message: LocalId(row.try_get("message_id")?),
        peer: row.try_get("peer")?,
        outgoing: row.try_get("outgoing")?,
        file: serde_json::from_str(&file)
            .map_err(|_| HistoryError::Corrupt("a stored attachment".to_owned()))?,
        caption: row.try_get("caption")?,
        state: AttachmentState::parse(&state)
            .ok_or_else(|| HistoryError::Corrupt(format!("attachment state {state:?}")))?,
        saved_path: row.try_get("saved_path")?,
        error: row.try_get("error")?,
        at: parse_ts(&row.try_get::<String, _>("at")?)?,
    })
}

impl History {
    /// The v1 attachments in `state` (all with `None`), oldest first.
    pub async fn files(
        &self,
        state: Option<AttachmentState>,
    ) -> Result<Vec<FileRow>, HistoryError> {
        let rows = sqlx::query(
            "SELECT id, message_id, peer, outgoing, file, caption, state, saved_path, error, at
             FROM attachments WHERE ($1 IS NULL OR state = $1) ORDER BY id",
        )
        .bind(state.map(AttachmentState::as_str))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(file_row).collect()
    }

    /// A received file was saved at `path`.
    pub async fn set_file_saved(&self, id: i64, path: &str) -> Result<(), HistoryError> {
        sqlx::query(
            "UPDATE attachments SET state = 'saved', saved_path = $2, error = NULL WHERE id = $1",
        )
        .bind(id)
        .bind(path)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// A received file was refused for good (`reason`); it is not retried.
    pub async fn set_file_failed(&self, id: i64, reason: &str) -> Result<(), HistoryError> {
        sqlx::query("UPDATE attachments SET state = 'failed', error = $2 WHERE id = $1")
            .bind(id)
            .bind(reason)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Whether account `user` has sent this history an envelope that
    /// verified (made with the key pinned for them): they run a Kavro
    /// client, which opens attachments. Legacy, unverified and undecryptable
    /// messages do not count.
    pub async fn has_verified_envelope_from(&self, user: UserId) -> Result<bool, HistoryError> {
        let found: Option<i64> = sqlx::query_scalar(
            "SELECT 1 FROM messages WHERE direction = 'in' AND peer_user_id = $1
               AND state = 'ok' AND legacy = 0 AND sender_key IS NOT NULL LIMIT 1",
        )
        .bind(user.0)
        .fetch_optional(&self.pool)
        .await?;
        Ok(found.is_some())
    }
}
