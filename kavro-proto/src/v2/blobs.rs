//! The wire types of the relay's blob store (`/v2/blobs`): the ciphertext of
//! attachments, uploaded in chunks (resumable from `received`) and downloaded
//! with `Range`. The relay never sees plaintext; the key travels in the
//! end-to-end message that references the blob (`PostGroupMessage::blob_ids`).

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// A blob's id: a random UUID chosen by the relay (serde: the hyphenated string).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(poem_openapi::NewType))]
#[serde(transparent)]
pub struct BlobId(pub Uuid);

impl fmt::Display for BlobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.hyphenated().fmt(f)
    }
}

impl FromStr for BlobId {
    type Err = uuid::Error;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Uuid::parse_str(text).map(Self)
    }
}

/// Body of `POST /v2/blobs`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(poem_openapi::Object))]
pub struct NewBlob {
    /// The blob's exact size in bytes (ciphertext), 1 to the relay's cap.
    pub size: u64,
}

/// Body of `POST /v2/blobs/{id}/holders`: the uploader lets an account read
/// a complete blob (a recipient of a v1 message that carries its key), until
/// that account acknowledges it or the blob expires.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(poem_openapi::Object))]
pub struct BlobHolder {
    /// The recipient account (`user_id` of `GET /users/{username}`).
    pub user_id: crate::UserId,
}

/// Answer of `POST /v2/blobs` (201), of every chunk `PUT` (200) and of
/// `GET /v2/blobs/{id}/status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(poem_openapi::Object))]
pub struct BlobStatus {
    pub blob_id: BlobId,
    pub size: u64,
    /// Bytes stored so far, from the start: the next chunk's `offset`.
    pub received: u64,
    pub complete: bool,
    /// Gone after this (the message TTL from creation), or earlier once every device a
    /// message referencing it was queued for has acknowledged that message.
    pub expires_at: DateTime<Utc>,
    /// The largest chunk one `PUT` takes.
    pub chunk_max: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blob_id_is_the_hyphenated_uuid_on_the_wire() {
        let id = BlobId(Uuid::from_u128(0x0123_4567_89ab_4cde_8f01_2345_6789_abcd));
        let json = serde_json::to_value(id).unwrap();
        assert_eq!(json, "01234567-89ab-4cde-8f01-23456789abcd");
        assert_eq!(id.to_string(), "01234567-89ab-4cde-8f01-23456789abcd");
        assert_eq!(
            "01234567-89ab-4cde-8f01-23456789abcd"
                .parse::<BlobId>()
                .unwrap(),
            id
        );
        assert!("not-a-uuid".parse::<BlobId>().is_err());
        assert!(serde_json::from_value::<BlobId>(serde_json::json!("x")).is_err());
    }

    #[test]
    fn status_wire_names() {
        let status = BlobStatus {
            blob_id: BlobId(Uuid::from_u128(1)),
            size: 10,
            received: 4,
            complete: false,
            expires_at: DateTime::from_timestamp(0, 0).unwrap(),
            chunk_max: 8,
        };
        let json = serde_json::to_value(status).unwrap();
        for key in [
            "blob_id",
            "size",
            "received",
            "complete",
            "expires_at",
            "chunk_max",
        ] {
            assert!(json.get(key).is_some(), "{key}");
        }
        let back: BlobStatus = serde_json::from_value(json).unwrap();
        assert_eq!(back, status);
        let body: NewBlob = serde_json::from_value(serde_json::json!({"size": 5})).unwrap();
        assert_eq!(body.size, 5);
        assert!(serde_json::from_value::<NewBlob>(serde_json::json!({"size": -1})).is_err());
    }
}
