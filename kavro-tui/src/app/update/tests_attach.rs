//! `update` tests for attachments: the attach key and its prompt (typing,
//! Tab completion, Enter with the message line as caption, Esc), refusals
//! before anything is sent, upload progress, the answers, and the keys that
//! choose and open an attachment.
#![allow(clippy::unwrap_used)]

use std::path::PathBuf;

use crossterm::event::KeyCode;

use super::update;
use crate::app::action::{Action, NetEvent, V2Event};
use crate::app::attachments::{FileProtocol, FileToSend};
use crate::app::command::{Command, V2Command};
use crate::app::complete::Completion;
use crate::app::fixtures::{
    ctrl, direct_id, file_line, key, ready, team_id, type_text, with_bob_direct, with_team,
};
use crate::app::state::{
    AttachmentStatus, Focus, Mark, MessageView, NoticeKind, Overlay, SendStatus, State, ViewId,
};

fn v2(state: &mut State, event: V2Event) -> Vec<Command> {
    update(state, Action::Net(NetEvent::V2(event)))
}

fn team_open() -> State {
    let mut state = with_team();
    state.selected = state.contact_index("#team").unwrap();
    state
}

fn notice_text(state: &State) -> String {
    state
        .notice
        .as_ref()
        .map(|n| n.text.clone())
        .unwrap_or_default()
}

fn prompt_text(state: &State) -> String {
    match &state.overlay {
        Some(Overlay::Attach(prompt)) => prompt.text(),
        other => panic!("no prompt: {other:?}"),
    }
}

fn last(state: &State, label: &str) -> MessageView {
    state
        .conversation(label)
        .unwrap()
        .messages
        .last()
        .unwrap()
        .clone()
}

#[test]
fn ctrl_t_opens_the_prompt_and_enter_sends_with_the_line_as_caption() {
    let mut state = team_open();
    type_text(&mut state, "the numbers");
    assert!(update(&mut state, ctrl('t')).is_empty());
    assert_eq!(prompt_text(&state), "");
    type_text(&mut state, "/tmp/report.pdf");
    let commands = update(&mut state, key(KeyCode::Enter));
    assert_eq!(
        commands,
        vec![Command::V2(V2Command::SendFile {
            pending: 1,
            group: Some(team_id()),
            label: "#team".into(),
            file: FileToSend {
                path: PathBuf::from("/tmp/report.pdf"),
                caption: Some("the numbers".into()),
            },
        })]
    );
    assert!(state.overlay.is_none());
    assert_eq!(state.input.lines().join(""), "", "the caption was used");
    let shown = last(&state, "#team");
    assert_eq!(shown.id, ViewId::Pending(1));
    let attachment = shown.attachment.unwrap();
    assert_eq!(attachment.name, "report.pdf");
    assert_eq!(
        attachment.status,
        AttachmentStatus::Uploading { percent: 0 }
    );
    assert_eq!(attachment.caption.as_deref(), Some("the numbers"));
}

#[test]
fn a_person_with_a_one_to_one_gets_it_and_one_without_is_left_to_the_worker() {
    let mut state = with_bob_direct();
    update(&mut state, ctrl('t'));
    type_text(&mut state, "a.txt");
    let commands = update(&mut state, key(KeyCode::Enter));
    assert!(matches!(
        &commands[..],
        [Command::V2(V2Command::SendFile { group: Some(g), label, file, .. })]
            if *g == direct_id("bob") && label == "bob" && file.caption.is_none()
    ));
    // carol: no 1:1 here; the worker finds or makes it (or says she is v1 only).
    let mut state = with_team();
    state.selected = state.contact_index("carol").unwrap();
    update(&mut state, ctrl('t'));
    type_text(&mut state, "a.txt");
    let commands = update(&mut state, key(KeyCode::Enter));
    assert!(matches!(
        &commands[..],
        [Command::V2(V2Command::SendFile { group: None, label, .. })] if label == "carol"
    ));
}

