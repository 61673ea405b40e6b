//! `update(state, action) -> commands`: every change the app makes, as a
//! pure function. Key handlers change state and ask for network work; they
//! never wait for it.

use chrono::{DateTime, Utc};
use crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers, MouseEvent, MouseEventKind};
use ratatui_textarea::TextArea;

use super::action::{Action, NetEvent, SendOutcome};
use super::command::Command;
use super::state::{
    Connection, ContactEntry, Focus, LoginField, Mark, MessageView, Notice, NoticeKind, Overlay,
    Screen, SendStatus, State, ViewId,
};
use crate::pinning::KeyState;

/// How long a notice stays.
const NOTICE_SECS: i64 = 6;
/// How often stored messages of the open conversation are checked for delivery.
const DELIVERY_CHECK_SECS: i64 = 10;
/// At most this many of them per check (the newest).
const DELIVERY_CHECK_MAX: usize = 20;
/// Messages older than this are not checked for delivery any more.
const DELIVERY_CHECK_MAX_AGE_HOURS: i64 = 48;
/// Lines one mouse-wheel step scrolls.
const WHEEL_LINES: usize = 3;

pub fn update(state: &mut State, action: Action) -> Vec<Command> {
    match action {
        Action::Key(key) => {
            if key.kind == KeyEventKind::Release {
                return Vec::new();
            }
            on_key(state, key)
        }
        Action::Mouse(mouse) => {
            on_mouse(state, mouse);
            Vec::new()
        }
        Action::Paste(text) => {
            on_paste(state, &text);
            Vec::new()
        }
        Action::Resize(width, height) => {
            state.size = (width, height);
            Vec::new()
        }
        Action::Tick(now) => on_tick(state, now),
        Action::Net(event) => on_net(state, event),
    }
}

fn notice(state: &mut State, kind: NoticeKind, text: impl Into<String>) {
    state.notice = Some(Notice {
        text: text.into(),
        kind,
        until: state.now + chrono::Duration::seconds(NOTICE_SECS),
    });
}

fn is_ctrl(key: &KeyEvent, c: char) -> bool {
    key.modifiers.contains(KeyModifiers::CONTROL) && key.code == KeyCode::Char(c)
}

fn on_key(state: &mut State, key: KeyEvent) -> Vec<Command> {
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
    match state.focus {
        Focus::Contacts => on_contacts_key(state, key),
        Focus::Messages => on_messages_key(state, key),
        Focus::Input => on_input_key(state, key),
    }
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

/// Enter in the input: queue the text for sending and show it as sending.
fn send(state: &mut State) -> Vec<Command> {
    let text = state.input.lines().join("\n");
    if text.trim().is_empty() {
        return Vec::new();
    }
    let Some(peer) = state.current().map(|c| c.name.clone()) else {
        notice(
            state,
            NoticeKind::Error,
            "No conversation open: press Ctrl-N to start one",
        );
        return Vec::new();
    };
    if state.current_key_changed() {
        notice(
            state,
            NoticeKind::Error,
            format!(
                "Not sent: {peer}'s key changed. Compare safety numbers (Ctrl-F), then mark it verified"
            ),
        );
        return Vec::new();
    }
    let Some(me) = state.me.as_ref().map(|m| m.username.clone()) else {
        return Vec::new();
    };
    let pending = state.next_pending_id();
    let now = state.now;
    let conversation = state.conversation_mut(&peer);
    conversation.messages.push(MessageView {
        id: ViewId::Pending(pending),
        author: me,
        sent_at: now,
        text: Some(text.clone()),
        mark: Mark::Own,
        status: Some(SendStatus::Sending),
        relay_id: None,
    });
    conversation.scroll = 0;
    touch(state, &peer, now);
    state.input = TextArea::default();
    vec![Command::Send {
        pending,
        peer,
        text,
    }]
}

fn on_overlay_key(state: &mut State, key: KeyEvent) -> Vec<Command> {
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
                if let Err(reason) = kavro_proto::validate::username(&name) {
                    notice(state, NoticeKind::Error, format!("{name:?}: {reason}"));
                    return Vec::new();
                }
                if let Some(index) = state.contact_index(&name) {
                    let mut commands = select(state, index);
                    state.focus = Focus::Input;
                    commands.retain(|c| matches!(c, Command::LoadHistory { .. }));
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
            KeyCode::Char('v') if view.is_some() => {
                let peer = peer.clone();
                state.overlay = None;
                notice(
                    state,
                    NoticeKind::Info,
                    format!("Marking {peer}'s key as verified…"),
                );
                vec![Command::Trust { peer }]
            }
            _ => Vec::new(),
        },
    }
}

