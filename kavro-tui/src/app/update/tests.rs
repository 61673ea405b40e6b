//! `update` tests: every user action and every network result, on plain state.

use std::time::Duration;

use chrono::FixedOffset;
use crossterm::event::{
    KeyCode, KeyEvent, KeyEventKind, KeyEventState, KeyModifiers, MouseEvent, MouseEventKind,
};
use kavro_proto::MessageId;
use kavro_proto::crypto::IdentityPublic;

use super::update;
use crate::app::action::{Action, NetEvent, SendOutcome};
use crate::app::command::Command;
use crate::app::fixtures::{alt, ctrl, key, ready, received, t0, type_text};
use crate::app::state::{
    Connection, Focus, KeysView, LoginField, Mark, Me, NoticeKind, Overlay, Screen, SendStatus,
    State, ViewId,
};
use crate::history::LocalId;
use crate::pinning::KeyState;

#[test]
fn ready_opens_the_first_conversation_and_history_fills_it() {
    let state = ready();
    assert_eq!(state.current().map(|c| c.name.as_str()), Some("bob"));
    assert!(state.conversation("bob").unwrap().loaded);
    assert_eq!(state.focus, Focus::Input);
    assert_eq!(state.connection, Connection::Connecting);
}

#[test]
fn enter_sends_and_shows_the_message_as_sending() {
    let mut state = ready();
    type_text(&mut state, "hello bob");
    let commands = update(&mut state, key(KeyCode::Enter));
    assert_eq!(
        commands,
        vec![Command::Send {
            pending: 1,
            peer: "bob".into(),
            text: "hello bob".into()
        }]
    );
    let last = state
        .conversation("bob")
        .unwrap()
        .messages
        .last()
        .unwrap()
        .clone();
    assert_eq!(last.id, ViewId::Pending(1));
    assert_eq!(last.status, Some(SendStatus::Sending));
    assert!(state.input.is_empty(), "the input is cleared");
}

#[test]
fn alt_enter_and_ctrl_j_insert_line_breaks() {
    let mut state = ready();
    type_text(&mut state, "one");
    assert!(update(&mut state, alt(KeyCode::Enter)).is_empty());
    type_text(&mut state, "two");
    assert!(update(&mut state, ctrl('j')).is_empty());
    type_text(&mut state, "three");
    let commands = update(&mut state, key(KeyCode::Enter));
    assert!(matches!(&commands[0], Command::Send { text, .. } if text == "one\ntwo\nthree"));
}

#[test]
fn blank_input_sends_nothing() {
    let mut state = ready();
    type_text(&mut state, "   ");
    assert!(update(&mut state, key(KeyCode::Enter)).is_empty());
}

#[test]
fn send_results_move_the_message_along() {
    let mut state = ready();
    type_text(&mut state, "one");
    update(&mut state, key(KeyCode::Enter));
    type_text(&mut state, "two");
    update(&mut state, key(KeyCode::Enter));
    type_text(&mut state, "three");
    update(&mut state, key(KeyCode::Enter));
    let sent = |pending, outcome| {
        Action::Net(NetEvent::Sent {
            pending,
            peer: "bob".into(),
            outcome,
        })
    };
    update(
        &mut state,
        sent(
            1,
            SendOutcome::Stored {
                local_id: LocalId(10),
                relay_id: MessageId(99),
                sent_at: t0(),
            },
        ),
    );
    update(
        &mut state,
        sent(
            2,
            SendOutcome::Queued {
                reason: "relay unreachable".into(),
            },
        ),
    );
    update(
        &mut state,
        sent(
            3,
            SendOutcome::Refused {
                reason: "too long".into(),
                key_changed: false,
            },
        ),
    );
    let messages = &state.conversation("bob").unwrap().messages;
    assert_eq!(messages[1].id, ViewId::Local(LocalId(10)));
    assert_eq!(messages[1].status, Some(SendStatus::Stored));
    assert_eq!(messages[1].relay_id, Some(MessageId(99)));
    assert_eq!(
        messages[2].status,
        Some(SendStatus::Queued("relay unreachable".into()))
    );
    assert_eq!(
        messages[3].status,
        Some(SendStatus::Failed("too long".into()))
    );
    assert_eq!(state.notice.as_ref().unwrap().kind, NoticeKind::Error);
    // A delivery receipt.
    update(
        &mut state,
        Action::Net(NetEvent::Status {
            peer: "bob".into(),
            local_id: LocalId(10),
            status: SendStatus::Delivered,
        }),
    );
    assert_eq!(
        state.conversation("bob").unwrap().messages[1].status,
        Some(SendStatus::Delivered)
    );
}

