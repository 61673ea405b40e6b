//! The chat app's state: plain data that [`super::update`] changes and
//! [`crate::ui`] draws. Nothing here talks to the network or the terminal.

use std::collections::HashMap;

use chrono::{DateTime, FixedOffset, Utc};
use kavro_proto::MessageId;
use kavro_proto::crypto::IdentityPublic;
use kavro_proto::v2::GroupId;
use ratatui_textarea::TextArea;

pub use super::attachments::{AttachPrompt, AttachmentStatus, AttachmentView, FileProtocol};
pub use super::groups::{AppSettings, DeviceView, Form, FormKind, GroupInfo, MemberView, Search};
use crate::history::{LocalId, MessageState, OutgoingState, SenderMark, StoredMessage};
use crate::pinning::KeyState;

/// Which part of the screen keys go to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Focus {
    Contacts,
    Messages,
    Input,
}

/// How the app is connected to the relay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Connection {
    /// Not synced yet.
    Connecting,
    Online,
    /// The relay did not answer; the next try is at `retry_at`.
    Offline {
        reason: String,
        retry_at: DateTime<Utc>,
    },
    /// The relay asked us to slow down until `retry_at`.
    RateLimited {
        retry_at: DateTime<Utc>,
    },
}

/// The account this app runs as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Me {
    pub username: String,
    pub server: String,
    /// Short fingerprint of our own identity key.
    pub fingerprint: String,
}

/// A person in the contacts list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContactEntry {
    /// As the relay spells the name.
    pub name: String,
    /// `None` for a conversation whose key is not pinned yet (e.g. a legacy sender).
    pub key_state: Option<KeyState>,
    pub unread: usize,
    pub last_activity: Option<DateTime<Utc>>,
    /// Set for a named Kavro v2 (MLS) group; `name` is then its label.
    pub group: Option<GroupInfo>,
    /// A person's 1:1 MLS conversation, when there is one: it is shown in the
    /// person's own entry, merged with the v1 messages (one entry per person).
    pub direct: Option<GroupInfo>,
}

impl ContactEntry {
    /// A 1:1 chat over the v1 box.
    pub fn person(name: String, key_state: Option<KeyState>) -> Self {
        Self {
            name,
            key_state,
            unread: 0,
            last_activity: None,
            group: None,
            direct: None,
        }
    }
}

/// How far a message we sent has got.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendStatus {
    /// Handed to the network worker; no answer yet.
    Sending,
    /// In the outbox: the relay could not be reached; retried automatically.
    Queued(String),
    /// Stored on the relay.
    Stored,
    /// The recipient acknowledged it.
    Delivered,
    /// Refused for good, with the reason.
    Failed(String),
}

/// What we know about who wrote a received message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mark {
    /// Sent by us.
    Own,
    /// Made with the sender's key, whose safety number the user compared.
    Verified,
    /// Made with the sender's key pinned on first use, not compared.
    Pinned,
    /// From a legacy client: only the relay says who sent it.
    Legacy,
    /// A legacy message refused by the contact's setting (no text kept).
    Refused,
    /// Readable, sender not proven (names that do not match, a possible replay).
    Unverified,
    /// Made with a key other than the one pinned for the sender.
    KeyMismatch,
    /// Could not be decrypted; the reason.
    Undecryptable(String),
    /// From a member of a Kavro v2 conversation (MLS authenticated the device).
    Member,
    /// A line about the conversation itself (joins, removals, renames, devices).
    System,
}

/// Identifies a message on screen: a row of the local history, or a send
/// still on its way to the worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ViewId {
    Local(LocalId),
    Pending(u64),
    /// The n-th line of a Kavro v2 conversation's local history.
    Line(usize),
}

/// One message as the conversation pane shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageView {
    pub id: ViewId,
    pub author: String,
    pub sent_at: DateTime<Utc>,
    /// `None` when it could not be read.
    pub text: Option<String>,
    pub mark: Mark,
    /// For our own messages.
    pub status: Option<SendStatus>,
    pub relay_id: Option<MessageId>,
    /// Set for a file sent or received over Kavro v2 (`text` then holds
    /// its history line, which search finds).
    pub attachment: Option<Box<AttachmentView>>,
}

impl MessageView {
    pub fn is_own(&self) -> bool {
        self.mark == Mark::Own
    }