fn on_login_key(state: &mut State, key: KeyEvent) -> Vec<Command> {
    let Screen::Login(form) = &mut state.screen else {
        return Vec::new();
    };
    if form.busy {
        return Vec::new();
    }
    match key.code {
        KeyCode::Tab | KeyCode::BackTab | KeyCode::Up | KeyCode::Down => {
            form.field = match form.field {
                LoginField::Username => LoginField::Password,
                LoginField::Password => LoginField::Username,
            };
            Vec::new()
        }
        KeyCode::F(2) => {
            form.register = !form.register;
            Vec::new()
        }
        KeyCode::Char('r') if key.modifiers.contains(KeyModifiers::CONTROL) => {
            form.register = !form.register;
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
            vec![Command::Login {
                username,
                password,
                register: form.register,
            }]
        }
        _ => {
            match form.field {
                LoginField::Username => form.username.input(key),
                LoginField::Password => form.password.input(key),
            };
            Vec::new()
        }
    }
}

fn on_mouse(state: &mut State, mouse: MouseEvent) {
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

fn on_paste(state: &mut State, text: &str) {
    match (&mut state.screen, &mut state.overlay) {
        (Screen::Login(form), _) => match form.field {
            LoginField::Username => {
                form.username.insert_str(text.replace(['\r', '\n'], ""));
            }
            LoginField::Password => {
                form.password.insert_str(text.replace(['\r', '\n'], ""));
            }
        },
        (Screen::Chat, Some(Overlay::NewConversation(field))) => {
            field.insert_str(text.replace(['\r', '\n'], ""));
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

fn select_relative(state: &mut State, delta: isize) -> Vec<Command> {
    if state.contacts.is_empty() {
        return Vec::new();
    }
    let last = state.contacts.len() - 1;
    let index = state.selected.saturating_add_signed(delta).min(last);
    select(state, index)
}

/// Opens contact `index`: clears its unread count, loads its history once.
fn select(state: &mut State, index: usize) -> Vec<Command> {
    let Some(contact) = state.contacts.get_mut(index) else {
        return Vec::new();
    };
    contact.unread = 0;
    let name = contact.name.clone();
    state.selected = index;
    if state.conversation(&name).is_some_and(|c| c.loaded) {
        Vec::new()
    } else {
        vec![Command::LoadHistory { peer: name }]
    }
}

fn open_keys(state: &mut State) -> Vec<Command> {
    let Some(peer) = state.current().map(|c| c.name.clone()) else {
        notice(state, NoticeKind::Error, "No conversation open");
        return Vec::new();
    };
    state.overlay = Some(Overlay::Keys {
        peer: peer.clone(),
        view: None,
    });
    vec![Command::LoadKeys { peer }]
}

fn retry(state: &mut State) -> Vec<Command> {
    let mut commands = vec![Command::RetryOutbox];
    // A message refused for good is sent again as a new message.
    if let Some(peer) = state.current().map(|c| c.name.clone()) {
        let failed: Vec<String> = state
            .conversation(&peer)
            .map(|c| {
                c.messages
                    .iter()
                    .filter(|m| matches!(m.status, Some(SendStatus::Failed(_))))
                    .filter_map(|m| m.text.clone())
                    .collect()
            })
            .unwrap_or_default();
        if !failed.is_empty() && !state.current_key_changed() {
            let conversation = state.conversation_mut(&peer);
            conversation
                .messages
                .retain(|m| !matches!(m.status, Some(SendStatus::Failed(_))));
            for text in failed {
                let pending = state.next_pending_id();
                let me = state
                    .me
                    .as_ref()
                    .map(|m| m.username.clone())
                    .unwrap_or_default();
                let now = state.now;
                state.conversation_mut(&peer).messages.push(MessageView {
                    id: ViewId::Pending(pending),
                    author: me,
                    sent_at: now,
                    text: Some(text.clone()),
                    mark: Mark::Own,
                    status: Some(SendStatus::Sending),
                    relay_id: None,
                });
                commands.push(Command::Send {
                    pending,
                    peer: peer.clone(),
                    text,
                });
            }
        }
    }
    notice(state, NoticeKind::Info, "Retrying…");
    commands
}

fn on_tick(state: &mut State, now: DateTime<Utc>) -> Vec<Command> {
    let previous = state.now;
    state.now = now;
    if state.notice.as_ref().is_some_and(|n| n.until <= now) {
        state.notice = None;
    }
    // Every few seconds, ask about delivery of the open conversation's stored messages.
    let period = DELIVERY_CHECK_SECS;
    if previous.timestamp().div_euclid(period) == now.timestamp().div_euclid(period) {
        return Vec::new();
    }
    let Some(peer) = state.current().map(|c| c.name.clone()) else {
        return Vec::new();
    };
    let oldest = now - chrono::Duration::hours(DELIVERY_CHECK_MAX_AGE_HOURS);
    // Only messages still not delivered, in one command.
    let messages: Vec<_> = state
        .conversation(&peer)
        .map(|c| {
            c.messages
                .iter()
                .rev()
                .filter(|m| m.status == Some(SendStatus::Stored) && m.sent_at >= oldest)
                .filter_map(|m| match (m.id, m.relay_id) {
                    (ViewId::Local(local_id), Some(relay_id)) => Some((local_id, relay_id)),
                    _ => None,
                })
                .take(DELIVERY_CHECK_MAX)
                .collect()
        })
        .unwrap_or_default();
    if messages.is_empty() {
        return Vec::new();
    }
    vec![Command::CheckDeliveries { peer, messages }]
}

/// Moves `peer` to the top of the list (most recent activity first),
/// keeping the selection on the same contact.
fn touch(state: &mut State, peer: &str, at: DateTime<Utc>) {
    if let Some(index) = state.contact_index(peer) {
        state.contacts[index].last_activity = Some(at);
    }
    sort_contacts(state);
}

fn sort_contacts(state: &mut State) {
    let selected = state.current().map(|c| c.name.clone());
    state.contacts.sort_by(|a, b| {
        b.last_activity.cmp(&a.last_activity).then_with(|| {
            a.name
                .to_ascii_lowercase()
                .cmp(&b.name.to_ascii_lowercase())
        })
    });
    if let Some(name) = selected
        && let Some(index) = state.contact_index(&name)
    {
        state.selected = index;
    }
}

/// Adds `peer` to the contacts if missing; returns its index.
fn ensure_contact(state: &mut State, peer: &str, key_state: Option<KeyState>) -> usize {
    if let Some(index) = state.contact_index(peer) {
        if key_state.is_some() {
            state.contacts[index].key_state = key_state;
        }
        return index;
    }
    state.contacts.push(ContactEntry {
        name: peer.to_owned(),
        key_state,
        unread: 0,
        last_activity: None,
    });
    sort_contacts(state);
    state.contact_index(peer).unwrap_or(0)
}

fn on_net(state: &mut State, event: NetEvent) -> Vec<Command> {
    match event {
        NetEvent::Ready { me, contacts } => {
            state.me = Some(me);
            state.screen = Screen::Chat;
            state.contacts = contacts;
            sort_contacts(state);
            state.selected = 0;
            select(state, 0)
        }
        NetEvent::History { peer, messages } => {
            let conversation = state.conversation_mut(&peer);
            // Sends still on their way stay; everything else comes from the history.
            let in_flight: Vec<MessageView> = conversation
                .messages
                .drain(..)
                .filter(|m| matches!(m.id, ViewId::Pending(_)))
                .collect();
            conversation.messages = messages;
            conversation.messages.extend(in_flight);
            conversation.loaded = true;
            Vec::new()
        }
        NetEvent::Synced { at, received } => {
            state.connection = Connection::Online;
            state.last_sync = Some(at);
            for (peer, message) in received {
                let index = ensure_contact(state, &peer, None);
                let is_open = index == state.selected;
                let sent_at = message.sent_at;
                let conversation = state.conversation_mut(&peer);
                if !conversation.messages.iter().any(|m| m.id == message.id) {
                    conversation.messages.push(message);
                    if !is_open && let Some(index) = state.contact_index(&peer) {
                        state.contacts[index].unread += 1;
                    }
                }
                touch(state, &peer, sent_at.max(at));
            }
            Vec::new()
        }
        NetEvent::SyncFailed {
            reason,
            rate_limited,
            retry_in,
        } => {
            let retry_at = state.now
                + chrono::Duration::from_std(retry_in).unwrap_or(chrono::Duration::seconds(30));
            state.connection = if rate_limited {
                Connection::RateLimited { retry_at }
            } else {
                Connection::Offline { reason, retry_at }
            };
            Vec::new()
        }
        NetEvent::Sent {
            pending,
            peer,
            outcome,
        } => {
            on_sent(state, pending, &peer, outcome);
            Vec::new()
        }
        NetEvent::Status {
            peer,
            local_id,
            status,
        } => {
            if let Some(message) = state
                .conversation_mut(&peer)
                .messages
                .iter_mut()
                .find(|m| m.id == ViewId::Local(local_id))
            {
                message.status = Some(status);
            }
            Vec::new()
        }
        NetEvent::Keys(view) => {
            if let Some(Overlay::Keys { peer, view: slot }) = state.overlay.as_mut()
                && peer.eq_ignore_ascii_case(&view.peer)
            {
                let state_now = view.state;
                let name = view.peer.clone();
                *slot = Some(view);
                ensure_contact(state, &name, Some(state_now));
            }
            Vec::new()
        }
        NetEvent::KeyState { peer, state: key } => {
            ensure_contact(state, &peer, Some(key));
            if key == KeyState::Verified {
                notice(state, NoticeKind::Info, format!("{peer}'s key is verified"));
            }
            Vec::new()
        }
        NetEvent::ContactStates(states) => {
            for (peer, key) in states {
                ensure_contact(state, &peer, Some(key));
            }
            Vec::new()
        }
        NetEvent::Opened { peer, state: key } => {
            let index = ensure_contact(state, &peer, Some(key));
            state.focus = Focus::Input;
            state.notice = None;
            select(state, index)
        }
        NetEvent::Failed(reason) => {
            if let Some(Overlay::Keys { view: None, .. }) = state.overlay {
                state.overlay = None;
            }
            notice(state, NoticeKind::Error, reason);
            Vec::new()
        }
        NetEvent::LoggedIn => Vec::new(),
        NetEvent::LoginFailed(reason) => {
            if let Screen::Login(form) = &mut state.screen {
                form.busy = false;
                form.error = Some(reason);
            }
            Vec::new()
        }
    }
}

fn on_sent(state: &mut State, pending: u64, peer: &str, outcome: SendOutcome) {
    let key_changed = matches!(
        outcome,
        SendOutcome::Refused {
            key_changed: true,
            ..
        }
    );
    let conversation = state.conversation_mut(peer);
    let Some(message) = conversation
        .messages
        .iter_mut()
        .find(|m| m.id == ViewId::Pending(pending))
    else {
        return;
    };
    match outcome {
        SendOutcome::Stored {
            local_id,
            relay_id,
            sent_at,
        } => {
            message.id = ViewId::Local(local_id);
            message.relay_id = Some(relay_id);
            message.sent_at = sent_at;
            message.status = Some(SendStatus::Stored);
        }
        SendOutcome::Queued { reason } => {
            message.status = Some(SendStatus::Queued(reason));
        }
        SendOutcome::Refused { reason, .. } => {
            message.status = Some(SendStatus::Failed(reason.clone()));
            notice(state, NoticeKind::Error, format!("Not sent: {reason}"));
        }
    }
    if key_changed {
        ensure_contact(state, peer, Some(KeyState::Changed));
    }
}

#[cfg(test)]
#[path = "update_tests.rs"]
mod tests;
