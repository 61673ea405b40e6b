//! The request and response bodies of every relay route (docs/API.md parts 1 and 2).
//!
//! Field names are the wire names: no renames, so serde (the client) and
//! poem-openapi (the server, with the `openapi` feature) agree by construction.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use crate::ids::{DeviceId, MessageId, UserId};
use crate::strings::{Base64Ciphertext, DeviceName, InviteCode, Password, PublicKeyHex, Username};

/// Body of `POST /auth/register` and `POST /auth/login`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(poem_openapi::Object))]
pub struct Credentials {
    pub username: Username,
    pub password: Password,
}

/// Body of `POST /auth/register`: [`Credentials`], and the invite code a
/// relay with `registration = "invite"` asks for (other relays ignore it).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(poem_openapi::Object))]
pub struct NewAccount {
    pub username: Username,
    pub password: Password,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", oai(nullable))]
    pub invite_code: Option<InviteCode>,
}

/// Body of `POST /auth/password`: a new password for the caller's account.
/// Every other token of the account is refused afterwards.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(poem_openapi::Object))]
pub struct ChangePassword {
    pub current_password: Password,
    pub new_password: Password,
}

/// Body of `DELETE /auth/me`: the account's password, to confirm.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(poem_openapi::Object))]
pub struct DeleteAccount {
    pub password: Password,
}

/// A bearer token, returned by register and login.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(poem_openapi::Object))]
pub struct TokenResponse {
    /// HS256 JWT; send it as `Authorization: Bearer <token>`.
    pub access_token: String,
    /// Always `bearer`.
    pub token_type: String,
}

/// Body of `GET /auth/me`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(poem_openapi::Object))]
pub struct Me {
    pub user_id: UserId,
    pub username: String,
}

/// A one-word outcome, such as `{"status": "public key stored"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(poem_openapi::Object))]
pub struct StatusResponse {
    pub status: String,
}

/// Body of `POST /keys/publish`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(poem_openapi::Object))]
pub struct PublishKey {
    pub identity_pubkey: PublicKeyHex,
    /// Optional label, at most 64 characters; stored encrypted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", oai(nullable))]
    pub device_name: Option<DeviceName>,
}

/// A published identity key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(poem_openapi::Object))]
pub struct Device {
    pub id: DeviceId,
    pub user_id: UserId,
    /// Lowercase hex of the 32-byte X25519 public key.
    pub identity_pubkey: String,
    #[cfg_attr(feature = "openapi", oai(nullable))]
    pub device_name: Option<String>,
    pub created_at: DateTime<Utc>,
}

/// Body of `GET /keys/{user_id}`: the user's keys, oldest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(poem_openapi::Object))]
pub struct Devices {
    pub devices: Vec<Device>,
}

/// Body of `GET /users/{username}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(poem_openapi::Object))]
pub struct UserInfo {
    pub user_id: UserId,
    pub username: String,
    pub devices: Vec<Device>,
}

/// Body of `POST /messages/`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(poem_openapi::Object))]
pub struct SendMessage {
    pub recipient_id: UserId,
    pub ciphertext: Base64Ciphertext,
    /// Hex of the 32-byte ephemeral X25519 public key the box was made with.
    pub ephemeral_pubkey: PublicKeyHex,
    /// Any JSON value of at most 4 KiB once serialized (else `422`); stored
    /// encrypted and returned unchanged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Value>,
    /// Makes the send idempotent: a retry with the same id returns the first
    /// message's id and stores nothing new.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", oai(nullable))]
    pub client_msg_id: Option<Uuid>,
}

/// Answer to `POST /messages/`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(poem_openapi::Object))]
pub struct SendResponse {
    /// Always `stored`.
    pub status: String,
    pub id: MessageId,
}

/// A message waiting in the recipient's inbox.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(poem_openapi::Object))]
pub struct InboxMessage {
    pub id: MessageId,
    pub sender_id: UserId,
    pub recipient_id: UserId,
    /// Exactly the base64 the sender sent.
    pub ciphertext: String,
    pub ephemeral_pubkey: String,
    #[cfg_attr(feature = "openapi", oai(nullable))]
    pub metadata: Option<Value>,
    pub created_at: DateTime<Utc>,
}