    /// Whether it is a message of the v1 local history (a send on its way
    /// is not known yet: the worker chooses v1 or MLS).
    pub fn is_v1(&self) -> bool {
        matches!(self.id, ViewId::Local(_))
    }

    /// How a message of the local history is shown; `me` is our username.
    pub fn from_stored(message: &StoredMessage, me: &str) -> Self {
        let reason = |fallback: &str| message.error.clone().unwrap_or_else(|| fallback.to_owned());
        let (mark, status, author) = match message.state {
            MessageState::Out(state) => (
                Mark::Own,
                Some(match state {
                    OutgoingState::Pending => SendStatus::Queued(reason("not sent yet")),
                    OutgoingState::Stored => SendStatus::Stored,
                    OutgoingState::Delivered => SendStatus::Delivered,
                    OutgoingState::Failed => SendStatus::Failed(reason("refused")),
                }),
                me.to_owned(),
            ),
            MessageState::In(_) => (
                match message.sender_mark() {
                    Some(SenderMark::Verified) => Mark::Verified,
                    Some(SenderMark::Pinned) => Mark::Pinned,
                    Some(SenderMark::Legacy) => Mark::Legacy,
                    Some(SenderMark::Refused) => Mark::Refused,
                    Some(SenderMark::Unverified) => Mark::Unverified,
                    Some(SenderMark::KeyMismatch) => Mark::KeyMismatch,
                    Some(SenderMark::Undecryptable) | None => {
                        Mark::Undecryptable(reason("it does not open with your key"))
                    }
                },
                None,
                Self::conversation_of(message),
            ),
        };
        Self {
            id: ViewId::Local(message.local_id),
            author,
            sent_at: message.sent_at,
            text: message.text.clone(),
            mark,
            status,
            relay_id: message.relay_id,
            attachment: None,
        }
    }

    /// The conversation a stored message belongs to: the peer's name, else
    /// `user #id`.
    pub fn conversation_of(message: &StoredMessage) -> String {
        message.peer.clone().unwrap_or_else(|| {
            message
                .peer_user_id
                .map_or_else(|| "unknown".to_owned(), |id| format!("user #{id}"))
        })
    }
}

/// The messages with one contact.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Conversation {
    pub messages: Vec<MessageView>,
    /// Lines scrolled up from the newest (0 = following new messages).
    pub scroll: usize,
    /// Whether the local history has been read in.
    pub loaded: bool,
    /// The attachment the save/open key acts on (`None`: the newest).
    pub selected_attachment: Option<ViewId>,
}

/// The safety-number view of one contact.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeysView {
    pub peer: String,
    pub state: KeyState,
    /// Our key's fingerprint.
    pub own_fingerprint: String,
    /// The pinned key's fingerprint and the safety number with it.
    pub fingerprint: String,
    pub safety_number: Vec<String>,
    /// When the key changed: the new key's fingerprint and safety number.
    pub pending: Option<(String, Vec<String>)>,
    /// The key whose safety number this view shows as the one to compare
    /// (the new key when it changed): `v` trusts exactly this key.
    pub key_shown: IdentityPublic,
    /// When the person's account has Kavro v2 devices (the 1:1 goes over
    /// MLS): the v2 safety number, which the view shows and `v` trusts instead.
    pub mls: Option<Box<MlsKeysView>>,
}

/// A Kavro v2 account's safety number with ours: over both accounts' root
/// device keys, so one comparison covers every device of both.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MlsKeysView {
    /// The number as shown (and as `v` trusts it: exactly this one).
    pub number: kavro_proto::crypto::SafetyNumber,
    pub verified: bool,
    /// Devices of the person's account in its chain, not revoked.
    pub devices: usize,
}

