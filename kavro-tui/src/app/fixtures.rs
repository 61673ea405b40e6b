//! Test fixtures shared by the `update` tests and the render snapshots:
//! the state after logging in, messages, and keys to press.

use chrono::{DateTime, FixedOffset, TimeZone as _, Utc};
use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use kavro_proto::MessageId;

use super::action::{Action, NetEvent};
use super::command::Command;
use super::state::{ContactEntry, Mark, Me, MessageView, State, ViewId};
use super::update::update;
use crate::history::LocalId;
use crate::pinning::KeyState;

pub fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 29, 12, 0, 0)
        .single()
        .unwrap()
}

pub fn contact(name: &str, state: KeyState) -> ContactEntry {
    ContactEntry::person(name.to_owned(), Some(state))
}

pub fn received(id: i64, author: &str, text: &str, mark: Mark) -> MessageView {
    MessageView {
        id: ViewId::Local(LocalId(id)),
        author: author.to_owned(),
        sent_at: t0() - chrono::Duration::minutes(5),
        text: Some(text.to_owned()),
        mark,
        status: None,
        relay_id: Some(MessageId(id)),
        attachment: None,
    }
}

/// Alice, logged in, with bob and carol in her contacts, bob's conversation open.
pub fn ready() -> State {
    let mut state = State::new(
        "http://127.0.0.1:8000".into(),
        t0(),
        FixedOffset::east_opt(0).unwrap(),
        false,
    );
    let commands = update(
        &mut state,
        Action::Net(NetEvent::Ready {
            me: Me {
                username: "alice".into(),
                server: "http://127.0.0.1:8000".into(),
                fingerprint: "a0b4 85a0 717c 4053".into(),
            },
            contacts: vec![
                contact("bob", KeyState::Verified),
                contact("carol", KeyState::Pinned),
            ],
        }),
    );
    assert_eq!(commands, vec![Command::LoadHistory { peer: "bob".into() }]);
    update(
        &mut state,
        Action::Net(NetEvent::History {
            peer: "bob".into(),
            messages: vec![received(1, "bob", "hi alice", Mark::Verified)],
        }),
    );
    state
}

/// A key press without modifiers.
pub fn key(code: KeyCode) -> Action {
    Action::Key(KeyEvent::new(code, KeyModifiers::NONE))
}

/// Ctrl and a character.
pub fn ctrl(c: char) -> Action {
    Action::Key(KeyEvent::new(KeyCode::Char(c), KeyModifiers::CONTROL))
}

/// Alt and a key.
pub fn alt(code: KeyCode) -> Action {
    Action::Key(KeyEvent::new(code, KeyModifiers::ALT))
}

/// Types `text` one character at a time.
pub fn type_text(state: &mut State, text: &str) {
    for c in text.chars() {
        update(state, key(KeyCode::Char(c)));
    }
}

/// The group id of `#team` in the fixtures.
pub fn team_id() -> kavro_proto::v2::GroupId {
    kavro_proto::v2::GroupId::from_bytes(b"team-group-id").unwrap()
}

/// `#team` (alice, bob, carol) as the worker lists it.
pub fn team(active: bool) -> ContactEntry {
    let mut entry = ContactEntry::person("#team".to_owned(), None);
    entry.last_activity = Some(t0() - chrono::Duration::minutes(1));
    entry.group = Some(super::state::GroupInfo {
        id: team_id(),
        members: vec!["alice".into(), "bob".into(), "carol".into()],
        devices: 3,
        active,
        named: true,
    });
    entry
}

/// A line of a v2 conversation.
pub fn line(index: usize, author: &str, text: &str, mark: Mark) -> MessageView {
    MessageView {
        id: ViewId::Line(index),
        author: author.to_owned(),
        sent_at: t0() - chrono::Duration::minutes(3),
        text: Some(text.to_owned()),
        mark,
        status: None,
        relay_id: None,
        attachment: None,
    }
}

