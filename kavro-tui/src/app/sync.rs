//! Keeping the inbox in sync while the chat app runs: one long-poll after
//! another when the relay's `/ready` says it holds requests (never longer
//! than its stated maximum), else a poll every interval; a quick fetch after
//! starting or reconnecting, the outbox sent again then, and back-off while
//! the relay is away. Results go back to the app as actions.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use tokio::sync::{RwLock, mpsc};

use super::action::{Action, NetEvent};
use super::state::MessageView;
use crate::relay::LongPoll;
use crate::session::{Session, SessionError, SyncOptions};

/// A page of the inbox.
const PAGE: u32 = 50;
/// Longest pause between retries while the relay is away.
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// A conversation's scrollback: the whole local history, within reason.
pub const HISTORY_LIMIT: u32 = 100_000;

/// How the inbox is kept in sync.
#[derive(Debug, Clone, Copy)]
pub struct SyncSettings {
    /// Pause between polls when the relay has no long-poll.
    pub poll_interval: Duration,
    /// Seconds each long-poll asks to wait (at most what the relay holds).
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

pub fn emit(actions: &mpsc::UnboundedSender<Action>, event: NetEvent) {
    let _ = actions.send(Action::Net(event));
}

/// The first sentence of an error, for a one-line status.
pub fn short_reason(err: &SessionError) -> String {
    match err {
        SessionError::Unreachable { .. } => "relay unreachable".to_owned(),
        SessionError::Certificate { .. } => "relay certificate not trusted".to_owned(),
        SessionError::RateLimited { .. } => "rate limited".to_owned(),
        other => other.to_string(),
    }
}

/// Reads `peer`'s conversation and reports it as [`NetEvent::History`].
pub async fn report_history(
    session: &Session,
    actions: &mpsc::UnboundedSender<Action>,
    peer: String,
) -> Result<(), SessionError> {
    let me = session
        .account()
        .map(|a| a.username.clone())
        .unwrap_or_default();
    let messages = session.history(&peer, HISTORY_LIMIT).await?;
    let mut messages: Vec<MessageView> = messages
        .iter()
        .map(|m| MessageView::from_stored(m, &me))
        .collect();
    super::files_v1::with_files(&mut messages, &session.files().await?);
    emit(actions, NetEvent::History { messages, peer });
    Ok(())
}

/// Sends what waits in the outbox; on progress, reloads the affected conversations.
pub async fn retry_outbox(session: &Session, actions: &mpsc::UnboundedSender<Action>) {
    let peers = match session.queued_peers().await {
        Ok(peers) if !peers.is_empty() => peers,
        _ => return,
    };
    if let Ok(report) = session.flush_outbox().await
        && (report.sent > 0 || !report.failed.is_empty())
    {
        for peer in peers {
            let _ = report_history(session, actions, peer).await;
        }
    }
}

/// Keeps fetching until the app goes away.
pub async fn sync_loop(
    session: Arc<RwLock<Session>>,
    actions: mpsc::UnboundedSender<Action>,
    settings: SyncSettings,
) {
    let mut long_poll = LongPoll::Off;
    let mut backoff = Duration::from_secs(1);
    let mut was_offline = true;
    while !actions.is_closed() {
        // After starting or reconnecting: ask the relay whether it
        // long-polls (it may have been reconfigured), and fetch once at
        // once so the status shows "online" and the outbox goes out.
        let quick = was_offline;
        if quick {
            long_poll = session
                .read()
                .await
                .long_poll()
                .await
                .unwrap_or(LongPoll::Off);
        }
        let wait = if quick {
            0
        } else {
            long_poll.wait(settings.long_poll_wait)
        };
        let result = {
            let guard = session.read().await;
            match guard
                .sync_inbox(SyncOptions {
                    limit: PAGE,
                    wait,
                    ack: true,
                })
                .await
            {
                Ok(batch) => {
                    let me = guard
                        .account()
                        .map(|a| a.username.clone())
                        .unwrap_or_default();
                    let received: Vec<(String, MessageView)> = batch
                        .messages
                        .iter()
                        .filter(|r| r.new)
                        .map(|r| {
                            (
                                MessageView::conversation_of(&r.message),
                                MessageView::from_stored(&r.message, &me),
                            )
                        })
                        .collect();
                    Ok((batch.fetched, received, batch.interrupted))
                }
                Err(err) => Err(err),
            }
        };
        match result {
            Ok((fetched, received, interrupted)) => {
                let peers: BTreeSet<String> =
                    received.iter().map(|(peer, _)| peer.clone()).collect();
                emit(
                    &actions,
                    NetEvent::Synced {
                        at: Utc::now(),
                        received,
                    },
                );
                if !peers.is_empty() {
                    report_key_states(&session, &actions, peers).await;
                    // Files that came in v1 file envelopes go to the downloads.
                    let guard = session.read().await;
                    let dir = super::v2side::files::download_dir(&guard);
                    super::files_v1::save_received(&guard, &actions, &dir).await;
                }
                if was_offline {
                    retry_outbox(&*session.read().await, &actions).await;
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
                if long_poll == LongPoll::Off {
                    tokio::time::sleep(settings.poll_interval).await;
                }
            }
            Err(err) => report_failure(&actions, &err, &mut backoff, &mut was_offline).await,
        }
    }
}

/// The key states of the contacts messages just came from (new contacts
/// are pinned, changes seen).
async fn report_key_states(
    session: &RwLock<Session>,
    actions: &mpsc::UnboundedSender<Action>,
    peers: BTreeSet<String>,
) {
    let guard = session.read().await;
    let mut states = Vec::new();
    for peer in peers {
        if let Ok(Some(contact)) = guard.contact(&peer).await {
            states.push((contact.username, contact.state));
        }
    }
    emit(actions, NetEvent::ContactStates(states));
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::relay::MemoryRelay;
    use crate::session::testing::registered;

    /// Runs the sync loop against `relay` until it made `requests` inbox
    /// requests (or 10 s passed); returns their `wait`s.
    async fn waits(relay: &Arc<MemoryRelay>, long_poll: LongPoll, requests: usize) -> Vec<u32> {
        let alice = registered(relay, "alice").await;
        relay.set_long_poll(long_poll);
        let (actions, received) = mpsc::unbounded_channel();
        let settings = SyncSettings {
            poll_interval: Duration::from_millis(5),
            long_poll_wait: 25,
        };
        let task = tokio::spawn(sync_loop(
            Arc::new(RwLock::new(alice.session)),
            actions,
            settings,
        ));
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while relay.inbox_waits().len() < requests && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        drop(received);
        task.abort();
        relay.inbox_waits()
    }

    #[tokio::test]
    async fn long_polls_follow_what_ready_says() {
        // The relay holds requests up to 10 s: the app asks for 10, not its 25.
        let relay = Arc::new(MemoryRelay::new());
        let seen = waits(&relay, LongPoll::UpTo(10), 4).await;
        assert!(seen.len() >= 4, "{seen:?}");
        assert_eq!(seen[0], 0, "a quick fetch first");
        assert!(seen[1..].iter().all(|&w| w == 10), "{seen:?}");

        // A relay without long-poll is polled without waiting: it answers at
        // once, which the app no longer takes as a sign of anything.
        let relay = Arc::new(MemoryRelay::new());
        let seen = waits(&relay, LongPoll::Off, 4).await;
        assert!(seen.len() >= 4, "{seen:?}");
        assert!(seen.iter().all(|&w| w == 0), "{seen:?}");
    }
}
