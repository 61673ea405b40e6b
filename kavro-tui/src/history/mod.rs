//! The local store of one profile: contacts with their pinned keys, every
//! message received or sent, and the outbox of sends not yet confirmed. One
//! SQLite file (`history.sqlite3`) in the profile's private data directory,
//! in WAL mode with `synchronous = FULL`: a message is on disk when an insert
//! returns, which is what lets the caller acknowledge it on the relay.
//!
//! The schema is `kavro-tui/migrations/`. Times are RFC 3339 text in UTC.

use std::fmt;
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use kavro_proto::attachment::FileRef;
use kavro_proto::crypto::IdentityPublic;
use kavro_proto::{MessageId, UserId};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};
use sqlx::{Row, Sqlite, Transaction};
use uuid::Uuid;

use crate::mls::attachments::AttachmentState;
use crate::pinning::{Contact, KeyState, PendingKey};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// Why the history could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    #[error("cannot open the local history {path}: {source}")]
    Open {
        path: String,
        #[source]
        source: sqlx::Error,
    },
    #[error("cannot prepare the local history: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("the local history failed: {0}")]
    Database(#[from] sqlx::Error),
    #[error("the local history holds a value this client does not understand: {0}")]
    Corrupt(String),
}

/// A message's row id in this history (not the relay's id).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LocalId(pub i64);

impl fmt::Display for LocalId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// Received or sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    In,
    Out,
}

impl Direction {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::In => "in",
            Self::Out => "out",
        }
    }
}

/// Where a sent message is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OutgoingState {
    /// In the outbox: the relay has not confirmed it yet.
    Pending,
    /// The relay stored it.
    Stored,
    /// The recipient acknowledged it.
    Delivered,
    /// The relay refused it for good, or it expired undelivered.
    Failed,
}

/// What was established about a received message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IncomingState {
    /// An envelope from the pinned key of the sender the relay names: verified.
    Ok,
    /// Readable, but its sender is not proven: a legacy message, or an
    /// envelope whose names do not match the relay's sender or us.
    Unverified,
    /// An envelope made with a key other than the one pinned for its sender.
    KeyMismatch,
    /// It did not open (tampered, not for our key, unsupported version, ...).
    Undecryptable,
}

/// What a received message proves about its sender, as shown to people:
/// the two marks of an authenticated message (pinned vs verified) and the
/// kinds of unauthenticated ones, apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SenderMark {
    /// Made with the sender's key, and the user compared its safety number.
    Verified,
    /// Made with the key pinned on first use; not compared (yet).
    Pinned,
    /// A legacy message: only the relay says who sent it.
    Legacy,
    /// A legacy message refused by the contact's setting: text not kept.
    Refused,
    /// Readable, but the names, the time (a possible replay) or the key
    /// do not check out.
    Unverified,
    /// Made with a key other than the one pinned for the sender.
    KeyMismatch,
    /// It did not open.
    Undecryptable,
}

impl SenderMark {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Verified => "verified",
            Self::Pinned => "pinned",
            Self::Legacy => "legacy",
            Self::Refused => "refused",
            Self::Unverified => "unverified",
            Self::KeyMismatch => "key_mismatch",
            Self::Undecryptable => "undecryptable",
        }
    }
}

impl StoredMessage {
    /// The mark of a received message (`None` for one we sent).
    pub fn sender_mark(&self) -> Option<SenderMark> {
        let MessageState::In(state) = self.state else {
            return None;
        };
        Some(match state {
            IncomingState::Ok if self.key_compared => SenderMark::Verified,
            IncomingState::Ok => SenderMark::Pinned,
            IncomingState::Unverified if self.legacy && self.text.is_none() => SenderMark::Refused,
            IncomingState::Unverified if self.legacy => SenderMark::Legacy,
            IncomingState::Unverified => SenderMark::Unverified,
            IncomingState::KeyMismatch => SenderMark::KeyMismatch,
            IncomingState::Undecryptable => SenderMark::Undecryptable,
        })
    }
}

/// A message's state, by direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MessageState {
    Out(OutgoingState),
    In(IncomingState),
}

