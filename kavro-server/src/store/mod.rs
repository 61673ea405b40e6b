//! Persistence behind one narrow trait of domain operations ([`Store`]), with
//! a backend per database: [`sqlite`] (the embedded default) and [`postgres`].
//! Each backend keeps its own migrations in `migrations/<backend>/`.
//!
//! The store sees only opaque bytes: ciphertext as sent, and `device_name` /
//! `metadata` already encrypted by [`crate::fieldcrypt`].

pub(crate) mod batch;
pub mod blobs;
pub(crate) mod blobs_sql;
pub mod ops;
pub mod postgres;
pub mod sqlite;
pub mod v2;

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use kavro_proto::api::{DeliveryState, InboxOrder};
use kavro_proto::{DeviceId, MessageId, UserId};
use uuid::Uuid;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A unique constraint refused the write (e.g. the username is taken).
    #[error("already exists")]
    Conflict,
    /// A referenced row (e.g. the recipient) does not exist.
    #[error("not found")]
    NotFound,
    /// The recipient has too many undelivered messages (in all, or from this sender).
    #[error("pending-message quota is full ({0:?})")]
    QuotaExceeded(Quota),
    /// The database did not answer (down, pool exhausted, timed out).
    #[error("database unavailable")]
    Unavailable(#[source] sqlx::Error),
    #[error("database error")]
    Backend(#[source] sqlx::Error),
    #[error("migration failed")]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

impl From<sqlx::Error> for StoreError {
    fn from(err: sqlx::Error) -> Self {
        match &err {
            sqlx::Error::Database(db) if db.is_unique_violation() => Self::Conflict,
            sqlx::Error::Database(db) if db.is_foreign_key_violation() => Self::NotFound,
            sqlx::Error::Database(db) if is_transient(db.code().as_deref()) => {
                Self::Unavailable(err)
            }
            sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::WorkerCrashed
            | sqlx::Error::Io(_)
            | sqlx::Error::Tls(_) => Self::Unavailable(err),
            _ => Self::Backend(err),
        }
    }
}

/// Database error codes that mean "not now" rather than "wrong": PostgreSQL
/// classes 08 (connection), 53 (resources), 57 (shutdown, admin), and
/// SQLite's busy / locked (5, 6) after the busy timeout.
fn is_transient(code: Option<&str>) -> bool {
    code.is_some_and(|c| {
        c.starts_with("08") || c.starts_with("53") || c.starts_with("57") || c == "5" || c == "6"
    })
}

/// A new account.
#[derive(Debug, Clone)]
pub struct NewUser<'a> {
    /// As the user typed it (shown to others).
    pub username: &'a str,
    /// Lowercase form, unique.
    pub username_normalized: &'a str,
    /// PHC string of the Argon2id hash.
    pub password_hash: &'a str,
    pub created_at: DateTime<Utc>,
}

/// Which pending-message quota refused a send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Quota {
    /// The recipient's undelivered messages, from everyone.
    Recipient,
    /// The recipient's undelivered messages from this one sender.
    Sender,
}

/// The generation of an account's tokens: every token carries the one current
/// when it was issued, and logging out everywhere, a password change or
/// account deletion raise it, which refuses every older token.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TokenGeneration(pub u64);

/// A live account (deleted accounts are never returned).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserRecord {
    pub id: UserId,
    pub username: String,
    pub password_hash: String,
    pub token_generation: TokenGeneration,
}

/// An account whose older tokens were revoked at `revoked_at`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RevokedGeneration {
    pub user: UserId,
    pub generation: TokenGeneration,
    pub revoked_at: DateTime<Utc>,
}

/// What deleting an account did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeletedAccount {
    /// Tokens below this generation are refused.
    pub generation: TokenGeneration,
    /// Messages addressed to the account that were deleted (queued ones and receipts).
    pub messages_deleted: u64,
}

/// What publishing a key did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Published {
    Added,
    /// The user had published this key before; nothing changed.
    AlreadyPublished,
    /// The user retired this key; it cannot be published again.
    Retired,
}

/// Undelivered messages counted for the pending quotas.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PendingCounts {
    /// To the recipient, from everyone.
    pub recipient: u64,
    /// To the recipient, from the one sender asked about.
    pub from_sender: u64,
}

/// A published identity key; `device_name` still encrypted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceRecord {
    pub id: DeviceId,
    pub user_id: UserId,
    pub identity_pubkey: String,
    pub device_name: Option<Vec<u8>>,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone)]
pub struct NewMessage {
    pub sender_id: UserId,
    pub recipient_id: UserId,
    pub ciphertext: Vec<u8>,
    pub ephemeral_pubkey: String,
    /// Encrypted JSON, if any.
    pub metadata: Option<Vec<u8>>,
    pub client_msg_id: Option<Uuid>,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    /// Refuse with [`Quota::Recipient`] when the recipient already has this
    /// many undelivered messages.
    pub max_pending: u32,
    /// Refuse with [`Quota::Sender`] when the recipient already has this many
    /// undelivered messages from this sender.
    pub max_pending_per_sender: u32,
}

