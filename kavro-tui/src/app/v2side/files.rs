//! The worker's attachments: sending a file from the prompt (checked before
//! anything goes to the relay, uploaded with progress reported to the app),
//! saving received files into the downloads directory the CLI uses, and
//! joining each conversation's history lines with its attachment rows.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};

use kavro_proto::v2::GroupId;
use tokio::sync::mpsc;

use super::{V2Side, text, views};
use crate::app::action::{Action, NetEvent, V2Event};
use crate::app::attachments::{AttachmentView, FileToSend};
use crate::app::complete;
use crate::app::state::MessageView;
use crate::app::sync::{HISTORY_LIMIT, emit};
use crate::attach::transfer::Progress;
use crate::mls::attachments::AttachmentRow;
use crate::mls::rows::MessageRow;
use crate::v2::payload::Body;
use crate::v2::{V2Error, V2Session};

/// A conversation's history lines with their attachments: each attachment
/// row of the group goes to the first line not taken yet that it wrote
/// (same direction, sender and `Body::file_line`).
pub fn with_attachments(
    rows: &[MessageRow],
    attachments: &[AttachmentRow],
    me: &str,
) -> Vec<MessageView> {
    let mut shown = views(rows, me);
    let mut taken = vec![false; rows.len()];
    for attachment in attachments {
        let line = Body::file_line(&attachment.file, attachment.caption.as_deref());
        let found = rows.iter().enumerate().position(|(i, row)| {
            !taken[i]
                && row.outgoing == attachment.outgoing
                && (row.outgoing || row.sender == attachment.sender)
                && row.body == line
        });
        if let Some(at) = found {
            taken[at] = true;
            shown[at].attachment = Some(Box::new(AttachmentView::from_row(attachment)));
        }
    }
    shown
}

/// Where received files go: `KAVRO_DOWNLOAD_DIR`, else as the CLI chooses
/// (the user's Downloads, else `downloads` in the profile's data directory).
pub fn download_dir(session: &crate::session::Session) -> PathBuf {
    let chosen = std::env::var_os("KAVRO_DOWNLOAD_DIR")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from);
    crate::cli::files::download_dir(session, chosen.as_deref())
}

