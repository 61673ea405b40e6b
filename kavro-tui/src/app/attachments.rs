//! Attachments in the chat app (issue #14): what an attachment line shows
//! (name, size, direction, where it stands), the path prompt that sends one,
//! and the thumbnails of pictures. Plain data, like [`super::state`].

use std::path::PathBuf;

use kavro_proto::v2::GroupId;
use ratatui_textarea::TextArea;

use crate::mls::attachments::{AttachmentRow, AttachmentState};

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
    /// The row in `v2_attachments`; `None` while it is being uploaded.
    pub id: Option<i64>,
    pub name: String,
    pub size: u64,
    pub media_type: String,
    pub outgoing: bool,
    pub status: AttachmentStatus,
    pub caption: Option<String>,
}

impl AttachmentView {
    /// How a row of the local attachments table shows.
    pub fn from_row(row: &AttachmentRow) -> Self {
        let status = match (row.state, &row.saved_path, &row.error) {
            (AttachmentState::Saved, Some(path), _) => AttachmentStatus::Saved(path.clone()),
            (AttachmentState::Failed, _, error) => {
                AttachmentStatus::NotSaved(error.clone().unwrap_or_else(|| "refused".to_owned()))
            }
            _ => AttachmentStatus::OnRelay,
        };
        Self {
            id: Some(row.id),
            name: row.file.name.clone(),
            size: row.file.size,
            media_type: row.file.media_type.clone(),
            outgoing: row.outgoing,
            status,
            caption: row.caption.clone().filter(|c| !c.is_empty()),
        }
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
