//! `update` tests for a person's 1:1 over MLS (issue #12): one list entry
//! per person, v1 and MLS lines merged in time order, one send command the
//! worker routes, the answers from either way, refusals with their reason,
//! unread counts and notifications counted once.

use crossterm::event::KeyCode;

use super::update;
use crate::app::action::{Action, NetEvent, SendOutcome, V2Event};
use crate::app::command::{Command, V2Command};
use crate::app::fixtures::{
    direct, direct_id, key, mls_at, ready, received, t0, type_text, v1_at, with_bob_direct,
};
use crate::app::state::{Mark, MessageView, Overlay, SendStatus, State, ViewId};
use crate::history::LocalId;

fn v2(state: &mut State, event: V2Event) -> Vec<Command> {
    update(state, Action::Net(NetEvent::V2(event)))
}

fn texts(state: &State, name: &str) -> Vec<String> {
    state
        .conversation(name)
        .map(|c| {
            c.messages
                .iter()
                .map(|m| m.text.clone().unwrap_or_default())
                .collect()
        })
        .unwrap_or_default()
}

fn names(state: &State) -> Vec<String> {
    state.contacts.iter().map(|c| c.name.clone()).collect()
}

#[test]
fn a_one_to_one_over_mls_joins_the_persons_own_entry() {
    let state = with_bob_direct();
    let mut listed = names(&state);
    listed.sort();
    assert_eq!(listed, vec!["bob", "carol"], "no second entry for bob");
    let bob = &state.contacts[state.contact_index("bob").unwrap()];
    assert_eq!(
        bob.direct.as_ref().map(|d| d.id.clone()),
        Some(direct_id("bob"))
    );
    assert!(bob.group.is_none(), "a person, not a group");
    assert!(bob.key_state.is_some(), "the v1 key state stays");
    assert_eq!(state.current().unwrap().name, "bob", "the selection stays");
}

#[test]
fn a_person_known_only_over_mls_gets_one_entry_under_their_name() {
    let mut state = ready();
    v2(&mut state, V2Event::Conversations(vec![direct("dave")]));
    // The list comes again after every sync that changed something.
    v2(&mut state, V2Event::Conversations(vec![direct("dave")]));
    let daves: Vec<_> = state
        .contacts
        .iter()
        .filter(|c| c.name.eq_ignore_ascii_case("dave"))
        .collect();
    assert_eq!(daves.len(), 1, "{:?}", names(&state));
    assert!(daves[0].direct.is_some());
    assert_eq!(daves[0].key_state, None, "no v1 key pinned for dave");
    assert!(!names(&state).iter().any(|n| n.contains("mls")));
}

#[test]
fn a_left_one_to_one_never_hides_the_live_one() {
    let mut state = with_bob_direct();
    let mut old = direct("bob");
    if let Some(info) = old.direct.as_mut() {
        info.id = kavro_proto::v2::GroupId::from_bytes(b"an older 1:1").unwrap();
        info.active = false;
    }
    v2(&mut state, V2Event::Conversations(vec![old]));
    let bob = &state.contacts[state.contact_index("bob").unwrap()];
    assert_eq!(
        bob.direct.as_ref().map(|d| d.id.clone()),
        Some(direct_id("bob"))
    );
}

#[test]
fn v1_and_mls_lines_are_merged_in_time_order() {
    let state = with_bob_direct();
    assert_eq!(
        texts(&state, "bob"),
        vec![
            "hi alice (v1)",                  // 30 min ago, v1
            "alice created the conversation", // 25, MLS
            "hello bob (v1)",                 // 20, v1
            "now over MLS",                   // 10, MLS
        ]
    );
    let v1: Vec<bool> = state
        .conversation("bob")
        .unwrap()
        .messages
        .iter()
        .map(MessageView::is_v1)
        .collect();
    assert_eq!(v1, vec![true, false, true, false]);
}

