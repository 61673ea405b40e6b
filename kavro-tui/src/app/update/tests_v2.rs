//! `update` tests for Kavro v2 in the app: groups in the list, opening and
//! sending, the dialogs and the member list, notifications, search.

use crossterm::event::KeyCode;

use super::update;
use crate::app::action::{Action, NetEvent, V2Event};
use crate::app::command::{Command, V2Command};
use crate::app::fixtures::{
    alt, ctrl, key, line, ready, received, t0, team, team_id, type_text, with_team,
};
use crate::app::state::{
    AppSettings, DeviceView, Focus, FormKind, Mark, MemberView, NoticeKind, Overlay, SendStatus,
    State, ViewId,
};

fn v2(state: &mut State, event: V2Event) -> Vec<Command> {
    update(state, Action::Net(NetEvent::V2(event)))
}

/// `with_team`, with `#team` open.
fn team_open() -> State {
    let mut state = with_team();
    let index = state.contact_index("#team").unwrap();
    state.selected = index;
    state
}

fn notice_text(state: &State) -> String {
    state
        .notice
        .as_ref()
        .map(|n| n.text.clone())
        .unwrap_or_default()
}

#[test]
fn groups_join_the_list_with_their_members_and_the_open_chat_stays() {
    let state = with_team();
    assert!(state.v2);
    assert_eq!(state.current().unwrap().name, "bob", "the selection stays");
    let team = &state.contacts[state.contact_index("#team").unwrap()];
    assert_eq!(team.group.as_ref().unwrap().members.len(), 3);
    assert_eq!(state.conversation("#team").unwrap().messages.len(), 4);
}

#[test]
fn the_first_conversation_opens_when_the_list_was_empty() {
    let mut state = ready();
    state.contacts.clear();
    state.conversations.clear();
    state.selected = 0;
    let commands = v2(&mut state, V2Event::Conversations(vec![team(true)]));
    assert_eq!(
        commands,
        vec![Command::V2(V2Command::LoadHistory {
            group: team_id(),
            label: "#team".into()
        })]
    );
}

#[test]
fn selecting_a_group_loads_its_history_through_v2() {
    let mut state = ready();
    v2(&mut state, V2Event::Conversations(vec![team(true)]));
    let index = state.contact_index("#team").unwrap();
    state.focus = Focus::Contacts;
    state.selected = usize::from(index == 0);
    let commands = update(&mut state, key(KeyCode::Home));
    assert_eq!(state.current().unwrap().name, "#team");
    assert_eq!(
        commands,
        vec![Command::V2(V2Command::LoadHistory {
            group: team_id(),
            label: "#team".into()
        })]
    );
}

#[test]
fn enter_in_a_group_sends_through_v2_and_the_history_replaces_the_pending_line() {
    let mut state = team_open();
    type_text(&mut state, "see you at noon");
    let commands = update(&mut state, key(KeyCode::Enter));
    assert_eq!(
        commands,
        vec![Command::V2(V2Command::Send {
            pending: 1,
            group: team_id(),
            label: "#team".into(),
            text: "see you at noon".into()
        })]
    );
    let shown = state
        .conversation("#team")
        .unwrap()
        .messages
        .last()
        .cloned();
    assert_eq!(shown.unwrap().status, Some(SendStatus::Sending));

    let mut sent = line(4, "alice", "see you at noon", Mark::Own);
    sent.status = Some(SendStatus::Stored);
    v2(
        &mut state,
        V2Event::Sent {
            pending: 1,
            label: "#team".into(),
            outcome: Ok(vec![sent.clone()]),
        },
    );
    assert_eq!(state.conversation("#team").unwrap().messages, vec![sent]);
}

#[test]
fn a_refused_group_send_is_marked_failed_with_the_reason() {
    let mut state = team_open();
    type_text(&mut state, "x");
    update(&mut state, key(KeyCode::Enter));
    v2(
        &mut state,
        V2Event::Sent {
            pending: 1,
            label: "#team".into(),
            outcome: Err("the group kept changing; try again".into()),
        },
    );
    let last = state
        .conversation("#team")
        .unwrap()
        .messages
        .last()
        .cloned();
    assert!(
        matches!(last.unwrap().status, Some(SendStatus::Failed(r)) if r.contains("kept changing"))
    );
    assert_eq!(state.notice.as_ref().unwrap().kind, NoticeKind::Error);
}

#[test]
fn a_group_this_device_left_refuses_to_send() {
    let mut state = ready();
    v2(&mut state, V2Event::Conversations(vec![team(false)]));
    state.selected = state.contact_index("#team").unwrap();
    type_text(&mut state, "anyone?");
    assert!(update(&mut state, key(KeyCode::Enter)).is_empty());
    assert!(notice_text(&state).contains("no longer a member"));
}

