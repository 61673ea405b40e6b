//! The network worker: owns the [`Session`], turns [`Command`]s into session
//! calls, keeps the inbox in sync (long-poll when the relay offers it, else
//! polling), and reports results as [`Action`]s. The UI never waits on it.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use tokio::sync::{RwLock, mpsc};

use super::action::{Action, NetEvent, SendOutcome};
use super::command::Command;
use super::state::{ContactEntry, KeysView, Mark, Me, MessageView, SendStatus, ViewId};
use crate::history::{IncomingState, MessageState, OutgoingState, StoredMessage};
use crate::session::{DeliveryOutcome, Session, SessionError, SyncOptions};
use kavro_proto::strings::Password;

/// How the worker keeps the inbox in sync.
#[derive(Debug, Clone, Copy)]
pub struct SyncSettings {
    /// Pause between polls when the relay has no long-poll.
    pub poll_interval: Duration,
    /// Seconds each long-poll may wait.
    pub long_poll_wait: u32,
}

impl Default for SyncSettings {
    fn default() -> Self {
        Self {
            poll_interval: Duration::from_secs(3),
            long_poll_wait: 25,
        }
    }
}

/// Longest pause between retries while the relay is away.
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// A page of the inbox.
const PAGE: u32 = 50;
/// A conversation's scrollback: the whole local history, within reason.
const HISTORY_LIMIT: u32 = 100_000;

pub struct Worker {
    session: Arc<RwLock<Session>>,
    actions: mpsc::UnboundedSender<Action>,
    settings: SyncSettings,
}

fn emit(actions: &mpsc::UnboundedSender<Action>, event: NetEvent) {
    let _ = actions.send(Action::Net(event));
}

/// The name a conversation goes under: the peer, else `user #id`.
fn peer_name(message: &StoredMessage) -> String {
    message.peer.clone().unwrap_or_else(|| {
        message
            .peer_user_id
            .map_or_else(|| "unknown".to_owned(), |id| format!("user #{id}"))
    })
}

pub fn view(message: &StoredMessage, me: &str) -> MessageView {
    let (mark, status, author) = match message.state {
        MessageState::Out(state) => (
            Mark::Own,
            Some(match state {
                OutgoingState::Pending => SendStatus::Queued(
                    message
                        .error
                        .clone()
                        .unwrap_or_else(|| "not sent yet".to_owned()),
                ),
                OutgoingState::Stored => SendStatus::Stored,
                OutgoingState::Delivered => SendStatus::Delivered,
                OutgoingState::Failed => SendStatus::Failed(
                    message
                        .error
                        .clone()
                        .unwrap_or_else(|| "refused".to_owned()),
                ),
            }),
            me.to_owned(),
        ),
        MessageState::In(state) => (
            match state {
                IncomingState::Ok => Mark::Verified,
                IncomingState::Unverified => Mark::Unverified,
                IncomingState::KeyMismatch => Mark::KeyMismatch,
                IncomingState::Undecryptable => Mark::Undecryptable(
                    message
                        .error
                        .clone()
                        .unwrap_or_else(|| "it does not open with your key".to_owned()),
                ),
            },
            None,
            peer_name(message),
        ),
    };
    MessageView {
        id: ViewId::Local(message.local_id),
        author,
        sent_at: message.sent_at,
        text: message.text.clone(),
        mark,
        status,
        relay_id: message.relay_id,
    }
}

fn lines(number: &kavro_proto::crypto::SafetyNumber) -> Vec<String> {
    number.lines().to_vec()
}

impl Worker {
    pub fn new(
        session: Arc<RwLock<Session>>,
        actions: mpsc::UnboundedSender<Action>,
        settings: SyncSettings,
    ) -> Self {
        Self {
            session,
            actions,
            settings,
        }
    }

    fn emit(&self, event: NetEvent) {
        emit(&self.actions, event);
    }

    /// Loads the account and contacts and starts syncing; `false` when not logged in.
    pub async fn start(&self) -> bool {
        let session = self.session.read().await;
        let (Ok(account), Ok(own)) = (session.account(), session.own_key()) else {
            return false;
        };
        let me = Me {
            username: account.username.clone(),
            server: account.server.as_str().to_owned(),
            fingerprint: own.fingerprint.to_string(),
        };
        let mut contacts = Vec::new();
        for contact in session.contacts().await.unwrap_or_default() {
            // The newest message orders the list (the most recent conversation opens).
            let last_message = session
                .history(&contact.username, 1)
                .await
                .ok()
                .and_then(|m| m.last().map(|m| m.received_at.max(m.sent_at)));
            contacts.push(ContactEntry {
                last_activity: Some(last_message.unwrap_or(contact.updated_at)),
                name: contact.username,
                key_state: Some(contact.state),
                unread: 0,
            });
        }
        drop(session);
        self.emit(NetEvent::Ready { me, contacts });
        tokio::spawn(sync_loop(
            self.session.clone(),
            self.actions.clone(),
            self.settings,
        ));
        true
    }