impl MessageState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Out(OutgoingState::Pending) => "pending",
            Self::Out(OutgoingState::Stored) => "stored",
            Self::Out(OutgoingState::Delivered) => "delivered",
            Self::Out(OutgoingState::Failed) => "failed",
            Self::In(IncomingState::Ok) => "ok",
            Self::In(IncomingState::Unverified) => "unverified",
            Self::In(IncomingState::KeyMismatch) => "key_mismatch",
            Self::In(IncomingState::Undecryptable) => "undecryptable",
        }
    }

    fn parse(direction: Direction, text: &str) -> Result<Self, HistoryError> {
        let state = match (direction, text) {
            (Direction::Out, "pending") => Self::Out(OutgoingState::Pending),
            (Direction::Out, "stored") => Self::Out(OutgoingState::Stored),
            (Direction::Out, "delivered") => Self::Out(OutgoingState::Delivered),
            (Direction::Out, "failed") => Self::Out(OutgoingState::Failed),
            (Direction::In, "ok") => Self::In(IncomingState::Ok),
            (Direction::In, "unverified") => Self::In(IncomingState::Unverified),
            (Direction::In, "key_mismatch") => Self::In(IncomingState::KeyMismatch),
            (Direction::In, "undecryptable") => Self::In(IncomingState::Undecryptable),
            _ => return Err(HistoryError::Corrupt(format!("message state {text:?}"))),
        };
        Ok(state)
    }
}

impl fmt::Display for MessageState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A message as kept locally.
#[derive(Clone, PartialEq, Eq)]
pub struct StoredMessage {
    pub local_id: LocalId,
    pub direction: Direction,
    /// The envelope's message id (none for legacy and undecryptable messages).
    pub msg_uuid: Option<Uuid>,
    pub relay_id: Option<MessageId>,
    /// The other side's username, when known.
    pub peer: Option<String>,
    /// The other side's account, when known.
    pub peer_user_id: Option<UserId>,
    /// The sender's claim (envelope), else when the relay stored it.
    pub sent_at: DateTime<Utc>,
    pub received_at: DateTime<Utc>,
    /// `None` when the message could not be read.
    pub text: Option<String>,
    /// Sender authenticated: an envelope from the pinned key of the relay's
    /// sender, to us (`state` is `ok`). Whether that key was also compared
    /// is `key_compared`.
    pub verified: bool,
    pub state: MessageState,
    /// A legacy message: no sender authentication at all.
    pub legacy: bool,
    /// Read time: the sender's contact is `verified` (safety number
    /// compared) and its trusted key is the one this message was made with.
    pub key_compared: bool,
    pub error: Option<String>,
    pub sender_key: Option<IdentityPublic>,
    /// Kept for incoming messages that are not `ok`.
    pub ciphertext: Option<String>,
    pub ephemeral_pubkey: Option<String>,
    pub delivered_at: Option<DateTime<Utc>>,
}

/// Hides the text and ciphertext.
impl fmt::Debug for StoredMessage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoredMessage")
            .field("local_id", &self.local_id)
            .field("direction", &self.direction)
            .field("msg_uuid", &self.msg_uuid)
            .field("relay_id", &self.relay_id)
            .field("peer", &self.peer)
            .field("state", &self.state)
            .field("verified", &self.verified)
            .field("legacy", &self.legacy)
            .field("key_compared", &self.key_compared)
            .field("text", &self.text.as_ref().map(String::len))
            .finish_non_exhaustive()
    }
}

/// A received message to store.
#[derive(Clone)]
pub struct NewIncoming {
    /// The envelope's message id, when it has one.
    pub msg_uuid: Option<Uuid>,
    pub relay_id: MessageId,
    pub peer: Option<String>,
    pub peer_user_id: Option<UserId>,
    pub sent_at: DateTime<Utc>,
    pub text: Option<String>,
    pub verified: bool,
    pub state: IncomingState,
    /// A legacy (unauthenticated) message.
    pub legacy: bool,
    pub error: Option<String>,
    pub sender_key: Option<IdentityPublic>,
    pub ciphertext: String,
    pub ephemeral_pubkey: String,
    /// An attachment the envelope carries (`text` is then its history
    /// line). Recorded to be saved only when the message is `Ok`.
    pub file: Option<(FileRef, String)>,
}

/// The outcome of storing a received message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Inserted {
    /// First time seen.
    New(LocalId),
    /// Seen before. `same_delivery` when it is the very same relay message
    /// (fetched again without an acknowledgement), not a replay under a new id.
    Duplicate {
        existing: LocalId,
        same_delivery: bool,
    },
}