/// Why a file cannot be sent, checked before anything goes to the relay:
/// missing, unreadable, or not a regular file.
pub fn check_file(path: &Path) -> Result<u64, String> {
    let opened =
        std::fs::File::open(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let metadata = opened
        .metadata()
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    if metadata.is_dir() {
        return Err(format!("{} is a directory", path.display()));
    }
    if !metadata.is_file() {
        return Err(format!("{} is not a regular file", path.display()));
    }
    Ok(metadata.len())
}

/// Reports an upload's progress to the app, once per whole percent (v1
/// and v2 uploads alike).
pub(crate) struct Reporter {
    actions: mpsc::UnboundedSender<Action>,
    pending: u64,
    label: String,
    size: u64,
    /// The last percent reported (255: none yet).
    last: AtomicU8,
}

impl Reporter {
    pub(crate) fn new(
        actions: mpsc::UnboundedSender<Action>,
        pending: u64,
        label: &str,
        size: u64,
    ) -> Self {
        Self {
            actions,
            pending,
            label: label.to_owned(),
            size,
            last: AtomicU8::new(u8::MAX),
        }
    }

    pub(crate) fn send(&self, percent: u8) {
        if self.last.swap(percent, Ordering::Relaxed) != percent {
            emit(
                &self.actions,
                NetEvent::V2(V2Event::Upload {
                    pending: self.pending,
                    label: self.label.clone(),
                    percent,
                    size: self.size,
                }),
            );
        }
    }
}

impl Progress for Reporter {
    fn update(&self, done: u64, total: u64) {
        let percent = done
            .min(total)
            .saturating_mul(100)
            .checked_div(total)
            .map_or(100, |p| u8::try_from(p).unwrap_or(100));
        self.send(percent);
    }
}

impl V2Side {
    /// The history of `group` as the conversation pane shows it.
    pub(super) async fn history_views(
        &self,
        v2: &V2Session,
        group: &GroupId,
    ) -> Result<Vec<MessageView>, V2Error> {
        let rows = v2.history(group, HISTORY_LIMIT).await?;
        let attachments: Vec<AttachmentRow> = v2
            .attachments()
            .await?
            .into_iter()
            .filter(|a| a.group_id == *group)
            .collect();
        Ok(with_attachments(&rows, &attachments, &self.me))
    }

    /// Sends a file from the prompt; on its own task (an upload takes a
    /// while; the app's other commands go on, though the session's lock is
    /// held until the relay has the file).
    pub(crate) async fn send_file(
        self: Arc<Self>,
        pending: u64,
        group: Option<GroupId>,
        label: String,
        file: FileToSend,
    ) {
        let outcome = self.send_file_inner(pending, group, &label, file).await;
        let outcome = match outcome {
            Ok(Some(lines)) => Ok(lines),
            Ok(None) => return,
            Err(reason) => Err(reason),
        };
        self.emit(V2Event::Sent {
            pending,
            label,
            outcome,
        });
    }

    /// `Ok(None)`: queued (reported already).
    async fn send_file_inner(
        &self,
        pending: u64,
        group: Option<GroupId>,
        label: &str,
        file: FileToSend,
    ) -> Result<Option<Vec<MessageView>>, String> {
        let path = complete::expand(&file.path.to_string_lossy(), complete::home().as_deref());
        let checked = path.clone();
        let size = tokio::task::spawn_blocking(move || check_file(&checked))
            .await
            .map_err(|e| e.to_string())??;
        let mut v2 = self.v2.lock().await;
        let group = if let Some(group) = group {
            group
        } else {
            crate::session::check_username(label).map_err(|e| e.to_string())?;
            if !v2.has_active_devices(label).await.map_err(|e| text(&e))? {
                return Err(format!(
                    "{label} has no Kavro v2 device: their client speaks only v1 and cannot receive files"
                ));
            }
            let group = v2
                .direct(label)
                .await
                .map_err(|e| super::direct::reason(label, &e))?;
            // The person's entry shows the 1:1 now, not after the next sync.
            let _ = self.publish(&v2, &[]).await;
            group
        };
        let reporter = Reporter::new(self.actions.clone(), pending, label, size);
        reporter.send(0);
        match v2
            .send_file(&group, &path, file.caption.as_deref(), &reporter)
            .await
        {
            Ok(_) => {}
            Err(V2Error::Queued(cause)) => {
                self.emit(V2Event::Queued {
                    pending,
                    label: label.to_owned(),
                    reason: text(&cause),
                });
                return Ok(None);
            }
            Err(err) => return Err(text(&err)),
        }
        self.history_views(&v2, &group)
            .await
            .map(Some)
            .map_err(|e| text(&e))
    }

    /// Whether a file to person `peer` goes over Kavro v2: their account
    /// has active v2 devices, or (the relay not answering) this device
    /// already has a 1:1 with them. Else it goes in a v1 file envelope.
    pub(crate) async fn file_reaches(&self, peer: &str) -> bool {
        let mut v2 = self.v2.lock().await;
        match v2.has_active_devices(peer).await {
            Ok(reaches) => reaches,
            Err(_) => v2.find(peer).await.is_ok(),
        }
    }

    /// Downloads the received files not saved yet; then shows the
    /// conversations they came in again, with a notice of what happened.
    /// Transport errors leave them for the next sync.
    pub(crate) async fn save_received(&self) -> Result<(), V2Error> {
        let dir = match &self.downloads {
            Some(dir) => dir.clone(),
            None => download_dir(&*self.session.read().await),
        };
        let mut v2 = self.v2.lock().await;
        let outcomes = v2.save_pending(&dir, &Silent).await?;
        if outcomes.is_empty() {
            return Ok(());
        }
        let mut groups: Vec<GroupId> = outcomes.iter().map(|o| o.row.group_id.clone()).collect();
        groups.sort();
        groups.dedup();
        self.publish(&v2, &groups).await?;
        let said: Vec<String> = outcomes
            .iter()
            .map(|o| match &o.result {
                Ok(path) => format!(
                    "Saved {} from {} to {}",
                    o.row.file.name,
                    o.row.sender,
                    path.display()
                ),
                Err(reason) => format!(
                    "Not saved: {} from {}: {reason}",
                    o.row.file.name, o.row.sender
                ),
            })
            .collect();
        self.emit(V2Event::Saved(said.join("; ")));
        Ok(())
    }
}

/// Downloads show their state on the attachment line, not a bar.
struct Silent;

impl Progress for Silent {
    fn update(&self, _: u64, _: u64) {}
}

#[cfg(test)]
mod tests;
