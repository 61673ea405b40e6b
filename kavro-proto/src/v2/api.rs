//! The request and response bodies of the `/v2` routes. Field names are the
//! wire names (no renames), so serde (the client) and poem-openapi (the relay,
//! with the `openapi` feature) agree by construction. Type names are distinct
//! from v1's, because both live in one OpenAPI document.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::blobs::BlobId;
use super::ids::{MlsDeviceId, QueueSeq, V2MessageId};
use super::strings::{GroupIdText, MlsBytes, SignatureB64, SignatureKeyB64};
use crate::ids::UserId;

/// The signature that admits a device into an account: made by an existing,
/// non-revoked device of the same account over
/// [`device_link_message`](super::link::device_link_message).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(poem_openapi::Object))]
pub struct DeviceLink {
    pub signer_device_id: MlsDeviceId,
    pub signature: SignatureB64,
}

/// Body of `POST /v2/devices`: the account's first (root) device without a
/// link, any later device with one.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(poem_openapi::Object))]
pub struct RegisterDevice {
    /// The device's MLS signature key (Ed25519).
    pub signature_key: SignatureKeyB64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", oai(nullable))]
    pub link: Option<DeviceLink>,
}

/// A device of an account, with the link that admitted it (none for the root).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(poem_openapi::Object))]
pub struct MlsDevice {
    pub id: MlsDeviceId,
    pub user_id: UserId,
    pub signature_key: SignatureKeyB64,
    /// `null` for the account's root device.
    #[cfg_attr(feature = "openapi", oai(nullable))]
    pub link: Option<DeviceLink>,
    pub created_at: DateTime<Utc>,
    /// Set once the device is revoked; the relay refuses it from then on.
    #[cfg_attr(feature = "openapi", oai(nullable))]
    pub revoked_at: Option<DateTime<Utc>>,
}

/// Body of `GET /v2/users/{username}/devices`: every device, revoked ones
/// included (a later device's chain may pass through them), oldest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(poem_openapi::Object))]
pub struct MlsDeviceList {
    pub user_id: UserId,
    pub username: String,
    pub devices: Vec<MlsDevice>,
}

/// Body of `POST /v2/link-requests`: a new installation asks to be linked.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(poem_openapi::Object))]
pub struct NewLinkRequest {
    pub signature_key: SignatureKeyB64,
}

/// Answer to `POST /v2/link-requests`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(poem_openapi::Object))]
pub struct LinkRequestCreated {
    /// The requester polls `GET /v2/link-requests/{request_id}` with it.
    pub request_id: Uuid,
    /// Shown to the user, typed on an existing device: 10 characters of
    /// Crockford base32, single use.
    pub code: String,
    pub expires_at: DateTime<Utc>,
}

/// Where a link request is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(poem_openapi::Enum))]
#[cfg_attr(feature = "openapi", oai(rename_all = "lowercase"))]
#[serde(rename_all = "lowercase")]
pub enum LinkState {
    Pending,
    Approved,
    /// Timed out, or too many failed approvals.
    Expired,
}

/// Body of `GET /v2/link-requests/{request_id}` (for the requester).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(poem_openapi::Object))]
pub struct LinkRequestStatus {
    pub status: LinkState,
    /// The new device's id once approved.
    #[cfg_attr(feature = "openapi", oai(nullable))]
    pub device_id: Option<MlsDeviceId>,
}

