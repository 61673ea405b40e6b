//! Kavro v2 in `update`: the worker's v2 reports (conversations, history,
//! texts that came, sends, members), the group dialogs and the member list,
//! and the notification decision.

use crossterm::event::{KeyCode, KeyEvent};

use super::{Source, ensure_visible_selection, history_in, notice, sort_contacts};
use crate::app::action::V2Event;
use crate::app::command::{Command, V2Command};
use crate::app::state::{
    ContactEntry, Focus, Form, FormKind, GroupInfo, NoticeKind, Overlay, SendStatus, State, ViewId,
};

/// Longest group name, in characters (as `kavro group create` allows).
pub const MAX_GROUP_NAME: usize = 40;

pub(super) fn on_v2(state: &mut State, event: V2Event) -> Vec<Command> {
    match event {
        V2Event::Conversations(entries) => {
            state.v2 = true;
            merge_conversations(state, entries);
            ensure_visible_selection(state)
        }
        V2Event::History { label, messages } => {
            history_in(state, &label, messages, Source::Mls);
            super::attach::want_pictures(state, &label)
        }
        V2Event::Received(texts) => received(state, texts),
        V2Event::Sent {
            pending,
            label,
            outcome,
        } => {
            match outcome {
                Ok(messages) => {
                    state
                        .conversation_mut(&label)
                        .messages
                        .retain(|m| m.id != ViewId::Pending(pending));
                    history_in(state, &label, messages, Source::Mls);
                    return super::attach::want_pictures(state, &label);
                }
                Err(reason) => {
                    let messages = &mut state.conversation_mut(&label).messages;
                    if let Some(at) = messages
                        .iter()
                        .position(|m| m.id == ViewId::Pending(pending))
                    {
                        // A file that was not sent leaves no line (nothing
                        // to retry: the notice says why); a text stays, failed.
                        if messages[at].attachment.is_some() {
                            messages.remove(at);
                        } else {
                            messages[at].status = Some(SendStatus::Failed(reason.clone()));
                        }
                    }
                    notice(state, NoticeKind::Error, format!("Not sent: {reason}"));
                }
            }
            Vec::new()
        }
        V2Event::Queued {
            pending,
            label,
            reason,
        } => {
            if let Some(message) = state
                .conversation_mut(&label)
                .messages
                .iter_mut()
                .find(|m| m.id == ViewId::Pending(pending))
            {
                message.status = Some(SendStatus::Queued(reason.clone()));
            }
            notice(
                state,
                NoticeKind::Info,
                format!("Queued ({reason}): it goes out with the next sync"),
            );
            Vec::new()
        }
        V2Event::Members { group, members } => {
            if let Some(Overlay::Members {
                group: shown, view, ..
            }) = state.overlay.as_mut()
                && *shown == group
            {
                *view = Some(members);
            }
            Vec::new()
        }
        V2Event::Upload {
            pending,
            label,
            percent,
            size,
        } => {
            super::attach::on_upload(state, pending, &label, percent, size);
            Vec::new()
        }
        V2Event::Saved(text) | V2Event::Done(text) => {
            notice(state, NoticeKind::Info, text);
            Vec::new()
        }
        V2Event::Failed(reason) => {
            if let Some(Overlay::Members { view: None, .. }) = state.overlay {
                state.overlay = None;
            }
            notice(state, NoticeKind::Error, reason);
            Vec::new()
        }
    }
}

/// Puts the worker's list of v2 conversations into the contact list: a
/// known group keeps its unread count (and its messages, under its new
/// label after a rename); one that is new is added; a 1:1 goes into the
/// person's entry.
fn merge_conversations(state: &mut State, entries: Vec<ContactEntry>) {
    let selected = state.current().map(|c| c.name.clone());
    let mut renamed_selection = None;
    for entry in entries {
        if let Some(info) = entry.direct.clone() {
            merge_direct(state, entry, info);
            continue;
        }
        let Some(info) = entry.group.clone() else {
            continue;
        };
        let existing = state
            .contacts
            .iter()
            .position(|c| c.group.as_ref().is_some_and(|g| g.id == info.id));
        match existing {
            Some(index) => {
                let old = state.contacts[index].name.clone();
                if old != entry.name {
                    if let Some(conversation) =
                        state.conversations.remove(&old.to_ascii_lowercase())
                    {
                        state
                            .conversations
                            .insert(entry.name.to_ascii_lowercase(), conversation);
                    }
                    if selected.as_deref() == Some(old.as_str()) {
                        renamed_selection = Some(entry.name.clone());
                    }
                }
                let contact = &mut state.contacts[index];
                contact.name = entry.name;
                contact.group = Some(info);
                contact.last_activity = contact.last_activity.max(entry.last_activity);
            }
            None => state.contacts.push(entry),
        }
    }
    let keep = renamed_selection.or(selected);
    sort_contacts(state);
    if let Some(name) = keep
        && let Some(index) = state.contact_index(&name)
    {
        state.selected = index;
    }
}

