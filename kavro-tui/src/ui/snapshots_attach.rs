//! Snapshots of attachments at 80×24 and 40×12: the lines of files sent
//! and received in each state (uploading, on the relay, saved, not saved),
//! the chosen one, and the attach prompt with what Tab offered.

use crossterm::event::KeyCode;
use ratatui::Terminal;
use ratatui::backend::TestBackend;

use crate::app::action::{Action, NetEvent, V2Event};
use crate::app::complete::Completion;
use crate::app::fixtures::{ctrl, file_line, key, type_text, with_team};
use crate::app::state::{AttachmentStatus, Focus, State};
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

fn v2(state: &mut State, event: V2Event) {
    update(state, Action::Net(NetEvent::V2(event)));
}

/// `#team` open with a file in every state, and one being uploaded.
fn files() -> State {
    let mut state = with_team();
    state.selected = state.contact_index("#team").expect("listed");
    let mut messages = vec![
        file_line(
            0,
            "bob",
            "report.pdf",
            AttachmentStatus::Saved("/home/alice/Downloads/report.pdf".into()),
        ),
        file_line(
            1,
            "carol",
            "lie.pdf",
            AttachmentStatus::NotSaved("its SHA-256 does not match".into()),
        ),
        file_line(2, "alice", "notes.txt", AttachmentStatus::OnRelay),
    ];
    if let Some(attachment) = messages[2].attachment.as_mut() {
        attachment.caption = Some("for monday".into());
    }
    messages[2].mark = crate::app::state::Mark::Own;
    messages[2].status = Some(crate::app::state::SendStatus::Stored);
    v2(
        &mut state,
        V2Event::History {
            label: "#team".into(),
            messages,
        },
    );
    update(&mut state, ctrl('t'));
    type_text(&mut state, "/tmp/holiday.png");
    update(&mut state, key(KeyCode::Enter));
    v2(
        &mut state,
        V2Event::Upload {
            pending: 1,
            label: "#team".into(),
            percent: 42,
            size: 3 * 1024 * 1024,
        },
    );
    state
}

#[test]
fn attachment_lines_in_every_state() {
    both("attachments", files());
}

#[test]
fn the_chosen_attachment_is_marked() {
    let mut state = files();
    state.focus = Focus::Messages;
    update(&mut state, key(KeyCode::Char('a')));
    update(&mut state, key(KeyCode::Char('a')));
    insta::assert_snapshot!("attachment_chosen_80x24", draw(&mut state, 80, 24));
}

#[test]
fn the_attach_prompt_with_candidates() {
    let mut state = with_team();
    state.selected = state.contact_index("#team").expect("listed");
    type_text(&mut state, "see this");
    update(&mut state, ctrl('t'));
    type_text(&mut state, "~/Documents/r");
    update(
        &mut state,
        Action::Net(NetEvent::Completed {
            typed: "~/Documents/r".into(),
            completion: Completion {
                text: Some("~/Documents/report".into()),
                candidates: vec!["report-2025.pdf".into(), "report.pdf".into()],
            },
        }),
    );
    both("attach_prompt", state);
}

/// A saved picture drawn under its line (half blocks: what a terminal
/// that does not answer the graphics query gets).
#[test]
fn a_saved_picture_is_drawn_under_its_line() {
    use crate::app::pictures::Pictures;
    use ratatui_image::picker::Picker;

    let mut state = with_team();
    state.selected = state.contact_index("#team").expect("listed");
    let mut line = file_line(
        0,
        "bob",
        "stripes.png",
        AttachmentStatus::Saved("/home/alice/Downloads/stripes.png".into()),
    );
    if let Some(attachment) = line.attachment.as_mut() {
        attachment.media_type = "image/png".into();
    }
    v2(
        &mut state,
        V2Event::History {
            label: "#team".into(),
            messages: vec![line],
        },
    );
    state.pictures = Pictures::new(Some(Picker::halfblocks()));
    assert!(state.pictures.request(0));
    let stripes = image::RgbImage::from_fn(160, 80, |x, _| {
        if (x / 20) % 2 == 0 {
            image::Rgb([255, 255, 255])
        } else {
            image::Rgb([0, 0, 0])
        }
    });
    state
        .pictures
        .put(0, Ok(image::DynamicImage::ImageRgb8(stripes)));
    insta::assert_snapshot!("picture_80x24", draw(&mut state, 80, 24));
    // The blank lines under it are drawn over with the picture's colours
    // (the text snapshot shows only symbols).
    let mut terminal = Terminal::new(TestBackend::new(80, 24)).expect("test terminal");
    terminal
        .draw(|frame| super::render(frame, &state))
        .expect("draw");
    let buffer = terminal.backend().buffer();
    let coloured = (5..13)
        .flat_map(|y| (22..54).map(move |x| (x, y)))
        .filter(|&(x, y)| {
            buffer.cell((x, y)).is_some_and(|c| {
                c.bg != ratatui::style::Color::Reset || c.fg != ratatui::style::Color::Reset
            })
        })
        .count();
    let size = state.pictures.get(0).expect("encoded").size();
    assert_eq!(coloured, usize::from(size.width) * usize::from(size.height));
    assert!(coloured > 0);
}
