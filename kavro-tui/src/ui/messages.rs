//! The conversation pane: each message as a header line (time, a `v1` tag
//! among MLS lines, author, the verified mark or the delivery state) and its text wrapped to the pane,
//! wide characters measured by their display width.

use chrono::{DateTime, Utc};
use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Paragraph};

use super::theme::Theme;
use crate::app::state::{ContactEntry, Focus, Mark, MessageView, SendStatus, State};
use crate::pinning::KeyState;

/// Every line of a conversation at `width` columns, oldest first.
pub fn message_lines(
    messages: &[MessageView],
    width: u16,
    state: &State,
    theme: &Theme,
) -> Vec<Line<'static>> {
    lines_and_pictures(messages, width, state, theme).0
}

/// A picture drawn over the blank lines kept for it: the first line's
/// index and the attachment's id.
type Placement = (usize, i64);

/// [`message_lines`], and where pictures go.
fn lines_and_pictures(
    messages: &[MessageView],
    width: u16,
    state: &State,
    theme: &Theme,
) -> (Vec<Line<'static>>, Vec<Placement>) {
    let width = usize::from(width.max(4));
    let mut pictures = Vec::new();
    let mut lines = Vec::new();
    let mut previous_day = None;
    let shown = state
        .search
        .as_ref()
        .and_then(crate::app::state::Search::shown);
    // A person's conversation with a 1:1 over MLS shows v1 messages too:
    // those are tagged `v1` (in text, so it shows with NO_COLOR), as
    // `kavro history USER` marks them.
    let merged = state.current().is_some_and(|c| c.direct.is_some());
    for (index, message) in messages.iter().enumerate() {
        let local = message.sent_at.with_timezone(&state.offset);
        let day = local.date_naive();
        if previous_day != Some(day) {
            let label = format!("── {} ──", local.format("%a %e %b %Y"));
            lines.push(Line::styled(label, theme.dim()).centered());
            previous_day = Some(day);
        }
        if message.mark == Mark::System {
            let text = format!(
                "{} * {}",
                time(message.sent_at, state),
                message.text.as_deref().unwrap_or_default()
            );
            let body = wrap(&text, width);
            lines.extend(body.into_iter().map(|l| Line::styled(l, theme.dim())));
            continue;
        }
        lines.extend(header(
            message,
            merged && message.is_v1(),
            state,
            theme,
            width,
        ));
        // The search's match shown is marked without colour too (NO_COLOR).
        let (lead, style) = if shown == Some(index) {
            ("» ", theme.selected())
        } else {
            ("  ", theme.plain())
        };
        if let Some(attachment) = &message.attachment {
            let chosen = conversation_choice(state) == Some(message.id);
            let lead = if chosen || shown == Some(index) {
                "» "
            } else {
                lead
            };
            lines.extend(super::attachment::lines(
                attachment, lead, style, width, theme,
            ));
            // A thumbnail that fits gets blank lines to be drawn over.
            if let Some(id) = attachment.picture_key()
                && let Some(picture) = state.pictures.get(id)
                && usize::from(picture.size().width) + 2 <= width
            {
                pictures.push((lines.len(), id));
                lines.extend((0..picture.size().height).map(|_| Line::raw("")));
            }
            continue;
        }
        match &message.text {
            Some(text) => {
                let body = wrap(text, width.saturating_sub(2));
                lines.extend(
                    body.into_iter()
                        .map(|l| Line::styled(format!("{lead}{l}"), style)),
                );
            }
            None => lines.push(Line::styled("  (no readable text)", theme.dim())),
        }
    }
    (lines, pictures)
}

/// The attachment the open/save key acts on, when one was chosen.
fn conversation_choice(state: &State) -> Option<crate::app::state::ViewId> {
    state
        .current()
        .and_then(|c| state.conversation(&c.name))
        .and_then(|c| c.selected_attachment)
}

/// Wraps each line of `text` to `width` display columns, breaking long words.
pub(super) fn wrap(text: &str, width: usize) -> Vec<String> {
    let width = width.max(1);
    let options = textwrap::Options::new(width).break_words(true);
    text.split('\n')
        .flat_map(|line| {
            if line.is_empty() {
                vec![String::new()]
            } else {
                textwrap::wrap(line, &options)
                    .into_iter()
                    .map(std::borrow::Cow::into_owned)
                    .collect()
            }
        })
        .collect()
}

fn time(at: DateTime<Utc>, state: &State) -> String {
    at.with_timezone(&state.offset).format("%H:%M").to_string()
}

/// The header: time, author and mark on one line, or, when that does not
/// fit, the mark wrapped on the lines below.
/// `v1` tags a message of the v1 box among MLS lines.
fn header(
    message: &MessageView,
    v1: bool,
    state: &State,
    theme: &Theme,
    width: usize,
) -> Vec<Line<'static>> {
    let (author, mark) = header_parts(message, theme);
    let mut lead = vec![
        Span::styled(time(message.sent_at, state), theme.dim()),
        Span::raw(" "),
    ];
    if v1 {
        lead.extend([Span::styled("v1", theme.dim()), Span::raw(" ")]);
    }
    lead.extend([author, Span::raw(" ")]);
    let lead_width: usize = lead.iter().map(Span::width).sum();
    if lead_width + mark.width() <= width {
        let mut spans = lead;
        spans.push(mark);
        return vec![Line::from(spans)];
    }
    let mut lines = vec![Line::from(lead)];
    let style = mark.style;
    lines.extend(
        wrap(&mark.content, width.saturating_sub(2))
            .into_iter()
            .map(|l| Line::from(Span::styled(format!("  {l}"), style))),
    );
    lines
}