    /// Carries out one command.
    pub async fn handle(&self, command: Command) {
        match command {
            Command::Login {
                username,
                password,
                register,
            } => self.login(&username, password, register).await,
            Command::Send {
                pending,
                peer,
                text,
            } => self.send(pending, peer, &text).await,
            Command::LoadHistory { peer } => self.history(peer).await,
            Command::OpenConversation { name } => {
                let session = self.session.read().await;
                match session.contact_keys(&name).await {
                    Ok(keys) => self.emit(NetEvent::Opened {
                        peer: keys.contact.username,
                        state: keys.contact.state,
                    }),
                    Err(err) => self.emit(NetEvent::Failed(err.to_string())),
                }
            }
            Command::LoadKeys { peer } => self.keys(&peer).await,
            Command::Trust { peer } => {
                let session = self.session.read().await;
                match session.trust(&peer).await {
                    Ok(outcome) => self.emit(NetEvent::KeyState {
                        peer: outcome.contact.username,
                        state: outcome.contact.state,
                    }),
                    Err(err) => self.emit(NetEvent::Failed(err.to_string())),
                }
            }
            Command::RetryOutbox => {
                retry_outbox(&self.session, &self.actions).await;
            }
            Command::CheckDelivery {
                peer,
                local_id,
                relay_id,
            } => {
                let session = self.session.read().await;
                let status = match session
                    .wait_for_delivery(local_id, relay_id, Duration::ZERO)
                    .await
                {
                    Ok(DeliveryOutcome::Delivered(_)) => Some(SendStatus::Delivered),
                    Ok(DeliveryOutcome::Expired) => Some(SendStatus::Failed(
                        "expired on the relay before it was fetched".to_owned(),
                    )),
                    Ok(DeliveryOutcome::TimedOut) | Err(_) => None,
                };
                if let Some(status) = status {
                    self.emit(NetEvent::Status {
                        peer,
                        local_id,
                        status,
                    });
                }
            }
        }
    }

    async fn login(&self, username: &str, password: String, register: bool) {
        let password = Password::from(password);
        let result = {
            let mut session = self.session.write().await;
            if register {
                session.register(username, &password).await.map(|_| ())
            } else {
                session.login(username, &password).await.map(|_| ())
            }
        };
        match result {
            Ok(()) => {
                self.emit(NetEvent::LoggedIn);
                self.start().await;
            }
            Err(err) => self.emit(NetEvent::LoginFailed(err.to_string())),
        }
    }

    async fn send(&self, pending: u64, peer: String, text: &str) {
        let session = self.session.read().await;
        let outcome = match session.send(&peer, text).await {
            Ok(sent) => SendOutcome::Stored {
                local_id: sent.local_id,
                relay_id: sent.relay_id,
                sent_at: sent.sent_at,
            },
            Err(SessionError::Queued { cause }) => SendOutcome::Queued {
                reason: short_reason(&cause),
            },
            Err(SessionError::KeyChanged { .. }) => SendOutcome::Refused {
                reason: format!("{peer}'s key changed; compare safety numbers (Ctrl-F)"),
                key_changed: true,
            },
            Err(err) if err.is_transient() => SendOutcome::Queued {
                reason: short_reason(&err),
            },
            Err(err) => SendOutcome::Refused {
                reason: err.to_string(),
                key_changed: false,
            },
        };
        let stored = matches!(outcome, SendOutcome::Stored { .. });
        self.emit(NetEvent::Sent {
            pending,
            peer: peer.clone(),
            outcome,
        });
        drop(session);
        if !stored {
            // The outbox may now hold it: show the conversation as the history has it.
            self.history(peer).await;
        }
    }

    async fn history(&self, peer: String) {
        let session = self.session.read().await;
        let me = session
            .account()
            .map(|a| a.username.clone())
            .unwrap_or_default();
        match session.history(&peer, HISTORY_LIMIT).await {
            Ok(messages) => self.emit(NetEvent::History {
                messages: messages.iter().map(|m| view(m, &me)).collect(),
                peer,
            }),
            Err(err) => self.emit(NetEvent::Failed(err.to_string())),
        }
    }

    async fn keys(&self, peer: &str) {
        let session = self.session.read().await;
        let own = match session.own_key() {
            Ok(own) => own,
            Err(err) => {
                self.emit(NetEvent::Failed(err.to_string()));
                return;
            }
        };
        match session.contact_keys(peer).await {
            Ok(keys) => {
                let pending = keys
                    .contact
                    .pending
                    .as_ref()
                    .zip(keys.pending_safety_number.as_ref())
                    .map(|(p, number)| (p.key.fingerprint().to_string(), lines(number)));
                self.emit(NetEvent::Keys(KeysView {
                    peer: keys.contact.username.clone(),
                    state: keys.contact.state,
                    own_fingerprint: own.fingerprint.to_string(),
                    fingerprint: keys.contact.key.fingerprint().to_string(),
                    safety_number: lines(&keys.safety_number),
                    pending,
                }));
            }
            Err(err) => self.emit(NetEvent::Failed(err.to_string())),
        }
    }
}

