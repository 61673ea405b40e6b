//! The worker's Kavro v2 side: owns the installation's [`V2Session`]
//! (behind a lock that a long-poll never holds), carries out the v2
//! commands, and keeps the device's queue applied: one sync, then a
//! long-poll on the queue while the relay offers it (else a pause of the
//! poll interval), then the next sync. Every change goes back to the app
//! as [`V2Event`]s: the conversation list, the history of each conversation
//! that changed, and the texts that came (for unread counts and
//! notifications).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use kavro_proto::v2::GroupId;
use tokio::sync::{Mutex, RwLock, mpsc};

use super::action::{Action, NetEvent, V2Event};
use super::command::V2Command;
mod direct;
pub(crate) mod files;

use chrono::{DateTime, Utc};

use super::state::{
    ContactEntry, DeviceView, GroupInfo, Mark, MemberView, MessageView, SendStatus, ViewId,
};
use super::sync::{SyncSettings, emit};
use crate::mls::rows::{LineKind, MessageRow};
use crate::relay::{LongPoll, RelayError};
use crate::session::Session;
use crate::v2::{ConversationSummary, V2Error, V2Session};

/// Longest pause between syncs while the relay is away.
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// How long approving a link waits for the new device's key packages.
const APPROVE_WAIT: Duration = Duration::from_secs(60);

pub struct V2Side {
    session: Arc<RwLock<Session>>,
    v2: Mutex<V2Session>,
    actions: mpsc::UnboundedSender<Action>,
    me: String,
    /// Where received files go when not the user's choice (tests).
    downloads: Option<std::path::PathBuf>,
}

/// The conversations the list shows: a 1:1 this device was removed from is
/// left out when a live 1:1 with the same person exists (the person's entry
/// shows one MLS conversation, the one a send goes to).
pub fn listed(summaries: Vec<ConversationSummary>) -> Vec<ConversationSummary> {
    let live: Vec<String> = summaries
        .iter()
        .filter(|s| s.name.is_none() && s.active)
        .map(|s| s.label.clone())
        .collect();
    summaries
        .into_iter()
        .filter(|s| s.name.is_some() || s.active || !live.contains(&s.label))
        .collect()
}

/// A conversation as the contact list takes it: a named group is an entry
/// of its own (`#name`); a 1:1 goes into the person's entry (its label is
/// the username), so there is one entry per person.
pub fn entry(summary: &ConversationSummary, last: Option<DateTime<Utc>>) -> ContactEntry {
    let info = GroupInfo {
        id: summary.group_id.clone(),
        members: summary.members.clone(),
        devices: summary.devices,
        active: summary.active,
        named: summary.name.is_some(),
    };
    let mut entry = ContactEntry::person(summary.label.clone(), None);
    entry.last_activity = last;
    if info.named {
        entry.group = Some(info);
    } else {
        entry.direct = Some(info);
    }
    entry
}

/// A conversation's local history as the conversation pane shows it.
pub fn views(rows: &[MessageRow], me: &str) -> Vec<MessageView> {
    rows.iter()
        .enumerate()
        .map(|(index, row)| {
            let own = row.outgoing && row.kind == LineKind::Text;
            MessageView {
                id: ViewId::Line(index),
                author: if row.outgoing {
                    me.to_owned()
                } else {
                    row.sender.clone()
                },
                sent_at: row.at,
                text: Some(row.body.clone()),
                mark: match (row.kind, own) {
                    (LineKind::System, _) => Mark::System,
                    (LineKind::Text, true) => Mark::Own,
                    (LineKind::Text, false) => Mark::Member,
                },
                status: own.then_some(SendStatus::Stored),
                relay_id: None,
                attachment: None,
            }
        })
        .collect()
}

fn text(err: &V2Error) -> String {
    match err {
        V2Error::Relay(RelayError::Unreachable { .. }) => "relay unreachable".to_owned(),
        other => other.to_string(),
    }
}

