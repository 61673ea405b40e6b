//! Drawing: `render(frame, state)` only reads the state. The layout adapts to
//! the terminal: a contacts pane beside the conversation on wide terminals,
//! one pane at a time on narrow ones (under 60 columns).

mod attachment;
mod dialogs;
mod login;
mod messages;
mod overlays;
mod panes;
mod theme;

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};

pub use self::messages::message_lines;
pub use self::overlays::help_max_scroll;
use crate::app::state::{Focus, Screen, State};

/// Width of the contacts pane on a terminal `total` columns wide.
pub fn contacts_width(total: u16) -> u16 {
    (total / 4).clamp(16, 28)
}

/// Rows the input box takes: its lines plus borders, 3 to 6.
fn input_height(state: &State) -> u16 {
    let lines = u16::try_from(state.input.lines().len()).unwrap_or(u16::MAX);
    lines.saturating_add(2).clamp(3, 6)
}

/// Where each part of the chat screen goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChatLayout {
    pub contacts: Option<Rect>,
    pub banner: Option<Rect>,
    pub messages: Option<Rect>,
    pub input: Option<Rect>,
    pub status: Rect,
}

pub fn chat_layout(state: &State, area: Rect) -> ChatLayout {
    let [main, status] = Layout::vertical([Constraint::Min(1), Constraint::Length(1)]).areas(area);
    let show_contacts = !state.is_narrow() || state.focus == Focus::Contacts;
    let show_conversation = !state.is_narrow() || state.focus != Focus::Contacts;
    let (contacts, right) = match (show_contacts, show_conversation) {
        (true, true) => {
            let [left, right] = Layout::horizontal([
                Constraint::Length(contacts_width(area.width)),
                Constraint::Min(1),
            ])
            .areas(main);
            (Some(left), Some(right))
        }
        (true, false) => (Some(main), None),
        _ => (None, Some(main)),
    };
    let (banner, messages, input) = match right {
        Some(right) => {
            let banner_height = if state.current_key_changed() { 3 } else { 0 };
            let [banner, messages, input] = Layout::vertical([
                Constraint::Length(banner_height),
                Constraint::Min(1),
                Constraint::Length(input_height(state)),
            ])
            .areas(right);
            (
                (banner_height > 0).then_some(banner),
                Some(messages),
                Some(input),
            )
        }
        None => (None, None, None),
    };
    ChatLayout {
        contacts,
        banner,
        messages,
        input,
        status,
    }
}

/// How far the open conversation can scroll up, in lines.
pub fn max_scroll(state: &State) -> usize {
    let (width, height) = conversation_size(state);
    let Some(conversation) = state.current().and_then(|c| state.conversation(&c.name)) else {
        return 0;
    };
    let theme = theme::Theme::new(state.color);
    message_lines(&conversation.messages, width, state, &theme)
        .len()
        .saturating_sub(usize::from(height))
}

/// The scroll (lines up from the newest) that puts message `index` of the
/// open conversation at the bottom of the pane.
pub fn scroll_to(state: &State, index: usize) -> usize {
    let (width, _) = conversation_size(state);
    let Some(conversation) = state.current().and_then(|c| state.conversation(&c.name)) else {
        return 0;
    };
    let Some(upto) = conversation.messages.get(..=index) else {
        return 0;
    };
    let theme = theme::Theme::new(state.color);
    let all = message_lines(&conversation.messages, width, state, &theme).len();
    let before = message_lines(upto, width, state, &theme).len();
    all.saturating_sub(before).min(max_scroll(state))
}

/// The conversation pane's inner size (inside its border), for scrolling.
pub fn conversation_size(state: &State) -> (u16, u16) {
    let area = Rect::new(0, 0, state.size.0, state.size.1);
    chat_layout(state, area).messages.map_or((0, 0), |r| {
        (r.width.saturating_sub(2), r.height.saturating_sub(2))
    })
}

pub fn render(frame: &mut Frame<'_>, state: &State) {
    let area = frame.area();
    let theme = theme::Theme::new(state.color);
    if let Screen::Login(form) = &state.screen {
        login::render(frame, area, state, form, &theme);
        return;
    }
    let layout = chat_layout(state, area);
    if let Some(rect) = layout.contacts {
        panes::contacts(frame, rect, state, &theme);
    }
    if let Some(rect) = layout.banner {
        panes::key_changed_banner(frame, rect, state, &theme);
    }
    if let Some(rect) = layout.messages {
        messages::render(frame, rect, state, &theme);
    }
    if let Some(rect) = layout.input {
        panes::input(frame, rect, state, &theme);
    }
    panes::status_bar(frame, layout.status, state, &theme);
    if let Some(overlay) = &state.overlay {
        overlays::render(frame, area, state, overlay, &theme);
    }
}

#[cfg(test)]
mod snapshots;
#[cfg(test)]
mod snapshots_attach;
#[cfg(test)]
mod snapshots_v2;
