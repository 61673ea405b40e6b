//! Snapshots of the Kavro v2 screens (groups in the list, system lines, the
//! group dialogs, the member list, search, a person's v1 and MLS messages in
//! one conversation) at 80×24 and 40×12.

use crossterm::event::KeyCode;
use ratatui::Terminal;
use ratatui::backend::TestBackend;

use crate::app::fixtures::{ctrl, key, type_text, with_bob_direct, with_team};
use crate::app::state::{DeviceView, Focus, MemberView, Overlay, State};
use crate::app::update::update;

fn draw(state: &mut State, width: u16, height: u16) -> String {
    state.size = (width, height);
    let mut terminal = Terminal::new(TestBackend::new(width, height)).expect("test terminal");
    terminal
        .draw(|frame| super::render(frame, state))
        .expect("draw");
    terminal.backend().to_string()
}

fn both(name: &str, mut state: State) {
    insta::assert_snapshot!(format!("{name}_80x24"), draw(&mut state, 80, 24));
    insta::assert_snapshot!(format!("{name}_40x12"), draw(&mut state, 40, 12));
}

/// `#team` open, with an unread count on carol's chat.
fn team_open() -> State {
    let mut state = with_team();
    state.selected = state.contact_index("#team").expect("listed");
    if let Some(index) = state.contact_index("carol") {
        state.contacts[index].unread = 2;
    }
    state.last_sync = Some(crate::app::fixtures::t0());
    state.connection = crate::app::state::Connection::Online;
    state
}

#[test]
fn group_conversation_with_system_lines() {
    both("group", team_open());
}

#[test]
fn new_group_dialog() {
    let mut state = team_open();
    update(&mut state, ctrl('g'));
    type_text(&mut state, "lunch");
    update(&mut state, key(KeyCode::Tab));
    type_text(&mut state, "bob carol");
    both("new_group", state);
}

#[test]
fn new_group_dialog_with_an_error() {
    let mut state = team_open();
    update(&mut state, ctrl('g'));
    type_text(&mut state, "two words");
    update(&mut state, key(KeyCode::Tab));
    type_text(&mut state, "bob");
    update(&mut state, key(KeyCode::Enter));
    insta::assert_snapshot!("new_group_error_80x24", draw(&mut state, 80, 24));
}

#[test]
fn member_list_with_devices() {
    let mut state = team_open();
    update(&mut state, ctrl('f'));
    let device = |id: i64, fingerprint: &str, revoked: bool, this_device: bool| DeviceView {
        id: kavro_proto::v2::MlsDeviceId(id),
        fingerprint: fingerprint.into(),
        revoked,
        this_device,
    };
    if let Some(Overlay::Members { view, .. }) = state.overlay.as_mut() {
        *view = Some(vec![
            MemberView {
                username: "alice".into(),
                devices: vec![device(1, "3f2a 9c01 77de 4b10 a5e2", false, true)],
                error: None,
            },
            MemberView {
                username: "bob".into(),
                devices: vec![
                    device(2, "b0b1 2c3d 4e5f 6071 8293", false, false),
                    device(5, "b0b2 aa10 c4d2 9e01 7f33", true, false),
                ],
                error: None,
            },
            MemberView {
                username: "carol".into(),
                devices: Vec::new(),
                error: Some("relay unreachable".into()),
            },
        ]);
    }
    both("members", state);
}

#[test]
fn member_list_loading() {
    let mut state = team_open();
    update(&mut state, ctrl('f'));
    insta::assert_snapshot!("members_loading_80x24", draw(&mut state, 80, 24));
}

#[test]
fn leave_and_approve_dialogs() {
    let mut state = team_open();
    update(&mut state, ctrl('f'));
    update(&mut state, key(KeyCode::Char('l')));
    insta::assert_snapshot!("leave_80x24", draw(&mut state, 80, 24));
    let mut state = team_open();
    update(&mut state, ctrl('d'));
    type_text(&mut state, "K7Q-2MX");
    both("approve", state);
}

#[test]
fn search_in_a_group() {
    let mut state = team_open();
    state.focus = Focus::Messages;
    update(&mut state, key(KeyCode::Char('/')));
    type_text(&mut state, "team");
    both("search_typing", state.clone());
    update(&mut state, key(KeyCode::Enter));
    insta::assert_snapshot!("search_80x24", draw(&mut state, 80, 24));
}

#[test]
fn a_group_this_device_left() {
    let mut state = team_open();
    if let Some(group) = state.contacts[state.selected].group.as_mut() {
        group.active = false;
    }
    insta::assert_snapshot!("group_left_80x24", draw(&mut state, 80, 24));
}

/// Bob's one entry: the v1 messages (tagged `v1`, in text: the fixtures draw
/// without colour, as with NO_COLOR) and the 1:1 over MLS, in time order.
#[test]
fn a_person_with_v1_and_mls_messages() {
    let mut state = with_bob_direct();
    state.last_sync = Some(crate::app::fixtures::t0());
    state.connection = crate::app::state::Connection::Online;
    let screen = draw(&mut state, 80, 24);
    assert!(screen.contains("v1 bob"), "{screen}");
    assert!(!screen.contains("(mls)"), "{screen}");
    insta::assert_snapshot!("direct_merged_80x24", screen);
    insta::assert_snapshot!("direct_merged_40x12", draw(&mut state, 40, 12));
}