impl V2Side {
    /// Opens the installation's device; `None` (and not a word) when it has
    /// none. A device that exists but does not open is reported once.
    pub async fn open(
        session: Arc<RwLock<Session>>,
        actions: mpsc::UnboundedSender<Action>,
    ) -> Option<Arc<Self>> {
        let opened = V2Session::open_for_app(&*session.read().await).await;
        match opened {
            Ok(Some(v2)) => {
                let me = v2.username().to_owned();
                Some(Arc::new(Self {
                    session,
                    v2: Mutex::new(v2),
                    actions,
                    me,
                    downloads: None,
                }))
            }
            Ok(None) => None,
            Err(err) => {
                emit(
                    &actions,
                    NetEvent::Failed(format!("Kavro v2 conversations are unavailable: {err}")),
                );
                None
            }
        }
    }

    /// A v2 side around an open session, for tests of the worker's v2 calls.
    #[cfg(test)]
    pub(crate) fn for_tests(
        session: Session,
        v2: V2Session,
        actions: mpsc::UnboundedSender<Action>,
    ) -> Arc<Self> {
        let me = v2.username().to_owned();
        Arc::new(Self {
            session: Arc::new(RwLock::new(session)),
            v2: Mutex::new(v2),
            actions,
            me,
            downloads: None,
        })
    }

    /// [`Self::for_tests`], saving received files into `downloads`.
    #[cfg(test)]
    pub(crate) fn for_tests_saving_to(
        session: Session,
        v2: V2Session,
        actions: mpsc::UnboundedSender<Action>,
        downloads: std::path::PathBuf,
    ) -> Arc<Self> {
        let me = v2.username().to_owned();
        Arc::new(Self {
            session: Arc::new(RwLock::new(session)),
            v2: Mutex::new(v2),
            actions,
            me,
            downloads: Some(downloads),
        })
    }

    /// Every attachment of the device, for tests.
    #[cfg(test)]
    pub(crate) async fn attachments_for_tests(
        &self,
    ) -> Vec<crate::mls::attachments::AttachmentRow> {
        self.v2.lock().await.attachments().await.unwrap_or_default()
    }

    fn emit(&self, event: V2Event) {
        emit(&self.actions, NetEvent::V2(event));
    }

    /// The conversation list, then the history of each of `changed`.
    async fn publish(&self, v2: &V2Session, changed: &[GroupId]) -> Result<(), V2Error> {
        let summaries = listed(v2.conversations().await?);
        let mut entries = Vec::with_capacity(summaries.len());
        for summary in &summaries {
            let last = v2.history(&summary.group_id, 1).await?;
            entries.push(entry(summary, last.last().map(|l| l.at)));
        }
        self.emit(V2Event::Conversations(entries));
        for summary in summaries.iter().filter(|s| changed.contains(&s.group_id)) {
            let messages = self.history_views(v2, &summary.group_id).await?;
            self.emit(V2Event::History {
                label: summary.label.clone(),
                messages,
            });
        }
        Ok(())
    }

    /// Carries out one v2 command.
    pub async fn handle(self: &Arc<Self>, command: V2Command) {
        let command = match command {
            V2Command::ApproveLink { code } => {
                // Waits for the new device; on its own task so other commands go on.
                tokio::spawn(self.clone().approve(code));
                return;
            }
            V2Command::SendFile {
                pending,
                group,
                label,
                file,
            } => {
                tokio::spawn(self.clone().send_file(pending, group, label, file));
                return;
            }
            V2Command::SaveAttachments => {
                if let Err(err) = self.save_received().await {
                    self.emit(V2Event::Failed(format!("Not saved: {}", text(&err))));
                }
                return;
            }
            other => other,
        };
        let mut v2 = self.v2.lock().await;
        let result = self.run(&mut v2, command).await;
        if let Err(err) = result {
            self.emit(V2Event::Failed(text(&err)));
        }
    }

