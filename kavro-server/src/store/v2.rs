//! Persistence of Kavro v2 (MLS) behind its own narrow trait, [`V2Store`],
//! implemented by both backends (`sqlite/v2.rs`, `postgres/v2.rs`) on the
//! same connection pools as the v1 [`Store`](super::Store).
//!
//! Ordering: every write to a device's queue happens in a transaction that
//! holds that device's row (PostgreSQL: `FOR UPDATE`, taken in id order so
//! concurrent fan-outs cannot deadlock; SQLite: the single writer), assigns
//! the entry `seq = next_seq` and bumps `next_seq` in the same transaction.
//! So a device's `seq` order is the order in which those transactions
//! committed, and a reader that acknowledges up to `n` can never skip an
//! entry that commits later with a smaller `seq`. Group messages take the
//! group's row shared and commits take it exclusively, so each group has one
//! order: a commit is accepted only for the current epoch and advances it in
//! the same transaction.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use kavro_proto::UserId;
use kavro_proto::v2::api::QueueKind;
use kavro_proto::v2::{BlobId, GroupId, MlsDeviceId, QueueSeq, V2MessageId};
use uuid::Uuid;

use super::StoreError;

/// Why a v2 operation was refused (or failed).
#[derive(Debug, thiserror::Error)]
pub enum V2Error {
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The account already has its root device.
    #[error("the account already has a root device")]
    RootExists,
    /// Another device already uses this signature key.
    #[error("this signature key is already registered")]
    KeyTaken,
    /// The link's signer is not an active device of this account.
    #[error("the signer is not an active device of this account")]
    SignerInvalid,
    /// The device is unknown or revoked.
    #[error("device unknown or revoked")]
    DeviceInactive,
    #[error("the link request is unknown, expired, used or locked")]
    LinkGone,
    #[error("too many open link requests")]
    TooManyOpenLinks,
    #[error("a device may have at most {max} key packages outstanding (has {have})")]
    TooManyKeyPackages { have: u32, max: u32 },
    #[error("unknown group")]
    UnknownGroup,
    #[error("the group already exists")]
    GroupExists,
    #[error("the sender is not a member of the group")]
    NotMember,
    /// The message is not for the group's current epoch.
    #[error("the group is at epoch {current}")]
    WrongEpoch { current: u64 },
    /// A recipient device's queue is full (application messages and proposals only).
    #[error("a recipient's queue is full")]
    QuotaExceeded,
    /// `added` names a device that is unknown, revoked or already a member.
    #[error("cannot add device {0}: unknown, revoked or already a member")]
    CannotAdd(MlsDeviceId),
    /// `removed` names a device that is not a member.
    #[error("cannot remove device {0}: not a member")]
    CannotRemove(MlsDeviceId),
    #[error("the group would have more than {0} members")]
    GroupFull(u32),
    /// A referenced blob is unknown, expired, incomplete or another account's.
    #[error("blob {0} is not a complete blob of the sender's account")]
    BlobUnusable(BlobId),
}

impl From<sqlx::Error> for V2Error {
    fn from(err: sqlx::Error) -> Self {
        Self::Store(StoreError::from(err))
    }
}

/// A device as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceRow {
    pub id: MlsDeviceId,
    pub user_id: UserId,
    pub signature_key: Vec<u8>,
    /// The signer and its signature; `None` for the root device.
    pub link: Option<(MlsDeviceId, Vec<u8>)>,
    pub created_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
}

impl DeviceRow {
    pub fn is_active(&self) -> bool {
        self.revoked_at.is_none()
    }
}

/// A device to add; its link (if any) already verified by the caller.
#[derive(Debug, Clone)]
pub struct NewDevice<'a> {
    pub user: UserId,
    pub signature_key: &'a [u8],
    pub link: Option<(MlsDeviceId, &'a [u8])>,
    pub now: DateTime<Utc>,
}

#[derive(Debug, Clone)]
pub struct NewLinkRequest<'a> {
    pub id: Uuid,
    pub user: UserId,
    pub code_hash: &'a [u8],
    pub signature_key: &'a [u8],
    pub now: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub max_open: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkRequestRow {
    pub id: Uuid,
    pub user_id: UserId,
    pub signature_key: Vec<u8>,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub failures: u32,
    pub device_id: Option<MlsDeviceId>,
}