/// A sent message to queue.
pub struct NewOutgoing {
    pub msg_uuid: Uuid,
    pub client_msg_id: Uuid,
    pub peer: String,
    pub peer_user_id: UserId,
    pub sent_at: DateTime<Utc>,
    pub text: String,
    pub ciphertext: String,
    pub ephemeral_pubkey: String,
    /// The attachment this message carries, with its caption.
    pub file: Option<(FileRef, String)>,
}

/// A queued send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxEntry {
    pub local_id: LocalId,
    pub client_msg_id: Uuid,
    pub recipient_id: UserId,
    pub ciphertext: String,
    pub ephemeral_pubkey: String,
    pub attempts: u32,
}

fn ts(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

fn parse_ts(text: &str) -> Result<DateTime<Utc>, HistoryError> {
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| HistoryError::Corrupt(format!("time {text:?}")))
}

fn parse_key(text: &str) -> Result<IdentityPublic, HistoryError> {
    IdentityPublic::from_hex(text).map_err(|_| HistoryError::Corrupt(format!("key {text:?}")))
}

fn parse_uuid(text: &str) -> Result<Uuid, HistoryError> {
    Uuid::from_str(text).map_err(|_| HistoryError::Corrupt(format!("message id {text:?}")))
}

/// The columns `message_row` reads (a macro, so queries stay `&'static str`).
macro_rules! message_columns {
    () => {
        "id, direction, msg_uuid, relay_id, peer, peer_user_id, sent_at, received_at, text, \
         verified, state, error, sender_key, ciphertext, ephemeral_pubkey, delivered_at, legacy, \
         COALESCE((SELECT c.state = 'verified' AND c.pinned_key = messages.sender_key \
             FROM contacts c WHERE c.username_norm = messages.peer_norm), 0) AS key_compared"
    };
}

fn message_row(row: &SqliteRow) -> Result<StoredMessage, HistoryError> {
    let direction = match row.try_get::<String, _>("direction")?.as_str() {
        "in" => Direction::In,
        "out" => Direction::Out,
        other => return Err(HistoryError::Corrupt(format!("direction {other:?}"))),
    };
    let opt_ts = |col: &str| -> Result<Option<DateTime<Utc>>, HistoryError> {
        row.try_get::<Option<String>, _>(col)?
            .as_deref()
            .map(parse_ts)
            .transpose()
    };
    Ok(StoredMessage {
        local_id: LocalId(row.try_get("id")?),
        direction,
        msg_uuid: row
            .try_get::<Option<String>, _>("msg_uuid")?
            .as_deref()
            .map(parse_uuid)
            .transpose()?,
        relay_id: row.try_get::<Option<i64>, _>("relay_id")?.map(MessageId),
        peer: row.try_get("peer")?,
        peer_user_id: row.try_get::<Option<i64>, _>("peer_user_id")?.map(UserId),
        sent_at: parse_ts(&row.try_get::<String, _>("sent_at")?)?,
        received_at: parse_ts(&row.try_get::<String, _>("received_at")?)?,
        text: row.try_get("text")?,
        verified: row.try_get("verified")?,
        legacy: row.try_get("legacy")?,
        key_compared: row.try_get("key_compared")?,
        state: MessageState::parse(direction, &row.try_get::<String, _>("state")?)?,
        error: row.try_get("error")?,
        sender_key: row
            .try_get::<Option<String>, _>("sender_key")?
            .as_deref()
            .map(parse_key)
            .transpose()?,
        ciphertext: row.try_get("ciphertext")?,
        ephemeral_pubkey: row.try_get("ephemeral_pubkey")?,
        delivered_at: opt_ts("delivered_at")?,
    })
}

fn contact_row(row: &SqliteRow) -> Result<Contact, HistoryError> {
    let state: KeyState = row
        .try_get::<String, _>("state")?
        .parse()
        .map_err(HistoryError::Corrupt)?;
    let changed_key = row
        .try_get::<Option<String>, _>("changed_key")?
        .as_deref()
        .map(parse_key)
        .transpose()?;
    let user_id = UserId(row.try_get("user_id")?);
    let changed_user = row
        .try_get::<Option<i64>, _>("changed_user_id")?
        .map_or(user_id, UserId);
    Ok(Contact {
        username: row.try_get("username")?,
        user_id,
        key: parse_key(&row.try_get::<String, _>("pinned_key")?)?,
        state,
        pending: changed_key.map(|key| PendingKey {
            key,
            user_id: changed_user,
        }),
        first_seen: parse_ts(&row.try_get::<String, _>("first_seen")?)?,
        updated_at: parse_ts(&row.try_get::<String, _>("updated_at")?)?,
    })
}

