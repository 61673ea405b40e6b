//! Snapshots of the screen, drawn into ratatui's `TestBackend` at 80×24 and
//! at 40×12: review changes with `cargo insta review`.

use chrono::Duration;
use ratatui::Terminal;
use ratatui::backend::TestBackend;

use crate::app::action::{Action, NetEvent, SendOutcome};
use crossterm::event::KeyCode;

use crate::app::fixtures::{key, ready, received, t0, type_text};
use crate::app::state::{Connection, Focus, Mark, Overlay, Screen, State};
use crate::app::update::update;
use crate::pinning::KeyState;

fn draw(state: &mut State, width: u16, height: u16) -> String {
    state.size = (width, height);
    let mut terminal = Terminal::new(TestBackend::new(width, height)).expect("test terminal");
    terminal
        .draw(|frame| super::render(frame, state))
        .expect("draw");
    terminal.backend().to_string()
}

/// Each scene at both sizes.
fn both(name: &str, mut state: State) {
    insta::assert_snapshot!(format!("{name}_80x24"), draw(&mut state, 80, 24));
    insta::assert_snapshot!(format!("{name}_40x12"), draw(&mut state, 40, 12));
}

fn fresh() -> State {
    let mut state = ready();
    state.contacts.clear();
    state.conversations.clear();
    state.selected = 0;
    state
}

fn conversation() -> State {
    let mut state = ready();
    update(
        &mut state,
        Action::Net(NetEvent::History {
            peer: "bob".into(),
            messages: vec![
                received(
                    1,
                    "bob",
                    "Hi Alice, this message is verified.",
                    Mark::Verified,
                ),
                received(2, "bob", "This one came from an old client.", Mark::Legacy),
                received(
                    3,
                    "bob",
                    "",
                    Mark::Undecryptable("it does not open with your key".into()),
                ),
            ],
        }),
    );
    if let Some(message) = state
        .conversations
        .get_mut("bob")
        .and_then(|c| c.messages.get_mut(2))
    {
        message.text = None;
    }
    update(
        &mut state,
        Action::Net(NetEvent::Synced {
            at: t0(),
            received: vec![],
        }),
    );
    state
}

#[test]
fn empty_state() {
    both("empty", fresh());
}

#[test]
fn verified_and_unverified_messages() {
    both("conversation", conversation());
}

#[test]
fn pinned_verified_legacy_and_refused_apart() {
    let mut state = ready();
    let mut refused = received(4, "bob", "", Mark::Refused);
    refused.text = None;
    update(
        &mut state,
        Action::Net(NetEvent::History {
            peer: "bob".into(),
            messages: vec![
                received(1, "bob", "Safety number compared.", Mark::Verified),
                received(2, "bob", "Key pinned, never compared.", Mark::Pinned),
                received(3, "bob", "From an old client.", Mark::Legacy),
                refused,
            ],
        }),
    );
    insta::assert_snapshot!("marks_80x24", draw(&mut state, 80, 24));
}

#[test]
fn emoji_and_cjk() {
    let mut state = ready();
    update(
        &mut state,
        Action::Net(NetEvent::History {
            peer: "bob".into(),
            messages: vec![
                received(
                    1,
                    "bob",
                    "お元気ですか？今日はとても良い天気ですね。散歩に行きましょう！",
                    Mark::Verified,
                ),
                received(2, "bob", "🎉🎉 party 👩‍👩‍👧 family 🇯🇵 flag", Mark::Verified),
                received(
                    3,
                    "bob",
                    "混合 text with 漢字 and a verylongwordthatmustbebrokenacrossthelines",
                    Mark::Verified,
                ),
            ],
        }),
    );
    both("wide_characters", state);
}

#[test]
fn key_changed_banner() {
    let mut state = conversation();
    update(
        &mut state,
        Action::Net(NetEvent::KeyState {
            peer: "bob".into(),
            state: KeyState::Changed,
        }),
    );
    state.notice = None;
    both("key_changed", state);
}

#[test]
fn help_screen() {
    let mut state = conversation();
    state.overlay = Some(Overlay::Help { scroll: 0 });
    both("help", state);
}

#[test]
fn pending_send() {
    let mut state = conversation();
    type_text(&mut state, "On its way");
    update(&mut state, key(KeyCode::Enter));
    both("pending_send", state);
}

#[test]
fn offline_status() {
    let mut state = conversation();
    type_text(&mut state, "Queued while offline");
    update(&mut state, key(KeyCode::Enter));
    update(
        &mut state,
        Action::Net(NetEvent::Sent {
            pending: 1,
            peer: "bob".into(),
            outcome: SendOutcome::Queued {
                reason: "relay unreachable".into(),
            },
        }),
    );
    state.connection = Connection::Offline {
        reason: "relay unreachable".into(),
        retry_at: t0() + Duration::seconds(8),
    };
    both("offline", state);
}

#[test]
fn contacts_pane_on_a_small_terminal() {
    let mut state = conversation();
    state.focus = Focus::Contacts;
    insta::assert_snapshot!("contacts_focus_40x12", draw(&mut state, 40, 12));
}

#[test]
fn login_form() {
    let mut state = fresh();
    state.me = None;
    state.screen = Screen::Login(Box::default());
    both("login", state);
}

/// The Ctrl-F view of bob's key (pinned), with `mls` for a Kavro v2 contact.
fn keys_of_bob(mls: Option<Box<crate::app::state::MlsKeysView>>) -> State {
    let mut state = conversation();
    state.overlay = Some(Overlay::Keys {
        peer: "bob".into(),
        view: Some(crate::app::state::KeysView {
            peer: "bob".into(),
            state: KeyState::Pinned,
            own_fingerprint: "a0b4 85a0 717c 4053 0ecb df42 b333 f45f".into(),
            fingerprint: "098c eb12 c8e8 2fed 0737 c08c 14f0 6ef6".into(),
            safety_number: vec![
                "26373 85818 49290 02529".into(),
                "49568 86079 75829 73102".into(),
                "99547 37459 69541 80197".into(),
            ],
            pending: None,
            key_shown: kavro_proto::crypto::IdentityPublic::from_bytes([7; 32]),
            mls,
        }),
    });
    state
}

#[test]
fn safety_number_dialog() {
    let mut state = keys_of_bob(None);
    insta::assert_snapshot!("safety_number_80x24", draw(&mut state, 80, 24));
}

#[test]
fn safety_number_dialog_of_a_one_to_one_over_mls() {
    let mut state = keys_of_bob(Some(Box::new(crate::app::state::MlsKeysView {
        number: kavro_proto::crypto::SafetyNumber::parse(
            "12345 67890 13579 24680 11111 22222 33333 44444 55555 66666 77777 88888",
        )
        .expect("twelve groups"),
        verified: false,
        devices: 2,
    })));
    insta::assert_snapshot!("safety_number_mls_80x24", draw(&mut state, 80, 24));
}
