//! The Kavro v2 dialogs: a form of one-line fields (new group, add,
//! remove, rename, leave, approve a device), and a conversation's member
//! list with each member's devices and verification state.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Clear, Paragraph, Wrap};

use super::overlays::centered;
use super::theme::Theme;
use crate::app::state::{Form, FormKind, MemberView, State};
use crate::pinning::KeyState;

pub fn form(frame: &mut Frame<'_>, area: Rect, form: &Form, theme: &Theme) {
    let fields = form.kind.fields();
    let hint = match &form.kind {
        FormKind::CreateGroup => "Members: usernames, separated by spaces",
        FormKind::AddMembers { .. } | FormKind::RemoveMembers { .. } => {
            "Usernames, separated by spaces"
        }
        FormKind::Rename { .. } => "No spaces or '#'",
        FormKind::Leave { .. } => "The others keep the conversation; you stop receiving it.",
        FormKind::ApproveLink => "The code `kavro device link` shows on the new installation",
    };
    let height = u16::try_from(fields.len()).unwrap_or(2) * 3 + 4;
    let rect = centered(area, 52, height);
    frame.render_widget(Clear, rect);
    let block = Block::bordered()
        .title(form.kind.title())
        .title_bottom(" Enter · Tab next field · Esc cancels ")
        .border_style(theme.border(true));
    let inner = block.inner(rect);
    frame.render_widget(block, rect);
    let mut y = inner.y;
    for (index, (label, input)) in fields.iter().zip(&form.inputs).enumerate() {
        if y + 3 > inner.bottom() {
            break;
        }
        let focused = index == form.field;
        let mut input = input.clone();
        input.set_block(
            Block::bordered()
                .title(format!(" {label} "))
                .border_style(theme.border(focused)),
        );
        input.set_cursor_line_style(theme.plain());
        if !focused {
            input.set_cursor_style(theme.plain());
        }
        frame.render_widget(&input, Rect::new(inner.x, y, inner.width, 3));
        y += 3;
    }
    let (text, style) = match &form.error {
        Some(error) => (error.as_str(), theme.danger()),
        None => (hint, theme.dim()),
    };
    let below = Rect::new(inner.x, y, inner.width, inner.bottom().saturating_sub(y));
    frame.render_widget(
        Paragraph::new(Line::styled(text, style)).wrap(Wrap { trim: true }),
        below,
    );
}

pub fn members(
    frame: &mut Frame<'_>,
    area: Rect,
    state: &State,
    label: &str,
    view: Option<&[MemberView]>,
    theme: &Theme,
) {
    let rect = centered(area, 62, 16);
    frame.render_widget(Clear, rect);
    let block = Block::bordered()
        .title(format!(" Members of {label} "))
        .title_bottom(" a add · r remove · n rename · l leave · Esc ")
        .border_style(theme.border(true));
    let Some(members) = view else {
        frame.render_widget(
            Paragraph::new(Line::styled(
                "Asking the relay for the devices…",
                theme.dim(),
            ))
            .block(block),
            rect,
        );
        return;
    };
    let me = state.me.as_ref().map(|m| m.username.as_str());
    let mut lines = Vec::new();
    for member in members {
        let (trust, style) = if Some(member.username.as_str()) == me {
            ("you", theme.me())
        } else {
            match state
                .contacts
                .iter()
                .find(|c| c.group.is_none() && c.name.eq_ignore_ascii_case(&member.username))
                .and_then(|c| c.key_state)
            {
                Some(KeyState::Verified) => ("✔ verified", theme.ok()),
                Some(KeyState::Pinned) => ("· pinned, not compared", theme.dim()),
                Some(KeyState::Changed) => ("⚠ key changed", theme.danger()),
                None => ("not compared", theme.warn()),
            }
        };
        lines.push(Line::from(vec![
            Span::styled(member.username.clone(), theme.bold()),
            Span::raw("  "),
            Span::styled(trust, style),
        ]));
        if let Some(error) = &member.error {
            lines.push(Line::styled(format!("   {error}"), theme.danger()));
        }
        for device in &member.devices {
            let mut spans = vec![Span::raw(format!("   #{} ", device.id))];
            spans.push(Span::styled(device.fingerprint.clone(), theme.dim()));
            if device.revoked {
                spans.push(Span::styled("  revoked", theme.danger()));
            }
            if device.this_device {
                spans.push(Span::styled("  (this one)", theme.accent()));
            }
            lines.push(Line::from(spans));
        }
    }
    frame.render_widget(
        Paragraph::new(lines)
            .block(block)
            .wrap(Wrap { trim: false }),
        rect,
    );
}
