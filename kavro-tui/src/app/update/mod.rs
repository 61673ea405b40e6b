//! `update(state, action) -> commands`: every change the app makes, as a
//! pure function. Key handlers change state and ask for network work; they
//! never wait for it. Split by concern: [`keys`] (the chat's panes and input),
//! [`dialogs`] (overlays and the login form), [`net`] (worker results and the
//! clock); what they share is here.

mod attach;
mod dialogs;
mod groups;
mod keys;
mod net;
mod search;

use chrono::{DateTime, Utc};
use crossterm::event::KeyEventKind;
use ratatui_textarea::TextArea;

use super::action::Action;
use super::command::{Command, V2Command};
use super::state::{
    ContactEntry, Mark, MessageView, Notice, NoticeKind, Overlay, SendStatus, State, ViewId,
};
use crate::pinning::KeyState;

/// How long a notice stays.
const NOTICE_SECS: i64 = 6;

pub fn update(state: &mut State, action: Action) -> Vec<Command> {
    match action {
        Action::Key(key) => {
            if key.kind == KeyEventKind::Release {
                return Vec::new();
            }
            keys::on_key(state, key)
        }
        Action::Mouse(mouse) => {
            keys::on_mouse(state, mouse);
            Vec::new()
        }
        Action::Paste(text) => {
            keys::on_paste(state, &text);
            Vec::new()
        }
        Action::Resize(width, height) => {
            state.size = (width, height);
            Vec::new()
        }
        Action::Tick(now) => net::on_tick(state, now),
        Action::Net(event) => net::on_net(state, event),
    }
}

fn notice(state: &mut State, kind: NoticeKind, text: impl Into<String>) {
    state.notice = Some(Notice {
        text: text.into(),
        kind,
        until: state.now + chrono::Duration::seconds(NOTICE_SECS),
    });
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
    if state
        .current()
        .and_then(|c| c.group.as_ref())
        .is_some_and(|g| !g.active)
    {
        notice(
            state,
            NoticeKind::Error,
            format!("Not sent: you are no longer a member of {peer}"),
        );
        return Vec::new();
    }
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
    if state.me.is_none() {
        return Vec::new();
    }
    let command = queue_send(state, &peer, text);
    state.input = TextArea::default();
    vec![command]
}

/// Shows `text` as a message on its way to `peer` (the conversation follows
/// it and moves to the top of the list) and returns the command that sends
/// it: one path for new messages and retried ones.
fn queue_send(state: &mut State, peer: &str, text: String) -> Command {
    let pending = state.next_pending_id();
    let me = state
        .me
        .as_ref()
        .map(|m| m.username.clone())
        .unwrap_or_default();
    let now = state.now;
    let conversation = state.conversation_mut(peer);
    conversation.messages.push(MessageView {
        id: ViewId::Pending(pending),
        author: me,
        sent_at: now,
        text: Some(text.clone()),
        mark: Mark::Own,
        status: Some(SendStatus::Sending),
        relay_id: None,
        attachment: None,
    });
    conversation.scroll = 0;
    touch(state, peer, now);
    match state
        .contact_index(peer)
        .and_then(|i| state.contacts[i].group.as_ref())
    {
        Some(group) => Command::V2(V2Command::Send {
            pending,
            group: group.id.clone(),
            label: peer.to_owned(),
            text,
        }),
        None => Command::Send {
            pending,
            peer: peer.to_owned(),
            text,
        },
    }
}

fn select_relative(state: &mut State, delta: isize) -> Vec<Command> {
    if state.contacts.is_empty() {
        return Vec::new();
    }
    let last = state.contacts.len() - 1;
    let index = state.selected.saturating_add_signed(delta).min(last);
    select(state, index)
}

/// Opens contact `index`: clears its unread count, loads its history once
/// (a person with a 1:1 MLS conversation: both histories).
fn select(state: &mut State, index: usize) -> Vec<Command> {
    let Some(contact) = state.contacts.get_mut(index) else {
        return Vec::new();
    };
    contact.unread = 0;
    let name = contact.name.clone();
    let group = contact.group.as_ref().map(|g| g.id.clone());
    let direct = contact.direct.as_ref().map(|g| g.id.clone());
    state.selected = index;
    state.search = None;
    if state.conversation(&name).is_some_and(|c| c.loaded) {
        return Vec::new();
    }
    match (group, direct) {
        (Some(group), _) => vec![Command::V2(V2Command::LoadHistory { group, label: name })],
        (None, Some(direct)) => vec![
            Command::LoadHistory { peer: name.clone() },
            Command::V2(V2Command::LoadHistory {
                group: direct,
                label: name,
            }),
        ],
        (None, None) => vec![Command::LoadHistory { peer: name }],
    }
}