/// Body of `GET /messages/inbox`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(poem_openapi::Object))]
pub struct Inbox {
    pub messages: Vec<InboxMessage>,
}

/// Order of an inbox page.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(poem_openapi::Enum))]
#[cfg_attr(feature = "openapi", oai(rename_all = "lowercase"))]
#[serde(rename_all = "lowercase")]
pub enum InboxOrder {
    /// Oldest first: a queue.
    Asc,
    /// Newest first (the v1 default).
    #[default]
    Desc,
}

/// Body of `POST /messages/ack`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(poem_openapi::Object))]
pub struct BatchAck {
    /// Up to 500 message ids.
    pub ids: Vec<MessageId>,
}

/// Answer to `POST /messages/ack`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(poem_openapi::Object))]
pub struct BatchAckResponse {
    /// How many of the ids are the caller's messages, now acknowledged
    /// (including ones acknowledged before).
    pub acknowledged: u64,
}

/// Where a sent message is, as its sender sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(poem_openapi::Enum))]
#[cfg_attr(feature = "openapi", oai(rename_all = "lowercase"))]
#[serde(rename_all = "lowercase")]
pub enum DeliveryState {
    /// Stored on the relay, not yet acknowledged by the recipient.
    Pending,
    /// The recipient acknowledged it.
    Delivered,
    /// Its time to live ran out before the recipient fetched it.
    Expired,
}

/// Body of `GET /messages/{id}/status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(poem_openapi::Object))]
pub struct DeliveryStatus {
    pub status: DeliveryState,
    #[cfg_attr(feature = "openapi", oai(nullable))]
    pub delivered_at: Option<DateTime<Utc>>,
}

/// Body of `GET /health`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(poem_openapi::Object))]
pub struct Health {
    pub status: String,
    pub service: String,
    pub version: String,
}

/// Body of `GET /ready`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(poem_openapi::Object))]
pub struct Ready {
    /// `ready` or `unavailable`.
    pub status: String,
    /// `ok` or `unavailable`.
    pub database: String,
    /// `ok`, `unavailable`, or `not configured`.
    pub redis: String,
    /// Whether the relay holds `GET /messages/inbox?wait=S` open until a
    /// message arrives; `false` when its operator set `max_wait = 0`, in which
    /// case `wait` is accepted and answered at once.
    pub long_poll: bool,
    /// The longest the relay holds a long-poll, in whole seconds (rounded up,
    /// at most 60), whatever `wait` asks for; `0` when `long_poll` is `false`.
    /// Relays older than this field omit it, which reads as `0`: go by
    /// `long_poll` then.
    #[serde(default)]
    pub long_poll_max_wait: u32,
}

/// One field that failed validation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(poem_openapi::Object))]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

/// The body of every error response (any 4xx or 5xx).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(poem_openapi::Object))]
pub struct ErrorBody {
    /// Human-readable message.
    pub error: String,
    /// Present on `422 Validation failed`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", oai(skip_serializing_if_is_none))]
    pub details: Option<Vec<FieldError>>,
    /// The HTTP status, repeated.
    pub status_code: u16,
}

/// The `token_type` of every token.
pub const TOKEN_TYPE: &str = "bearer";
/// Service name in `/health`.
pub const SERVICE_NAME: &str = "kavro";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_body_wire_form() {
        let body = ErrorBody {
            error: "Validation failed".into(),
            details: Some(vec![FieldError {
                field: "username".into(),
                message: "too short".into(),
            }]),
            status_code: 422,
        };
        let json = serde_json::to_value(&body).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"error": "Validation failed", "details": [{"field": "username", "message": "too short"}], "status_code": 422})
        );
        let plain = ErrorBody {
            error: "nope".into(),
            details: None,
            status_code: 404,
        };
        assert_eq!(
            serde_json::to_value(&plain).unwrap(),
            serde_json::json!({"error": "nope", "status_code": 404})
        );
    }

    #[test]
    fn send_message_optional_fields() {
        let body: SendMessage = serde_json::from_value(serde_json::json!({
            "recipient_id": 2, "ciphertext": "aGk=", "ephemeral_pubkey": "00"
        }))
        .unwrap();
        assert_eq!(body.recipient_id, UserId(2));
        assert!(body.metadata.is_none() && body.client_msg_id.is_none());
    }
}
