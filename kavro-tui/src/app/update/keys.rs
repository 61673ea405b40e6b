//! Keys, the mouse and pasted text in the chat: focus, panes, scrolling,
//! the input line.

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers, MouseEvent, MouseEventKind};

use super::dialogs::{on_login_key, on_overlay_key};
use super::{attach, groups, open_keys, retry, search, select, select_relative, send};
use crate::app::command::Command;
use crate::app::state::{Focus, FormKind, LoginField, Overlay, Screen, State};

/// Lines one mouse-wheel step scrolls.
const WHEEL_LINES: usize = 3;

pub(super) fn on_key(state: &mut State, key: KeyEvent) -> Vec<Command> {
    if is_ctrl(&key, 'c') || is_ctrl(&key, 'q') {
        state.should_quit = true;
        return Vec::new();
    }
    if let Screen::Login(_) = state.screen {
        return on_login_key(state, key);
    }
    if state.overlay.is_some() {
        return on_overlay_key(state, key);
    }
    if let Some(commands) = search::on_key(state, key) {
        return commands;
    }
    // Keys that work in every pane.
    match key.code {
        KeyCode::F(1) => {
            state.overlay = Some(Overlay::Help { scroll: 0 });
            return Vec::new();
        }
        KeyCode::Tab => {
            state.focus = next_focus(state.focus, true);
            return Vec::new();
        }
        KeyCode::BackTab => {
            state.focus = next_focus(state.focus, false);
            return Vec::new();
        }
        KeyCode::PageUp => {
            scroll_messages(state, page(state), true);
            return Vec::new();
        }
        KeyCode::PageDown => {
            scroll_messages(state, page(state), false);
            return Vec::new();
        }
        KeyCode::Up if key.modifiers.contains(KeyModifiers::ALT) => {
            return select_relative(state, -1);
        }
        KeyCode::Down if key.modifiers.contains(KeyModifiers::ALT) => {
            return select_relative(state, 1);
        }
        _ => {}
    }
    if is_ctrl(&key, 'n') {
        state.overlay = Some(Overlay::NewConversation(Box::default()));
        return Vec::new();
    }
    if is_ctrl(&key, 'f') {
        return open_keys(state);
    }
    if is_ctrl(&key, 'r') {
        return retry(state);
    }
    if is_ctrl(&key, 'g') {
        return groups::open_form(state, FormKind::CreateGroup);
    }
    if is_ctrl(&key, 'd') {
        return groups::open_form(state, FormKind::ApproveLink);
    }
    if is_ctrl(&key, 'o') {
        return groups::toggle_notifications(state);
    }
    if is_ctrl(&key, 't') {
        return attach::open_prompt(state);
    }
    match state.focus {
        Focus::Contacts => on_contacts_key(state, key),
        Focus::Messages => on_messages_key(state, key),
        Focus::Input => on_input_key(state, key),
    }
}

pub(super) fn is_ctrl(key: &KeyEvent, c: char) -> bool {
    key.modifiers.contains(KeyModifiers::CONTROL) && key.code == KeyCode::Char(c)
}

fn next_focus(focus: Focus, forward: bool) -> Focus {
    match (focus, forward) {
        (Focus::Contacts, true) | (Focus::Input, false) => Focus::Messages,
        (Focus::Messages, true) | (Focus::Contacts, false) => Focus::Input,
        (Focus::Input, true) | (Focus::Messages, false) => Focus::Contacts,
    }
}

/// Lines in a page of the conversation pane.
fn page(state: &State) -> usize {
    usize::from(state.size.1.saturating_sub(8)).max(1)
}

fn on_contacts_key(state: &mut State, key: KeyEvent) -> Vec<Command> {
    match key.code {
        KeyCode::Up | KeyCode::Char('k') => select_relative(state, -1),
        KeyCode::Down | KeyCode::Char('j') => select_relative(state, 1),
        KeyCode::Home => select(state, 0),
        KeyCode::End => select(state, state.contacts.len().saturating_sub(1)),
        KeyCode::Enter | KeyCode::Right => {
            state.focus = Focus::Input;
            Vec::new()
        }
        KeyCode::Char('n') => {
            state.overlay = Some(Overlay::NewConversation(Box::default()));
            Vec::new()
        }
        KeyCode::Char('f') => open_keys(state),
        KeyCode::Char('r') => retry(state),
        KeyCode::Char('/') => search::start(state),
        KeyCode::Char('?') => {
            state.overlay = Some(Overlay::Help { scroll: 0 });
            Vec::new()
        }
        KeyCode::Char('q') => {
            state.should_quit = true;
            Vec::new()
        }
        _ => Vec::new(),
    }
}