fn header_parts(message: &MessageView, theme: &Theme) -> (Span<'static>, Span<'static>) {
    if message.is_own() {
        let mark = match &message.status {
            // An attachment's own line says how far it got.
            Some(SendStatus::Sending | SendStatus::Stored) if message.attachment.is_some() => {
                Span::raw("")
            }
            Some(SendStatus::Sending) => Span::styled("… sending", theme.dim()),
            Some(SendStatus::Queued(reason)) => {
                Span::styled(format!("⧗ queued ({reason}), will retry"), theme.warn())
            }
            Some(SendStatus::Stored) => Span::styled("✓ on the relay", theme.dim()),
            Some(SendStatus::Delivered) => Span::styled("✓✓ delivered", theme.ok()),
            Some(SendStatus::Failed(reason)) => Span::styled(
                format!("✗ failed: {reason} (Ctrl-R retries)"),
                theme.danger(),
            ),
            None => Span::raw(""),
        };
        (Span::styled("you", theme.me()), mark)
    } else {
        let mark = match &message.mark {
            Mark::Verified => Span::styled("✔ verified", theme.ok()),
            Mark::Pinned => Span::styled("· pinned key, not compared", theme.dim()),
            Mark::Legacy => Span::styled("⚠ legacy: sender not authenticated", theme.warn()),
            Mark::Refused => Span::styled("✗ legacy message refused", theme.danger()),
            Mark::Unverified => Span::styled("⚠ unverified sender", theme.warn()),
            Mark::KeyMismatch => Span::styled("⚠ wrong key: not from them?", theme.danger()),
            Mark::Undecryptable(reason) => {
                Span::styled(format!("✗ could not decrypt: {reason}"), theme.danger())
            }
            Mark::Own | Mark::Member | Mark::System => Span::raw(""),
        };
        (Span::styled(message.author.clone(), theme.them()), mark)
    }
}

/// A person's title: the v1 key's state, and their 1:1 over MLS when there is one.
fn person_title(contact: &ContactEntry) -> String {
    let key = match contact.key_state {
        Some(KeyState::Verified) => " · ✔ verified",
        Some(KeyState::Pinned) => " · key pinned, not verified",
        Some(KeyState::Changed) => " · ⚠ KEY CHANGED",
        None => "",
    };
    let mls = contact.direct.as_ref().map_or_else(String::new, |direct| {
        let plural = if direct.devices == 1 { "" } else { "s" };
        format!(" · MLS, {} device{plural}", direct.devices)
    });
    format!(" {}{key}{mls} ", contact.name)
}

pub fn render(frame: &mut Frame<'_>, area: Rect, state: &State, theme: &Theme) {
    let focused = state.focus == Focus::Messages;
    let title = match state.current() {
        Some(contact) if contact.group.is_some() => match &contact.group {
            Some(group) if !group.active => {
                format!(" {} · you are no longer a member ", contact.name)
            }
            Some(group) => format!(
                " {} · {} member{}, {} device{} ",
                contact.name,
                group.members.len(),
                if group.members.len() == 1 { "" } else { "s" },
                group.devices,
                if group.devices == 1 { "" } else { "s" },
            ),
            None => format!(" {} ", contact.name),
        },
        Some(contact) => person_title(contact),
        None => " Kavro ".to_owned(),
    };
    let block = Block::bordered()
        .title(title)
        .border_style(theme.border(focused));
    let inner = block.inner(area);
    frame.render_widget(block, area);
    let Some(contact) = state.current() else {
        let text = vec![
            Line::raw(""),
            Line::styled("No conversations yet.", theme.bold()),
            Line::raw(""),
            Line::raw("Press Ctrl-N and type a username to start one."),
            Line::raw("Press F1 for every key binding."),
        ];
        frame.render_widget(Paragraph::new(text).centered(), inner);
        return;
    };
    let Some(conversation) = state.conversation(&contact.name) else {
        return;
    };
    let (lines, pictures) = lines_and_pictures(&conversation.messages, inner.width, state, theme);
    let height = usize::from(inner.height);
    let max_scroll = lines.len().saturating_sub(height);
    let scroll = conversation.scroll.min(max_scroll);
    let end = lines.len() - scroll;
    let start = end.saturating_sub(height);
    let visible: Vec<Line<'static>> = lines[start..end].to_vec();
    if conversation.messages.is_empty() {
        let hint = if conversation.loaded {
            format!("No messages with {} yet. Say hello!", contact.name)
        } else {
            "Loading…".to_owned()
        };
        frame.render_widget(
            Paragraph::new(Line::styled(hint, theme.dim())).centered(),
            inner,
        );
        return;
    }
    frame.render_widget(Paragraph::new(visible), inner);
    // Pictures wholly on screen (a graphics protocol cannot draw half of one).
    for (first, id) in pictures {
        let Some(picture) = state.pictures.get(id) else {
            continue;
        };
        let size = picture.size();
        if first < start || first + usize::from(size.height) > end {
            continue;
        }
        let y = inner.y + u16::try_from(first - start).unwrap_or(0);
        let rect = Rect::new(inner.x + 2, y, size.width, size.height);
        frame.render_widget(ratatui_image::Image::new(picture), rect);
    }
    if scroll > 0 {
        let more = format!(" ↓ {scroll} more ");
        let width = u16::try_from(more.chars().count()).unwrap_or(0);
        if inner.width > width {
            let tag = Rect::new(inner.right() - width, area.bottom() - 1, width, 1);
            frame.render_widget(Paragraph::new(Span::styled(more, theme.accent())), tag);
        }
    }
}
