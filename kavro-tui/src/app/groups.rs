//! The chat app's Kavro v2 state: what a group entry carries, the group
//! dialogs (one small form type for all of them), the member list, the
//! search in a conversation, and the app's settings. Plain data, like
//! [`super::state`].

use kavro_proto::v2::{GroupId, MlsDeviceId};
use ratatui_textarea::TextArea;

/// A Kavro v2 conversation in the contact list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupInfo {
    pub id: GroupId,
    /// Usernames, sorted.
    pub members: Vec<String>,
    pub devices: usize,
    /// `false` once this device was removed (the history stays readable).
    pub active: bool,
    /// A named group (`#name`) rather than a 1:1 chat over MLS.
    pub named: bool,
}

/// Which v2 operation a [`Form`] asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FormKind {
    /// Fields: name, members (separated by spaces or commas).
    CreateGroup,
    /// Field: usernames.
    AddMembers { group: GroupId, label: String },
    /// Field: usernames.
    RemoveMembers { group: GroupId, label: String },
    /// Field: the new name.
    Rename { group: GroupId, label: String },
    /// No field: Enter confirms.
    Leave { group: GroupId, label: String },
    /// Field: the code `kavro device link` printed on the new installation.
    ApproveLink,
}

impl FormKind {
    /// The labels of the form's fields, in order.
    pub fn fields(&self) -> &'static [&'static str] {
        match self {
            Self::CreateGroup => &["Name", "Members"],
            Self::AddMembers { .. } | Self::RemoveMembers { .. } => &["Usernames"],
            Self::Rename { .. } => &["New name"],
            Self::Leave { .. } => &[],
            Self::ApproveLink => &["Code"],
        }
    }

    pub fn title(&self) -> String {
        match self {
            Self::CreateGroup => " New group ".to_owned(),
            Self::AddMembers { label, .. } => format!(" Add to {label} "),
            Self::RemoveMembers { label, .. } => format!(" Remove from {label} "),
            Self::Rename { label, .. } => format!(" Rename {label} "),
            Self::Leave { label, .. } => format!(" Leave {label}? "),
            Self::ApproveLink => " Approve a new device ".to_owned(),
        }
    }
}

/// A dialog of a few one-line fields.
#[derive(Debug, Clone)]
pub struct Form {
    pub kind: FormKind,
    pub inputs: Vec<TextArea<'static>>,
    /// Index of the field with the cursor.
    pub field: usize,
    /// Why the last Enter was refused.
    pub error: Option<String>,
}

impl Form {
    pub fn new(kind: FormKind) -> Self {
        let inputs = kind.fields().iter().map(|_| TextArea::default()).collect();
        Self {
            kind,
            inputs,
            field: 0,
            error: None,
        }
    }

    /// The text of field `index`, trimmed.
    pub fn value(&self, index: usize) -> String {
        self.inputs
            .get(index)
            .map(|i| i.lines().join("").trim().to_owned())
            .unwrap_or_default()
    }
}

/// One device of a member, as the member list shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceView {
    pub id: MlsDeviceId,
    pub fingerprint: String,
    pub revoked: bool,
    pub this_device: bool,
}

/// One member of a v2 conversation with their devices.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberView {
    pub username: String,
    pub devices: Vec<DeviceView>,
    /// Why the devices could not be listed.
    pub error: Option<String>,
}

/// `/` in the open conversation: the query and where its matches are.
#[derive(Debug, Clone)]
pub struct Search {
    pub query: TextArea<'static>,
    /// Still typing the query (Enter stops typing, n/N then move).
    pub typing: bool,
    /// Indexes of matching messages, oldest first.
    pub matches: Vec<usize>,
    /// Index into `matches` of the one shown.
    pub current: Option<usize>,
}

impl Default for Search {
    fn default() -> Self {
        Self {
            query: TextArea::default(),
            typing: true,
            matches: Vec::new(),
            current: None,
        }
    }
}

impl Search {
    pub fn text(&self) -> String {
        self.query.lines().join("")
    }

    /// The message index of the match shown.
    pub fn shown(&self) -> Option<usize> {
        self.current.and_then(|i| self.matches.get(i).copied())
    }
}

/// The app's settings (`app.toml` in the config directory; see `settings.rs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppSettings {
    /// Ring the bell (and notify the desktop, where there is one) for a
    /// message in a conversation that is not on screen.
    pub notifications: bool,
}

impl Default for AppSettings {
    fn default() -> Self {
        Self {
            notifications: true,
        }
    }
}