/// What a send did: stored a new message, or found the earlier one with the
/// same `client_msg_id`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stored {
    pub id: MessageId,
    pub created: bool,
}

/// An undelivered message; `metadata` still encrypted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageRecord {
    pub id: MessageId,
    pub sender_id: UserId,
    pub recipient_id: UserId,
    pub ciphertext: Vec<u8>,
    pub ephemeral_pubkey: String,
    pub metadata: Option<Vec<u8>>,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AckOutcome {
    /// Now acknowledged; `newly` is false when it already was.
    Acknowledged {
        newly: bool,
    },
    NotFound,
    /// The message exists but belongs to someone else.
    NotRecipient,
}

/// What a batch acknowledgement did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AckCount {
    /// Messages acknowledged by this call.
    pub newly: u64,
    /// The caller's messages among the ids that are now acknowledged,
    /// including ones acknowledged before.
    pub total: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Receipt {
    pub state: DeliveryState,
    pub delivered_at: Option<DateTime<Utc>>,
}

/// The times one retention sweep works with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SweepCutoffs {
    pub now: DateTime<Utc>,
    /// Receipts older than this are deleted.
    pub receipts_before: DateTime<Utc>,
    /// Names of accounts deleted before this are released.
    pub names_before: DateTime<Utc>,
}

/// What one retention sweep did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SweepReport {
    /// Undelivered messages whose TTL ran out (ciphertext dropped, receipt kept).
    pub expired: u64,
    /// Receipts older than the receipt TTL, deleted.
    pub purged: u64,
    /// Usernames of deleted accounts whose reservation ended, now free.
    pub names_released: u64,
}

/// The relay's persistence, as domain operations. Every time comes from the
/// caller's clock.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Creates an account; [`StoreError::Conflict`] when the normalized name
    /// is taken (also by a deleted account whose name is still reserved).
    async fn create_user(&self, user: NewUser<'_>) -> Result<UserId, StoreError>;
    /// A live account by its normalized name.
    async fn user_by_name(&self, normalized: &str) -> Result<Option<UserRecord>, StoreError>;
    /// A live account by id.
    async fn user_by_id(&self, id: UserId) -> Result<Option<UserRecord>, StoreError>;
    /// Sets a new password hash and raises the token generation (every earlier
    /// token is refused). [`StoreError::NotFound`] for a deleted account.
    async fn change_password(
        &self,
        user: UserId,
        password_hash: &str,
        now: DateTime<Utc>,
    ) -> Result<TokenGeneration, StoreError>;
    /// Raises the token generation: logs out every session of the account.
    async fn revoke_tokens(
        &self,
        user: UserId,
        now: DateTime<Utc>,
    ) -> Result<TokenGeneration, StoreError>;
    /// Closes an account: its password, keys, the messages addressed to it
    /// (queued and receipts) and the receipts of messages it sent go, its
    /// tokens are revoked, and its name stays reserved until the sweep
    /// releases it. Messages it sent that still wait for others stay.
    async fn delete_account(
        &self,
        user: UserId,
        now: DateTime<Utc>,
    ) -> Result<DeletedAccount, StoreError>;
    /// Accounts whose tokens were revoked after `since` (to restore the
    /// revocation counters after a restart).
    async fn revoked_generations(
        &self,
        since: DateTime<Utc>,
    ) -> Result<Vec<RevokedGeneration>, StoreError>;

    /// Publishes a key; publishing one the user already has changes nothing,
    /// and one the user retired stays retired.
    async fn add_device(
        &self,
        user: UserId,
        identity_pubkey: &str,
        device_name: Option<Vec<u8>>,
        now: DateTime<Utc>,
    ) -> Result<Published, StoreError>;
    /// The user's keys that are not retired, oldest first.
    async fn devices(&self, user: UserId) -> Result<Vec<DeviceRecord>, StoreError>;
    /// Retires one of the user's keys; `false` when `device` is not one of
    /// their keys. Retiring a retired key again is `true` and changes nothing.
    async fn retire_device(
        &self,
        user: UserId,
        device: DeviceId,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError>;

    /// Queues a message. [`StoreError::NotFound`] for an unknown or deleted
    /// recipient, [`StoreError::QuotaExceeded`] when a pending quota is full.
    /// The quotas are read from counters kept in the same transaction, not
    /// counted over the queue.
    async fn store_message(&self, message: NewMessage) -> Result<Stored, StoreError>;
    /// The pending counters of `recipient` (and of `sender` towards them).
    async fn pending_counts(
        &self,
        recipient: UserId,
        sender: UserId,
    ) -> Result<PendingCounts, StoreError>;
    /// Undelivered, unexpired messages of `recipient`.
    async fn inbox(
        &self,
        recipient: UserId,
        limit: u32,
        order: InboxOrder,
        now: DateTime<Utc>,
    ) -> Result<Vec<MessageRecord>, StoreError>;
    /// Acknowledges one message: its ciphertext is deleted, a receipt stays.
    async fn ack(
        &self,
        recipient: UserId,
        id: MessageId,
        now: DateTime<Utc>,
    ) -> Result<AckOutcome, StoreError>;
    /// Acknowledges the caller's messages among `ids` (distinct); others' ids
    /// and unknown ids are ignored.
    async fn ack_many(
        &self,
        recipient: UserId,
        ids: &[MessageId],
        now: DateTime<Utc>,
    ) -> Result<AckCount, StoreError>;
    /// The delivery state of a message, for its sender only (`None` otherwise).
    async fn receipt(
        &self,
        sender: UserId,
        id: MessageId,
        now: DateTime<Utc>,
    ) -> Result<Option<Receipt>, StoreError>;
    /// Drops the ciphertext of expired messages, deletes receipts older than
    /// `receipts_before` and releases the names of accounts deleted before
    /// `names_before`. Safe to run on several instances at once.
    async fn sweep(&self, cutoffs: SweepCutoffs) -> Result<SweepReport, StoreError>;
    /// Undelivered messages across all users (for metrics).
    async fn pending_total(&self, now: DateTime<Utc>) -> Result<u64, StoreError>;
    /// Cheap round trip for `/ready`.
    async fn ping(&self) -> Result<(), StoreError>;
    /// Open and idle connections, for metrics.
    fn pool_status(&self) -> PoolStatus;
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PoolStatus {
    pub size: u32,
    pub idle: u32,
    pub max: u32,
}

/// Connection settings shared by both backends.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    pub url: String,
    pub read_url: Option<String>,
    pub max_connections: u32,
    /// Run pending migrations on connect.
    pub migrate: bool,
}

/// Opens the backend the URL names (`sqlite:` or `postgres:`/`postgresql:`).
pub async fn connect(options: &StoreOptions) -> Result<Arc<dyn Store>, ConnectError> {
    let url = options.url.as_str();
    if url.starts_with("sqlite:") {
        Ok(Arc::new(sqlite::SqliteStore::connect(options).await?))
    } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
        Ok(Arc::new(postgres::PgStore::connect(options).await?))
    } else {
        Err(ConnectError::UnknownScheme(crate::config::redact_url(url)))
    }
}

