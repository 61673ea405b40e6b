//! Everything that can happen to the app: terminal input, the clock, and
//! results from the network worker. [`super::update`] turns each into state
//! changes and [`super::Command`]s.

use std::time::Duration;

use chrono::{DateTime, Utc};
use crossterm::event::{KeyEvent, MouseEvent};
use kavro_proto::MessageId;

use super::state::{ContactEntry, KeysView, Me, MemberView, MessageView, SendStatus};
use crate::history::LocalId;
use crate::pinning::KeyState;

#[derive(Debug, Clone)]
pub enum Action {
    Key(KeyEvent),
    Mouse(MouseEvent),
    Paste(String),
    Resize(u16, u16),
    /// The clock moved on (once a second).
    Tick(DateTime<Utc>),
    Net(NetEvent),
}

/// What the network worker reports back.
#[derive(Debug, Clone)]
pub enum NetEvent {
    /// The account and its contacts, once at start (and after logging in).
    Ready { me: Me, contacts: Vec<ContactEntry> },
    /// The local history of one conversation, oldest first.
    History {
        peer: String,
        messages: Vec<MessageView>,
    },
    /// A sync finished: newly received messages, by conversation.
    Synced {
        at: DateTime<Utc>,
        received: Vec<(String, MessageView)>,
    },
    /// A sync failed; the worker retries after `retry_in`.
    SyncFailed {
        reason: String,
        rate_limited: bool,
        retry_in: Duration,
    },
    /// The answer to [`super::Command::Send`].
    Sent {
        pending: u64,
        peer: String,
        outcome: SendOutcome,
    },
    /// A delivery receipt, or a retried send that went through.
    Status {
        peer: String,
        local_id: LocalId,
        status: SendStatus,
    },
    /// A contact's keys, for the fingerprint view.
    Keys(KeysView),
    /// A contact's key state changed (trusted, or a change was seen).
    KeyState { peer: String, state: KeyState },
    /// Key states read after a sync (new contacts pinned, changes seen).
    ContactStates(Vec<(String, KeyState)>),
    /// A new conversation could be opened (the user exists).
    Opened { peer: String, state: KeyState },
    /// Something the user asked for failed.
    Failed(String),
    /// Logging in from the form worked.
    LoggedIn,
    /// Logging in from the form failed.
    LoginFailed(String),
    /// From the worker's Kavro v2 side.
    V2(V2Event),
    /// What Tab found for `typed` in the attach prompt.
    Completed {
        typed: String,
        completion: super::complete::Completion,
    },
    /// The thumbnail of picture attachment `id`, or why it did not decode.
    Picture {
        id: i64,
        image: Result<image::DynamicImage, String>,
    },
}

/// What the worker's Kavro v2 side reports.
#[derive(Debug, Clone)]
pub enum V2Event {
    /// The v2 conversations (after opening the device, a sync that changed
    /// something, or an operation), with the time of each one's last line.
    Conversations(Vec<ContactEntry>),
    /// A conversation's whole local history (it replaces what is shown).
    History {
        label: String,
        messages: Vec<MessageView>,
    },
    /// Texts that came in a sync, by conversation label.
    Received(Vec<(String, String)>),
    /// The answer to a send: the history with the message, or why not.
    Sent {
        pending: u64,
        label: String,
        outcome: Result<Vec<MessageView>, String>,
    },
    /// A send kept in the v2 outbox that the relay could not take now: the
    /// next sync posts it (and its history then shows it).
    Queued {
        pending: u64,
        label: String,
        reason: String,
    },
    /// The members of a conversation with their devices.
    Members {
        group: kavro_proto::v2::GroupId,
        members: Vec<MemberView>,
    },
    /// How far the upload of file send `pending` has got.
    Upload {
        pending: u64,
        label: String,
        percent: u8,
        /// The file's size.
        size: u64,
    },
    /// Received files were saved (or refused): the notice to show.
    Saved(String),
    /// An operation from a dialog worked; what to say.
    Done(String),
    /// An operation from a dialog failed; why.
    Failed(String),
}

/// How a send ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendOutcome {
    Stored {
        local_id: LocalId,
        relay_id: MessageId,
        sent_at: DateTime<Utc>,
    },
    /// Not confirmed by the relay; in the outbox, retried automatically.
    Queued { reason: String },
    /// Nothing was sent, for the given reason.
    Refused { reason: String, key_changed: bool },
}