/// A 1:1 MLS conversation joins the person's entry (one entry per person;
/// its messages are already keyed by the person's name); a person who is
/// not a contact yet (they started the 1:1) gets an entry under their name.
fn merge_direct(state: &mut State, entry: ContactEntry, info: GroupInfo) {
    let existing = state
        .contacts
        .iter()
        .position(|c| c.group.is_none() && c.name.eq_ignore_ascii_case(&entry.name));
    let Some(index) = existing else {
        state.contacts.push(entry);
        return;
    };
    let contact = &mut state.contacts[index];
    // A 1:1 this device was removed from never hides the live one.
    let live = contact
        .direct
        .as_ref()
        .is_some_and(|d| d.active && d.id != info.id);
    if !live || info.active {
        contact.direct = Some(info);
    }
    contact.last_activity = contact.last_activity.max(entry.last_activity);
}

/// Texts that came: unread counts, the conversation moves up, and a
/// notification when it is not on screen.
fn received(state: &mut State, texts: Vec<(String, String)>) -> Vec<Command> {
    let mut commands = Vec::new();
    for (label, sender) in texts {
        let now = state.now;
        if let Some(index) = state.contact_index(&label) {
            if !on_screen(state, &label) {
                state.contacts[index].unread += 1;
            }
            state.contacts[index].last_activity = Some(now);
        }
        commands.extend(notify(state, &label, &sender));
    }
    sort_contacts(state);
    commands
}

/// Whether the conversation `name` is what the user is looking at: it is
/// open, and its pane is drawn (a narrow screen may show only the list).
pub(super) fn on_screen(state: &State, name: &str) -> bool {
    let open = state
        .current()
        .is_some_and(|c| c.name.eq_ignore_ascii_case(name));
    open && !(state.is_narrow() && state.focus == Focus::Contacts)
}

/// The notification for a message from `sender` in `conversation`, when
/// it is not on screen and notifications are on. It names the sender and
/// the conversation, never the text (a desktop notice may show on a
/// locked screen).
pub(super) fn notify(state: &State, conversation: &str, sender: &str) -> Option<Command> {
    if !state.settings.notifications || on_screen(state, conversation) {
        return None;
    }
    let body = if conversation.eq_ignore_ascii_case(sender) {
        format!("New message from {sender}")
    } else {
        format!("New message from {sender} in {conversation}")
    };
    Some(Command::Notify {
        title: "Kavro".to_owned(),
        body,
    })
}

/// Ctrl-O: notifications on or off, kept in the settings file.
pub(super) fn toggle_notifications(state: &mut State) -> Vec<Command> {
    state.settings.notifications = !state.settings.notifications;
    let text = if state.settings.notifications {
        "Notifications on"
    } else {
        "Notifications off"
    };
    notice(state, NoticeKind::Info, text);
    vec![Command::SaveSettings(state.settings)]
}

/// Opens a v2 dialog, or says why there is none on this installation.
pub(super) fn open_form(state: &mut State, kind: FormKind) -> Vec<Command> {
    if !state.v2 {
        notice(
            state,
            NoticeKind::Error,
            "Groups need a Kavro v2 device: run `kavro device link` on this installation",
        );
        return Vec::new();
    }
    state.overlay = Some(Overlay::Form(Box::new(Form::new(kind))));
    Vec::new()
}

/// Ctrl-F on a group: its members, with their devices once loaded.
pub(super) fn open_members(state: &mut State) -> Vec<Command> {
    let Some(contact) = state.current() else {
        return Vec::new();
    };
    let Some(group) = &contact.group else {
        return Vec::new();
    };
    let (label, id, members) = (
        contact.name.clone(),
        group.id.clone(),
        group.members.clone(),
    );
    state.overlay = Some(Overlay::Members {
        label,
        group: id.clone(),
        view: None,
    });
    vec![Command::V2(V2Command::Members { group: id, members })]
}