/// A dialog over the chat.
#[derive(Debug, Clone)]
pub enum Overlay {
    /// The key bindings, scrolled by `scroll` lines on small terminals.
    Help { scroll: u16 },
    /// Typing the username of a new conversation.
    NewConversation(Box<TextArea<'static>>),
    /// Loading, or showing, a contact's keys.
    Keys {
        peer: String,
        view: Option<KeysView>,
    },
    /// A Kavro v2 dialog: create a group, add, remove, rename, leave, approve a link.
    Form(Box<Form>),
    /// Loading, or showing, the members of a v2 conversation and their devices.
    Members {
        label: String,
        group: GroupId,
        view: Option<Vec<MemberView>>,
    },
    /// The path of a file to attach (Tab completes, Enter sends).
    Attach(Box<AttachPrompt>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoticeKind {
    Info,
    Error,
}

/// A one-line message in the status area, gone after a while.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    pub text: String,
    pub kind: NoticeKind,
    pub until: DateTime<Utc>,
}

/// Which field of the login form has the cursor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoginField {
    Username,
    Password,
    /// Shown when creating an account: the relay's invite code, if it asks.
    Invite,
}

/// The short form shown when the profile has no account yet.
#[derive(Debug, Clone)]
pub struct LoginForm {
    pub username: TextArea<'static>,
    pub password: TextArea<'static>,
    pub invite: TextArea<'static>,
    pub field: LoginField,
    /// Create an account rather than log in.
    pub register: bool,
    pub busy: bool,
    pub error: Option<String>,
}

impl Default for LoginForm {
    fn default() -> Self {
        let mut password = TextArea::default();
        password.set_mask_char('•');
        Self {
            username: TextArea::default(),
            password,
            invite: TextArea::default(),
            field: LoginField::Username,
            register: false,
            busy: false,
            error: None,
        }
    }
}

#[derive(Debug, Clone)]
pub enum Screen {
    Login(Box<LoginForm>),
    Chat,
}

/// Everything the app shows.
#[derive(Debug, Clone)]
pub struct State {
    pub screen: Screen,
    pub server: String,
    pub me: Option<Me>,
    pub contacts: Vec<ContactEntry>,
    /// Index into `contacts`.
    pub selected: usize,
    /// By lower-case contact name.
    pub conversations: HashMap<String, Conversation>,
    pub focus: Focus,
    pub input: TextArea<'static>,
    pub overlay: Option<Overlay>,
    pub connection: Connection,
    pub last_sync: Option<DateTime<Utc>>,
    pub notice: Option<Notice>,
    /// The current time (ticks move it), so drawing is a pure function of state.
    pub now: DateTime<Utc>,
    /// Local time zone offset, for showing times.
    pub offset: FixedOffset,
    /// False with `NO_COLOR`.
    pub color: bool,
    /// The terminal size, for paging.
    pub size: (u16, u16),
    pub should_quit: bool,
    /// Whether this installation is a Kavro v2 device (group dialogs work).
    pub v2: bool,
    /// `/` in the open conversation.
    pub search: Option<Search>,
    pub settings: AppSettings,
    /// Thumbnails of pictures shown inline, and the terminal's protocol.
    pub pictures: super::pictures::Pictures,
    next_pending: u64,
}

impl State {
    pub fn new(server: String, now: DateTime<Utc>, offset: FixedOffset, color: bool) -> Self {
        Self {
            screen: Screen::Chat,
            server,
            me: None,
            contacts: Vec::new(),
            selected: 0,
            conversations: HashMap::new(),
            focus: Focus::Input,
            input: TextArea::default(),
            overlay: None,
            connection: Connection::Connecting,
            last_sync: None,
            notice: None,
            now,
            offset,
            color,
            size: (80, 24),
            should_quit: false,
            v2: false,
            search: None,
            settings: AppSettings::default(),
            pictures: super::pictures::Pictures::default(),
            next_pending: 1,
        }
    }

    /// The contact whose conversation is open.
    pub fn current(&self) -> Option<&ContactEntry> {
        self.contacts.get(self.selected)
    }

    pub fn conversation(&self, name: &str) -> Option<&Conversation> {
        self.conversations.get(&name.to_ascii_lowercase())
    }

    pub fn conversation_mut(&mut self, name: &str) -> &mut Conversation {
        self.conversations
            .entry(name.to_ascii_lowercase())
            .or_default()
    }

    pub fn contact_index(&self, name: &str) -> Option<usize> {
        self.contacts
            .iter()
            .position(|c| c.name.eq_ignore_ascii_case(name))
    }

    /// A fresh id for a send not yet answered.
    pub fn next_pending_id(&mut self) -> u64 {
        let id = self.next_pending;
        self.next_pending += 1;
        id
    }

    /// Whether sending to the open conversation is blocked by a changed key.
    pub fn current_key_changed(&self) -> bool {
        self.current()
            .is_some_and(|c| c.key_state == Some(KeyState::Changed))
    }

    /// Whether the screen is narrow enough to show one pane at a time.
    pub fn is_narrow(&self) -> bool {
        self.size.0 < 60
    }
}