/// Loads the open conversation when it is not loaded yet (the first
/// conversations may come after the list was shown empty).
fn ensure_visible_selection(state: &mut State) -> Vec<Command> {
    let Some(name) = state.current().map(|c| c.name.clone()) else {
        return Vec::new();
    };
    if state.conversation(&name).is_some_and(|c| c.loaded) {
        return Vec::new();
    }
    select(state, state.selected)
}

/// Which local history a [`history_in`] brings: a person's conversation
/// shows both, merged by time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    /// The v1 box's history (`ViewId::Local` rows).
    V1,
    /// An MLS conversation's lines (`ViewId::Line`).
    Mls,
}

impl Source {
    fn owns(self, id: ViewId) -> bool {
        match self {
            Self::V1 => matches!(id, ViewId::Local(_)),
            Self::Mls => matches!(id, ViewId::Line(_)),
        }
    }
}

/// A conversation's history as read from the local store: it replaces what
/// is shown from the same `source`; the other source's messages stay and
/// the two are merged in time order (each keeping its own order); sends
/// still on their way stay last.
fn history_in(state: &mut State, peer: &str, messages: Vec<MessageView>, source: Source) {
    let conversation = state.conversation_mut(peer);
    let mut in_flight = Vec::new();
    let mut other = Vec::new();
    // Own MLS lines a queued send may have become (each used once).
    let mut posted: Vec<&MessageView> = match source {
        Source::Mls => messages.iter().filter(|m| m.mark == Mark::Own).collect(),
        Source::V1 => Vec::new(),
    };
    for message in conversation.messages.drain(..) {
        if matches!(message.id, ViewId::Pending(_)) {
            if let Some(at) = queued_and_posted(&message, &posted) {
                posted.remove(at);
            } else {
                in_flight.push(message);
            }
        } else if !source.owns(message.id) {
            other.push(message);
        }
    }
    conversation.messages = merge_by_time(other, messages);
    conversation.messages.extend(in_flight);
    conversation.loaded = true;
}

/// A send queued in the v2 outbox shows as pending until a history holds it:
/// the index in `posted` of an own line with its text, written no earlier.
fn queued_and_posted(pending: &MessageView, posted: &[&MessageView]) -> Option<usize> {
    if !matches!(pending.status, Some(SendStatus::Queued(_))) {
        return None;
    }
    posted
        .iter()
        .position(|line| line.text == pending.text && line.sent_at >= pending.sent_at)
}

/// Merges two lists, each in its own order, by `sent_at`; on equal times
/// `a` comes first. Neither list is re-sorted: a v1 history keeps the
/// store's order even where a sender's clock was off.
fn merge_by_time(a: Vec<MessageView>, b: Vec<MessageView>) -> Vec<MessageView> {
    let mut merged = Vec::with_capacity(a.len() + b.len());
    let mut b = b.into_iter().peekable();
    for message in a {
        while let Some(next) = b.next_if(|n| n.sent_at < message.sent_at) {
            merged.push(next);
        }
        merged.push(message);
    }
    merged.extend(b);
    merged
}

/// Ctrl-F: a person's safety number, or a group's member list.
fn open_keys(state: &mut State) -> Vec<Command> {
    let Some(peer) = state.current().map(|c| c.name.clone()) else {
        notice(state, NoticeKind::Error, "No conversation open");
        return Vec::new();
    };
    if state.current().is_some_and(|c| c.group.is_some()) {
        return groups::open_members(state);
    }
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
                    .filter(|m| m.attachment.is_none())
                    .filter(|m| matches!(m.status, Some(SendStatus::Failed(_))))
                    .filter_map(|m| m.text.clone())
                    .collect()
            })
            .unwrap_or_default();
        if !failed.is_empty() && !state.current_key_changed() {
            state.conversation_mut(&peer).messages.retain(|m| {
                m.attachment.is_some() || !matches!(m.status, Some(SendStatus::Failed(_)))
            });
            for text in failed {
                commands.push(queue_send(state, &peer, text));
            }
        }
    }
    notice(state, NoticeKind::Info, "Retrying…");
    commands
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
    state
        .contacts
        .push(ContactEntry::person(peer.to_owned(), key_state));
    sort_contacts(state);
    state.contact_index(peer).unwrap_or(0)
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_attach;
#[cfg(test)]
mod tests_direct;
#[cfg(test)]
mod tests_v2;
