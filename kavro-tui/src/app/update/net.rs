//! What the network worker reports, and the clock: sync results, send
//! outcomes, keys, delivery checks.

use chrono::{DateTime, Utc};

use super::{Source, ensure_contact, groups, history_in, notice, select, sort_contacts, touch};
use crate::app::action::{NetEvent, SendOutcome};
use crate::app::command::Command;
use crate::app::state::{
    Connection, Focus, NoticeKind, Overlay, Screen, SendStatus, State, ViewId,
};
use crate::pinning::KeyState;

/// How often stored messages of the open conversation are checked for delivery.
const DELIVERY_CHECK_SECS: i64 = 10;
/// At most this many of them per check (the newest).
const DELIVERY_CHECK_MAX: usize = 20;
/// Messages older than this are not checked for delivery any more.
const DELIVERY_CHECK_MAX_AGE_HOURS: i64 = 48;

pub(super) fn on_net(state: &mut State, event: NetEvent) -> Vec<Command> {
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
            history_in(state, &peer, messages, Source::V1);
            Vec::new()
        }
        NetEvent::Synced { at, received } => {
            state.connection = Connection::Online;
            state.last_sync = Some(at);
            let mut commands = Vec::new();
            for (peer, message) in received {
                ensure_contact(state, &peer, None);
                let on_screen = groups::on_screen(state, &peer);
                let sent_at = message.sent_at;
                let author = message.author.clone();
                let conversation = state.conversation_mut(&peer);
                if !conversation.messages.iter().any(|m| m.id == message.id) {
                    conversation.messages.push(message);
                    if !on_screen && let Some(index) = state.contact_index(&peer) {
                        state.contacts[index].unread += 1;
                    }
                    commands.extend(groups::notify(state, &peer, &author));
                }
                touch(state, &peer, sent_at.max(at));
            }
            commands
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
        NetEvent::V2(event) => groups::on_v2(state, event),
        NetEvent::Picture { id, image } => {
            state.pictures.put(id, image);
            Vec::new()
        }
        NetEvent::Completed { typed, completion } => {
            super::attach::on_completed(state, &typed, completion);
            Vec::new()
        }
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

pub(super) fn on_tick(state: &mut State, now: DateTime<Utc>) -> Vec<Command> {
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
