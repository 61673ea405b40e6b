//! The chat app's attachments over the v1 envelope (issue #14), for people
//! without Kavro v2 devices: the worker's send from the path prompt and its
//! saving of received v1 files, both through `session::files` (the same
//! rules and refusals as `kavro send --file` and `kavro inbox`), and the
//! joining of a v1 conversation's lines with their attachment rows. The
//! lines are the v2 ones ([`AttachmentView`] with [`FileProtocol::V1`]).

use std::collections::BTreeSet;
use std::path::Path;

use tokio::sync::mpsc;

use super::action::{Action, NetEvent, SendOutcome, V2Event};
use super::attachments::{AttachmentView, FileToSend};
use super::complete;
use super::state::{MessageView, ViewId};
use super::sync::{emit, report_history, short_reason};
use super::v2side::files::{Reporter, check_file};
use crate::attach::transfer::Progress;
use crate::history::FileRow;
use crate::session::{SentMessage, Session, SessionError};
use crate::v2::relay::V2Relay;

/// Gives each line of a v1 conversation the attachment its message carries.
pub fn with_files(messages: &mut [MessageView], rows: &[FileRow]) {
    for row in rows {
        if let Some(message) = messages
            .iter_mut()
            .find(|m| m.id == ViewId::Local(row.message))
        {
            message.attachment = Some(Box::new(AttachmentView::from_file_row(row)));
        }
    }
}

/// The relay's blob routes, over a client made as the CLI's is.
fn blob_relay(session: &Session) -> Result<V2Relay, SessionError> {
    let server = session.profile().server();
    crate::cli::relay_client(server)
        .map(|client| V2Relay::with_client(server, client))
        .map_err(|e| session.relay_error(e))
}

/// How a v1 send ended, as the app's send status says it.
pub fn outcome(peer: &str, result: Result<SentMessage, SessionError>) -> SendOutcome {
    match result {
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
    }
}

/// Sends a file from the prompt to person `peer` in a v1 file envelope:
/// the file is checked first, progress goes to the attachment line, and
/// the conversation is shown again from the history afterwards.
pub async fn send_file(
    session: &Session,
    actions: &mpsc::UnboundedSender<Action>,
    pending: u64,
    peer: String,
    file: FileToSend,
) {
    let path = complete::expand(&file.path.to_string_lossy(), complete::home().as_deref());
    let checked = path.clone();
    let size = tokio::task::spawn_blocking(move || check_file(&checked))
        .await
        .unwrap_or_else(|e| Err(e.to_string()));
    let result = match size {
        Ok(size) => upload(session, actions, pending, &peer, &path, &file, size).await,
        Err(reason) => Err(SessionError::Attachment(reason)),
    };
    let outcome = outcome(&peer, result);
    emit(
        actions,
        NetEvent::Sent {
            pending,
            peer: peer.clone(),
            outcome,
        },
    );
    // The line becomes the history's, with its attachment row.
    if let Err(err) = report_history(session, actions, peer).await {
        emit(actions, NetEvent::Failed(err.to_string()));
    }
}

async fn upload(
    session: &Session,
    actions: &mpsc::UnboundedSender<Action>,
    pending: u64,
    peer: &str,
    path: &Path,
    file: &FileToSend,
    size: u64,
) -> Result<SentMessage, SessionError> {
    let relay = blob_relay(session)?;
    let reporter = Reporter::new(actions.clone(), pending, peer, size);
    reporter.send(0);
    session
        .send_file(&relay, peer, path, file.caption.as_deref(), &reporter)
        .await
}

/// Downloads the received v1 files not saved yet into `dir` (never over an
/// existing file), shows their conversations again and says what happened.
/// A transport error leaves them for the next run, said in a notice.
pub async fn save_received(session: &Session, actions: &mpsc::UnboundedSender<Action>, dir: &Path) {
    let pending = match session.files().await {
        Ok(rows) => rows
            .into_iter()
            .filter(|r| r.state == crate::mls::attachments::AttachmentState::Pending)
            .collect::<Vec<_>>(),
        Err(err) => {
            emit(actions, NetEvent::Failed(format!("Not saved: {err}")));
            return;
        }
    };
    if pending.is_empty() {
        return;
    }
    let peers: BTreeSet<String> = pending.iter().map(|r| r.peer.clone()).collect();
    let result = match blob_relay(session) {
        Ok(relay) => session.save_files(&relay, dir, &Silent).await,
        Err(err) => Err(err),
    };
    for peer in peers {
        let _ = report_history(session, actions, peer).await;
    }
    match result {
        Ok(saved) => {
            let said: Vec<String> = saved
                .iter()
                .map(|s| match &s.result {
                    Ok(path) => format!(
                        "Saved {} from {} to {}",
                        s.row.file.name,
                        s.row.peer,
                        path.display()
                    ),
                    Err(reason) => {
                        format!(
                            "Not saved: {} from {}: {reason}",
                            s.row.file.name, s.row.peer
                        )
                    }
                })
                .collect();
            emit(actions, NetEvent::V2(V2Event::Saved(said.join("; "))));
        }
        Err(err) => emit(
            actions,
            NetEvent::Failed(format!(
                "Files not downloaded yet ({}); they stay on the relay",
                short_reason(&err)
            )),
        ),
    }
}

/// Downloads show their state on the attachment line, not a bar.
struct Silent;

impl Progress for Silent {
    fn update(&self, _: u64, _: u64) {}
}

#[cfg(test)]
mod tests;