#[test]
fn a_text_in_another_conversation_counts_as_unread_and_notifies() {
    let mut state = with_team();
    let commands = v2(
        &mut state,
        V2Event::Received(vec![("#team".into(), "carol".into())]),
    );
    assert_eq!(
        commands,
        vec![Command::Notify {
            title: "Kavro".into(),
            body: "New message from carol in #team".into()
        }]
    );
    let team = &state.contacts[state.contact_index("#team").unwrap()];
    assert_eq!(team.unread, 1);
    assert_eq!(state.contacts[0].name, "#team", "it moves to the top");
}

#[test]
fn a_text_in_the_conversation_on_screen_neither_counts_nor_notifies() {
    let mut state = team_open();
    let commands = v2(
        &mut state,
        V2Event::Received(vec![("#team".into(), "carol".into())]),
    );
    assert!(commands.is_empty());
    assert_eq!(state.current().unwrap().unread, 0);
}

#[test]
fn the_open_conversation_behind_the_list_on_a_narrow_screen_notifies() {
    let mut state = team_open();
    state.size = (40, 12);
    state.focus = Focus::Contacts;
    let commands = v2(
        &mut state,
        V2Event::Received(vec![("#team".into(), "carol".into())]),
    );
    assert_eq!(commands.len(), 1, "the pane is not drawn: {commands:?}");
}

#[test]
fn notifications_off_means_no_notification_but_the_unread_count_stays() {
    let mut state = with_team();
    state.settings = AppSettings {
        notifications: false,
    };
    let commands = v2(
        &mut state,
        V2Event::Received(vec![("#team".into(), "carol".into())]),
    );
    assert!(commands.is_empty());
    assert_eq!(
        state.contacts[state.contact_index("#team").unwrap()].unread,
        1
    );
}

#[test]
fn a_v1_message_in_another_conversation_notifies_too() {
    let mut state = ready();
    let commands = update(
        &mut state,
        Action::Net(NetEvent::Synced {
            at: t0(),
            received: vec![("carol".into(), received(9, "carol", "psst", Mark::Pinned))],
        }),
    );
    assert_eq!(
        commands,
        vec![Command::Notify {
            title: "Kavro".into(),
            body: "New message from carol".into()
        }]
    );
}

#[test]
fn ctrl_o_toggles_notifications_and_saves_the_setting() {
    let mut state = ready();
    let commands = update(&mut state, ctrl('o'));
    assert!(!state.settings.notifications);
    assert_eq!(
        commands,
        vec![Command::SaveSettings(AppSettings {
            notifications: false
        })]
    );
    assert_eq!(notice_text(&state), "Notifications off");
    update(&mut state, ctrl('o'));
    assert!(state.settings.notifications);
}

#[test]
fn group_dialogs_need_a_v2_device() {
    let mut state = ready();
    assert!(update(&mut state, ctrl('g')).is_empty());
    assert!(state.overlay.is_none());
    assert!(notice_text(&state).contains("kavro device link"));
}

#[test]
fn ctrl_g_creates_a_group_from_its_name_and_members() {
    let mut state = with_team();
    update(&mut state, ctrl('g'));
    type_text(&mut state, "#lunch");
    update(&mut state, key(KeyCode::Enter)); // to the members field
    type_text(&mut state, "bob, carol bob");
    let commands = update(&mut state, key(KeyCode::Enter));
    assert_eq!(
        commands,
        vec![Command::V2(V2Command::CreateGroup {
            name: "lunch".into(),
            members: vec!["bob".into(), "carol".into()]
        })]
    );
    assert!(state.overlay.is_none());
    assert_eq!(notice_text(&state), "Creating #lunch…");
}

#[test]
fn a_bad_group_name_or_no_member_keeps_the_form_open_with_the_reason() {
    for (name, members, reason) in [
        ("two words", "bob", "no spaces"),
        ("", "bob", "1 to 40"),
        (&"x".repeat(41), "bob", "1 to 40"),
        ("lunch", "", "at least one"),
        ("lunch", "bob bad!name", "\"bad!name\""),
    ] {
        let mut state = with_team();
        update(&mut state, ctrl('g'));
        type_text(&mut state, name);
        update(&mut state, key(KeyCode::Tab));
        type_text(&mut state, members);
        assert!(update(&mut state, key(KeyCode::Enter)).is_empty());
        let Some(Overlay::Form(form)) = &state.overlay else {
            panic!("the form closed for {name:?}");
        };
        let error = form.error.clone().unwrap_or_default();
        assert!(error.contains(reason), "{name:?} {members:?}: {error}");
    }
}

#[test]
fn esc_closes_a_form_without_a_command() {
    let mut state = with_team();
    update(&mut state, ctrl('g'));
    type_text(&mut state, "lunch");
    assert!(update(&mut state, key(KeyCode::Esc)).is_empty());
    assert!(state.overlay.is_none());
}