/// The history of one profile.
#[derive(Clone)]
pub struct History {
    pool: SqlitePool,
}

impl History {
    /// Opens (creating if needed) the database at `path` and brings its
    /// schema up to date. The directory must exist.
    pub async fn open(path: &Path) -> Result<Self, HistoryError> {
        let open_err = |source| HistoryError::Open {
            path: path.display().to_string(),
            source,
        };
        // The database holds plaintext messages: private from the first byte.
        let pool = open_private_pool(path, 4, true).await.map_err(open_err)?;
        MIGRATOR.run(&pool).await?;
        let history = Self { pool };
        history.rehash_legacy_keys().await?;
        Ok(history)
    }

    /// Closes the pool (waits for connections to return).
    pub async fn close(&self) {
        self.pool.close().await;
    }

    // ---- contacts ----

    pub async fn contact(&self, username: &str) -> Result<Option<Contact>, HistoryError> {
        let row = sqlx::query("SELECT * FROM contacts WHERE username_norm = $1")
            .bind(username.to_ascii_lowercase())
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(contact_row).transpose()
    }

    /// The contact whose pinned account is `user_id`.
    pub async fn contact_by_user_id(
        &self,
        user_id: UserId,
    ) -> Result<Option<Contact>, HistoryError> {
        let row = sqlx::query("SELECT * FROM contacts WHERE user_id = $1 LIMIT 1")
            .bind(user_id.0)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(contact_row).transpose()
    }

    /// All contacts, by name.
    pub async fn contacts(&self) -> Result<Vec<Contact>, HistoryError> {
        let rows = sqlx::query("SELECT * FROM contacts ORDER BY username_norm")
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(contact_row).collect()
    }

    /// Contacts whose key changed and is not trusted yet.
    pub async fn changed_contacts(&self) -> Result<Vec<Contact>, HistoryError> {
        let rows =
            sqlx::query("SELECT * FROM contacts WHERE state = 'changed' ORDER BY username_norm")
                .fetch_all(&self.pool)
                .await?;
        rows.iter().map(contact_row).collect()
    }

    pub async fn save_contact(&self, contact: &Contact) -> Result<(), HistoryError> {
        let mut tx = self.pool.begin().await?;
        save_contact_in(&mut tx, contact).await?;
        tx.commit().await?;
        Ok(())
    }

    // ---- received messages ----