/// Body of `GET /v2/link-codes/{code}` (for the approving device): the key
/// to show as a fingerprint before signing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(poem_openapi::Object))]
pub struct LinkRequestView {
    pub user_id: UserId,
    pub signature_key: SignatureKeyB64,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

/// Body of `POST /v2/link-codes/{code}/approve`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(poem_openapi::Object))]
pub struct ApproveLink {
    /// The approving device's signature over the link message.
    pub signature: SignatureB64,
}

/// Body of `POST /v2/devices/{id}/session`: proof of possession of the device key.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(poem_openapi::Object))]
pub struct SessionProof {
    /// Unix seconds; within 5 minutes of the relay's clock.
    pub timestamp: i64,
    /// Signature over [`session_message`](super::link::session_message).
    pub signature: SignatureB64,
}

/// A device token: send it as `Authorization: Bearer <token>` on device routes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(poem_openapi::Object))]
pub struct DeviceToken {
    pub access_token: String,
    /// Always `bearer`.
    pub token_type: String,
    pub device_id: MlsDeviceId,
    pub expires_at: DateTime<Utc>,
}

/// Body of `POST /v2/devices/{id}/key-packages`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(poem_openapi::Object))]
pub struct UploadKeyPackages {
    /// TLS-serialised `KeyPackage`s, all of one ciphersuite (0x0001, or
    /// 0x004F for post-quantum groups); at most 100 outstanding per device
    /// and ciphersuite.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", oai(default))]
    pub key_packages: Vec<MlsBytes>,
    /// Replaces the device's last-resort package of its ciphersuite (handed
    /// out only when no other is left, and never consumed); the same
    /// ciphersuite as `key_packages`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", oai(nullable))]
    pub last_resort: Option<MlsBytes>,
}

/// How many key packages of a device remain on the relay, in one ciphersuite.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(poem_openapi::Object))]
pub struct KeyPackageCount {
    /// Ordinary (single-use) packages left.
    pub remaining: u32,
    /// Whether a last-resort package is stored.
    pub last_resort: bool,
    /// The ciphersuite counted (absent from relays before post-quantum
    /// groups, which only had 0x0001).
    #[serde(default = "classic_suite")]
    #[cfg_attr(feature = "openapi", oai(default = "classic_suite"))]
    pub ciphersuite: u16,
}

fn classic_suite() -> u16 {
    super::suites::CLASSIC
}

/// One claimed key package.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(poem_openapi::Object))]
pub struct ClaimedKeyPackage {
    pub device_id: MlsDeviceId,
    pub key_package: MlsBytes,
    /// The device's last-resort package (it had no other left).
    pub last_resort: bool,
}

/// Answer to `POST /v2/users/{username}/key-packages/claim`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(poem_openapi::Object))]
pub struct ClaimedKeyPackages {
    /// One per active device that had a package.
    pub key_packages: Vec<ClaimedKeyPackage>,
    /// Active devices with no package at all.
    pub missing: Vec<MlsDeviceId>,
}

/// Body of `POST /v2/groups`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(poem_openapi::Object))]
pub struct CreateGroup {
    pub group_id: GroupIdText,
}

/// A group as the relay knows it (for members only).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(poem_openapi::Object))]
pub struct GroupState {
    pub group_id: GroupIdText,
    pub epoch: u64,
    /// Member devices in the current epoch, by id.
    pub members: Vec<MlsDeviceId>,
}

/// Body of `POST /v2/groups/{group_id}/commits`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(poem_openapi::Object))]
pub struct PostCommit {
    /// The epoch the commit was made in; must be the group's current epoch
    /// (and equal the commit's own framing).
    pub epoch: u64,
    /// The commit (`MLSMessage` carrying a commit).
    pub commit: MlsBytes,
    /// Devices the commit adds; they receive `welcome`.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", oai(default))]
    pub added: Vec<MlsDeviceId>,
    /// Devices the commit removes; they still receive the commit, nothing after.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", oai(default))]
    pub removed: Vec<MlsDeviceId>,
    /// Required when `added` is not empty (`MLSMessage` carrying a Welcome).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", oai(nullable))]
    pub welcome: Option<MlsBytes>,
    /// Makes the post idempotent per sending device.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", oai(nullable))]
    pub client_msg_id: Option<Uuid>,
}

/// Body of `POST /v2/groups/{group_id}/messages`: an application message or
/// a proposal, for the group's current epoch.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(poem_openapi::Object))]
pub struct PostGroupMessage {
    pub message: MlsBytes,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", oai(nullable))]
    pub client_msg_id: Option<Uuid>,
    /// Blobs this message refers to (attachments): each lives while a device the message
    /// is queued for has not acknowledged it. Absent = none (older clients).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[cfg_attr(feature = "openapi", oai(default, skip_serializing_if_is_empty))]
    pub blob_ids: Vec<BlobId>,
}

/// Answer to a commit or a group message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(poem_openapi::Object))]
pub struct Accepted {
    pub id: V2MessageId,
    /// The group's epoch after this message (a commit's new epoch).
    pub epoch: u64,
    /// Devices it was queued for.
    pub recipients: u32,
}

/// The `409` of a message for another epoch than the group's current one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(poem_openapi::Object))]
pub struct EpochConflict {
    pub error: String,
    pub status_code: u16,
    /// The group's current epoch: re-sync to it, then retry.
    pub epoch: u64,
}

/// What a queue entry carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(poem_openapi::Enum))]
#[cfg_attr(feature = "openapi", oai(rename_all = "lowercase"))]
#[serde(rename_all = "lowercase")]
pub enum QueueKind {
    Application,
    Proposal,
    Commit,
    Welcome,
}

impl QueueKind {
    /// The stored code.
    pub fn code(self) -> i16 {
        match self {
            Self::Application => 1,
            Self::Proposal => 2,
            Self::Commit => 3,
            Self::Welcome => 4,
        }
    }