#[test]
fn ctrl_f_on_a_group_lists_its_members_and_their_devices() {
    let mut state = team_open();
    let commands = update(&mut state, ctrl('f'));
    assert_eq!(
        commands,
        vec![Command::V2(V2Command::Members {
            group: team_id(),
            members: vec!["alice".into(), "bob".into(), "carol".into()]
        })]
    );
    let members = vec![MemberView {
        username: "bob".into(),
        devices: vec![DeviceView {
            id: kavro_proto::v2::MlsDeviceId(2),
            fingerprint: "ab12 cd34".into(),
            revoked: false,
            this_device: false,
        }],
        error: None,
    }];
    v2(
        &mut state,
        V2Event::Members {
            group: team_id(),
            members: members.clone(),
        },
    );
    assert!(
        matches!(&state.overlay, Some(Overlay::Members { view: Some(v), .. }) if *v == members)
    );
}

/// Opens the member list of `#team` and presses `key`.
fn from_members(c: char) -> State {
    let mut state = team_open();
    update(&mut state, ctrl('f'));
    update(&mut state, key(KeyCode::Char(c)));
    state
}

#[test]
fn the_member_list_opens_the_add_remove_rename_and_leave_dialogs() {
    let cases: [(char, &str, V2Command); 4] = [
        (
            'a',
            "dave",
            V2Command::AddMembers {
                group: team_id(),
                members: vec!["dave".into()],
            },
        ),
        (
            'r',
            "carol",
            V2Command::RemoveMembers {
                group: team_id(),
                members: vec!["carol".into()],
            },
        ),
        (
            'n',
            "lunch",
            V2Command::Rename {
                group: team_id(),
                name: "lunch".into(),
            },
        ),
        ('l', "", V2Command::Leave { group: team_id() }),
    ];
    for (c, typed, expected) in cases {
        let mut state = from_members(c);
        assert!(
            matches!(&state.overlay, Some(Overlay::Form(_))),
            "{c} opens a form"
        );
        type_text(&mut state, typed);
        let commands = update(&mut state, key(KeyCode::Enter));
        assert_eq!(commands, vec![Command::V2(expected)], "after {c}");
    }
}

#[test]
fn a_failed_member_list_closes_and_says_why() {
    let mut state = team_open();
    update(&mut state, ctrl('f'));
    v2(&mut state, V2Event::Failed("relay unreachable".into()));
    assert!(state.overlay.is_none());
    assert_eq!(notice_text(&state), "relay unreachable");
}

#[test]
fn ctrl_d_approves_a_device_link_code() {
    let mut state = with_team();
    update(&mut state, ctrl('d'));
    assert!(matches!(&state.overlay, Some(Overlay::Form(f)) if f.kind == FormKind::ApproveLink));
    assert!(
        update(&mut state, key(KeyCode::Enter)).is_empty(),
        "no code yet"
    );
    update(&mut state, Action::Paste("K7Q-2MX\n".into()));
    let commands = update(&mut state, key(KeyCode::Enter));
    assert_eq!(
        commands,
        vec![Command::V2(V2Command::ApproveLink {
            code: "K7Q-2MX".into()
        })]
    );
}

#[test]
fn a_rename_keeps_the_messages_and_the_selection() {
    let mut state = team_open();
    let mut renamed = team(true);
    renamed.name = "#lunch".into();
    v2(&mut state, V2Event::Conversations(vec![renamed]));
    assert_eq!(state.current().unwrap().name, "#lunch");
    assert_eq!(state.conversation("#lunch").unwrap().messages.len(), 4);
    assert!(state.conversation("#team").is_none());
}

#[test]
fn ctrl_n_with_a_group_name_opens_the_group() {
    let mut state = with_team();
    update(&mut state, ctrl('n'));
    type_text(&mut state, "#team");
    update(&mut state, key(KeyCode::Enter));
    assert_eq!(state.current().unwrap().name, "#team");
    assert_eq!(state.focus, Focus::Input);

    update(&mut state, ctrl('n'));
    type_text(&mut state, "#nope");
    assert!(update(&mut state, key(KeyCode::Enter)).is_empty());
    assert!(notice_text(&state).contains("No group #nope"));
}

#[test]
fn a_done_operation_says_so() {
    let mut state = with_team();
    v2(&mut state, V2Event::Done("Removed carol".into()));
    assert_eq!(notice_text(&state), "Removed carol");
    assert_eq!(state.notice.as_ref().unwrap().kind, NoticeKind::Info);
}