#[test]
fn reloading_one_history_keeps_the_other_and_sends_on_their_way() {
    let mut state = with_bob_direct();
    type_text(&mut state, "on its way");
    update(&mut state, key(KeyCode::Enter));
    // The v1 history again, with a message that came meanwhile.
    update(
        &mut state,
        Action::Net(NetEvent::History {
            peer: "bob".into(),
            messages: vec![
                v1_at(1, "bob", "hi alice (v1)", 30),
                v1_at(2, "alice", "hello bob (v1)", 20),
                v1_at(3, "bob", "one more over v1", 5),
            ],
        }),
    );
    // The MLS history again, with a newer line.
    v2(
        &mut state,
        V2Event::History {
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
                mls_at(2, "bob", "and again", 1, Mark::Member),
            ],
        },
    );
    assert_eq!(
        texts(&state, "bob"),
        vec![
            "hi alice (v1)",
            "alice created the conversation",
            "hello bob (v1)",
            "now over MLS",
            "one more over v1",
            "and again",
            "on its way",
        ]
    );
    let last = state.conversation("bob").unwrap().messages.last().cloned();
    assert_eq!(last.unwrap().status, Some(SendStatus::Sending));
}

#[test]
fn selecting_a_person_with_a_one_to_one_loads_both_histories() {
    let mut state = ready();
    v2(&mut state, V2Event::Conversations(vec![direct("carol")]));
    let index = state.contact_index("carol").unwrap();
    let commands = super::select(&mut state, index);
    assert_eq!(
        commands,
        vec![
            Command::LoadHistory {
                peer: "carol".into()
            },
            Command::V2(V2Command::LoadHistory {
                group: direct_id("carol"),
                label: "carol".into()
            }),
        ]
    );
}

/// Enter in a person's conversation: one `Send` whatever the way; the
/// worker chooses MLS or v1 (it has the network), `update` stays pure.
fn enter(state: &mut State, text: &str) -> Vec<Command> {
    type_text(state, text);
    update(state, key(KeyCode::Enter))
}

#[test]
fn enter_to_a_person_asks_the_worker_to_send_with_or_without_a_one_to_one() {
    let mut state = with_bob_direct();
    assert_eq!(
        enter(&mut state, "over MLS please"),
        vec![Command::Send {
            pending: 1,
            peer: "bob".into(),
            text: "over MLS please".into()
        }],
        "never a group send to the 1:1: the worker checks bob's devices first"
    );
    let mut state = ready();
    assert_eq!(
        enter(&mut state, "v1 only"),
        vec![Command::Send {
            pending: 1,
            peer: "bob".into(),
            text: "v1 only".into()
        }]
    );
}

#[test]
fn a_send_that_went_over_mls_shows_as_an_mls_line_among_the_v1_ones() {
    let mut state = with_bob_direct();
    enter(&mut state, "sent over MLS");
    let mut sent = mls_at(2, "alice", "sent over MLS", 0, Mark::Own);
    sent.sent_at = t0();
    v2(
        &mut state,
        V2Event::Sent {
            pending: 1,
            label: "bob".into(),
            outcome: Ok(vec![
                mls_at(
                    0,
                    "alice",
                    "alice created the conversation",
                    25,
                    Mark::System,
                ),
                mls_at(1, "bob", "now over MLS", 10, Mark::Member),
                sent,
            ]),
        },
    );
    let messages = &state.conversation("bob").unwrap().messages;
    assert_eq!(messages.len(), 5, "the v1 messages stay: {messages:?}");
    let last = messages.last().unwrap();
    assert_eq!(last.id, ViewId::Line(2));
    assert_eq!(last.status, Some(SendStatus::Stored));
    assert!(!last.is_v1());
}

