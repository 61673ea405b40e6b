//! Attachments in the chat app (issue #14): what an attachment line shows
//! (name, size, direction, where it stands), the path prompt that sends one,
//! and the thumbnails of pictures. Plain data, like [`super::state`].

use std::path::PathBuf;

use kavro_proto::v2::GroupId;
use ratatui_textarea::TextArea;

use crate::history::FileRow;
use crate::mls::attachments::{AttachmentRow, AttachmentState};

/// Which protocol carried an attachment's key: the line looks the same,
/// but its row lives in a different table and is saved by a different run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileProtocol {
    /// In a v1 file envelope (`attachments`, `session::files`).
    V1,
    /// In a Kavro v2 (MLS) message (`v2_attachments`).
    V2,
}

/// Where an attachment stands, as its line says it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttachmentStatus {
    /// Being sealed and uploaded: the share of the sealed blob the relay has.
    Uploading { percent: u8 },
    /// Sent (the relay holds it for the recipients), or received and not
    /// downloaded yet.
    OnRelay,
    /// Received and saved at this path.
    Saved(String),
    /// Received, refused when downloading (a hash that does not match, …).
    NotSaved(String),
}

/// An attachment as a conversation line shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttachmentView {
    /// The row in `v2_attachments` or `attachments` (see `protocol`);
    /// `None` while it is being uploaded.
    pub id: Option<i64>,
    pub protocol: FileProtocol,
    pub name: String,
    pub size: u64,
    pub media_type: String,
    pub outgoing: bool,
    pub status: AttachmentStatus,
    pub caption: Option<String>,
}

/// Where a stored attachment stands, the same for both tables.
fn status(
    state: AttachmentState,
    saved_path: Option<&String>,
    error: Option<&String>,
) -> AttachmentStatus {
    match (state, saved_path) {
        (AttachmentState::Saved, Some(path)) => AttachmentStatus::Saved(path.clone()),
        (AttachmentState::Failed, _) => {
            AttachmentStatus::NotSaved(error.cloned().unwrap_or_else(|| "refused".to_owned()))
        }
        _ => AttachmentStatus::OnRelay,
    }
}

impl AttachmentView {
    /// How a row of the local (Kavro v2) attachments table shows.
    pub fn from_row(row: &AttachmentRow) -> Self {
        Self {
            id: Some(row.id),
            protocol: FileProtocol::V2,
            name: row.file.name.clone(),
            size: row.file.size,
            media_type: row.file.media_type.clone(),
            outgoing: row.outgoing,
            status: status(row.state, row.saved_path.as_ref(), row.error.as_ref()),
            caption: row.caption.clone().filter(|c| !c.is_empty()),
        }
    }

    /// How a row of the v1 attachments table shows.
    pub fn from_file_row(row: &FileRow) -> Self {
        Self {
            id: Some(row.id),
            protocol: FileProtocol::V1,
            name: row.file.name.clone(),
            size: row.file.size,
            media_type: row.file.media_type.clone(),
            outgoing: row.outgoing,
            status: status(row.state, row.saved_path.as_ref(), row.error.as_ref()),
            caption: row.caption.clone().filter(|c| !c.is_empty()),
        }
    }

    /// The key of its thumbnail: the two tables number their rows
    /// independently, so v1 rows take the negative keys.
    pub fn picture_key(&self) -> Option<i64> {
        self.id.map(|id| match self.protocol {
            FileProtocol::V2 => id,
            FileProtocol::V1 => -id,
        })
    }

    /// Whether it is a picture the app may show inline once saved.
    pub fn is_picture(&self) -> bool {
        matches!(
            self.media_type.as_str(),
            "image/png" | "image/jpeg" | "image/gif" | "image/webp" | "image/bmp"
        )
    }

    /// The file on this machine to show or open, when there is one.
    pub fn saved_path(&self) -> Option<&str> {
        match &self.status {
            AttachmentStatus::Saved(path) => Some(path),
            _ => None,
        }
    }
}

/// The path prompt of an attachment (the attach key): where it goes, what
/// is typed, and what Tab found.
#[derive(Debug, Clone)]
pub struct AttachPrompt {
    /// The conversation's label (a person's name or `#group`).
    pub label: String,
    /// The MLS group, when known (a named group, or a person's 1:1 here);
    /// `None`: the worker finds or makes the 1:1, as `kavro send --file` does.
    pub group: Option<GroupId>,
    pub path: TextArea<'static>,
    /// What Tab offered when several names fit.
    pub candidates: Vec<String>,
    /// Why the last Enter was refused.
    pub error: Option<String>,
}

impl AttachPrompt {
    pub fn new(label: String, group: Option<GroupId>) -> Self {
        Self {
            label,
            group,
            path: TextArea::default(),
            candidates: Vec::new(),
            error: None,
        }
    }

    pub fn text(&self) -> String {
        self.path.lines().join("")
    }

    /// Replaces what is typed, with the cursor at its end.
    pub fn set_text(&mut self, text: &str) {
        let mut path = TextArea::new(vec![text.to_owned()]);
        path.move_cursor(ratatui_textarea::CursorMove::End);
        self.path = path;
    }
}

/// A file to send, as the prompt hands it to the worker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileToSend {
    /// As typed (`~` is expanded by the worker).
    pub path: PathBuf,
    pub caption: Option<String>,
}