#[test]
fn ctrl_r_retries_the_outbox_and_resends_failed_messages() {
    let mut state = ready();
    type_text(&mut state, "again");
    update(&mut state, key(KeyCode::Enter));
    update(
        &mut state,
        Action::Net(NetEvent::Sent {
            pending: 1,
            peer: "bob".into(),
            outcome: SendOutcome::Refused {
                reason: "refused".into(),
                key_changed: false,
            },
        }),
    );
    let commands = update(&mut state, ctrl('r'));
    assert_eq!(commands[0], Command::RetryOutbox);
    assert!(matches!(&commands[1], Command::Send { text, pending: 2, .. } if text == "again"));
    let statuses: Vec<_> = state
        .conversation("bob")
        .unwrap()
        .messages
        .iter()
        .filter_map(|m| m.status.clone())
        .collect();
    assert_eq!(statuses, vec![SendStatus::Sending]);
}

#[test]
fn a_changed_key_blocks_sending_until_trusted() {
    let mut state = ready();
    type_text(&mut state, "secret");
    update(&mut state, key(KeyCode::Enter));
    update(
        &mut state,
        Action::Net(NetEvent::Sent {
            pending: 1,
            peer: "bob".into(),
            outcome: SendOutcome::Refused {
                reason: "bob's key changed".into(),
                key_changed: true,
            },
        }),
    );
    assert!(state.current_key_changed());
    type_text(&mut state, "more");
    assert!(
        update(&mut state, key(KeyCode::Enter)).is_empty(),
        "blocked"
    );
    assert!(state.notice.as_ref().unwrap().text.contains("key changed"));
    // Ctrl-F shows the keys; v trusts.
    assert_eq!(
        update(&mut state, ctrl('f')),
        vec![Command::LoadKeys { peer: "bob".into() }]
    );
    assert!(
        update(&mut state, key(KeyCode::Char('v'))).is_empty(),
        "nothing to trust until the keys are shown"
    );
    update(
        &mut state,
        Action::Net(NetEvent::Keys(KeysView {
            peer: "bob".into(),
            state: KeyState::Changed,
            own_fingerprint: "aa".into(),
            fingerprint: "bb".into(),
            safety_number: vec!["1".into()],
            pending: Some(("cc".into(), vec!["2".into()])),
            key_shown: IdentityPublic::from_bytes([0xcc; 32]),
            mls: None,
        })),
    );
    assert_eq!(
        update(&mut state, key(KeyCode::Char('v'))),
        vec![Command::Trust {
            peer: "bob".into(),
            key: IdentityPublic::from_bytes([0xcc; 32]),
        }],
        "v trusts the key whose number was shown"
    );
    assert!(state.overlay.is_none());
    update(
        &mut state,
        Action::Net(NetEvent::KeyState {
            peer: "bob".into(),
            state: KeyState::Verified,
        }),
    );
    assert!(!state.current_key_changed());
    assert!(matches!(
        update(&mut state, key(KeyCode::Enter)).first(),
        Some(Command::Send { .. })
    ));
}