    /// Stores a received message (and, for a new one, the contact change it
    /// caused) in one transaction. Returns once it is on disk.
    pub async fn insert_incoming(
        &self,
        message: &NewIncoming,
        contact: Option<&Contact>,
        received_at: DateTime<Utc>,
    ) -> Result<Inserted, HistoryError> {
        let dedupe = message.dedupe_key();
        let mut tx = self.pool.begin().await?;
        let existing = sqlx::query(
            "SELECT id, relay_id FROM messages WHERE direction = 'in' AND dedupe_key = $1",
        )
        .bind(&dedupe)
        .fetch_optional(&mut *tx)
        .await?;
        if let Some(row) = existing {
            let relay_id: Option<i64> = row.try_get("relay_id")?;
            tx.rollback().await?;
            return Ok(Inserted::Duplicate {
                existing: LocalId(row.try_get("id")?),
                same_delivery: relay_id == Some(message.relay_id.0),
            });
        }
        let keep_raw = message.state != IncomingState::Ok;
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO messages (direction, dedupe_key, msg_uuid, relay_id, peer, peer_norm,
                 peer_user_id, sent_at, received_at, text, verified, state, error, sender_key,
                 ciphertext, ephemeral_pubkey, legacy)
             VALUES ('in', $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)
             RETURNING id",
        )
        .bind(&dedupe)
        .bind(message.msg_uuid.map(|u| u.to_string()))
        .bind(message.relay_id.0)
        .bind(message.peer.as_deref())
        .bind(message.peer.as_deref().map(str::to_ascii_lowercase))
        .bind(message.peer_user_id.map(|u| u.0))
        .bind(ts(message.sent_at))
        .bind(ts(received_at))
        .bind(message.text.as_deref())
        .bind(message.verified)
        .bind(MessageState::In(message.state).as_str())
        .bind(message.error.as_deref())
        .bind(message.sender_key.map(|k| k.to_hex()))
        .bind(keep_raw.then_some(message.ciphertext.as_str()))
        .bind(keep_raw.then_some(message.ephemeral_pubkey.as_str()))
        .bind(message.legacy)
        .fetch_one(&mut *tx)
        .await?;
        if let Some(contact) = contact {
            save_contact_in(&mut tx, contact).await?;
        }
        if let (Some((file, caption)), IncomingState::Ok, Some(peer)) =
            (&message.file, message.state, &message.peer)
        {
            let new = files::NewFile {
                peer,
                file,
                caption,
                state: AttachmentState::Pending,
            };
            files::record(&mut tx, id, &new, received_at).await?;
        }
        tx.commit().await?;
        Ok(Inserted::New(LocalId(id)))
    }

    // ---- sent messages and the outbox ----

    /// Records a message about to be sent, and queues it, in one transaction.
    pub async fn queue_outgoing(
        &self,
        message: &NewOutgoing,
        now: DateTime<Utc>,
    ) -> Result<LocalId, HistoryError> {
        let mut tx = self.pool.begin().await?;
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO messages (direction, dedupe_key, msg_uuid, peer, peer_norm, peer_user_id,
                 sent_at, received_at, text, verified, state)
             VALUES ('out', $1, $1, $2, $3, $4, $5, $6, $7, 1, 'pending') RETURNING id",
        )
        .bind(message.msg_uuid.to_string())
        .bind(&message.peer)
        .bind(message.peer.to_ascii_lowercase())
        .bind(message.peer_user_id.0)
        .bind(ts(message.sent_at))
        .bind(ts(now))
        .bind(&message.text)
        .fetch_one(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO outbox (message_id, client_msg_id, recipient_id, ciphertext,
                 ephemeral_pubkey, created_at)
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(id)
        .bind(message.client_msg_id.to_string())
        .bind(message.peer_user_id.0)
        .bind(&message.ciphertext)
        .bind(&message.ephemeral_pubkey)
        .bind(ts(now))
        .execute(&mut *tx)
        .await?;
        if let Some((file, caption)) = &message.file {
            let new = files::NewFile {
                peer: &message.peer,
                file,
                caption,
                state: AttachmentState::Sent,
            };
            files::record(&mut tx, id, &new, now).await?;
        }
        tx.commit().await?;
        Ok(LocalId(id))
    }

    /// Queued sends, oldest first.
    pub async fn outbox(&self) -> Result<Vec<OutboxEntry>, HistoryError> {
        let rows = sqlx::query(
            "SELECT message_id, client_msg_id, recipient_id, ciphertext, ephemeral_pubkey, attempts
             FROM outbox ORDER BY message_id",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(OutboxEntry {
                    local_id: LocalId(row.try_get("message_id")?),
                    client_msg_id: parse_uuid(&row.try_get::<String, _>("client_msg_id")?)?,
                    recipient_id: UserId(row.try_get("recipient_id")?),
                    ciphertext: row.try_get("ciphertext")?,
                    ephemeral_pubkey: row.try_get("ephemeral_pubkey")?,
                    attempts: row
                        .try_get::<i64, _>("attempts")?
                        .try_into()
                        .unwrap_or(u32::MAX),
                })
            })
            .collect()
    }

    /// A send attempt failed for a reason worth retrying.
    pub async fn note_attempt(&self, id: LocalId, error: &str) -> Result<(), HistoryError> {
        sqlx::query(
            "UPDATE outbox SET attempts = attempts + 1, last_error = $2 WHERE message_id = $1",
        )
        .bind(id.0)
        .bind(error)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The relay stored the message: out of the outbox.
    pub async fn mark_stored(&self, id: LocalId, relay_id: MessageId) -> Result<(), HistoryError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "UPDATE messages SET state = 'stored', relay_id = $2, error = NULL
             WHERE id = $1 AND direction = 'out' AND state = 'pending'",
        )
        .bind(id.0)
        .bind(relay_id.0)
        .execute(&mut *tx)
        .await?;
        sqlx::query("DELETE FROM outbox WHERE message_id = $1")
            .bind(id.0)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// The message will not be delivered: out of the outbox, with the reason.
    pub async fn mark_failed(&self, id: LocalId, reason: &str) -> Result<(), HistoryError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "UPDATE messages SET state = 'failed', error = $2 WHERE id = $1 AND direction = 'out'",
        )
        .bind(id.0)
        .bind(reason)
        .execute(&mut *tx)
        .await?;
        sqlx::query("DELETE FROM outbox WHERE message_id = $1")
            .bind(id.0)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// The recipient acknowledged the message.
    pub async fn mark_delivered(
        &self,
        id: LocalId,
        at: Option<DateTime<Utc>>,
    ) -> Result<(), HistoryError> {
        sqlx::query(
            "UPDATE messages SET state = 'delivered', delivered_at = $2
             WHERE id = $1 AND direction = 'out'",
        )
        .bind(id.0)
        .bind(at.map(ts))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    // ---- reading ----

    pub async fn message(&self, id: LocalId) -> Result<Option<StoredMessage>, HistoryError> {
        let row = sqlx::query(concat!(
            "SELECT ",
            message_columns!(),
            " FROM messages WHERE id = $1"
        ))
        .bind(id.0)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(message_row).transpose()
    }

    /// The last `limit` messages exchanged with `peer` (by name, or by the
    /// account id for messages whose sender name is unknown), oldest first.
    pub async fn conversation(
        &self,
        peer: &str,
        peer_user_id: Option<UserId>,
        limit: u32,
    ) -> Result<Vec<StoredMessage>, HistoryError> {
        let rows = sqlx::query(concat!(
            "SELECT * FROM (SELECT ",
            message_columns!(),
            " FROM messages
                 WHERE peer_norm = $1 OR (peer_norm IS NULL AND peer_user_id = $2)
                 ORDER BY id DESC LIMIT $3)
             ORDER BY id"
        ))
        .bind(peer.to_ascii_lowercase())
        .bind(peer_user_id.map(|u| u.0))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(message_row).collect()
    }
}