/// Keys in the member list: a add, r remove, n rename, l leave, Esc closes.
pub(super) fn on_members_key(state: &mut State, key: KeyEvent) -> Vec<Command> {
    let Some(Overlay::Members { label, group, .. }) = &state.overlay else {
        return Vec::new();
    };
    let (label, group) = (label.clone(), group.clone());
    let kind = match key.code {
        KeyCode::Esc | KeyCode::Char('q') | KeyCode::Enter => {
            state.overlay = None;
            return Vec::new();
        }
        KeyCode::Char('a') => FormKind::AddMembers { group, label },
        KeyCode::Char('r' | 'd') => FormKind::RemoveMembers { group, label },
        KeyCode::Char('n') => FormKind::Rename { group, label },
        KeyCode::Char('l') => FormKind::Leave { group, label },
        _ => return Vec::new(),
    };
    open_form(state, kind)
}

/// Keys in a form: Tab / ↑ ↓ move between fields, Enter goes to the next
/// field or submits from the last, Esc cancels.
pub(super) fn on_form_key(state: &mut State, key: KeyEvent) -> Vec<Command> {
    let Some(Overlay::Form(form)) = state.overlay.as_mut() else {
        return Vec::new();
    };
    let last = form.inputs.len().saturating_sub(1);
    match key.code {
        KeyCode::Esc => {
            state.overlay = None;
            Vec::new()
        }
        KeyCode::Tab | KeyCode::Down => {
            form.field = if form.field >= last {
                0
            } else {
                form.field + 1
            };
            Vec::new()
        }
        KeyCode::BackTab | KeyCode::Up => {
            form.field = if form.field == 0 {
                last
            } else {
                form.field - 1
            };
            Vec::new()
        }
        KeyCode::Enter if form.field < last => {
            form.field += 1;
            Vec::new()
        }
        KeyCode::Enter => match submit(form) {
            Ok((command, text)) => {
                state.overlay = None;
                notice(state, NoticeKind::Info, text);
                vec![Command::V2(command)]
            }
            Err(reason) => {
                form.error = Some(reason);
                Vec::new()
            }
        },
        _ => {
            if let Some(input) = form.inputs.get_mut(form.field) {
                input.input(key);
            }
            Vec::new()
        }
    }
}

/// The command a filled-in form asks for and what to show meanwhile, or
/// why it is refused (the form stays open with the reason).
fn submit(form: &Form) -> Result<(V2Command, String), String> {
    Ok(match &form.kind {
        FormKind::CreateGroup => {
            let name = group_name(&form.value(0))?;
            let members = usernames(&form.value(1))?;
            let text = format!("Creating #{name}…");
            (V2Command::CreateGroup { name, members }, text)
        }
        FormKind::AddMembers { group, label } => {
            let members = usernames(&form.value(0))?;
            let text = format!("Adding {} to {label}…", members.join(", "));
            let group = group.clone();
            (V2Command::AddMembers { group, members }, text)
        }
        FormKind::RemoveMembers { group, label } => {
            let members = usernames(&form.value(0))?;
            let text = format!("Removing {} from {label}…", members.join(", "));
            let group = group.clone();
            (V2Command::RemoveMembers { group, members }, text)
        }
        FormKind::Rename { group, .. } => {
            let name = group_name(&form.value(0))?;
            let text = format!("Renaming to #{name}…");
            let group = group.clone();
            (V2Command::Rename { group, name }, text)
        }
        FormKind::Leave { group, label } => (
            V2Command::Leave {
                group: group.clone(),
            },
            format!("Leaving {label}…"),
        ),
        FormKind::ApproveLink => {
            let code = form.value(0);
            if code.is_empty() || code.len() > 64 || code.chars().any(char::is_control) {
                return Err("Type the code `kavro device link` printed".to_owned());
            }
            (V2Command::ApproveLink { code }, "Approving…".to_owned())
        }
    })
}

/// A group name as `kavro group create` takes it (a leading `#` is dropped).
pub fn group_name(text: &str) -> Result<String, String> {
    let name = text.strip_prefix('#').unwrap_or(text).trim();
    if name.is_empty()
        || name.chars().count() > MAX_GROUP_NAME
        || name
            .chars()
            .any(|c| c.is_control() || c == '#' || c.is_whitespace())
    {
        return Err(format!(
            "Name: 1 to {MAX_GROUP_NAME} characters, no spaces or '#'"
        ));
    }
    Ok(name.to_owned())
}

/// Usernames separated by spaces or commas, each valid, at least one.
fn usernames(text: &str) -> Result<Vec<String>, String> {
    let mut names: Vec<String> = Vec::new();
    for name in text.split([' ', ',']).filter(|n| !n.is_empty()) {
        kavro_proto::validate::username(name).map_err(|reason| format!("{name:?}: {reason}"))?;
        if !names.iter().any(|n| n.eq_ignore_ascii_case(name)) {
            names.push(name.to_owned());
        }
    }
    if names.is_empty() {
        return Err("Type at least one username".to_owned());
    }
    Ok(names)
}
