//! What [`super::update`] asks the network worker to do. Commands are plain
//! data, so `update` stays pure and testable.

use kavro_proto::MessageId;
use kavro_proto::crypto::IdentityPublic;
use kavro_proto::v2::GroupId;

use crate::history::LocalId;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Send `text` to the person `peer`; the worker chooses the way, as
    /// `kavro send` does: over their 1:1 MLS conversation (answered with
    /// `V2Event::Sent { pending, .. }`) when this installation is a v2 device
    /// and `peer`'s account has active v2 devices, else over the v1 box
    /// (answered with `NetEvent::Sent { pending, .. }`).
    Send {
        pending: u64,
        peer: String,
        text: String,
    },
    /// Read a conversation's local v1 history.
    LoadHistory { peer: String },
    /// Look a user up and open a conversation with them.
    OpenConversation { name: String },
    /// Fetch a contact's keys and safety number.
    LoadKeys { peer: String },
    /// Accept a contact's (new) key after comparing safety numbers: exactly
    /// `key`, the one whose number was shown.
    Trust { peer: String, key: IdentityPublic },
    /// Send what is waiting in the outbox now.
    RetryOutbox,
    /// Ask the relay whether messages we sent to `peer` that are not
    /// delivered yet (`(local id, relay id)`) have been.
    CheckDeliveries {
        peer: String,
        messages: Vec<(LocalId, MessageId)>,
    },
    /// Log in (or register) from the form.
    Login {
        username: String,
        password: String,
        register: bool,
        /// The invite code typed when registering, if any.
        invite: Option<String>,
    },
    /// A Kavro v2 operation (the worker's v2 side).
    V2(V2Command),
    /// A message came into a conversation that is not on screen: ring the
    /// bell (and notify the desktop where there is one).
    Notify { title: String, body: String },
    /// Keep the settings (in `app.toml`).
    SaveSettings(super::state::AppSettings),
    /// Complete the path typed in the attach prompt (answered with
    /// `NetEvent::Completed`).
    Complete { typed: String },
    /// Open a saved file with the desktop's program for it (`xdg-open`,
    /// `open` on macOS); a failure comes back as `NetEvent::Failed`.
    OpenFile { path: String },
    /// Decode a saved picture into a thumbnail (answered with
    /// `NetEvent::Picture`).
    LoadPicture { id: i64, path: String },
    /// Download the files received in v1 file envelopes not saved yet, now.
    SaveV1Files,
}

/// What the worker's v2 side does; each answers with a `NetEvent::V2`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum V2Command {
    /// Send `text` to the conversation shown as `label`.
    Send {
        pending: u64,
        group: GroupId,
        label: String,
        text: String,
    },
    /// Seal, upload and send a file to the conversation shown as `label`
    /// (`group` `None`: the person's 1:1, found or made as `kavro send
    /// --file` does); answered with `V2Event::Upload` while it moves, then
    /// `V2Event::Sent { pending, .. }`.
    SendFile {
        pending: u64,
        group: Option<GroupId>,
        label: String,
        file: super::attachments::FileToSend,
    },
    /// Download the received files not saved yet, now.
    SaveAttachments,
    LoadHistory {
        group: GroupId,
        label: String,
    },
    CreateGroup {
        name: String,
        members: Vec<String>,
    },
    AddMembers {
        group: GroupId,
        members: Vec<String>,
    },
    RemoveMembers {
        group: GroupId,
        members: Vec<String>,
    },
    Rename {
        group: GroupId,
        name: String,
    },
    Leave {
        group: GroupId,
    },
    /// List the members' devices.
    Members {
        group: GroupId,
        members: Vec<String>,
    },
    ApproveLink {
        code: String,
    },
    /// Mark `peer`'s Kavro v2 root as verified if `number` is still the
    /// safety number over both roots.
    TrustRoot {
        peer: String,
        number: kavro_proto::crypto::SafetyNumber,
    },
}