/// The first sentence of an error, for a one-line status.
fn short_reason(err: &SessionError) -> String {
    match err {
        SessionError::Unreachable { .. } => "relay unreachable".to_owned(),
        SessionError::RateLimited { .. } => "rate limited".to_owned(),
        other => other.to_string(),
    }
}

/// Sends what waits in the outbox; on progress, reloads the affected conversations.
async fn retry_outbox(session: &Arc<RwLock<Session>>, actions: &mpsc::UnboundedSender<Action>) {
    let guard = session.read().await;
    let Ok(queued) = guard.local_history().outbox().await else {
        return;
    };
    if queued.is_empty() {
        return;
    }
    let recipients: std::collections::BTreeSet<_> =
        queued.iter().map(|entry| entry.recipient_id).collect();
    let peers: Vec<String> = guard
        .contacts()
        .await
        .unwrap_or_default()
        .into_iter()
        .filter(|c| recipients.contains(&c.user_id))
        .map(|c| c.username)
        .collect();
    let report = guard.flush_outbox().await;
    let me = guard
        .account()
        .map(|a| a.username.clone())
        .unwrap_or_default();
    if let Ok(report) = &report
        && (report.sent > 0 || !report.failed.is_empty())
    {
        for peer in peers {
            if let Ok(messages) = guard.history(&peer, HISTORY_LIMIT).await {
                emit(
                    actions,
                    NetEvent::History {
                        messages: messages.iter().map(|m| view(m, &me)).collect(),
                        peer,
                    },
                );
            }
        }
    }
}

/// Keeps fetching: one long-poll after another, or a poll every interval.
async fn sync_loop(
    session: Arc<RwLock<Session>>,
    actions: mpsc::UnboundedSender<Action>,
    settings: SyncSettings,
) {
    let mut long_poll = {
        let guard = session.read().await;
        matches!(guard.relay().ready().await, Ok(ready) if ready.long_poll)
    };
    let mut backoff = Duration::from_secs(1);
    let mut was_offline = true;
    while !actions.is_closed() {
        // After starting or reconnecting, one quick fetch shows "online" at
        // once and sends the outbox; then long-polls.
        let quick = was_offline;
        let wait = if long_poll && !quick {
            settings.long_poll_wait
        } else {
            0
        };
        let started = tokio::time::Instant::now();
        let result = {
            let guard = session.read().await;
            let me = guard
                .account()
                .map(|a| a.username.clone())
                .unwrap_or_default();
            guard
                .sync_inbox(SyncOptions {
                    limit: PAGE,
                    wait,
                    ack: true,
                })
                .await
                .map(|batch| {
                    let received: Vec<(String, MessageView)> = batch
                        .messages
                        .iter()
                        .filter(|r| r.new)
                        .map(|r| (peer_name(&r.message), view(&r.message, &me)))
                        .collect();
                    (batch.fetched, received, batch.interrupted)
                })
        };
        match result {
            Ok((fetched, received, interrupted)) => {
                let peers: std::collections::BTreeSet<String> =
                    received.iter().map(|(peer, _)| peer.clone()).collect();
                emit(
                    &actions,
                    NetEvent::Synced {
                        at: Utc::now(),
                        received,
                    },
                );
                if !peers.is_empty() {
                    let guard = session.read().await;
                    let mut states = Vec::new();
                    for peer in peers {
                        if let Ok(Some(contact)) = guard.local_history().contact(&peer).await {
                            states.push((contact.username, contact.state));
                        }
                    }
                    emit(&actions, NetEvent::ContactStates(states));
                }
                if was_offline {
                    retry_outbox(&session, &actions).await;
                    was_offline = false;
                }
                backoff = Duration::from_secs(1);
                if let Some(err) = interrupted {
                    report_failure(&actions, &err, &mut backoff, &mut was_offline).await;
                    continue;
                }
                if fetched >= PAGE as usize {
                    continue; // more is waiting
                }
                if long_poll
                    && wait > 0
                    && fetched == 0
                    && started.elapsed() < Duration::from_millis(500)
                {
                    // The relay answered an empty long-poll at once: it does
                    // not hold requests. Fall back to polling.
                    long_poll = false;
                }
                if !long_poll {
                    tokio::time::sleep(settings.poll_interval).await;
                }
            }
            Err(err) => report_failure(&actions, &err, &mut backoff, &mut was_offline).await,
        }
    }
}

async fn report_failure(
    actions: &mpsc::UnboundedSender<Action>,
    err: &SessionError,
    backoff: &mut Duration,
    was_offline: &mut bool,
) {
    let (retry_in, rate_limited) = match err {
        SessionError::RateLimited { retry_after } => {
            (retry_after.unwrap_or(Duration::from_secs(10)), true)
        }
        _ => (*backoff, false),
    };
    if !err.is_transient() {
        emit(actions, NetEvent::Failed(err.to_string()));
    }
    emit(
        actions,
        NetEvent::SyncFailed {
            reason: short_reason(err),
            rate_limited,
            retry_in,
        },
    );
    *was_offline = true;
    tokio::time::sleep(retry_in).await;
    *backoff = (*backoff * 2).min(MAX_BACKOFF);
}