#[test]
fn new_conversation_by_username() {
    let mut state = ready();
    update(&mut state, ctrl('n'));
    assert!(matches!(state.overlay, Some(Overlay::NewConversation(_))));
    type_text(&mut state, "dave");
    let commands = update(&mut state, key(KeyCode::Enter));
    assert_eq!(
        commands,
        vec![Command::OpenConversation {
            name: "dave".into()
        }]
    );
    let commands = update(
        &mut state,
        Action::Net(NetEvent::Opened {
            peer: "Dave".into(),
            state: KeyState::Pinned,
        }),
    );
    assert_eq!(state.current().unwrap().name, "Dave");
    assert_eq!(
        commands,
        vec![Command::LoadHistory {
            peer: "Dave".into()
        }]
    );
    // An existing contact just opens; a bad name is refused at once.
    update(&mut state, ctrl('n'));
    type_text(&mut state, "CAROL");
    let commands = update(&mut state, key(KeyCode::Enter));
    assert_eq!(state.current().unwrap().name, "carol");
    assert_eq!(
        commands,
        vec![Command::LoadHistory {
            peer: "carol".into()
        }]
    );
    update(&mut state, ctrl('n'));
    type_text(&mut state, "no way!");
    assert!(update(&mut state, key(KeyCode::Enter)).is_empty());
    assert_eq!(state.notice.as_ref().unwrap().kind, NoticeKind::Error);
    // Esc cancels.
    update(&mut state, ctrl('n'));
    update(&mut state, key(KeyCode::Esc));
    assert!(state.overlay.is_none());
}

#[test]
fn a_failed_lookup_is_reported() {
    let mut state = ready();
    update(
        &mut state,
        Action::Net(NetEvent::Failed("there is no user named \"zed\"".into())),
    );
    assert!(state.notice.as_ref().unwrap().text.contains("zed"));
}

#[test]
fn tab_cycles_panes_and_arrows_move() {
    let mut state = ready();
    update(&mut state, key(KeyCode::Tab));
    assert_eq!(state.focus, Focus::Contacts);
    update(&mut state, key(KeyCode::Tab));
    assert_eq!(state.focus, Focus::Messages);
    update(&mut state, key(KeyCode::BackTab));
    assert_eq!(state.focus, Focus::Contacts);
    let commands = update(&mut state, key(KeyCode::Down));
    assert_eq!(state.current().unwrap().name, "carol");
    assert_eq!(
        commands,
        vec![Command::LoadHistory {
            peer: "carol".into()
        }]
    );
    update(&mut state, key(KeyCode::Up));
    assert_eq!(state.current().unwrap().name, "bob");
    update(&mut state, key(KeyCode::End));
    assert_eq!(state.selected, 1);
    update(&mut state, key(KeyCode::Home));
    assert_eq!(state.selected, 0);
    update(&mut state, alt(KeyCode::Down));
    assert_eq!(state.selected, 1);
    update(&mut state, key(KeyCode::Enter));
    assert_eq!(state.focus, Focus::Input);
}

#[test]
fn scrolling_is_clamped_to_the_history() {
    let mut state = ready();
    let many: Vec<_> = (0..100)
        .map(|i| received(i, "bob", &format!("message {i}"), Mark::Verified))
        .collect();
    update(
        &mut state,
        Action::Net(NetEvent::History {
            peer: "bob".into(),
            messages: many,
        }),
    );
    update(&mut state, key(KeyCode::PageUp));
    let after_page = state.conversation("bob").unwrap().scroll;
    assert_eq!(after_page, 16, "a page is the pane's height");
    update(&mut state, key(KeyCode::Tab));
    update(&mut state, key(KeyCode::Tab));
    update(&mut state, key(KeyCode::Home));
    let top = state.conversation("bob").unwrap().scroll;
    assert_eq!(top, crate::ui::max_scroll(&state));
    update(&mut state, key(KeyCode::Down));
    assert_eq!(state.conversation("bob").unwrap().scroll, top - 1);
    update(&mut state, key(KeyCode::End));
    assert_eq!(state.conversation("bob").unwrap().scroll, 0);
    update(
        &mut state,
        Action::Mouse(MouseEvent {
            kind: MouseEventKind::ScrollUp,
            column: 50,
            row: 5,
            modifiers: KeyModifiers::NONE,
        }),
    );
    assert_eq!(state.conversation("bob").unwrap().scroll, 3);
    update(
        &mut state,
        Action::Mouse(MouseEvent {
            kind: MouseEventKind::ScrollDown,
            column: 3,
            row: 5,
            modifiers: KeyModifiers::NONE,
        }),
    );
    assert_eq!(
        state.current().unwrap().name,
        "carol",
        "the wheel over contacts switches"
    );
}

