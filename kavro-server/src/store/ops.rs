//! What an operator manages (issue #13): accounts seen from the admin command
//! line (list, disable, enable), the invite codes of `registration =
//! "invite"`, the queue's age for `/metrics`, and the schema version the
//! admin commands insist on. A trait of its own beside [`super::Store`], so
//! the relay's hot path and these rarely used operations stay apart.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use kavro_proto::UserId;
use sha2::{Digest as _, Sha256};

use super::{StoreError, TokenGeneration};

/// An account as the operator sees it (deleted accounts are not listed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountSummary {
    pub id: UserId,
    pub username: String,
    pub created_at: DateTime<Utc>,
    /// The last registration or login.
    pub last_seen_at: Option<DateTime<Utc>>,
    pub disabled_at: Option<DateTime<Utc>>,
    /// Published v1 identity keys that are not retired.
    pub keys: u64,
    /// v2 (MLS) devices that are not revoked.
    pub devices: u64,
    /// Undelivered messages waiting for the account.
    pub pending: u64,
}

/// The id of an invite code's row (shown by `admin invites list`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct InviteId(pub i64);

/// The SHA-256 of an invite code: all the database keeps of it.
#[derive(Clone, PartialEq, Eq)]
pub struct InviteHash(pub [u8; 32]);

impl InviteHash {
    pub fn of(code: &str) -> Self {
        Self(Sha256::digest(code.trim().as_bytes()).into())
    }
}

/// A new invite code, already hashed.
#[derive(Clone)]
pub struct NewInvite {
    pub hash: InviteHash,
    pub max_uses: u32,
    pub created_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InviteRecord {
    pub id: InviteId,
    pub max_uses: u32,
    pub uses: u32,
    pub created_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
}

/// Where the database's schema stands against this build's migrations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SchemaState {
    /// No migration was ever applied (an empty database).
    Empty,
    /// The newest migration applied, and the newest this build has.
    At { applied: i64, expected: i64 },
}

#[async_trait]
pub trait OpsStore: Send + Sync + 'static {
    /// The schema version of the database (admin commands refuse any other
    /// than this build's).
    async fn schema_state(&self) -> Result<SchemaState, StoreError>;
    /// Every account that is not deleted, by id.
    async fn accounts(&self) -> Result<Vec<AccountSummary>, StoreError>;
    /// One account that is not deleted, by its normalized name.
    async fn account(&self, normalized: &str) -> Result<Option<AccountSummary>, StoreError>;
    /// Disables the account and raises its token generation (its sessions
    /// end); disabling a disabled account raises it again.
    /// [`StoreError::NotFound`] for an unknown or deleted account.
    async fn disable_account(
        &self,
        user: UserId,
        now: DateTime<Utc>,
    ) -> Result<TokenGeneration, StoreError>;
    /// Lets the account log in again; `false` when it was not disabled.
    async fn enable_account(&self, user: UserId) -> Result<bool, StoreError>;
    /// Whether an operator disabled the account.
    async fn is_disabled(&self, user: UserId) -> Result<bool, StoreError>;
    /// Records a registration or login.
    async fn touch_last_seen(&self, user: UserId, now: DateTime<Utc>) -> Result<(), StoreError>;

    async fn create_invite(&self, invite: NewInvite) -> Result<InviteId, StoreError>;
    async fn invites(&self) -> Result<Vec<InviteRecord>, StoreError>;
    /// The invite with this code, if any.
    async fn invite_by_hash(&self, hash: &InviteHash) -> Result<Option<InviteId>, StoreError>;
    /// Revokes an invite; `false` when there is no such invite.
    async fn revoke_invite(&self, id: InviteId, now: DateTime<Utc>) -> Result<bool, StoreError>;
    /// Takes one use of the code if it exists, is not revoked, expired or
    /// used up: one conditional update, so two registrations never both get
    /// the last use. `None` when refused.
    async fn use_invite(
        &self,
        hash: &InviteHash,
        now: DateTime<Utc>,
    ) -> Result<Option<InviteId>, StoreError>;
    /// Gives back a use taken by a registration that then failed.
    async fn release_invite(&self, id: InviteId) -> Result<(), StoreError>;

    /// When the oldest undelivered, unexpired message was sent (for `/metrics`).
    async fn oldest_pending(&self, now: DateTime<Utc>)
    -> Result<Option<DateTime<Utc>>, StoreError>;
}

/// The schema state from the newest applied migration version (`None`: no
/// migrations table or no rows) and this build's migrator.
pub(crate) fn schema_state(
    applied: Option<i64>,
    migrator: &sqlx::migrate::Migrator,
) -> SchemaState {
    let expected = migrator.iter().map(|m| m.version).max().unwrap_or(0);
    applied.map_or(SchemaState::Empty, |applied| SchemaState::At {
        applied,
        expected,
    })
}

#[cfg(test)]
mod story;