    pub fn from_code(code: i16) -> Option<Self> {
        match code {
            1 => Some(Self::Application),
            2 => Some(Self::Proposal),
            3 => Some(Self::Commit),
            4 => Some(Self::Welcome),
            _ => None,
        }
    }

    /// Commits and proposals change the group state (the others do not).
    pub fn is_handshake(self) -> bool {
        matches!(self, Self::Commit | Self::Proposal)
    }
}

/// One entry of a device's queue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(poem_openapi::Object))]
pub struct QueueEntry {
    pub seq: QueueSeq,
    /// The stored message (the same for every device it was queued for).
    pub id: V2MessageId,
    pub kind: QueueKind,
    pub group_id: GroupIdText,
    /// The epoch the message was sent in (a commit's old epoch; for a
    /// welcome, the epoch it joins).
    pub epoch: u64,
    pub sender_device_id: MlsDeviceId,
    pub message: MlsBytes,
    pub created_at: DateTime<Utc>,
}

/// Body of `GET /v2/devices/{id}/queue`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(poem_openapi::Object))]
pub struct QueuePage {
    /// Entries after `after`, in `seq` order.
    pub messages: Vec<QueueEntry>,
    /// Everything up to here is acknowledged (or expired).
    pub acked_up_to: QueueSeq,
}

/// Body of `POST /v2/devices/{id}/queue/ack`: cumulative.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(poem_openapi::Object))]
pub struct AckQueue {
    /// Acknowledge every entry with `seq <= up_to`.
    pub up_to: QueueSeq,
}

/// Answer to a queue acknowledgement.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(poem_openapi::Object))]
pub struct QueueAcked {
    pub acked_up_to: QueueSeq,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commit_body_defaults_and_wire_names() {
        let body: PostCommit =
            serde_json::from_value(serde_json::json!({"epoch": 3, "commit": "AAAA"})).unwrap();
        assert!(body.added.is_empty() && body.removed.is_empty());
        assert!(body.welcome.is_none() && body.client_msg_id.is_none());
        let entry = QueueEntry {
            seq: QueueSeq(7),
            id: V2MessageId(3),
            kind: QueueKind::Welcome,
            group_id: GroupIdText::from("AQI"),
            epoch: 1,
            sender_device_id: MlsDeviceId(2),
            message: MlsBytes::from("AAAA"),
            created_at: DateTime::from_timestamp(0, 0).unwrap(),
        };
        let json = serde_json::to_value(&entry).unwrap();
        assert_eq!(json["kind"], "welcome");
        assert_eq!(json["seq"], 7);
        for kind in [
            QueueKind::Application,
            QueueKind::Proposal,
            QueueKind::Commit,
            QueueKind::Welcome,
        ] {
            assert_eq!(QueueKind::from_code(kind.code()), Some(kind));
        }
        assert_eq!(QueueKind::from_code(0), None);
    }

    #[test]
    fn group_message_blob_ids_are_optional_on_the_wire() {
        let body: PostGroupMessage =
            serde_json::from_value(serde_json::json!({"message": "AAAA"})).unwrap();
        assert!(body.blob_ids.is_empty());
        let json = serde_json::to_value(&body).unwrap();
        assert!(
            json.get("blob_ids").is_none(),
            "older relays see no new field"
        );
        let with: PostGroupMessage = serde_json::from_value(serde_json::json!({
            "message": "AAAA",
            "blob_ids": ["01234567-89ab-4cde-8f01-23456789abcd"],
        }))
        .unwrap();
        assert_eq!(with.blob_ids.len(), 1);
        assert_eq!(
            serde_json::to_value(&with).unwrap()["blob_ids"][0],
            "01234567-89ab-4cde-8f01-23456789abcd"
        );
        assert!(
            serde_json::from_value::<PostGroupMessage>(
                serde_json::json!({"message": "AAAA", "blob_ids": ["nope"]})
            )
            .is_err()
        );
    }
}