    async fn run(&self, v2: &mut V2Session, command: V2Command) -> Result<(), V2Error> {
        match command {
            V2Command::Send {
                pending,
                group,
                label,
                text: body,
            } => {
                let outcome = match v2.send(&group, &body).await {
                    Ok(_) => self.history_views(v2, &group).await.map_err(|e| text(&e)),
                    Err(V2Error::Queued(cause)) => {
                        self.emit(V2Event::Queued {
                            pending,
                            label,
                            reason: text(&cause),
                        });
                        return Ok(());
                    }
                    Err(err) => Err(text(&err)),
                };
                self.emit(V2Event::Sent {
                    pending,
                    label,
                    outcome,
                });
            }
            V2Command::LoadHistory { group, label } => {
                let messages = self.history_views(v2, &group).await?;
                self.emit(V2Event::History { label, messages });
            }
            V2Command::Members { group, members } => {
                let own = v2.device_id();
                let mut out = Vec::with_capacity(members.len());
                for username in members {
                    let (devices, error) = match v2.devices(&username).await {
                        Ok(devices) => (
                            devices
                                .into_iter()
                                .map(|d| DeviceView {
                                    fingerprint: kavro_proto::validate::base64_strict(
                                        d.signature_key.as_str(),
                                    )
                                    .map_or_else(|| "?".to_owned(), |k| crate::v2::fingerprint(&k)),
                                    revoked: d.revoked_at.is_some(),
                                    this_device: d.id == own,
                                    id: d.id,
                                })
                                .collect(),
                            None,
                        ),
                        Err(err) => (Vec::new(), Some(text(&err))),
                    };
                    out.push(MemberView {
                        username,
                        devices,
                        error,
                    });
                }
                self.emit(V2Event::Members {
                    group,
                    members: out,
                });
            }
            V2Command::TrustRoot { peer, number } => self.trust_root(v2, &peer, &number).await?,
            change => self.change(v2, change).await?,
        }
        Ok(())
    }

    /// A membership or name change: applied after a sync (as the CLI does),
    /// then the list and the conversation's history are shown again.
    async fn change(&self, v2: &mut V2Session, command: V2Command) -> Result<(), V2Error> {
        v2.sync().await?;
        let (group, done) = match command {
            V2Command::CreateGroup { name, members } => {
                let group = v2.create_group(Some(&name), &members).await?;
                (group, format!("Created #{name}"))
            }
            V2Command::AddMembers { group, members } => {
                v2.add_members(&group, &members).await?;
                (group, format!("Added {}", members.join(", ")))
            }
            V2Command::RemoveMembers { group, members } => {
                v2.remove_members(&group, &members).await?;
                (group, format!("Removed {}", members.join(", ")))
            }
            V2Command::Rename { group, name } => {
                v2.rename(&group, &name).await?;
                (group, format!("Renamed to #{name}"))
            }
            V2Command::Leave { group } => {
                v2.leave(&group).await?;
                (group, "Left (removed at the next member's sync)".to_owned())
            }
            V2Command::Send { .. }
            | V2Command::LoadHistory { .. }
            | V2Command::Members { .. }
            | V2Command::TrustRoot { .. }
            | V2Command::SendFile { .. }
            | V2Command::SaveAttachments
            | V2Command::ApproveLink { .. } => return Ok(()),
        };
        self.publish(v2, &[group]).await?;
        self.emit(V2Event::Done(done));
        Ok(())
    }