/// A checked key package to store.
#[derive(Debug, Clone)]
pub struct NewKeyPackage {
    pub bytes: Vec<u8>,
    pub not_after: DateTime<Utc>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct KeyPackageTally {
    pub remaining: u32,
    pub last_resort: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Claimed {
    /// (device, package, whether it was the last-resort one)
    pub packages: Vec<(MlsDeviceId, Vec<u8>, bool)>,
    pub missing: Vec<MlsDeviceId>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupRow {
    pub epoch: u64,
    pub members: Vec<MlsDeviceId>,
}

/// An application message or proposal for a group.
#[derive(Debug, Clone)]
pub struct NewGroupMessage<'a> {
    pub group: &'a GroupId,
    pub sender: MlsDeviceId,
    pub kind: QueueKind,
    pub epoch: u64,
    pub body: &'a [u8],
    pub client_msg_id: Option<Uuid>,
    pub now: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    /// Refuse an application message or proposal when a recipient has this
    /// many entries pending (commits are never refused for it: a full device
    /// must still be removable).
    pub max_pending: u32,
    /// Blobs the message refers to: each must be a complete, live blob of the
    /// sender's account ([`V2Error::BlobUnusable`] otherwise, nothing stored).
    pub blob_ids: &'a [BlobId],
}

/// A commit for a group, with the membership changes it declares.
#[derive(Debug, Clone)]
pub struct NewCommit<'a> {
    pub group: &'a GroupId,
    pub sender: MlsDeviceId,
    pub epoch: u64,
    pub commit: &'a [u8],
    pub added: &'a [MlsDeviceId],
    pub removed: &'a [MlsDeviceId],
    pub welcome: Option<&'a [u8]>,
    pub client_msg_id: Option<Uuid>,
    pub now: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub max_members: u32,
}

/// What a post did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Posted {
    pub id: V2MessageId,
    /// The group's epoch after the message.
    pub epoch: u64,
    pub recipients: u32,
    /// False when an earlier post with the same `client_msg_id` was found.
    pub created: bool,
    /// Devices whose queue got an entry (to wake); empty when not created.
    pub woken: Vec<MlsDeviceId>,
}

/// One queue entry with its message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueRow {
    pub seq: QueueSeq,
    pub id: V2MessageId,
    pub kind: QueueKind,
    pub group: GroupId,
    pub epoch: u64,
    pub sender: MlsDeviceId,
    pub body: Vec<u8>,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueRead {
    pub entries: Vec<QueueRow>,
    pub acked: QueueSeq,
}

/// What one v2 sweep did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct V2SweepReport {
    /// Messages past their TTL, deleted with their queue entries.
    pub expired_messages: u64,
    /// Key packages past their lifetime.
    pub expired_key_packages: u64,
    /// Link requests past their expiry.
    pub expired_link_requests: u64,
}

