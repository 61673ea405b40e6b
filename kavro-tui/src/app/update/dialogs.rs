//! Keys in dialogs: help, a new conversation, the safety-number view, and
//! the login form.

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

use super::{groups, notice, select};
use crate::app::command::{Command, V2Command};
use crate::app::state::{Focus, LoginField, NoticeKind, Overlay, Screen, State};

pub(super) fn on_overlay_key(state: &mut State, key: KeyEvent) -> Vec<Command> {
    let Some(overlay) = state.overlay.as_mut() else {
        return Vec::new();
    };
    match overlay {
        Overlay::Help { scroll } => {
            match key.code {
                KeyCode::Esc | KeyCode::Enter | KeyCode::Char('?' | 'q') | KeyCode::F(1) => {
                    state.overlay = None;
                }
                KeyCode::Up | KeyCode::PageUp => *scroll = scroll.saturating_sub(1),
                KeyCode::Down | KeyCode::PageDown => {
                    *scroll = (*scroll + 1).min(crate::ui::help_max_scroll(state.size));
                }
                _ => {}
            }
            Vec::new()
        }
        Overlay::NewConversation(field) => match key.code {
            KeyCode::Esc => {
                state.overlay = None;
                Vec::new()
            }
            KeyCode::Enter => {
                let name = field.lines().join("").trim().to_owned();
                state.overlay = None;
                if name.is_empty() {
                    return Vec::new();
                }
                if name.starts_with('#') && state.contact_index(&name).is_none() {
                    notice(
                        state,
                        NoticeKind::Error,
                        format!("No group {name}: Ctrl-G creates one"),
                    );
                    return Vec::new();
                }
                if !name.starts_with('#')
                    && let Err(reason) = kavro_proto::validate::username(&name)
                {
                    notice(state, NoticeKind::Error, format!("{name:?}: {reason}"));
                    return Vec::new();
                }
                if let Some(index) = state.contact_index(&name) {
                    let commands = select(state, index);
                    state.focus = Focus::Input;
                    return commands;
                }
                notice(state, NoticeKind::Info, format!("Looking up {name}…"));
                vec![Command::OpenConversation { name }]
            }
            _ => {
                field.input(key);
                Vec::new()
            }
        },
        Overlay::Keys { peer, view } => match key.code {
            KeyCode::Esc | KeyCode::Char('q') => {
                state.overlay = None;
                Vec::new()
            }
            KeyCode::Char('v') => {
                let Some(view) = view.as_ref() else {
                    return Vec::new();
                };
                let peer = peer.clone();
                if let Some(mls) = &view.mls {
                    let number = mls.number;
                    state.overlay = None;
                    notice(
                        state,
                        NoticeKind::Info,
                        format!("Marking {peer}'s Kavro v2 safety number as verified…"),
                    );
                    return vec![Command::V2(V2Command::TrustRoot { peer, number })];
                }
                let key = view.key_shown;
                state.overlay = None;
                notice(
                    state,
                    NoticeKind::Info,
                    format!("Marking {peer}'s key as verified…"),
                );
                vec![Command::Trust { peer, key }]
            }
            _ => Vec::new(),
        },
        Overlay::Form(_) => groups::on_form_key(state, key),
        Overlay::Members { .. } => groups::on_members_key(state, key),
        Overlay::Attach(_) => super::attach::on_prompt_key(state, key),
    }
}

pub(super) fn on_login_key(state: &mut State, key: KeyEvent) -> Vec<Command> {
    let Screen::Login(form) = &mut state.screen else {
        return Vec::new();
    };
    if form.busy {
        return Vec::new();
    }
    match key.code {
        KeyCode::Tab | KeyCode::BackTab | KeyCode::Up | KeyCode::Down => {
            let back = matches!(key.code, KeyCode::BackTab | KeyCode::Up);
            form.field = match (form.field, back, form.register) {
                (LoginField::Username, false, _) | (LoginField::Invite, true, _) => {
                    LoginField::Password
                }
                (LoginField::Password, false, true) | (LoginField::Username, true, true) => {
                    LoginField::Invite
                }
                _ => LoginField::Username,
            };
            Vec::new()
        }
        KeyCode::F(2) => {
            toggle_register(form);
            Vec::new()
        }
        KeyCode::Char('r') if key.modifiers.contains(KeyModifiers::CONTROL) => {
            toggle_register(form);
            Vec::new()
        }
        KeyCode::Enter => {
            let username = form.username.lines().join("").trim().to_owned();
            let password = form.password.lines().join("");
            if form.field == LoginField::Username && password.is_empty() {
                form.field = LoginField::Password;
                return Vec::new();
            }
            if let Err(reason) = kavro_proto::validate::username(&username) {
                form.error = Some(format!("Username {reason}"));
                form.field = LoginField::Username;
                return Vec::new();
            }
            if form.register
                && let Err(reason) = kavro_proto::validate::password(&password)
            {
                form.error = Some(format!("Password {reason}"));
                return Vec::new();
            }
            form.busy = true;
            form.error = None;
            let invite = form.invite.lines().join("").trim().to_owned();
            vec![Command::Login {
                username,
                password,
                register: form.register,
                invite: (form.register && !invite.is_empty()).then_some(invite),
            }]
        }
        _ => {
            match form.field {
                LoginField::Username => form.username.input(key),
                LoginField::Password => form.password.input(key),
                LoginField::Invite => form.invite.input(key),
            };
            Vec::new()
        }
    }
}

/// F2 / Ctrl-R: log in ⇄ create an account (the invite field only exists
/// for the latter).
fn toggle_register(form: &mut crate::app::state::LoginForm) {
    form.register = !form.register;
    if !form.register && form.field == LoginField::Invite {
        form.field = LoginField::Username;
    }
}
