//! Dialogs drawn over the chat: the key bindings, a new conversation, and a
//! contact's safety number.

use ratatui::Frame;
use ratatui::layout::{Constraint, Flex, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Clear, Paragraph, Wrap};

use super::theme::Theme;
use crate::app::state::{KeysView, MlsKeysView, Overlay, State};
use crate::pinning::KeyState;

/// Every key binding, as the help screen lists them.
pub const BINDINGS: &[(&str, &str)] = &[
    ("Enter", "send the message"),
    ("Alt-Enter / Ctrl-J", "new line in the message"),
    ("Tab / Shift-Tab", "next / previous pane"),
    ("↑ ↓  (contacts)", "choose a conversation"),
    ("Alt-↑ / Alt-↓", "switch conversation from anywhere"),
    ("↑ ↓ Home End (messages)", "scroll"),
    ("PgUp / PgDn, mouse wheel", "scroll the conversation"),
    ("Ctrl-N", "new conversation (username or #group)"),
    ("Ctrl-F", "safety number / a group's members"),
    ("Ctrl-G", "new group (name and members)"),
    ("a r n l (members)", "add, remove, rename, leave"),
    ("Ctrl-D", "approve a device link code"),
    ("/ then n N", "search the conversation"),
    ("Ctrl-O", "notifications on / off"),
    ("Ctrl-R", "retry queued or failed messages"),
    ("Ctrl-T", "attach a file (Tab completes the path)"),
    ("a / o (messages)", "choose an attachment / open or save it"),
    ("Esc", "close a dialog / back to contacts"),
    ("F1 or ?", "this help"),
    ("Ctrl-C / Ctrl-Q", "quit"),
];

pub(super) fn centered(area: Rect, width: u16, height: u16) -> Rect {
    let width = width.min(area.width);
    let height = height.min(area.height);
    let [row] = Layout::vertical([Constraint::Length(height)])
        .flex(Flex::Center)
        .areas(area);
    let [rect] = Layout::horizontal([Constraint::Length(width)])
        .flex(Flex::Center)
        .areas(row);
    rect
}

pub fn render(frame: &mut Frame<'_>, area: Rect, state: &State, overlay: &Overlay, theme: &Theme) {
    match overlay {
        Overlay::Help { scroll } => help(frame, area, *scroll, theme),
        Overlay::NewConversation(field) => {
            let rect = centered(area, 44, 5);
            frame.render_widget(Clear, rect);
            let block = Block::bordered()
                .title(" New conversation: username ")
                .title_bottom(" Enter opens · Esc cancels ")
                .border_style(theme.border(true));
            let mut field = field.clone();
            field.set_block(block);
            field.set_cursor_line_style(theme.plain());
            frame.render_widget(&*field, rect);
        }
        Overlay::Keys { peer, view } => keys(frame, area, state, peer, view.as_ref(), theme),
        Overlay::Form(form) => super::dialogs::form(frame, area, form, theme),
        Overlay::Members { label, view, .. } => {
            super::dialogs::members(frame, area, state, label, view.as_deref(), theme);
        }
        Overlay::Attach(prompt) => super::attachment::prompt(frame, area, state, prompt, theme),
    }
}

/// The help text at `width` columns: one line per binding, or on narrow
/// screens the key on one line and what it does below.
fn help_lines(width: u16, theme: &Theme) -> Vec<Line<'static>> {
    let key_width = BINDINGS
        .iter()
        .map(|(k, _)| k.chars().count())
        .max()
        .unwrap_or(10);
    let wide = usize::from(width) >= key_width + 36;
    let mut lines = Vec::new();
    for (key, what) in BINDINGS {
        if wide {
            lines.push(Line::from(vec![
                Span::styled(format!(" {key:key_width$}  "), theme.accent()),
                Span::raw(*what),
            ]));
        } else {
            lines.push(Line::styled(format!(" {key}"), theme.accent()));
            lines.push(Line::raw(format!("     {what}")));
        }
    }
    lines.push(Line::raw(""));
    lines.push(Line::styled(
        " ✔ verified (compared) · pinned, not compared · ⚠ unverified",
        theme.dim(),
    ));
    lines.push(Line::styled(" ✓ on the relay · ✓✓ delivered", theme.dim()));
    lines
}

fn help_rect(area: Rect) -> Rect {
    centered(area, 70, u16::try_from(BINDINGS.len()).unwrap_or(20) + 5)
}

/// How far the help can scroll on a terminal of `size`.
pub fn help_max_scroll(size: (u16, u16)) -> u16 {
    let rect = help_rect(Rect::new(0, 0, size.0, size.1));
    let lines = help_lines(rect.width.saturating_sub(2), &Theme::new(false)).len();
    u16::try_from(lines)
        .unwrap_or(u16::MAX)
        .saturating_sub(rect.height.saturating_sub(2))
}