/// The v2 persistence, as domain operations. Every time comes from the caller.
#[async_trait]
pub trait V2Store: Send + Sync + 'static {
    /// Adds a root device (no link) or a linked one. [`V2Error::RootExists`],
    /// [`V2Error::SignerInvalid`] (checked in the same statement as the
    /// insert), [`V2Error::KeyTaken`].
    async fn add_device(&self, device: NewDevice<'_>) -> Result<MlsDeviceId, V2Error>;
    async fn device(&self, id: MlsDeviceId) -> Result<Option<DeviceRow>, V2Error>;
    /// Every device of the account, revoked ones included, oldest first.
    async fn devices_of(&self, user: UserId) -> Result<Vec<DeviceRow>, V2Error>;
    /// Revokes a device: it is refused from now on, its key packages and its
    /// queue are deleted. Returns false when it already was revoked.
    async fn revoke_device(&self, id: MlsDeviceId, now: DateTime<Utc>) -> Result<bool, V2Error>;

    async fn create_link_request(&self, request: NewLinkRequest<'_>) -> Result<(), V2Error>;
    /// The account's pending (unapproved, unexpired, not locked) request with this code.
    async fn link_request_by_code(
        &self,
        user: UserId,
        code_hash: &[u8],
        now: DateTime<Utc>,
        max_failures: u32,
    ) -> Result<Option<LinkRequestRow>, V2Error>;
    async fn link_request(&self, id: Uuid) -> Result<Option<LinkRequestRow>, V2Error>;
    /// Counts a failed approval.
    async fn link_failed(&self, id: Uuid) -> Result<(), V2Error>;
    /// Adds the linked device and marks the request approved, atomically:
    /// [`V2Error::LinkGone`] when the request is no longer pending.
    async fn approve_link(
        &self,
        id: Uuid,
        signer: MlsDeviceId,
        signature: &[u8],
        now: DateTime<Utc>,
        max_failures: u32,
    ) -> Result<MlsDeviceId, V2Error>;

    /// Stores key packages of one ciphersuite (and replaces the device's
    /// last-resort one of that suite) unless the device would then have
    /// more than `max` outstanding in that suite.
    async fn add_key_packages(
        &self,
        device: MlsDeviceId,
        suite: u16,
        packages: &[NewKeyPackage],
        last_resort: Option<&NewKeyPackage>,
        max: u32,
        now: DateTime<Utc>,
    ) -> Result<KeyPackageTally, V2Error>;
    async fn key_package_tally(
        &self,
        device: MlsDeviceId,
        suite: u16,
        now: DateTime<Utc>,
    ) -> Result<KeyPackageTally, V2Error>;
    /// One unexpired package of `suite` per active device of `user`,
    /// consumed in the same transaction (the last-resort one only when no
    /// other is left, and kept). Never hands a package out twice, whatever
    /// the concurrency. `only`: that one device's package (nothing when it
    /// is not an active device of `user`).
    async fn claim_key_packages(
        &self,
        user: UserId,
        suite: u16,
        only: Option<MlsDeviceId>,
        now: DateTime<Utc>,
    ) -> Result<Claimed, V2Error>;

    /// Creates a group at epoch 0 with its creator as the only member.
    async fn create_group(
        &self,
        group: &GroupId,
        creator: MlsDeviceId,
        now: DateTime<Utc>,
    ) -> Result<(), V2Error>;
    async fn group(&self, group: &GroupId) -> Result<Option<GroupRow>, V2Error>;
    /// Queues an application message or proposal for every other active member.
    async fn post_message(&self, message: NewGroupMessage<'_>) -> Result<Posted, V2Error>;
    /// Accepts a commit for the current epoch, advances the epoch, applies the
    /// declared membership changes, queues the commit for every other member
    /// of the old epoch (removed ones included) and the welcome for the added.
    async fn post_commit(&self, commit: NewCommit<'_>) -> Result<Posted, V2Error>;

    /// Entries of `device` with `seq > after`, in order, unexpired.
    /// [`V2Error::DeviceInactive`] unless `device` is an active device of
    /// `owner`: this is the queue route's device check (its token is not
    /// looked up separately), so a revoked device is refused here on every
    /// instance. When the device's last `seq` is not past `after`, the
    /// entries are not read at all (one query: an idle long-poll's first
    /// read).
    async fn queue(
        &self,
        owner: UserId,
        device: MlsDeviceId,
        after: QueueSeq,
        limit: u32,
        now: DateTime<Utc>,
    ) -> Result<QueueRead, V2Error>;
    /// Acknowledges every entry up to `up_to` (cumulative); returns the
    /// device's acknowledged position.
    async fn ack_queue(&self, device: MlsDeviceId, up_to: QueueSeq) -> Result<QueueSeq, V2Error>;
    /// Deletes expired messages (and their entries), key packages and link requests.
    async fn sweep_v2(&self, now: DateTime<Utc>) -> Result<V2SweepReport, V2Error>;
}

/// Checks a stored epoch (non-negative by construction).
pub(crate) fn epoch_from_db(epoch: i64) -> u64 {
    u64::try_from(epoch).unwrap_or_default()
}

/// An epoch from the wire, as stored. Epochs past `i64::MAX` never exist, so
/// saturating keeps such an epoch unequal to the group's (a `409`).
pub(crate) fn epoch_to_db(epoch: u64) -> i64 {
    i64::try_from(epoch).unwrap_or(i64::MAX)
}

#[cfg(test)]
pub(crate) mod story;
