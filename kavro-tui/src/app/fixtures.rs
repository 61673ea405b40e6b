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
    ContactEntry {
        name: name.to_owned(),
        key_state: Some(state),
        unread: 0,
        last_activity: None,
    }
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