    /// Approves a link code, then adds the new device to every conversation
    /// once it has uploaded its key packages (it does right after the approval).
    async fn approve(self: Arc<Self>, code: String) {
        let approved = self.v2.lock().await.approve_link(&code).await;
        let (device, fingerprint) = match approved {
            Ok(found) => found,
            Err(err) => return self.emit(V2Event::Failed(text(&err))),
        };
        let deadline = tokio::time::Instant::now() + APPROVE_WAIT;
        loop {
            let added = self.v2.lock().await.add_own_device(device.id).await;
            match added {
                Ok(count) => {
                    return self.emit(V2Event::Done(format!(
                        "Approved device {} (key {fingerprint}); added to {count} conversation(s)",
                        device.id
                    )));
                }
                Err(V2Error::NoDevices(_)) if tokio::time::Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                Err(err) => return self.emit(V2Event::Failed(text(&err))),
            }
        }
    }

    /// One sync: applies the queue, reports what changed. Returns a watch
    /// on the queue to wait with (without the lock).
    async fn sync_once(
        &self,
        known: &mut HashMap<GroupId, ConversationSummary>,
        first: bool,
    ) -> Result<crate::v2::QueueWatch, V2Error> {
        let mut v2 = self.v2.lock().await;
        let report = v2.sync().await?;
        let summaries = v2.conversations().await?;
        let mut changed: Vec<GroupId> =
            report.received.iter().map(|r| r.group_id.clone()).collect();
        for summary in &summaries {
            if known.get(&summary.group_id) != Some(summary) {
                changed.push(summary.group_id.clone());
            }
        }
        changed.sort();
        changed.dedup();
        if first || !changed.is_empty() {
            self.publish(&v2, &changed).await?;
        }
        let texts: Vec<(String, String)> = report
            .received
            .iter()
            .filter(|r| !r.sender.eq_ignore_ascii_case(&self.me))
            .filter_map(|r| {
                let summary = summaries.iter().find(|s| s.group_id == r.group_id)?;
                Some((summary.label.clone(), r.sender.clone()))
            })
            .collect();
        if !texts.is_empty() {
            self.emit(V2Event::Received(texts));
        }
        *known = summaries
            .into_iter()
            .map(|s| (s.group_id.clone(), s))
            .collect();
        Ok(v2.queue_watch())
    }

    /// After a `401` (the device token expired): a fresh session.
    async fn reopen(&self) {
        let reopened = V2Session::open_for_app(&*self.session.read().await).await;
        if let Ok(Some(fresh)) = reopened {
            let old = std::mem::replace(&mut *self.v2.lock().await, fresh);
            old.close().await;
        }
    }

    /// Keeps the queue applied until the app goes away.
    pub async fn sync_loop(self: Arc<Self>, settings: SyncSettings) {
        let mut known = HashMap::new();
        let mut backoff = Duration::from_secs(1);
        let mut first = true;
        let mut long_poll = None;
        while !self.actions.is_closed() {
            if long_poll.is_none() {
                long_poll = self.session.read().await.long_poll().await.ok();
            }
            match self.sync_once(&mut known, first).await {
                Ok(watch) => {
                    first = false;
                    backoff = Duration::from_secs(1);
                    // Received files go to the downloads directory; one that
                    // cannot be fetched now waits for the next sync.
                    match self.save_received().await {
                        Err(V2Error::Relay(e)) if e.is_transient() => {}
                        Err(err) => self.emit(V2Event::Failed(format!(
                            "Received files not saved: {}",
                            text(&err)
                        ))),
                        Ok(()) => {}
                    }
                    let wait = long_poll.map_or(0, |l| l.wait(settings.long_poll_wait));
                    if wait == 0 || long_poll == Some(LongPoll::Off) {
                        tokio::time::sleep(settings.poll_interval).await;
                    } else if watch.wait(wait).await.is_err() {
                        long_poll = None;
                        tokio::time::sleep(backoff).await;
                    }
                }
                Err(err) => {
                    if matches!(err, V2Error::Relay(RelayError::Unauthorized(_))) {
                        self.reopen().await;
                    } else if !matches!(&err, V2Error::Relay(e) if e.is_transient()) {
                        self.emit(V2Event::Failed(format!("Kavro v2 sync: {}", text(&err))));
                    }
                    long_poll = None;
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