#[test]
fn esc_cancels_and_an_empty_path_is_refused_in_the_prompt() {
    let mut state = team_open();
    update(&mut state, ctrl('t'));
    let commands = update(&mut state, key(KeyCode::Enter));
    assert!(commands.is_empty());
    match &state.overlay {
        Some(Overlay::Attach(prompt)) => {
            assert_eq!(
                prompt.error.as_deref(),
                Some("Type the path of a file (Tab completes)")
            );
        }
        other => panic!("{other:?}"),
    }
    type_text(&mut state, "x");
    assert!(matches!(&state.overlay, Some(Overlay::Attach(p)) if p.error.is_none()));
    assert!(update(&mut state, key(KeyCode::Esc)).is_empty());
    assert!(state.overlay.is_none());
    assert_eq!(state.conversation("#team").unwrap().messages.len(), 4);
}

#[test]
fn a_v1_conversation_attaches_and_the_worker_chooses_the_protocol() {
    // Not a Kavro v2 device: the file to bob goes in a v1 file envelope
    // (the worker refuses it when bob may run a legacy client).
    let mut state = ready();
    assert!(!state.v2);
    assert!(update(&mut state, ctrl('t')).is_empty());
    assert!(matches!(&state.overlay, Some(Overlay::Attach(p)) if p.group.is_none()));
    type_text(&mut state, "/tmp/a.pdf");
    let commands = update(&mut state, key(KeyCode::Enter));
    assert!(
        matches!(
            commands.as_slice(),
            [Command::V2(V2Command::SendFile { group: None, label, .. })] if label == "bob"
        ),
        "{commands:?}"
    );
    let attachment = last(&state, "bob").attachment.unwrap();
    assert_eq!(attachment.protocol, FileProtocol::V1);
    assert_eq!(
        attachment.status,
        AttachmentStatus::Uploading { percent: 0 }
    );
}

#[test]
fn o_downloads_a_v1_file_still_on_the_relay_with_the_v1_run() {
    let mut state = ready();
    let mut line = crate::app::fixtures::file_line(9, "bob", "a.pdf", AttachmentStatus::OnRelay);
    line.attachment.as_mut().unwrap().protocol = FileProtocol::V1;
    state.conversation_mut("bob").messages.push(line);
    state.focus = Focus::Messages;
    assert_eq!(
        update(&mut state, key(KeyCode::Char('o'))),
        vec![Command::SaveV1Files]
    );
}

#[test]
fn no_attach_without_a_conversation_or_in_a_group_left() {
    let mut state = with_team();
    state.contacts.clear();
    update(&mut state, ctrl('t'));
    assert!(state.overlay.is_none());
    assert!(notice_text(&state).contains("No conversation open"));

    let mut state = team_open();
    v2(
        &mut state,
        V2Event::Conversations(vec![crate::app::fixtures::team(false)]),
    );
    update(&mut state, ctrl('t'));
    assert!(state.overlay.is_none());
    assert!(notice_text(&state).contains("no longer a member"));
}

#[test]
fn tab_asks_the_worker_and_its_answer_fills_the_prompt() {
    let mut state = team_open();
    update(&mut state, ctrl('t'));
    type_text(&mut state, "~/Do");
    assert_eq!(
        update(&mut state, key(KeyCode::Tab)),
        vec![Command::Complete {
            typed: "~/Do".into()
        }]
    );
    // One match: the prompt takes it, the cursor at its end.
    update(
        &mut state,
        Action::Net(NetEvent::Completed {
            typed: "~/Do".into(),
            completion: Completion {
                text: Some("~/Documents/".into()),
                candidates: Vec::new(),
            },
        }),
    );
    assert_eq!(prompt_text(&state), "~/Documents/");
    type_text(&mut state, "r");
    assert_eq!(prompt_text(&state), "~/Documents/r");
    // Several: the common part and the list.
    update(
        &mut state,
        Action::Net(NetEvent::Completed {
            typed: "~/Documents/r".into(),
            completion: Completion {
                text: Some("~/Documents/report".into()),
                candidates: vec!["report-old.pdf".into(), "report.pdf".into()],
            },
        }),
    );
    assert_eq!(prompt_text(&state), "~/Documents/report");
    assert!(matches!(&state.overlay, Some(Overlay::Attach(p)) if p.candidates.len() == 2));
    // An answer for what is no longer typed is dropped.
    update(
        &mut state,
        Action::Net(NetEvent::Completed {
            typed: "~/old".into(),
            completion: Completion {
                text: Some("~/older/".into()),
                candidates: Vec::new(),
            },
        }),
    );
    assert_eq!(prompt_text(&state), "~/Documents/report");
    // Nothing fits: said in the prompt.
    update(
        &mut state,
        Action::Net(NetEvent::Completed {
            typed: "~/Documents/report".into(),
            completion: Completion::default(),
        }),
    );
    assert!(
        matches!(&state.overlay, Some(Overlay::Attach(p)) if p.error.as_deref() == Some("Nothing matches"))
    );
    // Pasting a path goes into the prompt, on one line.
    update(&mut state, Action::Paste("-x\n.pdf".into()));
    assert_eq!(prompt_text(&state), "~/Documents/report-x.pdf");
}