/// [`ready`], on a Kavro v2 device whose `#team` has a few lines; bob's
/// conversation stays open.
pub fn with_team() -> State {
    let mut state = ready();
    update(
        &mut state,
        Action::Net(NetEvent::V2(super::action::V2Event::Conversations(vec![
            team(true),
        ]))),
    );
    update(
        &mut state,
        Action::Net(NetEvent::V2(super::action::V2Event::History {
            label: "#team".into(),
            messages: vec![
                line(0, "alice", "alice created the conversation", Mark::System),
                line(1, "bob", "hello team", Mark::Member),
                line(2, "carol", "hi all, lunch at noon?", Mark::Member),
                line(3, "bob", "bob added a device", Mark::System),
            ],
        })),
    );
    state
}

/// The group id of alice's 1:1 over MLS with `name` in the fixtures.
pub fn direct_id(name: &str) -> kavro_proto::v2::GroupId {
    kavro_proto::v2::GroupId::from_bytes(format!("direct-{name}").as_bytes()).unwrap()
}

/// Alice's 1:1 over MLS with `name`, as the worker lists it (under the
/// person's name, in `direct`).
pub fn direct(name: &str) -> ContactEntry {
    let mut entry = ContactEntry::person(name.to_owned(), None);
    entry.last_activity = Some(t0() - chrono::Duration::minutes(2));
    entry.direct = Some(super::state::GroupInfo {
        id: direct_id(name),
        members: vec!["alice".into(), name.to_owned()],
        devices: 3,
        active: true,
        named: false,
    });
    entry
}

/// A v1 message of bob's conversation `minutes` before `t0`.
pub fn v1_at(id: i64, author: &str, text: &str, minutes: i64) -> MessageView {
    let mut message = received(id, author, text, Mark::Verified);
    if author == "alice" {
        message.mark = Mark::Own;
        message.status = Some(super::state::SendStatus::Delivered);
    }
    message.sent_at = t0() - chrono::Duration::minutes(minutes);
    message
}

/// A line of a 1:1 over MLS `minutes` before `t0`.
pub fn mls_at(index: usize, author: &str, text: &str, minutes: i64, mark: Mark) -> MessageView {
    let mut message = line(index, author, text, mark);
    if message.is_own() {
        message.status = Some(super::state::SendStatus::Stored);
    }
    message.sent_at = t0() - chrono::Duration::minutes(minutes);
    message
}

/// [`ready`] on a Kavro v2 device with a 1:1 over MLS with bob, whose
/// conversation (open) holds v1 messages and MLS lines, interleaved in time.
pub fn with_bob_direct() -> State {
    let mut state = ready();
    update(
        &mut state,
        Action::Net(NetEvent::History {
            peer: "bob".into(),
            messages: vec![
                v1_at(1, "bob", "hi alice (v1)", 30),
                v1_at(2, "alice", "hello bob (v1)", 20),
            ],
        }),
    );
    update(
        &mut state,
        Action::Net(NetEvent::V2(super::action::V2Event::Conversations(vec![
            direct("bob"),
        ]))),
    );
    update(
        &mut state,
        Action::Net(NetEvent::V2(super::action::V2Event::History {
            label: "bob".into(),
            messages: vec![
                mls_at(
                    0,
                    "alice",
                    "alice created the conversation",
                    25,
                    Mark::System,
                ),
                mls_at(1, "bob", "now over MLS", 10, Mark::Member),
            ],
        })),
    );
    state
}

/// An attachment line of a v2 conversation (sent when `author` is alice).
pub fn file_line(
    index: usize,
    author: &str,
    name: &str,
    status: super::state::AttachmentStatus,
) -> MessageView {
    let mut message = line(
        index,
        author,
        &format!("[file] {name} (2.0 KiB)"),
        Mark::Member,
    );
    message.attachment = Some(Box::new(super::state::AttachmentView {
        id: Some(i64::try_from(index).unwrap()),
        protocol: super::attachments::FileProtocol::V2,
        name: name.into(),
        size: 2048,
        media_type: "application/pdf".into(),
        outgoing: author == "alice",
        status,
        caption: None,
    }));
    message
}
