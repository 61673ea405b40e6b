//! The short form shown when the profile has no account: log in, or (F2)
//! create one.

use ratatui::Frame;
use ratatui::layout::{Constraint, Flex, Layout, Rect};
use ratatui::text::Line;
use ratatui::widgets::{Block, Paragraph, Wrap};

use super::theme::Theme;
use crate::app::state::{LoginField, LoginForm, State};

pub fn render(frame: &mut Frame<'_>, area: Rect, state: &State, form: &LoginForm, theme: &Theme) {
    let width = area.width.min(56);
    let [column] = Layout::horizontal([Constraint::Length(width)])
        .flex(Flex::Center)
        .areas(area);
    let height = if form.register { 17 } else { 14 };
    let [rect] = Layout::vertical([Constraint::Length(height.min(area.height))])
        .flex(Flex::Center)
        .areas(column);
    let action = if form.register {
        "Create an account"
    } else {
        "Log in"
    };
    let block = Block::bordered()
        .title(format!(" Kavro · {action} "))
        .title_bottom(" Enter submits · F2 log in/register · Ctrl-C quits ")
        .border_style(theme.border(true));
    let inner = block.inner(rect);
    frame.render_widget(block, rect);
    let [server, username, password, invite, message] = Layout::vertical([
        Constraint::Length(2),
        Constraint::Length(3),
        Constraint::Length(3),
        Constraint::Length(if form.register { 3 } else { 0 }),
        Constraint::Min(1),
    ])
    .areas(inner);
    frame.render_widget(
        Paragraph::new(Line::styled(
            format!("Relay: {}", state.server),
            theme.dim(),
        )),
        server,
    );
    let mut fields = vec![
        (&form.username, LoginField::Username, username, " Username "),
        (&form.password, LoginField::Password, password, " Password "),
    ];
    if form.register {
        fields.push((
            &form.invite,
            LoginField::Invite,
            invite,
            " Invite code (if the relay asks for one) ",
        ));
    }
    for (field, which, rect, title) in fields {
        let mut field = field.clone();
        let focused = form.field == which;
        field.set_block(
            Block::bordered()
                .title(title)
                .border_style(theme.border(focused)),
        );
        field.set_cursor_line_style(theme.plain());
        if !focused {
            field.set_cursor_style(theme.plain());
        }
        frame.render_widget(&field, rect);
    }
    let text = if form.busy {
        Line::styled(
            "Working… (deriving keys, talking to the relay)",
            theme.accent(),
        )
    } else if let Some(error) = &form.error {
        Line::styled(error.clone(), theme.danger())
    } else if form.register {
        Line::styled(
            "8+ characters with an uppercase letter, a lowercase letter and a digit.",
            theme.dim(),
        )
    } else {
        Line::styled("New here? Press F2 to create an account.", theme.dim())
    };
    frame.render_widget(Paragraph::new(text).wrap(Wrap { trim: true }), message);
}