#[test]
fn progress_then_the_history_replaces_the_pending_line() {
    let mut state = team_open();
    update(&mut state, ctrl('t'));
    type_text(&mut state, "/tmp/report.pdf");
    update(&mut state, key(KeyCode::Enter));
    v2(
        &mut state,
        V2Event::Upload {
            pending: 1,
            label: "#team".into(),
            percent: 42,
            size: 2048,
        },
    );
    let shown = last(&state, "#team");
    let attachment = shown.attachment.as_deref().unwrap();
    assert_eq!(
        attachment.status,
        AttachmentStatus::Uploading { percent: 42 }
    );
    assert_eq!(attachment.size, 2048);
    assert_eq!(shown.text.as_deref(), Some("[file] report.pdf (2.0 KiB)"));
    let mut history = state.conversation("#team").unwrap().messages.clone();
    history.pop();
    let mut sent = file_line(4, "alice", "report.pdf", AttachmentStatus::OnRelay);
    sent.mark = Mark::Own;
    sent.status = Some(SendStatus::Stored);
    history.push(sent.clone());
    v2(
        &mut state,
        V2Event::Sent {
            pending: 1,
            label: "#team".into(),
            outcome: Ok(history),
        },
    );
    assert_eq!(last(&state, "#team"), sent);
    assert!(
        !state
            .conversation("#team")
            .unwrap()
            .messages
            .iter()
            .any(|m| matches!(m.id, ViewId::Pending(_)))
    );
}

#[test]
fn a_refused_file_leaves_no_line_and_says_why() {
    let mut state = team_open();
    update(&mut state, ctrl('t'));
    type_text(&mut state, "/tmp/big.iso");
    update(&mut state, key(KeyCode::Enter));
    v2(
        &mut state,
        V2Event::Sent {
            pending: 1,
            label: "#team".into(),
            outcome: Err("the file is over the relay's limit of 100 MiB".into()),
        },
    );
    assert_eq!(state.conversation("#team").unwrap().messages.len(), 4);
    let notice = state.notice.clone().unwrap();
    assert_eq!(notice.kind, NoticeKind::Error);
    assert!(notice.text.contains("100 MiB"), "{}", notice.text);
    // Ctrl-R has nothing of it to send again.
    assert_eq!(update(&mut state, ctrl('r')), vec![Command::RetryOutbox]);
}

/// `#team` with two received files: one saved, one refused, and a text.
fn with_files() -> State {
    let mut state = team_open();
    let mut messages = state.conversation("#team").unwrap().messages.clone();
    messages.push(file_line(
        4,
        "bob",
        "a.pdf",
        AttachmentStatus::Saved("/home/alice/Downloads/a.pdf".into()),
    ));
    messages.push(file_line(
        5,
        "carol",
        "b.pdf",
        AttachmentStatus::NotSaved("the file does not match its hash".into()),
    ));
    messages.push(file_line(6, "bob", "c.pdf", AttachmentStatus::OnRelay));
    v2(
        &mut state,
        V2Event::History {
            label: "#team".into(),
            messages,
        },
    );
    state.focus = Focus::Messages;
    state
}