#[test]
fn received_messages_count_as_unread_elsewhere() {
    let mut state = ready();
    update(
        &mut state,
        Action::Net(NetEvent::Synced {
            at: t0(),
            received: vec![
                (
                    "carol".into(),
                    received(5, "carol", "psst", Mark::Unverified),
                ),
                ("bob".into(), received(6, "bob", "again", Mark::Verified)),
                (
                    "erin".into(),
                    received(7, "erin", "new here", Mark::Verified),
                ),
            ],
        }),
    );
    assert_eq!(state.connection, Connection::Online);
    assert_eq!(state.last_sync, Some(t0()));
    let unread =
        |state: &State, name: &str| state.contacts[state.contact_index(name).unwrap()].unread;
    assert_eq!(unread(&state, "carol"), 1);
    assert_eq!(
        unread(&state, "erin"),
        1,
        "unknown senders get a conversation"
    );
    assert_eq!(unread(&state, "bob"), 0, "the open conversation is read");
    assert_eq!(state.current().unwrap().name, "bob", "the selection stays");
    // The same message twice is shown once.
    update(
        &mut state,
        Action::Net(NetEvent::Synced {
            at: t0(),
            received: vec![(
                "carol".into(),
                received(5, "carol", "psst", Mark::Unverified),
            )],
        }),
    );
    assert_eq!(state.conversation("carol").unwrap().messages.len(), 1);
    // Opening clears the count.
    let index = state.contact_index("carol").unwrap();
    update(&mut state, key(KeyCode::Tab));
    while state.selected != index {
        update(&mut state, key(KeyCode::Down));
    }
    assert_eq!(unread(&state, "carol"), 0);
    update(
        &mut state,
        Action::Net(NetEvent::ContactStates(vec![(
            "erin".into(),
            KeyState::Pinned,
        )])),
    );
    assert_eq!(
        state.contacts[state.contact_index("erin").unwrap()].key_state,
        Some(KeyState::Pinned)
    );
}

#[test]
fn sync_failures_show_offline_and_rate_limited() {
    let mut state = ready();
    update(
        &mut state,
        Action::Net(NetEvent::SyncFailed {
            reason: "relay unreachable".into(),
            rate_limited: false,
            retry_in: Duration::from_secs(4),
        }),
    );
    assert!(
        matches!(state.connection, Connection::Offline { ref reason, .. } if reason == "relay unreachable")
    );
    update(
        &mut state,
        Action::Net(NetEvent::SyncFailed {
            reason: "rate limited".into(),
            rate_limited: true,
            retry_in: Duration::from_secs(12),
        }),
    );
    assert_eq!(
        state.connection,
        Connection::RateLimited {
            retry_at: t0() + chrono::Duration::seconds(12)
        }
    );
    // Typing still works, and a send is queued as usual.
    type_text(&mut state, "later");
    assert_eq!(update(&mut state, key(KeyCode::Enter)).len(), 1);
}