/// Opens (creating if needed) a local SQLite database that only this OS
/// user may read: the file is made 0600 before SQLite opens it, and SQLite
/// gives the -wal and -shm files the mode of the database file, so all three
/// are private from the first byte. WAL, `synchronous = FULL`.
pub(crate) async fn open_private_pool(
    path: &Path,
    max_connections: u32,
    foreign_keys: bool,
) -> Result<SqlitePool, sqlx::Error> {
    create_private(path).map_err(sqlx::Error::Io)?;
    let options = SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Full)
        .foreign_keys(foreign_keys)
        .busy_timeout(Duration::from_secs(10));
    SqlitePoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(Duration::from_secs(10))
        .connect_with(options)
        .await
}

/// Creates the database file with mode 0600 (whatever the umask), or makes
/// an existing one and its -wal/-shm files 0600, before SQLite opens them.
fn create_private(path: &Path) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    match options.open(path) {
        Ok(_) => Ok(()),
        Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => {
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt as _;
                for suffix in ["", "-wal", "-shm"] {
                    let mut name = path.as_os_str().to_owned();
                    name.push(suffix);
                    match std::fs::set_permissions(&name, std::fs::Permissions::from_mode(0o600)) {
                        Err(err) if err.kind() != std::io::ErrorKind::NotFound => return Err(err),
                        _ => {}
                    }
                }
            }
            Ok(())
        }
        Err(err) => Err(err),
    }
}

async fn save_contact_in(
    tx: &mut Transaction<'_, Sqlite>,
    contact: &Contact,
) -> Result<(), HistoryError> {
    sqlx::query(
        "INSERT INTO contacts (username_norm, username, user_id, pinned_key, state, changed_key,
             changed_user_id, first_seen, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
         ON CONFLICT (username_norm) DO UPDATE SET
             username = excluded.username, user_id = excluded.user_id,
             pinned_key = excluded.pinned_key, state = excluded.state,
             changed_key = excluded.changed_key, changed_user_id = excluded.changed_user_id,
             updated_at = excluded.updated_at",
    )
    .bind(contact.username.to_ascii_lowercase())
    .bind(&contact.username)
    .bind(contact.user_id.0)
    .bind(contact.key.to_hex())
    .bind(contact.state.as_str())
    .bind(contact.pending.map(|p| p.key.to_hex()))
    .bind(contact.pending.map(|p| p.user_id.0))
    .bind(ts(contact.first_seen))
    .bind(ts(contact.updated_at))
    .execute(&mut **tx)
    .await?;
    Ok(())
}

mod files;
pub use files::FileRow;
mod replay;
mod settings;

pub use self::settings::LegacyPolicy;

#[cfg(test)]
mod tests;