/// Opens the backend the URL names, as both the v1 [`Store`] and the v2
/// [`v2::V2Store`] (one set of connection pools).
pub async fn connect_all(
    options: &StoreOptions,
) -> Result<(Arc<dyn Store>, Arc<dyn v2::V2Store>), ConnectError> {
    let stores = connect_stores(options).await?;
    Ok((stores.store, stores.v2))
}

/// Every face of one backend, sharing its connection pools.
pub struct Stores {
    pub store: Arc<dyn Store>,
    pub v2: Arc<dyn v2::V2Store>,
    pub ops: Arc<dyn ops::OpsStore>,
    pub blobs: Arc<dyn blobs::BlobMeta>,
}

/// Opens the backend the URL names, as the v1, v2 and operator stores.
pub async fn connect_stores(options: &StoreOptions) -> Result<Stores, ConnectError> {
    let url = options.url.as_str();
    if url.starts_with("sqlite:") {
        let store = Arc::new(sqlite::SqliteStore::connect(options).await?);
        Ok(Stores {
            store: store.clone(),
            v2: store.clone(),
            ops: store.clone(),
            blobs: store,
        })
    } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
        let store = Arc::new(postgres::PgStore::connect(options).await?);
        Ok(Stores {
            store: store.clone(),
            v2: store.clone(),
            ops: store.clone(),
            blobs: store,
        })
    } else {
        Err(ConnectError::UnknownScheme(crate::config::redact_url(url)))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("unsupported database URL {0:?}: use sqlite://PATH or postgres://…")]
    UnknownScheme(String),
    #[error("cannot open the database: {0}")]
    Open(#[source] sqlx::Error),
    #[error("cannot create the database directory {0}: {1}")]
    Directory(String, #[source] std::io::Error),
    #[error("database migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

/// Which state a receipt row is in.
pub(crate) fn receipt_state(
    delivered_at: Option<DateTime<Utc>>,
    expires_at: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Receipt {
    let state = if delivered_at.is_some() {
        DeliveryState::Delivered
    } else if expires_at <= now {
        DeliveryState::Expired
    } else {
        DeliveryState::Pending
    };
    Receipt {
        state,
        delivered_at,
    }
}

/// The display name a deleted account keeps once its name is released; its
/// normalized name becomes `#<id>`, which no valid username can equal.
pub(crate) const RELEASED_NAME: &str = "#deleted";

/// Rows one sweep statement touches at most, so it never holds long locks.
pub(crate) const SWEEP_BATCH: i64 = 1000;

#[cfg(test)]
mod accounts_story;
#[cfg(test)]
pub(crate) mod fixtures;
#[cfg(test)]
mod quota_story;
#[cfg(test)]
pub(crate) mod story;