fn on_messages_key(state: &mut State, key: KeyEvent) -> Vec<Command> {
    match key.code {
        KeyCode::Up | KeyCode::Char('k') => scroll_messages(state, 1, true),
        KeyCode::Down | KeyCode::Char('j') => scroll_messages(state, 1, false),
        KeyCode::Home | KeyCode::Char('g') => scroll_messages(state, usize::MAX, true),
        KeyCode::End | KeyCode::Char('G') => {
            if let Some(name) = state.current().map(|c| c.name.clone()) {
                state.conversation_mut(&name).scroll = 0;
            }
        }
        KeyCode::Esc | KeyCode::Left => state.focus = Focus::Contacts,
        KeyCode::Enter => state.focus = Focus::Input,
        KeyCode::Char('f') => return open_keys(state),
        KeyCode::Char('r') => return retry(state),
        KeyCode::Char('/') => return search::start(state),
        KeyCode::Char('a') => attach::select_previous(state),
        KeyCode::Char('o') => return attach::open_selected(state),
        KeyCode::Char('n') => {
            state.overlay = Some(Overlay::NewConversation(Box::default()));
        }
        KeyCode::Char('?') => state.overlay = Some(Overlay::Help { scroll: 0 }),
        KeyCode::Char('q') => state.should_quit = true,
        _ => {}
    }
    Vec::new()
}

fn on_input_key(state: &mut State, key: KeyEvent) -> Vec<Command> {
    let newline = key.code == KeyCode::Enter
        && key
            .modifiers
            .intersects(KeyModifiers::ALT | KeyModifiers::SHIFT);
    if newline || is_ctrl(&key, 'j') {
        state.input.insert_newline();
        return Vec::new();
    }
    match key.code {
        KeyCode::Enter => send(state),
        KeyCode::Esc => {
            state.focus = Focus::Contacts;
            Vec::new()
        }
        _ => {
            state.input.input(key);
            Vec::new()
        }
    }
}

pub(super) fn on_mouse(state: &mut State, mouse: MouseEvent) {
    if state.overlay.is_some() || !matches!(state.screen, Screen::Chat) {
        return;
    }
    let over_contacts =
        !state.is_narrow() && mouse.column < crate::ui::contacts_width(state.size.0);
    match mouse.kind {
        MouseEventKind::ScrollUp if over_contacts => {
            select_relative(state, -1);
        }
        MouseEventKind::ScrollDown if over_contacts => {
            select_relative(state, 1);
        }
        MouseEventKind::ScrollUp => scroll_messages(state, WHEEL_LINES, true),
        MouseEventKind::ScrollDown => scroll_messages(state, WHEEL_LINES, false),
        _ => {}
    }
}

pub(super) fn on_paste(state: &mut State, text: &str) {
    match (&mut state.screen, &mut state.overlay) {
        (Screen::Login(form), _) => match form.field {
            LoginField::Username => {
                form.username.insert_str(text.replace(['\r', '\n'], ""));
            }
            LoginField::Password => {
                form.password.insert_str(text.replace(['\r', '\n'], ""));
            }
            LoginField::Invite => {
                form.invite.insert_str(text.replace(['\r', '\n'], ""));
            }
        },
        (Screen::Chat, Some(Overlay::NewConversation(field))) => {
            field.insert_str(text.replace(['\r', '\n'], ""));
        }
        (Screen::Chat, Some(Overlay::Attach(prompt))) => {
            prompt.path.insert_str(text.replace(['\r', '\n'], ""));
            prompt.candidates.clear();
        }
        (Screen::Chat, Some(Overlay::Form(form))) => {
            if let Some(input) = form.inputs.get_mut(form.field) {
                input.insert_str(text.replace(['\r', '\n'], ""));
            }
        }
        (Screen::Chat, None) => {
            state.focus = Focus::Input;
            state
                .input
                .insert_str(text.replace("\r\n", "\n").replace('\r', "\n"));
        }
        _ => {}
    }
}

fn scroll_messages(state: &mut State, lines: usize, up: bool) {
    let Some(name) = state.current().map(|c| c.name.clone()) else {
        return;
    };
    let max = crate::ui::max_scroll(state);
    let conversation = state.conversation_mut(&name);
    conversation.scroll = if up {
        conversation.scroll.saturating_add(lines).min(max)
    } else {
        conversation.scroll.saturating_sub(lines)
    };
}