#[test]
fn ticks_expire_notices_and_ask_for_delivery_receipts() {
    let mut state = ready();
    type_text(&mut state, "hi");
    update(&mut state, key(KeyCode::Enter));
    update(
        &mut state,
        Action::Net(NetEvent::Sent {
            pending: 1,
            peer: "bob".into(),
            outcome: SendOutcome::Stored {
                local_id: LocalId(10),
                relay_id: MessageId(99),
                sent_at: t0(),
            },
        }),
    );
    update(&mut state, Action::Net(NetEvent::Failed("oops".into())));
    let commands = update(
        &mut state,
        Action::Tick(t0() + chrono::Duration::seconds(10)),
    );
    assert_eq!(
        commands,
        vec![Command::CheckDeliveries {
            peer: "bob".into(),
            messages: vec![(LocalId(10), MessageId(99))],
        }]
    );
    assert!(state.notice.is_none(), "notices last a few seconds");
    assert!(
        update(
            &mut state,
            Action::Tick(t0() + chrono::Duration::seconds(11))
        )
        .is_empty()
    );
}

#[test]
fn help_and_quit() {
    let mut state = ready();
    update(&mut state, key(KeyCode::F(1)));
    assert!(matches!(state.overlay, Some(Overlay::Help { .. })));
    update(&mut state, key(KeyCode::Esc));
    assert!(state.overlay.is_none());
    update(&mut state, key(KeyCode::Tab));
    update(&mut state, key(KeyCode::Char('?')));
    assert!(matches!(state.overlay, Some(Overlay::Help { .. })));
    update(&mut state, key(KeyCode::Char('?')));
    update(&mut state, ctrl('q'));
    assert!(state.should_quit);
    let mut state = ready();
    update(&mut state, ctrl('c'));
    assert!(state.should_quit);
}

#[test]
fn key_releases_are_ignored_and_paste_goes_to_the_input() {
    let mut state = ready();
    let release = KeyEvent {
        code: KeyCode::Char('x'),
        modifiers: KeyModifiers::NONE,
        kind: KeyEventKind::Release,
        state: KeyEventState::NONE,
    };
    update(&mut state, Action::Key(release));
    assert!(state.input.is_empty());
    update(&mut state, key(KeyCode::Tab));
    update(&mut state, Action::Paste("line one\r\nline two".into()));
    assert_eq!(state.focus, Focus::Input);
    assert_eq!(state.input.lines(), ["line one", "line two"]);
    update(&mut state, Action::Resize(40, 12));
    assert_eq!(state.size, (40, 12));
}

/// A fresh app showing the login form.
fn login_screen() -> State {
    let mut state = State::new(
        "http://x".into(),
        t0(),
        FixedOffset::east_opt(0).unwrap(),
        false,
    );
    state.screen = Screen::Login(Box::default());
    state
}

#[test]
fn login_form() {
    let mut state = login_screen();
    type_text(&mut state, "alice");
    // Enter on the username moves to the password.
    assert!(update(&mut state, key(KeyCode::Enter)).is_empty());
    type_text(&mut state, "weak");
    update(&mut state, key(KeyCode::F(2)));
    assert!(
        update(&mut state, key(KeyCode::Enter)).is_empty(),
        "registering checks the password"
    );
    let Screen::Login(form) = &state.screen else {
        panic!()
    };
    assert!(form.error.as_ref().unwrap().contains("uppercase"));
    assert_eq!(form.field, LoginField::Password);
    type_text(&mut state, "Er1!");
    let commands = update(&mut state, key(KeyCode::Enter));
    assert_eq!(
        commands,
        vec![Command::Login {
            username: "alice".into(),
            password: "weakEr1!".into(),
            register: true,
            invite: None,
        }]
    );
    // Busy: keys wait.
    assert!(update(&mut state, key(KeyCode::Enter)).is_empty());
    update(
        &mut state,
        Action::Net(NetEvent::LoginFailed(
            "Incorrect username or password.".into(),
        )),
    );
    let Screen::Login(form) = &state.screen else {
        panic!()
    };
    assert!(!form.busy);
    assert_eq!(
        form.error.as_deref(),
        Some("Incorrect username or password.")
    );
    // Success: the worker reports Ready, and the chat opens.
    update(
        &mut state,
        Action::Net(NetEvent::Ready {
            me: Me {
                username: "alice".into(),
                server: "http://x".into(),
                fingerprint: "ff".into(),
            },
            contacts: Vec::new(),
        }),
    );
    assert!(matches!(state.screen, Screen::Chat));
}

