//! An attachment's lines in the conversation: direction, name, size and
//! where it stands (`uploading 42 %`, `on the relay`, `saved to PATH`,
//! `not saved: REASON`), then its caption.

use ratatui::style::Style;
use ratatui::text::{Line, Span};

use super::messages::wrap;
use super::theme::Theme;
use crate::app::state::{AttachmentStatus, AttachmentView};
use crate::v2::payload::human_size;

/// What the line says about where the file stands.
pub fn status_text(attachment: &AttachmentView) -> String {
    match &attachment.status {
        AttachmentStatus::Uploading { percent } => format!("uploading {percent} %"),
        AttachmentStatus::OnRelay => "on the relay".to_owned(),
        AttachmentStatus::Saved(path) => format!("saved to {path}"),
        AttachmentStatus::NotSaved(reason) => format!("not saved: {reason}"),
    }
}

/// The attachment line(s) at `width` columns: `↑` a file sent, `↓` one received.
pub fn lines(
    attachment: &AttachmentView,
    lead: &str,
    style: Style,
    width: usize,
    theme: &Theme,
) -> Vec<Line<'static>> {
    let (arrow, direction) = if attachment.outgoing {
        ("↑", "sent")
    } else {
        ("↓", "received")
    };
    let size = match (&attachment.status, attachment.size) {
        (AttachmentStatus::Uploading { .. }, 0) => String::new(),
        (_, size) => format!(" ({})", human_size(size)),
    };
    let head = format!(
        "{arrow} {direction} {}{size} · {}",
        attachment.name,
        status_text(attachment)
    );
    let state_style = match attachment.status {
        AttachmentStatus::NotSaved(_) => theme.danger(),
        AttachmentStatus::Saved(_) => theme.ok(),
        AttachmentStatus::Uploading { .. } | AttachmentStatus::OnRelay => style,
    };
    let mut out: Vec<Line<'static>> = wrap(&head, width.saturating_sub(2))
        .into_iter()
        .enumerate()
        .map(|(i, l)| {
            let pad = if i == 0 { lead } else { "  " };
            Line::from(vec![
                Span::styled(pad.to_owned(), style),
                Span::styled(l, state_style),
            ])
        })
        .collect();
    if let Some(caption) = &attachment.caption {
        out.extend(
            wrap(caption, width.saturating_sub(2))
                .into_iter()
                .map(|l| Line::styled(format!("  {l}"), style)),
        );
    }
    out
}

/// The attach prompt: the path (Tab completes), the names Tab offered or
/// why Enter was refused, and the caption the message line gives it.
pub fn prompt(
    frame: &mut ratatui::Frame<'_>,
    area: ratatui::layout::Rect,
    state: &crate::app::state::State,
    prompt: &crate::app::state::AttachPrompt,
    theme: &Theme,
) {
    use ratatui::layout::Rect;
    use ratatui::widgets::{Block, Clear, Paragraph, Wrap};

    let rect = super::overlays::centered(area, 64, 11);
    frame.render_widget(Clear, rect);
    let block = Block::bordered()
        .title(format!(" Attach a file to {} ", prompt.label))
        .title_bottom(" Tab completes · Enter sends · Esc cancels ")
        .border_style(theme.border(true));
    let inner = block.inner(rect);
    frame.render_widget(block, rect);
    let mut path = prompt.path.clone();
    path.set_block(
        Block::bordered()
            .title(" Path ")
            .border_style(theme.border(true)),
    );
    path.set_cursor_line_style(theme.plain());
    path.set_placeholder_text("~/Downloads/report.pdf");
    path.set_placeholder_style(theme.dim());
    let field = Rect::new(inner.x, inner.y, inner.width, 3.min(inner.height));
    frame.render_widget(&path, field);
    let below = Rect::new(
        inner.x,
        field.bottom(),
        inner.width,
        inner.bottom().saturating_sub(field.bottom()),
    );
    let caption = state.input.lines().join(" ");
    let mut lines = Vec::new();
    if let Some(error) = &prompt.error {
        lines.push(Line::styled(error.clone(), theme.danger()));
    } else if !prompt.candidates.is_empty() {
        lines.push(Line::styled(prompt.candidates.join("  "), theme.plain()));
    } else {
        lines.push(Line::styled(
            "Files go end-to-end encrypted over Kavro v2.",
            theme.dim(),
        ));
    }
    let caption = if caption.trim().is_empty() {
        Line::styled(
            "Caption: none (type it in the message line first)",
            theme.dim(),
        )
    } else {
        Line::styled(format!("Caption: {}", caption.trim()), theme.dim())
    };
    let [offered, caption_row] = ratatui::layout::Layout::vertical([
        ratatui::layout::Constraint::Min(1),
        ratatui::layout::Constraint::Length(1),
    ])
    .areas(below);
    frame.render_widget(Paragraph::new(lines).wrap(Wrap { trim: true }), offered);
    frame.render_widget(Paragraph::new(caption), caption_row);
}