fn help(frame: &mut Frame<'_>, area: Rect, scroll: u16, theme: &Theme) {
    let rect = help_rect(area);
    frame.render_widget(Clear, rect);
    let lines = help_lines(rect.width.saturating_sub(2), theme);
    let more = help_max_scroll((area.width, area.height)) > scroll;
    let block = Block::bordered()
        .title(" Keys ")
        .title_bottom(if more {
            " ↓ more · Esc closes "
        } else {
            " Esc closes "
        })
        .border_style(theme.border(true));
    frame.render_widget(Paragraph::new(lines).block(block).scroll((scroll, 0)), rect);
}

fn keys(
    frame: &mut Frame<'_>,
    area: Rect,
    state: &State,
    peer: &str,
    view: Option<&KeysView>,
    theme: &Theme,
) {
    let rect = centered(area, 62, 16);
    frame.render_widget(Clear, rect);
    let block = Block::bordered()
        .title(format!(" Safety number with {peer} "))
        .title_bottom(" v marks verified · Esc closes ")
        .border_style(theme.border(true));
    let Some(view) = view else {
        frame.render_widget(
            Paragraph::new(Line::styled(
                "Asking the relay for the current key…",
                theme.dim(),
            ))
            .block(block),
            rect,
        );
        return;
    };
    if let Some(mls) = &view.mls {
        frame.render_widget(
            Paragraph::new(mls_lines(peer, view, mls, theme))
                .block(block.title(" Kavro v2 (MLS) "))
                .wrap(Wrap { trim: false }),
            rect,
        );
        return;
    }
    let me = state.me.as_ref().map_or("you", |m| m.username.as_str());
    let mut lines = Vec::new();
    let (status, style) = match view.state {
        KeyState::Verified => ("verified by you", theme.ok()),
        KeyState::Pinned => ("pinned on first use, not verified yet", theme.warn()),
        KeyState::Changed => ("CHANGED since you pinned it", theme.danger()),
    };
    lines.push(Line::from(vec![
        Span::raw("Key: "),
        Span::styled(status, style),
    ]));
    let (number, fingerprint) = match &view.pending {
        Some((fingerprint, number)) => {
            lines.push(Line::styled(
                "The relay now shows a NEW key. Its safety number:",
                theme.danger(),
            ));
            (number, fingerprint)
        }
        None => (&view.safety_number, &view.fingerprint),
    };
    lines.push(Line::raw(""));
    for row in number {
        lines.push(Line::styled(format!("   {row}"), theme.bold()));
    }
    lines.push(Line::raw(""));
    lines.push(Line::from(vec![
        Span::styled(format!("{peer}: "), theme.them()),
        Span::raw(fingerprint.clone()),
    ]));
    lines.push(Line::from(vec![
        Span::styled(format!("{me}: "), theme.me()),
        Span::raw(view.own_fingerprint.clone()),
    ]));
    lines.push(Line::raw(""));
    lines.push(Line::styled(
        format!("Compare these digits with {peer} in person or by a call. If they match, press v."),
        theme.dim(),
    ));
    frame.render_widget(
        Paragraph::new(lines)
            .block(block)
            .wrap(Wrap { trim: false }),
        rect,
    );
}

/// The safety number of a 1:1 over MLS: over both accounts' root device
/// keys (one comparison covers every device of both); the v1 key's state in
/// one line, for the messages of older clients.
fn mls_lines<'a>(peer: &str, view: &KeysView, mls: &MlsKeysView, theme: &Theme) -> Vec<Line<'a>> {
    let (status, style) = if mls.verified {
        ("verified by you", theme.ok())
    } else {
        ("pinned on first use, not verified yet", theme.warn())
    };
    let plural = if mls.devices == 1 { "" } else { "s" };
    let mut lines = vec![Line::from(vec![
        Span::raw(format!("{peer}'s {} device{plural}: ", mls.devices)),
        Span::styled(status, style),
    ])];
    lines.push(Line::raw(""));
    for row in mls.number.lines() {
        lines.push(Line::styled(format!("   {row}"), theme.bold()));
    }
    lines.push(Line::raw(""));
    lines.push(Line::styled(
        "One number for every device of both accounts.",
        theme.dim(),
    ));
    let v1 = match view.state {
        KeyState::Verified => "verified",
        KeyState::Pinned => "pinned, not verified",
        KeyState::Changed => "CHANGED since you pinned it",
    };
    lines.push(Line::styled(
        format!("v1 key (messages of older clients): {v1}"),
        theme.dim(),
    ));
    lines.push(Line::raw(""));
    lines.push(Line::styled(
        format!("Compare these digits with {peer} in person or by a call. If they match, press v."),
        theme.dim(),
    ));
    lines
}