#[test]
fn registration_form_takes_an_invite_code() {
    let mut state = login_screen();
    let field = |state: &State| match &state.screen {
        Screen::Login(form) => form.field,
        Screen::Chat => panic!(),
    };
    // Logging in: Tab goes between the two fields only.
    update(&mut state, key(KeyCode::Tab));
    update(&mut state, key(KeyCode::Tab));
    assert_eq!(field(&state), LoginField::Username);
    update(&mut state, key(KeyCode::F(2)));
    type_text(&mut state, "alice");
    update(&mut state, key(KeyCode::Tab));
    type_text(&mut state, "Passw0rd!");
    update(&mut state, key(KeyCode::Tab));
    assert_eq!(field(&state), LoginField::Invite);
    update(&mut state, Action::Paste(" c0de \n".into()));
    update(&mut state, key(KeyCode::BackTab));
    assert_eq!(field(&state), LoginField::Password);
    update(&mut state, key(KeyCode::BackTab));
    update(&mut state, key(KeyCode::BackTab));
    assert_eq!(field(&state), LoginField::Invite, "backwards wraps");
    assert_eq!(
        update(&mut state, key(KeyCode::Enter)),
        vec![Command::Login {
            username: "alice".into(),
            password: "Passw0rd!".into(),
            register: true,
            invite: Some("c0de".into()),
        }]
    );
}

#[test]
fn switching_to_login_leaves_the_invite_field() {
    let mut state = login_screen();
    update(&mut state, key(KeyCode::F(2)));
    update(&mut state, key(KeyCode::BackTab));
    update(&mut state, key(KeyCode::F(2)));
    let Screen::Login(form) = &state.screen else {
        panic!()
    };
    assert_eq!(form.field, LoginField::Username);
}

#[test]
fn without_contacts_enter_explains_what_to_do() {
    let mut state = State::new(
        "http://x".into(),
        t0(),
        FixedOffset::east_opt(0).unwrap(),
        false,
    );
    update(
        &mut state,
        Action::Net(NetEvent::Ready {
            me: Me {
                username: "alice".into(),
                server: "http://x".into(),
                fingerprint: "ff".into(),
            },
            contacts: Vec::new(),
        }),
    );
    type_text(&mut state, "hello?");
    assert!(update(&mut state, key(KeyCode::Enter)).is_empty());
    assert!(state.notice.as_ref().unwrap().text.contains("Ctrl-N"));
}

#[test]
fn a_retried_message_is_shown_like_a_new_one() {
    let mut state = ready();
    // carol's conversation, scrolled up, with a send refused for good.
    update(&mut state, key(KeyCode::Tab));
    update(&mut state, key(KeyCode::Down));
    assert_eq!(state.current().unwrap().name, "carol");
    update(&mut state, key(KeyCode::Tab));
    update(&mut state, key(KeyCode::Tab));
    type_text(&mut state, "try again");
    update(&mut state, key(KeyCode::Enter));
    update(
        &mut state,
        Action::Net(NetEvent::Sent {
            pending: 1,
            peer: "carol".into(),
            outcome: SendOutcome::Refused {
                reason: "refused".into(),
                key_changed: false,
            },
        }),
    );
    // Bob talked more recently, and is listed first.
    for contact in &mut state.contacts {
        contact.last_activity = Some(t0() - chrono::Duration::minutes(5));
    }
    state.contacts.sort_by_key(|c| c.name != "bob");
    state.selected = state.contact_index("carol").unwrap();
    state.conversation_mut("carol").scroll = 2;
    update(&mut state, ctrl('r'));
    assert_eq!(state.conversation("carol").unwrap().scroll, 0, "follows it");
    assert_eq!(state.contacts[0].name, "carol", "moves to the top");
    assert_eq!(state.current().unwrap().name, "carol");
}