#[test]
fn a_send_that_went_over_v1_shows_as_a_v1_message() {
    let mut state = with_bob_direct();
    enter(&mut state, "bob revoked his devices");
    update(
        &mut state,
        Action::Net(NetEvent::Sent {
            pending: 1,
            peer: "bob".into(),
            outcome: SendOutcome::Stored {
                local_id: LocalId(9),
                relay_id: kavro_proto::MessageId(9),
                sent_at: t0(),
            },
        }),
    );
    let last = state
        .conversation("bob")
        .unwrap()
        .messages
        .last()
        .cloned()
        .unwrap();
    assert!(last.is_v1());
    assert_eq!(last.status, Some(SendStatus::Stored));
    assert_eq!(state.conversation("bob").unwrap().messages.len(), 5);
}

#[test]
fn a_refused_one_to_one_send_keeps_the_line_with_the_reason() {
    for reason in [
        "bob's devices are refused: the root device changed",
        "the 1:1 chat with bob is being set up, try again",
        "relay unreachable",
    ] {
        let mut state = with_bob_direct();
        enter(&mut state, "hello?");
        v2(
            &mut state,
            V2Event::Sent {
                pending: 1,
                label: "bob".into(),
                outcome: Err(reason.into()),
            },
        );
        let last = state
            .conversation("bob")
            .unwrap()
            .messages
            .last()
            .cloned()
            .unwrap();
        assert_eq!(last.text.as_deref(), Some("hello?"), "the line stays");
        assert_eq!(last.status, Some(SendStatus::Failed(reason.into())));
        let notice = state
            .notice
            .as_ref()
            .map(|n| n.text.clone())
            .unwrap_or_default();
        assert_eq!(notice, format!("Not sent: {reason}"));
        // Ctrl-R sends it again, through the same routing.
        let commands = update(&mut state, crate::app::fixtures::ctrl('r'));
        assert!(
            commands.contains(&Command::Send {
                pending: 2,
                peer: "bob".into(),
                text: "hello?".into()
            }),
            "{commands:?}"
        );
    }
}

#[test]
fn unread_counts_and_notifications_count_each_message_once_in_the_one_entry() {
    let mut state = with_bob_direct();
    state.selected = state.contact_index("carol").unwrap();
    let commands = v2(
        &mut state,
        V2Event::Received(vec![("bob".into(), "bob".into())]),
    );
    assert_eq!(
        commands,
        vec![Command::Notify {
            title: "Kavro".into(),
            body: "New message from bob".into()
        }]
    );
    let commands = update(
        &mut state,
        Action::Net(NetEvent::Synced {
            at: t0(),
            received: vec![("bob".into(), received(7, "bob", "psst", Mark::Verified))],
        }),
    );
    assert_eq!(
        commands.len(),
        1,
        "one notification for the v1 one: {commands:?}"
    );
    let bob = &state.contacts[state.contact_index("bob").unwrap()];
    assert_eq!(bob.unread, 2, "one MLS text and one v1 message");
    assert_eq!(state.contacts.len(), 2);
}

#[test]
fn v_on_a_one_to_one_over_mls_trusts_the_v2_safety_number_shown() {
    use crate::app::state::{KeysView, MlsKeysView};
    let number = kavro_proto::crypto::SafetyNumber::parse(
        "12345 67890 13579 24680 11111 22222 33333 44444 55555 66666 77777 88888",
    )
    .expect("twelve groups");
    let mut state = crate::app::fixtures::ready();
    state.overlay = Some(Overlay::Keys {
        peer: "bob".into(),
        view: Some(KeysView {
            peer: "bob".into(),
            state: crate::pinning::KeyState::Pinned,
            own_fingerprint: String::new(),
            fingerprint: String::new(),
            safety_number: Vec::new(),
            pending: None,
            key_shown: kavro_proto::crypto::IdentityPublic::from_bytes([1; 32]),
            mls: Some(Box::new(MlsKeysView {
                number,
                verified: false,
                devices: 2,
            })),
        }),
    });
    let commands = update(&mut state, key(KeyCode::Char('v')));
    assert_eq!(
        commands,
        vec![Command::V2(V2Command::TrustRoot {
            peer: "bob".into(),
            number
        })]
    );
    assert!(state.overlay.is_none());
}
