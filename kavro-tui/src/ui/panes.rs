//! The contacts list, the key-changed banner, the input box and the status bar.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, List, ListItem, ListState, Paragraph, Wrap};

use super::theme::Theme;
use crate::app::state::{Connection, Focus, NoticeKind, State};
use crate::pinning::KeyState;

pub fn contacts(frame: &mut Frame<'_>, area: Rect, state: &State, theme: &Theme) {
    let focused = state.focus == Focus::Contacts;
    let block = Block::bordered()
        .title(" Contacts ")
        .border_style(theme.border(focused));
    if state.contacts.is_empty() {
        let inner = block.inner(area);
        frame.render_widget(block, area);
        let hint = vec![
            Line::styled("Nobody yet.", theme.dim()),
            Line::styled("Ctrl-N: new", theme.dim()),
        ];
        frame.render_widget(Paragraph::new(hint).wrap(Wrap { trim: true }), inner);
        return;
    }
    let items: Vec<ListItem<'_>> = state
        .contacts
        .iter()
        .map(|contact| {
            let (mark, style) = match (&contact.group, contact.key_state) {
                (Some(_), _) => ("≡", theme.accent()),
                (None, Some(KeyState::Verified)) => ("✔", theme.ok()),
                (None, Some(KeyState::Pinned)) => ("·", theme.dim()),
                (None, Some(KeyState::Changed)) => ("⚠", theme.danger()),
                // Known only over MLS: its devices are pinned on first use.
                (None, None) if contact.direct.is_some() => ("·", theme.dim()),
                (None, None) => ("?", theme.warn()),
            };
            let mut spans = vec![Span::styled(mark, style), Span::raw(" ")];
            let name_style = if contact.unread > 0 {
                theme.bold()
            } else {
                theme.plain()
            };
            spans.push(Span::styled(contact.name.clone(), name_style));
            match &contact.group {
                Some(group) if !group.active => spans.push(Span::styled(" left", theme.dim())),
                Some(group) if group.named => {
                    spans.push(Span::styled(
                        format!(" {}", group.members.len()),
                        theme.dim(),
                    ));
                }
                _ => {}
            }
            if contact.unread > 0 {
                spans.push(Span::styled(
                    format!(" ({})", contact.unread),
                    theme.accent(),
                ));
            }
            if contact.key_state == Some(KeyState::Changed) {
                spans.push(Span::styled(" CHANGED", theme.danger()));
            }
            ListItem::new(Line::from(spans))
        })
        .collect();
    let list = List::new(items)
        .block(block)
        .highlight_style(theme.selected())
        .highlight_symbol("▌");
    let mut list_state = ListState::default().with_selected(Some(state.selected));
    frame.render_stateful_widget(list, area, &mut list_state);
}

pub fn key_changed_banner(frame: &mut Frame<'_>, area: Rect, state: &State, theme: &Theme) {
    let name = state.current().map_or("", |c| c.name.as_str());
    let text = format!(
        "⚠ {name}'s identity key CHANGED. Sending is blocked until you compare safety \
         numbers (Ctrl-F) and mark the new key verified."
    );
    frame.render_widget(
        Paragraph::new(text)
            .style(theme.banner())
            .wrap(Wrap { trim: true }),
        area,
    );
}

pub fn input(frame: &mut Frame<'_>, area: Rect, state: &State, theme: &Theme) {
    let focused = state.focus == Focus::Input;
    let title = match (state.current_key_changed(), state.is_narrow()) {
        (true, _) => " Message (blocked: key changed) ",
        (false, true) => " Message ",
        (false, false) => " Message · Enter sends, Alt-Enter new line ",
    };
    let block = Block::bordered()
        .title(title)
        .border_style(theme.border(focused));
    let mut input = state.input.clone();
    input.set_block(block);
    input.set_cursor_line_style(theme.plain());
    if !focused {
        input.set_cursor_style(theme.plain());
    }
    if state.current().is_none() {
        input.set_placeholder_text("Press Ctrl-N to start a conversation");
    } else {
        input.set_placeholder_text("Type a message");
    }
    input.set_placeholder_style(theme.dim());
    frame.render_widget(&input, area);
}

fn seconds_until(state: &State, at: chrono::DateTime<chrono::Utc>) -> i64 {
    (at - state.now).num_seconds().max(0)
}

pub fn status_bar(frame: &mut Frame<'_>, area: Rect, state: &State, theme: &Theme) {
    let (connection, style) = match &state.connection {
        Connection::Connecting => ("◌ connecting…".to_owned(), theme.warn()),
        Connection::Online => ("● online".to_owned(), theme.ok()),
        Connection::Offline { retry_at, .. } => (
            format!("○ offline, retry in {}s", seconds_until(state, *retry_at)),
            theme.danger(),
        ),
        Connection::RateLimited { retry_at } => (
            format!(
                "◐ rate limited, retry in {}s",
                seconds_until(state, *retry_at)
            ),
            theme.warn(),
        ),
    };
    let synced = state.last_sync.map_or_else(
        || "not synced yet".to_owned(),
        |at| {
            format!(
                "synced {}",
                at.with_timezone(&state.offset).format("%H:%M:%S")
            )
        },
    );
    let who = match &state.me {
        Some(me) => format!("{} @ {}", me.username, short_server(&me.server)),
        None => short_server(&state.server).to_owned(),
    };
    let tail = match (&state.notice, &state.search) {
        (None, Some(search)) => Span::styled(search_status(search), theme.accent()),
        (Some(notice), _) => Span::styled(
            notice.text.clone(),
            match notice.kind {
                NoticeKind::Info => theme.accent(),
                NoticeKind::Error => theme.danger(),
            },
        ),
        (None, None) => Span::styled("F1 help", theme.dim()),
    };
    // Most important first; what does not fit is left out, the notice last of all.
    let mut segments = vec![Span::styled(connection, style)];
    let width = usize::from(area.width);
    let used = |segments: &[Span<'_>]| -> usize {
        segments.iter().map(Span::width).sum::<usize>() + 3 * segments.len() + 1
    };
    for extra in [Span::styled(who, theme.bold()), Span::raw(synced)] {
        let mut candidate = segments.clone();
        candidate.push(extra);
        if used(&candidate) + tail.width().min(12) <= width {
            segments = candidate;
        }
    }
    segments.push(tail);
    let mut spans = vec![Span::raw(" ")];
    for (i, segment) in segments.into_iter().enumerate() {
        if i > 0 {
            spans.push(Span::styled(" │ ", theme.dim()));
        }
        spans.push(segment);
    }
    frame.render_widget(
        Paragraph::new(Line::from(spans)).style(theme.status_bar()),
        area,
    );
}

/// The search as the status bar shows it: the query, which match, the keys.
fn search_status(search: &crate::app::state::Search) -> String {
    let position = match (search.current, search.matches.len()) {
        (_, 0) => "no match".to_owned(),
        (Some(i), n) => format!("{}/{n}", n - i),
        (None, n) => format!("{n} matches"),
    };
    if search.typing {
        format!("/{}▏ {position}", search.text())
    } else {
        format!("/{} {position} · n older · N newer · Esc", search.text())
    }
}

/// `host:port` of a relay URL.
fn short_server(server: &str) -> &str {
    server
        .split_once("://")
        .map_or(server, |(_, rest)| rest)
        .trim_end_matches('/')
}
