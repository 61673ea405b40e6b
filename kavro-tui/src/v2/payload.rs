//! What an MLS application message of Kavro carries (its plaintext), as JSON:
//!
//! | field  | meaning                                                           |
//! |--------|-------------------------------------------------------------------|
//! | `v`    | format version, `1`                                               |
//! | `id`   | the message id (UUID v4), chosen by the sender; also the relay's `client_msg_id` |
//! | `kind` | `text` (a chat line: `text`), `meta` (the conversation's `name`, `null` for a 1:1 chat) or `file` (an attachment: `file`, see [`FileRef`], and an optional `caption`) |
//!
//! The sender is not in the payload: MLS authenticates it (the leaf's
//! credential, the account's username). openmls pads the encrypted content to
//! a multiple of [`PADDING`] bytes, so the relay learns lengths only in steps.

use kavro_proto::attachment::FileRef;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Plaintexts are padded to a multiple of this many bytes before encryption.
pub const PADDING: usize = 64;
/// Longest text of one message, in bytes.
pub const MAX_TEXT_BYTES: usize = 64 * 1024;

/// The decrypted content of an application message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Payload {
    pub v: u8,
    pub id: Uuid,
    #[serde(flatten)]
    pub body: Body,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Body {
    Text {
        text: String,
    },
    /// Sent after a member is added and on a rename: what newcomers need.
    Meta {
        name: Option<String>,
    },
    /// An attachment: the relay's blob and what opens it (never in the clear
    /// on the relay: this whole payload is MLS-encrypted).
    File {
        file: FileRef,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        caption: Option<String>,
    },
}

impl Body {
    /// How a file shows as a history line: `[file] NAME (SIZE)` and the caption.
    pub fn file_line(file: &FileRef, caption: Option<&str>) -> String {
        let shown = format!("[file] {} ({})", file.name, human_size(file.size));
        match caption {
            Some(caption) if !caption.is_empty() => format!("{shown} {caption}"),
            _ => shown,
        }
    }
}

/// `1.2 MiB`, `340 KiB`, `12 B`.
pub fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    #[allow(clippy::cast_precision_loss, reason = "a size shown to one decimal")]
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

impl Payload {
    pub fn new(body: Body) -> Self {
        Self {
            v: 1,
            id: Uuid::new_v4(),
            body,
        }
    }

    /// The relay blobs this message refers to (its attachment), for
    /// `PostGroupMessage::blob_ids`.
    pub fn blob_ids(&self) -> Vec<kavro_proto::v2::blobs::BlobId> {
        match &self.body {
            Body::File { file, .. } => file.blob_id.parse().into_iter().collect(),
            Body::Text { .. } | Body::Meta { .. } => Vec::new(),
        }
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a payload serialises")
    }

    /// `None` for anything that is not a version-1 payload.
    pub fn parse(bytes: &[u8]) -> Option<Self> {
        let payload: Self = serde_json::from_slice(bytes).ok()?;
        (payload.v == 1).then_some(payload)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_form_and_refusals() {
        let payload = Payload::new(Body::Text { text: "hi".into() });
        let json: serde_json::Value = serde_json::from_slice(&payload.to_bytes()).unwrap();
        assert_eq!(json["kind"], "text");
        assert_eq!(json["text"], "hi");
        assert_eq!(Payload::parse(&payload.to_bytes()), Some(payload));
        let meta = Payload::new(Body::Meta { name: None });
        assert_eq!(Payload::parse(&meta.to_bytes()), Some(meta));
        assert_eq!(Payload::parse(b"not json"), None);
        assert_eq!(
            Payload::parse(
                br#"{"v":2,"id":"00000000-0000-4000-8000-000000000000","kind":"text","text":"x"}"#
            ),
            None
        );
        assert_eq!(
            Payload::parse(
                br#"{"v":1,"id":"00000000-0000-4000-8000-000000000000","kind":"bogus"}"#
            ),
            None
        );
    }
}