#[test]
fn slash_searches_the_open_conversation_newest_first() {
    let mut state = team_open();
    state.focus = Focus::Messages;
    update(&mut state, key(KeyCode::Char('/')));
    type_text(&mut state, "TEAM");
    let search = state.search.clone().unwrap();
    // "hello team" (1) and the system line "alice created the conversation" does not match.
    assert_eq!(search.matches, vec![1]);
    assert_eq!(search.shown(), Some(1));

    // A wider query ("te": "created" and "team"): the newest match first,
    // n older, N newer, wrapping.
    update(&mut state, key(KeyCode::Backspace));
    update(&mut state, key(KeyCode::Backspace));
    let search = state.search.clone().unwrap();
    assert_eq!(search.matches, vec![0, 1]);
    assert_eq!(search.shown(), Some(1));
    update(&mut state, key(KeyCode::Enter));
    update(&mut state, key(KeyCode::Char('n')));
    assert_eq!(state.search.as_ref().unwrap().shown(), Some(0));
    update(&mut state, key(KeyCode::Char('n')));
    assert_eq!(state.search.as_ref().unwrap().shown(), Some(1), "wraps");
    update(&mut state, key(KeyCode::Char('N')));
    assert_eq!(state.search.as_ref().unwrap().shown(), Some(0));
    update(&mut state, key(KeyCode::Esc));
    assert!(state.search.is_none());
    assert_eq!(state.focus, Focus::Messages, "Esc only left the search");
}

#[test]
fn a_search_without_a_match_says_so_and_switching_conversation_ends_it() {
    let mut state = team_open();
    state.focus = Focus::Contacts;
    update(&mut state, key(KeyCode::Char('/')));
    type_text(&mut state, "zebra");
    assert!(state.search.as_ref().unwrap().matches.is_empty());
    assert_eq!(state.search.as_ref().unwrap().shown(), None);
    update(&mut state, key(KeyCode::Enter));
    update(&mut state, alt(KeyCode::Down));
    assert!(state.search.is_none());
}

#[test]
fn a_search_scrolls_an_older_match_into_view() {
    let mut state = team_open();
    state.size = (40, 12);
    let messages: Vec<_> = (0..30)
        .map(|i| line(i, "bob", &format!("message number {i}"), Mark::Member))
        .collect();
    v2(
        &mut state,
        V2Event::History {
            label: "#team".into(),
            messages,
        },
    );
    state.focus = Focus::Messages;
    update(&mut state, key(KeyCode::Char('/')));
    type_text(&mut state, "number 3");
    // "number 3" is message 3 only (30+ do not exist): far up the history.
    assert_eq!(state.search.as_ref().unwrap().matches, vec![3]);
    assert!(state.conversation("#team").unwrap().scroll > 0);
    let id = state.conversation("#team").unwrap().messages[3].id;
    assert_eq!(id, ViewId::Line(3));
}

#[test]
fn a_queued_group_send_waits_for_its_history_line_and_is_never_resent() {
    let mut state = team_open();
    type_text(&mut state, "later is fine");
    update(&mut state, key(KeyCode::Enter));
    v2(
        &mut state,
        V2Event::Queued {
            pending: 1,
            label: "#team".into(),
            reason: "relay unreachable".into(),
        },
    );
    let pending = state
        .conversation("#team")
        .unwrap()
        .messages
        .last()
        .cloned()
        .unwrap();
    assert_eq!(
        pending.status,
        Some(SendStatus::Queued("relay unreachable".into()))
    );
    assert_eq!(state.notice.as_ref().unwrap().kind, NoticeKind::Info);
    // Ctrl-R retries the outbox; a queued line is not sent a second time.
    let commands = update(&mut state, crate::app::fixtures::ctrl('r'));
    assert!(
        !commands
            .iter()
            .any(|c| matches!(c, Command::V2(V2Command::Send { .. }))),
        "{commands:?}"
    );

    // A history without it (the relay is still away) keeps the line.
    let mut older = line(2, "alice", "later is fine", Mark::Own);
    older.sent_at = pending.sent_at - chrono::Duration::minutes(5);
    v2(
        &mut state,
        V2Event::History {
            label: "#team".into(),
            messages: vec![older.clone()],
        },
    );
    let shown = &state.conversation("#team").unwrap().messages;
    assert_eq!(
        shown.len(),
        2,
        "an older line with the same text is another message"
    );
    assert_eq!(shown[1].id, pending.id);

    // The sync that posted it brings its line: the queued one goes.
    let mut posted = line(3, "alice", "later is fine", Mark::Own);
    posted.sent_at = pending.sent_at + chrono::Duration::seconds(20);
    v2(
        &mut state,
        V2Event::History {
            label: "#team".into(),
            messages: vec![older.clone(), posted.clone()],
        },
    );
    assert_eq!(
        state.conversation("#team").unwrap().messages,
        vec![older, posted]
    );
}