#[test]
fn o_acts_on_the_newest_attachment_and_a_chooses_older_ones() {
    let mut state = with_files();
    // The newest is still on the relay: o downloads now.
    assert_eq!(
        update(&mut state, key(KeyCode::Char('o'))),
        vec![Command::V2(V2Command::SaveAttachments)]
    );
    assert!(notice_text(&state).contains("Downloading c.pdf"));
    // a: the one before (refused): o says why.
    update(&mut state, key(KeyCode::Char('a')));
    assert_eq!(
        update(&mut state, key(KeyCode::Char('a'))),
        Vec::<Command>::new()
    );
    assert_eq!(
        state.conversation("#team").unwrap().selected_attachment,
        Some(ViewId::Line(5))
    );
    assert!(update(&mut state, key(KeyCode::Char('o'))).is_empty());
    assert!(notice_text(&state).contains("b.pdf was not saved: the file does not match its hash"));
    // a again: the saved one, which o opens.
    update(&mut state, key(KeyCode::Char('a')));
    assert_eq!(
        update(&mut state, key(KeyCode::Char('o'))),
        vec![Command::OpenFile {
            path: "/home/alice/Downloads/a.pdf".into()
        }]
    );
    // Round again to the newest.
    update(&mut state, key(KeyCode::Char('a')));
    assert_eq!(
        state.conversation("#team").unwrap().selected_attachment,
        Some(ViewId::Line(6))
    );
}

#[test]
fn o_without_attachments_or_on_ones_own_file_says_so() {
    let mut state = team_open();
    state.focus = Focus::Messages;
    assert!(update(&mut state, key(KeyCode::Char('o'))).is_empty());
    assert!(notice_text(&state).contains("No attachments"));
    update(&mut state, key(KeyCode::Char('a')));
    assert!(notice_text(&state).contains("No attachments"));
    let mut messages = state.conversation("#team").unwrap().messages.clone();
    messages.push(file_line(4, "alice", "mine.pdf", AttachmentStatus::OnRelay));
    v2(
        &mut state,
        V2Event::History {
            label: "#team".into(),
            messages,
        },
    );
    assert!(update(&mut state, key(KeyCode::Char('o'))).is_empty());
    assert!(notice_text(&state).contains("Kavro keeps no copy"));
}

#[test]
fn saved_files_are_announced() {
    let mut state = team_open();
    v2(
        &mut state,
        V2Event::Saved("Saved a.pdf from bob to /d/a.pdf".into()),
    );
    assert_eq!(state.notice.unwrap().kind, NoticeKind::Info);
}

#[test]
fn saved_pictures_are_decoded_once_when_the_terminal_shows_pictures() {
    use crate::app::pictures::Pictures;
    use ratatui_image::picker::Picker;

    let picture = |status| {
        let mut line = file_line(4, "bob", "cat.png", status);
        if let Some(a) = line.attachment.as_mut() {
            a.media_type = "image/png".into();
        }
        line
    };
    let history = |state: &State, line: MessageView| {
        let mut messages = state.conversation("#team").unwrap().messages.clone();
        messages.push(line);
        V2Event::History {
            label: "#team".into(),
            messages,
        }
    };
    // Without a graphics protocol (tests, no terminal): a plain line.
    let mut state = team_open();
    let event = history(
        &state,
        picture(AttachmentStatus::Saved("/d/cat.png".into())),
    );
    assert!(v2(&mut state, event).is_empty());

    let mut state = team_open();
    state.pictures = Pictures::new(Some(Picker::halfblocks()));
    // Not saved yet: nothing to decode.
    let event = history(&state, picture(AttachmentStatus::OnRelay));
    assert!(v2(&mut state, event).is_empty());
    let mut messages = state.conversation("#team").unwrap().messages.clone();
    messages.pop();
    messages.push(picture(AttachmentStatus::Saved("/d/cat.png".into())));
    let event = V2Event::History {
        label: "#team".into(),
        messages: messages.clone(),
    };
    assert_eq!(
        v2(&mut state, event),
        vec![Command::LoadPicture {
            id: 4,
            path: "/d/cat.png".into()
        }]
    );
    // Asked once; a picture that does not decode stays a plain line.
    let again = V2Event::History {
        label: "#team".into(),
        messages,
    };
    assert!(v2(&mut state, again).is_empty());
    update(
        &mut state,
        Action::Net(NetEvent::Picture {
            id: 4,
            image: Err("not a PNG".into()),
        }),
    );
    assert!(state.pictures.get(4).is_none());
}
